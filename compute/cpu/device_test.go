package cpu_test

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu"
	"gotune/compute/optest"
	"gotune/compute/ref"
)

// twin holds the same tensors on the CPU backend and on the reference
// backend, so every operation can be run on both and compared.
type twin struct {
	t        *testing.T
	cpu, ref compute.Backend
	r        *rand.Rand
}

type pair struct {
	c, r compute.Tensor
	n    int
}

func newTwin(t *testing.T) *twin {
	return &twin{t: t, cpu: cpu.Open(), ref: ref.New(), r: rand.New(rand.NewSource(7))}
}

func (w *twin) alloc(dt compute.DType, n int) pair {
	c, err := w.cpu.Alloc(dt, n)
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := w.ref.Alloc(dt, n)
	if err != nil {
		w.t.Fatal(err)
	}
	return pair{c, r, n}
}

// rand is a tensor of n values drawn from ±scale (plus shift), the same on
// both backends.
func (w *twin) rand(dt compute.DType, n int, shift, scale float64) pair {
	p := w.alloc(dt, n)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(shift + scale*(2*w.r.Float64()-1))
	}
	w.cpu.Upload(p.c, v)
	w.ref.Upload(p.r, v)
	return p
}

func (w *twin) ints(v []int32) pair {
	p := w.alloc(compute.I32, len(v))
	w.cpu.UploadInt(p.c, v)
	w.ref.UploadInt(p.r, v)
	return p
}

func (w *twin) bytes(v []byte) pair {
	p := w.alloc(compute.U8, len(v))
	w.cpu.UploadBytes(p.c, v)
	w.ref.UploadBytes(p.r, v)
	return p
}

// run applies op to the CPU tensors and to the reference ones.
func (w *twin) run(op func(be compute.Backend, side func(pair) compute.Tensor)) {
	op(w.cpu, func(p pair) compute.Tensor {
		if p.n < 0 {
			return nil
		}
		return p.c
	})
	op(w.ref, func(p pair) compute.Tensor {
		if p.n < 0 {
			return nil
		}
		return p.r
	})
}

// same fails when p differs between the backends by more than tol relative
// to the largest reference value.
func (w *twin) same(what string, p pair, tol float64) {
	w.t.Helper()
	a, b := make([]float32, p.n), make([]float32, p.n)
	if err := w.cpu.Download(a, p.c); err != nil {
		w.t.Fatal(err)
	}
	if err := w.ref.Download(b, p.r); err != nil {
		w.t.Fatal(err)
	}
	var scale, worst float64
	for i := range b {
		scale = max(scale, math.Abs(float64(b[i])))
	}
	for i := range a {
		if math.IsInf(float64(b[i]), 0) && a[i] == b[i] {
			continue
		}
		worst = max(worst, math.Abs(float64(a[i]-b[i])))
	}
	if scale == 0 {
		scale = 1
	}
	if worst/scale > tol || math.IsNaN(worst) {
		w.t.Errorf("%s: max deviation %.3g of scale %.3g (tol %.1g)", what, worst, scale, tol)
	}
}

var none = pair{n: -1}

func TestDeviceMatchesReference(t *testing.T) {
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		t.Run(dt.String(), func(t *testing.T) { testDeviceOps(t, dt) })
	}
}

func testDeviceOps(t *testing.T, dt compute.DType) {
	w := newTwin(t)
	tol := 2e-6
	if dt == compute.BF16 {
		// A last-bit difference in float32 can round to neighbouring bf16
		// values: one bf16 ulp of the largest value.
		tol = 8e-3
	}
	const rows, d = 37, 70

	for _, c := range []struct {
		ta, tb           bool
		m, n, k, batch   int
		alpha, beta      float32
		strideOff, extra int
	}{
		{false, false, 5, 7, 9, 1, 1, 0, 0, 0},
		{false, true, 33, 65, 17, 1, 0.5, 1, 0, 0},
		{true, false, 16, 8, 40, 3, 1, 0, 0, 3},
		{true, true, 4, 130, 64, 5, -2, 0.25, 0, 0},
	} {
		name := fmt.Sprintf("gemm %v%v %dx%dx%d×%d", c.ta, c.tb, c.m, c.n, c.k, c.batch)
		lda, ldb, ldc := c.k+c.extra, c.n+c.extra, c.n+c.extra
		ar, br := c.m, c.k
		if c.ta {
			lda, ar = c.m+c.extra, c.k
		}
		if c.tb {
			ldb, br = c.k+c.extra, c.n
		}
		sa, sb, sc := ar*lda, br*ldb, c.m*ldc
		a, b, cc := w.rand(dt, sa*c.batch, 0, 1), w.rand(dt, sb*c.batch, 0, 1), w.rand(dt, sc*c.batch, 0, 1)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.GemmBatched(c.ta, c.tb, c.m, c.n, c.k, c.alpha, s(a), lda, sa, s(b), ldb, sb, c.beta, s(cc), ldc, sc, c.batch)
		})
		w.same(name, cc, tol)
	}

	// A frozen product plus a low-rank update, as a LoRA layer's forward.
	for _, beta := range []float32{0, 1} {
		const m, n, k, r = 40, 70, 96, 8
		xs, ws, xa, bs, out := w.rand(dt, m*k, 0, 1), w.rand(dt, n*k, 0, 1), w.rand(dt, m*r, 0, 1), w.rand(dt, n*r, 0, 1), w.rand(dt, m*n, 0, 1)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.GemmSum(m, n, compute.GemmTerm{TransB: true, K: k, Alpha: 1, A: s(xs), LDA: k, B: s(ws), LDB: k},
				compute.GemmTerm{TransB: true, K: r, Alpha: 0.5, A: s(xa), LDA: r, B: s(bs), LDB: r}, beta, s(out), n)
		})
		w.same(fmt.Sprintf("gemm sum, beta %g", beta), out, tol)
	}

	x, y, z := w.rand(dt, rows*d, 0, 2), w.rand(dt, rows*d, 0, 2), w.rand(dt, rows*d, 0, 2)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) { be.Add(s(z), s(x), s(y)) })
	w.same("add", z, tol)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) { be.Axpby(s(z), 0.3, s(x), -1.5) })
	w.same("axpby", z, tol)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.Dropout(s(z), s(x), compute.NewDropoutMask(0.3, 99), false)
		be.Dropout(s(y), s(x), compute.NewDropoutMask(0.3, 99), true)
	})
	w.same("dropout", z, tol)
	w.same("dropout accumulate", y, tol)

	g, u, a := w.rand(dt, rows*d, 0, 4), w.rand(dt, rows*d, 0, 2), w.alloc(dt, rows*d)
	dg, du := w.alloc(dt, rows*d), w.alloc(dt, rows*d)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.SwiGLU(s(a), s(g), s(u))
		be.SwiGLUBackward(s(dg), s(du), s(x), s(g), s(u))
	})
	w.same("swiglu", a, 1e-5+tol)
	w.same("swiglu dg", dg, 1e-5+tol)
	w.same("swiglu du", du, 1e-5+tol)

	nw, yn, rstd := w.rand(compute.F32, d, 1, 0.5), w.alloc(dt, rows*d), w.alloc(compute.F32, rows)
	dx, dw := w.rand(dt, rows*d, 0, 1), w.rand(compute.F32, d, 0, 1)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.RMSNorm(s(yn), s(rstd), s(x), s(nw), rows, d, 1e-6, 1)
		be.RMSNormBackward(s(dx), s(y), s(x), s(nw), s(rstd), rows, d, 1, true)
		be.RMSNormWeightGrad(s(dw), s(y), s(x), s(rstd), rows, d)
	})
	w.same("rmsnorm", yn, tol)
	w.same("rmsnorm rstd", rstd, 2e-6)
	w.same("rmsnorm backward", dx, tol)
	w.same("rmsnorm weight grad", dw, 2e-6)

	bias, db := w.rand(compute.F32, d, 0, 1), w.rand(compute.F32, d, 0, 1)
	sc, sr, cd, rd := w.rand(compute.F32, d, 0, 1), w.rand(compute.F32, rows, 0, 1), w.rand(compute.F32, d, 0, 1), w.alloc(compute.F32, rows)
	o1, o2 := w.alloc(dt, rows*d), w.alloc(dt, rows*d)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.AddBias(s(y), s(bias), rows, d)
		be.BiasGrad(s(db), s(x), rows, d)
		be.ScaleCols(s(o1), s(x), s(sc), rows, d)
		be.ScaleRows(s(o2), s(x), s(sr), rows, d)
		be.ColDot(s(cd), s(x), s(z), rows, d)
		be.RowDot(s(rd), s(x), s(z), rows, d)
	})
	w.same("addbias", y, tol)
	w.same("biasgrad", db, 2e-6)
	w.same("scalecols", o1, tol)
	w.same("scalerows", o2, tol)
	w.same("coldot", cd, 2e-6)
	w.same("rowdot", rd, 2e-6)

	m, n2, scale, inv := w.rand(compute.F32, d, 1, 0.5), w.rand(compute.F32, d, 2, 1), w.alloc(compute.F32, d), w.alloc(compute.F32, d)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) { be.DoRAScale(s(scale), s(inv), s(m), s(n2), d) })
	w.same("dora scale", scale, 1e-6)
	w.same("dora inv", inv, 1e-6)

	// Rotary embedding into a cache and back, with explicit positions.
	const B, T, H, hd, P = 2, 5, 3, 8, 16
	cos, sin := w.rand(compute.F32, P*hd, 0, 1), w.rand(compute.F32, P*hd, 0, 1)
	pos := w.ints([]int32{3, 4, 5, 6, 7, 0, 1, 2, 3, 9})
	src := w.rand(dt, B*T*H*hd, 0, 1)
	for _, rot := range []int{hd, hd / 2, 0} {
		cache, back := w.alloc(dt, B*H*(T+2)*hd), w.rand(dt, B*T*H*hd, 0, 1)
		head := w.alloc(dt, B*H*T*hd)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.RopeSplitInto(s(cache), s(src), s(pos), s(cos), s(sin), B, T, H, hd, rot, T+2, 1)
			be.RopeSplit(s(head), s(src), nil, s(cos), s(sin), B, T, H, hd, rot)
			be.RopeMerge(s(back), s(head), s(pos), s(cos), s(sin), B, T, H, hd, rot, true)
		})
		w.same(fmt.Sprintf("rope split into, rot %d", rot), cache, tol)
		w.same(fmt.Sprintf("rope split, rot %d", rot), head, tol)
		w.same(fmt.Sprintf("rope merge, rot %d", rot), back, tol)
	}

	// Attention softmax with causal offset, padding keys and packed
	// segments, including a fully masked row.
	const ah, tq, tk, off = 2, 4, 6, 2
	scores := w.rand(dt, B*ah*tq*tk, 0, 3)
	kmask := w.ints([]int32{1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0})
	qseg := w.ints([]int32{1, 1, 2, 2, 1, 1, 1, 1})
	kseg := w.ints([]int32{1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1})
	for _, masks := range []struct {
		name      string
		km, q, ks pair
	}{{"causal", none, none, none}, {"padded, packed", kmask, qseg, kseg}} {
		prob, lse := w.alloc(dt, B*ah*tq*tk), w.alloc(compute.F32, B*ah*tq)
		dp, dsum, ds := w.rand(dt, B*ah*tq*tk, 0, 1), w.rand(compute.F32, B*ah*tq, 0, 1), w.alloc(dt, B*ah*tq*tk)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.AttnSoftmax(s(prob), s(lse), s(scores), s(masks.km), s(masks.q), s(masks.ks), B, ah, tq, tk, off)
			be.AttnSoftmaxBackward(s(prob), s(ds), s(scores), s(dp), s(lse), s(dsum), s(masks.km), s(masks.q), s(masks.ks), B, ah, tq, tk, off)
		})
		w.same("attn softmax "+masks.name, prob, 1e-6+tol)
		w.same("attn lse "+masks.name, lse, 1e-6)
		w.same("attn softmax backward "+masks.name, ds, 1e-6+tol)
	}

	const V = 301
	logits := w.rand(dt, rows*V, 0, 6)
	tg := make([]int32, rows)
	for i := range tg {
		tg[i] = int32(w.r.Intn(V))
	}
	targets := w.ints(tg)
	loss, grad, loss2 := w.alloc(compute.F32, rows), w.alloc(dt, rows*V), w.alloc(compute.F32, rows)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.CrossEntropy(s(loss), s(grad), s(logits), s(targets), rows, V, 0.25)
		be.CrossEntropy(s(loss2), nil, s(logits), s(targets), rows, V, 1)
	})
	w.same("cross-entropy loss", loss, 1e-6)
	w.same("cross-entropy no grad", loss2, 1e-6)
	w.same("cross-entropy grad", grad, 1e-6+tol)

	table := w.rand(dt, 11*d, 0, 1)
	ids := w.ints([]int32{3, 3, 0, 10, 3, 7, 7})
	got, acc := w.alloc(dt, 7*d), w.rand(dt, 11*d, 0, 1)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.GatherRows(s(got), s(table), s(ids), 7, d)
		be.ScatterAddRows(s(acc), s(x), s(ids), 7, d)
		be.EmbeddingBackward(s(acc), s(y), s(ids), 7, d)
	})
	w.same("gather", got, tol)
	w.same("scatter-add and embedding backward", acc, tol)

	code := w.rand(compute.F32, 16, 0, 1)
	for _, q := range []struct{ n, block int }{{129, 16}, {50, 7}, {3, 64}, {64, 64}} {
		packed := make([]byte, (q.n+1)/2)
		for i := range packed {
			packed[i] = byte(w.r.Intn(256))
		}
		pk, qs, deq := w.bytes(packed), w.rand(compute.F32, (q.n+q.block-1)/q.block, 0, 1), w.alloc(dt, q.n)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.Dequantize4(s(deq), s(pk), s(qs), s(code), q.n, q.block)
		})
		w.same(fmt.Sprintf("dequantize4 %d in blocks of %d", q.n, q.block), deq, tol)

		codes := make([]byte, q.n)
		for i := range codes {
			codes[i] = byte(w.r.Intn(256))
		}
		q8, deq8 := w.bytes(codes), w.alloc(dt, q.n)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.Dequantize8(s(deq8), s(q8), s(qs), q.n, q.block)
		})
		w.same(fmt.Sprintf("dequantize8 %d in blocks of %d", q.n, q.block), deq8, tol)
	}

	pp, gg, mm, vv := w.rand(compute.F32, 1000, 0, 1), w.rand(compute.F32, 1000, 0, 1), w.rand(compute.F32, 1000, 0, 0.1), w.rand(compute.F32, 1000, 0.5, 0.1)
	shadow := w.alloc(dt, 1000)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.AdamW(s(pp), s(gg), s(mm), s(vv), s(shadow), compute.AdamStep{GradScale: 0.5, Decay: 0.999, Beta1: 0.9, Beta2: 0.999, StepSize: 1e-3, BC2Sqrt: 0.3, Eps: 1e-8})
	})
	w.same("adamw p", pp, 1e-7)
	w.same("adamw m", mm, 1e-7)
	w.same("adamw v", vv, 1e-7)
	w.same("adamw shadow", shadow, tol)

	for _, f := range []compute.Activation{compute.ReLU, compute.Tanh, compute.SiLU, compute.GELU, compute.GELUTanh} {
		ya, dxa := w.alloc(dt, rows*d), w.alloc(dt, rows*d)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
			be.Activate(s(ya), s(g), f)
			be.ActivateBackward(s(dxa), s(x), s(g), f)
		})
		w.same(fmt.Sprintf("activate %v", f), ya, 1e-6+tol)
		w.same(fmt.Sprintf("activate %v backward", f), dxa, 1e-6+tol)
	}

	for _, st := range []compute.SGDStep{
		{GradScale: 0.5, LR: 0.1},
		{GradScale: 1, LR: 0.05, WeightDecay: 0.01, Momentum: 0.9, First: true},
		{GradScale: 1, LR: 0.05, WeightDecay: 0.01, Momentum: 0.9, Dampening: 0.1},
		{GradScale: 1, LR: 0.05, Momentum: 0.9, Nesterov: true},
	} {
		sp, sg, sm, sh := w.rand(compute.F32, 500, 0, 1), w.rand(compute.F32, 500, 0, 1), w.rand(compute.F32, 500, 0, 1), w.alloc(dt, 500)
		w.run(func(be compute.Backend, s func(pair) compute.Tensor) { be.SGD(s(sp), s(sg), s(sm), s(sh), st) })
		w.same(fmt.Sprintf("sgd %+v p", st), sp, 1e-7)
		w.same(fmt.Sprintf("sgd %+v buf", st), sm, 1e-7)
		w.same(fmt.Sprintf("sgd %+v shadow", st), sh, tol)
	}

	// Two LSTM steps forward, then back (the second step's dc into the
	// first's, dcPrev aliasing dc as the encoder uses it).
	const lr, lh = 3, 5
	pre1, pre2 := w.rand(dt, lr*4*lh, 0, 2), w.rand(dt, lr*4*lh, 0, 2)
	g1, g2, c1, c2 := w.alloc(dt, lr*4*lh), w.alloc(dt, lr*4*lh), w.alloc(dt, lr*lh), w.alloc(dt, lr*lh)
	hs := w.alloc(dt, lr*2*lh) // both steps' h side by side: ldh = 2·hidden
	dhs, dpre1, dpre2, dcs := w.rand(dt, lr*2*lh, 0, 1), w.alloc(dt, lr*4*lh), w.alloc(dt, lr*4*lh), w.alloc(dt, lr*lh)
	w.run(func(be compute.Backend, s func(pair) compute.Tensor) {
		be.LSTMCell(s(g1), s(c1), s(hs), 2*lh, s(pre1), nil, lr, lh)
		be.LSTMCell(s(g2), s(c2), s(hs).Slice(lh, lr*2*lh-lh), 2*lh, s(pre2), s(c1), lr, lh)
		be.LSTMCellBackward(s(dpre2), s(dcs), s(dhs).Slice(lh, lr*2*lh-lh), 2*lh, nil, nil, s(g2), s(c2), s(c1), lr, lh)
		be.LSTMCellBackward(s(dpre1), nil, s(dhs), 2*lh, nil, s(dcs), s(g1), s(c1), nil, lr, lh)
	})
	w.same("lstm gates", g2, 1e-6+tol)
	w.same("lstm c", c2, 1e-6+tol)
	w.same("lstm h", hs, 1e-6+tol)
	w.same("lstm dpre, second step", dpre2, 1e-6+tol)
	w.same("lstm dpre, first step", dpre1, 1e-6+tol)

	if dt == compute.F32 {
		sums := make([][]float64, 2)
		for i, be := range []compute.Backend{w.cpu, w.ref} {
			side := pp.c
			if i == 1 {
				side = pp.r
			}
			var err error
			if sums[i], err = be.SumSquares([]compute.Tensor{side, side.Slice(10, 500)}); err != nil {
				t.Fatal(err)
			}
		}
		for k := range sums[0] {
			if d := math.Abs(sums[0][k]-sums[1][k]) / sums[1][k]; d > 1e-6 {
				t.Errorf("sum of squares %d: %v vs %v", k, sums[0][k], sums[1][k])
			}
		}
	}
	if err := w.cpu.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceMemory checks that the backend counts what it holds and that
// views are not freed.
func TestDeviceMemory(t *testing.T) {
	d := cpu.Open()
	a, _ := d.Alloc(compute.F32, 100)
	b, _ := d.Alloc(compute.BF16, 10)
	a.Slice(10, 20).Free()
	if got := d.MemStats(); got.InUse != 420 || got.Peak != 420 {
		t.Fatalf("in use %d, peak %d; want 420, 420", got.InUse, got.Peak)
	}
	a.Free()
	a.Free()
	b.Free()
	if got := d.MemStats(); got.InUse != 0 || got.Peak != 420 {
		t.Fatalf("after free: in use %d, peak %d; want 0, 420", got.InUse, got.Peak)
	}
	if _, err := d.Alloc(compute.DType(99), 1); err == nil {
		t.Fatal("alloc of an unknown dtype succeeded")
	}
	d.Upload(b, make([]float32, 3))
	if d.Err() == nil {
		t.Fatal("upload of the wrong length did not fail")
	}
}

// TestDeviceFamilyOps runs the shared float64 checks of the family
// operations (windowed, capped attention softmax, GeGLU, soft cap, Copy2D).
func TestDeviceFamilyOps(t *testing.T) {
	optest.Families(t, cpu.Open())
}

func TestDeviceMoE(t *testing.T) { optest.MoE(t, cpu.Open()) }
