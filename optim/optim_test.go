package optim

import (
	"bytes"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"gotune/nn"
)

// quadratic is f(p) = ½ Σ a_i (p_i − c_i)², whose gradient is a_i (p_i − c_i).
type quadratic struct{ a, c []float64 }

func (q quadratic) grad(p []float64) []float64 {
	g := make([]float64, len(p))
	for i := range p {
		g[i] = q.a[i] * (p[i] - q.c[i])
	}
	return g
}

var quad = quadratic{a: []float64{1, 4, 0.25, 10}, c: []float64{0.5, -1, 3, 0}}
var quadStart = []float64{1, 1, -2, 0.001}

func param(name string, vals []float64) *nn.Param {
	p := nn.NewParam(name, len(vals))
	for i, v := range vals {
		p.Data[i] = float32(v)
	}
	p.SetTrainable(true)
	return p
}

func setGrad(p *nn.Param, g []float64) {
	for i, v := range g {
		p.Grad[i] = float32(v)
	}
}

func toF64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// refAdamW is AdamW written the textbook way (Loshchilov & Hutter with
// torch's placement of ε): decay first, then the bias-corrected moments.
func refAdamW(p0 []float64, steps int, lr, wd, b1, b2, eps float64, q quadratic) []float64 {
	p := append([]float64(nil), p0...)
	m := make([]float64, len(p))
	v := make([]float64, len(p))
	for t := 1; t <= steps; t++ {
		g := q.grad(p)
		for i := range p {
			p[i] -= lr * wd * p[i]
			m[i] = b1*m[i] + (1-b1)*g[i]
			v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
			mhat := m[i] / (1 - math.Pow(b1, float64(t)))
			vhat := v[i] / (1 - math.Pow(b2, float64(t)))
			p[i] -= lr * mhat / (math.Sqrt(vhat) + eps)
		}
	}
	return p
}

func maxRelErr(got, want []float64) float64 {
	worst := 0.0
	for i := range got {
		worst = max(worst, math.Abs(got[i]-want[i])/max(math.Abs(want[i]), 1e-3))
	}
	return worst
}

func TestAdamWQuadraticMatchesReference(t *testing.T) {
	tests := []struct {
		name      string
		lr, wd    float64
		b1, b2    float64
		eps       float64
		f64, tol  float64
		steps     int
		useF64    bool
		lrScale   float64
		effective float64 // lr the reference runs with
	}{
		{name: "defaults", lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, steps: 3, tol: 2e-6},
		{name: "weight decay", lr: 1e-1, wd: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, steps: 3, tol: 2e-6},
		{name: "large eps, beta1 0.3 (other lerp branch)", lr: 5e-2, wd: 0.01, b1: 0.3, b2: 0.99, eps: 0.1, steps: 5, tol: 2e-6},
		{name: "float64 state", lr: 1e-2, wd: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, steps: 3, tol: 2e-6, useF64: true},
		{name: "lr scale (LoRA+)", lr: 1e-3, wd: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, steps: 3, tol: 2e-6, lrScale: 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := param("w", quadStart)
			opt, err := NewAdamW([]Group{{Params: []*nn.Param{p}, WeightDecay: tt.wd, LRScale: tt.lrScale}},
				Config{Beta1: tt.b1, Beta2: tt.b2, Eps: tt.eps, Float64State: tt.useF64})
			if err != nil {
				t.Fatal(err)
			}
			for range tt.steps {
				setGrad(p, quad.grad(toF64(p.Data)))
				opt.Step(tt.lr)
			}
			eff := tt.lr
			if tt.lrScale != 0 {
				eff *= tt.lrScale
			}
			want := refAdamW(quadStart, tt.steps, eff, tt.wd, tt.b1, tt.b2, tt.eps, quad)
			if e := maxRelErr(toF64(p.Data), want); e > tt.tol {
				t.Fatalf("after %d steps: %v, want %v (rel err %.3g)", tt.steps, p.Data, want, e)
			}
			if opt.StepCount(0) != int64(tt.steps) {
				t.Errorf("step count %d, want %d", opt.StepCount(0), tt.steps)
			}
		})
	}
}

// The first AdamW step moves every coordinate by lr·g/(|g|+ε) after decay:
// a closed form that pins down the bias correction and ε placement.
func TestAdamWFirstStepClosedForm(t *testing.T) {
	const lr, wd, eps = 0.01, 0.1, 1e-3
	p := param("w", []float64{1, -2, 0.5})
	g := []float64{0.002, -3, 0}
	setGrad(p, g)
	opt, _ := NewAdamW([]Group{{Params: []*nn.Param{p}, WeightDecay: wd}}, Config{Beta1: 0.9, Beta2: 0.999, Eps: eps})
	opt.Step(lr)
	for i, p0 := range []float64{1, -2, 0.5} {
		want := p0*(1-lr*wd) - lr*g[i]/(math.Abs(g[i])+eps)
		if math.Abs(float64(p.Data[i])-want) > 1e-6 {
			t.Errorf("coordinate %d: %v, want %v", i, p.Data[i], want)
		}
	}
}

func TestAdamWFrozenAndLateParams(t *testing.T) {
	a := param("a", []float64{1, 2})
	b := param("b", []float64{3, 4})
	frozen := nn.NewParam("frozen", 2)
	frozen.Data[0] = 7
	grads := b.Grad
	b.Grad = nil // b gets no gradient on the first step
	opt, err := NewAdamW([]Group{{Params: []*nn.Param{a, b, frozen}}}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	setGrad(a, []float64{1, 1})
	opt.Step(0.1)
	if b.Data[0] != 3 || frozen.Data[0] != 7 {
		t.Fatalf("parameters without gradient changed: b=%v frozen=%v", b.Data, frozen.Data)
	}
	b.Grad = grads
	setGrad(b, []float64{1, 1})
	opt.Step(0.1)
	if opt.StepCount(0) != 2 || opt.StepCount(1) != 1 || opt.StepCount(2) != 0 {
		t.Fatalf("step counts %d %d %d, want 2 1 0", opt.StepCount(0), opt.StepCount(1), opt.StepCount(2))
	}
	// b's first update must use step-1 bias correction: a move of ≈ lr.
	if d := 3 - float64(b.Data[0]); math.Abs(d-0.1) > 1e-6 {
		t.Errorf("b moved by %v on its first update, want 0.1", d)
	}
}

// Splitting the update across goroutines must not change a single bit.
func TestAdamWParallelBitIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func() []*nn.Param {
		r := rand.New(rand.NewPCG(3, 4))
		var ps []*nn.Param
		for i, n := range []int{3, minChunk*2 + 17, 5, minChunk + 1, 100} {
			p := nn.NewParam(string(rune('a'+i)), n)
			p.SetTrainable(true)
			for j := range p.Data {
				p.Data[j] = float32(r.NormFloat64())
			}
			ps = append(ps, p)
		}
		return ps
	}
	serial, par := mk(), mk()
	old := runtime.GOMAXPROCS(1)
	o1, _ := NewAdamW([]Group{{Params: serial[:2], WeightDecay: 0.1}, {Params: serial[2:], LRScale: 4}}, DefaultConfig())
	runtime.GOMAXPROCS(4)
	o2, _ := NewAdamW([]Group{{Params: par[:2], WeightDecay: 0.1}, {Params: par[2:], LRScale: 4}}, DefaultConfig())
	defer runtime.GOMAXPROCS(old)
	for step := range 3 {
		for i := range serial {
			for j := range serial[i].Grad {
				g := float32(rng.NormFloat64())
				serial[i].Grad[j], par[i].Grad[j] = g, g
			}
		}
		runtime.GOMAXPROCS(1)
		o1.Step(1e-3)
		runtime.GOMAXPROCS(4)
		o2.Step(1e-3)
		for i := range serial {
			for j := range serial[i].Data {
				if serial[i].Data[j] != par[i].Data[j] {
					t.Fatalf("step %d param %d elem %d: serial %v, parallel %v", step, i, j, serial[i].Data[j], par[i].Data[j])
				}
			}
		}
	}
}

func TestAdamWStepDoesNotAllocate(t *testing.T) {
	p := param("w", quadStart)
	opt, _ := NewAdamW([]Group{{Params: []*nn.Param{p}}}, DefaultConfig())
	opt.Step(1e-3) // first step allocates the moments
	if n := testing.AllocsPerRun(20, func() { opt.Step(1e-3) }); n != 0 {
		t.Errorf("Step allocates %v times per call", n)
	}
}

// refSGD follows the torch.optim.SGD documentation's pseudo-code in float64.
func refSGD(p0 []float64, steps int, lr, wd, mom, damp float64, nesterov bool, q quadratic) []float64 {
	p := append([]float64(nil), p0...)
	var buf []float64
	for t := 1; t <= steps; t++ {
		g := q.grad(p)
		for i := range g {
			g[i] += wd * p[i]
		}
		if mom != 0 {
			if buf == nil {
				buf = append([]float64(nil), g...)
			} else {
				for i := range buf {
					buf[i] = mom*buf[i] + (1-damp)*g[i]
				}
			}
			for i := range g {
				if nesterov {
					g[i] += mom * buf[i]
				} else {
					g[i] = buf[i]
				}
			}
		}
		for i := range p {
			p[i] -= lr * g[i]
		}
	}
	return p
}

func TestSGDMatchesReference(t *testing.T) {
	tests := []struct {
		name         string
		lr, wd, m, d float64
		nesterov     bool
		steps        int
	}{
		{"plain", 0.1, 0, 0, 0, false, 3},
		{"weight decay", 0.1, 0.05, 0, 0, false, 3},
		{"momentum", 0.05, 0, 0.9, 0, false, 4},
		{"momentum dampening", 0.05, 0.01, 0.9, 0.5, false, 4},
		{"nesterov", 0.05, 0.01, 0.9, 0, true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := param("w", quadStart)
			opt, err := NewSGD([]Group{{Params: []*nn.Param{p}, WeightDecay: tt.wd}},
				Config{Momentum: tt.m, Dampening: tt.d, Nesterov: tt.nesterov})
			if err != nil {
				t.Fatal(err)
			}
			for range tt.steps {
				setGrad(p, quad.grad(toF64(p.Data)))
				opt.Step(tt.lr)
			}
			want := refSGD(quadStart, tt.steps, tt.lr, tt.wd, tt.m, tt.d, tt.nesterov, quad)
			if e := maxRelErr(toF64(p.Data), want); e > 2e-6 {
				t.Fatalf("got %v, want %v (rel err %.3g)", p.Data, want, e)
			}
		})
	}
}

func TestConstructorErrors(t *testing.T) {
	p := param("w", []float64{1})
	twin := param("w", []float64{2})
	bad := nn.NewParam("bad", 3)
	bad.Grad = make([]float32, 2)
	tests := []struct {
		name string
		make func() error
		want string
	}{
		{"beta1", func() error { _, err := NewAdamW(nil, Config{Beta1: 1, Beta2: 0.9}); return err }, "beta1"},
		{"beta2", func() error { _, err := NewAdamW(nil, Config{Beta1: 0.9, Beta2: -0.1}); return err }, "beta2"},
		{"eps NaN", func() error { _, err := NewAdamW(nil, Config{Eps: math.NaN()}); return err }, "epsilon"},
		{"duplicate", func() error {
			_, err := NewAdamW([]Group{{Params: []*nn.Param{p}}, {Params: []*nn.Param{p}}}, DefaultConfig())
			return err
		}, "more than one"},
		{"same name", func() error { _, err := NewAdamW([]Group{{Params: []*nn.Param{p, twin}}}, DefaultConfig()); return err }, `named "w"`},
		{"grad size", func() error { _, err := NewSGD([]Group{{Params: []*nn.Param{bad}}}, Config{}); return err }, "gradient has 2"},
		{"negative decay", func() error {
			_, err := NewSGD([]Group{{Params: []*nn.Param{p}, WeightDecay: -1}}, Config{})
			return err
		}, "weight decay"},
		{"nesterov", func() error { _, err := NewSGD(nil, Config{Nesterov: true}); return err }, "nesterov"},
		{"unknown", func() error { _, err := New("lion", nil, DefaultConfig()); return err }, "lion"},
	}
	for _, tt := range tests {
		if err := tt.make(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	big := nn.NewParam("big", 3*normBlock+5)
	big.SetTrainable(true)
	for i := range big.Grad {
		big.Grad[i] = 0.01
	}
	bigNorm := 0.01 * math.Sqrt(float64(len(big.Grad)))
	tests := []struct {
		name      string
		grads     [][]float64
		maxNorm   float64
		wantNorm  float64
		wantScale float64
	}{
		{"clipped", [][]float64{{3, 0}, {0, 4}}, 1, 5, 1 / (5 + 1e-6)},
		{"below max untouched", [][]float64{{0.3}, {0.4}}, 1, 0.5, 1},
		{"measure only", [][]float64{{30}, {40}}, 0, 50, 1},
		{"zero grads", [][]float64{{0, 0}}, 1, 0, 1},
		{"not finite", [][]float64{{math.Inf(1), 1}}, 1, math.Inf(1), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []*nn.Param
			for i, g := range tt.grads {
				p := param(string(rune('a'+i)), make([]float64, len(g)))
				setGrad(p, g)
				ps = append(ps, p)
			}
			ps = append(ps, nn.NewParam("frozen", 4)) // no gradient: ignored
			norm := ClipGradNorm(ps, tt.maxNorm)
			if math.Abs(norm-tt.wantNorm) > 1e-7*tt.wantNorm && norm != tt.wantNorm { // inputs are float32
				t.Fatalf("norm %v, want %v", norm, tt.wantNorm)
			}
			for i, g := range tt.grads {
				for j, v := range g {
					want := float32(v * tt.wantScale)
					if ps[i].Grad[j] != want && !(math.IsInf(v, 0)) {
						t.Errorf("grad[%d][%d] = %v, want %v", i, j, ps[i].Grad[j], want)
					}
				}
			}
		})
	}
	t.Run("large parallel", func(t *testing.T) {
		old := runtime.GOMAXPROCS(4)
		defer runtime.GOMAXPROCS(old)
		norm := ClipGradNorm([]*nn.Param{big}, bigNorm/2)
		if math.Abs(norm-bigNorm)/bigNorm > 1e-6 {
			t.Fatalf("norm %v, want %v", norm, bigNorm)
		}
		if after := GradNorm([]*nn.Param{big}); math.Abs(after-bigNorm/2)/bigNorm > 1e-6 {
			t.Fatalf("norm after clipping %v, want %v", after, bigNorm/2)
		}
	})
}

func TestGradNormIndependentOfThreads(t *testing.T) {
	p := nn.NewParam("g", 5*normBlock+123)
	p.SetTrainable(true)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range p.Grad {
		p.Grad[i] = float32(r.NormFloat64())
	}
	old := runtime.GOMAXPROCS(1)
	n1 := GradNorm([]*nn.Param{p})
	runtime.GOMAXPROCS(3)
	n3 := GradNorm([]*nn.Param{p})
	runtime.GOMAXPROCS(old)
	if n1 != n3 {
		t.Fatalf("norm with 1 thread %v, with 3 threads %v", n1, n3)
	}
}

// Saving after k steps and loading into a fresh optimizer must continue
// exactly as an uninterrupted run.
func TestStateRoundTripResumesExactly(t *testing.T) {
	tests := []struct {
		name string
		kind string
		cfg  Config
	}{
		{"adamw", "adamw_torch", DefaultConfig()},
		{"adamw float64", "adamw_torch", Config{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Float64State: true}},
		{"sgd momentum", "sgd", Config{Momentum: 0.9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build := func() (Optimizer, *nn.Param, *nn.Param) {
				a := param("layer.a", quadStart)
				a.Shape = []int{2, 2}
				b := param("layer.b", []float64{0.5, 0.25})
				o, err := New(tt.kind, []Group{{Params: []*nn.Param{a}, WeightDecay: 0.01}, {Params: []*nn.Param{b}, LRScale: 2}}, tt.cfg)
				if err != nil {
					t.Fatal(err)
				}
				return o, a, b
			}
			step := func(o Optimizer, a, b *nn.Param) {
				setGrad(a, quad.grad(toF64(a.Data)))
				setGrad(b, []float64{float64(b.Data[0]), -1})
				o.Step(0.01)
			}
			ref, ra, rb := build()
			for range 4 {
				step(ref, ra, rb)
			}
			first, fa, fb := build()
			step(first, fa, fb)
			step(first, fa, fb)
			var buf bytes.Buffer
			if err := Save(first, &buf); err != nil {
				t.Fatal(err)
			}
			second, sa, sb := build()
			copy(sa.Data, fa.Data)
			copy(sb.Data, fb.Data)
			if err := Load(second, bytes.NewReader(buf.Bytes()), "mem"); err != nil {
				t.Fatal(err)
			}
			step(second, sa, sb)
			step(second, sa, sb)
			for i := range ra.Data {
				if ra.Data[i] != sa.Data[i] {
					t.Fatalf("a[%d]: resumed %v, uninterrupted %v", i, sa.Data[i], ra.Data[i])
				}
			}
			if rb.Data[0] != sb.Data[0] || rb.Data[1] != sb.Data[1] {
				t.Fatalf("b: resumed %v, uninterrupted %v", sb.Data, rb.Data)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	build := func(name string, n int, kind string) Optimizer {
		p := param(name, make([]float64, n))
		o, err := New(kind, []Group{{Params: []*nn.Param{p}}}, Config{Beta1: 0.9, Beta2: 0.999, Momentum: 0.9})
		if err != nil {
			t.Fatal(err)
		}
		o.Step(0.1)
		return o
	}
	saved := func(o Optimizer) []byte {
		var buf bytes.Buffer
		if err := Save(o, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := saved(build("w", 4, "adamw_torch"))
	tests := []struct {
		name string
		data []byte
		into Optimizer
		want string
	}{
		{"other optimizer", good, build("w", 4, "sgd"), `"adamw_torch" cannot be loaded into "sgd"`},
		{"renamed param", good, build("v", 4, "adamw_torch"), `"w.exp_avg" belongs to no parameter`},
		{"shape", good, build("w", 5, "adamw_torch"), "shape [4]; the parameter needs [5]"},
		{"truncated", good[:len(good)-3], build("w", 4, "adamw_torch"), "reading data"},
		{"empty", nil, build("w", 4, "adamw_torch"), "header length"},
		{"huge header", []byte{0, 0, 0, 0, 0, 0, 0, 1}, build("w", 4, "adamw_torch"), "not plausible"},
		{"not json", append([]byte{4, 0, 0, 0, 0, 0, 0, 0}, "{abc"...), build("w", 4, "adamw_torch"), "not JSON"},
		{"foreign file", append([]byte{2, 0, 0, 0, 0, 0, 0, 0}, "{}"...), build("w", 4, "adamw_torch"), "not a gotune optimizer state"},
		{"missing param", saved(build("w", 4, "sgd")), func() Optimizer {
			a, b := param("w", make([]float64, 4)), param("extra", []float64{1})
			o, _ := NewSGD([]Group{{Params: []*nn.Param{a, b}}}, Config{Momentum: 0.9})
			return o
		}(), "no state for 1 trainable parameter(s), e.g. extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Load(tt.into, bytes.NewReader(tt.data), "ckpt/optimizer.safetensors")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "ckpt/optimizer.safetensors") {
				t.Fatalf("error %v, want one naming the file and containing %q", err, tt.want)
			}
		})
	}
}

func BenchmarkAdamWStep(b *testing.B) {
	var ps []*nn.Param
	for i := range 8 {
		p := nn.NewParam(string(rune('a'+i)), 1<<21) // 16M parameters in all
		p.SetTrainable(true)
		ps = append(ps, p)
	}
	opt, _ := NewAdamW([]Group{{Params: ps, WeightDecay: 0.01}}, DefaultConfig())
	opt.Step(1e-4)
	b.SetBytes(int64(8<<21) * 28) // p, g, m, v read; p, m, v written
	b.ReportAllocs()
	for b.Loop() {
		opt.Step(1e-4)
	}
}

// TestSGDMomentumBufferRoundTrip: an optimizer given another's momentum
// buffers (the state of updates made on a GPU) continues exactly as that
// one does.
func TestSGDMomentumBufferRoundTrip(t *testing.T) {
	mk := func() *nn.Param {
		p := nn.NewParam("w", 5)
		p.SetTrainable(true)
		copy(p.Data, []float32{1, -2, 3, -4, 5})
		return p
	}
	cfg := Config{Momentum: 0.9, Dampening: 0.1}
	pa, pb := mk(), mk()
	a, err := NewSGD([]Group{{Params: []*nn.Param{pa}, WeightDecay: 0.01}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSGD([]Group{{Params: []*nn.Param{pb}, WeightDecay: 0.01}}, cfg)
	if _, ok := a.MomentumBuffer(pa); ok {
		t.Fatal("a momentum buffer before the first update")
	}
	grad := []float32{0.5, 0.25, -1, 2, -0.125}
	for step := 0; step < 2; step++ {
		copy(pa.Grad, grad)
		a.Step(0.1)
	}
	buf, ok := a.MomentumBuffer(pa)
	if !ok {
		t.Fatal("no momentum buffer after two updates")
	}
	copy(pb.Data, pa.Data)
	if err := b.SetMomentumBuffer(pb, buf); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMomentumBuffer(pa, buf); err == nil {
		t.Error("a parameter of another optimizer was accepted")
	}
	copy(pa.Grad, grad)
	copy(pb.Grad, grad)
	a.Step(0.1)
	b.Step(0.1)
	for i := range pa.Data {
		if pa.Data[i] != pb.Data[i] {
			t.Fatalf("w[%d] = %g after the resumed update, %g after the continued one", i, pb.Data[i], pa.Data[i])
		}
	}
	if b.Config().Momentum != 0.9 {
		t.Errorf("Config().Momentum = %g", b.Config().Momentum)
	}
}
