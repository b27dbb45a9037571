// Package compute defines the seam between the model code and the devices
// that run it: a Backend owns memory (Tensors) and launches the operations a
// training step needs on it. Nothing above this package knows whether the
// numbers live in host memory or on a GPU.
package compute

import "fmt"

// DType is the element type of a Tensor.
type DType uint8

const (
	F32 DType = iota + 1
	BF16
	I32
	U8
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16:
		return 2
	case U8:
		return 1
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case I32:
		return "i32"
	case U8:
		return "u8"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Tensor is a flat array of elements owned by a backend. Shapes are the
// caller's business: operations take their sizes as arguments, as BLAS does.
type Tensor interface {
	DType() DType
	Len() int
	// Slice is a view of n elements from off, sharing memory.
	Slice(off, n int) Tensor
	// Free returns the memory to the backend; views are not freed.
	Free()
}

// AdamStep holds the scalars of one AdamW update of one parameter
// (torch.optim.AdamW): p ← p·Decay − StepSize·m / (√v / BC2Sqrt + Eps), with
// the gradient multiplied by GradScale first (clipping).
type AdamStep struct {
	GradScale, Decay, Beta1, Beta2, StepSize, BC2Sqrt, Eps float32
}

// OpTime is the time a backend spent in one kind of operation while
// profiling (see the StartProfile/StopProfile methods some backends have).
type OpTime struct {
	Op    string
	Calls int
	MS    float64
}

// MemStats is a backend's memory use in bytes.
type MemStats struct {
	InUse, Peak, Cached int64
}

// Backend is one device. Operations are queued in order and may run
// asynchronously; the first failure is kept and returned by Err, Download
// and Sync. Row-major conventions throughout: a matrix of r rows and leading
// dimension ld has element (i, j) at i·ld + j.
type Backend interface {
	Name() string
	Alloc(dt DType, n int) (Tensor, error)
	Upload(dst Tensor, src []float32)
	UploadInt(dst Tensor, src []int32)
	UploadBytes(dst Tensor, src []byte)
	Download(dst []float32, src Tensor) error
	Zero(t Tensor)
	Fill(t Tensor, v float32)
	Sync() error
	Err() error
	MemStats() MemStats

	// Gemm computes C = alpha·op(A)·op(B) + beta·C with op(A) m×k and
	// op(B) k×n; GemmBatched does batch such products at fixed strides.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a Tensor, lda int, b Tensor, ldb int, beta float32, c Tensor, ldc int)
	GemmBatched(transA, transB bool, m, n, k int, alpha float32, a Tensor, lda, strideA int, b Tensor, ldb, strideB int, beta float32, c Tensor, ldc, strideC, batch int)

	Cast(dst, src Tensor)
	Add(dst, a, b Tensor)
	// Axpby computes y = beta·y + alpha·x; y may be F32 while x is BF16.
	Axpby(y Tensor, alpha float32, x Tensor, beta float32)
	SwiGLU(a, g, u Tensor)
	SwiGLUBackward(dg, du, da, g, u Tensor)
	// RMSNorm normalises rows of width d: y = x·rstd·(w + wadd).
	RMSNorm(y, rstd, x, w Tensor, rows, d int, eps, wadd float32)
	RMSNormBackward(dx, dy, x, w, rstd Tensor, rows, d int, wadd float32, accumulate bool)
	// RMSNormWeightGrad accumulates dw += Σ_rows dy·x·rstd in a fixed order.
	RMSNormWeightGrad(dw, dy, x, rstd Tensor, rows, d int)
	// AddBias adds F32 b to each of rows rows of y; BiasGrad accumulates
	// db += Σ_rows dy in a fixed order.
	AddBias(y, b Tensor, rows, d int)
	BiasGrad(db, dy Tensor, rows, d int)
	// RopeSplit rotates token-major [B,T,H,hd] src into head-major
	// [B,H,T,hd] dst (rot = 0: a plain transpose); RopeMerge is its
	// transpose (the backward pass), adding into dst when accumulate is set.
	// pos is [B·T] (nil: 0…T-1); cos, sin are [positions, hd].
	RopeSplit(dst, src, pos, cos, sin Tensor, b, t, heads, hd, rot int)
	// RopeSplitInto is RopeSplit into time steps [dstOff, dstOff+t) of a
	// head-major dst holding dstT steps per head (a key/value cache).
	RopeSplitInto(dst, src, pos, cos, sin Tensor, b, t, heads, hd, rot, dstT, dstOff int)
	RopeMerge(dst, src, pos, cos, sin Tensor, b, t, heads, hd, rot int, accumulate bool)
	// AttnSoftmax turns scaled scores [B,H,Tq,Tk] into probabilities with
	// causal (key j ≤ off + i), key-mask and segment masking, saving lse.
	AttnSoftmax(p, lse, s, kmask, qseg, kseg Tensor, b, h, tq, tk, off int)
	AttnSoftmaxBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg Tensor, b, h, tq, tk, off int)
	// ScaleCols writes y[r,j] = x[r,j]·s[j] for rows rows of width d (y may
	// be x); s is F32.
	ScaleCols(y, x, s Tensor, rows, d int)
	// ScaleRows writes y[r,j] = x[r,j]·s[r] (y may be x); s is F32.
	ScaleRows(y, x, s Tensor, rows, d int)
	// ColDot accumulates dst[j] += Σ_r a[r,j]·b[r,j] (F32 dst) in a fixed
	// order.
	ColDot(dst, a, b Tensor, rows, d int)
	// DoRAScale turns squared row norms into DoRA's factors, all F32:
	// inv = 1/√norm2 and scale = m·inv.
	DoRAScale(scale, inv, m, norm2 Tensor, n int)
	// RowDot writes out[r] = Σ_j a[r,j]·b[r,j].
	RowDot(out, a, b Tensor, rows, d int)
	// CrossEntropy writes loss[r] = logsumexp(logits[r]) − logits[r][t[r]]
	// and, when grad is not nil, grad = scale·(softmax − onehot).
	CrossEntropy(loss, grad, logits, targets Tensor, rows, vocab int, scale float32)
	GatherRows(dst, src, idx Tensor, rows, d int)
	ScatterAddRows(dst, src, idx Tensor, rows, d int)
	EmbeddingBackward(table, dx, ids Tensor, rows, d int)
	// Dequantize4 expands n 4-bit codes (two a byte, high nibble first) into
	// dst: code[q]·scales[e/block] (QLoRA's NF4/FP4 weights).
	Dequantize4(dst, packed, scales, code Tensor, n, block int)
	// AdamW updates F32 p with gradient g and state m, v; shadow (may be nil)
	// receives the new weights in its own dtype.
	AdamW(p, g, m, v, shadow Tensor, s AdamStep)
	// Dropout writes dst = keep·src where the mask (see DropoutKeeps) keeps
	// an element and 0 where it drops it, or adds that to dst when
	// accumulate is set (the backward pass applies the same mask).
	Dropout(dst, src Tensor, m DropoutMask, accumulate bool)
	// SumSquares returns Σx² of each tensor (F32), synchronously.
	SumSquares(ts []Tensor) ([]float64, error)

	// GemmSum computes C = t1 + t2 + beta·C for two products of one m×n
	// shape (a frozen layer and its low-rank update); a backend may do it
	// in one pass over C.
	GemmSum(m, n int, t1, t2 GemmTerm, beta float32, c Tensor, ldc int)

	// Dequantize8 expands n signed 8-bit codes (two's complement bytes)
	// into dst: int8(q[e])·scales[e/block] (absmax INT8 weights, the scale
	// already divided by 127).
	Dequantize8(dst, q, scales Tensor, n, block int)

	// Model families beyond the Llama kind (Gemma 2/3, Phi-3).

	// AttnSoftmaxWindowed is AttnSoftmax with Gemma's two changes: each
	// score s is first soft-capped to softcap·tanh(s/softcap) (softcap > 0),
	// and with window > 0 query i sees key j only when off + i − j < window
	// (a sliding-window layer), on top of the causal, key and segment masks.
	AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg Tensor, b, h, tq, tk, off, window int, softcap float32)
	// AttnSoftmaxWindowedBackward is AttnSoftmaxBackward of the same: p is
	// recomputed from the uncapped scores s, and ds = p·(dp − dsum)·(1 − t²)
	// with t = tanh(s/softcap) (t = 0 without a cap) is the gradient of s.
	AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg Tensor, b, h, tq, tk, off, window int, softcap float32)
	// GeGLU writes a = gelu_tanh(g)·u with gelu_tanh(x) =
	// x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))); GeGLUBackward writes dg and
	// du from da.
	GeGLU(a, g, u Tensor)
	GeGLUBackward(dg, du, da, g, u Tensor)
	// SoftCap writes y = c·tanh(x/c) (y may be x); SoftCapBackward writes
	// dx = dy·(1 − (y/c)²) from the capped values y, F32 (dx may be dy).
	SoftCap(y, x Tensor, c float32)
	SoftCapBackward(dx, dy, y Tensor, c float32)
	// Copy2D copies a rows×cols block: dst[r·ldd + j] = src[r·lds + j]
	// (views start at the block's first element; same dtype). It splits a
	// fused projection's output into its parts and joins their gradients.
	Copy2D(dst Tensor, ldd int, src Tensor, lds int, rows, cols int)

	// ---- PEFT methods beyond LoRA: bottleneck adapters, prompt encoders, SGD ----

	// Activate writes y = f(x) element-wise (y may be x), computed in float.
	Activate(y, x Tensor, f Activation)
	// ActivateBackward writes dx = dy·f'(x) element-wise (dx may be dy).
	ActivateBackward(dx, dy, x Tensor, f Activation)
	// SGD updates F32 p with gradient g as torch.optim.SGD (see SGDStep);
	// buf is the F32 momentum buffer (nil when Momentum is 0) and shadow
	// (may be nil) receives the new weights in its own dtype.
	SGD(p, g, buf, shadow Tensor, s SGDStep)
	// LSTMCell runs one step of rows LSTM cells of hidden units (torch's
	// nn.LSTM): pre [rows, 4·hidden] holds the gates' pre-activations in
	// torch's order (input, forget, cell, output); it writes the activated
	// gates i, f, g, o (σ, σ, tanh, σ) into gates, c = f·cPrev + i·g into c
	// [rows, hidden] (cPrev nil: zero) and h = o·tanh(c) into h, whose rows
	// are ldh apart. All tensors of one dtype, computed in float.
	LSTMCell(gates, c, h Tensor, ldh int, pre, cPrev Tensor, rows, hidden int)
	// LSTMCellBackward is LSTMCell's backward pass: with dh the gradient of
	// h (rows ldh apart) plus dhNext (nil: zero) and dc the gradient of c
	// from the next step (nil: zero), it writes the gradient of pre into
	// dpre and, when dcPrev is not nil, that of cPrev (the total dc·f;
	// dcPrev may be dc, each element read before it is written).
	LSTMCellBackward(dpre, dcPrev, dh Tensor, ldh int, dhNext, dc, gates, c, cPrev Tensor, rows, hidden int)

	// ---- Mixtures of experts: routing on the device, experts side by side ----

	// GemmGroup runs independent products (a layer's experts, each on its
	// own rows): a backend may run them in any order or at once, so no
	// job's C may be another job's operand or C. Terms of one job are
	// added in order.
	GemmGroup(jobs []GemmJob)
	// MoERoute routes n tokens from the router's F32 logits [n, experts]:
	// per token a softmax computed in float64, the topK most probable
	// experts best first (ties to the lower index) into sel [n, topK] I32,
	// their probabilities (divided by their sum when normTopK) into wts
	// [n, topK] F32, and probs [n, experts] F32. The slots t·topK+k are then
	// listed expert by expert, each expert's in token order: rows
	// [n·topK] I32 holds each listed slot's token, rowWts (F32) its weight,
	// pos [n·topK] I32 each slot's place in the list, and offs [experts+1]
	// F32 (whole numbers, for the host) where each expert's part begins.
	// stats (nil: none), F32 [3·experts], gets, over the tokens mask keeps
	// (I32, nil: all), how often each expert was chosen, then the float64
	// sum of its probability split in two F32 parts (high, then the rest).
	MoERoute(probs, sel, wts, rows, rowWts, pos, offs, stats, logits, mask Tensor, n, experts, topK int, normTopK bool)
	// MoERouterGrad writes dlogits [n, experts], the gradient of the router
	// logits, from dw (F32, the gradient of each listed slot's weight, in
	// MoERoute's order; pos maps a slot to its place) through the weights
	// (normalised when normTopK) and the softmax, in float64; aux (F32
	// [experts], nil: none) is added to the gradient of the probabilities
	// of every token mask (nil: all) keeps (the load-balancing loss).
	MoERouterGrad(dlogits, probs, sel, wts, pos, dw, aux, mask Tensor, n, experts, topK int, normTopK bool)
	// Transpose writes dst[j·rows + i] = src[i·cols + j] for a rows×cols
	// src (same dtype; views start at the first element): the experts'
	// interleaved parts of stacked LoRA matrices, gathered in one pass.
	Transpose(dst, src Tensor, rows, cols int)

	// ---- 8-bit AdamW (bitsandbytes' adamw_8bit; see qmap.go) ----

	// AdamW8bit is AdamW (see AdamStep) with both moments held block-wise
	// in 8 bits: U8 codes m8, v8 into DynamicMap(true) and DynamicMap(false)
	// with one F32 scale per block of block elements (mScale, vScale, of
	// Adam8Blocks(n, block) values; a last block may be short). Per block it
	// decodes the moments, updates them and the F32 weights p from gradient
	// g in float32 exactly as AdamW, then re-encodes them: the block's new
	// largest magnitude becomes its scale s, and each value x is coded as
	// Quantize8(x·(1/s)) (0 when s is 0). shadow (may be nil)
	// receives the new weights in its own dtype.
	AdamW8bit(p, g, m8, v8, mScale, vScale, shadow Tensor, s AdamStep, block int)
}

// Activation is an element-wise non-linearity.
type Activation uint8

const (
	ReLU     Activation = iota + 1 // max(x, 0); its derivative at 0 is 0, as torch's
	Tanh                           // tanh(x)
	SiLU                           // x·σ(x)
	GELU                           // x·Φ(x), the exact (erf) form
	GELUTanh                       // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
)

func (a Activation) String() string {
	switch a {
	case ReLU:
		return "relu"
	case Tanh:
		return "tanh"
	case SiLU:
		return "silu"
	case GELU:
		return "gelu"
	case GELUTanh:
		return "gelu_tanh"
	}
	return fmt.Sprintf("activation(%d)", uint8(a))
}

// SGDStep holds the scalars of one torch.optim.SGD update of one parameter:
// d = g·GradScale + WeightDecay·p; with Momentum μ ≠ 0, buf = d on the
// First update and buf·μ + (1 − Dampening)·d after, then d = d + μ·buf
// (Nesterov) or d = buf; finally p ← p − LR·d. All in float32.
type SGDStep struct {
	GradScale, LR, WeightDecay, Momentum, Dampening float32
	Nesterov, First                                 bool
}

// GemmTerm is one product alpha·op(A)·op(B) of GemmSum, op(A) m×K and
// op(B) K×n, stored as for Gemm.
type GemmTerm struct {
	TransA, TransB bool
	K              int
	Alpha          float32
	A              Tensor
	LDA            int
	B              Tensor
	LDB            int
}

// HostBackend is implemented by backends whose memory is the host's (the
// CPU backend). Wrap and WrapBytes make tensors over the caller's slices
// without copying, so a frozen weight is held once, by the model and the
// backend together. The caller must neither change nor reuse the slice
// while the tensor lives; the tensor is not counted in MemStats and Free
// leaves the slice alone.
type HostBackend interface {
	Wrap(src []float32) Tensor
	WrapBytes(src []byte) Tensor
	// WrapBF16 is a BF16 tensor over bfloat16 bits (a frozen weight loaded
	// in bf16), held in 16 bits. Only the operations that read frozen
	// weights take it: Gemm, GemmBatched and GemmSum as the B operand,
	// Axpby as x, Cast and GatherRows as the source, and Upload (rounding),
	// Download and Zero; any other operation fails.
	WrapBF16(src []uint16) Tensor
	// Floats is the host memory of an F32 tensor of this backend.
	Floats(t Tensor) []float32
}

// ComputeType is the element type a run that asks for bf16 (or not)
// computes in on be: bf16 where the backend has bf16 arithmetic (a GPU's
// tensor cores), f32 on a host backend, whose kernels are f32 — there a
// bf16 run keeps its frozen base in bf16 storage instead (half the memory),
// as the CPU has always done.
func ComputeType(be Backend, bf16 bool) DType {
	if _, host := be.(HostBackend); host || !bf16 {
		return F32
	}
	return BF16
}

// DropoutMask selects the elements dropout keeps: element i survives when
// DropoutKeeps(Seed, Thresh, i), and survivors are scaled by Keep. The mask
// is a function of the seed and the index alone, so it can be drawn in any
// order, recomputed in backward or by gradient checkpointing, and drawn the
// same on the CPU and on any device.
type DropoutMask struct {
	Seed, Thresh uint64
	Keep         float32
}

// NewDropoutMask is the mask of drop probability p (0 ≤ p < 1) for seed.
func NewDropoutMask(p float32, seed uint64) DropoutMask {
	return DropoutMask{Seed: seed, Thresh: uint64(float64(p) * (1 << 53)), Keep: 1 / (1 - p)}
}

// DropoutKeeps reports whether element i survives: the top 53 bits of a
// SplitMix64 hash of seed^i, read as a fraction of 2⁵³, are at least the
// drop probability.
func DropoutKeeps(seed, thresh uint64, i int) bool {
	x := seed ^ uint64(i)
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return x>>11 >= thresh
}
