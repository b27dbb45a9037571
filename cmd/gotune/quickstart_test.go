package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQuickstart runs the README's first command: it must train, show the
// loss falling, save a PEFT adapter and change the model's answers to the
// trained ones.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("quickstart trains for a few seconds; skipped with -short")
	}
	t.Setenv("GOTUNE_HOME", t.TempDir())
	out := filepath.Join(t.TempDir(), "quickstart")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"quickstart", "--output-dir", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	text := stdout.String()
	losses := regexp.MustCompile(`loss ([0-9.]+)`).FindAllStringSubmatch(text, -1)
	if len(losses) < 5 {
		t.Fatalf("fewer than 5 logged losses in:\n%s", text)
	}
	first, _ := strconv.ParseFloat(losses[0][1], 64)
	last, _ := strconv.ParseFloat(losses[len(losses)-1][1], 64)
	if !(last < first/10) {
		t.Errorf("loss fell only from %v to %v", first, last)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "trainer_log.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("quickstart did not write %s", f)
		}
	}
	for _, answer := range []string{"Honey.", "Paris."} {
		after := regexp.MustCompile(`after:\s+"[^"\n]*` + regexp.QuoteMeta(answer))
		if !after.MatchString(text) {
			t.Errorf("no trained answer %q after training in:\n%s", answer, text)
		}
	}
	if strings.Count(text, "before:") != 3 {
		t.Errorf("want 3 before/after comparisons in:\n%s", text)
	}
}
