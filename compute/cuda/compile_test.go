//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestKernelsCompile compiles every kernel with whatever NVRTC this machine
// has (no GPU needed), so a syntax error in kernels.cu fails here rather than
// on a GPU machine.
func TestKernelsCompile(t *testing.T) {
	if _, err := nvrtcOnce(); err != nil {
		var missing *MissingLibraryError
		if errors.As(err, &missing) {
			t.Skipf("no NVRTC on this machine: %v", err)
		}
		t.Fatal(err)
	}
	ma, mi, err := NVRTCVersion()
	if err != nil {
		t.Fatal(err)
	}
	arch := 80
	c, err := Compile(KernelSource(), arch, t.TempDir())
	if err != nil {
		t.Fatalf("NVRTC %d.%d: %v", ma, mi, err)
	}
	if len(c.Image) < 1000 {
		t.Fatalf("image of %d bytes", len(c.Image))
	}
	// Every kernel the Go side launches must be in the source.
	for _, name := range kernelNames() {
		if !strings.Contains(KernelSource(), name+"(") && !strings.Contains(KernelSource(), strings.TrimSuffix(strings.TrimSuffix(name, "_f32"), "_bf16")+"_##N(") {
			t.Errorf("kernel %s is launched but not defined", name)
		}
	}
}

func TestCompileCache(t *testing.T) {
	if _, err := nvrtcOnce(); err != nil {
		t.Skipf("no NVRTC on this machine: %v", err)
	}
	dir := t.TempDir()
	src := `extern "C" __global__ void k(float* x) { x[threadIdx.x] = 1.f; }`
	a, err := Compile(src, 80, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(src, 80, dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Image) != string(b.Image) {
		t.Fatal("cached image differs from the compiled one")
	}
	if _, err := Compile("this is not C", 80, dir); err == nil || !strings.Contains(err.Error(), "error") {
		t.Fatalf("bad source: got %v, want a compile error with NVRTC's log", err)
	}
}
