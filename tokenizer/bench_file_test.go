package tokenizer

import (
	"os"
	"strings"
	"testing"
)

// BenchmarkEncodeFile measures encoding speed on a text file with a
// tokenizer.json, for comparisons with the Hugging Face tokenizers library on
// the same machine and input (scripts/gpu/hf_tokenizer_speed.py):
// GOTUNE_TOKENIZER_JSON and GOTUNE_TOKENIZER_TEXT name them. Without them
// there is nothing to measure.
func BenchmarkEncodeFile(b *testing.B) {
	tj, tf := os.Getenv("GOTUNE_TOKENIZER_JSON"), os.Getenv("GOTUNE_TOKENIZER_TEXT")
	if tj == "" || tf == "" {
		b.Skip("set GOTUNE_TOKENIZER_JSON and GOTUNE_TOKENIZER_TEXT to measure a tokenizer on a file")
	}
	data, err := os.ReadFile(tf)
	if err != nil {
		b.Fatal(err)
	}
	text := string(data)
	lines := strings.Split(text, "\n")
	tk, err := FromJSON(tj)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tk.Encode(text, false)
		}
	})
	b.Run("lines", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			for _, l := range lines {
				tk.Encode(l, false)
			}
		}
	})
}
