// Package dtype converts between float32 and the 16-bit float formats of
// model files (bfloat16, IEEE half). File formats and backends import it;
// it imports nothing of the project.
package dtype

import "math"

// BF16ToF32 widens bfloat16 bits (the upper half of a float32) into dst, which
// must be at least len(src) long. The conversion is exact.
func BF16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32frombits(uint32(v) << 16)
	}
}

// F32ToBF16 narrows src into dst (at least len(src) long), rounding to nearest
// even as torch does; NaN becomes the quiet NaN 0x7fc0.
func F32ToBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = f32ToBF16(f)
	}
}

func f32ToBF16(f float32) uint16 {
	if f != f {
		return 0x7fc0
	}
	bits := math.Float32bits(f)
	bits += 0x7fff + (bits>>16)&1
	return uint16(bits >> 16)
}

// F16ToF32 widens IEEE 754 half-precision bits into dst (at least len(src)
// long). The conversion is exact, subnormals, infinities and NaN payloads
// included.
func F16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = f16ToF32(h)
	}
}

func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch exp {
	case 0:
		// Zero or subnormal: mant·2⁻²⁴, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// F32ToF16 narrows src into IEEE 754 half-precision bits in dst (at least
// len(src) long), rounding to nearest even; values beyond the half range
// become ±Inf, tiny ones subnormal or ±0, and NaN the quiet NaN 0x7e00.
func F32ToF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = f32ToF16(f)
	}
}

func f32ToF16(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	mant := bits & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e >= 1 {
		h := uint32(e)<<10 | mant>>13
		rem := mant & 0x1fff
		// A carry out of the mantissa correctly bumps the exponent, up to Inf.
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	// Subnormal half: value in units of 2⁻²⁴ is m·2^(exp-126).
	shift := uint(126 - exp)
	if shift >= 25 {
		return sign
	}
	m := mant | 0x800000
	q := m >> shift
	rem := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || (rem == halfway && q&1 == 1) {
		q++
	}
	return sign | uint16(q)
}
