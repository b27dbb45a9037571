package model

import (
	"testing"

	"gotune/compute/cpu"
)

// The block written over the compute seam also runs on the CPU backend,
// with the kernels of the CPU trainer: same loss, gradients and decoding as
// the workspace path.

func TestDeviceStepMatchesCPUOnHost(t *testing.T) {
	testDeviceStep(t, cpu.Open())
}

func TestDeviceSessionMatchesCPUOnHost(t *testing.T) {
	testDeviceSession(t, cpu.Open())
}
