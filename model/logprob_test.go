package model

import (
	"math"
	"slices"
	"testing"

	"gotune/nn"
)

// TokenLogProbs are the negated per-token losses: they sum to −Loss, and
// BackwardTokens with every coefficient −1 gives Step's gradients.
func TestTokenLogProbsAreNegatedLosses(t *testing.T) {
	m := tinyModel(t, "ref-qwen3", 4)
	setTrainable(m)
	b := gradBatch(m.Cfg.Vocab)
	w := m.NewWorkspace()
	loss, n := w.Step(b, 1)
	want := snapshotGrads(m)
	lp := w.TokenLogProbs(b)
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
	w.BackwardTokens(coef)
	got := snapshotGrads(m)
	for i, p := range m.Params() {
		if e := relDiff(got[i], want[i]); e > 1e-6 {
			t.Errorf("%s: BackwardTokens(−1) differs from Step by %.2g", p.Name, e)
		}
	}
}

// The gradient of a loss over whole sequences (here a DPO-like
// logsigmoid of the difference of two rows' summed log-probabilities,
// nonlinear in them) checked by finite differences through BackwardTokens.
func TestBackwardTokensFiniteDifference(t *testing.T) {
	m := tinyModel(t, "ref-llama", 5)
	setTrainable(m)
	b := gradBatch(m.Cfg.Vocab)
	w := m.NewWorkspace()
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
		lp := w.TokenLogProbs(b)
		l, _ := seqLoss(lp, w.TokenRows())
		return l
	}
	lp := w.TokenLogProbs(b)
	rows := w.TokenRows()
	_, dz := seqLoss(lp, rows)
	coef := make([]float32, len(lp))
	for i, r := range rows {
		coef[i] = float32(dz * beta)
		if r == 1 {
			coef[i] = -coef[i]
		}
	}
	w.BackwardTokens(coef)
	checkDirectional(t, m, loss)
}

// With adapters switched off the model scores as its base, and switching
// them back on restores the adapted scores.
func TestWithoutAdapters(t *testing.T) {
	m := tinyModel(t, "ref-qwen2", 6)
	b := gradBatch(m.Cfg.Vocab)
	w := m.NewWorkspace()
	base, _ := w.Loss(b)
	for _, l := range m.Linears() {
		l.Adapter = shiftAdapter{0.05}
	}
	adapted, _ := w.Loss(b)
	if adapted == base {
		t.Fatal("the test adapter changes nothing")
	}
	restore := m.WithoutAdapters()
	if off, _ := w.Loss(b); off != base {
		t.Errorf("adapters off: loss %v, base %v", off, base)
	}
	restore()
	if on, _ := w.Loss(b); on != adapted {
		t.Errorf("adapters back on: loss %v, adapted %v", on, adapted)
	}
}

// shiftAdapter adds a constant to a linear layer's output.
type shiftAdapter struct{ c float32 }

func (a shiftAdapter) Forward(l *nn.Linear, y, x []float32, n int) {
	l.BaseForward(y, x, n)
	for i := range y {
		y[i] += a.c
	}
}

func (a shiftAdapter) Backward(l *nn.Linear, dx, dy, x []float32, n int) {
	l.BaseBackward(dx, dy, x, n)
}

func (a shiftAdapter) Params() []*nn.Param { return nil }

func snapshotGrads(m *Model) [][]float32 {
	var out [][]float32
	for _, p := range m.Params() {
		out = append(out, append([]float32(nil), p.Grad...))
		p.ZeroGrad()
	}
	return out
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

// BackwardTokens on the logits TokenLogProbs kept gives the gradients of
// recomputing them, bit for bit: plain, with temperature, and under Gemma
// 2's final soft cap with temperature (the cap's saved values and the
// scaling after it).
func TestBackwardTokensKeptLogitsSameGradients(t *testing.T) {
	for _, tc := range []struct {
		shape string
		temp  float64
	}{{"ref-llama", 0}, {"ref-qwen3", 0.7}, {"gemma2", 0.7}} {
		grads := func(kept bool) [][]float32 {
			m := tinyModel(t, tc.shape, 5)
			setTrainable(m)
			b := gradBatch(m.Cfg.Vocab)
			w := m.NewWorkspace()
			w.Temperature = tc.temp
			lp := w.TokenLogProbs(b)
			if !w.headKept {
				t.Fatalf("%s: TokenLogProbs kept no logits", tc.shape)
			}
			w.headKept = kept
			coef := make([]float32, len(lp))
			for i, r := range w.TokenRows() {
				coef[i] = float32(1+r) * 0.3
			}
			w.BackwardTokens(coef)
			var out [][]float32
			for _, p := range m.Params() {
				out = append(out, slices.Clone(p.Grad))
			}
			return out
		}
		a, b := grads(true), grads(false)
		for i := range a {
			if !slices.Equal(a[i], b[i]) {
				t.Errorf("%s: parameter %d: kept logits give other gradients than recomputed ones", tc.shape, i)
			}
		}
	}
}
