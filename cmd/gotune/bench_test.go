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
)

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
// on the CPU and through the device block (the reference backend stands in
// for a GPU), with a finite loss and the planner's FLOPs.
func TestBenchPromptMethods(t *testing.T) {
	for _, m := range []string{"prompt", "prefix", "adapter"} {
		var out, errb bytes.Buffer
		if err := runBench([]string{"--train", m, "--shape", "tiny", "--seq", "16", "--steps", "1", "--rounds", "1"}, &out, &errb); err != nil {
			t.Fatalf("%s on the CPU: %v\n%s", m, err, errb.String())
		}
		line, err := benchDeviceShape(ref.New(), compute.F32, m, "tiny", 1, 16, 16, 1, false, false, false)
		if err != nil {
			t.Fatalf("%s on the device: %v", m, err)
		}
		loss, _ := line["loss"].(float64)
		if line["method"] != m || !(loss > 0) || math.IsInf(loss, 0) || !(line["value"].(float64) > 0) {
			t.Errorf("%s on the device: %v", m, line)
		}
	}
}

// TestBenchAdamW8bit: --optim adamw_8bit trains through the device block
// with a finite loss and reports less optimizer state than AdamW (full
// fine-tuning of the tiny shape); the CPU block refuses it.
func TestBenchAdamW8bit(t *testing.T) {
	var mib [2]float64
	for i, q8 := range []bool{false, true} {
		line, err := benchDeviceShape(ref.New(), compute.F32, "full", "tiny", 1, 16, 16, 1, false, false, q8)
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
	err := runBench([]string{"--train", "full", "--shape", "tiny", "--optim", "adamw_8bit"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--device host") {
		t.Errorf("--optim adamw_8bit on the CPU block: got %v, want an error naming --device host", err)
	}
}
