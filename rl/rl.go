// Package rl holds the arithmetic of group-relative policy optimisation
// (GRPO and its loss variants) in float64, apart from any model: group
// advantages from rewards, the clipped surrogate of each loss_type, the k3
// estimator of the KL divergence to a reference policy, and the derivative
// of the loss with respect to every token's log-probability, which the
// trainer hands to model.DeviceModel.BackwardTokens.
//
// The definitions follow TRL's GRPOTrainer (token-level importance
// sampling), so a configuration behaves as its users expect.
package rl

import (
	"fmt"
	"math"
	"strings"
)

// Scale says how advantages are divided: by the standard deviation of the
// rewards of their group (TRL's scale_rewards "group", the default, and
// true), of the whole batch ("batch"), or not at all ("none", false; Dr.
// GRPO's recommendation).
type Scale string

const (
	ScaleGroup Scale = "group"
	ScaleBatch Scale = "batch"
	ScaleNone  Scale = "none"
)

// advEps keeps a group whose rewards are all equal finite: its advantages
// are 0/(0+advEps) = 0. TRL adds the same 1e-4.
const advEps = 1e-4

// Advantages turns rewards, laid out group after group (groupSize
// completions of one prompt each), into advantages: reward minus the mean
// of its group, divided by the standard deviation chosen by scale plus
// 1e-4. Standard deviations are unbiased (n−1), as torch.std. fracZeroStd is
// the fraction of completions whose scaling deviation is zero: for group
// scaling, those of groups where every completion got the same reward and so
// taught nothing (TRL logs it as frac_reward_zero_std).
func Advantages(rewards []float64, groupSize int, scale Scale) (adv []float64, fracZeroStd float64, err error) {
	if groupSize < 1 || len(rewards)%groupSize != 0 {
		return nil, 0, fmt.Errorf("rl: %d rewards do not split into groups of %d", len(rewards), groupSize)
	}
	for i, r := range rewards {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return nil, 0, fmt.Errorf("rl: reward %d is %v", i, r)
		}
	}
	adv = make([]float64, len(rewards))
	std := make([]float64, len(rewards))
	batchStd := StdDev(rewards)
	for g := 0; g < len(rewards); g += groupSize {
		grp := rewards[g : g+groupSize]
		mean := Mean(grp)
		s := batchStd
		if scale != ScaleBatch {
			s = StdDev(grp)
		}
		for i, r := range grp {
			adv[g+i] = r - mean
			std[g+i] = s
		}
	}
	zero := 0
	for i := range adv {
		if scale != ScaleNone {
			adv[i] /= std[i] + advEps
		}
		if math.Abs(std[i]) <= 1e-8 { // torch.isclose(std, 0)
			zero++
		}
	}
	if len(adv) > 0 {
		fracZeroStd = float64(zero) / float64(len(adv))
	}
	return adv, fracZeroStd, nil
}

// ParseScale reads scale_rewards: group, batch, none, or a boolean.
func ParseScale(s string) (Scale, error) {
	switch strings.ToLower(s) {
	case "group", "true":
		return ScaleGroup, nil
	case "batch":
		return ScaleBatch, nil
	case "none", "false":
		return ScaleNone, nil
	}
	return "", fmt.Errorf("scale_rewards %q: want group, batch, none, true or false", s)
}

// Mean is the arithmetic mean (0 for none).
func Mean(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// StdDev is the unbiased standard deviation (0 for fewer than two values).
func StdDev(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	m := Mean(x)
	var s float64
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}

// KL is the k3 estimator of KL(π‖π_ref) at one sampled token:
// exp(ref−logp) − (ref−logp) − 1, never negative, zero when the policies
// agree. DKL is its derivative in logp.
func KL(logp, ref float64) float64 {
	d := ref - logp
	return math.Exp(d) - d - 1
}

// DKL is ∂KL/∂logp = 1 − exp(ref−logp).
func DKL(logp, ref float64) float64 { return 1 - math.Exp(ref-logp) }
