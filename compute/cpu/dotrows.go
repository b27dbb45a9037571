package cpu

// dotRows sets out[r] = Dot(a, b[r·ldb:]) for r < len(out), bit for bit:
// the rows of a decode step's x·Wᵀ (and of attention's q·Kᵀ for one query)
// are short dot products, and calling Dot once per row spent as long in
// the call, its slicing and its tail as in the arithmetic when the row is
// 64 floats long (a head's keys). Here the rows run in one assembly loop
// with Dot's own summation; the last k mod 8 elements of each row are added
// as Dot adds them.
func dotRows(out, a, b []float32, ldb int) {
	rows, k := len(out), len(a)
	if rows == 0 {
		return
	}
	b = b[:(rows-1)*ldb+k]
	if !hasVecAsm || k < 8 {
		for r := range out {
			out[r] = Dot(a, b[r*ldb:])
		}
		return
	}
	v := k &^ 7
	dotRowsAVX2(&a[0], &b[0], ldb, v, rows, &out[0])
	ta := a[v:]
	for r := range out {
		tb := b[r*ldb+v : r*ldb+k]
		// Dot's tail, written as Dot writes it.
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= len(ta); i += 4 {
			s0 += ta[i] * tb[i]
			s1 += ta[i+1] * tb[i+1]
			s2 += ta[i+2] * tb[i+2]
			s3 += ta[i+3] * tb[i+3]
		}
		for ; i < len(ta); i++ {
			s0 += ta[i] * tb[i]
		}
		out[r] += (s0 + s1) + (s2 + s3)
	}
}
