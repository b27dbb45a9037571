//go:build amd64 && !purego

package cpu

// Assembly kernels in adam8_amd64.s; n is a multiple of 16 in all.

//go:noescape
func adam8UpdateAVX512(p, grad, mt, vt *float32, m8, v8 *byte, n int, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)

//go:noescape
func adam8EncodeAVX512(dst *byte, src *float32, n int, scale float32, l *adam8Layout)

//go:noescape
func adam8UpdateAVX2(p, grad, mt, vt *float32, m8, v8 *byte, n int, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)

//go:noescape
func adam8EncodeAVX2(dst *byte, src *float32, n int, scale float32, l *adam8Layout)

// archAdam8 lists the 8-bit AdamW kernels this CPU runs, fastest first.
func archAdam8() []*adam8Kernels {
	var ks []*adam8Kernels
	if hasAVX512 {
		ks = append(ks, &adam8Kernels{name: "avx512",
			update: func(p, g, mt, vt []float32, m8, v8 []byte, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32) {
				adam8UpdateAVX512(&p[0], &g[0], &mt[0], &vt[0], &m8[0], &v8[0], len(p), qs, qu, c, acc)
			},
			encode: func(dst []byte, src []float32, scale float32, l *adam8Layout) {
				adam8EncodeAVX512(&dst[0], &src[0], len(src), scale, l)
			}})
	}
	if hasAVX2FMA {
		ks = append(ks, &adam8Kernels{name: "avx2",
			update: func(p, g, mt, vt []float32, m8, v8 []byte, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32) {
				adam8UpdateAVX2(&p[0], &g[0], &mt[0], &vt[0], &m8[0], &v8[0], len(p), qs, qu, c, acc)
			},
			encode: func(dst []byte, src []float32, scale float32, l *adam8Layout) {
				adam8EncodeAVX2(&dst[0], &src[0], len(src), scale, l)
			}})
	}
	return ks
}
