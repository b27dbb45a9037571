package quant

import (
	"fmt"

	"gotune/parallel"
)

// Dense writes the whole rows×cols matrix, decoded, into dst (nn.Weight).
// It is meant for tests, export and merging; the kernels never call it.
func (m *Matrix) Dense(dst []float32) {
	m.DequantizeRows(dst, 0, m.rows)
}

// DequantizeRows decodes rows [r0, r1) into dst[:(r1-r0)·cols].
func (m *Matrix) DequantizeRows(dst []float32, r0, r1 int) {
	if r0 < 0 || r1 > m.rows || r0 > r1 {
		panic(fmt.Sprintf("quant: DequantizeRows(%d, %d) outside [0, %d]", r0, r1, m.rows))
	}
	if len(dst) < (r1-r0)*m.cols {
		panic(fmt.Sprintf("quant: DequantizeRows dst has %d values, want %d", len(dst), (r1-r0)*m.cols))
	}
	m.decodeRowsParallel(dst, r0, r1)
}

// decodeRowsParallel decodes rows [r0, r1) into dst using all workers.
func (m *Matrix) decodeRowsParallel(dst []float32, r0, r1 int) {
	cols := m.cols
	parallel.For(r1-r0, 1+8192/cols, func(lo, hi int) {
		m.decode(dst[lo*cols:hi*cols], (r0+lo)*cols)
	})
}

// decode writes the decoded flat elements [e0, e0+len(dst)) into dst.
func (m *Matrix) decode(dst []float32, e0 int) {
	for i := 0; i < len(dst); {
		e := e0 + i
		b := e / m.bs
		end := min(len(dst), i+(b+1)*m.bs-e) // the rest of block b
		seg := dst[i:end]
		switch m.typ {
		case NF4, FP4:
			m.decode4(seg, e, m.scale(b))
		default:
			s := m.absmax[b] / 127
			for j, q := range m.q[e : e+len(seg)] {
				seg[j] = float32(int8(q)) * s
			}
		}
		i = end
	}
}

// decode4 decodes the 4-bit elements [e, e+len(dst)), which share scale s.
func (m *Matrix) decode4(dst []float32, e int, s float32) {
	if len(dst) == 0 {
		return
	}
	i := 0
	if e&1 == 1 {
		dst[0] = m.code[m.packed[e>>1]&15] * s
		i, e = 1, e+1
	}
	pairs := m.pairs
	n := (len(dst) - i) / 2
	src := m.packed[e>>1 : e>>1+n]
	out := dst[i : i+2*n]
	k := 0
	for ; k+4 <= len(src); k += 4 {
		b := (*[4]byte)(src[k:])
		o := (*[8]float32)(out[2*k:])
		p0, p1, p2, p3 := &pairs[b[0]], &pairs[b[1]], &pairs[b[2]], &pairs[b[3]]
		o[0], o[1], o[2], o[3] = p0[0]*s, p0[1]*s, p1[0]*s, p1[1]*s
		o[4], o[5], o[6], o[7] = p2[0]*s, p2[1]*s, p3[0]*s, p3[1]*s
	}
	for ; k < len(src); k++ {
		p := &pairs[src[k]]
		o := (*[2]float32)(out[2*k:])
		o[0], o[1] = p[0]*s, p[1]*s
	}
	if i+2*n < len(dst) {
		dst[len(dst)-1] = m.code[m.packed[(e+2*n)>>1]>>4] * s
	}
}
