package train

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// TestDeviceTrainingMatchesCPUOnHost: the training runs of
// TestDeviceTrainingMatchesCPU through the CPU backend.
func TestDeviceTrainingMatchesCPUOnHost(t *testing.T) {
	testDeviceTraining(t, func() compute.Backend { return cputest.Open() }, 1e-5)
}

// TestGRPOOnDeviceMatchesCPUOnHost: GRPO's sampling, scoring and backward
// through the CPU backend give the CPU run's completions and losses.
func TestGRPOOnDeviceMatchesCPUOnHost(t *testing.T) {
	testGRPODevice(t, func() compute.Backend { return cputest.Open() }, 1e-4)
}
