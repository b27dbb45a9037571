package cpu

import (
	"flag"
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// adam8All sweeps every float32 in TestAdam8EncodeMatchesQuantizer.
var adam8All = flag.Bool("adam8.all", false, "TestAdam8EncodeMatchesQuantizer: check all 2^32 float32 inputs")

// TestAdam8EncodeMatchesQuantizer: the encoding kernels give
// compute.Quantizer8's codes for a sweep of every float32 bit pattern
// (every 251st; all with -adam8.all), special values (±0, ±Inf, NaNs, subnormals, table entries
// and midpoints with their neighbours) and moment-like blocks, under
// several scales (1, a reciprocal, 0, and one that overflows to Inf).
func TestAdam8EncodeMatchesQuantizer(t *testing.T) {
	if len(archAdam8()) == 0 {
		t.Skip("no 8-bit AdamW kernels on this CPU (they need AVX2 or AVX-512F)")
	}
	var xs []float32
	for u := uint64(0); u < 1<<32; u += 251 {
		xs = append(xs, math.Float32frombits(uint32(u)))
	}
	inf := float32(math.Inf(1))
	xs = append(xs, 0, float32(math.Copysign(0, -1)), inf, -inf, float32(math.NaN()), math.Float32frombits(0xffc00001),
		math.Float32frombits(1), math.Float32frombits(0x80000001), 1, -1, 2, -2)
	for _, signed := range []bool{true, false} {
		m := compute.DynamicMap(signed)
		for c := range m {
			xs = append(xs, m[c], math.Nextafter32(m[c], 2), math.Nextafter32(m[c], -2))
			if c < 255 {
				mid := m[c] + (m[c+1]-m[c])/2
				xs = append(xs, mid, math.Nextafter32(mid, 2), math.Nextafter32(mid, -2))
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 1 << 16 {
		xs = append(xs, float32(r.NormFloat64()*math.Pow(10, -4*r.Float64())))
	}
	xs = xs[:len(xs)&^15]
	got, want := make([]byte, len(xs)), make([]byte, len(xs))
	if *adam8All {
		// 2^32 values in chunks, scale 1 (the other scales only move
		// values between these).
		const chunk = 1 << 20
		src := make([]float32, chunk)
		got, want := make([]byte, chunk), make([]byte, chunk)
		for _, signed := range []bool{true, false} {
			q := compute.NewQuantizer8(signed)
			l := layoutOf(q)
			for lo := uint64(0); lo < 1<<32; lo += chunk {
				for i := range src {
					src[i] = math.Float32frombits(uint32(lo) + uint32(i))
				}
				q.Encode(want, src, 1)
				for _, k := range archAdam8() {
					k.encode(got, src, 1, &l)
					for i := range src {
						if got[i] != want[i] {
							t.Fatalf("%s: signed %v: code of %g (%#08x): kernel %d, Quantizer8 %d", k.name, signed, src[i], math.Float32bits(src[i]), got[i], want[i])
						}
					}
				}
			}
		}
	}
	for _, k := range archAdam8() {
		for _, signed := range []bool{true, false} {
			q := compute.NewQuantizer8(signed)
			l := layoutOf(q)
			for _, scale := range []float32{1, 1 / 0.37, 0, 1e30} {
				k.encode(got, xs, scale, &l)
				q.Encode(want, xs, scale)
				for i := range xs {
					if got[i] != want[i] {
						t.Fatalf("%s: signed %v, scale %g: code of %g (%#08x): kernel %d, Quantizer8 %d", k.name, signed, scale, xs[i], math.Float32bits(xs[i]), got[i], want[i])
					}
				}
			}
		}
	}
}

// TestAdamW8bitBlocksMatchSlices: the kernels' update leaves weights, codes,
// scales and a bf16 shadow bit-identical to compute.AdamW8bitSlices over
// steps whose gradients include zeros, huge values, Inf and NaN (in their
// own blocks, so the other blocks stay finite), whole blocks of zeros, and
// a short last block.
func TestAdamW8bitBlocksMatchSlices(t *testing.T) {
	if len(archAdam8()) == 0 {
		t.Skip("no 8-bit AdamW kernels on this CPU (they need AVX2 or AVX-512F)")
	}
	for _, k := range archAdam8() {
		t.Run(k.name, func(t *testing.T) { testAdamW8bitBlocks(t, k) })
	}
}

func testAdamW8bitBlocks(t *testing.T, k *adam8Kernels) {
	const block = compute.Adam8Block
	n := 40*block + 40
	nb := compute.Adam8Blocks(n, block)
	type state struct {
		p, ms, vs, sh []float32
		m, v          []byte
	}
	newState := func() *state {
		return &state{p: make([]float32, n), ms: make([]float32, nb), vs: make([]float32, nb), sh: make([]float32, n), m: make([]byte, n), v: make([]byte, n)}
	}
	a, b := newState(), newState()
	r := rand.New(rand.NewPCG(11, 12))
	for i := range a.p {
		a.p[i] = float32(r.NormFloat64())
	}
	copy(b.p, a.p)
	g := make([]float32, n)
	round := func(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ 0xffff) }
	for step := 1; step <= 5; step++ {
		for i := range g {
			g[i] = float32(r.NormFloat64() * math.Pow(10, -6*r.Float64()))
			switch blk := i / block; {
			case blk == 3:
				g[i] = 0
			case blk == 5 && i%7 == 0:
				g[i] = 3e38
			case blk == 7 && i%50 == 0:
				g[i] = float32(math.Inf(1 - 2*(i%2)))
			case blk == 9 && i%31 == 0 && step > 2:
				g[i] = float32(math.NaN())
			}
		}
		bc1, bc2 := 1-math.Pow(0.9, float64(step)), math.Sqrt(1-math.Pow(0.999, float64(step)))
		s := compute.AdamStep{GradScale: 0.7, Decay: 0.999, Beta1: 0.9, Beta2: 0.999, StepSize: float32(1e-3 / bc1), BC2Sqrt: float32(bc2), Eps: 1e-8}
		if err := adamW8bitBlocks(k, a.p, g, a.m, a.v, a.ms, a.vs, a.sh, round, s, block); err != nil {
			t.Fatal(err)
		}
		if err := compute.AdamW8bitSlices(b.p, g, b.m, b.v, b.ms, b.vs, b.sh, round, s, block); err != nil {
			t.Fatal(err)
		}
		sameBits := func(what string, x, y []float32) {
			for i := range x {
				if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
					t.Fatalf("step %d: %s[%d]: kernels %g (%#08x), slices %g (%#08x)", step, what, i, x[i], math.Float32bits(x[i]), y[i], math.Float32bits(y[i]))
				}
			}
		}
		sameBits("weights", a.p, b.p)
		sameBits("shadow", a.sh, b.sh)
		sameBits("m scales", a.ms, b.ms)
		sameBits("v scales", a.vs, b.vs)
		for i := range a.m {
			if a.m[i] != b.m[i] || a.v[i] != b.v[i] {
				t.Fatalf("step %d: codes of %d: kernels %d/%d, slices %d/%d", step, i, a.m[i], a.v[i], b.m[i], b.v[i])
			}
		}
	}
}
