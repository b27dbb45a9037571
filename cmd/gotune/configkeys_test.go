package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnknownKeysSameInEveryCommand: train, data, eval and export read the
// same YAML file the same way: a misspelt key stops each with the file,
// line and closest known key, before any work; ALLOW_EXTRA_ARGS=1 turns it
// into a warning for all of them alike.
func TestUnknownKeysSameInEveryCommand(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "lora.yaml")
	body := "model_name_or_path: " + filepath.Join(dir, "no-model") + "\nlerning_rate: 1.0e-4\ndataset: d\nexport_dir: " + filepath.Join(dir, "out") + "\n"
	if err := os.WriteFile(yml, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "lora.yaml: unknown keys: lerning_rate (line 2; did you mean learning_rate?)"
	cmds := [][]string{{"train", yml}, {"data", "inspect", yml}, {"eval", yml}, {"export", yml}}
	for _, args := range cmds {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), want) {
			t.Errorf("gotune %s: exit %d, stderr %q; want %q", args[0], code, errb.String(), want)
		}
	}
	t.Setenv("ALLOW_EXTRA_ARGS", "1")
	for _, args := range cmds {
		var out, errb bytes.Buffer
		run(args, &out, &errb)
		if !strings.Contains(errb.String(), "warning: "+yml+": ignoring unknown keys: lerning_rate") {
			t.Errorf("gotune %s with ALLOW_EXTRA_ARGS=1: stderr %q lacks the warning", args[0], errb.String())
		}
	}
}
