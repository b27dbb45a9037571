package infer

import (
	"path/filepath"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/gguf"
)

// TestGGUFEngineMatchesFolder: the bundled model exported to a float32 GGUF
// file generates exactly what the Hugging Face folder generates, through
// the vocabulary and chat template stored in the file.
func TestGGUFEngineMatchesFolder(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := gguf.FromHF(dir, path, gguf.Options{Type: gguf.F32}); err != nil {
		t.Fatal(err)
	}
	want, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Template == nil {
		t.Fatal("the GGUF file's chat template was not loaded")
	}
	msgs := []chat.Message{chat.NewMessage("user", "What does LoRA train?")}
	pw, err := want.Prompt(msgs, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pg, err := got.Prompt(msgs, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pw != pg {
		t.Fatalf("prompts differ:\n%q\n%q", pw, pg)
	}
	rw, err := want.Generate(Request{Prompt: pw, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	rg, err := got.Generate(Request{Prompt: pg, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if rw.Text != rg.Text || len(rw.Tokens) != len(rg.Tokens) {
		t.Errorf("GGUF engine generated %q, the folder %q", rg.Text, rw.Text)
	}
}
