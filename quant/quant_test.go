package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func normals(seed uint64, n int, sigma float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * sigma)
	}
	return w
}

func mustQuantize(t testing.TB, w []float32, rows, cols int, opt Options) *Matrix {
	t.Helper()
	m, err := Quantize(w, rows, cols, opt)
	if err != nil {
		t.Fatalf("Quantize %d×%d %+v: %v", rows, cols, opt, err)
	}
	return m
}

// withSpecials plants values that stress the search: an all-zero block, a
// block whose maximum is negative, exact code values and midpoints scaled by
// the block maximum.
func withSpecials(w []float32, bs int, code [16]float32) []float32 {
	w = slices.Clone(w)
	if len(w) >= 3*bs {
		clear(w[bs : 2*bs])
		blk := w[2*bs : 3*bs]
		blk[0] = -4
		for i := 1; i < len(blk); i++ {
			c := code[i%16]
			if i%2 == 0 && i%16 < 15 {
				c = (code[i%16] + code[i%16+1]) / 2
			}
			blk[i] = 4 * c
		}
	}
	return w
}

// The central correctness property: every decoded element is the code-book
// value nearest to the element scaled by its block's 1/absmax (brute force
// over all 16 codes in float64), times the absmax; and codes sit two per byte,
// first element in the high nibble.
func TestNearestCodeExhaustive(t *testing.T) {
	cases := []struct {
		typ        Type
		rows, cols int
		bs         int
	}{
		{NF4, 7, 13, 64},
		{NF4, 9, 100, 64},
		{NF4, 5, 37, 32},
		{NF4, 3, 300, 128},
		{FP4, 7, 13, 64},
		{FP4, 9, 100, 64},
		{FP4, 11, 31, 16},
		{NF4, 1, 1, 64},
	}
	for _, tc := range cases {
		code := builtinCode(tc.typ)
		n := tc.rows * tc.cols
		w := withSpecials(normals(uint64(n), n, 0.02), tc.bs, code)
		m := mustQuantize(t, w, tc.rows, tc.cols, Options{Type: tc.typ, BlockSize: tc.bs})
		got := make([]float32, n)
		m.Dense(got)
		bad := 0
		for e, v := range w {
			b := e / tc.bs
			var amax float32
			for _, x := range w[b*tc.bs : min(n, (b+1)*tc.bs)] {
				amax = max(amax, float32(math.Abs(float64(x))))
			}
			var s float32
			if amax > 0 {
				s = v * (1 / amax)
			}
			// Ties: NF4 takes the smaller value, FP4 the smaller magnitude
			// (bitsandbytes' kernels compare x, resp. |x|, with "> midpoint").
			lower := func(a, b float32) bool { return a < b }
			if tc.typ == FP4 {
				lower = func(a, b float32) bool { return math.Abs(float64(a)) < math.Abs(float64(b)) }
			}
			best := 0
			for j := range code {
				dj := math.Abs(float64(s) - float64(code[j]))
				db := math.Abs(float64(s) - float64(code[best]))
				if dj < db || (dj == db && lower(code[j], code[best])) {
					best = j
				}
			}
			want := code[best] * amax
			nib := m.packed[e/2] >> 4
			if e%2 == 1 {
				nib = m.packed[e/2] & 15
			}
			if got[e] != want || code[nib]*amax != want || m.absmax[b] != amax {
				if bad < 5 {
					t.Errorf("%v %d×%d bs %d: element %d (%v, s=%v): decoded %v (nibble %d), want code %d → %v", tc.typ, tc.rows, tc.cols, tc.bs, e, v, s, got[e], nib, best, want)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%v %d×%d: %d of %d elements not the nearest code", tc.typ, tc.rows, tc.cols, bad, n)
		}
		if n%2 == 1 && m.packed[len(m.packed)-1]&15 != 0 {
			t.Errorf("%v %d×%d: padding nibble is %d, want 0", tc.typ, tc.rows, tc.cols, m.packed[len(m.packed)-1]&15)
		}
	}
}

func TestCodeBooks(t *testing.T) {
	if !slices.IsSorted(nf4Values[:]) || nf4Values[0] != -1 || nf4Values[7] != 0 || nf4Values[15] != 1 {
		t.Errorf("NF4 table not sorted in [-1,1] with 0 at index 7: %v", nf4Values)
	}
	// FP4 bit patterns: sign bit 3, 0b010 = 8/12, 0b011 = 1, 0b001 = 0.0625/12.
	want := map[int]float32{0b0011: 1, 0b1011: -1, 0b0010: 8.0 / 12, 0b0001: 0.0625 / 12, 0b0110: 2.0 / 12, 0b1101: -0.5}
	for k, v := range want {
		if fp4Values[k] != v {
			t.Errorf("FP4 code %04b = %v, want %v", k, fp4Values[k], v)
		}
	}
	d := dynamicCode()
	if !slices.IsSorted(d[:]) || d[255] != 1 || d[0] >= -0.99 || d[0] < -1 {
		t.Errorf("dynamic map ends %v … %v, want sorted, ending at 1 and starting just above -1", d[0], d[255])
	}
	zeros, pos := 0, 0
	for _, v := range d {
		if v == 0 {
			zeros++
		}
		if v > 0 {
			pos++
		}
	}
	// 127 positive magnitudes (1+2+…+64) plus 1.0, 127 negatives, one zero.
	if zeros != 1 || pos != 128 {
		t.Errorf("dynamic map has %d zeros and %d positives, want 1 and 128", zeros, pos)
	}
	if math.Abs(float64(d[128])-0.55e-6) > 1e-12 {
		t.Errorf("smallest positive dynamic value %v, want 0.55e-6", d[128])
	}
}

// blockMAE is the mean absolute error divided by the block's absmax, averaged
// over all elements.
func blockMAE(w, got []float32, bs int) float64 {
	var sum float64
	for b := 0; b*bs < len(w); b++ {
		blk := w[b*bs : min(len(w), (b+1)*bs)]
		var amax float64
		for _, x := range blk {
			amax = max(amax, math.Abs(float64(x)))
		}
		for i, x := range blk {
			sum += math.Abs(float64(x)-float64(got[b*bs+i])) / amax
		}
	}
	return sum / float64(len(w))
}

// Quantization error on N(0,1) weights, relative to each block's absmax.
// Measured: NF4 0.0285, FP4 0.0375, NF4+DQ 0.0285, int8-block 0.0019.
func TestQuantErrorNormal(t *testing.T) {
	const rows, cols = 256, 1024
	w := normals(7, rows*cols, 1)
	cases := []struct {
		opt    Options
		lo, hi float64
	}{
		{Options{Type: NF4}, 0.026, 0.031},
		{Options{Type: FP4}, 0.034, 0.041},
		{Options{Type: NF4, DoubleQuant: true}, 0.026, 0.031},
		{Options{Type: Int8Block}, 0.0017, 0.0021},
	}
	got := make([]float32, len(w))
	var nf4 float64
	for _, tc := range cases {
		m := mustQuantize(t, w, rows, cols, tc.opt)
		m.Dense(got)
		e := blockMAE(w, got, 64)
		var abs float64
		for i, x := range w {
			abs += math.Abs(float64(x) - float64(got[i]))
		}
		t.Logf("%v dq=%v: mean |w−ŵ|/absmax(block) = %.5f, mean |w−ŵ|/σ = %.4f, %.3f bits/weight incl. tables", tc.opt.Type, tc.opt.DoubleQuant, e, abs/float64(len(w)), 8*float64(m.Bytes())/float64(rows*cols))
		if e < tc.lo || e > tc.hi {
			t.Errorf("%v dq=%v: block-relative MAE %.5f outside [%v, %v]", tc.opt.Type, tc.opt.DoubleQuant, e, tc.lo, tc.hi)
		}
		if tc.opt.Type == NF4 && !tc.opt.DoubleQuant {
			nf4 = e
		}
		if tc.opt.Type == FP4 && e <= nf4 {
			t.Errorf("FP4 error %.5f not above NF4's %.5f on normal data", e, nf4)
		}
	}
}

// Double quantization reconstructs every absmax within half the widest gap
// of the dynamic map (0.00703 of the nested block's absmax).
func TestDoubleQuantBound(t *testing.T) {
	for _, tc := range []struct {
		rows, cols, bs, nbs int
	}{{300, 257, 64, 256}, {64, 64, 32, 7}, {1, 2, 2, 256}} {
		n := tc.rows * tc.cols
		w := normals(uint64(n), n, 0.05)
		// Spread block scales threefold, as between the rows of real layers.
		for i := range w {
			w[i] *= float32(1 + 2*float64((i/tc.bs)%17)/16)
		}
		plain := mustQuantize(t, w, tc.rows, tc.cols, Options{Type: NF4, BlockSize: tc.bs})
		dq := mustQuantize(t, w, tc.rows, tc.cols, Options{Type: NF4, BlockSize: tc.bs, DoubleQuant: true, NestedBlockSize: tc.nbs})
		if !dq.DoubleQuant() || dq.absmax != nil {
			t.Fatalf("double-quantized matrix still holds float32 absmax")
		}
		if !slices.Equal(plain.packed, dq.packed) {
			t.Errorf("%+v: double quantization changed the 4-bit codes", tc)
		}
		var worst float64
		for b, a := range plain.absmax {
			got := dq.scale(b)
			lim := 0.00704*float64(dq.nestedAbsmax[b/tc.nbs]) + 1e-6*float64(a)
			if d := math.Abs(float64(got) - float64(a)); d > lim {
				t.Errorf("%+v: block %d absmax %v decoded %v, error %v > %v", tc, b, a, got, d, lim)
			} else {
				worst = max(worst, d/float64(a))
			}
		}
		w1, w2 := make([]float32, n), make([]float32, n)
		plain.Dense(w1)
		dq.Dense(w2)
		e1, e2 := blockMAE(w, w1, tc.bs), blockMAE(w, w2, tc.bs)
		t.Logf("%+v: worst absmax relative error %.2e; block MAE %.5f → %.5f with DQ", tc, worst, e1, e2)
		if e2 > e1*1.05+1e-6 {
			t.Errorf("%+v: double quantization raised the error from %.5f to %.5f", tc, e1, e2)
		}
	}
}

// INT8 rounds to the nearest of 255 levels: error ≤ absmax/254 per element.
func TestInt8Error(t *testing.T) {
	for _, typ := range []Type{Int8Row, Int8Block} {
		rows, cols := 13, 201
		w := normals(3, rows*cols, 0.1)
		clear(w[cols : 2*cols]) // a zero row (a zero block for Int8Block)
		m := mustQuantize(t, w, rows, cols, Options{Type: typ, BlockSize: 50})
		got := make([]float32, len(w))
		m.Dense(got)
		bs := m.BlockSize()
		var rel float64
		for e, x := range w {
			amax := float64(m.absmax[e/bs])
			d := math.Abs(float64(x) - float64(got[e]))
			if d > amax/254*(1+1e-5) {
				t.Fatalf("%v element %d: %v decoded %v, error %v > absmax/254 = %v", typ, e, x, got[e], d, amax/254)
			}
			if amax > 0 {
				rel += d / amax
			}
		}
		t.Logf("%v: mean |w−ŵ|/absmax = %.5f", typ, rel/float64(len(w)))
	}
}

func TestQuantizeBF16MatchesF32(t *testing.T) {
	rows, cols := 37, 530
	w := normals(5, rows*cols, 0.02)
	bf := make([]uint16, len(w))
	for i, x := range w {
		bf[i] = uint16(math.Float32bits(x) >> 16) // truncation: any bf16 will do
		w[i] = math.Float32frombits(uint32(bf[i]) << 16)
	}
	for _, opt := range []Options{{Type: NF4, DoubleQuant: true}, {Type: FP4, BlockSize: 128}, {Type: Int8Row}, {Type: Int8Block}} {
		a := mustQuantize(t, w, rows, cols, opt)
		b, err := QuantizeBF16(bf, rows, cols, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.packed, b.packed) || !slices.Equal(a.q, b.q) || !slices.Equal(a.absmax, b.absmax) || !slices.Equal(a.qabsmax, b.qabsmax) || !slices.Equal(a.nestedAbsmax, b.nestedAbsmax) {
			t.Errorf("%+v: QuantizeBF16 differs from Quantize of the same values", opt)
		}
		if b.srcDType != "bfloat16" {
			t.Errorf("source dtype %q, want bfloat16", b.srcDType)
		}
	}
}

func TestQuantizeBadInput(t *testing.T) {
	w := make([]float32, 6)
	cases := []struct {
		w          []float32
		rows, cols int
		opt        Options
		want       string
	}{
		{w, 2, 3, Options{}, "unknown type"},
		{w, 2, 3, Options{Type: F32}, "not a quantized type"},
		{w, 2, 3, Options{Type: NF4, BlockSize: 3}, "must be even"},
		{w, 2, 3, Options{Type: Int8Row, DoubleQuant: true}, "double quantization"},
		{w, 2, 4, Options{Type: NF4}, "want rows·cols"},
		{w, 0, 3, Options{Type: NF4}, "positive"},
		{[]float32{0, 1, 2, 3, float32(math.NaN()), 5}, 2, 3, Options{Type: NF4}, "weight[1][1] is NaN"},
		{[]float32{0, 1, float32(math.Inf(-1)), 3, 4, 5}, 2, 3, Options{Type: Int8Row}, "weight[0][2] is -Inf"},
	}
	for _, tc := range cases {
		_, err := Quantize(tc.w, tc.rows, tc.cols, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Quantize(%d×%d, %+v) error %v, want one containing %q", tc.rows, tc.cols, tc.opt, err, tc.want)
		}
	}
	if _, err := ParseType("nf5"); err == nil {
		t.Error("ParseType(nf5) succeeded")
	}
	for _, s := range []string{"nf4", "fp4", "int8", "int8-row", "int8-block", "bf16"} {
		if _, err := ParseType(s); err != nil {
			t.Errorf("ParseType(%q): %v", s, err)
		}
	}
}
