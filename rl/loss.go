package rl

import (
	"fmt"
	"math"
)

// LossType names how per-token losses are aggregated (TRL's loss_type).
type LossType string

const (
	// GRPO averages each completion's tokens, then the completions: long
	// completions weigh less per token (the original paper's length bias).
	GRPO LossType = "grpo"
	// BNPO averages over every completion token of the micro-batch.
	BNPO LossType = "bnpo"
	// DrGRPO sums and divides by a constant, completions ×
	// max_completion_length, so no length bias enters.
	DrGRPO LossType = "dr_grpo"
	// DAPO averages over every completion token of the whole optimizer
	// step (all micro-batches together); TRL's default.
	DAPO LossType = "dapo"
)

// LossTypes lists the supported values of loss_type.
var LossTypes = []LossType{GRPO, BNPO, DrGRPO, DAPO}

// Objective is the configuration of the clipped surrogate loss.
type Objective struct {
	Type LossType
	// Beta weighs the k3 KL estimate to the reference policy; 0 leaves the
	// reference out entirely.
	Beta float64
	// EpsLow and EpsHigh bound the importance ratio to
	// [1−EpsLow, 1+EpsHigh] (TRL's epsilon and epsilon_high).
	EpsLow, EpsHigh float64
	// MaxCompletionLength is dr_grpo's constant denominator per completion.
	MaxCompletionLength int
	// Accum is the number of micro-batches of one optimizer step: grpo,
	// bnpo and dr_grpo divide each micro-batch's loss by it, as TRL does.
	Accum int
	// StepTokens counts the completion tokens of the whole optimizer step,
	// dapo's denominator.
	StepTokens int
}

// Validate checks the settings.
func (o Objective) Validate() error {
	switch o.Type {
	case GRPO, BNPO, DrGRPO, DAPO:
	default:
		return fmt.Errorf("loss_type %q: want grpo, bnpo, dr_grpo or dapo", o.Type)
	}
	if o.Beta < 0 || math.IsNaN(o.Beta) {
		return fmt.Errorf("beta %v: want ≥ 0", o.Beta)
	}
	if !(o.EpsLow >= 0 && o.EpsLow < 1) || !(o.EpsHigh >= 0) {
		return fmt.Errorf("epsilon %v, epsilon_high %v: want 0 ≤ epsilon < 1 and epsilon_high ≥ 0", o.EpsLow, o.EpsHigh)
	}
	if o.Type == DrGRPO && o.MaxCompletionLength <= 0 {
		return fmt.Errorf("dr_grpo needs max_completion_length > 0")
	}
	return nil
}

// Seq is one completion of a micro-batch.
type Seq struct {
	Logp []float64 // log-probability of each completion token under the policy being trained
	// Old holds the log-probabilities under the policy that sampled the
	// completion, when it differs from the current one (num_iterations > 1);
	// nil means the current policy, whose ratio is 1 with gradient 1.
	Old []float64
	Ref []float64 // under the reference policy; read only when Beta > 0
	Adv float64   // the completion's advantage
	// Masked leaves the completion out of the loss: TRL's
	// mask_truncated_completions for one cut at max_completion_length.
	// It still counts as a completion of the micro-batch for grpo and
	// dr_grpo, whose denominators count completions, as in TRL.
	Masked bool
}

// Result is a micro-batch's share of the loss of an optimizer step.
type Result struct {
	Loss float64
	// Coef[i][t] is ∂Loss/∂Logp[t] of completion i: the coefficients
	// BackwardTokens takes.
	Coef [][]float64
	// Statistics over the micro-batch's tokens, summed: TRL's kl and clip
	// ratios are their means.
	Tokens                                 int
	KLSum                                  float64
	LowClipped, HighClipped, RegionClipped int
}

// Loss computes the micro-batch's loss and its derivatives. Per token, with
// ratio r = exp(logp − old) and advantage A:
//
//	ℓ = −min(r·A, clip(r, 1−εlow, 1+εhigh)·A) + β·(exp(ref−logp) − (ref−logp) − 1)
//
// aggregated by Type. A token whose ratio left the clip range on the side
// its advantage pushes toward has no gradient from the surrogate: that is
// the clipping.
func (o Objective) Loss(seqs []Seq) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	accum := float64(max(o.Accum, 1))
	res := Result{Coef: make([][]float64, len(seqs))}
	micro := 0
	for i, s := range seqs {
		if s.Old != nil && len(s.Old) != len(s.Logp) {
			return Result{}, fmt.Errorf("rl: completion %d: %d old log-probabilities for %d tokens", i, len(s.Old), len(s.Logp))
		}
		if o.Beta > 0 && len(s.Ref) != len(s.Logp) {
			return Result{}, fmt.Errorf("rl: completion %d: %d reference log-probabilities for %d tokens", i, len(s.Ref), len(s.Logp))
		}
		if !s.Masked {
			micro += len(s.Logp)
		}
	}
	for i, s := range seqs {
		// w is the weight of each of this completion's token losses.
		var w float64
		switch o.Type {
		case GRPO:
			w = 1 / (float64(max(len(s.Logp), 1)) * float64(len(seqs)) * accum)
		case BNPO:
			w = 1 / (float64(max(micro, 1)) * accum)
		case DrGRPO:
			w = 1 / (float64(len(seqs)*o.MaxCompletionLength) * accum)
		case DAPO:
			w = 1 / float64(max(o.StepTokens, 1))
		}
		coef := make([]float64, len(s.Logp))
		res.Coef[i] = coef
		if s.Masked {
			continue
		}
		for t, lp := range s.Logp {
			r, dr := 1.0, 1.0 // ratio and ∂ratio/∂logp
			if s.Old != nil {
				r = math.Exp(lp - s.Old[t])
				dr = r
			}
			lo, hi := 1-o.EpsLow, 1+o.EpsHigh
			rc, drc := r, dr
			if r < lo {
				rc, drc = lo, 0
			} else if r > hi {
				rc, drc = hi, 0
			}
			// −min(r·A, rc·A): the smaller term and its derivative.
			l, dl := -r*s.Adv, -dr*s.Adv
			if rc*s.Adv < r*s.Adv {
				l, dl = -rc*s.Adv, -drc*s.Adv
			}
			switch {
			case r < lo && s.Adv < 0:
				res.LowClipped++
				res.RegionClipped++
			case r > hi && s.Adv > 0:
				res.HighClipped++
				res.RegionClipped++
			}
			if o.Beta > 0 {
				kl := KL(lp, s.Ref[t])
				res.KLSum += kl
				l += o.Beta * kl
				dl += o.Beta * DKL(lp, s.Ref[t])
			}
			res.Loss += w * l
			coef[t] = w * dl
		}
		res.Tokens += len(s.Logp)
	}
	return res, nil
}
