package nn

import (
	"gotune/compute/cpu"
	"gotune/dtype"
)

// Linear is y = x·Wᵀ + b with W stored [Out, In] as Hugging Face stores it.
// The weight lives in one of three forms: float32 (W.Data), bfloat16 (WBF16,
// computed in float32) or a quantized matrix (Q). An Adapter (LoRA, DoRA,
// IA3…) wraps the base computation when set.
type Linear struct {
	Name    string // module path, e.g. "model.layers.0.self_attn.q_proj"
	In, Out int
	W       *Param
	WBF16   []uint16
	Q       QuantWeight
	B       *Param
	Adapter Adapter
	// PackedT (Wᵀ, for y = x·Wᵀ) and Packed (W, for dx = dy·W) are the frozen
	// float32 weight laid out once in the matrix kernel's panel format, so
	// that MatMul and InputGrad skip re-packing (for the forward, a
	// transpose) it on every call. Prepack builds them; each costs another
	// In·Out floats (padded up to the kernel's panel width) beside W.Data.
	PackedT, Packed *cpu.PackedB
	// Siblings, when above 1, is how many layers like this one run side
	// by side, each on its share of the cores: a mixture's experts, whose
	// products (tens of rows each) are too small to split across all of
	// them.
	Siblings int
}

// Threads is how many goroutines the layer's products may use (for
// adapters' own products, with the cpu …On functions): its share of the
// cores, at least one.
func (l *Linear) Threads() int {
	return max(1, cpu.Threads()/max(1, l.Siblings))
}

// Prepack builds PackedT and Packed from W.Data. It does nothing for bf16 or
// quantized weights, or for a trainable W (the copies would go stale after
// each optimizer step). Whoever changes W.Data afterwards (merging an
// adapter, loading) must call DropPacked or Prepack again. Memory: two more
// copies of the weight, 8·In·Out bytes.
func (l *Linear) Prepack() {
	if l.Q != nil || l.WBF16 != nil || l.W == nil || l.W.Trainable() || len(l.W.Data) != l.In*l.Out {
		return
	}
	l.PackedT = cpu.PackB(true, l.In, l.Out, l.W.Data, l.In)
	l.Packed = cpu.PackB(false, l.Out, l.In, l.W.Data, l.In)
}

// DropPacked releases the packed copies; MatMul and InputGrad then pack W on
// every call again.
func (l *Linear) DropPacked() { l.PackedT, l.Packed = nil, nil }

// PackedBytes is the memory the packed copies hold.
func (l *Linear) PackedBytes() int {
	n := 0
	for _, p := range []*cpu.PackedB{l.PackedT, l.Packed} {
		if p != nil {
			n += p.Bytes()
		}
	}
	return n
}

// QuantWeight is a frozen weight kept quantized in memory and multiplied
// without ever being expanded in full (QLoRA).
type QuantWeight interface {
	MatMul(y, x []float32, n int)
	MatMulInputGrad(dx, dy []float32, n int, accumulate bool)
	Dequantize(dst []float32)
}

// Adapter modifies a linear layer. Forward must produce the adapted output
// (usually by calling l.BaseForward and adding to it) and keep what its
// Backward needs; Backward accumulates into dx (may be nil when the input
// needs no gradient) and into its own parameters' gradients, and calls
// l.BaseBackward for the frozen path.
type Adapter interface {
	Forward(l *Linear, y, x []float32, n int)
	Backward(l *Linear, dx, dy, x []float32, n int)
	Params() []*Param
}

// Forward computes y (overwritten) for n rows of x.
func (l *Linear) Forward(y, x []float32, n int) {
	if l.Adapter != nil {
		l.Adapter.Forward(l, y, x, n)
		return
	}
	l.BaseForward(y, x, n)
}

// Backward accumulates dx (+=, skipped when nil) and the gradients of any
// trainable parameter, from dy and the forward input x.
func (l *Linear) Backward(dx, dy, x []float32, n int) {
	if l.Adapter != nil {
		l.Adapter.Backward(l, dx, dy, x, n)
		return
	}
	l.BaseBackward(dx, dy, x, n)
}

// BaseForward is the unadapted y = x·Wᵀ + b.
func (l *Linear) BaseForward(y, x []float32, n int) {
	l.MatMul(y, x, n)
	if l.B != nil {
		AddBias(y, l.B.Data, n)
	}
}

// MatMul computes y = x·Wᵀ without the bias.
func (l *Linear) MatMul(y, x []float32, n int) {
	switch {
	case l.Q != nil:
		l.Q.MatMul(y, x, n)
	case l.WBF16 != nil:
		cpu.SgemmBF16BOn(l.Threads(), false, true, n, l.Out, l.In, 1, x, l.In, l.WBF16, l.In, 0, y, l.Out)
	case l.PackedT != nil && !cpu.Thin(false, true, n, l.Out, l.In):
		cpu.SgemmPackedBOn(l.Threads(), false, n, 1, x, l.In, l.PackedT, 0, y, l.Out)
	default:
		cpu.SgemmOn(l.Threads(), false, true, n, l.Out, l.In, 1, x, l.In, l.W.Data, l.In, 0, y, l.Out)
	}
}

// MatMulPlus computes y = x·Wᵀ + extra (no bias), where extra is a product
// with y's shape (an adapter's low-rank update): one pass over y with a
// float32 W, two otherwise.
func (l *Linear) MatMulPlus(y, x []float32, n int, extra cpu.Term) {
	if l.Q != nil || l.WBF16 != nil || (l.PackedT != nil && !cpu.Thin(false, true, n, l.Out, l.In)) {
		l.MatMul(y, x, n)
		cpu.SgemmOn(l.Threads(), extra.TransA, extra.TransB, n, l.Out, extra.K, extra.Alpha, extra.A, extra.LDA, extra.B, extra.LDB, 1, y, l.Out)
		return
	}
	cpu.SgemmSumOn(l.Threads(), n, l.Out, 0, y, l.Out, cpu.Term{TransB: true, K: l.In, Alpha: 1, A: x, LDA: l.In, B: l.W.Data, LDB: l.In}, extra)
}

// InputGradPlus accumulates dx += dy·W + extra, as MatMulPlus.
func (l *Linear) InputGradPlus(dx, dy []float32, n int, extra cpu.Term) {
	if l.Q != nil || l.WBF16 != nil || (l.Packed != nil && !cpu.Thin(false, false, n, l.In, l.Out)) {
		l.InputGrad(dx, dy, n)
		cpu.SgemmOn(l.Threads(), extra.TransA, extra.TransB, n, l.In, extra.K, extra.Alpha, extra.A, extra.LDA, extra.B, extra.LDB, 1, dx, l.In)
		return
	}
	cpu.SgemmSumOn(l.Threads(), n, l.In, 1, dx, l.In, cpu.Term{K: l.Out, Alpha: 1, A: dy, LDA: l.Out, B: l.W.Data, LDB: l.In}, extra)
}

// InputGrad accumulates dx += dy·W.
func (l *Linear) InputGrad(dx, dy []float32, n int) {
	switch {
	case l.Q != nil:
		l.Q.MatMulInputGrad(dx, dy, n, true)
	case l.WBF16 != nil:
		cpu.SgemmBF16BOn(l.Threads(), false, false, n, l.In, l.Out, 1, dy, l.Out, l.WBF16, l.In, 1, dx, l.In)
	case l.Packed != nil && !cpu.Thin(false, false, n, l.In, l.Out):
		cpu.SgemmPackedBOn(l.Threads(), false, n, 1, dy, l.Out, l.Packed, 1, dx, l.In)
	default:
		cpu.SgemmOn(l.Threads(), false, false, n, l.In, l.Out, 1, dy, l.Out, l.W.Data, l.In, 1, dx, l.In)
	}
}

// BaseBackward is the backward pass of BaseForward.
func (l *Linear) BaseBackward(dx, dy, x []float32, n int) {
	if dx != nil {
		l.InputGrad(dx, dy, n)
	}
	if l.W != nil && l.W.Grad != nil {
		cpu.SgemmOn(l.Threads(), true, false, l.Out, l.In, n, 1, dy, l.Out, x, l.In, 1, l.W.Grad, l.In)
	}
	if l.B != nil && l.B.Grad != nil {
		BiasBackward(l.B.Grad, dy, n)
	}
}

// DenseWeight returns the weight as float32 [Out·In], expanding bf16 or
// quantized storage into a new slice (for merging and export, not training).
func (l *Linear) DenseWeight() []float32 {
	switch {
	case l.Q != nil:
		w := make([]float32, l.Out*l.In)
		l.Q.Dequantize(w)
		return w
	case l.WBF16 != nil:
		w := make([]float32, l.Out*l.In)
		dtype.BF16ToF32(w, l.WBF16)
		return w
	}
	return l.W.Data
}

// Buf is a reusable float32 buffer that grows on demand, so steady-state
// training steps allocate nothing.
type Buf struct{ b []float32 }

// Get returns a slice of length n; contents are unspecified.
func (b *Buf) Get(n int) []float32 {
	if cap(b.b) < n {
		b.b = make([]float32, n)
	}
	return b.b[:n]
}

// Zero returns a zeroed slice of length n.
func (b *Buf) Zero(n int) []float32 {
	s := b.Get(n)
	clear(s)
	return s
}
