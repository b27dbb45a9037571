package compute

import (
	"math"
	"sort"
)

// 8-bit optimizer state (bitsandbytes' block-wise 8-bit AdamW).
//
// Each moment is stored as one byte per element, a code into a 256-entry
// table of values in [−1, 1] (the first moment) or [0, 1] (the second),
// times one float32 scale per block of Adam8Block elements: the largest
// magnitude in the block. The table is the "dynamic" map of Dettmers'
// 8-bit optimizers: a decimal exponent from 10⁻⁶ to 10⁰ and a linear
// fraction whose resolution grows with the exponent, so values near the
// block's maximum are finely resolved and small ones keep their order of
// magnitude instead of collapsing to zero.

// Adam8Block is the number of elements sharing one scale (bitsandbytes'
// block size for its block-wise optimizers).
const Adam8Block = 256

// Adam8MinSize is the smallest tensor whose AdamW state is kept in 8 bits;
// smaller ones (norm weights, biases) stay in float32, as bitsandbytes'
// min_8bit_size: they cost little and are the most sensitive.
const Adam8MinSize = 4096

var (
	qmapSigned   = dynamicMap(true)
	qmapUnsigned = dynamicMap(false)
)

// DynamicMap is the 256-entry quantization table of an 8-bit moment,
// sorted ascending: signed for the first moment (values in [−1, 1]),
// unsigned for the second (values in [0, 1]). Code c stands for
// DynamicMap(signed)[c] times its block's scale.
func DynamicMap(signed bool) *[256]float32 {
	if signed {
		m := qmapSigned
		return &m
	}
	m := qmapUnsigned
	return &m
}

// dynamicMap builds the table: for each decimal exponent e = −6…0 the
// midpoints of an even split of [0.1, 1] into 2^i (signed) or 2^(i+1)
// (unsigned) parts, i = e + 6, scaled by 10^e (and negated too when
// signed), plus 0 and 1. With 7 exponents that is 2·127 + 2 = 256 signed
// and 254 + 2 = 256 unsigned values.
func dynamicMap(signed bool) [256]float32 {
	const exponents = 7
	var vals []float64
	for i := 0; i < exponents; i++ {
		parts := 1 << (i + 1)
		if signed {
			parts = 1 << i
		}
		scale := math.Pow(10, float64(i-(exponents-1)))
		for k := 0; k < parts; k++ {
			lo := 0.1 + 0.9*float64(k)/float64(parts)
			hi := 0.1 + 0.9*float64(k+1)/float64(parts)
			v := scale * (lo + hi) / 2
			vals = append(vals, v)
			if signed {
				vals = append(vals, -v)
			}
		}
	}
	vals = append(vals, 0, 1)
	sort.Float64s(vals)
	var out [256]float32
	for i, v := range vals {
		out[i] = float32(v)
	}
	return out
}

// Quantize8 returns the code of x (already divided by its block's scale)
// in the table: the nearest entry, the lower one on a tie. For the signed
// table a nonzero x never takes a code of the other sign (a negative x
// never rounds to zero either), so quantization never turns the first
// moment's direction around — bitsandbytes makes the same correction.
// Every backend computes codes with this rule, so their states agree bit
// for bit.
func Quantize8(x float32, table *[256]float32, signed bool) uint8 {
	// Binary search for the first entry ≥ x.
	lo, hi := 0, 255
	for lo < hi {
		mid := (lo + hi) / 2
		if table[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	c := lo
	if c > 0 && x-table[c-1] <= table[c]-x {
		c--
	}
	if signed {
		if x < 0 && table[c] >= 0 && c > 0 {
			c--
		} else if x > 0 && table[c] < 0 && c < 255 {
			c++
		}
	}
	return uint8(c)
}

// Adam8Blocks is the number of scales a state of n elements needs.
func Adam8Blocks(n, block int) int { return (n + block - 1) / block }
