package optim

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gotune/nn"
)

// TestAdamW8bitState: a large parameter keeps 8-bit state and a small one
// float moments; the state saved after three steps (U8 codes, F32 block
// scales, float moments, steps) loads into a fresh optimizer unchanged, and
// both then take the same next step bit for bit; AdamW's state does not
// load into it.
func TestAdamW8bitState(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	mk := func() (*AdamW8bit, []*nn.Param) {
		big, small := nn.NewParam("big.weight", 40, 130), nn.NewParam("norm.weight", 130)
		for _, p := range []*nn.Param{big, small} {
			for i := range p.Data {
				p.Data[i] = float32(i%17) * 0.01
			}
			p.Grad = make([]float32, len(p.Data))
		}
		o, err := New("adamw_8bit", []Group{{Params: []*nn.Param{big, small}, WeightDecay: 0.01}}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		return o.(*AdamW8bit), []*nn.Param{big, small}
	}
	a, ps := mk()
	if !a.Quantized(ps[0]) || a.Quantized(ps[1]) {
		t.Fatalf("quantized: big %v, small %v; want true, false", a.Quantized(ps[0]), a.Quantized(ps[1]))
	}
	grads := func(ps []*nn.Param) {
		for _, p := range ps {
			for i := range p.Grad {
				p.Grad[i] = float32(r.NormFloat64())
			}
		}
	}
	for range 3 {
		grads(ps)
		a.Step(1e-3)
	}
	m8, _, ms, _, steps, ok := a.Moments8(ps[0])
	if !ok || steps != 3 || len(ms) != 21 || !slices.ContainsFunc(m8, func(c byte) bool { return c != 0 }) {
		t.Fatalf("8-bit state: ok %v, steps %d, %d scales (want 21)", ok, steps, len(ms))
	}
	var buf bytes.Buffer
	if err := Save(a, &buf); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	b, qs := mk()
	for i := range ps {
		copy(qs[i].Data, ps[i].Data)
	}
	if err := Load(b, bytes.NewReader(saved), "state"); err != nil {
		t.Fatal(err)
	}
	bm8, bv8, bms, bvs, bsteps, _ := b.Moments8(qs[0])
	am8, av8, ams, avs, _, _ := a.Moments8(ps[0])
	if bsteps != 3 || !bytes.Equal(bm8, am8) || !bytes.Equal(bv8, av8) || !slices.Equal(bms, ams) || !slices.Equal(bvs, avs) {
		t.Fatal("8-bit state changed through save and load")
	}
	am, av, _, _ := a.Moments(ps[1])
	bm, bv, _, _ := b.Moments(qs[1])
	if !slices.Equal(am, bm) || !slices.Equal(av, bv) {
		t.Fatal("float moments changed through save and load")
	}
	grads(ps)
	for i := range ps {
		copy(qs[i].Grad, ps[i].Grad)
	}
	a.Step(1e-3)
	b.Step(1e-3)
	for i := range ps {
		if !slices.Equal(ps[i].Data, qs[i].Data) {
			t.Errorf("%s: the resumed step differs", ps[i].Name)
		}
	}

	f, err := NewAdamW([]Group{{Params: ps}}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.Step(1e-3)
	buf.Reset()
	if err := Save(f, &buf); err != nil {
		t.Fatal(err)
	}
	c, _ := mk()
	if err := Load(c, &buf, "adamw"); err == nil || !strings.Contains(err.Error(), "adamw_torch") {
		t.Errorf("loading AdamW's state: got %v, want an error naming adamw_torch", err)
	}
}
