package family

import "fmt"

func init() { Register(seedOSS) }

// seedOSS is ByteDance's Seed-OSS: the Llama layer with Hugging Face's
// rotate-half rotary pairs (llama.cpp's seed_oss architecture, which rotates
// as NEOX does, so q and k are exported unpermuted), biases on q, k and v
// (attention_bias, on by default) and on o only with attention_out_bias.
var seedOSS = &Family{
	ModelType: "seed_oss", GGUFArch: "seed_oss", LoadsGGUF: true,
	Configure: func(path string, k Keys, t *Traits) error {
		var err error
		if t.AttnBias, err = k.Bool(path, "attention_bias", true); err != nil {
			return err
		}
		if t.AttnOutBias, err = k.Bool(path, "attention_out_bias", false); err != nil {
			return err
		}
		if mlp, err := k.Bool(path, "mlp_bias", false); err != nil {
			return err
		} else if mlp {
			return fmt.Errorf("%s: mlp_bias true: Seed-OSS checkpoints have no MLP biases, and gotune does not load them", path)
		}
		return nil
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		t.AttnBias, t.AttnOutBias = g.HasTensor("blk.0.attn_q.bias"), g.HasTensor("blk.0.attn_output.bias")
		return nil
	},
	Layer: llamaLayer(false),
}
