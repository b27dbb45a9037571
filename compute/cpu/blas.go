//go:build (linux || darwin || freebsd || netbsd) && !android

package cpu

import (
	"os"
	"sync"

	"github.com/ebitengine/purego"
)

// CBLAS enumerations (cblas.h).
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// Library names tried in order. libopenblas64_ (64-bit integers) has another
// ABI and is deliberately absent.
var blasLibNames = []string{"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"}

// openBLAS is the loaded library; immutable once loaded.
type openBLAS struct {
	name       string
	config     string
	defThreads int
	sgemm      func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	setThreads func(n int32)
	// mu serialises the calls that change the process-wide thread count.
	mu *sync.Mutex
}

var loadBLAS = sync.OnceValue(func() *openBLAS {
	// OpenBLAS picks its kernels from CPUID when it loads, and a release older
	// than the CPU falls back to SSE3 ("Prescott") kernels, 5× slower (seen
	// with 0.3.21 on an Emerald Rapids Xeon). Name the kernel family from
	// the CPU's features instead, unless the user already chose one.
	if os.Getenv("OPENBLAS_CORETYPE") == "" {
		if ct := OpenBLASCoreType(); ct != "" {
			os.Setenv("OPENBLAS_CORETYPE", ct)
		}
	}
	var lib uintptr
	var name string
	for _, n := range blasLibNames {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil {
			lib, name = h, n
			break
		}
	}
	if lib == 0 {
		return nil
	}
	for _, sym := range []string{"cblas_sgemm", "openblas_set_num_threads"} {
		if _, err := purego.Dlsym(lib, sym); err != nil {
			return nil
		}
	}
	o := &openBLAS{name: name, defThreads: Threads(), mu: new(sync.Mutex)}
	purego.RegisterLibFunc(&o.sgemm, lib, "cblas_sgemm")
	purego.RegisterLibFunc(&o.setThreads, lib, "openblas_set_num_threads")
	if _, err := purego.Dlsym(lib, "openblas_get_config"); err == nil {
		var getConfig func() string
		purego.RegisterLibFunc(&getConfig, lib, "openblas_get_config")
		o.config = getConfig()
	}
	o.setThreads(int32(o.defThreads))
	return o
})

// BLASAvailable reports whether OpenBLAS was found and loaded.
func BLASAvailable() bool { return loadBLAS() != nil }

func blasInfo() string {
	o := loadBLAS()
	if o == nil {
		return "not loaded"
	}
	if o.config != "" {
		return o.name + ": " + o.config
	}
	return o.name
}

// blasSgemm runs p on OpenBLAS with threads threads (0: the default set at
// load time). It reports false, doing nothing, when the library is absent or
// the call does not fit CBLAS (strides below the row length, 32-bit overflow).
func blasSgemm(p *gemmProblem, threads int) bool {
	o := loadBLAS()
	if o == nil || p.bh != nil {
		return false
	}
	ac, bc := p.k, p.n
	if p.transA {
		ac = p.m
	}
	if p.transB {
		bc = p.k
	}
	const maxI32 = 1<<31 - 1
	if p.lda < ac || p.ldb < bc || p.ldc < p.n ||
		p.m > maxI32 || p.n > maxI32 || p.k > maxI32 || p.lda > maxI32 || p.ldb > maxI32 || p.ldc > maxI32 {
		return false
	}
	ta, tb := int32(cblasNoTrans), int32(cblasNoTrans)
	if p.transA {
		ta = cblasTrans
	}
	if p.transB {
		tb = cblasTrans
	}
	call := func() {
		o.sgemm(cblasRowMajor, ta, tb, int32(p.m), int32(p.n), int32(p.k), p.alpha,
			&p.a[0], int32(p.lda), &p.b[0], int32(p.ldb), p.beta, &p.c[0], int32(p.ldc))
	}
	if threads == 0 || threads == o.defThreads {
		call()
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.setThreads(int32(threads))
	call()
	o.setThreads(int32(o.defThreads))
	return true
}
