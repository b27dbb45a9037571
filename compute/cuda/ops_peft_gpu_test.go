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

// TestGPULSTMCell: one LSTM step and its backward pass against float64
// formulas, in both element types, with h's rows strided.
func TestGPULSTMCell(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(25, 26))
	const rows, H, ldh = 3, 37, 80
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 2e-6
		if dt == compute.BF16 {
			tol = 1e-2
		}
		vec := func(n int, s float64) []float32 {
			v := randVec(r, n, s)
			if dt == compute.BF16 {
				v = roundBF16(v)
			}
			return v
		}
		preV, cpV, dhV, dhnV, dcV := vec(rows*4*H, 2), vec(rows*H, 1), vec(rows*ldh, 1), vec(rows*H, 1), vec(rows*H, 1)
		pre, cp := upload(t, d, dt, preV), upload(t, d, dt, cpV)
		gates, _ := d.Alloc(dt, rows*4*H)
		c, _ := d.Alloc(dt, rows*H)
		h := upload(t, d, dt, make([]float32, rows*ldh))
		d.LSTMCell(gates, c, h, ldh, pre, cp, rows, H)
		dpre, _ := d.Alloc(dt, rows*4*H)
		dcp, _ := d.Alloc(dt, rows*H)
		d.LSTMCellBackward(dpre, dcp, upload(t, d, dt, dhV), ldh, upload(t, d, dt, dhnV), upload(t, d, dt, dcV), gates, c, cp, rows, H)
		wc, wh, wd, wdc := make([]float64, rows*H), make([]float64, rows*ldh), make([]float64, rows*4*H), make([]float64, rows*H)
		for i := 0; i < rows; i++ {
			for j := 0; j < H; j++ {
				k := i*4*H + j
				ig, fg, gg, og := sig(float64(preV[k])), sig(float64(preV[k+H])), math.Tanh(float64(preV[k+2*H])), sig(float64(preV[k+3*H]))
				cv := fg*float64(cpV[i*H+j]) + ig*gg
				tc := math.Tanh(cv)
				wc[i*H+j], wh[i*ldh+j] = cv, og*tc
				dh := float64(dhV[i*ldh+j]) + float64(dhnV[i*H+j])
				dc := float64(dcV[i*H+j]) + dh*og*(1-tc*tc)
				wd[k], wd[k+H], wd[k+2*H], wd[k+3*H] = dc*gg*ig*(1-ig), dc*float64(cpV[i*H+j])*fg*(1-fg), dc*ig*(1-gg*gg), dh*tc*og*(1-og)
				wdc[i*H+j] = dc * fg
			}
		}
		check(t, "lstm c "+dt.String(), download(t, d, c), wc, tol)
		check(t, "lstm h "+dt.String(), download(t, d, h), wh, tol)
		check(t, "lstm dpre "+dt.String(), download(t, d, dpre), wd, 5*tol)
		check(t, "lstm dcPrev "+dt.String(), download(t, d, dcp), wdc, 5*tol)
	}
}
