package cpu_test

import (
	"math"
	"testing"

	"gotune/compute"
)

// TestAdamW8bitMatchesReference: four 8-bit AdamW steps on the CPU backend
// (blocks split over the cores, a short last block, a bf16 shadow) leave
// weights, codes, scales and shadow bit-identical to the reference
// backend's, from a zero state and with block sizes 256 and 2048.
func TestAdamW8bitMatchesReference(t *testing.T) {
	for _, block := range []int{compute.Adam8Block, 2048} {
		w := newTwin(t)
		n := 70*block + 77
		nb := compute.Adam8Blocks(n, block)
		p := w.rand(compute.F32, n, 0, 1)
		m, v := w.bytes(make([]byte, n)), w.bytes(make([]byte, n))
		ms, vs := w.rand(compute.F32, nb, 0, 0), w.rand(compute.F32, nb, 0, 0)
		sh := w.alloc(compute.BF16, n)
		for step := 1; step <= 4; step++ {
			g := w.rand(compute.F32, n, 0.01, 0.5)
			bc1, bc2 := 1-math.Pow(0.9, float64(step)), math.Sqrt(1-math.Pow(0.999, float64(step)))
			s := compute.AdamStep{GradScale: 0.8, Decay: 0.9999, Beta1: 0.9, Beta2: 0.999, StepSize: float32(1e-3 / bc1), BC2Sqrt: float32(bc2), Eps: 1e-8}
			w.run(func(be compute.Backend, x func(pair) compute.Tensor) {
				be.AdamW8bit(x(p), x(g), x(m), x(v), x(ms), x(vs), x(sh), s, block)
			})
		}
		for _, c := range []struct {
			what string
			p    pair
		}{{"weights", p}, {"m codes", m}, {"v codes", v}, {"m scales", ms}, {"v scales", vs}, {"shadow", sh}} {
			w.same(c.what, c.p, 0)
		}
	}
}
