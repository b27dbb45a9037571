package rl

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// Advantages against the published definition: A = (r − mean_group) /
// (std + 1e-4), std unbiased over the group (scale group), over the batch
// (scale batch), or no division (scale none).
func TestAdvantages(t *testing.T) {
	rewards := []float64{1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 2, 0, 1, 3}
	groupMean := []float64{0.5, 0.5, 1.5}
	// Unbiased standard deviations, worked by hand.
	gstd := []float64{math.Sqrt(1.0 / 3), 0, math.Sqrt((0.25 + 2.25 + 0.25 + 2.25) / 3)}
	bmean := 0.0
	for _, r := range rewards {
		bmean += r / 12
	}
	var bvar float64
	for _, r := range rewards {
		bvar += (r - bmean) * (r - bmean) / 11
	}
	bstd := math.Sqrt(bvar)
	cases := []struct {
		scale Scale
		want  func(i int) float64
		zero  float64
	}{
		{ScaleGroup, func(i int) float64 { return (rewards[i] - groupMean[i/4]) / (gstd[i/4] + 1e-4) }, 4.0 / 12},
		{ScaleBatch, func(i int) float64 { return (rewards[i] - groupMean[i/4]) / (bstd + 1e-4) }, 0},
		{ScaleNone, func(i int) float64 { return rewards[i] - groupMean[i/4] }, 4.0 / 12},
	}
	for _, c := range cases {
		t.Run(string(c.scale), func(t *testing.T) {
			adv, zero, err := Advantages(rewards, 4, c.scale)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range adv {
				if !near(a, c.want(i), 1e-12) {
					t.Errorf("advantage %d = %v, want %v", i, a, c.want(i))
				}
			}
			// The group of equal rewards teaches nothing: exactly zero.
			for i := 4; i < 8; i++ {
				if adv[i] != 0 {
					t.Errorf("equal-reward group: advantage %d = %v, want 0", i, adv[i])
				}
			}
			if !near(zero, c.zero, 1e-12) {
				t.Errorf("frac_reward_zero_std = %v, want %v", zero, c.zero)
			}
		})
	}
}

// Degenerate inputs give zeros, never NaN, or an error.
func TestAdvantagesDegenerate(t *testing.T) {
	cases := []struct {
		name    string
		rewards []float64
		g       int
		scale   Scale
		wantErr bool
	}{
		{"all equal", []float64{3, 3, 3, 3}, 2, ScaleGroup, false},
		{"all equal batch", []float64{0, 0, 0, 0}, 4, ScaleBatch, false},
		{"group of one", []float64{1, 2}, 1, ScaleGroup, false},
		{"uneven", []float64{1, 2, 3}, 2, ScaleGroup, true},
		{"nan reward", []float64{1, math.NaN()}, 2, ScaleGroup, true},
		{"zero group size", []float64{1}, 0, ScaleGroup, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			adv, zero, err := Advantages(c.rewards, c.g, c.scale)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if c.wantErr {
				return
			}
			for i, a := range adv {
				if a != 0 {
					t.Errorf("advantage %d = %v, want 0", i, a)
				}
			}
			if zero != 1 {
				t.Errorf("frac_reward_zero_std = %v, want 1", zero)
			}
		})
	}
}

// The k3 estimator: zero when the policies agree, positive otherwise, its
// expectation under π the true KL(π‖π_ref) (checked on a small
// categorical), and DKL its derivative.
func TestKL(t *testing.T) {
	if KL(-1.3, -1.3) != 0 || DKL(-1.3, -1.3) != 0 {
		t.Fatal("KL of equal policies is not 0")
	}
	p := []float64{0.5, 0.3, 0.2}
	q := []float64{0.2, 0.2, 0.6}
	var est, exact float64
	for i := range p {
		est += p[i] * KL(math.Log(p[i]), math.Log(q[i]))
		exact += p[i] * math.Log(p[i]/q[i])
	}
	if !near(est, exact, 1e-12) {
		t.Errorf("E_π[k3] = %v, KL = %v", est, exact)
	}
	for _, c := range [][2]float64{{-0.5, -2}, {-3, -0.1}, {-1, -1.0001}} {
		if KL(c[0], c[1]) < 0 {
			t.Errorf("KL(%v) < 0", c)
		}
		h := 1e-6
		fd := (KL(c[0]+h, c[1]) - KL(c[0]-h, c[1])) / (2 * h)
		if !near(DKL(c[0], c[1]), fd, 1e-6) {
			t.Errorf("DKL%v = %v, finite difference %v", c, DKL(c[0], c[1]), fd)
		}
	}
}

// refLoss is the loss written out as TRL's compute_loss defines it, on
// padded [completions × max length] arrays with a mask, independently of
// Loss's per-completion bookkeeping.
func refLoss(o Objective, seqs []Seq) float64 {
	T := 0
	for _, s := range seqs {
		T = max(T, len(s.Logp))
	}
	B := len(seqs)
	per := make([][]float64, B)
	mask := make([][]float64, B)
	for i, s := range seqs {
		per[i], mask[i] = make([]float64, T), make([]float64, T)
		if s.Masked {
			continue
		}
		for t := range s.Logp {
			old := s.Logp[t]
			if s.Old != nil {
				old = s.Old[t]
			}
			c1 := math.Exp(s.Logp[t] - old)
			c2 := math.Min(math.Max(c1, 1-o.EpsLow), 1+o.EpsHigh)
			l := -math.Min(c1*s.Adv, c2*s.Adv)
			if o.Beta != 0 {
				d := s.Ref[t] - s.Logp[t]
				l += o.Beta * (math.Exp(d) - d - 1)
			}
			per[i][t], mask[i][t] = l, 1
		}
	}
	var total, count float64
	for i := range per {
		for t := range per[i] {
			total += per[i][t] * mask[i][t]
			count += mask[i][t]
		}
	}
	ga := float64(max(o.Accum, 1))
	switch o.Type {
	case GRPO:
		var m float64
		for i := range per {
			var s, n float64
			for t := range per[i] {
				s += per[i][t] * mask[i][t]
				n += mask[i][t]
			}
			m += s / math.Max(n, 1)
		}
		return m / float64(B) / ga
	case BNPO:
		return total / math.Max(count, 1) / ga
	case DrGRPO:
		return total / float64(B*o.MaxCompletionLength) / ga
	default: // dapo
		return total / float64(o.StepTokens)
	}
}

func randomSeqs(r *rand.Rand, n int, old, ref bool) []Seq {
	seqs := make([]Seq, n)
	for i := range seqs {
		L := 1 + r.IntN(7)
		s := Seq{Adv: r.NormFloat64()}
		for range L {
			lp := -0.1 - 3*r.Float64()
			s.Logp = append(s.Logp, lp)
			if old {
				// Ratios from 0.5 to 1.6: some inside, some clipped.
				s.Old = append(s.Old, lp-math.Log(0.5+1.1*r.Float64()))
			}
			if ref {
				s.Ref = append(s.Ref, lp+0.5*r.NormFloat64())
			}
		}
		seqs[i] = s
	}
	return seqs
}

// Each loss_type against the written-out definition, and its coefficients
// against central differences of the loss in every log-probability.
func TestLossTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, lt := range LossTypes {
		for _, v := range []struct {
			name    string
			beta    float64
			old     bool
			accum   int
			epsHigh float64
			maxLen  int
		}{
			{"on-policy beta0", 0, false, 1, 0.2, 8},
			{"on-policy kl", 0.04, false, 2, 0.2, 8},
			{"off-policy kl", 0.1, true, 3, 0.28, 10},
			{"off-policy beta0", 0, true, 1, 0.2, 7},
			{"masked", 0.1, true, 2, 0.2, 7},
		} {
			t.Run(string(lt)+"/"+v.name, func(t *testing.T) {
				seqs := randomSeqs(r, 5, v.old, v.beta > 0)
				o := Objective{Type: lt, Beta: v.beta, EpsLow: 0.2, EpsHigh: v.epsHigh, MaxCompletionLength: v.maxLen, Accum: v.accum}
				if v.name == "masked" {
					seqs[1].Masked, seqs[3].Masked = true, true
				}
				for _, s := range seqs {
					if !s.Masked {
						o.StepTokens += len(s.Logp)
					}
				}
				o.StepTokens *= 2 // dapo: other micro-batches of the step hold tokens too
				res, err := o.Loss(seqs)
				if err != nil {
					t.Fatal(err)
				}
				if want := refLoss(o, seqs); !near(res.Loss, want, 1e-12) {
					t.Fatalf("loss %v, definition %v", res.Loss, want)
				}
				// On-policy, old is the current log-probability detached
				// (TRL's per_token_logps.detach()): fixed while logp moves.
				for i := range seqs {
					if seqs[i].Old == nil {
						seqs[i].Old = append([]float64(nil), seqs[i].Logp...)
					}
				}
				const h = 1e-6
				for i, s := range seqs {
					for k := range s.Logp {
						orig := s.Logp[k]
						s.Logp[k] = orig + h
						lp := refLoss(o, seqs)
						s.Logp[k] = orig - h
						lm := refLoss(o, seqs)
						s.Logp[k] = orig
						fd := (lp - lm) / (2 * h)
						if math.Abs(fd-res.Coef[i][k]) > 1e-6 {
							t.Errorf("completion %d token %d: coefficient %v, finite difference %v", i, k, res.Coef[i][k], fd)
						}
					}
				}
			})
		}
	}
}

// Clipping: which tokens count as clipped, and that they get no surrogate
// gradient.
func TestClipping(t *testing.T) {
	o := Objective{Type: BNPO, EpsLow: 0.2, EpsHigh: 0.2, Accum: 1}
	lg := math.Log
	cases := []struct {
		ratio, adv float64
		low, high  int
		zeroGrad   bool
	}{
		{1.5, 1, 0, 1, true},   // pushed up past 1+ε: clipped
		{1.5, -1, 0, 0, false}, // above, but the advantage pulls it down: free
		{0.5, -1, 1, 0, true},  // pushed down past 1−ε: clipped
		{0.5, 1, 0, 0, false},
		{1.1, 1, 0, 0, false},
	}
	for _, c := range cases {
		s := Seq{Logp: []float64{-1}, Old: []float64{-1 - lg(c.ratio)}, Adv: c.adv}
		res, err := o.Loss([]Seq{s})
		if err != nil {
			t.Fatal(err)
		}
		if res.LowClipped != c.low || res.HighClipped != c.high || res.RegionClipped != c.low+c.high {
			t.Errorf("ratio %v adv %v: clipped low %d high %d region %d", c.ratio, c.adv, res.LowClipped, res.HighClipped, res.RegionClipped)
		}
		if (res.Coef[0][0] == 0) != c.zeroGrad {
			t.Errorf("ratio %v adv %v: coefficient %v", c.ratio, c.adv, res.Coef[0][0])
		}
	}
}

// On-policy with β = 0 the gradient is the plain policy gradient −A/|o|…
// scaled by the aggregation: for grpo, −A/(|o|·B).
func TestOnPolicyGradient(t *testing.T) {
	o := Objective{Type: GRPO, EpsLow: 0.2, EpsHigh: 0.2}
	seqs := []Seq{{Logp: []float64{-1, -2}, Adv: 2}, {Logp: []float64{-0.5}, Adv: -1}}
	res, err := o.Loss(seqs)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{-2.0 / 4, -2.0 / 4}, {1.0 / 2}}
	for i := range want {
		for k := range want[i] {
			if !near(res.Coef[i][k], want[i][k], 1e-15) {
				t.Errorf("coef[%d][%d] = %v, want %v", i, k, res.Coef[i][k], want[i][k])
			}
		}
	}
	if !near(res.Loss, -(2*1+2*1)/4.0-(-1)/2.0, 1e-15) { // −Σ A·r / … with r = 1
		t.Errorf("loss %v", res.Loss)
	}
}

func TestObjectiveValidate(t *testing.T) {
	bad := []Objective{
		{Type: "ppo", EpsLow: 0.2, EpsHigh: 0.2},
		{Type: GRPO, Beta: -1, EpsLow: 0.2, EpsHigh: 0.2},
		{Type: GRPO, EpsLow: 1.5, EpsHigh: 0.2},
		{Type: DrGRPO, EpsLow: 0.2, EpsHigh: 0.2},
	}
	for _, o := range bad {
		if _, err := o.Loss(nil); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestParseScale(t *testing.T) {
	for in, want := range map[string]Scale{"group": ScaleGroup, "True": ScaleGroup, "true": ScaleGroup, "batch": ScaleBatch,
		"none": ScaleNone, "FALSE": ScaleNone} {
		if got, err := ParseScale(in); err != nil || got != want {
			t.Errorf("ParseScale(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseScale("sometimes"); err == nil {
		t.Error("ParseScale(sometimes): no error")
	}
}
