//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"gotune/compute"
	"gotune/dtype"
)

// openGPU opens GPU 0 or skips the test when this machine has none (CI and
// development machines). GOTUNE_REQUIRE_GPU=1 (the GPU check script) turns
// the skip into a failure.
func openGPU(t *testing.T) *Device {
	t.Helper()
	d, err := Open(Options{CacheDir: t.TempDir()})
	if err != nil {
		var missing *MissingLibraryError
		var cerr *Error
		if os.Getenv("GOTUNE_REQUIRE_GPU") == "" && (errors.As(err, &missing) || errors.As(err, &cerr)) {
			t.Skipf("no usable GPU: %v", err)
		}
		t.Fatal(err)
	}
	return d
}

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((2*r.Float64() - 1) * scale)
	}
	return v
}

func roundBF16(v []float32) []float32 {
	h := make([]uint16, len(v))
	dtype.F32ToBF16(h, v)
	out := make([]float32, len(v))
	dtype.BF16ToF32(out, h)
	return out
}

func upload(t *testing.T, d *Device, dt compute.DType, v []float32) compute.Tensor {
	t.Helper()
	x, err := d.Alloc(dt, len(v))
	if err != nil {
		t.Fatal(err)
	}
	d.Upload(x, v)
	return x
}

func uploadInt(t *testing.T, d *Device, v []int32) compute.Tensor {
	t.Helper()
	x, err := d.Alloc(compute.I32, len(v))
	if err != nil {
		t.Fatal(err)
	}
	d.UploadInt(x, v)
	return x
}

func download(t *testing.T, d *Device, x compute.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := d.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// relErr is ‖got − want‖ / ‖want‖.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		e := float64(got[i]) - w
		num += e * e
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func check(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
	} else {
		t.Logf("%s: relative error %.3g", what, e)
	}
}

func TestGPUGemm(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			m, n, k := 37, 53, 71
			av, bv, cv := randVec(r, m*k, 1), randVec(r, k*n, 1), randVec(r, m*n, 1)
			if dt == compute.BF16 {
				av, bv = roundBF16(av), roundBF16(bv)
			}
			lda, ldb := k, n
			if tr[0] {
				lda = m
			}
			if tr[1] {
				ldb = k
			}
			A, B, C := upload(t, d, dt, av), upload(t, d, dt, bv), upload(t, d, compute.F32, cv)
			d.Gemm(tr[0], tr[1], m, n, k, 0.5, A, lda, B, ldb, 2, C, n)
			want := make([]float64, m*n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s float64
					for p := 0; p < k; p++ {
						var a, b float32
						if tr[0] {
							a = av[p*lda+i]
						} else {
							a = av[i*lda+p]
						}
						if tr[1] {
							b = bv[j*ldb+p]
						} else {
							b = bv[p*ldb+j]
						}
						s += float64(a) * float64(b)
					}
					want[i*n+j] = 0.5*s + 2*float64(cv[i*n+j])
				}
			}
			check(t, "gemm "+dt.String(), download(t, d, C), want, 1e-5)
		}
	}
	// Batched, with strides between items.
	m, n, k, batch := 19, 23, 29, 5
	av, bv := randVec(r, batch*m*k, 1), randVec(r, batch*k*n, 1)
	A, B := upload(t, d, compute.F32, av), upload(t, d, compute.F32, bv)
	C, _ := d.Alloc(compute.F32, batch*m*n)
	d.GemmBatched(false, false, m, n, k, 1, A, k, m*k, B, n, k*n, 0, C, n, m*n, batch)
	want := make([]float64, batch*m*n)
	for q := 0; q < batch; q++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					s += float64(av[q*m*k+i*k+p]) * float64(bv[q*k*n+p*n+j])
				}
				want[q*m*n+i*n+j] = s
			}
		}
	}
	check(t, "gemm batched", download(t, d, C), want, 1e-5)
}

func TestGPUElementwise(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(3, 4))
	n := 10007
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 1e-6
		if dt == compute.BF16 {
			tol = 5e-3
		}
		gv, uv, dav := randVec(r, n, 3), randVec(r, n, 2), randVec(r, n, 1)
		if dt == compute.BF16 {
			gv, uv, dav = roundBF16(gv), roundBF16(uv), roundBF16(dav)
		}
		g, u, da := upload(t, d, dt, gv), upload(t, d, dt, uv), upload(t, d, dt, dav)
		a, _ := d.Alloc(dt, n)
		dg, _ := d.Alloc(dt, n)
		du, _ := d.Alloc(dt, n)
		d.SwiGLU(a, g, u)
		d.SwiGLUBackward(dg, du, da, g, u)
		wa, wdg, wdu := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range wa {
			x, y, z := float64(gv[i]), float64(uv[i]), float64(dav[i])
			s := 1 / (1 + math.Exp(-x))
			wa[i] = x * s * y
			wdu[i] = z * x * s
			wdg[i] = z * y * s * (1 + x*(1-s))
		}
		check(t, "swiglu "+dt.String(), download(t, d, a), wa, tol)
		check(t, "swiglu dg "+dt.String(), download(t, d, dg), wdg, tol)
		check(t, "swiglu du "+dt.String(), download(t, d, du), wdu, tol)

		// add, axpby (into f32 from dt too)
		d.Add(a, g, u)
		wsum := make([]float64, n)
		for i := range wsum {
			wsum[i] = float64(gv[i]) + float64(uv[i])
		}
		check(t, "add "+dt.String(), download(t, d, a), wsum, tol)
		yv := randVec(r, n, 1)
		y := upload(t, d, compute.F32, yv)
		d.Axpby(y, 0.25, g, -2)
		for i := range wsum {
			wsum[i] = -2*float64(yv[i]) + 0.25*float64(gv[i])
		}
		check(t, "axpby f32←"+dt.String(), download(t, d, y), wsum, 1e-6)

		// dropout draws the CPU's mask (compute.DropoutKeeps): set, then
		// added to
		mask := compute.NewDropoutMask(0.3, 0x1234_5678_9abc_def0)
		d.Dropout(a, g, mask, false)
		d.Dropout(dg, g, mask, false)
		d.Dropout(dg, u, mask, true)
		wd, wacc := make([]float64, n), make([]float64, n)
		kept := 0
		for i := range wd {
			if compute.DropoutKeeps(mask.Seed, mask.Thresh, i) {
				kept++
				wd[i] = float64(gv[i] * mask.Keep)
				wacc[i] = wd[i] + float64(uv[i]*mask.Keep)
			}
		}
		if kept < n/2 || kept > n*9/10 {
			t.Fatalf("the mask keeps %d of %d at p = 0.3", kept, n)
		}
		check(t, "dropout "+dt.String(), download(t, d, a), wd, tol)
		check(t, "dropout accumulate "+dt.String(), download(t, d, dg), wacc, tol)
	}
	// cast round trip
	v := randVec(r, n, 10)
	x := upload(t, d, compute.F32, v)
	h, _ := d.Alloc(compute.BF16, n)
	back, _ := d.Alloc(compute.F32, n)
	d.Cast(h, x)
	d.Cast(back, h)
	got := download(t, d, back)
	for i, w := range roundBF16(v) {
		if got[i] != w {
			t.Fatalf("cast: element %d is %g, want %g (bf16 of %g)", i, got[i], w, v[i])
		}
	}
}

func TestGPURMSNorm(t *testing.T) {
	d := openGPU(t)
	for _, dim := range []int{200, 2500} { // one warp a row; one block a row
		testRMSNorm(t, d, 130, dim)
	}
}

func testRMSNorm(t *testing.T, d *Device, rows, dim int) {
	r := rand.New(rand.NewPCG(5, uint64(dim)))
	xv, wv, dyv := randVec(r, rows*dim, 2), randVec(r, dim, 1), randVec(r, rows*dim, 1)
	for i := range wv {
		wv[i] += 1
	}
	x, w, dy := upload(t, d, compute.F32, xv), upload(t, d, compute.F32, wv), upload(t, d, compute.F32, dyv)
	y, _ := d.Alloc(compute.F32, rows*dim)
	rstd, _ := d.Alloc(compute.F32, rows)
	dx := upload(t, d, compute.F32, make([]float32, rows*dim))
	dw := upload(t, d, compute.F32, make([]float32, dim))
	const eps = 1e-6
	d.RMSNorm(y, rstd, x, w, rows, dim, eps, 0)
	d.RMSNormBackward(dx, dy, x, w, rstd, rows, dim, 0, true)
	d.RMSNormWeightGrad(dw, dy, x, rstd, rows, dim)
	wy, wdx, wdw := make([]float64, rows*dim), make([]float64, rows*dim), make([]float64, dim)
	for i := 0; i < rows; i++ {
		var ss float64
		for j := 0; j < dim; j++ {
			ss += float64(xv[i*dim+j]) * float64(xv[i*dim+j])
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+eps)
		var c float64
		for j := 0; j < dim; j++ {
			k := i*dim + j
			wy[k] = float64(xv[k]) * rs * float64(wv[j])
			c += float64(dyv[k]) * float64(wv[j]) * float64(xv[k])
			wdw[j] += float64(dyv[k]) * float64(xv[k]) * rs
		}
		c *= rs * rs / float64(dim)
		for j := 0; j < dim; j++ {
			k := i*dim + j
			wdx[k] = rs * (float64(dyv[k])*float64(wv[j]) - float64(xv[k])*c)
		}
	}
	check(t, "rmsnorm", download(t, d, y), wy, 1e-5)
	check(t, "rmsnorm dx", download(t, d, dx), wdx, 1e-5)
	check(t, "rmsnorm dw", download(t, d, dw), wdw, 1e-5)
}

func TestGPURope(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(7, 8))
	B, T, H, hd, rot := 2, 5, 3, 8, 6
	P := 16
	cosv, sinv := make([]float32, P*hd), make([]float32, P*hd)
	for p := 0; p < P; p++ {
		for j := 0; j < hd; j++ {
			a := float64(p) * math.Pow(100, -float64(j%(rot/2))/float64(rot/2))
			cosv[p*hd+j], sinv[p*hd+j] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	posv := []int32{3, 4, 5, 6, 7, 0, 1, 2, 9, 15}
	xv := randVec(r, B*T*H*hd, 1)
	x, pos := upload(t, d, compute.F32, xv), uploadInt(t, d, posv)
	cs, sn := upload(t, d, compute.F32, cosv), upload(t, d, compute.F32, sinv)
	hm, _ := d.Alloc(compute.F32, len(xv))
	d.RopeSplit(hm, x, pos, cs, sn, B, T, H, hd, rot)
	want := make([]float64, len(xv))
	half := rot / 2
	for b := 0; b < B; b++ {
		for tt := 0; tt < T; tt++ {
			p := int(posv[b*T+tt])
			for h := 0; h < H; h++ {
				src := xv[((b*T+tt)*H+h)*hd:]
				dst := want[((b*H+h)*T+tt)*hd:]
				for j := 0; j < hd; j++ {
					c, s := float64(cosv[p*hd+j]), float64(sinv[p*hd+j])
					switch {
					case j < half:
						dst[j] = float64(src[j])*c - float64(src[j+half])*s
					case j < rot:
						dst[j] = float64(src[j])*c + float64(src[j-half])*s
					default:
						dst[j] = float64(src[j])
					}
				}
			}
		}
	}
	check(t, "rope split", download(t, d, hm), want, 1e-6)
	// Into a cache of T+3 steps per head, from step 2.
	cache, _ := d.Alloc(compute.F32, B*H*(T+3)*hd)
	d.Zero(cache)
	d.RopeSplitInto(cache, x, pos, cs, sn, B, T, H, hd, rot, T+3, 2)
	got := download(t, d, cache)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for tt := 0; tt < T+3; tt++ {
				for j := 0; j < hd; j++ {
					w := 0.0
					if tt >= 2 && tt < 2+T {
						w = want[((b*H+h)*T+tt-2)*hd+j]
					}
					if g := float64(got[((b*H+h)*(T+3)+tt)*hd+j]); math.Abs(g-w) > 1e-5 {
						t.Fatalf("rope split into the cache: (b %d, h %d, t %d, %d) = %g, want %g", b, h, tt, j, g, w)
					}
				}
			}
		}
	}
	// The merge is the transpose of the split: ⟨split(x), y⟩ = ⟨x, merge(y)⟩.
	yv := randVec(r, len(xv), 1)
	y := upload(t, d, compute.F32, yv)
	mx, _ := d.Alloc(compute.F32, len(xv))
	d.RopeMerge(mx, y, pos, cs, sn, B, T, H, hd, rot, false)
	sx, my := download(t, d, hm), download(t, d, mx)
	var lhs, rhs float64
	for i := range xv {
		lhs += float64(sx[i]) * float64(yv[i])
		rhs += float64(xv[i]) * float64(my[i])
	}
	if math.Abs(lhs-rhs) > 1e-4*math.Abs(lhs)+1e-5 {
		t.Errorf("rope merge is not the transpose of split: %g vs %g", lhs, rhs)
	}
}

func TestGPUAttnSoftmax(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(9, 10))
	B, H, Tq, Tk, off := 2, 3, 7, 9, 2
	sv := randVec(r, B*H*Tq*Tk, 3)
	km := []int32{1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	qs := []int32{0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}
	ks := []int32{0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	s, kmask, qseg, kseg := upload(t, d, compute.F32, sv), uploadInt(t, d, km), uploadInt(t, d, qs), uploadInt(t, d, ks)
	p, _ := d.Alloc(compute.F32, len(sv))
	lse, _ := d.Alloc(compute.F32, B*H*Tq)
	d.AttnSoftmax(p, lse, s, kmask, qseg, kseg, B, H, Tq, Tk, off)
	wp := make([]float64, len(sv))
	wl := make([]float64, B*H*Tq)
	dpv := randVec(r, len(sv), 1)
	dsumv := randVec(r, B*H*Tq, 1)
	wds := make([]float64, len(sv))
	for row := 0; row < B*H*Tq; row++ {
		b, i := row/(H*Tq), row%Tq
		ok := func(j int) bool {
			return j <= off+i && km[b*Tk+j] != 0 && qs[b*Tq+i] == ks[b*Tk+j]
		}
		mx := math.Inf(-1)
		for j := 0; j < Tk; j++ {
			if ok(j) {
				mx = math.Max(mx, float64(sv[row*Tk+j]))
			}
		}
		var sum float64
		for j := 0; j < Tk; j++ {
			if ok(j) {
				sum += math.Exp(float64(sv[row*Tk+j]) - mx)
			}
		}
		wl[row] = mx + math.Log(sum)
		if math.IsInf(mx, -1) {
			wl[row] = 0 // compared separately below
		}
		for j := 0; j < Tk; j++ {
			if ok(j) && !math.IsInf(mx, -1) {
				wp[row*Tk+j] = math.Exp(float64(sv[row*Tk+j])-mx) / sum
			}
			wds[row*Tk+j] = wp[row*Tk+j] * (float64(dpv[row*Tk+j]) - float64(dsumv[row]))
		}
	}
	check(t, "attention softmax", download(t, d, p), wp, 1e-5)
	gl := download(t, d, lse)
	for i, v := range gl {
		if math.IsInf(float64(v), -1) {
			gl[i] = 0
		}
	}
	check(t, "attention lse", gl, wl, 1e-5)
	dp, dsum := upload(t, d, compute.F32, dpv), upload(t, d, compute.F32, dsumv)
	p2, _ := d.Alloc(compute.F32, len(sv))
	ds, _ := d.Alloc(compute.F32, len(sv))
	d.AttnSoftmaxBackward(p2, ds, s, dp, lse, dsum, kmask, qseg, kseg, B, H, Tq, Tk, off)
	check(t, "attention softmax backward p", download(t, d, p2), wp, 1e-5)
	check(t, "attention softmax backward ds", download(t, d, ds), wds, 1e-5)
	// rowdot
	rows, dim := 50, 77
	av, bv := randVec(r, rows*dim, 1), randVec(r, rows*dim, 1)
	out, _ := d.Alloc(compute.F32, rows)
	d.RowDot(out, upload(t, d, compute.F32, av), upload(t, d, compute.F32, bv), rows, dim)
	wr := make([]float64, rows)
	for i := range wr {
		for j := 0; j < dim; j++ {
			wr[i] += float64(av[i*dim+j]) * float64(bv[i*dim+j])
		}
	}
	check(t, "rowdot", download(t, d, out), wr, 1e-5)
}

func TestGPUCrossEntropyAndRows(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(11, 12))
	rows, V := 13, 5003
	lv := randVec(r, rows*V, 8)
	tg := make([]int32, rows)
	for i := range tg {
		tg[i] = int32(r.IntN(V))
	}
	logits, targets := upload(t, d, compute.F32, lv), uploadInt(t, d, tg)
	loss, _ := d.Alloc(compute.F32, rows)
	grad, _ := d.Alloc(compute.F32, rows*V)
	d.CrossEntropy(loss, grad, logits, targets, rows, V, 0.5)
	wl, wg := make([]float64, rows), make([]float64, rows*V)
	for i := 0; i < rows; i++ {
		mx := math.Inf(-1)
		for j := 0; j < V; j++ {
			mx = math.Max(mx, float64(lv[i*V+j]))
		}
		var s float64
		for j := 0; j < V; j++ {
			s += math.Exp(float64(lv[i*V+j]) - mx)
		}
		wl[i] = mx + math.Log(s) - float64(lv[i*V+int(tg[i])])
		for j := 0; j < V; j++ {
			wg[i*V+j] = 0.5 * math.Exp(float64(lv[i*V+j])-mx) / s
		}
		wg[i*V+int(tg[i])] -= 0.5
	}
	check(t, "cross-entropy loss", download(t, d, loss), wl, 1e-5)
	check(t, "cross-entropy grad", download(t, d, grad), wg, 1e-5)

	// gather, scatter-add, embedding backward
	dim := 33
	table := randVec(r, 40*dim, 1)
	ids := []int32{5, 0, 39, 5, 12}
	tb, idx := upload(t, d, compute.F32, table), uploadInt(t, d, ids)
	g, _ := d.Alloc(compute.F32, len(ids)*dim)
	d.GatherRows(g, tb, idx, len(ids), dim)
	wgat := make([]float64, len(ids)*dim)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			wgat[i*dim+j] = float64(table[int(id)*dim+j])
		}
	}
	check(t, "gather rows", download(t, d, g), wgat, 0)
	acc := upload(t, d, compute.F32, make([]float32, 40*dim))
	d.EmbeddingBackward(acc, g, idx, len(ids), dim)
	wacc := make([]float64, 40*dim)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			wacc[int(id)*dim+j] += wgat[i*dim+j]
		}
	}
	check(t, "embedding backward", download(t, d, acc), wacc, 1e-6)
	uniq := uploadInt(t, d, []int32{3, 1, 7})
	dst := upload(t, d, compute.F32, make([]float32, 8*dim))
	d.ScatterAddRows(dst, g.Slice(0, 3*dim), uniq, 3, dim)
	wsc := make([]float64, 8*dim)
	for i, id := range []int{3, 1, 7} {
		for j := 0; j < dim; j++ {
			wsc[id*dim+j] = wgat[i*dim+j]
		}
	}
	check(t, "scatter rows", download(t, d, dst), wsc, 0)
}

func TestGPUAdamWAndNorms(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(13, 14))
	n := 3001
	pv, gv := randVec(r, n, 1), randVec(r, n, 1)
	p, g := upload(t, d, compute.F32, pv), upload(t, d, compute.F32, gv)
	m, v := upload(t, d, compute.F32, make([]float32, n)), upload(t, d, compute.F32, make([]float32, n))
	shadow, _ := d.Alloc(compute.BF16, n)
	const lr, wd, b1, b2, eps = 1e-2, 0.01, 0.9, 0.999, 1e-8
	wp, wm, wv := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range wp {
		wp[i] = float64(pv[i])
	}
	for step := 1; step <= 3; step++ {
		bc1, bc2 := 1-math.Pow(b1, float64(step)), 1-math.Pow(b2, float64(step))
		s := compute.AdamStep{GradScale: 0.5, Decay: float32(1 - lr*wd), Beta1: b1, Beta2: b2,
			StepSize: float32(lr / bc1), BC2Sqrt: float32(math.Sqrt(bc2)), Eps: eps}
		d.AdamW(p, g, m, v, shadow, s)
		for i := range wp {
			gi := 0.5 * float64(gv[i])
			wm[i] = b1*wm[i] + (1-b1)*gi
			wv[i] = b2*wv[i] + (1-b2)*gi*gi
			wp[i] = wp[i]*(1-lr*wd) - lr/bc1*wm[i]/(math.Sqrt(wv[i])/math.Sqrt(bc2)+eps)
		}
	}
	check(t, "adamw", download(t, d, p), wp, 1e-6)
	check(t, "adamw bf16 shadow", download(t, d, shadow), wp, 5e-3)
	ss, err := d.SumSquares([]compute.Tensor{g, m})
	if err != nil {
		t.Fatal(err)
	}
	var w0, w1 float64
	for i := range gv {
		w0 += float64(gv[i]) * float64(gv[i])
		w1 += wm[i] * wm[i]
	}
	check(t, "sum of squares", []float32{float32(ss[0]), float32(ss[1])}, []float64{w0, w1}, 1e-5)
	if st := d.MemStats(); st.Peak <= 0 || st.InUse <= 0 {
		t.Errorf("memory stats %+v", st)
	}
}

// BenchmarkGPUGemmBF16 measures a large bf16 product (f32 accumulation), the
// ceiling for a training step's matrix work.
func BenchmarkGPUGemmBF16(b *testing.B) {
	d, err := Open(Options{})
	if err != nil {
		b.Skip(err)
	}
	n := 8192
	x, _ := d.Alloc(compute.BF16, n*n)
	y, _ := d.Alloc(compute.BF16, n*n)
	z, _ := d.Alloc(compute.BF16, n*n)
	d.Zero(x)
	d.Zero(y)
	d.Gemm(false, true, n, n, n, 1, x, n, y, n, 0, z, n)
	d.Sync()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Gemm(false, true, n, n, n, 1, x, n, y, n, 0, z, n)
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
}

func TestGPUDequantize4(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(15, 16))
	n, block := 1000, 64
	packed := make([]byte, n/2)
	for i := range packed {
		packed[i] = byte(r.IntN(256))
	}
	scales := randVec(r, (n+block-1)/block, 2)
	code := randVec(r, 16, 1)
	P, _ := d.Alloc(compute.U8, len(packed))
	d.UploadBytes(P, packed)
	S, C := upload(t, d, compute.F32, scales), upload(t, d, compute.F32, code)
	out, _ := d.Alloc(compute.F32, n)
	d.Dequantize4(out, P, S, C, n, block)
	want := make([]float64, n)
	for e := range want {
		q := packed[e/2] >> 4
		if e%2 == 1 {
			q = packed[e/2] & 15
		}
		want[e] = float64(code[q] * scales[e/block])
	}
	check(t, "dequantize 4-bit", download(t, d, out), want, 0)
}

func TestGPUDequantize8(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(17, 18))
	for _, c := range []struct{ n, block int }{{1000, 64}, {999, 37}} {
		codes := make([]byte, c.n)
		for i := range codes {
			codes[i] = byte(r.IntN(256))
		}
		scales := randVec(r, (c.n+c.block-1)/c.block, 2)
		Q, _ := d.Alloc(compute.U8, len(codes))
		d.UploadBytes(Q, codes)
		S := upload(t, d, compute.F32, scales)
		want := make([]float64, c.n)
		for e := range want {
			want[e] = float64(float32(int8(codes[e])) * scales[e/c.block])
		}
		for _, dt := range []compute.DType{compute.F32, compute.BF16} {
			out, _ := d.Alloc(dt, c.n)
			d.Dequantize8(out, Q, S, c.n, c.block)
			tol := 0.0
			if dt == compute.BF16 {
				tol = 4e-3
			}
			check(t, fmt.Sprintf("dequantize 8-bit %v, %d in blocks of %d", dt, c.n, c.block), download(t, d, out), want, tol)
		}
	}
}

// TestGPUDoRAOps checks DoRA's pieces against float64 loops: column scaling,
// column dot products in a fixed order, and the factors from squared norms.
func TestGPUDoRAOps(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(9, 10))
	rows, dim := 300, 129
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 1e-6
		if dt == compute.BF16 {
			tol = 5e-3
		}
		xv, yv, sv := randVec(r, rows*dim, 2), randVec(r, rows*dim, 1), randVec(r, dim, 3)
		if dt == compute.BF16 {
			xv, yv = roundBF16(xv), roundBF16(yv)
		}
		x, y, s := upload(t, d, dt, xv), upload(t, d, dt, yv), upload(t, d, compute.F32, sv)
		out, _ := d.Alloc(dt, rows*dim)
		d.ScaleCols(out, x, s, rows, dim)
		want := make([]float64, rows*dim)
		for i := range want {
			want[i] = float64(xv[i]) * float64(sv[i%dim])
		}
		check(t, "scale_cols "+dt.String(), download(t, d, out), want, tol)
		rs := randVec(r, rows, 3)
		d.ScaleRows(out, x, upload(t, d, compute.F32, rs), rows, dim)
		for i := range want {
			want[i] = float64(xv[i]) * float64(rs[i/dim])
		}
		check(t, "scale_rows "+dt.String(), download(t, d, out), want, tol)
		acc := upload(t, d, compute.F32, sv)
		d.ColDot(acc, x, y, rows, dim)
		wdot := make([]float64, dim)
		for j := range wdot {
			wdot[j] = float64(sv[j])
			for i := 0; i < rows; i++ {
				wdot[j] += float64(xv[i*dim+j]) * float64(yv[i*dim+j])
			}
		}
		check(t, "coldot "+dt.String(), download(t, d, acc), wdot, 1e-5)
	}
	n := 77
	mv, nv := randVec(r, n, 1), randVec(r, n, 1)
	for i := range nv {
		nv[i] = nv[i]*nv[i] + 0.5
	}
	m, n2 := upload(t, d, compute.F32, mv), upload(t, d, compute.F32, nv)
	scale, inv := upload(t, d, compute.F32, make([]float32, n)), upload(t, d, compute.F32, make([]float32, n))
	d.DoRAScale(scale, inv, m, n2, n)
	ws, wi := make([]float64, n), make([]float64, n)
	for i := range ws {
		wi[i] = 1 / math.Sqrt(float64(nv[i]))
		ws[i] = float64(mv[i]) * wi[i]
	}
	check(t, "dora inv", download(t, d, inv), wi, 1e-6)
	check(t, "dora scale", download(t, d, scale), ws, 1e-6)
}
