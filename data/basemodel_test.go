package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlainTextWithoutChatTemplate: a base model folder (tokenizer, no chat
// template) prepares and inspects plain text for stage pt; a chat stage on
// it fails once, up front, saying why.
func TestPlainTextWithoutChatTemplate(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "base")
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "qwen3", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, model, f, string(b))
	}
	stories := writeFile(t, dir, "stories.txt", "Once upon a time there was a cat.\nThe dog ran to the park.\n")
	enc, err := LoadEncoder(model, EncodeOptions{CutoffLen: 64})
	if err != nil {
		t.Fatalf("a model without a chat template must load for plain text: %v", err)
	}
	cfg := Config{Datasets: []Spec{{Name: "stories", Path: stories}}, Stage: "pt", Encode: enc.Opts}
	c, err := Prepare(cfg, enc, filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 {
		t.Errorf("%d samples, want 2", c.Len())
	}
	if _, err := Inspect(cfg, enc, InspectOptions{}); err != nil {
		t.Errorf("inspect: %v", err)
	}
	qa := writeFile(t, dir, "qa.jsonl", `{"instruction":"q","output":"a"}`+"\n")
	cfg = Config{Datasets: []Spec{{Name: "qa", Path: qa}}, Stage: "sft", Encode: enc.Opts}
	_, err = Prepare(cfg, enc, filepath.Join(dir, "cache"))
	if err == nil || !strings.Contains(err.Error(), "no chat_template") || !strings.Contains(err.Error(), "stage pt") {
		t.Errorf("sft on a model without a template: got %v", err)
	}
}
