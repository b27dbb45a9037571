//go:build amd64 && !purego

package cpu

// Assembly kernels in vmath_amd64.s. Each takes any n ≥ 0 (max: n ≥ 1) and
// handles the tail with masked loads and stores, so no element is read or
// written past n. expSub's dst may be nil (sum only); its sum is float32.

//go:noescape
func expSubAVX512(dst, src *float32, n int, sub float32) float32

//go:noescape
func expSubAVX2(dst, src *float32, n int, sub float32) float32

//go:noescape
func maxAVX512(x *float32, n int) float32

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func siluMulAVX512(a, x, u *float32, n int)

//go:noescape
func siluMulAVX2(a, x, u *float32, n int)

//go:noescape
func siluMulBwdAVX512(dg, du, da, x, u *float32, n int)

//go:noescape
func siluMulBwdAVX2(dg, du, da, x, u *float32, n int)

var (
	avx512Vmath = &vmathImpl{
		name:            "avx512",
		expSub:          expSubAsm(expSubAVX512),
		max:             func(x []float32) float32 { return maxAVX512(&x[0], len(x)) },
		siluMul:         siluMulAsm(siluMulAVX512),
		siluMulBackward: siluMulBackwardAsm(siluMulBwdAVX512),
	}
	avx2Vmath = &vmathImpl{
		name:            "avx2",
		expSub:          expSubAsm(expSubAVX2),
		max:             func(x []float32) float32 { return maxAVX2(&x[0], len(x)) },
		siluMul:         siluMulAsm(siluMulAVX2),
		siluMulBackward: siluMulBackwardAsm(siluMulBwdAVX2),
	}
)

// archVmath lists the assembly implementations this CPU runs, fastest first.
func archVmath() []*vmathImpl {
	var vs []*vmathImpl
	if hasAVX512 {
		vs = append(vs, avx512Vmath)
	}
	if hasAVX2FMA {
		vs = append(vs, avx2Vmath)
	}
	return vs
}

func expSubAsm(k func(dst, src *float32, n int, sub float32) float32) func(dst, src []float32, sub float32) float64 {
	return func(dst, src []float32, sub float32) float64 {
		var s float64
		for len(src) > 0 {
			n := min(len(src), sumChunk)
			var d *float32
			if dst != nil {
				d = &dst[0]
				dst = dst[n:]
			}
			s += float64(k(d, &src[0], n, sub))
			src = src[n:]
		}
		return s
	}
}

func siluMulAsm(k func(a, g, u *float32, n int)) func(a, g, u []float32) {
	return func(a, g, u []float32) {
		if len(a) > 0 {
			k(&a[0], &g[0], &u[0], len(a))
		}
	}
}

func siluMulBackwardAsm(k func(dg, du, da, g, u *float32, n int)) func(dg, du, da, g, u []float32) {
	return func(dg, du, da, g, u []float32) {
		if len(da) > 0 {
			k(&dg[0], &du[0], &da[0], &g[0], &u[0], len(da))
		}
	}
}
