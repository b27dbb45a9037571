package family

func init() { Register(qwen3) }

// qwen3 normalises each head of q and k (RMSNorm) before the rotation;
// attention_bias, when set, adds biases to q, k and v only.
var qwen3 = &Family{
	ModelType: "qwen3", GGUFArch: "qwen3", LoadsGGUF: true, Modelfile: "qwen3",
	Configure: func(path string, k Keys, t *Traits) error {
		t.QKNorm = true
		var err error
		t.AttnBias, err = k.Bool(path, "attention_bias", false)
		return err
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		t.QKNorm = true
		t.AttnBias = g.HasTensor("blk.0.attn_q.bias")
		return nil
	},
	Layer: withoutQKVBias(llamaLayer(false)),
}

// withoutQKVBias keeps the q/k/v biases (attention_bias) but gives them no
// GGUF name: llama.cpp's qwen3 does not load them.
func withoutQKVBias(ts []Tensor) []Tensor {
	for i, t := range ts {
		switch t.HF {
		case "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias":
			ts[i].GGUF = ""
		}
	}
	return ts
}
