package train

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotune/ckpt"
)

var killFlags = []string{"--finetuning_type", "full", "--max_steps", "150", "--save_steps", "3",
	"--save_total_limit", "3", "--logging_steps", "2"}

// TestKillHelper is the training process TestKillAndResumeFullFineTuning
// kills; it does nothing unless started by that test.
func TestKillHelper(t *testing.T) {
	dir := os.Getenv("GOTUNE_KILL_RUN_DIR")
	if dir == "" {
		t.Skip("not a test of its own: the training process TestKillAndResumeFullFineTuning starts and kills (GOTUNE_KILL_RUN_DIR unset)")
	}
	cfg := quickConfig(t, dir)
	must(t, cfg.ApplyFlags(killFlags))
	run(t, cfg)
}

// TestKillAndResumeFullFineTuning: full fine-tuning killed with SIGKILL (at
// whatever point it reached, a checkpoint write included) and resumed logs
// the uninterrupted run's losses and ends with its weights, bit for bit.
func TestKillAndResumeFullFineTuning(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test trains the run twice (killed and whole); CI runs it without -short")
	}
	cfgA := quickConfig(t, filepath.Join(t.TempDir(), "a"))
	must(t, cfgA.ApplyFlags(killFlags))
	full := run(t, cfgA)

	dirB := filepath.Join(t.TempDir(), "b")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$")
	cmd.Env = append(os.Environ(), "GOTUNE_KILL_RUN_DIR="+dirB)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killedAt := -1
	deadline := time.After(2 * time.Minute)
poll:
	for {
		select {
		case err := <-done:
			t.Logf("the run ended before it was killed (%v); resuming then only checks the finished run", err)
			break poll
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no checkpoint-9 after 2 minutes:\n%s", out.String())
		case <-time.After(2 * time.Millisecond):
		}
		if _, step, err := ckpt.Latest(dirB); err == nil && step >= 9 {
			cmd.Process.Kill() // SIGKILL: nothing is cleaned up
			<-done
			killedAt = step
			break
		}
	}
	if _, err := os.Stat(filepath.Join(dirB, "model.safetensors")); err == nil && killedAt >= 0 {
		t.Logf("killed after the final save")
	}
	cfgB := quickConfig(t, dirB)
	must(t, cfgB.ApplyFlags(append(killFlags, "--resume_from_checkpoint", "true")))
	resumed := run(t, cfgB)
	t.Logf("killed after checkpoint-%d was complete", killedAt)
	if len(resumed) != len(full) {
		t.Fatalf("%d lines logged after resuming, %d uninterrupted", len(resumed), len(full))
	}
	for i := range full {
		if full[i].Step != resumed[i].Step || math.Float64bits(full[i].Loss) != math.Float64bits(resumed[i].Loss) {
			t.Errorf("line %d: step %d loss %.17g uninterrupted, step %d loss %.17g resumed",
				i, full[i].Step, full[i].Loss, resumed[i].Step, resumed[i].Loss)
		}
	}
	a, errA := os.ReadFile(filepath.Join(cfgA.OutputDir, "model.safetensors"))
	b, errB := os.ReadFile(filepath.Join(dirB, "model.safetensors"))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("final weights differ (%v, %v)", errA, errB)
	}
	if strings.Contains(out.String(), "panic") {
		t.Errorf("the killed run panicked:\n%s", out.String())
	}
}
