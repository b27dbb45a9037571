package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// packedCases adds the shapes the gemm cases lack: m around the thread split
// (a few row tiles) and n across several panels with a ragged tail.
func packedCases() []gemmCase {
	cs := gemmCases()
	for i, s := range [][3]int{{23, 70, 40}, {49, 97, 300}, {100, 33, 5}, {2, 129, 77}} {
		for combo := range 4 {
			ab := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}, {2, -1}}[(i+combo)%4]
			cs = append(cs, gemmCase{combo&1 == 1, combo&2 == 2, s[0], s[1], s[2], ab[0], ab[1], (i + combo) % 3 * 3})
		}
	}
	return cs
}

// Every kernel (with tiny blocks too, so that k-blocks and nc-blocks are
// crossed), one and two threads, against the float64 reference.
func TestSgemmPackedBEachKernel(t *testing.T) {
	var kernels []microKernel
	for _, kern := range append(archKernels(), genericKernel()) {
		tiny := kern
		tiny.name += "/tiny-blocks"
		tiny.kc, tiny.mc, tiny.nc = 21, 2*kern.mr, 2*kern.nr
		kernels = append(kernels, kern, tiny)
	}
	for _, kern := range kernels {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(t *testing.T) {
				for _, g := range packedCases() {
					runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
						pk := packBWith(kern, g.transB, g.k, g.n, b, ldb)
						if want := 4 * g.k * ((g.n + kern.nr - 1) / kern.nr * kern.nr); pk.Bytes() != want {
							t.Errorf("%v: Bytes() = %d, want %d", g, pk.Bytes(), want)
						}
						sgemmPacked(threads, g.transA, g.m, g.alpha, a, lda, pk, g.beta, c, ldc)
					})
				}
			})
		}
	}
}

func TestSgemmPackedBDefault(t *testing.T) {
	for _, g := range packedCases() {
		runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
			SgemmPackedB(g.transA, g.m, g.alpha, a, lda, PackB(g.transB, g.k, g.n, b, ldb), g.beta, c, ldc)
		})
	}
}

// The OpenBLAS fallback keeps op(B) as a plain copy.
func TestSgemmPackedBDense(t *testing.T) {
	for _, g := range packedCases()[:16] {
		runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
			pk := packDense(g.transB, g.k, g.n, b, ldb)
			if pk.Bytes() != 4*g.k*g.n {
				t.Errorf("%v: Bytes() = %d, want %d", g, pk.Bytes(), 4*g.k*g.n)
			}
			SgemmPackedB(g.transA, g.m, g.alpha, a, lda, pk, g.beta, c, ldc)
		})
	}
}

// Same kernel, same k blocking: the packed product must equal Sgemm's bit for
// bit, whatever the thread split, so prepacking a layer changes no result.
// (Shapes Sgemm computes on the strided path are excluded: nn.Linear does not
// use its packed copies for those.)
func TestSgemmPackedBMatchesSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{256, 576, 576}, {37, 1536, 576}, {5, 192, 576}, {256, 576, 1536}} {
		m, n, k := s[0], s[1], s[2]
		for _, transB := range []bool{false, true} {
			if Thin(false, transB, m, n, k) {
				continue
			}
			a, b := randSlice(r, m*k), randSlice(r, k*n)
			ldb := n
			if transB {
				ldb = k
			}
			want, got := make([]float32, m*n), make([]float32, m*n)
			Sgemm(false, transB, m, n, k, 1, a, k, b, ldb, 0, want, n)
			SgemmPackedB(false, m, 1, a, k, PackB(transB, k, n, b, ldb), 0, got, n)
			for i := range want {
				if want[i] != got[i] {
					t.Fatalf("m=%d n=%d k=%d transB=%v: C[%d] = %g, Sgemm gives %g", m, n, k, transB, i, got[i], want[i])
				}
			}
		}
	}
}

func TestSgemmPackedBAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	const m, n, k = 96, 128, 300
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	// The panels themselves (PackB returns a dense copy where OpenBLAS is
	// the backend, which sgemmPacked does not take).
	pk := packBWith(bestKernel(), true, k, n, b, k)
	for _, threads := range []int{1, 2} {
		allocs := testing.AllocsPerRun(20, func() {
			sgemmPacked(threads, false, m, 1, a, k, pk, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("threads=%d: %v allocations per call, want 0", threads, allocs)
		}
	}
}

func TestPackBShortOperandPanics(t *testing.T) {
	for _, tc := range []struct {
		name       string
		transB     bool
		b          []float32
		ldb        int
		wantPanics bool
	}{
		{"fits", false, make([]float32, 12), 4, false},
		{"fits transposed", true, make([]float32, 12), 3, false},
		{"short", false, make([]float32, 11), 4, true},
		{"stride below row", true, make([]float32, 12), 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if got := recover() != nil; got != tc.wantPanics {
					t.Errorf("panicked = %v, want %v", got, tc.wantPanics)
				}
			}()
			PackB(tc.transB, 3, 4, tc.b, tc.ldb)
		})
	}
}

func TestSgemmPackedBTrivial(t *testing.T) {
	pk := PackB(false, 0, 2, nil, 0)
	c := []float32{1, 2, 3, 4}
	SgemmPackedB(false, 2, 1, nil, 0, pk, 3, c, 2) // k == 0: C = beta·C
	if want := []float32{3, 6, 9, 12}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("k=0, beta=3: got %v, want %v", c, want)
	}
}
