// Package optest checks a compute.Backend's operations against plain
// float64 loops, so that every backend (the reference one, CUDA, the CPU
// one) runs the same checks on the same inputs.
package optest

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// Families checks the operations of the model families beyond the Llama
// kind: AttnSoftmaxWindowed and its backward (key masks, segments, an
// offset, rows wider than a GPU block, rows that see nothing), GeGLU,
// SoftCap, their backward passes and Copy2D, in f32 and bf16.
func Families(t *testing.T, be compute.Backend) {
	t.Run("AttnSoftmaxWindowed", func(t *testing.T) { windowedSoftmax(t, be) })
	t.Run("GeGLUSoftCapCopy2D", func(t *testing.T) { elementwise(t, be) })
}

func windowedSoftmax(t *testing.T, be compute.Backend) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range []struct {
		B, H, Tq, Tk, off, window int
		softcap                   float32
	}{
		{2, 3, 7, 9, 2, 3, 2.5},     // window and cap
		{1, 2, 5, 300, 295, 0, 4},   // cap only, a row wider than a block
		{2, 2, 9, 9, 0, 4, 0},       // window only
		{1, 3, 3, 301, 298, 130, 0}, // a wide window
	} {
		B, H, Tq, Tk := c.B, c.H, c.Tq, c.Tk
		sv := randVec(r, B*H*Tq*Tk, 6)
		km, qs, ks := make([]int32, B*Tk), make([]int32, B*Tq), make([]int32, B*Tk)
		for i := range km {
			km[i] = 1
			if r.IntN(7) == 0 {
				km[i] = 0
			}
			ks[i] = int32(i % Tk / 5 % 2)
		}
		for i := range qs {
			qs[i] = int32((i%Tq + c.off) / 5 % 2)
		}
		km[0], km[1] = 0, 0
		dpv, dsumv := randVec(r, len(sv), 1), randVec(r, B*H*Tq, 1)
		wp, wl, wds := windowedSoftmax64(sv, dpv, dsumv, km, qs, ks, B, H, Tq, Tk, c.off, c.window, float64(c.softcap))
		for _, dt := range []compute.DType{compute.F32, compute.BF16} {
			tol := 1e-5
			if dt == compute.BF16 {
				tol = 1e-2
			}
			s, kmask, qseg, kseg := upload(t, be, compute.F32, sv), uploadInt(t, be, km), uploadInt(t, be, qs), uploadInt(t, be, ks)
			p, lse := alloc(t, be, dt, len(sv)), alloc(t, be, compute.F32, B*H*Tq)
			be.AttnSoftmaxWindowed(p, lse, s, kmask, qseg, kseg, B, H, Tq, Tk, c.off, c.window, c.softcap)
			check(t, "windowed softmax "+dt.String(), download(t, be, p), wp, tol)
			gl := download(t, be, lse)
			for i, v := range gl {
				if math.IsInf(float64(v), -1) {
					if wl[i] != 0 {
						t.Errorf("row %d: lse -inf, want %g", i, wl[i])
					}
					gl[i] = 0
				}
			}
			check(t, "windowed softmax lse", gl, wl, 1e-5)
			dp, dsum := upload(t, be, compute.F32, dpv), upload(t, be, compute.F32, dsumv)
			p2, ds := alloc(t, be, dt, len(sv)), alloc(t, be, dt, len(sv))
			be.AttnSoftmaxWindowedBackward(p2, ds, s, dp, lse, dsum, kmask, qseg, kseg, B, H, Tq, Tk, c.off, c.window, c.softcap)
			check(t, "windowed softmax backward p "+dt.String(), download(t, be, p2), wp, tol)
			check(t, "windowed softmax backward ds "+dt.String(), download(t, be, ds), wds, tol)
			for _, x := range []compute.Tensor{s, kmask, qseg, kseg, p, lse, dp, dsum, p2, ds} {
				x.Free()
			}
		}
	}
}

// windowedSoftmax64 is AttnSoftmaxWindowed and its backward in float64:
// p, lse (0 for rows that see nothing) and ds.
func windowedSoftmax64(sv, dpv, dsumv []float32, km, qs, ks []int32, B, H, Tq, Tk, off, window int, softcap float64) (p, lse, ds []float64) {
	p, lse, ds = make([]float64, len(sv)), make([]float64, B*H*Tq), make([]float64, len(sv))
	for row := 0; row < B*H*Tq; row++ {
		b, i := row/(H*Tq), row%Tq
		ok := func(j int) bool {
			return j <= off+i && (window == 0 || off+i-j < window) && km[b*Tk+j] != 0 && qs[b*Tq+i] == ks[b*Tk+j]
		}
		c := make([]float64, Tk)
		mx := math.Inf(-1)
		for j := range c {
			c[j] = float64(sv[row*Tk+j])
			if softcap > 0 {
				c[j] = softcap * math.Tanh(c[j]/softcap)
			}
			if ok(j) {
				mx = math.Max(mx, c[j])
			}
		}
		if math.IsInf(mx, -1) {
			continue
		}
		var sum float64
		for j := range c {
			if ok(j) {
				sum += math.Exp(c[j] - mx)
			}
		}
		lse[row] = mx + math.Log(sum)
		for j := range c {
			if !ok(j) {
				continue
			}
			pj := math.Exp(c[j]-mx) / sum
			f := 1.0
			if softcap > 0 {
				u := c[j] / softcap
				f = 1 - u*u
			}
			p[row*Tk+j] = pj
			ds[row*Tk+j] = pj * (float64(dpv[row*Tk+j]) - float64(dsumv[row])) * f
		}
	}
	return p, lse, ds
}

func elementwise(t *testing.T, be compute.Backend) {
	r := rand.New(rand.NewPCG(23, 24))
	const n = 10007
	gv, uv, dav := randVec(r, n, 4), randVec(r, n, 1), randVec(r, n, 1)
	const capv = 3.5
	xv := randVec(r, n, 20)
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		tol := 1e-5
		if dt == compute.BF16 {
			tol = 1e-2
			gv, uv, dav = roundBF16(gv), roundBF16(uv), roundBF16(dav)
		}
		wa, wdg, wdu := make([]float64, n), make([]float64, n), make([]float64, n)
		const gc, ga = 0.7978845608028654, 0.044715 // √(2/π)
		for i := range wa {
			x := float64(gv[i])
			th := math.Tanh(gc * (x + ga*x*x*x))
			y := 0.5 * x * (1 + th)
			dy := 0.5*(1+th) + 0.5*x*(1-th*th)*gc*(1+3*ga*x*x)
			wa[i] = y * float64(uv[i])
			wdu[i] = float64(dav[i]) * y
			wdg[i] = float64(dav[i]) * float64(uv[i]) * dy
		}
		g, u, da := upload(t, be, dt, gv), upload(t, be, dt, uv), upload(t, be, dt, dav)
		a, dg, du := alloc(t, be, dt, n), alloc(t, be, dt, n), alloc(t, be, dt, n)
		be.GeGLU(a, g, u)
		be.GeGLUBackward(dg, du, da, g, u)
		check(t, "geglu "+dt.String(), download(t, be, a), wa, tol)
		check(t, "geglu backward dg "+dt.String(), download(t, be, dg), wdg, tol)
		check(t, "geglu backward du "+dt.String(), download(t, be, du), wdu, tol)

		// The cap runs in place on float logits; its gradient may be bf16.
		y := upload(t, be, compute.F32, xv)
		be.SoftCap(y, y, capv)
		wy, wdx := make([]float64, n), make([]float64, n)
		for i := range wy {
			wy[i] = capv * math.Tanh(float64(xv[i])/capv)
			u := float64(float32(wy[i])) / capv // the capped values as stored
			wdx[i] = float64(dav[i]) * (1 - u*u)
		}
		check(t, "softcap", download(t, be, y), wy, 1e-6)
		dx := alloc(t, be, dt, n)
		be.SoftCapBackward(dx, da, y, capv)
		check(t, "softcap backward "+dt.String(), download(t, be, dx), wdx, tol)

		// Copy2D: columns 4…8 of a 7×13 block into a 7×5 one.
		rv := roundBF16(xv[:7*13])
		src, dst := upload(t, be, dt, rv), alloc(t, be, dt, 7*5)
		be.Copy2D(dst, 5, src.Slice(4, 7*13-4), 13, 7, 5)
		want := make([]float64, 7*5)
		for i := 0; i < 7; i++ {
			for j := 0; j < 5; j++ {
				want[i*5+j] = float64(rv[i*13+4+j])
			}
		}
		check(t, "copy2d "+dt.String(), download(t, be, dst), want, 0)
		for _, x := range []compute.Tensor{g, u, da, a, dg, du, y, dx, src, dst} {
			x.Free()
		}
	}
}

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((2*r.Float64() - 1) * scale)
	}
	return v
}

// roundBF16 rounds to bfloat16, nearest even (inputs of bf16 tensors).
func roundBF16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, f := range v {
		u := math.Float32bits(f)
		u += 0x7fff + (u>>16)&1
		out[i] = math.Float32frombits(u &^ 0xffff)
	}
	return out
}

func alloc(t *testing.T, be compute.Backend, dt compute.DType, n int) compute.Tensor {
	t.Helper()
	x, err := be.Alloc(dt, n)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func upload(t *testing.T, be compute.Backend, dt compute.DType, v []float32) compute.Tensor {
	t.Helper()
	x := alloc(t, be, dt, len(v))
	be.Upload(x, v)
	return x
}

func uploadInt(t *testing.T, be compute.Backend, v []int32) compute.Tensor {
	t.Helper()
	x := alloc(t, be, compute.I32, len(v))
	be.UploadInt(x, v)
	return x
}

func download(t *testing.T, be compute.Backend, x compute.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// check compares got with want by ‖got − want‖/‖want‖.
func check(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	var num, den float64
	for i, w := range want {
		e := float64(got[i]) - w
		num += e * e
		den += w * w
	}
	e := math.Sqrt(num)
	if den > 0 {
		e = math.Sqrt(num / den)
	}
	if !(e <= tol) {
		t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
		return
	}
	t.Logf("%s: relative error %.3g", what, e)
}
