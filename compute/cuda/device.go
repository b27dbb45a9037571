//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"unsafe"

	"gotune/compute"
	"gotune/dtype"
)

// Device is one GPU with its context, stream, cuBLAS handle, compiled kernels
// and a caching allocator. A CUDA context is current per OS thread while Go
// moves goroutines between threads, so every method locks its goroutine to
// the thread and makes the context current for the duration of the call: any
// goroutine may drive a Device, one at a time (it is not safe for concurrent
// use).
type Device struct {
	drv    *driverAPI
	blas   *cublasAPI
	ord    int
	ctx    uintptr
	stream uintptr
	handle uintptr
	module uintptr
	funcs  map[string]uintptr

	GPU         string
	Arch        int // compute capability, e.g. 90
	SMs         int
	TotalMem    int64
	Compiled    *Compiled
	PedanticF32 bool // f32 products in full f32 (no TF32): the parity mode

	// Attn chooses where the block runs attention through the fused
	// kernels (compute.FusedAttention) rather than cuBLAS products and the
	// softmax over whole score matrices; GOTUNE_CUDA_ATTN=fused|unfused
	// sets it when the device is opened.
	Attn AttnPolicy

	free                map[int64][]uintptr // cached blocks by size
	inUse, peak, cached int64

	// Launch parameters live here, on the heap, so their addresses stay
	// valid for the driver (which copies them during the call).
	slots  [32]uint64
	params [32]uintptr
	alpha  float32
	beta   float32
	err    error

	profiling bool
	pending   []profEvent
	eventPool []uintptr
}

// Options configure Open.
type Options struct {
	Ordinal  int
	CacheDir string // "" uses DefaultCacheDir; "-" disables the kernel cache
}

// Open initialises GPU ord: loads the driver, NVRTC and cuBLAS, creates the
// context, stream and cuBLAS handle and compiles (or loads from the cache)
// the kernels.
func Open(o Options) (*Device, error) {
	drv, err := driverOnce()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := drv.check("cuInit", drv.cuInit.call(0)); err != nil {
		return nil, err
	}
	var count int32
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount.call(uintptr(unsafe.Pointer(&count)))); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, fmt.Errorf("cuda: the driver sees no GPU")
	}
	if o.Ordinal < 0 || o.Ordinal >= int(count) {
		return nil, fmt.Errorf("cuda: GPU %d requested, the driver sees %d", o.Ordinal, count)
	}
	d := &Device{drv: drv, ord: o.Ordinal, funcs: map[string]uintptr{}, free: map[int64][]uintptr{}}
	switch os.Getenv("GOTUNE_CUDA_ATTN") {
	case "fused":
		d.Attn = AttnFusedAlways
	case "unfused":
		d.Attn = AttnFusedNever
	}
	var dev int32
	if err := drv.check("cuDeviceGet", drv.cuDeviceGet.call(uintptr(unsafe.Pointer(&dev)), uintptr(o.Ordinal))); err != nil {
		return nil, err
	}
	name := make([]byte, 256)
	drv.cuDeviceGetName.call(uintptr(unsafe.Pointer(&name[0])), 256, uintptr(dev))
	d.GPU = strings.TrimRight(string(name), "\x00")
	attr := func(a int) int {
		var v int32
		drv.cuDeviceGetAttribute.call(uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(dev))
		return int(v)
	}
	d.Arch = attr(75)*10 + attr(76) // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR
	d.SMs = attr(16)                // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	var total uintptr
	drv.cuDeviceTotalMem.call(uintptr(unsafe.Pointer(&total)), uintptr(dev))
	d.TotalMem = int64(total)
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain.call(uintptr(unsafe.Pointer(&d.ctx)), uintptr(dev))); err != nil {
		return nil, err
	}
	if err := drv.check("cuCtxSetCurrent", drv.cuCtxSetCurrent.call(d.ctx)); err != nil {
		return nil, err
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate.call(uintptr(unsafe.Pointer(&d.stream)), 1)); err != nil {
		return nil, err
	}
	blas, err := cublasOnce()
	if err != nil {
		return nil, err
	}
	d.blas = blas
	if r := blas.cublasCreate.call(uintptr(unsafe.Pointer(&d.handle))); r != 0 {
		return nil, fmt.Errorf("cuda: cublasCreate failed with status %d", r)
	}
	if r := blas.cublasSetStream.call(d.handle, d.stream); r != 0 {
		return nil, fmt.Errorf("cuda: cublasSetStream failed with status %d", r)
	}
	cache := o.CacheDir
	switch cache {
	case "":
		cache = DefaultCacheDir()
	case "-":
		cache = ""
	}
	c, err := Compile(kernelSource, d.Arch, cache)
	if err != nil {
		return nil, err
	}
	d.Compiled = c
	img := c.Image
	if err := drv.check("cuModuleLoadData", drv.cuModuleLoadData.call(uintptr(unsafe.Pointer(&d.module)), uintptr(unsafe.Pointer(&img[0])))); err != nil {
		return nil, err
	}
	runtime.KeepAlive(img)
	for i := range d.params {
		d.params[i] = uintptr(unsafe.Pointer(&d.slots[i]))
	}
	return d, nil
}

// Name implements compute.Backend.
func (d *Device) Name() string { return fmt.Sprintf("cuda:%d (%s, sm_%d)", d.ord, d.GPU, d.Arch) }

// bind pins the calling goroutine to its thread and makes the device's
// context current there, until the returned function runs. Binds nest.
func (d *Device) bind() func() {
	runtime.LockOSThread()
	d.drv.cuCtxSetCurrent.call(d.ctx)
	return runtime.UnlockOSThread
}

func (d *Device) fail(err error) {
	if d.err == nil && err != nil {
		d.err = err
	}
}

// Err implements compute.Backend.
func (d *Device) Err() error { return d.err }

// Sync waits for every queued operation.
func (d *Device) Sync() error {
	defer d.bind()()
	d.fail(d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize.call(d.stream)))
	return d.err
}

// ---- memory ------------------------------------------------------------------

// Tensor is device memory.
type Tensor struct {
	d     *Device
	ptr   uintptr
	n     int
	dt    compute.DType
	bytes int64 // allocated size; 0 for views
}

func (t *Tensor) DType() compute.DType { return t.dt }
func (t *Tensor) Len() int             { return t.n }

// Ptr is the device address.
func (t *Tensor) Ptr() uintptr { return t.ptr }

func (t *Tensor) Slice(off, n int) compute.Tensor {
	if off < 0 || n < 0 || off+n > t.n {
		panic(fmt.Sprintf("cuda: slice [%d:%d] of a tensor of %d elements", off, off+n, t.n))
	}
	return &Tensor{d: t.d, ptr: t.ptr + uintptr(off*t.dt.Size()), n: n, dt: t.dt}
}

func (t *Tensor) Free() {
	if t == nil || t.bytes == 0 || t.ptr == 0 {
		return
	}
	t.d.release(t.ptr, t.bytes)
	t.ptr, t.bytes = 0, 0
}

// blockSize rounds an allocation so that steps of one shape reuse blocks.
func blockSize(b int64) int64 {
	const small, big = 512, 2 << 20
	if b <= 1<<20 {
		return (b + small - 1) / small * small
	}
	return (b + big - 1) / big * big
}

// Alloc implements compute.Backend: a cached block of the same size if there
// is one, else new memory; on out-of-memory the cache is released and the
// allocation tried again.
func (d *Device) Alloc(dt compute.DType, n int) (compute.Tensor, error) {
	defer d.bind()()
	if n < 0 || dt.Size() == 0 {
		return nil, fmt.Errorf("cuda: alloc of %d %v", n, dt)
	}
	size := blockSize(max(int64(n)*int64(dt.Size()), 1))
	var p uintptr
	if l := d.free[size]; len(l) > 0 {
		p = l[len(l)-1]
		d.free[size] = l[:len(l)-1]
		d.cached -= size
	} else {
		r := d.drv.cuMemAlloc.call(uintptr(unsafe.Pointer(&p)), uintptr(size))
		if r == 2 { // CUDA_ERROR_OUT_OF_MEMORY
			d.EmptyCache()
			r = d.drv.cuMemAlloc.call(uintptr(unsafe.Pointer(&p)), uintptr(size))
		}
		if err := d.drv.check(fmt.Sprintf("cuMemAlloc(%d bytes; %d in use)", size, d.inUse), r); err != nil {
			return nil, err
		}
	}
	d.inUse += size
	d.peak = max(d.peak, d.inUse)
	return &Tensor{d: d, ptr: p, n: n, dt: dt, bytes: size}, nil
}

func (d *Device) release(p uintptr, size int64) {
	d.free[size] = append(d.free[size], p)
	d.inUse -= size
	d.cached += size
}

// EmptyCache returns cached blocks to the driver.
func (d *Device) EmptyCache() {
	defer d.bind()()
	d.Sync()
	for s, l := range d.free {
		for _, p := range l {
			d.drv.cuMemFree.call(p)
		}
		d.cached -= s * int64(len(l))
		delete(d.free, s)
	}
}

// MemStats implements compute.Backend.
func (d *Device) MemStats() compute.MemStats {
	return compute.MemStats{InUse: d.inUse, Peak: d.peak, Cached: d.cached}
}

// ResetPeak starts peak tracking afresh from what is in use now.
func (d *Device) ResetPeak() { d.peak = d.inUse }

// FreeMemory reports the driver's free and total device memory.
func (d *Device) FreeMemory() (free, total int64) {
	defer d.bind()()
	var f, t uintptr
	d.drv.cuMemGetInfo.call(uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t)))
	return int64(f), int64(t)
}

func dev(t compute.Tensor) *Tensor {
	if t == nil {
		return nil
	}
	if v, ok := t.(*Tensor); ok {
		return v
	}
	panic(fmt.Sprintf("cuda: a %T was passed where device memory is needed", t))
}

func ptr(t compute.Tensor) uintptr {
	if v := dev(t); v != nil {
		return v.ptr
	}
	return 0
}

// Upload implements compute.Backend: src is converted to dst's type on the
// host and copied; the call returns once src may be reused.
func (d *Device) Upload(dst compute.Tensor, src []float32) {
	t := dev(dst)
	if len(src) != t.n {
		d.fail(fmt.Errorf("cuda: upload of %d values into a tensor of %d", len(src), t.n))
		return
	}
	if t.n == 0 {
		return
	}
	switch t.dt {
	case compute.F32:
		d.copyIn(t.ptr, unsafe.Pointer(&src[0]), len(src)*4)
	case compute.BF16:
		h := make([]uint16, len(src))
		dtype.F32ToBF16(h, src)
		d.copyIn(t.ptr, unsafe.Pointer(&h[0]), len(h)*2)
	default:
		d.fail(fmt.Errorf("cuda: upload of floats into %v", t.dt))
	}
}

// UploadBytes implements compute.Backend.
func (d *Device) UploadBytes(dst compute.Tensor, src []byte) {
	t := dev(dst)
	if t.dt != compute.U8 || len(src) != t.n {
		d.fail(fmt.Errorf("cuda: upload of %d bytes into a %v tensor of %d", len(src), t.dt, t.n))
		return
	}
	if t.n > 0 {
		d.copyIn(t.ptr, unsafe.Pointer(&src[0]), len(src))
	}
}

// UploadInt implements compute.Backend.
func (d *Device) UploadInt(dst compute.Tensor, src []int32) {
	t := dev(dst)
	if t.dt != compute.I32 || len(src) != t.n {
		d.fail(fmt.Errorf("cuda: upload of %d ints into a %v tensor of %d", len(src), t.dt, t.n))
		return
	}
	if t.n > 0 {
		d.copyIn(t.ptr, unsafe.Pointer(&src[0]), len(src)*4)
	}
}

// copyIn copies host memory to the device and waits, so the host buffer may
// be reused as soon as it returns.
func (d *Device) copyIn(dst uintptr, src unsafe.Pointer, n int) {
	defer d.bind()()
	d.fail(d.drv.check("cuMemcpyHtoDAsync", d.drv.cuMemcpyHtoDAsync.call(dst, uintptr(src), uintptr(n), d.stream)))
	d.Sync()
}

// Download implements compute.Backend.
func (d *Device) Download(dst []float32, src compute.Tensor) error {
	defer d.bind()()
	t := dev(src)
	if len(dst) != t.n {
		return fmt.Errorf("cuda: download of a tensor of %d into %d values", t.n, len(dst))
	}
	if t.n == 0 {
		return d.Sync()
	}
	switch t.dt {
	case compute.F32:
		d.fail(d.drv.check("cuMemcpyDtoHAsync", d.drv.cuMemcpyDtoHAsync.call(uintptr(unsafe.Pointer(&dst[0])), t.ptr, uintptr(t.n*4), d.stream)))
		err := d.Sync()
		runtime.KeepAlive(dst)
		return err
	case compute.BF16:
		h := make([]uint16, t.n)
		d.fail(d.drv.check("cuMemcpyDtoHAsync", d.drv.cuMemcpyDtoHAsync.call(uintptr(unsafe.Pointer(&h[0])), t.ptr, uintptr(t.n*2), d.stream)))
		if err := d.Sync(); err != nil {
			return err
		}
		for i, v := range h {
			dst[i] = math.Float32frombits(uint32(v) << 16)
		}
		return nil
	case compute.I32:
		h := make([]int32, t.n)
		d.fail(d.drv.check("cuMemcpyDtoHAsync", d.drv.cuMemcpyDtoHAsync.call(uintptr(unsafe.Pointer(&h[0])), t.ptr, uintptr(t.n*4), d.stream)))
		if err := d.Sync(); err != nil {
			return err
		}
		for i, v := range h {
			dst[i] = float32(v)
		}
		return nil
	case compute.U8:
		// 8-bit optimizer state, for checkpoints.
		h := make([]byte, t.n)
		d.fail(d.drv.check("cuMemcpyDtoHAsync", d.drv.cuMemcpyDtoHAsync.call(uintptr(unsafe.Pointer(&h[0])), t.ptr, uintptr(t.n), d.stream)))
		if err := d.Sync(); err != nil {
			return err
		}
		for i, v := range h {
			dst[i] = float32(v)
		}
		return nil
	}
	return fmt.Errorf("cuda: download of %v", t.dt)
}

// Zero implements compute.Backend.
func (d *Device) Zero(t compute.Tensor) {
	defer d.bind()()
	v := dev(t)
	if v.n == 0 {
		return
	}
	d.fail(d.drv.check("cuMemsetD8Async", d.drv.cuMemsetD8Async.call(v.ptr, 0, uintptr(v.n*v.dt.Size()), d.stream)))
}

// Copy queues a device-to-device copy of src into dst (same type and length).
func (d *Device) Copy(dst, src compute.Tensor) {
	defer d.bind()()
	a, b := dev(dst), dev(src)
	if a.dt != b.dt || a.n != b.n {
		d.fail(fmt.Errorf("cuda: copy of %d %v into %d %v", b.n, b.dt, a.n, a.dt))
		return
	}
	d.fail(d.drv.check("cuMemcpyDtoDAsync", d.drv.cuMemcpyDtoDAsync.call(a.ptr, b.ptr, uintptr(a.n*a.dt.Size()), d.stream)))
}

// ---- kernels -------------------------------------------------------------------

// arg is one kernel parameter as the 8-byte slot the driver reads it from.
type arg uint64

func pa(t compute.Tensor) arg { return arg(ptr(t)) }
func ia(v int) arg            { return arg(uint64(int64(v))) }
func fa(v float32) arg        { return arg(math.Float32bits(v)) }

func (d *Device) function(name string) uintptr {
	defer d.bind()()
	if f, ok := d.funcs[name]; ok {
		return f
	}
	cname := cstr(name)
	var f uintptr
	err := d.drv.check("cuModuleGetFunction("+name+")", d.drv.cuModuleGetFunction.call(uintptr(unsafe.Pointer(&f)), d.module, uintptr(unsafe.Pointer(&cname[0]))))
	runtime.KeepAlive(cname)
	if err != nil {
		d.fail(err)
		return 0
	}
	d.funcs[name] = f
	return f
}

// launch queues kernel name on the device's stream.
func (d *Device) launch(name string, grid, block [3]int, shared int, args ...arg) {
	defer d.bind()()
	if d.err != nil {
		return
	}
	f := d.function(name)
	if f == 0 {
		return
	}
	defer d.mark(name)()
	for i, a := range args {
		d.slots[i] = uint64(a)
	}
	r := d.drv.cuLaunchKernel.call(f, uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]), uintptr(shared), d.stream,
		uintptr(unsafe.Pointer(&d.params[0])), 0)
	d.fail(d.drv.check("cuLaunchKernel("+name+")", r))
}

// elementwise queues a grid-stride kernel over n elements.
func (d *Device) elementwise(name string, n int, args ...arg) {
	if n == 0 {
		return
	}
	blocks := min((n+255)/256, d.SMs*16)
	d.launch(name, [3]int{blocks, 1, 1}, [3]int{256, 1, 1}, 0, args...)
}

// rowBlock picks a block size for one-block-per-row kernels.
func rowBlock(d int) int {
	switch {
	case d >= 4096:
		return 1024
	case d >= 1024:
		return 256
	default:
		return 128
	}
}

func suffix(dt compute.DType) string {
	if dt == compute.BF16 {
		return "_bf16"
	}
	return "_f32"
}

// kernelNames lists every kernel the Go side may launch.
func kernelNames() []string {
	var out []string
	for _, base := range []string{"add", "axpby", "axpby_f32", "dropout", "swiglu", "swiglu_bwd", "rmsnorm", "rmsnorm_bwd", "rmsnorm_warp", "rmsnorm_bwd_warp", "rmsnorm_dw_part", "colsum_part", "coldot_part", "scale_cols", "scale_rows", "bias_add", "dequant4",
		"rope_split", "rope_merge", "attn_softmax", "attn_softmax_bwd", "rowdot", "xent", "gather_rows", "scatter_rows", "embed_bwd"} {
		out = append(out, base+"_f32", base+"_bf16")
	}
	out = append(out, "dequant8_f32", "dequant8_bf16")
	out = append(out, familyKernels()...)
	out = append(out, "cast_f32_bf16", "cast_bf16_f32", "colsum_f32", "dora_scale_f32", "adamw_f32", "sumsq_part_f32", "sum_f32", "fill_f32")
	out = append(out, peftKernels...)
	out = append(out, moeKernels...)
	out = append(out, adam8Kernels...)
	out = append(out, attnKernels()...)
	sort.Strings(out)
	return out
}
