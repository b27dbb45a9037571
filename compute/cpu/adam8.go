package cpu

import (
	"fmt"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// AdamW8bit is AdamW over block-wise 8-bit moments (compute.Backend's
// AdamW8bit), blocks split over the cores.
func (d *Device) AdamW8bit(p, g, m8, v8, mScale, vScale, shadow compute.Tensor, s compute.AdamStep, block int) {
	defer d.timed("adam_w8")()
	P, G, M, V, MS, VS, SH := tt(p), tt(g), tt(m8), tt(v8), tt(mScale), tt(vScale), tt(shadow)
	var sh []float32
	var round func(float32) float32
	if SH != nil {
		sh = SH.F
		if SH.DT == compute.BF16 {
			round = hostmem.RoundBF16
		}
	}
	if err := compute.AdamW8bitSlices(P.F, G.F, M.U, V.U, MS.F, VS.F, sh, round, s, block); err != nil {
		d.fail(fmt.Errorf("cpu: %w", err))
	}
}
