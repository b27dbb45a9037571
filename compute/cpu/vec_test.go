package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestVectorKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 130, 257, 1000} {
		x, y := randSlice(r, n), randSlice(r, n+3) // y longer: only len(x) is used
		var dot, mag float64
		for i := range n {
			dot += float64(x[i]) * float64(y[i])
			mag += math.Abs(float64(x[i]) * float64(y[i]))
		}
		tol := 1e-6*float64(n+1)*mag + 1e-30
		if got := Dot(x, y); math.Abs(float64(got)-dot) > tol {
			t.Errorf("n=%d: Dot = %g, want %g", n, got, dot)
		}

		const alpha = -0.75
		want := make([]float64, len(y))
		for i := range y {
			want[i] = float64(y[i])
			if i < n {
				want[i] += alpha * float64(x[i])
			}
		}
		Axpy(alpha, x, y)
		for i := range y {
			if math.Abs(float64(y[i])-want[i]) > 1e-6*(math.Abs(want[i])+1) {
				t.Fatalf("n=%d: Axpy: y[%d] = %g, want %g", n, i, y[i], want[i])
			}
		}

		orig := append([]float32(nil), x...)
		Scale(1.5, x)
		for i := range x {
			if x[i] != 1.5*orig[i] {
				t.Fatalf("n=%d: Scale: x[%d] = %g, want %g", n, i, x[i], 1.5*orig[i])
			}
		}
	}
}

func TestVectorKernelsShortPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"Dot":  func() { Dot(make([]float32, 9), make([]float32, 8)) },
		"Axpy": func() { Axpy(1, make([]float32, 9), make([]float32, 8)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with a short second operand did not panic", name)
				}
			}()
			f()
		}()
	}
}
