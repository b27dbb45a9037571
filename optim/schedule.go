package optim

import (
	"fmt"
	"math"
)

// Schedule is a learning-rate schedule with the semantics of transformers'
// get_scheduler: LR(step) = BaseLR · λ(step), where step is the number of
// optimizer steps already taken (the LR for the first update is LR(0)).
type Schedule struct {
	Kind   string // one of the transformers schedule names
	BaseLR float64
	Warmup int
	Total  int
	// NumCycles: cosine and cosine_with_min_lr use 0.5 when zero
	// (half a cosine wave), cosine_with_restarts uses 1.
	NumCycles float64
	// MinLRRate is the floor of cosine_with_min_lr as a fraction of BaseLR.
	MinLRRate float64
	// LREnd and Power shape polynomial decay (defaults 1e-7 and 1).
	LREnd, Power float64
	// Timescale of inverse_sqrt (default Warmup, or 10000 without warmup).
	Timescale int
}

// scheduleKinds are the schedule names Schedule accepts (read-only).
var scheduleKinds = []string{
	"constant", "constant_with_warmup", "linear", "cosine",
	"cosine_with_restarts", "polynomial", "inverse_sqrt", "cosine_with_min_lr",
}

// NewSchedule returns a schedule of the given kind with transformers'
// defaults for the kind's extra parameters.
func NewSchedule(kind string, baseLR float64, warmup, total int) (Schedule, error) {
	s := Schedule{Kind: kind, BaseLR: baseLR, Warmup: warmup, Total: total}
	return s, s.Validate()
}

// Validate reports a schedule that cannot be evaluated.
func (s Schedule) Validate() error {
	known := false
	for _, k := range scheduleKinds {
		known = known || k == s.Kind
	}
	switch {
	case !known:
		return fmt.Errorf("lr schedule %q: unknown; want one of %v", s.Kind, scheduleKinds)
	case s.Warmup < 0:
		return fmt.Errorf("lr schedule %s: warmup %d steps; want >= 0", s.Kind, s.Warmup)
	case s.Total < 0:
		return fmt.Errorf("lr schedule %s: total %d steps; want >= 0", s.Kind, s.Total)
	case s.Kind == "polynomial" && s.lrEnd() > s.BaseLR:
		return fmt.Errorf("lr schedule polynomial: lr_end %g must not exceed the learning rate %g", s.lrEnd(), s.BaseLR)
	case s.MinLRRate < 0 || s.MinLRRate > 1:
		return fmt.Errorf("lr schedule %s: min lr rate %g; want 0..1", s.Kind, s.MinLRRate)
	}
	return nil
}

// LR is the learning rate for the update after step updates.
func (s Schedule) LR(step int) float64 { return s.BaseLR * s.Factor(step) }

// Factor is λ(step), the multiplier of BaseLR. Each branch mirrors the
// transformers lambda term by term so results agree to the last bit.
func (s Schedule) Factor(step int) float64 {
	if s.Kind == "constant" {
		return 1
	}
	if s.Kind == "inverse_sqrt" {
		ts := s.Timescale
		if ts == 0 {
			ts = s.Warmup
			if ts == 0 {
				ts = 10000
			}
		}
		if step < s.Warmup {
			return float64(step) / float64(max(1, s.Warmup))
		}
		shift := ts - s.Warmup
		return 1 / math.Sqrt(float64(step+shift)/float64(ts))
	}
	if step < s.Warmup {
		return float64(step) / float64(max(1, s.Warmup))
	}
	span := float64(max(1, s.Total-s.Warmup))
	progress := float64(step-s.Warmup) / span
	switch s.Kind {
	case "constant_with_warmup":
		return 1
	case "linear":
		return max(0, float64(s.Total-step)/span)
	case "cosine":
		return max(0, 0.5*(1+math.Cos(math.Pi*s.cycles(0.5)*2*progress)))
	case "cosine_with_min_lr":
		f := 0.5 * (1 + math.Cos(math.Pi*s.cycles(0.5)*2*progress))
		f = f*(1-s.MinLRRate) + s.MinLRRate
		return max(0, f)
	case "cosine_with_restarts":
		if progress >= 1 {
			return 0
		}
		return max(0, 0.5*(1+math.Cos(math.Pi*math.Mod(s.cycles(1)*progress, 1))))
	case "polynomial":
		lrEnd, power := s.lrEnd(), s.Power
		if power == 0 {
			power = 1
		}
		if step > s.Total {
			return lrEnd / s.BaseLR
		}
		remaining := 1 - float64(step-s.Warmup)/span
		return ((s.BaseLR-lrEnd)*math.Pow(remaining, power) + lrEnd) / s.BaseLR
	}
	return 1
}

func (s Schedule) cycles(def float64) float64 {
	if s.NumCycles == 0 {
		return def
	}
	return s.NumCycles
}

func (s Schedule) lrEnd() float64 {
	if s.LREnd == 0 {
		return 1e-7
	}
	return s.LREnd
}
