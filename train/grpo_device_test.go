package train

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
)

// TestGRPOOnDeviceMatchesCPU: stage grpo through the compute seam (the
// reference backend stands in for a GPU: sampling with DeviceGroupSession,
// scoring and backward through the device scorer) samples the CPU run's
// completions and logs its rewards, losses, KL and entropies step for
// step, for LoRA (reference: adapter off; old-policy log-probabilities with
// num_iterations 2) and full fine-tuning (reference: initial weights kept on
// the device); a run resumed on the device from a checkpoint of the device
// run continues it exactly.
func TestGRPOOnDeviceMatchesCPU(t *testing.T) {
	testGRPODevice(t, func() compute.Backend { return ref.New() }, 1e-5)
}

// TestGRPOOnDeviceMatchesCPUOnGPU is the same on a GPU in f32 (skipped
// where there is none).
func TestGRPOOnDeviceMatchesCPUOnGPU(t *testing.T) {
	d := cudatest.Open(t)
	testGRPODevice(t, func() compute.Backend { return d }, 1e-4)
}

func testGRPODevice(t *testing.T, backend func() compute.Backend, tol float64) {
	for _, method := range [][]string{
		{"--finetuning_type", "lora", "--num_iterations", "2", "--beta", "0.04"},
		{"--finetuning_type", "full", "--beta", "0.04", "--learning_rate", "1e-3", "--loss_type", "dr_grpo"},
		{"--finetuning_type", "freeze", "--freeze_trainable_layers", "1", "--beta", "0.04", "--learning_rate", "1e-3", "--loss_type", "bnpo", "--scale_rewards", "none", "--num_iterations", "2"},
		// QLoRA: the 4-bit base expanded on the device; top-p sampling.
		{"--finetuning_type", "lora", "--quantization_bit", "4", "--beta", "0.04", "--temperature", "0.9", "--top_p", "0.95"},
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			// Two prompts of four completions a step; prompts of different
			// lengths decode together, so the device's key mask is used.
			flags := append([]string{"--max_steps", "5", "--save_steps", "3", "--learning_rate", "3e-3", "--num_generations", "4",
				"--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--log_completions"}, method...)
			dirC := filepath.Join(t.TempDir(), "cpu")
			cfgC := grpoConfig(t, dirC, "")
			must(t, cfgC.ApplyFlags(flags))
			trC, err := New(cfgC, "", nil, cpu())
			must(t, err)
			must(t, trC.Run())
			want := grpoLog(t, dirC)

			dirA := filepath.Join(t.TempDir(), "dev")
			cfgA := grpoConfig(t, dirA, "")
			must(t, cfgA.ApplyFlags(flags))
			var out strings.Builder
			trA, err := New(cfgA, "", &out, Options{Backend: backend()})
			must(t, err)
			must(t, trA.Run())
			if _, ok := trA.grpo.session.(interface{ Close() }); !ok {
				t.Errorf("sampled with %T, not on the device", trA.grpo.session)
			}
			trA.Close()
			got := grpoLog(t, dirA)
			if len(got) != 5 || len(want) != 5 {
				t.Fatalf("%d steps logged on the device, %d on the CPU; want 5", len(got), len(want))
			}
			for i := range want {
				for _, k := range []string{"step", "reward", "reward_std", "completions/mean_length", "num_tokens"} {
					if got[i][k] != want[i][k] {
						t.Errorf("step %d: %s %.17g on the device, %.17g on the CPU", i+1, k, got[i][k], want[i][k])
					}
				}
				// The loss sums per-token terms of about β·KL and the
				// advantages that nearly cancel: its error is relative to
				// them (0.1), not to the small sum.
				for _, k := range []string{"loss", "grad_norm", "kl", "entropy"} {
					w, g := want[i][k], got[i][k]
					if math.IsNaN(w) || math.Abs(g-w) > 10*tol*math.Max(math.Abs(w), 0.1) {
						t.Errorf("step %d: %s %.9g on the device, %.9g on the CPU", i+1, k, g, w)
					}
				}
			}
			t.Logf("device: %s", out.String())
			for i := range got {
				t.Logf("step %d: reward %.4f loss %.6g/%.6g kl %.6g/%.6g entropy %.6g/%.6g (device/CPU)", i+1, got[i]["reward"],
					got[i]["loss"], want[i]["loss"], got[i]["kl"], want[i]["kl"], got[i]["entropy"], want[i]["entropy"])
			}
			cc, cd := completionLines(t, dirC), completionLines(t, dirA)
			if len(cc) != len(cd) || len(cc) == 0 {
				t.Fatalf("%d completions logged on the device, %d on the CPU", len(cd), len(cc))
			}
			for i := range cc {
				if cc[i] != cd[i] {
					t.Fatalf("completion %d: %s on the device, %s on the CPU", i, cd[i], cc[i])
				}
			}

			// Resume the device run from its checkpoint-3, on the device.
			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-3"), os.DirFS(filepath.Join(dirA, "checkpoint-3"))))
			cfgB := grpoConfig(t, dirB, "")
			must(t, cfgB.ApplyFlags(append(flags, "--resume_from_checkpoint", "true")))
			trB, err := New(cfgB, "", nil, Options{Backend: backend()})
			must(t, err)
			must(t, trB.Run())
			trB.Close()
			resumed := grpoLog(t, dirB)
			if len(resumed) != 2 {
				t.Fatalf("%d steps logged after resuming, want 2", len(resumed))
			}
			for i, r := range resumed {
				a := got[3+i]
				for _, k := range []string{"step", "loss", "grad_norm", "reward", "kl", "entropy", "num_tokens"} {
					if math.Float64bits(a[k]) != math.Float64bits(r[k]) {
						t.Errorf("step %v: %s %.17g uninterrupted, %.17g resumed", a["step"], k, a[k], r[k])
					}
				}
			}
		})
	}
}

// TestGRPOOnDeviceBF16: in mixed precision (bf16 products, float masters)
// a device GRPO run trains: finite losses, rewards and entropies at every
// step, with the reference kept in bf16 for full tuning.
func TestGRPOOnDeviceBF16(t *testing.T) {
	for _, ft := range []string{"lora", "full"} {
		t.Run(ft, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dev")
			cfg := grpoConfig(t, dir, "")
			must(t, cfg.ApplyFlags([]string{"--max_steps", "3", "--num_generations", "4", "--per_device_train_batch_size", "4",
				"--gradient_accumulation_steps", "2", "--bf16", "true", "--beta", "0.04", "--num_iterations", "2",
				"--finetuning_type", ft, "--learning_rate", "1e-3"}))
			var out strings.Builder
			tr, err := New(cfg, "", &out, Options{Backend: ref.New()})
			must(t, err)
			if !strings.Contains(out.String(), "bf16") {
				t.Errorf("not in bf16: %s", out.String())
			}
			must(t, tr.Run())
			tr.Close()
			log := grpoLog(t, dir)
			if len(log) != 3 {
				t.Fatalf("%d steps logged, want 3", len(log))
			}
			for _, m := range log {
				for _, k := range []string{"loss", "kl", "entropy", "grad_norm"} {
					if v, ok := m[k]; !ok || math.IsNaN(v) || math.IsInf(v, 0) {
						t.Errorf("step %v: %s %v", m["step"], k, v)
					}
				}
				// A generation round every num_iterations (2) steps.
				if r, ok := m["reward"]; ok != (int(m["step"])%2 == 1) || math.IsNaN(r) {
					t.Errorf("step %v: reward %v (logged %v)", m["step"], r, ok)
				}
				if m["entropy"] <= 0 {
					t.Errorf("step %v: entropy %v", m["step"], m["entropy"])
				}
			}
			if log[1]["kl"] <= 0 {
				t.Errorf("step 2: kl %v after a step away from the reference", log[1]["kl"])
			}
		})
	}
}
