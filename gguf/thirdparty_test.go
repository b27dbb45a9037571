package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

const vocabDir = "../../shared/testdata/third_party/llamacpp-vocab"

// TestLlamaCppVocabFiles reads GGUF files written by llama.cpp's own writer
// and rewrites them: the rewrite must be byte-identical, which pins down the
// header layout and padding.
func TestLlamaCppVocabFiles(t *testing.T) {
	cases := []struct {
		file, model string
		nTokens     int
	}{
		{"ggml-vocab-gpt-2.gguf", "gpt2", 50257},
		{"ggml-vocab-llama-spm.gguf", "llama", 32000},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(vocabDir, c.file)
			if _, err := os.Stat(path); err != nil {
				t.Skipf("llama.cpp vocabulary %s not present (third-party test data lives outside the repository): %v", path, err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if m, _ := f.String("tokenizer.ggml.model"); m != c.model {
				t.Errorf("tokenizer.ggml.model = %q, want %q", m, c.model)
			}
			toks, _ := f.Strings("tokenizer.ggml.tokens")
			types, _ := f.Ints("tokenizer.ggml.token_type")
			if len(toks) != c.nTokens || len(types) != c.nTokens {
				t.Errorf("%d tokens, %d types, want %d", len(toks), len(types), c.nTokens)
			}
			out := filepath.Join(t.TempDir(), "copy.gguf")
			if err := Write(out, f.KV(), nil); err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(out)
			if !bytes.Equal(a, b) {
				t.Errorf("rewrite differs: %d bytes vs %d", len(b), len(a))
			}
		})
	}
}
