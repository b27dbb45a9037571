package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

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

// rowDotJob is rowDots split over columns of C: parts of equal size that
// the caller and the workers claim in turn, so a worker that starts late
// (its core busy elsewhere) leaves its part to the caller instead of
// making it wait.
type rowDotJob struct {
	p     gemmProblem
	parts atomic.Int32
	next  atomic.Int32 // the next part to claim; closed between uses
	left  atomic.Int32 // parts not yet finished
	wg    sync.WaitGroup
}

// rowDotClosed is next between uses of a job: past any number of parts.
const rowDotClosed = 1 << 30

var rowDotJobs = sync.Pool{New: func() any { return new(rowDotJob) }}

func (j *rowDotJob) group() *sync.WaitGroup { return &j.wg }

func (j *rowDotJob) part(bool, int, int) { j.work() }

// work computes parts until none is left to claim. It reads p only after a
// claim: a worker of an earlier use of the job (dispatched, but started
// after that use had ended) claims a part of the current use, whose
// problem was written before its claims opened, or nothing.
func (j *rowDotJob) work() {
	for {
		i, parts := j.next.Add(1)-1, j.parts.Load()
		if i >= parts {
			return
		}
		n := j.p.n
		rowDotRange(&j.p, int(i)*n/int(parts), int(i+1)*n/int(parts))
		j.left.Add(-1)
	}
}

// rowDots computes C = alpha·A·Bᵀ + beta·C where B is stored [n, k]: every
// element of C is the dot product of a row of A with a row of B, so B is
// read once, in place, each of its rows against all of A's (which stay in
// cache). A bf16 B is widened a row at a time.
//
// The caller spins until the parts are done rather than sleeping on the
// workers' WaitGroup: a decode step is some 200 of these products of well
// under a millisecond each, and waking the caller from the WaitGroup after
// the last part cost 10-20 µs each (measured on the idle 2-core machine,
// best of 10: smollm2-135m's 211 products of one token took 13.5 ms with
// the WaitGroup, 11.7 ms spinning, and one product over all their rows at
// once 10.7 ms). Past that it sleeps on the WaitGroup after all, which
// every worker dispatched to this use of the job leaves.
func rowDots(p *gemmProblem, threads int) {
	threads = min(threads, max(1, p.n*p.k*p.m/rowDotWork), p.n)
	if threads <= 1 {
		rowDotRange(p, 0, p.n)
		return
	}
	job := rowDotJobs.Get().(*rowDotJob)
	// The problem first, then the claims open (storing next publishes it).
	job.p = *p
	job.parts.Store(int32(threads))
	job.left.Store(int32(threads))
	job.next.Store(0)
	job.wg.Add(threads - 1)
	for range threads - 1 {
		dispatch(task{job: job})
	}
	start := time.Now()
	job.work()
	// Spin for as long as the caller's own parts took (a worker that is
	// running finishes its equal part about then; one that is not, because
	// its core is busy elsewhere, is better not kept from the core by a
	// spinning caller), and at most spinFor.
	done := time.Now()
	spin := min(done.Sub(start), spinFor)
	for i := 1; job.left.Load() > 0; i++ {
		if i%64 != 0 {
			continue
		}
		if time.Since(done) > spin {
			// Every worker leaves the WaitGroup after its last part, so
			// once it is clear every part is done.
			job.wg.Wait()
			break
		}
		runtime.Gosched()
	}
	// The job goes back without waiting for the workers to leave the
	// WaitGroup: a worker still on its way out touches nothing but the
	// WaitGroup (a later use's Wait counts it too), and one not yet started
	// claims nothing until the job's next use opens its claims.
	job.next.Store(rowDotClosed)
	job.p = gemmProblem{}
	rowDotJobs.Put(job)
}

func rowDotRange(p *gemmProblem, lo, hi int) {
	// A block of B's rows against each row of A at a time, the block small
	// enough to stay in cache for the next row of A; a bf16 B is widened as
	// it is read.
	k := p.k
	var dots [rowDotBlock]float32
	for j0 := lo; j0 < hi; j0 += rowDotBlock {
		d := dots[:min(rowDotBlock, hi-j0)]
		for i := 0; i < p.m; i++ {
			a := p.a[i*p.lda : i*p.lda+k]
			if p.bh != nil {
				dotRowsBF16(d, a, p.bh[j0*p.ldb:], p.ldb)
			} else {
				dotRows(d, a, p.b[j0*p.ldb:], p.ldb)
			}
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
}
