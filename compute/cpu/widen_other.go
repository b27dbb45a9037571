//go:build !amd64 || purego

package cpu

import "gotune/dtype"

// widenBF16 writes the float32 values of the bfloat16 bits src into dst.
func widenBF16(dst []float32, src []uint16) { dtype.BF16ToF32(dst, src) }
