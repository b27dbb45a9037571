package cpu

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// GemmGroup runs a mixture's expert products side by side: the jobs,
// largest first, go to up to one worker per core, each job on its share
// of the cores. An expert's products are a few dozen rows each: split
// across all cores one after another, each would cost a hand-off and a
// wait, and a core late to take its part stalls the others; side by side
// the group costs one wait.
func (d *Device) GemmGroup(jobs []compute.GemmJob) {
	defer d.timed("gemm_group")()
	order := make([]int, 0, len(jobs))
	for i, j := range jobs {
		if j.M > 0 && j.N > 0 {
			order = append(order, i)
		}
		C := tt(j.C)
		ok := C != nil && (C.F != nil || C.Len() == 0)
		for _, t := range j.Terms {
			// B may be a frozen weight held in 16 bits (WrapBF16).
			A, B := tt(t.A), raw(t.B)
			ok = ok && A != nil && B != nil && (A.F != nil || A.Len() == 0) && (B.F != nil || B.H != nil || B.Len() == 0)
		}
		if !ok {
			d.fail(fmt.Errorf("cpu: gemm group: job %d has a missing or integer operand", i))
			return
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return jobs[b].Work() - jobs[a].Work() })
	workers := max(1, min(Threads(), len(order)))
	per := max(1, Threads()/max(1, len(order)))
	var next atomic.Int64
	RunWorkers(workers, func(int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(order) {
				return
			}
			runJob(jobs[order[i]], per)
		}
	})
}

// runJob computes one job of GemmGroup on threads cores (bf16 C rounded
// here, on this goroutine).
func runJob(j compute.GemmJob, threads int) {
	C := tt(j.C)
	term := func(t compute.GemmTerm) Term {
		tm := Term{TransA: t.TransA, TransB: t.TransB, K: t.K, Alpha: t.Alpha, A: tt(t.A).F, LDA: t.LDA, LDB: t.LDB}
		if b := raw(t.B); b.Half() {
			tm.BH = b.H
		} else {
			tm.B = b.F
		}
		return tm
	}
	beta, ts := j.Beta, j.Terms
	switch {
	case len(ts) == 0:
		scaleMatrix(C.F, j.M, j.N, j.LDC, beta)
	case len(ts) == 1:
		termOn(threads, j.M, j.N, term(ts[0]), beta, C.F, j.LDC)
	default:
		SgemmSumOn(threads, j.M, j.N, beta, C.F, j.LDC, term(ts[0]), term(ts[1]))
		for _, t := range ts[2:] {
			termOn(threads, j.M, j.N, term(t), 1, C.F, j.LDC)
		}
	}
	if C.DT == compute.BF16 {
		for r := 0; r < j.M; r++ {
			row := C.F[r*j.LDC : r*j.LDC+j.N]
			for i, v := range row {
				row[i] = hostmem.RoundBF16(v)
			}
		}
	}
}

// MoERoute routes the tokens, side by side over chunks of tokens, then
// lists the slots expert by expert on one core (a pass over n·topK
// integers).
func (d *Device) MoERoute(probs, sel, wts, rows, rowWts, pos, offs, stats, logits, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	defer d.timed("moe_route")()
	P, S, W, R, RW, PS, O, ST, L, M := tt(probs), tt(sel), tt(wts), tt(rows), tt(rowWts), tt(pos), tt(offs), tt(stats), tt(logits), tt(mask)
	E, K := experts, topK
	if K < 1 || K > E || len(L.F) < n*E || len(P.F) < n*E || len(S.I) < n*K || len(W.F) < n*K ||
		len(R.I) < n*K || len(RW.F) < n*K || len(PS.I) < n*K || len(O.F) < E+1 || ST != nil && len(ST.F) < 3*E {
		d.fail(fmt.Errorf("cpu: moe route of %d tokens, %d experts, top %d: tensors too small", n, E, K))
		return
	}
	// Per chunk of tokens, the float64 sums of the kept tokens'
	// probabilities, added in chunk order below.
	const chunk = 256
	chunks := (n + chunk - 1) / chunk
	var sums []float64
	if ST != nil {
		sums = make([]float64, chunks*E)
	}
	Parallel(chunks, 1, func(lo, hi int) {
		p := make([]float64, E)
		for c := lo; c < hi; c++ {
			for t := c * chunk; t < min(n, (c+1)*chunk); t++ {
				routeToken(p, L.F[t*E:(t+1)*E], P.F[t*E:(t+1)*E], S.I[t*K:(t+1)*K], W.F[t*K:(t+1)*K], normTopK)
				if ST != nil && (M == nil || M.I[t] != 0) {
					s := sums[c*E : (c+1)*E]
					for e, v := range p {
						s[e] += v
					}
				}
			}
		}
	})
	// Counting sort of the slots by expert, stable in slot order.
	cnt := make([]int, E+1)
	for _, e := range S.I[:n*K] {
		cnt[e+1]++
	}
	for e := 1; e <= E; e++ {
		cnt[e] += cnt[e-1]
	}
	for e := 0; e <= E; e++ {
		O.F[e] = float32(cnt[e])
	}
	for s, e := range S.I[:n*K] {
		at := cnt[e]
		cnt[e]++
		R.I[at], PS.I[s], RW.F[at] = int32(s/K), int32(at), W.F[s]
	}
	if ST != nil {
		clear(ST.F[:3*E])
		for t := 0; t < n; t++ {
			if M == nil || M.I[t] != 0 {
				for _, e := range S.I[t*K : (t+1)*K] {
					ST.F[e]++
				}
			}
		}
		for e := 0; e < E; e++ {
			var s float64
			for c := 0; c < chunks; c++ {
				s += sums[c*E+e]
			}
			hi := float32(s)
			ST.F[E+e], ST.F[2*E+e] = hi, float32(s-float64(hi))
		}
	}
}

// routeToken is one token's routing, as the CPU trainer's route: the
// softmax in float64 (p), the top-k by probability with ties to the lower
// index, and the weights.
func routeToken(p []float64, logits, probs []float32, sel []int32, wts []float32, normTopK bool) {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for e, v := range logits {
		p[e] = math.Exp(float64(v) - mx)
		sum += p[e]
	}
	for e := range p {
		p[e] /= sum
		probs[e] = float32(p[e])
	}
	var total float64
	for k := range sel {
		best := -1
		for e := range p {
			if !slices.Contains(sel[:k], int32(e)) && (best < 0 || p[e] > p[best]) {
				best = e
			}
		}
		sel[k] = int32(best)
		total += p[best]
	}
	for k, e := range sel {
		w := p[e]
		if normTopK {
			w /= total
		}
		wts[k] = float32(w)
	}
}

// MoERouterGrad is the router's backward pass, token by token on every
// core.
func (d *Device) MoERouterGrad(dlogits, probs, sel, wts, pos, dw, aux, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	defer d.timed("moe_router_grad")()
	D, P, S, W, PS, DW, A, M := tt(dlogits), tt(probs), tt(sel), tt(wts), tt(pos), tt(dw), tt(aux), tt(mask)
	E, K := experts, topK
	rowwise(n, E*8, func(lo, hi int) {
		dp := make([]float64, E)
		for t := lo; t < hi; t++ {
			clear(dp)
			s, p := S.I[t*K:(t+1)*K], P.F[t*E:(t+1)*E]
			g := func(k int) float64 { return float64(DW.F[PS.I[t*K+k]]) }
			if normTopK {
				// w_k = p_k/Σ: ∂/∂p_j = (dw_j − Σ_k w_k·dw_k)/Σ.
				var sum, wg float64
				for k, e := range s {
					sum += float64(p[e])
					wg += float64(W.F[t*K+k]) * g(k)
				}
				for k, e := range s {
					dp[e] += (g(k) - wg) / sum
				}
			} else {
				for k, e := range s {
					dp[e] += g(k)
				}
			}
			if A != nil && (M == nil || M.I[t] != 0) {
				for e := range dp {
					dp[e] += float64(A.F[e])
				}
			}
			var pdp float64
			for e := range dp {
				pdp += float64(p[e]) * dp[e]
			}
			for e := range dp {
				D.F[t*E+e] = float32(float64(p[e]) * (dp[e] - pdp))
			}
		}
	})
	stored(D)
}

// Transpose writes dst = srcᵀ, split over blocks of src's rows.
func (d *Device) Transpose(dst, src compute.Tensor, rows, cols int) {
	defer d.timed("transpose")()
	D, S := tt(dst), tt(src)
	if D.DT != S.DT || len(S.F) < rows*cols || len(D.F) < rows*cols {
		d.fail(fmt.Errorf("cpu: transpose of %d×%d %v into %d %v", rows, cols, S.DT, D.Len(), D.DT))
		return
	}
	rowwise(rows, cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			for j, v := range S.F[i*cols : (i+1)*cols] {
				D.F[j*rows+i] = v
			}
		}
	})
}
