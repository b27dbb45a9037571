package ref

import (
	"fmt"
	"math"

	"gotune/compute"
)

// AdamW8bit is AdamW over block-wise 8-bit moments: per block, decode the
// moments, update them and the weights in float32 as AdamW does, then
// re-encode with the block's new largest magnitude as its scale.
func (b *Backend) AdamW8bit(p, g, m8, v8, mScale, vScale, shadow compute.Tensor, s compute.AdamStep, block int) {
	P, G, M, V, MS, VS, SH := tt(p), tt(g), tt(m8), tt(v8), tt(mScale), tt(vScale), tt(shadow)
	n := len(P.F)
	if block <= 0 || len(G.F) != n || len(M.U) != n || len(V.U) != n ||
		len(MS.F) != compute.Adam8Blocks(n, block) || len(VS.F) != len(MS.F) {
		b.fail(fmt.Errorf("ref: adamw 8-bit: sizes p %d, g %d, m %d, v %d, scales %d/%d for block %d",
			n, len(G.F), len(M.U), len(V.U), len(MS.F), len(VS.F), block))
		return
	}
	qs, qu := compute.DynamicMap(true), compute.DynamicMap(false)
	m, v := make([]float32, block), make([]float32, block)
	for blk := range MS.F {
		lo, hi := blk*block, min(blk*block+block, n)
		var mMax, vMax float32
		for i := lo; i < hi; i++ {
			gi := G.F[i] * s.GradScale
			// float32() around products: never fused into FMAs.
			mi := float32(s.Beta1*(qs[M.U[i]]*MS.F[blk])) + float32((1-s.Beta1)*gi)
			vi := float32(s.Beta2*(qu[V.U[i]]*VS.F[blk])) + float32((1-s.Beta2)*gi*gi)
			m[i-lo], v[i-lo] = mi, vi
			// A NaN does not count (as CUDA's fmaxf).
			if a := abs32(mi); a > mMax {
				mMax = a
			}
			if vi > vMax {
				vMax = vi
			}
			pi := float32(P.F[i]*s.Decay) - s.StepSize*mi/(float32(math.Sqrt(float64(vi)))/s.BC2Sqrt+s.Eps)
			P.F[i] = pi
			if SH != nil {
				SH.set(i, float64(pi))
			}
		}
		MS.F[blk], VS.F[blk] = mMax, vMax
		for i := lo; i < hi; i++ {
			M.U[i] = nearest(m[i-lo], mMax, qs, true)
			V.U[i] = nearest(v[i-lo], vMax, qu, false)
		}
	}
}

// nearest encodes x/scale by scanning the whole table (the backends use a
// binary search; the rule is compute.Quantize8's).
func nearest(x, scale float32, table *[256]float32, signed bool) uint8 {
	var inv float32
	if scale != 0 {
		inv = 1 / scale
	}
	x *= inv
	best := 0
	for c := 1; c < 256; c++ {
		if abs32(x-table[c]) < abs32(x-table[best]) {
			best = c
		}
	}
	if signed {
		if x < 0 && table[best] >= 0 {
			best--
		} else if x > 0 && table[best] < 0 {
			best++
		}
	}
	return uint8(best)
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }
