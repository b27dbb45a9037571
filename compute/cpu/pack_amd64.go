//go:build amd64 && !purego

package cpu

import "math"

// transpose8AVX transposes blocks consecutive 8×8 blocks; see pack_amd64.s.
//
//go:noescape
func transpose8AVX(dst, src *float32, srcStride, dstStride, blocks int)

// transpose8 writes dst[q*dstStride+r] = src[r*srcStride+q] for r < 8 and
// q < kb, returning false (doing nothing) where no assembly exists. dst and
// src must hold the whole block.
func transpose8(dst, src []float32, srcStride, dstStride, kb int) bool {
	if !hasAVX2FMA || kb < 8 {
		return false
	}
	_ = src[7*srcStride+kb-1]
	_ = dst[(kb-1)*dstStride+7]
	blocks := kb / 8
	transpose8AVX(&dst[0], &src[0], srcStride, dstStride, blocks)
	for q := blocks * 8; q < kb; q++ {
		for r := range 8 {
			dst[q*dstStride+r] = src[r*srcStride+q]
		}
	}
	return true
}

// transpose8BF16AVX is transpose8AVX reading bfloat16 bits.
//
//go:noescape
func transpose8BF16AVX(dst *float32, src *uint16, srcStride, dstStride, blocks int)

// transpose8BF16 is transpose8 with src in bfloat16 bits, widened.
func transpose8BF16(dst []float32, src []uint16, srcStride, dstStride, kb int) bool {
	if !hasAVX2FMA || kb < 8 {
		return false
	}
	_ = src[7*srcStride+kb-1]
	_ = dst[(kb-1)*dstStride+7]
	blocks := kb / 8
	transpose8BF16AVX(&dst[0], &src[0], srcStride, dstStride, blocks)
	for q := blocks * 8; q < kb; q++ {
		for r := range 8 {
			dst[q*dstStride+r] = math.Float32frombits(uint32(src[r*srcStride+q]) << 16)
		}
	}
	return true
}
