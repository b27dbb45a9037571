// Package hfconfig is where gotune reads a Hugging Face folder's small JSON
// files: tokenizer_config.json with chat_template.jinja, adapter_config.json
// and generation_config.json. Each reader returns the values as written,
// with errors that name the file and the field; what the values mean, their
// defaults and which of them are supported stay with the packages that use
// them (tokenizer, chat, gguf, peft, infer). config.json is read elsewhere
// (model and gguf), as its fields depend on the model family.
package hfconfig

import (
	"encoding/json"
	"fmt"
)

// TokenString reads a special token of tokenizer_config.json, given as
// null, a string, or an AddedToken object {"content": ...}.
func TokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Content == nil {
		return "", fmt.Errorf(`expected a string or an object with "content", got %.80s`, raw)
	}
	return *o.Content, nil
}
