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
