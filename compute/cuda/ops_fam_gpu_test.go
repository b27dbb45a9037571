//go:build linux && (amd64 || arm64)

package cuda

import (
	"testing"

	"gotune/compute/optest"
)

// TestGPUFamilyOps: the kernels of the Gemma and Phi-3 families (windowed,
// soft-capped attention softmax, GeGLU, soft cap, Copy2D) against float64
// loops, the same checks the reference backend passes.
func TestGPUFamilyOps(t *testing.T) {
	optest.Families(t, openGPU(t))
}
