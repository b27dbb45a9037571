//go:build !linux

package cpu

// guarded returns s unchanged where no page protection is available.
func guarded(s []float32) ([]float32, func()) { return s, func() {} }
