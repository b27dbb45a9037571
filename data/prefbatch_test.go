package data

import (
	"slices"
	"testing"
)

func labelled(prompt, answer []int32) Sample {
	s := Sample{InputIDs: append(slices.Clone(prompt), answer...)}
	for i := range s.InputIDs {
		l := int32(IgnoreIndex)
		if i >= len(prompt) {
			l = s.InputIDs[i]
		}
		s.Labels = append(s.Labels, l)
	}
	return s
}

type pairs []Sample

func (p pairs) Sample(i int) Sample { return p[i] }

// PairBatch: chosen rows first, then the rejected ones in the same order,
// right padded, labels only on the answers.
func TestPairBatchLayout(t *testing.T) {
	a, b := labelled([]int32{1, 2}, []int32{3}), labelled([]int32{1, 2}, []int32{4, 5})
	c, d := labelled([]int32{6}, []int32{7, 8, 9}), labelled([]int32{6}, []int32{10})
	src := pairs{{InputIDs: a.InputIDs, Labels: a.Labels, RejectedIDs: b.InputIDs, RejectedLabels: b.Labels},
		{InputIDs: c.InputIDs, Labels: c.Labels, RejectedIDs: d.InputIDs, RejectedLabels: d.Labels}}
	got := PairBatch(src, []int{1, 0}, 0)
	const I = IgnoreIndex
	wantIDs := []int32{6, 7, 8, 9, 1, 2, 3, 0, 6, 10, 0, 0, 1, 2, 4, 5}
	wantLab := []int32{I, 7, 8, 9, I, I, 3, I, I, 10, I, I, I, I, 4, 5}
	if got.B != 4 || got.T != 4 || !slices.Equal(got.InputIDs, wantIDs) || !slices.Equal(got.Labels, wantLab) {
		t.Errorf("B %d T %d\nids %v\nlab %v", got.B, got.T, got.InputIDs, got.Labels)
	}
	if m := got.AttentionMask; m[3] != 1 || m[7] != 0 || m[10] != 0 {
		t.Errorf("mask %v", m)
	}
}

// KTOBatch: the KL row of a sample is its prompt followed by its
// partner's answer, cut to cutoff.
func TestKTOBatchKLRows(t *testing.T) {
	src := SampleSlice{labelled([]int32{1, 2}, []int32{3, 4}), labelled([]int32{5}, []int32{6, 7, 8})}
	bad := func(i int) bool { return i == 1 }
	partner := func(i int) int { return 1 - i }
	target, kl, des := KTOBatch(src, []int{0, 1}, bad, partner, 4, 0)
	const I = IgnoreIndex
	if !slices.Equal(des, []bool{true, false}) || target.T != 4 {
		t.Errorf("desirable %v, target T %d", des, target.T)
	}
	// Row 0: prompt [1 2] + answer [6 7 8], cut to 4; row 1: [5] + [3 4].
	wantIDs := []int32{1, 2, 6, 7, 5, 3, 4, 0}
	wantLab := []int32{I, I, 6, 7, I, 3, 4, I}
	if kl.T != 4 || !slices.Equal(kl.InputIDs, wantIDs) || !slices.Equal(kl.Labels, wantLab) {
		t.Errorf("KL rows T %d\nids %v\nlab %v", kl.T, kl.InputIDs, kl.Labels)
	}
}
