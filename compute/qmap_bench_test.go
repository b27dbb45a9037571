package compute

import (
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
)

// cpuTime is the process's user and system time in nanoseconds: on a shared
// machine steadier than wall time.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// momentBlocks is n values shaped like AdamW moments after an update: blocks
// of Adam8Block whose magnitudes spread over a few decades, and the scale
// that takes each block's largest magnitude to 1.
func momentBlocks(n int, square bool) ([]float32, []float32) {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n)
	scales := make([]float32, Adam8Blocks(n, Adam8Block))
	for b := range scales {
		var top float32
		for i := b * Adam8Block; i < min(n, (b+1)*Adam8Block); i++ {
			v := float32(r.NormFloat64() * math.Pow(10, -3*r.Float64()))
			if square {
				v *= v
			}
			x[i] = v
			top = max(top, float32(math.Abs(float64(v))))
		}
		scales[b] = 1 / top
	}
	return x, scales
}

// BenchmarkEncode8 times the quantizer alone on moment-like blocks, in CPU
// ns a value.
func BenchmarkEncode8(b *testing.B) {
	const n = 1 << 20
	for _, signed := range []bool{true, false} {
		x, scales := momentBlocks(n, !signed)
		dst := make([]byte, n)
		q := NewQuantizer8(signed)
		b.Run(map[bool]string{true: "signed", false: "unsigned"}[signed], func(b *testing.B) {
			c0 := cpuTime()
			for range b.N {
				for blk, s := range scales {
					lo := blk * Adam8Block
					q.Encode(dst[lo:lo+Adam8Block], x[lo:lo+Adam8Block], s)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/n, "cpu-ns/value")
		})
	}
}
