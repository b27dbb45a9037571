package peft

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotune/model"
	"gotune/safetensors"
)

func randomModel(t *testing.T, shape string) *model.Model {
	t.Helper()
	cfg, err := model.Shape(shape)
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(3)
	return m
}

// TestLoRASavesPEFTLayout: a saved adapter has PEFT's tensor keys and
// shapes, and its adapter_config.json has every field PEFT writes (those of
// a reference adapter saved by PEFT 0.21) with the same JSON types.
func TestLoRASavesPEFTLayout(t *testing.T) {
	m := randomModel(t, "ref-qwen3")
	set, err := AttachLoRA(m, LoRAConfig{R: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj", "down_proj"}, DoRA: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := set.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.OpenOne(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := map[string][]int{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":         {4, 64},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":         {128, 4},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": {128},
		"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight":            {4, 160},
		"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight":            {64, 4},
	}
	for name, shape := range want {
		info, ok := st.Info(name)
		if !ok {
			t.Errorf("missing %s (have %v)", name, st.Names()[:3])
			continue
		}
		if !slices.Equal(info.Shape, shape) {
			t.Errorf("%s: shape %v, want %v", name, info.Shape, shape)
		}
	}
	if n := len(st.Names()); n != 2*3*3 {
		t.Errorf("%d tensors, want 18 (2 layers × 3 modules × A, B, magnitude)", n)
	}
	var ours, ref map[string]any
	readJSONFile(t, filepath.Join(dir, "adapter_config.json"), &ours)
	readJSONFile(t, filepath.Join("testdata", "lora_qwen3", "adapter_config.json"), &ref)
	for k, v := range ref {
		o, ok := ours[k]
		if !ok {
			t.Errorf("adapter_config.json lacks PEFT's field %q", k)
			continue
		}
		if v != nil && o != nil && jsonKind(v) != jsonKind(o) {
			t.Errorf("field %q: %T, PEFT writes %T", k, o, v)
		}
	}
	if ours["peft_type"] != "LORA" || ours["use_dora"] != true || ours["r"].(float64) != 4 {
		t.Errorf("config values wrong: %v %v %v", ours["peft_type"], ours["use_dora"], ours["r"])
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		return "number"
	}
	return "null"
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// TestLoRARoundTripAndMerge: save → load reproduces the adapted logits, and
// merging into the weights reproduces them without the adapter.
func TestLoRARoundTripAndMerge(t *testing.T) {
	for _, dora := range []bool{false, true} {
		m := randomModel(t, "ref-llama")
		set, err := AttachLoRA(m, LoRAConfig{R: 8, Alpha: 16, Targets: []string{"all"}, DoRA: dora, Init: "gaussian"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range set.Modules { // B starts at zero; make the adapter matter
			for i := range l.B.Data {
				l.B.Data[i] = float32(math.Sin(float64(i))) * 0.05
			}
		}
		b := &model.Batch{B: 1, T: 9, IDs: []int32{1, 5, 9, 33, 2, 7, 100, 3, 4}}
		want := append([]float32(nil), newRun(t, m).Logits(b)...)
		dir := t.TempDir()
		if err := set.Save(dir); err != nil {
			t.Fatal(err)
		}
		set.Detach()
		base := append([]float32(nil), newRun(t, m).Logits(b)...)
		if relDiff(base, want) < 1e-3 {
			t.Fatal("the adapter does not change the logits; the test would prove nothing")
		}
		loaded, err := LoadLoRA(m, dir)
		if err != nil {
			t.Fatal(err)
		}
		if d := relDiff(newRun(t, m).Logits(b), want); d > 1e-6 {
			t.Errorf("dora=%v: loaded adapter logits differ by %g", dora, d)
		}
		if err := loaded.Merge(); err != nil {
			t.Fatal(err)
		}
		if d := relDiff(newRun(t, m).Logits(b), want); d > 1e-5 {
			t.Errorf("dora=%v: merged logits differ by %g", dora, d)
		}
	}
}

func relDiff(a, b []float32) float64 {
	var n, d float64
	for i := range a {
		e := float64(a[i] - b[i])
		n += e * e
		d += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(n / d)
}

func TestLoRABadConfig(t *testing.T) {
	m := randomModel(t, "ref-qwen2")
	for _, c := range []struct {
		cfg  LoRAConfig
		want string
	}{
		{LoRAConfig{R: 0, Alpha: 8}, "rank must be positive"},
		{LoRAConfig{R: 4, Alpha: 8, Dropout: 1}, "dropout"},
		{LoRAConfig{R: 4, Alpha: 8, Targets: []string{"c_attn"}}, "matched no layer"},
		// One good name does not hide a misspelt one.
		{LoRAConfig{R: 4, Alpha: 8, Targets: []string{"q_proj", "vproj"}}, "target module vproj matched no layer"},
	} {
		if _, err := AttachLoRA(m, c.cfg, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
}
