package rl_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/model"
	"gotune/rl"
)

// The GRPO loss of each loss_type, taken through a real model: coefficients
// from rl.Objective.Loss handed to BackwardTokens give the gradient of the
// loss as a function of the weights, checked by central differences along a
// random direction of every parameter tensor (float32 weights, so a 1%
// tolerance as model's own gradient checks). Old-policy and reference
// log-probabilities are fixed offsets, so ratios leave the clip range on
// both sides and the KL term is active; the temperature is not 1.
func TestLossGradientThroughModel(t *testing.T) {
	cfg, err := model.Shape("ref-qwen3")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(3)
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	// Three completions after prompts of different lengths, right-padded.
	const B, T = 3, 10
	r := rand.New(rand.NewPCG(9, 9))
	b := &model.Batch{B: B, T: T, IDs: make([]int32, B*T), Labels: make([]int32, B*T), Mask: make([]int32, B*T)}
	prompt, total := []int{3, 5, 2}, []int{7, 10, 6}
	for row := range B {
		for i := range T {
			k := row*T + i
			b.Labels[k] = model.IgnoreIndex
			if i < total[row] {
				b.IDs[k] = int32(r.IntN(cfg.Vocab))
				b.Mask[k] = 1
				if i >= prompt[row] {
					b.Labels[k] = b.IDs[k]
				}
			}
		}
	}
	// The CPU backend in f32, every parameter trained there.
	w, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Temperature = 0.8
	logProbs := func() []float64 {
		// The host's weights, perturbed or not, go to the backend first.
		if err := w.LoadTrainableFromHost(); err != nil {
			t.Fatal(err)
		}
		lp, err := w.TokenLogProbs(b)
		if err != nil {
			t.Fatal(err)
		}
		return lp
	}
	adv := []float64{1.2, -0.7, 0.4}
	lp0 := logProbs()
	// TokenLogProbs gives the trained tokens row by row, left to right.
	var rows []int
	for row := range B {
		for i := 0; i+1 < T; i++ {
			if b.Labels[row*T+i+1] != model.IgnoreIndex {
				rows = append(rows, row)
			}
		}
	}
	if len(rows) != len(lp0) {
		t.Fatalf("%d log-probabilities for %d trained tokens", len(lp0), len(rows))
	}
	old := make([]float64, len(lp0))
	ref := make([]float64, len(lp0))
	for i := range lp0 {
		old[i] = lp0[i] - 0.5*math.Sin(float64(3*i)) // ratios from e^-0.5 to e^0.5
		ref[i] = lp0[i] + 0.3*math.Cos(float64(i))
	}
	for _, lt := range rl.LossTypes {
		t.Run(string(lt), func(t *testing.T) {
			obj := rl.Objective{Type: lt, Beta: 0.1, EpsLow: 0.2, EpsHigh: 0.28, MaxCompletionLength: 8, Accum: 1, StepTokens: len(lp0)}
			seqs := func(lp []float64) []rl.Seq {
				s := make([]rl.Seq, B)
				for i, row := range rows {
					s[row].Logp = append(s[row].Logp, lp[i])
					s[row].Old = append(s[row].Old, old[i])
					s[row].Ref = append(s[row].Ref, ref[i])
					s[row].Adv = adv[row]
				}
				return s
			}
			loss := func() float64 {
				res, err := obj.Loss(seqs(logProbs()))
				if err != nil {
					t.Fatal(err)
				}
				return res.Loss
			}
			for _, p := range m.Params() {
				p.ZeroGrad()
			}
			res, err := obj.Loss(seqs(logProbs()))
			if err != nil {
				t.Fatal(err)
			}
			if res.LowClipped == 0 && res.HighClipped == 0 {
				t.Fatal("no token is clipped: the check would not cover clipping")
			}
			var coef []float32
			for _, c := range res.Coef {
				for _, v := range c {
					coef = append(coef, float32(v))
				}
			}
			w.ZeroGrad()
			if err := w.BackwardTokens(coef); err != nil {
				t.Fatal(err)
			}
			for pi, p := range m.Params() {
				grad, err := w.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				d := make([]float32, len(p.Data))
				var gd, gn, dn, pn float64
				for i := range d {
					d[i] = float32(math.Sin(float64(i*5+pi*11) + 0.3))
					gd += float64(grad[i]) * float64(d[i])
					gn += float64(grad[i]) * float64(grad[i])
					dn += float64(d[i]) * float64(d[i])
					pn += float64(p.Data[i]) * float64(p.Data[i])
				}
				// A small step: the loss has kinks where a ratio crosses
				// the clip bounds.
				step := 3e-3 * math.Sqrt(pn/dn)
				orig := append([]float32(nil), p.Data...)
				for i := range p.Data {
					p.Data[i] = orig[i] + float32(step)*d[i]
				}
				lplus := loss()
				for i := range p.Data {
					p.Data[i] = orig[i] - float32(step)*d[i]
				}
				lminus := loss()
				copy(p.Data, orig)
				fd := (lplus - lminus) / (2 * step)
				typical := math.Sqrt(gn) * math.Sqrt(dn) / math.Sqrt(float64(len(d)))
				if math.Abs(fd-gd) > 0.02*math.Max(math.Abs(gd), typical) {
					t.Errorf("%s: directional derivative %.6g, finite difference %.6g", p.Name, gd, fd)
				}
			}
		})
	}
}
