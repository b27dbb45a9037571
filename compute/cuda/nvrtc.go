//go:build linux && (amd64 || arm64)

package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"
)

//go:embed kernels.cu
var kernelSource string

// KernelSource is the CUDA C source of every kernel gotune launches.
func KernelSource() string { return kernelSource }

// NVRTCVersion returns the version of the run-time compiler, loading it if
// needed.
func NVRTCVersion() (major, minor int, err error) {
	nv, err := nvrtcOnce()
	if err != nil {
		return 0, 0, err
	}
	var ma, mi int32
	if r := nv.nvrtcVersion.call(uintptr(unsafe.Pointer(&ma)), uintptr(unsafe.Pointer(&mi))); r != 0 {
		return 0, 0, nv.err("nvrtcVersion", r)
	}
	return int(ma), int(mi), nil
}

func (a *nvrtcAPI) err(call string, r int32) error {
	return fmt.Errorf("cuda: %s: %s (nvrtc %d)", call, gostr(a.nvrtcGetErrorString.ptr(uintptr(r))), r)
}

// supportedArchs lists the sm_XY numbers NVRTC can compile for.
func (a *nvrtcAPI) supportedArchs() []int {
	var n int32
	if a.nvrtcGetNumSupportedArchs.call(uintptr(unsafe.Pointer(&n))) != 0 || n <= 0 || n > 1024 {
		return nil
	}
	archs := make([]int32, n)
	if a.nvrtcGetSupportedArchs.call(uintptr(unsafe.Pointer(&archs[0]))) != 0 {
		return nil
	}
	out := make([]int, n)
	for i, v := range archs {
		out[i] = int(v)
	}
	return out
}

// Compiled is the output of NVRTC for one GPU architecture: a CUBIN when
// NVRTC knows the architecture, else PTX of the newest one it knows (the
// driver compiles PTX for newer GPUs).
type Compiled struct {
	Image []byte // NUL-terminated for PTX
	PTX   bool
	Arch  int
}

// Compile compiles src for compute capability arch (e.g. 90) with NVRTC,
// caching the result on disk under cacheDir (by source, options, arch and
// compiler version) so later runs skip the compiler. cacheDir "" disables
// the cache.
func Compile(src string, arch int, cacheDir string) (*Compiled, error) {
	nv, err := nvrtcOnce()
	if err != nil {
		return nil, err
	}
	ma, mi, err := NVRTCVersion()
	if err != nil {
		return nil, err
	}
	target, ptx := arch, false
	if archs := nv.supportedArchs(); len(archs) > 0 {
		known := false
		best := 0
		for _, a := range archs {
			if a == arch {
				known = true
			}
			if a <= arch && a > best {
				best = a
			}
		}
		if !known {
			if best == 0 {
				return nil, fmt.Errorf("cuda: NVRTC %d.%d cannot compile for sm_%d (it knows %v): install a newer CUDA toolkit", ma, mi, arch, archs)
			}
			target, ptx = best, true
		}
	}
	opts := []string{"--std=c++14", "-default-device", "-DNDEBUG"}
	if ptx {
		opts = append(opts, fmt.Sprintf("--gpu-architecture=compute_%d", target))
	} else {
		opts = append(opts, fmt.Sprintf("--gpu-architecture=sm_%d", target))
	}
	h := sha256.New()
	fmt.Fprintf(h, "nvrtc %d.%d\n%s\n%d %v\n", ma, mi, strings.Join(opts, " "), arch, ptx)
	h.Write([]byte(src))
	key := hex.EncodeToString(h.Sum(nil))[:32]
	ext := ".cubin"
	if ptx {
		ext = ".ptx"
	}
	var cachePath string
	if cacheDir != "" {
		cachePath = filepath.Join(cacheDir, fmt.Sprintf("kernels-sm%d-%s%s", arch, key, ext))
		if b, err := os.ReadFile(cachePath); err == nil && len(b) > 0 {
			return &Compiled{Image: b, PTX: ptx, Arch: target}, nil
		}
	}

	var prog uintptr
	csrc, cname := cstr(src), cstr("gotune_kernels.cu")
	if r := nv.nvrtcCreateProgram.call(uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&csrc[0])),
		uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); r != 0 {
		return nil, nv.err("nvrtcCreateProgram", r)
	}
	defer nv.nvrtcDestroyProgram.call(uintptr(unsafe.Pointer(&prog)))
	copts := make([][]byte, len(opts))
	optPtrs := make([]uintptr, len(opts))
	for i, o := range opts {
		copts[i] = cstr(o)
		optPtrs[i] = uintptr(unsafe.Pointer(&copts[i][0]))
	}
	r := nv.nvrtcCompileProgram.call(prog, uintptr(len(opts)), uintptr(unsafe.Pointer(&optPtrs[0])))
	keepAlive(copts, csrc, cname)
	if r != 0 {
		return nil, fmt.Errorf("%w\n%s", nv.err("nvrtcCompileProgram", r), nv.log(prog))
	}
	var size uintptr
	getSize, get := nv.nvrtcGetCUBINSize, nv.nvrtcGetCUBIN
	if ptx {
		getSize, get = nv.nvrtcGetPTXSize, nv.nvrtcGetPTX
	}
	if r := getSize.call(prog, uintptr(unsafe.Pointer(&size))); r != 0 {
		return nil, nv.err("nvrtcGet(CUBIN|PTX)Size", r)
	}
	if size == 0 || size > 1<<30 {
		return nil, fmt.Errorf("cuda: NVRTC returned an image of %d bytes", size)
	}
	img := make([]byte, size)
	if r := get.call(prog, uintptr(unsafe.Pointer(&img[0]))); r != 0 {
		return nil, nv.err("nvrtcGet(CUBIN|PTX)", r)
	}
	if cachePath != "" {
		// A cache that cannot be written only costs a recompile next time.
		_ = writeAtomic(cachePath, img)
	}
	return &Compiled{Image: img, PTX: ptx, Arch: target}, nil
}

func (a *nvrtcAPI) log(prog uintptr) string {
	var n uintptr
	if a.nvrtcGetProgramLogSize.call(prog, uintptr(unsafe.Pointer(&n))) != 0 || n <= 1 || n > 1<<24 {
		return ""
	}
	b := make([]byte, n)
	a.nvrtcGetProgramLog.call(prog, uintptr(unsafe.Pointer(&b[0])))
	return strings.TrimRight(string(b), "\x00\n")
}

// writeAtomic writes b to path through a temporary file and a rename, so a
// crash never leaves a truncated cache entry.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// DefaultCacheDir is where compiled kernels are kept between runs.
func DefaultCacheDir() string {
	if d := os.Getenv("GOTUNE_CUDA_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "gotune", "cuda")
}
