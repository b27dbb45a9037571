package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refAttention is causal grouped-query attention written as plainly as
// possible in float64: for each sequence, head and query, list the keys it
// may see, softmax their scaled dot products, and mix the values. Its
// backward pass is the textbook one: dP = dO·Vᵀ, dS = P∘(dP − rowsum(P∘dP)),
// dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO. A query that sees no key
// yields zero output and zero gradients.
type refAttention struct {
	a                  *Attention
	q, k, v            []float64
	out, lse           []float64
	dq, dk, dv         []float64
	fullyMaskedQueries int
}

func (r *refAttention) visible(b, t, j int) bool {
	a := r.a
	if j > a.Offset+t {
		return false
	}
	if a.Window > 0 && a.Offset+t-j >= a.Window {
		return false
	}
	if a.KeyMask != nil && a.KeyMask[b*a.Tk+j] == 0 {
		return false
	}
	if a.QSeg != nil && a.QSeg[b*a.Tq+t] != a.KSeg[b*a.Tk+j] {
		return false
	}
	return true
}

func (r *refAttention) forward() {
	a := r.a
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	r.out = make([]float64, a.B*a.Tq*qd)
	r.lse = make([]float64, a.B*a.Heads*a.Tq)
	r.fullyMaskedQueries = 0
	for b := 0; b < a.B; b++ {
		for h := 0; h < a.Heads; h++ {
			g := h / group
			for t := 0; t < a.Tq; t++ {
				qo := (b*a.Tq+t)*qd + h*hd
				s := make([]float64, a.Tk)
				mx := math.Inf(-1)
				for j := 0; j < a.Tk; j++ {
					if !r.visible(b, t, j) {
						s[j] = math.Inf(-1)
						continue
					}
					ko := (b*a.Tk+j)*kd + g*hd
					var dot float64
					for e := 0; e < hd; e++ {
						dot += r.q[qo+e] * r.k[ko+e]
					}
					s[j] = r.capped(float64(a.Scale) * dot)
					mx = math.Max(mx, s[j])
				}
				li := (b*a.Heads+h)*a.Tq + t
				if math.IsInf(mx, -1) {
					r.lse[li] = mx
					if h == 0 {
						r.fullyMaskedQueries++
					}
					continue
				}
				var sum float64
				for j := range s {
					sum += math.Exp(s[j] - mx)
				}
				r.lse[li] = mx + math.Log(sum)
				for j := range s {
					p := math.Exp(s[j] - r.lse[li])
					if p == 0 {
						continue
					}
					vo := (b*a.Tk+j)*kd + g*hd
					for e := 0; e < hd; e++ {
						r.out[qo+e] += p * r.v[vo+e]
					}
				}
			}
		}
	}
}

func (r *refAttention) backward(dout []float64) {
	a := r.a
	hd, qd, kd := a.HD, a.Heads*a.HD, a.KVHeads*a.HD
	group := a.Heads / a.KVHeads
	r.dq = make([]float64, len(r.q))
	r.dk = make([]float64, len(r.k))
	r.dv = make([]float64, len(r.v))
	for b := 0; b < a.B; b++ {
		for h := 0; h < a.Heads; h++ {
			g := h / group
			for t := 0; t < a.Tq; t++ {
				li := (b*a.Heads+h)*a.Tq + t
				if math.IsInf(r.lse[li], -1) {
					continue
				}
				qo := (b*a.Tq+t)*qd + h*hd
				p := make([]float64, a.Tk)
				dp := make([]float64, a.Tk)
				capD := make([]float64, a.Tk)
				var D float64
				for j := 0; j < a.Tk; j++ {
					if !r.visible(b, t, j) {
						continue
					}
					ko := (b*a.Tk+j)*kd + g*hd
					var dot, dpj float64
					for e := 0; e < hd; e++ {
						dot += r.q[qo+e] * r.k[ko+e]
						dpj += dout[qo+e] * r.v[ko+e]
					}
					sc := r.capped(float64(a.Scale) * dot)
					p[j] = math.Exp(sc - r.lse[li])
					// ∂capped/∂raw, folded into the scale below.
					if c := float64(a.SoftCap); c > 0 {
						dp[j] = dpj * (1 - (sc/c)*(sc/c))
						D += p[j] * dpj
						capD[j] = 1 - (sc/c)*(sc/c)
						continue
					}
					dp[j] = dpj
					D += p[j] * dpj
				}
				for j := 0; j < a.Tk; j++ {
					if p[j] == 0 {
						continue
					}
					ko := (b*a.Tk+j)*kd + g*hd
					ds := p[j] * (dp[j] - D) * float64(a.Scale)
					if a.SoftCap > 0 {
						ds = p[j] * (dp[j] - D*capD[j]) * float64(a.Scale)
					}
					for e := 0; e < hd; e++ {
						r.dq[qo+e] += ds * r.k[ko+e]
						r.dk[ko+e] += ds * r.q[qo+e]
						r.dv[ko+e] += p[j] * dout[qo+e]
					}
				}
			}
		}
	}
}

// capped applies the soft cap, when there is one.
func (r *refAttention) capped(s float64) float64 {
	if c := float64(r.a.SoftCap); c > 0 {
		return c * math.Tanh(s/c)
	}
	return s
}

type attnCase struct {
	name           string
	B, Tq, Tk      int
	heads, kvHeads int
	hd, offset     int
	mask           func(b, j int) int32 // nil: no KeyMask
	seg            func(b, t int) int32 // nil: no packing; keys use t−offset… see below
	window         int
	softCap        float32
}

func rightPad(lens ...int) func(b, j int) int32 {
	return func(b, j int) int32 {
		if j < lens[b%len(lens)] {
			return 1
		}
		return 0
	}
}

// leftPad masks the first pads[b] keys of row b: the queries at those
// positions see no key at all.
func leftPad(pads ...int) func(b, j int) int32 {
	return func(b, j int) int32 {
		if j < pads[b%len(pads)] {
			return 0
		}
		return 1
	}
}

func attnCases() []attnCase {
	segs := func(b, t int) int32 { // packed samples of lengths 3, 7, 1, 9, …
		bounds := []int{3, 10, 11, 20, 40, 41, 130, 1 << 30}
		for i, e := range bounds {
			if t < e+b {
				return int32(i)
			}
		}
		return 99
	}
	cs := []attnCase{
		{name: "mha_T1", B: 1, Tq: 1, Tk: 1, heads: 1, kvHeads: 1, hd: 8},
		{name: "mha_T5", B: 1, Tq: 5, Tk: 5, heads: 2, kvHeads: 2, hd: 8},
		{name: "gqa2_T17", B: 1, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 16},
		{name: "gqa3_T130", B: 1, Tq: 130, Tk: 130, heads: 6, kvHeads: 2, hd: 8},
		{name: "gqa4_T257", B: 1, Tq: 257, Tk: 257, heads: 8, kvHeads: 2, hd: 8},
		{name: "mqa_T17", B: 1, Tq: 17, Tk: 17, heads: 3, kvHeads: 1, hd: 12},
		{name: "mqa4_T130", B: 2, Tq: 130, Tk: 130, heads: 4, kvHeads: 1, hd: 5},
		{name: "B3_rightpad", B: 3, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 8, mask: rightPad(17, 9, 1)},
		{name: "B3_leftpad", B: 3, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 8, mask: leftPad(0, 8, 16)},
		{name: "B2_leftpad_T257", B: 2, Tq: 257, Tk: 257, heads: 3, kvHeads: 3, hd: 4, mask: leftPad(200, 3)},
		{name: "B2_rightpad_T130", B: 2, Tq: 130, Tk: 130, heads: 2, kvHeads: 1, hd: 8, mask: rightPad(129, 64)},
		{name: "packed_T17", B: 2, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 8, seg: segs},
		{name: "packed_T257", B: 1, Tq: 257, Tk: 257, heads: 2, kvHeads: 1, hd: 8, seg: segs},
		{name: "packed_rightpad", B: 2, Tq: 17, Tk: 17, heads: 2, kvHeads: 2, hd: 8, seg: segs, mask: rightPad(15, 12)},
		{name: "offset_prefix", B: 2, Tq: 5, Tk: 12, heads: 4, kvHeads: 2, hd: 8, offset: 7},
		{name: "offset_cache_T1", B: 1, Tq: 1, Tk: 9, heads: 3, kvHeads: 1, hd: 16, offset: 8},
		{name: "offset_T130", B: 1, Tq: 130, Tk: 140, heads: 2, kvHeads: 2, hd: 8, offset: 10},
		// A prefix with a padded sequence after it, as prefix tuning builds.
		{name: "offset_prefix_pad", B: 2, Tq: 17, Tk: 21, heads: 4, kvHeads: 1, hd: 8, offset: 4,
			mask: func(b, j int) int32 { return b32(j < 4 || j < 4+[]int{17, 6}[b]) }},
		// Sliding windows (Gemma, Mistral) and soft-capped scores (Gemma 2).
		{name: "window4_T17", B: 2, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 8, window: 4, mask: rightPad(17, 9)},
		{name: "window1_T5", B: 1, Tq: 5, Tk: 5, heads: 2, kvHeads: 1, hd: 8, window: 1},
		{name: "window8_T257_offset", B: 1, Tq: 257, Tk: 260, heads: 2, kvHeads: 1, hd: 8, window: 8, offset: 3},
		{name: "softcap_T17", B: 2, Tq: 17, Tk: 17, heads: 4, kvHeads: 2, hd: 8, softCap: 1.5, mask: leftPad(0, 5)},
		{name: "softcap_window_T130", B: 1, Tq: 130, Tk: 130, heads: 2, kvHeads: 2, hd: 8, softCap: 3, window: 16},
	}
	return cs
}

func b32(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

func (c attnCase) build(r *rand.Rand) (*Attention, []float32, []float32, []float32) {
	a := &Attention{B: c.B, Tq: c.Tq, Tk: c.Tk, Heads: c.heads, KVHeads: c.kvHeads, HD: c.hd, Offset: c.offset,
		Scale: float32(1 / math.Sqrt(float64(c.hd))), Window: c.window, SoftCap: c.softCap}
	if c.mask != nil {
		a.KeyMask = make([]int32, c.B*c.Tk)
		for b := 0; b < c.B; b++ {
			for j := 0; j < c.Tk; j++ {
				a.KeyMask[b*c.Tk+j] = c.mask(b, j)
			}
		}
	}
	if c.seg != nil {
		// Query t sits at key position offset+t.
		a.QSeg, a.KSeg = make([]int32, c.B*c.Tq), make([]int32, c.B*c.Tk)
		for b := 0; b < c.B; b++ {
			for t := 0; t < c.Tq; t++ {
				a.QSeg[b*c.Tq+t] = c.seg(b, c.offset+t)
			}
			for j := 0; j < c.Tk; j++ {
				a.KSeg[b*c.Tk+j] = c.seg(b, j)
			}
		}
	}
	// Scale 2 gives peaked softmaxes, so errors in masking or
	// normalisation show.
	q := randSlice(r, c.B*c.Tq*c.heads*c.hd, 2)
	k := randSlice(r, c.B*c.Tk*c.kvHeads*c.hd, 2)
	v := randSlice(r, c.B*c.Tk*c.kvHeads*c.hd, 1)
	return a, q, k, v
}

func TestAttentionAgainstFloat64(t *testing.T) {
	for _, c := range attnCases() {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.Tq), uint64(c.heads*100+c.B)))
			a, q, k, v := c.build(r)
			ref := &refAttention{a: a, q: to64(q), k: to64(k), v: to64(v)}
			ref.forward()

			qd := c.heads * c.hd
			out := randSlice(r, c.B*c.Tq*qd, 1) // overwritten
			lse := make([]float32, c.B*c.heads*c.Tq)
			a.Forward(out, lse, q, k, v)
			assertClose(t, "out", out, ref.out, 1e-5)
			for i, l := range lse {
				w := ref.lse[i]
				if math.IsInf(w, -1) {
					if !math.IsInf(float64(l), -1) {
						t.Fatalf("lse[%d] = %v, want -Inf (no visible key)", i, l)
					}
					continue
				}
				if math.Abs(float64(l)-w) > 1e-5*math.Max(1, math.Abs(w)) {
					t.Fatalf("lse[%d] = %v, want %v", i, l, w)
				}
			}

			dout := randSlice(r, len(out), 1)
			ref.backward(to64(dout))
			// dq is overwritten; dk and dv accumulate into what is there.
			dq := randSlice(r, len(q), 1)
			dk0, dv0 := randSlice(r, len(k), 1), randSlice(r, len(v), 1)
			dk, dv := append([]float32(nil), dk0...), append([]float32(nil), dv0...)
			a.Backward(dq, dk, dv, dout, q, k, v, out, lse)
			for i := range ref.dk {
				ref.dk[i] += float64(dk0[i])
				ref.dv[i] += float64(dv0[i])
			}
			assertClose(t, "dq", dq, ref.dq, 1e-5)
			assertClose(t, "dk", dk, ref.dk, 1e-5)
			assertClose(t, "dv", dv, ref.dv, 1e-5)

			// Fully masked queries: zero output and zero dq, exactly.
			if c.mask != nil || c.seg != nil {
				masked := 0
				for b := 0; b < c.B; b++ {
					for h := 0; h < c.heads; h++ {
						for tt := 0; tt < c.Tq; tt++ {
							if !math.IsInf(ref.lse[(b*c.heads+h)*c.Tq+tt], -1) {
								continue
							}
							masked++
							o := (b*c.Tq+tt)*qd + h*c.hd
							for e := 0; e < c.hd; e++ {
								if out[o+e] != 0 || dq[o+e] != 0 {
									t.Fatalf("masked query b%d h%d t%d: out %v dq %v, want 0", b, h, tt, out[o+e], dq[o+e])
								}
							}
						}
					}
				}
				if c.name == "B3_leftpad" && masked == 0 {
					t.Fatal("left padding produced no fully masked query: the case tests nothing")
				}
			}

			// The backward must be repeatable with the scratch buffer reused.
			dq2 := make([]float32, len(q))
			dk2, dv2 := make([]float32, len(k)), make([]float32, len(v))
			a.Backward(dq2, dk2, dv2, dout, q, k, v, out, lse)
			for i := range dq2 {
				if dq2[i] != dq[i] {
					t.Fatalf("second Backward: dq[%d] = %v, first gave %v", i, dq2[i], dq[i])
				}
			}
			for i := range dk2 {
				if d := math.Abs(float64(dk2[i] + dk0[i] - dk[i])); d > 1e-6*(1+math.Abs(float64(dk[i]))) {
					t.Fatalf("second Backward: dk[%d] = %v, first gave %v", i, dk2[i]+dk0[i], dk[i])
				}
			}
		})
	}
}

// TestRefAttentionGradient checks the float64 reference backward against
// central differences of the reference forward, so the kernel is compared
// with something known to be right.
func TestRefAttentionGradient(t *testing.T) {
	c := attnCase{B: 2, Tq: 4, Tk: 6, heads: 4, kvHeads: 2, hd: 3, offset: 2, mask: leftPad(0, 3)}
	r := rand.New(rand.NewPCG(11, 12))
	a, q, k, v := c.build(r)
	ref := &refAttention{a: a, q: to64(q), k: to64(k), v: to64(v)}
	ref.forward()
	dout := to64(randSlice(r, len(ref.out), 1))
	ref.backward(dout)
	loss := func() float64 {
		ref.forward()
		var s float64
		for i, o := range ref.out {
			s += o * dout[i]
		}
		return s
	}
	check := func(name string, x, grad []float64) {
		grad = append([]float64(nil), grad...)
		for i := range x {
			old := x[i]
			const h = 1e-6
			x[i] = old + h
			lp := loss()
			x[i] = old - h
			lm := loss()
			x[i] = old
			fd := (lp - lm) / (2 * h)
			if math.Abs(fd-grad[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Fatalf("reference %s[%d]: analytic %v, finite difference %v", name, i, grad[i], fd)
			}
		}
	}
	check("dq", ref.q, ref.dq)
	check("dk", ref.k, ref.dk)
	check("dv", ref.v, ref.dv)
}
