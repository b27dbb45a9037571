package compute

import (
	"fmt"
	"math"
	"sort"
	"sync"
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
	c := int(insertion(x, table))
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

// Quantizer8 computes Quantize8's codes for one table with one lookup a
// value. Quantize8 is a non-decreasing step function of x (NaN aside): its
// code changes at thresholds, the last float32 of each code. The float32
// bits of x — sign, the binary exponent clamped to the 26 binades the table
// spans (below them one row of alike buckets per sign holds every smaller
// magnitude, zero included; above them, magnitudes of 2 and more join [1,
// 2)), and the top quantizerBits bits of the mantissa — pick a bucket
// narrower than the gaps between thresholds, so it holds at most one: the
// bucket's code is base, plus one above theta. NewQuantizer8 finds the
// thresholds with Quantize8 itself, so the rounding of its comparisons is
// kept exactly. The result is Quantize8's for every x (TestQuantizer8).
type Quantizer8 struct {
	// base is the code of a bucket's smallest value, theta the largest
	// value of that code in the bucket (+Inf when the bucket has one
	// code). 2^13 entries, more than the 6912 buckets, so a masked index
	// needs no bounds check; 35 KB in use a table, of which the binades
	// near the block's largest value, where most values fall, stay in the
	// first-level cache.
	base  [quantizerTable]uint8
	theta [quantizerTable]float32
}

const (
	// quantizerBits mantissa bits per bucket: a bucket of [2^e, 2^(e+1))
	// is then 2^e/128 wide, under the finest gap of either table (0.9/128
	// in the unsigned table's top decade), which NewQuantizer8 checks.
	quantizerBits = 7
	// quantizerBinades: the binades [2^−25, 2^−24) … [1, 2) (biased
	// exponents 102…127, the smallest entry is 3.25·10⁻⁷ ≈ 2^−21.6), plus
	// bucket row 0 for everything smaller.
	quantizerBinades = 27
	quantizerMinExp  = 101 // biased exponents up to this go to row 0
	quantizerTable   = 1 << 13
)

var (
	quantizers     [2]*Quantizer8
	quantizersOnce sync.Once
)

// bucket is x's bucket index.
func bucket(x float32) uint {
	bits := math.Float32bits(x)
	row := min(max(int(bits>>23&0xff)-quantizerMinExp, 0), quantizerBinades-1)
	return uint(bits>>31)*(quantizerBinades<<quantizerBits) + uint(row)<<quantizerBits + uint(bits>>(23-quantizerBits)&(1<<quantizerBits-1))
}

// NewQuantizer8 returns the shared quantizer of DynamicMap(signed).
func NewQuantizer8(signed bool) *Quantizer8 {
	quantizersOnce.Do(func() {
		for i, sg := range []bool{false, true} {
			quantizers[i] = newQuantizer8(sg)
		}
	})
	if signed {
		return quantizers[1]
	}
	return quantizers[0]
}

func newQuantizer8(signed bool) *Quantizer8 {
	table := DynamicMap(signed)
	code := func(x float32) uint8 { return Quantize8(x, table, signed) }
	q := &Quantizer8{}
	for k := range q.theta {
		q.theta[k] = float32(math.Inf(1))
	}
	for k := 0; k < 2*quantizerBinades<<quantizerBits; k++ {
		neg := k >= quantizerBinades<<quantizerBits
		row := k >> quantizerBits % quantizerBinades
		// The bucket's magnitudes [lo, hi].
		var lo, hi float32
		const shift = 23 - quantizerBits
		switch row {
		case 0:
			lo, hi = 0, math.Nextafter32(math.Float32frombits((quantizerMinExp+1)<<23), 0)
		default:
			b := uint32(row+quantizerMinExp)<<23 | uint32(k&(1<<quantizerBits-1))<<shift
			lo, hi = math.Float32frombits(b), math.Float32frombits(b|(1<<shift-1))
			if row == quantizerBinades-1 {
				hi = float32(math.Inf(1)) // and everything larger
			}
		}
		// The bucket's values [a, b] in order, as ordered integers.
		a, b := orderedKey(lo), orderedKey(hi)
		if neg {
			a, b = -b, -a
		}
		q.base[k] = code(fromOrdered(a))
		switch top := code(fromOrdered(b)); {
		case top == q.base[k]:
		case top == q.base[k]+1:
			// The last value of the lower code: code(a) is it, code(b) not.
			for a < b-1 {
				mid := a + (b-a)/2
				if code(fromOrdered(mid)) == q.base[k] {
					a = mid
				} else {
					b = mid
				}
			}
			q.theta[k] = fromOrdered(a)
		default:
			// The buckets are fixed by the constants above: this is a
			// programming error, not a user's.
			panic(fmt.Sprintf("compute: quantizer bucket %d holds codes %d to %d", k, q.base[k], top))
		}
	}
	return q
}

// orderedKey maps a non-negative float32 (not NaN) to an integer in the
// same order; fromOrdered inverts it, negative keys for negative values.
func orderedKey(x float32) int64 { return int64(math.Float32bits(x) &^ (1 << 31)) }

func fromOrdered(k int64) float32 {
	if k < 0 {
		return math.Float32frombits(uint32(-k) | 1<<31)
	}
	return math.Float32frombits(uint32(k))
}

// Quantizer8Layout is how a vectorised Code (the CPU backend's) reads a
// quantizer's tables. For x with float32 bits b, not NaN, the bucket is
//
//	k = (b>>31)·SignStride + min(max((b>>16)&0x7fff − Offset, 0), Top)
//
// — bucket's index with its clamps as arithmetic: magnitudes below row 0's
// first bucket share its codes, those above the top row's last share that
// one's — and the code is Base[k] + (x > Theta[k]). Base may be read four
// bytes at a time: the table goes on past every k.
type Quantizer8Layout struct {
	Base                    *[quantizerTable]uint8
	Theta                   *[quantizerTable]float32
	Offset, Top, SignStride int32
}

// Layout returns q's tables for a vectorised Code.
func (q *Quantizer8) Layout() Quantizer8Layout {
	return Quantizer8Layout{Base: &q.base, Theta: &q.theta, Offset: quantizerMinExp << quantizerBits,
		Top: quantizerBinades<<quantizerBits - 1, SignStride: quantizerBinades << quantizerBits}
}

// insertion is the first entry ≥ x (255 when none is), by binary search.
func insertion(x float32, table *[256]float32) uint8 {
	lo, hi := 0, 255
	for lo < hi {
		mid := (lo + hi) / 2
		if table[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return uint8(lo)
}

// Code is Quantize8(x, DynamicMap(signed), signed).
func (q *Quantizer8) Code(x float32) uint8 {
	if x != x {
		return 0 // NaN: every comparison fails, as in Quantize8's search
	}
	return q.code(x)
}

// code is Code of a number (not NaN). bucket's clamps compile to branches,
// which values of one block take alike (magnitudes under 2^−25 or of 2 and
// more are rare after scaling); written as arithmetic they cost more.
func (q *Quantizer8) code(x float32) uint8 {
	k := bucket(x) & (quantizerTable - 1)
	return q.base[k] + b2u8(x > q.theta[k])
}

func b2u8(b bool) uint8 {
	var u uint8
	if b {
		u = 1
	}
	return u
}

// Encode writes dst[i] = Code(src[i]·scale) (the CPU backend's hot path).
func (q *Quantizer8) Encode(dst []byte, src []float32, scale float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		x *= scale
		var c uint8
		if x == x { // NaN is 0
			c = q.code(x)
		}
		dst[i] = c
	}
}
