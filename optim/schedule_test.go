package optim

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

func TestSchedulesMatchTransformers(t *testing.T) {
	b, err := os.ReadFile("testdata/schedules.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]struct {
		BaseLR float64   `json:"base_lr"`
		Warmup int       `json:"warmup"`
		Total  int       `json:"total"`
		LRs    []float64 `json:"lr_per_step"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref) < 2 {
		t.Fatalf("reference holds %d schedules, want cosine and linear", len(ref))
	}
	for kind, r := range ref {
		s, err := NewSchedule(kind, r.BaseLR, r.Warmup, r.Total)
		if err != nil {
			t.Fatal(err)
		}
		for step, want := range r.LRs {
			got := s.LR(step)
			if math.Abs(got-want) > 1e-12*math.Abs(want) {
				t.Errorf("%s step %d: lr %.17g, want %.17g", kind, step, got, want)
			}
		}
	}
}

func TestScheduleKinds(t *testing.T) {
	// Values worked out by hand from the transformers lambdas, base lr 1, warmup 2, total 10.
	tests := []struct {
		s    Schedule
		step int
		want float64
	}{
		{Schedule{Kind: "constant", Warmup: 2, Total: 10}, 0, 1},
		{Schedule{Kind: "constant_with_warmup", Warmup: 2, Total: 10}, 1, 0.5},
		{Schedule{Kind: "constant_with_warmup", Warmup: 2, Total: 10}, 50, 1},
		{Schedule{Kind: "linear", Warmup: 2, Total: 10}, 6, 0.5},
		{Schedule{Kind: "linear", Warmup: 2, Total: 10}, 12, 0},
		{Schedule{Kind: "linear", Warmup: 0, Total: 0}, 0, 0}, // max(1, total−warmup) guards the division
		{Schedule{Kind: "cosine", Warmup: 2, Total: 10}, 6, 0.5},
		{Schedule{Kind: "cosine", Warmup: 2, Total: 10}, 10, 0},
		{Schedule{Kind: "cosine_with_min_lr", Warmup: 2, Total: 10, MinLRRate: 0.1}, 10, 0.1},
		{Schedule{Kind: "cosine_with_min_lr", Warmup: 2, Total: 10, MinLRRate: 0.1}, 6, 0.55},
		{Schedule{Kind: "cosine_with_restarts", Warmup: 2, Total: 10, NumCycles: 2}, 6, 1}, // second cycle starts
		{Schedule{Kind: "cosine_with_restarts", Warmup: 2, Total: 10, NumCycles: 2}, 4, 0.5},
		{Schedule{Kind: "cosine_with_restarts", Warmup: 2, Total: 10}, 10, 0},
		{Schedule{Kind: "polynomial", Warmup: 2, Total: 10, LREnd: 0.5, Power: 2}, 6, 0.625},
		{Schedule{Kind: "polynomial", Warmup: 2, Total: 10, LREnd: 0.5}, 11, 0.5},
		{Schedule{Kind: "inverse_sqrt", Warmup: 4}, 2, 0.5},
		{Schedule{Kind: "inverse_sqrt", Warmup: 4}, 16, 0.5},
		{Schedule{Kind: "inverse_sqrt"}, 30000, 0.5},
	}
	for _, tt := range tests {
		tt.s.BaseLR = 1
		if err := tt.s.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := tt.s.LR(tt.step); math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("%+v step %d: %.17g, want %g", tt.s, tt.step, got, tt.want)
		}
	}
}

func TestScheduleValidate(t *testing.T) {
	bad := []Schedule{
		{Kind: "cosine_annealing"},
		{Kind: "linear", Warmup: -1},
		{Kind: "linear", Total: -5},
		{Kind: "polynomial", BaseLR: 1e-8},
		{Kind: "cosine_with_min_lr", MinLRRate: 1.5},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}
