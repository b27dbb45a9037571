package peft

import (
	"testing"

	"gotune/model"
	"gotune/nn"
)

// TestBottleneckActivationGradients checks the adapter's gradients with
// every activation it offers against central differences of the model's
// loss (the adapter after attention of layer 0, scaled).
func TestBottleneckActivationGradients(t *testing.T) {
	for _, act := range []string{"relu", "gelu", "gelu_new", "silu", "tanh"} {
		t.Run(act, func(t *testing.T) {
			checkMethodGradients(t, tinyModel(t, 1), func(m *model.Model) (Method, error) {
				return AttachBottleneck(m, BottleneckConfig{Size: 3, Init: "kaiming", Activation: act, Placement: "attention", Scaling: 0.7, Layers: []int{0}}, 2)
			})
		})
	}
}

// TestBottleneckStartsUnchanged: a fresh adapter leaves the model's output
// exactly as it was (up-projection zero), and placement picks the hooks.
func TestBottleneckStartsUnchanged(t *testing.T) {
	b := tinyBatch()
	want := append([]float32(nil), newRun(t, tinyModel(t, 2)).Logits(b)...)
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
		if e := relErr32(newRun(t, m).Logits(b), want); e != 0 {
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
