package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// adam8F64 is the 8-bit AdamW algorithm in float64 (the codes chosen by the
// nearest table entry in float64, the same sign rule).
func adam8F64(p, g []float64, m8, v8 []byte, ms, vs []float64, gscale, decay, b1, b2, step, bc2, eps float64, block int) {
	qs, qu := compute.DynamicMap(true), compute.DynamicMap(false)
	enc := func(x float64, tab *[256]float32, signed bool) byte {
		best := 0
		for c := 1; c < 256; c++ {
			if math.Abs(x-float64(tab[c])) < math.Abs(x-float64(tab[best])) {
				best = c
			}
		}
		if signed && x < 0 && tab[best] >= 0 {
			best--
		} else if signed && x > 0 && tab[best] < 0 {
			best++
		}
		return byte(best)
	}
	for b := range ms {
		lo, hi := b*block, min(len(p), b*block+block)
		m, v := make([]float64, hi-lo), make([]float64, hi-lo)
		var mMax, vMax float64
		for i := lo; i < hi; i++ {
			gi := g[i] * gscale
			m[i-lo] = b1*float64(qs[m8[i]])*ms[b] + (1-b1)*gi
			v[i-lo] = b2*float64(qu[v8[i]])*vs[b] + (1-b2)*gi*gi
			mMax, vMax = max(mMax, math.Abs(m[i-lo])), max(vMax, v[i-lo])
			p[i] = p[i]*decay - step*m[i-lo]/(math.Sqrt(v[i-lo])/bc2+eps)
		}
		ms[b], vs[b] = mMax, vMax
		for i := lo; i < hi; i++ {
			x, y := 0.0, 0.0
			if mMax != 0 {
				x = m[i-lo] / mMax
			}
			if vMax != 0 {
				y = v[i-lo] / vMax
			}
			m8[i], v8[i] = enc(x, qs, true), enc(y, qu, false)
		}
	}
}

func download(t *testing.T, b *Backend, x compute.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := b.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAdamW8bit: one update from a random 8-bit state matches the float64
// algorithm (weights and scales to float32 rounding, codes equal but for a
// few a step away where float32 and float64 fall on either side of a
// midpoint), the bf16 shadow is the rounded weights, and over 30 steps the
// weights stay close to plain AdamW with float moments.
func TestAdamW8bit(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(3, 4))
	const block = 256
	n := 3*block + 100 // a short last block
	nb := compute.Adam8Blocks(n, block)
	pv, gv := make([]float32, n), make([]float32, n)
	m8, v8 := make([]byte, n), make([]byte, n)
	msv, vsv := make([]float32, nb), make([]float32, nb)
	for i := range pv {
		pv[i], gv[i] = float32(r.NormFloat64()), float32(r.NormFloat64()*math.Pow(10, -2*r.Float64()))
		m8[i], v8[i] = byte(r.IntN(256)), byte(r.IntN(256))
	}
	for i := range msv {
		msv[i], vsv[i] = float32(0.1*r.Float64()), float32(0.01*r.Float64())
	}
	alloc := func(dt compute.DType, n int) compute.Tensor {
		x, err := b.Alloc(dt, n)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	p, g, m, v, ms, vs, sh := alloc(compute.F32, n), alloc(compute.F32, n), alloc(compute.U8, n), alloc(compute.U8, n),
		alloc(compute.F32, nb), alloc(compute.F32, nb), alloc(compute.BF16, n)
	b.Upload(p, pv)
	b.Upload(g, gv)
	b.UploadBytes(m, m8)
	b.UploadBytes(v, v8)
	b.Upload(ms, msv)
	b.Upload(vs, vsv)
	const gscale, decay, b1, b2, step, bc2, eps = 0.7, 0.999, 0.9, 0.999, 1e-3, 0.3, 1e-8
	b.AdamW8bit(p, g, m, v, ms, vs, sh, compute.AdamStep{GradScale: gscale, Decay: decay, Beta1: b1, Beta2: b2, StepSize: step, BC2Sqrt: bc2, Eps: eps}, block)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	wp, wg := f64(pv), f64(gv)
	wms, wvs := f64(msv), f64(vsv)
	wm8, wv8 := append([]byte(nil), m8...), append([]byte(nil), v8...)
	// The op's hyperparameters are float32: so are the reference's.
	h := func(x float64) float64 { return float64(float32(x)) }
	adam8F64(wp, wg, wm8, wv8, wms, wvs, h(gscale), h(decay), h(b1), h(b2), h(step), h(bc2), h(eps), block)

	closeTo := func(what string, got []float32, want []float64, tol float64) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); d > tol*max(math.Abs(want[i]), 1e-3) {
				t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
			}
		}
	}
	gotP := download(t, b, p)
	closeTo("p", gotP, wp, 1e-5)
	closeTo("m scale", download(t, b, ms), wms, 1e-6)
	closeTo("v scale", download(t, b, vs), wvs, 1e-6)
	for i, x := range download(t, b, sh) {
		if want := roundBF16(gotP[i]); x != want {
			t.Fatalf("shadow[%d] = %g, want %g", i, x, want)
		}
	}
	for _, c := range []struct {
		what string
		got  []float32
		want []byte
	}{{"m codes", download(t, b, m), wm8}, {"v codes", download(t, b, v), wv8}} {
		off := 0
		for i, x := range c.got {
			if d := int(x) - int(c.want[i]); d != 0 {
				off++
				if d < -1 || d > 1 {
					t.Fatalf("%s[%d] = %v, want %d", c.what, i, x, c.want[i])
				}
			}
		}
		if off > n/200 {
			t.Errorf("%s: %d of %d differ by one from float64", c.what, off, n)
		}
		t.Logf("%s: %d of %d a step away from float64", c.what, off, n)
	}

	// 30 steps from a zero state against AdamW with float moments.
	b.Upload(p, pv)
	b.Zero(m)
	b.Zero(v)
	b.Zero(ms)
	b.Zero(vs)
	fp, fm, fv := f64(pv), make([]float64, n), make([]float64, n)
	var worst float64
	for s := 1; s <= 30; s++ {
		for i := range gv {
			gv[i] = float32(0.3*r.NormFloat64() + 0.1)
		}
		b.Upload(g, gv)
		lr := 1e-2
		bc1, bc2 := 1-math.Pow(b1, float64(s)), math.Sqrt(1-math.Pow(b2, float64(s)))
		b.AdamW8bit(p, g, m, v, ms, vs, nil, compute.AdamStep{GradScale: 1, Decay: 1, Beta1: b1, Beta2: b2, StepSize: float32(lr / bc1), BC2Sqrt: float32(bc2), Eps: eps}, block)
		for i := range fp {
			gi := float64(gv[i])
			fm[i] = b1*fm[i] + (1-b1)*gi
			fv[i] = b2*fv[i] + (1-b2)*gi*gi
			fp[i] -= lr / bc1 * fm[i] / (math.Sqrt(fv[i])/bc2 + eps)
		}
		got := download(t, b, p)
		var num, den float64
		for i := range fp {
			d := float64(got[i]) - fp[i]
			u := fp[i] - float64(pv[i])
			num += d * d
			den += u * u
		}
		worst = max(worst, math.Sqrt(num/den))
	}
	// The quantized moments move the weights' total update by a few
	// percent at most (measured about 1%).
	if worst > 0.05 {
		t.Errorf("8-bit update differs from float AdamW's by %.3g of its size", worst)
	}
	t.Logf("30 steps: 8-bit vs float AdamW update, worst relative difference %.3g", worst)
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func roundBF16(x float32) float32 {
	t := &tensor{}
	t.DT = compute.BF16
	t.F = []float32{0}
	t.set(0, float64(x))
	return t.F[0]
}
