package gguf

import (
	"encoding/json"
	"testing"
)

// TestDetectPreNames: the pre-tokenizer names written into
// tokenizer.ggml.pre are ones llama.cpp knows ("gpt-2", not "gpt2", which it
// refuses as an unknown pre-tokenizer).
func TestDetectPreNames(t *testing.T) {
	for _, c := range []struct{ regex, want string }{
		{`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, "gpt-2"},
		{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "qwen2"},
		{`something else`, "default"},
	} {
		raw, _ := json.Marshal(map[string]any{"type": "Split", "pattern": map[string]string{"Regex": c.regex}})
		if got := detectPre(raw); got != c.want {
			t.Errorf("pattern %q: pre %q, want %q", c.regex, got, c.want)
		}
	}
}
