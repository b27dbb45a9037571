//go:build !amd64 || purego

package cpu

// archVmath lists the assembly implementations of the vmath kernels: none
// here, the generic Go loops run instead.
func archVmath() []*vmathImpl { return nil }
