package optest

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// MoE checks the mixture-of-experts operations: GemmGroup (jobs of one to
// three terms, transposed operands, accumulating and overwriting, f32 and
// bf16 outputs), MoERoute (tied probabilities, a key mask, with and
// without normalised weights, the expert-ordered list and the statistics),
// MoERouterGrad and Transpose, against float64 loops.
func MoE(t *testing.T, be compute.Backend) {
	t.Run("GemmGroup", func(t *testing.T) { gemmGroup(t, be) })
	t.Run("Route", func(t *testing.T) { moeRoute(t, be) })
	t.Run("Transpose", func(t *testing.T) { transpose(t, be) })
}

func transpose(t *testing.T, be compute.Backend) {
	r := rand.New(rand.NewPCG(51, 52))
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range [][2]int{{37, 8}, {1, 5}, {300, 3}} {
			rows, cols := c[0], c[1]
			v := roundBF16(randVec(r, rows*cols, 1))
			want := make([]float64, rows*cols)
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					want[j*rows+i] = float64(v[i*cols+j])
				}
			}
			src := upload(t, be, dt, v)
			dst := alloc(t, be, dt, rows*cols)
			be.Transpose(dst, src, rows, cols)
			check(t, "transpose "+dt.String(), download(t, be, dst), want, 0)
		}
	}
}

// gemm64 is C = alpha·op(A)·op(B) + beta·C in float64.
func gemm64(c []float64, ldc int, tA, tB bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if tA {
					ai = p*lda + i
				}
				if tB {
					bi = j*ldb + p
				}
				x, y := float64(a[ai]), float64(b[bi])
				s += x * y
			}
			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
		}
	}
}

func gemmGroup(t *testing.T, be compute.Backend) {
	r := rand.New(rand.NewPCG(31, 32))
	type term struct {
		tA, tB bool
		k      int
		alpha  float32
	}
	cases := []struct {
		m, n  int
		beta  float32
		terms []term
	}{
		{37, 29, 0, []term{{false, true, 40, 1}}},
		{5, 64, 1, []term{{false, false, 33, 0.5}, {false, true, 7, 2}}},
		{16, 20, 1, []term{{true, false, 45, 1}, {true, false, 3, 1}, {false, true, 9, -1}}},
		{70, 3, 0.5, []term{{true, true, 12, 1}}},
	}
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 1e-5
		if dt == compute.BF16 {
			tol = 1e-2
		}
		var jobs []compute.GemmJob
		var want [][]float64
		var outs []compute.Tensor
		for _, c := range cases {
			cv := randVec(r, c.m*c.n, 1)
			if dt == compute.BF16 {
				cv = roundBF16(cv)
			}
			w := make([]float64, len(cv))
			for i, v := range cv {
				w[i] = float64(v)
			}
			job := compute.GemmJob{M: c.m, N: c.n, Beta: c.beta, LDC: c.n, C: upload(t, be, dt, cv)}
			beta := float64(c.beta)
			for _, tm := range c.terms {
				av, bv := roundBF16(randVec(r, c.m*tm.k, 1)), roundBF16(randVec(r, tm.k*c.n, 1))
				lda, ldb := tm.k, c.n
				if tm.tA {
					lda = c.m
				}
				if tm.tB {
					ldb = tm.k
				}
				gemm64(w, c.n, tm.tA, tm.tB, c.m, c.n, tm.k, float64(tm.alpha), av, lda, bv, ldb, beta)
				beta = 1
				job.Terms = append(job.Terms, compute.GemmTerm{TransA: tm.tA, TransB: tm.tB, K: tm.k, Alpha: tm.alpha,
					A: upload(t, be, dt, av), LDA: lda, B: upload(t, be, dt, bv), LDB: ldb})
			}
			jobs, want, outs = append(jobs, job), append(want, w), append(outs, job.C)
		}
		be.GemmGroup(jobs)
		for i, o := range outs {
			check(t, "gemm group "+dt.String(), download(t, be, o), want[i], tol)
		}
	}
}

// route64 is the routing of one token as the CPU trainer's route does it.
func route64(lg []float32, K int, norm bool) (p []float64, sel []int, w []float64) {
	mx := math.Inf(-1)
	for _, v := range lg {
		mx = math.Max(mx, float64(v))
	}
	p = make([]float64, len(lg))
	var sum float64
	for e, v := range lg {
		p[e] = math.Exp(float64(v) - mx)
		sum += p[e]
	}
	for e := range p {
		p[e] /= sum
	}
	taken := make([]bool, len(lg))
	var total float64
	for k := 0; k < K; k++ {
		best := -1
		for e := range p {
			if !taken[e] && (best < 0 || p[e] > p[best]) {
				best = e
			}
		}
		taken[best] = true
		sel = append(sel, best)
		total += p[best]
	}
	for _, e := range sel {
		v := p[e]
		if norm {
			v /= total
		}
		w = append(w, v)
	}
	return p, sel, w
}

func moeRoute(t *testing.T, be compute.Backend) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, c := range []struct {
		n, E, K int
		norm    bool
		masked  bool
	}{
		{37, 8, 2, true, true},
		{300, 5, 3, false, false},
		{9, 128, 8, true, false},
	} {
		n, E, K := c.n, c.E, c.K
		lg := randVec(r, n*E, 3)
		// Ties: a token whose logits are all equal, and one with two equal
		// best experts.
		for e := 0; e < E; e++ {
			lg[E+e] = 0.25
		}
		lg[2*E+1], lg[2*E+E-1] = 9, 9
		var mask []int32
		if c.masked {
			mask = make([]int32, n)
			for i := range mask {
				if r.IntN(4) != 0 {
					mask[i] = 1
				}
			}
		}
		probs, sel, wts := alloc(t, be, compute.F32, n*E), alloc(t, be, compute.I32, n*K), alloc(t, be, compute.F32, n*K)
		rows, rowWts, pos := alloc(t, be, compute.I32, n*K), alloc(t, be, compute.F32, n*K), alloc(t, be, compute.I32, n*K)
		offs, stats := alloc(t, be, compute.F32, E+1), alloc(t, be, compute.F32, 3*E)
		var maskT compute.Tensor
		if mask != nil {
			maskT = uploadInt(t, be, mask)
		}
		logits := upload(t, be, compute.F32, lg)
		be.MoERoute(probs, sel, wts, rows, rowWts, pos, offs, stats, logits, maskT, n, E, K, c.norm)

		wp, ww := make([]float64, 0, n*E), make([]float64, 0, n*K)
		var wsel []int
		chosen, psum := make([]float64, E), make([]float64, E)
		for tk := 0; tk < n; tk++ {
			p, s, w := route64(lg[tk*E:(tk+1)*E], K, c.norm)
			wp, wsel, ww = append(wp, p...), append(wsel, s...), append(ww, w...)
			if mask == nil || mask[tk] != 0 {
				for _, e := range s {
					chosen[e]++
				}
				for e, v := range p {
					psum[e] += v
				}
			}
		}
		check(t, "route probs", download(t, be, probs), wp, 1e-6)
		check(t, "route weights", download(t, be, wts), ww, 1e-6)
		gs := download(t, be, sel)
		for i, e := range wsel {
			if int(gs[i]) != e {
				t.Fatalf("n %d E %d: slot %d chose expert %v, want %d", n, E, i, gs[i], e)
			}
		}
		// The list: expert by expert, slots in order.
		gr, grw, gpos, goff := download(t, be, rows), download(t, be, rowWts), download(t, be, pos), download(t, be, offs)
		at := 0
		for e := 0; e < E; e++ {
			if int(goff[e]) != at {
				t.Fatalf("expert %d starts at %v, want %d", e, goff[e], at)
			}
			for s, se := range wsel {
				if se != e {
					continue
				}
				if int(gr[at]) != s/K || int(gpos[s]) != at || math.Abs(float64(grw[at])-ww[s]) > 1e-6*math.Abs(ww[s])+1e-12 {
					t.Fatalf("place %d: token %v, weight %v, slot %d placed at %v; want token %d, weight %g, place %d", at, gr[at], grw[at], s, gpos[s], s/K, ww[s], at)
				}
				at++
			}
		}
		if int(goff[E]) != n*K {
			t.Fatalf("list ends at %v, want %d", goff[E], n*K)
		}
		st := download(t, be, stats)
		for e := 0; e < E; e++ {
			if float64(st[e]) != chosen[e] {
				t.Fatalf("expert %d chosen %v times, want %g", e, st[e], chosen[e])
			}
			if got := float64(st[E+e]) + float64(st[2*E+e]); math.Abs(got-psum[e]) > 1e-9*math.Max(1, psum[e]) {
				t.Fatalf("expert %d probability sum %.12g, want %.12g", e, got, psum[e])
			}
		}

		// The router's gradient: through the weights and the softmax,
		// with an auxiliary term on the kept tokens.
		dwv, auxv := randVec(r, n*K, 1), randVec(r, E, 0.1)
		want := make([]float64, n*E)
		for tk := 0; tk < n; tk++ {
			p := wp[tk*E : (tk+1)*E]
			dp := make([]float64, E)
			g := func(k int) float64 { return float64(dwv[int(gpos[tk*K+k])]) }
			var S, wg float64
			for k := 0; k < K; k++ {
				S += p[wsel[tk*K+k]]
				wg += float64(float32(ww[tk*K+k])) * g(k)
			}
			for k := 0; k < K; k++ {
				if c.norm {
					dp[wsel[tk*K+k]] += (g(k) - wg) / S
				} else {
					dp[wsel[tk*K+k]] += g(k)
				}
			}
			if mask == nil || mask[tk] != 0 {
				for e := range dp {
					dp[e] += float64(auxv[e])
				}
			}
			var pdp float64
			for e := range dp {
				pdp += p[e] * dp[e]
			}
			for e := range dp {
				want[tk*E+e] = p[e] * (dp[e] - pdp)
			}
		}
		dw, aux := upload(t, be, compute.F32, dwv), upload(t, be, compute.F32, auxv)
		for _, dt := range []compute.DType{compute.F32, compute.BF16} {
			tol := 1e-5
			if dt == compute.BF16 {
				tol = 1e-2
			}
			dl := alloc(t, be, dt, n*E)
			be.MoERouterGrad(dl, probs, sel, wts, pos, dw, aux, maskT, n, E, K, c.norm)
			check(t, "router grad "+dt.String(), download(t, be, dl), want, tol)
			dl.Free()
		}
	}
}
