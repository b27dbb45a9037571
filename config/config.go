// Package config reads a training configuration: a YAML file with
// LLaMA-Factory's keys (so its users' files work unchanged), overridden by
// command-line flags, with LLaMA-Factory's and transformers' defaults.
package config

// Config is a training run's configuration. Field tags name the YAML keys;
// optional settings whose absence means something (LLaMA-Factory's None) are
// pointers.
type Config struct {
	// Model.
	ModelNameOrPath   string   `yaml:"model_name_or_path"`
	AdapterNameOrPath []string `yaml:"adapter_name_or_path"` // resume training these adapters
	Stage             string   `yaml:"stage"`                // sft, pt, dpo, kto or grpo; rm and ppo are parsed and rejected
	DoTrain           bool     `yaml:"do_train"`
	DoEval            bool     `yaml:"do_eval"`

	// Fine-tuning method.
	FinetuningType         string   `yaml:"finetuning_type"` // full, freeze or lora
	FreezeTrainableLayers  int      `yaml:"freeze_trainable_layers"`
	FreezeTrainableModules []string `yaml:"freeze_trainable_modules"`
	FreezeExtraModules     []string `yaml:"freeze_extra_modules"`
	LoRARank               int      `yaml:"lora_rank"`
	LoRAAlphaValue         *float64 `yaml:"lora_alpha"` // nil: 2·lora_rank; see LoRAAlpha
	LoRADropout            float64  `yaml:"lora_dropout"`
	LoRATarget             []string `yaml:"lora_target"` // "all" or module names
	AdditionalTarget       []string `yaml:"additional_target"`
	UseRSLoRA              bool     `yaml:"use_rslora"`
	UseDoRA                bool     `yaml:"use_dora"`
	LoRAPlusLRRatio        *float64 `yaml:"loraplus_lr_ratio"`
	LoRAPlusLREmbedding    float64  `yaml:"loraplus_lr_embedding"`
	CreateNewAdapter       bool     `yaml:"create_new_adapter"`

	// Prompt learning, IA3 and bottleneck adapters (gotune's finetuning_type
	// values prompt_tuning, p_tuning, prefix_tuning, ia3, adapter; names and
	// meanings as PEFT's configs).
	NumVirtualTokens       int      `yaml:"num_virtual_tokens"`
	PromptTuningInit       string   `yaml:"prompt_tuning_init"` // RANDOM, TEXT or SAMPLE_VOCAB
	PromptTuningInitText   string   `yaml:"prompt_tuning_init_text"`
	EncoderReparameterType string   `yaml:"encoder_reparameterization_type"` // MLP or LSTM (p_tuning)
	EncoderHiddenSize      int      `yaml:"encoder_hidden_size"`             // 0: the model's hidden size
	EncoderNumLayers       int      `yaml:"encoder_num_layers"`              // LSTM layers (p_tuning)
	PrefixProjection       bool     `yaml:"prefix_projection"`
	IA3Target              []string `yaml:"ia3_target"`         // default k_proj, v_proj, down_proj
	IA3Feedforward         []string `yaml:"ia3_feedforward"`    // default down_proj
	AdapterSize            int      `yaml:"adapter_size"`       // bottleneck width
	AdapterPlacement       string   `yaml:"adapter_placement"`  // houlsby, pfeiffer or attention
	AdapterActivation      string   `yaml:"adapter_activation"` // relu, gelu, gelu_new, silu, tanh

	// Quantization (QLoRA).
	QuantizationBit    *int   `yaml:"quantization_bit"`
	QuantizationMethod string `yaml:"quantization_method"`
	QuantizationType   string `yaml:"quantization_type"` // nf4 or fp4
	DoubleQuantization bool   `yaml:"double_quantization"`

	// Data.
	Dataset         []string  `yaml:"dataset"`
	EvalDataset     []string  `yaml:"eval_dataset"`
	DatasetDir      string    `yaml:"dataset_dir"`
	Template        string    `yaml:"template"`
	CutoffLen       int       `yaml:"cutoff_len"`
	MaxSamples      *int      `yaml:"max_samples"`
	MixStrategy     string    `yaml:"mix_strategy"` // concat, interleave_under, interleave_over
	InterleaveProbs []float64 `yaml:"interleave_probs"`
	ValSize         float64   `yaml:"val_size"` // < 1: fraction, otherwise a count
	Packing         *bool     `yaml:"packing"`  // nil: on for stage pt, off otherwise
	NeatPacking     bool      `yaml:"neat_packing"`
	TrainOnPrompt   bool      `yaml:"train_on_prompt"`
	MaskHistory     bool      `yaml:"mask_history"`
	EnableThinking  bool      `yaml:"enable_thinking"`
	TokenizedPath   string    `yaml:"tokenized_path"`
	// SkipInvalidJSON (gotune) trains without dataset records that are not
	// well-formed JSON instead of stopping at the first one; the count is
	// printed and written to the run folder.
	SkipInvalidJSON bool `yaml:"skip_invalid_json"`
	// Cleaning (gotune): exact and near-duplicate removal, placeholder
	// answers, length bounds and a script/language filter; what each
	// removed is reported by `gotune data inspect`.
	Dedup              bool     `yaml:"dedup"`
	NearDedup          bool     `yaml:"near_dedup"`
	NearDedupThreshold float64  `yaml:"near_dedup_threshold"`
	DropPlaceholders   bool     `yaml:"drop_placeholders"`
	MinChars           int      `yaml:"min_chars"`
	MaxChars           int      `yaml:"max_chars"`
	Languages          []string `yaml:"languages"` // scripts or language codes to keep (en, zh, …); empty: all
	Streaming          bool     `yaml:"streaming"`

	// Optimisation.
	PerDeviceTrainBatchSize   int                `yaml:"per_device_train_batch_size"`
	PerDeviceEvalBatchSize    int                `yaml:"per_device_eval_batch_size"`
	GradientAccumulationSteps int                `yaml:"gradient_accumulation_steps"`
	LearningRate              float64            `yaml:"learning_rate"`
	NumTrainEpochs            float64            `yaml:"num_train_epochs"`
	MaxSteps                  int                `yaml:"max_steps"` // > 0 overrides num_train_epochs
	LRSchedulerType           string             `yaml:"lr_scheduler_type"`
	LRSchedulerKwargs         map[string]float64 `yaml:"lr_scheduler_kwargs"` // e.g. min_lr, min_lr_rate, num_cycles
	WarmupRatio               float64            `yaml:"warmup_ratio"`
	WarmupSteps               float64            `yaml:"warmup_steps"` // >= 1: steps; in (0,1): fraction (transformers 5)
	WeightDecay               float64            `yaml:"weight_decay"`
	MaxGradNorm               float64            `yaml:"max_grad_norm"` // 0: no clipping
	Optim                     string             `yaml:"optim"`         // adamw_torch, sgd or adamw_8bit (device block only)
	AdamBeta1                 float64            `yaml:"adam_beta1"`
	AdamBeta2                 float64            `yaml:"adam_beta2"`
	AdamEpsilon               float64            `yaml:"adam_epsilon"`
	Seed                      int                `yaml:"seed"`
	BF16                      bool               `yaml:"bf16"`
	FP16                      bool               `yaml:"fp16"`
	GradientCheckpointing     *bool              `yaml:"gradient_checkpointing"` // nil: on for long micro-batches
	DisableGradCheckpointing  bool               `yaml:"disable_gradient_checkpointing"`

	// Output, logging, checkpoints.
	OutputDir            string `yaml:"output_dir"`
	OverwriteOutputDir   bool   `yaml:"overwrite_output_dir"`
	LoggingSteps         int    `yaml:"logging_steps"`
	SaveStrategy         string `yaml:"save_strategy"` // steps, epoch or no
	SaveSteps            int    `yaml:"save_steps"`
	SaveTotalLimit       *int   `yaml:"save_total_limit"`
	EvalStrategy         string `yaml:"eval_strategy"` // no, steps or epoch
	EvalSteps            *int   `yaml:"eval_steps"`    // nil: logging_steps
	ResumeFromCheckpoint string `yaml:"resume_from_checkpoint"`

	// Export (LLaMA-Factory's export YAML, read by `gotune export`).
	ExportDir  string `yaml:"export_dir"`
	ExportSize int    `yaml:"export_size"` // largest safetensors shard, GB

	// gotune extras.
	Device   string `yaml:"device"`   // auto, cpu, cuda or host (the compute-seam block on the CPU)
	Threads  int    `yaml:"threads"`  // CPU worker threads; 0: all cores
	Progress string `yaml:"progress"` // auto, bar, plain or none
	// ReportTo names where metrics go besides trainer_log.jsonl:
	// "tensorboard" (event files in output_dir) or "none".
	ReportTo []string `yaml:"report_to"`

	Pref `yaml:",inline"` // stage dpo and kto (pref.go)
	GRPO `yaml:",inline"` // stage grpo (grpo.go)

	// Warnings collects notes about the input that are not errors: unknown
	// keys and keys gotune accepts but ignores.
	Warnings []string `yaml:"-"`

	src sources
}

// sources remembers where each key was last set, for error messages.
type sources struct {
	file  string         // the YAML file, "" when none was read
	line  map[string]int // key → line in file
	flags map[string]bool
	// unknown lists the file's keys gotune does not know, with their line
	// and a suggestion.
	unknown []string
}

// Default returns the defaults of LLaMA-Factory and transformers.
func Default() *Config {
	return &Config{
		Stage:                     "sft",
		FinetuningType:            "lora",
		FreezeTrainableLayers:     2,
		FreezeTrainableModules:    []string{"all"},
		LoRARank:                  8,
		LoRATarget:                []string{"all"},
		NumVirtualTokens:          20,
		PromptTuningInit:          "RANDOM",
		EncoderReparameterType:    "MLP",
		AdapterSize:               64,
		AdapterPlacement:          "houlsby",
		AdapterActivation:         "relu",
		LoRAPlusLREmbedding:       1e-6,
		QuantizationMethod:        "bnb",
		QuantizationType:          "nf4",
		DoubleQuantization:        true,
		DatasetDir:                "data",
		CutoffLen:                 2048,
		Dedup:                     true,
		NearDedup:                 true,
		NearDedupThreshold:        0.85,
		DropPlaceholders:          true,
		MixStrategy:               "concat",
		EnableThinking:            true,
		PerDeviceTrainBatchSize:   8,
		PerDeviceEvalBatchSize:    8,
		GradientAccumulationSteps: 1,
		LearningRate:              5e-5,
		NumTrainEpochs:            3,
		MaxSteps:                  -1,
		LRSchedulerType:           "linear",
		MaxGradNorm:               1,
		Optim:                     "adamw_torch",
		AdamBeta1:                 0.9,
		AdamBeta2:                 0.999,
		AdamEpsilon:               1e-8,
		Seed:                      42,
		OutputDir:                 "trainer_output",
		LoggingSteps:              500,
		SaveStrategy:              "steps",
		SaveSteps:                 500,
		EvalStrategy:              "no",
		Device:                    "auto",
		Progress:                  "auto",
		Pref:                      defaultPref(),
		GRPO:                      GRPODefaults(),
	}
}

// ignoredKeys are LLaMA-Factory/transformers keys gotune accepts without
// effect (Python runtime, distributed or reporting settings), so a user's
// file loads with a note instead of an unknown-key warning.
var ignoredKeys = []string{
	"trust_remote_code", "flash_attn", "plot_loss", "ddp_timeout",
	"deepspeed", "preprocessing_num_workers", "dataloader_num_workers", "overwrite_cache",
	"logging_dir", "save_only_model", "run_name", "include_num_input_tokens_seen",
	"use_fast_tokenizer", "low_cpu_mem_usage", "torch_compile", "ddp_find_unused_parameters",
	"do_predict", "predict_with_generate", "enable_liger_kernel", "use_unsloth",
	"tf32", "dataloader_pin_memory", "remove_unused_columns", "disable_tqdm",
	"log_level", "push_to_hub", "hub_model_id", "cache_dir", "buffer_size",
	"export_device", "export_legacy_format",
	// Multimodal settings: gotune trains text only and filters media records.
	"image_max_pixels", "image_min_pixels", "video_max_pixels", "video_min_pixels", "video_fps",
	"video_maxlen", "audio_sampling_rate", "freeze_vision_tower", "freeze_multi_modal_projector",
	"freeze_language_model",
	// Settings of the RL stages, which Validate refuses.
	"reward_model", "reward_model_type",
	"ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target", "ppo_whiten_rewards",
}
