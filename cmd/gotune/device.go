package main

import (
	"errors"
	"fmt"
	"io"

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
