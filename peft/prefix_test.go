package peft

import "testing"

// TestPrefixLayout: one prefix row holds, per layer, the key then the value,
// each KV-width (grouped-query attention gets the narrower KV width).
func TestPrefixLayout(t *testing.T) {
	m := tinyModel(t, 31)
	p, err := AttachPrefix(m, PrefixConfig{Virtual: 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	kd := m.Cfg.KVDim()
	if kd == m.Cfg.Hidden {
		t.Fatal("test model should have grouped-query attention")
	}
	w := 2 * len(m.Layers) * kd
	if p.Embedding.Shape[1] != w {
		t.Fatalf("prefix width %d, want %d", p.Embedding.Shape[1], w)
	}
	for l := range m.Layers {
		k, v := p.KV(l)
		for r := 0; r < 2; r++ {
			row := p.Embedding.Data[r*w : (r+1)*w]
			if relErr32(k[r*kd:(r+1)*kd], row[2*l*kd:(2*l+1)*kd]) != 0 || relErr32(v[r*kd:(r+1)*kd], row[(2*l+1)*kd:(2*l+2)*kd]) != 0 {
				t.Errorf("layer %d row %d: keys/values are not where PEFT puts them", l, r)
			}
		}
	}
	if _, err := AttachPrefix(m, PrefixConfig{Virtual: 2}, 1); err == nil {
		t.Error("a second prefix was accepted")
	}
	p.Detach()
	if m.Layers[0].Prefix != nil {
		t.Error("Detach left the prefix")
	}
}
