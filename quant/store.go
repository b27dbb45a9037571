package quant

import (
	"fmt"

	"gotune/nn"
)

// Store converts a linear layer's weight into the form o names: F32 (also
// the zero Type), BF16 (a frozen base at half the memory) or a quantized
// type (QLoRA's frozen base). A bfloat16 source is quantized directly,
// without a float32 expansion; a weight already in the form is returned as
// it is (a float32 weight is kept, not copied).
func (o Options) Store(w nn.Weight) (nn.Weight, error) {
	out, in := w.Dims()
	switch o.Type {
	case 0, F32:
		if p, ok := w.(*nn.Param); ok {
			return p, nil
		}
		p := &nn.Param{Shape: []int{out, in}, Data: make([]float32, out*in)}
		w.Dense(p.Data)
		return p, nil
	case BF16:
		if b, ok := w.(*nn.BF16); ok {
			return b, nil
		}
		return nn.NewBF16(nn.DenseOf(w), out, in), nil
	}
	if m, ok := w.(*Matrix); ok && m.is(o) {
		return m, nil
	}
	if b, ok := w.(*nn.BF16); ok {
		return QuantizeBF16(b.Data, out, in, o)
	}
	return Quantize(nn.DenseOf(w), out, in, o)
}

// StoreLinear converts one layer's weight in place (Store).
func (o Options) StoreLinear(l *nn.Linear) error {
	w, err := o.Store(l.W)
	if err != nil {
		return fmt.Errorf("store %s as %v: %w", l.Name, o.Type, err)
	}
	return l.SetWeight(w)
}

// is reports whether m was quantized with o's format.
func (m *Matrix) is(o Options) bool {
	o = o.withDefaults()
	return m.typ == o.Type && m.DoubleQuant() == o.DoubleQuant && (m.typ == Int8Row || m.bs == o.BlockSize) &&
		(!o.DoubleQuant || m.nestedBS == o.NestedBlockSize)
}
