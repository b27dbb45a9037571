package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Mix strategies. The interleave ones and concat are LLaMA-Factory's
// mix_strategy values; MixRatio draws a fixed share from each dataset.
const (
	MixConcat          = "concat"
	MixInterleaveUnder = "interleave_under"
	MixInterleaveOver  = "interleave_over"
	MixRatio           = "ratio"
)

// MixConfig says how several datasets become one sample order.
type MixConfig struct {
	Strategy string    `json:"mix_strategy,omitempty"` // default concat, or ratio when Ratios is set
	Ratios   []float64 `json:"ratios,omitempty"`       // per dataset, e.g. 7,3 (any scale)
	// Interleave probabilities per dataset (LLaMA-Factory interleave_probs);
	// without them interleaving is round-robin.
	Probs []float64 `json:"interleave_probs,omitempty"`
	// Ratio mixing with replacement may repeat samples to reach Total;
	// without it the total is as large as the scarcest dataset allows.
	Replacement bool  `json:"replacement,omitempty"`
	Total       int   `json:"total,omitempty"`
	Seed        int64 `json:"seed"`
}

// Ref names one sample: the dataset's position in the list and the
// sample's index within that dataset.
type Ref struct {
	Dataset int
	Index   int
}

func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9E3779B97F4A7C15^stream))
}

// Mix orders the samples of datasets with the given sizes. The result is a
// deterministic function of counts and cfg.
func Mix(counts []int, cfg MixConfig) ([]Ref, error) {
	k := len(counts)
	strategy := cfg.Strategy
	if strategy == "" {
		strategy = MixConcat
		if len(cfg.Ratios) > 0 {
			strategy = MixRatio
		}
	}
	weights := func(w []float64, name string) ([]float64, error) {
		if len(w) != k {
			return nil, fmt.Errorf("%s: %d values for %d datasets", name, len(w), k)
		}
		sum := 0.0
		for i, v := range w {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s[%d] = %v: expected a non-negative number", name, i, v)
			}
			sum += v
		}
		if sum == 0 {
			return nil, fmt.Errorf("%s: all zero", name)
		}
		out := make([]float64, k)
		for i, v := range w {
			out[i] = v / sum
		}
		return out, nil
	}
	switch strategy {
	case MixConcat:
		var refs []Ref
		for d, n := range counts {
			for i := 0; i < n; i++ {
				refs = append(refs, Ref{d, i})
			}
		}
		return refs, nil
	case MixRatio:
		r, err := weights(cfg.Ratios, "ratios")
		if err != nil {
			return nil, err
		}
		return mixRatio(counts, r, cfg)
	case MixInterleaveUnder, MixInterleaveOver:
		var p []float64
		if len(cfg.Probs) > 0 {
			var err error
			if p, err = weights(cfg.Probs, "interleave_probs"); err != nil {
				return nil, err
			}
		}
		return interleave(counts, p, strategy == MixInterleaveOver, cfg.Seed), nil
	}
	return nil, fmt.Errorf("unknown mix_strategy %q (expected concat, interleave_under, interleave_over or ratio)", cfg.Strategy)
}

// apportion splits total into integer shares proportional to r (largest
// remainder), so the realised ratio is as exact as integers allow.
func apportion(total int, r []float64) []int {
	share := make([]int, len(r))
	type rem struct {
		i int
		f float64
	}
	rems := make([]rem, len(r))
	left := total
	for i, v := range r {
		x := v * float64(total)
		share[i] = int(math.Floor(x))
		left -= share[i]
		rems[i] = rem{i, x - math.Floor(x)}
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].f > rems[b].f })
	for j := 0; left > 0 && j < len(rems); j++ {
		share[rems[j].i]++
		left--
	}
	return share
}

func mixRatio(counts []int, r []float64, cfg MixConfig) ([]Ref, error) {
	total := cfg.Total
	if cfg.Replacement {
		if total <= 0 {
			for _, n := range counts {
				total += n
			}
		}
	} else {
		limit := math.MaxInt
		for i, n := range counts {
			if r[i] > 0 {
				limit = min(limit, int(math.Floor(float64(n)/r[i]+1e-9)))
			}
		}
		if total <= 0 || total > limit {
			total = limit
		}
	}
	shares := apportion(total, r)
	var refs []Ref
	for d, want := range shares {
		n := counts[d]
		if want == 0 {
			continue
		}
		if n == 0 {
			return nil, fmt.Errorf("ratio mix: dataset %d has no samples but a share of %d", d, want)
		}
		rng := newRand(cfg.Seed, uint64(d)+1)
		if cfg.Replacement {
			// Whole passes over the dataset first, then a random remainder:
			// every sample is used before any is repeated.
			for want >= n {
				for i := 0; i < n; i++ {
					refs = append(refs, Ref{d, i})
				}
				want -= n
			}
		}
		want = min(want, n)
		for _, i := range sampleWithout(rng, n, want) {
			refs = append(refs, Ref{d, i})
		}
	}
	Shuffle(refs, cfg.Seed)
	return refs, nil
}

// sampleWithout picks k distinct indices of [0,n) in increasing order.
func sampleWithout(rng *rand.Rand, n, k int) []int {
	if k >= n {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	// Floyd's algorithm: k draws, memory O(k) rather than O(n).
	chosen := make(map[int]struct{}, k)
	for j := n - k; j < n; j++ {
		t := rng.IntN(j + 1)
		if _, ok := chosen[t]; ok {
			t = j
		}
		chosen[t] = struct{}{}
	}
	out := make([]int, 0, k)
	for i := range chosen {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

// interleave follows Hugging Face interleave_datasets: pick a dataset per
// step (round-robin, or by probs), take its next sample; stop at the first
// exhausted dataset (under) or once every dataset was fully used, restarting
// the exhausted ones (over).
func interleave(counts []int, probs []float64, over bool, seed int64) []Ref {
	k := len(counts)
	next := make([]int, k)
	done := make([]bool, k)
	ndone := 0
	for i, n := range counts {
		if n == 0 {
			if !over {
				return nil
			}
			done[i] = true
			ndone++
		}
	}
	rng := newRand(seed, 0)
	var refs []Ref
	for step := 0; ndone < k; step++ {
		d := step % k
		if probs != nil {
			x, acc := rng.Float64(), 0.0
			d = k - 1
			for i, p := range probs {
				acc += p
				if x < acc {
					d = i
					break
				}
			}
		}
		if counts[d] == 0 {
			continue
		}
		refs = append(refs, Ref{d, next[d] % counts[d]})
		next[d]++
		if next[d] >= counts[d] && !done[d] {
			done[d] = true
			ndone++
			if !over {
				break
			}
		}
	}
	return refs
}

// Shuffle permutes refs deterministically for seed.
func Shuffle[T any](s []T, seed int64) {
	rng := newRand(seed, 0xABCDEF)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
}

// SplitVal moves a validation share off refs, after a seeded shuffle:
// valSize < 1 is a fraction, ≥ 1 a count (LLaMA-Factory's val_size).
func SplitVal[T any](s []T, valSize float64, seed int64) (train, val []T, err error) {
	if valSize <= 0 {
		return s, nil, nil
	}
	n := int(valSize)
	if valSize < 1 {
		n = int(math.Round(valSize * float64(len(s))))
	}
	if n >= len(s) {
		return nil, nil, fmt.Errorf("val_size %v leaves no training samples out of %d", valSize, len(s))
	}
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	Shuffle(idx, seed^0x5A5A)
	isVal := make([]bool, len(s))
	for _, i := range idx[:n] {
		isVal[i] = true
	}
	for i, x := range s {
		if isVal[i] {
			val = append(val, x)
		} else {
			train = append(train, x)
		}
	}
	return train, val, nil
}
