package cpu_test

import (
	"math"
	"math/rand"
	"syscall"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu"
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

// BenchmarkAdamW8bit times the 8-bit update against the float one over 1M
// values (the CPU time per element is what a training step pays; run with
// -count and compare the two interleaved on a shared machine).
func BenchmarkAdamW8bit(b *testing.B) {
	const n = 1 << 20
	d := cpu.Open()
	alloc := func(dt compute.DType, n int) compute.Tensor {
		x, err := d.Alloc(dt, n)
		if err != nil {
			b.Fatal(err)
		}
		d.Zero(x)
		return x
	}
	p, g := alloc(compute.F32, n), alloc(compute.F32, n)
	gv := make([]float32, n)
	r := rand.New(rand.NewSource(1))
	for i := range gv {
		gv[i] = float32(r.NormFloat64() * 0.01)
	}
	d.Upload(g, gv)
	s := compute.AdamStep{GradScale: 1, Decay: 1, Beta1: 0.9, Beta2: 0.999, StepSize: 1e-3, BC2Sqrt: 0.03, Eps: 1e-8}
	// CPU time per element: wall time is unreliable on a shared machine.
	timed := func(b *testing.B, op func()) {
		b.ResetTimer()
		c0 := cpuTime()
		for range b.N {
			op()
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/n, "cpu-ns/value")
	}
	b.Run("f32", func(b *testing.B) {
		m, v := alloc(compute.F32, n), alloc(compute.F32, n)
		timed(b, func() { d.AdamW(p, g, m, v, nil, s) })
	})
	b.Run("8bit", func(b *testing.B) {
		nb := compute.Adam8Blocks(n, compute.Adam8Block)
		m, v, ms, vs := alloc(compute.U8, n), alloc(compute.U8, n), alloc(compute.F32, nb), alloc(compute.F32, nb)
		timed(b, func() { d.AdamW8bit(p, g, m, v, ms, vs, nil, s, compute.Adam8Block) })
	})
}

// cpuTime is the process's user and system time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
