// Package hostmem is the memory of the backends that keep their tensors in
// Go slices (the reference backend and the CPU backend): the storage of one
// tensor and the count of what a backend holds.
package hostmem

import (
	"fmt"
	"math"
	"sync"

	"gotune/compute"
	"gotune/dtype"
)

// Slices is the storage of one tensor: the slice its element type uses.
// A BF16 tensor is normally float32 values rounded to bfloat16 (F); one
// wrapped over a host model's bf16 weight holds the 16-bit words themselves
// (H), which only the operations that know them may read.
type Slices struct {
	F  []float32 // F32, BF16
	H  []uint16  // BF16 held in 16 bits (a wrapped frozen weight)
	I  []int32   // I32
	U  []byte    // U8
	DT compute.DType
}

// Half reports whether the storage is 16-bit bfloat16 words (H).
func (s *Slices) Half() bool { return s.H != nil }

// DType is the element type.
func (s *Slices) DType() compute.DType { return s.DT }

// Len is the number of elements.
func (s *Slices) Len() int {
	switch s.DT {
	case compute.I32:
		return len(s.I)
	case compute.U8:
		return len(s.U)
	}
	if s.H != nil {
		return len(s.H)
	}
	return len(s.F)
}

// Sub is the view of n elements from off, sharing memory.
func (s *Slices) Sub(off, n int) Slices {
	v := Slices{DT: s.DT}
	switch s.DT {
	case compute.I32:
		v.I = s.I[off : off+n]
	case compute.U8:
		v.U = s.U[off : off+n]
	default:
		if s.H != nil {
			v.H = s.H[off : off+n : off+n]
		} else {
			v.F = s.F[off : off+n]
		}
	}
	return v
}

// Memory counts the bytes of a backend's live tensors; safe for concurrent
// use.
type Memory struct {
	mu          sync.Mutex
	inUse, peak int64
}

// Alloc makes zeroed storage for n elements of dt, counted until release
// (which does nothing after its first call) is called.
func (m *Memory) Alloc(backend string, dt compute.DType, n int) (Slices, func(), error) {
	if n < 0 || dt.Size() == 0 {
		return Slices{}, nil, fmt.Errorf("%s: alloc of %d %v", backend, n, dt)
	}
	s := Slices{DT: dt}
	switch dt {
	case compute.I32:
		s.I = make([]int32, n)
	case compute.U8:
		s.U = make([]byte, n)
	default:
		s.F = make([]float32, n)
	}
	size := int64(n * dt.Size())
	m.mu.Lock()
	m.inUse += size
	m.peak = max(m.peak, m.inUse)
	m.mu.Unlock()
	var once sync.Once
	return s, func() {
		once.Do(func() {
			m.mu.Lock()
			m.inUse -= size
			m.mu.Unlock()
		})
	}, nil
}

// Stats is what is held now and the most held at once.
func (m *Memory) Stats() compute.MemStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return compute.MemStats{InUse: m.inUse, Peak: m.peak}
}

// RoundBF16 is v rounded to bfloat16 (nearest even) and held as float32:
// what a bf16 tensor of these backends stores. NaN stays a (quiet) NaN.
func RoundBF16(v float32) float32 {
	u := math.Float32bits(v)
	if u&0x7fffffff > 0x7f800000 {
		return math.Float32frombits((u | 0x400000) &^ 0xffff)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// SetInts copies src into I32 storage of the same length.
func (s *Slices) SetInts(src []int32) error {
	if s.DT != compute.I32 || len(src) != len(s.I) {
		return fmt.Errorf("upload of %d ints into %v×%d", len(src), s.DT, s.Len())
	}
	copy(s.I, src)
	return nil
}

// SetBytes copies src into U8 storage of the same length.
func (s *Slices) SetBytes(src []byte) error {
	if s.DT != compute.U8 || len(src) != len(s.U) {
		return fmt.Errorf("upload of %d bytes into %v×%d", len(src), s.DT, s.Len())
	}
	copy(s.U, src)
	return nil
}

// Get copies the elements into dst (as long as the storage), integers
// widened to float32.
func (s *Slices) Get(dst []float32) error {
	if len(dst) != s.Len() {
		return fmt.Errorf("download of %d into %d", s.Len(), len(dst))
	}
	switch s.DT {
	case compute.I32:
		for i, v := range s.I {
			dst[i] = float32(v)
		}
	case compute.U8:
		for i, v := range s.U {
			dst[i] = float32(v)
		}
	default:
		if s.H != nil {
			dtype.BF16ToF32(dst, s.H)
		} else {
			copy(dst, s.F)
		}
	}
	return nil
}

// SetHalf rounds src into 16-bit storage of the same length.
func (s *Slices) SetHalf(src []float32) error {
	if s.H == nil || len(src) != len(s.H) {
		return fmt.Errorf("upload of %d values into %v×%d", len(src), s.DT, s.Len())
	}
	dtype.F32ToBF16(s.H, src)
	return nil
}

// Clear sets every element to zero.
func (s *Slices) Clear() {
	clear(s.F)
	clear(s.H)
	clear(s.I)
	clear(s.U)
}
