package cpu

// Dot returns Σ a[i]·b[i] over len(a); b must be at least as long. The
// summation order differs from a plain loop (several partial sums).
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	n := len(a)
	var s float32
	if hasVecAsm && n >= 8 {
		v := n &^ 7
		s = dotAVX2(&a[0], &b[0], v)
		a, b = a[v:], b[v:]
	}
	return s + dotTail(a, b)
}

// dotTail sums what Dot's vector loop leaves (all of a short vector) in
// its order: four partial sums, added pairwise. dotRows ends each row
// with it too, so both give the same bits.
func dotTail(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy sets y[i] += alpha·x[i] over len(x); y must be at least as long.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	if hasVecAsm && len(x) >= 8 {
		v := len(x) &^ 7
		axpyAVX2(alpha, &x[0], &y[0], v)
		x, y = x[v:], y[v:]
	}
	for i, v := range x {
		y[i] += alpha * v
	}
}

// Scale sets x[i] *= alpha.
func Scale(alpha float32, x []float32) {
	if hasVecAsm && len(x) >= 8 {
		v := len(x) &^ 7
		scaleAVX2(alpha, &x[0], v)
		x = x[v:]
	}
	for i := range x {
		x[i] *= alpha
	}
}
