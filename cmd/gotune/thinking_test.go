package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/infer"
)

// TestEnableThinkingFalseServesAsTrained: a model fine-tuned with
// enable_thinking: false learnt its answers after an empty <think> block
// given in the prompt. Generate, chat and serve with the output must render
// that prompt when the request does not say otherwise, with a built-in
// template and with the model's own.
func TestEnableThinkingFalseServesAsTrained(t *testing.T) {
	tmp := t.TempDir()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(tmp, "model"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir, err := assets.DataDir(filepath.Join(tmp, "data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, template := range []string{"qwen3", ""} {
		t.Run("template="+template, func(t *testing.T) {
			out := filepath.Join(tmp, "out"+template)
			cfg := fmt.Sprintf("model_name_or_path: %s\nstage: sft\nfinetuning_type: lora\nlora_rank: 2\nlora_target: all\n"+
				"dataset: quickstart\ndataset_dir: %s\ncutoff_len: 64\nmax_steps: 1\nper_device_train_batch_size: 2\n"+
				"output_dir: %s\nenable_thinking: false\n", modelDir, dataDir, out)
			if template != "" {
				cfg += "template: " + template + "\n"
			}
			path := filepath.Join(tmp, "cfg"+template+".yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"train", path}, &stdout, &stderr); code != 0 {
				t.Fatalf("train: exit %d\n%s%s", code, stdout.String(), stderr.String())
			}
			e, err := infer.Load(modelDir, out)
			if err != nil {
				t.Fatal(err)
			}
			onCPU(t, e)
			msgs := []chat.Message{chat.NewMessage("user", "Hi")}
			p, err := e.Prompt(msgs, chat.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(p, "<|im_start|>assistant\n<think>\n\n</think>\n\n") {
				t.Errorf("default prompt ends %q, want the empty think block it was trained after", p[max(0, len(p)-40):])
			}
			p, err = e.Prompt(msgs, chat.Options{Extra: map[string]any{"enable_thinking": true}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(p, "<|im_start|>assistant\n") {
				t.Errorf("enable_thinking true: prompt ends %q", p[max(0, len(p)-40):])
			}
		})
	}
}

// TestCutoffAboveContextNoted: a cutoff_len above the model's
// max_position_embeddings is said before training, not passed over.
func TestCutoffAboveContextNoted(t *testing.T) {
	tmp := t.TempDir()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(tmp, "model"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir, err := assets.DataDir(filepath.Join(tmp, "data"))
	if err != nil {
		t.Fatal(err)
	}
	for cutoff, noted := range map[int]bool{512: false, 1024: true} {
		path := filepath.Join(tmp, fmt.Sprintf("cfg%d.yaml", cutoff))
		cfg := fmt.Sprintf("model_name_or_path: %s\nstage: sft\nfinetuning_type: lora\nlora_rank: 2\nlora_target: all\n"+
			"dataset: quickstart\ndataset_dir: %s\ncutoff_len: %d\nmax_steps: 1\noutput_dir: %s\n",
			modelDir, dataDir, cutoff, filepath.Join(tmp, fmt.Sprint("out", cutoff)))
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{"train", path}, &stdout, &stderr); code != 0 {
			t.Fatalf("train: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		got := strings.Contains(stdout.String()+stderr.String(), "note: cutoff_len 1024 is above the model's context (max_position_embeddings 512)")
		if got != noted {
			t.Errorf("cutoff_len %d: noted %v, want %v:\n%s", cutoff, got, noted, stderr.String())
		}
	}
}
