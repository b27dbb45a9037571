package model

import (
	"testing"

	"gotune/compute"
)

// TestCloneSharesWeightsNotAdapters: a clone computes the same logits with
// the same weight memory, and an adapter attached to one does not reach
// the other.
func TestCloneSharesWeightsNotAdapters(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		cfg, err := Shape("ref-llama")
		if err != nil {
			t.Fatal(err)
		}
		m := New(cfg)
		m.RandomInit(9)
		c := m.Clone()
		if &c.Layers[0].Q.F32().Data[0] != &m.Layers[0].Q.F32().Data[0] || c.Embed != m.Embed {
			t.Fatal("the clone does not share the weights")
		}
		b := &Batch{B: 1, T: 5, IDs: []int32{1, 2, 3, 4, 5}}
		want := logitsOn(t, m, be, b)
		c.Layers[0].V.Adapter = shiftLoRA(c.Layers[0].V, 0.5)
		if m.Layers[0].V.Adapter != nil {
			t.Fatal("an adapter attached to the clone reached the original")
		}
		got := logitsOn(t, m, be, b)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("the original's logits changed at %d", i)
			}
		}
		changed := logitsOn(t, c, be, b)
		same := true
		for i := range want {
			same = same && changed[i] == want[i]
		}
		if same {
			t.Fatal("the clone's adapter had no effect")
		}
	})
}
