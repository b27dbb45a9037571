// Package reward scores sampled completions for reinforcement learning
// (stage grpo) from rewards declared in the YAML: exact match of an
// extracted answer against a dataset column, a regular-expression format
// check, tool-call validity against the declared tools' JSON schemas, a
// length penalty, and external scorers (a command reading JSON lines, an
// HTTP endpoint).
//
// A reward that cannot score a sample — a scorer that crashes, times out or
// answers garbage, a dataset record without the column a reward reads — is
// an error naming the reward and the sample, never a silent zero: a zero
// would look like a wrong answer and quietly teach the model the wrong
// thing. A completion that simply is wrong (no number where one was
// expected) scores 0; that is the reward working.
package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gotune/config"
)

// Sample is one completion to score, with what it was sampled from.
type Sample struct {
	Prompt     string
	Completion string
	Tokens     int                        // completion tokens
	Columns    map[string]json.RawMessage // the dataset record's fields
	Where      string                     // the dataset record, file:line
}

// Func scores a batch of samples, one number each.
type Func interface {
	Name() string
	Score(ctx context.Context, samples []Sample) ([]float64, error)
}

// Build makes the reward a declaration describes; name is what it is logged
// as.
func Build(name string, d config.RewardFunc) (Func, error) {
	timeout := time.Duration(d.Timeout * float64(time.Second))
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	switch d.Type {
	case "match":
		ex, err := newExtractor(d.Extract, d.Pattern, d.Field)
		if err != nil {
			return nil, fmt.Errorf("reward %s: %w", name, err)
		}
		return &match{name: name, extract: ex, column: d.Column}, nil
	case "regex":
		re, err := compile(d.Pattern)
		if err != nil {
			return nil, fmt.Errorf("reward %s: %w", name, err)
		}
		return &format{name: name, re: re}, nil
	case "tool_call":
		tc := &toolCall{name: name, column: d.Column, cache: map[string]*toolSet{}}
		if tc.column == "" && d.Tools == "" {
			tc.column = "tools"
		}
		if d.Tools != "" {
			ts, err := parseTools(json.RawMessage(d.Tools))
			if err != nil {
				return nil, fmt.Errorf("reward %s: tools: %w", name, err)
			}
			tc.fixed = ts
		}
		return tc, nil
	case "length":
		if d.MaxTokens <= 0 || d.SoftCache < 0 || d.SoftCache > d.MaxTokens {
			return nil, fmt.Errorf("reward %s: type length needs max_tokens > 0 and 0 ≤ soft_cache ≤ max_tokens, got %d and %d", name, d.MaxTokens, d.SoftCache)
		}
		return &length{name: name, max: d.MaxTokens, cache: d.SoftCache}, nil
	case "command":
		if len(d.Command) == 0 {
			return nil, fmt.Errorf("reward %s: type command needs command: [program, args…]", name)
		}
		return &command{name: name, argv: d.Command, timeout: timeout}, nil
	case "http":
		return newHTTP(name, d.URL, timeout), nil
	}
	return nil, fmt.Errorf("reward %s: type %q is not one of %s", name, d.Type, strings.Join(config.RewardKinds, ", "))
}

// sampleError names the reward and the sample a failure belongs to.
func sampleError(reward string, i int, s Sample, format string, args ...any) error {
	return fmt.Errorf("reward %s: sample %d (%s; completion %s): %s", reward, i, s.Where, excerpt(s.Completion), fmt.Sprintf(format, args...))
}

// excerpt quotes the start of a completion for a message.
func excerpt(s string) string {
	const most = 120
	if len(s) > most {
		return fmt.Sprintf("%q…", s[:most])
	}
	return fmt.Sprintf("%q", s)
}

// JSONLine is the record an external scorer receives for a sample: the
// dataset columns, with prompt, completion and completion_tokens set by
// gotune (a column of the same name is replaced).
func JSONLine(s Sample) ([]byte, error) {
	m := make(map[string]json.RawMessage, len(s.Columns)+3)
	for k, v := range s.Columns {
		m[k] = v
	}
	var err error
	put := func(k string, v any) {
		if err == nil {
			m[k], err = json.Marshal(v)
		}
	}
	put("prompt", s.Prompt)
	put("completion", s.Completion)
	put("completion_tokens", s.Tokens)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}
