package nn

import "gotune/dtype"

// Linear is y = x·Wᵀ + b with W stored [Out, In] as Hugging Face stores it.
// The weight lives in one of three forms: float32 (W.Data), bfloat16 (WBF16)
// or a quantized matrix (Q). An Adapter (LoRA, DoRA, IA3…) changes what the
// layer computes; the compute backends run it (model.DeviceModel reads the
// adapter through the interfaces it declares).
type Linear struct {
	Name    string // module path, e.g. "model.layers.0.self_attn.q_proj"
	In, Out int
	W       *Param
	WBF16   []uint16
	Q       QuantWeight
	B       *Param
	Adapter Adapter
}

// QuantWeight is a frozen weight kept quantized in memory (QLoRA); a
// backend reads its packed form (model.Packed4, model.Packed8), merges and
// exports expand it.
type QuantWeight interface {
	Dequantize(dst []float32)
}

// Adapter is a method's change to a linear layer: its trainable values;
// what it computes is declared to the block by the interfaces it
// implements (model.LowRank, model.Scaler, model.ExpertLowRank).
type Adapter interface {
	Params() []*Param
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
