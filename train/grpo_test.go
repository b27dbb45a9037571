package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/config"
)

// grpoTask writes a synthetic verifiable task: prompts asking for a number,
// each with an answer column.
func grpoTask(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(dir, 0o755))
	var recs []map[string]any
	words := []string{"apples", "birds", "cats", "dogs", "eggs", "frogs", "goats", "hats", "ink pots", "jars", "keys", "lamps"}
	for i := range n {
		w := words[i%len(words)]
		recs = append(recs, map[string]any{"prompt": fmt.Sprintf("How many %s are in box %d? Answer with a number.", w, i), "answer": fmt.Sprint(i % 10)})
	}
	b, err := json.Marshal(recs)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "count.json"), b, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "dataset_info.json"), []byte(`{"count": {"file_name": "count.json"}}`), 0o644))
	return dir
}

func grpoConfig(t *testing.T, out string, extra string) *config.Config {
	t.Helper()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	must(t, err)
	y := fmt.Sprintf(`model_name_or_path: %s
dataset_dir: %s
dataset: count
stage: grpo
finetuning_type: lora
lora_rank: 8
lora_alpha: 16
output_dir: %s
num_generations: 8
max_completion_length: 8
per_device_train_batch_size: 16
gradient_accumulation_steps: 2
learning_rate: 2.0e-2
lr_scheduler_type: constant
max_steps: 30
logging_steps: 1
save_steps: 1000
progress: none
seed: 7
reward_funcs:
  - name: capital
    type: regex
    pattern: '^\s*[A-Z]'
`, modelDir, grpoTask(t, 64), out) + extra
	cfg, err := config.Parse([]byte(y), "grpo.yaml")
	must(t, err)
	return cfg
}

func TestGRPOExperiment(t *testing.T) {
	if os.Getenv("GRPO_EXP") == "" {
		t.Skip("manual experiment (GRPO_EXP=1)")
	}
	cfg := grpoConfig(t, filepath.Join(t.TempDir(), "out"), "")
	must(t, cfg.ApplyFlags(strings.Fields(os.Getenv("GRPO_FLAGS"))))
	tr, err := New(cfg, "", os.Stdout)
	must(t, err)
	must(t, tr.Run())
	b, _ := os.ReadFile(filepath.Join(cfg.OutputDir, "trainer_log.jsonl"))
	os.WriteFile("/tmp/grpoexp/log.jsonl", b, 0o644)
	b, _ = os.ReadFile(filepath.Join(cfg.OutputDir, "completions.jsonl"))
	os.WriteFile("/tmp/grpoexp/completions.jsonl", b, 0o644)
}
