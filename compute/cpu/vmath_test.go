package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Lengths that cover empty input, every tail below two AVX-512 blocks, and
// chunk boundaries of the float64 summation.
var vmathLengths = func() []int {
	var ls []int
	for n := 0; n <= 70; n++ {
		ls = append(ls, n)
	}
	for n := 71; n <= 1000; n += 37 {
		ls = append(ls, n)
	}
	return append(ls, 1000, 1023, 1024, 1025, sumChunk-1, sumChunk+1, 3*sumChunk+5)
}()

func forEachVmath(t *testing.T, fn func(t *testing.T, v *vmathImpl)) {
	for _, v := range allVmath() {
		t.Run(v.name, func(t *testing.T) { fn(t, v) })
	}
}

// expRef is e^x in float64 with the documented float32 range cut-offs.
func expRef(x float32) float64 {
	switch {
	case x < expUnderflow:
		return 0
	case x > expOverflow:
		return math.Inf(1)
	}
	return math.Exp(float64(x))
}

// relErr is |got−want|/|want|, 0 when both are equal (including infinities)
// and +Inf on any NaN mismatch.
func relErr(got float32, want float64) float64 {
	g := float64(got)
	switch {
	case math.IsNaN(want) || math.IsNaN(g):
		if math.IsNaN(want) && math.IsNaN(g) {
			return 0
		}
		return math.Inf(1)
	case g == want:
		return 0
	case math.IsInf(want, 0) || math.IsInf(g, 0):
		return math.Inf(1)
	}
	return math.Abs(g-want) / math.Abs(want)
}

const expTol = 3e-7

// canary fills a slice one block longer than n so writes past n show up.
func canary(n int) []float32 {
	d := make([]float32, n+17)
	for i := range d {
		d[i] = -12345
	}
	return d
}

func checkCanary(t *testing.T, d []float32, n int) {
	t.Helper()
	for i := n; i < len(d); i++ {
		if d[i] != -12345 {
			t.Fatalf("n=%d: element %d past the end was written: %v", n, i, d[i])
		}
	}
}

func TestExpSubAccuracy(t *testing.T) {
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range vmathLengths {
			for _, sub := range []float32{0, 3.5, -20} {
				src := make([]float32, n)
				for i := range src {
					src[i] = sub + float32(r.Float64()*176-87.3)
				}
				dst := canary(n)
				got := v.expSub(dst[:n], src, sub)
				checkCanary(t, dst, n)
				var want float64
				for i, x := range src {
					e := expRef(x - sub)
					want += e
					if err := relErr(dst[i], e); err > expTol {
						t.Fatalf("n=%d sub=%v: e^(%v−sub) = %v, want %v (rel err %.2g)", n, sub, x, dst[i], e, err)
					}
				}
				if want > 1e30 { // float32 partial sums overflow; softmax sums are ≤ n
					continue
				}
				if err := math.Abs(got-want) / math.Max(want, 1e-300); err > 1e-6 {
					t.Fatalf("n=%d sub=%v: sum %v, want %v (rel err %.2g)", n, sub, got, want, err)
				}
				if sumOnly := v.expSub(nil, src, sub); sumOnly != got {
					t.Fatalf("n=%d: sum without dst %v, with dst %v", n, sumOnly, got)
				}
			}
		}
	})
}

// TestExpSweep checks a dense sweep of the whole finite-result range and the
// float32 neighbours of both cut-offs.
func TestExpSweep(t *testing.T) {
	var xs []float32
	for x := float32(expUnderflow); x <= expOverflow; x += 0.0017 {
		xs = append(xs, x)
	}
	for _, b := range []float32{expUnderflow, expOverflow, 0, 88.38, -86.99} {
		x := b
		for range 40 {
			x = math.Nextafter32(x, float32(math.Inf(-1)))
		}
		for range 80 {
			xs = append(xs, x)
			x = math.Nextafter32(x, float32(math.Inf(1)))
		}
	}
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		dst := make([]float32, len(xs))
		v.expSub(dst, xs, 0)
		worst, at := 0.0, float32(0)
		for i, x := range xs {
			if err := relErr(dst[i], expRef(x)); err > worst {
				worst, at = err, x
			}
		}
		t.Logf("%d points: worst relative error %.3g at x=%v", len(xs), worst, at)
		if worst > expTol {
			t.Errorf("worst relative error %.3g at x=%v, want ≤ %g", worst, at, expTol)
		}
	})
}

func TestExpSpecialValues(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	tests := []struct {
		x    float32
		want float64 // NaN: want NaN
	}{
		{0, 1},
		{float32(math.Copysign(0, -1)), 1},
		{1, math.E},
		{math.SmallestNonzeroFloat32, 1},
		{-inf, 0},
		{inf, math.Inf(1)},
		{nan, math.NaN()},
		{-87.34, 0},
		{-1000, 0},
		{-math.MaxFloat32, 0},
		{88.73, math.Inf(1)},
		{1000, math.Inf(1)},
		{math.MaxFloat32, math.Inf(1)},
		{expOverflow, math.Exp(float64(float32(expOverflow)))},
		{88.5, math.Exp(88.5)},
		{expUnderflow, math.Exp(float64(float32(expUnderflow)))},
		{-87, math.Exp(-87)},
	}
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		// Each value at every lane position, with finite neighbours.
		for _, tc := range tests {
			for pos := range 35 {
				src := make([]float32, 35)
				for i := range src {
					src[i] = float32(i) / 8
				}
				src[pos] = tc.x
				dst := make([]float32, len(src))
				v.expSub(dst, src, 0)
				if err := relErr(dst[pos], tc.want); err > expTol {
					t.Fatalf("e^%v at lane %d = %v, want %v", tc.x, pos, dst[pos], tc.want)
				}
				for i := range src {
					if i != pos && relErr(dst[i], expRef(src[i])) > expTol {
						t.Fatalf("with %v at lane %d, e^%v = %v", tc.x, pos, src[i], dst[i])
					}
				}
			}
		}
	})
}

func TestExpInPlace(t *testing.T) {
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		for _, n := range []int{1, 15, 16, 33, 100} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i)/10 - 3
			}
			want := make([]float32, n)
			v.expSub(want, x, 1.5)
			v.expSub(x, x, 1.5)
			for i := range x {
				if x[i] != want[i] {
					t.Fatalf("n=%d: in place [%d] = %v, out of place %v", n, i, x[i], want[i])
				}
			}
		}
	})
}

func TestMax(t *testing.T) {
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range vmathLengths {
			if n == 0 {
				continue
			}
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64()*10 - 50)
			}
			for _, pos := range []int{0, n - 1, r.IntN(n)} {
				old := x[pos]
				x[pos] = 7.25
				if got := v.max(x); got != 7.25 {
					t.Fatalf("n=%d: max with 7.25 at %d = %v", n, pos, got)
				}
				x[pos] = old
			}
		}
		ninf := float32(math.Inf(-1))
		for n := 1; n <= 70; n++ {
			x := make([]float32, n)
			for i := range x {
				x[i] = ninf
			}
			if got := v.max(x); got != ninf {
				t.Fatalf("n=%d: max of -Inf = %v", n, got)
			}
			for pos := range n {
				x[pos] = float32(math.NaN())
				if got := v.max(x); !math.IsNaN(float64(got)) {
					t.Fatalf("n=%d: NaN at %d gave max %v", n, pos, got)
				}
				x[pos] = -1
				if got := v.max(x); got != -1 {
					t.Fatalf("n=%d: max with -1 at %d = %v", n, pos, got)
				}
				x[pos] = ninf
			}
		}
	})
	if got := MaxF32(nil); !math.IsInf(float64(got), -1) {
		t.Errorf("MaxF32(nil) = %v, want -Inf", got)
	}
}

func sigmoidRef(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// siluInputs mixes ordinary values with saturating and special ones.
func siluInputs(r *rand.Rand, n int) (g, u, da []float32) {
	specials := []float32{0, -1.2784645, 100, -100, 88, -88, 90, -90, float32(math.Inf(1))}
	g, u, da = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i] = float32(r.NormFloat64() * 4)
		if r.IntN(10) == 0 {
			g[i] = specials[r.IntN(len(specials))]
		}
		u[i] = float32(r.NormFloat64())
		da[i] = float32(r.NormFloat64())
	}
	return g, u, da
}

// closeTo accepts got within tol of want relative to scale (the magnitude
// of the terms that formed want), or an exact match of infinities.
func closeTo(got float32, want, scale, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(float64(got))
	}
	return float64(got) == want || math.Abs(float64(got)-want) <= tol*scale+1e-30
}

func TestSiLUMul(t *testing.T) {
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range vmathLengths {
			g, u, _ := siluInputs(r, n)
			a := canary(n)
			v.siluMul(a[:n], g, u)
			checkCanary(t, a, n)
			for i := range n {
				x := float64(g[i])
				want := x * sigmoidRef(x) * float64(u[i])
				if math.IsInf(x, 1) {
					want = math.Inf(1) * float64(u[i])
				}
				if !closeTo(a[i], want, math.Abs(want), 5e-7) {
					t.Fatalf("n=%d: silu(%v)·%v = %v, want %v", n, g[i], u[i], a[i], want)
				}
			}
		}
	})
}

func TestSiLUMulBackward(t *testing.T) {
	forEachVmath(t, func(t *testing.T, v *vmathImpl) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range vmathLengths {
			g, u, da := siluInputs(r, n)
			for i := range g {
				if math.IsInf(float64(g[i]), 0) {
					g[i] = 50 // the gradient is NaN there in any implementation
				}
			}
			dg, du := canary(n), canary(n)
			v.siluMulBackward(dg[:n], du[:n], da, g, u)
			checkCanary(t, dg, n)
			checkCanary(t, du, n)
			for i := range n {
				x, d, w := float64(g[i]), float64(da[i]), float64(u[i])
				s := sigmoidRef(x)
				wantDu := d * x * s
				if !closeTo(du[i], wantDu, math.Abs(wantDu), 5e-7) {
					t.Fatalf("n=%d g=%v: du = %v, want %v", n, g[i], du[i], wantDu)
				}
				wantDg := d * w * s * (1 + x*(1-s))
				scale := math.Abs(d*w*s) * (1 + math.Abs(x*(1-s)))
				if !closeTo(dg[i], wantDg, scale, 1e-6) {
					t.Fatalf("n=%d g=%v u=%v da=%v: dg = %v, want %v", n, g[i], u[i], da[i], dg[i], wantDg)
				}
			}
		}
	})
}

// The exported wrappers reach the best implementation with the slice
// conventions documented on them.
func TestVmathExported(t *testing.T) {
	src := []float32{-1, 0, 1, 2, float32(math.Inf(-1))}
	dst := make([]float32, 8)
	ExpF32(dst, src)
	for i, x := range src {
		if relErr(dst[i], expRef(x)) > expTol {
			t.Errorf("ExpF32: e^%v = %v", x, dst[i])
		}
	}
	if dst[5] != 0 {
		t.Errorf("ExpF32 wrote past len(src): %v", dst[5:])
	}
	want := math.Exp(-3) + math.Exp(-2) + math.Exp(-1) + 1
	if s := ExpSubSum(nil, src, 2); math.Abs(s-want) > 1e-6*want {
		t.Errorf("ExpSubSum = %v, want %v", s, want)
	}
	row := []float32{1, 2, 3, float32(math.Inf(-1))}
	mx, sum := Softmax(row)
	wantSum := math.Exp(-2) + math.Exp(-1) + 1
	if mx != 3 || math.Abs(sum-wantSum) > 1e-6*wantSum {
		t.Errorf("Softmax max, sum = %v, %v; want 3, %v", mx, sum, wantSum)
	}
	for i, x := range []float64{1, 2, 3} {
		if p := math.Exp(x-3) / wantSum; math.Abs(float64(row[i])-p) > 1e-6 {
			t.Errorf("Softmax[%d] = %v, want %v", i, row[i], p)
		}
	}
	if row[3] != 0 {
		t.Errorf("Softmax of -Inf = %v, want 0", row[3])
	}
	masked := []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}
	if mx, sum := Softmax(masked); !math.IsInf(float64(mx), -1) || sum != 0 || masked[0] != 0 || masked[1] != 0 {
		t.Errorf("Softmax of a masked row = %v, %v, %v", mx, sum, masked)
	}
	g, u := []float32{1, -2, 0.5}, []float32{2, 3, -1}
	a := make([]float32, 3)
	SiLUMul(a, g, u)
	dg, du := make([]float32, 3), make([]float32, 3)
	SiLUMulBackward(dg, du, []float32{1, 1, 1}, g, u)
	for i := range g {
		x := float64(g[i])
		if w := x * sigmoidRef(x) * float64(u[i]); math.Abs(float64(a[i])-w) > 1e-6 {
			t.Errorf("SiLUMul[%d] = %v, want %v", i, a[i], w)
		}
		if w := x * sigmoidRef(x); math.Abs(float64(du[i])-w) > 1e-6 {
			t.Errorf("SiLUMulBackward du[%d] = %v, want %v", i, du[i], w)
		}
	}
}

func BenchmarkVmath(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(9, 10))
	// Typical activations: no saturated values (those are exact but some
	// produce denormals, which are slow on any x86 path).
	g, u, da := make([]float32, n), make([]float32, n), make([]float32, n)
	masked := make([]float32, n) // a causal-mask row: half -Inf, some far below max
	for i := range g {
		g[i], u[i], da[i] = float32(r.NormFloat64()*4), float32(r.NormFloat64()), float32(r.NormFloat64())
		masked[i] = g[i]
		if i%2 == 1 {
			masked[i] = float32(math.Inf(-1))
		} else if i%8 == 0 {
			masked[i] = -100
		}
	}
	out, out2 := make([]float32, n), make([]float32, n)
	perElement := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elt")
	}
	for _, v := range allVmath() {
		kernels := []struct {
			name string
			fn   func()
		}{
			{"exp", func() { v.expSub(out, g, 0) }},
			{"expsubsum", func() { v.expSub(out, g, 3) }},
			{"expsubsum-masked", func() { v.expSub(out, masked, 3) }},
			{"max", func() { v.max(g) }},
			{"silumul", func() { v.siluMul(out, g, u) }},
			{"silumulbwd", func() { v.siluMulBackward(out, out2, da, g, u) }},
		}
		for _, k := range kernels {
			b.Run(fmt.Sprintf("%s/%s", v.name, k.name), func(b *testing.B) {
				for b.Loop() {
					k.fn()
				}
				perElement(b)
			})
		}
	}
}
