// Package cuda is gotune's NVIDIA GPU backend: the driver API, cuBLAS and
// NVRTC are loaded at run time with purego (no cgo, no CUDA headers at build
// time), and the kernels in kernels.cu are compiled for the GPU at first use
// and cached on disk.
package cuda

import "gotune/compute"

// OpTime is the GPU time spent in one kind of operation while profiling.
type OpTime = compute.OpTime
