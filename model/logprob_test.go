package model

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/nn"
)

// TokenLogProbs are the negated per-token losses: they sum to −Loss, and
// BackwardTokens with every coefficient −1 gives Step's gradients.
func TestTokenLogProbsAreNegatedLosses(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-qwen3", 4)
		setTrainable(m)
		b := gradBatch(m.Cfg.Vocab)
		w := newDM(t, m, be, DeviceOptions{})
		loss, n := mustStep(t, w, b, 1)
		want := deviceGrads(t, w, m.Params())
		w.ZeroGrad()
		lp := mustLogProbs(t, w, b)
		if len(lp) != n {
			t.Fatalf("%d log-probabilities for %d trained tokens", len(lp), n)
		}
		var sum float64
		for _, v := range lp {
			if v > 0 {
				t.Fatalf("log-probability %v > 0", v)
			}
			sum += v
		}
		// The device sums each token's float32 loss in float64 either way.
		if math.Abs(sum+loss) > 1e-9*math.Abs(loss) {
			t.Fatalf("Σ log p = %v, loss %v", sum, loss)
		}
		rows := w.TokenRows()
		// gradBatch: row 0 has 8 targets minus one ignored, row 1 five.
		counts := map[int]int{}
		for _, r := range rows {
			counts[r]++
		}
		if counts[0] != 7 || counts[1] != 5 || !sortedInts(rows) {
			t.Fatalf("token rows %v", rows)
		}
		coef := make([]float32, len(lp))
		for i := range coef {
			coef[i] = -1
		}
		if err := w.BackwardTokens(coef); err != nil {
			t.Fatal(err)
		}
		got := deviceGrads(t, w, m.Params())
		for i, p := range m.Params() {
			if e := relDiff(got[i], want[i]); e > 1e-6 {
				t.Errorf("%s: BackwardTokens(−1) differs from Step by %.2g", p.Name, e)
			}
		}
	})
}

// The gradient of a loss over whole sequences (here a DPO-like
// logsigmoid of the difference of two rows' summed log-probabilities,
// nonlinear in them) checked by finite differences through BackwardTokens.
func TestBackwardTokensFiniteDifference(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-llama", 5)
		setTrainable(m)
		b := gradBatch(m.Cfg.Vocab)
		w := newDM(t, m, be, DeviceOptions{})
		const beta = 0.7
		seqLoss := func(lp []float64, rows []int) (float64, float64) {
			var s [2]float64
			for i, v := range lp {
				s[rows[i]] += v
			}
			z := beta * (s[0] - s[1])
			// −log σ(z) and its derivative in z.
			return math.Log1p(math.Exp(-z)), -1 / (1 + math.Exp(z))
		}
		loss := func() float64 {
			lp := mustLogProbs(t, w, b)
			l, _ := seqLoss(lp, w.TokenRows())
			return l
		}
		lp := mustLogProbs(t, w, b)
		rows := w.TokenRows()
		_, dz := seqLoss(lp, rows)
		coef := make([]float32, len(lp))
		for i, r := range rows {
			coef[i] = float32(dz * beta)
			if r == 1 {
				coef[i] = -coef[i]
			}
		}
		if err := w.BackwardTokens(coef); err != nil {
			t.Fatal(err)
		}
		checkDirectional(t, w, m, loss)
	})
}

// With adapters switched off the model scores as its base, and switching
// them back on restores the adapted scores.
func TestWithoutAdapters(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-qwen2", 6)
		b := gradBatch(m.Cfg.Vocab)
		base, _ := mustLoss(t, newDM(t, m, be, DeviceOptions{Inference: true}), b)
		for _, l := range m.Linears() {
			l.Adapter = shiftLoRA(l, 0.05)
		}
		w := newDM(t, m, be, DeviceOptions{Inference: true})
		adapted, _ := mustLoss(t, w, b)
		if adapted == base {
			t.Fatal("the test adapter changes nothing")
		}
		restore := w.WithoutAdapters()
		if off, _ := mustLoss(t, w, b); off != base {
			t.Errorf("adapters off: loss %v, base %v", off, base)
		}
		restore()
		if on, _ := mustLoss(t, w, b); on != adapted {
			t.Errorf("adapters back on: loss %v, adapted %v", on, adapted)
		}
	})
}

// shiftLoRA is a rank-1 testLoRA that adds c times the mean of l's input to
// every output (A takes the mean, B holds c).
func shiftLoRA(l *nn.Linear, c float32) *testLoRA {
	a := &nn.Param{Name: l.Name + ".lora_A", Shape: []int{1, l.In}, Data: make([]float32, l.In)}
	bb := &nn.Param{Name: l.Name + ".lora_B", Shape: []int{l.Out, 1}, Data: make([]float32, l.Out)}
	for i := range a.Data {
		a.Data[i] = 1 / float32(l.In)
	}
	for i := range bb.Data {
		bb.Data[i] = c
	}
	return &testLoRA{a: a, b: bb, scale: 1}
}

// relDiff is ‖a−b‖/‖b‖ (‖a−b‖ when b is zero).
func relDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func sortedInts(s []int) bool {
	for i := 1; i < len(s); i++ {
		if s[i] < s[i-1] {
			return false
		}
	}
	return true
}

// BackwardTokens is the gradient of Σ c_i·log p_i under temperature and
// Gemma 2's final soft cap (the cap's derivative and the scaling after it),
// checked by finite differences. (The CPU workspace had a second path, the
// head's gradient from logits TokenLogProbs kept, which this compared with
// recomputing them; the device block always recomputes.)
func TestBackwardTokensSoftCapTemperature(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		for _, tc := range []struct {
			shape string
			temp  float64
		}{{"ref-qwen3", 0.7}, {"gemma2", 0.7}} {
			t.Run(tc.shape, func(t *testing.T) {
				m := tinyModel(t, tc.shape, 5)
				setTrainable(m)
				b := gradBatch(m.Cfg.Vocab)
				w := newDM(t, m, be, DeviceOptions{})
				w.Temperature = tc.temp
				lp := mustLogProbs(t, w, b)
				coef := make([]float32, len(lp))
				for i, r := range w.TokenRows() {
					coef[i] = float32(1+r) * 0.3
				}
				objective := func() float64 {
					var s float64
					for i, v := range mustLogProbs(t, w, b) {
						s += float64(coef[i]) * v
					}
					return s
				}
				if err := w.BackwardTokens(coef); err != nil {
					t.Fatal(err)
				}
				checkDirectional(t, w, m, objective)
			})
		}
	})
}

// refTokenLogProbs is TokenLogProbs of m at a temperature on the reference
// backend.
func refTokenLogProbs(t testing.TB, m *Model, b *Batch, temp float64) []float64 {
	t.Helper()
	dm := newDM(t, m, ref.New(), DeviceOptions{Inference: true})
	defer dm.Close()
	dm.Temperature = temp
	return mustLogProbs(t, dm, b)
}
