//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// actF64 is f and f' in float64, written from the formulas.
func actF64(f compute.Activation, x float64) (float64, float64) {
	switch f {
	case compute.ReLU:
		if x > 0 {
			return x, 1
		}
		return 0, 0
	case compute.Tanh:
		return math.Tanh(x), 1 - math.Tanh(x)*math.Tanh(x)
	case compute.SiLU:
		s := 1 / (1 + math.Exp(-x))
		return x * s, s + x*s*(1-s)
	case compute.GELU:
		phi := math.Exp(-x*x/2) / math.Sqrt(2*math.Pi)
		c := 0.5 * (1 + math.Erf(x/math.Sqrt2))
		return x * c, c + x*phi
	}
	k := math.Sqrt(2 / math.Pi)
	u := k * (x + 0.044715*x*x*x)
	t := math.Tanh(u)
	return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*k*(1+3*0.044715*x*x)
}

// TestGPUActivations: every activation and its backward against float64, in
// both element types, on an odd length.
func TestGPUActivations(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(21, 22))
	n := 4099
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 2e-6
		if dt == compute.BF16 {
			tol = 5e-3
		}
		xv, dyv := randVec(r, n, 4), randVec(r, n, 1)
		if dt == compute.BF16 {
			xv, dyv = roundBF16(xv), roundBF16(dyv)
		}
		x, dy := upload(t, d, dt, xv), upload(t, d, dt, dyv)
		y, _ := d.Alloc(dt, n)
		dx, _ := d.Alloc(dt, n)
		for _, f := range []compute.Activation{compute.ReLU, compute.Tanh, compute.SiLU, compute.GELU, compute.GELUTanh} {
			d.Activate(y, x, f)
			d.ActivateBackward(dx, dy, x, f)
			wy, wdx := make([]float64, n), make([]float64, n)
			for i := range wy {
				v, g := actF64(f, float64(xv[i]))
				wy[i], wdx[i] = v, g*float64(dyv[i])
			}
			check(t, f.String()+" "+dt.String(), download(t, d, y), wy, tol)
			check(t, f.String()+" backward "+dt.String(), download(t, d, dx), wdx, tol)
		}
		// In place: dx may be dy.
		d.ActivateBackward(dy, dy, x, compute.Tanh)
		w := make([]float64, n)
		for i := range w {
			_, g := actF64(compute.Tanh, float64(xv[i]))
			w[i] = g * float64(dyv[i])
		}
		check(t, "tanh backward in place "+dt.String(), download(t, d, dy), w, tol)
	}
}

// TestGPUSGD: three SGD updates (clipping factor, weight decay, momentum
// with dampening, plain and Nesterov) against float64.
func TestGPUSGD(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(23, 24))
	n := 3001
	for _, c := range []struct {
		mom, damp float64
		nesterov  bool
	}{{0, 0, false}, {0.9, 0.1, false}, {0.9, 0, true}} {
		pv, gv := randVec(r, n, 1), randVec(r, n, 1)
		p, g := upload(t, d, compute.F32, pv), upload(t, d, compute.F32, gv)
		var buf compute.Tensor
		if c.mom != 0 {
			buf = upload(t, d, compute.F32, make([]float32, n))
		}
		shadow, _ := d.Alloc(compute.BF16, n)
		const lr, wd, gs = 0.05, 0.01, 0.5
		wp, wb := make([]float64, n), make([]float64, n)
		for i := range wp {
			wp[i] = float64(pv[i])
		}
		for step := 0; step < 3; step++ {
			d.SGD(p, g, buf, shadow, compute.SGDStep{GradScale: gs, LR: lr, WeightDecay: wd, Momentum: float32(c.mom),
				Dampening: float32(c.damp), Nesterov: c.nesterov, First: step == 0})
			for i := range wp {
				dd := gs*float64(gv[i]) + wd*wp[i]
				if c.mom != 0 {
					if step == 0 {
						wb[i] = dd
					} else {
						wb[i] = wb[i]*c.mom + (1-c.damp)*dd
					}
					if c.nesterov {
						dd += c.mom * wb[i]
					} else {
						dd = wb[i]
					}
				}
				wp[i] -= lr * dd
			}
		}
		check(t, "sgd", download(t, d, p), wp, 1e-6)
		check(t, "sgd bf16 shadow", download(t, d, shadow), wp, 5e-3)
		if buf != nil {
			check(t, "sgd momentum buffer", download(t, d, buf), wb, 1e-6)
		}
	}
}
