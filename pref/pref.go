// Package pref holds the losses of preference training as functions of
// sequence log-probabilities: DPO (sigmoid, with cDPO's label smoothing)
// and its variants hinge, IPO, kto_pair, ORPO and SimPO, and KTO. Each
// returns the loss, its gradient in the policy's summed log-probabilities
// (what the trainer turns into per-token coefficients) and the metrics TRL
// and LLaMA-Factory log, under their names. Everything is float64 and knows
// nothing of the model, so each formula is checked against its paper alone.
package pref

import (
	"fmt"
	"math"
	"slices"
)

// Loss names (LLaMA-Factory's pref_loss).
const (
	Sigmoid = "sigmoid"  // DPO (Rafailov et al. 2023), cDPO with label smoothing
	Hinge   = "hinge"    // SLiC (Zhao et al. 2023)
	IPO     = "ipo"      // IPO (Azar et al. 2023), on per-token mean log-probabilities
	KTOPair = "kto_pair" // KTO on pairs (HALOs report, eq. 7)
	ORPO    = "orpo"     // ORPO (Hong et al. 2024), no reference
	SimPO   = "simpo"    // SimPO (Meng et al. 2024), no reference
)

// Losses lists the pref_loss values, in LLaMA-Factory's order.
var Losses = []string{Sigmoid, Hinge, IPO, KTOPair, ORPO, SimPO}

// Config is a pairwise loss with its settings (LLaMA-Factory's keys in
// brackets).
type Config struct {
	Loss           string  // [pref_loss]
	Beta           float64 // [pref_beta]; ORPO's λ, the weight of its odds-ratio term
	FTX            float64 // [pref_ftx] weight of the SFT loss on the chosen answer
	LabelSmoothing float64 // [dpo_label_smoothing] cDPO's ε, sigmoid only
	Gamma          float64 // [simpo_gamma] SimPO's target reward margin
}

// Validate refuses settings the formulas cannot take.
func (c Config) Validate() error {
	if !slices.Contains(Losses, c.Loss) {
		return fmt.Errorf("pref_loss %q: want one of %v", c.Loss, Losses)
	}
	if !(c.Beta > 0) || math.IsInf(c.Beta, 0) {
		return fmt.Errorf("pref_beta %v: want a positive number", c.Beta)
	}
	if c.FTX < 0 || math.IsNaN(c.FTX) || math.IsInf(c.FTX, 0) {
		return fmt.Errorf("pref_ftx %v: want 0 or more", c.FTX)
	}
	if !(c.LabelSmoothing >= 0 && c.LabelSmoothing <= 0.5) {
		return fmt.Errorf("dpo_label_smoothing %v: want a value in [0, 0.5]", c.LabelSmoothing)
	}
	if c.LabelSmoothing > 0 && c.Loss != Sigmoid {
		// As LLaMA-Factory: the smoothed loss is defined for sigmoid only.
		return fmt.Errorf("dpo_label_smoothing applies to pref_loss sigmoid only, not %s", c.Loss)
	}
	if math.IsNaN(c.Gamma) || math.IsInf(c.Gamma, 0) {
		return fmt.Errorf("simpo_gamma %v: want a finite number", c.Gamma)
	}
	return nil
}

// UsesReference reports whether the loss compares with a reference model;
// ORPO and SimPO do not.
func (c Config) UsesReference() bool { return c.Loss != ORPO && c.Loss != SimPO }

// Averaged reports whether the loss reads per-token mean log-probabilities
// instead of sums: IPO, ORPO and SimPO, as LLaMA-Factory computes them.
func (c Config) Averaged() bool { return c.Loss == IPO || c.Loss == ORPO || c.Loss == SimPO }

// Pair is one preference pair's sequence log-probabilities: Σ log p over
// the trained tokens of each answer, under the policy and the reference.
type Pair struct {
	Chosen, Rejected       float64
	RefChosen, RefRejected float64 // ignored when the loss has no reference
	ChosenLen, RejectedLen int     // trained tokens of each answer (> 0)
}

// Grad is the gradient of a batch loss in one pair's policy sums.
type Grad struct{ Chosen, Rejected float64 }

// Pairs returns weight·Σ (loss of each pair) and its gradient in every
// pair's policy sums. Pass weight = 1/(pairs of the whole optimizer step)
// so k micro-batches add up to one batch of all their pairs. kto_pair
// couples the pairs of one call through its KL estimate (the mean log-ratio
// of the call's pairs, as TRL computes it per micro-batch); the other
// losses are sums of per-pair terms.
func (c Config) Pairs(pairs []Pair, weight float64) (float64, []Grad, Metrics) {
	grads := make([]Grad, len(pairs))
	var m Metrics
	if len(pairs) == 0 {
		return 0, grads, m
	}
	// x: the log-probabilities the loss reads (sums, or means); s: ∂x/∂sum.
	type side struct{ x, ref, s float64 }
	get := func(sum, ref float64, n int) side {
		if c.Averaged() {
			return side{sum / float64(n), ref / float64(n), 1 / float64(n)}
		}
		return side{sum, ref, 1}
	}
	var chosenKL, rejectedKL float64
	if c.Loss == KTOPair {
		for _, p := range pairs {
			chosenKL += p.Chosen - p.RefChosen
			rejectedKL += p.Rejected - p.RefRejected
		}
		chosenKL /= float64(len(pairs))
		rejectedKL /= float64(len(pairs))
	}
	// kto_pair: ∂(Σ losses)/∂(chosen KL) and ∂/∂(rejected KL), gathered
	// over the pairs, then spread back through the means.
	var dChosenKL, dRejectedKL float64
	var total float64
	b := c.Beta
	for i, p := range pairs {
		ch, rj := get(p.Chosen, p.RefChosen, p.ChosenLen), get(p.Rejected, p.RefRejected, p.RejectedLen)
		var l, dc, dr float64 // the pair's loss and its derivatives in ch.x, rj.x
		switch c.Loss {
		case Sigmoid, Hinge, IPO:
			h := (ch.x - rj.x) - (ch.ref - rj.ref)
			var dh float64
			switch c.Loss {
			case Sigmoid:
				z, e := b*h, c.LabelSmoothing
				l = (1-e)*softplus(-z) + e*softplus(z)
				dh = b * (-(1-e)*sigmoid(-z) + e*sigmoid(z))
			case Hinge:
				if z := b * h; z < 1 {
					l, dh = 1-z, -b
				}
			case IPO:
				d := h - 1/(2*b)
				l, dh = d*d, 2*d
			}
			dc, dr = dh, -dh
		case KTOPair:
			// Each half is one term of the mean over 2·pairs: half weight.
			u1 := b * ((ch.x - ch.ref) - max(rejectedKL, 0))
			u2 := b * (max(chosenKL, 0) - (rj.x - rj.ref))
			l = (1 - sigmoid(u1) + 1 - sigmoid(u2)) / 2
			dc = -b * dsigmoid(u1) / 2
			dr = b * dsigmoid(u2) / 2
			if rejectedKL > 0 {
				dRejectedKL += b * dsigmoid(u1) / 2
			}
			if chosenKL > 0 {
				dChosenKL += -b * dsigmoid(u2) / 2
			}
		case ORPO:
			xc, xr := min(ch.x, -minNLL), min(rj.x, -minNLL)
			// log odds(y) = log p − log(1 − p), p the mean per-token probability.
			lo := (xc - xr) - (math.Log(-math.Expm1(xc)) - math.Log(-math.Expm1(xr)))
			or := softplus(-lo)
			l = -xc + b*or
			dlo := -b * sigmoid(-lo)
			dc = -1 + dlo/(-math.Expm1(xc))
			dr = -dlo / (-math.Expm1(xr))
			if ch.x > -minNLL {
				dc = 0
			}
			if rj.x > -minNLL {
				dr = 0
			}
			m.OddsRatio += or
		case SimPO:
			z := b * ((ch.x - rj.x) - c.Gamma/b)
			l = softplus(-z)
			dh := -b * sigmoid(-z)
			dc, dr = dh, -dh
		}
		sft := -p.Chosen / float64(p.ChosenLen)
		grads[i] = Grad{Chosen: weight * dc * ch.s, Rejected: weight * dr * rj.s}
		if c.FTX > 0 {
			l += c.FTX * sft
			grads[i].Chosen -= weight * c.FTX / float64(p.ChosenLen)
		}
		total += l
		var rc, rr float64
		if c.UsesReference() {
			rc, rr = b*(ch.x-ch.ref), b*(rj.x-rj.ref)
		} else {
			rc, rr = b*ch.x, b*rj.x
		}
		m.Loss += l
		m.N++
		m.Pairs++
		m.Chosen++
		m.Rejected++
		m.RewardChosen += rc
		m.RewardRejected += rr
		if rc > rr {
			m.Correct++
		}
		m.LogpChosen += ch.x
		m.LogpRejected += rj.x
		m.SFT += sft
	}
	if c.Loss == KTOPair {
		n := float64(len(pairs))
		for i, p := range pairs {
			ch, rj := get(p.Chosen, 0, p.ChosenLen), get(p.Rejected, 0, p.RejectedLen)
			grads[i].Chosen += weight * dChosenKL / n * ch.s
			grads[i].Rejected += weight * dRejectedKL / n * rj.s
		}
	}
	return weight * total, grads, m
}

// minNLL keeps ORPO's log(1 − p) finite when a mean log-probability rounds
// to 0 (p = 1): the odds of a certain answer are infinite.
const minNLL = 1e-9

// KTOConfig is KTO's loss (Ethayarajh et al. 2024) as TRL's KTOTrainer and
// LLaMA-Factory's stage kto compute it.
type KTOConfig struct {
	Beta              float64 // [pref_beta]
	DesirableWeight   float64 // [kto_chosen_weight]
	UndesirableWeight float64 // [kto_rejected_weight], TRL's undesirable_weight
	FTX               float64 // [pref_ftx] SFT loss on the desirable answers
}

// Validate refuses settings the formula cannot take.
func (c KTOConfig) Validate() error {
	if !(c.Beta > 0) || math.IsInf(c.Beta, 0) {
		return fmt.Errorf("pref_beta %v: want a positive number", c.Beta)
	}
	for _, w := range []struct {
		key string
		v   float64
	}{{"kto_chosen_weight", c.DesirableWeight}, {"kto_rejected_weight", c.UndesirableWeight}, {"pref_ftx", c.FTX}} {
		if w.v < 0 || math.IsNaN(w.v) || math.IsInf(w.v, 0) {
			return fmt.Errorf("%s %v: want 0 or more", w.key, w.v)
		}
	}
	return nil
}

// Sample is one KTO example: the answer's summed log-probability under the
// policy and the reference, its trained tokens, and its label.
type Sample struct {
	Logp, RefLogp float64
	Len           int
	Desirable     bool
}

// KL is KTO's reference point: the mean, over mismatched prompt/answer
// pairs, of the policy's summed log-probability minus the reference's,
// clamped at 0. It carries no gradient (TRL computes it without one).
func KL(policy, ref []float64) float64 {
	if len(policy) == 0 {
		return 0
	}
	var s float64
	for i := range policy {
		s += policy[i] - ref[i]
	}
	return max(s/float64(len(policy)), 0)
}

// Loss returns weight·Σ (loss of each sample) and its gradient in every
// sample's policy sum, samples being one micro-batch. Desirable answers
// lose w_D·(1 − σ(β(r − KL))), undesirable ones w_U·(1 − σ(β(KL − r))), r
// the log-ratio to the reference. Pass weight = 1/(samples of the optimizer
// step): TRL takes the mean over the batch.
//
// pref_ftx adds an SFT term as LLaMA-Factory's KTO trainer does: per
// micro-batch of N answers, n of them desirable, FTX·mean(−mean log p of
// the desirable answers)·N/n, the mean over the desirable answers divided
// by their share. In weight·Σ per-sample terms (weight·N = 1/micro-batches
// for equal micro-batches) each desirable answer adds FTX·(N/n)²·(−mean
// log p). A micro-batch of one answer therefore trains its SFT term at
// full weight when desirable, as LLaMA-Factory's batch size 1 does.
func (c KTOConfig) Loss(samples []Sample, kl, weight float64) (float64, []float64, Metrics) {
	grads := make([]float64, len(samples))
	var m Metrics
	var total float64
	b := c.Beta
	desirable := 0
	for _, s := range samples {
		if s.Desirable {
			desirable++
		}
	}
	var ftx float64
	if desirable > 0 {
		share := float64(desirable) / float64(len(samples))
		ftx = c.FTX / (share * share)
	}
	for i, s := range samples {
		r := s.Logp - s.RefLogp
		var l, d float64
		if s.Desirable {
			u := b * (r - kl)
			l, d = c.DesirableWeight*(1-sigmoid(u)), -c.DesirableWeight*b*dsigmoid(u)
			if ftx > 0 {
				l -= ftx * s.Logp / float64(s.Len)
				d -= ftx / float64(s.Len)
			}
			m.Chosen++
			m.RewardChosen += b * r
			m.LogpChosen += s.Logp
			m.SFT += -s.Logp / float64(s.Len)
		} else {
			u := b * (kl - r)
			l, d = c.UndesirableWeight*(1-sigmoid(u)), c.UndesirableWeight*b*dsigmoid(u)
			m.Rejected++
			m.RewardRejected += b * r
			m.LogpRejected += s.Logp
		}
		grads[i] = weight * d
		total += l
		m.Loss += l
		m.N++
	}
	return weight * total, grads, m
}

// Metrics are sums over the examples of one or more batches; Values turns
// them into the means TRL and LLaMA-Factory log.
type Metrics struct {
	Loss float64 // Σ loss of each pair or sample
	N    int     // pairs (DPO) or samples (KTO) in Loss

	Chosen, Rejected             int     // answers counted in the sums below
	RewardChosen, RewardRejected float64 // Σ β·log-ratio (β·log p without a reference)
	LogpChosen, LogpRejected     float64 // Σ policy log-probability (means for IPO, ORPO, SimPO)
	Pairs                        int     // pairs in Correct
	Correct                      float64 // pairs whose chosen reward is above the rejected one
	SFT                          float64 // Σ −mean log p of the chosen answers
	OddsRatio                    float64 // ORPO: Σ −log σ(log odds ratio)
	KL                           float64 // KTO: Σ of the steps' KL estimates
	KLSteps                      int     // steps in KL
}

// Add accumulates o into m.
func (m *Metrics) Add(o Metrics) {
	m.Loss += o.Loss
	m.N += o.N
	m.Chosen += o.Chosen
	m.Rejected += o.Rejected
	m.RewardChosen += o.RewardChosen
	m.RewardRejected += o.RewardRejected
	m.LogpChosen += o.LogpChosen
	m.LogpRejected += o.LogpRejected
	m.Pairs += o.Pairs
	m.Correct += o.Correct
	m.SFT += o.SFT
	m.OddsRatio += o.OddsRatio
	m.KL += o.KL
	m.KLSteps += o.KLSteps
}

// Metric is one logged value.
type Metric struct {
	Key   string
	Value float64
}

// Values are the means, named as TRL and LLaMA-Factory log them, in a
// fixed order; a value without examples behind it is left out.
func (m Metrics) Values() []Metric {
	var out []Metric
	add := func(k string, sum float64, n int) {
		if n > 0 {
			out = append(out, Metric{k, sum / float64(n)})
		}
	}
	add("rewards/chosen", m.RewardChosen, m.Chosen)
	add("rewards/rejected", m.RewardRejected, m.Rejected)
	add("rewards/accuracies", m.Correct, m.Pairs)
	if m.Chosen > 0 && m.Rejected > 0 {
		out = append(out, Metric{"rewards/margins", m.RewardChosen/float64(m.Chosen) - m.RewardRejected/float64(m.Rejected)})
	}
	add("logps/chosen", m.LogpChosen, m.Chosen)
	add("logps/rejected", m.LogpRejected, m.Rejected)
	add("sft_loss", m.SFT, m.Chosen)
	if m.OddsRatio != 0 {
		add("odds_ratio_loss", m.OddsRatio, m.Pairs)
	}
	add("kl", m.KL, m.KLSteps)
	return out
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// dsigmoid is σ'(x) = σ(x)·σ(−x).
func dsigmoid(x float64) float64 { return sigmoid(x) * sigmoid(-x) }

// softplus is log(1 + eˣ) = −log σ(−x), without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}
