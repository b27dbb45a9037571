// Package plan estimates, before any training, how much memory and time each
// fine-tuning method of gotune needs for a model, batch and sequence length,
// and recommends one. The memory model follows what gotune allocates, buffer
// by buffer (model.DeviceModel on the CPU backend, the PEFT adapters' own
// buffers, the optimizer), plus a calibrated allowance for the Go runtime.
//
// What differs between methods (their trainable values and buffers, how
// they hold the model, what they add to a sequence and to a step) is each
// method's Row, defined in package method beside the method; this package
// keeps the arithmetic they share and never names a method to count it.
package plan

import (
	"errors"
	"fmt"
	"runtime"

	"gotune/compute"
	"gotune/model"
	"gotune/quant"
)

// Method names a row of the planner's table: a fine-tuning method or a
// variant of one (LoRA's rows are lora, dora and qlora-nf4).
type Method string

// The rows the advice of recommend names: it is policy about which method
// suits which data, so it speaks of rows by name. Package method defines
// every row, these included.
const (
	Full   Method = "full"
	LoRA   Method = "lora"
	QLoRA  Method = "qlora-nf4"
	Prompt Method = "prompt-tuning"
	Prefix Method = "prefix-tuning"
	IA3    Method = "ia3"
)

// Row is one method as the planner counts it. Package method defines the
// rows next to each method's implementation, so what a method allocates and
// computes is written where the method is, and the planner keeps only the
// arithmetic every method shares (the model, its workspace, the runtime).
type Row struct {
	Method Method
	// Footprint is what the method holds for a model and run; o has its
	// defaults applied.
	Footprint func(s Shape, o Options) (Footprint, error)
	// Work is what one step computes beyond the model's forward and
	// input-gradient products; nil when nothing.
	Work func(p Pass) Work
}

// Footprint is a method's share of the memory estimate.
type Footprint struct {
	// Trainable is the number of values the optimizer updates; each has a
	// float32 gradient and two AdamW moments.
	Trainable int64
	// Tensors lists the trainable values by tensor (their sizes add up to
	// Trainable). The optimizer keeps its state per tensor and 8-bit AdamW
	// keeps only tensors of compute.Adam8MinSize values or more in 8 bits,
	// so the state's size depends on the sizes, not only on their sum.
	Tensors []Tensors
	// Base is the bytes of the model's own weights as the method holds
	// them, and Format the storage of its projections (f32, bf16, nf4,
	// nf4-dq).
	Base   int64
	Format string
	// Adapter: the trained values are the method's own (adapter weights,
	// virtual tokens), held in float32 beside the model; otherwise they
	// are among the model's weights (full and freeze tuning).
	Adapter bool
	// Buffers counts the float32 values of the method's own buffers that
	// checkpointing does not reduce (its scratch, shared by the layers).
	Buffers int64
	// Kept counts the float32 values the method keeps for the backward
	// pass over all layers (saved inputs and outputs); with checkpointing
	// one layer's share is kept at a time.
	Kept int64
	// Pooled is bytes of process-wide pooled buffers the method adds to
	// the runtime.
	Pooled int64
	// Virtual is the tokens prepended to every sequence, Prefix the keys
	// and values prepended to every layer's attention.
	Virtual, Prefix int64
	// Hooks: the method runs inside the layers (sub-layer hooks), which
	// keeps one more gradient buffer.
	Hooks bool
	Notes []string
}

// Tensors is Count trainable tensors of Size values each.
type Tensors struct{ Size, Count int64 }

// AdamStateBytes is the AdamW state model.DeviceModel allocates for one
// trainable tensor of n values: two float32 moments, or with 8-bit state
// (adam8, and n at least compute.Adam8MinSize) a byte per value of each
// moment and a float32 scale per compute.Adam8Block values of each, the
// tensor padded to whole blocks (its arena places every 8-bit tensor on a
// block boundary, so a block never spans two tensors).
func AdamStateBytes(n int64, adam8 bool) int64 {
	if !adam8 || n < compute.Adam8MinSize {
		return 8 * n
	}
	blocks := (n + compute.Adam8Block - 1) / compute.Adam8Block
	return blocks * 2 * (compute.Adam8Block + 4)
}

// optimizerBytes is the AdamW state of a footprint's trainable tensors.
func optimizerBytes(fp Footprint, adam8 bool) (int64, error) {
	if fp.Tensors == nil {
		if adam8 && fp.Trainable > 0 {
			return 0, fmt.Errorf("the row lists no trainable tensors, which 8-bit AdamW's state needs")
		}
		return 8 * fp.Trainable, nil
	}
	var n, bytes int64
	for _, t := range fp.Tensors {
		if t.Size < 0 || t.Count < 0 {
			return 0, fmt.Errorf("trainable tensors: %d of %d values", t.Count, t.Size)
		}
		n += t.Count * t.Size
		bytes += t.Count * AdamStateBytes(t.Size, adam8)
	}
	if n != fp.Trainable {
		// The row's two counts disagree: its code, not the user's input.
		return 0, fmt.Errorf("trainable tensors add up to %d values, the row trains %d", n, fp.Trainable)
	}
	return bytes, nil
}

// Pass is one step as a row's Work sees it.
type Pass struct {
	Shape   Shape
	Options Options // defaults applied
	// Tokens is the positions of one step (batch × sequence, virtual
	// tokens included); Products the multiply-adds per token of the
	// model's projections (a mixture of experts' active ones).
	Tokens, Products float64
	Trainable        int64
	Checkpoint       bool
}

// Work is a method's share of one step's floating-point operations.
type Work struct {
	// WeightGrads: the weight gradients of the model's own projections.
	WeightGrads float64
	// HeadGrad: the head's weight gradient is computed too.
	HeadGrad bool
	// Own are the method's own products, added to the step in this order:
	// the planner prints FLOPs in full, and float sums depend on order.
	Own []float64
	// NF4 is the share of the model's products done with an NF4 weight,
	// timed at its own rate.
	NF4 float64
}

// Options are the run's shape and the methods' hyperparameters. Zero values
// take the defaults listed with each field.
type Options struct {
	Batch int // sequences per step; 1
	Seq   int // tokens per sequence; 1024
	// LoRARank is the rank of LoRA, DoRA and QLoRA (all seven projections
	// of every layer targeted, as lora_target: all); 16.
	LoRARank int
	// Virtual is num_virtual_tokens of prompt tuning, P-tuning and prefix
	// tuning; 20.
	Virtual int
	// BottleneckSize is the hidden size of the bottleneck adapters (Houlsby
	// placement: after attention and after the MLP); 64.
	BottleneckSize int
	// FreezeLayers is freeze_trainable_layers (the last n layers train); 2.
	FreezeLayers int
	// Storage is how the frozen projections of LoRA, DoRA and the prompt,
	// IA3 and adapter methods are held: model.F32 (default) or model.BF16.
	Storage model.DType
	// SingleQuant turns off QLoRA's double quantization (on by default, as
	// in LLaMA-Factory).
	SingleQuant bool
	// SourceBytes is the size of the safetensors files, which are mapped
	// and read whole while the model loads; 0 for a randomly initialised
	// model (gotune bench).
	SourceBytes int64
	// GFLOPS and NF4GFLOPS are the measured throughputs of float32 matrix
	// products and of products with an NF4 weight; 0 leaves step times out.
	GFLOPS, NF4GFLOPS float64
	// MExps is the measured rate of exponentials (millions per second) of
	// the softmaxes and SiLUs; 0 leaves them out of step times.
	MExps float64
	// Runtime is the resident size of an idle gotune process (Go runtime,
	// binary, BLAS library); 0 means DefaultRuntime.
	Runtime int64
	// Steps is the number of training steps of the run (a warm-up step
	// included); 0 means a long run. Each step leaves garbage (attention
	// tiles, head rows) that the Go collector frees only when the heap
	// reaches GOGC% above the live heap, so a long run's peak includes
	// that headroom in full.
	Steps int64
	// GOGC is the collector's setting; 0 means 100 (Go's default), a
	// negative value means collection is off.
	GOGC int
	// Threads is the number of workers of the attention kernels; 0 means
	// GOMAXPROCS.
	Threads int
	// Adam8bit: AdamW keeps its moments block-wise in 8 bits (optim
	// adamw_8bit and its aliases adamw_bnb_8bit, paged_adamw_8bit).
	Adam8bit bool
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Batch, 1)
	def(&o.Seq, 1024)
	def(&o.LoRARank, 16)
	def(&o.Virtual, 20)
	def(&o.BottleneckSize, 64)
	def(&o.FreezeLayers, 2)
	if o.Storage == "" {
		o.Storage = model.F32
	}
	if o.Runtime <= 0 {
		o.Runtime = DefaultRuntime
	}
	if o.GOGC == 0 {
		o.GOGC = 100
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Batch < 0 || o.Seq < 0 || o.LoRARank < 0 || o.Virtual < 0 || o.BottleneckSize < 0:
		return fmt.Errorf("plan: batch, seq, lora rank, virtual tokens and bottleneck size must not be negative")
	case o.Storage != "" && o.Storage != model.F32 && o.Storage != model.BF16:
		return fmt.Errorf("plan: storage %q: want f32 or bf16", o.Storage)
	case o.SourceBytes < 0:
		return fmt.Errorf("plan: source bytes must not be negative")
	}
	return nil
}

// DefaultRuntime is the resident size of a gotune process before it
// allocates a model: Go runtime, binary text, the CPU backend's worker pool
// and per-worker packing buffers, measured with gotune bench on the
// smallest shapes (ref-llama, ref-qwen2, ref-qwen3, tiny: 5–7 MiB above the
// activations and weights counted here once the CPU ran the block over the
// compute seam; the workspace it replaced needed 22 MiB).
const DefaultRuntime = 28 << 20

// Memory is an estimate of resident bytes by what holds them.
type Memory struct {
	// Weights: the model (f32 embeddings, norms and biases; projections in
	// WeightFormat) plus the trained adapter or prompt parameters.
	Weights int64 `json:"weights"`
	// Grads: a float32 gradient per trainable value.
	Grads int64 `json:"grads"`
	// Optimizer: AdamW's two float32 moments per trainable value, or with
	// Options.Adam8bit its 8-bit codes and block scales (AdamStateBytes).
	Optimizer int64 `json:"optimizer"`
	// Activations: the workspace (saved layer outputs, residual streams,
	// attention scratch, chunked head logits, backward scratch) and the
	// adapters' saved inputs and outputs.
	Activations int64 `json:"activations"`
	// Runtime: the idle process plus the Go collector's headroom for
	// garbage made by each step.
	Runtime int64 `json:"runtime"`
	// Load: the peak while the model loads (f32 weights, mapped source
	// files, conversions), when it exceeds the training peak it is what
	// Total reports.
	Load int64 `json:"load"`
	// Total is the expected peak resident size (VmHWM).
	Total int64 `json:"total"`
}

// Estimate is the planner's verdict on one method.
type Estimate struct {
	Method          Method `json:"method"`
	TrainableParams int64  `json:"trainable_params"`
	// Adapter is the footprint's: the trained values are the method's own.
	Adapter      bool   `json:"-"`
	WeightFormat string `json:"weight_format"` // f32, bf16 or nf4 (the projections)
	Memory       Memory `json:"memory"`
	// MemoryCheckpoint is with gradient checkpointing.
	MemoryCheckpoint Memory `json:"memory_checkpoint"`
	// StepFLOPs counts the floating-point operations of one optimizer step
	// of Batch sequences (forward, backward, checkpoint recomputation).
	StepFLOPs           float64 `json:"step_flops"`
	StepFLOPsCheckpoint float64 `json:"step_flops_checkpoint"`
	// StepSeconds are StepFLOPs divided by the measured throughputs; 0
	// when no throughput was given.
	StepSeconds           float64  `json:"step_seconds"`
	StepSecondsCheckpoint float64  `json:"step_seconds_checkpoint"`
	Notes                 []string `json:"notes,omitempty"`
}

// Shape is a model's sizes as every formula uses them, in int64.
type Shape struct {
	V, h, qd, kd, inter, L, heads, kvh, hd int64
	tied, qkNorm                           bool
	linBias                                int64 // bias values per layer
	// Which biases and norms a layer has and which projections are held
	// fused (q/k/v, gate/up), for the list of its tensors.
	attnBias, attnOutBias, mlpBias  bool
	sandwich, fusedQKV, fusedGateUp bool
	normsPerLayer                   int64
	// Mixture of experts, beyond the dense formulas (which count a dense
	// MLP in every layer): moeHeld the expert weights held instead,
	// moeActive those a token runs through instead (with the router's);
	// routers are float32 values kept with the dense ones.
	moeHeld, moeActive     int64
	moeLayers, experts, ei int64
}

func shapeOf(c *model.Config) Shape {
	s := Shape{V: int64(c.Vocab), h: int64(c.Hidden), qd: int64(c.QDim()), kd: int64(c.KVDim()),
		inter: int64(c.Intermediate), L: int64(c.Layers), heads: int64(c.Heads), kvh: int64(c.KVHeads),
		hd: int64(c.HeadDim), tied: c.TieEmbeddings, qkNorm: c.QKNorm,
		attnBias: c.AttnBias, attnOutBias: c.AttnOutBias, mlpBias: c.MLPBias,
		sandwich: c.SandwichNorms, fusedQKV: c.FusedQKV, fusedGateUp: c.FusedGateUp}
	if c.AttnBias {
		s.linBias += s.qd + 2*s.kd
	}
	if c.AttnOutBias {
		s.linBias += s.h
	}
	if c.MLPBias {
		s.linBias += 2*s.inter + s.h
	}
	s.normsPerLayer = 2 * s.h
	if c.QKNorm {
		s.normsPerLayer += 2 * s.hd
	}
	if c.SandwichNorms {
		s.normsPerLayer += 2 * s.h
	}
	for i := 0; i < c.Layers; i++ {
		if c.IsMoE(i) {
			E, k, ei := int64(c.Experts), int64(c.TopK), int64(c.ExpertIntermediate)
			s.moeHeld += E*3*s.h*ei - 3*s.h*s.inter
			s.moeActive += k*3*s.h*ei + E*s.h - 3*s.h*s.inter
			s.moeLayers, s.experts, s.ei = s.moeLayers+1, E, ei
		}
	}
	return s
}

// linears lists the projections of one layer as {out, in}.
func (s Shape) linears() [][2]int64 {
	return [][2]int64{{s.qd, s.h}, {s.kd, s.h}, {s.kd, s.h}, {s.h, s.qd},
		{s.inter, s.h}, {s.inter, s.h}, {s.h, s.inter}}
}

// linearParams is the weight count of one layer's projections.
func (s Shape) linearParams() int64 {
	var n int64
	for _, l := range s.linears() {
		n += l[0] * l[1]
	}
	return n
}

// dense counts the values the model holds in float32 whatever the storage
// of the projections: embeddings, untied head, norms, biases.
func (s Shape) dense() int64 {
	n := s.V*s.h + s.h + s.L*(s.normsPerLayer+s.linBias) + s.moeLayers*s.experts*s.h
	if !s.tied {
		n += s.V * s.h
	}
	return n
}

func (s Shape) params() int64 { return s.dense() + s.L*s.linearParams() + s.moeHeld }

// layerTensors lists one layer's tensors as the dense formulas count them
// (LayerParams): norms, projections (fused where the family fuses them)
// and biases; mlp false leaves the MLP's projections out.
func (s Shape) layerTensors(mlp bool) []Tensors {
	t := []Tensors{{s.h, 2}} // input and post-attention norms
	add := func(size int64) { t = append(t, Tensors{size, 1}) }
	if s.qkNorm {
		t = append(t, Tensors{s.hd, 2})
	}
	if s.sandwich {
		t = append(t, Tensors{s.h, 2})
	}
	if s.fusedQKV {
		add((s.qd + 2*s.kd) * s.h)
	} else {
		add(s.qd * s.h)
		t = append(t, Tensors{s.kd * s.h, 2})
	}
	add(s.h * s.qd)
	if mlp {
		if s.fusedGateUp {
			add(2 * s.inter * s.h)
		} else {
			t = append(t, Tensors{s.inter * s.h, 2})
		}
		add(s.h * s.inter)
	}
	if s.attnBias {
		if s.fusedQKV {
			add(s.qd + 2*s.kd)
		} else {
			add(s.qd)
			t = append(t, Tensors{s.kd, 2})
		}
	}
	if s.attnOutBias {
		add(s.h)
	}
	if s.mlpBias {
		if s.fusedGateUp {
			add(2 * s.inter)
		} else {
			t = append(t, Tensors{s.inter, 2})
		}
		add(s.h)
	}
	return t
}

// paramTensors lists every tensor of the model (Params values in all).
func (s Shape) paramTensors() []Tensors {
	t := []Tensors{{s.V * s.h, 1}, {s.h, 1}} // embeddings, final norm
	if !s.tied {
		t = append(t, Tensors{s.V * s.h, 1})
	}
	for _, l := range s.layerTensors(true) {
		t = append(t, Tensors{l.Size, l.Count * (s.L - s.moeLayers)})
	}
	if s.moeLayers > 0 {
		for _, l := range s.layerTensors(false) {
			t = append(t, Tensors{l.Size, l.Count * s.moeLayers})
		}
		// The router and every expert's gate, up and down projections.
		t = append(t, Tensors{s.experts * s.h, s.moeLayers}, Tensors{s.ei * s.h, 2 * s.experts * s.moeLayers},
			Tensors{s.h * s.ei, s.experts * s.moeLayers})
	}
	return t
}

// The sizes the rows' footprints use.

func (s Shape) Layers() int64       { return s.L }
func (s Shape) Hidden() int64       { return s.h }
func (s Shape) KVDim() int64        { return s.kd }
func (s Shape) Intermediate() int64 { return s.inter }

// Linears lists the projections of one layer as {out, in}: q, k, v, o,
// gate, up, down (a dense MLP's, also in a mixture of experts).
func (s Shape) Linears() [][2]int64 { return s.linears() }

// Params is the model's parameter count.
func (s Shape) Params() int64 { return s.params() }

// Dense counts the values held in float32 whatever the storage of the
// projections (embeddings, head, norms, biases, routers).
func (s Shape) Dense() int64 { return s.dense() }

// LayerParams is the values of one layer without experts: projections,
// norms and biases.
func (s Shape) LayerParams() int64 { return s.linearParams() + s.normsPerLayer + s.linBias }

// ParamTensors lists the model's tensors by size (Params values in all):
// what full fine-tuning trains.
func (s Shape) ParamTensors() []Tensors { return s.paramTensors() }

// LayerTensors lists the tensors of one layer without experts
// (LayerParams values in all).
func (s Shape) LayerTensors() []Tensors { return s.layerTensors(true) }

// F32 is the bytes of the whole model in float32.
func (s Shape) F32() int64 { return 4 * s.params() }

// Frozen is the bytes of the model with its projections stored as o.Storage
// asks (the frozen base of the adapter methods), and that storage's name.
func (s Shape) Frozen(o Options) (int64, string) {
	st := quant.Options{Type: quant.F32}
	if o.Storage == model.BF16 {
		st.Type = quant.BF16
	}
	held, err := s.Projections(func(out, in int64) (int64, error) { return quant.BytesFor(int(out), int(in), st) })
	if err != nil {
		panic(err) // BytesFor fails only on quantized types
	}
	return 4*s.dense() + held, st.Type.String()
}

// Projections is the bytes of every projection, the experts' included,
// when a projection of out×in values takes held(out, in) bytes (a
// quantized format's blocks and scales).
func (s Shape) Projections(held func(out, in int64) (int64, error)) (int64, error) {
	var n int64
	for _, l := range s.linears() {
		b, err := held(l[0], l[1])
		if err != nil {
			return 0, err
		}
		n += s.L * b
	}
	if s.moeLayers > 0 {
		// the experts' projections instead of a dense MLP's
		up, err1 := held(s.ei, s.h)
		down, err2 := held(s.h, s.ei)
		dup, err3 := held(s.inter, s.h)
		ddown, err4 := held(s.h, s.inter)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return 0, err
		}
		n += s.moeLayers * (s.experts*(2*up+down) - (2*dup + ddown))
	}
	return n, nil
}

// run is what the activation formulas depend on beyond the model.
type run struct {
	B, T    int64 // T includes virtual tokens
	threads int64 // workers of the attention kernels
	prefix  int64 // prefix-tuning keys/values per layer
	hooks   bool  // sub-layer hooks (bottleneck adapters)
	rows    int64 // rows with a target (the head's work)
}

// activations is the float32 count (4-byte values) of what the block over
// the compute seam (model.DeviceModel) holds for one step on the CPU
// backend: every block's kept activations (one shared set with
// checkpointing, which recomputes a block in backward), the residual
// stream, and the scratch every block shares, at its largest.
func (s Shape) activations(r run, checkpoint bool) int64 {
	n := r.B * r.T
	tk := r.T + r.prefix
	sets := s.L
	if checkpoint {
		sets = 1
	}
	// One block's kept values (model/device_step.go prepareShape): rstd1,
	// q, k, v by head (prefix steps first), lse, attention output, xmid,
	// rstd2, gate and up.
	act := n + n*s.qd + n*s.kd + (n+r.B*r.prefix)*s.kd + r.B*s.heads*r.T + n*s.qd + n*s.h + n + 2*n*s.inter
	if s.qkNorm {
		act += n * (s.heads + s.kvh)
	}
	total := sets * act
	total += (s.L + 1) * n * s.h // residual stream
	total += n*s.h + n + 4*n     // final norm's input and rstd; ids, positions, mask, segments
	// Scratch shared by the blocks, the larger of forward and backward:
	// normed inputs, rotated q and k, attention output by head and the o
	// projection, the activated MLP input; in backward the residual's and
	// norm's gradients, the MLP's three, and attention's: dq, dk, dv by
	// head and by token, the key/value gradients of every key step, dsum.
	fwd := 2*n*s.h + n*s.kd + 2*n*s.qd + r.B*tk*s.kd + n*s.h + n*s.inter
	bwd := 3*n*s.h + 3*n*s.inter + 3*n*s.qd + 2*n*s.kd + 2*r.B*tk*s.kd + 2*n*s.kd + r.B*s.heads*r.T
	if s.qkNorm {
		bwd += n * (s.qd + s.kd)
	}
	total += max(fwd, bwd)
	// The head, a chunk of rows at a time: the rows' states, logits and
	// their gradient; the final norm's input gradient.
	chunk := int64(model.HostHeadChunk(int(s.V), int(r.rows)))
	total += 2*chunk*s.V + 2*chunk*s.h + n*s.h
	// The CPU backend's fused attention keeps per core, between calls, a
	// block of about 192 query rows' scores and their gradient over the
	// keys, the block's queries, output gradient and output, and partial
	// key/value gradients of the heads it shares with another core.
	total += r.threads * (2*192*tk + 3*192*s.hd + 4*tk*s.hd)
	// RoPE cos/sin tables for the positions of a step.
	total += 2 * (r.T + r.prefix) * s.hd
	if r.hooks {
		total += n * s.h
	}
	return total
}

// headRows is the number of positions with a target: every one but the
// last of each sequence when every token is trained.
func headRows(b, t int64) int64 { return b * max(t-1, 0) }

// EstimateMethod computes the memory and FLOPs of one row for a model.
func EstimateMethod(c *model.Config, row Row, opt Options) (Estimate, error) {
	if err := opt.validate(); err != nil {
		return Estimate{}, err
	}
	if c == nil || c.Hidden <= 0 || c.Layers <= 0 || c.Vocab <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.Intermediate <= 0 {
		return Estimate{}, fmt.Errorf("plan: model configuration has a non-positive size")
	}
	if row.Footprint == nil {
		return Estimate{}, fmt.Errorf("plan: method %q has no footprint", row.Method)
	}
	o := opt.withDefaults()
	s := shapeOf(c)
	fp, err := row.Footprint(s, o)
	if err != nil {
		return Estimate{}, fmt.Errorf("plan: %s: %w", row.Method, err)
	}
	B, T := int64(o.Batch), int64(o.Seq)
	r := run{B: B, T: T + fp.Virtual, prefix: fp.Prefix, hooks: fp.Hooks, rows: headRows(B, T)}

	optimizer, err := optimizerBytes(fp, o.Adam8bit)
	if err != nil {
		return Estimate{}, fmt.Errorf("plan: %s: %w", row.Method, err)
	}

	e := Estimate{Method: row.Method, WeightFormat: fp.Format, Adapter: fp.Adapter}
	trainable := fp.Trainable
	weights := fp.Base
	if fp.Adapter {
		weights += 4 * trainable
	}
	e.TrainableParams = trainable

	// Loading: f32 model and the mapped files; converting to bf16 or nf4
	// holds both forms at once.
	load := s.F32() + o.SourceBytes
	if e.WeightFormat != "f32" {
		load += fp.Base - 4*s.dense()
	}

	for _, ckpt := range []bool{false, true} {
		mem := Memory{Weights: weights, Grads: 4 * trainable, Optimizer: optimizer}
		r.threads = int64(max(o.Threads, 1))
		ws := s.activations(r, ckpt)
		kept := fp.Kept
		if ckpt {
			kept /= max(s.L, 1)
		}
		mem.Activations = 4 * (ws + fp.Buffers + kept)
		live := mem.Weights + mem.Grads + mem.Optimizer + mem.Activations
		mem.Runtime = o.Runtime + fp.Pooled + gcHeadroom(live, garbagePerStep(s, r, o.Threads, ckpt), o.Steps, o.GOGC)
		train := live + mem.Runtime
		mem.Load = load + o.Runtime
		mem.Total = max(train, mem.Load)
		flops, nf4 := s.stepFLOPs(row.Work, o, r, trainable, ckpt)
		secs := 0.0
		if o.GFLOPS > 0 {
			secs = flops / (o.GFLOPS * 1e9)
			if o.MExps > 0 {
				secs += s.stepExps(r, ckpt) / (o.MExps * 1e6)
			}
			if nf4 > 0 {
				rate := o.NF4GFLOPS
				if rate <= 0 {
					rate = o.GFLOPS
				}
				secs += nf4 / (rate * 1e9)
			}
		}
		if ckpt {
			e.MemoryCheckpoint, e.StepFLOPsCheckpoint, e.StepSecondsCheckpoint = mem, flops+nf4, secs
		} else {
			e.Memory, e.StepFLOPs, e.StepSeconds = mem, flops+nf4, secs
		}
	}
	e.Notes = append(e.Notes, fp.Notes...)
	if e.Memory.Load >= e.Memory.Total {
		e.Notes = append(e.Notes, "peak is reached while loading")
	}
	return e, nil
}

// garbagePerStep is what one step allocates and drops (bytes): the
// attention kernels' per-worker tiles (forward scores; backward p and dp),
// the head's row copies and index lists, prefix tuning's gradient splits.
func garbagePerStep(s Shape, r run, threads int, checkpoint bool) int64 {
	workers := min(int64(threads), r.B*s.heads)
	tk := r.T + r.prefix
	tile := min(128, r.T) * tk
	fwd := int64(1)
	if checkpoint {
		fwd = 2
	}
	// Attention tiles and the head's buffers are reused across steps; only
	// prefix tuning's gradient splits remain garbage.
	_, _, _ = workers, tile, fwd
	var g int64
	if r.prefix > 0 {
		g += s.L * (2*r.B*r.prefix*s.kd + 2*r.B*r.T*s.kd + fwd*r.B*tk) * 4
	}
	return g
}

// gcHeadroom is the garbage resident at the peak: what the run makes, up
// to the heap growth the collector allows before it reclaims any.
func gcHeadroom(live, perStep, steps int64, gogc int) int64 {
	made := perStep * steps
	if gogc < 0 {
		if steps <= 0 {
			return live * 10 // unbounded; make it obvious
		}
		return made
	}
	limit := live * int64(gogc) / 100
	if steps <= 0 || made > limit {
		return limit
	}
	return made
}

// stepExps counts the exponentials of one step: the head's softmax over
// the vocabulary, attention's softmax (recomputed in backward), SiLU in
// the MLP forward and backward.
func (s Shape) stepExps(r run, checkpoint bool) float64 {
	fwd := 1.0
	if checkpoint {
		fwd = 2
	}
	pairs := float64(r.B) * float64(s.heads) * (float64(r.T)*float64(r.T+1)/2 + float64(r.T*r.prefix)) * float64(s.L)
	silu := float64(r.B*r.T) * float64(s.inter) * float64(s.L)
	return float64(r.rows)*float64(s.V) + (fwd+1)*(pairs+silu)
}

// stepFLOPs counts one step's floating-point operations: float32 ones and
// those of products with an NF4 weight (QLoRA's forward and input-gradient
// products).
func (s Shape) stepFLOPs(work func(Pass) Work, o Options, r run, trainable int64, checkpoint bool) (f32, nf4 float64) {
	n := float64(r.B * r.T)
	lin := float64(s.L*s.linearParams() + s.moeActive)
	// Causal attention: q·kᵀ and p·v over about half the (query, key) pairs,
	// plus the prefix keys which every query sees.
	pairs := float64(r.B) * float64(s.heads) * (float64(r.T)*float64(r.T+1)/2 + float64(r.T*r.prefix))
	attn := 2 * 2 * pairs * float64(s.hd) * float64(s.L)
	head := 2 * float64(r.rows) * float64(s.V) * float64(s.h)

	var w Work
	if work != nil {
		w = work(Pass{Shape: s, Options: o, Tokens: n, Products: lin, Trainable: trainable, Checkpoint: checkpoint})
	}
	fwdLin := 2 * n * lin
	// Backward: input gradients of every projection always (gradients must
	// reach the earliest trained value), weight gradients for trained ones.
	bwdLin := 2 * n * lin
	layerFwd := fwdLin + attn
	f := fwdLin + attn + head + // forward
		bwdLin + w.WeightGrads + 2*attn + head // backward
	if w.HeadGrad {
		f += head // the tied or untied head's weight gradient
	}
	if checkpoint {
		f += layerFwd
	}
	for _, x := range w.Own {
		f += x
	}
	return f - w.NF4, w.NF4
}
