package ref

import (
	"math"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Fused attention (compute.FusedAttention) in plain loops, one query row at
// a time: the oracle of the backends' tiled kernels. Every intermediate is
// rounded where the unfused operations store it: scores and dp as float32,
// probabilities and score gradients to the queries' type.

// AttnFusedFor runs every problem fused.
func (b *Backend) AttnFusedFor(compute.AttnParams) bool { return true }

// attnRow holds what one query row needs: its place in q/o and lse, and
// the key/value head it reads.
type attnRow struct {
	bi, i  int // sequence, query
	qo, kv int // offsets of the query row and of its key/value head
	r      int // index into lse, dsum
}

func attnRows(p compute.AttnParams, fn func(attnRow)) {
	g := p.H / p.KVH
	for bi := 0; bi < p.B; bi++ {
		for h := 0; h < p.H; h++ {
			for i := 0; i < p.T; i++ {
				r := (bi*p.H+h)*p.T + i
				fn(attnRow{bi: bi, i: i, qo: r * p.HD, kv: (bi*p.KVH + h/g) * p.TMax * p.HD, r: r})
			}
		}
	}
}

// rounder is the rounding of an intermediate stored in dt.
func rounder(dt compute.DType) func(float64) float64 {
	if dt == compute.BF16 {
		return func(v float64) float64 { return float64(hostmem.RoundBF16(float32(v))) }
	}
	return func(v float64) float64 { return float64(float32(v)) }
}

// attnScores writes the capped scores of row w into c (−Inf where masked)
// and the factor f = 1 − tanh² of the cap (1 without one), returning the
// largest score.
func attnScores(c, f []float64, w attnRow, Q, K, KM, QS, KS *tensor, p compute.AttnParams) float64 {
	mx := math.Inf(-1)
	for j := range c {
		c[j], f[j] = math.Inf(-1), 1
		if !windowOK(w.bi, w.i, j, p.T, p.TK, p.Off, p.Window, KM, QS, KS) {
			continue
		}
		var s float64
		for d := 0; d < p.HD; d++ {
			s += Q.get(w.qo+d) * K.get(w.kv+j*p.HD+d)
		}
		v := capped(float64(float32(float64(p.Scale)*s)), p.SoftCap)
		if p.SoftCap > 0 {
			t := v / float64(p.SoftCap)
			f[j] = 1 - t*t
		}
		c[j] = v
		mx = math.Max(mx, v)
	}
	return mx
}

// AttnForward is the attention of every query row, as AttnSoftmaxWindowed
// followed by the product with v.
func (b *Backend) AttnForward(o, lse, q, k, v compute.Tensor, p compute.AttnParams) {
	O, L, Q, K, V := tt(o), tt(lse), tt(q), tt(k), tt(v)
	KM, QS, KS := tt(p.KeyMask), tt(p.QSeg), tt(p.KSeg)
	round := rounder(Q.DT)
	c, f := make([]float64, p.TK), make([]float64, p.TK)
	acc := make([]float64, p.HD)
	attnRows(p, func(w attnRow) {
		mx := attnScores(c, f, w, Q, K, KM, QS, KS, p)
		clear(acc)
		if math.IsInf(mx, -1) {
			L.set(w.r, mx)
		} else {
			var sum float64
			for _, v := range c {
				sum += math.Exp(v - mx)
			}
			l := mx + math.Log(sum)
			L.set(w.r, l)
			for j, s := range c {
				if math.IsInf(s, -1) {
					continue
				}
				pj := round(math.Exp(s - l))
				for d := range acc {
					acc[d] += pj * V.get(w.kv+j*p.HD+d)
				}
			}
		}
		for d, a := range acc {
			O.set(w.qo+d, a)
		}
	})
}

// AttnBackward recomputes each row's probabilities from lse and adds its
// share of dk and dv, as AttnSoftmaxWindowedBackward and the five products
// of the unfused backward pass.
func (b *Backend) AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum compute.Tensor, p compute.AttnParams) {
	DQ, DK, DV, DO, Q, K, V, L, D := tt(dq), tt(dk), tt(dv), tt(do), tt(q), tt(k), tt(v), tt(lse), tt(dsum)
	KM, QS, KS := tt(p.KeyMask), tt(p.QSeg), tt(p.KSeg)
	round := rounder(Q.DT)
	kvn := p.B * p.KVH * p.TMax * p.HD
	gk, gv := make([]float64, kvn), make([]float64, kvn)
	c, f := make([]float64, p.TK), make([]float64, p.TK)
	acc := make([]float64, p.HD)
	scale := float64(p.Scale)
	attnRows(p, func(w attnRow) {
		attnScores(c, f, w, Q, K, KM, QS, KS, p)
		l, ds := L.get(w.r), D.get(w.r)
		clear(acc)
		for j, s := range c {
			if math.IsInf(s, -1) || math.IsInf(l, -1) {
				continue
			}
			pj := round(math.Exp(s - l))
			var dp float64
			for d := 0; d < p.HD; d++ {
				dp += DO.get(w.qo+d) * V.get(w.kv+j*p.HD+d)
			}
			dsj := round(pj * (float64(float32(dp)) - ds) * f[j])
			kj := w.kv + j*p.HD
			for d := range acc {
				acc[d] += dsj * K.get(kj+d)
				gk[kj+d] += scale * dsj * Q.get(w.qo+d)
				gv[kj+d] += pj * DO.get(w.qo+d)
			}
		}
		for d, a := range acc {
			DQ.set(w.qo+d, scale*a)
		}
	})
	for bk := 0; bk < p.B*p.KVH; bk++ {
		for e := bk * p.TMax * p.HD; e < (bk*p.TMax+p.TK)*p.HD; e++ {
			DK.set(e, gk[e])
			DV.set(e, gv[e])
		}
	}
}

var _ compute.FusedAttention = (*Backend)(nil)
