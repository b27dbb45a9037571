package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"

	"gotune/compute"
	"gotune/compute/internal/hostmem"
)

// adamWState is one AdamW problem: weights, gradient, moments and shadow.
type adamWState struct{ p, g, m, v, sh []float32 }

func (a *adamWState) clone() *adamWState {
	c := func(x []float32) []float32 { return append([]float32(nil), x...) }
	return &adamWState{p: c(a.p), g: c(a.g), m: c(a.m), v: c(a.v), sh: c(a.sh)}
}

// adamWInputs fills n values of one kind: the values a step sees and the
// ones at the edges (zeros, huge and tiny magnitudes, ±Inf and NaN
// gradients, and raw bit patterns, which put NaNs with different payloads
// in weights, moments and gradient at once).
func adamWInputs(r *rand.Rand, kind string, n int) *adamWState {
	a := &adamWState{p: make([]float32, n), g: make([]float32, n), m: make([]float32, n), v: make([]float32, n), sh: make([]float32, n)}
	inf := float32(math.Inf(1))
	for i := range n {
		a.p[i] = float32(r.NormFloat64())
		a.g[i] = float32(r.NormFloat64() * math.Pow(10, -6*r.Float64()))
		a.m[i] = float32(r.NormFloat64() * 1e-3)
		a.v[i] = float32(r.Float64() * 1e-6)
		a.sh[i] = float32(r.NormFloat64()) // overwritten, or left as it was
		switch kind {
		case "zeros":
			a.g[i], a.m[i], a.v[i] = 0, 0, 0
			if i%3 == 0 {
				a.p[i] = 0
			}
		case "huge":
			a.g[i] *= 3e38 / float32(math.Abs(float64(a.g[i]))+1e-30)
			a.p[i] *= 1e38
			a.m[i] *= 1e30
			a.v[i] = 3e38
		case "tiny":
			a.g[i] = math.Float32frombits(r.Uint32() & 0x807fffff) // subnormal
			a.p[i] = math.Float32frombits(r.Uint32() & 0x80ffffff)
			a.m[i] = math.Float32frombits(r.Uint32() & 0x807fffff)
			a.v[i] = math.Float32frombits(r.Uint32() & 0x00ffffff)
		case "specials":
			switch i % 5 {
			case 0:
				a.g[i] = inf
			case 1:
				a.g[i] = -inf
			case 2:
				a.g[i] = float32(math.NaN())
			case 3:
				a.g[i] = math.Float32frombits(0xffc00123) // negative NaN with a payload
			}
		case "bits":
			for _, x := range []*float32{&a.p[i], &a.g[i], &a.m[i], &a.v[i]} {
				*x = math.Float32frombits(r.Uint32())
			}
		}
	}
	// Weights next to bf16 rounding ties and the largest finite value.
	if kind == "random" {
		for i := 0; i+3 < n; i += 7 {
			a.p[i] = math.Float32frombits(math.Float32bits(a.p[i])&^0xffff | 0x8000)
			a.p[i+1] = math.Float32frombits(math.Float32bits(a.p[i+1])&^0x1ffff | 0x18000)
			a.p[i+2] = math.MaxFloat32
		}
	}
	return a
}

var adamWKinds = []string{"random", "zeros", "huge", "tiny", "specials", "bits"}

// adamWSteps are steps as training takes them and some at the edges (no
// decay or clipping, eps 0 so that 0/0 happens, a huge step).
func adamWSteps() []compute.AdamStep {
	var ss []compute.AdamStep
	for step := 1; step <= 3; step++ {
		bc1, bc2 := 1-math.Pow(0.9, float64(step)), math.Sqrt(1-math.Pow(0.999, float64(step)))
		ss = append(ss, compute.AdamStep{GradScale: 0.7, Decay: 0.999, Beta1: 0.9, Beta2: 0.999, StepSize: float32(1e-3 / bc1), BC2Sqrt: float32(bc2), Eps: 1e-8})
	}
	return append(ss,
		compute.AdamStep{GradScale: 1, Decay: 1, Beta1: 0.9, Beta2: 0.95, StepSize: 3e-4, BC2Sqrt: 0.2, Eps: 0},
		compute.AdamStep{GradScale: 1e-3, Decay: 0.9, Beta1: 0.5, Beta2: 0.5, StepSize: 1e30, BC2Sqrt: 1e-20, Eps: 1e-30})
}

var shadowModes = []int{shadowNone, shadowF32, shadowBF16}

// sameAdamW fails unless two states hold the same bits.
func sameAdamW(t *testing.T, what string, got, want *adamWState) {
	t.Helper()
	for _, c := range []struct {
		name string
		x, y []float32
	}{{"p", got.p, want.p}, {"m", got.m, want.m}, {"v", got.v, want.v}, {"shadow", got.sh, want.sh}} {
		for i := range c.x {
			if math.Float32bits(c.x[i]) != math.Float32bits(c.y[i]) {
				t.Fatalf("%s: %s[%d]: got %g (%#08x), want %g (%#08x)", what, c.name, i, c.x[i], math.Float32bits(c.x[i]), c.y[i], math.Float32bits(c.y[i]))
			}
		}
	}
}

// TestAdamWKernelsMatchGo: every float AdamW kernel this CPU runs leaves
// weights, moments and an f32 or bf16 shadow bit-identical to
// adamWSlices, for every length up to three vectors and one of many
// chunks (so every n mod 16 and the Go loop's tail), over three steps in a
// row of each kind of input and the steps at the edges.
func TestAdamWKernelsMatchGo(t *testing.T) {
	ks := archAdamW()
	if len(ks) == 0 {
		t.Skip("no float AdamW kernels here: they need amd64 without the purego tag and a CPU with AVX2 or AVX-512F")
	}
	lengths := []int{100003}
	for n := range 49 {
		lengths = append(lengths, n)
	}
	for _, k := range ks {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			for _, kind := range adamWKinds {
				for _, n := range lengths {
					for _, mode := range shadowModes {
						a := adamWInputs(r, kind, n)
						b := a.clone()
						for si, s := range adamWSteps() {
							if err := adamW(k, a.p, a.g, a.m, a.v, a.sh, mode, s); err != nil {
								t.Fatal(err)
							}
							adamWSlices(b.p, b.g, b.m, b.v, b.sh, mode, s)
							sameAdamW(t, fmt.Sprintf("%s, n %d, shadow mode %d, step %d", kind, n, mode, si), a, b)
						}
					}
				}
			}
		})
	}
}

// TestAdamWKernelWholeVectors calls the kernels directly (no Go tail) on
// multiples of 16 and checks that they write nothing past n: the values
// after it keep their bits.
func TestAdamWKernelWholeVectors(t *testing.T) {
	ks := archAdamW()
	if len(ks) == 0 {
		t.Skip("no float AdamW kernels here: they need amd64 without the purego tag and a CPU with AVX2 or AVX-512F")
	}
	r := rand.New(rand.NewPCG(9, 10))
	s := adamWSteps()[0]
	c := adamWConstsOf(s)
	for _, k := range ks {
		for _, n := range []int{16, 32, 48, 1024} {
			for _, mode := range shadowModes {
				a := adamWInputs(r, "bits", n+16)
				b := a.clone()
				sh := a.sh[:n]
				if mode == shadowNone {
					sh = nil
				}
				k.update(a.p[:n], a.g[:n], a.m[:n], a.v[:n], sh, &c, mode)
				adamWSlices(b.p[:n], b.g[:n], b.m[:n], b.v[:n], b.sh[:n], mode, s)
				sameAdamW(t, fmt.Sprintf("%s, n %d, shadow mode %d", k.name, n, mode), a, b)
			}
		}
	}
}

// TestAdamWSlicesShadow: the Go loop's bf16 shadow is
// hostmem.RoundBF16 of its weights, and its f32 shadow the weights.
func TestAdamWSlicesShadow(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, kind := range adamWKinds {
		a := adamWInputs(r, kind, 333)
		b := a.clone()
		adamWSlices(a.p, a.g, a.m, a.v, a.sh, shadowBF16, adamWSteps()[0])
		adamWSlices(b.p, b.g, b.m, b.v, b.sh, shadowF32, adamWSteps()[0])
		for i := range a.p {
			if got, want := math.Float32bits(a.sh[i]), math.Float32bits(hostmem.RoundBF16(a.p[i])); got != want {
				t.Fatalf("%s: bf16 shadow[%d] %#08x, RoundBF16 of the weight %#08x", kind, i, got, want)
			}
			if got, want := math.Float32bits(b.sh[i]), math.Float32bits(b.p[i]); got != want {
				t.Fatalf("%s: f32 shadow[%d] %#08x, weight %#08x", kind, i, got, want)
			}
		}
	}
}

// TestAdamWSizes: a gradient, moment or shadow shorter than the weights is
// an error, not a read past its end.
func TestAdamWSizes(t *testing.T) {
	x := make([]float32, 64)
	for _, c := range []struct {
		name        string
		g, m, v, sh []float32
		mode        int
		wantErr     bool
	}{
		{"equal", x, x, x, x, shadowBF16, false},
		{"no shadow", x, x, x, nil, shadowNone, false},
		{"short gradient", x[:63], x, x, nil, shadowNone, true},
		{"short m", x, x[:48], x, nil, shadowNone, true},
		{"short v", x, x, x[:1], nil, shadowNone, true},
		{"short shadow", x, x, x, x[:32], shadowF32, true},
	} {
		p := make([]float32, 64)
		err := adamW(bestAdamW(), p, c.g, append([]float32(nil), c.m...), append([]float32(nil), c.v...), c.sh, c.mode, adamWSteps()[0])
		if (err != nil) != c.wantErr {
			t.Errorf("%s: error %v, want an error: %v", c.name, err, c.wantErr)
		}
	}
}

// BenchmarkAdamW times the float update of 1M values per kernel (go is
// adamWSlices alone) and shadow mode, and the bf16 shadow as a second Go
// pass after the kernel (2pass) for comparison, in CPU ns a value. Run
// with -count 1 several times to interleave them on a shared machine.
func BenchmarkAdamW(b *testing.B) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(3, 4))
	a := adamWInputs(r, "random", n)
	s := adamWSteps()[1]
	ks := append([]*adamWKernels{{name: "go"}}, archAdamW()...)
	for _, k := range ks {
		kk := k
		if k.update == nil {
			kk = nil
		}
		for _, mode := range shadowModes {
			b.Run(fmt.Sprintf("%s/shadow%d", k.name, mode), func(b *testing.B) {
				timedAdamW(b, n, func() {
					if err := adamW(kk, a.p, a.g, a.m, a.v, a.sh, mode, s); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
		if kk != nil {
			b.Run(k.name+"/2pass", func(b *testing.B) {
				timedAdamW(b, n, func() {
					if err := adamW(kk, a.p, a.g, a.m, a.v, nil, shadowNone, s); err != nil {
						b.Fatal(err)
					}
					elementwise(n, func(lo, hi int) {
						for i := lo; i < hi; i++ {
							a.sh[i] = hostmem.RoundBF16(a.p[i])
						}
					})
				})
			})
		}
	}
}

// timedAdamW reports the process's CPU time per value of op (wall time is
// unreliable on a shared machine).
func timedAdamW(b *testing.B, n int, op func()) {
	b.ResetTimer()
	c0 := processCPUNanos()
	for range b.N {
		op()
	}
	b.ReportMetric(float64(processCPUNanos()-c0)/float64(b.N)/float64(n), "cpu-ns/value")
}

func processCPUNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
