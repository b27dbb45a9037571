package model

import (
	"gotune/compute"
)

// Attention through a backend's fused operations (compute.FusedAttention):
// the CPU backend computes only the key columns each block of queries may
// see and never holds a whole score matrix; CUDA's FlashAttention-style
// kernels do the same for the problems its policy sends them (by default
// long sequences, compute.FusedLongScores). Other problems, and backends
// without them, run the unfused products and softmax of forwardLayer and
// backwardLayer.

// attnKeyMask is the key mask of sequences [b0, b0+nb) for tk keys each: a
// group decoding step's own, or the batch's (with a KV prefix's steps).
func (dm *DeviceModel) attnKeyMask(b0, nb, tk int) compute.Tensor {
	if dm.cache != nil && dm.cache.kmask != nil {
		return dm.cache.kmask.Slice(b0*tk, nb*tk)
	}
	return dm.keyMask(b0, nb, tk)
}

// fusedAttn is the backend's fused attention and layer l's problem over tk
// keys (tmax held per head, the first query at key off), when the backend
// runs it fused.
func (dm *DeviceModel) fusedAttn(l *dlayer, tk, tmax, off int) (compute.FusedAttention, compute.AttnParams, bool) {
	fa, ok := dm.be.(compute.FusedAttention)
	if !ok {
		return nil, compute.AttnParams{}, false
	}
	c := dm.cfg
	B, T := dm.shapeB, dm.shapeT
	seg := dm.segRows(0, B*T)
	p := compute.AttnParams{B: B, H: c.Heads, KVH: c.KVHeads, T: T, TK: tk, TMax: tmax, HD: c.HeadDim, Off: off,
		Window: c.window(l.index), Scale: c.AttnScale(), SoftCap: float32(c.AttnSoftcap),
		KeyMask: dm.attnKeyMask(0, B, tk), QSeg: seg, KSeg: seg}
	return fa, p, fa.AttnFusedFor(p)
}

// attnForwardFused writes layer l's head-major attention output oh and
// a.lse with the fused forward pass and reports whether it could.
func (dm *DeviceModel) attnForwardFused(l *dlayer, oh, qh, kh, vh compute.Tensor, tk, tmax, off int) bool {
	fa, p, ok := dm.fusedAttn(l, tk, tmax, off)
	if ok {
		fa.AttnForward(oh, l.acts.lse, qh, kh, vh, p)
	}
	return ok
}

// attnBackwardFused writes the head-major gradients of layer l's queries,
// keys and values (the sequences' own T steps) from doh and dsum with the
// fused backward pass, routing a KV prefix's key and value gradients to
// the prefix as the unfused path does, and reports whether it could.
func (dm *DeviceModel) attnBackwardFused(l *dlayer, dqh, dkh, dvh, doh, qh, kh, dsum compute.Tensor) bool {
	B, T := dm.shapeB, dm.shapeT
	pl := dm.prefixLen()
	tk := pl + T
	fa, p, ok := dm.fusedAttn(l, tk, tk, pl)
	if !ok {
		return false
	}
	a := l.acts
	if pl == 0 {
		fa.AttnBackward(dqh, dkh, dvh, doh, qh, kh, a.vh, a.lse, dsum, p)
		return true
	}
	c := dm.cfg
	hd, KVH, kd := c.HeadDim, c.KVHeads, c.KVDim()
	// Gradients of all tk steps, then split: steps [0, pl) of every head
	// are the prefix's (summed over the sequences), the rest the batch's.
	dk, dv := dm.buf("attn_dk", dm.act, B*tk*kd), dm.buf("attn_dv", dm.act, B*tk*kd)
	fa.AttnBackward(dqh, dk, dv, doh, qh, kh, a.vh, a.lse, dsum, p)
	dpre := dm.buf("prefix_dpre", dm.act, B*KVH*pl*hd)
	for which, d := range []compute.Tensor{dk, dv} {
		own := dkh
		if which == 1 {
			own = dvh
		}
		dm.be.Copy2D(own, T*hd, d.Slice(pl*hd, d.Len()-pl*hd), tk*hd, B*KVH, T*hd)
		dm.be.Copy2D(dpre, pl*hd, d, tk*hd, B*KVH, pl*hd)
		dm.prefixGrad(dpre, l.index, which, 0, B)
	}
	return true
}
