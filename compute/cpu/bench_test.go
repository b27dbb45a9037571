package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkSgemm reports GFLOP/s for each implementation and thread count on
// square sizes and a transformer-like projection (tokens×hidden → 1536).
func BenchmarkSgemm(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
	}{
		{"512", 512, 512, 512},
		{"1024", 1024, 1024, 1024},
		{"2048", 2048, 2048, 2048},
		{"m256n1536k576", 256, 1536, 576},
	}
	for _, s := range shapes {
		r := rand.New(rand.NewPCG(1, 2))
		a, bm, c := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), make([]float32, s.m*s.n)
		for _, impl := range []Impl{ImplBuiltin, ImplBLAS} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%v/t%d", s.name, impl, threads), func(b *testing.B) {
					if impl == ImplBLAS && !BLASAvailable() {
						b.Skip("OpenBLAS not installed")
					}
					for b.Loop() {
						_ = SgemmWith(impl, threads, false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n)
					}
					b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkSgemmTrans covers the layouts training uses (dX = dY·W, dW = dYᵀ·X)
// on the transformer shape, one goroutine per core.
func BenchmarkSgemmTrans(b *testing.B) {
	const m, n, k = 256, 1536, 576
	r := rand.New(rand.NewPCG(1, 2))
	a, bm, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	for combo := range 4 {
		tA, tB := combo&1 == 1, combo&2 == 2
		lda, ldb := k, n
		if tA {
			lda = m
		}
		if tB {
			ldb = k
		}
		b.Run(fmt.Sprintf("tA=%v,tB=%v", tA, tB), func(b *testing.B) {
			for b.Loop() {
				_ = SgemmWith(ImplBuiltin, 0, tA, tB, m, n, k, 1, a, lda, bm, ldb, 0, c, n)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkSgemmBF16B(b *testing.B) {
	const m, n, k = 256, 1536, 576
	r := rand.New(rand.NewPCG(1, 2))
	a, c := randSlice(r, m*k), make([]float32, m*n)
	bh := make([]uint16, n*k)
	F32ToBF16(bh, randSlice(r, n*k))
	for b.Loop() {
		SgemmBF16B(false, true, m, n, k, 1, a, k, bh, k, 0, c, n)
	}
	b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkMicroKernel measures the register kernel alone on L1-resident
// panels: the ceiling for the blocked algorithm on one core.
func BenchmarkMicroKernel(b *testing.B) {
	kern := bestKernel()
	k := kern.kc
	r := rand.New(rand.NewPCG(1, 2))
	ap, bp, c := randSlice(r, kern.mr*k), randSlice(r, kern.nr*k), make([]float32, kern.mr*kern.nr)
	for b.Loop() {
		kern.fn(k, ap, bp, c, kern.nr, 1, 1)
	}
	b.ReportMetric(2*float64(kern.mr*kern.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkDot(b *testing.B) {
	x, y := make([]float32, 4096), make([]float32, 4096)
	b.SetBytes(8 * 4096)
	for b.Loop() {
		_ = Dot(x, y)
	}
}

func BenchmarkAxpy(b *testing.B) {
	x, y := make([]float32, 4096), make([]float32, 4096)
	b.SetBytes(8 * 4096)
	for b.Loop() {
		Axpy(0.5, x, y)
	}
}
