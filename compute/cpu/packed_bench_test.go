package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkSgemmPackedB compares Sgemm with SgemmPackedB on the products of a
// LoRA step of smollm2-135m: the forward y = x·Wᵀ (fwd) and the input
// gradient dx = dy·W (bwd) of each projection. Each iteration uses the next
// of several distinct weights, so that neither W nor its packed panels stay
// cache-hot as they would not in a model.
func BenchmarkSgemmPackedB(b *testing.B) {
	layers := []struct {
		name    string
		out, in int
		m       int
		weights int
	}{
		{"qo", 576, 576, 256, 30},
		{"kv", 192, 576, 256, 30},
		{"gateup", 1536, 576, 256, 30},
		{"down", 576, 1536, 256, 30},
		{"head", 49152, 576, 128, 3}, // 113 MB each: a few already exceed L3
	}
	for _, l := range layers {
		r := rand.New(rand.NewPCG(1, 2))
		ws := make([][]float32, l.weights)
		for i := range ws {
			ws[i] = randSlice(r, l.out*l.in)
		}
		for _, dir := range []string{"fwd", "bwd"} {
			n, k, transB := l.out, l.in, true
			if dir == "bwd" {
				n, k, transB = l.in, l.out, false
			}
			a, c := randSlice(r, l.m*k), make([]float32, l.m*n)
			flops := 2 * float64(l.m*n*k)
			name := fmt.Sprintf("%s/%s/m%dn%dk%d", l.name, dir, l.m, n, k)
			b.Run(name+"/sgemm", func(b *testing.B) {
				i := 0
				for b.Loop() {
					Sgemm(false, transB, l.m, n, k, 1, a, k, ws[i], l.in, 0, c, n)
					i = (i + 1) % len(ws)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run(name+"/packed", func(b *testing.B) {
				pks := make([]*PackedB, len(ws))
				for i, w := range ws {
					pks[i] = PackB(transB, k, n, w, l.in)
				}
				i := 0
				for b.Loop() {
					SgemmPackedB(false, l.m, 1, a, k, pks[i], 0, c, n)
					i = (i + 1) % len(pks)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
