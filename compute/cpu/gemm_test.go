package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// refGemm is the float64 definition C = alpha·op(A)·op(B) + beta·C, plus a
// per-element bound on the float32 rounding error a correct kernel can make.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, tol []float64) {
	want = make([]float64, m*n)
	tol = make([]float64, m*n)
	const eps = 1.0 / (1 << 23)
	for i := range m {
		for j := range n {
			var s, mag float64
			for p := range k {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
				mag += math.Abs(float64(av) * float64(bv))
			}
			cv := 0.0
			if beta != 0 {
				cv = float64(beta) * float64(c[i*ldc+j])
			}
			want[i*n+j] = float64(alpha)*s + cv
			tol[i*n+j] = 2*eps*float64(k+3)*(math.Abs(float64(alpha))*mag+math.Abs(cv)) + 1e-30
		}
	}
	return want, tol
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // extra stride beyond the row length for every operand
}

func (g gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d,a=%g,b=%g,pad=%d", g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.beta, g.pad)
}

func gemmCases() []gemmCase {
	shapes := [][3]int{
		{1, 1, 1}, {1, 7, 17}, {7, 1, 63}, {6, 16, 1}, {7, 17, 65}, {17, 63, 7},
		{63, 65, 130}, {65, 33, 257}, {130, 17, 300}, {12, 48, 513}, {257, 130, 31}, {1, 300, 257},
		// Few rows against a transposed B: the row-dot path (rowDots).
		{2, 129, 33}, {4, 700, 96}, {3, 2048, 17},
	}
	var cs []gemmCase
	for si, s := range shapes {
		for combo := range 4 {
			tA, tB := combo&1 == 1, combo&2 == 2
			// Cycle alpha/beta/padding through the shapes rather than the full
			// product, to keep the suite fast.
			ab := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}, {2, -1}}[(si+combo)%4]
			cs = append(cs, gemmCase{tA, tB, s[0], s[1], s[2], ab[0], ab[1], (si + combo) % 3 * 5})
		}
	}
	return cs
}

// runCase fills the operands (C's padding with a sentinel, C itself with NaN
// when beta == 0), runs do and checks every element and the padding.
func runCase(t *testing.T, g gemmCase, do func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int)) {
	t.Helper()
	runCaseB(t, g, nil, do)
}

// runCaseB is runCase with B passed through prepB first (bf16 rounding).
func runCaseB(t *testing.T, g gemmCase, prepB func([]float32), do func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int)) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(g.m*1000003+g.n*1009+g.k), uint64(g.pad)))
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = ac, ar
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = bc, br
	}
	lda, ldb, ldc := ac+g.pad, bc+g.pad, g.n+g.pad
	a := randSlice(r, ar*lda)
	b := randSlice(r, br*ldb)
	c := randSlice(r, g.m*ldc)
	if prepB != nil {
		prepB(b)
	}
	const sentinel = float32(-12345)
	for i := range g.m {
		for j := g.n; j < ldc; j++ {
			c[i*ldc+j] = sentinel
		}
		if g.beta == 0 {
			for j := range g.n {
				c[i*ldc+j] = float32(math.NaN())
			}
		}
	}
	want, tol := refGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc)
	do(a, lda, b, ldb, c, ldc)
	bad := 0
	for i := range g.m {
		for j := range ldc {
			got := c[i*ldc+j]
			if j >= g.n {
				if got != sentinel {
					t.Fatalf("%v: C[%d][%d] in the stride padding was overwritten: %g", g, i, j, got)
				}
				continue
			}
			w, e := want[i*g.n+j], tol[i*g.n+j]
			if d := math.Abs(float64(got) - w); !(d <= e) {
				if bad++; bad <= 3 {
					t.Errorf("%v: C[%d][%d] = %g, want %g (tolerance %g)", g, i, j, got, w, e)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("%v: %d elements wrong in all", g, bad)
	}
}

func TestSgemmImplementations(t *testing.T) {
	for _, impl := range []Impl{ImplBuiltin, ImplGeneric, ImplBLAS} {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("%v/threads=%d", impl, threads), func(t *testing.T) {
				if impl == ImplBLAS && !BLASAvailable() {
					t.Skip("OpenBLAS (libopenblas.so.0) is not installed")
				}
				for _, g := range gemmCases() {
					runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
						if err := SgemmWith(impl, threads, g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc); err != nil {
							t.Fatal(err)
						}
					})
				}
			})
		}
	}
}

// Every micro-kernel this CPU can run, not just the one Sgemm picks, with its
// own cache blocking and with tiny blocks so that the small cases cross every
// kc, mc and nc boundary (and leave k-tails off the 8-wide transposes).
func TestSgemmEachKernel(t *testing.T) {
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
				for _, g := range gemmCases() {
					runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
						p := gemmProblem{transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, alpha: g.alpha,
							a: a, lda: lda, b: b, ldb: ldb, beta: g.beta, c: c, ldc: ldc}
						if !p.trivial() {
							builtinGemm(&p, kern, threads)
						}
					})
				}
			})
		}
	}
}

func TestSgemmDefault(t *testing.T) {
	t.Logf("backend: %s", Backend())
	for _, g := range gemmCases() {
		runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
			Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc)
		})
	}
}

func TestSgemmTrivial(t *testing.T) {
	c := []float32{1, 2, 3, 4, float32(math.NaN()), 6}
	// k == 0: C = beta·C; beta == 0 clears without reading (NaN gone).
	Sgemm(false, false, 2, 2, 0, 1, nil, 0, nil, 0, 0, c, 3)
	if want := []float32{0, 0, 3, 0, 0, 6}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("k=0, beta=0: got %v, want %v", c, want)
	}
	c = []float32{1, 2, 3, 4}
	// alpha == 0 never touches A or B.
	Sgemm(false, false, 2, 2, 3, 0, nil, 0, nil, 0, 2, c, 2)
	if want := []float32{2, 4, 6, 8}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("alpha=0, beta=2: got %v, want %v", c, want)
	}
	Sgemm(false, false, 0, 5, 5, 1, nil, 0, nil, 0, 0, nil, 0) // nothing to do, no panic
	if err := SgemmWith(Impl(99), 1, false, false, 1, 1, 1, 1, []float32{1}, 1, []float32{1}, 1, 0, c, 1); err == nil {
		t.Error("unknown Impl: want an error")
	}
}

func TestSgemmShortOperandPanics(t *testing.T) {
	cases := []struct {
		name       string
		a, b, c    []float32
		lda        int
		wantPanics bool
	}{
		{"fits", make([]float32, 6), make([]float32, 12), make([]float32, 8), 3, false},
		{"short A", make([]float32, 5), make([]float32, 12), make([]float32, 8), 3, true},
		{"short B", make([]float32, 6), make([]float32, 11), make([]float32, 8), 3, true},
		{"short C", make([]float32, 6), make([]float32, 12), make([]float32, 7), 3, true},
		{"A stride below row", make([]float32, 6), make([]float32, 12), make([]float32, 8), 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if got := recover() != nil; got != tc.wantPanics {
					t.Errorf("panicked = %v, want %v", got, tc.wantPanics)
				}
			}()
			Sgemm(false, false, 2, 4, 3, 1, tc.a, tc.lda, tc.b, 4, 0, tc.c, 4)
		})
	}
}

func TestSgemmBF16B(t *testing.T) {
	roundBF16 := func(b []float32) {
		h := make([]uint16, len(b))
		F32ToBF16(h, b)
		BF16ToF32(b, h)
	}
	for _, g := range gemmCases() {
		runCaseB(t, g, roundBF16, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
			bh := make([]uint16, len(b))
			F32ToBF16(bh, b) // exact: b already holds bf16 values
			SgemmBF16B(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, bh, ldb, g.beta, c, ldc)
		})
	}
}

// Steady-state calls must not allocate: buffers and job records are pooled.
func TestSgemmBuiltinAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	const m, n, k = 96, 128, 300
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	for _, threads := range []int{1, 2} {
		allocs := testing.AllocsPerRun(20, func() {
			_ = SgemmWith(ImplBuiltin, threads, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("threads=%d: %v allocations per call, want 0", threads, allocs)
		}
	}
}

func TestBackendDescribesChoice(t *testing.T) {
	b := Backend()
	env := os.Getenv("GOTUNE_BLAS")
	wantBLAS := BLASAvailable() && (env == "openblas" || env == "blas" || env == "" && bestKernel().name == genericKernel().name)
	if got := strings.HasPrefix(b, "openblas"); got != wantBLAS {
		t.Errorf("Backend() = %q; BLASAvailable() = %v, GOTUNE_BLAS = %q", b, BLASAvailable(), os.Getenv("GOTUNE_BLAS"))
	}
	if !wantBLAS && !strings.Contains(b, bestKernel().name) && !strings.Contains(b, genericKernel().name) {
		t.Errorf("Backend() = %q does not name the kernel", b)
	}
}
