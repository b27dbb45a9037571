package gguf

import (
	"encoding/binary"
	"math"
)

// The quantizers below are gotune's first Q4_K and Q6_K encoders, kept only
// as a baseline: the tests check that the encoders that replaced them (which
// follow llama.cpp's reference quantizers) never leave more weight error.

// legacyQuantQ4_K is a straightforward (not ggml's iterative) Q4_K quantizer. Each
// sub-block of 32 gets the affine range [min(0, lo), max(0, hi)]. The 6-bit
// mins are rounded up and then the 6-bit scales rounded up so that the
// quantized grid always covers the range: every value is then within half a
// step of its code, with no clipping.
func legacyQuantQ4_K(out []byte, x []float32) {
	var lo, hi [8]float32
	var maxMin float32
	for j := 0; j < 8; j++ {
		for _, v := range x[32*j : 32*j+32] {
			lo[j] = min(lo[j], v)
			hi[j] = max(hi[j], v)
		}
		maxMin = max(maxMin, -lo[j])
	}
	dminBits, dminq := legacyF16AtLeast(maxMin / 63)
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
	dBits, dq := legacyF16AtLeast(maxNeed / 63)
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

// legacyF16AtLeast returns the smallest half ≥ v (v ≥ 0 and in half range), as bits
// and value, so that scales derived from it never fall short.
func legacyF16AtLeast(v float32) (uint16, float32) {
	h := f16bits(v)
	if f16val(h) < v {
		h++
	}
	return h, f16val(h)
}

// legacyQuantQ6_K: each sub-block of 16 gets a signed scale mapping its value of
// largest magnitude to −32; scales are quantized to int8 against the
// super-block maximum, then codes chosen against the quantized scales.
func legacyQuantQ6_K(out []byte, x []float32) {
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
	// Pack in the order delegacyQuantQ6_K reads: within each half of 128, values
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
