package cpu

import (
	"testing"
	"time"
)

// The measured peak bounds what the kernel reaches: a 192³ product (in L2)
// cannot run faster than the FMA loop, give or take the noise of a shared
// machine.
func TestPeakBoundsKernel(t *testing.T) {
	peak := PeakGFLOPS(1, 100*time.Millisecond)
	if len(archKernels()) == 0 {
		if peak != 0 {
			t.Fatalf("PeakGFLOPS = %v without an assembly kernel, want 0", peak)
		}
		t.Skip("no assembly kernel on this machine")
	}
	if peak <= 0 {
		t.Fatalf("PeakGFLOPS = %v", peak)
	}
	const n, reps = 192, 50
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	start := time.Now()
	for range reps {
		SgemmWith(ImplBuiltin, 1, false, false, n, n, n, 1, a, n, b, n, 0, c, n)
	}
	got := 2 * n * n * n * reps / time.Since(start).Seconds() / 1e9
	if got > 1.5*peak {
		t.Errorf("kernel %.1f GFLOP/s is above 1.5× the measured FMA peak %.1f", got, peak)
	}
	t.Logf("FMA peak %.1f GFLOP/s, 192³ kernel %.1f (%.0f%%)", peak, got, 100*got/peak)
}
