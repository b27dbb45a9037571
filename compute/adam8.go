package compute

import (
	"fmt"
	"math"

	"gotune/parallel"
)

// AdamW8bitSlices is Backend.AdamW8bit's arithmetic on host slices, the
// definition every backend follows: weights p, gradient g, codes m8 and v8,
// one scale per block in mScale and vScale, and, when shadow is not nil, a
// copy of the new weights passed through round (nil: as they are). The
// CPU backend runs it (with AVX-512, kernels that follow it operation by
// operation), and the optimizer's host state (checkpoints, tests) uses it,
// so both agree bit for bit.
func AdamW8bitSlices(p, g []float32, m8, v8 []byte, mScale, vScale, shadow []float32, round func(float32) float32, s AdamStep, block int) error {
	n := len(p)
	if block <= 0 || len(g) != n || len(m8) != n || len(v8) != n || len(mScale) != Adam8Blocks(n, block) ||
		len(vScale) != len(mScale) || (shadow != nil && len(shadow) != n) {
		return fmt.Errorf("adamw 8-bit: sizes p %d, g %d, m %d, v %d, scales %d/%d, shadow %d for block %d",
			n, len(g), len(m8), len(v8), len(mScale), len(vScale), len(shadow), block)
	}
	qs, qu := DynamicMap(true), DynamicMap(false)
	cs, cu := NewQuantizer8(true), NewQuantizer8(false)
	parallel.For(len(mScale), max(1, (1<<14)/block), func(blo, bhi int) {
		m, v := make([]float32, block), make([]float32, block)
		for blk := blo; blk < bhi; blk++ {
			lo, hi := blk*block, min(blk*block+block, n)
			ms, vs := mScale[blk], vScale[blk]
			pb, gb, mb, vb := p[lo:hi], g[lo:hi], m8[lo:hi], v8[lo:hi]
			mt, vt := m[:len(pb)], v[:len(pb)]
			gb, mb, vb = gb[:len(pb)], mb[:len(pb)], vb[:len(pb)]
			var mMax, vMax float32
			for j := range pb {
				gi := gb[j] * s.GradScale
				// float32() around products: no fusion into FMAs (Go may fuse on some
				// targets), so every backend rounds alike.
				mi := float32(s.Beta1*(qs[mb[j]]*ms)) + float32((1-s.Beta1)*gi)
				vi := float32(s.Beta2*(qu[vb[j]]*vs)) + float32((1-s.Beta2)*gi*gi)
				mt[j], vt[j] = mi, vi
				// Largest magnitudes; a NaN does not count (as CUDA's fmaxf).
				if a := math.Float32frombits(math.Float32bits(mi) &^ (1 << 31)); a > mMax {
					mMax = a
				}
				if vi > vMax {
					vMax = vi
				}
				pi := float32(pb[j]*s.Decay) - s.StepSize*mi/(float32(math.Sqrt(float64(vi)))/s.BC2Sqrt+s.Eps)
				pb[j] = pi
				if shadow != nil {
					if round != nil {
						pi = round(pi)
					}
					shadow[lo+j] = pi
				}
			}
			mScale[blk], vScale[blk] = mMax, vMax
			cs.Encode(m8[lo:hi], m[:hi-lo], Adam8Inverse(mMax))
			cu.Encode(v8[lo:hi], v[:hi-lo], Adam8Inverse(vMax))
		}
	})
	return nil
}

// Adam8Inverse is the factor a block's moments are encoded with: 1/scale
// (x·(1/scale), as bitsandbytes: one division a block), 0 for a block of
// zeros.
func Adam8Inverse(scale float32) float32 {
	if scale == 0 {
		return 0
	}
	return 1 / scale
}
