package gguf

import "math"

// edgeBlocks returns 256-value blocks that take the quantizers' rarely used
// paths: all zero, constant, one non-zero sub-block, tiny and huge
// magnitudes, subnormals, a lone outlier, exact grids and negative-only data.
func edgeBlocks() []float32 {
	var x []float32
	block := func(f func(i int) float32) {
		for i := 0; i < qkK; i++ {
			x = append(x, f(i))
		}
	}
	block(func(int) float32 { return 0 })
	block(func(int) float32 { return 1 })
	block(func(int) float32 { return -0.75 })
	block(func(i int) float32 {
		if i/32 == 3 {
			return float32(i%7) - 3
		}
		return 0
	})
	block(func(i int) float32 {
		if i/16 == 5 {
			return float32(i%5) * 0.01
		}
		return 0
	})
	block(func(i int) float32 { return float32(math.Sin(float64(i))) * 1e-7 })
	block(func(i int) float32 { return float32(math.Cos(float64(i))) * 1e4 })
	block(func(i int) float32 { return float32(i%11-5) * 1e-40 })
	block(func(i int) float32 {
		if i == 77 {
			return 50
		}
		return float32(math.Sin(float64(3*i))) * 0.01
	})
	block(func(i int) float32 { return 0.5*float32(i%16) - 2 })
	block(func(i int) float32 { return float32(i%16 - 8) })
	block(func(i int) float32 { return -float32(i%13) - 0.5 })
	block(func(i int) float32 { return float32(i%3) * 0.3 })
	return x
}
