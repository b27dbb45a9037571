package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"gotune/compute/cpu"
)

// Block layouts (ggml):
//   Q8_0: f16 d, int8 q[32]                      x = d·q
//   Q4_0: f16 d, uint8 qs[16]                    x[j] = d·((qs[j]&15)−8), x[j+16] = d·((qs[j]>>4)−8)
//   Q4_K: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128] for 256 values in
//         8 sub-blocks of 32 with 6-bit scale sc and min m:  x = d·sc·q − dmin·m
//   Q6_K: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d for 256 values:
//         x = d·scale·(q−32), q a 6-bit value split into ql (low 4) and qh (high 2)

const qk = 32
const qkK = 256

func f16bits(x float32) uint16 {
	var d [1]uint16
	s := [1]float32{x}
	cpu.F32ToF16(d[:], s[:])
	return d[0]
}

func f16val(h uint16) float32 {
	var d [1]float32
	s := [1]uint16{h}
	cpu.F16ToF32(d[:], s[:])
	return d[0]
}

// Encode converts values to the given tensor type. len(values) must be a
// multiple of the type's block size.
func Encode(values []float32, t TensorType) ([]byte, error) {
	bs := t.BlockSize()
	if bs == 0 {
		return nil, fmt.Errorf("gguf: cannot encode to unknown type %d", uint32(t))
	}
	if len(values)%bs != 0 {
		return nil, fmt.Errorf("gguf: %d values are not a whole number of %s blocks of %d", len(values), t, bs)
	}
	out := make([]byte, t.RowBytes(len(values)))
	le := binary.LittleEndian
	switch t {
	case F32:
		for i, v := range values {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		u := make([]uint16, len(values))
		cpu.F32ToF16(u, values)
		for i, h := range u {
			le.PutUint16(out[2*i:], h)
		}
	case BF16:
		u := make([]uint16, len(values))
		cpu.F32ToBF16(u, values)
		for i, h := range u {
			le.PutUint16(out[2*i:], h)
		}
	case Q8_0:
		for b := 0; b < len(values)/qk; b++ {
			quantQ8_0(out[b*34:(b+1)*34], values[b*qk:(b+1)*qk])
		}
	case Q4_0:
		for b := 0; b < len(values)/qk; b++ {
			quantQ4_0(out[b*18:(b+1)*18], values[b*qk:(b+1)*qk])
		}
	case Q4_K:
		for b := 0; b < len(values)/qkK; b++ {
			quantQ4_K(out[b*144:(b+1)*144], values[b*qkK:(b+1)*qkK])
		}
	case Q6_K:
		for b := 0; b < len(values)/qkK; b++ {
			quantQ6_K(out[b*210:(b+1)*210], values[b*qkK:(b+1)*qkK])
		}
	default:
		return nil, fmt.Errorf("gguf: encoding to %s is not supported", t)
	}
	return out, nil
}

// Decode converts encoded data of type t into dst, whose length fixes how
// many values are decoded.
func Decode(dst []float32, b []byte, t TensorType) error {
	bs := t.BlockSize()
	if bs == 0 {
		return fmt.Errorf("unknown tensor type %d", uint32(t))
	}
	if len(dst)%bs != 0 || len(b) != t.RowBytes(len(dst)) {
		return fmt.Errorf("%d bytes of %s do not hold %d values", len(b), t, len(dst))
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case F16:
		for i := range dst {
			dst[i] = f16val(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case Q8_0:
		for blk := 0; blk < len(dst)/qk; blk++ {
			p := b[blk*34:]
			d := f16val(le.Uint16(p))
			for j := 0; j < qk; j++ {
				dst[blk*qk+j] = d * float32(int8(p[2+j]))
			}
		}
	case Q4_0:
		for blk := 0; blk < len(dst)/qk; blk++ {
			p := b[blk*18:]
			d := f16val(le.Uint16(p))
			y := dst[blk*qk:]
			for j := 0; j < qk/2; j++ {
				y[j] = d * float32(int(p[2+j]&15)-8)
				y[j+qk/2] = d * float32(int(p[2+j]>>4)-8)
			}
		}
	case Q4_K:
		for blk := 0; blk < len(dst)/qkK; blk++ {
			dequantQ4_K(dst[blk*qkK:(blk+1)*qkK], b[blk*144:(blk+1)*144])
		}
	case Q6_K:
		for blk := 0; blk < len(dst)/qkK; blk++ {
			dequantQ6_K(dst[blk*qkK:(blk+1)*qkK], b[blk*210:(blk+1)*210])
		}
	default:
		return fmt.Errorf("decoding %s is not supported", t)
	}
	return nil
}

// quantQ8_0 follows ggml's reference rounding: d = absmax/127, q = round(x/d)
// (half away from zero) computed with the float32 d, d stored as f16.
func quantQ8_0(out []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(out, f16bits(d))
	for j, v := range x {
		out[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// quantQ4_0 follows ggml's reference: the signed value of largest magnitude
// maps to −8, so d = max/−8, and q = min(15, trunc(x/d + 8.5)).
func quantQ4_0(out []byte, x []float32) {
	var amax, mx float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, mx = a, v
		}
	}
	d := mx / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(out, f16bits(d))
	for j := 0; j < qk/2; j++ {
		q0 := min(15, int(x[j]*id+8.5))
		q1 := min(15, int(x[j+qk/2]*id+8.5))
		out[2+j] = byte(q0) | byte(q1)<<4
	}
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j from Q4_K's
// 12-byte scales field: sub-blocks 0–3 use the low 6 bits of bytes j and
// j+4; sub-blocks 4–7 put their low 4 bits in byte j+4 (scale low nibble,
// min high nibble) and their top 2 bits in the spare top bits of bytes j−4
// (scale) and j (min).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func putScaleMinK4(q []byte, sc, m *[8]uint8) {
	for j := 0; j < 4; j++ {
		q[j] = sc[j] | (sc[j+4]>>4)<<6
		q[j+4] = m[j] | (m[j+4]>>4)<<6
		q[j+8] = sc[j+4]&15 | (m[j+4]&15)<<4
	}
}

func dequantQ4_K(y []float32, b []byte) {
	le := binary.LittleEndian
	d := f16val(le.Uint16(b))
	dmin := f16val(le.Uint16(b[2:]))
	scales := b[4:16]
	qs := b[16:]
	for c := 0; c < 4; c++ { // four chunks of 64 share 32 bytes of nibbles
		sc0, m0 := scaleMinK4(2*c, scales)
		sc1, m1 := scaleMinK4(2*c+1, scales)
		d0, mm0 := d*float32(sc0), dmin*float32(m0)
		d1, mm1 := d*float32(sc1), dmin*float32(m1)
		q := qs[32*c:]
		for l := 0; l < 32; l++ {
			y[64*c+l] = d0*float32(q[l]&15) - mm0
			y[64*c+32+l] = d1*float32(q[l]>>4) - mm1
		}
	}
}

// quantQ4_K is a straightforward (not ggml's iterative) Q4_K quantizer. Each
// sub-block of 32 gets the affine range [min(0, lo), max(0, hi)]. The 6-bit
// mins are rounded up and then the 6-bit scales rounded up so that the
// quantized grid always covers the range: every value is then within half a
// step of its code, with no clipping.
func quantQ4_K(out []byte, x []float32) {
	var lo, hi [8]float32
	var maxMin float32
	for j := 0; j < 8; j++ {
		for _, v := range x[32*j : 32*j+32] {
			lo[j] = min(lo[j], v)
			hi[j] = max(hi[j], v)
		}
		maxMin = max(maxMin, -lo[j])
	}
	dminBits, dminq := f16AtLeast(maxMin / 63)
	var sc, m [8]uint8
	var need [8]float32
	var maxNeed float32
	for j := 0; j < 8; j++ {
		if dminq > 0 {
			m[j] = uint8(min(63, math.Ceil(float64(-lo[j]/dminq))))
		}
		need[j] = (hi[j] + dminq*float32(m[j])) / 15
		maxNeed = max(maxNeed, need[j])
	}
	dBits, dq := f16AtLeast(maxNeed / 63)
	for j := 0; j < 8; j++ {
		if dq > 0 {
			sc[j] = uint8(min(63, math.Ceil(float64(need[j]/dq))))
		}
	}
	le := binary.LittleEndian
	le.PutUint16(out, dBits)
	le.PutUint16(out[2:], dminBits)
	putScaleMinK4(out[4:16], &sc, &m)
	qs := out[16:144]
	for j := 0; j < 8; j++ {
		step := dq * float32(sc[j])
		off := dminq * float32(m[j])
		c, hiNibble := j/2, j%2 == 1
		for l := 0; l < 32; l++ {
			var q int
			if step > 0 {
				q = int(math.Round(float64((x[32*j+l] + off) / step)))
				q = max(0, min(15, q))
			}
			if hiNibble {
				qs[32*c+l] |= byte(q) << 4
			} else {
				qs[32*c+l] = byte(q)
			}
		}
	}
}

// f16AtLeast returns the smallest half ≥ v (v ≥ 0 and in half range), as bits
// and value, so that scales derived from it never fall short.
func f16AtLeast(v float32) (uint16, float32) {
	h := f16bits(v)
	if f16val(h) < v {
		h++
	}
	return h, f16val(h)
}

func dequantQ6_K(y []float32, b []byte) {
	ql, qh := b[0:128], b[128:192]
	sc := b[192:208]
	d := f16val(binary.LittleEndian.Uint16(b[208:]))
	for n := 0; n < 2; n++ { // two halves of 128
		l4, h2, s8, yy := ql[64*n:], qh[32*n:], sc[8*n:], y[128*n:]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(l4[l]&15|(h2[l]>>0&3)<<4) - 32
			q2 := int(l4[l+32]&15|(h2[l]>>2&3)<<4) - 32
			q3 := int(l4[l]>>4|(h2[l]>>4&3)<<4) - 32
			q4 := int(l4[l+32]>>4|(h2[l]>>6&3)<<4) - 32
			yy[l] = d * float32(int8(s8[is])) * float32(q1)
			yy[l+32] = d * float32(int8(s8[is+2])) * float32(q2)
			yy[l+64] = d * float32(int8(s8[is+4])) * float32(q3)
			yy[l+96] = d * float32(int8(s8[is+6])) * float32(q4)
		}
	}
}

// quantQ6_K: each sub-block of 16 gets a signed scale mapping its value of
// largest magnitude to −32; scales are quantized to int8 against the
// super-block maximum, then codes chosen against the quantized scales.
func quantQ6_K(out []byte, x []float32) {
	var scale [16]float32
	var amaxScale, maxScale float32
	for s := 0; s < 16; s++ {
		var amax, mx float32
		for _, v := range x[16*s : 16*s+16] {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax, mx = a, v
			}
		}
		scale[s] = mx / -32
		if a := float32(math.Abs(float64(scale[s]))); a > amaxScale {
			amaxScale, maxScale = a, scale[s]
		}
	}
	for i := range out {
		out[i] = 0
	}
	d := maxScale / -128
	dq := f16val(f16bits(d))
	binary.LittleEndian.PutUint16(out[208:], f16bits(d))
	var sc [16]int8
	for s := range sc {
		if dq != 0 {
			sc[s] = int8(max(-128, min(127, math.Round(float64(scale[s]/dq)))))
		}
		out[192+s] = byte(sc[s])
	}
	var q [256]uint8
	for i := range q {
		step := dq * float32(sc[i/16])
		v := 32
		if step != 0 {
			v = int(math.Round(float64(x[i]/step))) + 32
			v = max(0, min(63, v))
		}
		q[i] = uint8(v)
	}
	// Pack in the order dequantQ6_K reads: within each half of 128, values
	// l, l+32, l+64, l+96 share ql bytes l and l+32 and qh byte l.
	for n := 0; n < 2; n++ {
		ql, qh, qq := out[64*n:], out[128+32*n:], q[128*n:]
		for l := 0; l < 32; l++ {
			ql[l] = qq[l]&15 | (qq[l+64]&15)<<4
			ql[l+32] = qq[l+32]&15 | (qq[l+96]&15)<<4
			qh[l] = qq[l]>>4 | (qq[l+32]>>4)<<2 | (qq[l+64]>>4)<<4 | (qq[l+96]>>4)<<6
		}
	}
}
