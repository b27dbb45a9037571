package cpu

import (
	"fmt"
	"testing"
)

func thinCases() []gemmCase {
	var cs []gemmCase
	// Low-rank shapes: (tokens, rank, hidden) in every role the adapter
	// products take, plus widths that leave edge tiles of every kind.
	for i, s := range [][3]int{
		{256, 16, 576}, {37, 8, 100}, {13, 1, 33}, {5, 24, 70}, {1, 16, 40}, {12, 64, 65},
		{100, 17, 31}, {7, 3, 9}, {40, 33, 16}, {30, 48, 1}, {70, 100, 130},
	} {
		tok, r, h := s[0], s[1], s[2]
		for j, shape := range [][3]int{{tok, r, h}, {tok, h, r}, {r, h, tok}, {h, r, tok}} {
			for combo := range 4 {
				tA, tB := combo&1 == 1, combo&2 == 2
				ab := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}, {2, -1}}[(i+j+combo)%4]
				cs = append(cs, gemmCase{tA, tB, shape[0], shape[1], shape[2], ab[0], ab[1], (i + combo) % 3 * 3})
			}
		}
	}
	return cs
}

// Every thin product, through each kernel pair and thread count, with the
// operands placed flush against an unreadable page (where the platform allows)
// so that a kernel reading past an operand's last element faults.
func TestThinGemm(t *testing.T) {
	pairs := map[string]stridedPair{"generic": genericStrided}
	if ks, ok := archStrided(); ok {
		pairs["asm"] = ks
	}
	for name, ks := range pairs {
		for _, threads := range []int{1, 2} {
			for _, g := range thinCases() {
				t.Run(fmt.Sprintf("%s/%d/%v", name, threads, g), func(t *testing.T) {
					runCase(t, g, func(a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
						p := gemmProblem{transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, alpha: g.alpha,
							lda: lda, ldb: ldb, beta: g.beta, c: c, ldc: ldc}
						ar, ac, br, bc := g.m, g.k, g.k, g.n
						if g.transA {
							ar, ac = ac, ar
						}
						if g.transB {
							br, bc = bc, br
						}
						ga, freeA := guarded(a[:(ar-1)*lda+ac])
						defer freeA()
						gb, freeB := guarded(b[:(br-1)*ldb+bc])
						defer freeB()
						p.a, p.b = ga, gb
						if p.trivial() {
							return
						}
						thinGemm(&p, ks, threads)
					})
				})
			}
		}
	}
}

// Sgemm sends exactly the thin shapes to the strided path.
func TestIsThin(t *testing.T) {
	for _, c := range []struct {
		transA, transB bool
		m, n, k        int
		want           bool
	}{
		{false, true, 256, 16, 576, true},     // x·Aᵀ
		{false, true, 256, 1536, 16, true},    // h·Bᵀ
		{true, false, 16, 576, 256, true},     // dhᵀ·x
		{false, false, 256, 16, 1536, true},   // g·B
		{false, true, 1, 1536, 576, false},    // a decode step's x·Wᵀ
		{false, true, 256, 1536, 576, false},  // a frozen projection
		{false, true, 256, 100, 100000, true}, // transposed B of 10⁷ floats is too big to copy
		{false, false, 128, 128, 256, true},   // attention's P·V block: small, B in place
		{false, true, 128, 256, 128, false},   // its Q·Kᵀ: B would need a transposed copy
		{false, false, 256, 576, 1536, false}, // a frozen projection's input gradient
	} {
		p := gemmProblem{transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k}
		want := c.want && !(c.transB && c.n*c.k > thinMaxBT)
		if got := p.isThin(); got != want {
			t.Errorf("%+v: isThin = %v, want %v", c, got, want)
		}
	}
}

// Adapter products run thousands of times a step; they must not allocate.
func TestThinGemmAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, s := range []struct {
		transA, transB bool
		m, n, k        int
	}{
		{false, true, 256, 16, 576}, {false, true, 128, 256, 32}, {false, false, 128, 32, 256},
		{true, false, 256, 32, 128}, {false, true, 5, 8, 64},
	} {
		a, b, c := make([]float32, s.m*s.k), make([]float32, s.n*s.k), make([]float32, s.m*s.n)
		lda, ldb := s.k, s.n
		if s.transA {
			lda = s.m
		}
		if s.transB {
			ldb = s.k
		}
		for _, threads := range []int{1, 2} {
			allocs := testing.AllocsPerRun(20, func() {
				SgemmWith(ImplBuiltin, threads, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
			})
			if allocs > 0 {
				t.Errorf("%+v threads=%d: %v allocations per call, want 0", s, threads, allocs)
			}
		}
	}
}
