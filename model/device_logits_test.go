package model

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
)

// TestDeviceLogits: every position's logits from DeviceModel.Logits give,
// through a host log-softmax, the log-probabilities the training head
// computes for the trained tokens (TokenLogProbs): the same rows, the same
// head, Gemma 2's final soft cap, a mixture of experts' routing.
func TestDeviceLogits(t *testing.T) {
	for _, shape := range []string{"ref-qwen2", "gemma2", "qwen3_moe"} {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 21)
			b := gradBatch(m.Cfg.Vocab)
			dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			V := m.Cfg.Vocab
			lg, err := dm.Logits(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(lg) != b.B*b.T*V {
				t.Fatalf("%d logits, want %d×%d×%d", len(lg), b.B, b.T, V)
			}
			want, err := dm.TokenLogProbs(b)
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			for r := 0; r < b.B; r++ {
				for p := 0; p+1 < b.T; p++ {
					y := b.Labels[r*b.T+p+1]
					if y == IgnoreIndex {
						continue
					}
					row := lg[(r*b.T+p)*V : (r*b.T+p+1)*V]
					mx := math.Inf(-1)
					for _, v := range row {
						mx = math.Max(mx, float64(v))
					}
					var sum float64
					for _, v := range row {
						sum += math.Exp(float64(v) - mx)
					}
					got := float64(row[y]) - mx - math.Log(sum)
					if math.Abs(got-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
						t.Errorf("row %d position %d: log p %.6g from the logits, %.6g from the head", r, p, got, want[i])
					}
					i++
				}
			}
			if i != len(want) {
				t.Fatalf("%d trained tokens, TokenLogProbs gave %d", i, len(want))
			}
		})
	}
}
