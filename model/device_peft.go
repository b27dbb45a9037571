package model

import (
	"errors"
	"fmt"

	"gotune/compute"
	"gotune/nn"
)

// PromptEncoder is what the device path needs from a prompt-learning method
// (prompt tuning, P-tuning, prefix tuning; implemented by peft's): the
// trained input [P, in] and the dense layers its encoder applies to it (to
// the output of an LSTM first when it is also an LSTMEncoder), in order,
// with act between consecutive layers and none after the last (no layers:
// the input is the output). The output of virtual tokens is
// [P, Hidden]; that of a KV prefix [P, Layers·2·KVDim], layer l's keys at
// columns [2l·KVDim, (2l+1)·KVDim) and its values in the next KVDim, keys
// not rotated (PEFT's layout). why is non-empty when the encoder cannot run
// on a device.
type PromptEncoder interface {
	DeviceEncoder() (in *nn.Param, layers []Dense, act compute.Activation, why string)
}

// Dense is one linear layer of a prompt encoder: W [out, in], B [out].
type Dense struct{ W, B *nn.Param }

// LSTMEncoder is implemented by a prompt encoder whose dense layers follow
// a bidirectional multi-layer LSTM over the virtual tokens (P-tuning's LSTM
// type: torch's nn.LSTM on one sequence): its hidden units per direction
// and, per layer, the forward and the reverse direction's weights. The
// dense layers then read [P, 2·hidden], each step's forward and reverse
// hidden states side by side.
type LSTMEncoder interface {
	DeviceLSTM() (hidden int, layers [][2]LSTMWeights)
}

// LSTMWeights are one direction of one LSTM layer in torch's layout:
// Wih [4·hidden, in], Whh [4·hidden, hidden], Bih and Bhh [4·hidden], gates
// in the order input, forget, cell, output.
type LSTMWeights struct{ Wih, Whh, Bih, Bhh *nn.Param }

// BottleneckHook is what the device path needs from a bottleneck adapter
// on a sub-layer's output (implemented by peft's): y ← y + s·(act(y·Dᵀ + d)·Uᵀ + u)
// with down D [r, Hidden], d [r], up U [Hidden, r], u [Hidden].
type BottleneckHook interface {
	DeviceBottleneck() (down, downBias, up, upBias *nn.Param, scale float32, act compute.Activation)
}

// dpeft holds the device side of the methods that are not adapters on a
// linear layer: virtual tokens and a KV prefix (bottleneck adapters live
// on their layers).
type dpeft struct {
	virt, prefix *dencoder
	// prefixMask is the key mask [B, P+T] of the current batch (the prefix
	// always visible), nil when the batch has no padding.
	prefixMask compute.Tensor
	// ones is the scratch tensor of ones and how many it holds.
	ones  compute.Tensor
	onesN int
}

// dencoder is a prompt method's trained input and encoder on the device.
type dencoder struct {
	in     *dparam
	layers []ddense
	act    compute.Activation
	rows   int // virtual tokens
	width  int // of the output
	// The forward values backward needs, in the compute type: pre[i] is
	// hidden layer i's output before the activation, xs[i] after it (the
	// input of layer i+1); out the encoder's output.
	xs, pre []compute.Tensor
	out     compute.Tensor
	lstm    *dlstm // before the dense layers, or nil
}

// dlstm is a bidirectional LSTM encoder on the device, with what its
// backward pass (through time) needs.
type dlstm struct {
	hidden int
	layers []dlstmLayer
}

type dlstmLayer struct {
	in  int
	dir [2]dlstmDir
	out compute.Tensor // [P, 2·hidden]: forward and reverse hidden states
}

type dlstmDir struct {
	wih, whh, bih, bhh *dparam
	gates, c           compute.Tensor // activated gates [P, 4·hidden], cells [P, hidden]
}

type ddense struct {
	w, b    *dparam
	in, out int
}

// dbottle is a bottleneck adapter on the device.
type dbottle struct {
	down, downB, up, upB *dparam
	r                    int
	scale                float32
	act                  compute.Activation
}

// bottleActs is what a bottleneck adapter keeps for backward: its input
// and the down projection's output before the activation.
type bottleActs struct{ x, z compute.Tensor }

// attachPEFT brings the model's virtual tokens, KV prefix and bottleneck
// adapters to the device; param uploads (or records as trainable) a host
// parameter.
func (dm *DeviceModel) attachPEFT(m *Model, param func(*nn.Param, bool) *dparam) error {
	c := m.Cfg
	dm.peft = &dpeft{}
	if m.Input != nil {
		e, err := dm.newEncoder(m.Input, param, m.Input.Virtual(), c.Hidden)
		if err != nil {
			return fmt.Errorf("device model: virtual tokens: %w", err)
		}
		dm.peft.virt = e
	}
	var first KVPrefix
	if len(m.Layers) > 0 {
		first = m.Layers[0].Prefix
	}
	for _, l := range m.Layers {
		if l.Prefix != first {
			return errors.New("device model: a KV prefix must be the same on every layer to run on the device block")
		}
	}
	if first != nil {
		e, err := dm.newEncoder(first, param, first.Len(), len(m.Layers)*2*c.KVDim())
		if err != nil {
			return fmt.Errorf("device model: KV prefix: %w", err)
		}
		dm.peft.prefix = e
	}
	for i, l := range m.Layers {
		for _, h := range []struct {
			hook SublayerHook
			dst  **dbottle
		}{{l.AttnOut, &dm.layers[i].attnOut}, {l.MLPOut, &dm.layers[i].mlpOut}} {
			if h.hook == nil {
				continue
			}
			down, downB, up, upB, s, act := h.hook.DeviceBottleneck()
			if down == nil || downB == nil || up == nil || upB == nil {
				return fmt.Errorf("device model: layer %d: a bottleneck adapter without all four of its weights", l.Index)
			}
			if len(down.Shape) != 2 || down.Shape[1] != c.Hidden || len(up.Shape) != 2 || up.Shape[0] != c.Hidden || up.Shape[1] != down.Shape[0] {
				return fmt.Errorf("device model: layer %d: bottleneck of shapes %v, %v for hidden size %d", l.Index, down.Shape, up.Shape, c.Hidden)
			}
			*h.dst = &dbottle{down: param(down, false), downB: param(downB, true), up: param(up, false), upB: param(upB, true),
				r: down.Shape[0], scale: s, act: act}
		}
	}
	return nil
}

// newEncoder checks a prompt encoder's shapes (rows × width out) and
// allocates the buffers of its forward pass.
func (dm *DeviceModel) newEncoder(pe PromptEncoder, param func(*nn.Param, bool) *dparam, rows, width int) (*dencoder, error) {
	in, layers, act, why := pe.DeviceEncoder()
	if why != "" {
		return nil, errors.New(why)
	}
	if in == nil {
		return nil, errors.New("no trained input")
	}
	if len(in.Shape) != 2 || in.Shape[0] != rows {
		return nil, fmt.Errorf("input of shape %v, want %d rows", in.Shape, rows)
	}
	e := &dencoder{in: param(in, false), act: act, rows: rows, width: width}
	w := in.Shape[1]
	if le, ok := pe.(LSTMEncoder); ok {
		hidden, lstmLayers := le.DeviceLSTM()
		if len(lstmLayers) > 0 {
			var err error
			if e.lstm, err = dm.newLSTM(hidden, lstmLayers, param, rows, w); err != nil {
				return nil, err
			}
			w = 2 * hidden
		}
	}
	for i, d := range layers {
		if len(d.W.Shape) != 2 || d.W.Shape[1] != w || (d.B != nil && len(d.B.Data) != d.W.Shape[0]) {
			return nil, fmt.Errorf("encoder layer %d: weight %v on inputs of width %d", i, d.W.Shape, w)
		}
		e.layers = append(e.layers, ddense{w: param(d.W, false), b: param(d.B, true), in: w, out: d.W.Shape[0]})
		w = d.W.Shape[0]
	}
	if w != width {
		return nil, fmt.Errorf("output of width %d, want %d", w, width)
	}
	for i, d := range e.layers {
		var err error
		if i == len(e.layers)-1 {
			e.out, err = dm.alloc(dm.act, rows*d.out)
		} else {
			var pre, x compute.Tensor
			if pre, err = dm.alloc(dm.act, rows*d.out); err == nil {
				x, err = dm.alloc(dm.act, rows*d.out)
			}
			e.pre, e.xs = append(e.pre, pre), append(e.xs, x)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// newLSTM checks an LSTM encoder's shapes (rows steps of inputs of width
// in) and allocates its forward values.
func (dm *DeviceModel) newLSTM(hidden int, layers [][2]LSTMWeights, param func(*nn.Param, bool) *dparam, rows, in int) (*dlstm, error) {
	l := &dlstm{hidden: hidden}
	H := hidden
	for k, ws := range layers {
		ly := dlstmLayer{in: in}
		for d, w := range ws {
			if w.Wih == nil || w.Whh == nil || w.Bih == nil || w.Bhh == nil {
				return nil, fmt.Errorf("lstm layer %d: missing weights", k)
			}
			if len(w.Wih.Shape) != 2 || w.Wih.Shape[0] != 4*H || w.Wih.Shape[1] != in || len(w.Whh.Shape) != 2 || w.Whh.Shape[0] != 4*H || w.Whh.Shape[1] != H ||
				len(w.Bih.Data) != 4*H || len(w.Bhh.Data) != 4*H {
				return nil, fmt.Errorf("lstm layer %d: weights %v and %v for %d hidden units on inputs of width %d", k, w.Wih.Shape, w.Whh.Shape, H, in)
			}
			dd := dlstmDir{wih: param(w.Wih, false), whh: param(w.Whh, false), bih: param(w.Bih, true), bhh: param(w.Bhh, true)}
			var err error
			if dd.gates, err = dm.alloc(dm.act, rows*4*H); err == nil {
				dd.c, err = dm.alloc(dm.act, rows*H)
			}
			if err != nil {
				return nil, err
			}
			ly.dir[d] = dd
		}
		var err error
		if ly.out, err = dm.alloc(dm.act, rows*2*H); err != nil {
			return nil, err
		}
		l.layers = append(l.layers, ly)
		in = 2 * H
	}
	return l, nil
}

// lstmForward runs the LSTM over the encoder's input and returns its
// output [P, 2·hidden].
func (dm *DeviceModel) lstmForward(e *dencoder) compute.Tensor {
	be, l, P := dm.be, e.lstm, e.rows
	H := l.hidden
	x := e.in.w
	for _, ly := range l.layers {
		for d := range ly.dir {
			dd := &ly.dir[d]
			// Every step's input part at once; the recurrent part adds
			// step by step.
			pre := dm.buf("lstm_pre", dm.act, P*4*H)
			be.Gemm(false, true, P, 4*H, ly.in, 1, x, ly.in, dd.wih.w, ly.in, 0, pre, 4*H)
			be.AddBias(pre, dd.bih.w, P, 4*H)
			be.AddBias(pre, dd.bhh.w, P, 4*H)
			for s := 0; s < P; s++ {
				t, prev := lstmStep(d, s, P)
				pt := pre.Slice(t*4*H, 4*H)
				var cPrev compute.Tensor
				if s > 0 {
					be.Gemm(false, true, 1, 4*H, H, 1, ly.out.Slice(prev*2*H+d*H, H), H, dd.whh.w, H, 1, pt, 4*H)
					cPrev = dd.c.Slice(prev*H, H)
				}
				be.LSTMCell(dd.gates.Slice(t*4*H, 4*H), dd.c.Slice(t*H, H), ly.out.Slice(t*2*H+d*H, H), 2*H, pt, cPrev, 1, H)
			}
		}
		x = ly.out
	}
	return x
}

// lstmStep is the time step a direction (0 forward, 1 reverse) takes at its
// s-th step, and the step before it.
func lstmStep(d, s, P int) (t, prev int) {
	if d == 1 {
		return P - 1 - s, P - s
	}
	return s, s - 1
}

// lstmBackward takes the gradient of the LSTM's output dout [P, 2·hidden]
// back through time into its weights' gradients and the input's.
func (dm *DeviceModel) lstmBackward(e *dencoder, dout compute.Tensor) {
	be, l, P := dm.be, e.lstm, e.rows
	H := l.hidden
	for k := len(l.layers) - 1; k >= 0; k-- {
		ly := l.layers[k]
		x := e.in.w
		var dx compute.Tensor
		if k > 0 {
			x = l.layers[k-1].out
			dx = dm.buf(fmt.Sprintf("lstm_dx%d", k%2), dm.act, P*ly.in)
		}
		for d := range ly.dir {
			dd := ly.dir[d]
			dpre := dm.buf("lstm_dpre", dm.act, P*4*H)
			dhn, dc := dm.buf("lstm_dhn", dm.act, H), dm.buf("lstm_dc", dm.act, H)
			var dhNext, dcNext compute.Tensor
			for s := P - 1; s >= 0; s-- {
				t, prev := lstmStep(d, s, P)
				dp := dpre.Slice(t*4*H, 4*H)
				var cPrev, dcPrev compute.Tensor
				if s > 0 {
					cPrev, dcPrev = dd.c.Slice(prev*H, H), dc
				}
				be.LSTMCellBackward(dp, dcPrev, dout.Slice(t*2*H+d*H, H), 2*H, dhNext, dcNext, dd.gates.Slice(t*4*H, 4*H), dd.c.Slice(t*H, H), cPrev, 1, H)
				if s > 0 {
					be.Gemm(false, false, 1, H, 4*H, 1, dp, 4*H, dd.whh.w, H, 0, dhn, H)
					dhNext, dcNext = dhn, dc
				}
			}
			if dd.wih.trainable {
				be.Gemm(true, false, 4*H, ly.in, P, 1, dpre, 4*H, x, ly.in, 1, dd.wih.grad, ly.in)
			}
			if dd.whh.trainable && P > 1 {
				// Σ_t dpre_t·h_prev(t): the forward direction's steps 1…P-1
				// follow h of 0…P-2, the reverse's 0…P-2 follow 1…P-1.
				if d == 0 {
					be.Gemm(true, false, 4*H, H, P-1, 1, dpre.Slice(4*H, (P-1)*4*H), 4*H, ly.out.Slice(0, (P-1)*2*H), 2*H, 1, dd.whh.grad, H)
				} else {
					be.Gemm(true, false, 4*H, H, P-1, 1, dpre, 4*H, ly.out.Slice(3*H, (P-1)*2*H-H), 2*H, 1, dd.whh.grad, H)
				}
			}
			if dd.bih.trainable {
				be.BiasGrad(dd.bih.grad, dpre, P, 4*H)
			}
			if dd.bhh.trainable {
				be.BiasGrad(dd.bhh.grad, dpre, P, 4*H)
			}
			switch {
			case dx != nil:
				beta := float32(0)
				if d == 1 {
					beta = 1
				}
				be.Gemm(false, false, P, ly.in, 4*H, 1, dpre, 4*H, dd.wih.w, ly.in, beta, dx, ly.in)
			case e.in.trainable:
				be.Gemm(false, false, P, ly.in, 4*H, 1, dpre, 4*H, dd.wih.w, ly.in, 1, e.in.grad, ly.in)
			}
		}
		dout = dx
	}
}

// virtualLen is the number of virtual tokens this pass prepends.
func (dm *DeviceModel) virtualLen() int {
	if dm.peft == nil || dm.peft.virt == nil || dm.adaptersOff {
		return 0
	}
	return dm.peft.virt.rows
}

// prefixLen is the length of the KV prefix this pass attends to.
func (dm *DeviceModel) prefixLen() int {
	if dm.peft == nil || dm.peft.prefix == nil || dm.adaptersOff {
		return 0
	}
	return dm.peft.prefix.rows
}

// prefixRows is the length of the KV prefix, on or off: activations are
// sized for it.
func (dm *DeviceModel) prefixRows() int {
	if dm.peft == nil || dm.peft.prefix == nil {
		return 0
	}
	return dm.peft.prefix.rows
}

// withPrompt lays a batch out as the CPU workspace does with virtual tokens
// or a KV prefix: P virtual tokens (id 0, untrained, visible) in front of
// every row, positions shifted past the prefix and the virtual tokens, and
// no packing (a prefix belongs to a whole row).
func (dm *DeviceModel) withPrompt(b *Batch) (*Batch, error) {
	p, pl := dm.virtualLen(), dm.prefixLen()
	if p == 0 && pl == 0 {
		return b, nil
	}
	if err := b.Validate(dm.cfg.Vocab); err != nil {
		return nil, err
	}
	t := p + b.T
	n := b.B * t
	out := &Batch{B: b.B, T: t, IDs: make([]int32, n), Pos: make([]int32, n)}
	if b.Labels != nil {
		out.Labels = make([]int32, n)
	}
	if b.Mask != nil {
		out.Mask = make([]int32, n)
	}
	for r := 0; r < b.B; r++ {
		for i := 0; i < t; i++ {
			k := r*t + i
			if i < p {
				out.Pos[k] = int32(pl + i)
				if out.Labels != nil {
					out.Labels[k] = IgnoreIndex
				}
				if out.Mask != nil {
					out.Mask[k] = 1
				}
				continue
			}
			j := r*b.T + i - p
			out.IDs[k] = b.IDs[j]
			out.Pos[k] = int32(pl + i)
			if b.Pos != nil {
				out.Pos[k] = b.Pos[j] + int32(p+pl)
			}
			if out.Labels != nil {
				out.Labels[k] = b.Labels[j]
			}
			if out.Mask != nil {
				out.Mask[k] = b.Mask[j]
			}
		}
	}
	return out, nil
}

// ones is a [n] vector of ones in the compute type: the products that copy
// a prompt to every row of a batch, and sum the rows' gradients back.
func (dm *DeviceModel) ones(n int) compute.Tensor {
	t := dm.buf("ones", dm.act, n)
	if t == nil {
		return nil
	}
	// Uploaded again only when the scratch tensor was replaced or grew.
	if base := dm.scratch["ones"]; base != dm.peft.ones || n > dm.peft.onesN {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		dm.be.Upload(t, v)
		dm.peft.ones, dm.peft.onesN = base, n
	}
	return t
}

// encode runs a prompt encoder and returns its output [rows, width].
func (dm *DeviceModel) encode(e *dencoder) compute.Tensor {
	be := dm.be
	x := e.in.w
	if e.lstm != nil {
		x = dm.lstmForward(e)
	}
	last := len(e.layers) - 1
	for i, d := range e.layers {
		y := e.out
		if i < last {
			y = e.pre[i]
		}
		be.Gemm(false, true, e.rows, d.out, d.in, 1, x, d.in, d.w.w, d.in, 0, y, d.out)
		if d.b != nil {
			be.AddBias(y, d.b.w, e.rows, d.out)
		}
		if i < last {
			be.Activate(e.xs[i], y, e.act)
			x = e.xs[i]
		}
	}
	if last < 0 {
		return e.in.w
	}
	return e.out
}

// encodeBackward takes the gradient of a prompt encoder's output dout
// (compute type, overwritten) into its parameters' gradients.
func (dm *DeviceModel) encodeBackward(e *dencoder, dout compute.Tensor) {
	be := dm.be
	if len(e.layers) == 0 {
		if e.in.trainable {
			be.Axpby(e.in.grad, 1, dout, 1)
		}
		return
	}
	dy := dout
	for i := len(e.layers) - 1; i >= 0; i-- {
		d := e.layers[i]
		x := e.in.w
		if i > 0 {
			x = e.xs[i-1]
		} else if e.lstm != nil {
			x = e.lstm.layers[len(e.lstm.layers)-1].out
		}
		if i < len(e.layers)-1 {
			be.ActivateBackward(dy, dy, e.pre[i], e.act)
		}
		if d.w.trainable {
			be.Gemm(true, false, d.out, d.in, e.rows, 1, dy, d.out, x, d.in, 1, d.w.grad, d.in)
		}
		if d.b != nil && d.b.trainable {
			be.BiasGrad(d.b.grad, dy, e.rows, d.out)
		}
		if i == 0 && e.lstm != nil {
			dx := dm.buf("enc_dlstm", dm.act, e.rows*d.in)
			be.Gemm(false, false, e.rows, d.in, d.out, 1, dy, d.out, d.w.w, d.in, 0, dx, d.in)
			dm.lstmBackward(e, dx)
			return
		}
		if i == 0 {
			if e.in.trainable {
				be.Gemm(false, false, e.rows, d.in, d.out, 1, dy, d.out, d.w.w, d.in, 1, e.in.grad, d.in)
			}
			return
		}
		dx := dm.buf(fmt.Sprintf("enc_dx%d", i%2), dm.act, e.rows*d.in)
		be.Gemm(false, false, e.rows, d.in, d.out, 1, dy, d.out, d.w.w, d.in, 0, dx, d.in)
		dy = dx
	}
}

// virtualInputs is the encoded virtual tokens as the first block sees
// them: scaled like token embeddings where the family scales every input
// embedding (Gemma 2), as they are otherwise.
func (dm *DeviceModel) virtualInputs() compute.Tensor {
	v := dm.encode(dm.peft.virt)
	if c := dm.cfg; c.EmbedScaleInputs && c.EmbedScale != 0 {
		vs := dm.buf("virt_scaled", dm.act, v.Len())
		dm.be.Axpby(vs, float32(c.EmbedScale), v, 0)
		v = vs
	}
	return v
}

// promptForward runs before the blocks: the virtual tokens go into the
// first rows of every sequence's embeddings, and the prefix is computed and
// laid out per layer as head-major [2·Layers·KVHeads, P, HeadDim] (each
// layer's keys, then its values), with its key mask.
func (dm *DeviceModel) promptForward(b *Batch) {
	be, c := dm.be, dm.cfg
	B, T, h := dm.shapeB, dm.shapeT, c.Hidden
	if dm.peft != nil {
		dm.peft.prefixMask = nil
	}
	if dm.cache != nil {
		// Decoding: the prefix is in the cache already, and the virtual
		// tokens are fed once when the session starts.
		if dm.cache.virtual {
			v := dm.virtualInputs()
			be.Axpby(dm.stream[0], 1, v, 0)
		}
		return
	}
	if p := dm.virtualLen(); p > 0 {
		v := dm.virtualInputs()
		be.Gemm(false, false, B, p*h, 1, 1, dm.ones(B), 1, v, p*h, 0, dm.stream[0], T*h)
	}
	pl := dm.prefixLen()
	if pl == 0 {
		return
	}
	full := dm.encode(dm.peft.prefix)
	kvl := dm.buf("prefix_kv", dm.act, pl*len(dm.layers)*2*c.KVDim())
	be.RopeSplit(kvl, full, nil, dm.cos, dm.sin, 1, pl, 2*len(dm.layers)*c.KVHeads, c.HeadDim, 0)
	if dm.hasMask {
		tk := pl + T
		km := make([]int32, B*tk)
		for r := 0; r < B; r++ {
			for j := 0; j < pl; j++ {
				km[r*tk+j] = 1
			}
			copy(km[r*tk+pl:(r+1)*tk], b.Mask[r*T:(r+1)*T])
		}
		dm.peft.prefixMask = dm.buf("prefix_mask", compute.I32, B*tk)
		be.UploadInt(dm.peft.prefixMask, km)
	}
}

// fillPrefix copies layer's prefix keys (which 0) or values (1) into time
// steps [0, P) of every sequence of a head-major dst [B, KVHeads, P+T, hd].
func (dm *DeviceModel) fillPrefix(dst compute.Tensor, layer, which int) {
	dm.copyPrefix(dst, layer, which, dm.shapeB, dm.prefixLen()+dm.shapeT)
}

// copyPrefix copies layer's prefix keys (which 0) or values (1) into time
// steps [0, P) of B sequences of a head-major dst holding tmax steps per
// head.
func (dm *DeviceModel) copyPrefix(dst compute.Tensor, layer, which, B, tmax int) {
	c := dm.cfg
	pl := dm.prefixLen()
	hd, KVH := c.HeadDim, c.KVHeads
	kvl := dm.buf("prefix_kv", dm.act, pl*len(dm.layers)*2*c.KVDim())
	src := kvl.Slice((2*layer+which)*KVH*pl*hd, KVH*pl*hd)
	// Per KV head: ones[B,1]·prefix[1, P·hd] into the rows of its sequences.
	dm.be.GemmBatched(false, false, B, pl*hd, 1, 1, dm.ones(B), 1, 0, src, pl*hd, pl*hd, 0, dst, KVH*tmax*hd, tmax*hd, KVH)
}

// keyMask is the key mask of sequences [b0, b0+nb) for tk keys each.
func (dm *DeviceModel) keyMask(b0, nb, tk int) compute.Tensor {
	if dm.peft != nil && dm.peft.prefixMask != nil && dm.prefixLen() > 0 {
		return dm.peft.prefixMask.Slice(b0*tk, nb*tk)
	}
	return dm.maskRows(b0*dm.shapeT, nb*dm.shapeT)
}

// prefixGrad sums the gradients of sequences [b0, b0+nb) with respect to
// a layer's prefix keys (which 0) or values (1), head-major [nb, KVHeads,
// P, hd], into the layer's slot of the prefix gradient.
func (dm *DeviceModel) prefixGrad(d compute.Tensor, layer, which, b0, nb int) {
	c := dm.cfg
	pl := dm.prefixLen()
	w := c.KVHeads * pl * c.HeadDim
	dkv := dm.buf("prefix_dkv", compute.F32, len(dm.layers)*2*w)
	beta := float32(1)
	if b0 == 0 {
		beta = 0
	}
	dm.be.Gemm(false, false, 1, w, nb, 1, dm.ones(nb), nb, d, w, beta, dkv.Slice((2*layer+which)*w, w), w)
}

// promptBackward runs after the blocks: the gradient of the virtual tokens
// (the first rows of dres, summed over the batch) and of the prefix go
// through their encoders.
func (dm *DeviceModel) promptBackward(dres compute.Tensor) {
	be, c := dm.be, dm.cfg
	B, T, h := dm.shapeB, dm.shapeT, c.Hidden
	if p := dm.virtualLen(); p > 0 {
		dv := dm.buf("dvirt", dm.act, p*h)
		be.Gemm(false, false, 1, p*h, B, 1, dm.ones(B), B, dres, T*h, 0, dv, p*h)
		if c.EmbedScaleInputs {
			be.Axpby(dv, float32(c.EmbedScale), dv, 0)
		}
		dm.encodeBackward(dm.peft.virt, dv)
		if dm.embed.trainable {
			// The virtual rows have no embedding to train.
			for r := 0; r < B; r++ {
				be.Zero(dres.Slice(r*T*h, p*h))
			}
		}
	}
	if pl := dm.prefixLen(); pl > 0 {
		n := pl * len(dm.layers) * 2 * c.KVDim()
		dkv := dm.buf("prefix_dkv", compute.F32, n)
		dfull := dm.buf("prefix_dfull", compute.F32, n)
		be.RopeMerge(dfull, dkv, nil, dm.cos, dm.sin, 1, pl, 2*len(dm.layers)*c.KVHeads, c.HeadDim, 0, false)
		dout := dm.buf("prefix_dout", dm.act, n)
		be.Cast(dout, dfull)
		dm.encodeBackward(dm.peft.prefix, dout)
	}
}

// bottleneckForward applies an adapter to a sub-layer's output y [n,
// Hidden] in place, keeping its input and pre-activation values in ba.
func (dm *DeviceModel) bottleneckForward(bt *dbottle, ba bottleActs, y compute.Tensor, n int) {
	be := dm.be
	h := dm.cfg.Hidden
	be.Cast(ba.x, y)
	be.Gemm(false, true, n, bt.r, h, 1, ba.x, h, bt.down.w, h, 0, ba.z, bt.r)
	be.AddBias(ba.z, bt.downB.w, n, bt.r)
	a := dm.buf("bottle_a", dm.act, n*bt.r)
	be.Activate(a, ba.z, bt.act)
	su := dm.buf("bottle_su", compute.F32, h)
	be.Axpby(su, bt.scale, bt.upB.w, 0)
	be.AddBias(y, su, n, h)
	be.Gemm(false, true, n, h, bt.r, bt.scale, a, bt.r, bt.up.w, bt.r, 1, y, h)
}

// bottleneckBackward returns the gradient reaching the sub-layer's output
// from dy, the gradient of the adapter's output (the residual's own path
// plus the adapter's), accumulating the adapter's gradients.
func (dm *DeviceModel) bottleneckBackward(bt *dbottle, ba bottleActs, dy compute.Tensor, n int) compute.Tensor {
	be := dm.be
	h := dm.cfg.Hidden
	a := dm.buf("bottle_a", dm.act, n*bt.r)
	be.Activate(a, ba.z, bt.act)
	if bt.up.trainable {
		be.Gemm(true, false, h, bt.r, n, bt.scale, dy, h, a, bt.r, 1, bt.up.grad, bt.r)
	}
	if bt.upB.trainable {
		su := dm.buf("bottle_su", compute.F32, h)
		be.Zero(su)
		be.BiasGrad(su, dy, n, h)
		be.Axpby(bt.upB.grad, bt.scale, su, 1)
	}
	dz := dm.buf("bottle_dz", dm.act, n*bt.r)
	be.Gemm(false, false, n, bt.r, h, bt.scale, dy, h, bt.up.w, bt.r, 0, dz, bt.r)
	be.ActivateBackward(dz, dz, ba.z, bt.act)
	if bt.down.trainable {
		be.Gemm(true, false, bt.r, h, n, 1, dz, bt.r, ba.x, h, 1, bt.down.grad, h)
	}
	if bt.downB.trainable {
		be.BiasGrad(bt.downB.grad, dz, n, bt.r)
	}
	dx := dm.buf("bottle_dx", dm.act, n*h)
	be.Cast(dx, dy)
	be.Gemm(false, false, n, h, bt.r, 1, dz, bt.r, bt.down.w, h, 1, dx, h)
	return dx
}

// hook is a layer's bottleneck adapter when it runs in this pass.
func (dm *DeviceModel) hook(bt *dbottle) *dbottle {
	if dm.adaptersOff {
		return nil
	}
	return bt
}

// start fills an empty cache as Session.Reset does: the prefix's keys and
// values take positions [0, P), then the virtual tokens run through the
// model at the positions after it.
func (s *DeviceSession) start() error {
	dm := s.dm
	s.len = 0
	pl, p := dm.prefixLen(), dm.virtualLen()
	if pl+p > s.max {
		return fmt.Errorf("the prompt method's %d positions exceed the session's %d", pl+p, s.max)
	}
	if pl > 0 {
		c := dm.cfg
		if err := dm.rope(pl); err != nil {
			return err
		}
		kvl := dm.buf("prefix_kv", dm.act, pl*len(dm.layers)*2*c.KVDim())
		if kvl == nil {
			return dm.err()
		}
		dm.be.RopeSplit(kvl, dm.encode(dm.peft.prefix), nil, dm.cos, dm.sin, 1, pl, 2*len(dm.layers)*c.KVHeads, c.HeadDim, 0)
		for i := range dm.layers {
			dm.copyPrefix(s.k[i], i, 0, 1, s.max)
			dm.copyPrefix(s.v[i], i, 1, 1, s.max)
		}
		s.len = pl
	}
	if p > 0 {
		s.virtual = true
		_, err := s.Feed(make([]int32, p))
		s.virtual = false
		return err
	}
	return dm.err()
}
