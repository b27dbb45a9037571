package optim

import (
	"math"
	"slices"
	"testing"

	"gotune/nn"
)

func names(ps []*nn.Param) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestDecays(t *testing.T) {
	tests := map[string]bool{
		"model.layers.0.self_attn.q_proj.weight":                              true,
		"model.layers.0.self_attn.q_proj.bias":                                false,
		"model.layers.0.input_layernorm.weight":                               false,
		"model.layers.0.post_attention_layernorm.weight":                      false,
		"model.layers.0.self_attn.q_norm.weight":                              false,
		"model.norm.weight":                                                   false,
		"model.embed_tokens.weight":                                           true,
		"base_model.model.model.layers.0.mlp.down_proj.lora_A.default.weight": true,
		"model.layers.0.mlp.normalizer_proj.weight":                           true, // "norm" only as a whole component
	}
	for name, want := range tests {
		if got := Decays(name); got != want {
			t.Errorf("Decays(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMakeGroups(t *testing.T) {
	mk := func(name string, shape ...int) *nn.Param {
		p := nn.NewParam(name, shape...)
		p.SetTrainable(true)
		return p
	}
	frozen := nn.NewParam("model.layers.0.mlp.up_proj.weight", 4, 4)
	a := mk("x.q_proj.lora_A.default.weight", 2, 4)
	b := mk("x.q_proj.lora_B.default.weight", 4, 2)
	mag := mk("x.q_proj.lora_magnitude_vector.default.weight", 4) // DoRA: 1-D, LoRA+ puts it with B
	bias := mk("x.q_proj.bias", 4)
	norm := mk("model.norm.weight", 4)
	emb := mk("model.embed_tokens.lora_embedding_A.default", 2, 8)
	all := []*nn.Param{frozen, a, b, mag, bias, norm, emb}

	plain := MakeGroups(all, GroupOptions{WeightDecay: 0.1})
	if len(plain) != 2 || plain[0].WeightDecay != 0.1 || plain[1].WeightDecay != 0 ||
		!slices.Equal(names(plain[0].Params), names([]*nn.Param{a, b, mag, emb})) ||
		!slices.Equal(names(plain[1].Params), names([]*nn.Param{bias, norm})) {
		t.Fatalf("plain groups: %+v", plain)
	}

	lp := MakeGroups(all, GroupOptions{WeightDecay: 0.1, LoRAPlusRatio: 16, LoRAPlusEmbeddingLR: 1e-6, LearningRate: 1e-4})
	want := []struct {
		params []*nn.Param
		scale  float64
		wd     float64
	}{
		{[]*nn.Param{a}, 1, 0.1},
		{[]*nn.Param{b, mag}, 16, 0.1},
		{[]*nn.Param{bias, norm}, 16, 0},
		{[]*nn.Param{emb}, 0.01, 0.1},
	}
	if len(lp) != len(want) {
		t.Fatalf("LoRA+ groups: %d, want %d", len(lp), len(want))
	}
	for i, w := range want {
		g := lp[i]
		if !slices.Equal(names(g.Params), names(w.params)) || math.Abs(g.LRScale-w.scale) > 1e-15 || g.WeightDecay != w.wd {
			t.Errorf("group %d: %v scale %v wd %v; want %v scale %v wd %v", i, names(g.Params), g.LRScale, g.WeightDecay, names(w.params), w.scale, w.wd)
		}
	}
}
