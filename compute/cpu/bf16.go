package cpu

import (
	"fmt"
	"runtime"
	"strings"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Frozen bf16 weights held in 16 bits.
//
// A model loaded with bf16 storage keeps its linear weights as bfloat16
// bits (an nn.BF16 weight). Expanding them to float32 for this backend would
// double the frozen weights' memory, so WrapBF16 wraps the bits as they are
// and the operations that read frozen weights widen them on the fly: the
// products (as the B operand, through the packing of SgemmBF16BOn), Axpby's
// x (DoRA's copy of W), Cast's and GatherRows' source, and Download. Every
// other operation reaches its operands through tt, which refuses them.

// WrapBF16 is a BF16 tensor over bfloat16 bits, without a copy
// (compute.HostBackend). It is not counted in MemStats; Free leaves src
// alone.
func (d *Device) WrapBF16(src []uint16) compute.Tensor {
	if src == nil {
		src = []uint16{} // H non-nil marks the 16-bit storage
	}
	return &tensor{Slices: hostmem.Slices{DT: compute.BF16, H: src}, d: d}
}

// refuseHalf fails the device for an operation that cannot read a 16-bit
// tensor, naming it, and returns a float stand-in holding the same values
// so that the operation still runs in bounds: it reads the right numbers
// and its writes into the stand-in are lost, but the step has failed
// already (Err, Sync and Download return the error).
func refuseHalf(t *tensor) *tensor {
	op := "an operation"
	if pc, _, _, ok := runtime.Caller(2); ok {
		if f := runtime.FuncForPC(pc); f != nil {
			name := f.Name()
			op = name[strings.LastIndex(name, ".")+1:]
		}
	}
	t.d.fail(fmt.Errorf("cpu: %s was given a bf16 weight held in 16 bits (WrapBF16); only the products, Axpby, Cast, GatherRows and Download read those", op))
	f := make([]float32, len(t.H))
	BF16ToF32(f, t.H)
	return &tensor{Slices: hostmem.Slices{DT: t.DT, F: f}, d: t.d}
}

// widen writes the float32 values of bf16 bits src into dst, on every core.
func widen(dst []float32, src []uint16) {
	elementwise(len(src), func(lo, hi int) { widenBF16(dst[lo:hi], src[lo:hi]) })
}

// axpbyHalf is Axpby with x held in 16 bits.
func (d *Device) axpbyHalf(Y *tensor, alpha float32, x []uint16, beta float32) {
	elementwise(len(Y.F), func(lo, hi int) {
		var buf [256]float32
		for i := lo; i < hi; i += len(buf) {
			e := min(hi, i+len(buf))
			v := buf[:e-i]
			widenBF16(v, x[i:e])
			y := Y.F[i:e]
			if beta == 0 {
				for j, xv := range v {
					y[j] = alpha * xv
				}
				continue
			}
			for j, xv := range v {
				y[j] = beta*y[j] + alpha*xv
			}
		}
	})
	stored(Y)
}
