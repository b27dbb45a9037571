package cpu_test

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu"
	"gotune/dtype"
)

// halfWeight is a random bf16 weight of n values: its bits, wrapped in 16
// bits on d, and the same values in an F32 tensor of d.
func halfWeight(t *testing.T, d *cpu.Device, r *rand.Rand, n int) (bits []uint16, half, full compute.Tensor) {
	t.Helper()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*r.Float64() - 1)
	}
	bits = make([]uint16, n)
	dtype.F32ToBF16(bits, v)
	dtype.BF16ToF32(v, bits)
	full, err := d.Alloc(compute.F32, n)
	if err != nil {
		t.Fatal(err)
	}
	d.Upload(full, v)
	return bits, d.WrapBF16(bits), full
}

func randomF32(t *testing.T, d *cpu.Device, r *rand.Rand, n int) (compute.Tensor, []float32) {
	t.Helper()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*r.Float64() - 1)
	}
	x, err := d.Alloc(compute.F32, n)
	if err != nil {
		t.Fatal(err)
	}
	d.Upload(x, v)
	return x, v
}

func download(t *testing.T, d *cpu.Device, x compute.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := d.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// closeTo checks got against want element by element, within float32
// rounding of sums of k products of values below 1 (the two sides may add
// in different orders: the f32 weight can take the thin kernels).
func closeTo(t *testing.T, what string, got, want []float32, k int) {
	t.Helper()
	tol := float64(k) * 4e-7
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Fatalf("%s: element %d is %g, want %g (with the weight expanded to f32)", what, i, got[i], want[i])
		}
	}
}

// TestWrapBF16Products: products reading a frozen weight held in 16 bits
// (x·Wᵀ, dy·W, batched, summed with a low-rank term) equal the same
// products with the weight expanded to f32, over shapes that take every
// path of the f32 products (a decode row, thin, blocked with edge tiles)
// and a view that starts inside the weight.
func TestWrapBF16Products(t *testing.T) {
	d := cpu.Open()
	r := rand.New(rand.NewSource(3))
	for _, s := range []struct{ m, in, out int }{{1, 64, 96}, {5, 200, 33}, {37, 576, 1536}, {130, 96, 40}} {
		_, half, full := halfWeight(t, d, r, s.in*s.out+7)
		// A view past the first 7 values: offsets must carry into 16 bits.
		half, full = half.Slice(7, s.in*s.out), full.Slice(7, s.in*s.out)
		x, _ := randomF32(t, d, r, s.m*s.in)
		dy, _ := randomF32(t, d, r, s.m*s.out)
		y1, _ := d.Alloc(compute.F32, s.m*s.out)
		y2, _ := d.Alloc(compute.F32, s.m*s.out)
		d.Gemm(false, true, s.m, s.out, s.in, 1, x, s.in, half, s.in, 0, y1, s.out)
		d.Gemm(false, true, s.m, s.out, s.in, 1, x, s.in, full, s.in, 0, y2, s.out)
		closeTo(t, "x·Wᵀ", download(t, d, y1), download(t, d, y2), s.in)

		dx1, _ := randomF32(t, d, r, s.m*s.in)
		dx2, _ := d.Alloc(compute.F32, s.m*s.in)
		d.Cast(dx2, dx1)
		d.Gemm(false, false, s.m, s.in, s.out, 0.5, dy, s.out, half, s.in, 1, dx1, s.in)
		d.Gemm(false, false, s.m, s.in, s.out, 0.5, dy, s.out, full, s.in, 1, dx2, s.in)
		closeTo(t, "dx += dy·W", download(t, d, dx1), download(t, d, dx2), s.out)

		// GemmSum: the frozen product and a rank-4 update, one pass.
		const rank = 4
		xa, _ := randomF32(t, d, r, s.m*rank)
		bm, _ := randomF32(t, d, r, s.out*rank)
		for _, beta := range []float32{0, 1} {
			d.Gemm(false, true, s.m, s.out, s.in, 1, x, s.in, full, s.in, 0, y1, s.out) // some old C
			d.Cast(y2, y1)
			t1h := compute.GemmTerm{TransB: true, K: s.in, Alpha: 1, A: x, LDA: s.in, B: half, LDB: s.in}
			t1f := t1h
			t1f.B = full
			t2 := compute.GemmTerm{TransB: true, K: rank, Alpha: 2, A: xa, LDA: rank, B: bm, LDB: rank}
			d.GemmSum(s.m, s.out, t1h, t2, beta, y1, s.out)
			d.GemmSum(s.m, s.out, t1f, t2, beta, y2, s.out)
			closeTo(t, "GemmSum", download(t, d, y1), download(t, d, y2), s.in+2*rank)
		}
	}
	// Batched: three weights side by side at a stride, as B.
	const m, k, n, batch = 9, 48, 40, 3
	_, half, full := halfWeight(t, d, r, batch*k*n)
	a, _ := randomF32(t, d, r, batch*m*k)
	c1, _ := d.Alloc(compute.F32, batch*m*n)
	c2, _ := d.Alloc(compute.F32, batch*m*n)
	d.GemmBatched(false, false, m, n, k, 1, a, k, m*k, half, n, k*n, 0, c1, n, m*n, batch)
	d.GemmBatched(false, false, m, n, k, 1, a, k, m*k, full, n, k*n, 0, c2, n, m*n, batch)
	closeTo(t, "batched A·W", download(t, d, c1), download(t, d, c2), k)
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestWrapBF16Reads: the other readers of a frozen weight (Axpby's x, Cast,
// GatherRows, Download) see its exact values, an upload into it rounds to
// bf16, and the wrapped bits are the caller's (no copy, not counted).
func TestWrapBF16Reads(t *testing.T) {
	d := cpu.Open()
	r := rand.New(rand.NewSource(5))
	const rows, dim = 11, 37
	before := d.MemStats().InUse
	bits, half, full := halfWeight(t, d, r, rows*dim)
	if got := d.MemStats().InUse - before; got != 4*rows*dim {
		t.Errorf("memory counted %d bytes, want only the f32 copy's %d", got, 4*rows*dim)
	}
	if half.DType() != compute.BF16 || half.Len() != rows*dim {
		t.Fatalf("wrapped: %v×%d", half.DType(), half.Len())
	}
	want := download(t, d, full)
	if got := download(t, d, half); !equal(got, want) {
		t.Fatal("download of the wrapped weight differs from its values")
	}
	y, yv := randomF32(t, d, r, rows*dim)
	d.Axpby(y, 0.5, half, 2)
	got := download(t, d, y)
	for i := range got {
		if w := 2*yv[i] + 0.5*want[i]; got[i] != w {
			t.Fatalf("Axpby: element %d is %g, want %g", i, got[i], w)
		}
	}
	d.Axpby(y, 1, half, 0)
	if !equal(download(t, d, y), want) {
		t.Fatal("Axpby with beta 0 is not a copy")
	}
	c, _ := d.Alloc(compute.F32, rows*dim)
	d.Cast(c, half)
	if !equal(download(t, d, c), want) {
		t.Fatal("Cast of the wrapped weight differs from its values")
	}
	ids := []int32{3, 0, 10, 3}
	idx, _ := d.Alloc(compute.I32, len(ids))
	d.UploadInt(idx, ids)
	g, _ := d.Alloc(compute.F32, len(ids)*dim)
	d.GatherRows(g, half, idx, len(ids), dim)
	gv := download(t, d, g)
	for r, id := range ids {
		if !equal(gv[r*dim:(r+1)*dim], want[int(id)*dim:(int(id)+1)*dim]) {
			t.Fatalf("GatherRows: row %d is not row %d of the weight", r, id)
		}
	}
	// An upload rounds into the caller's bits.
	v := make([]float32, rows*dim)
	for i := range v {
		v[i] = 1 + 1.0/512 // halfway between two bf16 values: rounds to even, 1
	}
	d.Upload(half, v)
	if bits[0] != 0x3f80 {
		t.Errorf("upload of %g stored bits %#x, want 0x3f80", v[0], bits[0])
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWrapBF16Refused: an operation that does not read 16-bit weights fails
// the device, naming itself, instead of reading garbage or panicking.
func TestWrapBF16Refused(t *testing.T) {
	for _, c := range []struct {
		op  string
		run func(d *cpu.Device, w, x compute.Tensor)
	}{
		{"RMSNorm", func(d *cpu.Device, w, x compute.Tensor) {
			rstd, _ := d.Alloc(compute.F32, 2)
			d.RMSNorm(x, rstd, x, w, 2, 8, 1e-6, 0)
		}},
		{"SwiGLU", func(d *cpu.Device, w, x compute.Tensor) { d.SwiGLU(x, w, x) }},
		{"AdamW", func(d *cpu.Device, w, x compute.Tensor) {
			m, _ := d.Alloc(compute.F32, 16)
			v, _ := d.Alloc(compute.F32, 16)
			d.AdamW(x, x, m, v, w, compute.AdamStep{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, BC2Sqrt: 1, Decay: 1, GradScale: 1})
		}},
		{"GemmBatched", func(d *cpu.Device, w, x compute.Tensor) { // as A
			y, _ := d.Alloc(compute.F32, 16)
			d.Gemm(false, false, 4, 4, 4, 1, w, 4, x, 4, 0, y, 4)
		}},
	} {
		d := cpu.Open()
		bits := make([]uint16, 16)
		for i := range bits {
			bits[i] = 0x3f80
		}
		x, _ := d.Alloc(compute.F32, 16)
		d.Fill(x, 1)
		c.run(d, d.WrapBF16(bits), x)
		err := d.Err()
		if err == nil || !strings.Contains(err.Error(), c.op) || !strings.Contains(err.Error(), "16 bits") {
			t.Errorf("%s with a 16-bit weight: error %v, want one naming it", c.op, err)
		}
		if bits[0] != 0x3f80 {
			t.Errorf("%s wrote into the 16-bit weight", c.op)
		}
	}
}
