// Package nn holds a decoder-only transformer's layers as data: the
// parameters they train, the forms a linear layer's weight is held in and
// the adapters methods attach. The arithmetic runs on a compute backend.
package nn

// Param is one named tensor of a model or adapter. Data is row-major.
// Grad is nil while the parameter is frozen; the backward pass accumulates
// into it, so callers zero it between optimizer steps.
type Param struct {
	Name  string // Hugging Face or PEFT name, e.g. "model.layers.0.self_attn.q_proj.weight"
	Shape []int
	Data  []float32
	Grad  []float32
}

// NewParam allocates a parameter of the given shape.
func NewParam(name string, shape ...int) *Param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return &Param{Name: name, Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// Len is the number of elements.
func (p *Param) Len() int { return len(p.Data) }

// Trainable reports whether the parameter has a gradient buffer.
func (p *Param) Trainable() bool { return p.Grad != nil }

// SetTrainable allocates or drops the gradient buffer.
func (p *Param) SetTrainable(on bool) {
	switch {
	case on && p.Grad == nil:
		p.Grad = make([]float32, len(p.Data))
	case !on:
		p.Grad = nil
	}
}

// ZeroGrad clears the accumulated gradient.
func (p *Param) ZeroGrad() { clear(p.Grad) }
