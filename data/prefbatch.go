package data

// PairSource is random access to preference pairs (the cache, or a slice
// of samples in tests).
type PairSource interface {
	Sample(i int) Sample
}

// PairBatch builds the batch of preference pairs idx: the chosen answers in
// rows 0…n−1 and the rejected ones, in the same order, in rows n…2n−1, so
// one forward pass scores both sides. The two rows of a pair share the
// prompt; their labels cover only the answers (as encoded). Rows are right
// padded to the longest.
func PairBatch(src PairSource, idx []int, pad int32) Batch {
	seqs := make([]seq, 0, 2*len(idx))
	rej := make([]seq, 0, len(idx))
	for _, i := range idx {
		s := src.Sample(i)
		seqs = append(seqs, seq{s.InputIDs, s.Labels})
		rej = append(rej, seq{s.RejectedIDs, s.RejectedLabels})
	}
	return padRows(append(seqs, rej...), pad)
}

// KTOBatch builds a KTO micro-batch: target holds samples idx, one a row;
// kl holds, row for row, the prompt of each with the answer of
// partner(sample), the mismatched pairs whose log-ratio estimates KTO's KL
// reference point (as TRL and LLaMA-Factory build them, without a
// gradient). A KL row longer than cutoff (when > 0) has its prompt and
// answer shared out as LLaMA-Factory does (ShareCutoff). desirable is each
// target's label.
func KTOBatch(src Samples, idx []int, undesirable func(int) bool, partner func(int) int, cutoff int, pad int32) (target, kl Batch, desirable []bool) {
	ts := make([]seq, 0, len(idx))
	ks := make([]seq, 0, len(idx))
	for _, i := range idx {
		ids, lab := src.Tokens(i)
		ts = append(ts, seq{ids, lab})
		ks = append(ks, klRow(src, i, partner(i), cutoff))
		desirable = append(desirable, !undesirable(i))
	}
	return padRows(ts, pad), padRows(ks, pad), desirable
}

// klRow is the prompt of sample i followed by the answer of sample j: each
// split where its first trained token is. LLaMA-Factory shares cutoff out
// over the uncut prompt and answer; the cache holds them already cut, so a
// KL row of two cut samples may keep a few tokens more or fewer than
// LLaMA-Factory's (the row only estimates the reference point).
func klRow(src Samples, i, j, cutoff int) seq {
	ids, lab := src.Tokens(i)
	p := answerStart(lab)
	aids, alab := src.Tokens(j)
	a := answerStart(alab)
	s := seq{ids: make([]int32, 0, p+len(aids)-a), labels: make([]int32, 0, p+len(aids)-a)}
	s.ids = append(append(s.ids, ids[:p]...), aids[a:]...)
	for range p {
		s.labels = append(s.labels, IgnoreIndex)
	}
	s.labels = append(s.labels, alab[a:]...)
	s.ids, s.labels = cutPrompted(s.ids, s.labels, cutoff, -1)
	return s
}

// answerStart is the index of the first trained token (len when none).
func answerStart(lab []int32) int {
	for k, l := range lab {
		if l != IgnoreIndex {
			return k
		}
	}
	return len(lab)
}

type seq struct{ ids, labels []int32 }

func padRows(rows []seq, pad int32) Batch {
	T := 1
	for _, r := range rows {
		T = max(T, len(r.ids))
	}
	B := len(rows)
	b := Batch{B: B, T: T, InputIDs: make([]int32, B*T), Labels: make([]int32, B*T), PositionIDs: make([]int32, B*T),
		AttentionMask: make([]int32, B*T)}
	for r, s := range rows {
		for k := range T {
			j := r*T + k
			b.PositionIDs[j] = int32(k)
			if k < len(s.ids) {
				b.InputIDs[j], b.Labels[j], b.AttentionMask[j] = s.ids[k], s.labels[k], 1
			} else {
				b.InputIDs[j], b.Labels[j] = pad, IgnoreIndex
			}
		}
	}
	return b
}
