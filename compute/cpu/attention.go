package cpu

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Fused attention (compute.FusedAttention) on the CPU backend. The work is
// cut into units: one block of queries of one (sequence, key/value head),
// the G query heads sharing that head stacked into one [G·nq, HD] matrix so
// every product is one Sgemm on the core running the unit (on a few, for a
// lone long unit while the others idle). A unit computes only the
// key columns its queries may see (causal and windowed), which is what
// the unfused path (GemmBatched over the whole [T, TK] score matrix) cannot
// skip, and holds the scores of its block alone: memory O(block·TK) per
// core, not O(T·TK) per sequence.

// attnUnit is one block of queries [t0, t1) of key/value head bk (sequence
// bk/KVH) and the keys [lo, hi) they may see by position.
type attnUnit struct {
	bk, t0, t1, lo, hi int
	cost               int
}

// attnTileFloats bounds one score tile (rows × visible keys) so that long
// contexts keep a few MB per core.
const attnTileFloats = 1 << 20

// attnBlock is the number of queries per unit: about 192 stacked rows (big
// enough for the product kernels), fewer when that leaves fewer than four
// units per core, and fewer when the score tile would pass attnTileFloats.
func attnBlock(p compute.AttnParams, threads int) int {
	g := p.H / p.KVH
	bq := max(16, 192/g)
	for bq > 16 && p.B*p.KVH*((p.T+bq-1)/bq) < 4*threads {
		bq /= 2
	}
	bq = min(bq, max(1, attnTileFloats/(g*max(p.TK, 1))))
	return max(1, min(bq, p.T))
}

// attnUnits lists the units of p, key/value head by key/value head, query
// blocks in order.
func attnUnits(p compute.AttnParams, bq int) []attnUnit {
	g := p.H / p.KVH
	nb := (p.T + bq - 1) / bq
	units := make([]attnUnit, 0, p.B*p.KVH*nb)
	for bk := 0; bk < p.B*p.KVH; bk++ {
		for t0 := 0; t0 < p.T; t0 += bq {
			t1 := min(p.T, t0+bq)
			lo, _ := attnRange(t0, p.TK, p.Off, p.Window)
			_, hi := attnRange(t1-1, p.TK, p.Off, p.Window)
			hi = max(lo, hi)
			units = append(units, attnUnit{bk: bk, t0: t0, t1: t1, lo: lo, hi: hi, cost: g * (t1 - t0) * (hi - lo + 8)})
		}
	}
	return units
}

// attnWorkers is how many cores share units (at least about 16k score
// elements each, so a step of a few keys stays on one core) and how many
// each product may use: when there are fewer units than cores, a unit
// worth splitting (a long context's single query block) spreads its
// products over the idle ones.
func attnWorkers(units []attnUnit) (workers, inner int) {
	total := 0
	for _, u := range units {
		total += u.cost
	}
	workers = max(1, min(Threads(), len(units), total/(1<<14)))
	inner = 1
	if len(units) > 0 && total/len(units) >= 1<<16 {
		inner = max(1, Threads()/workers)
	}
	return workers, inner
}

// attnScratch is one core's buffers, kept between calls.
type attnScratch struct {
	q, do, o, s, dp, f []float32
	keep               []bool
	// part holds the backward pass's sums of dk, dv for the (at most two)
	// key/value heads a core shares with others.
	part [4][]float32
}

var attnScratchPool = sync.Pool{New: func() any { return new(attnScratch) }}

// grow returns b with length n, reusing its memory when it is large enough.
func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// attnCheck reports a problem whose tensors do not hold its shape (a
// programming error of the caller, returned as the backend's failure rather
// than an index panic inside a kernel).
func attnCheck(p compute.AttnParams, q, k, lse *tensor) error {
	switch {
	case p.KVH <= 0 || p.H%p.KVH != 0 || p.HD <= 0 || p.TK > p.TMax || p.B < 0 || p.T < 0 || p.Off < 0:
		return fmt.Errorf("cpu: attention of %d heads over %d key/value heads, head size %d, %d of %d keys", p.H, p.KVH, p.HD, p.TK, p.TMax)
	case len(q.F) < p.B*p.H*p.T*p.HD || len(k.F) < p.B*p.KVH*p.TMax*p.HD || len(lse.F) < p.B*p.H*p.T:
		return fmt.Errorf("cpu: attention tensors of %d, %d, %d elements for %d×%d×%d queries and %d×%d×%d keys",
			len(q.F), len(k.F), len(lse.F), p.B, p.H, p.T, p.B, p.KVH, p.TMax)
	}
	return nil
}

// AttnFusedFor runs every problem fused.
func (d *Device) AttnFusedFor(compute.AttnParams) bool { return true }

// attnGather copies the rows [t0, t1) of the G query heads of key/value head
// bk from a head-major [B, H, T, HD] x into dst, stacked head after head.
func attnGather(dst, x []float32, p compute.AttnParams, u attnUnit) {
	g, nq := p.H/p.KVH, u.t1-u.t0
	b, kv := u.bk/p.KVH, u.bk%p.KVH
	for gi := 0; gi < g; gi++ {
		src := ((b*p.H+kv*g+gi)*p.T + u.t0) * p.HD
		copy(dst[gi*nq*p.HD:(gi+1)*nq*p.HD], x[src:src+nq*p.HD])
	}
}

// attnScatter is attnGather's inverse, rounding to bf16 when asked.
func attnScatter(x, src []float32, p compute.AttnParams, u attnUnit, bf16 bool) {
	g, nq := p.H/p.KVH, u.t1-u.t0
	b, kv := u.bk/p.KVH, u.bk%p.KVH
	for gi := 0; gi < g; gi++ {
		dst := x[((b*p.H+kv*g+gi)*p.T+u.t0)*p.HD:][:nq*p.HD]
		copy(dst, src[gi*nq*p.HD:(gi+1)*nq*p.HD])
		if bf16 {
			roundSlice(dst)
		}
	}
}

func roundSlice(x []float32) {
	for i, v := range x {
		x[i] = hostmem.RoundBF16(v)
	}
}

// attnRowMask prepares stacked row r of unit u: it returns the query, the
// visible keys [rlo, rhi) relative to u.lo, and whether keep (over those
// keys) hides any of them.
func attnRowMask(keep []bool, p compute.AttnParams, u attnUnit, r int, km, qs, ks *tensor) (i, rlo, rhi int, masked bool) {
	nq := u.t1 - u.t0
	i = u.t0 + r%nq
	lo, hi := attnRange(i, p.TK, p.Off, p.Window)
	if km != nil || qs != nil {
		masked = attnMask(keep[:hi-lo], u.bk/p.KVH, i, lo, p.T, p.TK, km, qs, ks)
	}
	return i, lo - u.lo, hi - u.lo, masked
}

// AttnForward computes each unit's scores, masked softmax (saving lse) and
// product with v; units run side by side, the most expensive first.
func (d *Device) AttnForward(o, lse, q, k, v compute.Tensor, p compute.AttnParams) {
	defer d.timed("attn_forward")()
	O, L, Q, K, V := tt(o), tt(lse), tt(q), tt(k), tt(v)
	km, qs, ks := tt(p.KeyMask), tt(p.QSeg), tt(p.KSeg)
	if err := attnCheck(p, Q, K, L); err != nil {
		d.fail(err)
		return
	}
	units := attnUnits(p, attnBlock(p, Threads()))
	sort.SliceStable(units, func(a, b int) bool { return units[a].cost > units[b].cost })
	workers, inner := attnWorkers(units)
	g, hd := p.H/p.KVH, p.HD
	roundP := Q.DT == compute.BF16
	var next atomic.Int64
	RunWorkers(workers, func(int) {
		sc := attnScratchPool.Get().(*attnScratch)
		defer attnScratchPool.Put(sc)
		for {
			ui := int(next.Add(1)) - 1
			if ui >= len(units) {
				return
			}
			u := units[ui]
			R, w := g*(u.t1-u.t0), u.hi-u.lo
			sc.q, sc.o, sc.s = grow(sc.q, R*hd), grow(sc.o, R*hd), grow(sc.s, R*w)
			if cap(sc.keep) < p.TK {
				sc.keep = make([]bool, p.TK)
			}
			clear(sc.o)
			if w > 0 {
				kv := u.bk * p.TMax * hd
				attnGather(sc.q, Q.F, p, u)
				SgemmOn(inner, false, true, R, w, hd, p.Scale, sc.q, hd, K.F[kv+u.lo*hd:], hd, 0, sc.s, w)
			}
			for r := 0; r < R; r++ {
				_, rlo, rhi, masked := attnRowMask(sc.keep, p, u, r, km, qs, ks)
				row := sc.s[r*w : (r+1)*w]
				L.F[attnLSERow(p, u, r)] = attnSoftmaxRow(row, rlo, rhi, sc.keep, masked, p.SoftCap, roundP)
			}
			if w > 0 {
				SgemmOn(inner, false, false, R, hd, w, 1, sc.s, w, V.F[u.bk*p.TMax*hd+u.lo*hd:], hd, 0, sc.o, hd)
			}
			attnScatter(O.F, sc.o, p, u, O.DT == compute.BF16)
		}
	})
	if L.DT == compute.BF16 {
		roundSlice(L.F[:p.B*p.H*p.T])
	}
}

// attnSoftmaxRow turns the scores of one row into probabilities over the
// keys [lo, hi) it sees (keep hiding some when masked), zeros elsewhere,
// and returns the log-sum-exp: the arithmetic of AttnSoftmaxWindowed.
func attnSoftmaxRow(row []float32, lo, hi int, keep []bool, masked bool, softcap float32, round bool) float32 {
	ninf := float32(math.Inf(-1))
	if hi <= lo {
		clear(row)
		return ninf
	}
	clear(row[:lo])
	clear(row[hi:])
	pr := row[lo:hi]
	var mx float32
	if !masked && softcap <= 0 {
		mx = MaxF32(pr) // the common row: every key it reaches by position
	} else {
		mx = ninf
		for j, v := range pr {
			if masked && !keep[j] {
				pr[j] = ninf
				continue
			}
			v = capScore(v, softcap)
			pr[j] = v
			mx = max(mx, v)
		}
	}
	if math.IsInf(float64(mx), -1) {
		clear(pr)
		return mx
	}
	sum := ExpSubSum(pr, pr, mx)
	Scale(float32(1/sum), pr)
	if round {
		roundSlice(pr)
	}
	return mx + float32(math.Log(sum))
}

// attnLSERow is the index into lse (and dsum) of stacked row r of unit u.
func attnLSERow(p compute.AttnParams, u attnUnit, r int) int {
	g, nq := p.H/p.KVH, u.t1-u.t0
	b, kv := u.bk/p.KVH, u.bk%p.KVH
	return (b*p.H+kv*g+r/nq)*p.T + u.t0 + r%nq
}

// AttnBackward recomputes each unit's probabilities from lse and writes
// its dq rows and its share of dk and dv. The units are cut into one
// contiguous run per core of about equal cost, in key/value-head order, so
// a core owns the key/value heads inside its run and accumulates straight
// into dk and dv; a head split between runs gets one partial sum per core,
// added in core order afterwards (the result depends on the number of
// cores only through that order).
func (d *Device) AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum compute.Tensor, p compute.AttnParams) {
	defer d.timed("attn_backward")()
	DQ, DK, DV, DO, Q, K, V, L, D := tt(dq), tt(dk), tt(dv), tt(do), tt(q), tt(k), tt(v), tt(lse), tt(dsum)
	km, qs, ks := tt(p.KeyMask), tt(p.QSeg), tt(p.KSeg)
	if err := attnCheck(p, Q, K, L); err != nil {
		d.fail(err)
		return
	}
	hd := p.HD
	span := p.TK * hd // one head's gradient rows
	if p.T == 0 {
		for bk := 0; bk < p.B*p.KVH; bk++ {
			clear(DK.F[bk*p.TMax*hd:][:span])
			clear(DV.F[bk*p.TMax*hd:][:span])
		}
		return
	}
	units := attnUnits(p, attnBlock(p, Threads()))
	workers, inner := attnWorkers(units)
	bounds := splitByCost(units, workers)
	// A head's units are [first[bk], first[bk+1]).
	first := make([]int, p.B*p.KVH+1)
	for i := len(units) - 1; i >= 0; i-- {
		first[units[i].bk] = i
	}
	first[p.B*p.KVH] = len(units)
	// partials[w] holds core w's sums of the heads it shares: at most two
	// (the first and last head of its run).
	type partial struct {
		bk     int
		dk, dv []float32
	}
	partials := make([][]partial, workers)
	// The cores' scratch, partial sums included, is given back once those
	// are added up.
	scs := make([]*attnScratch, workers)
	defer func() {
		for _, sc := range scs {
			attnScratchPool.Put(sc)
		}
	}()
	roundP := Q.DT == compute.BF16
	RunWorkers(workers, func(wi int) {
		sc := attnScratchPool.Get().(*attnScratch)
		scs[wi] = sc
		if cap(sc.keep) < p.TK {
			sc.keep = make([]bool, p.TK)
		}
		var gk, gv []float32 // where the current head's gradients go
		cur := -1
		for ui := bounds[wi]; ui < bounds[wi+1]; ui++ {
			u := units[ui]
			if u.bk != cur {
				cur = u.bk
				if first[cur] >= bounds[wi] && first[cur+1] <= bounds[wi+1] {
					gk, gv = DK.F[cur*p.TMax*hd:][:span], DV.F[cur*p.TMax*hd:][:span]
				} else {
					n := len(partials[wi]) // 0 or 1: the first or last head of the run
					sc.part[2*n], sc.part[2*n+1] = grow(sc.part[2*n], span), grow(sc.part[2*n+1], span)
					gk, gv = sc.part[2*n], sc.part[2*n+1]
					partials[wi] = append(partials[wi], partial{cur, gk, gv})
				}
				clear(gk)
				clear(gv)
			}
			attnBackwardUnit(sc, u, p, inner, roundP, gk, gv, DQ, DO, Q, K, V, L, D, km, qs, ks)
		}
	})
	// Heads split between cores: their partial sums in core order.
	var shared []int
	parts := map[int][]partial{}
	for _, ps := range partials {
		for _, pt := range ps {
			if parts[pt.bk] == nil {
				shared = append(shared, pt.bk)
			}
			parts[pt.bk] = append(parts[pt.bk], pt)
		}
	}
	Parallel(len(shared), 1, func(lo, hi int) {
		for _, bk := range shared[lo:hi] {
			gk, gv := DK.F[bk*p.TMax*hd:][:span], DV.F[bk*p.TMax*hd:][:span]
			for i, pt := range parts[bk] {
				if i == 0 {
					copy(gk, pt.dk)
					copy(gv, pt.dv)
					continue
				}
				Axpy(1, pt.dk, gk)
				Axpy(1, pt.dv, gv)
			}
		}
	})
	for _, t := range []*tensor{DK, DV} {
		if t.DT != compute.BF16 {
			continue
		}
		Parallel(p.B*p.KVH, 1, func(lo, hi int) {
			for bk := lo; bk < hi; bk++ {
				roundSlice(t.F[bk*p.TMax*hd:][:span])
			}
		})
	}
}

// splitByCost cuts units into parts contiguous runs of about equal cost:
// run w is units [b[w], b[w+1]).
func splitByCost(units []attnUnit, parts int) []int {
	total := 0
	for _, u := range units {
		total += u.cost
	}
	b := make([]int, parts+1)
	b[parts] = len(units)
	acc, i := 0, 0
	for w := 1; w < parts; w++ {
		target := total * w / parts
		// The run ends where adding the next unit would pass the target by
		// more than stopping short of it.
		for i < len(units) && acc+units[i].cost/2 < target {
			acc += units[i].cost
			i++
		}
		b[w] = i
	}
	return b
}

// attnBackwardUnit is one unit of AttnBackward: dq of its rows, and its
// share of the head's key and value gradients added into gk, gv (the
// head's TK rows).
func attnBackwardUnit(sc *attnScratch, u attnUnit, p compute.AttnParams, inner int, roundP bool, gk, gv []float32, DQ, DO, Q, K, V, L, D, km, qs, ks *tensor) {
	hd, g := p.HD, p.H/p.KVH
	R, w := g*(u.t1-u.t0), u.hi-u.lo
	sc.q, sc.do, sc.o = grow(sc.q, R*hd), grow(sc.do, R*hd), grow(sc.o, R*hd)
	if w == 0 {
		clear(sc.o)
		attnScatter(DQ.F, sc.o, p, u, false)
		return
	}
	sc.s, sc.dp, sc.f = grow(sc.s, R*w), grow(sc.dp, R*w), grow(sc.f, w)
	attnGather(sc.q, Q.F, p, u)
	attnGather(sc.do, DO.F, p, u)
	kb, vb := K.F[(u.bk*p.TMax+u.lo)*hd:], V.F[(u.bk*p.TMax+u.lo)*hd:]
	SgemmOn(inner, false, true, R, w, hd, p.Scale, sc.q, hd, kb, hd, 0, sc.s, w)
	SgemmOn(inner, false, true, R, w, hd, 1, sc.do, hd, vb, hd, 0, sc.dp, w)
	ninf := float32(math.Inf(-1))
	for r := 0; r < R; r++ {
		_, rlo, rhi, masked := attnRowMask(sc.keep, p, u, r, km, qs, ks)
		pr, dr := sc.s[r*w:(r+1)*w], sc.dp[r*w:(r+1)*w]
		lr := attnLSERow(p, u, r)
		l, dsum := L.F[lr], D.F[lr]
		if rhi <= rlo || math.IsInf(float64(l), -1) {
			clear(pr)
			clear(dr)
			continue
		}
		clear(pr[:rlo])
		clear(pr[rhi:])
		clear(dr[:rlo])
		clear(dr[rhi:])
		pr, dr = pr[rlo:rhi], dr[rlo:rhi]
		f := sc.f[:len(pr)]
		if masked || p.SoftCap > 0 {
			for j, v := range pr {
				if masked && !sc.keep[j] {
					pr[j] = ninf
					continue
				}
				c := capScore(v, p.SoftCap)
				pr[j] = c
				if p.SoftCap > 0 {
					t := c / p.SoftCap
					f[j] = 1 - t*t
				}
			}
		}
		ExpSubSum(pr, pr, l)
		if roundP {
			roundSlice(pr)
		}
		dr = dr[:len(pr)]
		if p.SoftCap > 0 {
			for j, pj := range pr {
				if pj != 0 {
					dr[j] = pj * (dr[j] - dsum) * f[j]
				} else {
					dr[j] = 0
				}
			}
		} else {
			for j, pj := range pr {
				dr[j] = pj * (dr[j] - dsum)
			}
		}
		if roundP {
			roundSlice(dr)
		}
	}
	// dv += pᵀ·do, dq = scale·ds·k, dk += scale·dsᵀ·q over the unit's keys.
	SgemmOn(inner, true, false, w, hd, R, 1, sc.s, w, sc.do, hd, 1, gv[u.lo*hd:], hd)
	SgemmOn(inner, false, false, R, hd, w, p.Scale, sc.dp, w, kb, hd, 0, sc.o, hd)
	SgemmOn(inner, true, false, w, hd, R, p.Scale, sc.dp, w, sc.q, hd, 1, gk[u.lo*hd:], hd)
	attnScatter(DQ.F, sc.o, p, u, DQ.DT == compute.BF16)
}

var _ compute.FusedAttention = (*Device)(nil)
