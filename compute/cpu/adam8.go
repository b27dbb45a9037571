package cpu

import (
	"fmt"
	"os"
	"sync"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// AdamW8bit is AdamW over block-wise 8-bit moments (compute.Backend's
// AdamW8bit), blocks split over the cores: with AVX-512 16 values at a
// time, with AVX2 8 (adam8_amd64.s), otherwise compute.AdamW8bitSlices,
// whose results the kernels reproduce bit for bit.
func (d *Device) AdamW8bit(p, g, m8, v8, mScale, vScale, shadow compute.Tensor, s compute.AdamStep, block int) {
	defer d.timed("adam_w8")()
	P, G, M, V, MS, VS, SH := tt(p), tt(g), tt(m8), tt(v8), tt(mScale), tt(vScale), tt(shadow)
	var sh []float32
	var round func(float32) float32
	if SH != nil {
		sh = SH.F
		if SH.DT == compute.BF16 {
			round = hostmem.RoundBF16
		}
	}
	var err error
	if k := bestAdam8(); k != nil {
		err = adamW8bitBlocks(k, P.F, G.F, M.U, V.U, MS.F, VS.F, sh, round, s, block)
	} else {
		err = compute.AdamW8bitSlices(P.F, G.F, M.U, V.U, MS.F, VS.F, sh, round, s, block)
	}
	if err != nil {
		d.fail(fmt.Errorf("cpu: %w", err))
	}
}

// adam8Kernels are an instruction set's 8-bit AdamW kernels: update
// writes a block's new weights and float moments (mt, vt) and each lane's
// largest |m| (acc[0:16]) and v (acc[16:32]); encode writes the codes of
// src·scale. Lengths are multiples of 16.
type adam8Kernels struct {
	name   string
	update func(p, g, mt, vt []float32, m8, v8 []byte, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)
	encode func(dst []byte, src []float32, scale float32, l *adam8Layout)
}

// bestAdam8 is the fastest kernels this CPU runs, nil for the Go path:
// GOTUNE_CPU=avx2 skips AVX-512 as for the other kernels, and
// GOTUNE_CPU=generic takes the Go path (for comparisons).
var bestAdam8 = sync.OnceValue(func() *adam8Kernels {
	env := os.Getenv("GOTUNE_CPU")
	for _, k := range archAdam8() {
		if env == "generic" || env == "avx2" && k.name == "avx512" {
			continue
		}
		return k
	}
	return nil
})

// adam8Consts are an AdamStep's scalars and a block's old scales as the
// update kernel reads them.
type adam8Consts struct {
	gradScale, beta1, oneMinusBeta1, beta2, oneMinusBeta2 float32
	decay, stepSize, bc2Sqrt, eps, mScale, vScale         float32
}

// adam8Layout is compute.Quantizer8Layout as the encoding kernel reads it.
type adam8Layout struct {
	base                    *[8192]uint8
	theta                   *[8192]float32
	offset, top, signStride int32
}

func layoutOf(q *compute.Quantizer8) adam8Layout {
	l := q.Layout()
	return adam8Layout{base: l.Base, theta: l.Theta, offset: l.Offset, top: l.Top, signStride: l.SignStride}
}

// adamW8bitBlocks is compute.AdamW8bitSlices with each block of a multiple
// of 16 values updated and encoded by kernels k; another (a tensor's
// short last block) goes through AdamW8bitSlices itself.
func adamW8bitBlocks(k *adam8Kernels, p, g []float32, m8, v8 []byte, mScale, vScale, shadow []float32, round func(float32) float32, s compute.AdamStep, block int) error {
	n := len(p)
	if block <= 0 || len(g) != n || len(m8) != n || len(v8) != n || len(mScale) != compute.Adam8Blocks(n, block) ||
		len(vScale) != len(mScale) || (shadow != nil && len(shadow) != n) {
		return fmt.Errorf("adamw 8-bit: sizes p %d, g %d, m %d, v %d, scales %d/%d, shadow %d for block %d",
			n, len(g), len(m8), len(v8), len(mScale), len(vScale), len(shadow), block)
	}
	qs, qu := compute.DynamicMap(true), compute.DynamicMap(false)
	ls, lu := layoutOf(compute.NewQuantizer8(true)), layoutOf(compute.NewQuantizer8(false))
	c0 := adam8Consts{gradScale: s.GradScale, beta1: s.Beta1, oneMinusBeta1: 1 - s.Beta1, beta2: s.Beta2, oneMinusBeta2: 1 - s.Beta2,
		decay: s.Decay, stepSize: s.StepSize, bc2Sqrt: s.BC2Sqrt, eps: s.Eps}
	Parallel(len(mScale), max(1, (1<<14)/block), func(blo, bhi int) {
		m, v := make([]float32, block), make([]float32, block)
		c := c0
		var acc [32]float32
		for blk := blo; blk < bhi; blk++ {
			lo, hi := blk*block, min(blk*block+block, n)
			if (hi-lo)%16 != 0 {
				var sh []float32
				if shadow != nil {
					sh = shadow[lo:hi]
				}
				// Its only error is of sizes, checked above for the whole.
				_ = compute.AdamW8bitSlices(p[lo:hi], g[lo:hi], m8[lo:hi], v8[lo:hi], mScale[blk:blk+1], vScale[blk:blk+1], sh, round, s, block)
				continue
			}
			c.mScale, c.vScale = mScale[blk], vScale[blk]
			mt, vt := m[:hi-lo], v[:hi-lo]
			k.update(p[lo:hi], g[lo:hi], mt, vt, m8[lo:hi], v8[lo:hi], qs, qu, &c, &acc)
			// The lanes' largest magnitudes, a NaN left out as the scalar
			// loop does (max is exact, so the order does not matter).
			var mMax, vMax float32
			for _, a := range acc[:16] {
				if a > mMax {
					mMax = a
				}
			}
			for _, a := range acc[16:] {
				if a > vMax {
					vMax = a
				}
			}
			mScale[blk], vScale[blk] = mMax, vMax
			k.encode(m8[lo:hi], mt, compute.Adam8Inverse(mMax), &ls)
			k.encode(v8[lo:hi], vt, compute.Adam8Inverse(vMax), &lu)
			if shadow != nil {
				for j, x := range p[lo:hi] {
					if round != nil {
						x = round(x)
					}
					shadow[lo+j] = x
				}
			}
		}
	})
	return nil
}
