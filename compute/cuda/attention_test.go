//go:build linux && (amd64 || arm64)

package cuda

import (
	"testing"

	"gotune/compute"
)

// TestAttnFusedFor: which problems the device sends to the fused kernels
// under each policy (no GPU needed).
func TestAttnFusedFor(t *testing.T) {
	short := compute.AttnParams{B: 4, H: 16, KVH: 8, T: 1024, TK: 1024, TMax: 1024, HD: 128}
	long := short
	long.T, long.TK, long.TMax = 4096, 4096, 4096
	decode := compute.AttnParams{B: 8, H: 32, KVH: 8, T: 1, TK: 9000, TMax: 9000, HD: 128, Off: 8999}
	big := long
	big.HD = 512
	grid := short
	grid.B, grid.T, grid.TK, grid.TMax = 5000, 1, 1, 1
	for _, c := range []struct {
		name   string
		policy AttnPolicy
		p      compute.AttnParams
		want   bool
	}{
		{"short/long-only", AttnFusedLong, short, false},
		{"long/long-only", AttnFusedLong, long, true},
		{"decode/long-only", AttnFusedLong, decode, false},
		{"short/always", AttnFusedAlways, short, true},
		{"long/never", AttnFusedNever, long, false},
		{"head512/always", AttnFusedAlways, big, false},
		{"grid/always", AttnFusedAlways, grid, false},
	} {
		d := &Device{Attn: c.policy}
		if got := d.AttnFusedFor(c.p); got != c.want {
			t.Errorf("%s: AttnFusedFor = %v, want %v", c.name, got, c.want)
		}
	}
}
