package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// TestActivations: each activation's derivative agrees with a central
// finite difference of the function, and the functions hit known values.
func TestActivations(t *testing.T) {
	b := New()
	xs := []float32{-3.5, -1, -0.25, 0.5, 1.25, 2.75}
	known := map[compute.Activation][]float64{
		compute.ReLU: {0, 0, 0, 0.5, 1.25, 2.75},
		compute.Tanh: {math.Tanh(-3.5), math.Tanh(-1), math.Tanh(-0.25), math.Tanh(0.5), math.Tanh(1.25), math.Tanh(2.75)},
	}
	x, _ := b.Alloc(compute.F32, len(xs))
	b.Upload(x, xs)
	ones := make([]float32, len(xs))
	for i := range ones {
		ones[i] = 1
	}
	dy, _ := b.Alloc(compute.F32, len(xs))
	b.Upload(dy, ones)
	y, _ := b.Alloc(compute.F32, len(xs))
	dx, _ := b.Alloc(compute.F32, len(xs))
	for _, f := range []compute.Activation{compute.ReLU, compute.Tanh, compute.SiLU, compute.GELU, compute.GELUTanh} {
		b.Activate(y, x, f)
		b.ActivateBackward(dx, dy, x, f)
		got, grad := make([]float32, len(xs)), make([]float32, len(xs))
		if err := b.Download(got, y); err != nil {
			t.Fatal(err)
		}
		b.Download(grad, dx)
		for i, v := range xs {
			if w, ok := known[f]; ok && math.Abs(float64(got[i])-w[i]) > 1e-6 {
				t.Errorf("%v(%g) = %g, want %g", f, v, got[i], w[i])
			}
			const h = 1e-4
			fp, _, _ := activate(f, float64(v)+h)
			fm, _, _ := activate(f, float64(v)-h)
			if fd := (fp - fm) / (2 * h); math.Abs(fd-float64(grad[i])) > 1e-5*max(1, math.Abs(fd)) {
				t.Errorf("%v'(%g) = %g, finite difference %g", f, v, grad[i], fd)
			}
		}
	}
	b.Activate(y, x, compute.Activation(99))
	if b.Err() == nil {
		t.Error("an unknown activation is not an error")
	}
}

// TestSGD: the update follows torch.optim.SGD's formulas over three steps,
// with momentum, dampening and Nesterov.
func TestSGD(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 37
	for _, c := range []struct {
		mom, damp float32
		nesterov  bool
	}{{0, 0, false}, {0.9, 0.25, false}, {0.8, 0, true}} {
		b := New()
		pv, gv := make([]float32, n), make([]float32, n)
		for i := range pv {
			pv[i], gv[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		p, _ := b.Alloc(compute.F32, n)
		g, _ := b.Alloc(compute.F32, n)
		buf, _ := b.Alloc(compute.F32, n)
		shadow, _ := b.Alloc(compute.BF16, n)
		b.Upload(p, pv)
		b.Upload(g, gv)
		wp, wb := make([]float64, n), make([]float64, n)
		for i := range wp {
			wp[i] = float64(pv[i])
		}
		for step := 0; step < 3; step++ {
			b.SGD(p, g, buf, shadow, compute.SGDStep{GradScale: 0.5, LR: 0.1, WeightDecay: 0.01, Momentum: c.mom, Dampening: c.damp, Nesterov: c.nesterov, First: step == 0})
			for i := range wp {
				d := 0.5*float64(gv[i]) + 0.01*wp[i]
				if c.mom != 0 {
					if step == 0 {
						wb[i] = d
					} else {
						wb[i] = wb[i]*float64(c.mom) + (1-float64(c.damp))*d
					}
					if c.nesterov {
						d += float64(c.mom) * wb[i]
					} else {
						d = wb[i]
					}
				}
				wp[i] -= 0.1 * d
			}
		}
		got, sh := make([]float32, n), make([]float32, n)
		b.Download(got, p)
		b.Download(sh, shadow)
		for i := range got {
			if math.Abs(float64(got[i])-wp[i]) > 1e-5 || math.Abs(float64(sh[i])-wp[i]) > 1e-2*max(1, math.Abs(wp[i])) {
				t.Fatalf("momentum %g nesterov %v: p[%d] = %g (shadow %g), want %g", c.mom, c.nesterov, i, got[i], sh[i], wp[i])
			}
		}
	}
}
