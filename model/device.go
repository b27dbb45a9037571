package model

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"

	"gotune/compute"
	"gotune/nn"
)

// LowRank is what the device path needs from a LoRA adapter on a linear
// layer (implemented by peft's LoRA): its two matrices, A [r, in] and
// B [out, r], and the scale of B·A. Unsupported reports why the adapter
// cannot run on a device yet (DoRA, dropout), or "".
type LowRank interface {
	LowRank() (a, b *nn.Param, scale float32)
	// DropoutMask is the mask of the next forward pass (Keep 1 and Thresh
	// 0 when the adapter has no dropout).
	DropoutMask() compute.DropoutMask
	// DoRAMagnitude is DoRA's magnitude vector [out], nil for plain LoRA.
	DoRAMagnitude() *nn.Param
	DeviceUnsupported(training bool) string
}

// DeviceOptions configure a model copied to a compute backend.
type DeviceOptions struct {
	// Compute is the element type of weights used in products and of
	// activations: F32 (the parity mode) or BF16 (mixed precision: float
	// accumulation, float master copies of trainable parameters and their
	// optimizer state).
	Compute compute.DType
	// Decays says which trainable parameters take weight decay (by name);
	// nil: all of them, as torch.optim.AdamW over a plain parameter list.
	Decays func(name string) bool
	// LRScale multiplies the learning rate of a trainable parameter (by
	// name): LoRA+'s faster B matrices; nil: 1 for all.
	LRScale func(name string) float64
	// Inference copies every parameter as frozen (scoring, generation):
	// no gradients or optimizer state, and training-only options such as
	// dropout do not matter.
	Inference bool
	// Checkpoint keeps only each block's input and recomputes the block's
	// forward pass during backward (gradient checkpointing): activation
	// memory of one block instead of all, for about a third more compute.
	Checkpoint bool
	// Shared, when set, holds the frozen weights: device copies of clones
	// of one model (serve's adapters and replicas) upload them once.
	Shared *SharedWeights
	// HostViews, on a backend whose memory is the host's, makes the host
	// model's trainable parameters (Data, and Grad where it has one) views
	// of the device's master weights and gradients, so each is held once.
	// The host then sees every update at once, and must not write those
	// gradients itself (the trainer never does while a device trains).
	HostViews bool
	// Adam8bit keeps the AdamW moments of every trainable parameter of at
	// least compute.Adam8MinSize elements block-wise in 8 bits
	// (bitsandbytes' adamw_8bit: 2 bytes and two scales per 256 elements
	// instead of 8 bytes); smaller ones keep float moments.
	Adam8bit bool
}

// dparam is one parameter on the device: w is what the operations read (in
// the compute type; norm weights and biases always F32), master the float
// copy that the optimizer updates (the same tensor as w in F32 mode).
type dparam struct {
	host       *nn.Param
	grp        *dgroup // trainable: the arena holding it
	off        int     // its offset in grp's arenas
	w, master  compute.Tensor
	grad, m, v compute.Tensor
	n          int
	trainable  bool
	float      bool // w is always F32 (norms, biases)
}

type dlinear struct {
	in, out int
	w, b    *dparam
	q       *dquant // instead of w: a frozen 4-bit weight
	lora    *dlora
	group   *loraGroup
	ia3     *dia3
}

// Scaler is what the device path needs from an IA3 adapter on a linear
// layer (implemented by peft's IA3): its vector and whether it scales the
// layer's input (feed-forward layers) or its output, bias included.
type Scaler interface {
	IA3() (vec *nn.Param, input bool)
}

type dia3 struct {
	vec   *dparam
	input bool
}

// loraGroup is the LoRA layers of one block that read the same input (q, k
// and v; gate and up). Their A matrices are adjacent in the trainable arena,
// so together they are one [rows, in] matrix: x·Aᵀ, the gradient of A and
// the input gradient through A take one product for the group instead of
// one per layer, reading the large activation once.
type loraGroup struct {
	lins    []*dlinear
	cols    []int // first column of each member in the group's [n, rows] activations
	rows    int
	in      int
	a, grad compute.Tensor // views over the members' A and its gradient
}

// lact is a LoRA layer's x·Aᵀ: a view with its leading dimension (the
// group's rows when the layer is in a group).
type lact struct {
	t  compute.Tensor
	ld int
}

// dquant is a frozen quantized weight kept packed on the device and
// expanded into shared scratch right before each product that needs it
// (QLoRA: the model stays 4- or 8-bit in device memory). code is nil for
// INT8 weights.
type dquant struct {
	packed, scales, code compute.Tensor
	block                int
}

// Packed4 is what the device path needs from a 4-bit quantized weight
// (implemented by quant.Matrix).
type Packed4 interface {
	Packed4() (packed []byte, scales []float32, code [16]float32, block int, ok bool)
}

// Packed8 is what the device path needs from an INT8 quantized weight
// (implemented by quant.Matrix).
type Packed8 interface {
	Packed8() (q []byte, scales []float32, block int, ok bool)
}

type dlora struct {
	a, b  *dparam
	r     int
	scale float32
	// src gives the dropout mask of each step; nil when the adapter has
	// no dropout or the model only scores.
	src  LowRank
	dora *dora
	// expert, when set, says a and b are the stacked matrices of LoRA on
	// an MoE layer's expert weights, of which this layer uses its part.
	expert *expertPart
}

// dora is DoRA's part of a LoRA layer: the output is rescaled per row by
// m / ‖W + s·B·A‖, the norm a constant in backward (as PEFT does). The
// factors follow the weights, so every forward pass computes them again.
type dora struct {
	mag               *dparam
	scale, inv, norm2 compute.Tensor // m/‖·‖, 1/‖·‖, ‖·‖², each [out]
}

// dropout returns the mask of this step's forward pass, or false when the
// input goes to A undropped.
func (l *dlora) dropout() (compute.DropoutMask, bool) {
	if l.src == nil {
		return compute.DropoutMask{}, false
	}
	return l.src.DropoutMask(), true
}

type dlayer struct {
	index                          int
	inNorm, postNorm, qNorm, kNorm *dparam
	q, k, v, o, gate, up, down     *dlinear
	qkv, gu                        *loraGroup
	attnOut, mlpOut                *dbottle // bottleneck adapters
	acts                           *dacts
	// Gemma's norms after the attention and the MLP (nil elsewhere), and
	// Phi-3's fused projections (instead of q, k, v and gate, up).
	attnPostNorm, mlpPostNorm *dparam
	fqkv, fgu                 *dlinear
	moe                       *dmoe // instead of gate, up and down
}

// dacts is what one block keeps for its backward pass.
type dacts struct {
	x, q, k, vh, lse, att, xmid, g, u compute.Tensor
	rstd1, rstdq, rstdk, rstd2        compute.Tensor
	xa                                map[*dlinear]lact
	dora                              map[*dlinear]compute.Tensor // DoRA: the product before rescaling
	ia3                               map[*dlinear]compute.Tensor // IA3 on the output: the output before scaling
	bottle                            [2]bottleActs               // bottleneck adapters after attention, after the MLP
	// Sandwich norms: the attention and MLP outputs before their norms.
	ao, mo, rstdAO, rstdMO compute.Tensor
	moe                    *dmoeActs
}

// DeviceModel is a Model whose weights, activations, gradients and optimizer
// state live on a compute backend. It runs the training step (forward,
// backward, AdamW) of full fine-tuning and LoRA for every family the CPU
// trains (the Llama kind, Gemma 2/3, Phi-3 and mixtures of experts).
type DeviceModel struct {
	// Temperature divides the logits before the softmax of the loss and of
	// TokenLogProbs (0 means 1), as Workspace.Temperature: a policy-gradient
	// stage scores tokens under the distribution it sampled them from.
	Temperature float64

	hostViews bool // DeviceOptions.HostViews
	adam8     bool // DeviceOptions.Adam8bit

	be     compute.Backend
	cfg    *Config
	act    compute.DType
	embed  *dparam
	head   *dparam
	norm   *dparam
	layers []*dlayer
	params []*dparam
	byHost map[*nn.Param]*dparam
	// Trainable parameters live in one arena per group (those with a bf16
	// copy for the products, and those read in float), so clipping, AdamW
	// and zeroing are one launch per group rather than one per tensor.
	groups  []*dgroup
	decays  func(name string) bool
	lrScale func(name string) float64
	// adaptersOff runs the base model alone (WithoutAdapters); scored is
	// the batch TokenLogProbs last ran, kept for BackwardTokens.
	adaptersOff, scoredOff bool
	scored                 *Batch
	peft                   *dpeft // virtual tokens, KV prefix
	checkpoint             bool
	inference              bool
	attnBudget             int                       // floats of attention scores held at once; 0: the default
	cache                  *DeviceSession            // decoding: the key/value cache attention reads
	shared                 map[string]compute.Tensor // checkpointing: the one set of block activations
	owned                  []compute.Tensor          // freed by Close
	weights                *SharedWeights            // frozen weights shared with other copies
	sharedKeys             []sharedKey               // released by Close

	// per batch shape
	shapeB, shapeT int
	// pool holds the per-shape activations at the largest size asked so
	// far, in the order prepareShape asks for them: a batch of another
	// length takes views of them instead of allocating (and, on the CPU,
	// faulting in zeroed pages) every time the length changes.
	pool           []compute.Tensor
	scratch        map[string]compute.Tensor
	stream         []compute.Tensor
	xf, rstdf      compute.Tensor
	ids, pos, mask compute.Tensor
	seg            compute.Tensor
	cos, sin       compute.Tensor
	ropeN, ropeRot int
	ropeDyn        bool // the tables hold dynamic NTK frequencies for ropeN positions
	hasMask        bool
	hasSeg         bool
	allocErr       error

	policy devicePolicy // GRPO's entropies and reference weights (device_policy.go)
	// The rotary tables of sliding-window layers when the family gives
	// them their own (Gemma 3), and whether the tables hold longrope's long
	// factors.
	cosL, sinL compute.Tensor
	ropeRotL   int
	ropeLong   bool
	// Mixtures of experts: the load-balancing statistics of the last
	// forward pass, the weight of the auxiliary loss's gradient, the host
	// copy of the attention mask (the rows the statistics count) and
	// whether a checkpointed block runs again (counting nothing).
	aux       auxStats
	auxW      float64
	hostMask  []int32
	recompute bool
}

// NewDeviceModel copies m (with the LoRA adapters attached to its linear
// layers, if any) to be. Parameters with a gradient buffer on the host are
// trained on the device.
func NewDeviceModel(m *Model, be compute.Backend, o DeviceOptions) (*DeviceModel, error) {
	c := m.Cfg
	if o.Compute != compute.F32 && o.Compute != compute.BF16 {
		return nil, fmt.Errorf("device model: compute type %v (want f32 or bf16)", o.Compute)
	}
	if why := c.deviceUnsupported(); why != "" {
		return nil, fmt.Errorf("device model: %s models: %s do not run on the device block yet", c.ModelType, why)
	}
	if o.Shared != nil && o.Shared.be != be {
		return nil, errors.New("device model: shared weights of another backend")
	}
	dm := &DeviceModel{hostViews: o.HostViews, adam8: o.Adam8bit, be: be, cfg: c, act: o.Compute, decays: o.Decays, lrScale: o.LRScale, weights: o.Shared, checkpoint: o.Checkpoint, inference: o.Inference, byHost: map[*nn.Param]*dparam{}, scratch: map[string]compute.Tensor{}}
	var err error
	param := func(p *nn.Param, float bool) *dparam {
		if err != nil || p == nil {
			return nil
		}
		if d, ok := dm.byHost[p]; ok {
			return d
		}
		var d *dparam
		d, err = dm.upload(p, float)
		if d != nil {
			dm.byHost[p] = d
			dm.params = append(dm.params, d)
		}
		return d
	}
	linear := func(l *nn.Linear) *dlinear {
		if err != nil || l == nil {
			return nil
		}
		dl := &dlinear{in: l.In, out: l.Out}
		var lw *nn.Param // a float32 weight, uploaded after the bias
		var bw *nn.BF16  // a bf16 one, uploaded after the bias
		switch w := l.W.(type) {
		case *nn.Param:
			lw = w
		case *nn.BF16:
			// A bf16 base has no float parameter: a frozen stand-in
			// stands for it on the host side (not shared between copies;
			// the device tensor is, keyed by the weight).
			lw = &nn.Param{Name: l.Name + ".weight", Shape: []int{l.Out, l.In}}
			if dl.w = dm.wrapBF16(w, lw); dl.w != nil {
				lw = nil
			} else {
				bw = w
			}
		case nil:
		default:
			if dl.q, err = dm.uploadQuant(l); err != nil {
				return nil
			}
		}
		if dl.q == nil && dl.w == nil && bw == nil && (lw == nil || lw.Data == nil) {
			err = fmt.Errorf("device model: %s has no weight", l.Name)
			return nil
		}
		dl.b = param(l.B, true)
		switch {
		case bw != nil:
			if dl.w, err = dm.uploadBF16(bw, lw); err != nil {
				return nil
			}
		case lw != nil:
			dl.w = param(lw, false)
		}
		if sc, ok := l.Adapter.(Scaler); ok {
			vec, input := sc.IA3()
			dl.ia3 = &dia3{vec: param(vec, true), input: input}
		} else if xl, ok := l.Adapter.(ExpertLowRank); ok {
			a, b, s, e, rowOff := xl.ExpertLowRank()
			dl.lora = &dlora{a: param(a, false), b: param(b, false), r: a.Shape[0] / c.Experts, scale: s, expert: &expertPart{e: e, rowOff: rowOff}}
		} else if l.Adapter != nil {
			lr, ok := l.Adapter.(LowRank)
			if !ok {
				err = fmt.Errorf("device model: %s: adapter %T does not run on the device block yet", l.Name, l.Adapter)
				return nil
			}
			if why := lr.DeviceUnsupported(!o.Inference); why != "" {
				err = fmt.Errorf("device model: %s: %s", l.Name, why)
				return nil
			}
			a, b, s := lr.LowRank()
			dl.lora = &dlora{a: param(a, false), b: param(b, false), r: a.Shape[0], scale: s}
			if dm := lr.DropoutMask(); dm.Thresh > 0 && !o.Inference {
				dl.lora.src = lr
			}
			if mag := lr.DoRAMagnitude(); mag != nil {
				d := &dora{mag: param(mag, true)}
				for _, t := range []*compute.Tensor{&d.scale, &d.inv, &d.norm2} {
					if err == nil {
						*t, err = dm.alloc(compute.F32, l.Out)
					}
				}
				dl.lora.dora = d
			}
		}
		return dl
	}
	dm.embed = param(m.Embed, false)
	dm.head = param(m.Head, false)
	dm.norm = param(m.Norm, true)
	for _, l := range m.Layers {
		dl := &dlayer{index: l.Index, inNorm: param(l.InNorm, true), postNorm: param(l.PostNorm, true), qNorm: param(l.QNorm, true), kNorm: param(l.KNorm, true),
			q: linear(l.Q), k: linear(l.K), v: linear(l.V), o: linear(l.O), gate: linear(l.Gate), up: linear(l.Up), down: linear(l.Down),
			attnPostNorm: param(l.AttnPostNorm, true), mlpPostNorm: param(l.MLPPostNorm, true), fqkv: linear(l.QKV), fgu: linear(l.GateUp)}
		if l.MoE != nil {
			dl.moe = &dmoe{router: linear(l.MoE.Router)}
			for _, e := range l.MoE.Experts {
				dl.moe.experts = append(dl.moe.experts, [3]*dlinear{linear(e.Gate), linear(e.Up), linear(e.Down)})
			}
		}
		dm.layers = append(dm.layers, dl)
	}
	if err == nil {
		err = dm.attachPEFT(m, param)
	}
	if err == nil {
		dm.orderLoRAGroups()
		err = dm.placeTrainable()
	}
	if err == nil {
		dm.buildLoRAGroups()
	}
	if err != nil {
		dm.Close()
		return nil, err
	}
	if err := be.Err(); err != nil {
		dm.Close()
		return nil, err
	}
	return dm, nil
}

func (dm *DeviceModel) alloc(dt compute.DType, n int) (compute.Tensor, error) {
	t, err := dm.be.Alloc(dt, n)
	if err != nil {
		return nil, err
	}
	dm.owned = append(dm.owned, t)
	return t, nil
}

// dgroup is an arena of trainable parameters: float masters, gradients and
// AdamW state (and, for shadow groups, the bf16 copies the products read),
// each parameter a slice at an aligned offset.
type dgroup struct {
	params                []*dparam
	offs                  []int
	n                     int
	master, grad, m, v, w compute.Tensor
	// With 8-bit AdamW state (q8; m and v are then nil): U8 codes and one
	// F32 scale per compute.Adam8Block elements. Parameters start on block
	// boundaries, so every block belongs to one parameter, as bitsandbytes'
	// per-tensor blocks.
	m8, v8, mScale, vScale compute.Tensor
	steps                  int64
	decay                  bool    // takes weight decay
	lrScale                float64 // multiplies the learning rate
	shadow                 bool    // has a copy in the compute type (w)
	momentum               bool    // m holds SGD momentum buffers
	q8                     bool    // AdamW state in 8 bits
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// arenaAlign keeps every parameter's slice 256-byte aligned, which the
// matrix products' fastest kernels want.
const arenaAlign = 64

// upload copies a frozen host parameter; a trainable one is only recorded
// here and placed in its group's arena by placeTrainable.
func (dm *DeviceModel) upload(p *nn.Param, float bool) (*dparam, error) {
	d := &dparam{host: p, n: len(p.Data), trainable: p.Trainable() && !dm.inference, float: float}
	dt := dm.act
	if float {
		dt = compute.F32
	}
	if d.trainable {
		return d, nil
	}
	ts, err := dm.frozen(sharedKey{p, dt}, func(alloc func(compute.DType, int) (compute.Tensor, error)) ([]compute.Tensor, error) {
		if hb, ok := dm.be.(compute.HostBackend); ok && dt == compute.F32 {
			// Host memory: the frozen weight is read where it lies.
			return []compute.Tensor{hb.Wrap(p.Data)}, nil
		}
		t, err := alloc(dt, d.n)
		if err != nil {
			return nil, err
		}
		dm.be.Upload(t, p.Data)
		return []compute.Tensor{t}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("device model: %s: %w", p.Name, err)
	}
	d.w = ts[0]
	return d, nil
}

// uploadBF16 copies a frozen bf16 base weight (lw its stand-in parameter)
// to the device in the compute type, widened on the host one weight at a
// time; copies with shared weights upload it once.
func (dm *DeviceModel) uploadBF16(w *nn.BF16, lw *nn.Param) (*dparam, error) {
	d := &dparam{host: lw, n: len(w.Data)}
	ts, err := dm.frozen(sharedKey{w, dm.act}, func(alloc func(compute.DType, int) (compute.Tensor, error)) ([]compute.Tensor, error) {
		t, err := alloc(dm.act, d.n)
		if err != nil {
			return nil, err
		}
		x := make([]float32, d.n)
		w.Dense(x)
		dm.be.Upload(t, x)
		return []compute.Tensor{t}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("device model: %s: %w", lw.Name, err)
	}
	d.w = ts[0]
	return dm.track(d), nil
}

// track records a frozen weight the block holds for a host stand-in.
func (dm *DeviceModel) track(d *dparam) *dparam {
	dm.byHost[d.host] = d
	dm.params = append(dm.params, d)
	return d
}

// wrapBF16 holds a frozen bf16 base weight (lw its stand-in parameter) in
// 16 bits where the backend's memory is the host's: the backend reads the
// host's bits in place instead of a float32 expansion, which would double
// the frozen weights' memory. It returns nil where it does not apply
// (another backend), leaving the weight to the usual upload. In F32
// compute the products widen the weight as they read it, which is what the
// expansion held; in BF16 compute the values are those of the rounded copy
// an upload would make. Nothing is allocated, so there is nothing to share
// between copies.
func (dm *DeviceModel) wrapBF16(w *nn.BF16, lw *nn.Param) *dparam {
	hb, ok := dm.be.(compute.HostBackend)
	if !ok || len(w.Data) != w.In*w.Out {
		return nil
	}
	return dm.track(&dparam{host: lw, n: len(w.Data), w: hb.WrapBF16(w.Data)})
}

// frozen returns the device tensors of a frozen host weight: uploaded by
// make into this copy's own memory, or found in (or added to) the shared
// weights.
func (dm *DeviceModel) frozen(key sharedKey, make func(alloc func(compute.DType, int) (compute.Tensor, error)) ([]compute.Tensor, error)) ([]compute.Tensor, error) {
	if dm.weights == nil {
		return make(dm.alloc)
	}
	ts, err := dm.weights.get(key, func() ([]compute.Tensor, error) {
		var made []compute.Tensor
		ts, err := make(func(dt compute.DType, n int) (compute.Tensor, error) {
			t, err := dm.be.Alloc(dt, n)
			if err == nil {
				made = append(made, t)
			}
			return t, err
		})
		if err != nil {
			for _, t := range made {
				t.Free()
			}
		}
		return ts, err
	})
	if err == nil {
		dm.sharedKeys = append(dm.sharedKeys, key)
	}
	return ts, err
}

// placeTrainable allocates the arenas and fills them from the host: one
// arena per kind (read in float or through a bf16 copy) and weight decay.
func (dm *DeviceModel) placeTrainable() error {
	// One arena per (bf16 shadow, weight decay, learning-rate scale).
	type key struct {
		shadow, decay, q8 bool
		lr                float64
	}
	arenas := map[key]*dgroup{}
	for _, p := range dm.params {
		if !p.trainable {
			continue
		}
		k := key{shadow: !p.float && dm.act != compute.F32, decay: dm.decays == nil || dm.decays(p.host.Name), lr: 1,
			q8: dm.adam8 && p.n >= compute.Adam8MinSize}
		if dm.lrScale != nil {
			k.lr = dm.lrScale(p.host.Name)
		}
		g := arenas[k]
		if g == nil {
			g = &dgroup{decay: k.decay, lrScale: k.lr, shadow: k.shadow, q8: k.q8}
			arenas[k] = g
		}
		align := arenaAlign
		if k.q8 {
			align = compute.Adam8Block // a multiple of arenaAlign
		}
		g.offs = append(g.offs, g.n)
		g.params = append(g.params, p)
		g.n += (p.n + align - 1) / align * align
	}
	keys := slices.Collect(maps.Keys(arenas))
	// A fixed order: the gradient norm sums the arenas in it.
	slices.SortFunc(keys, func(a, b key) int {
		if a.shadow != b.shadow {
			return cmpBool(a.shadow, b.shadow)
		}
		if a.decay != b.decay {
			return cmpBool(a.decay, b.decay)
		}
		if a.q8 != b.q8 {
			return cmpBool(a.q8, b.q8)
		}
		return cmp.Compare(a.lr, b.lr)
	})
	dm.groups = nil
	hb, views := dm.be.(compute.HostBackend)
	views = views && dm.hostViews
	for _, k := range keys {
		g := arenas[k]
		var err error
		for _, t := range []*compute.Tensor{&g.master, &g.grad} {
			if *t, err = dm.alloc(compute.F32, g.n); err != nil {
				return fmt.Errorf("device model: trainable parameters (%d values): %w", g.n, err)
			}
			dm.be.Zero(*t)
		}
		if g.shadow {
			if g.w, err = dm.alloc(dm.act, g.n); err != nil {
				return fmt.Errorf("device model: trainable parameters (%d values): %w", g.n, err)
			}
		}
		for i, p := range g.params {
			off := g.offs[i]
			p.grp, p.off = g, off
			p.master, p.grad = g.master.Slice(off, p.n), g.grad.Slice(off, p.n)
			dm.be.Upload(p.master, p.host.Data)
			p.w = p.master
			if g.w != nil {
				p.w = g.w.Slice(off, p.n)
			}
			if views {
				p.host.Data = hb.Floats(p.master)
				if p.host.Grad != nil {
					p.host.Grad = hb.Floats(p.grad)
				}
			}
		}
		if g.w != nil {
			dm.be.Cast(g.w, g.master)
		}
		dm.groups = append(dm.groups, g)
	}
	if views {
		// The host's own copies are garbage now: let the optimizer state
		// below take their memory instead of growing the process.
		runtime.GC()
	}
	for _, g := range dm.groups {
		if g.q8 {
			if err := dm.placeAdam8(g); err != nil {
				return err
			}
			continue
		}
		var err error
		for _, t := range []*compute.Tensor{&g.m, &g.v} {
			if *t, err = dm.alloc(compute.F32, g.n); err != nil {
				return fmt.Errorf("device model: optimizer state (%d values): %w", g.n, err)
			}
			dm.be.Zero(*t)
		}
		for i, p := range g.params {
			p.m, p.v = g.m.Slice(g.offs[i], p.n), g.v.Slice(g.offs[i], p.n)
		}
	}
	return nil
}

// uploadQuant copies a 4- or 8-bit weight as it is stored.
func (dm *DeviceModel) uploadQuant(l *nn.Linear) (*dquant, error) {
	var packed []byte
	var scales, code []float32
	var block int
	if p4, ok := l.W.(Packed4); ok {
		var c [16]float32
		if packed, scales, c, block, ok = p4.Packed4(); ok {
			code = c[:]
		}
	}
	if p8, ok := l.W.(Packed8); ok && packed == nil {
		packed, scales, block, _ = p8.Packed8()
	}
	if packed == nil {
		return nil, fmt.Errorf("device model: %s: weight %T does not run on the device block yet (f32, bf16, nf4, fp4 and int8 do)", l.Name, l.W)
	}
	q := &dquant{block: block}
	ts, err := dm.frozen(sharedKey{l.W, compute.U8}, func(alloc func(compute.DType, int) (compute.Tensor, error)) ([]compute.Tensor, error) {
		if hb, ok := dm.be.(compute.HostBackend); ok {
			// Host memory: the codes are read where they lie (scales and
			// code book are this call's own copies).
			ts := []compute.Tensor{hb.WrapBytes(packed), hb.Wrap(scales)}
			if code != nil {
				ts = append(ts, hb.Wrap(code))
			}
			return ts, nil
		}
		var ts []compute.Tensor
		for _, s := range []struct {
			dt compute.DType
			n  int
		}{{compute.U8, len(packed)}, {compute.F32, len(scales)}, {compute.F32, len(code)}} {
			if s.n == 0 {
				continue // no code book: INT8
			}
			t, err := alloc(s.dt, s.n)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
		dm.be.UploadBytes(ts[0], packed)
		dm.be.Upload(ts[1], scales)
		if code != nil {
			dm.be.Upload(ts[2], code)
		}
		return ts, nil
	})
	if err != nil {
		return nil, fmt.Errorf("device model: %s: %w", l.Name, err)
	}
	q.packed, q.scales = ts[0], ts[1]
	if len(ts) == 3 {
		q.code = ts[2]
	}
	return q, nil
}

// groupCandidates lists the layers of a block that share an input.
func (l *dlayer) groupCandidates() [][]*dlinear {
	return [][]*dlinear{{l.q, l.k, l.v}, {l.gate, l.up}}
}

// orderLoRAGroups moves the A matrices of each group next to each other in
// the parameter order, which is the arena order.
func (dm *DeviceModel) orderLoRAGroups() {
	for _, l := range dm.layers {
		for _, c := range l.groupCandidates() {
			if !groupable(c) {
				continue
			}
			members := map[*dparam]bool{}
			for _, lin := range c {
				members[lin.lora.a] = true
			}
			var out []*dparam
			for _, p := range dm.params {
				if members[p] {
					if p == c[0].lora.a {
						for _, lin := range c {
							out = append(out, lin.lora.a)
						}
					}
					continue
				}
				out = append(out, p)
			}
			dm.params = out
		}
	}
}

// groupable says whether the layers can share one x·Aᵀ product: each has a
// trained LoRA on the same input, undropped (dropout gives every layer its
// own input).
func groupable(c []*dlinear) bool {
	for _, lin := range c {
		if lin == nil || lin.lora == nil || !lin.lora.a.trainable || lin.in != c[0].in || lin.lora.src != nil {
			return false
		}
	}
	return true
}

// buildLoRAGroups forms a group wherever the members' A matrices ended up
// adjacent in one arena (no alignment padding between them).
func (dm *DeviceModel) buildLoRAGroups() {
	for _, l := range dm.layers {
		for i, c := range l.groupCandidates() {
			if !groupable(c) {
				continue
			}
			first := c[0].lora.a
			g := &loraGroup{lins: c, in: c[0].in}
			ok := true
			next := first.off
			for _, lin := range c {
				a := lin.lora.a
				if a.grp != first.grp || a.off != next {
					ok = false
					break
				}
				g.cols = append(g.cols, g.rows)
				g.rows += lin.lora.r
				next += a.n
			}
			if !ok {
				continue
			}
			total := g.rows * g.in
			g.grad = first.grp.grad.Slice(first.off, total)
			g.a = first.grp.master.Slice(first.off, total)
			if first.grp.w != nil {
				g.a = first.grp.w.Slice(first.off, total)
			}
			for _, lin := range c {
				lin.group = g
			}
			if i == 0 {
				l.qkv = g
			} else {
				l.gu = g
			}
		}
	}
}

// Close frees every device tensor of the model.
func (dm *DeviceModel) Close() {
	for _, t := range dm.owned {
		t.Free()
	}
	dm.owned = nil
	for _, k := range dm.sharedKeys {
		dm.weights.release(k)
	}
	dm.sharedKeys = nil
	dm.freeRope()
	for _, t := range dm.scratch {
		t.Free()
	}
	dm.scratch = map[string]compute.Tensor{}
	dm.freeShape()
}

// freeShape releases the per-shape activations.
func (dm *DeviceModel) freeShape() {
	dm.dropShape()
	for _, t := range dm.pool {
		t.Free()
	}
	dm.pool = nil
}

// dropShape forgets the views of the per-shape activations; their memory
// stays in the pool for the next shape.
func (dm *DeviceModel) dropShape() {
	dm.shared = nil
	for _, l := range dm.layers {
		l.acts = nil
	}
	dm.stream = nil
	dm.xf, dm.rstdf, dm.ids, dm.pos, dm.mask, dm.seg = nil, nil, nil, nil, nil, nil
	dm.shapeB, dm.shapeT = 0, 0
}

// Trainable lists the host parameters trained on the device.
func (dm *DeviceModel) Trainable() []*nn.Param {
	var out []*nn.Param
	for _, p := range dm.params {
		if p.trainable {
			out = append(out, p.host)
		}
	}
	return out
}

// Grad downloads the accumulated gradient of a trainable host parameter.
func (dm *DeviceModel) Grad(p *nn.Param) ([]float32, error) {
	d := dm.byHost[p]
	if d == nil || !d.trainable {
		return nil, fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	out := make([]float32, d.n)
	return out, dm.be.Download(out, d.grad)
}

// ZeroGrad clears every gradient.
func (dm *DeviceModel) ZeroGrad() {
	for _, g := range dm.groups {
		dm.be.Zero(g.grad)
	}
}

// CopyToHost downloads the trained parameters into the host model, so that
// saving and exporting work as for a model trained on the CPU.
func (dm *DeviceModel) CopyToHost() error {
	for _, p := range dm.params {
		if p.trainable {
			if err := dm.be.Download(p.host.Data, p.master); err != nil {
				return fmt.Errorf("device model: %s: %w", p.host.Name, err)
			}
		}
	}
	return nil
}

// LoadTrainableFromHost uploads the host's trainable parameters again
// (after a checkpoint restored them there).
func (dm *DeviceModel) LoadTrainableFromHost() error {
	for _, g := range dm.groups {
		for _, p := range g.params {
			dm.be.Upload(p.master, p.host.Data)
		}
		if g.w != nil {
			dm.be.Cast(g.w, g.master)
		}
	}
	return dm.be.Err()
}

// GradNorm is the global L2 norm of every gradient (float64 across tensors).
func (dm *DeviceModel) GradNorm() (float64, error) {
	var ts []compute.Tensor
	for _, g := range dm.groups {
		ts = append(ts, g.grad)
	}
	ss, err := dm.be.SumSquares(ts)
	if err != nil {
		return 0, err
	}
	var s float64
	for _, v := range ss {
		s += v
	}
	return math.Sqrt(s), nil
}

// AdamWConfig are torch.optim.AdamW's hyperparameters.
type AdamWConfig struct {
	LR, WeightDecay, Beta1, Beta2, Eps float64
	// MaxGradNorm clips the global gradient norm first (0: no clipping).
	MaxGradNorm float64
}

// AdamW clips the gradients to MaxGradNorm and applies one AdamW update to
// every trainable parameter; it returns the norm before clipping.
func (dm *DeviceModel) AdamW(c AdamWConfig) (float64, error) {
	norm, err := dm.GradNorm()
	if err != nil {
		return 0, err
	}
	return norm, dm.ApplyAdamW(c, norm)
}

// ApplyAdamW applies one AdamW update given the gradients' global norm
// (for clipping).
func (dm *DeviceModel) ApplyAdamW(c AdamWConfig, norm float64) error {
	gscale := 1.0
	if c.MaxGradNorm > 0 && norm > c.MaxGradNorm {
		// torch.nn.utils.clip_grad_norm_: coefficient max/(norm+1e-6).
		gscale = c.MaxGradNorm / (norm + 1e-6)
	}
	for _, g := range dm.groups {
		// Every trainable parameter has a gradient at every step, so one
		// step count serves the group, as torch's per-parameter counts
		// would all agree.
		g.steps++
		bc1 := 1 - math.Pow(c.Beta1, float64(g.steps))
		bc2 := 1 - math.Pow(c.Beta2, float64(g.steps))
		wd := 0.0
		if g.decay {
			wd = c.WeightDecay
		}
		lr := c.LR * g.lrScale
		s := compute.AdamStep{GradScale: float32(gscale), Decay: float32(1 - lr*wd),
			Beta1: float32(c.Beta1), Beta2: float32(c.Beta2), StepSize: float32(lr / bc1), BC2Sqrt: float32(math.Sqrt(bc2)), Eps: float32(c.Eps)}
		if g.q8 {
			dm.be.AdamW8bit(g.master, g.grad, g.m8, g.v8, g.mScale, g.vScale, g.w, s, compute.Adam8Block)
			continue
		}
		dm.be.AdamW(g.master, g.grad, g.m, g.v, g.w, s)
	}
	return dm.be.Err()
}

// AdamState downloads a trainable parameter's AdamW moments and step count
// (for checkpoints).
func (dm *DeviceModel) AdamState(p *nn.Param) (m, v []float32, steps int64, err error) {
	d := dm.byHost[p]
	if d == nil || !d.trainable {
		return nil, nil, 0, fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	if d.grp.q8 {
		return nil, nil, 0, fmt.Errorf("device model: %s keeps 8-bit AdamW state (see Adam8State)", p.Name)
	}
	m, v = make([]float32, d.n), make([]float32, d.n)
	if err := dm.be.Download(m, d.m); err != nil {
		return nil, nil, 0, err
	}
	if err := dm.be.Download(v, d.v); err != nil {
		return nil, nil, 0, err
	}
	return m, v, d.grp.steps, nil
}

// SetAdamState uploads a parameter's AdamW moments and step count (resume).
func (dm *DeviceModel) SetAdamState(p *nn.Param, m, v []float32, steps int64) error {
	d := dm.byHost[p]
	if d == nil || !d.trainable {
		return fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	if d.grp.q8 {
		return fmt.Errorf("device model: %s keeps 8-bit AdamW state (see SetAdam8State)", p.Name)
	}
	if len(m) != d.n || len(v) != d.n {
		return fmt.Errorf("device model: %s: optimizer state of %d/%d values, want %d", p.Name, len(m), len(v), d.n)
	}
	dm.be.Upload(d.m, m)
	dm.be.Upload(d.v, v)
	d.grp.steps = steps
	return dm.be.Err()
}

// MemStats reports the backend's memory use.
func (dm *DeviceModel) MemStats() compute.MemStats { return dm.be.MemStats() }

// LoRAGroups counts the LoRA groups formed (layers sharing an input whose
// low-rank products run fused).
func (dm *DeviceModel) LoRAGroups() int {
	n := 0
	for _, l := range dm.layers {
		if l.qkv != nil {
			n++
		}
		if l.gu != nil {
			n++
		}
	}
	return n
}

// BackendName names the backend the model lives on.
func (dm *DeviceModel) BackendName() string { return dm.be.Name() }
