//go:build amd64 && !amd64.v3

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// todaysAdamW is the CPU backend's AdamW loop as it was before the kernels,
// word for word. Go fuses its products and sums into FMAs where FMA is
// baseline (GOAMD64=v3, arm64), hence the build constraint.
func todaysAdamW(P, G, M, V, SH []float32, bf16 bool, s compute.AdamStep) {
	for i := range P {
		gi := G[i] * s.GradScale
		mi := s.Beta1*M[i] + (1-s.Beta1)*gi
		vi := s.Beta2*V[i] + (1-s.Beta2)*gi*gi
		M[i], V[i] = mi, vi
		pi := P[i]*s.Decay - s.StepSize*mi/(float32(math.Sqrt(float64(vi)))/s.BC2Sqrt+s.Eps)
		P[i] = pi
		if SH != nil {
			SH[i] = pi
			if bf16 {
				SH[i] = hostmem.RoundBF16(pi)
			}
		}
	}
}

// TestAdamWSlicesMatchesTodaysLoop: adamWSlices (and so the kernels) gives
// the old loop's bits, NaN payloads included, on every kind of input.
func TestAdamWSlicesMatchesTodaysLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, kind := range adamWKinds {
		for _, mode := range shadowModes {
			a := adamWInputs(r, kind, 4099)
			b := a.clone()
			for si, s := range adamWSteps() {
				adamWSlices(a.p, a.g, a.m, a.v, a.sh, mode, s)
				sh := b.sh
				if mode == shadowNone {
					sh = nil
				}
				todaysAdamW(b.p, b.g, b.m, b.v, sh, mode == shadowBF16, s)
				sameAdamW(t, fmt.Sprintf("%s, shadow mode %d, step %d", kind, mode, si), a, b)
			}
		}
	}
}
