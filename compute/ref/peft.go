package ref

import (
	"fmt"
	"math"

	"gotune/compute"
)

// activate returns f(x) and f'(x) in float64.
func activate(f compute.Activation, x float64) (y, dy float64, err error) {
	switch f {
	case compute.ReLU:
		if x > 0 {
			return x, 1, nil
		}
		return 0, 0, nil
	case compute.Tanh:
		t := math.Tanh(x)
		return t, 1 - t*t, nil
	case compute.SiLU:
		s := sigmoid(x)
		return x * s, s * (1 + x*(1-s)), nil
	case compute.GELU:
		c := 0.5 * (1 + math.Erf(x/math.Sqrt2))
		return x * c, c + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi), nil
	case compute.GELUTanh:
		const k = 0.7978845608028654 // √(2/π)
		t := math.Tanh(k * (x + 0.044715*x*x*x))
		return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*k*(1+3*0.044715*x*x), nil
	}
	return 0, 0, fmt.Errorf("ref: unknown activation %v", f)
}

func (b *Backend) Activate(y, x compute.Tensor, f compute.Activation) {
	Y, X := tt(y), tt(x)
	for i := range Y.F {
		v, _, err := activate(f, X.get(i))
		if err != nil {
			b.fail(err)
			return
		}
		Y.set(i, v)
	}
}

func (b *Backend) ActivateBackward(dx, dy, x compute.Tensor, f compute.Activation) {
	DX, DY, X := tt(dx), tt(dy), tt(x)
	for i := range DX.F {
		_, d, err := activate(f, X.get(i))
		if err != nil {
			b.fail(err)
			return
		}
		DX.set(i, DY.get(i)*d)
	}
}

func (b *Backend) SGD(p, g, buf, shadow compute.Tensor, s compute.SGDStep) {
	P, G, M, SH := tt(p), tt(g), tt(buf), tt(shadow)
	if s.Momentum != 0 && M == nil {
		b.fail(fmt.Errorf("ref: sgd with momentum %g and no buffer", s.Momentum))
		return
	}
	for i := range P.F {
		d := G.F[i] * s.GradScale
		if s.WeightDecay != 0 {
			d += s.WeightDecay * P.F[i]
		}
		if s.Momentum != 0 {
			if s.First {
				M.F[i] = d
			} else {
				M.F[i] = M.F[i]*s.Momentum + (1-s.Dampening)*d
			}
			if s.Nesterov {
				d += s.Momentum * M.F[i]
			} else {
				d = M.F[i]
			}
		}
		P.F[i] -= s.LR * d
		if SH != nil {
			SH.set(i, float64(P.F[i]))
		}
	}
}

func (b *Backend) LSTMCell(gates, c, h compute.Tensor, ldh int, pre, cPrev compute.Tensor, rows, hidden int) {
	G, C, Hh, P, CP := tt(gates), tt(c), tt(h), tt(pre), tt(cPrev)
	H := hidden
	for r := 0; r < rows; r++ {
		for j := 0; j < H; j++ {
			base := r * 4 * H
			i := sigmoid(P.get(base + j))
			f := sigmoid(P.get(base + H + j))
			g := math.Tanh(P.get(base + 2*H + j))
			o := sigmoid(P.get(base + 3*H + j))
			G.set(base+j, i)
			G.set(base+H+j, f)
			G.set(base+2*H+j, g)
			G.set(base+3*H+j, o)
			cv := i * g
			if CP != nil {
				cv += f * CP.get(r*H+j)
			}
			C.set(r*H+j, cv)
			Hh.set(r*ldh+j, o*math.Tanh(C.get(r*H+j)))
		}
	}
}

func (b *Backend) LSTMCellBackward(dpre, dcPrev, dh compute.Tensor, ldh int, dhNext, dc, gates, c, cPrev compute.Tensor, rows, hidden int) {
	DP, DCP, DH, DHN, DC, G, C, CP := tt(dpre), tt(dcPrev), tt(dh), tt(dhNext), tt(dc), tt(gates), tt(c), tt(cPrev)
	H := hidden
	for r := 0; r < rows; r++ {
		for j := 0; j < H; j++ {
			base := r * 4 * H
			i, f, g, o := G.get(base+j), G.get(base+H+j), G.get(base+2*H+j), G.get(base+3*H+j)
			d := DH.get(r*ldh + j)
			if DHN != nil {
				d += DHN.get(r*H + j)
			}
			tc := math.Tanh(C.get(r*H + j))
			dcv := d * o * (1 - tc*tc)
			if DC != nil {
				dcv += DC.get(r*H + j)
			}
			var cp float64
			if CP != nil {
				cp = CP.get(r*H + j)
			}
			DP.set(base+j, dcv*g*i*(1-i))
			DP.set(base+H+j, dcv*cp*f*(1-f))
			DP.set(base+2*H+j, dcv*i*(1-g*g))
			DP.set(base+3*H+j, d*tc*o*(1-o))
			if DCP != nil {
				DCP.set(r*H+j, dcv*f)
			}
		}
	}
}
