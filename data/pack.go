package data

import (
	"fmt"
	"sort"
)

// Batch is what the trainer consumes. All slices are row-major B×T.
//
//   - InputIDs: token ids, PAD where AttentionMask is 0.
//   - Labels: the id to predict at that position before shifting (the loss
//     compares logits[t] with Labels[t+1]), IgnoreIndex where untrained or
//     padding. In packed rows the first token of every sample is
//     IgnoreIndex too, so no sample is asked to predict its neighbour's
//     first token.
//   - PositionIDs: restart at 0 at each packed sample.
//   - SegmentIDs: 1, 2, … for the samples of a row, 0 for padding;
//     attention must never cross a segment boundary (block-diagonal causal).
//   - AttentionMask: 1 for real tokens, 0 for padding.
type Batch struct {
	InputIDs, Labels, PositionIDs, SegmentIDs, AttentionMask []int32
	B, T                                                     int
}

// Samples is random access to tokenized samples (the cache, or a slice).
type Samples interface {
	Len() int
	SeqLen(i int) int
	// Tokens returns sample i's ids and labels; the slices may alias
	// read-only memory.
	Tokens(i int) (ids, labels []int32)
}

// SampleSlice adapts in-memory samples to Samples.
type SampleSlice []Sample

func (s SampleSlice) Len() int                        { return len(s) }
func (s SampleSlice) SeqLen(i int) int                { return len(s[i].InputIDs) }
func (s SampleSlice) Tokens(i int) ([]int32, []int32) { return s[i].InputIDs, s[i].Labels }

// BatchPlan lists the samples of each row of one batch; it is cheap to keep
// for a whole epoch and built into a Batch when needed.
type BatchPlan struct {
	Rows [][]int
	T    int
}

// BatchConfig chooses packing or length-grouped padding.
type BatchConfig struct {
	BatchSize int `json:"batch_size"` // rows per batch
	// SeqLen is the row length when packing, and the cap when padding
	// (longer samples are cut). 0 when padding: no cap.
	SeqLen int `json:"seq_len"`
	// Packing puts several samples in a row; otherwise one sample a row,
	// batches grouped by similar length and padded to the longest.
	Packing     bool  `json:"packing"`
	PadMultiple int   `json:"pad_multiple,omitempty"` // round padded T up to a multiple
	Seed        int64 `json:"seed"`
}

// Plan groups the samples in order into batches.
func Plan(src Samples, order []int, cfg BatchConfig) ([]BatchPlan, error) {
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("batch size %d: expected > 0", cfg.BatchSize)
	}
	length := func(i int) int {
		n := src.SeqLen(i)
		if cfg.SeqLen > 0 && n > cfg.SeqLen {
			return cfg.SeqLen
		}
		return n
	}
	var plans []BatchPlan
	if cfg.Packing {
		if cfg.SeqLen <= 0 {
			return nil, fmt.Errorf("packing needs a sequence length")
		}
		rows := packRows(order, length, cfg.SeqLen)
		for lo := 0; lo < len(rows); lo += cfg.BatchSize {
			plans = append(plans, BatchPlan{Rows: rows[lo:min(lo+cfg.BatchSize, len(rows))], T: cfg.SeqLen})
		}
		return plans, nil
	}
	// Like Hugging Face's group_by_length: sort within windows of 50
	// batches so each batch holds similar lengths but the order stays random.
	win := 50 * cfg.BatchSize
	ord := append([]int(nil), order...)
	for lo := 0; lo < len(ord); lo += win {
		w := ord[lo:min(lo+win, len(ord))]
		sort.SliceStable(w, func(a, b int) bool { return length(w[a]) > length(w[b]) })
	}
	for lo := 0; lo < len(ord); lo += cfg.BatchSize {
		b := ord[lo:min(lo+cfg.BatchSize, len(ord))]
		p := BatchPlan{}
		for _, i := range b {
			p.Rows = append(p.Rows, []int{i})
			p.T = max(p.T, length(i))
		}
		if m := cfg.PadMultiple; m > 1 {
			p.T = (p.T + m - 1) / m * m
		}
		plans = append(plans, p)
	}
	Shuffle(plans, cfg.Seed)
	return plans, nil
}

// packRows places samples into rows of capacity T by best fit over a small
// window of open rows, which keeps the given (shuffled) order roughly
// intact while filling rows well.
func packRows(order []int, length func(int) int, T int) [][]int {
	const maxOpen = 64
	type open struct {
		items []int
		free  int
	}
	var rows [][]int
	var opens []open
	for _, i := range order {
		n := length(i)
		if n == 0 {
			continue
		}
		best := -1
		for j, o := range opens {
			if o.free >= n && (best < 0 || o.free < opens[best].free) {
				best = j
			}
		}
		if best < 0 {
			if len(opens) == maxOpen {
				// Close the fullest row to make room.
				full := 0
				for j := range opens {
					if opens[j].free < opens[full].free {
						full = j
					}
				}
				rows = append(rows, opens[full].items)
				opens = append(opens[:full], opens[full+1:]...)
			}
			opens = append(opens, open{free: T})
			best = len(opens) - 1
		}
		opens[best].items = append(opens[best].items, i)
		opens[best].free -= n
		if opens[best].free == 0 {
			rows = append(rows, opens[best].items)
			opens = append(opens[:best], opens[best+1:]...)
		}
	}
	for _, o := range opens {
		rows = append(rows, o.items)
	}
	return rows
}

// Build materializes a planned batch. pad is the tokenizer's PAD id.
func (p BatchPlan) Build(src Samples, pad int32) Batch {
	B, T := len(p.Rows), p.T
	b := Batch{B: B, T: T,
		InputIDs: make([]int32, B*T), Labels: make([]int32, B*T), PositionIDs: make([]int32, B*T),
		SegmentIDs: make([]int32, B*T), AttentionMask: make([]int32, B*T)}
	for r, row := range p.Rows {
		base := r * T
		at := 0
		for seg, i := range row {
			ids, lab := src.Tokens(i)
			n := min(len(ids), T-at)
			for k := 0; k < n; k++ {
				j := base + at + k
				b.InputIDs[j] = ids[k]
				b.Labels[j] = lab[k]
				b.PositionIDs[j] = int32(k)
				b.SegmentIDs[j] = int32(seg + 1)
				b.AttentionMask[j] = 1
			}
			if seg > 0 && n > 0 {
				b.Labels[base+at] = IgnoreIndex
			}
			at += n
		}
		for j := base + at; j < base+T; j++ {
			b.InputIDs[j] = pad
			b.Labels[j] = IgnoreIndex
		}
	}
	return b
}
