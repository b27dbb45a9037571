//go:build !amd64 || purego

package cpu

// Stubs for where no assembly exists: the generic Go paths run instead.

const hasVecAsm = false

func dotAVX2(a, b *float32, n int) float32         { panic("unreachable") }
func axpyAVX2(alpha float32, x, y *float32, n int) { panic("unreachable") }
func scaleAVX2(alpha float32, x *float32, n int)   { panic("unreachable") }

// archKernels lists the assembly micro-kernels this CPU runs: none here.
func archKernels() []microKernel { return nil }

// OpenBLASCoreType names the OpenBLAS kernel family for this CPU: none known here.
func OpenBLASCoreType() string { return "" }

// archStrided returns the strided kernels this CPU runs: none here.
func archStrided() (stridedPair, bool) { return stridedPair{}, false }

func transpose8(dst, src []float32, srcStride, dstStride, kb int) bool { return false }

func transpose8BF16(dst []float32, src []uint16, srcStride, dstStride, kb int) bool { return false }

// archFMALoop: no assembly FMA loop here.
func archFMALoop(nr int) (func(int), float64) { return nil, 0 }
