package model

import "math"

// moeActs is one MoE layer's routing as route computes it: the oracle the
// backends' MoERoute is checked against, bit for bit.
type moeActs struct {
	logits, probs []float32 // [n, Experts]
	sel           []int32   // [n, TopK] chosen experts, best first
	wts           []float32 // [n, TopK] routing weights
	slots         [][]int32 // per expert: the slots t·TopK+k routed to it
	p             []float64 // one token's probabilities
}

// route turns the router logits in ma.logits (n rows) into each token's
// experts, best first (ma.sel), their routing weights (ma.wts), the router
// probabilities (ma.probs) and, per expert, the slots t·TopK+k routed to it
// in token order (ma.slots); with stats it counts the rows mask keeps (all
// when mask is nil) for the auxiliary loss.
func route(c *Config, ma *moeActs, n int, mask []int32, stats *auxStats) {
	E, K := c.Experts, c.TopK
	ma.probs = grow(ma.probs, n*E)
	ma.wts = grow(ma.wts, n*K)
	if cap(ma.sel) < n*K {
		ma.sel = make([]int32, n*K)
	}
	ma.sel = ma.sel[:n*K]
	if len(ma.slots) != E {
		ma.slots = make([][]int32, E)
	}
	for e := range ma.slots {
		ma.slots[e] = ma.slots[e][:0]
	}
	if len(ma.p) != E {
		ma.p = make([]float64, E)
	}
	p := ma.p
	for t := 0; t < n; t++ {
		// Softmax in float64, then the top-k by probability (ties to the
		// lower index).
		lg := ma.logits[t*E : (t+1)*E]
		mx := math.Inf(-1)
		for _, v := range lg {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		for e, v := range lg {
			p[e] = math.Exp(float64(v) - mx)
			sum += p[e]
		}
		for e := range p {
			p[e] /= sum
			ma.probs[t*E+e] = float32(p[e])
		}
		sel := ma.sel[t*K : (t+1)*K]
		var total float64
		for k := 0; k < K; k++ {
			best := -1
			for e := 0; e < E; e++ {
				taken := false
				for _, s := range sel[:k] {
					taken = taken || int(s) == e
				}
				if !taken && (best < 0 || p[e] > p[best]) {
					best = e
				}
			}
			sel[k] = int32(best)
			total += p[best]
			ma.slots[best] = append(ma.slots[best], int32(t*K+k))
		}
		for k, e := range sel {
			w := p[e]
			if c.NormTopK {
				w /= total
			}
			ma.wts[t*K+k] = float32(w)
		}
		if stats != nil && (mask == nil || mask[t] != 0) {
			stats.tokens++
			for _, e := range sel {
				stats.chosen[e]++
			}
			for e := range p {
				stats.prob[e] += p[e]
			}
		}
	}
}
