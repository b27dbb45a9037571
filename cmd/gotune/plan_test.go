package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gotune/method"
	"gotune/model"
	"gotune/plan"
)

// buildGotune compiles this command into a temporary folder, so memory is
// measured on the real binary in its own process.
func buildGotune(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found: cannot build gotune to measure its memory")
	}
	bin := filepath.Join(t.TempDir(), "gotune")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestPlanMatchesMeasuredRSS runs real training steps (gotune bench
// --train) in a subprocess and compares its peak resident size (VmHWM)
// with the planner's estimate for the same run: within 20%. Full
// fine-tuning runs with 8-bit AdamW too (a quarter of the float state, 0.8
// GiB less for smollm2-135m), and bench's optimizer_state_mib, counted
// from the tensors it trains, must be the planner's to the byte.
func TestPlanMatchesMeasuredRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peak RSS is read from /proc (Linux only)")
	}
	bin := buildGotune(t)
	type tc struct {
		shape, method string
		ckpt          bool
		steps, seq    int
		adam8         bool
	}
	var cases []tc
	for _, s := range []string{"ref-qwen3", "ref-llama", "ref-qwen2", "smollm2-135m"} {
		for _, m := range []string{"full", "lora", "qlora"} {
			cases = append(cases, tc{s, m, false, 1, 256, false})
		}
		cases = append(cases, tc{s, "full", false, 1, 256, true})
	}
	// Checkpointing, and enough steps for the collector's headroom to fill.
	cases = append(cases, tc{"ref-qwen3", "lora", true, 1, 1024, false}, tc{"tiny", "full", true, 1, 512, false}, tc{"tiny", "full", false, 40, 256, false})
	for _, c := range cases {
		optim := map[bool]string{false: "adamw_torch", true: "adamw_8bit"}[c.adam8]
		name := fmt.Sprintf("%s/%s/%s/seq=%d/steps=%d/ckpt=%v", c.shape, c.method, optim, c.seq, c.steps, c.ckpt)
		t.Run(name, func(t *testing.T) {
			if c.shape == "smollm2-135m" && testing.Short() {
				t.Skip("smollm2-135m training steps take about a minute in all; skipped with -short")
			}
			args := []string{"bench", "--train", c.method, "--shape", c.shape,
				"--batch", "1", "--seq", fmt.Sprint(c.seq), "--steps", fmt.Sprint(c.steps), "--lora-rank", "16", "--optim", optim}
			if c.ckpt {
				args = append(args, "--checkpoint")
			}
			cmd := exec.Command(bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("gotune bench: %v\n%s", err, stderr.String())
			}
			var res struct {
				PeakMiB  int64   `json:"peak_rss_mib"`
				StepS    float64 `json:"step_s"`
				Threads  int     `json:"threads"`
				StateMiB float64 `json:"optimizer_state_mib"`
			}
			if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
				t.Fatalf("bench output %q: %v", out, err)
			}
			cfg, err := model.Shape(c.shape)
			if err != nil {
				t.Fatal(err)
			}
			row, err := method.PlanRow(c.method)
			if err != nil {
				t.Fatal(err)
			}
			// bench quantizes without double quantization and runs one
			// warm-up step before the timed ones.
			e, err := plan.EstimateMethod(cfg, row, plan.Options{Batch: 1, Seq: c.seq, LoRARank: 16,
				SingleQuant: true, Steps: int64(c.steps) + 1, Threads: res.Threads, GOGC: gogc(), Adam8bit: c.adam8})
			if err != nil {
				t.Fatal(err)
			}
			if est := float64(e.Memory.Optimizer) / (1 << 20); res.StateMiB != est {
				t.Errorf("bench's optimizer state %v MiB, the planner's %v MiB", res.StateMiB, est)
			}
			mem := e.Memory
			if c.ckpt {
				mem = e.MemoryCheckpoint
			}
			est := float64(mem.Total) / (1 << 20)
			rel := est/float64(res.PeakMiB) - 1
			t.Logf("%s: measured %d MiB, estimated %.0f MiB (%+.1f%%); step %.2f s measured", name, res.PeakMiB, est, 100*rel, res.StepS)
			if rel > 0.2 || rel < -0.2 {
				t.Errorf("estimate %.0f MiB is %+.1f%% off the measured peak %d MiB (limit ±20%%)", est, 100*rel, res.PeakMiB)
			}
		})
	}
}

// gogc mirrors the collector setting the subprocess inherits.
func gogc() int {
	switch g := os.Getenv("GOGC"); g {
	case "":
		return 0
	case "off":
		return -1
	default:
		var v int
		for _, r := range g {
			if r < '0' || r > '9' {
				return 0
			}
			v = v*10 + int(r-'0')
		}
		return v
	}
}

// TestPlanCommand runs the command end to end on a named shape with fixed
// throughputs (no probe) and checks the table and the JSON.
func TestPlanCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	if err := os.WriteFile(data, []byte("{\"instruction\":\"a\"}\n\n{\"instruction\":\"b\"}\n{\"instruction\":\"c\"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    []string // substrings of the output
		wantErr string
	}{
		{"table", []string{"--shape", "smollm2-135m", "--dataset", data, "--ram", "8G", "--seq", "256", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100"},
			[]string{"3 samples", "recommended: ia3", "LoRA rank 4, not 16", "qlora-nf4", "bottleneck", "prefix-tuning"}, ""},
		{"json", []string{"--shape", "smollm2-135m", "--samples", "500000", "--ram", "64G", "--seq", "256", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100", "--json"},
			[]string{`"recommended": "full"`, `"samples": 500000`}, ""},
		{"nothing fits", []string{"--shape", "qwen3-0.6b", "--samples", "50000", "--ram", "1G", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100"},
			[]string{"recommended: none", "no method fits"}, ""},
		{"dpo", []string{"--shape", "smollm2-135m", "--dataset", data, "--stage", "dpo", "--ram", "8G", "--seq", "256", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100"},
			[]string{"stage dpo: 3 pairs", "gotune data inspect", "reference: the base with the adapter off"}, ""},
		{"8-bit adamw", []string{"--shape", "smollm2-135m", "--samples", "500000", "--ram", "64G", "--seq", "256", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100", "--json", "--optim", "paged_adamw_8bit"},
			[]string{`"optimizer": 273443328`, `"optim": "adamw_8bit"`}, ""},
		{"8-bit adamw table", []string{"--shape", "tiny", "--samples", "50", "--ram", "8G", "--seq", "256", "--gflops", "100", "--nf4-gflops", "80", "--mexps", "100", "--optim", "adamw_8bit"},
			[]string{"8-bit AdamW state"}, ""},
		{"bad optim", []string{"--shape", "tiny", "--optim", "adafactor"}, nil, `--optim "adafactor"`},
		{"bad stage", []string{"--shape", "tiny", "--stage", "ppo"}, nil, `--stage "ppo"`},
		{"no model", []string{"--samples", "5"}, nil, "give --model DIR or --shape NAME"},
		{"bad ram", []string{"--shape", "tiny", "--ram", "lots"}, nil, "--ram"},
		{"bad dataset", []string{"--shape", "tiny", "--dataset", filepath.Join(dir, "x.csv")}, nil, "x.csv"},
		{"both", []string{"--shape", "tiny", "--dataset", data, "--samples", "3"}, nil, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runPlan(tt.args, &out, &errb)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v\n%s", err, errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
