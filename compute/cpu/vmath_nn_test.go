package cpu_test

import (
	"math"
	"testing"

	"gotune/compute/cpu"
	"gotune/nn"
)

// The vector exponential and nn.Exp share one algorithm, so they agree to a
// couple of ulp wherever nn.Exp is finite and correct. nn.Exp overflows to
// +Inf early for x in [88.38, 88.72] (2^128 is not a float32); skip those.
func TestExpMatchesNN(t *testing.T) {
	var xs []float32
	for x := float32(-87.3); x < 88.37; x += 0.00093 {
		xs = append(xs, x)
	}
	xs = append(xs, float32(math.Inf(-1)), -100, -87.34, 88.73, 1000, float32(math.Inf(1)), 0)
	got := make([]float32, len(xs))
	cpu.ExpF32(got, xs)
	worst := 0.0
	for i, x := range xs {
		want := nn.Exp(x)
		if got[i] == want {
			continue
		}
		d := math.Abs(float64(got[i])-float64(want)) / float64(want)
		if math.IsInf(float64(want), 0) || want == 0 || d > 3e-7 {
			t.Fatalf("ExpF32(%v) = %v, nn.Exp = %v", x, got[i], want)
		}
		worst = max(worst, d)
	}
	t.Logf("%d points: largest relative difference from nn.Exp %.3g", len(xs), worst)
}

// BenchmarkScalarExpLoop is the baseline the vector kernels replace.
func BenchmarkScalarExpLoop(b *testing.B) {
	const n = 4096
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i%97) / 10
	}
	b.Run("exp", func(b *testing.B) {
		for b.Loop() {
			for i, x := range src {
				dst[i] = nn.Exp(x)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elt")
	})
	b.Run("silumul", func(b *testing.B) {
		for b.Loop() {
			for i, x := range src {
				dst[i] = x * nn.Sigmoid(x) * src[i]
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elt")
	})
}
