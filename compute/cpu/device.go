package cpu

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Device is the CPU as a compute.Backend: tensors are host slices, held
// behind the seam like any device's memory, and the operations run on this
// package's kernels (the same Sgemm, exponentials and SwiGLU the CPU trainer
// uses), split over Threads() cores. Operations run synchronously, so Sync
// only reports the first failure.
//
// bf16 tensors hold float32 values rounded to bfloat16 on every store, as
// the reference backend does: the arithmetic is the GPU's. The exception is
// a frozen bf16 weight wrapped by WrapBF16 (bf16.go): held in 16 bits, read
// in place by the products, refused by every other operation.
type Device struct {
	mu   sync.Mutex
	err  error
	mem  hostmem.Memory
	prof map[string]*compute.OpTime // while profiling
}

// StartProfile begins timing every operation (they run synchronously, so
// the wall time of each call is its cost).
func (d *Device) StartProfile() {
	d.mu.Lock()
	d.prof = map[string]*compute.OpTime{}
	d.mu.Unlock()
}

// StopProfile returns the time per kind of operation, largest first.
func (d *Device) StopProfile() []compute.OpTime {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]compute.OpTime, 0, len(d.prof))
	for _, t := range d.prof {
		out = append(out, *t)
	}
	d.prof = nil
	sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
	return out
}

// timed starts timing one operation of kind op when profiling; the
// returned function ends it.
func (d *Device) timed(op string) func() {
	if d.prof == nil {
		return func() {}
	}
	start := time.Now()
	return func() {
		ms := float64(time.Since(start).Microseconds()) / 1000
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.prof == nil {
			return
		}
		t := d.prof[op]
		if t == nil {
			t = &compute.OpTime{Op: op}
			d.prof[op] = t
		}
		t.Calls++
		t.MS += ms
	}
}

// Open returns the CPU backend.
func Open() *Device { return &Device{} }

type tensor struct {
	hostmem.Slices
	d       *Device
	release func() // owned storage: gives it back; nil for views and wraps
}

func (t *tensor) Slice(off, n int) compute.Tensor {
	return &tensor{Slices: t.Sub(off, n), d: t.d}
}

func (t *tensor) Free() {
	if t.release != nil {
		t.release()
		t.release = nil
		t.Slices = hostmem.Slices{DT: t.DT}
	}
}

func (d *Device) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

// Name is "cpu".
func (d *Device) Name() string { return "cpu" }

// Err returns the first failure.
func (d *Device) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Sync returns the first failure: every operation has finished on return.
func (d *Device) Sync() error { return d.Err() }

// MemStats counts the bytes of tensors allocated and not freed.
func (d *Device) MemStats() compute.MemStats { return d.mem.Stats() }

// Alloc returns a zeroed tensor of n elements.
func (d *Device) Alloc(dt compute.DType, n int) (compute.Tensor, error) {
	s, release, err := d.mem.Alloc("cpu", dt, n)
	if err != nil {
		return nil, err
	}
	return &tensor{Slices: s, d: d, release: release}, nil
}

// Wrap is an F32 tensor over src, without a copy (compute.HostBackend).
func (d *Device) Wrap(src []float32) compute.Tensor {
	return &tensor{Slices: hostmem.Slices{DT: compute.F32, F: src}, d: d}
}

// WrapBytes is a U8 tensor over src, without a copy.
func (d *Device) WrapBytes(src []byte) compute.Tensor {
	return &tensor{Slices: hostmem.Slices{DT: compute.U8, U: src}, d: d}
}

// Floats is the memory of an F32 tensor (compute.HostBackend).
func (d *Device) Floats(t compute.Tensor) []float32 {
	x := raw(t)
	if x.DT != compute.F32 || x.Half() {
		panic(fmt.Sprintf("cpu: Floats of a %v tensor", x.DT))
	}
	return x.F
}

// tt is x as this backend's tensor in float memory; any other kind is a
// programming error in the caller (a tensor of another backend passed
// through the seam). A tensor held in 16 bits (WrapBF16) fails the device
// (see refuseHalf): the operations reading tt's result know only F.
func tt(x compute.Tensor) *tensor {
	v := raw(x)
	if v != nil && v.Half() {
		return refuseHalf(v)
	}
	return v
}

// raw is x as this backend's tensor, whatever its storage: for the
// operations that read 16-bit bf16 weights in place.
func raw(x compute.Tensor) *tensor {
	if x == nil {
		return nil
	}
	v, ok := x.(*tensor)
	if !ok {
		panic(fmt.Sprintf("cpu: a %T was passed where this backend's memory is needed", x))
	}
	return v
}

// stored rounds what an operation wrote into t when t is bf16.
func stored(t *tensor) {
	if t == nil || t.DT != compute.BF16 {
		return
	}
	Parallel(len(t.F), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t.F[i] = hostmem.RoundBF16(t.F[i])
		}
	})
}

// elementwise runs fn over [0,n) in chunks on every core.
func elementwise(n int, fn func(lo, hi int)) { Parallel(n, 1<<14, fn) }

// rowwise runs fn over rows of width d, giving each goroutine about 16k
// elements.
func rowwise(rows, d int, fn func(lo, hi int)) {
	Parallel(rows, max(1, (1<<14)/max(d, 1)), fn)
}

// Upload copies src into dst.
func (d *Device) Upload(dst compute.Tensor, src []float32) {
	defer d.timed("upload")()
	t := raw(dst)
	if t.Half() {
		if err := t.SetHalf(src); err != nil {
			d.fail(fmt.Errorf("cpu: %w", err))
		}
		return
	}
	if (t.DT != compute.F32 && t.DT != compute.BF16) || len(src) != len(t.F) {
		d.fail(fmt.Errorf("cpu: upload of %d values into %v×%d", len(src), t.DT, t.Len()))
		return
	}
	copy(t.F, src)
	stored(t)
}

// UploadInt copies src into an I32 tensor.
func (d *Device) UploadInt(dst compute.Tensor, src []int32) {
	if err := tt(dst).SetInts(src); err != nil {
		d.fail(fmt.Errorf("cpu: %w", err))
	}
}

// UploadBytes copies src into a U8 tensor.
func (d *Device) UploadBytes(dst compute.Tensor, src []byte) {
	if err := tt(dst).SetBytes(src); err != nil {
		d.fail(fmt.Errorf("cpu: %w", err))
	}
}

// Download copies src into dst, widening integers to float32.
func (d *Device) Download(dst []float32, src compute.Tensor) error {
	defer d.timed("download")()
	if err := raw(src).Get(dst); err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	return d.Err()
}

// Zero clears t.
func (d *Device) Zero(x compute.Tensor) {
	defer d.timed("zero")()
	raw(x).Clear()
}

// Fill sets every element of t to v.
func (d *Device) Fill(x compute.Tensor, v float32) {
	defer d.timed("fill")()
	t := tt(x)
	if t.DT == compute.BF16 {
		v = hostmem.RoundBF16(v)
	}
	elementwise(len(t.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t.F[i] = v
		}
	})
}

// Gemm is Sgemm on the backend's tensors.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda int, b compute.Tensor, ldb int, beta float32, c compute.Tensor, ldc int) {
	d.GemmBatched(transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1)
}

// GemmBatched runs batch products at fixed strides: side by side, one core
// each, when there are at least as many products as cores, else one after
// another on every core.
func (d *Device) GemmBatched(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda, strideA int, b compute.Tensor, ldb, strideB int, beta float32, c compute.Tensor, ldc, strideC, batch int) {
	op := "gemm"
	switch {
	case batch > 1:
		op = "gemm_batched"
	case min(m, n, k) <= 64:
		op = "gemm_thin"
	}
	defer d.timed(op)()
	// B may be a bf16 weight held in 16 bits, widened as it is packed.
	A, B, C := tt(a), raw(b), tt(c)
	if A.F == nil && A.Len() > 0 || B.F == nil && B.H == nil && B.Len() > 0 || C.F == nil && C.Len() > 0 {
		d.fail(fmt.Errorf("cpu: gemm of %v by %v into %v", A.DT, B.DT, C.DT))
		return
	}
	// The extent of one operand as its shape and stride read it: slicing to
	// it keeps Sgemm's bounds checks meaningful for the last product.
	extent := func(rows, cols, ld int) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		return (rows-1)*ld + cols
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	ea, eb, ec := extent(ar, ac, lda), extent(br, bc, ldb), extent(m, n, ldc)
	one := func(q, threads int) {
		a, c := A.F[q*strideA:q*strideA+ea], C.F[q*strideC:q*strideC+ec]
		if B.Half() {
			SgemmBF16BOn(threads, transA, transB, m, n, k, alpha, a, lda, B.H[q*strideB:q*strideB+eb], ldb, beta, c, ldc)
			return
		}
		SgemmOn(threads, transA, transB, m, n, k, alpha, a, lda, B.F[q*strideB:q*strideB+eb], ldb, beta, c, ldc)
	}
	if th := Threads(); batch >= th && th > 1 {
		Parallel(batch, 1, func(lo, hi int) {
			for q := lo; q < hi; q++ {
				one(q, 1)
			}
		})
	} else {
		for q := 0; q < batch; q++ {
			one(q, th)
		}
	}
	if C.DT == compute.BF16 {
		for q := 0; q < batch; q++ {
			stored(&tensor{Slices: hostmem.Slices{DT: compute.BF16, F: C.F[q*strideC : q*strideC+ec]}})
		}
	}
}

// GemmSum computes C = t1 + t2 + beta·C with SgemmSum: the second product
// block by block right after the first, while C's block is in cache.
func (d *Device) GemmSum(m, n int, t1, t2 compute.GemmTerm, beta float32, c compute.Tensor, ldc int) {
	defer d.timed("gemm_sum")()
	C := tt(c)
	term := func(t compute.GemmTerm) Term {
		B := raw(t.B) // may be a bf16 weight held in 16 bits
		return Term{TransA: t.TransA, TransB: t.TransB, K: t.K, Alpha: t.Alpha, A: tt(t.A).F, LDA: t.LDA, B: B.F, BH: B.H, LDB: t.LDB}
	}
	SgemmSum(m, n, beta, C.F, ldc, term(t1), term(t2))
	stored(C)
}

// Cast copies src into dst, rounding when dst is bf16.
func (d *Device) Cast(dst, src compute.Tensor) {
	defer d.timed("cast")()
	D, S := tt(dst), raw(src)
	if S.Half() {
		widen(D.F, S.H)
	} else {
		copy(D.F, S.F)
	}
	stored(D)
}

// Add writes dst = a + b.
func (d *Device) Add(dst, a, b compute.Tensor) {
	defer d.timed("add")()
	D, X, Y := tt(dst), tt(a), tt(b)
	elementwise(len(D.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			D.F[i] = X.F[i] + Y.F[i]
		}
	})
	stored(D)
}

// Axpby computes y = beta·y + alpha·x.
func (d *Device) Axpby(y compute.Tensor, alpha float32, x compute.Tensor, beta float32) {
	defer d.timed("axpby")()
	Y, X := tt(y), raw(x)
	if X.Half() {
		d.axpbyHalf(Y, alpha, X.H, beta)
		return
	}
	elementwise(len(Y.F), func(lo, hi int) {
		if beta == 0 {
			for i := lo; i < hi; i++ {
				Y.F[i] = alpha * X.F[i]
			}
			return
		}
		for i := lo; i < hi; i++ {
			Y.F[i] = beta*Y.F[i] + alpha*X.F[i]
		}
	})
	stored(Y)
}

// Dropout applies the mask m to src.
func (d *Device) Dropout(dst, src compute.Tensor, m compute.DropoutMask, accumulate bool) {
	defer d.timed("dropout")()
	D, S := tt(dst), tt(src)
	elementwise(len(D.F), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var v float32
			if compute.DropoutKeeps(m.Seed, m.Thresh, i) {
				v = S.F[i] * m.Keep
			}
			if accumulate {
				v += D.F[i]
			}
			D.F[i] = v
		}
	})
	stored(D)
}

// SwiGLU writes a = silu(g)·u.
func (d *Device) SwiGLU(a, g, u compute.Tensor) {
	defer d.timed("swi_glu")()
	A, G, U := tt(a), tt(g), tt(u)
	elementwise(len(A.F), func(lo, hi int) { SiLUMul(A.F[lo:hi], G.F[lo:hi], U.F[lo:hi]) })
	stored(A)
}

// SwiGLUBackward is SwiGLU's gradient.
func (d *Device) SwiGLUBackward(dg, du, da, g, u compute.Tensor) {
	defer d.timed("swi_glubackward")()
	DG, DU, DA, G, U := tt(dg), tt(du), tt(da), tt(g), tt(u)
	elementwise(len(DA.F), func(lo, hi int) {
		SiLUMulBackward(DG.F[lo:hi], DU.F[lo:hi], DA.F[lo:hi], G.F[lo:hi], U.F[lo:hi])
	})
	stored(DG)
	stored(DU)
}

// normWeight is w + wadd, the factor RMSNorm applies ((1+w) for Gemma).
func normWeight(w *tensor, d int, wadd float32) []float32 {
	if wadd == 0 {
		return w.F[:d]
	}
	out := make([]float32, d)
	for j := range out {
		out[j] = w.F[j] + wadd
	}
	return out
}

// RMSNorm normalises rows: y = x·rstd·(w + wadd), the sum of squares by the
// dot-product kernel as the CPU trainer computes it.
func (d *Device) RMSNorm(y, rstd, x, w compute.Tensor, rows, dim int, eps, wadd float32) {
	defer d.timed("rmsnorm")()
	Y, R, X := tt(y), tt(rstd), tt(x)
	wv := normWeight(tt(w), dim, wadd)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := X.F[r*dim:(r+1)*dim], Y.F[r*dim:(r+1)*dim]
			ss := Dot(xr, xr)
			rs := float32(1 / math.Sqrt(float64(ss/float32(dim))+float64(eps)))
			R.F[r] = rs
			for j, v := range xr {
				yr[j] = wv[j] * (v * rs)
			}
		}
	})
	stored(Y)
	stored(R)
}

// RMSNormBackward is RMSNorm's input gradient.
func (d *Device) RMSNormBackward(dx, dy, x, w, rstd compute.Tensor, rows, dim int, wadd float32, accumulate bool) {
	defer d.timed("rmsnorm_backward")()
	DX, DY, X, R := tt(dx), tt(dy), tt(x), tt(rstd)
	wv := normWeight(tt(w), dim, wadd)
	rowwise(rows, dim, func(lo, hi int) {
		gw := make([]float32, dim)
		for r := lo; r < hi; r++ {
			o := r * dim
			xr, gr, dxr := X.F[o:o+dim], DY.F[o:o+dim], DX.F[o:o+dim]
			for j, g := range gr {
				gw[j] = g * wv[j]
			}
			rs := R.F[r]
			c := Dot(gw, xr) * rs * rs / float32(dim)
			if accumulate {
				for j, v := range xr {
					dxr[j] += rs * (gw[j] - v*c)
				}
			} else {
				for j, v := range xr {
					dxr[j] = rs * (gw[j] - v*c)
				}
			}
		}
	})
	stored(DX)
}

// columns runs fn over column blocks of a rows×dim matrix: each block's
// column sums add rows in order, so the result does not depend on the
// number of cores.
func columns(rows, dim int, fn func(lo, hi int)) {
	Parallel(dim, max(16, (1<<16)/max(rows, 1)), fn)
}

// RMSNormWeightGrad accumulates dw += Σ_rows dy·x·rstd: blocks of rows sum
// their share in float32, the shares are added in block order (the same
// bits on any number of cores).
func (d *Device) RMSNormWeightGrad(dw, dy, x, rstd compute.Tensor, rows, dim int) {
	defer d.timed("rmsnorm_weight_grad")()
	DW, DY, X, R := tt(dw), tt(dy), tt(x), tt(rstd)
	const block = 64
	nb := (rows + block - 1) / block
	parts := make([]float32, nb*dim)
	Parallel(nb, 1, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			part := parts[b*dim : (b+1)*dim]
			for r := b * block; r < min((b+1)*block, rows); r++ {
				o := r * dim
				xr, gr, rs := X.F[o:o+dim], DY.F[o:o+dim], R.F[r]
				for j, g := range gr {
					part[j] += g * xr[j] * rs
				}
			}
		}
	})
	for b := 0; b < nb; b++ {
		Axpy(1, parts[b*dim:(b+1)*dim], DW.F[:dim])
	}
	stored(DW)
}

// AddBias adds b to every row of y.
func (d *Device) AddBias(y, b compute.Tensor, rows, dim int) {
	defer d.timed("add_bias")()
	Y, B := tt(y), tt(b)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr := Y.F[r*dim : (r+1)*dim]
			for j := range yr {
				yr[j] += B.F[j]
			}
		}
	})
	stored(Y)
}

// BiasGrad accumulates db += Σ_rows dy.
func (d *Device) BiasGrad(db, dy compute.Tensor, rows, dim int) {
	defer d.timed("bias_grad")()
	DB, DY := tt(db), tt(dy)
	columns(rows, dim, func(lo, hi int) {
		s := make([]float64, hi-lo)
		for r := 0; r < rows; r++ {
			o := r * dim
			for j := lo; j < hi; j++ {
				s[j-lo] += float64(DY.F[o+j])
			}
		}
		for j := lo; j < hi; j++ {
			DB.F[j] += float32(s[j-lo])
		}
	})
	stored(DB)
}

// ScaleCols writes y[r,j] = x[r,j]·s[j].
func (d *Device) ScaleCols(y, x, s compute.Tensor, rows, dim int) {
	defer d.timed("scale_cols")()
	Y, X, S := tt(y), tt(x), tt(s)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := r * dim
			for j := 0; j < dim; j++ {
				Y.F[o+j] = X.F[o+j] * S.F[j]
			}
		}
	})
	stored(Y)
}

// ScaleRows writes y[r,j] = x[r,j]·s[r].
func (d *Device) ScaleRows(y, x, s compute.Tensor, rows, dim int) {
	defer d.timed("scale_rows")()
	Y, X, S := tt(y), tt(x), tt(s)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := r * dim
			for j := 0; j < dim; j++ {
				Y.F[o+j] = X.F[o+j] * S.F[r]
			}
		}
	})
	stored(Y)
}

// ColDot accumulates dst[j] += Σ_r a[r,j]·b[r,j].
func (d *Device) ColDot(dst, a, b compute.Tensor, rows, dim int) {
	defer d.timed("col_dot")()
	D, X, Y := tt(dst), tt(a), tt(b)
	columns(rows, dim, func(lo, hi int) {
		s := make([]float64, hi-lo)
		for r := 0; r < rows; r++ {
			o := r * dim
			for j := lo; j < hi; j++ {
				s[j-lo] += float64(X.F[o+j]) * float64(Y.F[o+j])
			}
		}
		for j := lo; j < hi; j++ {
			D.F[j] += float32(s[j-lo])
		}
	})
	stored(D)
}

// DoRAScale writes inv = 1/√norm2 and scale = m·inv.
func (d *Device) DoRAScale(scale, inv, m, norm2 compute.Tensor, n int) {
	defer d.timed("do_rascale")()
	S, I, M, N := tt(scale), tt(inv), tt(m), tt(norm2)
	for i := 0; i < n; i++ {
		v := 1 / math.Sqrt(float64(N.F[i]))
		I.F[i] = float32(v)
		S.F[i] = float32(float64(M.F[i]) * v)
	}
	stored(S)
	stored(I)
}

// RowDot writes out[r] = Σ_j a[r,j]·b[r,j].
func (d *Device) RowDot(out, a, b compute.Tensor, rows, dim int) {
	defer d.timed("row_dot")()
	O, X, Y := tt(out), tt(a), tt(b)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			O.F[r] = Dot(X.F[r*dim:(r+1)*dim], Y.F[r*dim:(r+1)*dim])
		}
	})
	stored(O)
}

func posOf(p *tensor, bt, t int) int {
	if p == nil {
		return t
	}
	return int(p.I[bt])
}

// RopeSplit rotates token-major src into head-major dst.
func (d *Device) RopeSplit(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot int) {
	d.RopeSplitInto(dst, src, pos, cos, sin, b, t, heads, hd, rot, t, 0)
}

// RopeSplitInto is RopeSplit into steps [dstOff, dstOff+t) of a cache of
// dstT steps per head.
func (d *Device) RopeSplitInto(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot, dstT, dstOff int) {
	defer d.timed("rope_split")()
	D, S, P, C, SN := tt(dst), tt(src), tt(pos), tt(cos), tt(sin)
	half := rot / 2
	rowwise(b*t, heads*hd, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			bi, ti := bt/t, bt%t
			p := posOf(P, bt, ti)
			c, s := C.F[p*hd:(p+1)*hd], SN.F[p*hd:(p+1)*hd]
			for h := 0; h < heads; h++ {
				x := S.F[(bt*heads+h)*hd:][:hd]
				o := ((bi*heads+h)*dstT + dstOff + ti) * hd
				y := D.F[o : o+hd]
				for j := 0; j < half; j++ {
					y[j] = x[j]*c[j] - x[j+half]*s[j]
				}
				for j := half; j < rot; j++ {
					y[j] = x[j]*c[j] + x[j-half]*s[j]
				}
				copy(y[rot:], x[rot:])
			}
		}
	})
	stored(D)
}

// RopeMerge is RopeSplit's transpose.
func (d *Device) RopeMerge(dst, src, pos, cos, sin compute.Tensor, b, t, heads, hd, rot int, accumulate bool) {
	defer d.timed("rope_merge")()
	D, S, P, C, SN := tt(dst), tt(src), tt(pos), tt(cos), tt(sin)
	half := rot / 2
	rowwise(b*t, heads*hd, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			bi, ti := bt/t, bt%t
			p := posOf(P, bt, ti)
			c, s := C.F[p*hd:(p+1)*hd], SN.F[p*hd:(p+1)*hd]
			for h := 0; h < heads; h++ {
				x := S.F[((bi*heads+h)*t+ti)*hd:][:hd]
				y := D.F[(bt*heads+h)*hd:][:hd]
				if !accumulate {
					clear(y)
				}
				for j := 0; j < half; j++ {
					y[j] += x[j]*c[j] + x[j+half]*s[j+half]
				}
				for j := half; j < rot; j++ {
					y[j] += x[j]*c[j] - x[j-half]*s[j-half]
				}
				for j := rot; j < hd; j++ {
					y[j] += x[j]
				}
			}
		}
	})
	stored(D)
}

// attnRange is the keys [lo, hi) query i may see by position: causal (j ≤
// off+i) and, with window > 0, off+i−j < window.
func attnRange(i, tk, off, window int) (lo, hi int) {
	hi = min(tk, off+i+1)
	if window > 0 {
		lo = max(0, off+i-window+1)
	}
	return lo, max(lo, hi)
}

// attnMask writes into keep[j] whether query i of sequence b may attend to
// key lo+j: not a padding key, same packed segment (the range already
// causal and windowed). It reports whether any key is hidden.
func attnMask(keep []bool, b, i, lo, tq, tk int, km, qs, ks *tensor) bool {
	hidden := false
	for j := range keep {
		ok := true
		if km != nil && km.I[b*tk+lo+j] == 0 {
			ok = false
		}
		if ok && qs != nil && qs.I[b*tq+i] != ks.I[b*tk+lo+j] {
			ok = false
		}
		keep[j] = ok
		hidden = hidden || !ok
	}
	return hidden
}

// capScore is the score the softmax sees: c·tanh(s/c) when c > 0.
func capScore(s, c float32) float32 {
	if c <= 0 {
		return s
	}
	return float32(float64(c) * math.Tanh(float64(s)/float64(c)))
}

// AttnSoftmax turns scaled scores into masked probabilities, saving lse.
func (d *Device) AttnSoftmax(p, lse, s, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	d.AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg, b, h, tq, tk, off, 0, 0)
}

// AttnSoftmaxWindowed is AttnSoftmax with a soft cap on the scores and a
// sliding window. Only the keys a query may see by position are touched.
func (d *Device) AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off, window int, softcap float32) {
	defer d.timed("attn_softmax")()
	P, L, S, KM, QS, KS := tt(p), tt(lse), tt(s), tt(kmask), tt(qseg), tt(kseg)
	rowwise(b*h*tq, tk, func(rlo, rhi int) {
		keep := make([]bool, tk)
		for r := rlo; r < rhi; r++ {
			bi, i := r/(h*tq), r%tq
			lo, hi := attnRange(i, tk, off, window)
			sr, pr := S.F[r*tk+lo:r*tk+hi], P.F[r*tk:(r+1)*tk]
			masked := (KM != nil || QS != nil) && attnMask(keep[:hi-lo], bi, i, lo, tq, tk, KM, QS, KS)
			clear(pr[:lo])
			clear(pr[hi:])
			pr = pr[lo:hi]
			mx := float32(math.Inf(-1))
			for j, v := range sr {
				if masked && !keep[j] {
					pr[j] = float32(math.Inf(-1))
					continue
				}
				v = capScore(v, softcap)
				pr[j] = v
				mx = max(mx, v)
			}
			if math.IsInf(float64(mx), -1) {
				L.F[r] = mx
				clear(pr)
				continue
			}
			sum := ExpSubSum(pr, pr, mx)
			L.F[r] = mx + float32(math.Log(sum))
			Scale(float32(1/sum), pr)
		}
	})
	stored(P)
	stored(L)
}

// AttnSoftmaxBackward recomputes the probabilities from lse and writes the
// score gradient ds = p·(dp − dsum).
func (d *Device) AttnSoftmaxBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off int) {
	d.AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg, b, h, tq, tk, off, 0, 0)
}

// AttnSoftmaxWindowedBackward is AttnSoftmaxBackward through the soft cap:
// ds = p·(dp − dsum)·(1 − t²), t = tanh(s/softcap).
func (d *Device) AttnSoftmaxWindowedBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, b, h, tq, tk, off, window int, softcap float32) {
	defer d.timed("attn_softmax_backward")()
	P, DS, S, DP, L, D, KM, QS, KS := tt(p), tt(ds), tt(s), tt(dp), tt(lse), tt(dsum), tt(kmask), tt(qseg), tt(kseg)
	rowwise(b*h*tq, tk, func(rlo, rhi int) {
		keep := make([]bool, tk)
		for r := rlo; r < rhi; r++ {
			bi, i := r/(h*tq), r%tq
			l := L.F[r]
			lo, hi := attnRange(i, tk, off, window)
			pr, dsr := P.F[r*tk:(r+1)*tk], DS.F[r*tk:(r+1)*tk]
			clear(pr[:lo])
			clear(pr[hi:])
			clear(dsr[:lo])
			clear(dsr[hi:])
			if math.IsInf(float64(l), -1) {
				clear(pr)
				clear(dsr)
				continue
			}
			masked := (KM != nil || QS != nil) && attnMask(keep[:hi-lo], bi, i, lo, tq, tk, KM, QS, KS)
			sr, dpr := S.F[r*tk+lo:r*tk+hi], DP.F[r*tk+lo:r*tk+hi]
			pr, dsr = pr[lo:hi], dsr[lo:hi]
			for j, v := range sr {
				if masked && !keep[j] {
					pr[j] = float32(math.Inf(-1))
				} else {
					pr[j] = capScore(v, softcap)
				}
			}
			ExpSubSum(pr, pr, l)
			if P.DT == compute.BF16 {
				for j := range pr {
					pr[j] = hostmem.RoundBF16(pr[j])
				}
			}
			dr := D.F[r]
			for j := range dsr {
				g := pr[j] * (dpr[j] - dr)
				if softcap > 0 && pr[j] != 0 {
					t := capScore(sr[j], softcap) / softcap
					g *= 1 - t*t
				}
				dsr[j] = g
			}
		}
	})
	stored(DS)
}

// CrossEntropy writes each row's loss and, with grad, scale·(softmax −
// onehot).
func (d *Device) CrossEntropy(loss, grad, logits, targets compute.Tensor, rows, vocab int, scale float32) {
	defer d.timed("cross_entropy")()
	L, G, X, T := tt(loss), tt(grad), tt(logits), tt(targets)
	Parallel(rows, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := X.F[r*vocab : (r+1)*vocab]
			mx := MaxF32(xr)
			var gr []float32
			if G != nil {
				gr = G.F[r*vocab : (r+1)*vocab]
			}
			sum := ExpSubSum(gr, xr, mx)
			t := int(T.I[r])
			L.F[r] = float32(float64(mx) + math.Log(sum) - float64(xr[t]))
			if gr == nil {
				continue
			}
			Scale(float32(float64(scale)/sum), gr)
			gr[t] -= scale
		}
	})
	stored(L)
	stored(G)
}

// GatherRows copies rows idx[r] of src into row r of dst.
func (d *Device) GatherRows(dst, src, idx compute.Tensor, rows, dim int) {
	defer d.timed("gather_rows")()
	D, S, I := tt(dst), raw(src), tt(idx)
	rowwise(rows, dim, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			k := int(I.I[r])
			if S.Half() {
				widenBF16(D.F[r*dim:(r+1)*dim], S.H[k*dim:(k+1)*dim])
				continue
			}
			copy(D.F[r*dim:(r+1)*dim], S.F[k*dim:(k+1)*dim])
		}
	})
	stored(D)
}

// ScatterAddRows adds row r of src into row idx[r] of dst, rows in order
// (ids repeat, so the work is split by columns).
func (d *Device) ScatterAddRows(dst, src, idx compute.Tensor, rows, dim int) {
	defer d.timed("scatter_add_rows")()
	D, S, I := tt(dst), tt(src), tt(idx)
	columns(rows, dim, func(lo, hi int) {
		for r := 0; r < rows; r++ {
			k := int(I.I[r])
			Axpy(1, S.F[r*dim+lo:r*dim+hi], D.F[k*dim+lo:k*dim+hi])
		}
	})
	stored(D)
}

// EmbeddingBackward adds the rows of dx into the table at ids.
func (d *Device) EmbeddingBackward(table, dx, ids compute.Tensor, rows, dim int) {
	d.ScatterAddRows(table, dx, ids, rows, dim)
}

// Dequantize4 expands 4-bit codes, high nibble first.
func (d *Device) Dequantize4(dst, packed, scales, code compute.Tensor, n, block int) {
	defer d.timed("dequantize4")()
	D, P, S, C := tt(dst), tt(packed), tt(scales), tt(code)
	// Both values of every byte, looked up at once.
	var pairs [256][2]float32
	for q := range pairs {
		pairs[q] = [2]float32{C.F[q>>4], C.F[q&15]}
	}
	one := func(e int) float32 {
		q := P.U[e>>1] >> 4
		if e&1 == 1 {
			q = P.U[e>>1] & 15
		}
		return C.F[q] * S.F[e/block]
	}
	blocks := (n + block - 1) / block
	Parallel(blocks, max(1, (1<<14)/block), func(lo, hi int) {
		for b := lo; b < hi; b++ {
			e0, e1 := b*block, min((b+1)*block, n)
			s := S.F[b]
			e := e0
			if e&1 == 1 { // a block starting inside a byte
				D.F[e] = one(e)
				e++
			}
			out := D.F[e:e1]
			in := P.U[e>>1 : (e1)>>1]
			for i, q := range in {
				p := &pairs[q]
				out[2*i] = p[0] * s
				out[2*i+1] = p[1] * s
			}
			if e1&1 == 1 && e1-e > 2*len(in) {
				D.F[e1-1] = one(e1 - 1)
			}
		}
	})
	stored(D)
}

// Dequantize8 expands signed 8-bit codes a block at a time.
func (d *Device) Dequantize8(dst, q, scales compute.Tensor, n, block int) {
	defer d.timed("dequantize8")()
	D, Q, S := tt(dst), tt(q), tt(scales)
	blocks := (n + block - 1) / block
	Parallel(blocks, max(1, (1<<14)/block), func(lo, hi int) {
		for b := lo; b < hi; b++ {
			e0, e1 := b*block, min((b+1)*block, n)
			s := S.F[b]
			out := D.F[e0:e1]
			for i, c := range Q.U[e0:e1] {
				out[i] = float32(int8(c)) * s
			}
		}
	})
	stored(D)
}

// AdamW updates p with gradient g and moments m, v (and the shadow with the
// new weights), on the AVX-512 or AVX2 kernel where the CPU has one
// (adamw_amd64.s), bit-identical to the Go loop adamWSlices.
func (d *Device) AdamW(p, g, m, v, shadow compute.Tensor, s compute.AdamStep) {
	defer d.timed("adam_w")()
	P, G, M, V, SH := tt(p), tt(g), tt(m), tt(v), tt(shadow)
	var sh []float32
	mode := shadowNone
	if SH != nil {
		sh, mode = SH.F, shadowF32
		if SH.DT == compute.BF16 {
			mode = shadowBF16
		}
	}
	if err := adamW(bestAdamW(), P.F, G.F, M.F, V.F, sh, mode, s); err != nil {
		d.fail(fmt.Errorf("cpu: %w", err))
	}
}

// SumSquares returns Σx² of each f32 tensor.
func (d *Device) SumSquares(ts []compute.Tensor) ([]float64, error) {
	defer d.timed("sum_squares")()
	out := make([]float64, len(ts))
	for k, x := range ts {
		t := tt(x)
		if t.DT != compute.F32 {
			return nil, errors.New("cpu: sum of squares of a non-f32 tensor")
		}
		out[k] = sumSquares(t.F)
	}
	return out, nil
}

// sumSquares adds chunks of 4096 in float32 (the dot kernel), the chunks in
// float64, in a fixed order.
func sumSquares(x []float32) float64 {
	const chunk = 4096
	n := (len(x) + chunk - 1) / chunk
	parts := make([]float64, n)
	Parallel(n, 16, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			v := x[c*chunk : min((c+1)*chunk, len(x))]
			parts[c] = float64(Dot(v, v))
		}
	})
	var s float64
	for _, v := range parts {
		s += v
	}
	return s
}

var (
	_ compute.Backend     = (*Device)(nil)
	_ compute.HostBackend = (*Device)(nil)
)
