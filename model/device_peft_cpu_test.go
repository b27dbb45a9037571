package model_test

import (
	"testing"

	"gotune/compute/cpu/cputest"
)

// The prompt methods, bottleneck adapters and SGD through the CPU backend
// equal the CPU workspace, as on the reference backend.

func TestDevicePEFTStepMatchesCPUOnHost(t *testing.T) {
	testDevicePEFTStep(t, cputest.Open(), 1e-5)
}

func TestDevicePEFTSessionMatchesCPUOnHost(t *testing.T) {
	testDevicePEFTSession(t, cputest.Open(), 1e-5)
}

func TestDeviceSGDMatchesCPUOnHost(t *testing.T) {
	testDeviceSGD(t, cputest.Open(), 1e-5)
}

func TestDevicePEFTFamiliesMatchesCPUOnHost(t *testing.T) {
	testDevicePEFTStepShapes(t, cputest.Open(), 1e-5, []string{"gemma2", "gemma3", "phi3", "mixtral"})
}
