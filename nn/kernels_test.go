package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The tests in this file check each elementwise and row kernel against a
// plain float64 loop written from the formula, on random shapes that include
// odd widths and row counts large enough to split across goroutines.

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * r.NormFloat64())
	}
	return v
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// relErr is ‖got − want‖ / max(‖want‖, tiny).
func relErr(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// maxErr is the largest |got − want| relative to the largest |want|: it
// catches one wrong element that a norm would average away.
func maxErr(got []float32, want []float64) float64 {
	var mx, big float64
	for i, w := range want {
		mx = math.Max(mx, math.Abs(float64(got[i])-w))
		big = math.Max(big, math.Abs(w))
	}
	if big == 0 {
		return mx
	}
	return mx / big
}

func assertClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i, g := range got {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			t.Fatalf("%s[%d] = %v", what, i, g)
		}
	}
	if e := relErr(got, want); e > tol {
		t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
	}
	if e := maxErr(got, want); e > 10*tol {
		t.Errorf("%s: max elementwise error %.3g (of max |want|) > %.3g", what, e, 10*tol)
	}
}

var rowShapes = []struct{ n, d int }{
	{1, 1}, {1, 7}, {3, 5}, {17, 64}, {5, 33}, {300, 33}, {129, 128}, {2, 1001},
}

func TestRMSNormForwardBackward(t *testing.T) {
	const eps = 1e-6
	for _, s := range rowShapes {
		t.Run(fmt.Sprintf("n%d_d%d", s.n, s.d), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(s.n), uint64(s.d)))
			n, d := s.n, s.d
			x, w, dy := randSlice(r, n*d, 1.5), randSlice(r, d, 1), randSlice(r, n*d, 1)
			// Accumulation: dx and dw start non-zero and must be added to.
			dx0, dw0 := randSlice(r, n*d, 1), randSlice(r, d, 1)

			wantY := make([]float64, n*d)
			wantR := make([]float64, n)
			wantDx := to64(dx0)
			wantDw := to64(dw0)
			for i := 0; i < n; i++ {
				var ss float64
				for j := 0; j < d; j++ {
					v := float64(x[i*d+j])
					ss += v * v
				}
				rs := 1 / math.Sqrt(ss/float64(d)+eps)
				wantR[i] = rs
				// y_j = w_j x_j r; dy/dx: r·w_j·dy_j − x_j r³/d · Σ_k dy_k w_k x_k.
				var dot float64
				for j := 0; j < d; j++ {
					xi, wj, g := float64(x[i*d+j]), float64(w[j]), float64(dy[i*d+j])
					wantY[i*d+j] = wj * xi * rs
					dot += g * wj * xi
					wantDw[j] += g * xi * rs
				}
				for j := 0; j < d; j++ {
					xi, wj, g := float64(x[i*d+j]), float64(w[j]), float64(dy[i*d+j])
					wantDx[i*d+j] += rs*g*wj - xi*rs*rs*rs/float64(d)*dot
				}
			}

			y, rstd := make([]float32, n*d), make([]float32, n)
			RMSNorm(y, rstd, x, w, n, d, eps)
			assertClose(t, "y", y, wantY, 1e-6)
			assertClose(t, "rstd", rstd, wantR, 1e-6)

			dx, dw := append([]float32(nil), dx0...), append([]float32(nil), dw0...)
			RMSNormBackward(dx, dw, dy, x, w, rstd, n, d)
			assertClose(t, "dx", dx, wantDx, 1e-5)
			assertClose(t, "dw", dw, wantDw, 1e-5)

			// dw may be nil (frozen norm weight); dx must not change.
			dx2 := append([]float32(nil), dx0...)
			RMSNormBackward(dx2, nil, dy, x, w, rstd, n, d)
			for i := range dx2 {
				if dx2[i] != dx[i] {
					t.Fatalf("dx with dw=nil differs at %d: %v vs %v", i, dx2[i], dx[i])
				}
			}
		})
	}
}

// TestRMSNormInPlace covers y aliasing x, which the QK-norm of generation
// relies on.
func TestRMSNormInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	n, d := 9, 24
	x, w := randSlice(r, n*d, 1), randSlice(r, d, 1)
	want, rs := make([]float32, n*d), make([]float32, n)
	RMSNorm(want, rs, x, w, n, d, 1e-5)
	RMSNorm(x, rs, x, w, n, d, 1e-5)
	for i := range x {
		if x[i] != want[i] {
			t.Fatalf("in-place RMSNorm differs at %d: %v vs %v", i, x[i], want[i])
		}
	}
}

// ropeTables builds cos/sin [P, hd] as the model does: rot/2 frequencies
// repeated twice, dimensions past rot left as cos 1, sin 0. It also returns
// the angles in float64 for the reference rotation.
func ropeTables(P, hd, rot int, theta float64) (cos, sin []float32, ang [][]float64) {
	half := rot / 2
	cos, sin = make([]float32, P*hd), make([]float32, P*hd)
	ang = make([][]float64, P)
	for p := 0; p < P; p++ {
		ang[p] = make([]float64, half)
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(theta, -float64(2*i)/float64(rot))
			ang[p][i] = a
			cos[p*hd+i], cos[p*hd+i+half] = float32(math.Cos(a)), float32(math.Cos(a))
			sin[p*hd+i], sin[p*hd+i+half] = float32(math.Sin(a)), float32(math.Sin(a))
		}
		for i := rot; i < hd; i++ {
			cos[p*hd+i] = 1
		}
	}
	return cos, sin, ang
}

func TestRope(t *testing.T) {
	cases := []struct{ n, heads, hd, rot int }{
		{1, 1, 2, 2},
		{5, 3, 8, 8},
		{17, 4, 16, 8},  // partial rotary: half the head rotates
		{33, 2, 64, 16}, // partial rotary, quarter
		{257, 9, 64, 64},
		{130, 1, 10, 6}, // odd half (3)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("n%d_h%d_hd%d_rot%d", c.n, c.heads, c.hd, c.rot), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.n), uint64(c.hd)))
			P := 4 * c.n
			cos, sin, ang := ropeTables(P, c.hd, c.rot, 10000)
			pos := make([]int32, c.n)
			for i := range pos {
				pos[i] = int32(r.IntN(P)) // arbitrary positions, not 0…n-1
			}
			width := c.heads * c.hd
			x := randSlice(r, c.n*width, 1)
			half := c.rot / 2

			want := to64(x)
			for i := 0; i < c.n; i++ {
				for h := 0; h < c.heads; h++ {
					o := i*width + h*c.hd
					for j := 0; j < half; j++ {
						a, b := float64(x[o+j]), float64(x[o+j+half])
						co, si := math.Cos(ang[pos[i]][j]), math.Sin(ang[pos[i]][j])
						want[o+j] = a*co - b*si
						want[o+j+half] = b*co + a*si
					}
				}
			}
			y := append([]float32(nil), x...)
			Rope(y, c.n, c.heads, c.hd, pos, cos, sin, c.rot)
			assertClose(t, "rope", y, want, 1e-6)
			// Dimensions past rot are untouched, bit for bit.
			for i := 0; i < c.n*c.heads; i++ {
				for j := c.rot; j < c.hd; j++ {
					if y[i*c.hd+j] != x[i*c.hd+j] {
						t.Fatalf("pass-through dim %d of row %d changed", j, i)
					}
				}
			}

			// The backward is the transpose: ⟨Rope(x), g⟩ = ⟨x, RopeBackward(g)⟩.
			g := randSlice(r, c.n*width, 1)
			gb := append([]float32(nil), g...)
			RopeBackward(gb, c.n, c.heads, c.hd, pos, cos, sin, c.rot)
			var lhs, rhs, mag float64
			for i := range g {
				lhs += float64(y[i]) * float64(g[i])
				rhs += float64(x[i]) * float64(gb[i])
				mag += math.Abs(float64(y[i]) * float64(g[i]))
			}
			if math.Abs(lhs-rhs) > 1e-6*mag {
				t.Errorf("⟨Rope(x), g⟩ = %.9g but ⟨x, RopeBackward(g)⟩ = %.9g", lhs, rhs)
			}
			// And against the float64 inverse rotation (rotation by −angle).
			wantG := to64(g)
			for i := 0; i < c.n; i++ {
				for h := 0; h < c.heads; h++ {
					o := i*width + h*c.hd
					for j := 0; j < half; j++ {
						a, b := float64(g[o+j]), float64(g[o+j+half])
						co, si := math.Cos(ang[pos[i]][j]), math.Sin(ang[pos[i]][j])
						wantG[o+j] = a*co + b*si
						wantG[o+j+half] = b*co - a*si
					}
				}
			}
			assertClose(t, "rope backward", gb, wantG, 1e-6)
		})
	}
}

// TestRopeBackwardIsTransposeForAnyTable uses arbitrary cos/sin tables
// (not unit rotations, different values in the two halves) so that a
// backward that merely undoes a rotation would fail.
func TestRopeBackwardIsTransposeForAnyTable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n, heads, hd, rot := 11, 3, 12, 8
	cos, sin := randSlice(r, n*hd, 1), randSlice(r, n*hd, 1)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(n - 1 - i)
	}
	x, g := randSlice(r, n*heads*hd, 1), randSlice(r, n*heads*hd, 1)
	y := append([]float32(nil), x...)
	Rope(y, n, heads, hd, pos, cos, sin, rot)
	gb := append([]float32(nil), g...)
	RopeBackward(gb, n, heads, hd, pos, cos, sin, rot)
	var lhs, rhs, mag float64
	for i := range g {
		lhs += float64(y[i]) * float64(g[i])
		rhs += float64(x[i]) * float64(gb[i])
		mag += math.Abs(float64(y[i]) * float64(g[i]))
	}
	if math.Abs(lhs-rhs) > 1e-6*mag {
		t.Errorf("⟨Rope(x), g⟩ = %.9g but ⟨x, RopeBackward(g)⟩ = %.9g", lhs, rhs)
	}
}

func TestSwiGLU(t *testing.T) {
	for _, n := range []int{1, 7, 1000, 40961} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(n), 9))
			g, u, da := randSlice(r, n, 3), randSlice(r, n, 1), randSlice(r, n, 1)
			if n > 4 { // the tails of the sigmoid
				g[0], g[1], g[2], g[3] = -30, 30, -90, 0
			}
			wantA, wantDg, wantDu := make([]float64, n), make([]float64, n), make([]float64, n)
			for i := range g {
				x, y, d := float64(g[i]), float64(u[i]), float64(da[i])
				s := 1 / (1 + math.Exp(-x))
				wantA[i] = x * s * y
				// d silu(x)/dx = s + x·s·(1−s)
				wantDg[i] = d * y * (s + x*s*(1-s))
				wantDu[i] = d * x * s
			}
			a := make([]float32, n)
			SwiGLU(a, g, u)
			assertClose(t, "a", a, wantA, 1e-6)
			dg, du := randSlice(r, n, 1), randSlice(r, n, 1) // overwritten
			SwiGLUBackward(dg, du, da, g, u)
			assertClose(t, "dg", dg, wantDg, 1e-6)
			assertClose(t, "du", du, wantDu, 1e-6)
		})
	}
}

func TestBiasAndAdd(t *testing.T) {
	for _, s := range rowShapes {
		t.Run(fmt.Sprintf("n%d_d%d", s.n, s.d), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(s.d), uint64(s.n)))
			n, d := s.n, s.d
			y, b := randSlice(r, n*d, 1), randSlice(r, d, 1)
			want := to64(y)
			for i := 0; i < n; i++ {
				for j := 0; j < d; j++ {
					want[i*d+j] += float64(b[j])
				}
			}
			AddBias(y, b, n)
			assertClose(t, "AddBias", y, want, 1e-7)

			dy, db0 := randSlice(r, n*d, 1), randSlice(r, d, 1)
			wantDb := to64(db0)
			for i := 0; i < n; i++ {
				for j := 0; j < d; j++ {
					wantDb[j] += float64(dy[i*d+j])
				}
			}
			db := append([]float32(nil), db0...)
			BiasBackward(db, dy, n)
			assertClose(t, "BiasBackward", db, wantDb, 1e-7)

			dst, src := randSlice(r, n*d, 1), randSlice(r, n*d, 1)
			wantAdd := to64(dst)
			for i, v := range src {
				wantAdd[i] += float64(v)
			}
			Add(dst, src)
			assertClose(t, "Add", dst, wantAdd, 1e-7)
		})
	}
}
