package model

import (
	"testing"

	"gotune/nn"
)

type scaleAdapter struct{}

func (scaleAdapter) Forward(l *nn.Linear, y, x []float32, n int) {
	l.BaseForward(y, x, n)
	for i := range y {
		y[i] *= 2
	}
}
func (scaleAdapter) Backward(l *nn.Linear, dx, dy, x []float32, n int) {}
func (scaleAdapter) Params() []*nn.Param                               { return nil }

// TestCloneSharesWeightsNotAdapters: a clone computes the same logits with
// the same weight memory, and an adapter attached to one does not reach
// the other.
func TestCloneSharesWeightsNotAdapters(t *testing.T) {
	cfg, err := Shape("ref-llama")
	if err != nil {
		t.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(9)
	c := m.Clone()
	if &c.Layers[0].Q.W.Data[0] != &m.Layers[0].Q.W.Data[0] || c.Embed != m.Embed {
		t.Fatal("the clone does not share the weights")
	}
	b := &Batch{B: 1, T: 5, IDs: []int32{1, 2, 3, 4, 5}}
	want := append([]float32(nil), m.NewWorkspace().Logits(b)...)
	c.Layers[0].V.Adapter = scaleAdapter{}
	if m.Layers[0].V.Adapter != nil {
		t.Fatal("an adapter attached to the clone reached the original")
	}
	got := m.NewWorkspace().Logits(b)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("the original's logits changed at %d", i)
		}
	}
	changed := c.NewWorkspace().Logits(b)
	same := true
	for i := range want {
		same = same && changed[i] == want[i]
	}
	if same {
		t.Fatal("the clone's adapter had no effect")
	}
}
