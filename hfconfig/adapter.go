package hfconfig

import (
	"encoding/json"
	"path/filepath"
)

// AdapterConfig is what a PEFT adapter folder's adapter_config.json says,
// for every method gotune loads. Values are as written: each loader checks
// the fields of its own method (and rejects what it does not support).
type AdapterConfig struct {
	Path      string // adapter_config.json, for messages
	PeftType  string // "LORA", "IA3", "PROMPT_TUNING", …; "" when absent
	TaskType  string
	BaseModel string // base_model_name_or_path

	// LoRA (and IA3: target_modules, fan_in_fan_out, modules_to_save).
	R                 int
	LoRAAlpha         float64
	LoRADropout       float64
	TargetModules     Modules
	UseRSLoRA         bool
	UseDoRA           bool
	RankPattern       map[string]int
	AlphaPattern      map[string]float64
	FanInFanOut       bool
	Bias              string
	LoRABias          bool
	ModulesToSave     []string
	LayersToTransform Layers
	// TargetParameters names stacked mixture-of-experts weights adapted
	// directly (PEFT's target_parameters, "mlp.experts.gate_up_proj").
	TargetParameters []string

	// IA3.
	FeedforwardModules Modules
	ExcludeModules     Modules
	InitIA3Weights     *bool

	// Prompt tuning, P-tuning and prefix tuning.
	NumVirtualTokens         int
	TokenDim                 int
	NumTransformerSubmodules int
	NumAttentionHeads        int
	NumLayers                int
	PromptTuningInit         string
	PromptTuningInitText     *string
	TokenizerName            *string // tokenizer_name_or_path
	EncoderType              string  // encoder_reparameterization_type
	EncoderHiddenSize        int
	EncoderNumLayers         int
	EncoderDropout           float64
	PrefixProjection         bool

	// Bottleneck adapters (gotune's own peft_type "BOTTLENECK").
	BottleneckSize   int
	NonLinearity     string
	AdapterPlacement string
	Scaling          *float64
	InitWeights      string
}

// Modules is a PEFT module selection: a list of names, or one regular
// expression matched against the full module name.
type Modules struct {
	Names   []string
	Regex   string
	IsRegex bool
	Set     bool // present and not null
}

// Layers is layers_to_transform, which PEFT takes as one index or a list.
type Layers struct {
	Indices []int
	Single  bool // written as one integer rather than a list
}

// ReadAdapterConfig reads dir/adapter_config.json. Unlike the tokenizer's
// and generation files it is not optional: the file is what makes a folder
// an adapter, so a missing one is an error (wrapping fs.ErrNotExist).
//
// Only the fields of the file's own peft_type are decoded (those of other
// methods stay zero): PEFT methods reuse names with other types (OFT's
// init_weights is a bool, the bottleneck's a string), and a method gotune
// does not load should be reported by its peft_type, not by a field.
func ReadAdapterConfig(dir string) (*AdapterConfig, error) {
	c := &AdapterConfig{Path: filepath.Join(dir, "adapter_config.json")}
	b, err := readFile(c.Path)
	if err != nil {
		return nil, err
	}
	var common struct {
		PeftType  string `json:"peft_type"`
		TaskType  string `json:"task_type"`
		BaseModel string `json:"base_model_name_or_path"`
	}
	if err := decode(c.Path, b, &common); err != nil {
		return nil, err
	}
	c.PeftType, c.TaskType, c.BaseModel = common.PeftType, common.TaskType, common.BaseModel
	switch c.PeftType {
	case "LORA":
		err = c.readLoRA(b)
	case "IA3":
		err = c.readIA3(b)
	case "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING":
		err = c.readPrompt(b)
	case "BOTTLENECK":
		err = c.readBottleneck(b)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *AdapterConfig) readLoRA(b []byte) error {
	var raw struct {
		R             int                `json:"r"`
		Alpha         float64            `json:"lora_alpha"`
		Dropout       float64            `json:"lora_dropout"`
		Targets       json.RawMessage    `json:"target_modules"`
		RSLoRA        bool               `json:"use_rslora"`
		DoRA          bool               `json:"use_dora"`
		RankPattern   map[string]int     `json:"rank_pattern"`
		AlphaPattern  map[string]float64 `json:"alpha_pattern"`
		FanInFanOut   bool               `json:"fan_in_fan_out"`
		Bias          string             `json:"bias"`
		LoRABias      bool               `json:"lora_bias"`
		ModulesToSave []string           `json:"modules_to_save"`
		Layers        json.RawMessage    `json:"layers_to_transform"`
		Params        []string           `json:"target_parameters"`
	}
	if err := decode(c.Path, b, &raw); err != nil {
		return err
	}
	c.TargetParameters = raw.Params
	c.R, c.LoRAAlpha, c.LoRADropout, c.UseRSLoRA, c.UseDoRA = raw.R, raw.Alpha, raw.Dropout, raw.RSLoRA, raw.DoRA
	c.RankPattern, c.AlphaPattern, c.FanInFanOut = raw.RankPattern, raw.AlphaPattern, raw.FanInFanOut
	c.Bias, c.LoRABias, c.ModulesToSave = raw.Bias, raw.LoRABias, raw.ModulesToSave
	var err error
	if c.TargetModules, err = modules(c.Path, "target_modules", raw.Targets); err != nil {
		return err
	}
	c.LayersToTransform, err = layers(c.Path, raw.Layers)
	return err
}

func (c *AdapterConfig) readIA3(b []byte) error {
	var raw struct {
		Targets       json.RawMessage `json:"target_modules"`
		Feedforward   json.RawMessage `json:"feedforward_modules"`
		Exclude       json.RawMessage `json:"exclude_modules"`
		FanInFanOut   bool            `json:"fan_in_fan_out"`
		Init          *bool           `json:"init_ia3_weights"`
		ModulesToSave []string        `json:"modules_to_save"`
	}
	if err := decode(c.Path, b, &raw); err != nil {
		return err
	}
	c.FanInFanOut, c.InitIA3Weights, c.ModulesToSave = raw.FanInFanOut, raw.Init, raw.ModulesToSave
	var err error
	if c.TargetModules, err = modules(c.Path, "target_modules", raw.Targets); err != nil {
		return err
	}
	if c.FeedforwardModules, err = modules(c.Path, "feedforward_modules", raw.Feedforward); err != nil {
		return err
	}
	c.ExcludeModules, err = modules(c.Path, "exclude_modules", raw.Exclude)
	return err
}

func (c *AdapterConfig) readPrompt(b []byte) error {
	var raw struct {
		Virtual        int      `json:"num_virtual_tokens"`
		TokenDim       int      `json:"token_dim"`
		Submodules     int      `json:"num_transformer_submodules"`
		Heads          int      `json:"num_attention_heads"`
		Layers         int      `json:"num_layers"`
		Init           string   `json:"prompt_tuning_init"`
		InitText       *string  `json:"prompt_tuning_init_text"`
		TokenizerName  *string  `json:"tokenizer_name_or_path"`
		EncoderType    string   `json:"encoder_reparameterization_type"`
		EncoderHidden  int      `json:"encoder_hidden_size"`
		EncoderLayers  int      `json:"encoder_num_layers"`
		EncoderDropout float64  `json:"encoder_dropout"`
		Projection     bool     `json:"prefix_projection"`
		ModulesToSave  []string `json:"modules_to_save"`
	}
	if err := decode(c.Path, b, &raw); err != nil {
		return err
	}
	c.NumVirtualTokens, c.TokenDim, c.NumTransformerSubmodules = raw.Virtual, raw.TokenDim, raw.Submodules
	c.NumAttentionHeads, c.NumLayers = raw.Heads, raw.Layers
	c.PromptTuningInit, c.PromptTuningInitText, c.TokenizerName = raw.Init, raw.InitText, raw.TokenizerName
	c.EncoderType, c.EncoderHiddenSize, c.EncoderNumLayers = raw.EncoderType, raw.EncoderHidden, raw.EncoderLayers
	c.EncoderDropout, c.PrefixProjection, c.ModulesToSave = raw.EncoderDropout, raw.Projection, raw.ModulesToSave
	return nil
}

func (c *AdapterConfig) readBottleneck(b []byte) error {
	var raw struct {
		Size        int             `json:"bottleneck_size"`
		Act         string          `json:"non_linearity"`
		Placement   string          `json:"adapter_placement"`
		Scaling     *float64        `json:"scaling"`
		InitWeights string          `json:"init_weights"`
		Layers      json.RawMessage `json:"layers_to_transform"`
	}
	if err := decode(c.Path, b, &raw); err != nil {
		return err
	}
	c.BottleneckSize, c.NonLinearity, c.AdapterPlacement = raw.Size, raw.Act, raw.Placement
	c.Scaling, c.InitWeights = raw.Scaling, raw.InitWeights
	var err error
	c.LayersToTransform, err = layers(c.Path, raw.Layers)
	return err
}

func layers(path string, raw json.RawMessage) (Layers, error) {
	if isNull(raw) {
		return Layers{}, nil
	}
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return Layers{Indices: []int{one}, Single: true}, nil
	}
	var l Layers
	if err := json.Unmarshal(raw, &l.Indices); err != nil {
		return Layers{}, fieldError(path, "layers_to_transform", "expected a layer index or a list of them, got %.80s", raw)
	}
	return l, nil
}

func modules(path, field string, raw json.RawMessage) (Modules, error) {
	if isNull(raw) {
		return Modules{}, nil
	}
	m := Modules{Set: true}
	if json.Unmarshal(raw, &m.Names) == nil {
		return m, nil
	}
	if json.Unmarshal(raw, &m.Regex) == nil {
		m.IsRegex = true
		return m, nil
	}
	return Modules{}, fieldError(path, field, "expected a list of names or a regex string, got %.80s", raw)
}
