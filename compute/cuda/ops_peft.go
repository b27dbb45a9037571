//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"gotune/compute"
)

// peftKernels are the kernels of ops_peft.go (activations, SGD, LSTM cells).
var peftKernels = []string{"activate_f32", "activate_bf16", "activate_bwd_f32", "activate_bwd_bf16", "sgd_f32",
	"lstm_cell_f32", "lstm_cell_bf16", "lstm_cell_bwd_f32", "lstm_cell_bwd_bf16"}

func validActivation(f compute.Activation) bool { return f >= compute.ReLU && f <= compute.GELUTanh }

// Activate implements compute.Backend.
func (d *Device) Activate(y, x compute.Tensor, f compute.Activation) {
	if !validActivation(f) {
		d.fail(fmt.Errorf("cuda: unknown activation %v", f))
		return
	}
	if d.same("activate", y, x) {
		d.elementwise("activate"+suffix(y.DType()), y.Len(), pa(y), pa(x), ia(int(f)), ia(y.Len()))
	}
}

// ActivateBackward implements compute.Backend.
func (d *Device) ActivateBackward(dx, dy, x compute.Tensor, f compute.Activation) {
	if !validActivation(f) {
		d.fail(fmt.Errorf("cuda: unknown activation %v", f))
		return
	}
	if d.same("activate backward", dx, dy, x) {
		d.elementwise("activate_bwd"+suffix(dx.DType()), dx.Len(), pa(dx), pa(dy), pa(x), ia(int(f)), ia(dx.Len()))
	}
}

// SGD implements compute.Backend.
func (d *Device) SGD(p, g, buf, shadow compute.Tensor, s compute.SGDStep) {
	if shadow != nil && shadow.DType() != compute.BF16 {
		d.fail(fmt.Errorf("cuda: sgd shadow of type %v", shadow.DType()))
		return
	}
	if s.Momentum != 0 && buf == nil {
		d.fail(fmt.Errorf("cuda: sgd with momentum %g and no buffer", s.Momentum))
		return
	}
	d.elementwise("sgd_f32", p.Len(), pa(p), pa(g), pa(buf), pa(shadow), ia(p.Len()), fa(s.GradScale), fa(s.LR),
		fa(s.WeightDecay), fa(s.Momentum), fa(s.Dampening), ia(b2i(s.Nesterov)), ia(b2i(s.First)))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// LSTMCell implements compute.Backend.
func (d *Device) LSTMCell(gates, c, h compute.Tensor, ldh int, pre, cPrev compute.Tensor, rows, hidden int) {
	if d.same("lstm cell", gates, c, h, pre, cPrev) {
		d.elementwise("lstm_cell"+suffix(pre.DType()), rows*hidden, pa(gates), pa(c), pa(h), ia(ldh), pa(pre), pa(cPrev), ia(rows), ia(hidden))
	}
}

// LSTMCellBackward implements compute.Backend.
func (d *Device) LSTMCellBackward(dpre, dcPrev, dh compute.Tensor, ldh int, dhNext, dc, gates, c, cPrev compute.Tensor, rows, hidden int) {
	if d.same("lstm cell backward", dpre, dcPrev, dh, dhNext, dc, gates, c, cPrev) {
		d.elementwise("lstm_cell_bwd"+suffix(dpre.DType()), rows*hidden, pa(dpre), pa(dcPrev), pa(dh), ia(ldh), pa(dhNext), pa(dc),
			pa(gates), pa(c), pa(cPrev), ia(rows), ia(hidden))
	}
}
