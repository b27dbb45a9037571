package model

import (
	"fmt"
	"math"

	"gotune/nn"
)

// MoE is a layer's mixture-of-experts MLP: a router scores the experts for
// each token, the TopK best run on it, and their outputs are summed with
// the routing weights.
type MoE struct {
	Router  *nn.Linear // [Experts, Hidden], kept in float32 (never quantized)
	Experts []*Expert
}

// Expert is one SwiGLU MLP of an MoE layer.
type Expert struct{ Gate, Up, Down *nn.Linear }

func newMoE(c *Config, prefix string, alloc bool) *MoE {
	n := c.Family.MoE
	h, inter := c.Hidden, c.ExpertIntermediate
	block := prefix + n.Block + "."
	m := &MoE{Router: linear(block+n.Router, h, c.Experts, false, true)}
	for e := 0; e < c.Experts; e++ {
		p := fmt.Sprintf("%sexperts.%d.", block, e)
		ex := &Expert{
			Gate: linear(p+n.Gate, h, inter, false, alloc),
			Up:   linear(p+n.Up, h, inter, false, alloc),
			Down: linear(p+n.Down, inter, h, false, alloc),
		}
		m.Experts = append(m.Experts, ex)
	}
	return m
}

func (m *MoE) linears() []*nn.Linear {
	var out []*nn.Linear
	for _, e := range m.Experts {
		out = append(out, e.Gate, e.Up, e.Down)
	}
	return out
}

// moeActs holds one MoE layer's routing and, grouped by expert, the rows
// each expert ran: what the backward pass needs.
type moeActs struct {
	logits, probs []float32 // [n, Experts]
	sel           []int32   // [n, TopK] chosen experts, best first
	wts           []float32 // [n, TopK] routing weights
	slots         [][]int32 // per expert: the slots t·TopK+k routed to it
	x, g, u, a, y [][]float32
	// backward scratch, reused from step to step
	dw      []float64
	dlogits []float32
	p       []float64
	// dyx: per expert, the gradient of its output rows and then of its
	// input rows (added into dx after all experts ran); da, dg, du: per
	// worker, of its activation, gate and up rows.
	dyx, da, dg, du [][]float32
	order           []int
}

// auxStats gathers the load-balancing loss over the MoE layers of one
// forward pass: per expert, how often it was chosen and its summed router
// probability, over the tokens the attention mask keeps.
type auxStats struct {
	chosen, prob []float64
	tokens       float64
	// pending: the device model's statistics are still on its backend.
	pending bool
}

func (s *auxStats) reset(experts int) {
	s.chosen, s.prob = make([]float64, experts), make([]float64, experts)
	s.tokens, s.pending = 0, false
}

// loss is transformers' load_balancing_loss_func: Experts · Σ_e f_e·P_e,
// with f_e the share of (token, layer) pairs routed to e and P_e the mean
// router probability of e.
func (s *auxStats) loss() float64 {
	if s.tokens == 0 {
		return 0
	}
	var l float64
	for e := range s.chosen {
		l += s.chosen[e] / s.tokens * s.prob[e] / s.tokens
	}
	return float64(len(s.chosen)) * l
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

// routerGrad writes ma.dlogits, the gradient of the router logits, from
// dw, that of each slot's routing weight (through the weights and the
// softmax), adding the auxiliary loss's gradient with weight auxW (0: none)
// for the rows mask keeps.
func routerGrad(c *Config, ma *moeActs, dw []float64, n int, mask []int32, auxGrad []float64, auxW float64) {
	E, K := c.Experts, c.TopK
	ma.dlogits = grow(ma.dlogits, n*E)
	dlogits := ma.dlogits
	dp := make([]float64, E)
	for t := 0; t < n; t++ {
		clear(dp)
		sel, p := ma.sel[t*K:(t+1)*K], ma.probs[t*E:(t+1)*E]
		if c.NormTopK {
			// w_k = p_k/S: ∂/∂p_j = (dw_j − Σ_k w_k·dw_k)/S.
			var S, wdw float64
			for k, e := range sel {
				S += float64(p[e])
				wdw += float64(ma.wts[t*K+k]) * dw[t*K+k]
			}
			for k, e := range sel {
				dp[e] += (dw[t*K+k] - wdw) / S
			}
		} else {
			for k, e := range sel {
				dp[e] += dw[t*K+k]
			}
		}
		if auxGrad != nil && auxW != 0 && (mask == nil || mask[t] != 0) {
			for e := range dp {
				dp[e] += auxW * auxGrad[e]
			}
		}
		var pdp float64
		for e := range dp {
			pdp += float64(p[e]) * dp[e]
		}
		for e := range dp {
			dlogits[t*E+e] = float32(float64(p[e]) * (dp[e] - pdp))
		}
	}
}

// hasDenseMLP reports whether some layer has a dense MLP.
func (m *Model) hasDenseMLP() bool {
	for _, l := range m.Layers {
		if l.MoE == nil {
			return true
		}
	}
	return false
}

// grad is the gradient of router_aux_loss_coef × the loss of these
// statistics with respect to each expert's router probability at one
// (token, layer) counted; nil when there is none.
func (s *auxStats) grad(c *Config) []float64 {
	if c.AuxCoef == 0 || s.tokens == 0 {
		return nil
	}
	g := make([]float64, c.Experts)
	for e, n := range s.chosen {
		g[e] = c.AuxCoef * float64(c.Experts) * n / (s.tokens * s.tokens)
	}
	return g
}
