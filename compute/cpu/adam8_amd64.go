//go:build amd64 && !purego

package cpu

// Assembly kernels in adam8_amd64.s; n is a multiple of 16 in both.

//go:noescape
func adam8UpdateAVX512(p, grad, mt, vt *float32, m8, v8 *byte, n int, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)

//go:noescape
func adam8EncodeAVX512(dst *byte, src *float32, n int, scale float32, l *adam8Layout)

// hasAdam8Asm: the kernels need AVX-512F (gathers, masks, vpmovdb).
var hasAdam8Asm = hasAVX512

func adam8Update(p, g, mt, vt []float32, m8, v8 []byte, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32) {
	adam8UpdateAVX512(&p[0], &g[0], &mt[0], &vt[0], &m8[0], &v8[0], len(p), qs, qu, c, acc)
}

func adam8Encode(dst []byte, src []float32, scale float32, l *adam8Layout) {
	adam8EncodeAVX512(&dst[0], &src[0], len(src), scale, l)
}
