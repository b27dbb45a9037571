package nn

import (
	"math"
	"slices"
	"sync"

	"gotune/compute/cpu"
)

// Row-parallel helpers: every op below works on n rows of a fixed width and
// splits the rows across cores. minRows keeps tiny inputs on one goroutine.
func rows(n, width int, fn func(lo, hi int)) {
	cpu.Parallel(n, 1+4096/(width+1), fn)
}

// RMSNorm computes y = x / sqrt(mean(x²) + eps) · w for n rows of width d and
// saves 1/rms per row in rstd for the backward pass.
func RMSNorm(y, rstd, x, w []float32, n, d int, eps float64) {
	rows(n, d, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xr := x[i*d : (i+1)*d]
			ss := cpu.Dot(xr, xr)
			r := float32(1 / math.Sqrt(float64(ss/float32(d))+eps))
			rstd[i] = r
			yr, wr := y[i*d:(i+1)*d], w[:d] // equal lengths: no bounds checks below
			for j, v := range xr {
				yr[j] = wr[j] * (v * r)
			}
		}
	})
}

// RMSNormBackward accumulates dx (+=) and, when dw is non-nil, dw (+=), given
// dy and the saved rstd. dx may not alias dy.
//
// Each chunk of rows sums its own share of dw; the shares are added in row
// order, never in the order the goroutines finish, so two runs give the
// same bits (float addition is not associative).
func RMSNormBackward(dx, dw, dy, x, w, rstd []float32, n, d int) {
	type share struct {
		lo  int
		sum []float32
	}
	var (
		mu    sync.Mutex
		parts []share
	)
	rows(n, d, func(lo, hi int) {
		var pdw []float32
		if dw != nil {
			pdw = make([]float32, d)
		}
		for i := lo; i < hi; i++ {
			xr, gr, dxr, wr := x[i*d:(i+1)*d], dy[i*d:(i+1)*d], dx[i*d:(i+1)*d], w[:d]
			r := rstd[i]
			c := dot3(gr, wr, xr) * r * r / float32(d)
			for j, xv := range xr {
				dxr[j] += r * (gr[j]*wr[j] - xv*c)
			}
			if pdw != nil {
				for j := range xr {
					pdw[j] += gr[j] * xr[j] * r
				}
			}
		}
		if pdw != nil {
			mu.Lock()
			parts = append(parts, share{lo, pdw})
			mu.Unlock()
		}
	})
	slices.SortFunc(parts, func(a, b share) int { return a.lo - b.lo })
	for _, p := range parts {
		for j, v := range p.sum {
			dw[j] += v
		}
	}
}

// dot3 is Σ a[j]·b[j]·c[j] over len(a), in eight running sums: a single sum
// would make every addition wait for the one before it.
func dot3(a, b, c []float32) float32 {
	b, c = b[:len(a)], c[:len(a)]
	var s [8]float32
	j := 0
	for ; j+8 <= len(a); j += 8 {
		aj, bj, cj := (*[8]float32)(a[j:]), (*[8]float32)(b[j:]), (*[8]float32)(c[j:])
		for k := range s {
			s[k] += aj[k] * bj[k] * cj[k]
		}
	}
	for ; j < len(a); j++ {
		s[0] += a[j] * b[j] * c[j]
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

// Rope rotates the first rot dimensions of each head in place:
// x' = x·cos + rotate_half(x)·sin, with cos/sin rows chosen by pos. x holds
// n rows of heads×hd.
func Rope(x []float32, n, heads, hd int, pos []int32, cos, sin []float32, rot int) {
	half := rot / 2
	rows(n, heads*hd, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p := int(pos[i])
			c, s := cos[p*hd:p*hd+hd], sin[p*hd:p*hd+hd]
			for h := 0; h < heads; h++ {
				v := x[(i*heads+h)*hd : (i*heads+h+1)*hd]
				for j := 0; j < half; j++ {
					a, b := v[j], v[j+half]
					v[j] = a*c[j] - b*s[j]
					v[j+half] = b*c[j+half] + a*s[j+half]
				}
			}
		}
	})
}

// RopeBackward turns the gradient of rotated values into the gradient of the
// values before rotation, in place (the transpose of Rope).
func RopeBackward(g []float32, n, heads, hd int, pos []int32, cos, sin []float32, rot int) {
	half := rot / 2
	rows(n, heads*hd, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p := int(pos[i])
			c, s := cos[p*hd:p*hd+hd], sin[p*hd:p*hd+hd]
			for h := 0; h < heads; h++ {
				v := g[(i*heads+h)*hd : (i*heads+h+1)*hd]
				for j := 0; j < half; j++ {
					a, b := v[j], v[j+half]
					v[j] = a*c[j] + b*s[j+half]
					v[j+half] = b*c[j+half] - a*s[j]
				}
			}
		}
	})
}

// SwiGLU computes a = silu(g)·u elementwise.
func SwiGLU(a, g, u []float32) {
	rows(len(a), 1, func(lo, hi int) {
		cpu.SiLUMul(a[lo:hi], g[lo:hi], u[lo:hi])
	})
}

// SwiGLUBackward writes dg and du (overwrite) from da.
func SwiGLUBackward(dg, du, da, g, u []float32) {
	rows(len(da), 1, func(lo, hi int) {
		cpu.SiLUMulBackward(dg[lo:hi], du[lo:hi], da[lo:hi], g[lo:hi], u[lo:hi])
	})
}

// AddBias adds b to each of n rows.
func AddBias(y, b []float32, n int) {
	d := len(b)
	rows(n, d, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			yr := y[i*d : (i+1)*d]
			for j, v := range b {
				yr[j] += v
			}
		}
	})
}

// BiasBackward accumulates the column sums of dy (n rows) into db.
func BiasBackward(db, dy []float32, n int) {
	d := len(db)
	acc := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, v := range dy[i*d : (i+1)*d] {
			acc[j] += float64(v)
		}
	}
	for j := range db {
		db[j] += float32(acc[j])
	}
}

// AddTo writes dst = a + b elementwise.
func AddTo(dst, a, b []float32) {
	rows(len(dst), 1, func(lo, hi int) {
		d, x, y := dst[lo:hi], a[lo:hi], b[lo:hi]
		for i := range d {
			d[i] = x[i] + y[i]
		}
	})
}

// Add computes dst += src.
func Add(dst, src []float32) {
	rows(len(dst), 1, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i, v := range s {
			d[i] += v
		}
	})
}
