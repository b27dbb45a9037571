package optim

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"gotune/nn"
)

// TestMatchesTorch replays testdata/torch_optim.json, produced by real
// torch.optim (see gen_torch_optim.py): clip_grad_norm_ then step, with two
// parameter groups of different learning rates and weight decays.
func TestMatchesTorch(t *testing.T) {
	b, err := os.ReadFile("testdata/torch_optim.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]json.RawMessage
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	var about struct {
		A, C []float32
		P0   [][]float32
	}
	if err := json.Unmarshal(golden["_about"], &about); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		kind    string
		cfg     Config
		lr      float64
		groups  [2]Group // LRScale and WeightDecay; params filled in
		maxNorm float64
	}{
		{"adamw", "adamw_torch", Config{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, 1e-2,
			[2]Group{{LRScale: 1, WeightDecay: 0.01}, {LRScale: 4, WeightDecay: 0}}, 1},
		{"adamw_no_clip", "adamw_torch", Config{Beta1: 0.8, Beta2: 0.95, Eps: 1e-6}, 0.1,
			[2]Group{{WeightDecay: 0.1}, {WeightDecay: 0.1}}, 1e9},
		{"sgd_nesterov", "sgd", Config{Momentum: 0.9, Nesterov: true}, 0.05,
			[2]Group{{WeightDecay: 0.01}, {LRScale: 2}}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want struct {
				Params [][][]float64
				Norms  []float64
			}
			if err := json.Unmarshal(golden[tt.name], &want); err != nil {
				t.Fatal(err)
			}
			ps := make([]*nn.Param, len(about.P0))
			for i, v := range about.P0 {
				ps[i] = nn.NewParam(string(rune('a'+i)), len(v))
				copy(ps[i].Data, v)
				ps[i].SetTrainable(true)
			}
			groups := tt.groups
			groups[0].Params, groups[1].Params = ps[:1], ps[1:]
			opt, err := New(tt.kind, groups[:], tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			defer func() { t.Logf("max rel err vs torch %.3g", worst) }()
			for step := range want.Params {
				k := 0
				for _, p := range ps {
					for j := range p.Data {
						p.Grad[j] = about.A[k] * (p.Data[j] - about.C[k])
						k++
					}
				}
				norm := ClipGradNorm(ps, tt.maxNorm)
				if math.Abs(norm-want.Norms[step]) > 1e-6*want.Norms[step] {
					t.Errorf("step %d: norm %v, torch %v", step+1, norm, want.Norms[step])
				}
				opt.Step(tt.lr)
				for i, p := range ps {
					for j, v := range p.Data {
						ref := want.Params[step][i][j]
						worst = max(worst, math.Abs(float64(v)-ref)/max(math.Abs(ref), 0.1))
						if math.Abs(float64(v)-ref) > 1e-6*max(math.Abs(ref), 0.1) {
							t.Fatalf("step %d param %d[%d]: %v, torch %v", step+1, i, j, v, ref)
						}
					}
				}
			}
		})
	}
}
