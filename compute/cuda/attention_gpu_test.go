//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/optest"
	"gotune/compute/ref"
)

// attnGPUTol is how far the kernels may stray: f32 dot products, __expf
// and tanhf against the reference's float64 loops; in bf16 a probability a
// last bit away rounds to the neighbouring bf16 value, and so may an output.
var attnGPUTol = optest.AttnTol{F32: 1e-4, BF16: 1e-2, LSE: 1e-5}

// TestGPUFusedAttention: the FlashAttention kernels (forward, dq, dk/dv)
// against the reference backend's plain loops on optest's problems (GQA, KV
// cache with TMax > TK, prefix offsets, windows, soft caps, key masks,
// packed segments, queries that see nothing, heads of 4 to 256, tiles cut
// unevenly) in f32 and bf16, and against the GPU's own unfused products and
// softmax.
func TestGPUFusedAttention(t *testing.T) {
	d := openGPU(t)
	d.PedanticF32 = true // the unfused f32 products without TF32
	d.Attn = AttnFusedAlways
	t.Run("ref", func(t *testing.T) { optest.FusedAttention(t, d, ref.New(), attnGPUTol) })
	t.Run("unfused", func(t *testing.T) { optest.AttnFusedMatchesUnfused(t, d, attnGPUTol) })
}

// BenchmarkGPUAttn times one layer's attention of qwen3-0.6b's shape (16
// query heads over 8 key/value heads of 128) over 4 sequences of 1024 in
// bf16, forward and backward, fused and through the unfused products and
// softmax the block runs otherwise; TFLOP/s counts the causal half of the
// score products (2 forward, 5 backward).
func BenchmarkGPUAttn(b *testing.B) {
	for _, fused := range []bool{true, false} {
		name := "unfused"
		if fused {
			name = "fused"
		}
		b.Run(fmt.Sprintf("T1024/%s", name), func(b *testing.B) { benchGPUAttn(b, fused) })
	}
}

func benchGPUAttn(b *testing.B, fused bool) {
	d, err := Open(Options{})
	if err != nil {
		b.Skip(err)
	}
	const B, H, KVH, T, hd = 4, 16, 8, 1024, 128
	g, batch := H/KVH, B*KVH
	dt := compute.BF16
	r := rand.New(rand.NewPCG(1, 2))
	alloc := func(dt compute.DType, n int, fill bool) compute.Tensor {
		x, err := d.Alloc(dt, n)
		if err != nil {
			b.Fatal(err)
		}
		if fill {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(r.Float64() - 0.5)
			}
			d.Upload(x, v)
		}
		return x
	}
	nq, nk, nr := B*H*T*hd, B*KVH*T*hd, B*H*T
	q, k, v, do := alloc(dt, nq, true), alloc(dt, nk, true), alloc(dt, nk, true), alloc(dt, nq, true)
	o, lse, dsum := alloc(dt, nq, false), alloc(compute.F32, nr, false), alloc(compute.F32, nr, true)
	dq, dk, dv := alloc(dt, nq, false), alloc(dt, nk, false), alloc(dt, nk, false)
	p := compute.AttnParams{B: B, H: H, KVH: KVH, T: T, TK: T, TMax: T, HD: hd, Scale: 0.088}
	var s, sp, dp, ds compute.Tensor
	if !fused {
		n := B * H * T * T
		s, sp, dp, ds = alloc(compute.F32, n, false), alloc(dt, n, false), alloc(compute.F32, n, false), alloc(dt, n, false)
	}
	step := func() {
		if fused {
			d.AttnForward(o, lse, q, k, v, p)
			d.AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum, p)
			return
		}
		d.GemmBatched(false, true, g*T, T, hd, p.Scale, q, hd, g*T*hd, k, hd, T*hd, 0, s, T, g*T*T, batch)
		d.AttnSoftmax(sp, lse, s, nil, nil, nil, B, H, T, T, 0)
		d.GemmBatched(false, false, g*T, hd, T, 1, sp, T, g*T*T, v, hd, T*hd, 0, o, hd, g*T*hd, batch)
		d.GemmBatched(false, true, g*T, T, hd, 1, do, hd, g*T*hd, v, hd, T*hd, 0, dp, T, g*T*T, batch)
		d.AttnSoftmaxBackward(sp, ds, s, dp, lse, dsum, nil, nil, nil, B, H, T, T, 0)
		d.GemmBatched(true, false, T, hd, g*T, 1, sp, T, g*T*T, do, hd, g*T*hd, 0, dv, hd, T*hd, batch)
		d.GemmBatched(false, false, g*T, hd, T, p.Scale, ds, T, g*T*T, k, hd, T*hd, 0, dq, hd, g*T*hd, batch)
		d.GemmBatched(true, false, T, hd, g*T, p.Scale, ds, T, g*T*T, q, hd, g*T*hd, 0, dk, hd, T*hd, batch)
	}
	step()
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		step()
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	flops := 7 * 2 * float64(B*H) * float64(T) * float64(T) / 2 * float64(hd)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
}
