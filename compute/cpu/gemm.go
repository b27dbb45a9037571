// Package cpu holds the CPU compute kernels: matrix multiplication (OpenBLAS
// when present, otherwise built-in kernels), bf16/f16 conversions, small vector
// kernels, and the helpers that spread work over the available cores.
package cpu

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// Impl names a matrix-multiplication implementation.
type Impl int

const (
	// ImplBuiltin is the built-in blocked kernel: Go assembly (AVX2/FMA) where
	// the CPU has it, plain Go otherwise.
	ImplBuiltin Impl = iota
	// ImplBLAS is OpenBLAS's cblas_sgemm, loaded at run time.
	ImplBLAS
	// ImplGeneric is the built-in blocked algorithm with the plain-Go
	// micro-kernel, whatever the CPU supports (for tests and comparisons).
	ImplGeneric
)

func (i Impl) String() string {
	switch i {
	case ImplBuiltin:
		return "builtin"
	case ImplBLAS:
		return "blas"
	case ImplGeneric:
		return "generic"
	}
	return fmt.Sprintf("Impl(%d)", int(i))
}

// Products with fewer multiply-adds than this stay on the built-in kernel even
// when OpenBLAS is loaded.
const blasMinWork = 64 * 64 * 64

// ErrBLASUnavailable is returned by SgemmWith when OpenBLAS could not be loaded.
var ErrBLASUnavailable = errors.New("cpu: OpenBLAS (libopenblas.so.0) is not available")

// backendChoice is what Sgemm uses, decided once from the environment and the
// machine.
type backendChoice struct {
	impl Impl
}

// The built-in assembly kernels are the default wherever they exist: they
// match OpenBLAS on a lone matrix product, and inside a training step they
// are faster, because OpenBLAS's own threads spin between calls and take the
// cores from the Go code (attention, norms, SiLU) that runs in between —
// measured on the LoRA step of smollm2-135m: 66 tokens/s built-in against 34
// with OpenBLAS under the same load. OpenBLAS stays the default where only the
// generic Go kernel is available, and GOTUNE_BLAS=openblas asks for it.
var chosenBackend = sync.OnceValue(func() backendChoice {
	switch os.Getenv("GOTUNE_BLAS") {
	case "builtin":
		return backendChoice{impl: ImplBuiltin}
	case "generic", "go":
		return backendChoice{impl: ImplGeneric}
	case "openblas", "blas":
		if BLASAvailable() {
			return backendChoice{impl: ImplBLAS}
		}
	}
	if bestKernel().name == genericKernel().name && BLASAvailable() {
		return backendChoice{impl: ImplBLAS}
	}
	return backendChoice{impl: ImplBuiltin}
})

// Backend describes the implementation Sgemm uses, for logs and `gotune bench`.
func Backend() string {
	switch chosenBackend().impl {
	case ImplBLAS:
		return fmt.Sprintf("openblas (%s), %d threads", blasInfo(), Threads())
	case ImplGeneric:
		return fmt.Sprintf("builtin %s, %d threads", genericKernel().name, Threads())
	}
	return fmt.Sprintf("builtin %s, %d threads", bestKernel().name, Threads())
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major float32 matrices,
// where op(X) is X or Xᵀ. op(A) is m×k, op(B) is k×n and C is m×n; lda, ldb and
// ldc are the row strides of the matrices as stored. beta == 0 overwrites C
// without reading it. It uses the built-in assembly kernel, or OpenBLAS where
// that is chosen (see chosenBackend) for all but small products, on Threads()
// cores. Operands too short for their shape and stride panic.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	SgemmOn(Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmOn is Sgemm on at most threads goroutines, the caller's among them:
// 1 keeps the product on the calling goroutine, for callers that already
// run independent products side by side (a mixture's experts). Fewer
// threads than Threads() always use the built-in kernels, as OpenBLAS's
// thread count is process-wide. Every element is computed as by Sgemm.
func SgemmOn(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	p := gemmProblem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	if p.trivial() {
		return
	}
	all := Threads()
	threads = max(1, min(threads, all))
	switch chosenBackend().impl {
	case ImplBLAS:
		// A purego call costs about 1.5 µs and a dozen small allocations,
		// more than the built-in kernel spends on a small product.
		if threads == all && p.m*p.n*p.k >= blasMinWork && blasSgemm(&p, 0) {
			return
		}
	case ImplGeneric:
		builtinGemm(&p, genericKernel(), threads)
		return
	}
	builtinGemm(&p, bestKernel(), threads)
}

// Term is one product alpha·op(A)·op(B) of SgemmSum, op(A) m×K and op(B)
// K×n, stored as for Sgemm.
type Term struct {
	TransA, TransB bool
	K              int
	Alpha          float32
	A              []float32
	LDA            int
	B              []float32
	// BH, when not nil, holds B as bfloat16 bits instead (a frozen weight
	// stored in bf16), widened as it is packed.
	BH  []uint16
	LDB int
}

// termOn computes C = t + beta·C on its own (SgemmSum's fallback).
func termOn(threads, m, n int, t Term, beta float32, c []float32, ldc int) {
	if t.BH != nil {
		SgemmBF16BOn(threads, t.TransA, t.TransB, m, n, t.K, t.Alpha, t.A, t.LDA, t.BH, t.LDB, beta, c, ldc)
		return
	}
	SgemmOn(threads, t.TransA, t.TransB, m, n, t.K, t.Alpha, t.A, t.LDA, t.B, t.LDB, beta, c, ldc)
}

// SgemmSum computes C = t1 + t2 + beta·C for two products of the same m×n
// shape, such as a frozen layer and its low-rank update: the second is
// computed block by block of columns right after the first, while that
// block of C is still in cache, instead of in a second pass over all of C.
func SgemmSum(m, n int, beta float32, c []float32, ldc int, t1, t2 Term) {
	SgemmSumOn(Threads(), m, n, beta, c, ldc, t1, t2)
}

// SgemmSumOn is SgemmSum on at most threads goroutines, as SgemmOn.
func SgemmSumOn(threads int, m, n int, beta float32, c []float32, ldc int, t1, t2 Term) {
	p := gemmProblem{transA: t1.TransA, transB: t1.TransB, m: m, n: n, k: t1.K, alpha: t1.Alpha,
		a: t1.A, lda: t1.LDA, b: t1.B, bh: t1.BH, ldb: t1.LDB, beta: beta, c: c, ldc: ldc}
	if p.bh != nil {
		p.b = nil
	}
	q := p.term(t2)
	if p.trivial() {
		termOn(threads, m, n, t2, 1, c, ldc)
		return
	}
	// A bf16 first term stays in the fused pass with OpenBLAS chosen: its
	// own product would run on the built-in kernel anyway (SgemmBF16BOn).
	impl := chosenBackend().impl
	if q.trivial() || impl == ImplGeneric || (impl == ImplBLAS && p.bh == nil) || p.isThin() {
		termOn(threads, m, n, t1, beta, c, ldc)
		termOn(threads, m, n, t2, 1, c, ldc)
		return
	}
	p.t2 = t2
	builtinGemm(&p, bestKernel(), max(1, min(threads, Threads())))
}

// term is p's second product as a problem of its own (beta 1: it adds).
func (p *gemmProblem) term(t Term) gemmProblem {
	q := gemmProblem{transA: t.TransA, transB: t.TransB, m: p.m, n: p.n, k: t.K, alpha: t.Alpha,
		a: t.A, lda: t.LDA, b: t.B, bh: t.BH, ldb: t.LDB, beta: 1, c: p.c, ldc: p.ldc}
	if q.bh != nil {
		q.b = nil
	}
	return q
}

// SgemmWith is Sgemm on a chosen implementation and thread count (threads <= 0
// means Threads()). It exists for benchmarks and tests; ImplBLAS calls with a
// thread count other than the default are serialised because OpenBLAS's thread
// count is process-wide.
func SgemmWith(impl Impl, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) error {
	if threads <= 0 {
		threads = Threads()
	}
	p := gemmProblem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	switch impl {
	case ImplBuiltin, ImplGeneric:
	case ImplBLAS:
		if !BLASAvailable() {
			return ErrBLASUnavailable
		}
	default:
		return fmt.Errorf("cpu: unknown implementation %v", impl)
	}
	if p.trivial() {
		return nil
	}
	switch impl {
	case ImplBLAS:
		if !blasSgemm(&p, threads) {
			builtinGemm(&p, bestKernel(), threads)
		}
	case ImplGeneric:
		builtinGemm(&p, genericKernel(), threads)
	default:
		builtinGemm(&p, bestKernel(), threads)
	}
	return nil
}

// gemmProblem is one C = alpha·op(A)·op(B) + beta·C call. Exactly one of b,
// bh (bf16 bits) and pk (panels packed ahead) holds B.
type gemmProblem struct {
	transA, transB bool
	m, n, k        int
	alpha          float32
	a              []float32
	lda            int
	b              []float32
	bh             []uint16
	pk             *PackedB
	ldb            int
	// t2 is a second product into the same C (SgemmSum), computed by
	// gemmRange right after the first for each block of columns; t2.k == 0
	// means none.
	t2   Term
	beta float32
	c    []float32
	ldc  int
}

// trivial checks the operand sizes (panicking on a programming error, as an
// out-of-range index would) and finishes the calls that need no product: empty
// C, k == 0 or alpha == 0, where C = beta·C.
func (p *gemmProblem) trivial() bool {
	if p.m < 0 || p.n < 0 || p.k < 0 {
		panic(fmt.Sprintf("cpu: Sgemm: negative size m=%d n=%d k=%d", p.m, p.n, p.k))
	}
	if p.m == 0 || p.n == 0 {
		return true
	}
	checkOperand("C", p.m, p.n, len(p.c), p.ldc)
	if p.k == 0 || p.alpha == 0 {
		scaleMatrix(p.c, p.m, p.n, p.ldc, p.beta)
		return true
	}
	ar, ac := p.m, p.k
	if p.transA {
		ar, ac = ac, ar
	}
	br, bc := p.k, p.n
	if p.transB {
		br, bc = bc, br
	}
	checkOperand("A", ar, ac, len(p.a), p.lda)
	if p.pk != nil {
		return false // checked when it was packed
	}
	blen := len(p.b)
	if p.bh != nil {
		blen = len(p.bh)
	}
	checkOperand("B", br, bc, blen, p.ldb)
	return false
}

// checkOperand panics when a rows×cols matrix with row stride ld does not fit
// in a slice of length n: the kernels index through unsafe pointers.
func checkOperand(name string, rows, cols, n, ld int) {
	if rows > 1 && ld < cols {
		panic(fmt.Sprintf("cpu: Sgemm: %s row stride %d is less than its %d columns", name, ld, cols))
	}
	if need := (rows-1)*ld + cols; n < need {
		panic(fmt.Sprintf("cpu: Sgemm: %s is %d×%d with stride %d and needs %d elements, has %d", name, rows, cols, ld, need, n))
	}
}

// scaleMatrix sets C = beta·C; beta == 0 clears without reading.
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	if beta == 1 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else {
			Scale(beta, row)
		}
	}
}

// Threads is the number of worker goroutines kernels use.
func Threads() int { return runtime.GOMAXPROCS(0) }

// Parallel splits [0,n) into contiguous chunks of at least minChunk items and
// runs fn on each, using up to Threads() goroutines. It returns when all are done.
func Parallel(n, minChunk int, fn func(lo, hi int)) {
	if minChunk < 1 {
		minChunk = 1
	}
	workers := Threads()
	if maxW := (n + minChunk - 1) / minChunk; workers > maxW {
		workers = maxW
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	RunWorkers((n+chunk-1)/chunk, func(w int) {
		fn(w*chunk, min((w+1)*chunk, n))
	})
}
