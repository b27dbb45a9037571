package family

import (
	"fmt"
	"strings"
)

func init() { Register(qwen3MoE); Register(mixtral) }

// qwen3_moe: Qwen3's attention (q/k norms) with a mixture of experts in
// place of the MLP: the router's softmax before the top-k, renormalised
// only with norm_topk_prob; some layers may stay dense (mlp_only_layers,
// decoder_sparse_step). llama.cpp: qwen3moe with stacked expert tensors.
var qwen3MoE = &Family{
	ModelType: "qwen3_moe", GGUFArch: "qwen3moe", LoadsGGUF: true, Modelfile: "qwen3",
	MoE: &MoENames{Block: "mlp", Router: "gate", Gate: "gate_proj", Up: "up_proj", Down: "down_proj", PEFTExperts: "mlp.experts"},
	Configure: func(path string, k Keys, t *Traits) error {
		if err := qwen3.Configure(path, k, t); err != nil {
			return err
		}
		if err := readMoE(path, k, t, "num_experts", "moe_intermediate_size"); err != nil {
			return err
		}
		var err error
		if t.NormTopK, err = k.Bool(path, "norm_topk_prob", false); err != nil {
			return err
		}
		layers, err := k.Int(path, "num_hidden_layers", 0)
		if err != nil {
			return err
		}
		step, err := k.Int(path, "decoder_sparse_step", 1)
		if err != nil {
			return err
		}
		var only []int
		if k.present("mlp_only_layers") {
			if err := jsonInts(k["mlp_only_layers"], &only); err != nil {
				return fmt.Errorf("%s: mlp_only_layers: %w", path, err)
			}
		}
		t.Dense = make([]bool, layers)
		for i := range t.Dense {
			t.Dense[i] = step <= 0 || (i+1)%step != 0
		}
		for _, i := range only {
			if i >= 0 && i < layers {
				t.Dense[i] = true
			}
		}
		return nil
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		t.QKNorm = true
		return moeFromGGUF(path, g, t, "qwen3moe.expert_feed_forward_length")
	},
	Layer:    moeLayer(qwen3.Layer, "mlp", "gate", [3]string{"gate_proj", "up_proj", "down_proj"}),
	GGUFKeys: moeGGUFKeys(true),
}

// mixtral: Mistral's attention with a mixture of experts (w1 gate, w3 up,
// w2 down); the top-k routing weights always sum to one. llama.cpp runs
// it as its llama architecture with stacked expert tensors.
var mixtral = &Family{
	ModelType: "mixtral", GGUFArch: "llama", PermuteQK: true, RopeFreqs: true, Modelfile: "mistral",
	MoE: &MoENames{Block: "block_sparse_moe", Router: "gate", Gate: "w1", Up: "w3", Down: "w2", PEFTExperts: "mlp.experts"},
	Configure: func(path string, k Keys, t *Traits) error {
		if err := readMoE(path, k, t, "num_local_experts", "intermediate_size"); err != nil {
			return err
		}
		t.NormTopK = true
		return nil
	},
	FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
		t.AttnBias, t.AttnOutBias = g.HasTensor("blk.0.attn_q.bias"), g.HasTensor("blk.0.attn_output.bias")
		return moeFromGGUF(path, g, t, "llama.feed_forward_length")
	},
	Layer:    moeLayer(llamaLayer(true), "block_sparse_moe", "gate", [3]string{"w1", "w3", "w2"}),
	GGUFKeys: moeGGUFKeys(false),
}

// moeGGUFKeys writes the expert counts (and, for qwen3moe, the experts'
// width) and refuses what llama.cpp would run differently: it renormalises
// the top-k weights always and has experts in every layer.
func moeGGUFKeys(expertFF bool) func(string, Keys, Traits) (map[string]any, error) {
	return func(path string, k Keys, t Traits) (map[string]any, error) {
		if !t.NormTopK {
			return nil, fmt.Errorf("%s: norm_topk_prob false: llama.cpp renormalises the top-k routing weights", path)
		}
		for i, d := range t.Dense {
			if d {
				return nil, fmt.Errorf("%s: layer %d has a dense MLP (mlp_only_layers, decoder_sparse_step); llama.cpp expects experts in every layer", path, i)
			}
		}
		out := map[string]any{"expert_count": uint32(t.Experts), "expert_used_count": uint32(t.TopK)}
		if expertFF {
			out["expert_feed_forward_length"] = uint32(t.ExpertIntermediate)
		}
		return out, nil
	}
}

// moeFromGGUF reads the expert counts and width (under ffKey); llama.cpp
// renormalises the top-k weights and trains no auxiliary loss.
func moeFromGGUF(path string, g GGUFMeta, t *Traits, ffKey string) error {
	arch := ffKey[:strings.Index(ffKey, ".")+1]
	e, _ := g.Int(arch + "expert_count")
	k, _ := g.Int(arch + "expert_used_count")
	ff, _ := g.Int(ffKey)
	if e <= 0 || e > 1<<12 || k <= 0 || k > e || ff <= 0 || ff > 1<<20 {
		return fmt.Errorf("%s: %sexpert_count %d, expert_used_count %d and %s %d do not describe a mixture of experts", path, arch, e, k, ffKey, ff)
	}
	t.Experts, t.TopK, t.ExpertIntermediate, t.NormTopK = int(e), int(k), int(ff), true
	return nil
}

// readMoE reads the expert count (under the family's key), the experts'
// width, num_experts_per_tok and the auxiliary loss settings.
func readMoE(path string, k Keys, t *Traits, expertsKey, interKey string) error {
	var errs [5]error
	t.Experts, errs[0] = k.Int(path, expertsKey, 0)
	if t.Experts == 0 && errs[0] == nil {
		// transformers 5 writes num_local_experts for every MoE family.
		expertsKey = "num_local_experts"
		t.Experts, errs[0] = k.Int(path, expertsKey, 0)
	}
	t.ExpertIntermediate, errs[1] = k.Int(path, interKey, 0)
	t.TopK, errs[2] = k.Int(path, "num_experts_per_tok", 0)
	var aux bool
	aux, errs[3] = k.Bool(path, "output_router_logits", false)
	t.AuxCoef, errs[4] = k.Float(path, "router_aux_loss_coef", 0.001)
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	if !aux {
		t.AuxCoef = 0
	}
	if t.Experts <= 0 || t.Experts > 1<<12 {
		return fmt.Errorf("%s: %s must be between 1 and 4096, got %d", path, expertsKey, t.Experts)
	}
	if t.TopK <= 0 || t.TopK > t.Experts {
		return fmt.Errorf("%s: num_experts_per_tok %d must be between 1 and %s %d", path, t.TopK, expertsKey, t.Experts)
	}
	if t.ExpertIntermediate <= 0 || t.ExpertIntermediate > 1<<20 {
		return fmt.Errorf("%s: %s must be between 1 and 2^20, got %d", path, interKey, t.ExpertIntermediate)
	}
	if t.AuxCoef < 0 {
		return fmt.Errorf("%s: router_aux_loss_coef must not be negative, got %v", path, t.AuxCoef)
	}
	if j, err := k.Float(path, "router_jitter_noise", 0); err != nil || j != 0 {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s: router_jitter_noise %v is not supported (0)", path, j)
	}
	return nil
}

// moeLayer is a dense family's layer with the MLP replaced by a router and
// experts (listed for the first expert; the loader reads all of them).
func moeLayer(dense []Tensor, block, router string, proj [3]string) []Tensor {
	var out []Tensor
	for _, t := range dense {
		if len(t.HF) >= 4 && t.HF[:4] == "mlp." {
			continue
		}
		out = append(out, t)
	}
	isMoE := func(t Traits) bool { return t.IsMoE(0) }
	up := func(d Dims) []int { return []int{d.ExpertIntermediate, d.Hidden} }
	down := func(d Dims) []int { return []int{d.Hidden, d.ExpertIntermediate} }
	stacked := func(shape func(Dims) []int) func(Dims) []int {
		return func(d Dims) []int { return append([]int{d.Experts}, shape(d)...) }
	}
	return append(out,
		Tensor{HF: block + "." + router + ".weight", GGUF: "ffn_gate_inp.weight", Shape: func(d Dims) []int { return []int{d.Experts, d.Hidden} }, When: isMoE},
		Tensor{HF: block + ".experts.0." + proj[0] + ".weight", Shape: up, When: isMoE},
		Tensor{HF: block + ".experts.0." + proj[1] + ".weight", Shape: up, When: isMoE},
		Tensor{HF: block + ".experts.0." + proj[2] + ".weight", Shape: down, When: isMoE},
		// llama.cpp stacks the experts: [Experts, out, in] (HF order).
		Tensor{GGUF: "ffn_gate_exps.weight", Shape: stacked(up), When: isMoE},
		Tensor{GGUF: "ffn_up_exps.weight", Shape: stacked(up), When: isMoE},
		Tensor{GGUF: "ffn_down_exps.weight", Shape: stacked(down), When: isMoE},
	)
}
