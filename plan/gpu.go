package plan

import (
	"fmt"

	"gotune/compute"
	"gotune/model"
	"gotune/quant"
)

// The GPU memory model: what model.DeviceModel allocates on a backend whose
// memory is not the host's (compute/cuda; compute/ref in the tests) for one
// training step, tensor by tensor, in the compute type the run uses (bf16 on
// a GPU: activations and frozen weights in 2 bytes, trainable masters,
// gradients and AdamW state in float32). Nothing is read where the host
// holds it there, so every weight is a device copy, and the block's
// buffers only grow (a scratch tensor is replaced by a larger one, the old
// one freed first), so the peak of a step is the sum of what is held once
// the first step has run.

// DefaultGPURuntime is the device memory a gotune process holds before the
// block allocates anything: the CUDA context, the cuBLAS handle's workspace
// and the compiled kernels. It is a stated constant, not a measurement of
// this model: a serve process with the bundled tiny model held 586–590 MiB
// on an H200 (issue 15), nearly all of it context. A GPU session calibrates
// it with `gotune bench --device cuda --train M`, whose line reports the
// driver's used memory (device_used_gib) beside the allocator's peak
// (peak_mem_gib) and this model's prediction of that peak (plan_gpu_mib).
const DefaultGPURuntime = 580 << 20

// GPUFusedMaxHead is the largest head size whose attention the CUDA
// backend runs fused (compute.FusedAttention: FlashAttention's scheme, no
// score matrix held); larger heads take the unfused products and softmax
// over [T, T] scores.
const GPUFusedMaxHead = 256

// GPUAttention is where the GPU runs attention fused.
type GPUAttention int

const (
	// GPUAttnLong: sequences of at least compute.FusedLongScores scores
	// (the CUDA backend's default policy).
	GPUAttnLong GPUAttention = iota
	// GPUAttnFused: every head size up to GPUFusedMaxHead.
	GPUAttnFused
	// GPUAttnUnfused: never (a backend without fused attention).
	GPUAttnUnfused
)

// ParseGPUAttention reads long, fused or unfused.
func ParseGPUAttention(s string) (GPUAttention, error) {
	switch s {
	case "long", "":
		return GPUAttnLong, nil
	case "fused":
		return GPUAttnFused, nil
	case "unfused":
		return GPUAttnUnfused, nil
	}
	return 0, fmt.Errorf("attention %q: want long, fused or unfused", s)
}

// fused reports whether the attention of a step runs fused: o's sequences
// with the row's virtual tokens (T) and prefix keys (TK = T + prefix), as
// g.FusedFor or g.Attention decides.
func (g GPUOptions) fused(s gpuShape, o Options, virtual, prefix int64) bool {
	t := int64(o.Seq) + virtual
	tk := t + prefix
	if g.FusedFor != nil {
		return g.FusedFor(compute.AttnParams{B: o.Batch, H: int(s.heads), KVH: int(s.kvh), T: int(t), TK: int(tk), TMax: int(tk), HD: int(s.hd), Off: int(prefix)})
	}
	if g.Attention == GPUAttnUnfused || s.hd > GPUFusedMaxHead || int64(o.Batch)*s.heads > 65535 {
		return false
	}
	return g.Attention == GPUAttnFused || s.heads*t*tk >= compute.FusedLongScores
}

// GPUOptions are what the GPU memory model needs beyond Options.
type GPUOptions struct {
	// Compute is the block's compute type: compute.BF16 (the default, a
	// GPU's mixed precision) or compute.F32.
	Compute compute.DType
	// Attention is where attention runs fused (no [T, TK] scores and
	// gradients held): by default as the CUDA backend chooses by default.
	Attention GPUAttention
	// FusedFor, when set, decides instead of Attention: a backend's own
	// compute.FusedAttention.AttnFusedFor (bench passes it).
	FusedFor func(compute.AttnParams) bool
	// adam8 is Options.Adam8bit: AdamW's moments of tensors from
	// compute.Adam8MinSize values in 8 bits (model.DeviceOptions.Adam8bit).
	adam8 bool
	// Runtime is the context's share; 0 means DefaultGPURuntime.
	Runtime int64
}

func (g GPUOptions) withDefaults() GPUOptions {
	if g.Compute == 0 {
		g.Compute = compute.BF16
	}
	if g.Runtime <= 0 {
		g.Runtime = DefaultGPURuntime
	}
	return g
}

// GPUTensors is Count trained tensors of Size values each. Float ones are
// read by the products in float32 (norms, biases, scaling vectors); the
// others also keep a copy in the compute type, which the optimizer writes.
type GPUTensors struct {
	Size, Count int64
	Float       bool
}

// Buffer is Count device tensors of Values elements of DType each.
type Buffer struct {
	DType         compute.DType
	Values, Count int64
}

// GPUFootprint is what a method places on the device beside the model's
// own tensors and the block's activations.
type GPUFootprint struct {
	// TrainModel: every tensor of the model trains (full fine-tuning);
	// TrainLayers: the last TrainLayers layers' tensors train (freeze).
	TrainModel  bool
	TrainLayers int64
	// Quant, when set, is how the frozen projections are held: packed 4-
	// or 8-bit codes and a float32 scale per block (QLoRA's base);
	// otherwise in the compute type.
	Quant *quant.Options
	// Tensors are the method's own trained tensors (adapters, prompts).
	Tensors []GPUTensors
	// Fixed are buffers allocated once with the weights (DoRA's norms, a
	// prompt encoder's outputs).
	Fixed []Buffer
	// Kept is what one layer keeps for its backward pass; every layer has
	// its own, and checkpointing keeps one set for all. KeptDense is kept
	// besides by each layer with a dense MLP (not a mixture of experts).
	Kept, KeptDense []Buffer
	// ExpertLoRA is the rank of LoRA on the stacked expert weights of every
	// mixture-of-experts layer (gate_up_proj and down_proj, as lora_target
	// all attaches it through PEFT's target_parameters); 0: none. plan
	// counts its tensors and buffers, which follow the experts' layout.
	ExpertLoRA int64
	// SerialExperts: the method makes the experts run one after another
	// over their own rows (IA3 on them), not side by side; a quantized
	// base does too.
	SerialExperts bool
	// Scratch is shared by the layers, each buffer at its largest use.
	Scratch []Buffer
	// Sums are the {rows, columns} of the column sums the method's
	// backward pass takes (BiasGrad, ColDot on its own values): the CUDA
	// backend holds ⌈rows/64⌉ partial rows of each in float32 during the
	// call.
	Sums  [][2]int64
	Notes []string
}

// GPURow is a method's GPUFootprint for a model shape, run options (with
// defaults applied) and GPU options (with defaults applied). Package method
// defines one for each row next to the rows themselves.
type GPURow func(s Shape, o Options, g GPUOptions) (GPUFootprint, error)

// GPUMemory is the device memory of a training step on a GPU by what holds
// it, each tensor rounded as the CUDA backend's caching allocator rounds it
// (512 bytes up to 1 MiB, 2 MiB above).
type GPUMemory struct {
	// Weights: frozen weights (the compute type, or packed codes and
	// scales) and the trained values' float32 masters and compute-type
	// copies.
	Weights int64 `json:"weights"`
	// Grads: a float32 gradient per trained value (arena padding included).
	Grads int64 `json:"grads"`
	// Optimizer: AdamW's moments (float32, or 8-bit codes and scales).
	Optimizer int64 `json:"optimizer"`
	// Activations: kept activations, the residual stream, shared scratch
	// (attention, the head's logits chunk), rotary tables, a method's own
	// buffers.
	Activations int64 `json:"activations"`
	// Requested is the bytes the block asks for, unrounded: what the
	// reference backend counts.
	Requested int64 `json:"requested"`
	// Allocated is Weights + Grads + Optimizer + Activations: the CUDA
	// allocator's peak (bench's peak_mem_gib).
	Allocated int64 `json:"allocated"`
	// Runtime: CUDA context, cuBLAS workspace, kernels (a stated
	// constant, DefaultGPURuntime unless given).
	Runtime int64 `json:"runtime"`
	// Total is Allocated + Runtime: the device memory the run needs.
	Total int64 `json:"total"`
}

// GPUEstimate is the GPU memory of one row without and with gradient
// checkpointing.
type GPUEstimate struct {
	Compute string `json:"compute"`
	// Fused: attention runs fused (no [T, TK] scores held).
	Fused            bool      `json:"fused_attention"`
	Memory           GPUMemory `json:"memory"`
	MemoryCheckpoint GPUMemory `json:"memory_checkpoint"`
	Notes            []string  `json:"notes,omitempty"`
}

// gpuCUDABlock is the CUDA backend's allocation size for b bytes
// (compute/cuda Device.Alloc's blockSize).
func gpuCUDABlock(b int64) int64 {
	const small, big = 512, 2 << 20
	b = max(b, 1)
	if b <= 1<<20 {
		return (b + small - 1) / small * small
	}
	return (b + big - 1) / big * big
}

// gpuKind is what an allocation is counted as.
type gpuKind int

const (
	gpuWeights gpuKind = iota
	gpuGrads
	gpuOptimizer
	gpuActivations
)

// gpuTally sums allocations exactly and as the CUDA allocator rounds them.
type gpuTally struct {
	exact   int64
	rounded [4]int64
	// transient is the largest buffer the CUDA backend's operations
	// allocate and free within one call (it is not the block's: the
	// reference backend's loops need none).
	transient int64
}

// add counts count tensors of n elements of dt (an allocation of 0
// elements takes one, as the block asks for at least one).
func (t *gpuTally) add(k gpuKind, dt compute.DType, n, count int64) {
	if count <= 0 {
		return
	}
	b := max(n, 1) * int64(dt.Size())
	t.exact += count * b
	t.rounded[k] += count * gpuCUDABlock(b)
}

func (t *gpuTally) buffers(k gpuKind, bs []Buffer, times int64) {
	for _, b := range bs {
		t.add(k, b.DType, b.Values, b.Count*times)
	}
}

func (t *gpuTally) memory(runtime int64) GPUMemory {
	m := GPUMemory{Weights: t.rounded[gpuWeights], Grads: t.rounded[gpuGrads], Optimizer: t.rounded[gpuOptimizer],
		Activations: t.rounded[gpuActivations] + t.transient, Requested: t.exact, Runtime: runtime}
	m.Allocated = m.Weights + m.Grads + m.Optimizer + m.Activations
	m.Total = m.Allocated + runtime
	return m
}

// gpuShape is the model as the device block lays it out: the sizes of
// Shape and the family's parts that change what it allocates.
type gpuShape struct {
	Shape
	fusedQKV, fusedGU, sandwich, localRope, scaleVirtual bool
	attnBias, attnOutBias, mlpBias                       bool
	// Mixtures of experts: which layers route their tokens to experts,
	// the experts each token goes to, and whether the load-balancing
	// loss's gradient reaches the routers (router_aux_loss_coef).
	moe  []bool
	topK int64
	aux  bool
}

func gpuShapeOf(c *model.Config) gpuShape {
	s := gpuShape{Shape: shapeOf(c), fusedQKV: c.FusedQKV, fusedGU: c.FusedGateUp, sandwich: c.SandwichNorms,
		localRope: c.LocalRope != nil, scaleVirtual: c.EmbedScaleInputs && c.EmbedScale != 0,
		attnBias: c.AttnBias, attnOutBias: c.AttnOutBias, mlpBias: c.MLPBias}
	for i := 0; i < c.Layers; i++ {
		s.moe = append(s.moe, c.IsMoE(i))
	}
	if s.moeLayers > 0 {
		s.topK, s.aux = int64(c.TopK), c.AuxCoef != 0
	}
	return s
}

// denseLayers is the number of layers with a dense MLP.
func (s gpuShape) denseLayers() int64 { return s.L - s.moeLayers }

// layerTensors lists one layer's tensors as the device block uploads them:
// its norms and biases (read in float32), its projections {out, in}
// (fused where the family fuses them; in a mixture of experts every
// expert's gate, up and down) and the projections a quantized base leaves
// in the compute type (the router of a mixture of experts).
func (s gpuShape) layerTensors(moe bool) (norms, biases []int64, projections, plain [][2]int64) {
	norms = []int64{s.h, s.h}
	if s.qkNorm {
		norms = append(norms, s.hd, s.hd)
	}
	if s.sandwich {
		norms = append(norms, s.h, s.h)
	}
	if s.fusedQKV {
		projections = append(projections, [2]int64{s.qd + 2*s.kd, s.h})
	} else {
		projections = append(projections, [2]int64{s.qd, s.h}, [2]int64{s.kd, s.h}, [2]int64{s.kd, s.h})
	}
	projections = append(projections, [2]int64{s.h, s.qd})
	switch {
	case moe:
		plain = append(plain, [2]int64{s.experts, s.h})
		for range s.experts {
			projections = append(projections, [2]int64{s.ei, s.h}, [2]int64{s.ei, s.h}, [2]int64{s.h, s.ei})
		}
	case s.fusedGU:
		projections = append(projections, [2]int64{2 * s.inter, s.h}, [2]int64{s.h, s.inter})
	default:
		projections = append(projections, [2]int64{s.inter, s.h}, [2]int64{s.inter, s.h}, [2]int64{s.h, s.inter})
	}
	if s.attnBias {
		if s.fusedQKV {
			biases = append(biases, s.qd+2*s.kd)
		} else {
			biases = append(biases, s.qd, s.kd, s.kd)
		}
	}
	if s.attnOutBias {
		biases = append(biases, s.h)
	}
	if s.mlpBias && !moe {
		if s.fusedGU {
			biases = append(biases, 2*s.inter)
		} else {
			biases = append(biases, s.inter, s.inter)
		}
		biases = append(biases, s.h)
	}
	return norms, biases, projections, plain
}

// GPULinear is a projection of Out×In values in Count layers, as the
// device block holds it outside a mixture of experts' experts. Group
// numbers the projections of a layer that read the same input (q, k and
// v; gate and up), whose LoRA may share one x·Aᵀ product (0: none). MLP
// says it is a dense MLP's (not in the layers with experts).
type GPULinear struct {
	Out, In, Count int64
	Group          int
	MLP            bool
}

// GPULinears lists the projections every method may adapt, as the device
// block holds them: q, k and v (or Phi-3's fused qkv_proj) and o in every
// layer, gate and up (or the fused gate_up_proj) and down in the layers
// with a dense MLP. The experts' stacked weights are GPUFootprint's
// ExpertLoRA.
func (s Shape) GPULinears() []GPULinear {
	L, D := s.L, s.L-s.moeLayers
	var out []GPULinear
	if s.fusedQKV {
		out = append(out, GPULinear{Out: s.qd + 2*s.kd, In: s.h, Count: L})
	} else {
		out = append(out, GPULinear{s.qd, s.h, L, 1, false}, GPULinear{s.kd, s.h, L, 1, false}, GPULinear{s.kd, s.h, L, 1, false})
	}
	out = append(out, GPULinear{Out: s.h, In: s.qd, Count: L})
	if D == 0 {
		return out
	}
	if s.fusedGateUp {
		out = append(out, GPULinear{Out: 2 * s.inter, In: s.h, Count: D, MLP: true})
	} else {
		out = append(out, GPULinear{s.inter, s.h, D, 2, true}, GPULinear{s.inter, s.h, D, 2, true})
	}
	return append(out, GPULinear{Out: s.h, In: s.inter, Count: D, MLP: true})
}

// arenaAlign is model.DeviceModel's alignment of a trained tensor in its
// arena (elements), and compute.Adam8Block for one with 8-bit state.
const arenaAlign = 64

// ArenaAligned reports whether a trained tensor of n values ends on its
// arena's alignment, so that the next one follows it without a gap (LoRA's
// fused groups need their A matrices adjacent).
func ArenaAligned(n int64, adam8 bool) bool {
	align := int64(arenaAlign)
	if adam8 && n >= compute.Adam8MinSize {
		align = compute.Adam8Block
	}
	return n%align == 0
}

// EstimateGPU computes the device memory of one row on a GPU: the block's
// tensors for a training step of o.Batch sequences of o.Seq tokens, without
// and with gradient checkpointing. dev is the row's GPU footprint; nil
// derives an approximate one from the row's CPU footprint.
func EstimateGPU(c *model.Config, row Row, dev GPURow, opt Options, g GPUOptions) (GPUEstimate, error) {
	if err := opt.validate(); err != nil {
		return GPUEstimate{}, err
	}
	if c == nil || c.Hidden <= 0 || c.Layers <= 0 || c.Vocab <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.Intermediate <= 0 {
		return GPUEstimate{}, fmt.Errorf("plan: model configuration has a non-positive size")
	}
	if row.Footprint == nil {
		return GPUEstimate{}, fmt.Errorf("plan: method %q has no footprint", row.Method)
	}
	g = g.withDefaults()
	g.adam8 = opt.Adam8bit
	if g.Compute != compute.BF16 && g.Compute != compute.F32 {
		return GPUEstimate{}, fmt.Errorf("plan: GPU compute type %v (want bf16 or f32)", g.Compute)
	}
	o := opt.withDefaults()
	s := gpuShapeOf(c)
	fp, err := row.Footprint(s.Shape, o)
	if err != nil {
		return GPUEstimate{}, fmt.Errorf("plan: %s: %w", row.Method, err)
	}
	var df GPUFootprint
	if dev != nil {
		if df, err = dev(s.Shape, o, g); err != nil {
			return GPUEstimate{}, fmt.Errorf("plan: %s on a GPU: %w", row.Method, err)
		}
	} else {
		df = gpuFallback(s, o, g, fp)
	}
	e := GPUEstimate{Compute: g.Compute.String(), Fused: g.fused(s, o, fp.Virtual, fp.Prefix)}
	e.Notes = append(e.Notes, df.Notes...)
	trained, err := s.gpuWeights(&gpuTally{}, df, g)
	if err != nil {
		return GPUEstimate{}, fmt.Errorf("plan: %s on a GPU: %w", row.Method, err)
	}
	switch {
	case trained == fp.Trainable:
	case s.moeLayers > 0 || s.fusedQKV || s.fusedGU:
		// The rows' CPU footprints count every layer as a dense one with
		// split projections (seven LoRA layers, a freeze layer without
		// experts); the device block's tensors are the model's own.
		e.Notes = append(e.Notes, fmt.Sprintf("the device block trains %d values; the row's CPU footprint counts %d (dense layers, split projections)", trained, fp.Trainable))
	default:
		// The two footprints of the row disagree: its code, not the input.
		return GPUEstimate{}, fmt.Errorf("plan: %s: the GPU footprint trains %d values, the row %d", row.Method, trained, fp.Trainable)
	}
	if (df.Quant != nil || df.SerialExperts) && s.moeLayers > 0 {
		e.Notes = append(e.Notes, "the experts run one after another, their scratch sized for every token at one expert (an upper bound)")
	}
	for _, ckpt := range []bool{false, true} {
		var t gpuTally
		if _, err := s.gpuWeights(&t, df, g); err != nil {
			return GPUEstimate{}, err
		}
		s.gpuActivations(&t, df, o, g, fp.Virtual, fp.Prefix, ckpt, e.Fused)
		if ckpt {
			e.MemoryCheckpoint = t.memory(g.Runtime)
		} else {
			e.Memory = t.memory(g.Runtime)
		}
	}
	return e, nil
}

// gpuFallback is a GPU footprint read from a row's CPU footprint, for a row
// without its own: the trained values as one tensor read through a
// compute-type copy, the kept values and buffers in the compute type.
func gpuFallback(s gpuShape, o Options, g GPUOptions, fp Footprint) GPUFootprint {
	df := GPUFootprint{Notes: []string{"GPU memory approximated from the CPU footprint (the row gives no GPU footprint)"}}
	switch {
	case !fp.Adapter && fp.Trainable == s.params():
		df.TrainModel = true
	case !fp.Adapter:
		df.TrainLayers = fp.Trainable / max(s.LayerParams(), 1)
		if rest := fp.Trainable - df.TrainLayers*s.LayerParams(); rest > 0 {
			df.Tensors = append(df.Tensors, GPUTensors{Size: rest, Count: 1})
		}
	case fp.Trainable > 0:
		df.Tensors = []GPUTensors{{Size: fp.Trainable, Count: 1}}
	}
	if len(fp.Format) >= 3 && fp.Format[:3] == "nf4" {
		df.Quant = &quant.Options{Type: quant.NF4}
	}
	if fp.Kept > 0 {
		df.Kept = []Buffer{{g.Compute, fp.Kept / max(s.L, 1), 1}}
	}
	if fp.Buffers > 0 {
		df.Scratch = []Buffer{{g.Compute, fp.Buffers, 1}}
	}
	return df
}

// gpuWeights counts the model's tensors and the method's trained ones
// (model.NewDeviceModel: frozen ones uploaded one by one, trained ones in
// arenas) and returns the number of trained values.
func (s gpuShape) gpuWeights(t *gpuTally, df GPUFootprint, g GPUOptions) (int64, error) {
	A := g.Compute
	var trained []GPUTensors
	train := func(size, count int64, float bool) {
		trained = append(trained, GPUTensors{Size: size, Count: count, Float: float})
	}
	// Embeddings and the untied head: the compute type; the final norm
	// in float32.
	embeds := int64(1)
	if !s.tied {
		embeds = 2
	}
	if df.TrainModel {
		train(s.V*s.h, embeds, false)
		train(s.h, 1, true)
	} else {
		t.add(gpuWeights, A, s.V*s.h, embeds)
		t.add(gpuWeights, compute.F32, s.h, 1)
	}
	for i := int64(0); i < s.L; i++ {
		moe := s.moe[i]
		norms, biases, projections, plain := s.layerTensors(moe)
		trains := df.TrainModel || i >= s.L-df.TrainLayers
		for _, n := range append(append([]int64{}, norms...), biases...) {
			if trains {
				train(n, 1, true)
			} else {
				t.add(gpuWeights, compute.F32, n, 1)
			}
		}
		for _, p := range plain {
			if trains {
				train(p[0]*p[1], 1, false)
			} else {
				t.add(gpuWeights, A, p[0]*p[1], 1)
			}
		}
		for _, p := range projections {
			switch {
			case trains:
				train(p[0]*p[1], 1, false)
			case df.Quant != nil:
				if err := t.quantized(p[0], p[1], *df.Quant); err != nil {
					return 0, err
				}
			default:
				t.add(gpuWeights, A, p[0]*p[1], 1)
			}
		}
		if r := df.ExpertLoRA; moe && r > 0 {
			// Stacked LoRA of gate_up_proj (A [r·E, h], B [2·ei, r·E])
			// and of down_proj (A [r·E, ei], B [h, r·E]).
			E := s.experts
			train(r*E*s.h, 1, false)
			train(2*s.ei*r*E, 1, false)
			train(r*E*s.ei, 1, false)
			train(s.h*r*E, 1, false)
		}
	}
	trained = append(trained, df.Tensors...)
	t.buffers(gpuActivations, df.Fixed, 1)
	return t.arenas(trained, g), nil
}

// quantized counts a frozen out×in projection held packed: the codes, a
// float32 scale per block (double quantization is undone on upload) and a
// 4-bit type's code book.
func (t *gpuTally) quantized(out, in int64, q quant.Options) error {
	n := out * in
	bs := int64(q.BlockSize)
	if bs <= 0 {
		bs = 64 // quant's default block
	}
	switch q.Type {
	case quant.NF4, quant.FP4:
		t.add(gpuWeights, compute.U8, (n+1)/2, 1)
		t.add(gpuWeights, compute.F32, (n+bs-1)/bs, 1)
		t.add(gpuWeights, compute.F32, 16, 1)
	case quant.Int8Row:
		t.add(gpuWeights, compute.U8, n, 1)
		t.add(gpuWeights, compute.F32, out, 1)
	case quant.Int8Block:
		t.add(gpuWeights, compute.U8, n, 1)
		t.add(gpuWeights, compute.F32, (n+bs-1)/bs, 1)
	default:
		return fmt.Errorf("quantized base of type %v", q.Type)
	}
	return nil
}

// arenas counts the trained tensors as model.DeviceModel places them: one
// arena per kind (with a compute-type copy or read in float; with 8-bit
// AdamW state or float), each tensor at an aligned offset, holding float32
// masters and gradients, the copies, and AdamW's moments. It returns the
// trained values.
func (t *gpuTally) arenas(ts []GPUTensors, g GPUOptions) int64 {
	type key struct{ shadow, q8 bool }
	sizes := map[key]int64{}
	var values int64
	for _, x := range ts {
		k := key{shadow: !x.Float && g.Compute != compute.F32, q8: g.adam8 && x.Size >= compute.Adam8MinSize}
		align := int64(arenaAlign)
		if k.q8 {
			align = compute.Adam8Block
		}
		sizes[k] += x.Count * ((x.Size + align - 1) / align * align)
		values += x.Count * x.Size
	}
	for k, n := range sizes {
		if n == 0 {
			continue
		}
		t.add(gpuWeights, compute.F32, n, 1) // masters
		t.add(gpuGrads, compute.F32, n, 1)
		if k.shadow {
			t.add(gpuWeights, g.Compute, n, 1)
		}
		if k.q8 {
			t.add(gpuOptimizer, compute.U8, n, 2)
			t.add(gpuOptimizer, compute.F32, (n+compute.Adam8Block-1)/compute.Adam8Block, 2)
		} else {
			t.add(gpuOptimizer, compute.F32, n, 2)
		}
	}
	return values
}

// gpuActivations counts the block's per-step tensors (model/device_step.go):
// the residual stream and each layer's kept activations (prepareShape), the
// rotary tables, and the scratch shared by the layers at its largest
// (forward, the head, backward).
func (s gpuShape) gpuActivations(t *gpuTally, df GPUFootprint, o Options, g GPUOptions, virtual, prefix int64, ckpt, fused bool) {
	A, F, I := g.Compute, compute.F32, compute.I32
	act := func(dt compute.DType, n int64) { t.add(gpuActivations, dt, n, 1) }
	B, T := int64(o.Batch), int64(o.Seq)+virtual
	pl := prefix
	n, tk := B*T, T+pl
	h, qd, kd, inter, H, KVH, hd := s.h, s.qd, s.kd, s.inter, s.heads, s.kvh, s.hd

	// Kept: one set per layer, or with checkpointing one for all, which
	// the layers with experts and those with a dense MLP share where they
	// have the same tensors.
	D, M := s.denseLayers(), s.moeLayers
	attnSets, denseSets, moeSets := s.L, D, M
	if ckpt {
		attnSets, denseSets, moeSets = 1, min(D, 1), min(M, 1)
	}
	for range attnSets {
		act(F, n)    // rstd1
		act(A, n*qd) // q
		act(A, n*kd) // k
		if s.qkNorm {
			act(F, n*H)   // rstdq
			act(F, n*KVH) // rstdk
		}
		act(A, (n+B*pl)*kd) // values by head, a prefix's steps first
		act(F, B*H*T)       // lse
		act(A, n*qd)        // attention output
		act(A, n*h)         // xmid
		act(F, n)           // rstd2
		if s.sandwich {
			act(A, n*h)
			act(F, n)
			act(A, n*h)
			act(F, n)
		}
		t.buffers(gpuActivations, df.Kept, 1)
	}
	for range denseSets {
		act(A, n*inter) // gate
		act(A, n*inter) // up
		t.buffers(gpuActivations, df.KeptDense, 1)
	}
	E, K := s.experts, s.topK
	nk := n * K
	for range moeSets {
		// The routing (model/device_moe.go moeActs): probabilities,
		// weights by slot, chosen experts and each slot's row; each
		// routed row's token and weight, the experts' gate, up and output
		// rows; where each expert's rows start.
		act(F, n*E)
		act(F, nk)
		t.add(gpuActivations, I, nk, 3)
		act(F, nk)
		t.add(gpuActivations, A, nk*s.ei, 2)
		act(A, nk*h)
		act(F, E+1)
		if r := df.ExpertLoRA; r > 0 {
			// x·Aᵀ of every expert's layers. The shared set of
			// checkpointing names a LoRA layer's by its place in the layer
			// (model/device_step.go prepareShape): a dense MLP's down, and
			// its up outside a gate/up group, take the places of the first
			// experts' layers and share their tensors.
			xa := 3 * E
			if ckpt && D > 0 {
				xa--
				if !ArenaAligned(r*h, g.adam8) {
					xa--
				}
			}
			t.add(gpuActivations, A, n*r, xa)
		}
	}
	t.add(gpuActivations, A, n*h, s.L+1) // residual stream
	act(A, n*h)                          // final norm's input
	act(F, n)                            // and its rstd
	t.add(gpuActivations, I, n, 4)       // ids, positions, mask, segments

	// Rotary tables: cos and sin for every position, at least 256.
	ropes := int64(2)
	if s.localRope {
		ropes = 4
	}
	t.add(gpuActivations, F, max(tk, 256)*hd, ropes)

	// Scratch, forward: normed input, v, q/k norms, rotated q and keys,
	// attention output by head, o projection, normed xmid, MLP activation.
	act(A, n*h) // xn1
	act(A, n*kd)
	if s.qkNorm {
		act(A, n*qd)
		act(A, n*kd)
	}
	act(A, n*qd)    // qh
	act(A, B*tk*kd) // kh, a prefix's steps first
	act(A, n*qd)    // oh
	act(A, n*h)     // o
	act(A, n*h)     // xn2
	if D > 0 {
		act(A, n*inter) // act
	}
	s.moeScratch(t, df, g, n)
	if s.fusedQKV || s.fusedGU {
		// One product's output split into q/k/v or gate/up, and its
		// gradient joined.
		var w int64
		if s.fusedQKV {
			w = qd + 2*kd
		}
		if s.fusedGU {
			w = max(w, 2*inter)
		}
		t.add(gpuActivations, A, n*w, 2)
	}
	if !fused {
		// Scores (float), probabilities, and in backward the gradients of
		// both, for as many sequences as 64M scores allow.
		bc := max(1, min(B, (64<<20)/max(H*T*tk, 1)))
		sc := bc * H * T * tk
		act(F, sc) // s
		act(A, sc) // p
		act(F, sc) // dp
		act(A, sc) // ds
		if pl > 0 {
			act(A, bc*KVH*pl*hd) // prefix_dpre
		}
	} else if pl > 0 {
		// The fused backward writes the gradients of all tk key steps,
		// then splits off the prefix's.
		t.add(gpuActivations, A, B*tk*kd, 2)
		act(A, B*KVH*pl*hd)
	}
	if df.Quant != nil {
		// A quantized weight is expanded before each product, into one
		// buffer of the largest projection.
		var most int64
		for _, moe := range []bool{false, true} {
			if moe && M == 0 || !moe && D == 0 {
				continue
			}
			_, _, projections, _ := s.layerTensors(moe)
			for _, p := range projections {
				most = max(most, p[0]*p[1])
			}
		}
		act(A, most)
	}

	// The head: the trained rows' indices, targets and losses, and a chunk
	// of rows' states, logits and their gradient (a non-host backend's
	// chunk: 96M logits, at least 64 rows).
	rows := B * max(int64(o.Seq)-1, 0)
	if virtual > 0 {
		rows = B * int64(o.Seq) // the last virtual token predicts the first one
	}
	chunk := max(1, min(max((96<<20)/s.V, 64), rows))
	act(A, n*h) // dxf
	if rows > 0 {
		t.add(gpuActivations, I, rows, 2)
		act(F, rows)
		act(A, chunk*h)   // head_x
		act(F, chunk*s.V) // logits
		act(A, chunk*s.V) // their gradient
		act(A, chunk*h)   // head_dx
	}

	// Backward: the residual's gradient, the MLP's (normed input, its
	// gradient, the activation's and gate's and up's), attention's (by
	// token and by head, dsum), the q/k norms'.
	act(A, n*h) // dres
	if s.sandwich {
		act(A, n*h) // dpost
	}
	act(A, n*h) // dxn
	if D > 0 {
		act(A, n*inter) // da
		act(A, n*inter) // dg
		act(A, n*inter) // du
	}
	act(A, n*qd)  // datt
	act(A, n*qd)  // doh
	act(F, B*H*T) // dsum
	act(A, n*qd)  // dqh
	act(A, n*kd)  // dkh
	act(A, n*kd)  // dvh
	act(A, n*qd)  // dq
	act(A, n*kd)  // dk
	act(A, n*kd)  // dv
	if s.qkNorm {
		act(A, n*qd)
		act(A, n*kd)
	}

	// Prompt methods' own scratch in the block: a [B] vector of ones that
	// copies a prompt to every row and sums the rows' gradients back; the
	// virtual tokens' gradient; the prefix's keys and values laid out by
	// layer and head, and their gradients.
	if virtual > 0 || pl > 0 {
		act(A, B) // ones
	}
	if virtual > 0 {
		act(A, virtual*h) // dvirt
		if s.scaleVirtual {
			act(A, virtual*h)
		}
	}
	if pl > 0 {
		w := pl * s.L * 2 * kd
		act(A, w) // prefix_kv
		act(F, w) // prefix_dkv
		act(F, w) // prefix_dfull
		act(A, w) // prefix_dout
	}
	t.buffers(gpuActivations, df.Scratch, 1)
	s.gpuTransient(t, df, n)
}

// gpuTransient is the CUDA backend's largest buffer held within one call:
// SumSquares' partial sums (512 floats and one a tensor), or the partial
// column sums of a norm weight's or a bias's gradient and of ColDot,
// ⌈rows/64⌉ rows of float32. It adds to the peak because it is taken in
// the backward pass of layers after the first, when everything else is
// allocated.
func (s gpuShape) gpuTransient(t *gpuTally, df GPUFootprint, n int64) {
	sums := df.Sums
	if df.TrainModel || df.TrainLayers > 0 {
		sums = append(sums, [2]int64{n, s.h})
		if s.qkNorm {
			sums = append(sums, [2]int64{n * s.heads, s.hd})
		}
		for _, moe := range []bool{false, true} {
			_, biases, _, _ := s.layerTensors(moe)
			for _, b := range biases {
				sums = append(sums, [2]int64{n, b})
			}
		}
	}
	most := gpuCUDABlock(4*512) + gpuCUDABlock(4*8)
	for _, c := range sums {
		most = max(most, gpuCUDABlock(4*((c[0]+63)/64)*c[1]))
	}
	t.transient = max(t.transient, most)
}

// moeScratch counts the scratch of the layers with experts
// (model/device_moe.go): the router's logits and gradient, every layer's
// load-balancing statistics, the gradient of the routing weights and of
// the auxiliary loss, and the experts' rows. The experts run side by side
// over all n·topK routed rows at once, or, when their weights are
// quantized or IA3 scales them, one after another over their own rows
// (model.DeviceModel.groupable): at most n each (a
// token goes to an expert once), which is what a step needs when every
// token goes to the same experts. LoRA on the stacked weights gathers each
// kind's B (and its gradient) for all experts, and keeps the low-rank
// gradient of the routed rows.
func (s gpuShape) moeScratch(t *gpuTally, df GPUFootprint, g GPUOptions, n int64) {
	if s.moeLayers == 0 {
		return
	}
	A, F := g.Compute, compute.F32
	act := func(dt compute.DType, n int64) { t.add(gpuActivations, dt, n, 1) }
	E, K, h, ei, r := s.experts, s.topK, s.h, s.ei, df.ExpertLoRA
	act(F, n*E)     // logits
	act(F, s.L*3*E) // statistics
	act(F, n*K)     // dw
	act(A, n*E)     // dlogits
	if s.aux {
		act(F, E) // the auxiliary loss's gradient
	}
	serial := df.Quant != nil || df.SerialExperts
	rows := n * K // the routed rows the experts' scratch holds
	if serial {
		rows = n
	}
	t.add(gpuActivations, A, rows*h, 4)  // x, yw, dy, dx
	t.add(gpuActivations, A, rows*ei, 4) // act, da, dg, du
	if r == 0 {
		return
	}
	if serial {
		// Each expert's B gathered alone, and its gradient.
		act(A, max(ei, h)*r)
		act(F, max(ei, h)*r)
		return
	}
	for _, out := range []int64{ei, ei, h} {
		act(A, E*out*r) // B of every expert
		act(F, E*out*r) // its gradient
		act(A, n*K*r)   // dy·B of the routed rows
	}
}

// ExpertLayers is the number of layers with a mixture of experts.
func (s Shape) ExpertLayers() int64 { return s.moeLayers }

// Experts is the number of experts of a mixture-of-experts layer and
// their intermediate size (0, 0 without experts).
func (s Shape) Experts() (experts, inter int64) { return s.experts, s.ei }
