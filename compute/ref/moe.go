package ref

import (
	"math"

	"gotune/compute"
)

// GemmGroup runs the jobs one after another, each term a Gemm.
func (b *Backend) GemmGroup(jobs []compute.GemmJob) {
	for _, j := range jobs {
		beta := j.Beta
		for _, t := range j.Terms {
			b.Gemm(t.TransA, t.TransB, j.M, j.N, t.K, t.Alpha, t.A, t.LDA, t.B, t.LDB, beta, j.C, j.LDC)
			beta = 1
		}
	}
}

// kept reports whether mask (nil: all) keeps token t.
func kept(mask *tensor, t int) bool { return mask == nil || mask.I[t] != 0 }

func (b *Backend) MoERoute(probs, sel, wts, rows, rowWts, pos, offs, stats, logits, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	P, S, W, R, RW, PS, O, ST, L, M := tt(probs), tt(sel), tt(wts), tt(rows), tt(rowWts), tt(pos), tt(offs), tt(stats), tt(logits), tt(mask)
	E, K := experts, topK
	if ST != nil {
		for i := range ST.F[:3*E] {
			ST.F[i] = 0
		}
	}
	sums := make([]float64, E)
	p := make([]float64, E)
	for t := 0; t < n; t++ {
		mx := math.Inf(-1)
		for e := 0; e < E; e++ {
			mx = math.Max(mx, L.get(t*E+e))
		}
		var sum float64
		for e := range p {
			p[e] = math.Exp(L.get(t*E+e) - mx)
			sum += p[e]
		}
		for e := range p {
			p[e] /= sum
			P.set(t*E+e, p[e])
		}
		var total float64
		for k := 0; k < K; k++ {
			best := -1
			for e := 0; e < E; e++ {
				taken := false
				for j := 0; j < k; j++ {
					taken = taken || int(S.I[t*K+j]) == e
				}
				if !taken && (best < 0 || p[e] > p[best]) {
					best = e
				}
			}
			S.I[t*K+k] = int32(best)
			total += p[best]
		}
		for k := 0; k < K; k++ {
			w := p[S.I[t*K+k]]
			if normTopK {
				w /= total
			}
			W.set(t*K+k, w)
		}
		if ST != nil && kept(M, t) {
			for k := 0; k < K; k++ {
				ST.F[S.I[t*K+k]]++
			}
			for e := range p {
				sums[e] += p[e]
			}
		}
	}
	// The list, expert by expert, each in slot (so token) order.
	at := 0
	for e := 0; e < E; e++ {
		O.F[e] = float32(at)
		for s := 0; s < n*K; s++ {
			if int(S.I[s]) == e {
				R.I[at], PS.I[s] = int32(s/K), int32(at)
				RW.F[at] = W.F[s]
				at++
			}
		}
	}
	O.F[E] = float32(at)
	if ST != nil {
		for e, s := range sums {
			hi := float32(s)
			ST.F[E+e], ST.F[2*E+e] = hi, float32(s-float64(hi))
		}
	}
}

func (b *Backend) MoERouterGrad(dlogits, probs, sel, wts, pos, dw, aux, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	D, P, S, W, PS, DW, A, M := tt(dlogits), tt(probs), tt(sel), tt(wts), tt(pos), tt(dw), tt(aux), tt(mask)
	E, K := experts, topK
	dp := make([]float64, E)
	for t := 0; t < n; t++ {
		for e := range dp {
			dp[e] = 0
		}
		g := func(k int) float64 { return DW.get(int(PS.I[t*K+k])) }
		if normTopK {
			var sum, wg float64
			for k := 0; k < K; k++ {
				sum += P.get(t*E + int(S.I[t*K+k]))
				wg += W.get(t*K+k) * g(k)
			}
			for k := 0; k < K; k++ {
				dp[S.I[t*K+k]] += (g(k) - wg) / sum
			}
		} else {
			for k := 0; k < K; k++ {
				dp[S.I[t*K+k]] += g(k)
			}
		}
		if A != nil && kept(M, t) {
			for e := range dp {
				dp[e] += A.get(e)
			}
		}
		var pdp float64
		for e := range dp {
			pdp += P.get(t*E+e) * dp[e]
		}
		for e := range dp {
			D.set(t*E+e, P.get(t*E+e)*(dp[e]-pdp))
		}
	}
}

func (b *Backend) Transpose(dst, src compute.Tensor, rows, cols int) {
	D, S := tt(dst), tt(src)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			D.set(j*rows+i, S.get(i*cols+j))
		}
	}
}
