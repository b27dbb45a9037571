package model

import "gotune/nn"

// normWeights holds 1+weight for every RMSNorm of a model whose norms
// multiply by (1 + weight) (Gemma), refreshed before each pass because
// training changes the weights; for other models it stays empty and of
// returns the weight itself.
type normWeights map[*nn.Param][]float32

// refresh recomputes the effective weights of every norm of m.
func (nw *normWeights) refresh(m *Model) {
	if !m.Cfg.NormPlusOne {
		return
	}
	if *nw == nil {
		*nw = normWeights{}
	}
	set := func(p *nn.Param) {
		if p == nil {
			return
		}
		b := (*nw)[p]
		if len(b) != len(p.Data) {
			b = make([]float32, len(p.Data))
			(*nw)[p] = b
		}
		for i, v := range p.Data {
			b[i] = 1 + v
		}
	}
	set(m.Norm)
	for _, l := range m.Layers {
		for _, p := range []*nn.Param{l.InNorm, l.PostNorm, l.AttnPostNorm, l.MLPPostNorm, l.QNorm, l.KNorm} {
			set(p)
		}
	}
}

// of returns the weights the norm p multiplies by.
func (nw normWeights) of(p *nn.Param) []float32 {
	if b, ok := nw[p]; ok {
		return b
	}
	return p.Data
}

// glu applies the MLP's gated activation a = act(g)·u: SiLU (SwiGLU) or
// tanh-approximated GELU (GeGLU, Gemma).
func glu(c *Config, a, g, u []float32) {
	if c.Act == "gelu_pytorch_tanh" {
		nn.GeGLU(a, g, u)
		return
	}
	nn.SwiGLU(a, g, u)
}

func gluBackward(c *Config, dg, du, da, g, u []float32) {
	if c.Act == "gelu_pytorch_tanh" {
		nn.GeGLUBackward(dg, du, da, g, u)
		return
	}
	nn.SwiGLUBackward(dg, du, da, g, u)
}

// scaleVirtual multiplies virtual-token embeddings (or, in backward, their
// gradient) by the embedding scale when the family scales all input
// embeddings (Gemma 2), not just the token table's.
func scaleVirtual(c *Config, x []float32) {
	if c.EmbedScaleInputs {
		scaleEmbeddings(c, x)
	}
}

// scaleEmbeddings multiplies n token rows of x by the family's embedding
// scale (Gemma's √hidden), when it has one.
func scaleEmbeddings(c *Config, x []float32) {
	if c.EmbedScale == 0 {
		return
	}
	s := float32(c.EmbedScale)
	for i := range x {
		x[i] *= s
	}
}

// capLogits soft-caps a chunk of final logits in place (Gemma 2's
// final_logit_softcapping), keeping the capped values for capGrad when a
// backward pass follows. Without a cap it does nothing.
func (w *Workspace) capLogits(lg []float32, backward bool) {
	c := float32(w.m.Cfg.FinalSoftcap)
	if c == 0 {
		return
	}
	nn.SoftCap(lg, c)
	if backward {
		w.capF = grow(w.capF, len(lg))
		copy(w.capF, lg)
	}
}

// capGrad turns the gradient of the capped logits (in lg) into the gradient
// of the logits before the cap.
func (w *Workspace) capGrad(lg []float32) {
	c := float32(w.m.Cfg.FinalSoftcap)
	if c == 0 {
		return
	}
	nn.SoftCapBackward(lg, w.capF[:len(lg)], c)
}
