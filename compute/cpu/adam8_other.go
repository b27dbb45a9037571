//go:build !amd64 || purego

package cpu

// archAdam8: no 8-bit AdamW kernels here; compute.AdamW8bitSlices runs.
func archAdam8() []*adam8Kernels { return nil }
