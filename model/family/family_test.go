package family

import (
	"strings"
	"testing"
)

func TestGGUFName(t *testing.T) {
	llama, _ := Lookup("llama")
	qwen3, _ := Lookup("qwen3")
	for _, c := range []struct {
		fam      *Family
		hf, want string
	}{
		{llama, "model.embed_tokens.weight", "token_embd.weight"},
		{llama, "model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
		{llama, "model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"},
		{llama, "model.layers.0.self_attn.o_proj.bias", "blk.0.attn_output.bias"},
		{qwen3, "model.layers.3.self_attn.k_norm.weight", "blk.3.attn_k_norm.weight"},
		{qwen3, "model.layers.3.self_attn.q_proj.bias", ""}, // llama.cpp's qwen3 has no q/k/v biases
		{llama, "model.layers.01.self_attn.q_proj.weight", ""},
		{llama, "model.layers.x.self_attn.q_proj.weight", ""},
		{llama, "model.layers.0.mlp.experts.0.w1.weight", ""},
	} {
		got, ok := c.fam.GGUFName(c.hf)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s %s: got %q %v, want %q", c.fam.ModelType, c.hf, got, ok, c.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	for _, name := range Names() {
		f, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if f.GGUFArch == "" || f.Configure == nil || f.FromGGUF == nil || len(f.Layer) == 0 {
			t.Errorf("%s: incomplete family %+v", name, f)
		}
		seen := map[string]bool{}
		for _, l := range f.Layer {
			for _, n := range []string{"hf:" + l.HF, "gguf:" + l.GGUF} {
				if n != "hf:" && n != "gguf:" && seen[n] {
					t.Errorf("%s: layer tensor %s listed twice", name, n)
				}
				seen[n] = true
			}
		}
		if g, err := ByGGUFArch(f.GGUFArch); err != nil || g.GGUFArch != f.GGUFArch {
			t.Errorf("%s: GGUF architecture %s does not read back: %v", name, f.GGUFArch, err)
		}
	}
	if _, err := Lookup("gpt2"); err == nil || !strings.Contains(err.Error(), "llama") {
		t.Errorf("unknown model_type: %v, want an error listing the supported ones", err)
	}
}

func TestGGUFExpert(t *testing.T) {
	mixtral, _ := Lookup("mixtral")
	qwen, _ := Lookup("qwen3_moe")
	llama, _ := Lookup("llama")
	for _, c := range []struct {
		fam    *Family
		hf     string
		want   string
		expert int
	}{
		{mixtral, "model.layers.3.block_sparse_moe.experts.7.w1.weight", "blk.3.ffn_gate_exps.weight", 7},
		{mixtral, "model.layers.3.block_sparse_moe.experts.12.w2.weight", "blk.3.ffn_down_exps.weight", 12},
		{qwen, "model.layers.0.mlp.experts.1.up_proj.weight", "blk.0.ffn_up_exps.weight", 1},
		{qwen, "model.layers.0.mlp.gate.weight", "", 0},
		{qwen, "model.layers.0.mlp.experts.x.up_proj.weight", "", 0},
		{llama, "model.layers.0.mlp.experts.1.up_proj.weight", "", 0},
	} {
		got, e, ok := c.fam.GGUFExpert(c.hf)
		if got != c.want || ok != (c.want != "") || (ok && e != c.expert) {
			t.Errorf("%s %s: got %q %d %v, want %q %d", c.fam.ModelType, c.hf, got, e, ok, c.want, c.expert)
		}
	}
}
