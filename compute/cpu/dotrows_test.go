package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotRowsMatchesDot: dotRows gives each row Dot's result bit for bit
// (lengths below, at and past the vector width, with and without a tail,
// strides wider than a row, and a row of zero products).
func TestDotRowsMatchesDot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 576, 1539} {
		for _, rows := range []int{1, 3, 32} {
			for _, pad := range []int{0, 5} {
				t.Run(fmt.Sprintf("k%d_rows%d_pad%d", k, rows, pad), func(t *testing.T) {
					ldb := k + pad
					a := make([]float32, k)
					b := make([]float32, (rows-1)*ldb+k)
					for i := range a {
						a[i] = float32(r.NormFloat64())
					}
					for i := range b {
						b[i] = float32(r.NormFloat64())
					}
					// Row 0's products are all -0.
					for i := 0; i < k; i++ {
						b[i] = float32(math.Copysign(0, -1))
					}
					got := make([]float32, rows)
					dotRows(got, a, b, ldb)
					for j := range rows {
						want := Dot(a, b[j*ldb:j*ldb+k])
						if math.Float32bits(got[j]) != math.Float32bits(want) {
							t.Fatalf("row %d: %v (bits %#x), Dot gives %v (bits %#x)", j, got[j], math.Float32bits(got[j]), want, math.Float32bits(want))
						}
					}
				})
			}
		}
	}
}

// TestRowDotsMatchesDotPerElement: the row-dot path of Sgemm (few rows of
// A against a transposed float B) sets every element of C to
// alpha·Dot(row of A, row of B) (+ beta·C) bit for bit, on one core and
// split over several, for alpha and beta of every kind.
func TestRowDotsMatchesDotPerElement(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range []struct{ m, n, k int }{{1, 1, 5}, {1, 97, 64}, {3, 150, 64}, {4, 300, 577}, {2, 1000, 1536}} {
		for _, ab := range [][2]float32{{1, 0}, {0.125, 0}, {-1.5, 1}, {1, 0.5}} {
			for _, threads := range []int{1, 2, 3} {
				t.Run(fmt.Sprintf("%dx%dx%d_a%v_b%v_t%d", sh.m, sh.n, sh.k, ab[0], ab[1], threads), func(t *testing.T) {
					m, n, k := sh.m, sh.n, sh.k
					lda, ldb, ldc := k+3, k+1, n+2
					a := make([]float32, m*lda)
					b := make([]float32, n*ldb)
					c := make([]float32, m*ldc)
					for _, x := range [][]float32{a, b, c} {
						for i := range x {
							x[i] = float32(r.NormFloat64())
						}
					}
					want := append([]float32(nil), c...)
					for i := range m {
						for j := range n {
							d := ab[0] * Dot(a[i*lda:i*lda+k], b[j*ldb:j*ldb+k])
							if ab[1] == 0 {
								want[i*ldc+j] = d
							} else {
								want[i*ldc+j] = d + ab[1]*want[i*ldc+j]
							}
						}
					}
					p := gemmProblem{transB: true, m: m, n: n, k: k, alpha: ab[0], a: a, lda: lda, b: b, ldb: ldb, beta: ab[1], c: c, ldc: ldc}
					if !p.useRowDots() {
						t.Fatal("the problem does not take the row-dot path")
					}
					rowDots(&p, threads)
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
							t.Fatalf("element %d: %v, want %v", i, c[i], want[i])
						}
					}
				})
			}
		}
	}
}

// TestRowDotsReusedJobs: products split over cores back to back, from
// several goroutines at once and of sizes that split into different numbers
// of parts, each give exactly their own result, however late a worker
// dispatched to an earlier product starts (the caller does not wait for
// workers that find nothing left to claim, and their job is reused).
func TestRowDotsReusedJobs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	type product struct {
		p    gemmProblem
		want []float32
	}
	var products []product
	for _, sh := range []struct{ m, n, k int }{{1, 576, 576}, {1, 192, 576}, {2, 1536, 64}, {4, 96, 577}, {1, 4000, 300}} {
		a := make([]float32, sh.m*sh.k)
		b := make([]float32, sh.n*sh.k)
		for _, x := range [][]float32{a, b} {
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
		}
		want := make([]float32, sh.m*sh.n)
		for i := range sh.m {
			for j := range sh.n {
				want[i*sh.n+j] = Dot(a[i*sh.k:(i+1)*sh.k], b[j*sh.k:(j+1)*sh.k])
			}
		}
		products = append(products, product{gemmProblem{transB: true, m: sh.m, n: sh.n, k: sh.k, alpha: 1, a: a, lda: sh.k, b: b, ldb: sh.k, ldc: sh.n}, want})
	}
	const callers, rounds = 4, 200
	errs := make(chan error, callers)
	for g := range callers {
		go func() {
			for round := range rounds {
				pr := products[(g+round)%len(products)]
				p := pr.p
				p.c = make([]float32, len(pr.want))
				rowDots(&p, 2+round%3)
				for i, v := range p.c {
					if math.Float32bits(v) != math.Float32bits(pr.want[i]) {
						errs <- fmt.Errorf("caller %d round %d (%dx%dx%d): element %d is %v, want %v", g, round, p.m, p.n, p.k, i, v, pr.want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestDotRowsBF16MatchesDot: dotRowsBF16 gives each row Dot's result over
// the widened row, bit for bit, and the row-dot path over a bf16 B gives
// every element alpha·that (+ beta·C).
func TestDotRowsBF16MatchesDot(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, k := range []int{1, 7, 8, 9, 33, 64, 300, 577} {
		for _, rows := range []int{1, 5, 32} {
			ldb := k + 3
			a := make([]float32, k)
			b := make([]uint16, (rows-1)*ldb+k)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			for i := range b {
				b[i] = uint16(math.Float32bits(float32(r.NormFloat64())) >> 16)
			}
			got := make([]float32, rows)
			dotRowsBF16(got, a, b, ldb)
			wide := make([]float32, k)
			for j := range rows {
				widenBF16(wide, b[j*ldb:j*ldb+k])
				if want := Dot(a, wide); math.Float32bits(got[j]) != math.Float32bits(want) {
					t.Fatalf("k=%d rows=%d row %d: %v, Dot gives %v", k, rows, j, got[j], want)
				}
			}
		}
	}
	const m, n, k = 3, 200, 131
	a, c := make([]float32, m*k), make([]float32, m*n)
	b := make([]uint16, n*k)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = uint16(math.Float32bits(float32(r.NormFloat64())) >> 16)
	}
	for i := range c {
		c[i] = float32(r.NormFloat64())
	}
	want := append([]float32(nil), c...)
	wide := make([]float32, k)
	for j := range n {
		widenBF16(wide, b[j*k:(j+1)*k])
		for i := range m {
			want[i*n+j] = -0.5*Dot(a[i*k:(i+1)*k], wide) + 2*want[i*n+j]
		}
	}
	SgemmBF16BOn(2, false, true, m, n, k, -0.5, a, k, b, k, 2, c, n)
	for i := range c {
		if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
			t.Fatalf("element %d: %v, want %v", i, c[i], want[i])
		}
	}
}
