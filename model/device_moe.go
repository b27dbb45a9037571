package model

import (
	"gotune/compute"
	"gotune/nn"
)

// Mixture-of-experts MLPs on the device (Qwen3-MoE, Mixtral). The backend
// routes (MoERoute: the CPU's float64 softmax, top-k and weights, the
// slots listed expert by expert, the load-balancing statistics); only
// where each expert's rows start comes back to the host, to size the
// products. The experts then run side by side (GemmGroup), each over the
// rows routed to it, gathered together, and the weighted outputs are added
// back in expert order. Backward mirrors it, the router's gradient on the
// backend too (MoERouterGrad). Expert layers with what the grouped
// products do not cover (4-bit weights, biases, IA3, DoRA, dropout) run
// one expert after another.

// dmoe is an MoE MLP on the device: the router and each expert's gate, up
// and down projections.
type dmoe struct {
	router  *dlinear
	experts [][3]*dlinear
}

// dmoeActs is what an MoE layer keeps for backward: the routing and, with
// the rows in expert order (expert e's from off[e]), each row's token and
// weight and the experts' gate, up and output rows.
type dmoeActs struct {
	off         []int
	probs, swts compute.Tensor // [n, Experts] and [n, TopK] F32: probabilities, weights by slot
	sel, pos    compute.Tensor // [n, TopK] I32: chosen experts, each slot's row
	idx, wts    compute.Tensor // [n·TopK] I32, F32: each row's token and weight
	g, u, y     compute.Tensor // [n·TopK, ExpertIntermediate], and [n·TopK, Hidden]
	offs        compute.Tensor // [Experts+1] F32
	offHost     []float32
}

// moeActs allocates an MoE layer's activations for n tokens with act
// (prepareShape's allocator, which shares them between blocks under
// checkpointing).
func (dm *DeviceModel) moeActs(n int, act func(role string, dt compute.DType, size int) compute.Tensor) *dmoeActs {
	c := dm.cfg
	nk := n * c.TopK
	return &dmoeActs{
		probs: act("moe_probs", compute.F32, n*c.Experts), swts: act("moe_swts", compute.F32, nk),
		sel: act("moe_sel", compute.I32, nk), pos: act("moe_pos", compute.I32, nk),
		idx: act("moe_idx", compute.I32, nk), wts: act("moe_wts", compute.F32, nk),
		g: act("moe_g", dm.act, nk*c.ExpertIntermediate), u: act("moe_u", dm.act, nk*c.ExpertIntermediate),
		y: act("moe_y", dm.act, nk*c.Hidden), offs: act("moe_offs", compute.F32, c.Experts+1),
	}
}

// moeForward runs layer l's mixture of experts on n rows of x into out.
func (dm *DeviceModel) moeForward(l *dlayer, a *dacts, out, x compute.Tensor, n int) {
	be, c := dm.be, dm.cfg
	E, K, h := c.Experts, c.TopK, c.Hidden
	ma := a.moe
	logits := dm.buf("moe_logits", compute.F32, n*E)
	dm.linear(l.moe.router, a, logits, x, n)
	var stats compute.Tensor
	if !dm.recompute {
		// Each layer's statistics in its own place, summed on the host
		// when the loss or its gradient is asked for (fetchAux).
		stats = dm.buf("moe_stats", compute.F32, len(dm.layers)*3*E).Slice(l.index*3*E, 3*E)
		dm.aux.pending = true
	}
	be.MoERoute(ma.probs, ma.sel, ma.swts, ma.idx, ma.wts, ma.pos, ma.offs, stats, logits, dm.maskT(), n, E, K, c.NormTopK)
	ma.offHost = grow(ma.offHost, E+1)
	if be.Download(ma.offHost, ma.offs) != nil {
		return // the backend keeps the error; the step reports it
	}
	ma.off = ma.off[:0]
	for _, v := range ma.offHost {
		ma.off = append(ma.off, int(v))
	}
	if dm.groupable(l) {
		dm.moeForwardGrouped(l, a, out, x, n)
		return
	}
	inter := c.ExpertIntermediate
	be.Zero(out.Slice(0, n*h))
	for e, ex := range l.moe.experts {
		o, ne := ma.off[e], ma.off[e+1]-ma.off[e]
		if ne == 0 {
			continue
		}
		ie := ma.idx.Slice(o, ne)
		xe := dm.buf("moe_x", dm.act, ne*h)
		be.GatherRows(xe, x, ie, ne, h)
		g, u, y := ma.g.Slice(o*inter, ne*inter), ma.u.Slice(o*inter, ne*inter), ma.y.Slice(o*h, ne*h)
		dm.linear(ex[0], a, g, xe, ne)
		dm.linear(ex[1], a, u, xe, ne)
		act := dm.buf("moe_act", dm.act, ne*inter)
		be.SwiGLU(act, g, u)
		dm.linear(ex[2], a, y, act, ne)
		// A token goes to an expert at most once, so one expert's rows
		// scatter without collisions; experts add in order.
		yw := dm.buf("moe_yw", dm.act, ne*h)
		be.ScaleRows(yw, y, ma.wts.Slice(o, ne), ne, h)
		be.ScatterAddRows(out, yw, ie, ne, h)
	}
}

// moeBackward turns dout, the gradient of the layer's MoE output, into
// the gradient of its input x (dx, overwritten) and of the experts' and
// the router's trainable weights, the auxiliary loss's gradient (auxGrad,
// weight dm.auxW) included.
func (dm *DeviceModel) moeBackward(l *dlayer, a *dacts, dx, dout, x compute.Tensor, n int, auxGrad []float64) {
	be, c := dm.be, dm.cfg
	E, K, h, inter := c.Experts, c.TopK, c.Hidden, c.ExpertIntermediate
	ma := a.moe
	// The gradient of each row's routing weight, dout·y, in expert order.
	dwT := dm.buf("moe_dw", compute.F32, n*K)
	if dm.groupable(l) {
		dm.moeBackwardGrouped(l, a, dx, dout, x, n, dwT)
	} else {
		be.Zero(dx.Slice(0, n*h))
		for e, ex := range l.moe.experts {
			o, ne := ma.off[e], ma.off[e+1]-ma.off[e]
			if ne == 0 {
				continue
			}
			ie := ma.idx.Slice(o, ne)
			g, u, y := ma.g.Slice(o*inter, ne*inter), ma.u.Slice(o*inter, ne*inter), ma.y.Slice(o*h, ne*h)
			dy := dm.buf("moe_dy", dm.act, ne*h)
			be.GatherRows(dy, dout, ie, ne, h)
			be.RowDot(dwT.Slice(o, ne), dy, y, ne, h)
			be.ScaleRows(dy, dy, ma.wts.Slice(o, ne), ne, h)
			act := dm.buf("moe_act", dm.act, ne*inter)
			be.SwiGLU(act, g, u)
			da := dm.buf("moe_da", dm.act, ne*inter)
			dm.linearBackward(ex[2], a, da, dy, act, ne, false)
			dg, du := dm.buf("moe_dg", dm.act, ne*inter), dm.buf("moe_du", dm.act, ne*inter)
			be.SwiGLUBackward(dg, du, da, g, u)
			xe := dm.buf("moe_x", dm.act, ne*h)
			be.GatherRows(xe, x, ie, ne, h)
			dxe := dm.buf("moe_dx", dm.act, ne*h)
			dm.linearBackward(ex[0], a, dxe, dg, xe, ne, false)
			dm.linearBackward(ex[1], a, dxe, du, xe, ne, true)
			be.ScatterAddRows(dx, dxe, ie, ne, h)
		}
	}
	var aux compute.Tensor
	if auxGrad != nil && dm.auxW != 0 {
		v := make([]float32, E)
		for e, g := range auxGrad {
			v[e] = float32(dm.auxW * g)
		}
		aux = dm.buf("moe_aux", compute.F32, E)
		be.Upload(aux, v)
	}
	dl := dm.buf("moe_dlogits", dm.act, n*E)
	be.MoERouterGrad(dl, ma.probs, ma.sel, ma.swts, ma.pos, dwT, aux, dm.maskT(), n, E, K, c.NormTopK)
	dm.linearBackward(l.moe.router, a, dx, dl, x, n, true)
}

// fetchAux brings the load-balancing statistics of the last forward pass
// to the host (once), layer by layer in order, as route counts them.
func (dm *DeviceModel) fetchAux() {
	if !dm.aux.pending {
		return
	}
	dm.aux.pending = false
	E := dm.cfg.Experts
	stats := dm.buf("moe_stats", compute.F32, len(dm.layers)*3*E)
	host := make([]float32, stats.Len())
	if dm.be.Download(host, stats) != nil {
		return
	}
	kept := dm.shapeB * dm.shapeT
	if dm.hostMask != nil {
		kept = 0
		for _, v := range dm.hostMask {
			if v != 0 {
				kept++
			}
		}
	}
	for _, l := range dm.layers {
		if l.moe == nil {
			continue
		}
		s := host[l.index*3*E : (l.index+1)*3*E]
		dm.aux.tokens += float64(kept)
		for e := 0; e < E; e++ {
			dm.aux.chosen[e] += float64(s[e])
			dm.aux.prob[e] += float64(s[E+e]) + float64(s[2*E+e])
		}
	}
}

// moeAuxGrad is the load-balancing loss's gradient in the router
// probabilities of the last forward pass (nil: none).
func (dm *DeviceModel) moeAuxGrad() []float64 {
	if dm.cfg.Experts == 0 {
		return nil
	}
	dm.fetchAux()
	return dm.aux.grad(dm.cfg)
}

// AuxLoss is router_aux_loss_coef × the load-balancing loss of the last
// forward pass (0 without experts or without output_router_logits), as
// Workspace.AuxLoss.
func (dm *DeviceModel) AuxLoss() float64 {
	if dm.cfg.AuxCoef == 0 {
		return 0
	}
	dm.fetchAux()
	return dm.cfg.AuxCoef * dm.aux.loss()
}

// linears lists the block's linear layers present, in a fixed order.
func (l *dlayer) linears() []*dlinear {
	var out []*dlinear
	for _, lin := range []*dlinear{l.q, l.k, l.v, l.o, l.gate, l.up, l.down, l.fqkv, l.fgu} {
		if lin != nil {
			out = append(out, lin)
		}
	}
	if l.moe != nil {
		out = append(out, l.moe.router)
		for _, ex := range l.moe.experts {
			out = append(out, ex[:]...)
		}
	}
	return out
}

// ExpertLowRank is what the device path needs from LoRA on an MoE layer's
// stacked expert weights (PEFT's target_parameters; implemented by peft's
// expert adapters): A [r·Experts, in], expert e's rows e·r … e·r+r−1, and
// B [rows, r·Experts], expert e's column k at k·Experts+e, this layer's
// rows from rowOff (a fused gate_up_proj's B serves the gate and the up
// layers); the update is scale·B_e·A_e.
type ExpertLowRank interface {
	ExpertLowRank() (a, b *nn.Param, scale float32, expert, rowOff int)
}

// expertPart locates an expert layer's part of stacked LoRA matrices.
type expertPart struct{ e, rowOff int }

// loraA is the LoRA layer's A [r, in]: the matrix, or the expert's rows.
func (dm *DeviceModel) loraA(lr *dlora, in int) compute.Tensor {
	if lr.expert == nil {
		return lr.a.w
	}
	return lr.a.w.Slice(lr.expert.e*lr.r*in, lr.r*in)
}

// loraAGrad is the gradient of loraA.
func (dm *DeviceModel) loraAGrad(lr *dlora, in int) compute.Tensor {
	if lr.expert == nil {
		return lr.a.grad
	}
	return lr.a.grad.Slice(lr.expert.e*lr.r*in, lr.r*in)
}

// bColumn is where the expert's first element of B (or of its gradient)
// sits, as a column of [out·r, Experts].
func (dm *DeviceModel) bColumn(lr *dlora, t compute.Tensor) compute.Tensor {
	start := lr.expert.rowOff*lr.r*dm.cfg.Experts + lr.expert.e
	return t.Slice(start, t.Len()-start)
}

// loraB is the LoRA layer's B [out, r]: the matrix, or the expert's
// strided columns gathered into scratch.
func (dm *DeviceModel) loraB(lr *dlora, out int) compute.Tensor {
	if lr.expert == nil {
		return lr.b.w
	}
	b := dm.buf("lora_bexp", dm.act, out*lr.r)
	dm.be.Copy2D(b, 1, dm.bColumn(lr, lr.b.w), dm.cfg.Experts, out*lr.r, 1)
	return b
}

// loraBGrad is where B's gradient accumulates: the gradient itself, or
// the expert's part gathered into scratch, to be put back by
// loraBGradDone.
func (dm *DeviceModel) loraBGrad(lr *dlora, out int) compute.Tensor {
	if lr.expert == nil {
		return lr.b.grad
	}
	g := dm.buf("lora_bexp_grad", compute.F32, out*lr.r)
	dm.be.Copy2D(g, 1, dm.bColumn(lr, lr.b.grad), dm.cfg.Experts, out*lr.r, 1)
	return g
}

func (dm *DeviceModel) loraBGradDone(lr *dlora, out int, g compute.Tensor) {
	if lr.expert != nil {
		dm.be.Copy2D(dm.bColumn(lr, lr.b.grad), dm.cfg.Experts, g, 1, out*lr.r, 1)
	}
}

// groupable reports whether layer l's experts run side by side this pass:
// plain or LoRA products on unquantized weights without biases, IA3,
// DoRA or dropout (those keep the expert-by-expert path).
func (dm *DeviceModel) groupable(l *dlayer) bool {
	for _, ex := range l.moe.experts {
		for _, lin := range ex {
			if lin.q != nil || lin.b != nil || lin.ia3 != nil || lin.group != nil {
				return false
			}
			if lr := dm.expLoRA(lin); lr != nil && (lr.dora != nil || lr.src != nil) {
				return false
			}
		}
	}
	return true
}

// expLoRA is an expert layer's LoRA this pass (nil: none, or adapters off).
func (dm *DeviceModel) expLoRA(lin *dlinear) *dlora {
	if dm.adaptersOff {
		return nil
	}
	return lin.lora
}

// Scratch of the grouped path per kind of expert layer (gate, up, down):
// each expert's B and B's gradient, and the low-rank gradient dy·B.
var (
	moeBName   = [3]string{"moe_b0", "moe_b1", "moe_b2"}
	moeDBName  = [3]string{"moe_db0", "moe_db1", "moe_db2"}
	moeDXAName = [3]string{"moe_dxa0", "moe_dxa1", "moe_dxa2"}
)

// stacked records, per kind of expert layer (gate, up, down), the stacked
// LoRA B whose experts' parts this pass gathered into the kind's scratch,
// [Experts, out·r] (nil: none; those experts' B are gathered one by one).
type stacked struct{ b, grad [3]*dparam }

// gatherB gathers, for each kind whose experts have LoRA on stacked
// weights, every expert's B [out, r] with one Transpose (expert e's
// columns are interleaved in B's rows), and with grad the same of B's
// gradient.
func (dm *DeviceModel) gatherB(l *dlayer, kinds []int, out int, grad bool) stacked {
	var st stacked
	E := dm.cfg.Experts
	for _, kind := range kinds {
		lr := dm.expLoRA(l.moe.experts[0][kind])
		if lr == nil || lr.expert == nil {
			continue
		}
		n := out * lr.r
		st.b[kind] = lr.b
		dm.be.Transpose(dm.buf(moeBName[kind], dm.act, E*n), dm.bRows(lr, lr.b.w, out), n, E)
		if grad && lr.b.trainable {
			st.grad[kind] = lr.b
			dm.be.Transpose(dm.buf(moeDBName[kind], compute.F32, E*n), dm.bRows(lr, lr.b.grad, out), n, E)
		}
	}
	return st
}

// putBackGrad returns the gathered gradients of B to their places.
func (dm *DeviceModel) putBackGrad(l *dlayer, st stacked, kinds []int, out int) {
	E := dm.cfg.Experts
	for _, kind := range kinds {
		if st.grad[kind] == nil {
			continue
		}
		lr := dm.expLoRA(l.moe.experts[0][kind])
		n := out * lr.r
		dm.be.Transpose(dm.bRows(lr, lr.b.grad, out), dm.buf(moeDBName[kind], compute.F32, E*n), E, n)
	}
}

// bRows is the part of stacked B (or of its gradient) t that the layer
// reads: its out rows of r·Experts, as a matrix [out·r, Experts].
func (dm *DeviceModel) bRows(lr *dlora, t compute.Tensor, out int) compute.Tensor {
	E := dm.cfg.Experts
	return t.Slice(lr.expert.rowOff*lr.r*E, out*lr.r*E)
}

// expB is an expert layer's B [out, r]: the matrix, expert e's part of
// what gatherB gathered, or else its strided columns gathered alone.
func (dm *DeviceModel) expB(st stacked, lr *dlora, kind, e, out int) compute.Tensor {
	if lr.expert == nil {
		return lr.b.w
	}
	b := dm.buf(moeBName[kind], dm.act, dm.cfg.Experts*out*lr.r).Slice(e*out*lr.r, out*lr.r)
	if st.b[kind] != lr.b {
		dm.be.Copy2D(b, 1, dm.bColumn(lr, lr.b.w), dm.cfg.Experts, out*lr.r, 1)
	}
	return b
}

// expBGrad is where B's gradient accumulates for expert e: the gradient,
// or its part of what gatherB gathered (put back by putBackGrad).
func (dm *DeviceModel) expBGrad(st stacked, lr *dlora, kind, e, out int) compute.Tensor {
	if lr.expert == nil {
		return lr.b.grad
	}
	if st.grad[kind] != lr.b {
		// Every expert of a layer shares one stacked B; gatherB took it.
		panic("model: an expert's stacked LoRA B was not gathered")
	}
	return dm.buf(moeDBName[kind], compute.F32, dm.cfg.Experts*out*lr.r).Slice(e*out*lr.r, out*lr.r)
}

// moeRun is an expert with rows: its index, first row and row count.
type moeRun struct{ e, o, ne int }

func (ma *dmoeActs) runs() []moeRun {
	var out []moeRun
	for e := 0; e+1 < len(ma.off); e++ {
		if ne := ma.off[e+1] - ma.off[e]; ne > 0 {
			out = append(out, moeRun{e, ma.off[e], ne})
		}
	}
	return out
}

// moeRows is the view of rows [o, o+ne) of a matrix of width w.
func moeRows(t compute.Tensor, o, ne, w int) compute.Tensor { return t.Slice(o*w, ne*w) }

// expertsForward queues, for the layers of kind kinds of every expert with
// rows, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ over its rows of xs (width in) into its rows
// of ys[kind] (width out): the low-rank x·Aᵀ side by side first, then the
// products.
func (dm *DeviceModel) expertsForward(l *dlayer, a *dacts, runs []moeRun, kinds []int, xs compute.Tensor, ys []compute.Tensor, in, out int) {
	st := dm.gatherB(l, kinds, out, false)
	var xa, prod []compute.GemmJob
	for _, r := range runs {
		x := moeRows(xs, r.o, r.ne, in)
		for _, kind := range kinds {
			lin := l.moe.experts[r.e][kind]
			terms := []compute.GemmTerm{{TransB: true, K: in, Alpha: 1, A: x, LDA: in, B: lin.w.w, LDB: in}}
			if lr := dm.expLoRA(lin); lr != nil {
				t := a.xa[lin]
				xa = append(xa, compute.GemmJob{M: r.ne, N: lr.r, C: t.t, LDC: t.ld,
					Terms: []compute.GemmTerm{{TransB: true, K: in, Alpha: 1, A: x, LDA: in, B: dm.loraA(lr, in), LDB: in}}})
				terms = append(terms, compute.GemmTerm{TransB: true, K: lr.r, Alpha: lr.scale, A: t.t, LDA: t.ld, B: dm.expB(st, lr, kind, r.e, out), LDB: lr.r})
			}
			prod = append(prod, compute.GemmJob{M: r.ne, N: out, Terms: terms, C: moeRows(ys[kind], r.o, r.ne, out), LDC: out})
		}
	}
	if len(xa) > 0 {
		dm.be.GemmGroup(xa)
	}
	dm.be.GemmGroup(prod)
}

// moeForwardGrouped runs the experts side by side: one gather of every
// routed row, the gate and up products of all experts at once, SwiGLU
// over all rows, the down products at once, and the weighted rows added
// into out in expert order.
func (dm *DeviceModel) moeForwardGrouped(l *dlayer, a *dacts, out, x compute.Tensor, n int) {
	be, c := dm.be, dm.cfg
	h, inter, nk := c.Hidden, c.ExpertIntermediate, n*c.TopK
	ma := a.moe
	runs := ma.runs()
	xs := dm.buf("moe_x", dm.act, nk*h)
	be.GatherRows(xs, x, ma.idx, nk, h)
	dm.expertsForward(l, a, runs, []int{0, 1}, xs, []compute.Tensor{ma.g, ma.u}, h, inter)
	act := dm.buf("moe_act", dm.act, nk*inter)
	be.SwiGLU(act, ma.g, ma.u)
	dm.expertsForward(l, a, runs, []int{2}, act, []compute.Tensor{2: ma.y}, inter, h)
	yw := dm.buf("moe_yw", dm.act, nk*h)
	be.ScaleRows(yw, ma.y, ma.wts, nk, h)
	// Rows are in expert order, and a token is at most once in an
	// expert's: the rows add into out expert by expert, as they would
	// one expert at a time.
	be.Zero(out.Slice(0, n*h))
	be.ScatterAddRows(out, yw, ma.idx, nk, h)
}

// expertsBackward queues the backward pass of the layers of kind kinds of
// every expert with rows, as linearBackward does for one: dx (width in,
// overwritten) = Σ over the kinds of dy·W + (s·dy·B)·A, and the gradients
// of W, B and A, from dys[kind] (width out) and the layers' input xs.
func (dm *DeviceModel) expertsBackward(l *dlayer, a *dacts, runs []moeRun, kinds []int, dx compute.Tensor, dys []compute.Tensor, xs compute.Tensor, in, out, nk int) {
	st := dm.gatherB(l, kinds, out, true)
	var first, second []compute.GemmJob
	for _, r := range runs {
		x, ex := moeRows(xs, r.o, r.ne, in), l.moe.experts[r.e]
		var dxTerms, lowTerms, aTerms []compute.GemmTerm
		var aGrad compute.Tensor
		var aOwner *dparam
		var aR int
		aJob := func() {
			if aGrad != nil {
				second = append(second, compute.GemmJob{M: aR, N: in, Beta: 1, C: aGrad, LDC: in, Terms: aTerms})
			}
			aGrad, aOwner, aTerms = nil, nil, nil
		}
		for _, kind := range kinds {
			lin := ex[kind]
			dy := moeRows(dys[kind], r.o, r.ne, out)
			dxTerms = append(dxTerms, compute.GemmTerm{K: out, Alpha: 1, A: dy, LDA: out, B: lin.w.w, LDB: in})
			if lin.w.trainable {
				first = append(first, compute.GemmJob{M: out, N: in, Beta: 1, C: lin.w.grad, LDC: in,
					Terms: []compute.GemmTerm{{TransA: true, K: r.ne, Alpha: 1, A: dy, LDA: out, B: x, LDB: in}}})
			}
			lr := dm.expLoRA(lin)
			if lr == nil {
				continue
			}
			xa := a.xa[lin]
			dxa := moeRows(dm.buf(moeDXAName[kind], dm.act, nk*lr.r), r.o, r.ne, lr.r)
			first = append(first, compute.GemmJob{M: r.ne, N: lr.r, C: dxa, LDC: lr.r,
				Terms: []compute.GemmTerm{{K: out, Alpha: lr.scale, A: dy, LDA: out, B: dm.expB(st, lr, kind, r.e, out), LDB: lr.r}}})
			if lr.b.trainable {
				first = append(first, compute.GemmJob{M: out, N: lr.r, Beta: 1, C: dm.expBGrad(st, lr, kind, r.e, out), LDC: lr.r,
					Terms: []compute.GemmTerm{{TransA: true, K: r.ne, Alpha: lr.scale, A: dy, LDA: out, B: xa.t, LDB: xa.ld}}})
			}
			lowTerms = append(lowTerms, compute.GemmTerm{K: lr.r, Alpha: 1, A: dxa, LDA: lr.r, B: dm.loraA(lr, in), LDB: in})
			if lr.a.trainable {
				// Layers sharing A (the gate and up of a fused
				// gate_up_proj, the same expert's rows) add into its
				// gradient in one job: two jobs may not write one C.
				if aOwner != lr.a {
					aJob()
				}
				aOwner, aGrad, aR = lr.a, dm.loraAGrad(lr, in), lr.r
				aTerms = append(aTerms, compute.GemmTerm{TransA: true, K: r.ne, Alpha: 1, A: dxa, LDA: lr.r, B: x, LDB: in})
			}
		}
		first = append(first, compute.GemmJob{M: r.ne, N: in, C: moeRows(dx, r.o, r.ne, in), LDC: in, Terms: dxTerms})
		if len(lowTerms) > 0 {
			second = append(second, compute.GemmJob{M: r.ne, N: in, Beta: 1, C: moeRows(dx, r.o, r.ne, in), LDC: in, Terms: lowTerms})
		}
		aJob()
	}
	dm.be.GemmGroup(first)
	dm.putBackGrad(l, st, kinds, out)
	if len(second) > 0 {
		dm.be.GemmGroup(second)
	}
}

// moeBackwardGrouped is moeBackward's expert part side by side: dx
// (overwritten) from dout, and dwT, the gradient of each row's routing
// weight (dout·y), in expert order.
func (dm *DeviceModel) moeBackwardGrouped(l *dlayer, a *dacts, dx, dout, x compute.Tensor, n int, dwT compute.Tensor) {
	be, c := dm.be, dm.cfg
	h, inter, nk := c.Hidden, c.ExpertIntermediate, n*c.TopK
	ma := a.moe
	runs := ma.runs()
	dys := dm.buf("moe_dy", dm.act, nk*h)
	be.GatherRows(dys, dout, ma.idx, nk, h)
	be.RowDot(dwT, dys, ma.y, nk, h)
	be.ScaleRows(dys, dys, ma.wts, nk, h)
	act := dm.buf("moe_act", dm.act, nk*inter)
	be.SwiGLU(act, ma.g, ma.u)
	da := dm.buf("moe_da", dm.act, nk*inter)
	dm.expertsBackward(l, a, runs, []int{2}, da, []compute.Tensor{2: dys}, act, inter, h, nk)
	dg, du := dm.buf("moe_dg", dm.act, nk*inter), dm.buf("moe_du", dm.act, nk*inter)
	be.SwiGLUBackward(dg, du, da, ma.g, ma.u)
	xs := dm.buf("moe_x", dm.act, nk*h)
	be.GatherRows(xs, x, ma.idx, nk, h)
	dxs := dm.buf("moe_dx", dm.act, nk*h)
	dm.expertsBackward(l, a, runs, []int{0, 1}, dxs, []compute.Tensor{dg, du}, xs, h, inter, nk)
	be.Zero(dx.Slice(0, n*h))
	be.ScatterAddRows(dx, dxs, ma.idx, nk, h)
}
