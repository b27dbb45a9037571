package nn

import "math"

// GELU with the tanh approximation (PyTorch's approximate="tanh", Gemma's
// gelu_pytorch_tanh): gelu(x) = x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³))).
// Computed per element in float64 and rounded: the MLP's products dominate
// the time, and the rounding then matches a float32 reference to the last
// bit or two.
const (
	geluC = 0.7978845608028654 // √(2/π)
	geluA = 0.044715
)

func gelu(x float64) (y, dy float64) {
	u := geluC * (x + geluA*x*x*x)
	t := math.Tanh(u)
	y = 0.5 * x * (1 + t)
	dy = 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*geluA*x*x)
	return y, dy
}

// GeGLU computes a = gelu_tanh(g)·u elementwise.
func GeGLU(a, g, u []float32) {
	rows(len(a), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, _ := gelu(float64(g[i]))
			a[i] = float32(y) * u[i]
		}
	})
}

// GeGLUBackward writes the gradients of g and u from da (overwriting dg and
// du).
func GeGLUBackward(dg, du, da, g, u []float32) {
	rows(len(da), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, dy := gelu(float64(g[i]))
			du[i] = da[i] * float32(y)
			dg[i] = float32(float64(da[i]) * float64(u[i]) * dy)
		}
	})
}

// SoftCap replaces each value v by c·tanh(v/c) (Gemma's logit soft-capping).
func SoftCap(x []float32, c float32) {
	rows(len(x), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] = float32(float64(c) * math.Tanh(float64(x[i])/float64(c)))
		}
	})
}

// SoftCapBackward turns, in place, the gradient of capped values y = c·tanh(v/c)
// into the gradient of v, given the capped values: dv = dy·(1 − (y/c)²).
func SoftCapBackward(dy, y []float32, c float32) {
	rows(len(dy), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t := y[i] / c
			dy[i] *= 1 - t*t
		}
	})
}
