package model

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// unfusedBackend hides a backend's optional interfaces (FusedAttention among
// them), so the device block runs its unfused attention on it.
type unfusedBackend struct{ compute.Backend }

// TestDeviceAttnFusedMatchesUnfusedOnHost: on the CPU backend, the block's
// step through the fused attention gives the loss and gradients of the
// unfused products and softmax (one sequence's scores at a time), with
// padding, packed samples, and Gemma's windows and soft caps, in f32 and
// bf16.
func TestDeviceAttnFusedMatchesUnfusedOnHost(t *testing.T) {
	if _, ok := cputest.Open().(compute.FusedAttention); !ok {
		t.Fatal("the CPU backend does not implement compute.FusedAttention")
	}
	for _, shape := range []string{"ref-qwen3", "gemma2", "gemma3"} {
		for _, packed := range []bool{false, true} {
			for _, dt := range []compute.DType{compute.F32, compute.BF16} {
				name := shape + "/padded/" + dt.String()
				if packed {
					name = shape + "/packed/" + dt.String()
				}
				t.Run(name, func(t *testing.T) { testAttnFusedStep(t, shape, packed, dt) })
			}
		}
	}
}

func testAttnFusedStep(t *testing.T, shape string, packed bool, dt compute.DType) {
	m := tinyModel(t, shape, 5)
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	const T = 23
	b := &Batch{B: 3, T: T, IDs: make([]int32, 3*T), Labels: make([]int32, 3*T)}
	if packed {
		b.Seg, b.Pos = make([]int32, 3*T), make([]int32, 3*T)
	} else {
		b.Mask = make([]int32, 3*T)
	}
	for i := range b.IDs {
		r, t := i/T, i%T
		b.IDs[i] = int32((i*41 + 3) % m.Cfg.Vocab)
		b.Labels[i] = b.IDs[i]
		if packed {
			cut := 5 + 4*r // a second sample from here
			b.Seg[i], b.Pos[i] = int32(2*r), int32(t)
			if t >= cut {
				b.Seg[i], b.Pos[i] = int32(2*r+1), int32(t-cut)
			}
		} else {
			b.Mask[i] = b32(t < T-3*r) // right padding of 0, 3, 6 tokens
		}
	}
	scale := float32(1 / float64(b.TrainedTokens()))
	run := func(be compute.Backend, budget int) (float64, [][]float32) {
		dm, err := NewDeviceModel(m, be, DeviceOptions{Compute: dt})
		if err != nil {
			t.Fatal(err)
		}
		defer dm.Close()
		dm.attnBudget = budget
		sum, _, err := dm.Step(b, scale)
		if err != nil {
			t.Fatal(err)
		}
		var grads [][]float32
		for _, p := range m.Params() {
			g, err := dm.Grad(p)
			if err != nil {
				t.Fatal(err)
			}
			grads = append(grads, g)
		}
		return sum, grads
	}
	fsum, fgrads := run(cputest.Open(), 0)
	usum, ugrads := run(unfusedBackend{cputest.Open()}, 1)
	lossTol, gradTol := 1e-6, 1e-5
	if dt == compute.BF16 {
		// Rounding steps of the two paths fall on the same values, but the
		// sums before them are ordered differently.
		lossTol, gradTol = 2e-3, 2e-2
	}
	if e := abs(fsum-usum) / abs(usum); e > lossTol {
		t.Errorf("loss %.8g, unfused %.8g (rel %.2g)", fsum, usum, e)
	}
	for i, p := range m.Params() {
		if e := relDiff(fgrads[i], ugrads[i]); e > gradTol {
			t.Errorf("%s: gradient differs from the unfused path's by %.3g", p.Name, e)
		}
	}
}
