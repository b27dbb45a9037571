package quant

import (
	"fmt"
	"sync"

	"gotune/compute/cpu"
)

// panelFloats bounds the float32 scratch one multiplication dequantizes into
// (512 KiB): large enough that the GEMM on a panel amortises its packing of
// the activations, small enough to stay in L2/L3.
const panelFloats = 256 * 1024

// smallN is the largest batch for which the fused dequant-dot kernels beat
// dequantize-a-panel + GEMM (decode steps, tiny batches).
const smallN = 4

// chunkLen is the stack buffer of the fused kernels: one decoded stretch of
// a row, reused for every input vector.
const chunkLen = 256

// scratchPool shares panel buffers among all matrices: a model has hundreds
// of linear layers and only a few multiplications run at once, so a pool per
// matrix would keep hundreds of idle panels resident. Buffers hold exactly
// panelFloats values, or more for a matrix wider than that.
var scratchPool = sync.Pool{New: func() any {
	b := make([]float32, panelFloats)
	return &b
}}

// panelRows is the number of weight rows dequantized at a time.
func (m *Matrix) panelRows() int {
	p := panelFloats / m.cols
	if p >= 16 {
		p -= p % 8
	}
	return max(1, min(p, m.rows))
}

func getPanel(n int) *[]float32 {
	b := scratchPool.Get().(*[]float32)
	if cap(*b) < n {
		nb := make([]float32, n)
		b = &nb
	}
	return b
}

func (m *Matrix) checkLen(what string, got, n, width int) {
	if got < n*width {
		panic(fmt.Sprintf("quant: %s has %d values, want n·%d = %d", what, got, width, n*width))
	}
}

// MatMul computes y[n×rows] = x[n×cols]·Wᵀ, the forward pass of a linear
// layer without bias.
func (m *Matrix) MatMul(y, x []float32, n int) {
	if n <= 0 {
		return
	}
	m.checkLen("MatMul x", len(x), n, m.cols)
	m.checkLen("MatMul y", len(y), n, m.rows)
	if n <= smallN {
		m.matMulFused(y, x, n)
		return
	}
	rows, cols := m.rows, m.cols
	p := m.panelRows()
	buf := getPanel(p * cols)
	defer scratchPool.Put(buf)
	for r0 := 0; r0 < rows; r0 += p {
		pr := min(p, rows-r0)
		panel := (*buf)[:pr*cols]
		m.decodeRowsParallel(panel, r0, r0+pr)
		cpu.Sgemm(false, true, n, pr, cols, 1, x, cols, panel, cols, 0, y[r0:], rows)
	}
}

// MatMulInputGrad computes dx[n×cols] = dy[n×rows]·W, or adds it to dx when
// accumulate is set: the input gradient of a linear layer.
func (m *Matrix) MatMulInputGrad(dx, dy []float32, n int, accumulate bool) {
	if n <= 0 {
		return
	}
	m.checkLen("MatMulInputGrad dx", len(dx), n, m.cols)
	m.checkLen("MatMulInputGrad dy", len(dy), n, m.rows)
	if n <= smallN {
		m.inputGradFused(dx, dy, n, accumulate)
		return
	}
	rows, cols := m.rows, m.cols
	p := m.panelRows()
	buf := getPanel(p * cols)
	defer scratchPool.Put(buf)
	for r0 := 0; r0 < rows; r0 += p {
		pr := min(p, rows-r0)
		panel := (*buf)[:pr*cols]
		m.decodeRowsParallel(panel, r0, r0+pr)
		beta := float32(1)
		if r0 == 0 && !accumulate {
			beta = 0
		}
		cpu.Sgemm(false, false, n, cols, pr, 1, dy[r0:], rows, panel, cols, beta, dx, cols)
	}
}

// matMulFused handles small n: each worker owns a range of output rows and
// walks each row one block (at most chunkLen values) at a time, decoding the
// codes unscaled into a stack buffer and dotting it with every input vector
// while it is in L1; the block scale is applied once per block.
func (m *Matrix) matMulFused(y, x []float32, n int) {
	rows, cols := m.rows, m.cols
	cpu.Parallel(rows, 1+4096/cols, func(lo, hi int) {
		var buf [chunkLen]float32
		for r := lo; r < hi; r++ {
			var acc [smallN]float32
			for c := 0; c < cols; {
				e := r*cols + c
				b := e / m.bs
				seg := buf[:min(chunkLen, cols-c, (b+1)*m.bs-e)]
				s := m.decodeRaw(seg, e, b)
				for i := range n {
					acc[i] += s * cpu.Dot(seg, x[i*cols+c:])
				}
				c += len(seg)
			}
			for i := range n {
				y[i*rows+r] = acc[i]
			}
		}
	})
}

// inputGradFused handles small n: each worker owns a range of columns of dx
// and streams through all rows of W restricted to them, one block at a time.
func (m *Matrix) inputGradFused(dx, dy []float32, n int, accumulate bool) {
	rows, cols := m.rows, m.cols
	cpu.Parallel(cols, 64, func(lo, hi int) {
		if !accumulate {
			for i := range n {
				clear(dx[i*cols+lo : i*cols+hi])
			}
		}
		var buf [chunkLen]float32
		for r := range rows {
			for c := lo; c < hi; {
				e := r*cols + c
				b := e / m.bs
				seg := buf[:min(chunkLen, hi-c, (b+1)*m.bs-e)]
				s := m.decodeRaw(seg, e, b)
				for i := range n {
					if g := dy[i*rows+r] * s; g != 0 {
						cpu.Axpy(g, seg, dx[i*cols+c:])
					}
				}
				c += len(seg)
			}
		}
	})
}

// decodeRaw writes the code values (unscaled) of elements [e, e+len(dst)),
// all in block b, and returns the block's scale: W[e+j] = dst[j]·scale.
func (m *Matrix) decodeRaw(dst []float32, e, b int) float32 {
	switch m.typ {
	case NF4, FP4:
		i := 0
		if e&1 == 1 {
			dst[0] = m.code[m.packed[e>>1]&15]
			i, e = 1, e+1
		}
		n := (len(dst) - i) / 2
		pairs := m.pairs
		out := dst[i : i+2*n]
		for k, v := range m.packed[e>>1 : e>>1+n] {
			*(*[2]float32)(out[2*k : 2*k+2]) = pairs[v]
		}
		if i+2*n < len(dst) {
			dst[len(dst)-1] = m.code[m.packed[(e+2*n)>>1]>>4]
		}
		return m.scale(b)
	default:
		for j, q := range m.q[e : e+len(dst)] {
			dst[j] = float32(int8(q))
		}
		return m.absmax[b] / 127
	}
}
