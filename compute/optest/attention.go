package optest

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// KeyHoles is how a test's key mask hides keys.
type KeyHoles int

const (
	NoKeyMask KeyHoles = iota
	// LeftPad hides the first b+Off keys of sequence b: its first queries
	// see nothing when Off is 0.
	LeftPad
	// PrefixPad hides one key after a KV prefix of Off steps.
	PrefixPad
	// Scattered hides every third key from the b-th, as the rows of a
	// group decoding step own scattered cache positions.
	Scattered
	// Fifths hides every fifth key of the batch, counted across sequences.
	Fifths
)

// AttnCase is one fused attention problem of the tests: its shape
// (compute.AttnParams' fields; TK = Off + T, TMax at least TK) and its masks.
type AttnCase struct {
	Name                    string
	B, H, KVH, T, Off, TMax int
	HD, Window              int
	SoftCap                 float32
	Keys                    KeyHoles
	// SegLen > 0 packs samples of SegLen positions (counted from the
	// first key) into every sequence.
	SegLen int
}

// AttnCases are the problems every backend's fused attention is checked on:
// multi-head and grouped-query heads, left and prefix padding, packed
// samples, a KV cache (Off > 0, TMax > TK) with a single decoding query,
// sliding windows and soft caps, queries that see no key, and shapes that
// cut a GPU kernel's 32-wide tiles and chunks of the head unevenly (heads of
// 80, 128 and 256, T and TK not multiples of 32, windows across tiles).
var AttnCases = []AttnCase{
	{Name: "mha", B: 2, H: 2, KVH: 2, T: 7, HD: 8},
	{Name: "gqa2-pad", B: 3, H: 4, KVH: 2, T: 13, HD: 8, Keys: LeftPad},
	{Name: "gqa3-packed", B: 2, H: 6, KVH: 2, T: 19, HD: 16, SegLen: 6},
	{Name: "prefix", B: 2, H: 3, KVH: 1, T: 9, Off: 4, HD: 8, Keys: PrefixPad},
	{Name: "cache", B: 2, H: 4, KVH: 2, T: 3, Off: 10, TMax: 20, HD: 8},
	{Name: "decode-holes", B: 3, H: 6, KVH: 2, T: 1, Off: 30, TMax: 40, HD: 16, Keys: Scattered},
	{Name: "window-cap", B: 2, H: 6, KVH: 2, T: 33, HD: 8, Window: 5, SoftCap: 3, Keys: LeftPad},
	{Name: "cap-cache", B: 1, H: 3, KVH: 1, T: 5, Off: 7, TMax: 12, HD: 8, SoftCap: 2},
	{Name: "long", B: 1, H: 3, KVH: 1, T: 301, HD: 16, SegLen: 6},
	{Name: "long-heads", B: 2, H: 4, KVH: 2, T: 160, HD: 32, Keys: LeftPad},
	{Name: "tiny-head", B: 2, H: 2, KVH: 2, T: 5, HD: 4},
	{Name: "fifths-packed", B: 2, H: 6, KVH: 2, T: 7, HD: 8, Keys: Fifths, SegLen: 3},
	{Name: "fifths-cache", B: 1, H: 3, KVH: 1, T: 4, Off: 3, TMax: 9, HD: 8, Keys: Fifths},
	{Name: "fifths-window-cap", B: 2, H: 4, KVH: 2, T: 9, HD: 4, Window: 2, SoftCap: 2, Keys: Fifths, SegLen: 3},
	{Name: "tiles-gqa4", B: 2, H: 4, KVH: 1, T: 70, HD: 64, Keys: LeftPad},
	{Name: "head80-window-packed", B: 1, H: 2, KVH: 1, T: 97, HD: 80, Window: 40, SoftCap: 5, SegLen: 50},
	{Name: "head128-cache", B: 2, H: 4, KVH: 2, T: 37, Off: 45, TMax: 96, HD: 128, Keys: PrefixPad},
	{Name: "head256-window-cap", B: 1, H: 2, KVH: 1, T: 66, HD: 256, Window: 33, SoftCap: 30, Keys: LeftPad},
	{Name: "decode-head128", B: 2, H: 8, KVH: 2, T: 1, Off: 100, TMax: 128, HD: 128, Keys: Scattered},
	{Name: "packed-cache", B: 2, H: 2, KVH: 1, T: 40, Off: 25, TMax: 70, HD: 48, SegLen: 20},
}

// AttnTol bounds a backend's deviation from another's fused attention,
// relative to the largest magnitude of each output: F32 and BF16 for o, dq,
// dk and dv in that element type, LSE for the log-sum-exp.
type AttnTol struct{ F32, BF16, LSE float64 }

// AttnProblem is one problem's inputs on the host: the parameters (their
// mask tensors nil), q, k, v, do and dsum, the values dk and dv hold before
// the backward pass (which must leave the steps past TK alone), and the key
// mask and segments (nil: none).
type AttnProblem struct {
	P                       compute.AttnParams
	Q, K, V, DO, DSum, DKV0 []float32
	KeyMask, QSeg, KSeg     []int32
}

// attnInputs draws a problem of case c with values representable in dt.
func attnInputs(c AttnCase, dt compute.DType) AttnProblem {
	r := rand.New(rand.NewPCG(uint64(c.B*1000+c.T), uint64(c.H*100+c.HD)))
	tk := c.Off + c.T
	tmax := max(c.TMax, tk)
	d := AttnProblem{P: compute.AttnParams{B: c.B, H: c.H, KVH: c.KVH, T: c.T, TK: tk, TMax: tmax, HD: c.HD, Off: c.Off,
		Window: c.Window, SoftCap: c.SoftCap, Scale: float32(1 / math.Sqrt(float64(c.HD)))}}
	vec := func(n int, scale float64) []float32 {
		v := randVec(r, n, scale)
		if dt == compute.BF16 {
			v = roundBF16(v)
		}
		return v
	}
	nq, nk := c.B*c.H*c.T*c.HD, c.B*c.KVH*tmax*c.HD
	d.Q, d.K, d.V, d.DO = vec(nq, 2), vec(nk, 2), vec(nk, 1), vec(nq, 1)
	d.DSum = randVec(r, c.B*c.H*c.T, 0.5)
	// Steps of dk, dv past TK must be left as they were.
	d.DKV0 = vec(nk, 1)
	if c.Keys != NoKeyMask {
		d.KeyMask = make([]int32, c.B*tk)
		for b := 0; b < c.B; b++ {
			row := d.KeyMask[b*tk : (b+1)*tk]
			for j := range row {
				row[j] = 1
				switch c.Keys {
				case LeftPad:
					if j < b+c.Off {
						row[j] = 0
					}
				case PrefixPad:
					if j == c.Off+c.T-1-b {
						row[j] = 0
					}
				case Scattered:
					if j >= b && (j-b)%3 == 0 {
						row[j] = 0
					}
				case Fifths:
					if (b*tk+j)%5 == 0 {
						row[j] = 0
					}
				}
			}
		}
	}
	if c.SegLen > 0 {
		d.QSeg, d.KSeg = make([]int32, c.B*c.T), make([]int32, c.B*tk)
		for b := 0; b < c.B; b++ {
			for i := 0; i < c.T; i++ {
				d.QSeg[b*c.T+i] = int32((c.Off+i)/c.SegLen + b)
			}
			for j := 0; j < tk; j++ {
				d.KSeg[b*tk+j] = int32(j/c.SegLen + b)
			}
		}
	}
	return d
}

// sees reports whether query i of sequence b sees any key: the rows whose
// lse must be −Inf are the others.
func (d AttnProblem) sees(b, i int) bool {
	p := d.P
	for j := 0; j < p.TK && j <= p.Off+i; j++ {
		switch {
		case p.Window > 0 && p.Off+i-j >= p.Window:
		case d.KeyMask != nil && d.KeyMask[b*p.TK+j] == 0:
		case d.QSeg != nil && d.QSeg[b*p.T+i] != d.KSeg[b*p.TK+j]:
		default:
			return true
		}
	}
	return false
}

// attnOut is what a backend computed: o, lse, dq, dk, dv.
type attnOut [5][]float32

var attnOutNames = [5]string{"o", "lse", "dq", "dk", "dv"}

// attnTensors uploads d to be: q, k, v, do, dsum and the parameters with
// be's masks.
func attnTensors(t *testing.T, be compute.Backend, d AttnProblem, dt compute.DType) (p compute.AttnParams, q, k, v, do, dsum compute.Tensor) {
	p = d.P
	if d.KeyMask != nil {
		p.KeyMask = uploadInt(t, be, d.KeyMask)
	}
	if d.QSeg != nil {
		p.QSeg, p.KSeg = uploadInt(t, be, d.QSeg), uploadInt(t, be, d.KSeg)
	}
	return p, upload(t, be, dt, d.Q), upload(t, be, dt, d.K), upload(t, be, dt, d.V), upload(t, be, dt, d.DO),
		upload(t, be, compute.F32, d.DSum)
}

// runFused runs be's fused attention, forward then backward from its own
// lse, on d.
func runFused(t *testing.T, be compute.Backend, d AttnProblem, dt compute.DType) attnOut {
	t.Helper()
	fa, ok := be.(compute.FusedAttention)
	if !ok {
		t.Fatalf("%s does not implement compute.FusedAttention", be.Name())
	}
	p, q, k, v, do, dsum := attnTensors(t, be, d, dt)
	if !fa.AttnFusedFor(p) {
		t.Fatalf("%s declines the problem %+v", be.Name(), d.P)
	}
	nq := len(d.Q)
	o, lse, dq := alloc(t, be, dt, nq), alloc(t, be, compute.F32, len(d.DSum)), alloc(t, be, dt, nq)
	dk, dv := upload(t, be, dt, d.DKV0), upload(t, be, dt, d.DKV0)
	fa.AttnForward(o, lse, q, k, v, p)
	fa.AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum, p)
	if err := be.Sync(); err != nil {
		t.Fatalf("%s: %v", be.Name(), err)
	}
	var out attnOut
	for i, x := range []compute.Tensor{o, lse, dq, dk, dv} {
		out[i] = download(t, be, x)
	}
	for _, x := range []compute.Tensor{o, lse, dq, dk, dv, q, k, v, do, dsum, p.KeyMask, p.QSeg, p.KSeg} {
		if x != nil {
			x.Free()
		}
	}
	return out
}

// FusedAttention checks be's fused attention (compute.FusedAttention),
// forward and backward, against oracle's (the reference backend's plain
// loops) on every AttnCases problem, in f32 and bf16.
func FusedAttention(t *testing.T, be, oracle compute.Backend, tol AttnTol) {
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range AttnCases {
			t.Run(c.Name+"/"+dt.String(), func(t *testing.T) { AttnCheck(t, be, oracle, c, dt, tol) })
		}
	}
}

// AttnCheck is FusedAttention's check of one case in one element type.
func AttnCheck(t *testing.T, be, oracle compute.Backend, c AttnCase, dt compute.DType, tol AttnTol) {
	d := attnInputs(c, dt)
	got, want := runFused(t, be, d, dt), runFused(t, oracle, d, dt)
	attnCompare(t, d, got, want, dt, tol)
}

// AttnResult is what a fused attention computed, on the host.
type AttnResult struct{ O, LSE, DQ, DK, DV []float32 }

// AttnCheckHost is AttnCheck for a fused attention that is not a backend
// (the GPU kernels run on the CPU by an emulator): run computes case c's
// problem with tensors of type dt.
func AttnCheckHost(t *testing.T, run func(AttnProblem, compute.DType) (AttnResult, error), oracle compute.Backend,
	c AttnCase, dt compute.DType, tol AttnTol) {
	d := attnInputs(c, dt)
	r, err := run(d, dt)
	if err != nil {
		t.Fatal(err)
	}
	got := attnOut{r.O, r.LSE, r.DQ, r.DK, r.DV}
	for i, n := range []int{len(d.Q), len(d.DSum), len(d.Q), len(d.K), len(d.K)} {
		if len(got[i]) != n {
			t.Fatalf("%s: %d values, want %d", attnOutNames[i], len(got[i]), n)
		}
	}
	attnCompare(t, d, got, runFused(t, oracle, d, dt), dt, tol)
}

// attnCompare fails where got strays from want by more than tol, and where
// got's lse is not −Inf exactly for the queries that see no key.
func attnCompare(t *testing.T, d AttnProblem, got, want attnOut, dt compute.DType, tol AttnTol) {
	t.Helper()
	for i, name := range attnOutNames {
		lim := tol.F32
		switch {
		case name == "lse":
			lim = tol.LSE
		case dt == compute.BF16:
			lim = tol.BF16
		}
		deviation(t, name, got[i], want[i], lim)
	}
	p := d.P
	for b := 0; b < p.B; b++ {
		for h := 0; h < p.H; h++ {
			for i := 0; i < p.T; i++ {
				l := got[1][(b*p.H+h)*p.T+i]
				if blind := !d.sees(b, i); blind != math.IsInf(float64(l), -1) {
					t.Errorf("lse of sequence %d, head %d, query %d is %g; the query sees no key: %v", b, h, i, l, blind)
				}
			}
		}
	}
}

// deviation fails when got differs from want by more than tol of want's
// largest magnitude (infinities must agree exactly), or holds a NaN.
func deviation(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	var scale, worst float64
	for _, w := range want {
		if !math.IsInf(float64(w), 0) {
			scale = max(scale, math.Abs(float64(w)))
		}
	}
	for i, w := range want {
		g := got[i]
		if math.IsInf(float64(w), 0) || math.IsInf(float64(g), 0) {
			if g != w {
				t.Errorf("%s[%d] = %g, want %g", what, i, g, w)
				return
			}
			continue
		}
		e := math.Abs(float64(g - w))
		if math.IsNaN(e) {
			t.Errorf("%s[%d] = %g, want %g", what, i, g, w)
			return
		}
		worst = max(worst, e)
	}
	if scale == 0 {
		scale = 1
	}
	if worst > tol*scale {
		t.Errorf("%s: max deviation %.3g of scale %.3g (tol %.1g)", what, worst, scale, tol)
	}
}

// AttnFusedMatchesUnfused checks be's fused attention against be's own
// unfused operations as the device block runs them without it
// (GemmBatched, AttnSoftmaxWindowed and its backward, over the whole score
// matrix) on every AttnCases problem: the same values, bf16 rounding of the
// probabilities and score gradients included.
func AttnFusedMatchesUnfused(t *testing.T, be compute.Backend, tol AttnTol) {
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		for _, c := range AttnCases {
			t.Run(c.Name+"/"+dt.String(), func(t *testing.T) {
				d := attnInputs(c, dt)
				// The unfused products leave dk, dv past TK at zero.
				clear(d.DKV0)
				got, want := runFused(t, be, d, dt), runUnfused(t, be, d, dt)
				attnCompare(t, d, got, want, dt, tol)
			})
		}
	}
}

// runUnfused is the attention of d through the unfused operations.
func runUnfused(t *testing.T, be compute.Backend, d AttnProblem, dt compute.DType) attnOut {
	t.Helper()
	p, q, k, v, do, dsum := attnTensors(t, be, d, dt)
	B, T, tk, tmax, hd := p.B, p.T, p.TK, p.TMax, p.HD
	g, batch := p.H/p.KVH, p.B*p.KVH
	n := B * p.H * T * tk
	zeros := func(dt compute.DType, n int) compute.Tensor {
		x := alloc(t, be, dt, n)
		be.Zero(x)
		return x
	}
	s, sp, lse, o := zeros(compute.F32, n), zeros(dt, n), zeros(compute.F32, B*p.H*T), zeros(dt, len(d.Q))
	be.GemmBatched(false, true, g*T, tk, hd, p.Scale, q, hd, g*T*hd, k, hd, tmax*hd, 0, s, tk, g*T*tk, batch)
	be.AttnSoftmaxWindowed(sp, lse, s, p.KeyMask, p.QSeg, p.KSeg, B, p.H, T, tk, p.Off, p.Window, p.SoftCap)
	be.GemmBatched(false, false, g*T, hd, tk, 1, sp, tk, g*T*tk, v, hd, tmax*hd, 0, o, hd, g*T*hd, batch)
	dp, ds := zeros(compute.F32, n), zeros(dt, n)
	be.GemmBatched(false, true, g*T, tk, hd, 1, do, hd, g*T*hd, v, hd, tmax*hd, 0, dp, tk, g*T*tk, batch)
	be.AttnSoftmaxWindowedBackward(sp, ds, s, dp, lse, dsum, p.KeyMask, p.QSeg, p.KSeg, B, p.H, T, tk, p.Off, p.Window, p.SoftCap)
	dq, dk, dv := zeros(dt, len(d.Q)), zeros(dt, len(d.K)), zeros(dt, len(d.K))
	be.GemmBatched(true, false, tk, hd, g*T, 1, sp, tk, g*T*tk, do, hd, g*T*hd, 0, dv, hd, tmax*hd, batch)
	be.GemmBatched(false, false, g*T, hd, tk, p.Scale, ds, tk, g*T*tk, k, hd, tmax*hd, 0, dq, hd, g*T*hd, batch)
	be.GemmBatched(true, false, tk, hd, g*T, p.Scale, ds, tk, g*T*tk, q, hd, g*T*hd, 0, dk, hd, tmax*hd, batch)
	if err := be.Sync(); err != nil {
		t.Fatalf("%s: %v", be.Name(), err)
	}
	var out attnOut
	for i, x := range []compute.Tensor{o, lse, dq, dk, dv} {
		out[i] = download(t, be, x)
	}
	for _, x := range []compute.Tensor{s, sp, lse, o, dp, ds, dq, dk, dv, q, k, v, do, dsum, p.KeyMask, p.QSeg, p.KSeg} {
		if x != nil {
			x.Free()
		}
	}
	return out
}
