package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGeGLU checks the forward against the formula in float64 and the
// backward against central differences of the float64 forward, on sizes
// that are not multiples of any block, with values reaching the tails.
func TestGeGLU(t *testing.T) {
	for _, n := range []int{1, 7, 1000, 4099} {
		r := rand.New(rand.NewPCG(uint64(n), 9))
		g, u, da := randSlice(r, n, 4), randSlice(r, n, 1), randSlice(r, n, 1)
		a := make([]float32, n)
		GeGLU(a, g, u)
		dg, du := make([]float32, n), make([]float32, n)
		GeGLUBackward(dg, du, da, g, u)
		f := func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) }
		for i := range g {
			x := float64(g[i])
			if want := f(x) * float64(u[i]); math.Abs(float64(a[i])-want) > 1e-6*(1+math.Abs(want)) {
				t.Fatalf("n=%d: a[%d] = %v, want %v", n, i, a[i], want)
			}
			const h = 1e-5
			wantDg := float64(da[i]) * float64(u[i]) * (f(x+h) - f(x-h)) / (2 * h)
			if math.Abs(float64(dg[i])-wantDg) > 1e-4*(1+math.Abs(wantDg)) {
				t.Fatalf("n=%d: dg[%d] = %v, want %v", n, i, dg[i], wantDg)
			}
			if wantDu := float64(da[i]) * f(x); math.Abs(float64(du[i])-wantDu) > 1e-6*(1+math.Abs(wantDu)) {
				t.Fatalf("n=%d: du[%d] = %v, want %v", n, i, du[i], wantDu)
			}
		}
	}
}

// TestSoftCap: forward against c·tanh(v/c), backward against central
// differences.
func TestSoftCap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	const c = 2.5
	v := randSlice(r, 333, 6)
	y := append([]float32(nil), v...)
	SoftCap(y, c)
	dy := randSlice(r, len(v), 1)
	dv := append([]float32(nil), dy...)
	SoftCapBackward(dv, y, c)
	for i, x := range v {
		want := c * math.Tanh(float64(x)/c)
		if math.Abs(float64(y[i])-want) > 1e-6 {
			t.Fatalf("y[%d] = %v, want %v", i, y[i], want)
		}
		const h = 1e-4
		d := float64(dy[i]) * (c*math.Tanh((float64(x)+h)/c) - c*math.Tanh((float64(x)-h)/c)) / (2 * h)
		if math.Abs(float64(dv[i])-d) > 1e-4*(1+math.Abs(d)) {
			t.Fatalf("dv[%d] = %v, want %v", i, dv[i], d)
		}
	}
}
