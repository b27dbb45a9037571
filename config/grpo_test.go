package config

import (
	"strings"
	"testing"
)

const grpoBase = `model_name_or_path: m
dataset: d
stage: grpo
per_device_train_batch_size: 8
reward_funcs:
  - name: correct
    type: match
    extract: boxed
    column: answer
  - type: regex
    pattern: '^<think>'
  - type: command
    command: [python3, score.py]
    timeout: 5
`

// The grpo keys read with TRL's defaults, and the reward declarations with
// their fields and lines.
func TestGRPOKeys(t *testing.T) {
	c, err := Parse([]byte(grpoBase+"reward_weights: [1, 0.5, 2]\nepsilon_high: 0.28\nscale_rewards: false\n"), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.NumGenerations != 8 || c.MaxCompletionLength != 512 || c.Beta != 0 || c.Epsilon != 0.2 || c.EpsHigh() != 0.28 ||
		c.NumIterations != 1 || c.LossType != "dapo" || c.ScaleRewards != "false" || c.Temperature != 1 {
		t.Errorf("defaults/values: %+v", c.GRPO)
	}
	f := c.RewardFuncs
	if len(f) != 3 || f[0].Extract != "boxed" || f[0].Column != "answer" || f[1].Pattern != "^<think>" ||
		strings.Join(f[2].Command, " ") != "python3 score.py" || f[2].Timeout != 5 || f[0].Line != 6 {
		t.Errorf("reward_funcs %+v", f)
	}
	if c.RewardName(0) != "correct" || c.RewardName(1) != "regex_1" {
		t.Errorf("names %q %q", c.RewardName(0), c.RewardName(1))
	}
	// The effective configuration round-trips (it is saved beside runs and
	// compared on resume).
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(y, "saved.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if len(c2.RewardFuncs) != 3 || c2.RewardFuncs[2].Timeout != 5 || c2.EpsHigh() != 0.28 {
		t.Errorf("round trip: %+v", c2.GRPO)
	}
	// From the command line, the list in YAML flow form.
	if err := c.Set("reward_funcs", "[{type: length, max_tokens: 100, soft_cache: 20}]"); err != nil {
		t.Fatal(err)
	}
	if len(c.RewardFuncs) != 1 || c.RewardFuncs[0].MaxTokens != 100 {
		t.Errorf("flag: %+v", c.RewardFuncs)
	}
}

func TestGRPOValidate(t *testing.T) {
	for _, tc := range []struct{ extra, want string }{
		{"num_generations: 1\n", "num_generations: must be at least 2"},
		{"num_generations: 3\n", "3 does not divide the completions of one step"},
		{"loss_type: ppo\n", `loss_type: "ppo" is not one of`},
		{"scale_rewards: sometimes\n", "scale_rewards"},
		{"beta: -1\n", "beta: must be ≥ 0"},
		{"epsilon: 1.5\n", "epsilon: must be in [0, 1)"},
		{"temperature: 0\n", "temperature: must be positive"},
		{"top_p: 0\n", "top_p"},
		{"num_iterations: 0\n", "num_iterations"},
		{"reward_weights: [1]\n", "1 weights for 3 reward_funcs"},
	} {
		c, err := Parse([]byte(grpoBase+tc.extra), "g.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.want)
		}
	}
	head := "model_name_or_path: m\ndataset: d\nstage: grpo\nper_device_train_batch_size: 8\n"
	for _, tc := range []struct{ rewards, want string }{
		{"", "reward_funcs: required"},
		{"reward_funcs:\n  - type: match\n", "reward 1 (line 6): type match needs column"},
		{"reward_funcs:\n  - type: match\n    column: a\n    extract: regex\n", "extract regex needs pattern"},
		{"reward_funcs:\n  - type: match\n    column: a\n    extract: xml\n", `extract "xml"`},
		{"reward_funcs:\n  - type: length\n    max_tokens: 10\n    soft_cache: 20\n", "type length needs max_tokens"},
		{"reward_funcs:\n  - type: http\n    url: localhost\n", "type http needs url"},
		{"reward_funcs:\n  - type: command\n", "type command needs command"},
		{"reward_funcs:\n  - type: oracle\n", `type "oracle" is not one of`},
		{"reward_funcs:\n  - {type: regex, pattern: a, name: x}\n  - {type: regex, pattern: b, name: x}\n", `name "x" is used twice`},
	} {
		c, err := Parse([]byte(head+tc.rewards), "g.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.rewards, err, tc.want)
		}
	}
	// Parse errors name the line.
	for _, tc := range []struct{ rewards, want string }{
		{"reward_funcs:\n  - type: regex\n    patern: a\n", `g.yaml:6: reward_funcs: reward 1 (line 7): unknown key "patern"`},
		{"reward_funcs: [regex]\n", "reward 1 (line 5): expected a mapping"},
		{"reward_funcs:\n  - type: regex\n    command: true\n", "reward 1 (line 6)"},
	} {
		_, err := Parse([]byte(head+tc.rewards), "g.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.rewards, err, tc.want)
		}
	}
}
