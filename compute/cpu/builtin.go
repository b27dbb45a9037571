package cpu

import (
	"math"
	"os"
	"sync"
	"unsafe"
)

// Below this many multiply-adds a second goroutine costs more than it saves.
const minParallelWork = 1 << 17

// Largest register tile of any micro-kernel (sizes the edge-tile buffer).
const maxTile = 12 * 32

// microKernel computes C[0:mr, 0:nr] = alpha·Ap·Bp + beta·C for packed panels
// Ap (k×mr, one column of A per k step) and Bp (k×nr, one row of B per step);
// beta == 0 must not read C. kc, mc and nc are its cache blocking (BLIS/Goto
// style): a kc×nr panel of B stays in L1 while an mc×kc block of A sits in L2
// and a kc×nc block of B in L2/L3.
type microKernel struct {
	name       string
	mr, nr     int
	kc, mc, nc int
	fn         func(k int, a, b, c []float32, ldc int, alpha, beta float32)
}

var genericKernel = sync.OnceValue(func() microKernel {
	return microKernel{name: "generic Go 6x16", mr: 6, nr: 16, kc: 256, mc: 120, nc: 3072, fn: kernelGeneric}
})

// bestKernel is the fastest micro-kernel this CPU runs. GOTUNE_CPU=avx2 skips
// the AVX-512 kernel (for comparisons, or CPUs that slow down under AVX-512).
var bestKernel = sync.OnceValue(func() microKernel {
	for _, k := range archKernels() {
		if os.Getenv("GOTUNE_CPU") == "avx2" && k.nr > 16 {
			continue
		}
		return k
	}
	return genericKernel()
})

// workspace holds one goroutine's packing buffers; pooled so that steady-state
// calls do not allocate.
type workspace struct {
	ap, bp []float32
	tile   [maxTile]float32
}

var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// alignedFloats returns a slice of n float32 starting on a 64-byte boundary.
func alignedFloats(n int) []float32 {
	buf := make([]float32, n+16)
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))&63)&63) / 4
	return buf[off : off+n : off+n]
}

func (w *workspace) ensure(apLen, bpLen int) {
	if cap(w.ap) < apLen {
		w.ap = alignedFloats(apLen)
	}
	if cap(w.bp) < bpLen {
		w.bp = alignedFloats(bpLen)
	}
	w.ap, w.bp = w.ap[:apLen], w.bp[:bpLen]
}

// gemmJob carries a call to the worker goroutines.
type gemmJob struct {
	p    gemmProblem
	kern microKernel
	wg   sync.WaitGroup
}

var gemmJobs = sync.Pool{New: func() any { return new(gemmJob) }}

// builtinGemm runs the blocked algorithm on up to threads goroutines. Work is
// split along the dimension that duplicates less packing: splitting n makes
// every goroutine pack all of A, splitting m makes each pack all of B.
func builtinGemm(p *gemmProblem, kern microKernel, threads int) {
	if p.useRowDots() && kern.name == bestKernel().name {
		rowDots(p, threads)
		return
	}
	if p.isThin() {
		ks := bestStrided()
		if kern.name == genericKernel().name {
			ks = genericStrided
		}
		thinGemm(p, ks, threads)
		return
	}
	work := p.m * p.n * p.k
	if threads > 1 && work < minParallelWork*threads {
		threads = max(1, work/minParallelWork)
	}
	splitN := p.n >= p.m
	if p.pk != nil {
		// B is packed already, so splitting m duplicates nothing; split n
		// only when m leaves too few row tiles to share.
		splitN = p.m < 2*threads*kern.mr
	}
	units := (p.m + kern.mr - 1) / kern.mr
	if splitN {
		units = (p.n + kern.nr - 1) / kern.nr
	}
	threads = min(threads, units)
	if threads <= 1 {
		gemmRange(p, &kern, 0, p.m, 0, p.n)
		return
	}
	job := gemmJobs.Get().(*gemmJob)
	job.p, job.kern = *p, kern
	runParts(job, splitN, units, threads)
	job.p = gemmProblem{}
	gemmJobs.Put(job)
}

func (j *gemmJob) group() *sync.WaitGroup { return &j.wg }

// part computes the columns (splitN) or rows of C in tile range [lo,hi).
func (j *gemmJob) part(splitN bool, lo, hi int) {
	p, k := &j.p, &j.kern
	if splitN {
		gemmRange(p, k, 0, p.m, lo*k.nr, min(hi*k.nr, p.n))
	} else {
		gemmRange(p, k, lo*k.mr, min(hi*k.mr, p.m), 0, p.n)
	}
}

// evenBlock splits total into the fewest blocks of at most limit and returns
// their (nearly equal) size rounded up to a multiple of unit, so that a k of
// 300 becomes 2×152 rather than 256+44.
func evenBlock(total, limit, unit int) int {
	blocks := (total + limit - 1) / limit
	size := (total + blocks - 1) / blocks
	return (size + unit - 1) / unit * unit
}

// gemmRange computes C[i0:i1, j0:j1] on the calling goroutine.
func gemmRange(p *gemmProblem, kern *microKernel, i0, i1, j0, j1 int) {
	w := workspaces.Get().(*workspace)
	kcb := evenBlock(p.k, kern.kc, 1)
	mcb := evenBlock(i1-i0, kern.mc, kern.mr)
	ncb := evenBlock(j1-j0, kern.nc, kern.nr)
	var q gemmProblem
	kcb2 := 0
	if p.t2.K > 0 {
		q = p.term(p.t2)
		kcb2 = evenBlock(q.k, kern.kc, 1)
	}
	bpLen := ncb * max(kcb, kcb2)
	if p.pk != nil && kcb2 == 0 {
		bpLen = 0 // B's panels are read in place
	}
	w.ensure(mcb*max(kcb, kcb2), bpLen)
	for jc := j0; jc < j1; jc += ncb {
		nb := min(ncb, j1-jc)
		for pc := 0; pc < p.k; pc += kcb {
			kb := min(kcb, p.k-pc)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			bp := w.bp
			if p.pk != nil {
				bp = p.pk.block(pc, kb, jc, nb)
			} else {
				packB(bp, p, kern.nr, pc, kb, jc, nb)
			}
			for ic := i0; ic < i1; ic += mcb {
				mb := min(mcb, i1-ic)
				packA(w.ap, p, kern.mr, ic, mb, pc, kb)
				macroKernel(w, bp, p, kern, ic, mb, jc, nb, kb, beta)
			}
		}
		// The second product of SgemmSum, into the block of C just made.
		for pc := 0; pc < q.k; pc += kcb2 {
			kb := min(kcb2, q.k-pc)
			packB(w.bp, &q, kern.nr, pc, kb, jc, nb)
			for ic := i0; ic < i1; ic += mcb {
				mb := min(mcb, i1-ic)
				packA(w.ap, &q, kern.mr, ic, mb, pc, kb)
				macroKernel(w, w.bp, &q, kern, ic, mb, jc, nb, kb, 1)
			}
		}
	}
	workspaces.Put(w)
}

// macroKernel multiplies the packed mb×kb block of A by the packed kb×nb block
// of B (bpk) into C[ic:ic+mb, jc:jc+nb].
func macroKernel(w *workspace, bpk []float32, p *gemmProblem, kern *microKernel, ic, mb, jc, nb, kb int, beta float32) {
	c, ldc, alpha := p.c, p.ldc, p.alpha
	mr, nr := kern.mr, kern.nr
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		bp := bpk[jr*kb : jr*kb+nr*kb]
		for ir := 0; ir < mb; ir += mr {
			rows := min(mr, mb-ir)
			ap := w.ap[ir*kb : ir*kb+mr*kb]
			off := (ic+ir)*ldc + jc + jr
			if rows == mr && cols == nr {
				kern.fn(kb, ap, bp, c[off:], ldc, alpha, beta)
				continue
			}
			// Edge tile: compute the full tile aside, then merge the part
			// inside C.
			kern.fn(kb, ap, bp, w.tile[:], nr, alpha, 0)
			for r := range rows {
				dst := c[off+r*ldc : off+r*ldc+cols]
				src := w.tile[r*nr : r*nr+cols]
				if beta == 0 {
					copy(dst, src)
					continue
				}
				for j, v := range src {
					dst[j] = beta*dst[j] + v
				}
			}
		}
	}
}

// packA copies A[ic:ic+mb, pc:pc+kb] (of op(A)) into panels of mr rows, each
// stored column by column (mr values per k step), zero-padding the last panel.
func packA(dst []float32, p *gemmProblem, mr, ic, mb, pc, kb int) {
	a, lda := p.a, p.lda
	if p.transA {
		// op(A)[i][q] = a[q*lda+i]: walk the stored rows in order and deal
		// each into the panels.
		full := mb / mr * mr
		for q := range kb {
			src := a[(pc+q)*lda+ic:][:mb]
			switch mr {
			case 6: // array copies compile to a few vector moves, copy() to a call
				for ir := 0; ir < full; ir += 6 {
					*(*[6]float32)(dst[ir*kb+q*6:]) = *(*[6]float32)(src[ir:])
				}
			case 12:
				for ir := 0; ir < full; ir += 12 {
					*(*[12]float32)(dst[ir*kb+q*12:]) = *(*[12]float32)(src[ir:])
				}
			default:
				for ir := 0; ir < full; ir += mr {
					copy(dst[ir*kb+q*mr:][:mr], src[ir:ir+mr])
				}
			}
			if full < mb {
				d := dst[full*kb+q*mr:][:mr]
				clear(d[copy(d, src[full:]):])
			}
		}
		return
	}
	for ir := 0; ir < mb; ir += mr {
		rows := min(mr, mb-ir)
		panel := dst[ir*kb : ir*kb+mr*kb]
		i := ic + ir
		if rows == mr && mr >= 8 && transpose8(panel, a[i*lda+pc:], lda, mr, kb) {
			// Transpose 8 rows at a time; the last group overlaps the one
			// before it when mr is not a multiple of 8 (same values twice).
			for r := 8; r < mr; r += 8 {
				r = min(r, mr-8)
				transpose8(panel[r:], a[(i+r)*lda+pc:], lda, mr, kb)
			}
			continue
		}
		if rows == 6 && mr == 6 {
			r0 := a[i*lda+pc:][:kb]
			r1 := a[(i+1)*lda+pc:][:kb]
			r2 := a[(i+2)*lda+pc:][:kb]
			r3 := a[(i+3)*lda+pc:][:kb]
			r4 := a[(i+4)*lda+pc:][:kb]
			r5 := a[(i+5)*lda+pc:][:kb]
			for q := range kb {
				d := panel[q*6 : q*6+6 : q*6+6]
				d[0], d[1], d[2], d[3], d[4], d[5] = r0[q], r1[q], r2[q], r3[q], r4[q], r5[q]
			}
			continue
		}
		if rows < mr {
			clear(panel)
		}
		for r := range rows {
			row := a[(i+r)*lda+pc:][:kb]
			for q, v := range row {
				panel[q*mr+r] = v
			}
		}
	}
}

// packB copies B[pc:pc+kb, jc:jc+nb] (of op(B)) into panels of nr columns (a
// multiple of 8), each stored row by row (nr values per k step), zero-padding
// the last panel.
func packB(dst []float32, p *gemmProblem, nr, pc, kb, jc, nb int) {
	if p.bh != nil {
		packBBF16(dst, p, nr, pc, kb, jc, nb)
		return
	}
	b, ldb := p.b, p.ldb
	if !p.transB {
		// Walk the rows of B in order (the hardware prefetcher follows) and
		// deal each into the panels.
		full := nb / nr * nr
		for q := range kb {
			src := b[(pc+q)*ldb+jc:][:nb]
			for jr := 0; jr < full; jr += nr {
				copy(dst[jr*kb+q*nr:][:nr], src[jr:jr+nr])
			}
			if full < nb {
				d := dst[full*kb+q*nr:][:nr]
				clear(d[copy(d, src[full:]):])
			}
		}
		return
	}
	// op(B)[q][j] = b[j*ldb+q]: transpose stored rows into panel columns.
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		panel := dst[jr*kb : jr*kb+nr*kb]
		j := jc + jr
		if cols < nr {
			clear(panel)
		}
		c := 0
		for ; c+8 <= cols; c += 8 {
			if !transpose8(panel[c:], b[(j+c)*ldb+pc:], ldb, nr, kb) {
				break
			}
		}
		for ; c < cols; c++ {
			row := b[(j+c)*ldb+pc:][:kb]
			for q, v := range row {
				panel[q*nr+c] = v
			}
		}
	}
}

// packBBF16 is packB for B held as bfloat16 bits, widened to float32.
func packBBF16(dst []float32, p *gemmProblem, nr, pc, kb, jc, nb int) {
	b, ldb := p.bh, p.ldb
	if !p.transB {
		for q := range kb {
			src := b[(pc+q)*ldb+jc:][:nb]
			for jr := 0; jr < nb; jr += nr {
				cols := min(nr, nb-jr)
				d := dst[jr*kb+q*nr:][:nr]
				widenBF16(d, src[jr:jr+cols])
				clear(d[cols:])
			}
		}
		return
	}
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		panel := dst[jr*kb : jr*kb+nr*kb]
		j := jc + jr
		if cols < nr {
			clear(panel)
		}
		c := 0
		for ; c+8 <= cols; c += 8 {
			if !transpose8BF16(panel[c:], b[(j+c)*ldb+pc:], ldb, nr, kb) {
				break
			}
		}
		for ; c < cols; c++ {
			row := b[(j+c)*ldb+pc:][:kb]
			for q, v := range row {
				panel[q*nr+c] = math.Float32frombits(uint32(v) << 16)
			}
		}
	}
}

// kernelGeneric is the plain-Go 6×16 micro-kernel, used where no assembly
// exists.
func kernelGeneric(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	const mr, nr = 6, 16
	var acc [mr][nr]float32
	for q := range k {
		bq := (*[nr]float32)(b[q*nr : q*nr+nr])
		aq := (*[mr]float32)(a[q*mr : q*mr+mr])
		for r := range mr {
			av := aq[r]
			row := &acc[r]
			for j := range nr {
				row[j] += av * bq[j]
			}
		}
	}
	for r := range mr {
		dst := (*[nr]float32)(c[r*ldc : r*ldc+nr])
		if beta == 0 {
			for j := range nr {
				dst[j] = alpha * acc[r][j]
			}
			continue
		}
		for j := range nr {
			dst[j] = alpha*acc[r][j] + beta*dst[j]
		}
	}
}
