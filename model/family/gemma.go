package family

import (
	"encoding/json"
	"fmt"
	"math"
)

func init() { Register(gemma("gemma2")); Register(gemma("gemma3_text")) }

// gemma2 and gemma3_text: (1+weight) RMSNorms, a norm before and after
// both attention and MLP, GeGLU with tanh-approximated GELU, embeddings
// scaled by √hidden, query_pre_attn_scalar in the attention scale, and
// sliding-window layers alternating with global ones. Gemma 2 soft-caps
// attention scores and final logits; Gemma 3 normalises q and k per head
// and gives its local layers their own rotary base (read with the rope
// parameters in model/config.go). llama.cpp's names are the same for both
// but for q/k norms; its converter stores the norms as 1+weight.
func gemma(modelType string) *Family {
	arch := "gemma2"
	if modelType == "gemma3_text" {
		arch = "gemma3"
	}
	return &Family{
		ModelType: modelType, GGUFArch: arch, LoadsGGUF: true, NormPlusOne: true, Modelfile: "gemma",
		Configure: func(path string, k Keys, t *Traits) error {
			t.NormPlusOne, t.SandwichNorms = true, true
			t.QKNorm = modelType == "gemma3_text"
			var errs [8]error
			var hidden, layers, pattern int
			var dtype string
			hidden, errs[0] = k.Int(path, "hidden_size", 0)
			layers, errs[1] = k.Int(path, "num_hidden_layers", 0)
			t.QueryPreAttnScalar, errs[2] = k.Float(path, "query_pre_attn_scalar", 0)
			t.AttnSoftcap, errs[3] = k.Float(path, "attn_logit_softcapping", 0)
			t.FinalSoftcap, errs[4] = k.Float(path, "final_logit_softcapping", 0)
			t.SlidingWindow, errs[5] = k.Int(path, "sliding_window", 0)
			dtype, errs[6] = k.String(path, "dtype", "")
			if dtype == "" {
				dtype, errs[7] = k.String(path, "torch_dtype", "")
			}
			for _, e := range errs {
				if e != nil {
					return e
				}
			}
			if b, err := k.Bool(path, "attention_bias", false); err != nil || b {
				if err != nil {
					return err
				}
				return fmt.Errorf("%s: attention_bias true is not supported for %s", path, modelType)
			}
			if t.QueryPreAttnScalar < 0 || t.AttnSoftcap < 0 || t.FinalSoftcap < 0 || t.SlidingWindow < 0 {
				return fmt.Errorf("%s: query_pre_attn_scalar, attn_logit_softcapping, final_logit_softcapping and sliding_window must not be negative", path)
			}
			// transformers multiplies by √hidden cast to the embedding's dtype.
			t.EmbedScale = float64(float32(math.Sqrt(float64(hidden))))
			t.EmbedScaleInputs = modelType == "gemma2"
			if dtype == "bfloat16" {
				t.EmbedScale = roundBF16(t.EmbedScale)
			}
			types, err := k.Strings(path, "layer_types")
			if err != nil {
				return err
			}
			if types == nil {
				// Older configs: Gemma 2 alternates, sliding first; Gemma 3
				// has one global layer every sliding_window_pattern.
				if pattern, err = k.Int(path, "sliding_window_pattern", 0); err != nil {
					return err
				}
				if pattern == 0 {
					if pattern, err = k.Int(path, "_sliding_window_pattern", 0); err != nil {
						return err
					}
				}
				if pattern == 0 {
					pattern = 2
					if modelType == "gemma3_text" {
						pattern = 6
					}
				}
				for i := 0; i < layers; i++ {
					types = append(types, map[bool]string{true: "full_attention", false: "sliding_attention"}[(i+1)%pattern == 0])
				}
			}
			if len(types) != layers {
				return fmt.Errorf("%s: layer_types has %d entries for num_hidden_layers %d", path, len(types), layers)
			}
			t.Sliding = make([]bool, layers)
			for i, s := range types {
				switch s {
				case "sliding_attention":
					t.Sliding[i] = true
				case "full_attention":
				default:
					return fmt.Errorf("%s: layer_types[%d] is %q (want sliding_attention or full_attention)", path, i, s)
				}
			}
			return nil
		},
		// The tensor layout only (for checking an export); model.LoadGGUF
		// refuses Gemma files, whose sliding-window and soft-cap metadata
		// it does not read back yet.
		FromGGUF: func(path string, g GGUFMeta, t *Traits) error {
			t.NormPlusOne, t.SandwichNorms = true, true
			t.QKNorm = g.HasTensor("blk.0.attn_q_norm.weight")
			a := arch + "."
			t.Activation = "gelu_pytorch_tanh"
			hidden, _ := g.Int(a + "embedding_length")
			t.EmbedScale = float64(float32(math.Sqrt(float64(hidden))))
			t.EmbedScaleInputs = modelType == "gemma2"
			w, _ := g.Int(a + "attention.sliding_window")
			t.SlidingWindow = int(w)
			t.AttnSoftcap, _ = g.Float(a + "attn_logit_softcapping")
			t.FinalSoftcap, _ = g.Float(a + "final_logit_softcapping")
			// What llama.cpp fixes rather than reads (see gemmaGGUFKeys).
			pattern := 2
			if modelType == "gemma3_text" {
				pattern, t.LocalRopeTheta = 6, 10000
			}
			layers, _ := g.Int(a + "block_count")
			if layers < 0 || layers > 1<<12 {
				return fmt.Errorf("%s: %sblock_count %d out of range", path, a, layers)
			}
			t.Sliding = make([]bool, layers)
			for i := range t.Sliding {
				t.Sliding[i] = (i+1)%pattern != 0
			}
			return nil
		},
		Layer:    gemmaLayer(modelType == "gemma3_text"),
		GGUFKeys: gemmaGGUFKeys(modelType),
	}
}

// gemmaGGUFKeys writes the sliding window and soft caps, and refuses what
// llama.cpp fixes rather than reads: the attention scale (1/√head_dim but
// for the 27B models), Gemma 2's alternating layers, Gemma 3's one global
// layer in six and its local rope base of 10000.
func gemmaGGUFKeys(modelType string) func(string, Keys, Traits) (map[string]any, error) {
	return func(path string, k Keys, t Traits) (map[string]any, error) {
		hd, err := k.Int(path, "head_dim", 0)
		if err != nil {
			return nil, err
		}
		if hd == 0 {
			hidden, _ := k.Int(path, "hidden_size", 0)
			heads, _ := k.Int(path, "num_attention_heads", 1)
			hd = hidden / max(heads, 1)
		}
		if t.QueryPreAttnScalar != 0 && int(t.QueryPreAttnScalar) != hd {
			return nil, fmt.Errorf("%s: query_pre_attn_scalar %v differs from head_dim %d; llama.cpp's %s derives the attention scale from head_dim", path, t.QueryPreAttnScalar, hd, modelType)
		}
		pattern := 2
		if modelType == "gemma3_text" {
			pattern = 6
			var params struct {
				Sliding *struct {
					Type  string   `json:"rope_type"`
					Theta *float64 `json:"rope_theta"`
				} `json:"sliding_attention"`
			}
			if raw, ok := k["rope_parameters"]; ok {
				_ = json.Unmarshal(raw, &params)
			}
			base, err := k.Float(path, "rope_local_base_freq", 10000)
			if err != nil {
				return nil, err
			}
			if s := params.Sliding; s != nil {
				if s.Type != "" && s.Type != "default" {
					return nil, fmt.Errorf("%s: rope_parameters.sliding_attention rope_type %q: llama.cpp's gemma3 runs local layers unscaled", path, s.Type)
				}
				if s.Theta != nil {
					base = *s.Theta
				}
			}
			if base != 10000 {
				return nil, fmt.Errorf("%s: local rope base %v: llama.cpp's gemma3 fixes it at 10000", path, base)
			}
		}
		for i, s := range t.Sliding {
			if want := (i+1)%pattern != 0; s != want {
				return nil, fmt.Errorf("%s: layer %d is %s; llama.cpp's %s has one global layer every %d", path, i,
					map[bool]string{true: "sliding", false: "global"}[s], modelType, pattern)
			}
		}
		out := map[string]any{"attention.sliding_window": uint32(t.SlidingWindow)}
		if t.AttnSoftcap > 0 {
			out["attn_logit_softcapping"] = float32(t.AttnSoftcap)
		}
		if t.FinalSoftcap > 0 {
			out["final_logit_softcapping"] = float32(t.FinalSoftcap)
		}
		return out, nil
	}
}

func gemmaLayer(qkNorm bool) []Tensor {
	ts := []Tensor{
		{HF: "input_layernorm.weight", GGUF: "attn_norm.weight", Shape: hidden},
		{HF: "self_attn.q_proj.weight", GGUF: "attn_q.weight", Shape: qProj},
		{HF: "self_attn.k_proj.weight", GGUF: "attn_k.weight", Shape: kvProj},
		{HF: "self_attn.v_proj.weight", GGUF: "attn_v.weight", Shape: kvProj},
		{HF: "self_attn.o_proj.weight", GGUF: "attn_output.weight", Shape: oProj},
	}
	if qkNorm {
		ts = append(ts,
			Tensor{HF: "self_attn.q_norm.weight", GGUF: "attn_q_norm.weight", Shape: headDim},
			Tensor{HF: "self_attn.k_norm.weight", GGUF: "attn_k_norm.weight", Shape: headDim})
	}
	return append(ts,
		Tensor{HF: "post_attention_layernorm.weight", GGUF: "post_attention_norm.weight", Shape: hidden},
		Tensor{HF: "pre_feedforward_layernorm.weight", GGUF: "ffn_norm.weight", Shape: hidden},
		Tensor{HF: "mlp.gate_proj.weight", GGUF: "ffn_gate.weight", Shape: upProj},
		Tensor{HF: "mlp.up_proj.weight", GGUF: "ffn_up.weight", Shape: upProj},
		Tensor{HF: "mlp.down_proj.weight", GGUF: "ffn_down.weight", Shape: downProj},
		Tensor{HF: "post_feedforward_layernorm.weight", GGUF: "post_ffw_norm.weight", Shape: hidden},
	)
}

// roundBF16 rounds to the nearest bfloat16 (ties to even), as a tensor cast
// does.
func roundBF16(v float64) float64 {
	b := math.Float32bits(float32(v))
	b += 0x7fff + (b>>16)&1
	return float64(math.Float32frombits(b &^ 0xffff))
}
