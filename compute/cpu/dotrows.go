package cpu

import "math"

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
		out[r] += dotTail(ta, b[r*ldb+v:r*ldb+k])
	}
}

// dotRowsBF16 is dotRows with B held as bfloat16 bits: out[r] is Dot(a,
// the widened row r of B), bit for bit, without widening the rows into
// memory first (a decode step over a base loaded in bf16 reads half the
// bytes of a float one, and did as much work again copying them).
func dotRowsBF16(out, a []float32, b []uint16, ldb int) {
	rows, k := len(out), len(a)
	if rows == 0 {
		return
	}
	b = b[:(rows-1)*ldb+k]
	if !hasVecAsm || k < 8 {
		wide := rowBufs.Get().(*[]float32)
		defer rowBufs.Put(wide)
		if cap(*wide) < k {
			*wide = make([]float32, k)
		}
		w := (*wide)[:k]
		for r := range out {
			widenBF16(w, b[r*ldb:r*ldb+k])
			out[r] = Dot(a, w)
		}
		return
	}
	v := k &^ 7
	dotRowsBF16AVX2(&a[0], &b[0], ldb, v, rows, &out[0])
	ta := a[v:]
	for r := range out {
		tb := b[r*ldb+v : r*ldb+k]
		// Dot's tail over the widened values, written as Dot writes it.
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= len(ta); i += 4 {
			s0 += ta[i] * bf16Float(tb[i])
			s1 += ta[i+1] * bf16Float(tb[i+1])
			s2 += ta[i+2] * bf16Float(tb[i+2])
			s3 += ta[i+3] * bf16Float(tb[i+3])
		}
		for ; i < len(ta); i++ {
			s0 += ta[i] * bf16Float(tb[i])
		}
		out[r] += (s0 + s1) + (s2 + s3)
	}
}

// bf16Float is the float32 value of bfloat16 bits.
func bf16Float(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
