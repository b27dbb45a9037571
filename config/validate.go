package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Choices of the enumerated keys (read-only).
var (
	stages      = []string{"sft", "pt", "dpo", "kto", "grpo"}
	laterStages = []string{"rm", "ppo", "orpo", "simpo"}
	schedulers  = []string{"constant", "constant_with_warmup", "linear", "cosine",
		"cosine_with_restarts", "polynomial", "inverse_sqrt", "cosine_with_min_lr"}
	optimizers     = []string{"adamw_torch", "adamw_torch_fused", "adamw_hf", "sgd", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"}
	mixStrategies  = []string{"concat", "interleave_under", "interleave_over"}
	schedulerKwarg = []string{"min_lr", "min_lr_rate", "num_cycles", "lr_end", "power", "timescale"}
)

// Validate checks the keys every training run shares and reports every
// problem found, each naming where the offending key was set. The keys of
// the fine-tuning method are its own to check: method.Validate checks both.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.Where(key), fmt.Sprintf(format, args...)))
	}
	oneOf := func(key, val string, choices []string) {
		if !slices.Contains(choices, val) {
			bad(key, "%q is not one of %s", val, strings.Join(choices, ", "))
		}
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

	for _, r := range c.ReportTo {
		switch r {
		case "none", "tensorboard":
		default:
			bad("report_to", "%q: gotune reports only to local files: tensorboard (event files in output_dir) or none; services such as wandb, mlflow or swanlab need a network connection gotune does not make", r)
		}
	}
	if c.ModelNameOrPath == "" {
		bad("model_name_or_path", "required: a model folder in Hugging Face layout")
	}
	switch {
	case slices.Contains(stages, c.Stage):
	case slices.Contains(laterStages, c.Stage):
		bad("stage", "%q is not supported yet; gotune trains stage sft, pt, dpo, kto or grpo (orpo and simpo are stage dpo with pref_loss orpo or simpo)", c.Stage)
	default:
		bad("stage", "%q is unknown; want sft, pt, dpo, kto or grpo", c.Stage)
	}
	if c.Stage == "grpo" {
		c.validateGRPO(bad)
	}
	c.validatePref(bad)
	// do_train is LLaMA-Factory's switch between a training run and an
	// evaluation/prediction-only run; only the first is a `train` run.
	if _, set := c.src.line["do_train"]; (set || c.src.flags["do_train"]) && !c.DoTrain {
		bad("do_train", "false asks for no training; use `gotune eval` to score a model without training it")
	}
	if len(c.AdditionalTarget) > 0 {
		bad("additional_target", "training extra modules beside the adapter (PEFT modules_to_save) is not supported yet")
	}
	if c.CreateNewAdapter {
		bad("create_new_adapter", "stacking a new adapter on adapter_name_or_path is not supported yet; gotune continues training the given adapter")
	}
	if q := c.QuantizationBit; q != nil {
		if *q != 4 && *q != 8 {
			bad("quantization_bit", "must be 4 or 8, got %d", *q)
		}
		oneOf("quantization_type", c.QuantizationType, []string{"nf4", "fp4"})
		oneOf("quantization_method", c.QuantizationMethod, []string{"bnb"})
	}

	if c.NearDedup && !(c.NearDedupThreshold > 0 && c.NearDedupThreshold <= 1) {
		bad("near_dedup_threshold", "must be in (0, 1], got %v", c.NearDedupThreshold)
	}
	if c.MinChars < 0 || c.MaxChars < 0 || (c.MaxChars > 0 && c.MaxChars < c.MinChars) {
		bad("max_chars", "must be 0 (no bound) or at least min_chars, got min %d max %d", c.MinChars, c.MaxChars)
	}
	if len(c.Dataset) == 0 {
		bad("dataset", "required: one or more dataset names from dataset_info.json, comma-separated")
	}
	if c.CutoffLen <= 0 {
		bad("cutoff_len", "must be positive, got %d", c.CutoffLen)
	}
	if c.MaxSamples != nil && *c.MaxSamples <= 0 {
		bad("max_samples", "must be positive, got %d", *c.MaxSamples)
	}
	oneOf("mix_strategy", c.MixStrategy, mixStrategies)
	if p := c.InterleaveProbs; len(p) > 0 {
		sum := 0.0
		for _, x := range p {
			if !(x >= 0) {
				bad("interleave_probs", "probabilities must be >= 0, got %v", x)
			}
			sum += x
		}
		switch {
		case c.MixStrategy == "concat":
			bad("interleave_probs", "only applies to mix_strategy interleave_under or interleave_over")
		case len(p) != len(c.Dataset):
			bad("interleave_probs", "has %d probabilities for %d datasets", len(p), len(c.Dataset))
		case math.Abs(sum-1) > 1e-6:
			bad("interleave_probs", "must sum to 1, got %v", sum)
		}
	}
	if !(c.ValSize >= 0 && finite(c.ValSize)) || (c.ValSize >= 1 && c.ValSize != math.Trunc(c.ValSize)) {
		bad("val_size", "must be a fraction in [0, 1) or a whole number of samples, got %v", c.ValSize)
	}
	if c.Streaming {
		bad("streaming", "streaming datasets are not supported yet")
	}

	if c.PerDeviceTrainBatchSize < 1 {
		bad("per_device_train_batch_size", "must be at least 1, got %d", c.PerDeviceTrainBatchSize)
	}
	if c.PerDeviceEvalBatchSize < 1 {
		bad("per_device_eval_batch_size", "must be at least 1, got %d", c.PerDeviceEvalBatchSize)
	}
	if c.GradientAccumulationSteps < 1 {
		bad("gradient_accumulation_steps", "must be at least 1, got %d", c.GradientAccumulationSteps)
	}
	if !(c.LearningRate > 0 && finite(c.LearningRate)) {
		bad("learning_rate", "must be a positive number, got %v", c.LearningRate)
	}
	if c.MaxSteps <= 0 && !(c.NumTrainEpochs > 0 && finite(c.NumTrainEpochs)) {
		bad("num_train_epochs", "must be positive when max_steps is not set, got %v", c.NumTrainEpochs)
	}
	oneOf("lr_scheduler_type", c.LRSchedulerType, schedulers)
	for _, k := range slices.Sorted(maps.Keys(c.LRSchedulerKwargs)) {
		v := c.LRSchedulerKwargs[k]
		if !slices.Contains(schedulerKwarg, k) {
			bad("lr_scheduler_kwargs", "unknown argument %q; want one of %s", k, strings.Join(schedulerKwarg, ", "))
		} else if !finite(v) || v < 0 {
			bad("lr_scheduler_kwargs", "%s must be a non-negative number, got %v", k, v)
		}
	}
	if c.LRSchedulerType == "cosine_with_min_lr" {
		_, a := c.LRSchedulerKwargs["min_lr"]
		_, b := c.LRSchedulerKwargs["min_lr_rate"]
		if a == b {
			bad("lr_scheduler_kwargs", "cosine_with_min_lr needs exactly one of min_lr and min_lr_rate")
		}
	}
	if !(c.WarmupRatio >= 0 && c.WarmupRatio <= 1) {
		bad("warmup_ratio", "must be in [0, 1], got %v", c.WarmupRatio)
	}
	if !(c.WarmupSteps >= 0 && finite(c.WarmupSteps)) || (c.WarmupSteps > 1 && c.WarmupSteps != math.Trunc(c.WarmupSteps)) {
		bad("warmup_steps", "must be a whole number of steps or a fraction below 1, got %v", c.WarmupSteps)
	}
	if !(c.WeightDecay >= 0 && finite(c.WeightDecay)) {
		bad("weight_decay", "must be >= 0, got %v", c.WeightDecay)
	}
	if !(c.MaxGradNorm >= 0 && finite(c.MaxGradNorm)) {
		bad("max_grad_norm", "must be >= 0 (0 disables clipping), got %v", c.MaxGradNorm)
	}
	oneOf("optim", c.Optim, optimizers)
	if !(c.AdamBeta1 >= 0 && c.AdamBeta1 < 1) {
		bad("adam_beta1", "must be in [0, 1), got %v", c.AdamBeta1)
	}
	if !(c.AdamBeta2 >= 0 && c.AdamBeta2 < 1) {
		bad("adam_beta2", "must be in [0, 1), got %v", c.AdamBeta2)
	}
	if !(c.AdamEpsilon >= 0 && finite(c.AdamEpsilon)) {
		bad("adam_epsilon", "must be >= 0, got %v", c.AdamEpsilon)
	}
	if c.BF16 && c.FP16 {
		bad("fp16", "bf16 and fp16 cannot both be on")
	}

	if c.OutputDir == "" {
		bad("output_dir", "required: the folder for checkpoints and logs")
	}
	if c.LoggingSteps <= 0 {
		bad("logging_steps", "must be positive, got %d", c.LoggingSteps)
	}
	oneOf("save_strategy", c.SaveStrategy, []string{"steps", "epoch", "no"})
	if c.SaveStrategy == "steps" && c.SaveSteps <= 0 {
		bad("save_steps", "must be positive, got %d", c.SaveSteps)
	}
	if c.SaveTotalLimit != nil && *c.SaveTotalLimit < 1 {
		bad("save_total_limit", "must be at least 1 (omit it to keep every checkpoint), got %d", *c.SaveTotalLimit)
	}
	oneOf("eval_strategy", c.EvalStrategy, []string{"no", "steps", "epoch"})
	if c.EvalSteps != nil && *c.EvalSteps <= 0 {
		bad("eval_steps", "must be positive, got %d", *c.EvalSteps)
	}
	if c.EvalStrategy != "no" && c.ValSize == 0 && len(c.EvalDataset) == 0 {
		bad("eval_strategy", "%q needs val_size > 0 or an eval_dataset", c.EvalStrategy)
	}
	oneOf("device", c.Device, []string{"auto", "cpu", "cuda", "host"})
	if c.Threads < 0 {
		bad("threads", "must be >= 0 (0: all cores), got %d", c.Threads)
	}
	oneOf("progress", c.Progress, []string{"auto", "bar", "plain", "none"})
	return errors.Join(errs...)
}

// LoRAAlpha is lora_alpha, or LLaMA-Factory's default of twice the rank.
func (c *Config) LoRAAlpha() float64 {
	if c.LoRAAlphaValue != nil {
		return *c.LoRAAlphaValue
	}
	return 2 * float64(c.LoRARank)
}

// PackingEnabled resolves packing: unset means on for pre-training only;
// neat_packing asks for it too. gotune's packed rows never attend across
// samples, which is what neat_packing adds to LLaMA-Factory's packing.
func (c *Config) PackingEnabled() bool {
	if c.NeatPacking {
		return true
	}
	if c.Packing != nil {
		return *c.Packing
	}
	return c.Stage == "pt"
}

// AutoCheckpointTokens is the micro-batch size (batch × cutoff_len) from
// which gradient checkpointing is on unless the config says otherwise:
// beyond it, stored activations outgrow the weights of small models.
const AutoCheckpointTokens = 4096

// UseGradientCheckpointing reports whether to recompute each block's
// activations in the backward pass: as gradient_checkpointing says, or, when
// it is unset, for micro-batches of AutoCheckpointTokens tokens and more.
func (c *Config) UseGradientCheckpointing() bool {
	switch {
	case c.DisableGradCheckpointing:
		return false
	case c.GradientCheckpointing != nil:
		return *c.GradientCheckpointing
	}
	rows := max(c.PerDeviceTrainBatchSize, 1)
	if c.IsPreference() {
		rows *= 2 // both answers of a pair (KTO: answer and KL row) in one micro-batch
	}
	return rows*c.CutoffLen >= AutoCheckpointTokens
}

// EvalEvery is the evaluation interval in steps: eval_steps, defaulting to
// logging_steps as in transformers.
func (c *Config) EvalEvery() int {
	if c.EvalSteps != nil {
		return *c.EvalSteps
	}
	return c.LoggingSteps
}

// Steps computes, as the transformers Trainer does on one device, the
// optimizer steps per epoch and in total for numSamples training examples
// (after packing): batches per epoch are ceil(samples/batch size), updates
// per epoch floor(batches/accumulation) but at least 1, and the total
// max_steps if set, else ceil(epochs × updates per epoch).
func (c *Config) Steps(numSamples int) (perEpoch, total int, err error) {
	if numSamples <= 0 {
		return 0, 0, fmt.Errorf("no training samples: check dataset, max_samples and cutoff_len")
	}
	bs, ga := max(c.PerDeviceTrainBatchSize, 1), max(c.GradientAccumulationSteps, 1)
	batches := (numSamples + bs - 1) / bs
	perEpoch = max(batches/ga, 1)
	if c.MaxSteps > 0 {
		return perEpoch, c.MaxSteps, nil
	}
	return perEpoch, int(math.Ceil(c.NumTrainEpochs * float64(perEpoch))), nil
}

// Warmup is the number of warmup steps for a run of total steps:
// warmup_steps when >= 1, a fraction of total when below 1 (transformers 5),
// else ceil(total × warmup_ratio).
func (c *Config) Warmup(total int) int {
	switch {
	case c.WarmupSteps >= 1:
		return int(c.WarmupSteps)
	case c.WarmupSteps > 0:
		return int(math.Ceil(float64(total) * c.WarmupSteps))
	}
	return int(math.Ceil(float64(total) * c.WarmupRatio))
}

// Source is the file the configuration was read from, "" for none.
func (c *Config) Source() string { return c.src.file }

// YAML renders the effective configuration (defaults, file and flags
// merged) in the same format Load reads, for saving beside a run.
func (c *Config) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// ReportsTo tells whether metrics go to the named sink (report_to).
func (c *Config) ReportsTo(name string) bool { return slices.Contains(c.ReportTo, name) }
