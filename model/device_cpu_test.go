package model

import (
	"testing"

	"gotune/compute/cpu/cputest"
)

// The block written over the compute seam on the CPU backend, with the
// kernels of the CPU's products: same loss, gradients and decoding as the
// reference backend (float64 loops) or the oracles the reference backend
// computes.

func TestDeviceStepMatchesRefOnHost(t *testing.T) {
	testDeviceStep(t, cputest.Open(), append(llamaShapes, familyShapes...))
}

func TestDeviceSessionMatchesFullForwardOnHost(t *testing.T) {
	testDeviceSession(t, cputest.Open(), llamaShapes, []int32{3, 141, 59, 26, 535})
	testDeviceSession(t, cputest.Open(), familyShapes, []int32{3, 41, 59})
}

func TestDeviceLoRAMatchesMergedOnHost(t *testing.T) {
	testDeviceLoRA(t, cputest.Open(), familyShapes)
}

func TestDeviceGroupSessionMatchesFullForwardOnHost(t *testing.T) {
	testDeviceGroupSession(t, cputest.Open())
}
