package infer

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gotune/assets"
	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/model"
	"gotune/peft"
)

// TestAdapterDropoutOffInInference: an adapter trained with lora_dropout
// scores and generates without dropout (as PEFT in eval mode): its logits
// equal those of the same adapter saved with dropout 0.
func TestAdapterDropoutOffInInference(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	save := func(dropout float64) string {
		m, err := model.Load(dir, model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 4, Alpha: 8, Dropout: dropout, Targets: []string{"all"}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for _, p := range set.Params() {
			for i := range p.Data {
				p.Data[i] = float32(r.NormFloat64() * 0.1)
			}
		}
		out := filepath.Join(t.TempDir(), "adapter")
		if err := set.Save(out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	logits := func(adapter string) []float64 {
		e, err := Load(dir, adapter)
		if err != nil {
			t.Fatal(err)
		}
		dm, err := model.NewDeviceModel(e.Model, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: true})
		if err != nil {
			t.Fatal(err)
		}
		defer dm.Close()
		// Every position's log-probability of the next id.
		ids := []int32{5, 17, 99, 3, 250, 41}
		lp, err := dm.TokenLogProbs(&model.Batch{B: 1, T: len(ids), IDs: ids, Labels: ids, Mask: []int32{1, 1, 1, 1, 1, 1}})
		if err != nil {
			t.Fatal(err)
		}
		if len(lp) != len(ids)-1 {
			t.Fatalf("%d log-probabilities for %d ids", len(lp), len(ids))
		}
		return lp
	}
	with, without := logits(save(0.5)), logits(save(0))
	for i := range with {
		if with[i] != without[i] {
			t.Fatalf("log-probability %d: %g with lora_dropout 0.5, %g without: dropout acted at inference", i, with[i], without[i])
		}
	}
}

// TestGenerateOnDevice: greedy generation on the reference backend (float64
// loops, standing in for a GPU) gives the CPU backend's tokens.
func TestGenerateOnDevice(t *testing.T) {
	e := loadTiny(t)
	prompt := "Once upon a time"
	req := Request{Prompt: prompt, MaxTokens: 16}
	want, err := e.Generate(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.UseDevice(ref.New(), false, nil, nil); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Device() != "ref" {
		t.Fatalf("generation is on %q, want the reference backend", e.Device())
	}
	got, err := e.Generate(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tokens) != len(want.Tokens) || got.Text != want.Text {
		t.Fatalf("device generated %v %q, CPU %v %q", got.Tokens, got.Text, want.Tokens, want.Text)
	}
	for i := range want.Tokens {
		if got.Tokens[i] != want.Tokens[i] {
			t.Fatalf("token %d: device %d, CPU %d", i, got.Tokens[i], want.Tokens[i])
		}
	}
}
