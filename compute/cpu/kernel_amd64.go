//go:build amd64 && !purego

package cpu

//go:generate go run ./internal/asmgen

import (
	"os"

	sysCPU "golang.org/x/sys/cpu"
)

var (
	hasAVX2FMA = sysCPU.X86.HasAVX2 && sysCPU.X86.HasFMA
	hasAVX512  = sysCPU.X86.HasAVX512F
)

// kernel6x16AVX2 and kernel12x32AVX512 are the generated assembly
// micro-kernels; see microKernel for the contract.
//
//go:noescape
func kernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kernel12x32AVX512(k int, a, b, c *float32, ldc int, alpha, beta float32)

// Blocking measured on a 2-core Xeon (48 KiB L1d, 2 MiB L2 per core): the
// choices within ±30% of these differ by less than the run-to-run noise.
var (
	avx2Kernel = microKernel{name: "avx2/fma 6x16", mr: 6, nr: 16, kc: 256, mc: 120, nc: 3072,
		fn: func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
			kernel6x16AVX2(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
	avx512Kernel = microKernel{name: "avx512 12x32", mr: 12, nr: 32, kc: 256, mc: 192, nc: 3072,
		fn: func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
			kernel12x32AVX512(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
)

// The strided kernels (thin_amd64.s) read A and B in place; see
// stridedKernel.
//
//go:noescape
func strided12x32AVX512(k int, a *float32, aRow, aStep int, b *float32, bStep int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func strided12x16AVX512(k int, a *float32, aRow, aStep int, b *float32, bStep int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func strided6x16AVX2(k int, a *float32, aRow, aStep int, b *float32, bStep int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func strided6x8AVX2(k int, a *float32, aRow, aStep int, b *float32, bStep int, c *float32, ldc int, alpha, beta float32)

type stridedAsm func(k int, a *float32, aRow, aStep int, b *float32, bStep int, c *float32, ldc int, alpha, beta float32)

func stridedOf(mr, nr int, f stridedAsm) stridedKernel {
	return stridedKernel{mr: mr, nr: nr, fn: func(k int, a []float32, aRow, aStep int, b []float32, bStep int, c []float32, ldc int, alpha, beta float32) {
		f(k, &a[0], aRow, aStep, &b[0], bStep, &c[0], ldc, alpha, beta)
	}}
}

// archStrided returns the strided kernels this CPU runs.
func archStrided() (stridedPair, bool) {
	switch {
	case hasAVX512 && os.Getenv("GOTUNE_CPU") != "avx2":
		return stridedPair{wide: stridedOf(12, 32, strided12x32AVX512), narrow: stridedOf(12, 16, strided12x16AVX512)}, true
	case hasAVX2FMA:
		return stridedPair{wide: stridedOf(6, 16, strided6x16AVX2), narrow: stridedOf(6, 8, strided6x8AVX2)}, true
	}
	return stridedPair{}, false
}

//go:noescape
func fmaLoopAVX512(n int)

//go:noescape
func fmaLoopAVX2(n int)

// archFMALoop returns the FMA loop for the kernel whose tiles are nr wide
// and the float32 operations one round of it performs.
func archFMALoop(nr int) (func(int), float64) {
	switch {
	case nr == 32 && hasAVX512:
		return fmaLoopAVX512, 24 * 16 * 2
	case hasAVX2FMA:
		return fmaLoopAVX2, 12 * 8 * 2
	}
	return nil, 0
}

// archKernels lists the assembly micro-kernels this CPU runs, fastest first.
func archKernels() []microKernel {
	var ks []microKernel
	if hasAVX512 {
		ks = append(ks, avx512Kernel)
	}
	if hasAVX2FMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}

// OpenBLASCoreType names the OpenBLAS kernel family for this CPU's features:
// OpenBLAS 0.3.21 misdetects recent Xeons and falls back to SSE3 kernels, so
// gotune sets OPENBLAS_CORETYPE from it, for its own use and for the PyTorch
// peer of `gotune bench --peer`.
func OpenBLASCoreType() string {
	x := sysCPU.X86
	switch {
	case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512DQ && x.HasAVX512CD:
		return "SkylakeX"
	case x.HasAVX2 && x.HasFMA:
		return "Haswell"
	}
	return ""
}
