package dtype

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestBF16Table(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{0.1, 0x3dcd}, // torch.tensor(0.1).bfloat16()
		{float32(math.Copysign(0, -1)), 0x8000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // max float32 rounds to +Inf
		{float32(math.Inf(-1)), 0xff80},
		{float32(math.NaN()), 0x7fc0},
		{math.Float32frombits(0x00000001), 0x0000}, // tiny subnormal rounds to 0
	}
	for _, c := range cases {
		var got [1]uint16
		F32ToBF16(got[:], []float32{c.in})
		if got[0] != c.want {
			t.Errorf("F32ToBF16(%g [%#08x]) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got[0], c.want)
		}
	}
}

// BF16 rounding against a float64 nearest-value search with ties to even.
func TestBF16RandomAgainstNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 20000)
	for i := range src {
		src[i] = math.Float32frombits(r.Uint32()&^0x7f800000 | uint32(1+r.IntN(253))<<23)
	}
	dst := make([]uint16, len(src))
	F32ToBF16(dst, src)
	back := make([]float32, len(src))
	BF16ToF32(back, dst)
	for i, f := range src {
		lo := uint16(math.Float32bits(f) >> 16)
		hi := lo + 1
		dl := math.Abs(float64(f) - float64(math.Float32frombits(uint32(lo)<<16)))
		dh := math.Abs(float64(f) - float64(math.Float32frombits(uint32(hi)<<16)))
		want := lo
		if dh < dl || (dh == dl && hi&1 == 0) {
			want = hi
		}
		if dst[i] != want {
			t.Fatalf("F32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(f), dst[i], want)
		}
		if math.Float32bits(back[i]) != uint32(want)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", want, math.Float32bits(back[i]))
		}
	}
}

func TestF16Table(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66}, // torch.tensor(0.1).half()
		{65504, 0x7bff},
		{65519, 0x7bff},   // below the midpoint to Inf
		{65520, 0x7c00},   // midpoint rounds to even: Inf
		{1e6, 0x7c00},     // overflow
		{-1e6, 0xfc00},    // overflow
		{0x1p-14, 0x0400}, // smallest normal
		{0x1p-24, 0x0001}, // smallest subnormal
		{0x1p-25, 0x0000}, // tie between 0 and 2⁻²⁴: even is 0
		{0x1.8p-25, 0x0001},
		{0x1.8p-24, 0x0002},   // tie between 1 and 2 units: even is 2
		{0x1.ffcp-15, 0x0400}, // largest subnormal region rounds up into the normals
		{float32(math.Copysign(0, -1)), 0x8000},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.NaN()), 0x7e00},
		{1 + 0x1p-11, 0x3c00}, // tie, even stays
		{1 + 0x3p-11, 0x3c02}, // tie, odd rounds up
		{1e-10, 0x0000},
	}
	for _, c := range cases {
		var got [1]uint16
		F32ToF16(got[:], []float32{c.in})
		if got[0] != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.in, got[0], c.want)
		}
	}
}

// Every half value widens to the value its fields define, and narrows back to
// itself (NaNs to the quiet NaN of the same sign).
func TestF16AllValues(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	wide := make([]float32, len(src))
	F16ToF32(wide, src)
	back := make([]uint16, len(src))
	F32ToF16(back, wide)
	for i, h := range src {
		exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
		var want float64
		switch exp {
		case 0:
			want = mant * math.Pow(2, -24)
		case 31:
			want = math.Inf(1)
			if mant != 0 {
				want = math.NaN()
			}
		default:
			want = (1 + mant/1024) * math.Pow(2, float64(exp-15))
		}
		if h&0x8000 != 0 {
			want = -want
		}
		got := float64(wide[i])
		if !(got == want || (math.IsNaN(got) && math.IsNaN(want))) || math.Signbit(got) != math.Signbit(want) && !math.IsNaN(want) {
			t.Fatalf("F16ToF32(%#04x) = %g, want %g", h, got, want)
		}
		wantBack := h
		if math.IsNaN(want) {
			wantBack = h&0x8000 | 0x7e00
		}
		if back[i] != wantBack {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x, want %#04x", h, back[i], wantBack)
		}
	}
}

// F16 rounding of random floats against the nearest finite half found by
// binary search over all of them (ties to even, beyond 65520 to Inf).
func TestF16RandomAgainstNearest(t *testing.T) {
	var halves []float64 // non-negative finite halves, ascending; index = bits
	for h := range 0x7c00 {
		halves = append(halves, float64(f16ToF32(uint16(h))))
	}
	r := rand.New(rand.NewPCG(5, 6))
	src := make([]float32, 20000)
	for i := range src {
		// Exponents from far below the subnormals to beyond the range.
		src[i] = float32(r.Float64() * math.Pow(2, float64(r.IntN(50)-30)))
		if i%2 == 1 {
			src[i] = -src[i]
		}
	}
	dst := make([]uint16, len(src))
	F32ToF16(dst, src)
	for i, f := range src {
		a := math.Abs(float64(f))
		var want uint16
		if a >= 65520 {
			want = 0x7c00
		} else {
			j := sort.SearchFloat64s(halves, a) // halves[j-1] < a <= halves[j]
			switch {
			case j == len(halves):
				want = uint16(j - 1)
			case j == 0 || halves[j] == a:
				want = uint16(j)
			default:
				dl, dh := a-halves[j-1], halves[j]-a
				want = uint16(j)
				if dl < dh || (dl == dh && (j-1)&1 == 0) {
					want = uint16(j - 1)
				}
			}
		}
		if f < 0 {
			want |= 0x8000
		}
		if dst[i] != want {
			t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", f, dst[i], want)
		}
	}
}
