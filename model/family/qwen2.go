package family

import "fmt"

func init() { Register(qwen2) }

// qwen2 always has biases on q, k and v (none on o).
var qwen2 = &Family{
	ModelType: "qwen2", GGUFArch: "qwen2", LoadsGGUF: true, Modelfile: "qwen2",
	Configure: func(path string, k Keys, t *Traits) error {
		t.AttnBias = true
		return nil
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		if !g.HasTensor("blk.0.attn_q.bias") {
			return fmt.Errorf("%s: tensor blk.0.attn_q.bias is missing (qwen2 has q/k/v biases)", path)
		}
		t.AttnBias = true
		return nil
	},
	Layer: llamaLayer(false),
}
