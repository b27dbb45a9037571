//go:build amd64 && !purego

package cpu

import "unsafe"

// Assembly kernels in adamw_amd64.s; n is a multiple of 16 in both, sh may
// be nil with mode shadowNone.

//go:noescape
func adamWAVX512(p, grad, m, v, sh *float32, n int, c *adamWConsts, mode int)

//go:noescape
func adamWAVX2(p, grad, m, v, sh *float32, n int, c *adamWConsts, mode int)

// archAdamW lists the float AdamW kernels this CPU runs, fastest first.
func archAdamW() []*adamWKernels {
	var ks []*adamWKernels
	if hasAVX512 {
		ks = append(ks, &adamWKernels{name: "avx512", update: func(p, g, m, v, sh []float32, c *adamWConsts, mode int) {
			adamWAVX512(&p[0], &g[0], &m[0], &v[0], unsafe.SliceData(sh), len(p), c, mode)
		}})
	}
	if hasAVX2FMA {
		ks = append(ks, &adamWKernels{name: "avx2", update: func(p, g, m, v, sh []float32, c *adamWConsts, mode int) {
			adamWAVX2(&p[0], &g[0], &m[0], &v[0], unsafe.SliceData(sh), len(p), c, mode)
		}})
	}
	return ks
}
