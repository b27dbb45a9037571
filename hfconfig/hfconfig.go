// Package hfconfig reads the small conventions shared by a Hugging Face
// model folder's JSON files, for the packages that each read a part of them
// (tokenizer, chat templates, GGUF conversion).
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
