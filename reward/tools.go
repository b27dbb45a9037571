package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"gotune/constrain"
)

// toolSet is the declared tools: name → compiled parameters schema.
type toolSet map[string]*constrain.Node

// parseTools reads a JSON array of tool definitions in OpenAI's form
// ({"type": "function", "function": {"name", "parameters"}}) or the bare
// {"name", "parameters"} many datasets use.
func parseTools(raw json.RawMessage) (toolSet, error) {
	var text string
	if json.Unmarshal(raw, &text) == nil { // a column holding the JSON as a string
		raw = json.RawMessage(text)
	}
	var list []struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
		Function   *struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("expected a JSON array of tool definitions: %w", err)
	}
	ts := toolSet{}
	for i, t := range list {
		name, params := t.Name, t.Parameters
		if t.Function != nil {
			name, params = t.Function.Name, t.Function.Parameters
		}
		if name == "" {
			return nil, fmt.Errorf("tool %d has no name", i)
		}
		node := constrain.AnyObject()
		if len(params) > 0 && string(params) != "null" {
			n, err := constrain.CompileSchema(params)
			if err != nil {
				return nil, fmt.Errorf("tool %s: parameters: %w", name, err)
			}
			node = n
		}
		ts[name] = node
	}
	return ts, nil
}

// toolCall scores 1 when the completion makes at least one tool call and
// every call parses, names a declared tool and has arguments its schema
// accepts.
type toolCall struct {
	name   string
	column string
	fixed  toolSet
	cache  map[string]*toolSet // by the column's text: datasets repeat tool lists
}

func (t *toolCall) Name() string { return t.name }

var toolCallRE = regexp.MustCompile(`(?s)<tool_call>(.*?)</tool_call>`)

// calls finds the calls: Hermes/Qwen <tool_call> blocks, or else the whole
// completion as one call object or an array of them.
func calls(c string) ([]json.RawMessage, bool) {
	var out []json.RawMessage
	if m := toolCallRE.FindAllStringSubmatch(c, -1); len(m) > 0 {
		for _, b := range m {
			out = append(out, json.RawMessage(strings.TrimSpace(b[1])))
		}
		return out, true
	}
	s := strings.TrimSpace(c)
	if strings.HasPrefix(s, "[") {
		if json.Unmarshal([]byte(s), &out) == nil {
			return out, len(out) > 0
		}
		return nil, false
	}
	if strings.HasPrefix(s, "{") {
		return []json.RawMessage{json.RawMessage(s)}, true
	}
	return nil, false
}

// valid checks one call against the tools.
func valid(raw json.RawMessage, ts toolSet) bool {
	var call struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(raw, &call) != nil {
		return false
	}
	schema, ok := ts[call.Name]
	if !ok {
		return false
	}
	args := call.Arguments
	var s string
	if json.Unmarshal(args, &s) == nil { // OpenAI's arguments-as-a-string
		args = json.RawMessage(s)
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	return constrain.Accepts(schema, string(args))
}

func (t *toolCall) Score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		ts := t.fixed
		if ts == nil {
			raw, ok := s.Columns[t.column]
			if !ok {
				return nil, sampleError(t.name, i, s, "the dataset record has no column %q with the declared tools", t.column)
			}
			key := string(raw)
			if c, ok := t.cache[key]; ok {
				ts = *c
			} else {
				parsed, err := parseTools(raw)
				if err != nil {
					return nil, sampleError(t.name, i, s, "column %q: %v", t.column, err)
				}
				t.cache[key] = &parsed
				ts = parsed
			}
		}
		cs, ok := calls(s.Completion)
		if !ok {
			continue
		}
		all := true
		for _, c := range cs {
			if !valid(c, ts) {
				all = false
				break
			}
		}
		if all {
			out[i] = 1
		}
	}
	return out, nil
}
