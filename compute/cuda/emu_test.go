//go:build linux && (amd64 || arm64)

package cuda

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/optest"
	"gotune/compute/ref"
)

// attnKernelSource is the part of kernels.cu the fused attention kernels
// need: the prelude (types, loads and stores, warp reductions), attn_ok,
// window_ok and the fused attention section.
func attnKernelSource(src string) (string, error) {
	cut := func(from, to string) (string, error) {
		i := strings.Index(src, from)
		if i < 0 {
			return "", fmt.Errorf("kernels.cu has no %q", from)
		}
		if to == "" {
			return src[i:], nil
		}
		j := strings.Index(src[i:], to)
		if j < 0 {
			return "", fmt.Errorf("kernels.cu has no %q after %q", to, from)
		}
		return src[i : i+j], nil
	}
	var b strings.Builder
	for _, part := range [][2]string{
		{"typedef unsigned short bf16_t;", "// ---- element-wise"},
		{"#define BOTH(X)", "\n"},
		{"__device__ __forceinline__ bool attn_ok", "template <typename T>"},
		{"// The score the softmax sees: soft-capped", "// attn_softmax_ with a soft cap"},
		{"// ---- fused attention", ""},
	} {
		s, err := cut(part[0], part[1])
		if err != nil {
			return "", err
		}
		b.WriteString(s)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// TestKernelsEmulatedAttention runs the fused attention kernels of
// kernels.cu on the CPU, compiled as C++ with testdata/emu's stand-ins for
// the CUDA built-ins (a fiber per GPU thread, a barrier per block for
// __syncthreads and one per warp for the shuffles), against the reference
// backend on optest's problems. It checks the kernels' indexing, tiles,
// masks, online softmax and barriers without a GPU; not the GPU's own
// __expf, its memory model or speed (TestGPUFusedAttention does).
func TestKernelsEmulatedAttention(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the emulator's context switch is x86-64 assembly; this is " + runtime.GOARCH)
	}
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++ on this machine to build the CPU emulation of the kernels")
	}
	dir := t.TempDir()
	src, err := attnKernelSource(KernelSource())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"kernels_attn.cu": src}
	for _, f := range []string{"shim.h", "harness.cpp"} {
		b, err := os.ReadFile(filepath.Join("testdata", "emu", f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(b)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The alignment sanitizer stops at a misaligned 4-wide read, which a GPU
	// would refuse; a compiler without its run-time library builds without.
	bin := filepath.Join(dir, "harness")
	build := func(flags ...string) ([]byte, error) {
		args := append([]string{"-std=c++17", "-O1", "-o", bin, filepath.Join(dir, "harness.cpp")}, flags...)
		return exec.Command(cxx, args...).CombinedOutput()
	}
	if _, err := build("-fsanitize=alignment", "-fno-sanitize-recover=alignment"); err != nil {
		if out, err := build(); err != nil {
			t.Fatalf("g++: %v\n%s", err, out)
		}
		t.Log("built without the alignment sanitizer")
	}
	run := func(d optest.AttnProblem, dt compute.DType) (optest.AttnResult, error) {
		return emulateAttn(bin, d, dt)
	}
	tol := optest.AttnTol{F32: 2e-5, BF16: 2e-3, LSE: 2e-6}
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range optest.AttnCases {
			t.Run(c.Name+"/"+dt.String(), func(t *testing.T) { optest.AttnCheckHost(t, run, ref.New(), c, dt, tol) })
		}
	}
}

// emulateAttn runs the emulator bin on problem d (harness.cpp's format).
func emulateAttn(bin string, d optest.AttnProblem, dt compute.DType) (optest.AttnResult, error) {
	p := d.P
	var in bytes.Buffer
	w := func(v any) { binary.Write(&in, binary.LittleEndian, v) }
	b2i := func(b bool) int32 {
		if b {
			return 1
		}
		return 0
	}
	w([]int32{b2i(dt == compute.BF16), int32(p.B), int32(p.H), int32(p.KVH), int32(p.T), int32(p.TK), int32(p.TMax),
		int32(p.HD), int32(p.Off), int32(p.Window), b2i(d.KeyMask != nil), b2i(d.QSeg != nil)})
	w([]float32{p.Scale, p.SoftCap})
	for _, v := range [][]float32{d.Q, d.K, d.V, d.DO, d.DSum, d.DKV0} {
		w(v)
	}
	for _, v := range [][]int32{d.KeyMask, d.QSeg, d.KSeg} {
		if v != nil {
			w(v)
		}
	}
	cmd := exec.Command(bin)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return optest.AttnResult{}, fmt.Errorf("emulator: %v\n%s", err, stderr.String())
	}
	nq, nk, nr := len(d.Q), len(d.K), len(d.DSum)
	if len(out) != 4*(2*nq+nr+2*nk) {
		return optest.AttnResult{}, fmt.Errorf("emulator wrote %d bytes, want %d", len(out), 4*(2*nq+nr+2*nk))
	}
	next := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:]))
		}
		out = out[4*n:]
		return v
	}
	return optest.AttnResult{O: next(nq), LSE: next(nr), DQ: next(nq), DK: next(nk), DV: next(nk)}, nil
}
