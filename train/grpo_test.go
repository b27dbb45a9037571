package train

import (
	"bytes"
	"os/exec"
	"time"

	"encoding/json"
	"fmt"
	"gotune/ckpt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/config"
)

// grpoTask writes a synthetic verifiable task: prompts asking for a number,
// each with an answer column.
func grpoTask(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(dir, 0o755))
	var recs []map[string]any
	words := []string{"apples", "birds", "cats", "dogs", "eggs", "frogs", "goats", "hats", "ink pots", "jars", "keys", "lamps"}
	for i := range n {
		w := words[i%len(words)]
		recs = append(recs, map[string]any{"prompt": fmt.Sprintf("How many %s are in box %d? Answer with a number.", w, i), "answer": fmt.Sprint(i % 10)})
	}
	b, err := json.Marshal(recs)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "count.json"), b, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "dataset_info.json"), []byte(`{"count": {"file_name": "count.json"}}`), 0o644))
	return dir
}

func grpoConfig(t *testing.T, out string, extra string) *config.Config {
	t.Helper()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	must(t, err)
	y := fmt.Sprintf(`model_name_or_path: %s
dataset_dir: %s
dataset: count
stage: grpo
finetuning_type: lora
lora_rank: 8
lora_alpha: 16
output_dir: %s
num_generations: 8
max_completion_length: 8
per_device_train_batch_size: 16
gradient_accumulation_steps: 2
learning_rate: 2.0e-2
lr_scheduler_type: constant
max_steps: 30
logging_steps: 1
save_steps: 1000
progress: none
seed: 7
reward_funcs:
  - name: capital
    type: regex
    pattern: '^\s*[A-Z]'
`, modelDir, grpoTask(t, 64), out) + extra
	cfg, err := config.Parse([]byte(y), "grpo.yaml")
	must(t, err)
	return cfg
}

// grpoLog reads a run's trainer_log.jsonl.
func grpoLog(t *testing.T, dir string) []map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "trainer_log.jsonl"))
	must(t, err)
	var out []map[string]float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var raw map[string]any
		must(t, json.Unmarshal([]byte(line), &raw))
		m := map[string]float64{}
		for k, v := range raw {
			if f, ok := v.(float64); ok {
				m[k] = f
			}
		}
		out = append(out, m)
	}
	return out
}

// On the bundled tiny model (random weights), a task the starting policy
// rarely solves — the answer must start with a capital letter — is learnt
// within a few steps: the sampled reward and the greedy reward on held-out
// prompts both rise from under 0.3 to over 0.8. Every metric TRL logs is
// in trainer_log.jsonl.
func TestGRPOLearns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := grpoConfig(t, out, "")
	must(t, cfg.ApplyFlags([]string{"--max_steps", "12", "--learning_rate", "3e-3", "--val_size", "16",
		"--eval_strategy", "steps", "--eval_steps", "6", "--beta", "0.02", "--log_completions"}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
	var rewards []float64
	var evals [][2]float64
	for _, m := range grpoLog(t, out) {
		if r, ok := m["reward"]; ok {
			rewards = append(rewards, r)
			for _, k := range []string{"loss", "grad_norm", "reward_std", "rewards/capital/mean", "rewards/capital/std",
				"frac_reward_zero_std", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
				"completions/mean_length", "completions/min_length", "completions/max_length", "completions/clipped_ratio",
				"gen_tokens_per_s", "gen_share", "num_tokens", "entropy"} {
				if _, ok := m[k]; !ok {
					t.Errorf("step %v: no %s logged", m["step"], k)
				}
			}
		}
		if r, ok := m["eval_reward"]; ok {
			evals = append(evals, [2]float64{m["step"], r})
		}
	}
	t.Logf("reward per step %.3f; held-out reward (step, reward) %v", rewards, evals)
	if len(rewards) != 12 {
		t.Fatalf("%d steps logged a reward, want 12", len(rewards))
	}
	first, last := rewards[0], (rewards[9]+rewards[10]+rewards[11])/3
	if first >= 0.4 || last <= 0.8 {
		t.Errorf("reward did not rise: step 1 %.3f, steps 10–12 %.3f", first, last)
	}
	if len(evals) != 3 || evals[0][0] != 0 || evals[0][1] >= 0.3 || evals[2][1] <= 0.8 {
		t.Errorf("held-out reward %v: want step 0 under 0.3 and step 12 over 0.8", evals)
	}
	for _, f := range []string{"adapter_model.safetensors", "training_reward.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("no %s written: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "completions.jsonl"))
	must(t, err)
	if n := strings.Count(string(b), "\n"); n != 12*32 {
		t.Errorf("completions.jsonl has %d lines, want %d", n, 12*32)
	}
}

// A run resumed from a checkpoint logs the uninterrupted run's losses,
// rewards and KL bit for bit: the checkpoint carries the sampler's random
// state and, taken in the middle of a generation batch reused for
// num_iterations steps, that batch with its old-policy and reference
// log-probabilities. LoRA and QLoRA (reference: adapter off) and full and
// freeze tuning (reference: the initial weights) alike.
func TestGRPOResumeMatchesUninterrupted(t *testing.T) {
	for _, method := range [][]string{
		{"--finetuning_type", "lora", "--num_iterations", "2", "--beta", "0.04", "--loss_type", "grpo"},
		{"--finetuning_type", "full", "--beta", "0.04", "--learning_rate", "1e-3", "--loss_type", "dr_grpo", "--epsilon_high", "0.28"},
		{"--finetuning_type", "freeze", "--freeze_trainable_layers", "1", "--num_iterations", "3", "--loss_type", "bnpo", "--scale_rewards", "none", "--mask_truncated_completions"},
		{"--finetuning_type", "lora", "--quantization_bit", "4", "--beta", "0.04", "--scale_rewards", "batch", "--temperature", "0.9", "--top_p", "0.95"},
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			flags := append([]string{"--max_steps", "7", "--save_steps", "3", "--learning_rate", "3e-3"}, method...)
			dirA := filepath.Join(t.TempDir(), "a")
			cfgA := grpoConfig(t, dirA, "")
			must(t, cfgA.ApplyFlags(flags))
			trA, err := New(cfgA, "", nil, cpu())
			must(t, err)
			must(t, trA.Run())
			full := grpoLog(t, dirA)

			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-3"), os.DirFS(filepath.Join(dirA, "checkpoint-3"))))
			cfgB := grpoConfig(t, dirB, "")
			must(t, cfgB.ApplyFlags(append(flags, "--resume_from_checkpoint", "true")))
			trB, err := New(cfgB, "", nil, cpu())
			must(t, err)
			must(t, trB.Run())
			resumed := grpoLog(t, dirB)
			if len(full) != 7 || len(resumed) != 4 {
				t.Fatalf("%d steps logged uninterrupted (want 7), %d resumed (want 4)", len(full), len(resumed))
			}
			for i, r := range resumed {
				a := full[3+i]
				for _, k := range []string{"step", "loss", "grad_norm", "reward", "kl", "clip_ratio/region_mean", "completions/mean_length", "num_tokens"} {
					if math.Float64bits(a[k]) != math.Float64bits(r[k]) {
						t.Errorf("step %v: %s %.17g uninterrupted, %.17g resumed", a["step"], k, a[k], r[k])
					}
				}
			}
		})
	}
}

// Configurations stage grpo cannot run are refused with the reason.
func TestGRPORefuses(t *testing.T) {
	cases := []struct {
		flags []string
		opts  Options
		want  string
	}{
		{[]string{"--lora_dropout", "0.1"}, cpu(), "lora_dropout"},
		{[]string{"--finetuning_type", "prompt_tuning"}, cpu(), "finetuning_type prompt_tuning is not supported; use full, freeze, lora"},
		// What the device cannot hold fails when there is no fallback.
		{nil, Options{Backend: &smallDevice{ref.New(), 1 << 16}}, "out of device memory"},
		{[]string{"--max_completion_length", "600"}, cpu(), "context of 512"},
		{[]string{"--gradient_accumulation_steps", "40"}, cpu(), "fewer than the 80 prompts"},
		{[]string{"--reward_funcs", "[{type: match, column: solution}]"}, cpu(), `reward match_0 reads column "solution", which 64 of 64 records lack (`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			cfg := grpoConfig(t, filepath.Join(t.TempDir(), "out"), "")
			must(t, cfg.ApplyFlags(append([]string{"--max_steps", "1"}, c.flags...)))
			tr, err := New(cfg, "", nil, c.opts)
			if err == nil {
				err = tr.Run()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	// device: auto falls back to the CPU backend with a note.
	cfg := grpoConfig(t, filepath.Join(t.TempDir(), "out"), "")
	must(t, cfg.ApplyFlags([]string{"--max_steps", "1"}))
	var out strings.Builder
	tr, err := New(cfg, "", &out, Options{Backend: &smallDevice{ref.New(), 1 << 16}, Fallback: cputest.Open()})
	if err != nil || tr.dev.BackendName() != "cpu" || !strings.Contains(out.String(), "note: training on cpu: ref cannot run this") {
		t.Errorf("device auto: err %v, output %q", err, out.String())
	}
}

// A reward that fails stops training with the failing sample named,
// instead of training on zeros.
func TestGRPORewardFailureStops(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := grpoConfig(t, out, "")
	must(t, cfg.ApplyFlags([]string{"--max_steps", "2", "--reward_funcs", `[{type: command, command: [sh, -c, "while read l; do echo 1; done; echo oops"]}]`}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	err = tr.Run()
	if err == nil || !strings.Contains(err.Error(), "step 1") || !strings.Contains(err.Error(), "count.json") {
		t.Errorf("error %v: want the step and the sample's record", err)
	}
}

// The README's example on a real pretrained model (examples/grpo): from
// stories260K, which names the counted thing about one time in ten, 30 GRPO
// steps bring the mean reward on 64 held-out prompts over 0.8.
func TestGRPOExampleStories(t *testing.T) {
	modelDir := realModelDir(t)
	if testing.Short() {
		t.Skip("-short: 30 GRPO steps on the real model (about 15 s); CI runs it without -short")
	}
	cfg, err := config.Load(filepath.Join("..", "examples", "grpo", "grpo.yaml"))
	must(t, err)
	out := filepath.Join(t.TempDir(), "out")
	cfg.ModelNameOrPath, cfg.DatasetDir, cfg.OutputDir = modelDir, filepath.Join("..", "examples", "grpo"), out
	must(t, cfg.Set("progress", "none"))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
	var evals []float64
	for _, m := range grpoLog(t, out) {
		if r, ok := m["eval_reward"]; ok {
			evals = append(evals, r)
		}
	}
	t.Logf("held-out reward at steps 0, 10, 20, 30: %.3f", evals)
	if len(evals) != 4 || evals[0] >= 0.2 || evals[3] <= 0.8 {
		t.Errorf("held-out reward %v: want under 0.2 at step 0 and over 0.8 at step 30", evals)
	}
}

// gotune data inspect for a grpo configuration: the prompts as they will be
// rendered, and the columns rewards read checked in every record.
func TestInspectPrompts(t *testing.T) {
	cfg := grpoConfig(t, filepath.Join(t.TempDir(), "out"), "")
	must(t, cfg.ApplyFlags([]string{"--val_size", "0.25"}))
	var out strings.Builder
	must(t, InspectPrompts(cfg, &out))
	for _, want := range []string{"64 prompts (48 for training, 16 held out)", "prompt tokens: min", "<|im_start|>user\nHow many", "reward capital: type regex"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	must(t, cfg.ApplyFlags([]string{"--reward_funcs", "[{type: tool_call}]"}))
	if err := InspectPrompts(cfg, &out); err == nil || !strings.Contains(err.Error(), `column "tools"`) || !strings.Contains(err.Error(), "count.json") {
		t.Errorf("missing tools column: %v", err)
	}
}

// Epochs count passes over the training prompts: num_train_epochs sets the
// length, and save_strategy/eval_strategy epoch act at their ends.
func TestGRPOEpochs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfg := grpoConfig(t, out, "")
	// 48 training prompts, 4 a step: 12 steps an epoch, 18 in 1.5 epochs.
	must(t, cfg.ApplyFlags([]string{"--max_steps", "-1", "--num_train_epochs", "1.5", "--val_size", "16",
		"--save_strategy", "epoch", "--eval_strategy", "epoch", "--logging_steps", "6", "--report_to", "tensorboard"}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	if tr.Total() != 18 {
		t.Fatalf("%d steps, want 18", tr.Total())
	}
	must(t, tr.Run())
	if _, err := os.Stat(filepath.Join(out, "checkpoint-12", grpoStateFile)); err != nil {
		t.Errorf("no checkpoint at the end of the first epoch: %v", err)
	}
	var evalSteps, logSteps []float64
	for _, m := range grpoLog(t, out) {
		if _, ok := m["eval_reward"]; ok {
			evalSteps = append(evalSteps, m["step"])
		} else {
			logSteps = append(logSteps, m["step"])
		}
	}
	ev, _ := filepath.Glob(filepath.Join(out, "events.out.tfevents.*"))
	if len(ev) != 1 {
		t.Errorf("TensorBoard event files %v, want one", ev)
	} else if b, _ := os.ReadFile(ev[0]); !bytes.Contains(b, []byte("rewards/capital/mean")) || !bytes.Contains(b, []byte("eval_reward")) {
		t.Errorf("the event file lacks the reward tags")
	}
	if fmt.Sprint(evalSteps) != "[0 12 18]" || fmt.Sprint(logSteps) != "[6 12 18]" {
		t.Errorf("evaluated at steps %v, logged at %v; want [0 12 18] and [6 12 18]", evalSteps, logSteps)
	}
}

var grpoKillFlags = []string{"--max_steps", "40", "--save_steps", "3", "--num_iterations", "2", "--beta", "0.04",
	"--learning_rate", "3e-3", "--save_total_limit", "2", "--log_completions"}

// TestGRPOKillHelper is the run TestGRPOKillAndResume kills; it does
// nothing unless started by that test.
func TestGRPOKillHelper(t *testing.T) {
	dir := os.Getenv("GOTUNE_GRPO_KILL_DIR")
	if dir == "" {
		t.Skip("not a test of its own: the training process TestGRPOKillAndResume starts and kills (GOTUNE_GRPO_KILL_DIR unset)")
	}
	cfg := grpoConfig(t, dir, "")
	must(t, cfg.ApplyFlags(grpoKillFlags))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
}

// A GRPO run killed with SIGKILL once a checkpoint mid-generation-batch is
// written, then resumed, logs every step as the uninterrupted run does, bit
// for bit (losses, rewards, KL), saves the same adapter and has logged the
// same completions.
func TestGRPOKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test trains the run twice (killed and whole); CI runs it without -short")
	}
	dirA := filepath.Join(t.TempDir(), "a")
	cfgA := grpoConfig(t, dirA, "")
	must(t, cfgA.ApplyFlags(grpoKillFlags))
	trA, err := New(cfgA, "", nil, cpu())
	must(t, err)
	must(t, trA.Run())
	full := grpoLog(t, dirA)

	dirB := filepath.Join(t.TempDir(), "b")
	cmd := exec.Command(os.Args[0], "-test.run=^TestGRPOKillHelper$")
	cmd.Env = append(os.Environ(), "GOTUNE_GRPO_KILL_DIR="+dirB)
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
			t.Fatalf("no checkpoint-15 after 2 minutes:\n%s", out.String())
		case <-time.After(2 * time.Millisecond):
		}
		// An odd step: the checkpoint holds a half-used generation batch.
		if _, step, err := ckpt.Latest(dirB); err == nil && step >= 15 {
			cmd.Process.Kill()
			<-done
			killedAt = step
			break
		}
	}
	t.Logf("killed after checkpoint-%d", killedAt)
	cfgB := grpoConfig(t, dirB, "")
	must(t, cfgB.ApplyFlags(append(grpoKillFlags, "--resume_from_checkpoint", "true")))
	trB, err := New(cfgB, "", nil, cpu())
	must(t, err)
	must(t, trB.Run())
	resumed := grpoLog(t, dirB)
	if len(resumed) != len(full) {
		t.Fatalf("%d lines logged after resuming, %d uninterrupted", len(resumed), len(full))
	}
	for i := range full {
		for _, k := range []string{"step", "loss", "reward", "kl", "grad_norm"} {
			if math.Float64bits(full[i][k]) != math.Float64bits(resumed[i][k]) {
				t.Errorf("line %d: %s %.17g uninterrupted, %.17g resumed", i, k, full[i][k], resumed[i][k])
			}
		}
	}
	a, errA := os.ReadFile(filepath.Join(dirA, "adapter_model.safetensors"))
	b, errB := os.ReadFile(filepath.Join(dirB, "adapter_model.safetensors"))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("final adapters differ (%v, %v)", errA, errB)
	}
	// The same completions, once each ("where" names each run's own copy
	// of the dataset).
	ca, cb := completionLines(t, dirA), completionLines(t, dirB)
	if len(ca) != 40/2*32 || len(ca) != len(cb) {
		t.Fatalf("%d completions logged uninterrupted, %d resumed; want %d", len(ca), len(cb), 40/2*32)
	}
	for i := range ca {
		if ca[i] != cb[i] {
			t.Fatalf("completion %d: %s uninterrupted, %s resumed", i, ca[i], cb[i])
		}
	}
}

// completionLines reads completions.jsonl without each line's "where".
func completionLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "completions.jsonl"))
	must(t, err)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		must(t, json.Unmarshal([]byte(line), &rec))
		delete(rec, "where")
		j, err := json.Marshal(rec)
		must(t, err)
		out = append(out, string(j))
	}
	return out
}

// Each way of drawing a token samples softmax(logits/temperature), cut by
// top-k/top-p as configured: frequencies over many draws against the
// distribution, and greedy at temperature 0.
func TestDrawer(t *testing.T) {
	logits := []float32{0.5, 2, -1, 1.2, 0}
	const temp, n = 0.7, 200000
	softmax := func(keep []int) []float64 {
		p := make([]float64, len(logits))
		var sum float64
		for _, i := range keep {
			p[i] = math.Exp(float64(logits[i]) / temp)
			sum += p[i]
		}
		for i := range p {
			p[i] /= sum
		}
		return p
	}
	cases := []struct {
		name string
		topP float64
		topK int
		want []float64
	}{
		{"plain", 1, 0, softmax([]int{0, 1, 2, 3, 4})},
		{"top_k 2", 1, 2, softmax([]int{1, 3})},
		{"top_p 0.95", 0.95, 0, softmax([]int{1, 3, 0})}, // the smallest set reaching 0.95
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			draw := newDrawer(temp, c.topP, c.topK, rand.New(rand.NewPCG(1, 2)))
			counts := make([]float64, len(logits))
			for range n {
				counts[draw(append([]float32(nil), logits...))]++
			}
			for i := range counts {
				if got := counts[i] / n; math.Abs(got-c.want[i]) > 0.005 {
					t.Errorf("token %d drawn %.4f of the time, want %.4f", i, got, c.want[i])
				}
			}
		})
	}
	if got := newDrawer(0, 1, 0, nil)(logits); got != 1 {
		t.Errorf("greedy drew %d, want 1", got)
	}
}

// Resuming drops the completions a killed run logged after its checkpoint
// (and a line torn by the kill), keeping the rounds the checkpoint covers.
func TestTrimCompletions(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for step := 1; step <= 6; step += 2 { // rounds generated at steps 1, 3, 5
		fmt.Fprintf(&b, "{\"step\":%d,\"completion\":\"a\"}\n{\"step\":%d,\"completion\":\"b\"}\n", step, step)
	}
	b.WriteString(`{"step":7,"compl`) // torn
	path := filepath.Join(dir, "completions.jsonl")
	must(t, os.WriteFile(path, []byte(b.String()), 0o644))
	tr := &Trainer{Cfg: &config.Config{}}
	tr.Cfg.OutputDir = dir
	tr.state.GlobalStep = 4 // mid-round: the round of step 3 is in the checkpoint
	must(t, tr.trimCompletions())
	got, err := os.ReadFile(path)
	must(t, err)
	want := "{\"step\":1,\"completion\":\"a\"}\n{\"step\":1,\"completion\":\"b\"}\n{\"step\":3,\"completion\":\"a\"}\n{\"step\":3,\"completion\":\"b\"}\n"
	if string(got) != want {
		t.Errorf("kept %q, want %q", got, want)
	}
}
