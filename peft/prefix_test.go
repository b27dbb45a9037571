package peft

import "testing"

// TestPrefixLayout: one prefix row holds, per layer, a key and a value of
// the KV width (grouped-query attention gets the narrower width), with or
// without the projection, whose input is one KV-wide row per virtual token.
// Where the device block reads each layer's keys and values in a row is
// checked against PEFT by parity's prefix_tuning folders.
func TestPrefixLayout(t *testing.T) {
	m := tinyModel(t, 31)
	kd := m.Cfg.KVDim()
	if kd == m.Cfg.Hidden {
		t.Fatal("test model should have grouped-query attention")
	}
	w := 2 * len(m.Layers) * kd
	for _, c := range []struct {
		cfg    PrefixConfig
		inputs int // the width of Embedding's rows
	}{
		{PrefixConfig{Virtual: 2}, w},
		{PrefixConfig{Virtual: 2, Projection: true, EncoderHidden: 5}, kd},
	} {
		p, err := AttachPrefix(m, c.cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Embedding.Shape; len(got) != 2 || got[0] != 2 || got[1] != c.inputs {
			t.Errorf("projection %v: embedding of shape %v, want [2 %d]", c.cfg.Projection, got, c.inputs)
		}
		if out := p.Output(); len(out) != 2*w {
			t.Errorf("projection %v: prefix of %d values, want %d", c.cfg.Projection, len(out), 2*w)
		}
		if _, err := AttachPrefix(m, c.cfg, 1); err == nil {
			t.Error("a second prefix was accepted")
		}
		p.Detach()
		if m.Layers[0].Prefix != nil {
			t.Error("Detach left the prefix")
		}
	}
}
