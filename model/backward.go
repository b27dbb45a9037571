package model

import (
	"fmt"
	"math"

	"gotune/compute/cpu"
	"gotune/nn"
)

// Loss runs the forward pass and returns the summed cross-entropy of the
// trained tokens and their count (the mean is sum/count).
//
// For a mixture of experts trained with its load-balancing loss
// (output_router_logits), the loss is the cross-entropy plus
// router_aux_loss_coef × the auxiliary loss, as transformers trains it; the
// auxiliary part counts once per token in sum.
func (w *Workspace) Loss(b *Batch) (sum float64, count int) {
	w.forward(b)
	sum, count = w.head(0, nil, false)
	return sum + w.AuxLoss()*float64(count), count
}

// AuxLoss is router_aux_loss_coef × the load-balancing loss of the last
// forward pass (0 without experts or without output_router_logits).
func (w *Workspace) AuxLoss() float64 {
	if w.m.Cfg.AuxCoef == 0 {
		return 0
	}
	return w.m.Cfg.AuxCoef * w.aux.loss()
}

// auxGrad is the gradient of AuxLoss with respect to each expert's router
// probability at one (token, layer): coef·E·chosen_e/M², M the (token,
// layer) pairs counted.
func (w *Workspace) auxGrad() []float64 { return w.aux.grad(w.m.Cfg) }

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

// Step runs forward and backward for one micro-batch. Gradients of every
// trainable parameter accumulate (+=) the gradient of scale·(summed token
// loss): pass 1/(trained tokens of the whole accumulated batch) so that k
// micro-batches equal one batch of k. It returns the summed loss and the
// number of trained tokens.
func (w *Workspace) Step(b *Batch, scale float32) (sum float64, count int) {
	w.forward(b)
	sum, count = w.head(scale, nil, true)
	// The auxiliary loss weighs as this micro-batch's share of the trained
	// tokens, so k equal micro-batches add to one batch's coefficient.
	w.auxW = float64(scale) * float64(count)
	sum += w.AuxLoss() * float64(count)
	w.backward()
	return sum, count
}

// TokenLogProbs runs the forward pass and returns log p(label) of every
// trained token (label ≠ IgnoreIndex, predicted by the position before it),
// row by row and left to right; TokenRows says which row each belongs to.
// The activations stay in the workspace, so BackwardTokens may follow for
// the same batch — the building block of losses over whole sequences
// (preference and policy-gradient stages). The slice is reused by the next
// call.
func (w *Workspace) TokenLogProbs(b *Batch) []float64 {
	w.forward(b)
	w.keepHead = true
	w.head(0, nil, false)
	w.keepHead = false
	// Sequence-level losses are over log-probabilities only: a mixture of
	// experts' load-balancing loss is not part of them.
	w.auxW = 0
	lp := w.tokenLogp[:len(w.headRows)]
	for i := range lp {
		lp[i] = -lp[i]
	}
	return lp
}

// TokenEntropies returns, with Entropy set, the entropy (nats) of the
// distribution predicted at each token of the last TokenLogProbs, in the
// same order. The slice is reused by the next call.
func (w *Workspace) TokenEntropies() []float64 {
	if !w.Entropy {
		return nil
	}
	return w.tokenEntropy[:len(w.headRows)]
}

// TokenRows returns, for each value of the last TokenLogProbs, the index of
// its sequence in the batch. The slice is reused by the next call.
func (w *Workspace) TokenRows() []int {
	w.tokenRow = grow(w.tokenRow, len(w.headRows))
	for i, r := range w.headRows {
		w.tokenRow[i] = r / w.T
	}
	return w.tokenRow
}

// BackwardTokens follows TokenLogProbs on the same batch: gradients of
// every trainable parameter accumulate (+=) the gradient of
// Σᵢ coef[i]·log pᵢ, one coefficient per value TokenLogProbs returned. A
// loss L over sequence log-probabilities passes coef[i] = ∂L/∂log pᵢ.
func (w *Workspace) BackwardTokens(coef []float32) {
	if len(coef) != len(w.headRows) {
		panic(fmt.Sprintf("model: BackwardTokens got %d coefficients for %d tokens", len(coef), len(w.headRows)))
	}
	// The head's gradient is that of scale·(−log p): scale is −coef.
	w.headScale = grow(w.headScale, len(coef))
	for i, c := range coef {
		w.headScale[i] = -c
	}
	if w.headKept {
		// The logits of TokenLogProbs are still there: skip the product
		// (the head's largest cost at big vocabularies) and the max pass.
		w.headKept = false
		w.headBackwardKept(w.headScale)
	} else {
		w.head(0, w.headScale, true)
	}
	w.backward()
}

// Logits runs the forward pass and returns logits [B·T, Vocab] (T including
// any virtual tokens). The slice is reused by the next call.
func (w *Workspace) Logits(b *Batch) []float32 {
	w.forward(b)
	c := w.m.Cfg
	w.logits = grow(w.logits, w.N*c.Vocab)
	cpu.Sgemm(false, true, w.N, c.Vocab, c.Hidden, 1, w.xf, c.Hidden, w.m.Head.Data, c.Hidden, 0, w.logits, c.Vocab)
	w.capLogits(w.logits, false)
	return w.logits
}

// headBudget bounds the logits held at once (floats): the full [N, Vocab]
// matrix of a 150k vocabulary would dwarf everything else at long sequences.
// But every chunk re-reads and re-packs the whole head matrix (600 MB for a
// 150k × 1024 head), so a chunk has at least headMinRows rows even past the
// budget: measured on Qwen3-0.6B at 256 tokens, chunks of 110/110/35 rows ran
// the head at 53–98 GFLOP/s against 110–130 for the layers.
const (
	headBudget  = 16 << 20
	headMinRows = 256
)

// HeadChunk is how many rows the head computes at once out of rows: as many
// as headBudget allows (at least headMinRows), spread evenly over the fewest
// chunks.
func HeadChunk(vocab, rows int) int {
	if rows <= 0 || vocab <= 0 {
		return 1
	}
	most := max(headBudget/vocab, headMinRows)
	chunks := (rows + most - 1) / most
	return (rows + chunks - 1) / chunks
}

// head computes the language-model head and the shifted cross-entropy over
// the rows that have a target, chunk by chunk. With backward it writes the
// gradient of scale·loss into dxf and accumulates the head's weight gradient;
// scales, when set, replaces scale with one factor per target. Each target's
// loss is kept in tokenLogp.
func (w *Workspace) head(scale float32, scales []float32, backward bool) (float64, int) {
	c := w.m.Cfg
	h, V := c.Hidden, c.Vocab
	// Row i predicts labels[i+1] within the same sequence.
	w.headRows, w.headTargets = w.headRows[:0], w.headTargets[:0]
	for r := 0; r < w.B; r++ {
		for t := 0; t+1 < w.T; t++ {
			if y := w.labels[r*w.T+t+1]; y != IgnoreIndex {
				w.headRows = append(w.headRows, r*w.T+t)
				w.headTargets = append(w.headTargets, y)
			}
		}
	}
	rowsIdx, targets := w.headRows, w.headTargets
	if backward {
		w.dxf = grow(w.dxf, w.N*h)
		clear(w.dxf)
	}
	chunk := HeadChunk(V, len(rowsIdx))
	w.logits = grow(w.logits, chunk*V)
	w.headX, w.headDX = grow(w.headX, chunk*h), grow(w.headDX, chunk*h)
	if cap(w.headLoss) < chunk {
		w.headLoss = make([]float64, chunk)
	}
	xs, dxs, losses := w.headX, w.headDX, w.headLoss[:chunk]
	w.tokenLogp = grow(w.tokenLogp, len(rowsIdx))
	if w.Entropy {
		w.tokenEntropy = grow(w.tokenEntropy, len(rowsIdx))
	}
	head := w.m.Head
	// logits = xf·Headᵀ/temperature; the 1/temperature also scales both
	// gradients. Temperature divides the logits after Gemma 2's final soft
	// cap, as the sampler sees them; without a cap it rides on the product.
	alpha, inv := w.headAlpha()
	// TokenLogProbs keeps its logits for BackwardTokens when they fit in one
	// chunk: the buffer then still holds all of them, with the capped
	// values the soft cap's gradient needs and each row's max.
	keep := w.keepHead && !backward && len(rowsIdx) <= chunk
	w.headKept = false
	if keep {
		w.headMax = grow(w.headMax, len(rowsIdx))
	}
	var total float64
	for c0 := 0; c0 < len(rowsIdx); c0 += chunk {
		rws := rowsIdx[c0:min(c0+chunk, len(rowsIdx))]
		tg := targets[c0 : c0+len(rws)]
		m := len(rws)
		for i, r := range rws {
			copy(xs[i*h:(i+1)*h], w.xf[r*h:(r+1)*h])
		}
		lg := w.logits[:m*V]
		cpu.Sgemm(false, true, m, V, h, alpha, xs[:m*h], h, head.Data, h, 0, lg, V)
		w.capLogits(lg, backward || keep)
		if alpha != inv {
			cpu.Scale(inv, lg)
		}
		cpu.Parallel(m, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := lg[i*V : (i+1)*V]
				mx := cpu.MaxF32(row)
				target := row[tg[i]]
				if w.Entropy {
					// H = log Σe^d − Σ e^d·d / Σe^d with d = z − max z.
					var se, sd float64
					for _, v := range row {
						d := float64(v - mx)
						e := math.Exp(d)
						se += e
						sd += e * d
					}
					w.tokenEntropy[c0+i] = math.Log(se) - sd/se
				}
				var s float64
				if backward {
					sc := scale
					if scales != nil {
						sc = scales[c0+i]
					}
					// Keep e^(v-max) in place; the gradient is its share of
					// the sum, scaled, minus scale at the target.
					s = cpu.ExpSubSum(row, row, mx)
					cpu.Scale(float32(float64(sc)/s), row)
					row[tg[i]] -= sc
				} else {
					s = cpu.ExpSubSum(nil, row, mx)
					if keep {
						w.headMax[c0+i] = mx
					}
				}
				losses[i] = float64(mx) + math.Log(s) - float64(target)
			}
		})
		for i := 0; i < m; i++ {
			total += losses[i]
		}
		copy(w.tokenLogp[c0:], losses[:m])
		if !backward {
			continue
		}
		w.headGrad(lg, xs[:m*h], dxs[:m*h], rws, alpha, inv)
	}
	w.headKept = keep
	return total, len(rowsIdx)
}

// headAlpha is the factor the head's product carries (1/temperature, or 1
// under a final soft cap, which temperature must follow) and 1/temperature.
func (w *Workspace) headAlpha() (alpha, inv float32) {
	inv = 1
	if w.Temperature > 0 && w.Temperature != 1 {
		inv = float32(1 / w.Temperature)
	}
	alpha = inv
	if w.m.Cfg.FinalSoftcap != 0 {
		alpha = 1
	}
	return alpha, inv
}

// headGrad turns the gradient of the loss in the (temperature-scaled,
// capped) logits lg of rows rws into dxf's rows and the head's weight
// gradient; xs holds the rows' hidden states.
func (w *Workspace) headGrad(lg, xs, dxs []float32, rws []int, alpha, inv float32) {
	h, V := w.m.Cfg.Hidden, w.m.Cfg.Vocab
	m := len(rws)
	if alpha != inv {
		cpu.Scale(inv, lg)
	}
	w.capGrad(lg)
	cpu.Sgemm(false, false, m, h, V, alpha, lg, V, w.m.Head.Data, h, 0, dxs, h)
	for i, r := range rws {
		copy(w.dxf[r*h:(r+1)*h], dxs[i*h:(i+1)*h])
	}
	if g := w.m.Head.Grad; g != nil {
		cpu.Sgemm(true, false, V, h, m, alpha, lg, V, xs, h, 1, g, h)
	}
}

// headBackwardKept is head's backward pass with one factor a target
// (scales) on the logits TokenLogProbs kept: the same numbers as head
// recomputing them, without the product.
func (w *Workspace) headBackwardKept(scales []float32) {
	c := w.m.Cfg
	h, V := c.Hidden, c.Vocab
	rws, tg := w.headRows, w.headTargets
	m := len(rws)
	w.dxf = grow(w.dxf, w.N*h)
	clear(w.dxf)
	lg := w.logits[:m*V]
	cpu.Parallel(m, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := lg[i*V : (i+1)*V]
			s := cpu.ExpSubSum(row, row, w.headMax[i])
			cpu.Scale(float32(float64(scales[i])/s), row)
			row[tg[i]] -= scales[i]
		}
	})
	alpha, inv := w.headAlpha()
	w.headGrad(lg, w.headX[:m*h], w.headDX[:m*h], rws, alpha, inv)
}

func zero(s []float32, n int) []float32 {
	s = grow(s, n)
	clear(s)
	return s
}

// backward propagates dxf through the final norm, every block and the
// embeddings.
func (w *Workspace) backward() {
	m, c := w.m, w.m.Cfg
	n, h := w.N, c.Hidden
	w.dres = zero(w.dres, n*h)
	L := len(m.Layers)
	nn.RMSNormBackward(w.dres, m.Norm.Grad, w.dxf, w.stream[L], w.nw.of(m.Norm), w.rstdf, n, h)
	auxGrad := w.auxGrad()
	for i := L - 1; i >= 0; i-- {
		if w.Checkpoint {
			w.recompute = true
			w.forwardLayer(m.Layers[i])
			w.recompute = false
		}
		w.backwardLayer(m.Layers[i], auxGrad)
	}
	if m.Embed.Grad != nil {
		g := m.Embed.Grad
		scale := float32(1)
		if c.EmbedScale != 0 {
			scale = float32(c.EmbedScale)
		}
		for i, id := range w.ids {
			if i%w.T < w.P {
				continue
			}
			if scale != 1 {
				cpu.Axpy(scale, w.dres[i*h:(i+1)*h], g[int(id)*h:(int(id)+1)*h])
				continue
			}
			addTo(g[int(id)*h:(int(id)+1)*h], w.dres[i*h:(i+1)*h])
		}
	}
	if w.P > 0 {
		d := grow(w.dvirt, w.B*w.P*h)
		w.dvirt = d
		for r := 0; r < w.B; r++ {
			copy(d[r*w.P*h:(r+1)*w.P*h], w.dres[r*w.T*h:(r*w.T+w.P)*h])
		}
		scaleVirtual(c, d)
		m.Input.AccumulateGrad(d, w.B)
	}
}

// hookGrad returns the gradient reaching a sub-layer's own output: dres
// itself, or through the sub-layer's post-norm (x, rstd: the norm's input
// and saved 1/rms) and then a copy passed back through its hook.
func (w *Workspace) hookGrad(hook SublayerHook, post *nn.Param, x, rstd []float32, size int) []float32 {
	d := w.dres
	if post != nil {
		w.dpost = zero(w.dpost, size)
		nn.RMSNormBackward(w.dpost, post.Grad, w.dres, x, w.nw.of(post), rstd, w.N, w.m.Cfg.Hidden)
		d = w.dpost
	}
	if hook == nil {
		return d
	}
	w.dhook = grow(w.dhook, size)
	copy(w.dhook, d)
	hook.Backward(w.dhook, w.N)
	return w.dhook
}

func addTo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] += v
	}
}

// backwardLayer turns dres from the gradient of the block's output into the
// gradient of its input, accumulating parameter gradients on the way.
func (w *Workspace) backwardLayer(l *Layer, auxGrad []float64) {
	m, c := w.m, w.m.Cfg
	a := w.actsFor(l.Index)
	n, h, qd, kd, hd, inter := w.N, c.Hidden, c.QDim(), c.KVDim(), c.HeadDim, c.Intermediate
	x := w.stream[l.Index]
	rope := m.ropeFor(l.Index, int(maxPos(w.pos))+1)

	// MLP: out = xmid + [post-norm] down(act(gate(xn2))·up(xn2)), xn2 = norm(xmid).
	dmlp := w.hookGrad(l.MLPOut, l.MLPPostNorm, a.mo, a.rstdMO, n*h)
	if l.MoE == nil {
		w.da = zero(w.da, n*inter)
		l.Down.Backward(w.da, dmlp, a.a, n)
		w.dg, w.du = grow(w.dg, n*inter), grow(w.du, n*inter)
		gluBackward(c, w.dg, w.du, w.da, a.g, a.u)
	}
	w.dxn = zero(w.dxn, n*h)
	if l.MoE != nil {
		moeBackward(c, l.MoE, &a.moe, w.dxn, dmlp, a.xn2, n, w.mask, auxGrad, w.auxW)
	} else if l.GateUp != nil {
		w.dfused = grow(w.dfused, 2*n*inter)
		joinCols(w.dfused, n, w.dg, w.du)
		l.GateUp.Backward(w.dxn, w.dfused, a.xn2, n)
	} else {
		l.Gate.Backward(w.dxn, w.dg, a.xn2, n)
		l.Up.Backward(w.dxn, w.du, a.xn2, n)
	}
	nn.RMSNormBackward(w.dres, l.PostNorm.Grad, w.dxn, a.xmid, w.nw.of(l.PostNorm), a.rstd2, n, h)

	// Attention: xmid = x + [post-norm] o(attn(rope(q), rope(k), v)).
	w.datt = zero(w.datt, n*qd)
	l.O.Backward(w.datt, w.hookGrad(l.AttnOut, l.AttnPostNorm, a.ao, a.rstdAO, n*h), a.att, n)
	w.dq = grow(w.dq, n*qd)
	tk := a.attn.Tk
	w.dk, w.dv = zero(w.dk, w.B*tk*kd), zero(w.dv, w.B*tk*kd)
	k, v := a.kr, a.v
	if l.Prefix != nil {
		k, v = a.kAll, a.vAll
	}
	a.attn.Tiles = w.attnTiles
	a.attn.Backward(w.dq, w.dk, w.dv, w.datt, a.qr, k, v, a.att, a.lse)
	w.attnTiles = a.attn.Tiles
	dk, dv := w.dk, w.dv
	if l.Prefix != nil {
		pl := l.Prefix.Len()
		dkp, dvp := make([]float32, w.B*pl*kd), make([]float32, w.B*pl*kd)
		dk, dv = make([]float32, n*kd), make([]float32, n*kd)
		for r := 0; r < w.B; r++ {
			base := r * tk * kd
			copy(dkp[r*pl*kd:(r+1)*pl*kd], w.dk[base:base+pl*kd])
			copy(dvp[r*pl*kd:(r+1)*pl*kd], w.dv[base:base+pl*kd])
			copy(dk[r*w.T*kd:(r+1)*w.T*kd], w.dk[base+pl*kd:base+tk*kd])
			copy(dv[r*w.T*kd:(r+1)*w.T*kd], w.dv[base+pl*kd:base+tk*kd])
		}
		l.Prefix.AccumulateGrad(l.Index, dkp, dvp, w.B)
	}
	nn.RopeBackward(w.dq, n, c.Heads, hd, w.pos, rope.Cos, rope.Sin, rope.Rot)
	nn.RopeBackward(dk, n, c.KVHeads, hd, w.pos, rope.Cos, rope.Sin, rope.Rot)
	dq := w.dq
	if c.QKNorm {
		w.dqn, w.dkn = zero(w.dqn, n*qd), zero(w.dkn, n*kd)
		nn.RMSNormBackward(w.dqn, l.QNorm.Grad, w.dq, a.q, w.nw.of(l.QNorm), a.rstdq, n*c.Heads, hd)
		nn.RMSNormBackward(w.dkn, l.KNorm.Grad, dk, a.k, w.nw.of(l.KNorm), a.rstdk, n*c.KVHeads, hd)
		dq, dk = w.dqn, w.dkn
	}
	// Below the first block only trained embeddings and virtual tokens need
	// a gradient; without them the input gradient is skipped.
	var dxn []float32
	if l.Index > 0 || m.Embed.Grad != nil || w.P > 0 || l.InNorm.Grad != nil {
		w.dxn = zero(w.dxn, n*h)
		dxn = w.dxn
	}
	if l.QKV != nil {
		w.dfused = grow(w.dfused, n*(qd+2*kd))
		joinCols(w.dfused, n, dq[:n*qd], dk[:n*kd], dv[:n*kd])
		l.QKV.Backward(dxn, w.dfused, a.xn1, n)
	} else {
		l.Q.Backward(dxn, dq, a.xn1, n)
		l.K.Backward(dxn, dk[:n*kd], a.xn1, n)
		l.V.Backward(dxn, dv[:n*kd], a.xn1, n)
	}
	if dxn != nil {
		nn.RMSNormBackward(w.dres, l.InNorm.Grad, w.dxn, x, w.nw.of(l.InNorm), a.rstd1, n, h)
	}
}
