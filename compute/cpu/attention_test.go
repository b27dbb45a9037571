package cpu_test

import (
	"fmt"
	"runtime"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu"
	"gotune/compute/optest"
	"gotune/compute/ref"
)

// attnTol is how far the CPU backend's fused attention may stray from the
// reference's: a probability or score gradient a last bit away in float32
// can round to a neighbouring bf16 value (leaving out the rounding of the
// probabilities costs about 5e-3).
var attnTol = optest.AttnTol{F32: 2e-5, BF16: 2e-3, LSE: 2e-6}

// TestAttnFusedMatchesReference checks the CPU backend's fused attention,
// forward and backward, against the reference backend's plain loops, on
// optest's problems (every kind the device block gives it), with several
// numbers of cores for the long ones (the backward pass splits key/value
// heads between them).
func TestAttnFusedMatchesReference(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range optest.AttnCases {
			for _, procs := range []int{1, 3, 8} {
				if procs > 1 && c.T < 100 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%v/procs%d", c.Name, dt, procs), func(t *testing.T) {
					runtime.GOMAXPROCS(procs)
					optest.AttnCheck(t, cpu.Open(), ref.New(), c, dt, attnTol)
				})
			}
		}
	}
}

// BenchmarkAttn times one layer's attention of the smollm2-135m shape (9
// query heads over 3 key/value heads of 64), fused and through the unfused
// operations the device block runs otherwise: training (forward and
// backward over T tokens) and decoding (forward of one token over a cache
// of 160).
func BenchmarkAttn(b *testing.B) {
	for _, c := range []struct {
		name   string
		t, off int
	}{{"T256", 256, 0}, {"T1024", 1024, 0}, {"decode160", 1, 159}} {
		for _, fused := range []bool{true, false} {
			name := c.name + "/unfused"
			if fused {
				name = c.name + "/fused"
			}
			b.Run(name, func(b *testing.B) { benchAttn(b, c.t, c.off, fused) })
		}
	}
}

func benchAttn(b *testing.B, T, off int, fused bool) {
	be := cpu.Open()
	const B, H, KVH, hd = 1, 9, 3, 64
	g, tk := H/KVH, off+T
	alloc := func(dt compute.DType, n int, fill bool) compute.Tensor {
		x, err := be.Alloc(dt, n)
		if err != nil {
			b.Fatal(err)
		}
		if fill {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i%17)/17 - 0.5
			}
			be.Upload(x, v)
		}
		return x
	}
	nq, nk := B*H*T*hd, B*KVH*tk*hd
	q, k, v, do := alloc(compute.F32, nq, true), alloc(compute.F32, nk, true), alloc(compute.F32, nk, true), alloc(compute.F32, nq, true)
	o, lse, dsum := alloc(compute.F32, nq, false), alloc(compute.F32, B*H*T, false), alloc(compute.F32, B*H*T, true)
	dq, dk, dv := alloc(compute.F32, nq, false), alloc(compute.F32, nk, false), alloc(compute.F32, nk, false)
	p := compute.AttnParams{B: B, H: H, KVH: KVH, T: T, TK: tk, TMax: tk, HD: hd, Off: off, Scale: 0.125}
	n := B * H * T * tk
	s, pr, dp, ds := alloc(compute.F32, n, false), alloc(compute.F32, n, false), alloc(compute.F32, n, false), alloc(compute.F32, n, false)
	batch := B * KVH
	backward := off == 0
	b.ResetTimer()
	for range b.N {
		if fused {
			be.AttnForward(o, lse, q, k, v, p)
			if backward {
				be.AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum, p)
			}
			continue
		}
		be.GemmBatched(false, true, g*T, tk, hd, p.Scale, q, hd, g*T*hd, k, hd, tk*hd, 0, s, tk, g*T*tk, batch)
		be.AttnSoftmax(pr, lse, s, nil, nil, nil, B, H, T, tk, off)
		be.GemmBatched(false, false, g*T, hd, tk, 1, pr, tk, g*T*tk, v, hd, tk*hd, 0, o, hd, g*T*hd, batch)
		if !backward {
			continue
		}
		be.GemmBatched(false, true, g*T, tk, hd, p.Scale, q, hd, g*T*hd, k, hd, tk*hd, 0, s, tk, g*T*tk, batch)
		be.GemmBatched(false, true, g*T, tk, hd, 1, do, hd, g*T*hd, v, hd, tk*hd, 0, dp, tk, g*T*tk, batch)
		be.AttnSoftmaxBackward(pr, ds, s, dp, lse, dsum, nil, nil, nil, B, H, T, tk, off)
		be.GemmBatched(true, false, tk, hd, g*T, 1, pr, tk, g*T*tk, do, hd, g*T*hd, 0, dv, hd, tk*hd, batch)
		be.GemmBatched(false, false, g*T, hd, tk, p.Scale, ds, tk, g*T*tk, k, hd, tk*hd, 0, dq, hd, g*T*hd, batch)
		be.GemmBatched(true, false, tk, hd, g*T, p.Scale, ds, tk, g*T*tk, q, hd, g*T*hd, 0, dk, hd, tk*hd, batch)
	}
}
