package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// SgemmSum equals the float64 sum of its two products, for every
// combination of transposes, with the second product thin (a low-rank
// update) or not, the first B in float32 or bf16, on one and several
// threads.
func TestSgemmSum(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i, s := range [][4]int{{256, 576, 200, 16}, {37, 130, 300, 8}, {70, 100, 90, 120}, {13, 200, 65, 3}} {
		m, n, k1, k2 := s[0], s[1], s[2], s[3]
		for combo := range 16 {
			tA1, tB1, tA2, tB2 := combo&1 == 1, combo&2 == 2, combo&4 == 4, combo&8 == 8
			mk := func(transA, transB bool, k int, alpha float32) Term {
				ar, ac, br, bc := m, k, k, n
				if transA {
					ar, ac = ac, ar
				}
				if transB {
					br, bc = bc, br
				}
				return Term{TransA: transA, TransB: transB, K: k, Alpha: alpha, A: randSlice(r, ar*ac), LDA: ac, B: randSlice(r, br*bc), LDB: bc}
			}
			t1, t2 := mk(tA1, tB1, k1, 1), mk(tA2, tB2, k2, []float32{0.5, -2}[combo%2])
			// Half the cases hold the first B in bf16 (a frozen weight loaded
			// so): run is what the product gets, t1 keeps its float values
			// for the expected sums.
			run := t1
			if bf16 := (i+combo)%2 == 1; bf16 {
				run.BH = make([]uint16, len(t1.B))
				F32ToBF16(run.BH, t1.B)
				BF16ToF32(t1.B, run.BH)
				run.B = nil
			}
			beta := []float32{0, 1, 0.25}[(i+combo)%3]
			c0 := randSlice(r, m*n)
			want := make([]float64, m*n)
			tol := make([]float64, m*n)
			for _, tm := range []Term{t1, t2} {
				for row := range m {
					for col := range n {
						var sum, mag float64
						for q := range tm.K {
							ai, bi := row*tm.LDA+q, q*tm.LDB+col
							if tm.TransA {
								ai = q*tm.LDA + row
							}
							if tm.TransB {
								bi = col*tm.LDB + q
							}
							av, bv := tm.A[ai], tm.B[bi]
							sum += float64(av) * float64(bv)
							mag += math.Abs(float64(av) * float64(bv))
						}
						want[row*n+col] += float64(tm.Alpha) * sum
						tol[row*n+col] += 4 * float64(tm.K+3) / (1 << 23) * math.Abs(float64(tm.Alpha)) * mag
					}
				}
			}
			for j := range want {
				want[j] += float64(beta) * float64(c0[j])
				tol[j] += math.Abs(float64(beta)*float64(c0[j]))/(1<<22) + 1e-30
			}
			for _, threads := range []int{1, 2} {
				name := fmt.Sprintf("%v/tA1=%v,tB1=%v,tA2=%v,tB2=%v/threads=%d", s, tA1, tB1, tA2, tB2, threads)
				c := append([]float32(nil), c0...)
				if beta == 0 {
					for j := range c {
						c[j] = float32(math.NaN()) // beta == 0 must not read C
					}
				}
				p := gemmProblem{transA: run.TransA, transB: run.TransB, m: m, n: n, k: run.K, alpha: run.Alpha,
					a: run.A, lda: run.LDA, b: run.B, bh: run.BH, ldb: run.LDB, beta: beta, c: c, ldc: n, t2: t2}
				if threads == 1 {
					gemmRange(&p, &[]microKernel{bestKernel()}[0], 0, m, 0, n)
				} else {
					SgemmSum(m, n, beta, c, n, run, t2)
				}
				for j, v := range c {
					if d := math.Abs(float64(v) - want[j]); !(d <= tol[j]) {
						t.Fatalf("%s: C[%d] = %g, want %g (tolerance %g)", name, j, v, want[j], tol[j])
					}
				}
			}
		}
	}
}

func TestSgemmSumAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	const m, n, k, r = 128, 300, 200, 16
	x, w, h, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*r), make([]float32, n*r), make([]float32, m*n)
	allocs := testing.AllocsPerRun(20, func() {
		SgemmSum(m, n, 0, c, n, Term{TransB: true, K: k, Alpha: 1, A: x, LDA: k, B: w, LDB: k},
			Term{TransB: true, K: r, Alpha: 2, A: h, LDA: r, B: b, LDB: r})
	})
	if allocs > 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

// The …On functions on one goroutine give Sgemm's and SgemmSum's results
// bit for bit (a mixture's experts run side by side on them), on the
// packed, thin and small paths.
func TestSgemmOnOneThreadSameBits(t *testing.T) {
	if chosenBackend().impl == ImplBLAS {
		t.Skip("Sgemm runs OpenBLAS on this machine (GOTUNE_BLAS, or no AVX2 kernel) while SgemmOn on fewer threads runs the built-in kernels: equal bits are promised only when both run the built-in kernels")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, s := range [][3]int{{64, 512, 512}, {61, 16, 512}, {70, 300, 40}, {5, 256, 128}} {
		m, n, k := s[0], s[1], s[2]
		for _, transB := range []bool{false, true} {
			a, b, x := randSlice(r, m*k), randSlice(r, k*n), randSlice(r, m*16)
			ldb := n
			if transB {
				ldb = k
			}
			lr := randSlice(r, 16*n)
			c0 := randSlice(r, m*n)
			got, want := append([]float32(nil), c0...), append([]float32(nil), c0...)
			Sgemm(false, transB, m, n, k, 0.5, a, k, b, ldb, 1, want, n)
			SgemmOn(1, false, transB, m, n, k, 0.5, a, k, b, ldb, 1, got, n)
			t1 := Term{TransB: transB, K: k, Alpha: 1, A: a, LDA: k, B: b, LDB: ldb}
			t2 := Term{K: 16, Alpha: -2, A: x, LDA: 16, B: lr, LDB: n}
			sumGot, sumWant := append([]float32(nil), c0...), append([]float32(nil), c0...)
			SgemmSum(m, n, 1, sumWant, n, t1, t2)
			SgemmSumOn(1, m, n, 1, sumGot, n, t1, t2)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(sumGot[i]) != math.Float32bits(sumWant[i]) {
					t.Fatalf("%v transB=%v: element %d: SgemmOn %v, Sgemm %v; SgemmSumOn %v, SgemmSum %v", s, transB, i, got[i], want[i], sumGot[i], sumWant[i])
				}
			}
		}
	}
}
