package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"gotune/chat"
	"gotune/infer"
)

// templateKwargs collects --template-kwarg KEY=VALUE flags: variables for
// the chat template, as transformers' apply_chat_template(**kwargs) and
// the API's chat_template_kwargs pass them. A value that parses as JSON is
// that value (false, 3, {"a": 1}); anything else is a string.
type templateKwargs map[string]json.RawMessage

func (k templateKwargs) String() string {
	keys := make([]string, 0, len(k))
	for key, v := range k {
		keys = append(keys, key+"="+string(v))
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (k templateKwargs) Set(s string) error {
	key, val, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	if !json.Valid([]byte(val)) {
		b, _ := json.Marshal(val)
		val = string(b)
	}
	k[key] = json.RawMessage(val)
	return nil
}

// check refuses a key the model's chat template never reads: it would be
// ignored without a word (a misspelled enable_thinking).
func (k templateKwargs) check(e *infer.Engine) error {
	if len(k) == 0 || e.Template == nil {
		return nil
	}
	keys := make([]string, 0, len(k))
	for key := range k {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if !chat.NamesIdentifier(e.Template.Source, key) {
			return fmt.Errorf("--template-kwarg %s: the model's chat template never reads %q, so it would be ignored", key, key)
		}
	}
	return nil
}

func (k templateKwargs) extra() map[string]any {
	if len(k) == 0 {
		return nil
	}
	out := make(map[string]any, len(k))
	for key, v := range k {
		out[key] = v
	}
	return out
}
