package cpu

import (
	"math"

	"gotune/compute"
)

// The operations of the model families beyond the Llama kind (Gemma 2/3,
// Phi-3) on the CPU backend; the attention ones share AttnSoftmax's code.

// gelu is the tanh approximation of GELU and its derivative.
func gelu(x float64) (y, dy float64) {
	const c, a = 0.7978845608028654, 0.044715 // √(2/π)
	t := math.Tanh(c * (x + a*x*x*x))
	return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*a*x*x)
}

// GeGLU writes a = gelu_tanh(g)·u.
func (d *Device) GeGLU(a, g, u compute.Tensor) {
	defer d.timed("ge_glu")()
	A, G, U := tt(a), tt(g), tt(u)
	elementwise(len(A.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, _ := gelu(float64(G.F[i]))
			A.F[i] = float32(y) * U.F[i]
		}
	})
	stored(A)
}

// GeGLUBackward writes du = da·gelu(g) and dg = da·u·gelu'(g).
func (d *Device) GeGLUBackward(dg, du, da, g, u compute.Tensor) {
	defer d.timed("ge_glubackward")()
	DG, DU, DA, G, U := tt(dg), tt(du), tt(da), tt(g), tt(u)
	elementwise(len(DA.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, dy := gelu(float64(G.F[i]))
			dd, uu := float64(DA.F[i]), float64(U.F[i])
			DU.F[i] = float32(dd * float64(float32(y)))
			DG.F[i] = float32(dd * uu * dy)
		}
	})
	stored(DG)
	stored(DU)
}

// SoftCap writes y = c·tanh(x/c).
func (d *Device) SoftCap(y, x compute.Tensor, c float32) {
	defer d.timed("soft_cap")()
	Y, X := tt(y), tt(x)
	elementwise(len(Y.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			Y.F[i] = capScore(X.F[i], c)
		}
	})
	stored(Y)
}

// SoftCapBackward writes dx = dy·(1 − (y/c)²).
func (d *Device) SoftCapBackward(dx, dy, y compute.Tensor, c float32) {
	defer d.timed("soft_cap_backward")()
	DX, DY, Y := tt(dx), tt(dy), tt(y)
	elementwise(len(DX.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t := float64(Y.F[i]) / float64(c)
			DX.F[i] = float32(float64(DY.F[i]) * (1 - t*t))
		}
	})
	stored(DX)
}

// Copy2D copies a rows×cols block between strided matrices.
func (d *Device) Copy2D(dst compute.Tensor, ldd int, src compute.Tensor, lds int, rows, cols int) {
	defer d.timed("copy2_d")()
	D, S := tt(dst), tt(src)
	if cols == 1 {
		// A strided column (an expert's part of stacked LoRA matrices):
		// an element per row, too little for a copy call each.
		rowwise(rows, 1, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				D.F[r*ldd] = S.F[r*lds]
			}
		})
		stored(D)
		return
	}
	rowwise(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(D.F[r*ldd:r*ldd+cols], S.F[r*lds:r*lds+cols])
		}
	})
	stored(D)
}
