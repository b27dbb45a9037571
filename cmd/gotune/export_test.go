package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/model"
	"gotune/peft"
)

func TestExportCommand(t *testing.T) {
	root := t.TempDir()
	base, err := assets.ModelDir(assets.DefaultModel, filepath.Join(root, "model"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range set.Params() {
		for i := range p.Data {
			p.Data[i] = 0.1 * float32(r.NormFloat64())
		}
	}
	adapter := filepath.Join(root, "adapter")
	if err := set.Save(adapter); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		files []string // expected in --out (glob patterns)
		msg   string   // expected in stdout (code 0) or stderr
	}{
		{"hf sharded bf16", []string{"--adapter", adapter, "--dtype", "bf16", "--shard-size", "200KB"}, 0,
			[]string{"model.safetensors.index.json", "model-00002-of-*.safetensors", "config.json", "chat_template.jinja"}, "LORA adapter merged"},
		{"peft", []string{"--adapter", adapter, "--format", "peft", "--dtype", "f16"}, 0,
			[]string{"adapter_config.json", "adapter_model.safetensors"}, "wrote adapter"},
		{"gguf with modelfile", []string{"--adapter", adapter, "--format", "gguf", "--gguf-type", "q8_0", "--modelfile"}, 0,
			[]string{"model.gguf", "Modelfile"}, "model.gguf"},
		{"gguf adapter", []string{"--adapter", adapter, "--format", "gguf", "--gguf-adapter", "--modelfile"}, 0,
			[]string{"model.gguf", "adapter.gguf", "Modelfile"}, "adapter.gguf"},
		{"qlora merge", []string{"--adapter", adapter, "--quantization-bit", "4"}, 0, []string{"model.safetensors"}, "merged"},
		{"bad dtype", []string{"--dtype", "f8"}, 1, nil, "dtype"},
		{"bad gguf type", []string{"--format", "gguf", "--gguf-type", "q3_k"}, 1, nil, "q3_k"},
		{"bad shard size", []string{"--shard-size", "lots"}, 1, nil, "--shard-size"},
		{"bad quantization", []string{"--adapter", adapter, "--quantization-bit", "3"}, 1, nil, "want 4 or 8"},
		{"stray argument", []string{"extra"}, 1, nil, "extra"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(root, "out", string(rune('a'+i)))
			var stdout, stderr bytes.Buffer
			args := append([]string{"export", "--model", base, "--out", out}, tc.args...)
			code := run(args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			where := stdout.String()
			if code != 0 {
				where = stderr.String()
			}
			if strings.Contains(stderr.String(), "\r") {
				t.Errorf("progress drawn on a pipe: %q", stderr.String())
			}
			if !strings.Contains(where, tc.msg) {
				t.Errorf("output lacks %q:\n%s", tc.msg, where)
			}
			for _, f := range tc.files {
				if ms, _ := filepath.Glob(filepath.Join(out, f)); len(ms) == 0 {
					t.Errorf("missing %s", f)
				}
			}
			if code != 0 {
				if _, err := os.Stat(out); err == nil {
					t.Error("a failed export created --out")
				}
			}
		})
	}
	// A second export into the same folder is refused without --force.
	out := filepath.Join(root, "out", "a")
	var stderr bytes.Buffer
	if code := run([]string{"export", "--model", base, "--out", out}, &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "--force") {
		t.Errorf("exit %d, stderr %s", code, stderr.String())
	}
	if code := run([]string{"export", "--model", base, "--out", out, "--force"}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Errorf("--force: exit %d, stderr %s", code, stderr.String())
	}
}
