package cpu

import "sync"

// Thin products — one dimension no larger than thinMax, as in the low-rank
// paths of LoRA (rank 8–64 against hidden sizes in the thousands) — do too
// little arithmetic per element to repay packing: the blocked algorithm would
// copy (and for the forward pass transpose) the large operand for a product
// that then runs for less time than the copy took. The strided kernels read
// both operands where they lie instead: on a LoRA layer of smollm2-135m's
// gate shape (256 tokens, rank 16, best of 200) the six adapter products took
// 0.90 ms through the packed path, 0.63 ms in place, beside 4 ms for the
// frozen layer's own two products.
const thinMax = 64

// Largest product (multiply-adds) sent to the strided path for its size alone.
const thinMaxWork = 1 << 23

// Largest transposed B (floats) the thin path copies into rows: it must be
// the small operand.
const thinMaxBT = 1 << 17

// stridedKernel computes an mr×nr tile of C = alpha·A·B + beta·C where element
// (r, q) of A is a[r·aRow + q·aStep] and row q of B starts at b[q·bStep]; both
// operands are read in place. beta == 0 must not read C.
type stridedKernel struct {
	mr, nr int
	fn     func(k int, a []float32, aRow, aStep int, b []float32, bStep int, c []float32, ldc int, alpha, beta float32)
}

// stridedPair is a wide and a narrow kernel with the same number of rows: the
// narrow one finishes the columns the wide one leaves.
type stridedPair struct{ wide, narrow stridedKernel }

var genericStrided = stridedPair{
	wide:   stridedKernel{mr: 4, nr: 16, fn: stridedGeneric(4, 16)},
	narrow: stridedKernel{mr: 4, nr: 8, fn: stridedGeneric(4, 8)},
}

// bestStrided is the fastest strided kernel pair this CPU runs.
var bestStrided = sync.OnceValue(func() stridedPair {
	if ks, ok := archStrided(); ok {
		return ks
	}
	return genericStrided
})

// Thin reports whether Sgemm computes a product of this shape on the strided
// path (operands read in place) rather than from packed panels. A layer whose
// products are thin gains nothing from pre-packed weights (SgemmPackedB), and
// would round differently with them.
func Thin(transA, transB bool, m, n, k int) bool {
	p := gemmProblem{transA: transA, transB: transB, m: m, n: n, k: k}
	return p.isThin()
}

// isThin reports whether p goes to the strided path.
func (p *gemmProblem) isThin() bool {
	// Few rows of op(A) alone (a decode step's x·Wᵀ) is left to the packed
	// path unless A is transposed (the adapter's dA = dhᵀ·x): there B is
	// the large frozen weight, which may be packed ahead of time.
	thin := p.n <= thinMax || p.k <= thinMax || (p.m <= thinMax && p.transA)
	// Small products whose B needs no copy (attention's P·V and dK, dV
	// blocks) also run faster in place: 1.15–1.4× on 128×128×256 and
	// 256×128×128 (five runs).
	small := !p.transB && p.k <= 1024 && p.m*p.n*p.k <= thinMaxWork
	if p.pk != nil || p.bh != nil || !(thin || small) {
		return false
	}
	// A transposed B is copied into rows first, so it must be the small one.
	return !p.transB || p.n*p.k <= thinMaxBT
}

// thinGemm computes p with the strided kernels on up to threads goroutines.
func thinGemm(p *gemmProblem, ks stridedPair, threads int) {
	mr := ks.wide.mr
	w := workspaces.Get().(*workspace)
	defer workspaces.Put(w)

	a, aRow, aStep := p.a, p.lda, 1
	if p.transA {
		aRow, aStep = 1, p.lda
	}
	b, bStep := p.b, p.ldb
	// B's rows must hold at least one narrow tile; a transposed B is dealt
	// into rows. Both copies are of the small operand.
	nb := max(p.n, ks.narrow.nr)
	if p.transB || p.n < ks.narrow.nr {
		bp := w.bp[:0]
		if cap(bp) < p.k*nb {
			bp = alignedFloats(p.k * nb)
		}
		bp = bp[:p.k*nb]
		if p.transB {
			transposeInto(bp, nb, p.b, p.ldb, p.n, p.k)
		} else {
			for q := range p.k {
				copy(bp[q*nb:], p.b[q*p.ldb:q*p.ldb+p.n])
			}
		}
		for q := range p.k {
			clear(bp[q*nb+p.n : (q+1)*nb])
		}
		w.bp = bp
		b, bStep = bp, nb
	}
	// Fewer rows than one tile: copy A into a zero-padded tile of rows.
	mPad := p.m
	if p.m < mr {
		ap := w.ap[:0]
		if cap(ap) < mr*p.k {
			ap = alignedFloats(mr * p.k)
		}
		ap = ap[:mr*p.k]
		clear(ap)
		for i := range p.m {
			for q := range p.k {
				ap[i*p.k+q] = p.a[i*aRow+q*aStep]
			}
		}
		w.ap = ap
		a, aRow, aStep, mPad = ap, p.k, 1, mr
	}

	job := thinJobs.Get().(*thinJob)
	*job = thinJob{p: *p, ks: ks, a: a, aRow: aRow, aStep: aStep, b: b, bStep: bStep, mPad: mPad,
		rowTiles: (p.m + mr - 1) / mr, cols: thinColumns(job.cols[:0], p.n, nb, ks)}
	work := p.m * p.n * p.k
	if threads > 1 && work < minParallelWork*threads {
		threads = max(1, work/minParallelWork)
	}
	// Split the larger of the two tile counts; each goroutine owns whole
	// rows or columns of tiles, so no two write the same part of C.
	splitCols := len(job.cols) >= job.rowTiles
	units := job.rowTiles
	if splitCols {
		units = len(job.cols)
	}
	runParts(job, splitCols, units, max(1, min(threads, units)))
	cols := job.cols
	*job = thinJob{cols: cols[:0]}
	thinJobs.Put(job)
}

var thinJobs = sync.Pool{New: func() any { return new(thinJob) }}

// transposeInto writes dst[q*ldd+j] = src[j*lds+q] for j < n, q < k.
func transposeInto(dst []float32, ldd int, src []float32, lds, n, k int) {
	j := 0
	for ; j+8 <= n; j += 8 {
		if !transpose8(dst[j:], src[j*lds:], lds, ldd, k) {
			break
		}
	}
	for ; j < n; j++ {
		for q, v := range src[j*lds : j*lds+k] {
			dst[q*ldd+j] = v
		}
	}
}

// thinCol is one column tile: it computes columns [j0, j0+kern.nr) and owns
// (writes) columns [j, end).
type thinCol struct {
	j, j0, end int
	narrow     bool
}

// thinColumns lays tiles over n columns (B rows hold nb ≥ narrow.nr
// floats): wide tiles, then one narrow or wide tile ending at the last
// column, overlapping its neighbour rather than reading past the end.
func thinColumns(cols []thinCol, n, nb int, ks stridedPair) []thinCol {
	wn, nn := ks.wide.nr, ks.narrow.nr
	for j := 0; j < n; {
		rem := n - j
		switch {
		case rem >= wn:
			cols = append(cols, thinCol{j: j, j0: j, end: j + wn})
			j += wn
		case rem > nn && nb >= wn:
			cols = append(cols, thinCol{j: j, j0: nb - wn, end: n})
			j = n
		default:
			j0 := min(j, nb-nn)
			end := min(j0+nn, n)
			cols = append(cols, thinCol{j: j, j0: j0, end: end, narrow: true})
			j = end
		}
	}
	return cols
}

// thinJob is one thin product with its operands resolved to strides.
type thinJob struct {
	p           gemmProblem
	ks          stridedPair
	a           []float32
	aRow, aStep int
	b           []float32
	bStep       int
	mPad        int // rows A holds (≥ one tile)
	rowTiles    int
	cols        []thinCol
	wg          sync.WaitGroup
}

func (j *thinJob) group() *sync.WaitGroup { return &j.wg }

// part computes column tiles (splitCols) or row tiles [lo,hi).
func (j *thinJob) part(splitCols bool, lo, hi int) {
	if splitCols {
		j.run(0, j.rowTiles, lo, hi)
	} else {
		j.run(lo, hi, 0, len(j.cols))
	}
}

// run computes the tiles in row-tile range [r0,r1) × column-tile range
// [c0,c1). Tiles that overlap a neighbour (the last row or column) go through
// a scratch tile and only their own part is merged into C.
func (j *thinJob) run(r0, r1, c0, c1 int) {
	// The scratch tile comes from the pool: handed to a kernel through a
	// function value, a local array would escape to the heap on every call.
	w := workspaces.Get().(*workspace)
	defer workspaces.Put(w)
	tile := &w.tile
	p, mr := &j.p, j.ks.wide.mr
	for ci := c0; ci < c1; ci++ {
		col := j.cols[ci]
		kern := j.ks.wide
		if col.narrow {
			kern = j.ks.narrow
		}
		bcol := j.b[col.j0:]
		for ri := r0; ri < r1; ri++ {
			i := ri * mr
			i0 := min(i, j.mPad-mr)
			aoff := i0 * j.aRow
			rows := min(mr, p.m-i)
			if i0 == i && col.j0 == col.j && rows == mr && col.end-col.j == kern.nr {
				kern.fn(p.k, j.a[aoff:], j.aRow, j.aStep, bcol, j.bStep, p.c[i*p.ldc+col.j:], p.ldc, p.alpha, p.beta)
				continue
			}
			kern.fn(p.k, j.a[aoff:], j.aRow, j.aStep, bcol, j.bStep, tile[:], kern.nr, p.alpha, 0)
			for r := range rows {
				src := tile[(i-i0+r)*kern.nr+col.j-col.j0:][:col.end-col.j]
				dst := p.c[(i+r)*p.ldc+col.j:][:len(src)]
				if p.beta == 0 {
					copy(dst, src)
					continue
				}
				for x, v := range src {
					dst[x] = p.beta*dst[x] + v
				}
			}
		}
	}
}

// stridedGeneric is the plain-Go strided kernel for CPUs without assembly.
func stridedGeneric(mr, nr int) func(k int, a []float32, aRow, aStep int, b []float32, bStep int, c []float32, ldc int, alpha, beta float32) {
	return func(k int, a []float32, aRow, aStep int, b []float32, bStep int, c []float32, ldc int, alpha, beta float32) {
		var acc [maxTile]float32
		for q := range k {
			brow := b[q*bStep : q*bStep+nr]
			for r := range mr {
				av := a[r*aRow+q*aStep]
				row := acc[r*nr : r*nr+nr]
				for x, bv := range brow {
					row[x] += av * bv
				}
			}
		}
		for r := range mr {
			dst := c[r*ldc : r*ldc+nr]
			for x := range dst {
				if beta == 0 {
					dst[x] = alpha * acc[r*nr+x]
				} else {
					dst[x] = alpha*acc[r*nr+x] + beta*dst[x]
				}
			}
		}
	}
}
