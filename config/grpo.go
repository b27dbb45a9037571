package config

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// GRPO holds the settings of stage grpo, named and defaulted as TRL's
// GRPOConfig so its users' values carry over. A group of num_generations
// completions is sampled for each prompt; per_device_train_batch_size ×
// gradient_accumulation_steps completions make one optimizer step (TRL's
// generation batch with steps_per_generation = gradient_accumulation_steps).
type GRPO struct {
	NumGenerations      int      `yaml:"num_generations"`
	MaxCompletionLength int      `yaml:"max_completion_length"`
	Temperature         float64  `yaml:"temperature"`
	TopP                float64  `yaml:"top_p"`
	TopK                int      `yaml:"top_k"` // 0: no limit
	Beta                float64  `yaml:"beta"`  // KL weight; 0 needs no reference policy
	Epsilon             float64  `yaml:"epsilon"`
	EpsilonHigh         *float64 `yaml:"epsilon_high"` // nil: epsilon
	NumIterations       int      `yaml:"num_iterations"`
	LossType            string   `yaml:"loss_type"`     // grpo, bnpo, dr_grpo or dapo
	ScaleRewards        string   `yaml:"scale_rewards"` // group, batch, none (true/false)
	// MaskTruncatedCompletions leaves completions cut at
	// max_completion_length out of the loss (they still count in the
	// rewards and advantages), as DAPO recommends.
	MaskTruncatedCompletions bool `yaml:"mask_truncated_completions"`
	// RewardFuncs are the rewards, declared in the YAML (see RewardFunc);
	// RewardWeights weigh them in the sum (nil: all 1).
	RewardFuncs   RewardFuncs `yaml:"reward_funcs"`
	RewardWeights []float64   `yaml:"reward_weights"`
	// LogCompletions (gotune) writes every sampled completion with its
	// rewards to completions.jsonl in output_dir.
	LogCompletions bool `yaml:"log_completions"`
}

// GRPODefaults are TRL's GRPOConfig defaults.
func GRPODefaults() GRPO {
	return GRPO{NumGenerations: 8, MaxCompletionLength: 512, Temperature: 1, TopP: 1, Epsilon: 0.2,
		NumIterations: 1, LossType: "dapo", ScaleRewards: "group"}
}

// RewardFunc declares one reward. Type chooses what it does:
//
//   - match: 1 when the answer extracted from the completion (extract:
//     last_number, boxed, regex with pattern's first group, json with
//     field, or text) equals the dataset column named by column; numbers
//     compare as numbers.
//   - regex (format): 1 when pattern matches the completion.
//   - tool_call: 1 when every tool call in the completion parses, names a
//     tool declared in the tools column (or tools), and its arguments match
//     that tool's JSON schema.
//   - length: DAPO's soft overlong penalty: 0 up to max_tokens − soft_cache
//     completion tokens, falling linearly to −1 at max_tokens and beyond.
//   - command: runs command once per batch with one JSON line per sample on
//     stdin ({"prompt", "completion", and the dataset columns}); it must
//     print one number per line.
//   - http: POSTs the same JSON lines to url; the reply is a JSON array of
//     numbers or one number per line.
type RewardFunc struct {
	Name      string   `yaml:"name"`
	Type      string   `yaml:"type"`
	Extract   string   `yaml:"extract"`
	Pattern   string   `yaml:"pattern"`
	Field     string   `yaml:"field"`
	Column    string   `yaml:"column"`
	Tools     string   `yaml:"tools"` // JSON array of tool definitions, instead of a column
	MaxTokens int      `yaml:"max_tokens"`
	SoftCache int      `yaml:"soft_cache"`
	Command   []string `yaml:"command"`
	URL       string   `yaml:"url"`
	Timeout   float64  `yaml:"timeout"` // seconds; 0: 60
	Line      int      `yaml:"-"`       // where it was declared, for messages
}

// RewardKinds are the values of a reward's type.
var RewardKinds = []string{"match", "regex", "tool_call", "length", "command", "http"}

// RewardFuncs is the list under reward_funcs.
type RewardFuncs []RewardFunc

// UnmarshalYAML reads a list of reward declarations, refusing unknown keys
// by name and line (a misspelt key would otherwise be a silent default). A
// command-line value is the same list in YAML flow form.
func (r *RewardFuncs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var inner yaml.Node
		if err := yaml.Unmarshal([]byte(n.Value), &inner); err != nil || len(inner.Content) == 0 {
			return fmt.Errorf("expected a list of reward declarations, got %q", n.Value)
		}
		n = inner.Content[0]
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("expected a list of reward declarations (- type: match …), got %s", kindName(n))
	}
	known := map[string]bool{}
	for _, k := range []string{"name", "type", "extract", "pattern", "field", "column", "tools", "max_tokens", "soft_cache", "command", "url", "timeout"} {
		known[k] = true
	}
	out := make(RewardFuncs, 0, len(n.Content))
	for i, it := range n.Content {
		if it.Kind != yaml.MappingNode {
			return fmt.Errorf("reward %d (line %d): expected a mapping such as {type: match, extract: last_number, column: answer}, got %s", i+1, it.Line, kindName(it))
		}
		for j := 0; j+1 < len(it.Content); j += 2 {
			if k := it.Content[j]; !known[k.Value] {
				return fmt.Errorf("reward %d (line %d): unknown key %q", i+1, k.Line, k.Value)
			}
		}
		var f RewardFunc
		if err := it.Decode(&f); err != nil {
			return fmt.Errorf("reward %d (line %d): %w", i+1, it.Line, err)
		}
		f.Line = it.Line
		out = append(out, f)
	}
	*r = out
	return nil
}

// RewardName is the name a reward is logged under: its name, or its type
// and position.
func (c *Config) RewardName(i int) string {
	f := c.RewardFuncs[i]
	if f.Name != "" {
		return f.Name
	}
	return fmt.Sprintf("%s_%d", f.Type, i)
}

// EpsHigh is epsilon_high, or epsilon when unset.
func (c *Config) EpsHigh() float64 {
	if c.EpsilonHigh != nil {
		return *c.EpsilonHigh
	}
	return c.Epsilon
}

// validateGRPO checks the grpo settings; bad records a problem at a key.
func (c *Config) validateGRPO(bad func(key, format string, args ...any)) {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if c.NumGenerations < 2 {
		bad("num_generations", "must be at least 2: advantages compare completions of the same prompt, got %d", c.NumGenerations)
	}
	if gb := max(c.PerDeviceTrainBatchSize, 1) * max(c.GradientAccumulationSteps, 1); c.NumGenerations >= 2 && gb%c.NumGenerations != 0 {
		bad("num_generations", "%d does not divide the completions of one step, per_device_train_batch_size × gradient_accumulation_steps = %d", c.NumGenerations, gb)
	}
	if c.MaxCompletionLength <= 0 {
		bad("max_completion_length", "must be positive, got %d", c.MaxCompletionLength)
	}
	if !(c.Temperature > 0 && finite(c.Temperature)) {
		bad("temperature", "must be positive (GRPO samples; the loss uses logits/temperature), got %v", c.Temperature)
	}
	if !(c.TopP > 0 && c.TopP <= 1) {
		bad("top_p", "must be in (0, 1], got %v", c.TopP)
	}
	if c.TopK < 0 {
		bad("top_k", "must be 0 (no limit) or positive, got %d", c.TopK)
	}
	if !(c.Beta >= 0 && finite(c.Beta)) {
		bad("beta", "must be ≥ 0, got %v", c.Beta)
	}
	if !(c.Epsilon >= 0 && c.Epsilon < 1) {
		bad("epsilon", "must be in [0, 1), got %v", c.Epsilon)
	}
	if e := c.EpsilonHigh; e != nil && !(*e >= 0 && finite(*e)) {
		bad("epsilon_high", "must be ≥ 0, got %v", *e)
	}
	if c.NumIterations < 1 {
		bad("num_iterations", "must be at least 1, got %d", c.NumIterations)
	}
	if !slices.Contains([]string{"grpo", "bnpo", "dr_grpo", "dapo"}, c.LossType) {
		bad("loss_type", "%q is not one of grpo, bnpo, dr_grpo, dapo", c.LossType)
	}
	if !slices.Contains([]string{"group", "batch", "none", "true", "false"}, strings.ToLower(c.ScaleRewards)) {
		bad("scale_rewards", "%q is not one of group, batch, none, true, false", c.ScaleRewards)
	}
	if len(c.RewardFuncs) == 0 {
		bad("reward_funcs", "required: at least one reward, e.g. [{type: match, extract: last_number, column: answer}]")
	}
	if len(c.RewardWeights) > 0 && len(c.RewardWeights) != len(c.RewardFuncs) {
		bad("reward_weights", "%d weights for %d reward_funcs", len(c.RewardWeights), len(c.RewardFuncs))
	}
	for _, w := range c.RewardWeights {
		if !finite(w) {
			bad("reward_weights", "must be finite, got %v", w)
		}
	}
	names := map[string]bool{}
	for i, f := range c.RewardFuncs {
		at := func(format string, args ...any) {
			bad("reward_funcs", "reward %d (line %d): %s", i+1, f.Line, fmt.Sprintf(format, args...))
		}
		if n := c.RewardName(i); names[n] {
			at("name %q is used twice", n)
		} else {
			names[n] = true
		}
		switch f.Type {
		case "match":
			if f.Column == "" {
				at("type match needs column: the dataset column holding the expected answer")
			}
			switch f.Extract {
			case "", "last_number", "boxed", "text":
			case "regex":
				if f.Pattern == "" {
					at("extract regex needs pattern with a group around the answer")
				}
			case "json":
				if f.Field == "" {
					at("extract json needs field (a key, or a dotted path)")
				}
			default:
				at("extract %q is not one of last_number, boxed, regex, json, text", f.Extract)
			}
		case "regex":
			if f.Pattern == "" {
				at("type regex needs pattern")
			}
		case "tool_call":
		case "length":
			if f.MaxTokens <= 0 || f.SoftCache < 0 || f.SoftCache > f.MaxTokens {
				at("type length needs max_tokens > 0 and 0 ≤ soft_cache ≤ max_tokens, got %d and %d", f.MaxTokens, f.SoftCache)
			}
		case "command":
			if len(f.Command) == 0 {
				at("type command needs command: [program, args…]")
			}
		case "http":
			if !strings.HasPrefix(f.URL, "http://") && !strings.HasPrefix(f.URL, "https://") {
				at("type http needs url: http://… or https://…, got %q", f.URL)
			}
		default:
			at("type %q is not one of %s", f.Type, strings.Join(RewardKinds, ", "))
		}
		if f.Timeout < 0 || !finite(f.Timeout) {
			at("timeout must be a positive number of seconds, got %v", f.Timeout)
		}
	}
}
