package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
	"gotune/config"
)

// TestDeviceTrainingMatchesCPU: a training run through the compute seam (the
// reference backend stands in for a GPU) logs the losses of the CPU run,
// step for step, for LoRA (and its variants), full fine-tuning, IA3, prompt
// tuning, P-tuning (MLP and LSTM encoders), prefix tuning, bottleneck
// adapters, with AdamW and SGD; a run resumed from a
// checkpoint written by the device path continues exactly; and what the
// device path cannot do yet falls back to the CPU with a note, or fails
// when the device was asked for.
func TestDeviceTrainingMatchesCPU(t *testing.T) {
	testDeviceTraining(t, func() compute.Backend { return ref.New() }, 1e-5)
}

// TestDeviceTrainingMatchesCPUOnGPU is the same on a GPU in f32 (skipped
// where there is none).
func TestDeviceTrainingMatchesCPUOnGPU(t *testing.T) {
	d := cudatest.Open(t)
	testDeviceTraining(t, func() compute.Backend { return d }, 1e-4)
}

func testDeviceTraining(t *testing.T, backend func() compute.Backend, tol float64) {
	for _, method := range [][]string{
		{"--finetuning_type", "lora", "--lora_dropout", "0"},
		// Dropout draws the CPU's masks on the device (no fused groups).
		{"--finetuning_type", "lora", "--lora_dropout", "0.1"},
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--use_dora", "true"},
		// LoRA+: the B matrices in their own arena at 16× the learning rate.
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--loraplus_lr_ratio", "16"},
		{"--finetuning_type", "full"},
		// IA3: k and v scaled at the output, down_proj at its input.
		{"--finetuning_type", "ia3"},
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--packing", "true"},
		// QLoRA: the base stays 4- or 8-bit on the device.
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--quantization_bit", "4"},
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--quantization_bit", "8"},
		// Virtual tokens, alone and through P-tuning's MLP encoder.
		{"--finetuning_type", "prompt_tuning", "--num_virtual_tokens", "4"},
		{"--finetuning_type", "p_tuning", "--num_virtual_tokens", "3", "--encoder_hidden_size", "32"},
		{"--finetuning_type", "p_tuning", "--num_virtual_tokens", "3", "--encoder_reparameterization_type", "LSTM", "--encoder_hidden_size", "16"},
		// A KV prefix, alone and through its tanh projection.
		{"--finetuning_type", "prefix_tuning", "--num_virtual_tokens", "4"},
		{"--finetuning_type", "prefix_tuning", "--num_virtual_tokens", "3", "--prefix_projection", "true", "--encoder_hidden_size", "24"},
		// Bottleneck adapters after attention and the MLP, and after the MLP
		// with GELU.
		{"--finetuning_type", "adapter", "--adapter_size", "8"},
		{"--finetuning_type", "adapter", "--adapter_size", "4", "--adapter_placement", "pfeiffer", "--adapter_activation", "gelu"},
		// SGD (with weight decay) instead of AdamW.
		{"--finetuning_type", "lora", "--lora_dropout", "0", "--optim", "sgd", "--weight_decay", "0.1"},
		{"--finetuning_type", "full", "--optim", "sgd"},
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			cpuCfg := quickConfig(t, filepath.Join(t.TempDir(), "cpu"))
			must(t, cpuCfg.ApplyFlags(method))
			want := run(t, cpuCfg)

			dirA := filepath.Join(t.TempDir(), "dev")
			cfg := quickConfig(t, dirA)
			must(t, cfg.ApplyFlags(method))
			var out strings.Builder
			tr, err := New(cfg, "", &out, Options{Backend: backend()})
			must(t, err)
			must(t, tr.Run())
			tr.Close()
			got := tr.state.LogHistory
			if b, err := os.ReadFile(filepath.Join(dirA, "trainer_log.jsonl")); err != nil || !strings.Contains(string(b), `"device_mem_peak_mb":`) {
				t.Errorf("trainer_log.jsonl lacks the device's peak memory (%v)", err)
			}
			if len(got) != len(want) {
				t.Fatalf("device run logged %d steps, CPU %d", len(got), len(want))
			}
			for i := range want {
				if e := math.Abs(got[i].Loss-want[i].Loss) / want[i].Loss; e > tol {
					t.Errorf("step %d: device loss %.8g, CPU %.8g", i+1, got[i].Loss, want[i].Loss)
				}
				if e := math.Abs(got[i].GradNorm-want[i].GradNorm) / want[i].GradNorm; e > 10*tol {
					t.Errorf("step %d: device grad norm %.8g, CPU %.8g", i+1, got[i].GradNorm, want[i].GradNorm)
				}
			}

			// Resume the device run from its checkpoint-4 on the device.
			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(dirA, "checkpoint-4"))))
			cfgB := quickConfig(t, dirB)
			must(t, cfgB.ApplyFlags(method))
			must(t, cfgB.Set("resume_from_checkpoint", "true"))
			trB, err := New(cfgB, "", nil, Options{Backend: backend()})
			must(t, err)
			must(t, trB.Run())
			trB.Close()
			resumed := trB.state.LogHistory
			for i := 4; i < len(got); i++ {
				if e := math.Abs(resumed[i].Loss-got[i].Loss) / got[i].Loss; e > tol/10 {
					t.Errorf("step %d: resumed loss %.9g, uninterrupted %.9g", i+1, resumed[i].Loss, got[i].Loss)
				}
			}
		})
	}
}

// smallDevice is a reference backend with little memory: what does not
// fit is the one thing every method can still meet on a device.
type smallDevice struct {
	compute.Backend
	left int
}

func (d *smallDevice) Alloc(dt compute.DType, n int) (compute.Tensor, error) {
	if d.left -= n * dt.Size(); d.left < 0 {
		return nil, fmt.Errorf("out of device memory allocating %d %v", n, dt)
	}
	return d.Backend.Alloc(dt, n)
}

// TestDeviceFallsBackOrRefuses: a run the device cannot hold trains on the
// fallback backend with a note (device: auto), and fails without one (the
// device was required), naming why; a run or evaluation given no backend is
// refused.
func TestDeviceFallsBackOrRefuses(t *testing.T) {
	flags := []string{"--finetuning_type", "lora", "--quantization_bit", "8"}
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "x"))
	must(t, cfg.ApplyFlags(flags))
	var out strings.Builder
	tr, err := New(cfg, "", &out, Options{Backend: &smallDevice{ref.New(), 1 << 16}, Fallback: cputest.Open()})
	must(t, err)
	if tr.dev.BackendName() != "cpu" || !strings.Contains(out.String(), "note: training on cpu") || !strings.Contains(out.String(), "out of device memory") {
		t.Errorf("want a run on the fallback with a note saying why; device %s, output %q", tr.dev.BackendName(), out.String())
	}
	must(t, tr.Run())
	tr.Close()
	cfg = quickConfig(t, filepath.Join(t.TempDir(), "y"))
	must(t, cfg.ApplyFlags(flags))
	if _, err := New(cfg, "", nil, Options{Backend: &smallDevice{ref.New(), 1 << 16}}); err == nil || !strings.Contains(err.Error(), "out of device memory") {
		t.Errorf("device required: got %v, want an error saying why", err)
	}
	if _, err := New(cfg, "", nil, Options{}); err == nil || !strings.Contains(err.Error(), "no compute backend") {
		t.Errorf("no backend: got %v, want an error saying so", err)
	}
	if _, err := Evaluate(cfg, cfg.ModelNameOrPath, "", EvalOptions{}); err == nil || !strings.Contains(err.Error(), "no compute backend") {
		t.Errorf("evaluate without a backend: got %v, want an error saying so", err)
	}
}

// TestEvaluateOnDevice: scoring through the compute seam gives the CPU's
// losses, for the base and for a fine-tune.
func TestEvaluateOnDevice(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	must(t, cfg.ApplyFlags([]string{"--max_steps", "3", "--save_steps", "100"}))
	run(t, cfg)
	for _, adapter := range []string{"", cfg.OutputDir} {
		want, err := Evaluate(cfg, cfg.ModelNameOrPath, adapter, cpuEval())
		must(t, err)
		got, err := Evaluate(cfg, cfg.ModelNameOrPath, adapter, EvalOptions{Backend: ref.New()})
		must(t, err)
		if len(got) != len(want) {
			t.Fatalf("%d results, CPU %d", len(got), len(want))
		}
		for i := range want {
			if got[i].Device != "ref" {
				t.Errorf("adapter %q: scored on %q, not the device", adapter, got[i].Device)
			}
			if got[i].Tokens != want[i].Tokens || math.Abs(got[i].Loss-want[i].Loss) > 1e-5*math.Abs(want[i].Loss) {
				t.Errorf("adapter %q, %s: device %+v, CPU %+v", adapter, want[i].Dataset, got[i], want[i])
			}
		}
	}
}

// TestDeviceTrainingFamiliesMatchesCPU: LoRA and full fine-tuning runs of
// the Gemma 2/3, Phi-3 (LongRoPE) and mixture-of-experts reference models
// go to the device and log the CPU run's losses, step for step.
func TestDeviceTrainingFamiliesMatchesCPU(t *testing.T) {
	for _, fam := range []string{"gemma2", "gemma3_text", "phi3_longrope", "qwen3_moe", "mixtral"} {
		for _, ft := range []string{"lora", "full"} {
			t.Run(fam+"/"+ft, func(t *testing.T) {
				method := []string{"--finetuning_type", ft, "--lora_dropout", "0", "--max_steps", "3", "--save_steps", "100"}
				cfg := func(dir string) *config.Config {
					c := quickConfig(t, filepath.Join(t.TempDir(), dir))
					c.ModelNameOrPath = filepath.Join("..", "testdata", "reference", fam, "model")
					must(t, c.ApplyFlags(method))
					return c
				}
				want := run(t, cfg("cpu"))
				var out strings.Builder
				tr, err := New(cfg("dev"), "", &out, Options{Backend: ref.New()})
				must(t, err)
				must(t, tr.Run())
				tr.Close()
				got := tr.state.LogHistory
				if len(got) != len(want) || len(want) == 0 {
					t.Fatalf("device run logged %d steps, CPU %d", len(got), len(want))
				}
				for i := range want {
					if e := math.Abs(got[i].Loss-want[i].Loss) / want[i].Loss; e > 1e-5 {
						t.Errorf("step %d: device loss %.8g, CPU %.8g", i+1, got[i].Loss, want[i].Loss)
					}
				}
				t.Logf("%d steps, last loss %.8g (CPU %.8g)", len(got), got[len(got)-1].Loss, want[len(want)-1].Loss)
			})
		}
	}
}
