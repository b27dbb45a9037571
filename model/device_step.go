package model

import (
	"errors"
	"fmt"
	"slices"

	"gotune/compute"
)

// buf returns the scratch tensor called name, of at least n elements of dt,
// as a view of exactly n: scratch is shared by every layer and kept between
// steps.
func (dm *DeviceModel) buf(name string, dt compute.DType, n int) compute.Tensor {
	t := dm.scratch[name]
	if t == nil || t.Len() < n || t.DType() != dt {
		if t != nil {
			t.Free()
		}
		var err error
		t, err = dm.be.Alloc(dt, max(n, 1))
		if err != nil {
			// Recorded as the backend's error; the step reports it.
			dm.allocErr = errors.Join(dm.allocErr, fmt.Errorf("device model: scratch %s: %w", name, err))
			return nil
		}
		dm.scratch[name] = t
	}
	return t.Slice(0, n)
}

// prepareShape sizes the per-layer activations for batches of b×t tokens.
func (dm *DeviceModel) prepareShape(b, t int) error {
	if dm.shapeB == b && dm.shapeT == t {
		return nil
	}
	dm.dropShape()
	c := dm.cfg
	n := b * t
	h, qd, kd, inter := c.Hidden, c.QDim(), c.KVDim(), c.Intermediate
	A := dm.act
	var err error
	// Every shape asks for its tensors in the same order: the i-th request
	// takes a view of the i-th pooled tensor when it is big enough.
	next := 0
	get := func(dt compute.DType, size int) compute.Tensor {
		if err != nil {
			return nil
		}
		size = max(size, 1)
		i := next
		next++
		if i < len(dm.pool) {
			if x := dm.pool[i]; x.DType() == dt && x.Len() >= size {
				return x.Slice(0, size)
			}
			dm.pool[i].Free()
		} else {
			dm.pool = append(dm.pool, nil)
		}
		var x compute.Tensor
		if x, err = dm.be.Alloc(dt, size); err != nil {
			dm.pool = append(dm.pool[:i], dm.pool[i+1:]...)
			return nil
		}
		dm.pool[i] = x
		return x
	}
	// With checkpointing every block shares one set of activations, and
	// the backward pass recomputes each block's forward first.
	act := func(role string, dt compute.DType, size int) compute.Tensor {
		if !dm.checkpoint && !dm.inference {
			return get(dt, size)
		}
		if x := dm.shared[role]; x != nil {
			return x
		}
		x := get(dt, size)
		if x != nil {
			dm.shared[role] = x
		}
		return x
	}
	dm.shared = map[string]compute.Tensor{}
	dm.stream = make([]compute.Tensor, 1)
	dm.stream[0] = get(A, n*h)
	for _, l := range dm.layers {
		a := &dacts{xa: map[*dlinear]lact{}, dora: map[*dlinear]compute.Tensor{}, ia3: map[*dlinear]compute.Tensor{}}
		// Kept: what is expensive to recompute. The normed inputs, the
		// rotated q/k and silu(g)·u are rebuilt in the backward pass by
		// cheap element-wise kernels, which saves about 40% of the memory.
		a.rstd1 = act("rstd1", compute.F32, n)
		a.q, a.k = act("q", A, n*qd), act("k", A, n*kd)
		if l.qNorm != nil {
			a.rstdq, a.rstdk = act("rstdq", compute.F32, n*c.Heads), act("rstdk", compute.F32, n*c.KVHeads)
		}
		// With a KV prefix the values keep the prefix's P steps first.
		a.vh = act("vh", A, (n+b*dm.prefixRows())*kd)
		a.lse, a.att = act("lse", compute.F32, b*c.Heads*t), act("att", A, n*qd)
		a.xmid, a.rstd2 = act("xmid", A, n*h), act("rstd2", compute.F32, n)
		if l.moe != nil {
			a.moe = dm.moeActs(n, act)
		} else {
			a.g, a.u = act("g", A, n*inter), act("u", A, n*inter)
		}
		if l.attnPostNorm != nil {
			a.ao, a.rstdAO = act("ao", A, n*h), act("rstdAO", compute.F32, n)
		}
		if l.mlpPostNorm != nil {
			a.mo, a.rstdMO = act("mo", A, n*h), act("rstdMO", compute.F32, n)
		}
		for gi, g := range []*loraGroup{l.qkv, l.gu} {
			if g == nil {
				continue
			}
			t := act(fmt.Sprintf("xa_group%d_%d", gi, g.rows), A, n*g.rows)
			if t == nil {
				continue
			}
			for i, lin := range g.lins {
				a.xa[lin] = lact{t.Slice(g.cols[i], n*g.rows-g.cols[i]), g.rows}
			}
		}
		for i, bt := range []*dbottle{l.attnOut, l.mlpOut} {
			if bt == nil {
				continue
			}
			ba := bottleActs{x: act(fmt.Sprintf("bottle%d_x", i), A, n*h), z: act(fmt.Sprintf("bottle%d_z_%d", i, bt.r), A, n*bt.r)}
			a.bottle[i] = ba
		}
		for li, lin := range l.linears() {
			if lin.ia3 != nil && !lin.ia3.input {
				if t := act(fmt.Sprintf("ia3%d_%d", li, lin.out), A, n*lin.out); t != nil {
					a.ia3[lin] = t
				}
			}
			if lin.lora != nil && lin.lora.dora != nil {
				if t := act(fmt.Sprintf("dora%d_%d", li, lin.out), A, n*lin.out); t != nil {
					a.dora[lin] = t
				}
			}
			if lin.lora != nil && lin.group == nil {
				if t := act(fmt.Sprintf("xa%d_%d", li, lin.lora.r), A, n*lin.lora.r); t != nil {
					a.xa[lin] = lact{t, lin.lora.r}
				}
			}
		}
		l.acts = a
		dm.stream = append(dm.stream, get(A, n*h))
	}
	for i, l := range dm.layers {
		l.acts.x = dm.stream[i]
	}
	dm.xf, dm.rstdf = get(A, n*h), get(compute.F32, n)
	dm.ids, dm.pos, dm.mask, dm.seg = get(compute.I32, n), get(compute.I32, n), get(compute.I32, n), get(compute.I32, n)
	if err != nil {
		dm.freeShape()
		return fmt.Errorf("device model: activations for %d×%d tokens: %w", b, t, err)
	}
	dm.shapeB, dm.shapeT = b, t
	return nil
}

// rope uploads cos/sin tables covering n positions (and the local ones of
// sliding-window layers). LongRoPE's frequencies depend on whether the
// sequence reaches past the pretrained context, as Model.Rope's do: the
// tables are rebuilt when that changes.
func (dm *DeviceModel) rope(n int) error {
	c := dm.cfg
	long := c.ropeLong(n)
	// Dynamic NTK scaling depends on the length past
	// max_position_embeddings: a table of exactly n positions there, and
	// the unscaled frequencies below it (as Model.Rope).
	dynamic := c.Rope.Type == "dynamic" && c.MaxPositions > 0 && n > c.MaxPositions
	if dm.cos != nil && dm.ropeLong == long && (dynamic && dm.ropeN == n || !dynamic && dm.ropeN >= n && !dm.ropeDyn) {
		return nil
	}
	size := max(n, 256)
	seqLen := size
	switch {
	case c.Rope.Type == "longrope" && !long:
		seqLen = min(size, c.Rope.OriginalMaxPos)
	case dynamic:
		size, seqLen = n, n
	case c.Rope.Type == "dynamic" && c.MaxPositions > 0:
		seqLen = min(size, c.MaxPositions)
	}
	dm.freeRope()
	upload := func(tab *RopeTable) (cos, sin compute.Tensor, err error) {
		if tab.Rot != c.HeadDim && tab.Rot%2 != 0 {
			return nil, nil, fmt.Errorf("device model: rotary dimension %d", tab.Rot)
		}
		if cos, err = dm.be.Alloc(compute.F32, len(tab.Cos)); err != nil {
			return nil, nil, err
		}
		if sin, err = dm.be.Alloc(compute.F32, len(tab.Sin)); err != nil {
			cos.Free()
			return nil, nil, err
		}
		dm.be.Upload(cos, tab.Cos)
		dm.be.Upload(sin, tab.Sin)
		return cos, sin, nil
	}
	tab := c.newRopeTable(size, seqLen)
	var err error
	if dm.cos, dm.sin, err = upload(tab); err != nil {
		return err
	}
	dm.ropeN, dm.ropeRot, dm.ropeLong, dm.ropeDyn = size, tab.Rot, long, dynamic
	if c.LocalRope != nil {
		lc := *c
		lc.Rope, lc.LocalRope = *c.LocalRope, nil
		lt := lc.NewRopeTable(size)
		if dm.cosL, dm.sinL, err = upload(lt); err != nil {
			return err
		}
		dm.ropeRotL = lt.Rot
	}
	return nil
}

// Loss runs the forward pass and returns the summed cross-entropy of the
// trained tokens and their count.
func (dm *DeviceModel) Loss(b *Batch) (float64, int, error) {
	b, err := dm.withPrompt(b)
	if err != nil {
		return 0, 0, err
	}
	if err := dm.forward(b); err != nil {
		return 0, 0, err
	}
	sum, count, err := dm.lossHead(b, 0, false)
	return sum + dm.AuxLoss()*float64(count), count, err
}

// Step runs forward and backward for one micro-batch; gradients accumulate
// the gradient of scale·(summed token loss), as Workspace.Step.
func (dm *DeviceModel) Step(b *Batch, scale float32) (float64, int, error) {
	b, err := dm.withPrompt(b)
	if err != nil {
		return 0, 0, err
	}
	if err := dm.forward(b); err != nil {
		return 0, 0, err
	}
	sum, count, err := dm.lossHead(b, scale, true)
	if err != nil {
		return 0, 0, err
	}
	// The auxiliary loss weighs as this micro-batch's share of the trained
	// tokens, as in Workspace.Step.
	dm.auxW = float64(scale) * float64(count)
	sum += dm.AuxLoss() * float64(count)
	if err := dm.backward(); err != nil {
		return 0, 0, err
	}
	return sum, count, nil
}

func (dm *DeviceModel) forward(b *Batch) error {
	if err := b.Validate(dm.cfg.Vocab); err != nil {
		return err
	}
	if b.Seg != nil && dm.cache != nil {
		return errors.New("device model: a decoding session takes one sequence, not packed ones")
	}
	if err := dm.prepareShape(b.B, b.T); err != nil {
		return err
	}
	n := b.B * b.T
	pos := b.Pos
	if pos == nil {
		pos = make([]int32, n)
		for i := range pos {
			pos[i] = int32(i % b.T)
		}
	}
	var mx int32
	for _, p := range pos {
		mx = max(mx, p)
	}
	if err := dm.rope(int(mx) + 1); err != nil {
		return err
	}
	dm.be.UploadInt(dm.ids, b.IDs)
	dm.be.UploadInt(dm.pos, pos)
	dm.hasMask = false
	for _, v := range b.Mask {
		if v == 0 {
			dm.hasMask = true
			break
		}
	}
	dm.hostMask = nil
	if dm.hasMask {
		dm.be.UploadInt(dm.mask, b.Mask)
		dm.hostMask = b.Mask
	}
	if dm.cfg.Experts > 0 {
		dm.aux.reset(dm.cfg.Experts)
	}
	// Packed rows: a query sees only keys of its own sample.
	dm.hasSeg = b.Seg != nil
	if dm.hasSeg {
		dm.be.UploadInt(dm.seg, b.Seg)
	}
	c := dm.cfg
	dm.be.GatherRows(dm.stream[0], dm.embed.w, dm.ids, n, c.Hidden)
	dm.scaleEmbed(dm.stream[0])
	dm.promptForward(b)
	for i, l := range dm.layers {
		dm.forwardLayer(l, dm.stream[i+1])
	}
	dm.be.RMSNorm(dm.xf, dm.rstdf, dm.stream[len(dm.layers)], dm.norm.w, n, c.Hidden, float32(c.RMSNormEps), dm.wadd())
	return dm.err()
}

func (dm *DeviceModel) err() error {
	if dm.allocErr != nil {
		err := dm.allocErr
		dm.allocErr = nil
		return err
	}
	return dm.be.Err()
}

// weight returns the layer's weight in the compute type: the parameter
// itself, or a 4-bit weight expanded into scratch.
func (dm *DeviceModel) weight(l *dlinear) compute.Tensor {
	if l.q == nil {
		return l.w.w
	}
	w := dm.buf("wq", dm.act, l.in*l.out)
	if l.q.code == nil {
		dm.be.Dequantize8(w, l.q.packed, l.q.scales, l.in*l.out, l.q.block)
	} else {
		dm.be.Dequantize4(w, l.q.packed, l.q.scales, l.q.code, l.in*l.out, l.q.block)
	}
	return w
}

// linear computes y = x·Wᵀ (+ b) (+ s·(x·Aᵀ)·Bᵀ) for n rows; with DoRA,
// y = (x·Wᵀ + s·(x·Aᵀ)·Bᵀ)·m/‖W + s·B·A‖ (+ b), the product before the
// rescaling kept for backward.
func (dm *DeviceModel) linear(l *dlinear, a *dacts, y, x compute.Tensor, n int) {
	be := dm.be
	lora, ia3 := l.lora, l.ia3
	if dm.adaptersOff {
		lora, ia3 = nil, nil
	}
	var dr *dora
	if lora != nil {
		dr = lora.dora
	}
	u := y
	if dr != nil {
		u = a.dora[l]
		dm.doraFactors(l)
	}
	if s := ia3; s != nil {
		if s.input {
			// IA3 on a feed-forward layer: W·(l ⊙ x) + b.
			xs := dm.buf("ia3_xs", dm.act, n*l.in)
			be.ScaleCols(xs, x, s.vec.w, n, l.in)
			x = xs
		} else {
			// IA3 on the output: l ⊙ (W·x + b), the product kept.
			u = a.ia3[l]
			defer be.ScaleCols(y, u, s.vec.w, n, l.out)
		}
	}
	w := dm.weight(l)
	if lr := lora; lr != nil {
		// u = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, in one pass where the backend can.
		xa := a.xa[l]
		if l.group == nil {
			be.Gemm(false, true, n, lr.r, l.in, 1, dm.loraInput(lr, x, n*l.in), l.in, dm.loraA(lr, l.in), l.in, 0, xa.t, xa.ld)
		} else if l == l.group.lins[0] {
			// The group's x·Aᵀ for every member at once.
			g := l.group
			be.Gemm(false, true, n, g.rows, g.in, 1, x, g.in, g.a, g.in, 0, xa.t, g.rows)
		}
		be.GemmSum(n, l.out,
			compute.GemmTerm{TransB: true, K: l.in, Alpha: 1, A: x, LDA: l.in, B: w, LDB: l.in},
			compute.GemmTerm{TransB: true, K: lr.r, Alpha: lr.scale, A: xa.t, LDA: xa.ld, B: dm.loraB(lr, l.out), LDB: lr.r},
			0, u, l.out)
	} else {
		be.Gemm(false, true, n, l.out, l.in, 1, x, l.in, w, l.in, 0, u, l.out)
	}
	if l.b != nil && dr == nil {
		be.AddBias(u, l.b.w, n, l.out)
	}
	if dr != nil {
		defer func() {
			be.ScaleCols(y, u, dr.scale, n, l.out)
			if l.b != nil {
				be.AddBias(y, l.b.w, n, l.out)
			}
		}()
	}
}

// doraFactors computes DoRA's per-row factors from the current weights:
// the rows of W + s·B·A are formed in scratch (W expanded when 4-bit) and
// their squared norms summed.
func (dm *DeviceModel) doraFactors(l *dlinear) {
	be, lr := dm.be, l.lora
	d := lr.dora
	w := dm.buf("dora_w", compute.F32, l.out*l.in)
	be.Axpby(w, 1, dm.weight(l), 0)
	be.Gemm(false, false, l.out, l.in, lr.r, lr.scale, lr.b.w, lr.r, lr.a.w, l.in, 1, w, l.in)
	be.RowDot(d.norm2, w, w, l.out, l.in)
	be.DoRAScale(d.scale, d.inv, d.mag.w, d.norm2, l.out)
}

// groupBackward finishes the backward pass of a LoRA group once each member
// has put its s·dy·B into the group's dxa: the gradient of the fused A and
// the input gradient through it, one product each.
func (dm *DeviceModel) groupBackward(g *loraGroup, dx, x compute.Tensor, n int) {
	if g == nil {
		return
	}
	dxa := dm.buf("dxa_group", dm.act, n*g.rows)
	dm.be.Gemm(true, false, g.rows, g.in, n, 1, dxa, g.rows, x, g.in, 1, g.grad, g.in)
	if dx != nil {
		dm.be.Gemm(false, false, n, g.in, g.rows, 1, dxa, g.rows, g.a, g.in, 1, dx, g.in)
	}
}

// linearBackward accumulates dx += dy·W (when dx is not nil) and the
// gradients of the layer's trainable weights.
func (dm *DeviceModel) linearBackward(l *dlinear, a *dacts, dx, dy, x compute.Tensor, n int, accumulate bool) {
	be := dm.be
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if s := l.ia3; s != nil && !s.input {
		// The vector's gradient is Σ dy·(W·x + b) per output; what reaches
		// the product is l ⊙ dy.
		if s.vec.trainable {
			be.ColDot(s.vec.grad, dy, a.ia3[l], n, l.out)
		}
		dyl := dm.buf("ia3_dy", dm.act, n*l.out)
		be.ScaleCols(dyl, dy, s.vec.w, n, l.out)
		dy = dyl
	}
	if l.b != nil && l.b.trainable {
		be.BiasGrad(l.b.grad, dy, n, l.out)
	}
	if s := l.ia3; s != nil && s.input {
		// The gradient reaching l ⊙ x is dy·W: the vector's gradient is
		// Σ x·(dy·W) per input, and dx gets l ⊙ (dy·W). The weight is
		// frozen under IA3.
		dxs := dm.buf("ia3_dxs", dm.act, n*l.in)
		be.Gemm(false, false, n, l.in, l.out, 1, dy, l.out, dm.weight(l), l.in, 0, dxs, l.in)
		if s.vec.trainable {
			be.ColDot(s.vec.grad, x, dxs, n, l.in)
		}
		if dx != nil {
			be.ScaleCols(dxs, dxs, s.vec.w, n, l.in)
			be.Axpby(dx.Slice(0, n*l.in), 1, dxs, beta)
		}
		return
	}
	if l.lora != nil && l.lora.dora != nil {
		// DoRA: the magnitude's gradient is Σ dy·u/‖·‖ per row of W, and
		// what reaches the product before rescaling is dy·m/‖·‖.
		d := l.lora.dora
		if d.mag.trainable {
			v := dm.buf("dora_v", dm.act, n*l.out)
			be.ScaleCols(v, a.dora[l], d.inv, n, l.out)
			be.ColDot(d.mag.grad, dy, v, n, l.out)
		}
		du := dm.buf("dora_du", dm.act, n*l.out)
		be.ScaleCols(du, dy, d.scale, n, l.out)
		dy = du
	}
	if dx != nil {
		be.Gemm(false, false, n, l.in, l.out, 1, dy, l.out, dm.weight(l), l.in, beta, dx, l.in)
		beta = 1
	}
	if l.w != nil && l.w.trainable {
		be.Gemm(true, false, l.out, l.in, n, 1, dy, l.out, x, l.in, 1, l.w.grad, l.in)
	}
	if lr := l.lora; lr != nil {
		xa := a.xa[l]
		dxa := lact{dm.buf("dxa", dm.act, n*lr.r), lr.r}
		if g := l.group; g != nil {
			// Into this member's columns of the group's dxa; the group's
			// A gradient and input gradient follow in groupBackward.
			col := g.cols[slices.Index(g.lins, l)]
			dxa = lact{dm.buf("dxa_group", dm.act, n*g.rows).Slice(col, n*g.rows-col), g.rows}
		}
		be.Gemm(false, false, n, lr.r, l.out, lr.scale, dy, l.out, dm.loraB(lr, l.out), lr.r, 0, dxa.t, dxa.ld)
		if lr.b.trainable {
			db := dm.loraBGrad(lr, l.out)
			be.Gemm(true, false, l.out, lr.r, n, lr.scale, dy, l.out, xa.t, xa.ld, 1, db, lr.r)
			dm.loraBGradDone(lr, l.out, db)
		}
		if l.group != nil {
			return
		}
		if lr.a.trainable {
			be.Gemm(true, false, lr.r, l.in, n, 1, dxa.t, dxa.ld, dm.loraInput(lr, x, n*l.in), l.in, 1, dm.loraAGrad(lr, l.in), l.in)
		}
		if dx == nil {
			return
		}
		mask, dropped := lr.dropout()
		if !dropped {
			be.Gemm(false, false, n, l.in, lr.r, 1, dxa.t, dxa.ld, dm.loraA(lr, l.in), l.in, beta, dx, l.in)
			return
		}
		// The gradient reaching the dropped input, masked as the input was.
		dxd := dm.buf("lora_dxd", dm.act, n*l.in)
		be.Gemm(false, false, n, l.in, lr.r, 1, dxa.t, dxa.ld, lr.a.w, l.in, 0, dxd, l.in)
		be.Dropout(dx.Slice(0, n*l.in), dxd, mask, beta != 0)
	}
}

// loraInput is what a LoRA layer's A multiplies: x, or x with this step's
// dropout mask applied (drawn again in backward rather than kept).
func (dm *DeviceModel) loraInput(lr *dlora, x compute.Tensor, n int) compute.Tensor {
	mask, ok := lr.dropout()
	if !ok {
		return x
	}
	xd := dm.buf("lora_xd", dm.act, n)
	dm.be.Dropout(xd, x.Slice(0, n), mask, false)
	return xd
}

func (dm *DeviceModel) maskT() compute.Tensor {
	if dm.hasMask {
		return dm.mask
	}
	return nil
}

// maskRows is the attention mask of tokens [from, from+n) (nil: none).
func (dm *DeviceModel) maskRows(from, n int) compute.Tensor {
	if !dm.hasMask {
		return nil
	}
	return dm.mask.Slice(from, n)
}

// segRows is the packed-sample ids of tokens [from, from+n) (nil: not
// packed).
func (dm *DeviceModel) segRows(from, n int) compute.Tensor {
	if !dm.hasSeg {
		return nil
	}
	return dm.seg.Slice(from, n)
}

// attnChunk is how many sequences' score matrices ([H, Tq·Tk] floats each,
// tt = Tq·Tk) are held at once: as many as fit attnBudget, at least one.
func (dm *DeviceModel) attnChunk(b, h, tt int) int {
	budget := dm.attnBudget
	if budget == 0 {
		budget = 64 << 20 // floats: 256 MB of scores
	}
	return max(1, min(b, budget/max(h*tt, 1)))
}

func (dm *DeviceModel) forwardLayer(l *dlayer, out compute.Tensor) {
	be, c, a := dm.be, dm.cfg, l.acts
	B, T := dm.shapeB, dm.shapeT
	n := B * T
	h, hd, H, KVH := c.Hidden, c.HeadDim, c.Heads, c.KVHeads
	eps := float32(c.RMSNormEps)

	wadd := dm.wadd()
	xn1 := dm.buf("xn1", dm.act, n*h)
	be.RMSNorm(xn1, a.rstd1, a.x, l.inNorm.w, n, h, eps, wadd)
	v := dm.buf("v", dm.act, n*c.KVDim())
	dm.project(l, a, v, xn1, n)
	qh, kh := dm.rotated(l, a)
	cos, sin, _ := dm.ropeOf(l)
	// Keys and values: this batch's own, or with a cache everything cached
	// so far (tk steps of tmax held per head, the new ones from off).
	vh, tk, tmax, off := a.vh, T, T, 0
	if cache := dm.cache; cache != nil {
		vh, tk, tmax, off = cache.v[l.index], cache.len+T, cache.max, cache.len
		be.RopeSplitInto(vh, v, dm.pos, cos, sin, B, T, KVH, hd, 0, tmax, off)
	} else if pl := dm.prefixLen(); pl > 0 {
		// A KV prefix: its values take the first pl steps of every head.
		tk, tmax, off = pl+T, pl+T, pl
		dm.fillPrefix(vh, l.index, 1)
		be.RopeSplitInto(vh, v, dm.pos, cos, sin, B, T, KVH, hd, 0, tmax, off)
	} else {
		be.RopeSplit(vh, v, dm.pos, cos, sin, B, T, KVH, hd, 0)
	}

	// Per (sequence, KV head): the g query heads sharing it form one
	// [g·T, hd] block in head-major layout.
	g := H / KVH
	scale := c.AttnScale()
	oh := dm.buf("oh", dm.act, n*c.QDim())
	if !dm.attnForwardFused(l, oh, qh, kh, vh, tk, tmax, off) {
		// The score matrices of bc sequences at a time bound their memory.
		bc := dm.attnChunk(B, H, T*tk)
		s := dm.buf("s", compute.F32, bc*H*T*tk)
		p := dm.buf("p", dm.act, bc*H*T*tk)
		qd := c.QDim()
		kvs := KVH * tmax * hd // one sequence's keys (or values)
		for b0 := 0; b0 < B; b0 += bc {
			nb := min(bc, B-b0)
			qc, kc, vc := qh.Slice(b0*T*qd, nb*T*qd), kh.Slice(b0*kvs, nb*kvs), vh.Slice(b0*kvs, nb*kvs)
			be.GemmBatched(false, true, g*T, tk, hd, scale, qc, hd, g*T*hd, kc, hd, tmax*hd, 0, s, tk, g*T*tk, nb*KVH)
			seg := dm.segRows(b0*T, nb*T)
			dm.attnSoftmax(l, p, a.lse.Slice(b0*H*T, nb*H*T), s, dm.attnKeyMask(b0, nb, tk), seg, seg, nb, H, T, tk, off)
			be.GemmBatched(false, false, g*T, hd, tk, 1, p, tk, g*T*tk, vc, hd, tmax*hd, 0, oh.Slice(b0*T*qd, nb*T*qd), hd, g*T*hd, nb*KVH)
		}
	}
	be.RopeMerge(a.att, oh, nil, cos, sin, B, T, H, hd, 0, false)

	o := dm.buf("o", dm.act, n*h)
	// o_proj, its bottleneck adapter, then the family's sandwich norm.
	attnOut := o
	if l.attnPostNorm != nil {
		attnOut = a.ao
	}
	dm.linear(l.o, a, attnOut, a.att, n)
	if bt := dm.hook(l.attnOut); bt != nil {
		dm.bottleneckForward(bt, a.bottle[0], attnOut, n)
	}
	if l.attnPostNorm != nil {
		be.RMSNorm(o, a.rstdAO, a.ao, l.attnPostNorm.w, n, h, eps, wadd)
	}
	be.Add(a.xmid, a.x, o)
	xn2 := dm.buf("xn2", dm.act, n*h)
	be.RMSNorm(xn2, a.rstd2, a.xmid, l.postNorm.w, n, h, eps, wadd)
	mlpOut := o
	if l.mlpPostNorm != nil {
		mlpOut = a.mo
	}
	if l.moe != nil {
		dm.moeForward(l, a, mlpOut, xn2, n)
	} else {
		dm.gateUp(l, a, xn2, n)
		act := dm.buf("act", dm.act, n*c.Intermediate)
		dm.glu(act, a.g, a.u)
		dm.linear(l.down, a, mlpOut, act, n)
	}
	if bt := dm.hook(l.mlpOut); bt != nil {
		dm.bottleneckForward(bt, a.bottle[1], mlpOut, n)
	}
	if l.mlpPostNorm != nil {
		be.RMSNorm(o, a.rstdMO, a.mo, l.mlpPostNorm.w, n, h, eps, wadd)
	}
	be.Add(out, a.xmid, o)
}

// rotated builds the head-major, normed (q/k norm) and rotated queries and
// keys of a block from the saved projections, in scratch (the forward and
// the backward pass build the same values).
func (dm *DeviceModel) rotated(l *dlayer, a *dacts) (qh, kh compute.Tensor) {
	be, c := dm.be, dm.cfg
	B, T := dm.shapeB, dm.shapeT
	n := B * T
	hd, H, KVH := c.HeadDim, c.Heads, c.KVHeads
	q, k := a.q, a.k
	if l.qNorm != nil {
		eps := float32(c.RMSNormEps)
		qn, kn := dm.buf("qn", dm.act, n*c.QDim()), dm.buf("kn", dm.act, n*c.KVDim())
		// Recomputing the norm rewrites rstd with the same values.
		be.RMSNorm(qn, a.rstdq, a.q, l.qNorm.w, n*H, hd, eps, dm.wadd())
		be.RMSNorm(kn, a.rstdk, a.k, l.kNorm.w, n*KVH, hd, eps, dm.wadd())
		q, k = qn, kn
	}
	cos, sin, rot := dm.ropeOf(l)
	qh = dm.buf("qh", dm.act, n*c.QDim())
	be.RopeSplit(qh, q, dm.pos, cos, sin, B, T, H, hd, rot)
	if cache := dm.cache; cache != nil {
		// Decoding: the new keys join the cache, and attention reads it.
		be.RopeSplitInto(cache.k[l.index], k, dm.pos, cos, sin, B, T, KVH, hd, rot, cache.max, cache.len)
		return qh, cache.k[l.index]
	}
	if pl := dm.prefixLen(); pl > 0 {
		// A KV prefix: the keys of every head start with its pl steps.
		kh = dm.buf("kh", dm.act, B*(pl+T)*c.KVDim())
		dm.fillPrefix(kh, l.index, 0)
		be.RopeSplitInto(kh, k, dm.pos, cos, sin, B, T, KVH, hd, rot, pl+T, pl)
		return qh, kh
	}
	kh = dm.buf("kh", dm.act, n*c.KVDim())
	be.RopeSplit(kh, k, dm.pos, cos, sin, B, T, KVH, hd, rot)
	return qh, kh
}

// headChunk bounds the logits held at once: rows·vocab floats of logits
// plus their gradient. A GPU wants few large products; on the host the head
// runs as fast in chunks of a few hundred rows, so there the budget is a
// sixth and the chunks are balanced (no short last chunk).
func (dm *DeviceModel) headChunk(vocab, rows int) int {
	if _, host := dm.be.(compute.HostBackend); host {
		return HostHeadChunk(vocab, rows)
	}
	const budget = 96 << 20 // elements
	m := max(budget/max(vocab, 1), 64)
	return max(1, min(m, rows))
}

// HostHeadChunk is the head's row chunk on a host backend for rows trained
// positions (the planner counts memory with it).
func HostHeadChunk(vocab, rows int) int {
	const budget, minRows = 16 << 20, 256
	if rows <= 0 || vocab <= 0 {
		return 1
	}
	most := max(budget/vocab, minRows)
	chunks := (rows + most - 1) / most
	return (rows + chunks - 1) / chunks
}

// head computes the logits and the shifted cross-entropy of the trained
// rows, chunk by chunk; with backward it leaves the gradient of scale·loss
// with respect to the final normed states in "dxf" and accumulates the head
// weight's gradient.
func (dm *DeviceModel) lossHead(b *Batch, scale float32, backward bool) (float64, int, error) {
	losses, err := dm.tokenLosses(b, scale, nil, backward)
	var sum float64
	for _, v := range losses {
		sum += float64(v)
	}
	return sum, len(losses), err
}

// tokenLosses is lossHead returning each trained token's loss (row by row, left
// to right); scales, when set, replaces scale with one factor per token.
func (dm *DeviceModel) tokenLosses(b *Batch, scale float32, scales []float32, backward bool) ([]float32, error) {
	be, c := dm.be, dm.cfg
	h, V := c.Hidden, c.Vocab
	if b.Labels == nil {
		return nil, errors.New("device model: the batch has no labels")
	}
	var rows, targets []int32
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if y := b.Labels[r*b.T+t+1]; y != IgnoreIndex {
				rows = append(rows, int32(r*b.T+t))
				targets = append(targets, y)
			}
		}
	}
	n := b.B * b.T
	var dxf compute.Tensor
	if backward {
		dxf = dm.buf("dxf", dm.act, n*h)
		be.Zero(dxf)
	}
	if len(rows) == 0 {
		return nil, dm.err()
	}
	if scales != nil && len(scales) != len(rows) {
		return nil, fmt.Errorf("device model: %d token factors for %d trained tokens", len(scales), len(rows))
	}
	// logits = xf·Headᵀ/temperature, as Workspace.Temperature: the
	// 1/temperature rides on the products, and so on both gradients.
	inv := float32(1)
	if dm.Temperature > 0 && dm.Temperature != 1 {
		inv = float32(1 / dm.Temperature)
	}
	alpha := dm.headAlpha(inv)
	chunk := dm.headChunk(V, len(rows))
	idx := dm.buf("head_idx", compute.I32, len(rows))
	tg := dm.buf("head_tg", compute.I32, len(rows))
	be.UploadInt(idx, rows)
	be.UploadInt(tg, targets)
	losses := dm.buf("head_loss", compute.F32, len(rows))
	xs := dm.buf("head_x", dm.act, chunk*h)
	logits := dm.buf("logits", compute.F32, chunk*V)
	var dlog, dxs, sc compute.Tensor
	if backward {
		dlog = dm.buf("dlogits", dm.act, chunk*V)
		dxs = dm.buf("head_dx", dm.act, chunk*h)
		if scales != nil {
			sc = dm.buf("head_scales", compute.F32, len(rows))
			be.Upload(sc, scales)
			scale = 1
		}
	}
	// The entropy metric: H = lse − Σ p·z = loss − Σ (p − onehot)·z, from
	// the softmax CrossEntropy writes as its gradient at scale 1.
	var ent, entP compute.Tensor
	if dm.policy.entropy && !backward {
		ent, entP = dm.buf("head_entropy", compute.F32, len(rows)), dm.entropyGrad(chunk*V)
	}
	for c0 := 0; c0 < len(rows); c0 += chunk {
		m := min(chunk, len(rows)-c0)
		ci := idx.Slice(c0, m)
		be.GatherRows(xs.Slice(0, m*h), dm.xf, ci, m, h)
		lg := logits.Slice(0, m*V)
		be.Gemm(false, true, m, V, h, alpha, xs, h, dm.head.w, h, 0, lg, V)
		var g compute.Tensor
		if backward {
			g = dlog.Slice(0, m*V)
		}
		z := dm.capHead(lg, inv)
		if ent != nil {
			g, scale = entP.Slice(0, m*V), 1
		}
		be.CrossEntropy(losses.Slice(c0, m), g, z, tg.Slice(c0, m), m, V, scale)
		if ent != nil {
			be.RowDot(ent.Slice(c0, m), g, z, m, V)
		}
		if !backward {
			continue
		}
		if sc != nil {
			be.ScaleRows(g, g, sc.Slice(c0, m), m, V)
		}
		dm.capHeadGrad(g, lg, inv)
		be.Gemm(false, false, m, h, V, alpha, g, V, dm.head.w, h, 0, dxs, h)
		be.ScatterAddRows(dxf, dxs.Slice(0, m*h), ci, m, h)
		if dm.head.trainable {
			be.Gemm(true, false, V, h, m, alpha, g, V, xs, h, 1, dm.head.grad, h)
		}
	}
	host := make([]float32, len(rows))
	if err := be.Download(host, losses); err != nil {
		return nil, err
	}
	if ent != nil {
		if err := dm.entropies(host, ent); err != nil {
			return nil, err
		}
	}
	return host, dm.err()
}

// TokenLogProbs is Workspace.TokenLogProbs on the device: the forward pass,
// then log p(label) of every trained token, row by row and left to right.
// The activations stay for BackwardTokens on the same batch.
func (dm *DeviceModel) TokenLogProbs(b *Batch) ([]float64, error) {
	dm.scored = nil
	dm.policy.entropies = dm.policy.entropies[:0]
	b, err := dm.withPrompt(b)
	if err != nil {
		return nil, err
	}
	if err := dm.forward(b); err != nil {
		return nil, err
	}
	losses, err := dm.tokenLosses(b, 0, nil, false)
	if err != nil {
		return nil, err
	}
	// Sequence-level losses are over log-probabilities only: a mixture of
	// experts' load-balancing loss is not part of them.
	dm.auxW = 0
	dm.scored, dm.scoredOff = b, dm.adaptersOff
	out := make([]float64, len(losses))
	for i, v := range losses {
		out[i] = -float64(v)
	}
	return out, nil
}

// TokenRows returns, for each value of the last TokenLogProbs, the index of
// its sequence in the batch.
func (dm *DeviceModel) TokenRows() []int {
	b := dm.scored
	if b == nil {
		return nil
	}
	var out []int
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != IgnoreIndex {
				out = append(out, r)
			}
		}
	}
	return out
}

// BackwardTokens follows TokenLogProbs on the same batch: every trainable
// parameter's gradient accumulates the gradient of Σᵢ coef[i]·log pᵢ.
func (dm *DeviceModel) BackwardTokens(coef []float32) error {
	if dm.scored == nil {
		return errors.New("device model: BackwardTokens without a TokenLogProbs before it")
	}
	if dm.scoredOff || dm.adaptersOff {
		return errors.New("device model: no backward pass through the model with its adapters off")
	}
	if dm.policy.on {
		return errors.New("device model: no backward pass through the reference weights")
	}
	// The head's gradient is that of factor·(−log p): the factor is −coef.
	neg := make([]float32, len(coef))
	for i, c := range coef {
		neg[i] = -c
	}
	if _, err := dm.tokenLosses(dm.scored, 0, neg, true); err != nil {
		return err
	}
	dm.scored = nil
	return dm.backward()
}

// WithoutAdapters switches the adapters (LoRA and its variants, IA3) off
// for the passes that follow, and returns the function that switches them
// back on: the base model scores as the reference policy without a second
// copy of its weights.
func (dm *DeviceModel) WithoutAdapters() (restore func()) {
	was := dm.adaptersOff
	dm.adaptersOff = true
	return func() { dm.adaptersOff = was }
}

func (dm *DeviceModel) backward() error {
	be, c := dm.be, dm.cfg
	n, h := dm.shapeB*dm.shapeT, c.Hidden
	L := len(dm.layers)
	dres := dm.buf("dres", dm.act, n*h)
	dxf := dm.buf("dxf", dm.act, n*h)
	be.RMSNormBackward(dres, dxf, dm.stream[L], dm.norm.w, dm.rstdf, n, h, dm.wadd(), false)
	if dm.norm.trainable {
		be.RMSNormWeightGrad(dm.norm.grad, dxf, dm.stream[L], dm.rstdf, n, h)
	}
	auxGrad := dm.moeAuxGrad()
	for i := L - 1; i >= 0; i-- {
		if dm.checkpoint {
			dm.recompute = true
			dm.forwardLayer(dm.layers[i], dm.stream[i+1])
			dm.recompute = false
		}
		dm.backwardLayer(dm.layers[i], i, dres, auxGrad)
	}
	dm.promptBackward(dres)
	if dm.embed.trainable {
		dm.scaleEmbed(dres)
		be.EmbeddingBackward(dm.embed.grad, dres, dm.ids, n, h)
	}
	return dm.err()
}

// normBackward writes dx (accumulating when asked) and the norm weight's
// gradient.
func (dm *DeviceModel) normBackward(w *dparam, dx, dy, x, rstd compute.Tensor, rows, d int, accumulate bool) {
	dm.be.RMSNormBackward(dx, dy, x, w.w, rstd, rows, d, dm.wadd(), accumulate)
	if w.trainable {
		dm.be.RMSNormWeightGrad(w.grad, dy, x, rstd, rows, d)
	}
}

// backwardLayer turns dres from the gradient of the block's output into the
// gradient of its input.
func (dm *DeviceModel) backwardLayer(l *dlayer, index int, dres compute.Tensor, auxGrad []float64) {
	be, c, a := dm.be, dm.cfg, l.acts
	B, T := dm.shapeB, dm.shapeT
	n := B * T
	h, hd, H, KVH, inter := c.Hidden, c.HeadDim, c.Heads, c.KVHeads, c.Intermediate
	qd, kd := c.QDim(), c.KVDim()
	A := dm.act

	eps := float32(c.RMSNormEps)
	// MLP: out = xmid + down(silu(gate(xn2))·up(xn2)).
	// Through the MLP's sandwich norm and bottleneck adapter first, where
	// there are.
	dy := dres
	if l.mlpPostNorm != nil {
		dy = dm.buf("dpost", A, n*h)
		dm.normBackward(l.mlpPostNorm, dy, dres, a.mo, a.rstdMO, n, h, false)
	}
	if bt := dm.hook(l.mlpOut); bt != nil {
		dy = dm.bottleneckBackward(bt, a.bottle[1], dy, n)
	}
	xn2 := dm.buf("xn2", A, n*h)
	be.RMSNorm(xn2, a.rstd2, a.xmid, l.postNorm.w, n, h, eps, dm.wadd())
	dxn := dm.buf("dxn", A, n*h)
	if l.moe != nil {
		dm.moeBackward(l, a, dxn, dy, xn2, n, auxGrad)
	} else {
		act := dm.buf("act", A, n*inter)
		dm.glu(act, a.g, a.u)
		da := dm.buf("da", A, n*inter)
		dm.linearBackward(l.down, a, da, dy, act, n, false)
		dg, du := dm.buf("dg", A, n*inter), dm.buf("du", A, n*inter)
		dm.gluBackward(dg, du, da, a.g, a.u)
		dm.gateUpBackward(l, a, dxn, dg, du, xn2, n)
	}
	dm.normBackward(l.postNorm, dres, dxn, a.xmid, a.rstd2, n, h, true)

	// Attention: xmid = x + o(attn(rope(q), rope(k), v)).
	datt := dm.buf("datt", A, n*qd)
	dy = dres
	if l.attnPostNorm != nil {
		dy = dm.buf("dpost", A, n*h)
		dm.normBackward(l.attnPostNorm, dy, dres, a.ao, a.rstdAO, n, h, false)
	}
	if bt := dm.hook(l.attnOut); bt != nil {
		dy = dm.bottleneckBackward(bt, a.bottle[0], dy, n)
	}
	dm.linearBackward(l.o, a, datt, dy, a.att, n, false)
	g := H / KVH
	scale := c.AttnScale()
	cos, sin, rot := dm.ropeOf(l)
	doh := dm.buf("doh", A, n*qd)
	oh := dm.buf("oh", A, n*qd)
	be.RopeSplit(doh, datt, nil, cos, sin, B, T, H, hd, 0)
	be.RopeSplit(oh, a.att, nil, cos, sin, B, T, H, hd, 0)
	dsum := dm.buf("dsum", compute.F32, B*H*T)
	be.RowDot(dsum, doh, oh, B*H*T, hd)
	qh, kh := dm.rotated(l, a)
	dqh, dkh, dvh := dm.buf("dqh", A, n*qd), dm.buf("dkh", A, n*kd), dm.buf("dvh", A, n*kd)
	if !dm.attnBackwardFused(l, dqh, dkh, dvh, doh, qh, kh, dsum) {
		// With a KV prefix every query also sees pl prefix steps first: tk keys.
		pl := dm.prefixLen()
		tk := pl + T
		bc := dm.attnChunk(B, H, T*tk)
		s := dm.buf("s", compute.F32, bc*H*T*tk)
		dp := dm.buf("dp", compute.F32, bc*H*T*tk)
		p := dm.buf("p", A, bc*H*T*tk)
		ds := dm.buf("ds", A, bc*H*T*tk)
		for b0 := 0; b0 < B; b0 += bc {
			nb := min(bc, B-b0)
			batch := nb * KVH
			q, k, v := qh.Slice(b0*T*qd, nb*T*qd), kh.Slice(b0*tk*kd, nb*tk*kd), a.vh.Slice(b0*tk*kd, nb*tk*kd)
			do := doh.Slice(b0*T*qd, nb*T*qd)
			be.GemmBatched(false, true, g*T, tk, hd, scale, q, hd, g*T*hd, k, hd, tk*hd, 0, s, tk, g*T*tk, batch)
			be.GemmBatched(false, true, g*T, tk, hd, 1, do, hd, g*T*hd, v, hd, tk*hd, 0, dp, tk, g*T*tk, batch)
			seg := dm.segRows(b0*T, nb*T)
			dm.attnSoftmaxBackward(l, p, ds, s, dp, a.lse.Slice(b0*H*T, nb*H*T), dsum.Slice(b0*H*T, nb*H*T), dm.keyMask(b0, nb, tk), seg, seg, nb, H, T, tk, pl)
			// The sequence's own keys are columns [pl, tk) of p and ds.
			pt, dst := p, ds
			if pl > 0 {
				pt, dst = p.Slice(pl, p.Len()-pl), ds.Slice(pl, ds.Len()-pl)
			}
			be.GemmBatched(true, false, T, hd, g*T, 1, pt, tk, g*T*tk, do, hd, g*T*hd, 0, dvh.Slice(b0*T*kd, nb*T*kd), hd, T*hd, batch)
			be.GemmBatched(false, false, g*T, hd, tk, scale, ds, tk, g*T*tk, k, hd, tk*hd, 0, dqh.Slice(b0*T*qd, nb*T*qd), hd, g*T*hd, batch)
			be.GemmBatched(true, false, T, hd, g*T, scale, dst, tk, g*T*tk, q, hd, g*T*hd, 0, dkh.Slice(b0*T*kd, nb*T*kd), hd, T*hd, batch)
			if pl > 0 {
				// The prefix's columns: its keys' and values' gradients, summed
				// over the chunk's sequences.
				dpre := dm.buf("prefix_dpre", A, nb*KVH*pl*hd)
				be.GemmBatched(true, false, pl, hd, g*T, 1, p, tk, g*T*tk, do, hd, g*T*hd, 0, dpre, hd, pl*hd, batch)
				dm.prefixGrad(dpre, l.index, 1, b0, nb)
				be.GemmBatched(true, false, pl, hd, g*T, scale, ds, tk, g*T*tk, q, hd, g*T*hd, 0, dpre, hd, pl*hd, batch)
				dm.prefixGrad(dpre, l.index, 0, b0, nb)
			}
		}
	}
	dq, dk, dv := dm.buf("dq", A, n*qd), dm.buf("dk", A, n*kd), dm.buf("dv", A, n*kd)
	be.RopeMerge(dq, dqh, dm.pos, cos, sin, B, T, H, hd, rot, false)
	be.RopeMerge(dk, dkh, dm.pos, cos, sin, B, T, KVH, hd, rot, false)
	be.RopeMerge(dv, dvh, dm.pos, cos, sin, B, T, KVH, hd, 0, false)
	if l.qNorm != nil {
		dqn, dkn := dm.buf("dqn", A, n*qd), dm.buf("dkn", A, n*kd)
		dm.normBackward(l.qNorm, dqn, dq, a.q, a.rstdq, n*H, hd, false)
		dm.normBackward(l.kNorm, dkn, dk, a.k, a.rstdk, n*KVH, hd, false)
		dq, dk = dqn, dkn
	}
	// Below the first block only a trained embedding or input norm needs
	// the input gradient.
	var dxn1 compute.Tensor
	if index > 0 || dm.embed.trainable || l.inNorm.trainable || dm.virtualLen() > 0 {
		dxn1 = dxn
	}
	xn1 := dm.buf("xn1", A, n*h)
	be.RMSNorm(xn1, a.rstd1, a.x, l.inNorm.w, n, h, eps, dm.wadd())
	dm.projectBackward(l, a, dxn1, dq, dk, dv, xn1, n)
	if dxn1 != nil {
		dm.normBackward(l.inNorm, dres, dxn1, a.x, a.rstd1, n, h, true)
	}
}
