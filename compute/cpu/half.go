package cpu

import "gotune/dtype"

// The conversions live in package dtype (file formats use them without a
// compute backend); these names remain for the kernels and their callers.

// BF16ToF32 widens bfloat16 bits into dst; see dtype.BF16ToF32.
func BF16ToF32(dst []float32, src []uint16) { dtype.BF16ToF32(dst, src) }

// F32ToBF16 narrows src to bfloat16 bits; see dtype.F32ToBF16.
func F32ToBF16(dst []uint16, src []float32) { dtype.F32ToBF16(dst, src) }

// F16ToF32 widens IEEE half bits into dst; see dtype.F16ToF32.
func F16ToF32(dst []float32, src []uint16) { dtype.F16ToF32(dst, src) }

// F32ToF16 narrows src to IEEE half bits; see dtype.F32ToF16.
func F32ToF16(dst []uint16, src []float32) { dtype.F32ToF16(dst, src) }

// SgemmBF16B is Sgemm with B held as bfloat16 bits (weights stored in bf16):
// C = alpha·op(A)·op(B) + beta·C, B widened to float32 while it is packed and
// the arithmetic done in float32. It always runs the built-in kernel.
func SgemmBF16B(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	SgemmBF16BOn(Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBF16BOn is SgemmBF16B on at most threads goroutines, as SgemmOn.
func SgemmBF16BOn(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	if b == nil {
		b = []uint16{}
	}
	p := gemmProblem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, bh: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	if p.trivial() {
		return
	}
	kern := bestKernel()
	if chosenBackend().impl == ImplGeneric {
		kern = genericKernel()
	}
	builtinGemm(&p, kern, max(1, min(threads, Threads())))
}
