package parity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func refDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("..", "testdata", "reference", name)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("reference data %s missing (it ships with the repository)", dir)
	}
	return dir
}

// pending lists the PEFT methods whose support has not landed yet: their
// folders may report "not supported yet" and nothing else.
var pending = map[string]bool{}

func TestReferenceModels(t *testing.T) {
	for _, name := range []string{"qwen3", "llama", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			res, err := RunModel(refDir(t, name))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			defer func() {
				for _, want := range []string{"forward", "generate", "grads_full", "full_ft", "lora", "lora_rslora", "dora"} {
					if !seen[want] {
						t.Errorf("no %s check ran", want)
					}
				}
			}()
			for _, x := range res {
				t.Logf("%s %s=%.3g %s", x.Check, x.Metric, x.Value, x.Detail)
				seen[strings.SplitN(x.Check, ".", 2)[0]] = true
				if !x.Pass && pending[x.Check] && strings.Contains(x.Detail, "not supported yet") {
					continue
				}
				if !x.Pass {
					t.Errorf("%s: %s %.3g > %.3g %s", x.Check, x.Metric, x.Value, x.Limit, x.Detail)
				}
			}
		})
	}
}

func TestSchedules(t *testing.T) {
	res, err := Schedules(filepath.Join(refDir(t, ""), "schedules.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d schedules checked, want 2", len(res))
	}
	for _, x := range res {
		if !x.Pass {
			t.Errorf("%s: %.3g", x.Check, x.Value)
		}
	}
}

// TestFamilyReferences runs the reference folders of the families of
// issue 20 (made by transformers 5.17 and PEFT): every check must pass, and
// each kind of check the folder has data for must have run.
func TestFamilyReferences(t *testing.T) {
	for _, c := range []struct {
		name string
		want []string
		// broken names checks known to fail because the reference itself
		// is faulty, with the reason.
		broken map[string]string
	}{
		{"phi3", []string{"forward", "generate", "grads_full", "full_ft", "lora", "qlora_nf4"}, nil},
		{"phi3_longrope", []string{"forward", "generate", "grads_full", "full_ft"}, nil},
		// The Gemma references mark their padding logits NaN (see
		// scripts/gpu/make_reference.py); everything else is compared.
		{"gemma2", []string{"forward", "generate", "grads_full", "full_ft", "lora", "qlora_nf4"}, nil},
		{"gemma3_text", []string{"forward", "generate", "grads_full", "full_ft", "lora", "qlora_nf4"}, nil},
		// LoRA on attention and, through PEFT's target_parameters, on the
		// stacked experts.
		{"qwen3_moe", []string{"forward", "generate", "grads_full", "full_ft", "lora", "qlora_nf4"}, nil},
		{"mixtral", []string{"forward", "generate", "grads_full", "full_ft", "lora", "qlora_nf4"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := RunModel(refDir(t, c.name))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, x := range res {
				t.Logf("%s %s=%.3g %s", x.Check, x.Metric, x.Value, x.Detail)
				seen[strings.SplitN(x.Check, ".", 2)[0]] = true
				if why, ok := c.broken[x.Check]; ok && !x.Pass {
					t.Logf("%s fails as expected: %s", x.Check, why)
					continue
				}
				if !x.Pass {
					t.Errorf("%s: %s %.3g > %.3g %s", x.Check, x.Metric, x.Value, x.Limit, x.Detail)
				}
			}
			for _, want := range c.want {
				if !seen[want] {
					t.Errorf("no %s check ran", want)
				}
			}
		})
	}
}
