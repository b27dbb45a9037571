package quant

import (
	"testing"
)

var kernelOpts = []Options{
	{Type: NF4},
	{Type: FP4, BlockSize: 32},
	{Type: NF4, DoubleQuant: true, NestedBlockSize: 5},
	{Type: Int8Row},
	{Type: Int8Block, BlockSize: 48},
}

func TestDequantizeRows(t *testing.T) {
	rows, cols := 11, 45 // blocks of 64 straddle rows
	w := normals(2, rows*cols, 1)
	for _, opt := range kernelOpts {
		m := mustQuantize(t, w, rows, cols, opt)
		all := make([]float32, rows*cols)
		m.Dense(all)
		part := make([]float32, 4*cols)
		m.DequantizeRows(part, 3, 7)
		for i, v := range part {
			if v != all[3*cols+i] {
				t.Fatalf("%v: DequantizeRows(3,7)[%d] = %v, want %v", opt.Type, i, v, all[3*cols+i])
			}
		}
	}
}
