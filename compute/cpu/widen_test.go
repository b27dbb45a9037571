package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/dtype"
)

// TestWidenBF16: the vector widening gives dtype's bits for every length
// around its 16-word blocks, at unaligned starts, NaN and infinities
// included, and writes nothing past the end.
func TestWidenBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]uint16, 80)
	for i := range src {
		src[i] = uint16(r.Uint32())
	}
	src[3], src[17], src[40] = 0x7fc1, 0xff80, 0x8000
	for off := 0; off < 3; off++ {
		for n := 0; off+n <= len(src); n++ {
			want := make([]float32, n)
			dtype.BF16ToF32(want, src[off:off+n])
			got := make([]float32, n+1)
			got[n] = 42
			widenBF16(got[:n], src[off:off+n])
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n %d, offset %d: element %d is %#x, want %#x", n, off, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
			if got[n] != 42 {
				t.Fatalf("n %d: wrote past the end", n)
			}
		}
	}
}

// A decode step over bf16 weights (few rows against a transposed bf16 B:
// the row-dot path) allocates nothing once warm.
func TestRowDotsBF16Allocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	const m, n, k = 2, 512, 300
	r := rand.New(rand.NewPCG(3, 4))
	a, c := make([]float32, m*k), make([]float32, m*n)
	for i := range a {
		a[i] = r.Float32()
	}
	b := make([]uint16, n*k)
	for _, threads := range []int{1, 2} {
		allocs := testing.AllocsPerRun(20, func() {
			SgemmBF16BOn(threads, false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("threads=%d: %v allocations per call, want 0", threads, allocs)
		}
	}
}
