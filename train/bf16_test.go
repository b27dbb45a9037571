package train

import (
	"math"
	"path/filepath"
	"testing"

	"gotune/compute/cpu/cputest"
	"gotune/nn"
)

// TestBF16BaseOnCPU: `bf16: true` LoRA on the CPU backend loads the base in
// bf16, keeps it in 16 bits (computing in f32) and trains as the f32 base
// does up to the weights' rounding.
func TestBF16BaseOnCPU(t *testing.T) {
	flags := []string{"--finetuning_type", "lora", "--lora_dropout", "0"}
	f32Cfg := quickConfig(t, filepath.Join(t.TempDir(), "f32"))
	must(t, f32Cfg.ApplyFlags(flags))
	want := run(t, f32Cfg)

	cfg := quickConfig(t, filepath.Join(t.TempDir(), "bf16"))
	must(t, cfg.ApplyFlags(append(flags, "--bf16", "true")))
	tr, err := New(cfg, "", nil, Options{Backend: cputest.Open()})
	must(t, err)
	defer tr.Close()
	for _, l := range tr.Model.Linears() {
		if _, ok := l.W.(*nn.BF16); !ok {
			t.Fatalf("%s: not held in bf16 alone", l.Name)
		}
	}
	must(t, tr.Run())
	got := tr.state.LogHistory
	if len(got) != len(want) {
		t.Fatalf("bf16 run logged %d steps, f32 %d", len(got), len(want))
	}
	differ := false
	for i := range want {
		e := math.Abs(got[i].Loss-want[i].Loss) / want[i].Loss
		if !(e < 2e-2) {
			t.Errorf("step %d: bf16-base loss %.8g, f32 %.8g", i+1, got[i].Loss, want[i].Loss)
		}
		differ = differ || e > 0
	}
	if !differ {
		t.Error("the bf16 base trained exactly as the f32 one: the base was not rounded")
	}
}
