package peft

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gotune/nn"
)

// TestEncoderGradients checks the prompt encoders alone (their activations
// are float64) against central differences of Σ R⊙output: a float64-level
// check, since perturbations are measured exactly.
func TestEncoderGradients(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  PTuningConfig
	}{
		{"lstm_1_layer", PTuningConfig{Virtual: 4, EncoderType: "LSTM", EncoderHidden: 3, EncoderLayers: 1}},
		{"lstm_3_layers", PTuningConfig{Virtual: 5, EncoderType: "LSTM", EncoderHidden: 4, EncoderLayers: 3}},
		{"mlp", PTuningConfig{Virtual: 3, EncoderType: "MLP", EncoderHidden: 6}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := tinyModel(t, 1)
			p, err := AttachPTuning(m, c.cfg, 7)
			if err != nil {
				t.Fatal(err)
			}
			perturb(p.Params(), 8)
			rng := rand.New(rand.NewPCG(5, 5))
			R := make([]float64, c.cfg.Virtual*m.Cfg.Hidden)
			for i := range R {
				R[i] = rng.NormFloat64()
			}
			f := func() float64 {
				var s float64
				for i, v := range p.encode64() {
					s += v * R[i]
				}
				return s
			}
			f()
			p.backward64(append([]float64(nil), R...))
			checkFD(t, p.Params(), f, 1e-3, 1e-5)
		})
	}
	t.Run("prefix_projection", func(t *testing.T) {
		m := tinyModel(t, 1)
		p, err := AttachPrefix(m, PrefixConfig{Virtual: 3, Projection: true, EncoderHidden: 5}, 7)
		if err != nil {
			t.Fatal(err)
		}
		perturb(p.Params(), 8)
		rng := rand.New(rand.NewPCG(5, 5))
		R := make([]float64, 3*2*len(m.Layers)*m.Cfg.KVDim())
		for i := range R {
			R[i] = rng.NormFloat64()
		}
		f := func() float64 {
			var s float64
			for i, v := range p.enc.mlp(p.transform, toF64(p.Embedding.Data), 3, tanhAct) {
				s += v * R[i]
			}
			return s
		}
		f()
		dx := p.enc.mlpBackward(p.transform, append([]float64(nil), R...), 3, tanhAct)
		for i, v := range dx {
			p.Embedding.Grad[i] += float32(v)
		}
		checkFD(t, p.Params(), f, 1e-3, 1e-5)
	})
}

// checkFD compares every parameter's gradient with central differences of
// f, dividing by the perturbation float32 storage actually made.
func checkFD(t *testing.T, params []*nn.Param, f func() float64, eps, tol float64) {
	t.Helper()
	for _, p := range params {
		var num, den float64
		for i := range p.Data {
			orig := p.Data[i]
			p.Data[i] = float32(float64(orig) + eps)
			hi := p.Data[i]
			up := f()
			p.Data[i] = float32(float64(orig) - eps)
			lo := p.Data[i]
			dn := f()
			p.Data[i] = orig
			fd := (up - dn) / (float64(hi) - float64(lo))
			d := fd - float64(p.Grad[i])
			num += d * d
			den += fd * fd
		}
		if e := math.Sqrt(num / math.Max(den, 1e-300)); e > tol || den == 0 {
			t.Errorf("%s: gradient rel err %.3g (|fd| %.3g)", p.Name, e, math.Sqrt(den))
		}
	}
}

// TestLSTMDirections: with the reverse direction's weights equal to the
// forward one's, running the reversed sequence swaps the two halves of
// every step's output; an LSTM's state also really carries across steps.
func TestLSTMDirections(t *testing.T) {
	const T, in, H = 4, 3, 2
	rng := rand.New(rand.NewPCG(1, 1))
	l := newLSTM("lstm", in, H, 1, rng)
	d := &l.layers[0].dir
	for _, pair := range [][2]*nn.Param{{d[0].Wih, d[1].Wih}, {d[0].Whh, d[1].Whh}, {d[0].Bih, d[1].Bih}, {d[0].Bhh, d[1].Bhh}} {
		copy(pair[1].Data, pair[0].Data)
	}
	x := make([]float64, T*in)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	xr := make([]float64, T*in)
	for s := 0; s < T; s++ {
		copy(xr[s*in:(s+1)*in], x[(T-1-s)*in:(T-s)*in])
	}
	a := l.forward(x, T)
	b := l.forward(xr, T)
	for s := 0; s < T; s++ {
		for j := 0; j < H; j++ {
			if math.Abs(a[s*2*H+j]-b[(T-1-s)*2*H+H+j]) > 1e-12 || math.Abs(a[s*2*H+H+j]-b[(T-1-s)*2*H+j]) > 1e-12 {
				t.Fatalf("step %d: output halves do not swap under reversal", s)
			}
		}
	}
	// Changing the first input changes the forward direction's last output.
	x2 := append([]float64(nil), x...)
	x2[0] += 1
	c := l.forward(x2, T)
	if math.Abs(c[(T-1)*2*H]-a[(T-1)*2*H]) < 1e-9 {
		t.Error("the forward direction's state does not carry to the last step")
	}
}

// TestLSTMEncoderMatchesTorch runs the LSTM prompt encoder on weights from
// torch (testdata/gen_lstm_encoder.py) and compares output and gradients
// with torch's float64 numbers: gate order, directions and names.
func TestLSTMEncoderMatchesTorch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "lstm_encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		V         int                  `json:"virtual"`
		D         int                  `json:"token_dim"`
		H         int                  `json:"hidden"`
		L         int                  `json:"layers"`
		Params    map[string][]float64 `json:"params"`
		Grads     map[string][]float64 `json:"grads"`
		R, Output []float64
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	m := tinyModel(t, 1)
	if m.Cfg.Hidden != g.D {
		t.Fatalf("golden token_dim %d, test model hidden %d", g.D, m.Cfg.Hidden)
	}
	p, err := AttachPTuning(m, PTuningConfig{Virtual: g.V, EncoderType: "lstm", EncoderHidden: g.H, EncoderLayers: g.L}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Params()) != len(g.Params) {
		t.Fatalf("%d parameters, torch has %d", len(p.Params()), len(g.Params))
	}
	for _, q := range p.Params() {
		v, ok := g.Params[q.Name]
		if !ok || len(v) != len(q.Data) {
			t.Fatalf("%s: not in torch's parameters with %d values", q.Name, len(q.Data))
		}
		for i, x := range v {
			q.Data[i] = float32(x)
		}
	}
	out := p.encode64()
	if e := relErr64(out, g.Output); e > 1e-12 {
		t.Errorf("output differs from torch by %.3g", e)
	}
	p.backward64(append([]float64(nil), g.R...))
	for _, q := range p.Params() {
		if e := relErr64(toF64(q.Grad), g.Grads[q.Name]); e > 1e-6 {
			t.Errorf("%s: gradient differs from torch by %.3g", q.Name, e)
		}
	}
}

func relErr64(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	return math.Sqrt(num / math.Max(den, 1e-300))
}
