package model

// Fused projections (phi3's qkv_proj and gate_up_proj) produce one row per
// token holding the outputs of several projections side by side; the block
// works on the parts. The copies cost a few percent of the projection's own
// time and only families with fused weights make them.

// splitCols copies the column blocks of src, n rows of Σ len(dst)/n values,
// into the dsts, each n rows of its own width.
func splitCols(src []float32, n int, dsts ...[]float32) {
	width := 0
	for _, d := range dsts {
		width += len(d) / n
	}
	for i := 0; i < n; i++ {
		off := i * width
		for _, d := range dsts {
			w := len(d) / n
			copy(d[i*w:(i+1)*w], src[off:off+w])
			off += w
		}
	}
}

// joinCols is the inverse of splitCols: it lays the srcs side by side in dst.
func joinCols(dst []float32, n int, srcs ...[]float32) {
	width := 0
	for _, s := range srcs {
		width += len(s) / n
	}
	for i := 0; i < n; i++ {
		off := i * width
		for _, s := range srcs {
			w := len(s) / n
			copy(dst[off:off+w], s[i*w:(i+1)*w])
			off += w
		}
	}
}
