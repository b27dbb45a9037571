package model

import (
	"gotune/compute"
	"gotune/nn"
)

// Mixture-of-experts MLPs on the device (Qwen3-MoE, Mixtral). The router's
// logits come back to the host, which routes exactly as the CPU does
// (route: a float64 softmax, top-k, the weights); each expert then runs on
// the device over the rows routed to it, gathered together, and the
// weighted outputs are added back expert by expert in order. Backward
// mirrors it, the router's gradient again on the host (routerGrad).

// dmoe is an MoE MLP on the device: the router and each expert's gate, up
// and down projections.
type dmoe struct {
	router  *dlinear
	experts [][3]*dlinear
}

// dmoeActs is what an MoE layer keeps for backward: the routing (on the
// host) and, with the rows in expert order (expert e's from off[e]), each
// row's token and weight and the experts' gate, up and output rows.
type dmoeActs struct {
	host     moeActs
	off      []int
	idx, wts compute.Tensor // [n·TopK] I32, F32
	g, u, y  compute.Tensor // [n·TopK, ExpertIntermediate], and [n·TopK, Hidden]
}

// moeActs allocates an MoE layer's activations for n tokens with act
// (prepareShape's allocator, which shares them between blocks under
// checkpointing).
func (dm *DeviceModel) moeActs(n int, act func(role string, dt compute.DType, size int) compute.Tensor) *dmoeActs {
	c := dm.cfg
	nk := n * c.TopK
	return &dmoeActs{
		idx: act("moe_idx", compute.I32, nk), wts: act("moe_wts", compute.F32, nk),
		g: act("moe_g", dm.act, nk*c.ExpertIntermediate), u: act("moe_u", dm.act, nk*c.ExpertIntermediate),
		y: act("moe_y", dm.act, nk*c.Hidden),
	}
}

// moeForward runs layer l's mixture of experts on n rows of x into out.
func (dm *DeviceModel) moeForward(l *dlayer, a *dacts, out, x compute.Tensor, n int) {
	be, c := dm.be, dm.cfg
	E, K, h, inter := c.Experts, c.TopK, c.Hidden, c.ExpertIntermediate
	ma := a.moe
	logits := dm.buf("moe_logits", compute.F32, n*E)
	dm.linear(l.moe.router, a, logits, x, n)
	ma.host.logits = grow(ma.host.logits, n*E)
	if be.Download(ma.host.logits, logits) != nil {
		return // the backend keeps the error; the step reports it
	}
	var stats *auxStats
	if !dm.recompute {
		stats = &dm.aux
	}
	route(c, &ma.host, n, dm.hostMask, stats)
	idx, wts := make([]int32, 0, n*K), make([]float32, 0, n*K)
	ma.off = ma.off[:0]
	for _, slots := range ma.host.slots {
		ma.off = append(ma.off, len(idx))
		for _, s := range slots {
			idx = append(idx, s/int32(K))
			wts = append(wts, ma.host.wts[s])
		}
	}
	ma.off = append(ma.off, len(idx))
	be.UploadInt(ma.idx, idx)
	be.Upload(ma.wts, wts)
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
	be.Zero(dx.Slice(0, n*h))
	// The gradient of each row's routing weight, dout·y, in expert order.
	dwT := dm.buf("moe_dw", compute.F32, n*K)
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
	sorted := make([]float32, n*K)
	if be.Download(sorted, dwT) != nil {
		return
	}
	dw := make([]float64, n*K) // by slot t·TopK+k, as routerGrad reads it
	for e, slots := range ma.host.slots {
		for i, s := range slots {
			dw[s] = float64(sorted[ma.off[e]+i])
		}
	}
	routerGrad(c, &ma.host, dw, n, dm.hostMask, auxGrad, dm.auxW)
	dl := dm.buf("moe_dlogits", dm.act, n*E)
	be.Upload(dl, ma.host.dlogits)
	dm.linearBackward(l.moe.router, a, dx, dl, x, n, true)
}

// AuxLoss is router_aux_loss_coef × the load-balancing loss of the last
// forward pass (0 without experts or without output_router_logits), as
// Workspace.AuxLoss.
func (dm *DeviceModel) AuxLoss() float64 {
	if dm.cfg.AuxCoef == 0 {
		return 0
	}
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
