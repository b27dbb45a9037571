package nn

import "gotune/dtype"

// Weight is the [Out, In] matrix of a linear layer in the form it is held
// in memory: float32 (*Param, the form that trains), bfloat16 (*BF16) or
// quantized (package quant's matrices, which the device block reads packed).
// Loaders choose the form (quant.Options.Store converts between them); merges,
// exports and checks read any form through Dense.
type Weight interface {
	// Dims is the matrix's [Out, In].
	Dims() (out, in int)
	// Bytes is the memory the weight holds.
	Bytes() int64
	// Dense writes the weight as float32 [Out·In] into dst.
	Dense(dst []float32)
}

// DenseOf returns w as float32 [Out·In]: a float32 weight's own data, else
// a new expansion.
func DenseOf(w Weight) []float32 {
	if p, ok := w.(*Param); ok {
		return p.Data
	}
	out, in := w.Dims()
	d := make([]float32, out*in)
	w.Dense(d)
	return d
}

// Dims reads a parameter as the matrix [Shape[0], rest].
func (p *Param) Dims() (out, in int) {
	if len(p.Shape) == 0 || p.Shape[0] == 0 {
		return 0, 0
	}
	return p.Shape[0], p.size() / p.Shape[0]
}

func (p *Param) size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Bytes is the memory of the values (not the gradient).
func (p *Param) Bytes() int64 { return 4 * int64(len(p.Data)) }

// Dense copies the values.
func (p *Param) Dense(dst []float32) { copy(dst, p.Data) }

// BF16 is a frozen weight held in bfloat16, half the memory of float32; the
// CPU backend reads it in place, other backends upload it.
type BF16 struct {
	Out, In int
	Data    []uint16
}

// NewBF16 rounds a float32 [out, in] matrix to bfloat16.
func NewBF16(w []float32, out, in int) *BF16 {
	b := &BF16{Out: out, In: in, Data: make([]uint16, len(w))}
	dtype.F32ToBF16(b.Data, w)
	return b
}

// Dims is [Out, In].
func (b *BF16) Dims() (out, in int) { return b.Out, b.In }

// Bytes is two a value.
func (b *BF16) Bytes() int64 { return 2 * int64(len(b.Data)) }

// Dense widens the values to float32 (exactly).
func (b *BF16) Dense(dst []float32) { dtype.BF16ToF32(dst, b.Data) }
