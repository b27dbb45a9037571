package cpu

import "fmt"

// PackedB is a constant B operand (a frozen weight) laid out once in the
// micro-kernel's panel format, so that SgemmPackedB skips the packing (for a
// transposed B, a transpose) that Sgemm repeats on every call. It holds about
// k·n floats more: k·⌈n/nr⌉·nr, the last panel zero-padded. It is immutable
// and safe for concurrent use; it goes stale if the source B changes.
type PackedB struct {
	k, n int
	kern microKernel
	kcb  int // rows per k-block: evenBlock(k, kern.kc, 1), as gemmRange uses
	npad int // n rounded up to a multiple of kern.nr
	// data holds, for each k-block starting at row pc (kb rows), ⌈n/nr⌉ panels
	// of kb×nr values (nr per k step) from offset pc·npad; panel jr/nr of that
	// block starts at pc·npad + jr·kb.
	data []float32
	// dense is op(B) as a compact k×n row-major copy, used instead of data
	// when Sgemm runs on OpenBLAS, whose packing cannot be reused.
	dense []float32
}

// PackB packs op(B) (k×n; B stored row-major with row stride ldb, transposed
// when transB) for SgemmPackedB, in the layout of the kernel Sgemm uses. An
// operand too short for its shape and stride panics, as in Sgemm.
func PackB(transB bool, k, n int, b []float32, ldb int) *PackedB {
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("cpu: PackB: negative size k=%d n=%d", k, n))
	}
	switch chosenBackend().impl {
	case ImplBLAS:
		return packDense(transB, k, n, b, ldb)
	case ImplGeneric:
		return packBWith(genericKernel(), transB, k, n, b, ldb)
	}
	return packBWith(bestKernel(), transB, k, n, b, ldb)
}

func checkPackOperand(transB bool, k, n int, b []float32, ldb int) {
	if k == 0 || n == 0 {
		return
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkOperand("B", br, bc, len(b), ldb)
}

func packDense(transB bool, k, n int, b []float32, ldb int) *PackedB {
	checkPackOperand(transB, k, n, b, ldb)
	d := make([]float32, k*n)
	for q := range k {
		row := d[q*n : q*n+n]
		if !transB {
			copy(row, b[q*ldb:q*ldb+n])
			continue
		}
		for j := range row {
			row[j] = b[j*ldb+q]
		}
	}
	return &PackedB{k: k, n: n, dense: d}
}

// packBWith packs for a given micro-kernel and its k blocking.
func packBWith(kern microKernel, transB bool, k, n int, b []float32, ldb int) *PackedB {
	checkPackOperand(transB, k, n, b, ldb)
	pk := &PackedB{k: k, n: n, kern: kern}
	if k == 0 || n == 0 {
		return pk
	}
	pk.kcb = evenBlock(k, kern.kc, 1)
	pk.npad = (n + kern.nr - 1) / kern.nr * kern.nr
	pk.data = alignedFloats(k * pk.npad)
	p := gemmProblem{transB: transB, k: k, n: n, b: b, ldb: ldb}
	Parallel(k/pk.kcb+1, 1, func(lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			pc := blk * pk.kcb
			if pc >= k {
				break
			}
			kb := min(pk.kcb, k-pc)
			packB(pk.data[pc*pk.npad:pc*pk.npad+kb*pk.npad], &p, kern.nr, pc, kb, 0, n)
		}
	})
	return pk
}

// block returns the packed panels of rows [pc, pc+kb) and columns [jc, jc+nb)
// of op(B); pc is a k-block start and jc a multiple of nr.
func (pk *PackedB) block(pc, kb, jc, nb int) []float32 {
	nbPad := (nb + pk.kern.nr - 1) / pk.kern.nr * pk.kern.nr
	off := pc*pk.npad + jc*kb
	return pk.data[off : off+nbPad*kb]
}

// K is the number of rows of op(B) (the inner dimension of the product).
func (pk *PackedB) K() int { return pk.k }

// N is the number of columns of op(B) (and of C).
func (pk *PackedB) N() int { return pk.n }

// Bytes is the memory the packed copy holds.
func (pk *PackedB) Bytes() int { return 4 * (len(pk.data) + len(pk.dense)) }

// SgemmPackedB is Sgemm with B packed ahead by PackB: C = alpha·op(A)·op(B) +
// beta·C, op(A) m×k, C m×n, with k and n those given to PackB. beta == 0
// overwrites C without reading it. It runs on Threads() cores and does not
// allocate; the result is bitwise that of Sgemm on the same B.
func SgemmPackedB(transA bool, m int, alpha float32, a []float32, lda int, pk *PackedB, beta float32, c []float32, ldc int) {
	SgemmPackedBOn(Threads(), transA, m, alpha, a, lda, pk, beta, c, ldc)
}

// SgemmPackedBOn is SgemmPackedB on at most threads goroutines, as SgemmOn.
func SgemmPackedBOn(threads int, transA bool, m int, alpha float32, a []float32, lda int, pk *PackedB, beta float32, c []float32, ldc int) {
	if pk.dense != nil {
		SgemmOn(threads, transA, false, m, pk.n, pk.k, alpha, a, lda, pk.dense, pk.n, beta, c, ldc)
		return
	}
	sgemmPacked(max(1, min(threads, Threads())), transA, m, alpha, a, lda, pk, beta, c, ldc)
}

func sgemmPacked(threads int, transA bool, m int, alpha float32, a []float32, lda int, pk *PackedB, beta float32, c []float32, ldc int) {
	p := gemmProblem{transA: transA, m: m, n: pk.n, k: pk.k, alpha: alpha,
		a: a, lda: lda, pk: pk, beta: beta, c: c, ldc: ldc}
	if p.trivial() {
		return
	}
	builtinGemm(&p, pk.kern, threads)
}
