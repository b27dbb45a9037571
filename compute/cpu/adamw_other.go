//go:build !amd64 || purego

package cpu

// archAdamW: no float AdamW kernels here; adamWSlices runs.
func archAdamW() []*adamWKernels { return nil }
