package assets

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestExtractModelAndData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	got, err := ModelDir(DefaultModel, dir)
	if err != nil || got != dir {
		t.Fatalf("ModelDir = %q, %v", got, err)
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not extracted: %v", f, err)
		}
	}
	// A second extraction keeps the files (same sizes) and succeeds.
	if _, err := ModelDir(DefaultModel, dir); err != nil {
		t.Fatal(err)
	}
	d, err := DataDir(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "dataset_info.json")); err != nil {
		t.Error(err)
	}
	if _, err := ModelDir("no-such-model", t.TempDir()); err == nil {
		t.Error("an unknown bundled model must be an error")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(QuickstartConfig(), &cfg); err != nil || cfg["finetuning_type"] != "lora" {
		t.Errorf("quickstart config: %v %v", cfg["finetuning_type"], err)
	}
}

func TestHome(t *testing.T) {
	t.Setenv("GOTUNE_HOME", "/tmp/somewhere")
	if Home() != "/tmp/somewhere" {
		t.Errorf("Home() = %q", Home())
	}
}
