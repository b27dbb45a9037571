package cpu

import (
	"fmt"
	"math"
	"os"
	"sync"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Shadow modes of the float AdamW kernels: what they write besides the
// weights.
const (
	shadowNone = iota // nothing
	shadowF32         // a copy of the new weights
	shadowBF16        // the new weights rounded to bf16 (hostmem.RoundBF16)
)

// adamWConsts are an AdamStep's scalars as the float AdamW kernels read
// them (adamw_amd64.s reads the fields at fixed offsets: keep the order),
// and the integer constants of the bf16 rounding, which the AVX2 kernel
// broadcasts from here rather than keep in its 16 registers.
type adamWConsts struct {
	gradScale, beta1, oneMinusBeta1, beta2, oneMinusBeta2 float32
	decay, stepSize, bc2Sqrt, eps                         float32
	one, half, quiet, high                                uint32
}

func adamWConstsOf(s compute.AdamStep) adamWConsts {
	return adamWConsts{gradScale: s.GradScale, beta1: s.Beta1, oneMinusBeta1: 1 - s.Beta1, beta2: s.Beta2, oneMinusBeta2: 1 - s.Beta2,
		decay: s.Decay, stepSize: s.StepSize, bc2Sqrt: s.BC2Sqrt, eps: s.Eps,
		one: 1, half: 0x7fff, quiet: 0x400000, high: 0xffff0000}
}

// adamWKernels are an instruction set's float AdamW kernel: update runs
// adamWSlices over len(p) values, a multiple of 16 (sh has that length
// too, or is nil with mode shadowNone).
type adamWKernels struct {
	name   string
	update func(p, g, m, v, sh []float32, c *adamWConsts, mode int)
}

// bestAdamW is the fastest float AdamW kernel this CPU runs, nil for the Go
// loop: GOTUNE_CPU=avx2 skips AVX-512 and GOTUNE_CPU=generic takes the Go
// loop, as for the other kernels.
var bestAdamW = sync.OnceValue(func() *adamWKernels {
	env := os.Getenv("GOTUNE_CPU")
	for _, k := range archAdamW() {
		if env == "generic" || env == "avx2" && k.name == "avx512" {
			continue
		}
		return k
	}
	return nil
})

// adamW is the float AdamW update of p, m, v (and the shadow's new values)
// split over the cores, each chunk's multiple of 16 by kernel k (nil: all
// by adamWSlices) and its last few values by adamWSlices.
func adamW(k *adamWKernels, p, g, m, v, shadow []float32, mode int, s compute.AdamStep) error {
	n := len(p)
	if len(g) < n || len(m) < n || len(v) < n || (mode != shadowNone && len(shadow) < n) {
		return fmt.Errorf("adamw: %d weights but gradient %d, moments %d/%d, shadow %d", n, len(g), len(m), len(v), len(shadow))
	}
	c := adamWConstsOf(s)
	elementwise(n, func(lo, hi int) {
		mid := lo
		if k != nil {
			mid = lo + (hi-lo)&^15
		}
		var sh []float32
		if mode != shadowNone {
			sh = shadow[lo:mid]
		}
		if mid > lo {
			k.update(p[lo:mid], g[lo:mid], m[lo:mid], v[lo:mid], sh, &c, mode)
		}
		if mode != shadowNone {
			sh = shadow[mid:hi]
		}
		adamWSlices(p[mid:hi], g[mid:hi], m[mid:hi], v[mid:hi], sh, mode, s)
	})
	return nil
}

// adamWSlices is the float AdamW update in Go, the one the kernels
// reproduce bit for bit. Each product and sum is rounded to float32 in the
// order written (the float32() conversions keep Go from fusing them into
// FMAs where it may, so every target and GOAMD64 level rounds alike; on
// amd64 with GOAMD64=v1 it compiles to the same instructions without
// them), and √v is the correctly rounded float32 square root.
func adamWSlices(p, g, m, v, shadow []float32, mode int, s compute.AdamStep) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	if mode != shadowNone {
		shadow = shadow[:len(p)]
	}
	for i := range p {
		gi := g[i] * s.GradScale
		mi := float32(s.Beta1*m[i]) + float32((1-s.Beta1)*gi)
		vi := float32(s.Beta2*v[i]) + float32((1-s.Beta2)*gi*gi)
		m[i], v[i] = mi, vi
		pi := float32(p[i]*s.Decay) - s.StepSize*mi/(float32(math.Sqrt(float64(vi)))/s.BC2Sqrt+s.Eps)
		p[i] = pi
		switch mode {
		case shadowF32:
			shadow[i] = pi
		case shadowBF16:
			shadow[i] = hostmem.RoundBF16(pi)
		}
	}
}
