package cpu

import (
	"testing"
	"time"
)

// TestPeakGFLOPS: the FMA peak is measured where there is an assembly
// kernel to compare against, and reported as 0 where there is none.
func TestPeakGFLOPS(t *testing.T) {
	peak := PeakGFLOPS(1, 20*time.Millisecond)
	if len(archKernels()) == 0 {
		if peak != 0 {
			t.Fatalf("PeakGFLOPS = %v without an assembly kernel, want 0", peak)
		}
		return
	}
	if !(peak > 0) {
		t.Fatalf("PeakGFLOPS = %v", peak)
	}
}

// BenchmarkKernelVsPeak reports a 192³ single-thread product against the
// FMA peak measured right before it (pct_of_peak above 100 would mean the
// peak loop undercounts): a benchmark, since both swing with the machine's
// load.
func BenchmarkKernelVsPeak(b *testing.B) {
	peak := PeakGFLOPS(1, 100*time.Millisecond)
	if peak <= 0 {
		b.Skip("no assembly kernel on this machine: no FMA peak to compare with")
	}
	const n = 192
	a, bm, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	b.ResetTimer()
	for b.Loop() {
		SgemmWith(ImplBuiltin, 1, false, false, n, n, n, 1, a, n, bm, n, 0, c, n)
	}
	got := 2 * n * n * n * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(got, "GFLOP/s")
	b.ReportMetric(100*got/peak, "pct_of_peak")
}
