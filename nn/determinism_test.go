package nn

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestRMSNormBackwardDeterministic: the norm-weight gradient is the sum of
// per-chunk shares; added in goroutine completion order it changed in the
// last bits from one call to the next, and full fine-tuning runs diverged.
func TestRMSNormBackwardDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // several chunks even on a small machine
	const n, d = 1024, 64
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(r.NormFloat64()) * float32(math.Exp(4*r.Float64()-2))
		}
		return v
	}
	x, dy, w := fill(n*d), fill(n*d), fill(d)
	rstd := make([]float32, n)
	RMSNorm(make([]float32, n*d), rstd, x, w, n, d, 1e-6)
	once := func() []float32 {
		dw := make([]float32, d)
		RMSNormBackward(make([]float32, n*d), dw, dy, x, w, rstd, n, d)
		return dw
	}
	want := once()
	for run := 0; run < 300; run++ {
		got := once()
		for j := range want {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("call %d: dw[%d] = %v, first call gave %v", run, j, got[j], want[j])
			}
		}
	}
}
