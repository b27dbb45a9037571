package hfconfig

import (
	"errors"
	"io/fs"
	"reflect"
	"testing"
)

func readAdapter(t *testing.T, cfg string) (*AdapterConfig, error) {
	t.Helper()
	return ReadAdapterConfig(folder(t, map[string]string{"adapter_config.json": cfg}))
}

func TestAdapterConfigLoRA(t *testing.T) {
	c, err := readAdapter(t, `{"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "m",
		"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
		"use_rslora": true, "use_dora": true, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"v_proj": 2.5},
		"fan_in_fan_out": true, "bias": "all", "lora_bias": true, "modules_to_save": ["lm_head"],
		"layers_to_transform": [0, 2], "init_lora_weights": "gaussian", "megatron_config": null}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &AdapterConfig{Path: c.Path, PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModel: "m",
		R: 8, LoRAAlpha: 16, LoRADropout: 0.05, TargetModules: Modules{Names: []string{"q_proj", "v_proj"}, Set: true},
		UseRSLoRA: true, UseDoRA: true, RankPattern: map[string]int{"q_proj": 4}, AlphaPattern: map[string]float64{"v_proj": 2.5},
		FanInFanOut: true, Bias: "all", LoRABias: true, ModulesToSave: []string{"lm_head"},
		LayersToTransform: Layers{Indices: []int{0, 2}}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestAdapterConfigForms(t *testing.T) {
	for _, c := range []struct {
		name, cfg string
		targets   Modules
		layers    Layers
	}{
		{"targets list", `{"peft_type": "LORA", "target_modules": ["q_proj"]}`, Modules{Names: []string{"q_proj"}, Set: true}, Layers{}},
		{"targets regex", `{"peft_type": "LORA", "target_modules": ".*proj"}`, Modules{Regex: ".*proj", IsRegex: true, Set: true}, Layers{}},
		{"targets null", `{"peft_type": "LORA", "target_modules": null}`, Modules{}, Layers{}},
		{"targets absent", `{"peft_type": "LORA"}`, Modules{}, Layers{}},
		{"targets empty list", `{"peft_type": "LORA", "target_modules": []}`, Modules{Names: []string{}, Set: true}, Layers{}},
		{"one layer", `{"peft_type": "LORA", "layers_to_transform": 3}`, Modules{}, Layers{Indices: []int{3}, Single: true}},
		{"layer list", `{"peft_type": "LORA", "layers_to_transform": [1, 3]}`, Modules{}, Layers{Indices: []int{1, 3}}},
		{"layers null", `{"peft_type": "LORA", "layers_to_transform": null}`, Modules{}, Layers{}},
		{"bottleneck layer", `{"peft_type": "BOTTLENECK", "layers_to_transform": 1}`, Modules{}, Layers{Indices: []int{1}, Single: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := readAdapter(t, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.TargetModules, c.targets) || !reflect.DeepEqual(a.LayersToTransform, c.layers) {
				t.Errorf("targets %+v layers %+v", a.TargetModules, a.LayersToTransform)
			}
		})
	}
}

func TestAdapterConfigMethods(t *testing.T) {
	yes := true
	text, tok, scaling := "Hello", "gpt2", 2.0
	for _, c := range []struct {
		name, cfg string
		want      AdapterConfig
	}{
		{"IA3", `{"peft_type": "IA3", "target_modules": ["k_proj", "down_proj"], "feedforward_modules": "down_proj",
			"exclude_modules": ["x"], "init_ia3_weights": true, "fan_in_fan_out": false, "modules_to_save": null}`,
			AdapterConfig{PeftType: "IA3", TargetModules: Modules{Names: []string{"k_proj", "down_proj"}, Set: true},
				FeedforwardModules: Modules{Regex: "down_proj", IsRegex: true, Set: true},
				ExcludeModules:     Modules{Names: []string{"x"}, Set: true}, InitIA3Weights: &yes}},
		{"prompt tuning", `{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 20, "token_dim": 576, "num_transformer_submodules": 1,
			"num_attention_heads": 9, "num_layers": 30, "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Hello",
			"tokenizer_name_or_path": "gpt2"}`,
			AdapterConfig{PeftType: "PROMPT_TUNING", NumVirtualTokens: 20, TokenDim: 576, NumTransformerSubmodules: 1,
				NumAttentionHeads: 9, NumLayers: 30, PromptTuningInit: "TEXT", PromptTuningInitText: &text, TokenizerName: &tok}},
		{"P-tuning", `{"peft_type": "P_TUNING", "num_virtual_tokens": 4, "encoder_reparameterization_type": "LSTM",
			"encoder_hidden_size": 32, "encoder_num_layers": 2, "encoder_dropout": 0.1}`,
			AdapterConfig{PeftType: "P_TUNING", NumVirtualTokens: 4, EncoderType: "LSTM", EncoderHiddenSize: 32,
				EncoderNumLayers: 2, EncoderDropout: 0.1}},
		{"prefix", `{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "prefix_projection": true, "encoder_hidden_size": 64}`,
			AdapterConfig{PeftType: "PREFIX_TUNING", NumVirtualTokens: 4, PrefixProjection: true, EncoderHiddenSize: 64}},
		{"bottleneck", `{"peft_type": "BOTTLENECK", "bottleneck_size": 16, "non_linearity": "relu", "adapter_placement": "ffn",
			"scaling": 2, "init_weights": "lora", "layers_to_transform": [0]}`,
			AdapterConfig{PeftType: "BOTTLENECK", BottleneckSize: 16, NonLinearity: "relu", AdapterPlacement: "ffn",
				Scaling: &scaling, InitWeights: "lora", LayersToTransform: Layers{Indices: []int{0}}}},
		// Another method's fields are not decoded: OFT's init_weights is
		// a bool, which the bottleneck reader would refuse.
		{"other method", `{"peft_type": "OFT", "init_weights": true, "r": "x", "base_model_name_or_path": "b"}`,
			AdapterConfig{PeftType: "OFT", BaseModel: "b"}},
		{"no peft_type", `{"r": 8}`, AdapterConfig{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := readAdapter(t, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.want.Path = a.Path
			if !reflect.DeepEqual(*a, c.want) {
				t.Errorf("got  %+v\nwant %+v", *a, c.want)
			}
		})
	}
}

func TestAdapterConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, cfg, field string }{
		{"peft_type number", `{"peft_type": 1}`, "field peft_type"},
		{"r string", `{"peft_type": "LORA", "r": "8"}`, "field r"},
		{"r fraction", `{"peft_type": "LORA", "r": 8.5}`, "field r"},
		{"alpha string", `{"peft_type": "LORA", "lora_alpha": "16"}`, "field lora_alpha"},
		{"targets number", `{"peft_type": "LORA", "target_modules": 3}`, "field target_modules"},
		{"targets mixed list", `{"peft_type": "LORA", "target_modules": ["q", 1]}`, "field target_modules"},
		{"layers string", `{"peft_type": "LORA", "layers_to_transform": "0"}`, "field layers_to_transform"},
		{"rank_pattern list", `{"peft_type": "LORA", "rank_pattern": [1]}`, "field rank_pattern"},
		{"modules_to_save string", `{"peft_type": "LORA", "modules_to_save": "lm_head"}`, "field modules_to_save"},
		{"feedforward number", `{"peft_type": "IA3", "feedforward_modules": 1}`, "field feedforward_modules"},
		{"exclude object", `{"peft_type": "IA3", "exclude_modules": {}}`, "field exclude_modules"},
		{"virtual tokens string", `{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": "20"}`, "field num_virtual_tokens"},
		{"init text number", `{"peft_type": "PROMPT_TUNING", "prompt_tuning_init_text": 1}`, "field prompt_tuning_init_text"},
		{"bottleneck init bool", `{"peft_type": "BOTTLENECK", "init_weights": true}`, "field init_weights"},
		{"scaling string", `{"peft_type": "BOTTLENECK", "scaling": "2"}`, "field scaling"},
		{"not JSON", `{`, "not valid JSON"},
		{"list", `[]`, "expected an object"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAdapter(t, c.cfg)
			wantFieldError(t, err, "adapter_config.json", c.field)
		})
	}
	_, err := ReadAdapterConfig(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want one wrapping fs.ErrNotExist", err)
	}
	wantFieldError(t, err, "adapter_config.json", "")
}
