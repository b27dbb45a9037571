package parity

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// TestDeviceReferenceOnHost: the block written over the compute seam,
// running on the CPU backend, meets transformers/PEFT's numbers on every
// reference model (loss, gradients, full/LoRA/rsLoRA trajectories, QLoRA),
// in f32 at the usual limits and, for the Llama kind, in bf16 at the GPU's.
func TestDeviceReferenceOnHost(t *testing.T) {
	for i, f := range deviceFolders {
		for _, dt := range []compute.DType{compute.F32, compute.BF16} {
			if dt == compute.BF16 && i >= llamaKind {
				continue // bf16 limits for the other families wait for PyTorch's own deviation on them
			}
			t.Run(f.name+"/"+dt.String(), func(t *testing.T) { checkOnDevice(t, cputest.Open(), f.name, f.min, dt) })
		}
	}
}
