package family

import "fmt"

func init() { Register(phi3) }

// phi3 (Phi-3, Phi-4) keeps q/k/v in one qkv_proj and gate/up in one
// gate_up_proj; PEFT targets them by those names, so the model holds them
// fused (Traits.FusedQKV/FusedGateUp). llama.cpp's phi3 reads the fused
// matrices as attn_qkv and ffn_up (2·n_ff rows, gate first) and longrope's
// factors as rope_factors_short/long tensors.
var phi3 = &Family{
	ModelType: "phi3", GGUFArch: "phi3", LoadsGGUF: true, RopeFactors: true, Modelfile: "phi3",
	Configure: func(path string, k Keys, t *Traits) error {
		t.FusedQKV, t.FusedGateUp = true, true
		if b, err := k.Bool(path, "attention_bias", false); err != nil || b {
			if err != nil {
				return err
			}
			return fmt.Errorf("%s: attention_bias true is not supported for phi3", path)
		}
		return nil
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		if !g.HasTensor("blk.0.attn_qkv.weight") {
			return fmt.Errorf("%s: tensor blk.0.attn_qkv.weight is missing (gotune reads phi3 with fused q/k/v)", path)
		}
		t.FusedQKV, t.FusedGateUp = true, true
		return nil
	},
	Layer: []Tensor{
		{HF: "input_layernorm.weight", GGUF: "attn_norm.weight", Shape: hidden},
		{HF: "self_attn.qkv_proj.weight", GGUF: "attn_qkv.weight", Shape: func(d Dims) []int { return []int{d.QDim + 2*d.KVDim, d.Hidden} }},
		{HF: "self_attn.o_proj.weight", GGUF: "attn_output.weight", Shape: oProj},
		{HF: "post_attention_layernorm.weight", GGUF: "ffn_norm.weight", Shape: hidden},
		{HF: "mlp.gate_up_proj.weight", GGUF: "ffn_up.weight", Shape: func(d Dims) []int { return []int{2 * d.Intermediate, d.Hidden} }},
		{HF: "mlp.down_proj.weight", GGUF: "ffn_down.weight", Shape: downProj},
	},
}
