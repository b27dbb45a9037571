package peft

import (
	"math"
	"math/rand/v2"
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
			for i, v := range p.enc.mlp(p.Transform, toF64(p.Embedding.Data), 3, tanhAct) {
				s += v * R[i]
			}
			return s
		}
		f()
		dx := p.enc.mlpBackward(p.Transform, append([]float64(nil), R...), 3, tanhAct)
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
