package model

import (
	"gotune/compute"
)

// The device block's parts for the families beyond the Llama kind: Gemma's
// (1+w) and sandwich norms, scaled embeddings, GeGLU, soft caps and sliding
// windows with their own rotary base, and Phi-3's fused projections and
// LongRoPE. Each mirrors the CPU workspace (forward.go, gemma.go, rope.go).

// wadd is what every RMSNorm adds to its weight: 1 for Gemma's (1 + w).
func (dm *DeviceModel) wadd() float32 {
	if dm.cfg.NormPlusOne {
		return 1
	}
	return 0
}

// glu writes the MLP's gated activation act(g)·u.
func (dm *DeviceModel) glu(a, g, u compute.Tensor) {
	if dm.cfg.Act == "gelu_pytorch_tanh" {
		dm.be.GeGLU(a, g, u)
		return
	}
	dm.be.SwiGLU(a, g, u)
}

func (dm *DeviceModel) gluBackward(dg, du, da, g, u compute.Tensor) {
	if dm.cfg.Act == "gelu_pytorch_tanh" {
		dm.be.GeGLUBackward(dg, du, da, g, u)
		return
	}
	dm.be.SwiGLUBackward(dg, du, da, g, u)
}

// attnSoftmax is the attention softmax of layer l: with the family's soft
// cap and the layer's sliding window when it has them.
func (dm *DeviceModel) attnSoftmax(l *dlayer, p, lse, s, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	window, softcap := dm.cfg.window(l.index), float32(dm.cfg.AttnSoftcap)
	if window > 0 || softcap > 0 {
		dm.be.AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg, b, h, tq, tk, off, window, softcap)
		return
	}
	dm.be.AttnSoftmax(p, lse, s, kmask, qseg, kseg, b, h, tq, tk, off)
}

func (dm *DeviceModel) attnSoftmaxBackward(l *dlayer, p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	window, softcap := dm.cfg.window(l.index), float32(dm.cfg.AttnSoftcap)
	if window > 0 || softcap > 0 {
		dm.be.AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg, b, h, tq, tk, off, window, softcap)
		return
	}
	dm.be.AttnSoftmaxBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg, b, h, tq, tk, off)
}

// ropeOf is the rotary table of layer l: the local one on a sliding-window
// layer of a family that has one (Gemma 3), else the model's.
func (dm *DeviceModel) ropeOf(l *dlayer) (cos, sin compute.Tensor, rot int) {
	if dm.cosL != nil && dm.cfg.IsSliding(l.index) {
		return dm.cosL, dm.sinL, dm.ropeRotL
	}
	return dm.cos, dm.sin, dm.ropeRot
}

func (dm *DeviceModel) freeRope() {
	for _, t := range []compute.Tensor{dm.cos, dm.sin, dm.cosL, dm.sinL} {
		if t != nil {
			t.Free()
		}
	}
	dm.cos, dm.sin, dm.cosL, dm.sinL, dm.ropeN = nil, nil, nil, nil, 0
}

// project runs the query, key and value projections of xn1 into a.q, a.k
// and v: three products, or one fused (Phi-3's qkv_proj) split by columns.
func (dm *DeviceModel) project(l *dlayer, a *dacts, v, xn1 compute.Tensor, n int) {
	if l.fqkv == nil {
		dm.linear(l.q, a, a.q, xn1, n)
		dm.linear(l.k, a, a.k, xn1, n)
		dm.linear(l.v, a, v, xn1, n)
		return
	}
	qd, kd := dm.cfg.QDim(), dm.cfg.KVDim()
	f := dm.buf("fused", dm.act, n*(qd+2*kd))
	dm.linear(l.fqkv, a, f, xn1, n)
	dm.splitCols(f, n, false, colPart{a.q, qd}, colPart{a.k, kd}, colPart{v, kd})
}

// projectBackward is project's backward pass: dxn1 (nil: not needed)
// receives the input gradient from dq, dk and dv.
func (dm *DeviceModel) projectBackward(l *dlayer, a *dacts, dxn1, dq, dk, dv, xn1 compute.Tensor, n int) {
	if l.fqkv == nil {
		dm.linearBackward(l.q, a, dxn1, dq, xn1, n, false)
		dm.linearBackward(l.k, a, dxn1, dk, xn1, n, true)
		dm.linearBackward(l.v, a, dxn1, dv, xn1, n, true)
		dm.groupBackward(l.qkv, dxn1, xn1, n)
		return
	}
	qd, kd := dm.cfg.QDim(), dm.cfg.KVDim()
	df := dm.buf("dfused", dm.act, n*(qd+2*kd))
	dm.splitCols(df, n, true, colPart{dq, qd}, colPart{dk, kd}, colPart{dv, kd})
	dm.linearBackward(l.fqkv, a, dxn1, df, xn1, n, false)
}

// gateUp runs the MLP's gate and up projections of xn2 into a.g and a.u.
func (dm *DeviceModel) gateUp(l *dlayer, a *dacts, xn2 compute.Tensor, n int) {
	if l.fgu == nil {
		dm.linear(l.gate, a, a.g, xn2, n)
		dm.linear(l.up, a, a.u, xn2, n)
		return
	}
	in := dm.cfg.Intermediate
	f := dm.buf("fused", dm.act, n*2*in)
	dm.linear(l.fgu, a, f, xn2, n)
	dm.splitCols(f, n, false, colPart{a.g, in}, colPart{a.u, in})
}

func (dm *DeviceModel) gateUpBackward(l *dlayer, a *dacts, dxn, dg, du, xn2 compute.Tensor, n int) {
	if l.fgu == nil {
		dm.linearBackward(l.gate, a, dxn, dg, xn2, n, false)
		dm.linearBackward(l.up, a, dxn, du, xn2, n, true)
		dm.groupBackward(l.gu, dxn, xn2, n)
		return
	}
	in := dm.cfg.Intermediate
	df := dm.buf("dfused", dm.act, n*2*in)
	dm.splitCols(df, n, true, colPart{dg, in}, colPart{du, in})
	dm.linearBackward(l.fgu, a, dxn, df, xn2, n, false)
}

// colPart is one block of columns of a fused projection's output: its
// own tensor and its width.
type colPart struct {
	t compute.Tensor
	w int
}

// splitCols copies the column blocks of the n rows of f (the parts, left to
// right) into their own tensors; with join, the other way.
func (dm *DeviceModel) splitCols(f compute.Tensor, n int, join bool, parts ...colPart) {
	width := 0
	for _, p := range parts {
		width += p.w
	}
	col := 0
	for _, p := range parts {
		view := f.Slice(col, n*width-col)
		if join {
			dm.be.Copy2D(view, width, p.t, p.w, n, p.w)
		} else {
			dm.be.Copy2D(p.t, p.w, view, width, n, p.w)
		}
		col += p.w
	}
}

// scaleEmbed multiplies the embedded tokens by the family's embedding scale
// (Gemma's √hidden), or their gradient in backward.
func (dm *DeviceModel) scaleEmbed(x compute.Tensor) {
	if s := dm.cfg.EmbedScale; s != 0 {
		dm.be.Axpby(x, float32(s), x, 0)
	}
}

// headAlpha is the factor the head's product carries: 1/temperature, or 1
// under a final soft cap, which the temperature must follow (it divides
// the capped logits).
func (dm *DeviceModel) headAlpha(inv float32) float32 {
	if dm.cfg.FinalSoftcap != 0 {
		return 1
	}
	return inv
}

// capHead soft-caps a chunk of final logits in place (Gemma 2's
// final_logit_softcapping) and returns what the loss reads: the capped
// logits, divided by the temperature into a copy when there is one (the
// cap's gradient needs the capped values). Without a cap it returns lg.
func (dm *DeviceModel) capHead(lg compute.Tensor, inv float32) compute.Tensor {
	c := float32(dm.cfg.FinalSoftcap)
	if c == 0 {
		return lg
	}
	dm.be.SoftCap(lg, lg, c)
	if inv == 1 {
		return lg
	}
	lt := dm.buf("logits_t", compute.F32, lg.Len())
	dm.be.Axpby(lt, inv, lg, 0)
	return lt
}

// capHeadGrad turns g, the gradient of the loss in what capHead returned,
// into the gradient of the product's logits, given the capped ones (lg).
func (dm *DeviceModel) capHeadGrad(g, lg compute.Tensor, inv float32) {
	c := float32(dm.cfg.FinalSoftcap)
	if c == 0 {
		return
	}
	if inv != 1 {
		dm.be.Axpby(g, inv, g, 0)
	}
	dm.be.SoftCapBackward(g, g, lg, c)
}
