package cpu_test

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu"
)

// attnCase is one fused attention problem of the tests: its shape and which
// masks it has.
type attnCase struct {
	name                       string
	b, h, kvh, t, off, tmax    int
	hd, window                 int
	softcap                    float32
	pad, packed, holes, prefix bool
}

var attnCases = []attnCase{
	{name: "mha", b: 2, h: 2, kvh: 2, t: 7, hd: 8},
	{name: "gqa2-pad", b: 3, h: 4, kvh: 2, t: 13, hd: 8, pad: true},
	{name: "gqa3-packed", b: 2, h: 6, kvh: 2, t: 19, hd: 16, packed: true},
	{name: "prefix", b: 2, h: 3, kvh: 1, t: 9, off: 4, hd: 8, prefix: true},
	{name: "cache", b: 2, h: 4, kvh: 2, t: 3, off: 10, tmax: 20, hd: 8},
	{name: "decode-holes", b: 3, h: 6, kvh: 2, t: 1, off: 30, tmax: 40, hd: 16, holes: true},
	{name: "window-cap", b: 2, h: 6, kvh: 2, t: 33, hd: 8, window: 5, softcap: 3, pad: true},
	{name: "cap-cache", b: 1, h: 3, kvh: 1, t: 5, off: 7, tmax: 12, hd: 8, softcap: 2},
	{name: "long", b: 1, h: 3, kvh: 1, t: 301, hd: 16, packed: true},
	{name: "long-heads", b: 2, h: 4, kvh: 2, t: 160, hd: 32, pad: true},
}

// attnInputs uploads a random problem of case c to both backends.
func (w *twin) attnInputs(c attnCase, dt compute.DType) (p compute.AttnParams, q, k, v, do, dsum, lse pair, km, qs, ks pair) {
	tk := c.off + c.t
	tmax := max(c.tmax, tk)
	p = compute.AttnParams{B: c.b, H: c.h, KVH: c.kvh, T: c.t, TK: tk, TMax: tmax, HD: c.hd, Off: c.off,
		Window: c.window, SoftCap: c.softcap, Scale: float32(1 / math.Sqrt(float64(c.hd)))}
	q = w.rand(dt, c.b*c.h*c.t*c.hd, 0, 2)
	k = w.rand(dt, c.b*c.kvh*tmax*c.hd, 0, 2)
	v = w.rand(dt, c.b*c.kvh*tmax*c.hd, 0, 1)
	do = w.rand(dt, c.b*c.h*c.t*c.hd, 0, 1)
	dsum = w.rand(compute.F32, c.b*c.h*c.t, 0, 0.5)
	lse = w.alloc(compute.F32, c.b*c.h*c.t)
	km, qs, ks = none, none, none
	switch {
	case c.pad || c.prefix || c.holes:
		m := make([]int32, c.b*tk)
		for i := range m {
			m[i] = 1
		}
		for b := 0; b < c.b; b++ {
			row := m[b*tk : (b+1)*tk]
			switch {
			case c.pad: // left padding: the first query of a padded row sees nothing
				for j := 0; j < min(b+c.off, tk); j++ {
					row[j] = 0
				}
			case c.prefix: // padding after the prefix
				row[c.off+c.t-1-b] = 0
			case c.holes: // rows of a group step own scattered positions
				for j := b; j < tk; j += 3 {
					row[j] = 0
				}
			}
		}
		km = w.ints(m)
	}
	if c.packed {
		s := make([]int32, c.b*c.t)
		for i := range s {
			s[i] = int32((i%c.t)/6 + i/c.t)
		}
		qs, ks = w.ints(s), w.ints(s)
	}
	return p, q, k, v, do, dsum, lse, km, qs, ks
}

// TestAttnFusedMatchesReference checks the CPU backend's fused attention,
// forward and backward, against the reference backend's plain loops, on
// every kind of problem the device block gives it, with several numbers of
// cores (the backward pass splits key/value heads between them).
func TestAttnFusedMatchesReference(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range attnCases {
			for _, procs := range []int{1, 3, 8} {
				if procs > 1 && c.t < 100 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%v/procs%d", c.name, dt, procs), func(t *testing.T) {
					runtime.GOMAXPROCS(procs)
					testAttnFused(t, c, dt)
				})
			}
		}
	}
}

func testAttnFused(t *testing.T, c attnCase, dt compute.DType) {
	w := newTwin(t)
	p, q, k, v, do, dsum, lse, km, qs, ks := w.attnInputs(c, dt)
	tol := 2e-5
	if dt == compute.BF16 {
		// A probability or score gradient a last bit away in float32 can
		// round to a neighbouring bf16 value; leaving out the rounding of
		// the probabilities costs about 5e-3.
		tol = 2e-3
	}
	o := w.alloc(dt, q.n)
	// The steps of dk, dv past TK must be left as they were.
	dq, dk, dv := w.alloc(dt, q.n), w.rand(dt, k.n, 0, 1), w.rand(dt, k.n, 0, 1)
	w.run(func(be compute.Backend, side func(pair) compute.Tensor) {
		fa := be.(compute.FusedAttention)
		pp := p
		pp.KeyMask, pp.QSeg, pp.KSeg = side(km), side(qs), side(ks)
		fa.AttnForward(side(o), side(lse), side(q), side(k), side(v), pp)
		fa.AttnBackward(side(dq), side(dk), side(dv), side(do), side(q), side(k), side(v), side(lse), side(dsum), pp)
	})
	w.same("o", o, tol)
	w.same("lse", lse, 2e-6)
	w.same("dq", dq, tol)
	w.same("dk", dk, tol)
	w.same("dv", dv, tol)

	// The checks must be able to fail: a row that sees keys has a finite
	// lse, one that sees none (left padding) −Inf.
	got := make([]float32, lse.n)
	if err := w.cpu.Download(got, lse.c); err != nil {
		t.Fatal(err)
	}
	inf := 0
	for _, v := range got {
		if math.IsInf(float64(v), -1) {
			inf++
		}
	}
	if want := c.pad && c.off == 0; (inf > 0) != want {
		t.Errorf("%d rows see no key; want some: %v", inf, want)
	}
}

// BenchmarkAttn times one layer's attention of the smollm2-135m shape (9
// query heads over 3 key/value heads of 64), fused and through the unfused
// operations the device block runs otherwise: training (forward and
// backward over T tokens) and decoding (forward of one token over a cache
// of 160).
func BenchmarkAttn(b *testing.B) {
	for _, c := range []struct {
		name   string
		t, off int
	}{{"T256", 256, 0}, {"T1024", 1024, 0}, {"decode160", 1, 159}} {
		for _, fused := range []bool{true, false} {
			name := c.name + "/unfused"
			if fused {
				name = c.name + "/fused"
			}
			b.Run(name, func(b *testing.B) { benchAttn(b, c.t, c.off, fused) })
		}
	}
}

func benchAttn(b *testing.B, T, off int, fused bool) {
	be := cpu.Open()
	const B, H, KVH, hd = 1, 9, 3, 64
	g, tk := H/KVH, off+T
	alloc := func(dt compute.DType, n int, fill bool) compute.Tensor {
		x, err := be.Alloc(dt, n)
		if err != nil {
			b.Fatal(err)
		}
		if fill {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i%17)/17 - 0.5
			}
			be.Upload(x, v)
		}
		return x
	}
	nq, nk := B*H*T*hd, B*KVH*tk*hd
	q, k, v, do := alloc(compute.F32, nq, true), alloc(compute.F32, nk, true), alloc(compute.F32, nk, true), alloc(compute.F32, nq, true)
	o, lse, dsum := alloc(compute.F32, nq, false), alloc(compute.F32, B*H*T, false), alloc(compute.F32, B*H*T, true)
	dq, dk, dv := alloc(compute.F32, nq, false), alloc(compute.F32, nk, false), alloc(compute.F32, nk, false)
	p := compute.AttnParams{B: B, H: H, KVH: KVH, T: T, TK: tk, TMax: tk, HD: hd, Off: off, Scale: 0.125}
	n := B * H * T * tk
	s, pr, dp, ds := alloc(compute.F32, n, false), alloc(compute.F32, n, false), alloc(compute.F32, n, false), alloc(compute.F32, n, false)
	batch := B * KVH
	backward := off == 0
	b.ResetTimer()
	for range b.N {
		if fused {
			be.AttnForward(o, lse, q, k, v, p)
			if backward {
				be.AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum, p)
			}
			continue
		}
		be.GemmBatched(false, true, g*T, tk, hd, p.Scale, q, hd, g*T*hd, k, hd, tk*hd, 0, s, tk, g*T*tk, batch)
		be.AttnSoftmax(pr, lse, s, nil, nil, nil, B, H, T, tk, off)
		be.GemmBatched(false, false, g*T, hd, tk, 1, pr, tk, g*T*tk, v, hd, tk*hd, 0, o, hd, g*T*hd, batch)
		if !backward {
			continue
		}
		be.GemmBatched(false, true, g*T, tk, hd, p.Scale, q, hd, g*T*hd, k, hd, tk*hd, 0, s, tk, g*T*tk, batch)
		be.GemmBatched(false, true, g*T, tk, hd, 1, do, hd, g*T*hd, v, hd, tk*hd, 0, dp, tk, g*T*tk, batch)
		be.AttnSoftmaxBackward(pr, ds, s, dp, lse, dsum, nil, nil, nil, B, H, T, tk, off)
		be.GemmBatched(true, false, tk, hd, g*T, 1, pr, tk, g*T*tk, do, hd, g*T*hd, 0, dv, hd, tk*hd, batch)
		be.GemmBatched(false, false, g*T, hd, tk, p.Scale, ds, tk, g*T*tk, k, hd, tk*hd, 0, dq, hd, g*T*hd, batch)
		be.GemmBatched(true, false, tk, hd, g*T, p.Scale, ds, tk, g*T*tk, q, hd, g*T*hd, 0, dk, hd, tk*hd, batch)
	}
}
