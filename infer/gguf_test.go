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
	onCPU(t, want)
	got, err := Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, got)
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

// TestGGUFUnusedTokensPrintNothing: the ids a GGUF export pads the vocabulary
// with ([PADn], token type unused) decode to no text, as llama.cpp and the
// Hugging Face folder decode them (issue 13.18).
func TestGGUFUnusedTokensPrintNothing(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := gguf.FromHF(dir, path, gguf.Options{Type: gguf.F32}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	types, _ := f.Ints("tokenizer.ggml.token_type")
	f.Close()
	var unused []int
	for id, ty := range types {
		if int32(ty) == gguf.TokenUnused {
			unused = append(unused, id)
		}
	}
	if len(unused) == 0 {
		t.Fatal("the bundled model's GGUF has no padding tokens to test with")
	}
	folder, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	hello := folder.Tok.Encode("Hello world", false)
	ids := append(append(append([]int{}, hello...), unused[0], unused[len(unused)-1]), hello...)
	for _, skip := range []bool{false, true} {
		want := folder.Tok.Decode(ids, skip)
		if got := e.Tok.Decode(ids, skip); got != want {
			t.Errorf("Decode(skipSpecial=%v) = %q, the folder's tokenizer gives %q", skip, got, want)
		}
	}
	if got := e.Tok.Decode(unused, false); got != "" {
		t.Errorf("unused ids %s... decode to %q", tokens[unused[0]], got)
	}
	ids32 := make([]int32, len(unused))
	for i, id := range unused {
		ids32[i] = int32(id)
	}
	if got := e.decode(ids32); got != "" {
		t.Errorf("the engine prints %q for unused ids", got)
	}
	// Their text does not encode to them either.
	for _, id := range e.Tok.Encode(tokens[unused[0]], false) {
		if id == unused[0] {
			t.Errorf("%q encodes to the unused id %d", tokens[unused[0]], id)
		}
	}
	if e.Tok.VocabSize() != len(tokens) {
		t.Errorf("VocabSize %d, the file has %d tokens", e.Tok.VocabSize(), len(tokens))
	}
}
