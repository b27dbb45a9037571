package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/nn"
)

// TestBottleneckHookGradient checks the adapter alone against central
// differences of Σ R⊙y for every activation: parameter and input gradients.
func TestBottleneckHookGradient(t *testing.T) {
	const n, h, r = 5, 7, 3
	for _, act := range []string{"relu", "gelu", "gelu_new", "silu", "tanh"} {
		t.Run(act, func(t *testing.T) {
			m := tinyModel(t, 1)
			m.Cfg.Hidden = h // only the hidden size is read
			set, err := AttachBottleneck(m, BottleneckConfig{Size: r, Activation: act, Placement: "attention", Scaling: 0.7, Layers: []int{0}}, 2)
			if err != nil {
				t.Fatal(err)
			}
			b := set.Modules[0]
			perturb(b.Params(), 3)
			rng := rand.New(rand.NewPCG(4, 4))
			x, R := make([]float32, n*h), make([]float32, n*h)
			for i := range x {
				x[i], R[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			f := func() float64 {
				y := append([]float32(nil), x...)
				b.Forward(y, n)
				var s float64
				for i, v := range y {
					s += float64(v) * float64(R[i])
				}
				return s
			}
			f()
			dx := append([]float32(nil), R...)
			b.Backward(dx, n)
			check := func(name string, data, grad []float32) {
				var num, den float64
				for i := range data {
					orig := data[i]
					const eps = 1e-3
					data[i] = orig + eps
					up := f()
					data[i] = orig - eps
					dn := f()
					data[i] = orig
					fd := (up - dn) / (float64(orig+eps) - float64(orig-eps))
					num += (fd - float64(grad[i])) * (fd - float64(grad[i]))
					den += fd * fd
				}
				if e := math.Sqrt(num / den); e > 2e-3 || den == 0 {
					t.Errorf("%s: gradient rel err %.3g", name, e)
				}
			}
			for _, p := range b.Params() {
				check(p.Name, p.Data, p.Grad)
			}
			check("input", x, dx)
		})
	}
}

// TestBottleneckStartsUnchanged: a fresh adapter leaves the model's output
// exactly as it was (up-projection zero), and placement picks the hooks.
func TestBottleneckStartsUnchanged(t *testing.T) {
	b := tinyBatch()
	want := append([]float32(nil), tinyModel(t, 2).NewWorkspace().Logits(b)...)
	for _, c := range []struct {
		placement string
		attn, mlp bool
		count     int
	}{{"houlsby", true, true, 4}, {"pfeiffer", false, true, 2}, {"attention", true, false, 2}} {
		m := tinyModel(t, 2)
		set, err := AttachBottleneck(m, BottleneckConfig{Size: 4, Placement: c.placement}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Modules) != c.count || (m.Layers[1].AttnOut != nil) != c.attn || (m.Layers[1].MLPOut != nil) != c.mlp {
			t.Errorf("%s: %d adapters, attention %v, mlp %v", c.placement, len(set.Modules), m.Layers[1].AttnOut != nil, m.Layers[1].MLPOut != nil)
		}
		if e := relErr32(m.NewWorkspace().Logits(b), want); e != 0 {
			t.Errorf("%s: a fresh adapter changed the logits by %.3g", c.placement, e)
		}
		var nonzero bool
		for _, v := range set.Modules[0].Down.Data {
			nonzero = nonzero || v != 0
		}
		if !nonzero {
			t.Errorf("%s: down-projection initialised to zero: nothing would train", c.placement)
		}
	}
	m := tinyModel(t, 2)
	for _, bad := range []BottleneckConfig{{Size: 0}, {Size: 2, Activation: "softsign"}, {Size: 2, Placement: "middle"}, {Size: 2, Layers: []int{5}}, {Size: 2, Init: "xavier"}} {
		if _, err := AttachBottleneck(m, bad, 0); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := AttachBottleneck(m, BottleneckConfig{Size: 2}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := AttachBottleneck(m, BottleneckConfig{Size: 2}, 0); err == nil {
		t.Error("a second adapter on the same hooks was accepted")
	}
	_ = nn.Param{}
}
