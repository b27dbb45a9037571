package plan_test

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"gotune/method"
	"gotune/model"
	"gotune/plan"
)

// goldenShapes cover biases and a tied head (ref-qwen2) and a mixture of
// experts with q/k norms (moe-8x2).
var goldenShapes = []string{"ref-qwen2", "moe-8x2"}

// goldenPlans writes the plans of the golden shapes under a few settings, as
// JSON (every number the table prints, FLOPs in full): what the planner
// must not change when its code moves.
func goldenPlans(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	settings := []struct {
		samples int64
		stage   string
		o       plan.Options
	}{
		{5_000, "", plan.Options{Batch: 1, Seq: 256}},
		{500, "", plan.Options{Batch: 2, Seq: 512, LoRARank: 8, Virtual: 10, BottleneckSize: 16, FreezeLayers: 1, Storage: model.BF16, Steps: 50}},
		{500_000, "", plan.Options{Batch: 1, Seq: 1024, SingleQuant: true, SourceBytes: 300 << 20, GOGC: 50}},
		{-1, "dpo", plan.Options{Batch: 1, Seq: 256, GOGC: -1, Steps: 10}},
		{50_000, "kto", plan.Options{Batch: 2, Seq: 128}},
	}
	for _, name := range goldenShapes {
		cfg, err := model.Shape(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range settings {
			o := s.o
			o.GFLOPS, o.NF4GFLOPS, o.MExps, o.Threads = 100, 60, 300, 4
			p, err := plan.Make(plan.Request{Model: name, Config: cfg, Samples: s.samples, RAM: 6 << 30, GPUMem: int64(i) << 30, Stage: s.stage, Options: o, Rows: method.PlanRows(), GPURows: method.GPURows()})
			if err != nil {
				t.Fatalf("%s/%d: %v", name, i, err)
			}
			fmt.Fprintf(&out, "=== %s setting %d\n", name, i)
			if err := p.WriteJSON(&out); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out.Bytes()
}

// TestGoldenPlans: the plans of testdata/plans.golden come out byte for byte.
// The planner wrote them before each method's footprint moved into package
// method (then for every named shape, tables included, equal after the move).
// GOLDEN_UPDATE=1 rewrites the file.
func TestGoldenPlans(t *testing.T) {
	got := goldenPlans(t)
	const file = "testdata/plans.golden"
	if os.Getenv("GOLDEN_UPDATE") == "1" {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("line %d differs:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%d lines, want %d", len(gl), len(wl))
	}
}
