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
type Attention struct {
	B, Tq, Tk      int
	Heads, KVHeads int
	HD             int
	Offset         int
	KeyMask        []int32 // [B·Tk], nil: every key is valid
	QSeg, KSeg     []int32 // [B·Tq], [B·Tk], nil: no packing
	Scale          float32
	Scratch        []float32 // reusable backward buffer
}

func (a *Attention) allowed(b, t, j int) bool {
	if j > a.Offset+t {
		return false
	}
	if a.KeyMask != nil && a.KeyMask[b*a.Tk+j] == 0 {
		return false
	}
	if a.QSeg != nil && a.QSeg[b*a.Tq+t] != a.KSeg[b*a.Tk+j] {
		return false
	}
	return true
}

// Forward writes out [B·Tq, Heads·HD] and the log-sum-exp of each query's
// scores, lse [B·Heads·Tq], which the backward pass uses to rebuild the
// probabilities instead of storing them.
func (a *Attention) Forward(out, lse, q, k, v []float32) {
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	cpu.Parallel(a.B*a.Heads, 1, func(lo, hi int) {
		s := make([]float32, a.Tk)
		for bh := lo; bh < hi; bh++ {
			b, h := bh/a.Heads, bh%a.Heads
			g := h / group
			for t := 0; t < a.Tq; t++ {
				qv := q[(b*a.Tq+t)*qd+h*hd : (b*a.Tq+t)*qd+(h+1)*hd]
				ov := out[(b*a.Tq+t)*qd+h*hd : (b*a.Tq+t)*qd+(h+1)*hd]
				clear(ov)
				last := min(a.Offset+t, a.Tk-1)
				mx := float32(math.Inf(-1))
				for j := 0; j <= last; j++ {
					if !a.allowed(b, t, j) {
						s[j] = float32(math.Inf(-1))
						continue
					}
					kv := k[(b*a.Tk+j)*kd+g*hd : (b*a.Tk+j)*kd+(g+1)*hd]
					s[j] = dot(qv, kv) * a.Scale
					mx = max(mx, s[j])
				}
				if math.IsInf(float64(mx), -1) {
					lse[bh*a.Tq+t] = float32(math.Inf(-1))
					continue
				}
				var sum float64
				for j := 0; j <= last; j++ {
					e := float32(math.Exp(float64(s[j] - mx)))
					s[j] = e
					sum += float64(e)
				}
				inv := float32(1 / sum)
				for j := 0; j <= last; j++ {
					if s[j] == 0 {
						continue
					}
					vv := v[(b*a.Tk+j)*kd+g*hd : (b*a.Tk+j)*kd+(g+1)*hd]
					axpy(s[j]*inv, vv, ov)
				}
				lse[bh*a.Tq+t] = mx + float32(math.Log(sum))
			}
		}
	})
}

// Backward computes dq (overwritten) and accumulates dk and dv, from dout
// and the forward's inputs, output and lse.
func (a *Attention) Backward(dq, dk, dv, dout, q, k, v, out, lse []float32) {
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	// Each (sequence, head) writes its own key/value gradient slab so heads
	// sharing a key/value head never race; the slabs are summed afterwards.
	slab := a.Tk * hd
	need := 2 * a.B * a.Heads * slab
	if cap(a.Scratch) < need {
		a.Scratch = make([]float32, need)
	}
	dks, dvs := a.Scratch[:need/2], a.Scratch[need/2:need]
	clear(dks)
	clear(dvs)
	cpu.Parallel(a.B*a.Heads, 1, func(lo, hi int) {
		for bh := lo; bh < hi; bh++ {
			b, h := bh/a.Heads, bh%a.Heads
			g := h / group
			dkh, dvh := dks[bh*slab:(bh+1)*slab], dvs[bh*slab:(bh+1)*slab]
			for t := 0; t < a.Tq; t++ {
				row := (b*a.Tq + t) * qd
				qv, ov, gv := q[row+h*hd:row+(h+1)*hd], out[row+h*hd:row+(h+1)*hd], dout[row+h*hd:row+(h+1)*hd]
				dqv := dq[row+h*hd : row+(h+1)*hd]
				clear(dqv)
				l := lse[bh*a.Tq+t]
				if math.IsInf(float64(l), -1) {
					continue
				}
				last := min(a.Offset+t, a.Tk-1)
				D := dot(gv, ov)
				for j := 0; j <= last; j++ {
					if !a.allowed(b, t, j) {
						continue
					}
					kv := k[(b*a.Tk+j)*kd+g*hd : (b*a.Tk+j)*kd+(g+1)*hd]
					vv := v[(b*a.Tk+j)*kd+g*hd : (b*a.Tk+j)*kd+(g+1)*hd]
					pj := float32(math.Exp(float64(dot(qv, kv)*a.Scale - l)))
					dp := dot(gv, vv)
					ds := pj * (dp - D) * a.Scale
					axpy(ds, kv, dqv)
					axpy(ds, qv, dkh[j*hd:(j+1)*hd])
					axpy(pj, gv, dvh[j*hd:(j+1)*hd])
				}
			}
		}
	})
	cpu.Parallel(a.B*a.KVHeads, 1, func(lo, hi int) {
		for bg := lo; bg < hi; bg++ {
			b, g := bg/a.KVHeads, bg%a.KVHeads
			for h := g * group; h < (g+1)*group; h++ {
				bh := b*a.Heads + h
				for j := 0; j < a.Tk; j++ {
					dst := (b*a.Tk+j)*kd + g*hd
					addTo(dk[dst:dst+hd], dks[bh*slab+j*hd:bh*slab+(j+1)*hd])
					addTo(dv[dst:dst+hd], dvs[bh*slab+j*hd:bh*slab+(j+1)*hd])
				}
			}
		}
	})
}

func dot(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	n := len(a)
	b = b[:n]
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func addTo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] += v
	}
}
