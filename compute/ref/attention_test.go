package ref

import (
	"testing"

	"gotune/compute/optest"
)

// TestAttnFusedMatchesUnfused checks the reference fused attention, the
// oracle of the backends' kernels, against the unfused operations the device
// block runs without it (GemmBatched, AttnSoftmaxWindowed and its backward,
// over the whole score matrix) on optest's problems: the same values, bf16
// rounding included (a last-bit difference can round to the next bf16).
func TestAttnFusedMatchesUnfused(t *testing.T) {
	optest.AttnFusedMatchesUnfused(t, New(), optest.AttnTol{F32: 1e-6, BF16: 2e-3, LSE: 1e-6})
}
