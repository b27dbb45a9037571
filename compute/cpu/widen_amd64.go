//go:build amd64 && !purego

package cpu

import "math"

// widenBF16AVX widens 16·blocks bfloat16 words; see widen_amd64.s.
//
//go:noescape
func widenBF16AVX(dst *float32, src *uint16, blocks int)

// widenBF16 writes the float32 values of the bfloat16 bits src into dst (at
// least as long): the packing of bf16 weights and the operations reading
// them in place do this for every element, so it runs 16 at a time where
// AVX2 is there.
func widenBF16(dst []float32, src []uint16) {
	n := len(src)
	dst = dst[:n]
	i := 0
	if hasAVX2FMA && n >= 16 {
		blocks := n / 16
		widenBF16AVX(&dst[0], &src[0], blocks)
		i = blocks * 16
	}
	for ; i < n; i++ {
		dst[i] = math.Float32frombits(uint32(src[i]) << 16)
	}
}
