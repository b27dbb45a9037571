package gguf

import (
	"encoding/json"
	"fmt"
	"gotune/model/family"
	"gotune/safefile"
	"math"
	"path/filepath"
)

// HFConfig holds the config.json fields the converter needs.
type HFConfig struct {
	ModelType             string  `json:"model_type"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"`
	HeadDim               int     `json:"head_dim"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	// OriginalMaxPositionEmbeddings is phi3's top-level pretrained context.
	OriginalMaxPositionEmbeddings int  `json:"original_max_position_embeddings"`
	TieWordEmbeddings             bool `json:"tie_word_embeddings"`
	VocabSize                     int  `json:"vocab_size"`
	AttentionBias                 bool `json:"attention_bias"`
	// RopeScaling is rope_scaling or, in newer files, rope_parameters.
	RopeScaling *RopeScaling `json:"-"`
	BOSTokenID  *int         `json:"-"`
	EOSTokenID  *int         `json:"-"`
	PadTokenID  *int         `json:"-"`
	// Family is the registry entry of ModelType (nil when unsupported) and
	// Traits what it read from the file.
	Family *family.Family `json:"-"`
	Traits family.Traits  `json:"-"`
	Keys   family.Keys    `json:"-"`
}

// RopeScaling is the rope_scaling / rope_parameters object.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Type                          string  `json:"type"` // older spelling of rope_type
	RopeTheta                     float64 `json:"rope_theta"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
	// longrope
	ShortFactor     []float64 `json:"short_factor"`
	LongFactor      []float64 `json:"long_factor"`
	AttentionFactor float64   `json:"attention_factor"`
}

// Kind is the scaling type, "default" when none.
func (r *RopeScaling) Kind() string {
	if r == nil {
		return "default"
	}
	if r.RopeType != "" {
		return r.RopeType
	}
	if r.Type != "" {
		return r.Type
	}
	return "default"
}

// ReadHFConfig reads and validates a model folder's config.json.
func ReadHFConfig(modelDir string) (*HFConfig, error) {
	path := filepath.Join(modelDir, "config.json")
	b, err := safefile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c HFConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var extra struct {
		RopeScaling    *RopeScaling    `json:"rope_scaling"`
		RopeParameters *RopeScaling    `json:"rope_parameters"`
		BOS            json.RawMessage `json:"bos_token_id"`
		EOS            json.RawMessage `json:"eos_token_id"`
		Pad            json.RawMessage `json:"pad_token_id"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// transformers 5 may key the parameters by layer type (Gemma 3); the
	// global layers' are the model's rope, as llama.cpp reads it.
	var perType struct {
		P struct {
			Full *RopeScaling `json:"full_attention"`
		} `json:"rope_parameters"`
	}
	if json.Unmarshal(b, &perType) == nil && perType.P.Full != nil {
		extra.RopeParameters = perType.P.Full
	}
	c.RopeScaling = extra.RopeScaling
	if extra.RopeParameters != nil {
		c.RopeScaling = extra.RopeParameters
		if c.RopeTheta == 0 {
			c.RopeTheta = extra.RopeParameters.RopeTheta
		}
	}
	c.BOSTokenID, c.EOSTokenID, c.PadTokenID = firstID(extra.BOS), firstID(extra.EOS), firstID(extra.Pad)
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000 // transformers' default for these families
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"max_position_embeddings", c.MaxPositionEmbeddings}, {"vocab_size", c.VocabSize}} {
		if f.v <= 0 {
			return nil, fmt.Errorf("%s: field %s is missing or not positive (got %d)", path, f.name, f.v)
		}
	}
	if c.RMSNormEps <= 0 || math.IsNaN(c.RMSNormEps) {
		return nil, fmt.Errorf("%s: field rms_norm_eps is missing or not positive", path)
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return nil, fmt.Errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim == 0 {
		if c.HiddenSize%c.NumAttentionHeads != 0 {
			return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d and head_dim is not given", path, c.HiddenSize, c.NumAttentionHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%s: head_dim %d is odd; rotary embeddings need an even size", path, c.HeadDim)
	}
	// An unknown model_type is reported by Arch, where it matters.
	if fam, err := family.Lookup(c.ModelType); err == nil {
		keys, err := family.ParseKeys(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := fam.Configure(path, keys, &c.Traits); err != nil {
			return nil, err
		}
		c.Family, c.Keys = fam, keys
	}
	return &c, nil
}

// firstID reads a token id that may be null, a number or a list (first entry).
func firstID(raw json.RawMessage) *int {
	var n int
	if json.Unmarshal(raw, &n) == nil && len(raw) > 0 && string(raw) != "null" {
		return &n
	}
	var ns []int
	if json.Unmarshal(raw, &ns) == nil && len(ns) > 0 {
		return &ns[0]
	}
	return nil
}

// Arch is the llama.cpp architecture name for a Hugging Face model_type.
func Arch(modelType string) (string, error) {
	fam, err := family.Lookup(modelType)
	if err != nil {
		return "", fmt.Errorf("GGUF export: %w", err)
	}
	return fam.GGUFArch, nil
}

// PermuteQK reorders the rows of a q or k projection (weight [rows, cols]
// row-major, or a bias with cols = 1) from Hugging Face's rotate-half layout,
// where each head's first half holds the real parts, to the interleaved
// pairs llama.cpp's "llama" rope expects: within each head, row 2i+j of the
// output is row j·(hd/2)+i of the input. heads is the number of heads the
// rows hold (the KV head count for k).
func PermuteQK(w []float32, rows, cols, heads int) ([]float32, error) {
	return permuteRows(w, rows, cols, heads, false)
}

// UnpermuteQK undoes PermuteQK.
func UnpermuteQK(w []float32, rows, cols, heads int) ([]float32, error) {
	return permuteRows(w, rows, cols, heads, true)
}

func permuteRows(w []float32, rows, cols, heads int, inverse bool) ([]float32, error) {
	if heads <= 0 || rows%(2*heads) != 0 || len(w) != rows*cols {
		return nil, fmt.Errorf("cannot permute %d×%d (%d values) for %d heads", rows, cols, len(w), heads)
	}
	hd := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				inter := h*hd + 2*i + j     // interleaved position
				half := h*hd + j*(hd/2) + i // rotate-half position
				src, dst := half, inter
				if inverse {
					src, dst = inter, half
				}
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out, nil
}

// Llama3RopeFactors computes the per-frequency divisors llama.cpp stores as
// rope_freqs.weight for rope_type "llama3": 1 for high frequencies
// (wavelength below original_context/high_freq_factor), factor for low
// frequencies (wavelength above original_context/low_freq_factor), and a
// smooth blend 1/((1−s)/factor + s) in between.
func Llama3RopeFactors(headDim int, theta float64, r *RopeScaling) []float32 {
	orig := float64(r.OriginalMaxPositionEmbeddings)
	if orig == 0 {
		orig = 8192
	}
	factor, lo, hi := r.Factor, r.LowFreqFactor, r.HighFreqFactor
	if factor == 0 {
		factor = 8
	}
	if lo == 0 {
		lo = 1
	}
	if hi == 0 {
		hi = 4
	}
	lowWavelen, highWavelen := orig/lo, orig/hi
	out := make([]float32, headDim/2)
	for i := range out {
		freq := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highWavelen:
			out[i] = 1
		case wavelen > lowWavelen:
			out[i] = float32(factor)
		default:
			s := (orig/wavelen - lo) / (hi - lo)
			out[i] = float32(1 / ((1-s)/factor + s))
		}
	}
	return out
}
