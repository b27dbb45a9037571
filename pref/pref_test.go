package pref

import (
	"math"
	"math/rand/v2"
	"testing"
)

func logSigmoid(x float64) float64 { return -math.Log1p(math.Exp(-x)) }
func sig(x float64) float64        { return 1 / (1 + math.Exp(-x)) }

// paper writes each loss straight from its paper (LLaMA-Factory's reading
// of it), over the mean of a batch, so Pairs is checked against formulas
// written independently of it.
func paper(c Config, ps []Pair) float64 {
	avg := func(s float64, n int) float64 {
		if c.Averaged() {
			return s / float64(n)
		}
		return s
	}
	var sum float64
	var cKL, rKL float64
	for _, p := range ps {
		cKL += p.Chosen - p.RefChosen
		rKL += p.Rejected - p.RefRejected
	}
	cKL = math.Max(cKL/float64(len(ps)), 0)
	rKL = math.Max(rKL/float64(len(ps)), 0)
	for _, p := range ps {
		pc, pr := avg(p.Chosen, p.ChosenLen), avg(p.Rejected, p.RejectedLen)
		rc, rr := avg(p.RefChosen, p.ChosenLen), avg(p.RefRejected, p.RejectedLen)
		logits := (pc - pr) - (rc - rr)
		b, e := c.Beta, c.LabelSmoothing
		var l float64
		switch c.Loss {
		case Sigmoid: // DPO eq. 7; cDPO mixes in the flipped label with weight ε
			l = -(1-e)*logSigmoid(b*logits) - e*logSigmoid(-b*logits)
		case Hinge:
			l = math.Max(0, 1-b*logits)
		case IPO: // IPO eq. 17, τ = β
			l = math.Pow(logits-1/(2*b), 2)
		case KTOPair:
			l = (1 - sig(b*((pc-rc)-rKL)) + 1 - sig(b*(cKL-(pr-rr)))) / 2
		case ORPO: // ORPO eq. 6–7: L_SFT + λ·L_OR, odds = p/(1−p)
			odds := func(lp float64) float64 { return math.Exp(lp) / (1 - math.Exp(lp)) }
			l = -pc - b*logSigmoid(math.Log(odds(pc)/odds(pr)))
		case SimPO: // SimPO eq. 6
			l = -logSigmoid(b*pc - b*pr - c.Gamma)
		}
		l += c.FTX * -p.Chosen / float64(p.ChosenLen)
		sum += l
	}
	return sum / float64(len(ps))
}

func randomPairs(r *rand.Rand, n int) []Pair {
	ps := make([]Pair, n)
	for i := range ps {
		lc, lr := 3+r.IntN(20), 3+r.IntN(20)
		ps[i] = Pair{ChosenLen: lc, RejectedLen: lr,
			Chosen: -float64(lc) * (0.5 + r.Float64()), Rejected: -float64(lr) * (0.5 + r.Float64()),
			RefChosen: -float64(lc) * (0.5 + r.Float64()), RefRejected: -float64(lr) * (0.5 + r.Float64())}
	}
	return ps
}

func TestPairLossesMatchPapers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []Config{
		{Loss: Sigmoid, Beta: 0.1},
		{Loss: Sigmoid, Beta: 0.5, LabelSmoothing: 0.2},
		{Loss: Sigmoid, Beta: 0.1, FTX: 0.7},
		{Loss: Sigmoid, Beta: 50}, // β large: the loss saturates
		{Loss: Hinge, Beta: 0.1},
		{Loss: Hinge, Beta: 2},
		{Loss: IPO, Beta: 0.1},
		{Loss: KTOPair, Beta: 0.1},
		{Loss: KTOPair, Beta: 1, FTX: 0.3},
		{Loss: ORPO, Beta: 0.1},
		{Loss: ORPO, Beta: 1, FTX: 0.5},
		{Loss: SimPO, Beta: 2, Gamma: 0.5},
		{Loss: SimPO, Beta: 2.5, Gamma: 1.4},
	}
	for _, c := range cases {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		ps := randomPairs(r, 5)
		got, grads, m := c.Pairs(ps, 1/float64(len(ps)))
		want := paper(c, ps)
		if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("%+v: loss %.15g, paper %.15g", c, got, want)
		}
		if math.Abs(m.Loss/float64(m.N)-got) > 1e-12*math.Max(1, math.Abs(got)) {
			t.Errorf("%+v: metric loss %v, loss %v", c, m.Loss/float64(m.N), got)
		}
		// Central differences of the paper's formula in every policy sum.
		for i := range ps {
			for side := 0; side < 2; side++ {
				v := &ps[i].Chosen
				g := grads[i].Chosen
				if side == 1 {
					v, g = &ps[i].Rejected, grads[i].Rejected
				}
				h := 1e-5 * math.Max(1, math.Abs(*v))
				orig := *v
				*v = orig + h
				lp := paper(c, ps)
				*v = orig - h
				lm := paper(c, ps)
				*v = orig
				fd := (lp - lm) / (2 * h)
				if math.Abs(fd-g) > 1e-6*math.Max(1e-3, math.Abs(fd)) {
					t.Errorf("%+v: pair %d side %d: gradient %.10g, finite difference %.10g", c, i, side, g, fd)
				}
			}
		}
	}
}

// Degenerate pairs: chosen and rejected with equal log-probabilities.
// Sigmoid DPO gives log 2 with equal and opposite gradients (the shared
// parameters of identical answers get none); β → 0 gives log 2 and a
// vanishing gradient; cDPO at ε = 0.5 is flat.
func TestPairLossDegenerate(t *testing.T) {
	eq := []Pair{{Chosen: -7, Rejected: -7, RefChosen: -6, RefRejected: -6, ChosenLen: 4, RejectedLen: 4}}
	for _, tc := range []struct {
		name       string
		c          Config
		loss, grad float64 // grad: ∂loss/∂chosen (rejected is its negative)
	}{
		{"chosen==rejected", Config{Loss: Sigmoid, Beta: 0.1}, math.Ln2, -0.05},
		{"beta→0", Config{Loss: Sigmoid, Beta: 1e-12}, math.Ln2, -0.5e-12},
		{"smoothing 0.5", Config{Loss: Sigmoid, Beta: 0.3, LabelSmoothing: 0.5}, math.Ln2, 0},
		{"hinge", Config{Loss: Hinge, Beta: 0.1}, 1, -0.1},
		{"ipo", Config{Loss: IPO, Beta: 0.5}, 1, -2 * 1 / 4.0}, // (0 − 1/(2β))² = 1; ∂/∂mean = −2, ∂mean/∂sum = 1/4
		{"simpo γ=0", Config{Loss: SimPO, Beta: 2}, math.Ln2, -2 * 0.5 / 4},
	} {
		l, g, m := tc.c.Pairs(eq, 1)
		if math.Abs(l-tc.loss) > 1e-12 || math.Abs(g[0].Chosen-tc.grad) > 1e-12 || g[0].Chosen != -g[0].Rejected {
			t.Errorf("%s: loss %v grad %+v, want %v and ±%v", tc.name, l, g[0], tc.loss, tc.grad)
		}
		if tc.c.Loss == Sigmoid && (m.Correct != 0 || m.RewardChosen != m.RewardRejected) {
			t.Errorf("%s: a tie counted as correct (%+v)", tc.name, m)
		}
	}
	// Large β: a correctly ordered pair costs nothing and pulls not at
	// all; a wrongly ordered one costs β·|margin| with gradient ∓β.
	big := Config{Loss: Sigmoid, Beta: 1e4}
	right := []Pair{{Chosen: -5, Rejected: -6, ChosenLen: 2, RejectedLen: 2}}
	if l, g, _ := big.Pairs(right, 1); l != 0 || g[0].Chosen != 0 || math.IsNaN(g[0].Rejected) {
		t.Errorf("β=1e4, right order: loss %v grad %+v", l, g[0])
	}
	wrong := []Pair{{Chosen: -6, Rejected: -5, ChosenLen: 2, RejectedLen: 2}}
	if l, g, _ := big.Pairs(wrong, 1); math.Abs(l-1e4) > 1e-6 || math.Abs(g[0].Chosen+1e4) > 1e-6 {
		t.Errorf("β=1e4, wrong order: loss %v grad %+v", l, g[0])
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		c  Config
		ok bool
	}{
		{Config{Loss: Sigmoid, Beta: 0.1}, true},
		{Config{Loss: "dpo", Beta: 0.1}, false},
		{Config{Loss: Sigmoid, Beta: 0}, false},
		{Config{Loss: Sigmoid, Beta: 0.1, LabelSmoothing: 0.6}, false},
		{Config{Loss: Hinge, Beta: 0.1, LabelSmoothing: 0.1}, false},
		{Config{Loss: Sigmoid, Beta: 0.1, FTX: -1}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.c, err)
		}
	}
}

// ktoPaper is TRL's KTO loss, the mean over the batch, plus LLaMA-Factory's
// SFT term: pref_ftx · (mean over the desirable answers of −mean log p) /
// (number desirable) · (batch size), its "rescale".
func ktoPaper(c KTOConfig, s []Sample, kl float64) float64 {
	var sum, sft float64
	desirable := 0
	for _, x := range s {
		r := x.Logp - x.RefLogp
		if x.Desirable {
			sum += c.DesirableWeight * (1 - sig(c.Beta*(r-kl)))
			sft += -x.Logp / float64(x.Len)
			desirable++
		} else {
			sum += c.UndesirableWeight * (1 - sig(c.Beta*(kl-r)))
		}
	}
	loss := sum / float64(len(s))
	if c.FTX > 0 && desirable > 0 {
		loss += c.FTX * (sft / float64(desirable)) / float64(desirable) * float64(len(s))
	}
	return loss
}

func TestKTOLossMatchesPaper(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		c      KTOConfig
		labels []bool
	}{
		{"mixed", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1}, []bool{true, false, true, true, false}},
		{"weights+ftx", KTOConfig{Beta: 0.5, DesirableWeight: 1.33, UndesirableWeight: 0.7, FTX: 0.2}, []bool{false, true, false}},
		{"ftx, mostly desirable", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1, FTX: 1}, []bool{true, true, false, true}},
		{"ftx, one desirable", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1, FTX: 0.5}, []bool{true}},
		{"ftx, all undesirable", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1, FTX: 0.5}, []bool{false, false}},
		{"all desirable", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1}, []bool{true, true, true}},
		{"all undesirable", KTOConfig{Beta: 0.1, DesirableWeight: 1, UndesirableWeight: 1}, []bool{false, false}},
	} {
		s := make([]Sample, len(tc.labels))
		for i, d := range tc.labels {
			n := 2 + r.IntN(10)
			s[i] = Sample{Logp: -float64(n) * r.Float64(), RefLogp: -float64(n) * r.Float64(), Len: n, Desirable: d}
		}
		kl := KL([]float64{-3, -4}, []float64{-3.5, -3.2})
		got, grads, m := tc.c.Loss(s, kl, 1/float64(len(s)))
		if want := ktoPaper(tc.c, s, kl); math.Abs(got-want) > 1e-13 {
			t.Errorf("%s: loss %v, paper %v", tc.name, got, want)
		}
		for i := range s {
			h := 1e-5
			o := s[i].Logp
			s[i].Logp = o + h
			lp := ktoPaper(tc.c, s, kl)
			s[i].Logp = o - h
			lm := ktoPaper(tc.c, s, kl)
			s[i].Logp = o
			if fd := (lp - lm) / (2 * h); math.Abs(fd-grads[i]) > 1e-8 {
				t.Errorf("%s: sample %d gradient %v, finite difference %v", tc.name, i, grads[i], fd)
			}
		}
		// With one label only, the other side's metrics are absent, not 0/0.
		for _, v := range m.Values() {
			if math.IsNaN(v.Value) {
				t.Errorf("%s: %s is NaN", tc.name, v.Key)
			}
		}
	}
	if kl := KL([]float64{-5, -5}, []float64{-4, -4}); kl != 0 {
		t.Errorf("KL of a policy below its reference: %v, want the clamp at 0", kl)
	}
}

// Metrics of two halves add up to those of the whole.
func TestMetricsAdd(t *testing.T) {
	ps := randomPairs(rand.New(rand.NewPCG(5, 6)), 6)
	c := Config{Loss: Sigmoid, Beta: 0.2}
	_, _, all := c.Pairs(ps, 1)
	_, _, a := c.Pairs(ps[:2], 1)
	_, _, b := c.Pairs(ps[2:], 1)
	a.Add(b)
	va, vb := all.Values(), a.Values()
	if len(va) != len(vb) || len(va) < 7 {
		t.Fatalf("values %v vs %v", va, vb)
	}
	for i := range va {
		if va[i].Key != vb[i].Key || math.Abs(va[i].Value-vb[i].Value) > 1e-12 {
			t.Errorf("%s: whole %v, halves %v", va[i].Key, va[i].Value, vb[i].Value)
		}
	}
}

// With gradient accumulation LLaMA-Factory takes each micro-batch's loss
// (its SFT term rescaled by that micro-batch's share of desirable answers)
// and averages them over the micro-batches; Loss with weight 1/(answers of
// the step), summed over equal micro-batches, gives the same number.
func TestKTOFTXPerMicroBatch(t *testing.T) {
	c := KTOConfig{Beta: 0.2, DesirableWeight: 1, UndesirableWeight: 0.8, FTX: 0.7}
	mk := func(logp, ref float64, n int, d bool) Sample {
		return Sample{Logp: logp, RefLogp: ref, Len: n, Desirable: d}
	}
	micro := [][]Sample{
		{mk(-4, -4.5, 4, true), mk(-6, -5, 5, false), mk(-3, -3.1, 3, true)},
		{mk(-7, -6, 7, false), mk(-2, -2.4, 2, true), mk(-9, -8, 6, false)},
	}
	kl := 0.05
	var got, want float64
	for _, mb := range micro {
		l, _, _ := c.Loss(mb, kl, 1.0/6)
		got += l
		want += ktoPaper(c, mb, kl) / float64(len(micro))
	}
	if math.Abs(got-want) > 1e-14 {
		t.Errorf("accumulated loss %v, LLaMA-Factory's mean of micro-batch losses %v", got, want)
	}
	// The first micro-batch by hand: 2 of 3 desirable, so the SFT mean
	// (4/4 + 3/3)/2 = 1 is divided by the share 2/3.
	var kto float64
	for _, s := range micro[0] {
		r := s.Logp - s.RefLogp
		if s.Desirable {
			kto += 1 - sig(0.2*(r-kl))
		} else {
			kto += 0.8 * (1 - sig(0.2*(kl-r)))
		}
	}
	l, _, _ := c.Loss(micro[0], kl, 1.0/3)
	if hand := kto/3 + 0.7*1/(2.0/3); math.Abs(l-hand) > 1e-14 {
		t.Errorf("micro-batch loss %v, by hand %v", l, hand)
	}
}
