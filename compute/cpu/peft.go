package cpu

import (
	"fmt"
	"math"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// The operations of the PEFT methods beyond LoRA (bottleneck adapters,
// prompt encoders) and SGD on the CPU backend, each element in float64 as
// the reference backend computes it.

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// activation returns f and its derivative, or an error for an unknown f.
func activation(f compute.Activation) (func(x float64) (y, dy float64), error) {
	switch f {
	case compute.ReLU:
		return func(x float64) (float64, float64) {
			if x > 0 {
				return x, 1
			}
			return 0, 0
		}, nil
	case compute.Tanh:
		return func(x float64) (float64, float64) {
			t := math.Tanh(x)
			return t, 1 - t*t
		}, nil
	case compute.SiLU:
		return func(x float64) (float64, float64) {
			s := sigmoid(x)
			return x * s, s * (1 + x*(1-s))
		}, nil
	case compute.GELU:
		return func(x float64) (float64, float64) {
			c := 0.5 * (1 + math.Erf(x/math.Sqrt2))
			return x * c, c + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
		}, nil
	case compute.GELUTanh:
		return gelu, nil
	}
	return nil, fmt.Errorf("cpu: unknown activation %v", f)
}

// Activate writes y = f(x).
func (d *Device) Activate(y, x compute.Tensor, f compute.Activation) {
	defer d.timed("activate")()
	Y, X := tt(y), tt(x)
	fn, err := activation(f)
	if err != nil {
		d.fail(err)
		return
	}
	elementwise(len(Y.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v, _ := fn(float64(X.F[i]))
			Y.F[i] = float32(v)
		}
	})
	stored(Y)
}

// ActivateBackward writes dx = dy·f'(x).
func (d *Device) ActivateBackward(dx, dy, x compute.Tensor, f compute.Activation) {
	defer d.timed("activate_backward")()
	DX, DY, X := tt(dx), tt(dy), tt(x)
	fn, err := activation(f)
	if err != nil {
		d.fail(err)
		return
	}
	elementwise(len(DX.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, g := fn(float64(X.F[i]))
			DX.F[i] = float32(float64(DY.F[i]) * g)
		}
	})
	stored(DX)
}

// SGD updates p as torch.optim.SGD.
func (d *Device) SGD(p, g, buf, shadow compute.Tensor, s compute.SGDStep) {
	defer d.timed("sgd")()
	P, G, M, SH := tt(p), tt(g), tt(buf), tt(shadow)
	if s.Momentum != 0 && M == nil {
		d.fail(fmt.Errorf("cpu: sgd with momentum %g and no buffer", s.Momentum))
		return
	}
	elementwise(len(P.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := G.F[i] * s.GradScale
			if s.WeightDecay != 0 {
				v += s.WeightDecay * P.F[i]
			}
			if s.Momentum != 0 {
				if s.First {
					M.F[i] = v
				} else {
					M.F[i] = M.F[i]*s.Momentum + (1-s.Dampening)*v
				}
				if s.Nesterov {
					v += s.Momentum * M.F[i]
				} else {
					v = M.F[i]
				}
			}
			P.F[i] -= s.LR * v
			if SH != nil {
				SH.F[i] = P.F[i]
				if SH.DT == compute.BF16 {
					SH.F[i] = hostmem.RoundBF16(P.F[i])
				}
			}
		}
	})
}

// LSTMCell runs one step of rows LSTM cells (torch's gate order i, f, g, o).
func (d *Device) LSTMCell(gates, c, h compute.Tensor, ldh int, pre, cPrev compute.Tensor, rows, hidden int) {
	defer d.timed("lstmcell")()
	G, C, Hh, P, CP := tt(gates), tt(c), tt(h), tt(pre), tt(cPrev)
	H := hidden
	for r := 0; r < rows; r++ {
		base := r * 4 * H
		for j := 0; j < H; j++ {
			i := sigmoid(float64(P.F[base+j]))
			f := sigmoid(float64(P.F[base+H+j]))
			g := math.Tanh(float64(P.F[base+2*H+j]))
			o := sigmoid(float64(P.F[base+3*H+j]))
			G.F[base+j], G.F[base+H+j], G.F[base+2*H+j], G.F[base+3*H+j] = float32(i), float32(f), float32(g), float32(o)
			cv := i * g
			if CP != nil {
				cv += f * float64(CP.F[r*H+j])
			}
			C.F[r*H+j] = float32(cv)
			if C.DT == compute.BF16 {
				C.F[r*H+j] = hostmem.RoundBF16(C.F[r*H+j])
			}
			Hh.F[r*ldh+j] = float32(o * math.Tanh(float64(C.F[r*H+j])))
		}
	}
	stored(G)
	stored(Hh)
}

// LSTMCellBackward is LSTMCell's backward pass.
func (d *Device) LSTMCellBackward(dpre, dcPrev, dh compute.Tensor, ldh int, dhNext, dc, gates, c, cPrev compute.Tensor, rows, hidden int) {
	defer d.timed("lstmcell_backward")()
	DP, DCP, DH, DHN, DC, G, C, CP := tt(dpre), tt(dcPrev), tt(dh), tt(dhNext), tt(dc), tt(gates), tt(c), tt(cPrev)
	H := hidden
	for r := 0; r < rows; r++ {
		base := r * 4 * H
		for j := 0; j < H; j++ {
			i, f, g, o := float64(G.F[base+j]), float64(G.F[base+H+j]), float64(G.F[base+2*H+j]), float64(G.F[base+3*H+j])
			dd := float64(DH.F[r*ldh+j])
			if DHN != nil {
				dd += float64(DHN.F[r*H+j])
			}
			tc := math.Tanh(float64(C.F[r*H+j]))
			dcv := dd * o * (1 - tc*tc)
			if DC != nil {
				dcv += float64(DC.F[r*H+j])
			}
			var cp float64
			if CP != nil {
				cp = float64(CP.F[r*H+j])
			}
			DP.F[base+j] = float32(dcv * g * i * (1 - i))
			DP.F[base+H+j] = float32(dcv * cp * f * (1 - f))
			DP.F[base+2*H+j] = float32(dcv * i * (1 - g*g))
			DP.F[base+3*H+j] = float32(dd * tc * o * (1 - o))
			if DCP != nil {
				DCP.F[r*H+j] = float32(dcv * f)
			}
		}
	}
	stored(DP)
	stored(DCP)
}
