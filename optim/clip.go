package optim

import (
	"math"

	"gotune/nn"
	"gotune/parallel"
)

// normBlock is the fixed block size of the parallel norm reduction: partial
// sums are formed per block and added in block order, so the result does not
// depend on the number of cores (a resumed run reproduces the same norms).
const normBlock = 1 << 16

// GradNorm is the global L2 norm of the gradients of params (those with a
// gradient), accumulated in float64.
func GradNorm(params []*nn.Param) float64 {
	total := 0.0
	for _, p := range params {
		if p.Grad == nil {
			continue
		}
		g := p.Grad
		nb := (len(g) + normBlock - 1) / normBlock
		if nb <= 1 {
			total += sumSq(g)
			continue
		}
		partial := make([]float64, nb)
		parallel.For(nb, 1, func(lo, hi int) {
			for b := lo; b < hi; b++ {
				partial[b] = sumSq(g[b*normBlock : min((b+1)*normBlock, len(g))])
			}
		})
		for _, s := range partial {
			total += s
		}
	}
	return math.Sqrt(total)
}

func sumSq(g []float32) float64 {
	// Four accumulators break the add dependency chain.
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(g); i += 4 {
		a, b, c, d := float64(g[i]), float64(g[i+1]), float64(g[i+2]), float64(g[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(g); i++ {
		s0 += float64(g[i]) * float64(g[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// ClipGradNorm is torch.nn.utils.clip_grad_norm_: it scales all gradients by
// maxNorm/(norm+1e-6) when that is below 1, and returns the norm before
// clipping. A non-finite norm leaves the gradients untouched (torch would
// turn them all into NaN) and is returned so the caller can skip the step.
// maxNorm <= 0 only measures.
func ClipGradNorm(params []*nn.Param, maxNorm float64) float64 {
	norm := GradNorm(params)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return norm
	}
	c := float32(coef)
	for _, p := range params {
		g := p.Grad
		if g == nil {
			continue
		}
		parallel.For(len(g), minChunk, func(lo, hi int) {
			for j := range g[lo:hi] {
				g[lo+j] *= c
			}
		})
	}
	return norm
}

// Params lists the parameters of groups in order.
func Params(groups []Group) []*nn.Param {
	var out []*nn.Param
	for _, g := range groups {
		out = append(out, g.Params...)
	}
	return out
}
