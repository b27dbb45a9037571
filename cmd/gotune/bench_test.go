package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/model"
)

// TestBenchStagesAndStorage: the DPO stage and bf16 frozen weights time on
// the CPU backend (they were workspace-only), and --prepack, which tuned
// the workspace, is refused with the reason.
func TestBenchStagesAndStorage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runBench([]string{"--train", "lora", "--shape", "tiny", "--seq", "16", "--batch", "2", "--steps", "1", "--rounds", "1", "--stage", "dpo"}, &out, &errb); err != nil {
		t.Fatalf("--stage dpo: %v\n%s", err, errb.String())
	}
	var ratio map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		if v["bench"] == "dpo_over_sft" {
			ratio = v
		}
		if v["bench"] == "train_tokens_per_s" && (v["device"] != "cpu" || !(v["loss"].(float64) > 0)) {
			t.Errorf("step line %v: want the CPU backend and a positive loss", v)
		}
	}
	if ratio == nil || !(ratio["value"].(float64) > 0) {
		t.Fatalf("no dpo_over_sft ratio in:\n%s", out.String())
	}
	out.Reset()
	if err := runBench([]string{"--train", "lora", "--shape", "tiny", "--seq", "16", "--steps", "1", "--storage", "bf16"}, &out, &errb); err != nil {
		t.Fatalf("--storage bf16: %v\n%s", err, errb.String())
	}
	var v map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &v); err != nil || !(v["loss"].(float64) > 0) {
		t.Fatalf("--storage bf16: %q (%v)", out.String(), err)
	}
	if err := runBench([]string{"--train", "lora", "--shape", "tiny", "--prepack"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--prepack") {
		t.Errorf("--prepack: got %v, want an error naming it", err)
	}
}

// `bench --train --peer` runs the peer with the documented arguments and
// OpenBLAS settings, in turn with gotune's steps, and reports every round
// and a summary whose ratios come from the two sides' figures.
func TestBenchVersusPeer(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	peer := filepath.Join(dir, "peer.sh")
	script := "#!/bin/sh\necho \"$@ threads=$OPENBLAS_NUM_THREADS\" >> " + argsFile + "\n" +
		"echo 'warming up'\necho '{\"step_s\": 100, \"tokens_per_s\": 0.32, \"peak_rss_mib\": 4096}'\n"
	if err := os.WriteFile(peer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPENBLAS_NUM_THREADS", "")
	var out, errb bytes.Buffer
	err := runBench([]string{"--train", "lora", "--shape", "tiny", "--seq", "32", "--steps", "2", "--rounds", "2", "--peer", peer}, &out, &errb)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	calls, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "tiny 1 1 32 2 threads=") || strings.HasSuffix(lines[0], "threads=") {
		t.Fatalf("peer called as %q, want twice `tiny 1 1 32 2` with OPENBLAS_NUM_THREADS set", lines)
	}
	var rounds []map[string]any
	var summary map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		switch v["bench"] {
		case "train_vs_peer":
			rounds = append(rounds, v)
		case "train_vs_peer_summary":
			summary = v
		}
	}
	if len(rounds) != 2 || summary == nil {
		t.Fatalf("want 2 rounds and a summary, got:\n%s", out.String())
	}
	for _, r := range rounds {
		want := 100 / r["step_s"].(float64)
		if got := r["speedup"].(float64); got < want*0.99-0.01 || got > want*1.01+0.01 {
			t.Errorf("round speedup %v, want peer/gotune step = %v", got, want)
		}
		if r["peer_peak_rss_mib"].(float64) != 4096 {
			t.Errorf("round peer_peak_rss_mib %v, want 4096", r["peer_peak_rss_mib"])
		}
	}
	if rr := summary["rss_ratio"].(float64); rr <= 0 || rr >= 1 {
		t.Errorf("rss_ratio %v: a tiny model against 4096 MiB should be in (0, 1)", rr)
	}
	if summary["speedup_min"].(float64) > summary["speedup_max"].(float64) {
		t.Errorf("summary min above max: %v", summary)
	}
}

// A peer that prints no JSON is an error naming the command.
func TestBenchPeerBadOutput(t *testing.T) {
	peer := filepath.Join(t.TempDir(), "peer.sh")
	if err := os.WriteFile(peer, []byte("#!/bin/sh\necho 'ImportError: no module named torch'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := runBench([]string{"--train", "lora", "--shape", "tiny", "--seq", "16", "--steps", "1", "--rounds", "1", "--peer", peer}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "peer.sh") || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("err = %v, want one naming the peer and its output", err)
	}
}

// TestBenchPromptMethods: the prompt methods and bottleneck adapters time
// on the CPU backend and on the reference backend (standing in for a GPU),
// with a finite loss and the planner's FLOPs.
func TestBenchPromptMethods(t *testing.T) {
	for _, m := range []string{"prompt", "prefix", "adapter"} {
		var out, errb bytes.Buffer
		if err := runBench([]string{"--train", m, "--shape", "tiny", "--seq", "16", "--steps", "1", "--rounds", "1"}, &out, &errb); err != nil {
			t.Fatalf("%s on the CPU: %v\n%s", m, err, errb.String())
		}
		line, err := benchDeviceShape(ref.New(), compute.F32, m, "tiny", 1, 16, 16, 1, false, false, model.F32, false)
		if err != nil {
			t.Fatalf("%s on the device: %v", m, err)
		}
		loss, _ := line["loss"].(float64)
		if line["method"] != m || !(loss > 0) || math.IsInf(loss, 0) || !(line["value"].(float64) > 0) {
			t.Errorf("%s on the device: %v", m, line)
		}
	}
}

// TestBenchHostBF16Storage: `bench --device host --storage bf16` trains
// LoRA over a bf16 base on the CPU backend and says so in its line; bf16
// storage with another method is refused.
func TestBenchHostBF16Storage(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"--train", "lora", "--device", "host", "--dtype", "f32", "--storage", "bf16", "--shape", "tiny", "--seq", "16", "--steps", "1"}
	if err := runBench(args, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if loss, _ := line["loss"].(float64); line["storage"] != "bf16" || line["device"] != "cpu" || !(loss > 0) || math.IsInf(loss, 0) {
		t.Errorf("line %v: want storage bf16 on the cpu backend with a finite loss", line)
	}
	args[1] = "full"
	if err := runBench(args, &out, &errb); err == nil || !strings.Contains(err.Error(), "--storage bf16") {
		t.Errorf("full tuning with --storage bf16: error %v, want a refusal naming the flag", err)
	}
}

// TestBenchAdamW8bit: --optim adamw_8bit trains through the device block
// with a finite loss and reports less optimizer state than AdamW (full
// fine-tuning of the tiny shape), also from the command line.
func TestBenchAdamW8bit(t *testing.T) {
	var mib [2]float64
	for i, q8 := range []bool{false, true} {
		line, err := benchDeviceShape(ref.New(), compute.F32, "full", "tiny", 1, 16, 16, 1, false, false, model.F32, q8)
		if err != nil {
			t.Fatal(err)
		}
		loss, _ := line["loss"].(float64)
		if !(loss > 0) || math.IsInf(loss, 0) {
			t.Errorf("8-bit %v: loss %v", q8, line["loss"])
		}
		mib[i] = line["optimizer_state_mib"].(float64)
	}
	if !(mib[1] < mib[0]/3) {
		t.Errorf("optimizer state %.3g MiB with 8-bit moments, %.3g MiB with float ones; want under a third", mib[1], mib[0])
	}
	var out, errb bytes.Buffer
	if err := runBench([]string{"--train", "full", "--shape", "tiny", "--seq", "16", "--steps", "1", "--optim", "adamw_8bit"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"optim":"adamw_8bit"`) {
		t.Errorf("the step line does not say adamw_8bit: %s", out.String())
	}
	if err := runBench([]string{"--train", "full", "--shape", "tiny", "--optim", "adam"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--optim") {
		t.Errorf("--optim adam: got %v, want an error naming the flag", err)
	}
}
