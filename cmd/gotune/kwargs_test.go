package main

import (
	"bytes"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/infer"
)

// TestTemplateKwargs: --template-kwarg values reach the chat template (JSON
// values as such, other text as strings), and a key the template never
// reads is refused rather than ignored.
func TestTemplateKwargs(t *testing.T) {
	k := templateKwargs{}
	for _, s := range []string{"enable_thinking=false", "name=Ada", "n=3"} {
		if err := k.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if string(k["enable_thinking"]) != "false" || string(k["name"]) != `"Ada"` || string(k["n"]) != "3" {
		t.Errorf("parsed %v", k)
	}
	if err := k.Set("novalue"); err == nil {
		t.Error("KEY without =VALUE accepted")
	}

	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, e)
	msgs := []chat.Message{chat.NewMessage("user", "hi")}
	plain, err := e.Prompt(msgs, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	off := templateKwargs{}
	if err := off.Set("enable_thinking=false"); err != nil {
		t.Fatal(err)
	}
	if err := off.check(e); err != nil {
		t.Fatalf("enable_thinking refused: %v", err)
	}
	noThink, err := e.Prompt(msgs, chat.Options{Extra: off.extra()})
	if err != nil {
		t.Fatal(err)
	}
	if noThink == plain {
		t.Errorf("enable_thinking=false changed nothing in the prompt %q", plain)
	}

	var out, errb bytes.Buffer
	code := run([]string{"generate", dir, "hi", "--max-new-tokens", "2", "--template-kwarg", "enable_thinkng=false"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "enable_thinkng") {
		t.Errorf("misspelled kwarg: exit %d, stderr %q", code, errb.String())
	}
}

func TestWithoutEmptyThink(t *testing.T) {
	for in, want := range map[string]string{
		"<think>\n\n</think>\n\nHoney.": "Honey.",
		"<think>a plan</think>Honey.":   "<think>a plan</think>Honey.",
		"Honey.":                        "Honey.",
		"<think>\n\nunfinished":         "<think>\n\nunfinished",
	} {
		if got := withoutEmptyThink(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
