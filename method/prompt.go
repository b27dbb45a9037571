package method

import (
	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
	"gotune/tokenizer"
)

// The prompt-learning methods prepend trained virtual tokens (prompt
// tuning, P-tuning) or per-layer keys and values (prefix tuning, also called
// P-tuning v2) to every sequence.
var (
	promptTuning = Method{
		Name:     "prompt_tuning",
		PeftType: "PROMPT_TUNING",
		Check:    checkPrompt,
		Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
			c := s.Cfg
			return attachOrLoad(s, loadPromptTuning, func() (peft.Method, error) {
				pc := peft.PromptTuningConfig{Virtual: c.NumVirtualTokens, Init: c.PromptTuningInit, InitText: c.PromptTuningInitText,
					TokenizerName: s.ModelDir, BaseModel: s.ModelDir}
				if pc.Init == "TEXT" {
					tok, err := tokenizer.Load(s.ModelDir)
					if err != nil {
						return nil, err
					}
					pc.Tokenize = func(s string) []int { return tok.Encode(s, true) }
				}
				return peft.AttachPromptTuning(s.Model, pc, s.Seed())
			})
		},
		Load: loadPromptTuning,
		Plan: []plan.Row{{
			Method: plan.Prompt,
			Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
				P := int64(o.Virtual)
				fp := virtual(s, o, P*s.Hidden(), int64(o.Batch)*P*s.Hidden()) // dvirt
				fp.Tensors = []plan.Tensors{{Size: P * s.Hidden(), Count: 1}}
				return fp, nil
			},
		}},
	}
	pTuning = Method{
		Name:     "p_tuning",
		PeftType: "P_TUNING",
		Check:    checkPrompt,
		Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
			c := s.Cfg
			return attachOrLoad(s, loadPTuning, func() (peft.Method, error) {
				return peft.AttachPTuning(s.Model, peft.PTuningConfig{Virtual: c.NumVirtualTokens, EncoderType: c.EncoderReparameterType,
					EncoderHidden: c.EncoderHiddenSize, EncoderLayers: c.EncoderNumLayers, BaseModel: s.ModelDir}, s.Seed())
			})
		},
		Load: loadPTuning,
		Plan: []plan.Row{{
			Method: "p-tuning",
			// Embedding, then MLP h→h→h→h with biases (encoder_hidden_size = h).
			Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
				P, h := int64(o.Virtual), s.Hidden()
				fp := virtual(s, o, P*h+3*(h*h+h), int64(o.Batch)*P*h+2*3*P*h*2) // dvirt; float64 encoder activations
				fp.Tensors = []plan.Tensors{{Size: P * h, Count: 1}, {Size: h * h, Count: 3}, {Size: h, Count: 3}}
				return fp, nil
			},
		}},
	}
	prefixTuning = Method{
		Name:     "prefix_tuning",
		Aliases:  []string{"p_tuning_v2"},
		PeftType: "PREFIX_TUNING",
		Check:    checkPrompt,
		Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
			c := s.Cfg
			return attachOrLoad(s, loadPrefix, func() (peft.Method, error) {
				return peft.AttachPrefix(s.Model, peft.PrefixConfig{Virtual: c.NumVirtualTokens, Projection: c.PrefixProjection,
					EncoderHidden: c.EncoderHiddenSize, BaseModel: s.ModelDir}, s.Seed())
			})
		},
		Load: loadPrefix,
		Plan: []plan.Row{{
			Method: plan.Prefix,
			Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
				P := int64(o.Virtual)
				base, format := s.Frozen(o)
				return plan.Footprint{Trainable: P * s.Layers() * 2 * s.KVDim(), Base: base, Format: format, Adapter: true,
					// One embedding holds every layer's keys and values.
					Tensors: []plan.Tensors{{Size: P * s.Layers() * 2 * s.KVDim(), Count: 1}},
					Buffers: s.Layers() * 2 * P * s.KVDim(), // per-layer key/value copies
					Prefix:  P}, nil
			},
		}},
	}
)

func loadPromptTuning(m *model.Model, dir string) (peft.Method, error) {
	return peft.LoadPromptTuning(m, dir)
}

func loadPTuning(m *model.Model, dir string) (peft.Method, error) { return peft.LoadPTuning(m, dir) }

func loadPrefix(m *model.Model, dir string) (peft.Method, error) { return peft.LoadPrefix(m, dir) }

// virtual is the footprint of the methods that prepend o.Virtual trained
// tokens to every sequence.
func virtual(s plan.Shape, o plan.Options, trainable, buffers int64) plan.Footprint {
	base, format := s.Frozen(o)
	return plan.Footprint{Trainable: trainable, Base: base, Format: format, Adapter: true, Buffers: buffers, Virtual: int64(o.Virtual)}
}

// checkPrompt checks the keys the prompt-learning methods share.
func checkPrompt(c *config.Config, bad Report) {
	if c.NumVirtualTokens <= 0 {
		bad("num_virtual_tokens", "must be positive, got %d", c.NumVirtualTokens)
	}
	oneOf(bad, "prompt_tuning_init", c.PromptTuningInit, "RANDOM", "TEXT", "SAMPLE_VOCAB")
	if c.PromptTuningInit == "TEXT" && c.PromptTuningInitText == "" {
		bad("prompt_tuning_init_text", "required when prompt_tuning_init is TEXT")
	}
	oneOf(bad, "encoder_reparameterization_type", c.EncoderReparameterType, "MLP", "LSTM")
}
