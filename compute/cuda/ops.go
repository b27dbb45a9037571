//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"unsafe"

	"gotune/compute"
)

// cuBLAS enumerations (cublas_api.h, library_types.h).
const (
	cublasOpN         = 0
	cublasOpT         = 1
	cudaR32F          = 0
	cudaR16BF         = 14
	cublasCompute32F  = 68
	cublasGemmDefault = -1
)

// gemmAlgoDefault is CUBLAS_GEMM_DEFAULT (-1) as the word the C enum is read from.
var gemmAlgoDefault = func() uintptr { v := int64(cublasGemmDefault); return uintptr(v) }()

func blasType(dt compute.DType) uintptr {
	if dt == compute.BF16 {
		return cudaR16BF
	}
	return cudaR32F
}

func op(trans bool) uintptr {
	if trans {
		return cublasOpT
	}
	return cublasOpN
}

// Gemm implements compute.Backend with cublasGemmEx: row-major C = op(A)·op(B)
// is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so the operands swap places. Inputs may
// be bf16 with a float C; accumulation is always in float.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda int, b compute.Tensor, ldb int, beta float32, c compute.Tensor, ldc int) {
	if d.err != nil || m == 0 || n == 0 {
		return
	}
	A, B, C := dev(a), dev(b), dev(c)
	defer d.bind()()
	defer d.mark(gemmOp(m, n, k))()
	if A.dt != B.dt {
		d.fail(fmt.Errorf("cuda: gemm of %v by %v", A.dt, B.dt))
		return
	}
	d.alpha, d.beta = alpha, beta
	r := d.blas.cublasGemmEx.call(d.handle, op(transB), op(transA), uintptr(n), uintptr(m), uintptr(k),
		uintptr(unsafe.Pointer(&d.alpha)), B.ptr, blasType(B.dt), uintptr(ldb), A.ptr, blasType(A.dt), uintptr(lda),
		uintptr(unsafe.Pointer(&d.beta)), C.ptr, blasType(C.dt), uintptr(ldc), cublasCompute32F, gemmAlgoDefault)
	if r != 0 {
		d.fail(fmt.Errorf("cuda: cublasGemmEx(%d×%d×%d, %v·%v→%v) failed with status %d", m, n, k, A.dt, B.dt, C.dt, r))
	}
}

// GemmBatched implements compute.Backend with cublasGemmStridedBatchedEx.
func (d *Device) GemmBatched(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda, strideA int, b compute.Tensor, ldb, strideB int, beta float32, c compute.Tensor, ldc, strideC, batch int) {
	if d.err != nil || m == 0 || n == 0 || batch == 0 {
		return
	}
	A, B, C := dev(a), dev(b), dev(c)
	defer d.bind()()
	defer d.mark("attention_" + gemmOp(m, n, k))()
	if A.dt != B.dt {
		d.fail(fmt.Errorf("cuda: gemm of %v by %v", A.dt, B.dt))
		return
	}
	d.alpha, d.beta = alpha, beta
	r := d.blas.cublasGemmStridedBatchedEx.call(d.handle, op(transB), op(transA), uintptr(n), uintptr(m), uintptr(k),
		uintptr(unsafe.Pointer(&d.alpha)), B.ptr, blasType(B.dt), uintptr(ldb), uintptr(strideB),
		A.ptr, blasType(A.dt), uintptr(lda), uintptr(strideA),
		uintptr(unsafe.Pointer(&d.beta)), C.ptr, blasType(C.dt), uintptr(ldc), uintptr(strideC), uintptr(batch),
		cublasCompute32F, gemmAlgoDefault)
	if r != 0 {
		d.fail(fmt.Errorf("cuda: cublasGemmStridedBatchedEx(%d×%d×%d ×%d) failed with status %d", m, n, k, batch, r))
	}
}

func (d *Device) same(what string, ts ...compute.Tensor) bool {
	dt := dev(ts[0]).dt
	for _, t := range ts[1:] {
		if t != nil && dev(t).dt != dt {
			d.fail(fmt.Errorf("cuda: %s: mixed element types %v and %v", what, dt, dev(t).dt))
			return false
		}
	}
	return true
}

// Cast implements compute.Backend.
func (d *Device) Cast(dst, src compute.Tensor) {
	a, b := dev(dst), dev(src)
	switch {
	case a.dt == b.dt:
		d.Copy(dst, src)
	case a.dt == compute.BF16 && b.dt == compute.F32:
		d.elementwise("cast_f32_bf16", a.n, pa(a), pa(b), ia(a.n))
	case a.dt == compute.F32 && b.dt == compute.BF16:
		d.elementwise("cast_bf16_f32", a.n, pa(a), pa(b), ia(a.n))
	default:
		d.fail(fmt.Errorf("cuda: cast of %v to %v", b.dt, a.dt))
	}
}

// Add implements compute.Backend.
func (d *Device) Add(dst, a, b compute.Tensor) {
	if d.same("add", dst, a, b) {
		d.elementwise("add"+suffix(dst.DType()), dst.Len(), pa(dst), pa(a), pa(b), ia(dst.Len()))
	}
}

// Axpby implements compute.Backend.
func (d *Device) Axpby(y compute.Tensor, alpha float32, x compute.Tensor, beta float32) {
	Y, X := dev(y), dev(x)
	name := "axpby" + suffix(X.dt)
	if Y.dt != X.dt {
		if Y.dt != compute.F32 {
			d.fail(fmt.Errorf("cuda: axpby into %v from %v", Y.dt, X.dt))
			return
		}
		name = "axpby_f32" + suffix(X.dt)
	}
	d.elementwise(name, Y.n, pa(y), pa(x), fa(alpha), fa(beta), ia(Y.n))
}

// Fill implements compute.Backend (F32 only).
func (d *Device) Fill(t compute.Tensor, v float32) {
	if t.DType() != compute.F32 {
		d.fail(fmt.Errorf("cuda: fill of %v", t.DType()))
		return
	}
	d.elementwise("fill_f32", t.Len(), pa(t), fa(v), ia(t.Len()))
}

// Dropout implements compute.Backend.
func (d *Device) Dropout(dst, src compute.Tensor, m compute.DropoutMask, accumulate bool) {
	if d.same("dropout", dst, src) {
		acc := 0
		if accumulate {
			acc = 1
		}
		d.elementwise("dropout"+suffix(dst.DType()), dst.Len(), pa(dst), pa(src), arg(m.Seed), arg(m.Thresh), fa(m.Keep), ia(acc), ia(dst.Len()))
	}
}

// SwiGLU implements compute.Backend.
func (d *Device) SwiGLU(a, g, u compute.Tensor) {
	if d.same("swiglu", a, g, u) {
		d.elementwise("swiglu"+suffix(a.DType()), a.Len(), pa(a), pa(g), pa(u), ia(a.Len()))
	}
}

// SwiGLUBackward implements compute.Backend.
func (d *Device) SwiGLUBackward(dg, du, da, g, u compute.Tensor) {
	if d.same("swiglu backward", dg, du, da, g, u) {
		d.elementwise("swiglu_bwd"+suffix(da.DType()), da.Len(), pa(dg), pa(du), pa(da), pa(g), pa(u), ia(da.Len()))
	}
}

func grid1(n int) [3]int  { return [3]int{n, 1, 1} }
func block1(n int) [3]int { return [3]int{n, 1, 1} }

// RMSNorm implements compute.Backend.
func (d *Device) RMSNorm(y, rstd, x, w compute.Tensor, rows, dim int, eps, wadd float32) {
	if rows == 0 || !d.same("rmsnorm", y, x) {
		return
	}
	if dim <= warpRowMax {
		d.launch("rmsnorm_warp"+suffix(x.DType()), grid1((rows+7)/8), [3]int{32, 8, 1}, 0, pa(y), pa(rstd), pa(x), pa(w), ia(rows), ia(dim), fa(eps), fa(wadd))
		return
	}
	d.launch("rmsnorm"+suffix(x.DType()), grid1(rows), block1(rowBlock(dim)), 0, pa(y), pa(rstd), pa(x), pa(w), ia(dim), fa(eps), fa(wadd))
}

// RMSNormBackward implements compute.Backend.
func (d *Device) RMSNormBackward(dx, dy, x, w, rstd compute.Tensor, rows, dim int, wadd float32, accumulate bool) {
	if rows == 0 || !d.same("rmsnorm backward", dx, dy, x) {
		return
	}
	acc := 0
	if accumulate {
		acc = 1
	}
	if dim <= warpRowMax {
		d.launch("rmsnorm_bwd_warp"+suffix(x.DType()), grid1((rows+7)/8), [3]int{32, 8, 1}, 0, pa(dx), pa(dy), pa(x), pa(w), pa(rstd), ia(rows), ia(dim), fa(wadd), ia(acc))
		return
	}
	d.launch("rmsnorm_bwd"+suffix(x.DType()), grid1(rows), block1(rowBlock(dim)), 0, pa(dx), pa(dy), pa(x), pa(w), pa(rstd), ia(dim), fa(wadd), ia(acc))
}

// RMSNormWeightGrad implements compute.Backend: partial sums over fixed row
// chunks, then the chunks added in order.
func (d *Device) RMSNormWeightGrad(dw, dy, x, rstd compute.Tensor, rows, dim int) {
	d.columnSums(dw, rows, dim, func(parts compute.Tensor, chunks, rowsPer int) {
		d.launch("rmsnorm_dw_part"+suffix(x.DType()), [3]int{(dim + 127) / 128, chunks, 1}, block1(128), 0, pa(parts), pa(dy), pa(x), pa(rstd), ia(rows), ia(dim), ia(rowsPer))
	})
}

// columnSums adds into dst the column sums that part writes per chunk of
// rows: fixed chunks summed in order, so the result is deterministic.
func (d *Device) columnSums(dst compute.Tensor, rows, dim int, part func(parts compute.Tensor, chunks, rowsPer int)) {
	if rows == 0 {
		return
	}
	const rowsPer = 64
	chunks := (rows + rowsPer - 1) / rowsPer
	parts, err := d.Alloc(compute.F32, chunks*dim)
	if err != nil {
		d.fail(err)
		return
	}
	defer parts.Free()
	part(parts, chunks, rowsPer)
	d.launch("colsum_f32", grid1((dim+127)/128), block1(128), 0, pa(dst), pa(parts), ia(chunks), ia(dim))
}

// AddBias implements compute.Backend.
func (d *Device) AddBias(y, b compute.Tensor, rows, dim int) {
	d.elementwise("bias_add"+suffix(y.DType()), rows*dim, pa(y), pa(b), ia(rows), ia(dim))
}

// BiasGrad implements compute.Backend, in a fixed order like RMSNormWeightGrad.
func (d *Device) BiasGrad(db, dy compute.Tensor, rows, dim int) {
	d.columnSums(db, rows, dim, func(parts compute.Tensor, chunks, rowsPer int) {
		d.launch("colsum_part"+suffix(dy.DType()), [3]int{(dim + 127) / 128, chunks, 1}, block1(128), 0, pa(parts), pa(dy), ia(rows), ia(dim), ia(rowsPer))
	})
}

// ScaleCols implements compute.Backend.
func (d *Device) ScaleCols(y, x, s compute.Tensor, rows, dim int) {
	if d.same("scale_cols", y, x) {
		d.elementwise("scale_cols"+suffix(y.DType()), rows*dim, pa(y), pa(x), pa(s), ia(rows), ia(dim))
	}
}

// ScaleRows implements compute.Backend.
func (d *Device) ScaleRows(y, x, s compute.Tensor, rows, dim int) {
	if d.same("scale_rows", y, x) {
		d.elementwise("scale_rows"+suffix(y.DType()), rows*dim, pa(y), pa(x), pa(s), ia(rows), ia(dim))
	}
}

// ColDot implements compute.Backend, in a fixed order like BiasGrad.
func (d *Device) ColDot(dst, a, b compute.Tensor, rows, dim int) {
	if !d.same("coldot", a, b) {
		return
	}
	d.columnSums(dst, rows, dim, func(parts compute.Tensor, chunks, rowsPer int) {
		d.launch("coldot_part"+suffix(a.DType()), [3]int{(dim + 127) / 128, chunks, 1}, block1(128), 0, pa(parts), pa(a), pa(b), ia(rows), ia(dim), ia(rowsPer))
	})
}

// DoRAScale implements compute.Backend.
func (d *Device) DoRAScale(scale, inv, m, norm2 compute.Tensor, n int) {
	d.elementwise("dora_scale_f32", n, pa(scale), pa(inv), pa(m), pa(norm2), ia(n))
}

// warpRowMax is the longest row normalised by one warp (q/k norms); longer
// rows get a block each (measured on an H200: for rows of 1024 a warp each
// took 2.7× longer than a block each).
const warpRowMax = 256

// ropeBlock is hd threads (one per element of a head) by as many heads as
// fit in 512 threads.
func ropeBlock(heads, hd int) [3]int {
	return [3]int{hd, max(1, min(heads, 512/max(hd, 1))), 1}
}

// RopeSplit implements compute.Backend.
func (d *Device) RopeSplit(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot int) {
	d.RopeSplitInto(dst, src, pos, cos, sin, b, t, heads, hd, rot, t, 0)
}

// RopeSplitInto implements compute.Backend.
func (d *Device) RopeSplitInto(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot, dstT, dstOff int) {
	if b*t == 0 || !d.same("rope", dst, src) {
		return
	}
	d.launch("rope_split"+suffix(src.DType()), grid1(b*t), ropeBlock(heads, hd), 0, pa(dst), pa(src), pa(pos), pa(cos), pa(sin), ia(t), ia(heads), ia(hd), ia(rot), ia(dstT), ia(dstOff))
}

// RopeMerge implements compute.Backend.
func (d *Device) RopeMerge(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot int, accumulate bool) {
	if b*t == 0 || !d.same("rope", dst, src) {
		return
	}
	acc := 0
	if accumulate {
		acc = 1
	}
	d.launch("rope_merge"+suffix(src.DType()), grid1(b*t), ropeBlock(heads, hd), 0, pa(dst), pa(src), pa(pos), pa(cos), pa(sin), ia(t), ia(heads), ia(hd), ia(rot), ia(acc))
}

// AttnSoftmax implements compute.Backend.
func (d *Device) AttnSoftmax(p, lse, s, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	rows := b * h * tq
	if rows == 0 {
		return
	}
	d.launch("attn_softmax"+suffix(p.DType()), grid1(rows), block1(rowBlock(tk)), 0, pa(p), pa(lse), pa(s), pa(kmask), pa(qseg), pa(kseg), ia(h), ia(tq), ia(tk), ia(off))
}

// AttnSoftmaxBackward implements compute.Backend.
func (d *Device) AttnSoftmaxBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	rows := b * h * tq
	if rows == 0 || !d.same("attention backward", p, ds) {
		return
	}
	d.launch("attn_softmax_bwd"+suffix(p.DType()), grid1(rows), block1(rowBlock(tk)), 0, pa(p), pa(ds), pa(s), pa(dp), pa(lse), pa(dsum), pa(kmask), pa(qseg), pa(kseg), ia(h), ia(tq), ia(tk), ia(off))
}

// RowDot implements compute.Backend.
func (d *Device) RowDot(out, a, b compute.Tensor, rows, dim int) {
	if rows == 0 || !d.same("rowdot", a, b) {
		return
	}
	d.launch("rowdot"+suffix(a.DType()), grid1((rows*32+255)/256), block1(256), 0, pa(out), pa(a), pa(b), ia(rows), ia(dim))
}

// CrossEntropy implements compute.Backend.
func (d *Device) CrossEntropy(loss, grad, logits, targets compute.Tensor, rows, vocab int, scale float32) {
	if rows == 0 {
		return
	}
	g, dt := 0, compute.F32
	if grad != nil {
		g, dt = 1, grad.DType()
	}
	d.launch("xent"+suffix(dt), grid1(rows), block1(1024), 0, pa(loss), pa(grad), pa(logits), pa(targets), ia(vocab), fa(scale), ia(g))
}

// GatherRows implements compute.Backend.
func (d *Device) GatherRows(dst, src, idx compute.Tensor, rows, dim int) {
	if d.same("gather", dst, src) {
		d.elementwise("gather_rows"+suffix(dst.DType()), rows*dim, pa(dst), pa(src), pa(idx), ia(rows), ia(dim))
	}
}

// ScatterAddRows implements compute.Backend.
func (d *Device) ScatterAddRows(dst, src, idx compute.Tensor, rows, dim int) {
	if d.same("scatter", dst, src) {
		d.elementwise("scatter_rows"+suffix(dst.DType()), rows*dim, pa(dst), pa(src), pa(idx), ia(rows), ia(dim))
	}
}

// EmbeddingBackward implements compute.Backend.
func (d *Device) EmbeddingBackward(table, dx, ids compute.Tensor, rows, dim int) {
	d.elementwise("embed_bwd"+suffix(dx.DType()), rows*dim, pa(table), pa(dx), pa(ids), ia(rows), ia(dim))
}

// GemmSum implements compute.Backend as two products.
func (d *Device) GemmSum(m, n int, t1, t2 compute.GemmTerm, beta float32, c compute.Tensor, ldc int) {
	d.Gemm(t1.TransA, t1.TransB, m, n, t1.K, t1.Alpha, t1.A, t1.LDA, t1.B, t1.LDB, beta, c, ldc)
	d.Gemm(t2.TransA, t2.TransB, m, n, t2.K, t2.Alpha, t2.A, t2.LDA, t2.B, t2.LDB, 1, c, ldc)
}

// Dequantize8 implements compute.Backend.
func (d *Device) Dequantize8(dst, q, scales compute.Tensor, n, block int) {
	d.elementwise("dequant8"+suffix(dst.DType()), n, pa(dst), pa(q), pa(scales), ia(n), ia(block))
}

// Dequantize4 implements compute.Backend.
func (d *Device) Dequantize4(dst, packed, scales, code compute.Tensor, n, block int) {
	d.elementwise("dequant4"+suffix(dst.DType()), n, pa(dst), pa(packed), pa(scales), pa(code), ia(n), ia(block))
}

// AdamW implements compute.Backend.
func (d *Device) AdamW(p, g, m, v, shadow compute.Tensor, s compute.AdamStep) {
	if shadow != nil && shadow.DType() != compute.BF16 {
		// An f32 shadow is the master itself.
		d.fail(fmt.Errorf("cuda: adamw shadow of type %v", shadow.DType()))
		return
	}
	d.elementwise("adamw_f32", p.Len(), pa(p), pa(g), pa(m), pa(v), pa(shadow), ia(p.Len()),
		fa(s.GradScale), fa(s.Decay), fa(s.Beta1), fa(s.Beta2), fa(s.StepSize), fa(s.BC2Sqrt), fa(s.Eps))
}

// SumSquares implements compute.Backend.
func (d *Device) SumSquares(ts []compute.Tensor) ([]float64, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	const blocks = 512
	parts, err := d.Alloc(compute.F32, blocks)
	if err != nil {
		return nil, err
	}
	defer parts.Free()
	out, err := d.Alloc(compute.F32, len(ts))
	if err != nil {
		return nil, err
	}
	defer out.Free()
	for i, t := range ts {
		nb := min(blocks, max(1, (t.Len()+1023)/1024))
		d.Zero(parts)
		d.launch("sumsq_part_f32", grid1(nb), block1(256), 0, pa(parts), pa(t), ia(t.Len()))
		d.launch("sum_f32", grid1(1), block1(256), 0, pa(out.Slice(i, 1)), pa(parts), ia(nb))
	}
	h := make([]float32, len(ts))
	if err := d.Download(h, out); err != nil {
		return nil, err
	}
	res := make([]float64, len(ts))
	for i, v := range h {
		res[i] = float64(v)
	}
	return res, nil
}

var _ compute.Backend = (*Device)(nil)
