package model_test

import (
	"testing"

	"gotune/compute/cpu/cputest"
)

// The prompt methods, bottleneck adapters and SGD through the CPU backend
// equal the reference backend and the oracles it computes.

func TestDevicePEFTStepMatchesRefOnHost(t *testing.T) {
	testDevicePEFTStep(t, cputest.Open(), 1e-5)
}

func TestDevicePEFTSessionMatchesFullForwardOnHost(t *testing.T) {
	testDevicePEFTSession(t, cputest.Open(), 1e-5)
}

func TestDeviceSGDMatchesHostOnHost(t *testing.T) {
	testDeviceSGD(t, cputest.Open(), 1e-5)
}

func TestDevicePEFTFamiliesMatchesRefOnHost(t *testing.T) {
	testDevicePEFTStepShapes(t, cputest.Open(), 1e-5, []string{"gemma2", "gemma3", "phi3", "mixtral"})
}
