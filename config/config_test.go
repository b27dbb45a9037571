package config

import (
	"slices"
	"strings"
	"testing"

	"gotune/optim"
)

func TestLoadLLaMAFactoryFile(t *testing.T) {
	c, err := Load("testdata/llamafactory_lora_sft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"model", c.ModelNameOrPath, "Qwen/Qwen3-0.6B"},
		{"stage", c.Stage, "sft"},
		{"do_train", c.DoTrain, true},
		{"lora_rank", c.LoRARank, 16},
		{"lora_alpha", c.LoRAAlpha(), 32.0},
		{"lora_target trimmed", c.LoRATarget, []string{"q_proj", "v_proj", "o_proj"}},
		{"loraplus", *c.LoRAPlusLRRatio, 16.0},
		{"rslora", c.UseRSLoRA, true},
		{"dataset", c.Dataset, []string{"identity", "alpaca_en_demo"}},
		{"max_samples", *c.MaxSamples, 1000},
		{"lr", c.LearningRate, 1e-4},
		{"epochs", c.NumTrainEpochs, 3.0},
		{"scheduler", c.LRSchedulerType, "cosine"},
		{"warmup_ratio", c.WarmupRatio, 0.1},
		{"bf16", c.BF16, true},
		{"resume null", c.ResumeFromCheckpoint, ""},
		// Defaults for keys the file does not set.
		{"default optim", c.Optim, "adamw_torch"},
		{"default beta2", c.AdamBeta2, 0.999},
		{"default seed", c.Seed, 42},
		{"default max_grad_norm", c.MaxGradNorm, 1.0},
		{"default dataset_dir", c.DatasetDir, "data"},
		{"default lora_dropout", c.LoRADropout, 0.0},
		{"default packing off for sft", c.PackingEnabled(), false},
		{"default save_total_limit", c.SaveTotalLimit == nil, true},
	}
	for _, ck := range checks {
		if !equal(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if len(c.Warnings) != 2 {
		t.Fatalf("warnings %q, want one for unknown keys and one for ignored ones", c.Warnings)
	}
	unknown, ignored := c.Warnings[0], c.Warnings[1]
	for _, want := range []string{"llamafactory_lora_sft.yaml", "lora_droput (line 42; did you mean lora_dropout?)", "mystery_key (line 43)"} {
		if !strings.Contains(unknown, want) {
			t.Errorf("unknown-key warning %q lacks %q", unknown, want)
		}
	}
	for _, want := range []string{"trust_remote_code", "ddp_timeout", "plot_loss"} {
		if !strings.Contains(ignored, want) {
			t.Errorf("ignored-key note %q lacks %q", ignored, want)
		}
	}
}

func equal(a, b any) bool {
	if as, ok := a.([]string); ok {
		bs, _ := b.([]string)
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestLoadMinimalPretrain(t *testing.T) {
	c, err := Load("testdata/minimal_full_pt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Dataset, []string{"c4_demo", "wiki_demo"}) || c.LearningRate != 1e-5 ||
		!c.PackingEnabled() || *c.SaveTotalLimit != 2 || c.LRSchedulerKwargs["min_lr_rate"] != 0.1 || c.Optim != "sgd" {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("unexpected warnings %q", c.Warnings)
	}
}

func TestParseTypeErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"int as word", "model_name_or_path: m\nlora_rank: eight\n", `cfg.yaml:2: lora_rank: expected an integer, got string "eight"`},
		{"fractional int", "save_steps: 10.5\n", `cfg.yaml:1: save_steps: expected an integer, got number "10.5"`},
		{"bool as number", "\n\nbf16: 1.5\n", "cfg.yaml:3: bf16: expected true or false"},
		{"float as bool", "learning_rate: true\n", "cfg.yaml:1: learning_rate: expected a number, got boolean"},
		{"list for string", "template:\n  - a\n", "cfg.yaml:2: template: expected a string, got a list"},
		{"map for list", "dataset: {a: 1}\n", "cfg.yaml:1: dataset: expected a list or comma-separated string of strings, got a mapping"},
		{"bad list item", "interleave_probs: 0.5, x\n", "interleave_probs: item 2: expected a number"},
		{"null for int", "cutoff_len: null\n", "cutoff_len: expected an integer, got null"},
		{"not a mapping", "- a\n- b\n", "cfg.yaml:1: expected a mapping"},
		{"duplicate", "seed: 1\nseed: 2\n", `cfg.yaml:2: key "seed" appears again (first at line 1)`},
		{"bad yaml", "a: [\n", "cfg.yaml"},
		{"kwargs not map", "lr_scheduler_kwargs: [1]\n", "lr_scheduler_kwargs: expected a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "cfg.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseLenientScalars(t *testing.T) {
	c, err := Parse([]byte(`
learning_rate: "2e-4"
save_steps: 1e3
logging_steps: "5"
warmup_steps: 0.05
bf16: "yes"
max_samples: ~
lr_scheduler_kwargs: '{"num_cycles": 2}'
lora_alpha: 16
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.LearningRate != 2e-4 || c.SaveSteps != 1000 || c.LoggingSteps != 5 || c.WarmupSteps != 0.05 ||
		!c.BF16 || c.MaxSamples != nil || c.LRSchedulerKwargs["num_cycles"] != 2 || c.LoRAAlpha() != 16 {
		t.Fatalf("parsed %+v", c)
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	c, err := Parse(nil, "empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.LearningRate != d.LearningRate || c.LoRAAlpha() != 16 || c.PerDeviceTrainBatchSize != 8 || c.FinetuningType != "lora" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestApplyFlags(t *testing.T) {
	c, err := Parse([]byte("model_name_or_path: m\ndataset: a\nlearning_rate: 1e-4\nbf16: true\nlora_rank: 8\n"), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = c.ApplyFlags([]string{
		"--learning_rate", "3e-5",
		"--lora-rank=32",
		"--do_train",
		"--bf16", "false",
		"--dataset", "x,y",
		"--max_samples", "none",
		"--packing", "true",
		"--gradient_checkpointing",
		"output_dir=out/run1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.LearningRate != 3e-5 || c.LoRARank != 32 || !c.DoTrain || c.BF16 || !slices.Equal(c.Dataset, []string{"x", "y"}) ||
		c.MaxSamples != nil || !c.PackingEnabled() || !c.UseGradientCheckpointing() || c.OutputDir != "out/run1" {
		t.Fatalf("after flags: %+v", c)
	}

	errs := []struct {
		args []string
		want string
	}{
		{[]string{"--lora_rnak", "4"}, "unknown option --lora_rnak; did you mean lora_rank?"},
		{[]string{"--lora_rank", "four"}, "command line: --lora_rank four: expected an integer"},
		{[]string{"--seed"}, "--seed needs a value"},
		{[]string{"stray"}, `unexpected argument "stray"`},
	}
	for _, e := range errs {
		err := Default().ApplyFlags(e.args)
		if err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("ApplyFlags(%q) = %v, want error containing %q", e.args, err, e.want)
		}
	}
}

func TestValidate(t *testing.T) {
	base := "model_name_or_path: m\ndataset: d\n"
	tests := []struct {
		name  string
		yaml  string
		flags []string
		want  []string // substrings; empty means valid
	}{
		{"valid", base, nil, nil},
		{"ppo rejected", base + "stage: ppo\n", nil, []string{"v.yaml:3: stage: \"ppo\" is not supported yet"}},
		{"dpo", base + "stage: dpo\npref_loss: simpo\nsimpo_gamma: 1.4\npref_beta: 2.5\n", nil, nil},
		{"kto", base + "stage: kto\nkto_undesirable_weight: 1.33\n", nil, nil},
		{"pref_loss", base + "stage: dpo\npref_loss: dpo\n", nil, []string{`v.yaml:4: pref_loss: "dpo" is not one of sigmoid, hinge`}},
		{"pref_beta", base + "stage: dpo\npref_beta: 0\n", nil, []string{"v.yaml:4: pref_beta: must be positive"}},
		{"smoothing needs sigmoid", base + "stage: dpo\npref_loss: ipo\ndpo_label_smoothing: 0.1\n", nil, []string{"dpo_label_smoothing: applies to pref_loss sigmoid only"}},
		{"smoothing range", base + "stage: dpo\ndpo_label_smoothing: 0.7\n", nil, []string{"dpo_label_smoothing: must be in [0, 0.5]"}},
		{"kto both names", base + "stage: kto\nkto_rejected_weight: 1\nkto_undesirable_weight: 2\n", nil, []string{"kto_undesirable_weight: set together with kto_rejected_weight"}},
		{"kto negative weight", base + "stage: kto\nkto_chosen_weight: -1\n", nil, []string{"kto_chosen_weight: must be 0 or more"}},
		{"dpo packing", base + "stage: dpo\npacking: true\n", nil, []string{"packing: stage dpo scores whole answers"}},
		{"ref_model", base + "stage: dpo\nref_model: other\n", nil, []string{"v.yaml:4: ref_model: a separate reference model is not supported"}},
		{"bco", base + "stage: dpo\npref_bco_weight: 0.5\n", nil, []string{"pref_bco_weight: BCO mixing is not supported"}},
		{"unknown stage", base + "stage: foo\n", nil, []string{"stage: \"foo\" is unknown"}},
		{"missing model", "dataset: d\n", nil, []string{"model_name_or_path: required"}},
		{"missing dataset", "model_name_or_path: m\n", nil, []string{"dataset: required"}},
		{"many at once", base + "learning_rate: -1\nval_size: 2.5\n", nil, []string{"v.yaml:3: learning_rate", "v.yaml:4: val_size"}},
		{"flag named", base, []string{"--per_device_train_batch_size", "0"}, []string{"command line: --per_device_train_batch_size: must be at least 1"}},
		{"bad bits", base + "quantization_bit: 3\n", nil, []string{"must be 4 or 8"}},
		{"probs count", base + "mix_strategy: interleave_under\ninterleave_probs: 0.5,0.5\n", nil, []string{"has 2 probabilities for 1 datasets"}},
		{"probs with concat", "model_name_or_path: m\ndataset: a,b\ninterleave_probs: 0.5,0.5\n", nil, []string{"only applies to mix_strategy"}},
		{"scheduler", base + "lr_scheduler_type: cosine_annealing\n", nil, []string{`"cosine_annealing" is not one of`}},
		{"min lr needs kwarg", base + "lr_scheduler_type: cosine_with_min_lr\n", nil, []string{"exactly one of min_lr and min_lr_rate"}},
		{"bad kwarg", base + "lr_scheduler_kwargs: {eta: 1}\n", nil, []string{`unknown argument "eta"`}},
		{"optim", base + "optim: adafactor\n", nil, []string{"optim: \"adafactor\" is not one of"}},
		{"epochs", base + "num_train_epochs: 0\n", nil, []string{"num_train_epochs: must be positive"}},
		{"epochs ok with max_steps", base + "num_train_epochs: 0\nmax_steps: 10\n", nil, nil},
		{"eval without data", base + "eval_strategy: steps\n", nil, []string{"needs val_size > 0 or an eval_dataset"}},
		{"both precisions", base + "bf16: true\nfp16: true\n", nil, []string{"bf16 and fp16"}},
		{"nan lr", base + "learning_rate: .nan\n", nil, []string{"learning_rate: must be a positive number, got NaN"}},
		{"val size", base + "val_size: 2.5\n", nil, []string{"val_size"}},
		{"warmup ratio", base + "warmup_ratio: 1.5\n", nil, []string{"warmup_ratio"}},
		{"save limit", base + "save_total_limit: 0\n", nil, []string{"save_total_limit: must be at least 1"}},
		{"streaming", base + "streaming: true\n", nil, []string{"streaming datasets are not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "v.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ApplyFlags(tt.flags); err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSteps(t *testing.T) {
	tests := []struct {
		name                    string
		samples, bs, ga, max    int
		epochs                  float64
		wantPerEpoch, wantTotal int
	}{
		{"exact", 64, 8, 2, -1, 3, 4, 12},
		{"ragged last batch", 65, 8, 2, -1, 3, 4, 12}, // 9 batches → 4 updates (floor)
		{"fractional epochs", 100, 4, 1, -1, 1.5, 25, 38},
		{"tiny dataset", 3, 8, 4, -1, 2, 1, 2}, // at least one update per epoch
		{"max_steps wins", 1000, 8, 1, 7, 3, 125, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.PerDeviceTrainBatchSize, c.GradientAccumulationSteps, c.MaxSteps, c.NumTrainEpochs = tt.bs, tt.ga, tt.max, tt.epochs
			pe, total, err := c.Steps(tt.samples)
			if err != nil || pe != tt.wantPerEpoch || total != tt.wantTotal {
				t.Fatalf("Steps(%d) = %d, %d, %v; want %d, %d", tt.samples, pe, total, err, tt.wantPerEpoch, tt.wantTotal)
			}
		})
	}
	if _, _, err := Default().Steps(0); err == nil {
		t.Error("Steps(0) succeeded")
	}
}

func TestWarmup(t *testing.T) {
	tests := []struct {
		ratio, steps float64
		total, want  int
	}{
		{0, 0, 100, 0},
		{0.1, 0, 95, 10}, // ceil(9.5)
		{0.1, 20, 100, 20},
		{0, 0.03, 1000, 30}, // transformers 5: warmup_steps below 1 is a ratio
	}
	for _, tt := range tests {
		c := Default()
		c.WarmupRatio, c.WarmupSteps = tt.ratio, tt.steps
		if got := c.Warmup(tt.total); got != tt.want {
			t.Errorf("ratio %v steps %v total %d: warmup %d, want %d", tt.ratio, tt.steps, tt.total, got, tt.want)
		}
	}
}

func TestKeysCoverBrief(t *testing.T) {
	// Every key of LLaMA-Factory's that gotune promises to read.
	want := strings.Fields(`model_name_or_path stage do_train finetuning_type freeze_trainable_layers
		freeze_trainable_modules lora_rank lora_alpha lora_dropout lora_target use_rslora use_dora
		loraplus_lr_ratio quantization_bit quantization_type dataset dataset_dir template cutoff_len
		max_samples mix_strategy interleave_probs val_size packing train_on_prompt mask_history
		per_device_train_batch_size gradient_accumulation_steps learning_rate num_train_epochs max_steps
		lr_scheduler_type warmup_ratio warmup_steps weight_decay max_grad_norm optim adam_beta1 adam_beta2
		adam_epsilon output_dir logging_steps save_steps save_total_limit eval_steps seed bf16
		gradient_checkpointing resume_from_checkpoint overwrite_output_dir`)
	keys := Keys()
	for _, k := range want {
		if !slices.Contains(keys, k) {
			t.Errorf("key %s not understood", k)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c, err := Load("testdata/llamafactory_lora_sft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyFlags([]string{"--lr_scheduler_kwargs", `{"num_cycles": 1}`, "--packing", "false"}); err != nil {
		t.Fatal(err)
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b, "saved.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(back.Warnings) != 0 {
		t.Errorf("saved config has warnings %q", back.Warnings)
	}
	back.src, back.Warnings = c.src, c.Warnings
	b2, _ := back.YAML()
	if string(b) != string(b2) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", b, b2)
	}
	if !strings.Contains(string(b), "learning_rate: 0.0001\n") || !strings.Contains(string(b), "max_samples: 1000\n") {
		t.Errorf("saved YAML lacks expected keys:\n%s", b)
	}
}

// The names Validate accepts must be ones the optim package can build.
func TestChoicesMatchOptim(t *testing.T) {
	for _, k := range schedulers {
		if _, err := optim.NewSchedule(k, 1, 0, 10); err != nil {
			t.Errorf("scheduler %s: %v", k, err)
		}
	}
	for _, o := range optimizers {
		if _, err := optim.New(o, nil, optim.DefaultConfig()); err != nil {
			t.Errorf("optimizer %s: %v", o, err)
		}
	}
}
