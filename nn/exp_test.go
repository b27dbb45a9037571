package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExpAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	worst := 0.0
	check := func(x float32) {
		got := float64(Exp(x))
		want := math.Exp(float64(x))
		if want < 1.2e-38 { // below the normal range: flushing to zero is fine
			if math.Abs(got-want) > 1.2e-38 {
				t.Fatalf("Exp(%v) = %v, want %v", x, got, want)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
		if rel > 3e-7 {
			t.Fatalf("Exp(%v) = %v, want %v (rel %g)", x, got, want, rel)
		}
	}
	for i := 0; i < 200000; i++ {
		check(float32(r.Float64()*176 - 88))
	}
	for _, x := range []float32{0, -0, 1, -1, 0.5, -87, 88, 1e-8, -1e-8, 10, -10, 0.34657359, -0.34657359} {
		check(x)
	}
	if Exp(float32(math.Inf(-1))) != 0 || Exp(-100) != 0 {
		t.Error("exp of very negative values must be 0")
	}
	if !math.IsInf(float64(Exp(100)), 1) {
		t.Error("exp(100) must overflow to +Inf")
	}
	if x := Exp(float32(math.NaN())); x == x {
		t.Error("exp(NaN) must be NaN")
	}
	t.Logf("worst relative error %.3g", worst)
}

func BenchmarkExp(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i%200)/10 - 15
	}
	b.ResetTimer()
	var s float32
	for i := 0; i < b.N; i++ {
		for _, v := range x {
			s += Exp(v)
		}
	}
	_ = s
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/exp")
}

func BenchmarkMathExp(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i%200)/10 - 15
	}
	b.ResetTimer()
	var s float32
	for i := 0; i < b.N; i++ {
		for _, v := range x {
			s += float32(math.Exp(float64(v)))
		}
	}
	_ = s
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/exp")
}
