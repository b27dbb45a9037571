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

// TestLSTMCell: the cell's outputs follow torch's formulas, and its
// backward pass is the gradient of L = Σ wh·h + Σ wc·c (with a gradient
// dhNext added to dh) by central finite differences in pre and cPrev.
func TestLSTMCell(t *testing.T) {
	const rows, H, ldh = 2, 3, 5
	r := rand.New(rand.NewPCG(3, 4))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	preV, cpV, wh, wc, dhn := vec(rows*4*H), vec(rows*H), vec(rows*ldh), vec(rows*H), vec(rows*H)
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	// loss in float64 from the formulas
	loss := func(pre, cp []float64) float64 {
		var l float64
		for i := 0; i < rows; i++ {
			for j := 0; j < H; j++ {
				b := i * 4 * H
				ig, fg, gg, og := sig(pre[b+j]), sig(pre[b+H+j]), math.Tanh(pre[b+2*H+j]), sig(pre[b+3*H+j])
				c := fg*cp[i*H+j] + ig*gg
				h := og * math.Tanh(c)
				l += float64(wh[i*ldh+j])*h + float64(dhn[i*H+j])*h + float64(wc[i*H+j])*c
			}
		}
		return l
	}
	b := New()
	up := func(v []float32) compute.Tensor {
		x, _ := b.Alloc(compute.F32, len(v))
		b.Upload(x, v)
		return x
	}
	pre, cp := up(preV), up(cpV)
	gates, _ := b.Alloc(compute.F32, rows*4*H)
	c, _ := b.Alloc(compute.F32, rows*H)
	h, _ := b.Alloc(compute.F32, rows*ldh)
	b.LSTMCell(gates, c, h, ldh, pre, cp, rows, H)
	hv, cv := make([]float32, rows*ldh), make([]float32, rows*H)
	b.Download(hv, h)
	b.Download(cv, c)
	for i := 0; i < rows; i++ {
		for j := 0; j < H; j++ {
			k := i*4*H + j
			ig, fg, gg, og := sig(float64(preV[k])), sig(float64(preV[k+H])), math.Tanh(float64(preV[k+2*H])), sig(float64(preV[k+3*H]))
			wantC := fg*float64(cpV[i*H+j]) + ig*gg
			if math.Abs(float64(cv[i*H+j])-wantC) > 1e-6 || math.Abs(float64(hv[i*ldh+j])-og*math.Tanh(wantC)) > 1e-6 {
				t.Fatalf("cell %d,%d: c %g h %g, want %g %g", i, j, cv[i*H+j], hv[i*ldh+j], wantC, og*math.Tanh(wantC))
			}
		}
	}
	dpre, _ := b.Alloc(compute.F32, rows*4*H)
	dcp, _ := b.Alloc(compute.F32, rows*H)
	b.LSTMCellBackward(dpre, dcp, up(wh), ldh, up(dhn), up(wc), gates, c, cp, rows, H)
	gp, gc := make([]float32, rows*4*H), make([]float32, rows*H)
	b.Download(gp, dpre)
	b.Download(gc, dcp)
	p64, c64 := make([]float64, len(preV)), make([]float64, len(cpV))
	for i, v := range preV {
		p64[i] = float64(v)
	}
	for i, v := range cpV {
		c64[i] = float64(v)
	}
	const eps = 1e-5
	check := func(name string, x []float64, got []float32) {
		for i := range x {
			x0 := x[i]
			x[i] = x0 + eps
			lp := loss(p64, c64)
			x[i] = x0 - eps
			lm := loss(p64, c64)
			x[i] = x0
			if fd := (lp - lm) / (2 * eps); math.Abs(fd-float64(got[i])) > 1e-5*max(1, math.Abs(fd)) {
				t.Errorf("d%s[%d] = %g, finite difference %g", name, i, got[i], fd)
			}
		}
	}
	check("pre", p64, gp)
	check("cPrev", c64, gc)
	// Without a previous cell (the first step) cPrev's gate has no
	// gradient.
	b.LSTMCellBackward(dpre, nil, up(wh), ldh, nil, nil, gates, c, nil, rows, H)
	b.Download(gp, dpre)
	for i := 0; i < rows; i++ {
		for j := 0; j < H; j++ {
			if gp[i*4*H+H+j] != 0 {
				t.Errorf("forget gate gradient %g without a previous cell", gp[i*4*H+H+j])
			}
		}
	}
}
