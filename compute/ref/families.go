package ref

import (
	"math"

	"gotune/compute"
)

// windowOK is attnOK with a sliding window: key j is seen from query i when
// off + i − j < window (window 0: no window).
func windowOK(b, i, j, tq, tk, off, window int, km, qs, ks *tensor) bool {
	if window > 0 && off+i-j >= window {
		return false
	}
	return attnOK(b, i, j, tq, tk, off, km, qs, ks)
}

// capped is the score the softmax sees: soft-capped when softcap > 0,
// rounded to float32 as a float32 score matrix would hold it.
func capped(s float64, softcap float32) float64 {
	if softcap <= 0 {
		return s
	}
	c := float64(softcap)
	return float64(float32(c * math.Tanh(s/c)))
}

func (b *Backend) AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg compute.Tensor, B, H, tq, tk, off, window int, softcap float32) {
	P, L, S, KM, QS, KS := tt(p), tt(lse), tt(s), tt(kmask), tt(qseg), tt(kseg)
	row := make([]float64, tk)
	for r := 0; r < B*H*tq; r++ {
		bi, i := r/(H*tq), r%tq
		mx := math.Inf(-1)
		for j := range row {
			row[j] = math.Inf(-1)
			if windowOK(bi, i, j, tq, tk, off, window, KM, QS, KS) {
				row[j] = capped(S.get(r*tk+j), softcap)
				mx = math.Max(mx, row[j])
			}
		}
		var sum float64
		for _, v := range row {
			if !math.IsInf(v, -1) {
				sum += math.Exp(v - mx)
			}
		}
		l := math.Inf(-1)
		if !math.IsInf(mx, -1) {
			l = mx + math.Log(sum)
		}
		L.set(r, l)
		for j, v := range row {
			e := 0.0
			if !math.IsInf(l, -1) && !math.IsInf(v, -1) {
				e = math.Exp(v - l)
			}
			P.set(r*tk+j, e)
		}
	}
}

func (b *Backend) AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, B, H, tq, tk, off, window int, softcap float32) {
	P, DS, S, DP, L, D, KM, QS, KS := tt(p), tt(ds), tt(s), tt(dp), tt(lse), tt(dsum), tt(kmask), tt(qseg), tt(kseg)
	for r := 0; r < B*H*tq; r++ {
		bi, i := r/(H*tq), r%tq
		l := L.get(r)
		for j := 0; j < tk; j++ {
			v, f := 0.0, 1.0
			if !math.IsInf(l, -1) && windowOK(bi, i, j, tq, tk, off, window, KM, QS, KS) {
				c := capped(S.get(r*tk+j), softcap)
				v = math.Exp(c - l)
				if softcap > 0 {
					t := c / float64(softcap)
					f = 1 - t*t
				}
			}
			P.set(r*tk+j, v)
			DS.set(r*tk+j, float64(P.F[r*tk+j])*(DP.get(r*tk+j)-D.get(r))*f)
		}
	}
}

// gelu is the tanh approximation of GELU and its derivative.
func gelu(x float64) (y, dy float64) {
	const c, a = 0.7978845608028654, 0.044715 // √(2/π)
	t := math.Tanh(c * (x + a*x*x*x))
	return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*a*x*x)
}

func (b *Backend) GeGLU(a, g, u compute.Tensor) {
	A, G, U := tt(a), tt(g), tt(u)
	for i := range A.F {
		y, _ := gelu(G.get(i))
		A.set(i, float64(float32(y))*U.get(i))
	}
}

func (b *Backend) GeGLUBackward(dg, du, da, g, u compute.Tensor) {
	DG, DU, DA, G, U := tt(dg), tt(du), tt(da), tt(g), tt(u)
	for i := range DA.F {
		y, dy := gelu(G.get(i))
		d := DA.get(i)
		DU.set(i, d*float64(float32(y)))
		DG.set(i, d*U.get(i)*dy)
	}
}

func (b *Backend) SoftCap(y, x compute.Tensor, c float32) {
	Y, X := tt(y), tt(x)
	for i := range Y.F {
		Y.set(i, float64(c)*math.Tanh(X.get(i)/float64(c)))
	}
}

func (b *Backend) SoftCapBackward(dx, dy, y compute.Tensor, c float32) {
	DX, DY, Y := tt(dx), tt(dy), tt(y)
	for i := range DX.F {
		t := Y.get(i) / float64(c)
		DX.set(i, DY.get(i)*(1-t*t))
	}
}

func (b *Backend) Copy2D(dst compute.Tensor, ldd int, src compute.Tensor, lds int, rows, cols int) {
	D, S := tt(dst), tt(src)
	for r := 0; r < rows; r++ {
		for j := 0; j < cols; j++ {
			D.set(r*ldd+j, S.get(r*lds+j))
		}
	}
}
