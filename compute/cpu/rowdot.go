package cpu

import "sync"

// rowDotsMax is the most rows of A computed as dot products against B's
// rows in place (see rowDots). A decode step's x·Wᵀ has one row per
// sequence: there the packed path spends more time transposing the whole
// weight into the kernel's panels (measured: 56% of a smollm2-135m decode
// step in transpose8) than multiplying, and reads it three times instead of
// once.
const rowDotsMax = 4

// rowDotBlock is the rows of B rowDotRange dots with one row of A at a
// time (32 rows of 576 floats: 72 KB, in L2 for the next row of A).
const rowDotBlock = 32

// rowDotWork is the fewest multiply-adds a goroutine takes on.
const rowDotWork = 1 << 15

// useRowDots reports whether p is computed by rowDots: few rows of a plain
// A times a transposed, unpacked B (float32 or bf16), with no second
// product.
func (p *gemmProblem) useRowDots() bool {
	return !p.transA && p.transB && p.m <= rowDotsMax && p.pk == nil && p.t2.K == 0
}

// rowBufs holds one goroutine's float copy of a bf16 row of B.
var rowBufs = sync.Pool{New: func() any { return new([]float32) }}

// rowDotJob is rowDots split over columns of C.
type rowDotJob struct {
	p  gemmProblem
	wg sync.WaitGroup
}

var rowDotJobs = sync.Pool{New: func() any { return new(rowDotJob) }}

func (j *rowDotJob) group() *sync.WaitGroup { return &j.wg }

func (j *rowDotJob) part(_ bool, lo, hi int) { rowDotRange(&j.p, lo, hi) }

// rowDots computes C = alpha·A·Bᵀ + beta·C where B is stored [n, k]: every
// element of C is the dot product of a row of A with a row of B, so B is
// read once, in place, each of its rows against all of A's (which stay in
// cache). A bf16 B is widened a row at a time.
func rowDots(p *gemmProblem, threads int) {
	threads = min(threads, max(1, p.n*p.k*p.m/rowDotWork), p.n)
	if threads <= 1 {
		rowDotRange(p, 0, p.n)
		return
	}
	job := rowDotJobs.Get().(*rowDotJob)
	job.p = *p
	runParts(job, true, p.n, threads)
	job.p = gemmProblem{}
	rowDotJobs.Put(job)
}

func rowDotRange(p *gemmProblem, lo, hi int) {
	k := p.k
	if p.bh == nil {
		// A float B: a block of its rows against each row of A at a time,
		// the block small enough to stay in cache for the next row of A.
		var dots [rowDotBlock]float32
		for j0 := lo; j0 < hi; j0 += rowDotBlock {
			d := dots[:min(rowDotBlock, hi-j0)]
			for i := 0; i < p.m; i++ {
				dotRows(d, p.a[i*p.lda:i*p.lda+k], p.b[j0*p.ldb:], p.ldb)
				c := p.c[i*p.ldc+j0:][:len(d)]
				for j, v := range d {
					v *= p.alpha
					if p.beta == 0 {
						c[j] = v
					} else {
						c[j] = v + p.beta*c[j]
					}
				}
			}
		}
		return
	}
	var wide *[]float32
	if p.bh != nil {
		// A bf16 B (a decode step over a base loaded in bf16): each row is
		// widened once into a buffer and dotted with every row of A.
		wide = rowBufs.Get().(*[]float32)
		if cap(*wide) < k {
			*wide = make([]float32, k)
		}
		defer rowBufs.Put(wide)
	}
	for j := lo; j < hi; j++ {
		var brow []float32
		if wide != nil {
			brow = (*wide)[:k]
			widenBF16(brow, p.bh[j*p.ldb:j*p.ldb+k])
		} else {
			brow = p.b[j*p.ldb : j*p.ldb+k]
		}
		for i := 0; i < p.m; i++ {
			d := p.alpha * Dot(p.a[i*p.lda:i*p.lda+k], brow)
			c := &p.c[i*p.ldc+j]
			if p.beta == 0 {
				*c = d
			} else {
				*c = d + p.beta*(*c)
			}
		}
	}
}
