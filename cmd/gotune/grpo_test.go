package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
)

// gotune data inspect on a grpo configuration shows the prompts as they
// will be rendered and checks the reward columns; prepare has nothing to
// do and says so; train runs the stage from the same file.
func TestGRPOCommands(t *testing.T) {
	root := t.TempDir()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(root, "model"))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(data, 0o755))
	var recs strings.Builder
	for i := range 8 {
		recs.WriteString(`{"prompt": "What is ` + string(rune('a'+i)) + `?", "answer": "` + string(rune('a'+i)) + "\"}\n")
	}
	must(os.WriteFile(filepath.Join(data, "q.jsonl"), []byte(recs.String()), 0o644))
	must(os.WriteFile(filepath.Join(data, "dataset_info.json"), []byte(`{"q": {"file_name": "q.jsonl"}}`), 0o644))
	yml := filepath.Join(root, "grpo.yaml")
	must(os.WriteFile(yml, []byte(`model_name_or_path: `+modelDir+`
dataset_dir: `+data+`
dataset: q
stage: grpo
num_generations: 4
max_completion_length: 4
per_device_train_batch_size: 8
max_steps: 2
output_dir: `+filepath.Join(root, "out")+`
progress: none
reward_funcs:
  - {name: exact, type: match, extract: text, column: answer}
`), 0o644))
	var out, errb bytes.Buffer
	if code := run([]string{"data", "inspect", yml}, &out, &errb); code != 0 {
		t.Fatalf("data inspect: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"stage grpo: 8 prompts", "What is a?", "reward exact: type match, column answer"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("data inspect output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"data", "prepare", yml}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "nothing to prepare") {
		t.Errorf("data prepare: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"train", yml}, &out, &errb); code != 0 {
		t.Fatalf("train: exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(root, "out", "adapter_model.safetensors")); err != nil {
		t.Errorf("train saved no adapter: %v", err)
	}
}
