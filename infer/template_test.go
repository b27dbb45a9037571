package infer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/model"
	"gotune/peft"
)

const brokenTemplate = "{% for m in messages %}\n{{ m.content }\n{% endfor %}"

// TestBrokenTemplateIsReported: a chat template that fails to parse was
// reported as "has no chat template".
func TestBrokenTemplateIsReported(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(brokenTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Load(dir, "")
	if err != nil {
		t.Fatal(err) // plain completion still works without a template
	}
	_, err = e.Prompt([]chat.Message{chat.NewMessage("user", "hi")}, chat.Options{})
	if err == nil || strings.Contains(err.Error(), "has no chat template") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("got %v, want the template's parse error at line 2", err)
	}
}

// TestAdapterWithBrokenTemplate: an adapter whose own template is broken
// silently fell back to the base model's template.
func TestAdapterWithBrokenTemplate(t *testing.T) {
	base := loadTiny(t)
	m, err := model.Load(base.Model.Dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 2, Alpha: 4, Targets: []string{"q_proj"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	adapter := t.TempDir()
	if err := set.Save(adapter); err != nil {
		t.Fatal(err)
	}
	if _, err := base.WithAdapter(adapter); err != nil {
		t.Fatalf("adapter without a template of its own: %v", err)
	}
	if err := os.WriteFile(filepath.Join(adapter, "chat_template.jinja"), []byte(brokenTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := base.WithAdapter(adapter); err == nil || !strings.Contains(err.Error(), "adapter") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("WithAdapter: got %v, want the adapter template's error", err)
	}
	if _, err := Load(base.Model.Dir, adapter); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Load: got %v, want the adapter template's error", err)
	}
}

// TestPromptLimitedToContext: a prompt longer than the model's context was
// fed anyway, with buffers sized by the prompt.
func TestPromptLimitedToContext(t *testing.T) {
	e := loadTiny(t)
	n := e.Model.Cfg.MaxPositions
	if n <= 0 {
		t.Fatal("the bundled model declares no context length (max_position_embeddings); this test needs one")
	}
	long := strings.Repeat("hello ", 2*n)
	_, err := e.Generate(Request{Prompt: long, MaxTokens: 4})
	if err == nil || !strings.Contains(err.Error(), "context") {
		t.Fatalf("got %v, want an error about the context length", err)
	}
	// a prompt that fits gets at most the room that is left
	short := strings.Repeat("hello ", 4)
	res, err := e.Generate(Request{Prompt: short, MaxTokens: 10 * n, Sample: SampleOptions{Temperature: 5, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res.PromptTokens+len(res.Tokens) > n {
		t.Errorf("%d prompt + %d generated tokens exceed the context of %d", res.PromptTokens, len(res.Tokens), n)
	}
}
