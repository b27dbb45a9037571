package model_test

import (
	"testing"

	"gotune/compute/cpu"
)

// The prompt methods, bottleneck adapters and SGD through the CPU backend
// equal the CPU workspace, as on the reference backend.

func TestDevicePEFTStepMatchesCPUOnHost(t *testing.T) {
	testDevicePEFTStep(t, cpu.Open(), 1e-5)
}

func TestDevicePEFTSessionMatchesCPUOnHost(t *testing.T) {
	testDevicePEFTSession(t, cpu.Open(), 1e-5)
}

func TestDeviceSGDMatchesCPUOnHost(t *testing.T) {
	testDeviceSGD(t, cpu.Open(), 1e-5)
}
