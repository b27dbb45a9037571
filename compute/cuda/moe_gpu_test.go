//go:build linux && (amd64 || arm64)

package cuda

import (
	"testing"

	"gotune/compute/optest"
)

// TestGPUMoEOps: GemmGroup, the routing kernels (softmax and top-k per
// token, the expert-ordered list and statistics in one block) and the
// router's gradient against float64 loops, the checks the reference and
// CPU backends pass.
func TestGPUMoEOps(t *testing.T) {
	optest.MoE(t, openGPU(t))
}
