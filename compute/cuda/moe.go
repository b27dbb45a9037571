//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"gotune/compute"
)

// moeKernels are the kernels of moe.go.
var moeKernels = []string{"moe_route_f32", "moe_list_f32", "moe_router_grad_f32", "moe_router_grad_bf16", "transpose_f32", "transpose_bf16"}

// GemmGroup implements compute.Backend as one product after another on the
// stream (cuBLAS fills the GPU with each; a grouped kernel is left to do).
func (d *Device) GemmGroup(jobs []compute.GemmJob) {
	for _, j := range jobs {
		beta := j.Beta
		for _, t := range j.Terms {
			d.Gemm(t.TransA, t.TransB, j.M, j.N, t.K, t.Alpha, t.A, t.LDA, t.B, t.LDB, beta, j.C, j.LDC)
			beta = 1
		}
	}
}

// MoERoute implements compute.Backend: a thread per token routes it, then
// one block lists the slots expert by expert.
func (d *Device) MoERoute(probs, sel, wts, rows, rowWts, pos, offs, stats, logits, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	for _, t := range []compute.Tensor{probs, wts, rowWts, offs, stats, logits} {
		if t != nil && t.DType() != compute.F32 {
			d.fail(fmt.Errorf("cuda: moe route: a %v tensor where f32 is needed", t.DType()))
			return
		}
	}
	if n == 0 {
		return
	}
	d.elementwise("moe_route_f32", n, pa(probs), pa(sel), pa(wts), pa(logits), ia(n), ia(experts), ia(topK), ia(b2i(normTopK)))
	block := min(1024, (experts+31)/32*32)
	d.launch("moe_list_f32", [3]int{1, 1, 1}, [3]int{block, 1, 1}, 4*(experts+1),
		pa(rows), pa(rowWts), pa(pos), pa(offs), pa(stats), pa(sel), pa(wts), pa(probs), pa(mask), ia(n), ia(experts), ia(topK))
}

// MoERouterGrad implements compute.Backend: a thread per token.
func (d *Device) MoERouterGrad(dlogits, probs, sel, wts, pos, dw, aux, mask compute.Tensor, n, experts, topK int, normTopK bool) {
	d.elementwise("moe_router_grad"+suffix(dlogits.DType()), n, pa(dlogits), pa(probs), pa(sel), pa(wts), pa(pos), pa(dw), pa(aux), pa(mask),
		ia(n), ia(experts), ia(topK), ia(b2i(normTopK)))
}

// Transpose implements compute.Backend.
func (d *Device) Transpose(dst, src compute.Tensor, rows, cols int) {
	if d.same("transpose", dst, src) {
		d.elementwise("transpose"+suffix(dst.DType()), rows*cols, pa(dst), pa(src), ia(rows), ia(cols))
	}
}
