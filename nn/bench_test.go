package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attnFlops counts the multiply-adds of causal attention as 2 FLOPs each:
// Q·Kᵀ and P·V over the visible half of the score matrix (forward), and
// twice that again for the four products of the backward plus the score
// recomputation.
func attnFlops(a *Attention, backward bool) float64 {
	visible := float64(a.Tq) * float64(a.Tq+1) / 2 // causal, no offset
	f := 2 * 2 * visible * float64(a.HD) * float64(a.B*a.Heads)
	if backward {
		return f * 2.5 // recompute Q·Kᵀ, then dP, dQ, dK, dV
	}
	return f
}

func benchAttention(b *testing.B, backward bool) {
	for _, T := range []int{256, 1024} {
		b.Run(fmt.Sprintf("B1_T%d_h9_kv3_hd64", T), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, uint64(T)))
			a := &Attention{B: 1, Tq: T, Tk: T, Heads: 9, KVHeads: 3, HD: 64, Scale: float32(1 / math.Sqrt(64))}
			q := randSlice(r, T*9*64, 1)
			k, v := randSlice(r, T*3*64, 1), randSlice(r, T*3*64, 1)
			out, lse := make([]float32, len(q)), make([]float32, 9*T)
			a.Forward(out, lse, q, k, v)
			dout := randSlice(r, len(q), 1)
			dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if backward {
					a.Backward(dq, dk, dv, dout, q, k, v, out, lse)
				} else {
					a.Forward(out, lse, q, k, v)
				}
			}
			b.ReportMetric(attnFlops(a, backward)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(float64(T)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func BenchmarkAttentionForward(b *testing.B)  { benchAttention(b, false) }
func BenchmarkAttentionBackward(b *testing.B) { benchAttention(b, true) }

func BenchmarkRMSNorm(b *testing.B) {
	const n, d = 1024, 576
	r := rand.New(rand.NewPCG(2, 3))
	x, w, dy := randSlice(r, n*d, 1), randSlice(r, d, 1), randSlice(r, n*d, 1)
	y, rstd, dx, dw := make([]float32, n*d), make([]float32, n), make([]float32, n*d), make([]float32, d)
	b.Run("Forward", func(b *testing.B) {
		b.SetBytes(int64(2 * n * d * 4))
		for i := 0; i < b.N; i++ {
			RMSNorm(y, rstd, x, w, n, d, 1e-6)
		}
	})
	b.Run("Backward", func(b *testing.B) {
		b.SetBytes(int64(3 * n * d * 4))
		for i := 0; i < b.N; i++ {
			RMSNormBackward(dx, dw, dy, x, w, rstd, n, d)
		}
	})
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 1024 * 1536
	r := rand.New(rand.NewPCG(4, 5))
	g, u, da := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
	a, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	b.Run("Forward", func(b *testing.B) {
		b.SetBytes(3 * n * 4)
		for i := 0; i < b.N; i++ {
			SwiGLU(a, g, u)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("Backward", func(b *testing.B) {
		b.SetBytes(5 * n * 4)
		for i := 0; i < b.N; i++ {
			SwiGLUBackward(dg, du, da, g, u)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
}
