// Package ref is a reference compute.Backend: plain Go loops, no speed. Its
// tensors live in its own memory, reachable only through the Backend, so a
// caller that slips host slices through the seam fails against it just as it
// would against a GPU. bf16 tensors hold float32 values rounded to bfloat16
// on every store, as a GPU's would.
package ref

import (
	"errors"
	"fmt"
	"math"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// Backend is the reference backend.
type Backend struct {
	err error
	mem hostmem.Memory
}

// New returns a reference backend.
func New() *Backend { return &Backend{} }

type tensor struct {
	hostmem.Slices
	b       *Backend
	release func() // owned storage: gives it back; nil for views
}

func (t *tensor) Slice(off, n int) compute.Tensor {
	return &tensor{Slices: t.Sub(off, n), b: t.b}
}

func (t *tensor) Free() {
	if t.release != nil {
		t.release()
		t.release = nil
		t.Slices = hostmem.Slices{DT: t.DT}
	}
}

func (b *Backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Backend) Name() string { return "ref" }
func (b *Backend) Err() error   { return b.err }
func (b *Backend) Sync() error  { return b.err }

func (b *Backend) MemStats() compute.MemStats { return b.mem.Stats() }

func (b *Backend) Alloc(dt compute.DType, n int) (compute.Tensor, error) {
	s, release, err := b.mem.Alloc("ref", dt, n)
	if err != nil {
		return nil, err
	}
	return &tensor{Slices: s, b: b, release: release}, nil
}

func tt(x compute.Tensor) *tensor {
	if x == nil {
		return nil
	}
	v, ok := x.(*tensor)
	if !ok {
		panic(fmt.Sprintf("ref: a %T was passed where this backend's memory is needed", x))
	}
	return v
}

func (t *tensor) set(i int, v float64) {
	f := float32(v)
	if t.DT == compute.BF16 {
		f = hostmem.RoundBF16(f)
	}
	t.F[i] = f
}

func (t *tensor) get(i int) float64 { return float64(t.F[i]) }

func (b *Backend) Upload(dst compute.Tensor, src []float32) {
	t := tt(dst)
	if len(src) != len(t.F) {
		b.fail(fmt.Errorf("ref: upload of %d values into %d", len(src), len(t.F)))
		return
	}
	for i, v := range src {
		t.set(i, float64(v))
	}
}

func (b *Backend) UploadInt(dst compute.Tensor, src []int32) {
	if err := tt(dst).SetInts(src); err != nil {
		b.fail(fmt.Errorf("ref: %w", err))
	}
}

func (b *Backend) UploadBytes(dst compute.Tensor, src []byte) {
	if err := tt(dst).SetBytes(src); err != nil {
		b.fail(fmt.Errorf("ref: %w", err))
	}
}

func (b *Backend) Dequantize4(dst, packed, scales, code compute.Tensor, n, block int) {
	D, P, S, C := tt(dst), tt(packed), tt(scales), tt(code)
	for e := 0; e < n; e++ {
		q := P.U[e>>1] >> 4
		if e&1 == 1 {
			q = P.U[e>>1] & 15
		}
		D.set(e, float64(C.F[q]*S.F[e/block]))
	}
}

func (b *Backend) Dequantize8(dst, q, scales compute.Tensor, n, block int) {
	D, Q, S := tt(dst), tt(q), tt(scales)
	for e := 0; e < n; e++ {
		D.set(e, float64(float32(int8(Q.U[e]))*S.F[e/block]))
	}
}

func (b *Backend) Download(dst []float32, src compute.Tensor) error {
	if err := tt(src).Get(dst); err != nil {
		return fmt.Errorf("ref: %w", err)
	}
	return b.err
}

func (b *Backend) Zero(x compute.Tensor) { tt(x).Clear() }

func (b *Backend) Fill(x compute.Tensor, v float32) {
	t := tt(x)
	for i := range t.F {
		t.set(i, float64(v))
	}
}

func (b *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda int, bb compute.Tensor, ldb int, beta float32, c compute.Tensor, ldc int) {
	b.GemmBatched(transA, transB, m, n, k, alpha, a, lda, 0, bb, ldb, 0, beta, c, ldc, 0, 1)
}

func (b *Backend) GemmBatched(transA, transB bool, m, n, k int, alpha float32, a compute.Tensor, lda, strideA int, bb compute.Tensor, ldb, strideB int, beta float32, c compute.Tensor, ldc, strideC, batch int) {
	A, B, C := tt(a), tt(bb), tt(c)
	if A.DT != B.DT {
		b.fail(fmt.Errorf("ref: gemm of %v by %v", A.DT, B.DT))
		return
	}
	for q := 0; q < batch; q++ {
		ao, bo, co := q*strideA, q*strideB, q*strideC
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					var x, y float64
					if transA {
						x = A.get(ao + p*lda + i)
					} else {
						x = A.get(ao + i*lda + p)
					}
					if transB {
						y = B.get(bo + j*ldb + p)
					} else {
						y = B.get(bo + p*ldb + j)
					}
					s += x * y
				}
				v := float64(alpha) * s
				if beta != 0 {
					v += float64(beta) * C.get(co+i*ldc+j)
				}
				C.set(co+i*ldc+j, v)
			}
		}
	}
}

func (b *Backend) GemmSum(m, n int, t1, t2 compute.GemmTerm, beta float32, c compute.Tensor, ldc int) {
	b.Gemm(t1.TransA, t1.TransB, m, n, t1.K, t1.Alpha, t1.A, t1.LDA, t1.B, t1.LDB, beta, c, ldc)
	b.Gemm(t2.TransA, t2.TransB, m, n, t2.K, t2.Alpha, t2.A, t2.LDA, t2.B, t2.LDB, 1, c, ldc)
}

func (b *Backend) Cast(dst, src compute.Tensor) {
	d, s := tt(dst), tt(src)
	for i := range d.F {
		d.set(i, s.get(i))
	}
}

func (b *Backend) Add(dst, x, y compute.Tensor) {
	d, p, q := tt(dst), tt(x), tt(y)
	for i := range d.F {
		d.set(i, float64(float32(p.get(i))+float32(q.get(i))))
	}
}

func (b *Backend) Axpby(y compute.Tensor, alpha float32, x compute.Tensor, beta float32) {
	Y, X := tt(y), tt(x)
	for i := range Y.F {
		v := float64(alpha) * X.get(i)
		if beta != 0 {
			v += float64(beta) * Y.get(i)
		}
		Y.set(i, v)
	}
}

func (b *Backend) Dropout(dst, src compute.Tensor, m compute.DropoutMask, accumulate bool) {
	D, S := tt(dst), tt(src)
	for i := range D.F {
		var v float32
		if compute.DropoutKeeps(m.Seed, m.Thresh, i) {
			v = float32(S.get(i)) * m.Keep
		}
		if accumulate {
			D.set(i, D.get(i)+float64(v))
		} else {
			D.set(i, float64(v))
		}
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func (b *Backend) SwiGLU(a, g, u compute.Tensor) {
	A, G, U := tt(a), tt(g), tt(u)
	for i := range A.F {
		x := G.get(i)
		A.set(i, x*sigmoid(x)*U.get(i))
	}
}

func (b *Backend) SwiGLUBackward(dg, du, da, g, u compute.Tensor) {
	DG, DU, DA, G, U := tt(dg), tt(du), tt(da), tt(g), tt(u)
	for i := range DA.F {
		x, y, d := G.get(i), U.get(i), DA.get(i)
		s := sigmoid(x)
		DU.set(i, d*x*s)
		DG.set(i, d*y*s*(1+x*(1-s)))
	}
}

func (b *Backend) RMSNorm(y, rstd, x, w compute.Tensor, rows, d int, eps, wadd float32) {
	Y, R, X, W := tt(y), tt(rstd), tt(x), tt(w)
	for r := 0; r < rows; r++ {
		var ss float64
		for j := 0; j < d; j++ {
			v := X.get(r*d + j)
			ss += v * v
		}
		rs := 1 / math.Sqrt(ss/float64(d)+float64(eps))
		R.set(r, rs)
		for j := 0; j < d; j++ {
			Y.set(r*d+j, X.get(r*d+j)*rs*(W.get(j)+float64(wadd)))
		}
	}
}

func (b *Backend) RMSNormBackward(dx, dy, x, w, rstd compute.Tensor, rows, d int, wadd float32, accumulate bool) {
	DX, DY, X, W, R := tt(dx), tt(dy), tt(x), tt(w), tt(rstd)
	for r := 0; r < rows; r++ {
		rs := R.get(r)
		var c float64
		for j := 0; j < d; j++ {
			c += DY.get(r*d+j) * (W.get(j) + float64(wadd)) * X.get(r*d+j)
		}
		c *= rs * rs / float64(d)
		for j := 0; j < d; j++ {
			v := rs * (DY.get(r*d+j)*(W.get(j)+float64(wadd)) - X.get(r*d+j)*c)
			if accumulate {
				v += DX.get(r*d + j)
			}
			DX.set(r*d+j, v)
		}
	}
}

func (b *Backend) RMSNormWeightGrad(dw, dy, x, rstd compute.Tensor, rows, d int) {
	DW, DY, X, R := tt(dw), tt(dy), tt(x), tt(rstd)
	for j := 0; j < d; j++ {
		var s float64
		for r := 0; r < rows; r++ {
			s += DY.get(r*d+j) * X.get(r*d+j) * R.get(r)
		}
		DW.set(j, DW.get(j)+s)
	}
}

func (b *Backend) AddBias(y, bias compute.Tensor, rows, d int) {
	Y, B := tt(y), tt(bias)
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			Y.set(r*d+j, Y.get(r*d+j)+B.get(j))
		}
	}
}

func (b *Backend) ScaleCols(y, x, s compute.Tensor, rows, d int) {
	Y, X, S := tt(y), tt(x), tt(s)
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			Y.set(r*d+j, X.get(r*d+j)*S.get(j))
		}
	}
}

func (b *Backend) ScaleRows(y, x, s compute.Tensor, rows, d int) {
	Y, X, S := tt(y), tt(x), tt(s)
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			Y.set(r*d+j, X.get(r*d+j)*S.get(r))
		}
	}
}

func (b *Backend) ColDot(dst, x, y compute.Tensor, rows, d int) {
	D, X, Y := tt(dst), tt(x), tt(y)
	for j := 0; j < d; j++ {
		var s float64
		for r := 0; r < rows; r++ {
			s += X.get(r*d+j) * Y.get(r*d+j)
		}
		D.set(j, D.get(j)+s)
	}
}

func (b *Backend) DoRAScale(scale, inv, m, norm2 compute.Tensor, n int) {
	S, I, M, N := tt(scale), tt(inv), tt(m), tt(norm2)
	for i := 0; i < n; i++ {
		v := 1 / math.Sqrt(N.get(i))
		I.set(i, v)
		S.set(i, M.get(i)*v)
	}
}

func (b *Backend) BiasGrad(db, dy compute.Tensor, rows, d int) {
	DB, DY := tt(db), tt(dy)
	for j := 0; j < d; j++ {
		var s float64
		for r := 0; r < rows; r++ {
			s += DY.get(r*d + j)
		}
		DB.set(j, DB.get(j)+s)
	}
}

func posOf(p *tensor, bt, t int) int {
	if p == nil {
		return t
	}
	return int(p.I[bt])
}

func (b *Backend) RopeSplit(dst, src, pos, cos, sin compute.Tensor, B, T, H, hd, rot int) {
	b.RopeSplitInto(dst, src, pos, cos, sin, B, T, H, hd, rot, T, 0)
}

func (b *Backend) RopeSplitInto(dst, src, pos, cos, sin compute.Tensor, B, T, H, hd, rot, dstT, dstOff int) {
	D, S, P, C, SN := tt(dst), tt(src), tt(pos), tt(cos), tt(sin)
	half := rot / 2
	for bt := 0; bt < B*T; bt++ {
		bi, t := bt/T, bt%T
		p := posOf(P, bt, t)
		for h := 0; h < H; h++ {
			v := (bt*H + h) * hd
			o := ((bi*H+h)*dstT + dstOff + t) * hd
			for j := 0; j < hd; j++ {
				c, s := C.get(p*hd+j), SN.get(p*hd+j)
				var r float64
				switch {
				case j < half:
					r = S.get(v+j)*c - S.get(v+j+half)*s
				case j < rot:
					r = S.get(v+j)*c + S.get(v+j-half)*s
				default:
					r = S.get(v + j)
				}
				D.set(o+j, r)
			}
		}
	}
}

func (b *Backend) RopeMerge(dst, src, pos, cos, sin compute.Tensor, B, T, H, hd, rot int, accumulate bool) {
	D, S, P, C, SN := tt(dst), tt(src), tt(pos), tt(cos), tt(sin)
	half := rot / 2
	for bt := 0; bt < B*T; bt++ {
		bi, t := bt/T, bt%T
		p := posOf(P, bt, t)
		for h := 0; h < H; h++ {
			v := ((bi*H+h)*T + t) * hd
			o := (bt*H + h) * hd
			for j := 0; j < hd; j++ {
				var r float64
				switch {
				case j < half:
					r = S.get(v+j)*C.get(p*hd+j) + S.get(v+j+half)*SN.get(p*hd+j+half)
				case j < rot:
					r = S.get(v+j)*C.get(p*hd+j) - S.get(v+j-half)*SN.get(p*hd+j-half)
				default:
					r = S.get(v + j)
				}
				if accumulate {
					r += D.get(o + j)
				}
				D.set(o+j, r)
			}
		}
	}
}

func attnOK(b, i, j, tq, tk, off int, km, qs, ks *tensor) bool {
	if j > off+i {
		return false
	}
	if km != nil && km.I[b*tk+j] == 0 {
		return false
	}
	if qs != nil && qs.I[b*tq+i] != ks.I[b*tk+j] {
		return false
	}
	return true
}

func (b *Backend) AttnSoftmax(p, lse, s, kmask, qseg, kseg compute.Tensor, B, H, tq, tk, off int) {
	P, L, S, KM, QS, KS := tt(p), tt(lse), tt(s), tt(kmask), tt(qseg), tt(kseg)
	for r := 0; r < B*H*tq; r++ {
		bi, i := r/(H*tq), r%tq
		mx := math.Inf(-1)
		for j := 0; j < tk; j++ {
			if attnOK(bi, i, j, tq, tk, off, KM, QS, KS) {
				mx = math.Max(mx, S.get(r*tk+j))
			}
		}
		var sum float64
		for j := 0; j < tk; j++ {
			if attnOK(bi, i, j, tq, tk, off, KM, QS, KS) {
				sum += math.Exp(S.get(r*tk+j) - mx)
			}
		}
		l := math.Inf(-1)
		if !math.IsInf(mx, -1) {
			l = mx + math.Log(sum)
		}
		L.set(r, l)
		for j := 0; j < tk; j++ {
			v := 0.0
			if !math.IsInf(l, -1) && attnOK(bi, i, j, tq, tk, off, KM, QS, KS) {
				v = math.Exp(S.get(r*tk+j) - l)
			}
			P.set(r*tk+j, v)
		}
	}
}

func (b *Backend) AttnSoftmaxBackward(p, ds, s, dp, lse, dsum, kmask, qseg, kseg compute.Tensor, B, H, tq, tk, off int) {
	P, DS, S, DP, L, D, KM, QS, KS := tt(p), tt(ds), tt(s), tt(dp), tt(lse), tt(dsum), tt(kmask), tt(qseg), tt(kseg)
	for r := 0; r < B*H*tq; r++ {
		bi, i := r/(H*tq), r%tq
		l := L.get(r)
		for j := 0; j < tk; j++ {
			v := 0.0
			if !math.IsInf(l, -1) && attnOK(bi, i, j, tq, tk, off, KM, QS, KS) {
				v = math.Exp(S.get(r*tk+j) - l)
			}
			P.set(r*tk+j, v)
			DS.set(r*tk+j, float64(P.F[r*tk+j])*(DP.get(r*tk+j)-D.get(r)))
		}
	}
}

func (b *Backend) RowDot(out, x, y compute.Tensor, rows, d int) {
	O, X, Y := tt(out), tt(x), tt(y)
	for r := 0; r < rows; r++ {
		var s float64
		for j := 0; j < d; j++ {
			s += X.get(r*d+j) * Y.get(r*d+j)
		}
		O.set(r, s)
	}
}

func (b *Backend) CrossEntropy(loss, grad, logits, targets compute.Tensor, rows, vocab int, scale float32) {
	L, G, X, T := tt(loss), tt(grad), tt(logits), tt(targets)
	for r := 0; r < rows; r++ {
		mx := math.Inf(-1)
		for j := 0; j < vocab; j++ {
			mx = math.Max(mx, X.get(r*vocab+j))
		}
		var sum float64
		for j := 0; j < vocab; j++ {
			sum += math.Exp(X.get(r*vocab+j) - mx)
		}
		t := int(T.I[r])
		L.set(r, mx+math.Log(sum)-X.get(r*vocab+t))
		if G == nil {
			continue
		}
		for j := 0; j < vocab; j++ {
			v := float64(scale) * math.Exp(X.get(r*vocab+j)-mx) / sum
			if j == t {
				v -= float64(scale)
			}
			G.set(r*vocab+j, v)
		}
	}
}

func (b *Backend) GatherRows(dst, src, idx compute.Tensor, rows, d int) {
	D, S, I := tt(dst), tt(src), tt(idx)
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			D.set(r*d+j, S.get(int(I.I[r])*d+j))
		}
	}
}

func (b *Backend) ScatterAddRows(dst, src, idx compute.Tensor, rows, d int) {
	D, S, I := tt(dst), tt(src), tt(idx)
	for r := 0; r < rows; r++ {
		for j := 0; j < d; j++ {
			k := int(I.I[r])*d + j
			D.set(k, D.get(k)+S.get(r*d+j))
		}
	}
}

func (b *Backend) EmbeddingBackward(table, dx, ids compute.Tensor, rows, d int) {
	b.ScatterAddRows(table, dx, ids, rows, d)
}

func (b *Backend) AdamW(p, g, m, v, shadow compute.Tensor, s compute.AdamStep) {
	P, G, M, V, SH := tt(p), tt(g), tt(m), tt(v), tt(shadow)
	for i := range P.F {
		gi := G.F[i] * s.GradScale
		mi := s.Beta1*M.F[i] + (1-s.Beta1)*gi
		vi := s.Beta2*V.F[i] + (1-s.Beta2)*gi*gi
		M.F[i], V.F[i] = mi, vi
		pi := P.F[i]*s.Decay - s.StepSize*mi/(float32(math.Sqrt(float64(vi)))/s.BC2Sqrt+s.Eps)
		P.F[i] = pi
		if SH != nil {
			SH.set(i, float64(pi))
		}
	}
}

func (b *Backend) SumSquares(ts []compute.Tensor) ([]float64, error) {
	out := make([]float64, len(ts))
	for k, x := range ts {
		t := tt(x)
		if t.DT != compute.F32 {
			return nil, errors.New("ref: sum of squares of a non-f32 tensor")
		}
		for _, v := range t.F {
			out[k] += float64(v) * float64(v)
		}
	}
	return out, nil
}

var _ compute.Backend = (*Backend)(nil)
