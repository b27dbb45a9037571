package nn

import (
	"math"

	"gotune/compute/cpu"
)

// Attention is causal grouped-query attention over a batch of B sequences.
// Queries are laid out [B·Tq, Heads·HD] and keys/values [B·Tk, KVHeads·HD]
// (token-major, as the projections produce them). Query t of a sequence sees
// key j when j ≤ Offset+t, KeyMask (if any) is non-zero at j, and the segment
// ids (if any) of query and key agree. Offset counts keys that precede the
// first query: a prefix (prefix tuning) or a cache (generation).
//
// Each (sequence, head) is computed in blocks of query rows with matrix
// multiplications (scores = Q·Kᵀ, out = P·V); only the log-sum-exp of each
// row is kept, and the backward pass rebuilds the probabilities from it, so
// memory stays O(T) per head rather than O(T²).
type Attention struct {
	B, Tq, Tk      int
	Heads, KVHeads int
	HD             int
	Offset         int
	KeyMask        []int32 // [B·Tk], nil: every key is valid
	QSeg, KSeg     []int32 // [B·Tq], [B·Tk], nil: no packing
	Scale          float32
	// Window, when positive, limits each query to the Window most recent
	// keys, itself included (sliding-window layers: key j is seen from
	// query position i when i − j < Window).
	Window int
	// SoftCap, when positive, caps the scaled scores at ±SoftCap smoothly,
	// s → SoftCap·tanh(s/SoftCap), before masking (Gemma 2).
	SoftCap float32
	Scratch []float32   // reusable backward buffer
	Tiles   [][]float32 // reusable per-worker score blocks
}

// queryBlock bounds the score block held per task.
const queryBlock = 128

// tiles returns per-worker score buffers of n floats each (count per
// worker), kept in the Attention value so repeated steps allocate nothing.
func (a *Attention) tiles(workers, count, n int) [][]float32 {
	need := workers * count
	if len(a.Tiles) < need {
		a.Tiles = append(a.Tiles, make([][]float32, need-len(a.Tiles))...)
	}
	for i := 0; i < need; i++ {
		if cap(a.Tiles[i]) < n {
			a.Tiles[i] = make([]float32, n)
		}
		a.Tiles[i] = a.Tiles[i][:n]
	}
	return a.Tiles[:need]
}

// forWorkers runs task(w, i) for i in [0, n) on up to Threads() goroutines,
// worker w taking tasks w, w+workers, …, so each worker owns its buffers.
func forWorkers(n int, task func(w, i int)) int {
	workers := max(min(cpu.Threads(), n), 1)
	cpu.RunWorkers(workers, func(w int) {
		for i := w; i < n; i += workers {
			task(w, i)
		}
	})
	return workers
}

func gemm1(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// Tasks already run one per core, so each multiplication stays on its own.
	cpu.SgemmWith(cpu.ImplBuiltin, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// scores fills s[Bq, kEnd] with masked, scaled q·k for query rows [t0, t1)
// of sequence b, head h, and returns kEnd.
func (a *Attention) scores(s, q, k []float32, b, h, t0, t1 int) int {
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	g := h / (a.Heads / a.KVHeads)
	kEnd := min(a.Tk, a.Offset+t1)
	bq := t1 - t0
	gemm1(false, true, bq, kEnd, hd, a.Scale, q[(b*a.Tq+t0)*qd+h*hd:], qd, k[b*a.Tk*kd+g*hd:], kd, 0, s, kEnd)
	if a.SoftCap > 0 {
		c := float64(a.SoftCap)
		for j, v := range s[:bq*kEnd] {
			s[j] = float32(c * math.Tanh(float64(v)/c))
		}
	}
	ninf := float32(math.Inf(-1))
	for i := 0; i < bq; i++ {
		t := t0 + i
		row := s[i*kEnd : (i+1)*kEnd]
		for j := a.Offset + t + 1; j < kEnd; j++ {
			row[j] = ninf
		}
		if a.Window > 0 {
			for j := 0; j <= a.Offset+t-a.Window && j < kEnd; j++ {
				row[j] = ninf
			}
		}
		if a.KeyMask != nil {
			m := a.KeyMask[b*a.Tk : b*a.Tk+kEnd]
			for j, v := range m {
				if v == 0 {
					row[j] = ninf
				}
			}
		}
		if a.QSeg != nil {
			qs := a.QSeg[b*a.Tq+t]
			ks := a.KSeg[b*a.Tk : b*a.Tk+kEnd]
			for j, v := range ks {
				if v != qs {
					row[j] = ninf
				}
			}
		}
	}
	return kEnd
}

// Forward writes out [B·Tq, Heads·HD] and the log-sum-exp of each query's
// scores, lse [B·Heads·Tq].
func (a *Attention) Forward(out, lse, q, k, v []float32) {
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	tasks := a.tasks()
	tiles := a.tiles(workersFor(len(tasks)), 1, min(queryBlock, a.Tq)*a.Tk)
	forWorkers(len(tasks), func(w, i int) {
		s := tiles[w]
		bh, t0 := tasks[i].bh, tasks[i].t0
		b, h := bh/a.Heads, bh%a.Heads
		g := h / group
		t1 := min(t0+queryBlock, a.Tq)
		kEnd := a.scores(s, q, k, b, h, t0, t1)
		for i := 0; i < t1-t0; i++ {
			li := bh*a.Tq + t0 + i
			// A fully masked row comes back zeroed with max -Inf.
			mx, sum := cpu.Softmax(s[i*kEnd : (i+1)*kEnd])
			if math.IsInf(float64(mx), -1) {
				lse[li] = mx
				continue
			}
			lse[li] = mx + float32(math.Log(sum))
		}
		gemm1(false, false, t1-t0, hd, kEnd, 1, s, kEnd, v[b*a.Tk*kd+g*hd:], kd, 0, out[(b*a.Tq+t0)*qd+h*hd:], qd)
	})
}

// task is one block of query rows of one (sequence, head).
type task struct{ bh, t0 int }

// tasks lists every (sequence, head, query block), the blocks with the most
// keys (the last, under the causal mask) first, so that handing them out in
// turn keeps the workers evenly loaded.
func (a *Attention) tasks() []task {
	blocks := (a.Tq + queryBlock - 1) / queryBlock
	out := make([]task, 0, a.B*a.Heads*blocks)
	for blk := blocks - 1; blk >= 0; blk-- {
		for bh := 0; bh < a.B*a.Heads; bh++ {
			out = append(out, task{bh, blk * queryBlock})
		}
	}
	return out
}

func workersFor(n int) int { return max(min(cpu.Threads(), n), 1) }

// Backward computes dq (overwritten) and accumulates dk and dv, from dout
// and the forward's inputs, output and lse.
func (a *Attention) Backward(dq, dk, dv, dout, q, k, v, out, lse []float32) {
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	tasks := a.tasks()
	workers := workersFor(len(tasks))
	// Each worker accumulates key/value gradients in its own slabs, laid out
	// [B, KVHeads, Tk, HD], so tasks never race; the slabs are summed in a
	// fixed order afterwards, which keeps results deterministic.
	slab := a.B * a.KVHeads * a.Tk * hd
	need := 2 * workers * slab
	if cap(a.Scratch) < need {
		a.Scratch = make([]float32, need)
	}
	scratch := a.Scratch[:need]
	clear(scratch)
	tiles := a.tiles(workers, 2, min(queryBlock, a.Tq)*a.Tk)
	forWorkers(len(tasks), func(w, i int) {
		p, dp := tiles[2*w], tiles[2*w+1]
		bh, t0 := tasks[i].bh, tasks[i].t0
		b, h := bh/a.Heads, bh%a.Heads
		g := h / group
		at := (b*a.KVHeads + g) * a.Tk * hd
		dkh := scratch[2*w*slab+at : 2*w*slab+at+a.Tk*hd]
		dvh := scratch[(2*w+1)*slab+at : (2*w+1)*slab+at+a.Tk*hd]
		kb, vb := k[b*a.Tk*kd+g*hd:], v[b*a.Tk*kd+g*hd:]
		t1 := min(t0+queryBlock, a.Tq)
		bq := t1 - t0
		kEnd := a.scores(p, q, k, b, h, t0, t1)
		qo := (b*a.Tq+t0)*qd + h*hd
		gemm1(false, true, bq, kEnd, hd, 1, dout[qo:], qd, vb, kd, 0, dp, kEnd)
		for i := 0; i < bq; i++ {
			row, drow := p[i*kEnd:(i+1)*kEnd], dp[i*kEnd:(i+1)*kEnd]
			l := lse[bh*a.Tq+t0+i]
			if math.IsInf(float64(l), -1) {
				clear(row)
				clear(drow)
				continue
			}
			r := qo + i*qd
			D := cpu.Dot(dout[r:r+hd], out[r:r+hd])
			if a.SoftCap > 0 {
				// d/ds of the capped score is 1 − (capped/cap)²; folded into
				// drow so that the common line below applies it:
				// p·((drow − D)·f) = p·(drow' − D) with drow' = D + (drow − D)·f.
				for j, c := range row {
					if math.IsInf(float64(c), -1) {
						drow[j] = D
						continue
					}
					t := c / a.SoftCap
					drow[j] = D + (drow[j]-D)*(1-t*t)
				}
			}
			cpu.ExpSubSum(row, row, l)
			for j, pj := range row {
				drow[j] = pj * (drow[j] - D) * a.Scale
			}
		}
		gemm1(false, false, bq, hd, kEnd, 1, dp, kEnd, kb, kd, 0, dq[qo:], qd)
		gemm1(true, false, kEnd, hd, bq, 1, dp, kEnd, q[qo:], qd, 1, dkh, hd)
		gemm1(true, false, kEnd, hd, bq, 1, p, kEnd, dout[qo:], qd, 1, dvh, hd)
	})
	cpu.Parallel(a.B*a.KVHeads, 1, func(lo, hi int) {
		for bg := lo; bg < hi; bg++ {
			b, g := bg/a.KVHeads, bg%a.KVHeads
			for j := 0; j < a.Tk; j++ {
				dst := (b*a.Tk+j)*kd + g*hd
				src := bg*a.Tk*hd + j*hd
				for w := 0; w < workers; w++ {
					cpu.Axpy(1, scratch[2*w*slab+src:2*w*slab+src+hd], dk[dst:dst+hd])
					cpu.Axpy(1, scratch[(2*w+1)*slab+src:(2*w+1)*slab+src+hd], dv[dst:dst+hd])
				}
			}
		}
	})
}
