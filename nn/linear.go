package nn

import "fmt"

// Linear is y = x·Wᵀ + b with W stored [Out, In] as Hugging Face stores it.
// The weight is held in one of the forms of Weight; an Adapter (LoRA, DoRA,
// IA3…) changes what the layer computes. The compute backends run it
// (model.DeviceModel reads the weight's form and the adapter through the
// interfaces they implement).
type Linear struct {
	Name    string // module path, e.g. "model.layers.0.self_attn.q_proj"
	In, Out int
	W       Weight
	B       *Param
	Adapter Adapter
}

// Adapter is a method's change to a linear layer: its trainable values;
// what it computes is declared to the block by the interfaces it
// implements (model.LowRank, model.Scaler, model.ExpertLowRank).
type Adapter interface {
	Params() []*Param
}

// F32 returns the weight when it is held in float32 (the only form that
// trains or merges in place), else nil.
func (l *Linear) F32() *Param {
	p, _ := l.W.(*Param)
	return p
}

// DenseWeight returns the weight as float32 [Out·In]: the weight's own
// data when it is float32, else a new expansion (for merging and export,
// not training).
func (l *Linear) DenseWeight() []float32 { return DenseOf(l.W) }

// SetWeight replaces the weight, checking that the new one has the layer's
// shape. A float32 weight takes the layer's parameter name.
func (l *Linear) SetWeight(w Weight) error {
	if o, i := w.Dims(); o != l.Out || i != l.In {
		return fmt.Errorf("%s: weight of shape [%d %d], the layer is [%d %d]", l.Name, o, i, l.Out, l.In)
	}
	if p, ok := w.(*Param); ok && p.Name == "" {
		p.Name = l.Name + ".weight"
	}
	l.W = w
	return nil
}
