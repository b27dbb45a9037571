package compute

import (
	"fmt"
	"math"
	"sync"
)

// The bucketed quantizer Quantizer8 replaced (a bucket gives the insertion
// point of its smallest value, then three table reads settle the code): an
// oracle beside Quantize8 and the baseline of BenchmarkEncode8.

// oldQuantizer8 computes Quantize8's codes for one table without its binary
// search or any data-dependent branch. The float32 bits of x — sign, the
// binary exponent clamped to the 26 binades the table spans (below them
// one bucket per sign holds every smaller magnitude, zero included; above
// them, magnitudes of 2 and more join [1, 2)), and the top oldQBits
// bits of the mantissa — pick a bucket holding the insertion point of its
// smallest value. Buckets are narrower than the table's gaps, so x's own
// insertion point is that or the next; the nearest and sign rules are then
// selections. The buckets fit in 7 KB, within the first-level cache. The
// result is Quantize8's for every x (TestoldQuantizer8).
type oldQuantizer8 struct {
	// t is the table with −Inf before it and +Inf after it: t[c+1] is
	// entry c, so the neighbours of any insertion point can be read.
	t      [258]float32
	signed bool
	start  [2 * oldQBinades << oldQBits]uint8
}

const (
	// oldQBits mantissa bits per bucket: a bucket of [2^e, 2^(e+1))
	// is then 2^e/128 wide, under the finest gap of either table (0.9/128
	// in the unsigned table's top decade), which newOldQuantizer8 checks.
	oldQBits = 7
	// oldQBinades: the binades [2^−25, 2^−24) … [1, 2) (biased
	// exponents 102…127, the smallest entry is 3.25·10⁻⁷ ≈ 2^−21.6), plus
	// bucket row 0 for everything smaller.
	oldQBinades = 27
	oldQMinExp  = 101 // biased exponents up to this go to row 0
)

// oldSignedZero is the code of 0 in the signed table.
const oldSignedZero = 127

var (
	oldQuantizers     [2]*oldQuantizer8
	oldQuantizersOnce sync.Once
)

// bucket is x's bucket index.
func oldBucket(x float32) uint {
	bits := math.Float32bits(x)
	row := min(max(int(bits>>23&0xff)-oldQMinExp, 0), oldQBinades-1)
	return uint(bits>>31)*(oldQBinades<<oldQBits) + uint(row)<<oldQBits + uint(bits>>(23-oldQBits)&(1<<oldQBits-1))
}

// newOldQuantizer8 returns the shared quantizer of DynamicMap(signed).
func newOldQuantizer8(signed bool) *oldQuantizer8 {
	oldQuantizersOnce.Do(func() {
		for i, sg := range []bool{false, true} {
			table := DynamicMap(sg)
			if sg && (table[oldSignedZero] != 0 || table[oldSignedZero-1] >= 0) {
				panic("compute: the signed table's zero is not at oldSignedZero")
			}
			q := &oldQuantizer8{signed: sg}
			q.t[0], q.t[257] = float32(math.Inf(-1)), float32(math.Inf(1))
			copy(q.t[1:257], table[:])
			for k := range q.start {
				neg := k >= oldQBinades<<oldQBits
				row := k >> oldQBits % oldQBinades
				// The bucket's magnitudes [lo, hi].
				var lo, hi float32
				const shift = 23 - oldQBits
				switch row {
				case 0:
					lo, hi = 0, math.Nextafter32(math.Float32frombits((oldQMinExp+1)<<23), 0)
				default:
					b := uint32(row+oldQMinExp)<<23 | uint32(k&(1<<oldQBits-1))<<shift
					lo, hi = math.Float32frombits(b), math.Float32frombits(b|(1<<shift-1))
					if row == oldQBinades-1 {
						hi = float32(math.Inf(1)) // and everything larger
					}
				}
				if neg {
					lo, hi = -hi, -lo
				}
				q.start[k] = insertion(lo, table)
				if int(insertion(hi, table)) > int(q.start[k])+1 {
					// The buckets are fixed by the constants above: this
					// is a programming error, not a user's.
					panic(fmt.Sprintf("compute: quantizer bucket %d holds more than one table entry", k))
				}
			}
			oldQuantizers[i] = q
		}
	})
	if signed {
		return oldQuantizers[1]
	}
	return oldQuantizers[0]
}

// Code is Quantize8(x, DynamicMap(signed), signed) (the old one).
func (q *oldQuantizer8) Code(x float32) uint8 {
	if x != x {
		return 0 // NaN: every comparison fails, as in Quantize8's search
	}
	return q.code(x)
}

// code is Code of a number (not NaN), written as selections (no branch
// depends on x: the values of one block are not predictable).
func (q *oldQuantizer8) code(x float32) uint8 {
	t := &q.t
	c := uint(q.start[oldBucket(x)])
	c += oldB2u(t[c+1] < x)
	c -= c >> 8 // 256 (x above every entry) is 255
	c -= oldB2u(x-t[c&255] <= t[(c+1)&511]-x)
	if q.signed {
		// Entries from oldSignedZero up are ≥ 0, those below it negative.
		c = c - oldB2u(x < 0)&oldB2u(c >= oldSignedZero) + oldB2u(x > 0)&oldB2u(c < oldSignedZero)
	}
	return uint8(c)
}

func oldB2u(b bool) uint {
	var u uint
	if b {
		u = 1
	}
	return u
}

// Encode writes dst[i] = Code(src[i]·scale) (the CPU backend's hot path).
func (q *oldQuantizer8) Encode(dst []byte, src []float32, scale float32) {
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
