// Package infer turns a model, its tokenizer and its chat template into text:
// sampling, stop conditions and streaming decode, shared by the generate,
// chat and serve commands.
package infer

import (
	"math"
	"math/rand/v2"
	"sort"
)

// SampleOptions choose the next token from logits. Temperature 0 is greedy.
type SampleOptions struct {
	Temperature       float64
	TopK              int     // 0: no limit
	TopP              float64 // 0 or 1: no limit
	RepetitionPenalty float64 // 1 or 0: none
	Seed              uint64
}

// Sampler draws tokens; it owns its random state.
type Sampler struct {
	opt   SampleOptions
	rng   *rand.Rand
	idx   []int
	probs []float64
}

// NewSampler returns a sampler seeded from opt.Seed.
func NewSampler(opt SampleOptions) *Sampler {
	return &Sampler{opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, 0x73616d70))}
}

// NewSamplerRand returns a sampler drawing from r, whose state the caller
// owns (a trainer saves it in checkpoints so a resumed run samples the same
// completions).
func NewSamplerRand(opt SampleOptions, r *rand.Rand) *Sampler {
	return &Sampler{opt: opt, rng: r}
}

// Next picks a token. history (prompt and generated ids) feeds the
// repetition penalty, applied as in transformers: positive logits divided by
// the penalty, negative ones multiplied. logits are modified in place.
func (s *Sampler) Next(logits []float32, history []int32) int32 {
	if p := float32(s.opt.RepetitionPenalty); p > 0 && p != 1 {
		seen := make(map[int32]bool, len(history))
		for _, id := range history {
			if seen[id] || int(id) >= len(logits) {
				continue
			}
			seen[id] = true
			if logits[id] > 0 {
				logits[id] /= p
			} else {
				logits[id] *= p
			}
		}
	}
	if s.opt.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	// Sort candidate ids by logit, keep top-k, then the smallest prefix whose
	// probability mass reaches top-p.
	s.idx = s.idx[:0]
	for i := range logits {
		s.idx = append(s.idx, i)
	}
	sort.Slice(s.idx, func(a, b int) bool { return logits[s.idx[a]] > logits[s.idx[b]] })
	keep := len(s.idx)
	if s.opt.TopK > 0 && s.opt.TopK < keep {
		keep = s.opt.TopK
	}
	cand := s.idx[:keep]
	mx := float64(logits[cand[0]])
	s.probs = s.probs[:0]
	var sum float64
	for _, i := range cand {
		p := math.Exp((float64(logits[i]) - mx) / s.opt.Temperature)
		s.probs = append(s.probs, p)
		sum += p
	}
	if tp := s.opt.TopP; tp > 0 && tp < 1 {
		var acc float64
		for k, p := range s.probs {
			acc += p / sum
			if acc >= tp {
				s.probs = s.probs[:k+1]
				cand = cand[:k+1]
				break
			}
		}
		sum = 0
		for _, p := range s.probs {
			sum += p
		}
	}
	u := s.rng.Float64() * sum
	for k, p := range s.probs {
		u -= p
		if u <= 0 {
			return int32(cand[k])
		}
	}
	// Rounding left u above zero: take the last candidate that has any
	// probability (a masked token has none and must never be picked).
	for k := len(s.probs) - 1; k > 0; k-- {
		if s.probs[k] > 0 {
			return int32(cand[k])
		}
	}
	return int32(cand[0])
}
