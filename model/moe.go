package model

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"gotune/compute/cpu"
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
		// The layer runs its experts side by side (runExperts).
		ex.Gate.Siblings, ex.Up.Siblings, ex.Down.Siblings = c.Experts, c.Experts, c.Experts
		m.Experts = append(m.Experts, ex)
	}
	return m
}

// runExperts calls fn(e, worker) for every expert with rows, up to one
// worker per core taking the next expert as it finishes one, largest
// first so that the last to finish are small; the experts' products use
// their share of the cores (nn.Linear.Siblings). An expert's products are
// a few dozen rows each (a 256-token batch, 8 experts, top-2): split across
// all cores, each would cost a hand-off and a wait per product (about ten
// per expert and pass), and on a busy machine a core late to take its part
// stalls the others; whole experts per worker cost one wait per layer and
// pass. fn must write only its expert's buffers and its worker's.
func runExperts(ma *moeActs, fn func(e, worker int)) {
	order := ma.order[:0]
	for e, s := range ma.slots {
		if len(s) > 0 {
			order = append(order, e)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(ma.slots[b]) - len(ma.slots[a]) })
	ma.order = order
	var next atomic.Int64
	cpu.RunWorkers(workers(ma), func(w int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(order) {
				return
			}
			fn(order[i], w)
		}
	})
}

// workers is how many goroutines runExperts uses.
func workers(ma *moeActs) int {
	busy := 0
	for _, s := range ma.slots {
		if len(s) > 0 {
			busy++
		}
	}
	return max(1, min(cpu.Threads(), busy))
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

func growRows(s [][]float32, e, n int) [][]float32 {
	if len(s) < e {
		s = append(s, make([][]float32, e-len(s))...)
	}
	return s[:e]
}

// growSlack is grow for an expert's rows × width buffer, made with a
// quarter more rows than asked: an expert's share of the tokens moves a
// little from step to step, and a buffer re-made whenever it gains a row
// would be fresh memory, page faults included, on most steps.
func growSlack(s []float32, rows, width int) []float32 {
	if cap(s) < rows*width {
		return make([]float32, rows*width, (rows+rows/4+8)*width)
	}
	return s[:rows*width]
}

// moeForward runs an MoE MLP on n rows of x into out (overwritten). mask,
// when set with stats, selects the rows counted in the auxiliary loss.
func moeForward(c *Config, m *MoE, ma *moeActs, out, x []float32, n int, mask []int32, stats *auxStats) {
	E, K, h := c.Experts, c.TopK, c.Hidden
	ma.logits = grow(ma.logits, n*E)
	m.Router.Forward(ma.logits, x, n)
	route(c, ma, n, mask, stats)
	// Each expert runs once on the rows routed to it, packed together.
	inter := c.ExpertIntermediate
	ma.x, ma.g, ma.u = growRows(ma.x, E, 0), growRows(ma.g, E, 0), growRows(ma.u, E, 0)
	ma.a, ma.y = growRows(ma.a, E, 0), growRows(ma.y, E, 0)
	runExperts(ma, func(e, _ int) {
		ex, slots := m.Experts[e], ma.slots[e]
		ne := len(slots)
		ma.x[e], ma.y[e] = growSlack(ma.x[e], ne, h), growSlack(ma.y[e], ne, h)
		ma.g[e], ma.u[e], ma.a[e] = growSlack(ma.g[e], ne, inter), growSlack(ma.u[e], ne, inter), growSlack(ma.a[e], ne, inter)
		xe := ma.x[e]
		for i, s := range slots {
			t := int(s) / K
			copy(xe[i*h:(i+1)*h], x[t*h:(t+1)*h])
		}
		ex.Gate.Forward(ma.g[e], xe, ne)
		ex.Up.Forward(ma.u[e], xe, ne)
		cpu.SiLUMul(ma.a[e], ma.g[e], ma.u[e]) // nn.SwiGLU on this goroutine
		ex.Down.Forward(ma.y[e], ma.a[e], ne)
	})
	// The weighted sum into out, expert by expert in order (the rounding
	// of a serial loop over experts).
	clear(out[:n*h])
	for e, slots := range ma.slots {
		for i, s := range slots {
			t := int(s) / K
			w := ma.wts[s]
			o, y := out[t*h:(t+1)*h], ma.y[e][i*h:(i+1)*h]
			for j, v := range y {
				o[j] += w * v
			}
		}
	}
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

// moeBackward turns dout, the gradient of the MoE output, into gradients
// of the experts, the router and the input (accumulated into dx), adding
// the auxiliary loss's gradient with weight auxW (0: none) for the rows
// mask keeps.
func moeBackward(c *Config, m *MoE, ma *moeActs, dx, dout, x []float32, n int, mask []int32, auxGrad []float64, auxW float64) {
	E, K, h, inter := c.Experts, c.TopK, c.Hidden, c.ExpertIntermediate
	if cap(ma.dw) < n*K {
		ma.dw = make([]float64, n*K)
	}
	dw := ma.dw[:n*K]
	clear(dw)
	nw := workers(ma)
	ma.dyx = growRows(ma.dyx, E, 0)
	ma.da, ma.dg, ma.du = growRows(ma.da, nw, 0), growRows(ma.dg, nw, 0), growRows(ma.du, nw, 0)
	runExperts(ma, func(e, w int) {
		ex, slots := m.Experts[e], ma.slots[e]
		ne := len(slots)
		ma.dyx[e] = growSlack(ma.dyx[e], ne, h)
		ma.da[w], ma.dg[w], ma.du[w] = growSlack(ma.da[w], ne, inter), growSlack(ma.dg[w], ne, inter), growSlack(ma.du[w], ne, inter)
		dy, da, dg, du := ma.dyx[e], ma.da[w], ma.dg[w], ma.du[w]
		for i, s := range slots {
			t := int(s) / K
			d, y := dout[t*h:(t+1)*h], ma.y[e][i*h:(i+1)*h]
			var dot float64
			w := ma.wts[s]
			for j, v := range d {
				dot += float64(v) * float64(y[j])
				dy[i*h+j] = w * v
			}
			dw[s] = dot // each slot belongs to one expert
		}
		clear(da)
		ex.Down.Backward(da, dy, ma.a[e], ne)
		cpu.SiLUMulBackward(dg, du, da, ma.g[e], ma.u[e]) // nn.SwiGLUBackward on this goroutine
		// dy is spent: its rows take the input's gradient.
		dxe := dy
		clear(dxe)
		ex.Gate.Backward(dxe, dg, ma.x[e], ne)
		ex.Up.Backward(dxe, du, ma.x[e], ne)
	})
	// Tokens are shared between experts: add their input gradients
	// expert by expert in order.
	for e, slots := range ma.slots {
		for i, s := range slots {
			t := int(s) / K
			addTo(dx[t*h:(t+1)*h], ma.dyx[e][i*h:(i+1)*h])
		}
	}
	routerGrad(c, ma, dw, n, mask, auxGrad, auxW)
	m.Router.Backward(dx, ma.dlogits, x, n)
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
