// Package peft attaches parameter-efficient fine-tuning methods to a model
// and saves and loads them in Hugging Face PEFT's layout, so adapters trained
// here load in PEFT and vLLM and PEFT's adapters load here.
package peft

import (
	"math"

	"gotune/compute"
	"gotune/nn"
	"gotune/parallel"
)

// LoRA adds a low-rank update s·B·A to a linear layer: y = W·x + s·B·(A·x).
// With DoRA the layer's output is rescaled per output row by
// m / ‖W + s·B·A‖, the norm treated as a constant in the backward pass as
// the DoRA paper (§4.3) and PEFT do.
type LoRA struct {
	Module    string    // e.g. "model.layers.0.self_attn.q_proj"
	A         *nn.Param // [r, in]
	B         *nn.Param // [out, r]
	Magnitude *nn.Param // [out], DoRA only
	Scale     float32
	Dropout   float32
	// Seed and Step select the dropout mask: the same pair gives the same
	// mask, so a recomputed forward (gradient checkpointing) matches.
	Seed, Step uint64
}

// DropoutMask is the dropout mask of the next forward pass: a function of
// the adapter's seed and the training step (model.LowRank).
func (l *LoRA) DropoutMask() compute.DropoutMask {
	return compute.NewDropoutMask(l.Dropout, l.Seed^l.Step*0x9e3779b97f4a7c15)
}

// Params implements nn.Adapter.
func (l *LoRA) Params() []*nn.Param {
	ps := []*nn.Param{l.A, l.B}
	if l.Magnitude != nil {
		ps = append(ps, l.Magnitude)
	}
	return ps
}

// Merge folds the adapter into the layer's float32 weight: W + s·B·A, and
// with DoRA each output row then rescaled to the magnitude m_o (the bias
// stays as it was).
func (l *LoRA) Merge(lin *nn.Linear) {
	in, r := lin.In, l.A.Shape[0]
	w := lin.F32().Data
	parallel.For(lin.Out, 16, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			row := w[o*in : (o+1)*in]
			for k := 0; k < r; k++ {
				c := l.Scale * l.B.Data[o*r+k]
				for i, a := range l.A.Data[k*in : (k+1)*in] {
					row[i] += c * a
				}
			}
			if l.Magnitude == nil {
				continue
			}
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			sc := l.Magnitude.Data[o] / float32(math.Sqrt(ss))
			for i := range row {
				row[i] *= sc
			}
		}
	})
}

// LowRank returns the adapter's matrices and scale (model.LowRank: what a
// device backend runs).
func (l *LoRA) LowRank() (a, b *nn.Param, scale float32) { return l.A, l.B, l.Scale }

// DoRAMagnitude is DoRA's magnitude vector, nil for plain LoRA
// (model.LowRank).
func (l *LoRA) DoRAMagnitude() *nn.Param { return l.Magnitude }

// DeviceUnsupported says what of this adapter the device path cannot run
// yet, or "". Dropout only matters when training.
func (l *LoRA) DeviceUnsupported(training bool) string {
	switch {
	}
	return ""
}
