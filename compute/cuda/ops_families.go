//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"gotune/compute"
)

// familyKernels are the kernels of the model families beyond the Llama kind
// (Gemma 2/3, Phi-3), each in both element types.
func familyKernels() []string {
	var out []string
	for _, base := range []string{"attn_softmax_win", "attn_softmax_win_bwd", "geglu", "geglu_bwd", "softcap", "softcap_bwd", "copy2d"} {
		out = append(out, base+"_f32", base+"_bf16")
	}
	return out
}

// AttnSoftmaxWindowed implements compute.Backend.
func (d *Device) AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off, window int, softcap float32) {
	rows := b * h * tq
	if rows == 0 {
		return
	}
	d.launch("attn_softmax_win"+suffix(p.DType()), grid1(rows), block1(rowBlock(tk)), 0, pa(p), pa(lse), pa(s), pa(kmask), pa(qseg), pa(kseg), ia(h), ia(tq), ia(tk), ia(off), ia(window), fa(softcap))
}

// AttnSoftmaxWindowedBackward implements compute.Backend.
func (d *Device) AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off, window int, softcap float32) {
	rows := b * h * tq
	if rows == 0 || !d.same("attention backward", p, ds) {
		return
	}
	d.launch("attn_softmax_win_bwd"+suffix(p.DType()), grid1(rows), block1(rowBlock(tk)), 0, pa(p), pa(ds), pa(s), pa(dp), pa(lse), pa(dsum), pa(kmask), pa(qseg), pa(kseg), ia(h), ia(tq), ia(tk), ia(off), ia(window), fa(softcap))
}

// GeGLU implements compute.Backend.
func (d *Device) GeGLU(a, g, u compute.Tensor) {
	if d.same("geglu", a, g, u) {
		d.elementwise("geglu"+suffix(a.DType()), a.Len(), pa(a), pa(g), pa(u), ia(a.Len()))
	}
}

// GeGLUBackward implements compute.Backend.
func (d *Device) GeGLUBackward(dg, du, da, g, u compute.Tensor) {
	if d.same("geglu backward", dg, du, da, g, u) {
		d.elementwise("geglu_bwd"+suffix(da.DType()), da.Len(), pa(dg), pa(du), pa(da), pa(g), pa(u), ia(da.Len()))
	}
}

// SoftCap implements compute.Backend.
func (d *Device) SoftCap(y, x compute.Tensor, c float32) {
	if d.same("softcap", y, x) {
		d.elementwise("softcap"+suffix(y.DType()), y.Len(), pa(y), pa(x), fa(c), ia(y.Len()))
	}
}

// SoftCapBackward implements compute.Backend.
func (d *Device) SoftCapBackward(dx, dy, y compute.Tensor, c float32) {
	if !d.same("softcap backward", dx, dy) {
		return
	}
	if y.DType() != compute.F32 {
		d.fail(fmt.Errorf("cuda: softcap backward: capped values of %v (want f32)", y.DType()))
		return
	}
	d.elementwise("softcap_bwd"+suffix(dx.DType()), dx.Len(), pa(dx), pa(dy), pa(y), fa(c), ia(dx.Len()))
}

// Copy2D implements compute.Backend.
func (d *Device) Copy2D(dst compute.Tensor, ldd int, src compute.Tensor, lds int, rows, cols int) {
	if d.same("copy2d", dst, src) {
		d.elementwise("copy2d"+suffix(dst.DType()), rows*cols, pa(dst), ia(ldd), pa(src), ia(lds), ia(rows), ia(cols))
	}
}
