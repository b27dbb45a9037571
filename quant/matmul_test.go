package quant

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"gotune/checks"
)

var kernelOpts = []Options{
	{Type: NF4},
	{Type: FP4, BlockSize: 32},
	{Type: NF4, DoubleQuant: true, NestedBlockSize: 5},
	{Type: Int8Row},
	{Type: Int8Block, BlockSize: 48},
}

// Both kernels against a float64 loop over the decoded matrix, on odd shapes,
// through the fused path (n ≤ smallN) and the panel+GEMM path (several
// panels for the 300×1500 case).
func TestKernelsMatchFloat64(t *testing.T) {
	shapes := []struct{ rows, cols, n int }{
		{1, 1, 1}, {7, 13, 3}, {33, 65, 4}, {33, 65, 5}, {130, 97, 17}, {3, 301, 9}, {300, 1500, 6}, {64, 64, 1},
	}
	for _, opt := range kernelOpts {
		for _, sh := range shapes {
			name := fmt.Sprintf("%v/dq=%v/%dx%d/n=%d", opt.Type, opt.DoubleQuant, sh.rows, sh.cols, sh.n)
			w := normals(uint64(sh.rows*sh.cols), sh.rows*sh.cols, 0.05)
			m := mustQuantize(t, w, sh.rows, sh.cols, opt)
			deq := make([]float32, len(w))
			m.Dequantize(deq)
			x := normals(11, sh.n*sh.cols, 1)
			dy := normals(12, sh.n*sh.rows, 1)

			// y = x·Wᵀ
			want := make([]float64, sh.n*sh.rows)
			for i := range sh.n {
				for r := range sh.rows {
					var s float64
					for c := range sh.cols {
						s += float64(x[i*sh.cols+c]) * float64(deq[r*sh.cols+c])
					}
					want[i*sh.rows+r] = s
				}
			}
			y := normals(13, sh.n*sh.rows, 100) // garbage that must be overwritten
			m.MatMul(y, x, sh.n)
			if e := checks.RelErr(y, want); !(e <= 1e-5) {
				t.Errorf("%s: MatMul relative error %.3g > 1e-5", name, e)
			}

			// dx = dy·W, overwritten and accumulated onto dx0.
			dx0 := normals(14, sh.n*sh.cols, 1)
			wantDx := make([]float64, sh.n*sh.cols)
			for i := range sh.n {
				for r := range sh.rows {
					g := float64(dy[i*sh.rows+r])
					for c := range sh.cols {
						wantDx[i*sh.cols+c] += g * float64(deq[r*sh.cols+c])
					}
				}
			}
			dx := normals(15, sh.n*sh.cols, 100)
			m.MatMulInputGrad(dx, dy, sh.n, false)
			if e := checks.RelErr(dx, wantDx); !(e <= 1e-5) {
				t.Errorf("%s: MatMulInputGrad relative error %.3g > 1e-5", name, e)
			}
			wantAcc := make([]float64, len(wantDx))
			for i := range wantAcc {
				wantAcc[i] = wantDx[i] + float64(dx0[i])
			}
			m.MatMulInputGrad(dx0, dy, sh.n, true)
			if e := checks.RelErr(dx0, wantAcc); !(e <= 1e-5) {
				t.Errorf("%s: MatMulInputGrad(accumulate) relative error %.3g > 1e-5", name, e)
			}
		}
	}
}

func TestDequantizeRows(t *testing.T) {
	rows, cols := 11, 45 // blocks of 64 straddle rows
	w := normals(2, rows*cols, 1)
	for _, opt := range kernelOpts {
		m := mustQuantize(t, w, rows, cols, opt)
		all := make([]float32, rows*cols)
		m.Dequantize(all)
		part := make([]float32, 4*cols)
		m.DequantizeRows(part, 3, 7)
		for i, v := range part {
			if v != all[3*cols+i] {
				t.Fatalf("%v: DequantizeRows(3,7)[%d] = %v, want %v", opt.Type, i, v, all[3*cols+i])
			}
		}
	}
}

// The kernels keep the weights quantized: the scratch is one bounded panel,
// and steady-state calls allocate nothing proportional to rows×cols.
func TestKernelsNoFullSizeAllocation(t *testing.T) {
	for _, sh := range [][2]int{{1024, 1024}, {3072, 1024}, {1024, 3072}, {151936, 1024}, {3, 1 << 18}} {
		m := &Matrix{rows: sh[0], cols: sh[1]}
		if got := m.panelRows() * sh[1]; got > max(panelFloats, sh[1]) {
			t.Errorf("%d×%d: panel of %d floats exceeds %d", sh[0], sh[1], got, panelFloats)
		}
	}
	const rows, cols = 2048, 1024
	w := normals(1, rows*cols, 0.02)
	m := mustQuantize(t, w, rows, cols, Options{Type: NF4, DoubleQuant: true})
	full := uint64(4 * rows * cols)
	for _, n := range []int{1, 8} {
		x := normals(2, n*cols, 1)
		y := make([]float32, n*rows)
		dx := make([]float32, n*cols)
		call := func() {
			m.MatMul(y, x, n)
			m.MatMulInputGrad(dx, y, n, true)
		}
		call() // warm the pool
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const calls = 5
		for range calls {
			call()
		}
		runtime.ReadMemStats(&after)
		per := (after.TotalAlloc - before.TotalAlloc) / calls
		t.Logf("n=%d: %d bytes allocated per forward+backward (f32 weight would be %d)", n, per, full)
		if per > full/16 {
			t.Errorf("n=%d: %d bytes allocated per call, want far below the %d-byte f32 matrix", n, per, full)
		}
	}
}

func TestKernelsRejectShortBuffers(t *testing.T) {
	m := mustQuantize(t, make([]float32, 12), 3, 4, Options{Type: NF4})
	defer func() {
		if r := recover(); r == nil {
			t.Error("MatMul with a short x did not panic")
		}
	}()
	m.MatMul(make([]float32, 6), make([]float32, 7), 2)
}

func TestNaNActivationsPropagate(t *testing.T) {
	m := mustQuantize(t, normals(3, 64*64, 1), 64, 64, Options{Type: NF4})
	x := make([]float32, 64)
	x[5] = float32(math.NaN())
	y := make([]float32, 64)
	m.MatMul(y, x, 1)
	if !math.IsNaN(float64(y[0])) {
		t.Errorf("NaN input gave %v, want NaN (errors must stay visible)", y[0])
	}
}
