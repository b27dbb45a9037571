//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// fn is a C function resolved from a shared library, called through purego
// without cgo. Every argument is passed as a machine word.
type fn uintptr

func (f fn) call(args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(uintptr(f), args...)
	return int32(r)
}

func (f fn) ptr(args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(uintptr(f), args...)
	return r
}

func dlopen(name string) (uintptr, error) {
	return purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// bind resolves each named symbol of lib into the fn it points to.
func bind(lib uintptr, libName string, syms map[string]*fn) error {
	for name, dst := range syms {
		p, err := purego.Dlsym(lib, name)
		if err != nil {
			return fmt.Errorf("cuda: %s lacks %s (too old a version?): %w", libName, name, err)
		}
		*dst = fn(p)
	}
	return nil
}

// cstr returns a NUL-terminated copy of s; the caller keeps it alive across
// the call.
func cstr(s string) []byte { return append([]byte(s), 0) }

// gostr reads a NUL-terminated C string.
func gostr(p uintptr) string {
	if p == 0 {
		return ""
	}
	// p is C memory, outside Go's heap: reinterpret the word rather than
	// convert it, which vet would read as a misuse of unsafe.Pointer.
	base := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	var b []byte
	for i := 0; i < 1<<16; i++ {
		c := *(*byte)(unsafe.Add(base, i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// driverAPI is the part of libcuda gotune uses.
type driverAPI struct {
	name                                                    string
	cuInit, cuDriverGetVersion, cuDeviceGetCount            fn
	cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute      fn
	cuDeviceTotalMem                                        fn
	cuDevicePrimaryCtxRetain, cuCtxSetCurrent               fn
	cuCtxSynchronize, cuGetErrorName, cuGetErrorString      fn
	cuMemAlloc, cuMemFree, cuMemGetInfo                     fn
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync fn
	cuMemsetD8Async                                         fn
	cuMemAllocHost, cuMemFreeHost                           fn
	cuModuleLoadData, cuModuleGetFunction, cuLaunchKernel   fn
	cuFuncSetAttribute                                      fn
	cuStreamCreate, cuStreamSynchronize                     fn
	cuEventCreate, cuEventRecord, cuEventSynchronize        fn
	cuEventElapsedTime, cuEventDestroy                      fn
}

type nvrtcAPI struct {
	name                                              string
	nvrtcVersion, nvrtcGetErrorString                 fn
	nvrtcCreateProgram, nvrtcCompileProgram           fn
	nvrtcDestroyProgram                               fn
	nvrtcGetPTXSize, nvrtcGetPTX                      fn
	nvrtcGetCUBINSize, nvrtcGetCUBIN                  fn
	nvrtcGetProgramLogSize, nvrtcGetProgramLog        fn
	nvrtcGetNumSupportedArchs, nvrtcGetSupportedArchs fn
}

type cublasAPI struct {
	name                                                    string
	cublasCreate, cublasDestroy, cublasSetStream            fn
	cublasSetMathMode, cublasSetWorkspace, cublasGetVersion fn
	cublasGemmEx, cublasGemmStridedBatchedEx                fn
}

func loadDriver() (*driverAPI, error) {
	h, name, err := libDriver.open(dlopen)
	if err != nil {
		return nil, err
	}
	a := &driverAPI{name: name}
	err = bind(h, name, map[string]*fn{
		"cuInit": &a.cuInit, "cuDriverGetVersion": &a.cuDriverGetVersion, "cuDeviceGetCount": &a.cuDeviceGetCount,
		"cuDeviceGet": &a.cuDeviceGet, "cuDeviceGetName": &a.cuDeviceGetName, "cuDeviceGetAttribute": &a.cuDeviceGetAttribute,
		"cuDeviceTotalMem_v2":      &a.cuDeviceTotalMem,
		"cuDevicePrimaryCtxRetain": &a.cuDevicePrimaryCtxRetain, "cuCtxSetCurrent": &a.cuCtxSetCurrent,
		"cuCtxSynchronize": &a.cuCtxSynchronize, "cuGetErrorName": &a.cuGetErrorName, "cuGetErrorString": &a.cuGetErrorString,
		"cuMemAlloc_v2": &a.cuMemAlloc, "cuMemFree_v2": &a.cuMemFree, "cuMemGetInfo_v2": &a.cuMemGetInfo,
		"cuMemcpyHtoDAsync_v2": &a.cuMemcpyHtoDAsync, "cuMemcpyDtoHAsync_v2": &a.cuMemcpyDtoHAsync,
		"cuMemcpyDtoDAsync_v2": &a.cuMemcpyDtoDAsync, "cuMemsetD8Async": &a.cuMemsetD8Async,
		"cuMemAllocHost_v2": &a.cuMemAllocHost, "cuMemFreeHost": &a.cuMemFreeHost,
		"cuModuleLoadData": &a.cuModuleLoadData, "cuModuleGetFunction": &a.cuModuleGetFunction,
		"cuLaunchKernel": &a.cuLaunchKernel, "cuFuncSetAttribute": &a.cuFuncSetAttribute,
		"cuStreamCreate": &a.cuStreamCreate, "cuStreamSynchronize": &a.cuStreamSynchronize,
		"cuEventCreate": &a.cuEventCreate, "cuEventRecord": &a.cuEventRecord, "cuEventSynchronize": &a.cuEventSynchronize,
		"cuEventElapsedTime": &a.cuEventElapsedTime, "cuEventDestroy_v2": &a.cuEventDestroy,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func loadNVRTC() (*nvrtcAPI, error) {
	h, name, err := libNVRTC.open(dlopen)
	if err != nil {
		return nil, err
	}
	a := &nvrtcAPI{name: name}
	err = bind(h, name, map[string]*fn{
		"nvrtcVersion": &a.nvrtcVersion, "nvrtcGetErrorString": &a.nvrtcGetErrorString,
		"nvrtcCreateProgram": &a.nvrtcCreateProgram, "nvrtcCompileProgram": &a.nvrtcCompileProgram,
		"nvrtcDestroyProgram": &a.nvrtcDestroyProgram,
		"nvrtcGetPTXSize":     &a.nvrtcGetPTXSize, "nvrtcGetPTX": &a.nvrtcGetPTX,
		"nvrtcGetCUBINSize": &a.nvrtcGetCUBINSize, "nvrtcGetCUBIN": &a.nvrtcGetCUBIN,
		"nvrtcGetProgramLogSize": &a.nvrtcGetProgramLogSize, "nvrtcGetProgramLog": &a.nvrtcGetProgramLog,
		"nvrtcGetNumSupportedArchs": &a.nvrtcGetNumSupportedArchs, "nvrtcGetSupportedArchs": &a.nvrtcGetSupportedArchs,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func loadCUBLAS() (*cublasAPI, error) {
	h, name, err := libCUBLAS.open(dlopen)
	if err != nil {
		return nil, err
	}
	a := &cublasAPI{name: name}
	err = bind(h, name, map[string]*fn{
		"cublasCreate_v2": &a.cublasCreate, "cublasDestroy_v2": &a.cublasDestroy, "cublasSetStream_v2": &a.cublasSetStream,
		"cublasSetMathMode": &a.cublasSetMathMode, "cublasSetWorkspace_v2": &a.cublasSetWorkspace,
		"cublasGetVersion_v2": &a.cublasGetVersion,
		"cublasGemmEx":        &a.cublasGemmEx, "cublasGemmStridedBatchedEx": &a.cublasGemmStridedBatchedEx,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// The libraries are process-wide: loaded once, immutable afterwards.
var (
	driverOnce = sync.OnceValues(loadDriver)
	nvrtcOnce  = sync.OnceValues(loadNVRTC)
	cublasOnce = sync.OnceValues(loadCUBLAS)
)

// check turns a CUresult into an error naming the call.
func (a *driverAPI) check(call string, r int32) error {
	if r == 0 {
		return nil
	}
	var name, desc uintptr
	a.cuGetErrorName.call(uintptr(r), uintptr(unsafe.Pointer(&name)))
	a.cuGetErrorString.call(uintptr(r), uintptr(unsafe.Pointer(&desc)))
	return &Error{Call: call, Code: int(r), Name: gostr(name), Desc: gostr(desc)}
}

// Error is a failed CUDA call.
type Error struct {
	Call       string
	Code       int
	Name, Desc string
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("cuda: %s failed with code %d", e.Call, e.Code)
	}
	return fmt.Sprintf("cuda: %s: %s (%s)", e.Call, e.Name, e.Desc)
}

// OutOfMemory reports whether err is CUDA's out-of-memory error.
func OutOfMemory(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Code == 2
}

// keepAlive keeps Go memory whose address was passed to C as a word alive
// until this point.
func keepAlive(xs ...any) { runtime.KeepAlive(xs) }
