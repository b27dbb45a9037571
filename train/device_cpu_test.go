package train

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// TestDeviceTrainingMatchesCPUOnHost: the training runs of
// TestDeviceTrainingMatchesCPU through the CPU backend.
func TestDeviceTrainingMatchesCPUOnHost(t *testing.T) {
	testDeviceTraining(t, func() compute.Backend { return cputest.Open() }, 1e-5)
}

// TestGRPOOnDeviceMatchesCPUOnHost: GRPO's sampling, scoring and backward
// through the CPU backend give the CPU run's completions and losses.
func TestGRPOOnDeviceMatchesCPUOnHost(t *testing.T) {
	testGRPODevice(t, func() compute.Backend { return cputest.Open() }, 1e-4)
}

// TestDeviceTrainingBF16BaseOnHost: `bf16: true` LoRA through the CPU
// backend loads the base in bf16 and trains over it read in place (16-bit
// weights, bf16 compute), close to the CPU trainer's f32 compute over the
// same bf16 base.
func TestDeviceTrainingBF16BaseOnHost(t *testing.T) {
	flags := []string{"--finetuning_type", "lora", "--lora_dropout", "0", "--bf16", "true"}
	cpuCfg := quickConfig(t, filepath.Join(t.TempDir(), "cpu"))
	must(t, cpuCfg.ApplyFlags(flags))
	want := run(t, cpuCfg)
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "dev"))
	must(t, cfg.ApplyFlags(flags))
	var out strings.Builder
	tr, err := NewWithOptions(cfg, "", &out, Options{Backend: cputest.Open(), Required: true})
	must(t, err)
	if tr.dev == nil {
		t.Fatalf("the run did not go to the device: %s", out.String())
	}
	for _, l := range tr.Model.Linears() {
		if l.WBF16 == nil {
			t.Fatalf("%s: not loaded in bf16", l.Name)
		}
	}
	must(t, tr.Run())
	tr.Close()
	got := tr.state.LogHistory
	if len(got) != len(want) {
		t.Fatalf("device run logged %d steps, CPU %d", len(got), len(want))
	}
	for i := range want {
		if e := math.Abs(got[i].Loss-want[i].Loss) / want[i].Loss; !(e < 2e-2) {
			t.Errorf("step %d: device loss %.8g, CPU %.8g", i+1, got[i].Loss, want[i].Loss)
		}
	}
}
