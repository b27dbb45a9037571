//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"gotune/compute"
)

// adam8Kernels are the kernels of ops_adam8.go.
var adam8Kernels = []string{"adamw8_f32"}

// AdamW8bit implements compute.Backend: one thread block per quantization
// block (the block's largest magnitude is a reduction over it).
func (d *Device) AdamW8bit(p, g, m8, v8, mScale, vScale, shadow compute.Tensor, s compute.AdamStep, block int) {
	if shadow != nil && shadow.DType() != compute.BF16 {
		d.fail(fmt.Errorf("cuda: adamw 8-bit shadow of type %v", shadow.DType()))
		return
	}
	n := p.Len()
	blocks := compute.Adam8Blocks(n, block)
	if block <= 0 || g.Len() != n || m8.Len() != n || v8.Len() != n || m8.DType() != compute.U8 || v8.DType() != compute.U8 ||
		mScale.Len() != blocks || vScale.Len() != blocks {
		d.fail(fmt.Errorf("cuda: adamw 8-bit: sizes p %d, g %d, m %d, v %d, scales %d/%d for block %d",
			n, g.Len(), m8.Len(), v8.Len(), mScale.Len(), vScale.Len(), block))
		return
	}
	if n == 0 {
		return
	}
	threads := min((block+31)/32*32, 1024)
	grid := min(blocks, d.SMs*32)
	d.launch("adamw8_f32", [3]int{grid, 1, 1}, [3]int{threads, 1, 1}, 2*block*4,
		pa(p), pa(g), pa(m8), pa(v8), pa(mScale), pa(vScale), pa(shadow), ia(n), ia(block),
		fa(s.GradScale), fa(s.Decay), fa(s.Beta1), fa(s.Beta2), fa(s.StepSize), fa(s.BC2Sqrt), fa(s.Eps))
}
