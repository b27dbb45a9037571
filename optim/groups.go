package optim

import (
	"regexp"
	"strings"

	"gotune/nn"
)

// GroupOptions describes how MakeGroups splits parameters.
type GroupOptions struct {
	WeightDecay float64
	// LoRAPlusRatio > 0 enables LoRA+ grouping: lora_B matrices (and 1-D
	// parameters) train at lr·ratio.
	LoRAPlusRatio float64
	// LoRAPlusEmbeddingLR is the learning rate of embedding parameters
	// under LoRA+ (LLaMA-Factory's loraplus_lr_embedding, default 1e-6);
	// LearningRate is needed to express it as a scale.
	LoRAPlusEmbeddingLR float64
	LearningRate        float64
}

// noDecay matches the names transformers exempts from weight decay: biases
// and normalisation weights (its forbidden_layer_names patterns).
var noDecay = regexp.MustCompile(`bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)`)

// Decays reports whether transformers would apply weight decay to the
// parameter of this name.
func Decays(name string) bool { return !noDecay.MatchString(strings.ToLower(name)) }

// MakeGroups builds the parameter groups the transformers Trainer (or, with
// LoRA+, LLaMA-Factory's LoRA+ optimizer) would build from the trainable
// parameters (those with a gradient buffer): weight decay except on biases
// and norms. Empty groups are left out.
func MakeGroups(params []*nn.Param, o GroupOptions) []Group {
	var groups []Group
	add := func(ps []*nn.Param, scale, wd float64) {
		if len(ps) > 0 {
			groups = append(groups, Group{Params: ps, LRScale: scale, WeightDecay: wd})
		}
	}
	if o.LoRAPlusRatio <= 0 {
		var decay, rest []*nn.Param
		for _, p := range params {
			switch {
			case !p.Trainable():
			case Decays(p.Name):
				decay = append(decay, p)
			default:
				rest = append(rest, p)
			}
		}
		add(decay, 1, o.WeightDecay)
		add(rest, 1, 0)
		return groups
	}
	var loraA, loraB, loraBNoDecay, embed []*nn.Param
	for _, p := range params {
		switch {
		case !p.Trainable():
		case isEmbedding(p.Name):
			embed = append(embed, p)
		case strings.Contains(p.Name, "lora_B") || len(p.Shape) == 1:
			if Decays(p.Name) {
				loraB = append(loraB, p)
			} else {
				loraBNoDecay = append(loraBNoDecay, p)
			}
		default:
			loraA = append(loraA, p)
		}
	}
	embScale := 1.0
	if o.LearningRate > 0 && o.LoRAPlusEmbeddingLR > 0 {
		embScale = o.LoRAPlusEmbeddingLR / o.LearningRate
	}
	add(loraA, 1, o.WeightDecay)
	add(loraB, o.LoRAPlusRatio, o.WeightDecay)
	add(loraBNoDecay, o.LoRAPlusRatio, 0)
	add(embed, embScale, o.WeightDecay)
	return groups
}

// isEmbedding recognises parameters of embedding layers: LoRA's embedding
// adapters and a trained token embedding.
func isEmbedding(name string) bool {
	return strings.Contains(name, "lora_embedding_") || strings.Contains(name, "embed_tokens")
}
