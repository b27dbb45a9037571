package model

import (
	"gotune/nn"
)

// InputHook prepends virtual tokens to every sequence (prompt tuning,
// P-tuning): their embeddings come from the hook, take positions 0…P-1, are
// attended to like real tokens and are never trained on.
type InputHook interface {
	Virtual() int
	// Embed writes [B, P, Hidden] embeddings.
	Embed(dst []float32, batch int)
	// AccumulateGrad receives their gradient, [B, P, Hidden].
	AccumulateGrad(d []float32, batch int)
}

// layerActs holds what one block's backward pass needs.
type layerActs struct {
	xn1, rstd1   []float32
	q, k, v      []float32 // projection outputs
	qr, kr       []float32 // after q/k norm and rotation
	rstdq, rstdk []float32
	kAll, vAll   []float32 // with a KV prefix: prefix rows then the sequence's
	att, lse     []float32
	xmid         []float32
	xn2, rstd2   []float32
	g, u, a      []float32
	ao, mo       []float32 // attention and MLP outputs before their post-norms
	rstdAO       []float32
	rstdMO       []float32
	moe          moeActs
	attn         nn.Attention
	tk           int
}

// Workspace holds every buffer of a forward and backward pass for one batch
// shape, so repeated steps allocate nothing. It belongs to one goroutine.
type Workspace struct {
	m *Model
	// Checkpoint keeps only each block's input and recomputes the block's
	// forward pass during backward: far less memory for about a third more
	// compute.
	Checkpoint bool
	// Temperature divides the logits before the softmax of the loss and of
	// TokenLogProbs (0 means 1): a policy-gradient stage scores tokens under
	// the distribution it sampled them from, logits/temperature, as TRL does.
	Temperature float64
	// Entropy makes the head also compute the entropy of the predicted
	// distribution at every trained token (TokenEntropies): one more pass
	// over each row of logits, which a policy-gradient stage logs.
	Entropy bool

	// cache, when set, makes the pass a decoding step of a Session: one
	// row of new positions after cache.len cached ones, whose rotated keys
	// and values it appends to the cache and attends over.
	cache *kvCache

	B, T, P, N int // P virtual tokens, T = P + the batch's length
	ids        []int32
	labels     []int32
	mask       []int32
	pos        []int32
	seg        []int32
	stream     [][]float32 // residual stream: input of each layer, then the last output
	acts       []*layerActs
	xf, rstdf  []float32
	dxf        []float32

	// backward scratch
	dres, dxn, datt, dq, dk, dv, dqn, dkn, da, dg, du []float32
	logits                                            []float32
	dvirt                                             []float32
	dhook                                             []float32
	headRows                                          []int
	headTargets                                       []int32
	headX, headDX                                     []float32
	headLoss                                          []float64
	headScale                                         []float32
	// keepHead asks head (from TokenLogProbs) to keep its logits for
	// BackwardTokens; headKept says it did, headMax holding each row's max.
	keepHead, headKept bool
	headMax            []float32
	tokenLogp          []float64
	tokenEntropy       []float64
	tokenRow           []int
	attnTiles          [][]float32
	fused, dfused      []float32 // fused projections' outputs and their gradients
	dpost              []float32 // gradient through a post-norm
	nw                 normWeights
	capF               []float32 // final soft-capped logits of a head chunk
	aux                auxStats  // MoE load balancing over the last forward
	recompute          bool      // a checkpointed block runs again in backward
	auxW               float64   // weight of the auxiliary loss's gradient
}

// NewWorkspace prepares buffers for a model.
func (m *Model) NewWorkspace() *Workspace { return &Workspace{m: m} }

// grow returns s with length n, reallocating only when its capacity is short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// prepare lays out ids, masks and positions with the virtual tokens of the
// input hook in front, and sizes every buffer.
func (w *Workspace) prepare(b *Batch) {
	m := w.m
	hook := m.Input
	p := 0
	if hook != nil {
		p = hook.Virtual()
	}
	w.B, w.P, w.T = b.B, p, p+b.T
	w.N = w.B * w.T
	n := w.N
	w.ids, w.labels, w.mask, w.pos = grow(w.ids, n), grow(w.labels, n), grow(w.mask, n), grow(w.pos, n)
	w.seg = nil
	// Virtual tokens and KV prefixes belong to a whole row; packed rows are
	// refused upstream (train), and ignored here rather than indexed wrongly.
	if b.Seg != nil && hook == nil && (len(m.Layers) == 0 || m.Layers[0].Prefix == nil) {
		w.seg = grow(w.seg, n)
	}
	prefix := 0
	if len(m.Layers) > 0 && m.Layers[0].Prefix != nil {
		prefix = m.Layers[0].Prefix.Len()
	}
	for r := 0; r < b.B; r++ {
		for t := 0; t < w.T; t++ {
			i := r*w.T + t
			if t < p {
				w.ids[i], w.labels[i], w.mask[i], w.pos[i] = 0, IgnoreIndex, 1, int32(prefix+t)
				if w.seg != nil {
					w.seg[i] = b.Seg[r*b.T]
				}
				continue
			}
			j := r*b.T + t - p
			w.ids[i] = b.IDs[j]
			w.labels[i] = IgnoreIndex
			if b.Labels != nil {
				w.labels[i] = b.Labels[j]
			}
			w.mask[i] = 1
			if b.Mask != nil {
				w.mask[i] = b.Mask[j]
			}
			if b.Pos != nil {
				w.pos[i] = b.Pos[j] + int32(p+prefix)
			} else {
				w.pos[i] = int32(prefix + t)
			}
			if w.seg != nil {
				w.seg[i] = b.Seg[j]
			}
		}
	}
	w.size(w.T + prefix)
}

// size gives every buffer room for N rows whose attention sees tk keys per
// row.
func (w *Workspace) size(tk int) {
	m, c := w.m, w.m.Cfg
	n := w.N
	prefix := tk - w.T
	h, qd, kd, inter := c.Hidden, c.QDim(), c.KVDim(), c.Intermediate
	if c.Experts > 0 && !m.hasDenseMLP() {
		inter = 0 // every MLP is a mixture of experts, with buffers of its own
	}
	if len(w.stream) != len(m.Layers)+1 {
		w.stream = make([][]float32, len(m.Layers)+1)
	}
	for i := range w.stream {
		if w.cache != nil && i >= 2 {
			// Decoding keeps no block inputs for a backward pass: two
			// buffers take turns as a block's input and output.
			w.stream[i] = w.stream[i%2]
			continue
		}
		w.stream[i] = grow(w.stream[i], n*h)
	}
	nActs := len(m.Layers)
	if w.Checkpoint {
		nActs = 1
	}
	if len(w.acts) != nActs {
		w.acts = make([]*layerActs, nActs)
		for i := range w.acts {
			w.acts[i] = &layerActs{}
		}
	}
	for _, a := range w.acts {
		a.tk = tk
		a.xn1, a.rstd1 = grow(a.xn1, n*h), grow(a.rstd1, n)
		a.q, a.k, a.v = grow(a.q, n*qd), grow(a.k, n*kd), grow(a.v, n*kd)
		a.qr, a.kr = grow(a.qr, n*qd), grow(a.kr, n*kd)
		if c.QKNorm {
			a.rstdq, a.rstdk = grow(a.rstdq, n*c.Heads), grow(a.rstdk, n*c.KVHeads)
		}
		if prefix > 0 {
			a.kAll, a.vAll = grow(a.kAll, w.B*tk*kd), grow(a.vAll, w.B*tk*kd)
		}
		a.att, a.lse = grow(a.att, n*qd), grow(a.lse, w.B*c.Heads*w.T)
		a.xmid = grow(a.xmid, n*h)
		a.xn2, a.rstd2 = grow(a.xn2, n*h), grow(a.rstd2, n)
		a.g, a.u, a.a = grow(a.g, n*inter), grow(a.u, n*inter), grow(a.a, n*inter)
		if c.SandwichNorms {
			a.ao, a.mo, a.rstdAO, a.rstdMO = grow(a.ao, n*h), grow(a.mo, n*h), grow(a.rstdAO, n), grow(a.rstdMO, n)
		}
	}
	w.nw.refresh(m)
	w.xf, w.rstdf = grow(w.xf, n*h), grow(w.rstdf, n)
}

func (w *Workspace) actsFor(layer int) *layerActs {
	if w.Checkpoint {
		return w.acts[0]
	}
	return w.acts[layer]
}

// embed fills the first residual stream from token ids and virtual tokens.
func (w *Workspace) embed() {
	hook := w.m.Input
	h := w.m.Cfg.Hidden
	x := w.stream[0]
	for i, id := range w.ids {
		copy(x[i*h:(i+1)*h], w.m.Embed.Data[int(id)*h:(int(id)+1)*h])
	}
	scaleEmbeddings(w.m.Cfg, x)
	if w.P > 0 {
		virt := grow(w.dvirt, w.B*w.P*h)
		w.dvirt = virt
		hook.Embed(virt, w.B)
		scaleVirtual(w.m.Cfg, virt)
		for r := 0; r < w.B; r++ {
			copy(x[r*w.T*h:(r*w.T+w.P)*h], virt[r*w.P*h:(r+1)*w.P*h])
		}
	}
}

// forwardLayer runs block l from stream[l] into stream[l+1].
func (w *Workspace) forwardLayer(l *Layer) {
	m, c := w.m, w.m.Cfg
	a := w.actsFor(l.Index)
	n, h, kd, hd := w.N, c.Hidden, c.KVDim(), c.HeadDim
	x, out := w.stream[l.Index], w.stream[l.Index+1]
	rope := m.ropeFor(l.Index, int(maxPos(w.pos))+1)

	nn.RMSNorm(a.xn1, a.rstd1, x, w.nw.of(l.InNorm), n, h, c.RMSNormEps)
	if l.QKV != nil {
		w.fused = grow(w.fused, n*(c.QDim()+2*kd))
		l.QKV.Forward(w.fused, a.xn1, n)
		splitCols(w.fused, n, a.q, a.k, a.v)
	} else {
		l.Q.Forward(a.q, a.xn1, n)
		l.K.Forward(a.k, a.xn1, n)
		l.V.Forward(a.v, a.xn1, n)
	}
	if c.QKNorm {
		nn.RMSNorm(a.qr, a.rstdq, a.q, w.nw.of(l.QNorm), n*c.Heads, hd, c.RMSNormEps)
		nn.RMSNorm(a.kr, a.rstdk, a.k, w.nw.of(l.KNorm), n*c.KVHeads, hd, c.RMSNormEps)
	} else {
		copy(a.qr, a.q)
		copy(a.kr, a.k)
	}
	nn.Rope(a.qr, n, c.Heads, hd, w.pos, rope.Cos, rope.Sin, rope.Rot)
	nn.Rope(a.kr, n, c.KVHeads, hd, w.pos, rope.Cos, rope.Sin, rope.Rot)

	k, v := a.kr, a.v
	a.attn = nn.Attention{B: w.B, Tq: w.T, Tk: w.T, Heads: c.Heads, KVHeads: c.KVHeads, HD: hd,
		KeyMask: w.mask, QSeg: w.seg, KSeg: w.seg, Scale: c.AttnScale(), Window: c.window(l.Index), SoftCap: float32(c.AttnSoftcap),
		Scratch: a.attn.Scratch, Tiles: w.attnTiles}
	if kc := w.cache; kc != nil {
		w.decodeAttention(l, a, kc)
	} else {
		if l.Prefix != nil {
			pl := l.Prefix.Len()
			pk, pv := l.Prefix.KV(l.Index)
			for r := 0; r < w.B; r++ {
				base := r * a.tk * kd
				copy(a.kAll[base:base+pl*kd], pk)
				copy(a.vAll[base:base+pl*kd], pv)
				copy(a.kAll[base+pl*kd:base+a.tk*kd], a.kr[r*w.T*kd:(r+1)*w.T*kd])
				copy(a.vAll[base+pl*kd:base+a.tk*kd], a.v[r*w.T*kd:(r+1)*w.T*kd])
			}
			k, v = a.kAll, a.vAll
			a.attn.Tk, a.attn.Offset = a.tk, pl
			a.attn.KeyMask = prefixMask(w.mask, w.B, w.T, pl)
		}
		a.attn.Forward(a.att, a.lse, a.qr, k, v)
	}
	w.attnTiles = a.attn.Tiles // shared by every layer
	l.O.Forward(out, a.att, n) // o_proj output, added to the residual below
	if l.AttnOut != nil {
		l.AttnOut.Forward(out, n)
	}
	if l.AttnPostNorm != nil {
		copy(a.ao, out)
		nn.RMSNorm(out, a.rstdAO, a.ao, w.nw.of(l.AttnPostNorm), n, h, c.RMSNormEps)
	}
	nn.AddTo(a.xmid, x, out)
	nn.RMSNorm(a.xn2, a.rstd2, a.xmid, w.nw.of(l.PostNorm), n, h, c.RMSNormEps)
	switch {
	case l.MoE != nil:
		var stats *auxStats
		if !w.recompute {
			stats = &w.aux
		}
		moeForward(c, l.MoE, &a.moe, out, a.xn2, n, w.mask, stats)
	case l.GateUp != nil:
		w.fused = grow(w.fused, 2*len(a.g))
		l.GateUp.Forward(w.fused, a.xn2, n)
		splitCols(w.fused, n, a.g, a.u)
		glu(c, a.a, a.g, a.u)
		l.Down.Forward(out, a.a, n)
	default:
		l.Gate.Forward(a.g, a.xn2, n)
		l.Up.Forward(a.u, a.xn2, n)
		glu(c, a.a, a.g, a.u)
		l.Down.Forward(out, a.a, n)
	}
	if l.MLPOut != nil {
		l.MLPOut.Forward(out, n)
	}
	if l.MLPPostNorm != nil {
		copy(a.mo, out)
		nn.RMSNorm(out, a.rstdMO, a.mo, w.nw.of(l.MLPPostNorm), n, h, c.RMSNormEps)
	}
	nn.Add(out, a.xmid)
}

// decodeAttention is the attention of a decoding step: each row's new keys
// and values join its sequence's cache, and its new positions attend to
// everything there (prefixes and virtual tokens went in when the session
// began). Rows are attended one by one since their sequences may differ in
// length; the attention keeps the layer's settings.
func (w *Workspace) decodeAttention(l *Layer, a *layerActs, kc *kvCache) {
	c := w.m.Cfg
	t, kd, qd := w.T, c.KVDim(), c.QDim()
	stride := kc.max * kd
	for r, seq := range kc.active {
		off := kc.lens[seq]
		kseq, vseq := kc.k[l.Index][seq*stride:(seq+1)*stride], kc.v[l.Index][seq*stride:(seq+1)*stride]
		copy(kseq[off*kd:], a.kr[r*t*kd:(r+1)*t*kd])
		copy(vseq[off*kd:], a.v[r*t*kd:(r+1)*t*kd])
		at := a.attn
		at.B, at.Tq, at.Tk, at.Offset = 1, t, off+t, off
		at.KeyMask, at.QSeg, at.KSeg = nil, nil, nil
		at.Forward(a.att[r*t*qd:(r+1)*t*qd], a.lse[r*c.Heads*t:(r+1)*c.Heads*t], a.qr[r*t*qd:(r+1)*t*qd], kseq[:(off+t)*kd], vseq[:(off+t)*kd])
		a.attn.Tiles = at.Tiles
	}
}

func prefixMask(mask []int32, b, t, p int) []int32 {
	out := make([]int32, b*(t+p))
	for r := 0; r < b; r++ {
		for j := 0; j < p; j++ {
			out[r*(t+p)+j] = 1
		}
		copy(out[r*(t+p)+p:(r+1)*(t+p)], mask[r*t:(r+1)*t])
	}
	return out
}

func maxPos(pos []int32) int32 {
	var mx int32
	for _, p := range pos {
		mx = max(mx, p)
	}
	return mx
}

// forward runs the embedding and every block, leaving the final normed
// hidden states in xf.
func (w *Workspace) forward(b *Batch) {
	w.headKept = false // a new batch: the kept logits are not its
	w.prepare(b)
	if c := w.m.Cfg; c.Experts > 0 {
		w.aux.reset(c.Experts)
	}
	w.embed()
	for _, l := range w.m.Layers {
		w.forwardLayer(l)
	}
	c := w.m.Cfg
	nn.RMSNorm(w.xf, w.rstdf, w.stream[len(w.m.Layers)], w.nw.of(w.m.Norm), w.N, c.Hidden, c.RMSNormEps)
}
