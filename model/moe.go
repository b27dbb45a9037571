package model

import (
	"fmt"

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
