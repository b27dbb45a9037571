//go:build !amd64 || purego

package cpu

// No 8-bit AdamW kernels here: compute.AdamW8bitSlices runs instead.

const hasAdam8Asm = false

func adam8Update(p, g, mt, vt []float32, m8, v8 []byte, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32) {
	panic("unreachable")
}

func adam8Encode(dst []byte, src []float32, scale float32, l *adam8Layout) { panic("unreachable") }
