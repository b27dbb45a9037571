package quant

import (
	"runtime"
	"testing"
)

// Dequantization throughput, the overhead the panel path adds to a GEMM.
func BenchmarkDequantize(b *testing.B) {
	const rows, cols = 1024, 1024
	m := mustQuantize(b, normals(1, rows*cols, 0.02), rows, cols, Options{Type: NF4, DoubleQuant: true})
	dst := make([]float32, rows*cols)
	for b.Loop() {
		m.Dense(dst)
	}
	b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}

// Resident heap of one quantized Qwen3-0.6B decoder layer (7 matrices,
// quantized from bf16), against BytesFor's prediction.
func BenchmarkLayerResident(b *testing.B) {
	s := Qwen3_0_6B()
	shapes := [][2]int{{2048, 1024}, {1024, 1024}, {1024, 1024}, {1024, 2048}, {3072, 1024}, {3072, 1024}, {1024, 3072}}
	src := make([]uint16, 3072*1024)
	for i := range src {
		src[i] = 0x3c00 + uint16(i%977) // bf16 values around 0.008…0.03
	}
	opt := Options{Type: NF4, DoubleQuant: true}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		layer := make([]*Matrix, len(shapes))
		var want int64
		for i, sh := range shapes {
			m, err := QuantizeBF16(src[:sh[0]*sh[1]], sh[0], sh[1], opt)
			if err != nil {
				b.Fatal(err)
			}
			layer[i] = m
			p, _ := BytesFor(sh[0], sh[1], opt)
			want += p
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "heapMB/layer")
		b.ReportMetric(float64(want)/1e6, "predictedMB/layer")
		b.ReportMetric(float64(want)*float64(s.Layers)/1e6, "predictedMB/28layers")
		runtime.KeepAlive(layer)
	}
}
