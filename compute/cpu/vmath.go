package cpu

import (
	"math"
	"os"
	"sync"
)

// Vectorised transcendental kernels for the hot elementwise loops of
// training: softmax (attention and cross-entropy) and SwiGLU. Every function
// processes a whole slice; on amd64 an AVX-512 or AVX2/FMA assembly kernel
// does the work, elsewhere (or with the purego tag) a plain Go loop.
//
// The exponential uses one algorithm in every path (range reduction
// x = n·ln2 + r with ln2 in two parts, the degree-6 Cephes polynomial), so
// scalar and vector results agree to an ulp or two: relative error ≤ 3e-7
// on normal results, 0 below -87.33654, +Inf above 88.72283, NaN stays NaN.

// ExpF32 sets dst[i] = e^src[i] for every i < len(src). dst must be at least
// as long as src; it may be src itself (but must not overlap it otherwise).
func ExpF32(dst, src []float32) {
	bestVmath().expSub(dst[:len(src)], src, 0)
}

// ExpSubSum sets dst[i] = e^(src[i]−sub) and returns the sum of those
// values. With dst nil only the sum is computed. dst may be src itself.
// Partial sums are float32 over at most sumChunk elements, accumulated in
// float64: a softmax over a 150k vocabulary keeps about 1e-6 relative error.
func ExpSubSum(dst, src []float32, sub float32) float64 {
	if dst != nil {
		dst = dst[:len(src)]
	}
	return bestVmath().expSub(dst, src, sub)
}

// MaxF32 returns the largest element of x: -Inf when x is empty, NaN when
// any element is NaN (like the max builtin).
func MaxF32(x []float32) float32 {
	if len(x) == 0 {
		return float32(math.Inf(-1))
	}
	return bestVmath().max(x)
}

// Softmax replaces row with its softmax and returns the row's maximum and
// Σ e^(row[i]−max), so that log-sum-exp = max + log(sum). A row that is
// empty or entirely -Inf (fully masked) becomes zeros and returns (-Inf, 0).
func Softmax(row []float32) (max float32, sum float64) {
	max = MaxF32(row)
	if math.IsInf(float64(max), -1) {
		clear(row)
		return max, 0
	}
	sum = ExpSubSum(row, row, max)
	Scale(float32(1/sum), row)
	return max, sum
}

// SiLUMul sets a[i] = silu(g[i])·u[i] = g[i]·σ(g[i])·u[i] for i < len(a), the
// SwiGLU activation. g and u must be at least as long as a; a may be g or u.
func SiLUMul(a, g, u []float32) {
	n := len(a)
	bestVmath().siluMul(a, g[:n], u[:n])
}

// SiLUMulBackward is the gradient of SiLUMul for i < len(da): du = da·silu(g)
// and dg = da·u·σ(g)·(1 + g·(1−σ(g))), both overwritten. Outputs may alias
// inputs element for element.
func SiLUMulBackward(dg, du, da, g, u []float32) {
	n := len(da)
	bestVmath().siluMulBackward(dg[:n], du[:n], da, g[:n], u[:n])
}

// sumChunk bounds how many float32 terms the assembly sums before the
// partial sum moves to float64: each accumulator lane then holds at most 128
// (AVX-512, 32 lanes) or 512 (AVX2, 8 lanes) terms. A chunk's sum must fit a
// float32, as it does for softmax where every term is at most 1.
const sumChunk = 4096

// vmathImpl is one implementation of the kernels. Slices passed in already
// have equal lengths (expSub's dst may be nil).
type vmathImpl struct {
	name            string
	expSub          func(dst, src []float32, sub float32) float64
	max             func(x []float32) float32 // len(x) ≥ 1
	siluMul         func(a, g, u []float32)
	siluMulBackward func(dg, du, da, g, u []float32)
}

var genericVmath = &vmathImpl{
	name:            "generic",
	expSub:          expSubGeneric,
	max:             maxGeneric,
	siluMul:         siluMulGeneric,
	siluMulBackward: siluMulBackwardGeneric,
}

// allVmath lists the implementations this CPU runs, fastest first.
func allVmath() []*vmathImpl {
	return append(archVmath(), genericVmath)
}

// bestVmath is the fastest implementation; GOTUNE_CPU=avx2 skips AVX-512 as
// it does for the GEMM kernels.
var bestVmath = sync.OnceValue(func() *vmathImpl {
	for _, v := range archVmath() {
		if os.Getenv("GOTUNE_CPU") == "avx2" && v.name == "avx512" {
			continue
		}
		return v
	}
	return genericVmath
})

const (
	expUnderflow = -87.33654 // e^x < smallest normal float32 below this
	expOverflow  = 88.72283  // e^x > largest float32 above this
)

// expf is the scalar exponential of the generic path and of the tails: the
// classic range reduction x = n·ln2 + r (ln2 split in two so n·ln2 is exact)
// and a degree-6 polynomial for e^r (the Cephes expf coefficients). It stays
// finite for x in [88.38, 88.72283], where n = 128 makes 2^n overflow.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < expUnderflow:
		return 0
	case x > expOverflow:
		return float32(math.Inf(1))
	}
	t := x * 1.44269504088896341
	var n int32
	if t >= 0 {
		n = int32(t + 0.5)
	} else {
		n = int32(t - 0.5)
	}
	fn := float32(n)
	r := x - fn*0.693359375 + fn*2.12194440e-4
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	// n ≥ -126 here, so only n = 128 needs two factors.
	if n > 127 {
		return y * 2 * math.Float32frombits(uint32(n-1+127)<<23)
	}
	return y * math.Float32frombits(uint32(n+127)<<23)
}

func expSubGeneric(dst, src []float32, sub float32) float64 {
	var s float64
	if dst == nil {
		for _, x := range src {
			s += float64(expf(x - sub))
		}
		return s
	}
	for i, x := range src {
		e := expf(x - sub)
		dst[i] = e
		s += float64(e)
	}
	return s
}

func maxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

func siluMulGeneric(a, g, u []float32) {
	for i := range a {
		x := g[i]
		a[i] = x / (1 + expf(-x)) * u[i]
	}
}

func siluMulBackwardGeneric(dg, du, da, g, u []float32) {
	for i := range da {
		x, d := g[i], da[i]
		s := 1 / (1 + expf(-x))
		du[i] = d * x * s
		dg[i] = d * u[i] * s * (1 + x*(1-s))
	}
}
