package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"gotune/compute"
	"gotune/compute/cpu"
	"gotune/compute/cuda"
	"gotune/infer"
	"gotune/train"
)

// openBackend is the one place that chooses a compute backend by name.
// The returned function releases it.
func openBackend(name string) (compute.Backend, func(), error) {
	switch name {
	case "cuda", "gpu":
		d, err := cuda.Open(cuda.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("--device %s: %w", name, err)
		}
		return d, func() {}, nil
	case "cpu", "host":
		// The block written over the compute seam, on the CPU's kernels.
		return cpu.Open(), func() {}, nil
	}
	return nil, nil, fmt.Errorf("--device %q: want cpu, cuda or host", name)
}

// cpuBackend is a fresh CPU backend (for the web UI's chat and evaluation).
func cpuBackend() compute.Backend { return cpu.Open() }

// trainDevice resolves the device key of a training config: cpu (or its
// old name host) trains on the CPU backend; cuda must get a GPU; auto (the
// default) uses a GPU when the CUDA libraries and a GPU are there, else the
// CPU, saying why only when CUDA is installed but failed, and a run the GPU
// cannot take (too little memory) falls back to the CPU backend.
func trainDevice(device string, notes io.Writer) (train.Options, func(), error) {
	none := func() {}
	switch device {
	case "", "cpu", "host", "cuda":
		if device == "" {
			device = "cpu"
		}
		be, release, err := openBackend(device)
		if err != nil {
			return train.Options{}, none, err
		}
		return train.Options{Backend: be}, release, nil
	case "auto":
		be, release, err := openBackend("cuda")
		if err != nil {
			var missing *cuda.MissingLibraryError
			if !errors.As(err, &missing) {
				fmt.Fprintf(notes, "note: training on the CPU: %v\n", err)
			}
			return trainDevice("cpu", notes)
		}
		return train.Options{Backend: be, Fallback: cpu.Open()}, release, nil
	}
	return train.Options{}, none, fmt.Errorf("device %q: want auto, cpu, cuda or host", device)
}

// useDevice puts an engine's generation on the device the flag names, as
// trainDevice resolves it (with its fallback); the returned function
// releases it.
func useDevice(e *infer.Engine, device string, notes io.Writer) (func(), error) {
	o, release, err := trainDevice(device, notes)
	if err != nil {
		return func() {}, err
	}
	if err := e.UseDevice(o.Backend, true, nil, nil); err != nil {
		if o.Fallback == nil {
			release()
			return func() {}, fmt.Errorf("--device %s: %w", device, err)
		}
		fmt.Fprintf(notes, "note: generating on %s: %v\n", o.Fallback.Name(), err)
		if err := e.UseDevice(o.Fallback, true, nil, nil); err != nil {
			release()
			return func() {}, fmt.Errorf("--device %s: %w", device, err)
		}
	}
	return func() { e.Close(); release() }, nil
}

// The CPU backend's own figures, asked here because this file is the one
// that knows the backends' packages.

// cpuPeakGFLOPS measures the float32 FMA peak of threads cores (0 when
// unknown).
func cpuPeakGFLOPS(threads int) float64 { return cpu.PeakGFLOPS(threads, 300*time.Millisecond) }

// openBLASCoreType is the OpenBLAS core type that suits this CPU, for a
// PyTorch peer's environment ("" to leave OpenBLAS to choose).
func openBLASCoreType() string { return cpu.OpenBLASCoreType() }

// benchGemm times the CPU's matrix kernels (built-in, and OpenBLAS when it
// is installed) against the FMA peak: `gotune bench` without --train.
func benchGemm(w io.Writer) {
	threads := []int{1, runtime.GOMAXPROCS(0)}
	impls := []cpu.Impl{cpu.ImplBuiltin}
	if cpu.BLASAvailable() {
		impls = append(impls, cpu.ImplBLAS)
	}
	const n = 1024
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.1, float32(i%5)*0.1
	}
	peaks := map[int]float64{}
	for _, th := range threads {
		peaks[th] = cpuPeakGFLOPS(th)
		emit(w, map[string]any{"bench": fmt.Sprintf("fma_peak_%dt", th), "value": round(peaks[th]), "unit": "GFLOP/s"})
	}
	for _, impl := range impls {
		for _, th := range threads {
			run := func() { cpu.SgemmWith(impl, th, false, true, n, n, n, 1, a, n, b, n, 0, c, n) }
			run()
			reps := 0
			start := time.Now()
			for time.Since(start) < 700*time.Millisecond {
				run()
				reps++
			}
			gf := 2 * float64(n*n*n) * float64(reps) / time.Since(start).Seconds() / 1e9
			line := map[string]any{"bench": fmt.Sprintf("sgemm_%s_%dt", impl, th), "value": round(gf), "unit": "GFLOP/s", "size": n}
			if peaks[th] > 0 {
				line["peak_pct"] = round(100 * gf / peaks[th])
			}
			emit(w, line)
		}
	}
}
