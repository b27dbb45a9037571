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
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			// Two prompts of four completions a step; prompts of different
			// lengths decode together, so the device's key mask is used.
			flags := append([]string{"--max_steps", "5", "--save_steps", "3", "--learning_rate", "3e-3", "--num_generations", "4",
				"--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--log_completions"}, method...)
			dirC := filepath.Join(t.TempDir(), "cpu")
			cfgC := grpoConfig(t, dirC, "")
			must(t, cfgC.ApplyFlags(flags))
			trC, err := New(cfgC, "", nil)
			must(t, err)
			must(t, trC.Run())
			want := grpoLog(t, dirC)

			dirA := filepath.Join(t.TempDir(), "dev")
			cfgA := grpoConfig(t, dirA, "")
			must(t, cfgA.ApplyFlags(flags))
			var out strings.Builder
			trA, err := NewWithOptions(cfgA, "", &out, Options{Backend: backend(), Required: true})
			must(t, err)
			if trA.dev == nil {
				t.Fatalf("the run did not go to the device: %s", out.String())
			}
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
				for _, k := range []string{"loss", "grad_norm", "kl", "entropy"} {
					w, g := want[i][k], got[i][k]
					if math.IsNaN(w) || math.Abs(g-w) > 10*tol*math.Max(math.Abs(w), 1e-3) {
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
			trB, err := NewWithOptions(cfgB, "", nil, Options{Backend: backend(), Required: true})
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
