// Package peft attaches parameter-efficient fine-tuning methods to a model
// and saves and loads them in Hugging Face PEFT's layout, so adapters trained
// here load in PEFT and vLLM and PEFT's adapters load here.
package peft

import (
	"math"

	"gotune/compute"
	"gotune/compute/cpu"
	"gotune/nn"
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

	r    int
	h    nn.Buf   // x·Aᵀ, [n, r], saved for backward
	xd   nn.Buf   // dropped-out input
	mask []uint64 // dropout: bit i set when input element i was kept
	u    nn.Buf   // DoRA: W·x + s·B·A·x, before rescaling
	dh   nn.Buf
	du   nn.Buf
	dxd  nn.Buf
	norm []float32
	// DoRA: ‖W_o‖² of the frozen base (computed once) and ⟨A_k, W_o⟩.
	wnorm2 []float64
	wa     nn.Buf
	scale  []float32 // DoRA: m / ‖W + s·B·A‖
}

func (l *LoRA) input(x []float32, n, in int) []float32 {
	if l.Dropout <= 0 {
		return x
	}
	total := n * in
	xd := l.xd.Get(total)
	words := (total + 63) / 64
	if cap(l.mask) < words {
		l.mask = make([]uint64, words)
	}
	mask := l.mask[:words]
	l.mask = mask
	dm := l.DropoutMask()
	// The mask is a function of (Seed, Step, i) alone, so the parts can be
	// drawn in any order and a recomputed forward (gradient checkpointing)
	// draws the same one; backward reads the bits kept here.
	cpu.Parallel(words, 64, func(lo, hi int) {
		for wi := lo; wi < hi; wi++ {
			var bits uint64
			for b := range min(64, total-wi*64) {
				i := wi*64 + b
				if compute.DropoutKeeps(dm.Seed, dm.Thresh, i) {
					bits |= 1 << b
					xd[i] = x[i] * dm.Keep
				} else {
					xd[i] = 0
				}
			}
			mask[wi] = bits
		}
	})
	return xd
}

// DropoutMask is the dropout mask of the next forward pass: a function of
// the adapter's seed and the training step (model.LowRank).
func (l *LoRA) DropoutMask() compute.DropoutMask {
	return compute.NewDropoutMask(l.Dropout, l.Seed^l.Step*0x9e3779b97f4a7c15)
}

// Forward implements nn.Adapter.
func (l *LoRA) Forward(lin *nn.Linear, y, x []float32, n int) {
	in, out, r := lin.In, lin.Out, l.A.Shape[0]
	l.r = r
	xd := l.input(x, n, in)
	// With r in the tens these products are thin: cpu.Sgemm reads the
	// large operands (x, y) in place and copies only A or B, transposed.
	h := l.h.Get(n * r)
	cpu.Sgemm(false, true, n, r, in, 1, xd, in, l.A.Data, in, 0, h, r)
	if l.Magnitude == nil {
		// y = x·Wᵀ + s·h·Bᵀ in one pass over y.
		lin.MatMulPlus(y, x, n, cpu.Term{TransB: true, K: r, Alpha: l.Scale, A: h, LDA: r, B: l.B.Data, LDB: r})
		if lin.B != nil {
			nn.AddBias(y, lin.B.Data, n)
		}
		return
	}
	l.doraScale(lin)
	u := l.u.Get(n * out)
	lin.MatMul(u, x, n)
	cpu.Sgemm(false, true, n, out, r, l.Scale, h, r, l.B.Data, r, 1, u, out)
	for i := 0; i < n; i++ {
		ur, yr := u[i*out:(i+1)*out], y[i*out:(i+1)*out]
		for o, v := range ur {
			yr[o] = v * l.scale[o]
		}
	}
	if lin.B != nil {
		nn.AddBias(y, lin.B.Data, n)
	}
}

// doraScale computes m / ‖W + s·B·A‖ for every output row without
// expanding W (which may be bf16 or quantized): with the frozen row norms
// ‖W_o‖² kept from the first call,
//
//	‖W_o + s·(BA)_o‖² = ‖W_o‖² + 2s·Σ_k B_ok·⟨A_k, W_o⟩ + s²·B_o·(A·Aᵀ)·B_oᵀ,
//
// where ⟨A_k, W_o⟩ comes from applying the layer to A's r rows.
func (l *LoRA) doraScale(lin *nn.Linear) {
	in, out, r := lin.In, lin.Out, l.r
	if len(l.norm) != out {
		l.norm, l.scale = make([]float32, out), make([]float32, out)
	}
	if len(l.wnorm2) != out {
		l.wnorm2 = rowNormsSquared(lin)
	}
	wa := l.wa.Get(r * out)
	lin.MatMul(wa, l.A.Data, r) // wa[k, o] = ⟨A_k, W_o⟩
	gram := make([]float64, r*r)
	for k := 0; k < r; k++ {
		ak := l.A.Data[k*in : (k+1)*in]
		for j := k; j < r; j++ {
			aj := l.A.Data[j*in : (j+1)*in]
			var d float64
			for i, v := range ak {
				d += float64(v) * float64(aj[i])
			}
			gram[k*r+j], gram[j*r+k] = d, d
		}
	}
	s := float64(l.Scale)
	cpu.Parallel(out, 64, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			b := l.B.Data[o*r : (o+1)*r]
			var cross, quad float64
			for k, bk := range b {
				cross += float64(bk) * float64(wa[k*out+o])
				var row float64
				for j, bj := range b {
					row += gram[k*r+j] * float64(bj)
				}
				quad += float64(bk) * row
			}
			n := math.Sqrt(max(l.wnorm2[o]+2*s*cross+s*s*quad, 0))
			l.norm[o] = float32(n)
			l.scale[o] = l.Magnitude.Data[o] / l.norm[o]
		}
	})
}

// rowNormsSquared returns ‖W_o‖² for every output row, reading quantized
// weights a block of rows at a time.
func rowNormsSquared(lin *nn.Linear) []float64 {
	in, out := lin.In, lin.Out
	norms := make([]float64, out)
	sum := func(row []float32) float64 {
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		return ss
	}
	type rowReader interface {
		DequantizeRows(dst []float32, r0, r1 int)
	}
	switch q, ok := lin.Q.(rowReader); {
	case lin.W != nil && lin.W.Data != nil:
		for o := range norms {
			norms[o] = sum(lin.W.Data[o*in : (o+1)*in])
		}
	case ok:
		const rows = 64
		buf := make([]float32, rows*in)
		for r0 := 0; r0 < out; r0 += rows {
			r1 := min(r0+rows, out)
			q.DequantizeRows(buf[:(r1-r0)*in], r0, r1)
			for o := r0; o < r1; o++ {
				norms[o] = sum(buf[(o-r0)*in : (o-r0+1)*in])
			}
		}
	default:
		w := lin.DenseWeight()
		for o := range norms {
			norms[o] = sum(w[o*in : (o+1)*in])
		}
	}
	return norms
}

// Backward implements nn.Adapter.
func (l *LoRA) Backward(lin *nn.Linear, dx, dy, x []float32, n int) {
	in, out, r := lin.In, lin.Out, l.r
	h := l.h.Get(n * r)
	xd := x
	if l.Dropout > 0 {
		xd = l.xd.Get(n * in)
	}
	if l.Magnitude == nil && dx != nil && l.Dropout <= 0 {
		// dh first, so that dx += dy·W + dh·A is one pass over dx.
		dh := l.dh.Get(n * r)
		cpu.Sgemm(false, false, n, r, out, l.Scale, dy, out, l.B.Data, r, 0, dh, r)
		lin.InputGradPlus(dx, dy, n, cpu.Term{K: r, Alpha: 1, A: dh, LDA: r, B: l.A.Data, LDB: in})
		lin.BaseBackward(nil, dy, x, n) // a trainable W or bias
		if l.B.Grad != nil {
			cpu.Sgemm(true, false, out, r, n, l.Scale, dy, out, h, r, 1, l.B.Grad, r) // dB += s·gᵀ·h
		}
		if l.A.Grad != nil {
			cpu.Sgemm(true, false, r, in, n, 1, dh, r, x, in, 1, l.A.Grad, in)
		}
		return
	}
	g := dy // gradient reaching W·x and the low-rank path
	if l.Magnitude != nil {
		u := l.u.Get(n * out)
		du := l.du.Get(n * out)
		dm := l.Magnitude.Grad
		acc := make([]float64, out)
		for i := 0; i < n; i++ {
			ur, dr, gr := u[i*out:(i+1)*out], du[i*out:(i+1)*out], dy[i*out:(i+1)*out]
			for o := range ur {
				acc[o] += float64(gr[o]) * float64(ur[o])
				dr[o] = gr[o] * l.scale[o]
			}
		}
		if dm != nil {
			for o := range acc {
				dm[o] += float32(acc[o] / float64(l.norm[o]))
			}
		}
		if lin.B != nil && lin.B.Grad != nil {
			nn.BiasBackward(lin.B.Grad, dy, n)
		}
		if dx != nil {
			lin.InputGrad(dx, du, n)
		}
		if lin.W != nil && lin.W.Grad != nil {
			cpu.Sgemm(true, false, out, in, n, 1, du, out, x, in, 1, lin.W.Grad, in)
		}
		g = du
	} else {
		lin.BaseBackward(dx, dy, x, n)
	}
	if l.B.Grad != nil {
		cpu.Sgemm(true, false, out, r, n, l.Scale, g, out, h, r, 1, l.B.Grad, r) // dB += s·gᵀ·h
	}
	dh := l.dh.Get(n * r)
	cpu.Sgemm(false, false, n, r, out, l.Scale, g, out, l.B.Data, r, 0, dh, r)
	if l.A.Grad != nil {
		cpu.Sgemm(true, false, r, in, n, 1, dh, r, xd, in, 1, l.A.Grad, in)
	}
	if dx == nil {
		return
	}
	if l.Dropout <= 0 {
		cpu.Sgemm(false, false, n, in, r, 1, dh, r, l.A.Data, in, 1, dx, in)
		return
	}
	dxd := l.dxd.Get(n * in)
	cpu.Sgemm(false, false, n, in, r, 1, dh, r, l.A.Data, in, 0, dxd, in)
	keep := l.DropoutMask().Keep
	mask := l.mask
	cpu.Parallel(len(mask), 64, func(lo, hi int) {
		for wi := lo; wi < hi; wi++ {
			bits := mask[wi]
			for b := range min(64, len(dxd)-wi*64) {
				if bits>>b&1 != 0 {
					i := wi*64 + b
					dx[i] += dxd[i] * keep
				}
			}
		}
	})
}

// Params implements nn.Adapter.
func (l *LoRA) Params() []*nn.Param {
	ps := []*nn.Param{l.A, l.B}
	if l.Magnitude != nil {
		ps = append(ps, l.Magnitude)
	}
	return ps
}

// Merge folds the adapter into the layer's float32 weight.
func (l *LoRA) Merge(lin *nn.Linear) {
	in, r := lin.In, l.A.Shape[0]
	l.r = r
	if l.Magnitude != nil {
		l.doraScale(lin)
	}
	w := lin.W.Data
	for o := 0; o < lin.Out; o++ {
		row := w[o*in : (o+1)*in]
		for k := 0; k < r; k++ {
			cpu.Axpy(l.Scale*l.B.Data[o*r+k], l.A.Data[k*in:(k+1)*in], row)
		}
		// DoRA rescales W·x only; the bias stays as it was.
		if l.Magnitude != nil {
			cpu.Scale(l.scale[o], row)
		}
	}
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
