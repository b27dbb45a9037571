package peft

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/model"
)

// editConfig rewrites dir/adapter_config.json with edit applied.
func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "adapter_config.json")
	var cfg map[string]any
	readJSONFile(t, path, &cfg)
	edit(cfg)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadConfigChecks: each loader keeps its own checks of the values
// hfconfig reads, and names the file and the field.
func TestLoadConfigChecks(t *testing.T) {
	m := randomModel(t, "ref-llama")
	lora, err := AttachLoRA(m, LoRAConfig{R: 4, Alpha: 8, Targets: []string{"q_proj"}, Layers: []int{0}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	loraDir := t.TempDir()
	if err := lora.Save(loraDir); err != nil {
		t.Fatal(err)
	}
	lora.Detach()
	bn, err := AttachBottleneck(m, BottleneckConfig{Size: 4, Layers: []int{0}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	bnDir := t.TempDir()
	if err := bn.Save(bnDir); err != nil {
		t.Fatal(err)
	}
	bn.Detach()

	for _, c := range []struct {
		name string
		src  string
		load func(dir string) error
		edit func(map[string]any)
		want string // "" when the load should succeed
	}{
		{"lora as saved", loraDir, loadLoRA(m), func(map[string]any) {}, ""},
		{"lora one layer", loraDir, loadLoRA(m), func(c map[string]any) { c["layers_to_transform"] = 0 }, ""},
		{"lora regex targets", loraDir, loadLoRA(m), func(c map[string]any) { c["target_modules"] = ".*q_proj" }, ""},
		{"lora no targets", loraDir, loadLoRA(m), func(c map[string]any) { delete(c, "target_modules") }, "target_modules"},
		{"lora null targets", loraDir, loadLoRA(m), func(c map[string]any) { c["target_modules"] = nil }, "target_modules"},
		{"lora number targets", loraDir, loadLoRA(m), func(c map[string]any) { c["target_modules"] = 3 }, "field target_modules"},
		{"lora r string", loraDir, loadLoRA(m), func(c map[string]any) { c["r"] = "4" }, "field r"},
		{"lora bias", loraDir, loadLoRA(m), func(c map[string]any) { c["bias"] = "all" }, "bias"},
		{"lora wrong type", loraDir, loadLoRA(m), func(c map[string]any) { c["peft_type"] = "IA3" }, "want LORA"},
		{"bottleneck as saved", bnDir, loadBottleneck(m), func(map[string]any) {}, ""},
		{"bottleneck one layer", bnDir, loadBottleneck(m), func(c map[string]any) { c["layers_to_transform"] = 0 }, "layers_to_transform"},
		{"bottleneck size", bnDir, loadBottleneck(m), func(c map[string]any) { c["bottleneck_size"] = 0 }, "bottleneck_size"},
		{"bottleneck init bool", bnDir, loadBottleneck(m), func(c map[string]any) { c["init_weights"] = true }, "field init_weights"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
				b, err := os.ReadFile(filepath.Join(c.src, name))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			editConfig(t, dir, c.edit)
			err := c.load(dir)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "adapter_config.json")):
				t.Errorf("err = %v, want one naming adapter_config.json and %q", err, c.want)
			}
		})
	}
}

func loadLoRA(m *model.Model) func(string) error {
	return func(dir string) error {
		s, err := LoadLoRA(m, dir)
		if err == nil {
			s.Detach()
		}
		return err
	}
}

func loadBottleneck(m *model.Model) func(string) error {
	return func(dir string) error {
		s, err := LoadBottleneck(m, dir)
		if err == nil {
			s.Detach()
		}
		return err
	}
}
