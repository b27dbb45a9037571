package family

func init() { Register(llama("llama", true)); Register(llama("mistral", false)) }

// llama and mistral: attention_bias puts biases on q, k, v and o; llama.cpp
// runs both as its "llama" architecture, with interleaved rotary pairs.
func llama(modelType string, loadsGGUF bool) *Family {
	modelfile := "llama3"
	if modelType == "mistral" {
		modelfile = "mistral"
	}
	return &Family{
		ModelType: modelType, GGUFArch: "llama", LoadsGGUF: loadsGGUF, PermuteQK: true, RopeFreqs: true, Modelfile: modelfile,
		Configure: func(path string, k Keys, t *Traits) error {
			b, err := k.Bool(path, "attention_bias", false)
			t.AttnBias, t.AttnOutBias = b, b
			return err
		},
		FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
			t.AttnBias, t.AttnOutBias = g.HasTensor("blk.0.attn_q.bias"), g.HasTensor("blk.0.attn_output.bias")
			return nil
		},
		Layer: llamaLayer(true),
	}
}
