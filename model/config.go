// Package model loads Hugging Face decoder-only causal language models of the
// Llama family (llama, mistral, qwen2, qwen3) and runs them: a forward pass
// over padded batches, a backward pass for training, and generation with a
// key/value cache.
package model

import (
	"encoding/json"
	"fmt"
	"gotune/jsondepth"
	"gotune/model/family"
	"gotune/safefile"
	"math"
	"path/filepath"
	"strings"
)

// Config is the architecture read from config.json.
type Config struct {
	ModelType string
	// Family is the registry entry of ModelType; its switches are Traits.
	Family *family.Family
	family.Traits
	Vocab         int
	Hidden        int
	Intermediate  int
	Layers        int
	Heads         int
	KVHeads       int
	HeadDim       int
	RMSNormEps    float64
	MaxPositions  int
	TieEmbeddings bool
	MLPBias       bool
	Rope          Rope
	BOS           []int
	EOS           []int
	Pad           int    // -1 when absent
	Act           string // silu (SwiGLU) or gelu_pytorch_tanh (GeGLU)
	// LocalRope, when set, is the rotary embedding of sliding-window layers
	// (Gemma 3's rope_local_base_freq, or rope_parameters per layer type).
	LocalRope *Rope
}

// Rope describes rotary position embeddings.
type Rope struct {
	Theta          float64
	Type           string // default, linear, dynamic, llama3, yarn
	Factor         float64
	LowFreqFactor  float64
	HighFreqFactor float64
	OriginalMaxPos int
	BetaFast       float64
	BetaSlow       float64
	Mscale         float64
	MscaleAllDim   float64
	AttnFactor     float64 // yarn attention_factor when given
	Truncate       bool
	PartialFactor  float64
	// ShortFactor and LongFactor divide each rotary frequency (longrope):
	// the long ones once a sequence is past OriginalMaxPos.
	ShortFactor, LongFactor []float64
}

// rawConfig mirrors the config.json keys we read. Pointers tell absent from zero.
type rawConfig struct {
	ModelType     string          `json:"model_type"`
	Vocab         *int            `json:"vocab_size"`
	Hidden        *int            `json:"hidden_size"`
	Intermediate  *int            `json:"intermediate_size"`
	Layers        *int            `json:"num_hidden_layers"`
	Heads         *int            `json:"num_attention_heads"`
	KVHeads       *int            `json:"num_key_value_heads"`
	HeadDim       *int            `json:"head_dim"`
	RMSNormEps    *float64        `json:"rms_norm_eps"`
	MaxPositions  int             `json:"max_position_embeddings"`
	Tie           *bool           `json:"tie_word_embeddings"`
	MLPBias       bool            `json:"mlp_bias"`
	RopeTheta     *float64        `json:"rope_theta"`
	RopeScaling   json.RawMessage `json:"rope_scaling"`
	RopeParams    json.RawMessage `json:"rope_parameters"`
	PartialRotary *float64        `json:"partial_rotary_factor"`
	OrigMaxPos    *int            `json:"original_max_position_embeddings"`
	BOS           json.RawMessage `json:"bos_token_id"`
	EOS           json.RawMessage `json:"eos_token_id"`
	Pad           json.RawMessage `json:"pad_token_id"`
	Act           string          `json:"hidden_act"`
	Activation    string          `json:"hidden_activation"`
	LocalBaseFreq *float64        `json:"rope_local_base_freq"`
}

type rawRope struct {
	Theta          *float64  `json:"rope_theta"`
	Type           string    `json:"rope_type"`
	LegacyType     string    `json:"type"`
	Factor         *float64  `json:"factor"`
	LowFreqFactor  *float64  `json:"low_freq_factor"`
	HighFreqFactor *float64  `json:"high_freq_factor"`
	OriginalMaxPos *int      `json:"original_max_position_embeddings"`
	BetaFast       *float64  `json:"beta_fast"`
	BetaSlow       *float64  `json:"beta_slow"`
	Mscale         *float64  `json:"mscale"`
	MscaleAllDim   *float64  `json:"mscale_all_dim"`
	AttnFactor     *float64  `json:"attention_factor"`
	Truncate       *bool     `json:"truncate"`
	Partial        *float64  `json:"partial_rotary_factor"`
	ShortFactor    []float64 `json:"short_factor"`
	LongFactor     []float64 `json:"long_factor"`
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	b, err := safefile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, b)
}

// ParseConfig parses config.json content; path is used in error messages.
func ParseConfig(path string, b []byte) (*Config, error) {
	if err := jsondepth.Check(b, jsondepth.Default); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Config{ModelType: r.ModelType, MaxPositions: r.MaxPositions, MLPBias: r.MLPBias, Act: r.Act, Pad: -1}
	fam, err := family.Lookup(r.ModelType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Family = fam
	req := func(key string, p *int) (int, error) {
		if p == nil {
			return 0, fmt.Errorf("%s: %s is missing", path, key)
		}
		if *p <= 0 {
			return 0, fmt.Errorf("%s: %s must be positive, got %d", path, key, *p)
		}
		return *p, nil
	}
	var errs [6]error
	c.Vocab, errs[0] = req("vocab_size", r.Vocab)
	c.Hidden, errs[1] = req("hidden_size", r.Hidden)
	c.Intermediate, errs[2] = req("intermediate_size", r.Intermediate)
	c.Layers, errs[3] = req("num_hidden_layers", r.Layers)
	c.Heads, errs[4] = req("num_attention_heads", r.Heads)
	c.KVHeads = c.Heads
	if r.KVHeads != nil {
		c.KVHeads, errs[5] = req("num_key_value_heads", r.KVHeads)
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c.Heads, c.KVHeads)
	}
	if r.HeadDim != nil && *r.HeadDim > 0 {
		c.HeadDim = *r.HeadDim
	} else {
		if c.Hidden%c.Heads != 0 {
			return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d and head_dim is absent", path, c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%s: head_dim %d must be even for rotary embeddings", path, c.HeadDim)
	}
	c.RMSNormEps = 1e-6
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.Tie != nil {
		c.TieEmbeddings = *r.Tie
	}
	if r.Activation != "" {
		c.Act = r.Activation // Gemma's key
	}
	if c.Act == "" {
		c.Act = "silu"
	}
	switch c.Act {
	case "silu", "swish", "gelu_pytorch_tanh":
	default:
		return nil, fmt.Errorf("%s: hidden_act %q is not supported (silu, gelu_pytorch_tanh)", path, c.Act)
	}
	keys, err := family.ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := fam.Configure(path, keys, &c.Traits); err != nil {
		return nil, err
	}
	if c.BOS, err = tokenIDs(r.BOS); err != nil {
		return nil, fmt.Errorf("%s: bos_token_id: %w", path, err)
	}
	if c.EOS, err = tokenIDs(r.EOS); err != nil {
		return nil, fmt.Errorf("%s: eos_token_id: %w", path, err)
	}
	if pad, err := tokenIDs(r.Pad); err != nil {
		return nil, fmt.Errorf("%s: pad_token_id: %w", path, err)
	} else if len(pad) > 0 {
		c.Pad = pad[0]
	}
	if err := c.parseRope(path, &r); err != nil {
		return nil, err
	}
	if err := c.checkSizes(path); err != nil {
		return nil, err
	}
	return c, nil
}

// Upper bounds on architecture sizes, each several times the largest
// released model's, so that a hostile or mistyped config.json (hidden_size
// 2^40, num_hidden_layers 1e9) is refused before anything is allocated
// instead of panicking or exhausting memory.
const (
	maxVocab        = 1 << 22
	maxHidden       = 1 << 17
	maxIntermediate = 1 << 20
	maxLayers       = 1 << 12
	maxHeads        = 1 << 12
	maxHeadDim      = 1 << 12
)

// checkSizes refuses sizes past the bounds above; where names the file.
func (c *Config) checkSizes(where string) error {
	for _, s := range []struct {
		key      string
		v, limit int
	}{
		{"vocab_size", c.Vocab, maxVocab},
		{"hidden_size", c.Hidden, maxHidden},
		{"intermediate_size", c.Intermediate, maxIntermediate},
		{"num_hidden_layers", c.Layers, maxLayers},
		{"num_attention_heads", c.Heads, maxHeads},
		{"num_key_value_heads", c.KVHeads, maxHeads},
		{"head_dim", c.HeadDim, maxHeadDim},
	} {
		if s.v > s.limit {
			return fmt.Errorf("%s: %s %d is beyond any supported model (at most %d)", where, s.key, s.v, s.limit)
		}
	}
	return nil
}

func tokenIDs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", raw)
	}
	return many, nil
}

func (c *Config) parseRope(path string, r *rawConfig) error {
	key := "rope_parameters"
	src := r.RopeParams
	if len(src) == 0 || string(src) == "null" {
		key, src = "rope_scaling", r.RopeScaling
	}
	// transformers 5 may give one set of rope parameters per layer type
	// (Gemma 3: linear scaling for full attention, a plain rope with its
	// own base for sliding layers).
	var perType map[string]json.RawMessage
	if len(src) > 0 && src[0] == '{' && json.Unmarshal(src, &perType) == nil && perType["full_attention"] != nil {
		full := perType["full_attention"]
		if err := c.parseRopeFrom(path, key+".full_attention", full, r); err != nil {
			return err
		}
		if local := perType["sliding_attention"]; local != nil {
			global := c.Rope
			if err := c.parseRopeFrom(path, key+".sliding_attention", local, r); err != nil {
				return err
			}
			lr := c.Rope
			c.Rope, c.LocalRope = global, &lr
		}
		return nil
	}
	if err := c.parseRopeFrom(path, key, src, r); err != nil {
		return err
	}
	if r.LocalBaseFreq != nil {
		if !(*r.LocalBaseFreq > 0) {
			return fmt.Errorf("%s: rope_local_base_freq must be positive, got %v", path, *r.LocalBaseFreq)
		}
		lr := Rope{Type: "default", Theta: *r.LocalBaseFreq, Factor: 1, PartialFactor: c.Rope.PartialFactor, OriginalMaxPos: c.MaxPositions}
		c.LocalRope = &lr
	}
	return nil
}

// parseRopeFrom reads one set of rope parameters (src, under key) into
// c.Rope; the top-level rope_theta and partial_rotary_factor apply when the
// set does not give them.
func (c *Config) parseRopeFrom(path, key string, src json.RawMessage, r *rawConfig) error {
	var rr rawRope
	if len(src) > 0 && string(src) != "null" {
		if err := json.Unmarshal(src, &rr); err != nil {
			return fmt.Errorf("%s: %s: %w", path, key, err)
		}
	}
	ro := Rope{Type: rr.Type, Factor: 1, PartialFactor: 1, BetaFast: 32, BetaSlow: 1, Truncate: true, OriginalMaxPos: c.MaxPositions}
	if ro.Type == "" {
		ro.Type = rr.LegacyType
	}
	if ro.Type == "" {
		ro.Type = "default"
	}
	switch {
	case rr.Theta != nil:
		ro.Theta = *rr.Theta
	case r.RopeTheta != nil:
		ro.Theta = *r.RopeTheta
	default:
		ro.Theta = 10000
	}
	set := func(dst *float64, p *float64) {
		if p != nil {
			*dst = *p
		}
	}
	set(&ro.Factor, rr.Factor)
	set(&ro.LowFreqFactor, rr.LowFreqFactor)
	set(&ro.HighFreqFactor, rr.HighFreqFactor)
	set(&ro.BetaFast, rr.BetaFast)
	set(&ro.BetaSlow, rr.BetaSlow)
	set(&ro.Mscale, rr.Mscale)
	set(&ro.MscaleAllDim, rr.MscaleAllDim)
	set(&ro.AttnFactor, rr.AttnFactor)
	set(&ro.PartialFactor, r.PartialRotary)
	set(&ro.PartialFactor, rr.Partial)
	if rr.Truncate != nil {
		ro.Truncate = *rr.Truncate
	}
	// phi3 keeps the pretrained context at the top level too, and
	// transformers prefers it there for longrope's attention factor.
	if r.OrigMaxPos != nil && *r.OrigMaxPos > 0 {
		ro.OriginalMaxPos = *r.OrigMaxPos
	}
	if rr.OriginalMaxPos != nil {
		ro.OriginalMaxPos = *rr.OriginalMaxPos
	}
	ro.ShortFactor, ro.LongFactor = rr.ShortFactor, rr.LongFactor
	need := func(name string, p any) error {
		switch v := p.(type) {
		case *float64:
			if v == nil {
				return fmt.Errorf("%s: %s: rope_type %q needs %s", path, key, ro.Type, name)
			}
		case *int:
			if v == nil {
				return fmt.Errorf("%s: %s: rope_type %q needs %s", path, key, ro.Type, name)
			}
		}
		return nil
	}
	switch ro.Type {
	case "default":
	case "linear", "dynamic":
		if err := need("factor", rr.Factor); err != nil {
			return err
		}
	case "llama3":
		for _, e := range []error{need("factor", rr.Factor), need("low_freq_factor", rr.LowFreqFactor),
			need("high_freq_factor", rr.HighFreqFactor), need("original_max_position_embeddings", rr.OriginalMaxPos)} {
			if e != nil {
				return e
			}
		}
	case "yarn":
		if err := need("factor", rr.Factor); err != nil {
			return err
		}
	case "longrope", "su":
		ro.Type = "longrope"
		half := int(float64(c.HeadDim)*ro.PartialFactor) / 2
		for _, f := range []struct {
			name string
			v    []float64
		}{{"short_factor", ro.ShortFactor}, {"long_factor", ro.LongFactor}} {
			if len(f.v) != half {
				return fmt.Errorf("%s: %s: rope_type longrope: %s has %d values, want %d (rotary dimensions / 2)", path, key, f.name, len(f.v), half)
			}
			for i, x := range f.v {
				if !(x > 0) || math.IsInf(x, 0) {
					return fmt.Errorf("%s: %s: %s[%d] is %v, want a positive number", path, key, f.name, i, x)
				}
			}
		}
		if ro.OriginalMaxPos <= 0 {
			return fmt.Errorf("%s: %s: rope_type longrope needs original_max_position_embeddings", path, key)
		}
		// The attention factor as transformers derives it: from the ratio of
		// the extended to the pretrained context unless given.
		if rr.AttnFactor == nil {
			ro.AttnFactor = 1
			if f := float64(c.MaxPositions) / float64(ro.OriginalMaxPos); f > 1 {
				ro.AttnFactor = math.Sqrt(1 + math.Log(f)/math.Log(float64(ro.OriginalMaxPos)))
			}
		}
	default:
		return fmt.Errorf("%s: %s: rope_type %q is not supported (default, linear, dynamic, llama3, yarn, longrope)", path, key, ro.Type)
	}
	if ro.Theta <= 0 || math.IsNaN(ro.Theta) {
		return fmt.Errorf("%s: rope_theta must be positive, got %v", path, ro.Theta)
	}
	if ro.Factor <= 0 {
		return fmt.Errorf("%s: %s: factor must be positive, got %v", path, key, ro.Factor)
	}
	c.Rope = ro
	return nil
}

// QDim is the width of the query projection's output.
func (c *Config) QDim() int { return c.Heads * c.HeadDim }

// KVDim is the width of the key and value projections' outputs.
func (c *Config) KVDim() int { return c.KVHeads * c.HeadDim }

// Dims are the sizes the family's weight shapes are written in.
func (c *Config) Dims() family.Dims {
	return family.Dims{Vocab: c.Vocab, Hidden: c.Hidden, Intermediate: c.Intermediate, HeadDim: c.HeadDim, QDim: c.QDim(), KVDim: c.KVDim(),
		Experts: c.Experts, ExpertIntermediate: c.ExpertIntermediate}
}

// deviceUnsupported names what of this architecture the device block
// (DeviceModel) does not implement, or "": such models train on the CPU.
func (c *Config) deviceUnsupported() string {
	var why []string
	// An unset activation is the Llama family's SiLU (a Config built in
	// code rather than parsed).
	if c.Act != "" && c.Act != "silu" && c.Act != "swish" && c.Act != "gelu_pytorch_tanh" {
		why = append(why, c.Act+" MLPs")
	}
	return strings.Join(why, ", ")
}

// AttnScale is the factor of the attention scores: 1/√query_pre_attn_scalar
// where the family sets it, else 1/√head_dim.
func (c *Config) AttnScale() float32 {
	if c.QueryPreAttnScalar > 0 {
		return float32(1 / math.Sqrt(c.QueryPreAttnScalar))
	}
	return float32(1 / math.Sqrt(float64(c.HeadDim)))
}

// window is the sliding window of layer i, 0 for a global layer.
func (c *Config) window(i int) int {
	if c.IsSliding(i) {
		return c.SlidingWindow
	}
	return 0
}
