package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"gotune/safefile"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Tensor is one tensor to write. Either Data holds the encoded bytes, or
// Encode produces them when the writer reaches this tensor (so a converter
// holds one tensor in memory at a time).
type Tensor struct {
	Name string
	// Dims as GGUF stores them: Dims[0] varies fastest.
	Dims   []uint64
	Type   TensorType
	Data   []byte
	Encode func() ([]byte, error)
}

// NewTensor encodes row-major values of the given (PyTorch-order) shape as
// type t.
func NewTensor(name string, shape []int, values []float32, t TensorType) (Tensor, error) {
	n := 1
	dims := make([]uint64, len(shape))
	for i, s := range shape {
		if s < 0 {
			return Tensor{}, fmt.Errorf("tensor %q: negative dimension in shape %v", name, shape)
		}
		n *= s
		dims[len(shape)-1-i] = uint64(s)
	}
	if n != len(values) {
		return Tensor{}, fmt.Errorf("tensor %q: shape %v holds %d values, got %d", name, shape, n, len(values))
	}
	if len(dims) > 0 && t.BlockSize() > 0 && dims[0]%uint64(t.BlockSize()) != 0 {
		return Tensor{}, fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block size %d", name, dims[0], t, t.BlockSize())
	}
	b, err := Encode(values, t)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	return Tensor{Name: name, Dims: dims, Type: t, Data: b}, nil
}

func (t Tensor) size() (uint64, error) {
	tr, ok := traits[t.Type]
	if !ok {
		return 0, fmt.Errorf("tensor %q: unknown type %d", t.Name, uint32(t.Type))
	}
	if len(t.Dims) == 0 || len(t.Dims) > maxDims {
		return 0, fmt.Errorf("tensor %q: %d dimensions, want 1..%d", t.Name, len(t.Dims), maxDims)
	}
	if t.Dims[0]%uint64(tr.block) != 0 {
		return 0, fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block size %d", t.Name, t.Dims[0], t.Type, tr.block)
	}
	n := uint64(1)
	for _, d := range t.Dims {
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("tensor %q: dimensions %v overflow", t.Name, t.Dims)
		}
		n *= d
	}
	return n / uint64(tr.block) * uint64(tr.size), nil
}

// Write writes a GGUF v3 file atomically: into a temporary file in the same
// folder, synced, then renamed over path. Tensor data is aligned to 32 bytes
// (or general.alignment when kv sets it).
func Write(path string, kv []KV, tensors []Tensor) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(safefile.FilePerm()); err != nil { // CreateTemp made it 0600
		return err
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err = writeTo(w, kv, tensors); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // make the rename durable; not all filesystems support it
		d.Close()
	}
	return nil
}

func writeTo(w io.Writer, kv []KV, tensors []Tensor) error {
	ew := &errWriter{w: w}
	align := uint64(defaultAlignment)
	seen := map[string]bool{}
	for _, e := range kv {
		if seen[e.Key] {
			return fmt.Errorf("metadata key %q given twice", e.Key)
		}
		seen[e.Key] = true
		if _, _, ok := e.Type(); !ok {
			return fmt.Errorf("metadata %q: Go type %T has no GGUF type", e.Key, e.Value)
		}
		if e.Key == "general.alignment" {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("general.alignment must be a power of two as uint32, got %v (%T)", e.Value, e.Value)
			}
			align = uint64(a)
		}
	}
	sizes := make([]uint64, len(tensors))
	offsets := make([]uint64, len(tensors))
	var off uint64
	names := map[string]bool{}
	for i, t := range tensors {
		if names[t.Name] {
			return fmt.Errorf("tensor %q given twice", t.Name)
		}
		names[t.Name] = true
		s, err := t.size()
		if err != nil {
			return err
		}
		sizes[i], offsets[i] = s, off
		off = alignUp(off+s, align)
	}

	ew.raw([]byte(magic))
	ew.u32(3)
	ew.u64(uint64(len(tensors)))
	ew.u64(uint64(len(kv)))
	for _, e := range kv {
		ew.str(e.Key)
		ew.value(e.Value)
	}
	for i, t := range tensors {
		ew.str(t.Name)
		ew.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			ew.u64(d)
		}
		ew.u32(uint32(t.Type))
		ew.u64(offsets[i])
	}
	if len(tensors) > 0 { // as llama.cpp's Python writer: no padding without data
		ew.pad(align)
	}
	for i, t := range tensors {
		data := t.Data
		if data == nil && t.Encode != nil {
			var err error
			if data, err = t.Encode(); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
		}
		if uint64(len(data)) != sizes[i] {
			return fmt.Errorf("tensor %q: %d bytes of data, %s %v needs %d", t.Name, len(data), t.Type, t.Dims, sizes[i])
		}
		ew.raw(data)
		ew.pad(align)
		if ew.err != nil {
			return ew.err
		}
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *errWriter) raw(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += uint64(n)
}

func (e *errWriter) u8(v uint8) { e.buf[0] = v; e.raw(e.buf[:1]) }
func (e *errWriter) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}
func (e *errWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}
func (e *errWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}
func (e *errWriter) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *errWriter) pad(align uint64) {
	var zeros [64]byte
	for n := alignUp(e.n, align) - e.n; n > 0; {
		k := min(n, uint64(len(zeros)))
		e.raw(zeros[:k])
		n -= k
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes a type tag and the value; the caller has checked the type.
func (e *errWriter) value(v any) {
	t, et, _ := KV{Value: v}.Type()
	e.u32(uint32(t))
	if t == TypeArray {
		e.u32(uint32(et))
	}
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.u8(b2u(x))
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []uint8:
		e.u64(uint64(len(x)))
		e.raw(x)
	case []int8:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u8(uint8(v))
		}
	case []uint16:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u16(v)
		}
	case []int16:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u16(uint16(v))
		}
	case []uint32:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u32(v)
		}
	case []int32:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u32(uint32(v))
		}
	case []float32:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u32(math.Float32bits(v))
		}
	case []bool:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u8(b2u(v))
		}
	case []string:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.str(v)
		}
	case []uint64:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u64(v)
		}
	case []int64:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u64(uint64(v))
		}
	case []float64:
		e.u64(uint64(len(x)))
		for _, v := range x {
			e.u64(math.Float64bits(v))
		}
	}
}
