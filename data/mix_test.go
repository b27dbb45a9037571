package data

import (
	"math"
	"reflect"
	"testing"
)

func TestMixRatios(t *testing.T) {
	cases := []struct {
		name        string
		counts      []int
		ratios      []float64
		replacement bool
		total       int
	}{
		{"7:3 without replacement", []int{10000, 10000}, []float64{7, 3}, false, 10000},
		{"5:5 without replacement", []int{10000, 10000}, []float64{5, 5}, false, 10000},
		{"7:3 with replacement from small sets", []int{3000, 500}, []float64{7, 3}, true, 10000},
		{"2:1:1 with replacement", []int{100, 9000, 40}, []float64{2, 1, 1}, true, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := MixConfig{Ratios: tc.ratios, Replacement: tc.replacement, Total: tc.total, Seed: 42}
			refs, err := Mix(tc.counts, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(refs) != tc.total {
				t.Fatalf("got %d samples, want %d", len(refs), tc.total)
			}
			got := make([]int, len(tc.counts))
			seen := map[Ref]int{}
			for _, r := range refs {
				if r.Index < 0 || r.Index >= tc.counts[r.Dataset] {
					t.Fatalf("ref %v out of range", r)
				}
				got[r.Dataset]++
				seen[r]++
			}
			sum := 0.0
			for _, r := range tc.ratios {
				sum += r
			}
			for d, n := range got {
				share, want := float64(n)/float64(len(refs)), tc.ratios[d]/sum
				if math.Abs(share-want) > 0.02 {
					t.Errorf("dataset %d: share %.4f, want %.4f ± 0.02", d, share, want)
				}
			}
			if !tc.replacement && len(seen) != len(refs) {
				t.Errorf("without replacement a sample repeats: %d distinct of %d", len(seen), len(refs))
			}
			// Over 10k samples the first half should already be mixed, not
			// one dataset followed by the other.
			first := make([]int, len(tc.counts))
			for _, r := range refs[:len(refs)/2] {
				first[r.Dataset]++
			}
			for d := range first {
				if math.Abs(float64(first[d])/float64(len(refs)/2)-tc.ratios[d]/sum) > 0.03 {
					t.Errorf("dataset %d: first half share %d/%d, not shuffled", d, first[d], len(refs)/2)
				}
			}
			again, _ := Mix(tc.counts, cfg)
			if !reflect.DeepEqual(refs, again) {
				t.Error("same seed gave a different order")
			}
			cfg.Seed = 43
			other, _ := Mix(tc.counts, cfg)
			if reflect.DeepEqual(refs, other) {
				t.Error("a different seed gave the same order")
			}
		})
	}
}

func TestMixWithoutReplacementLimitedByScarcest(t *testing.T) {
	refs, err := Mix([]int{1000, 100}, MixConfig{Ratios: []float64{1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 200 {
		t.Fatalf("1:1 from 1000 and 100 without replacement: %d samples, want 200", len(refs))
	}
}

func TestInterleave(t *testing.T) {
	counts := []int{3, 5}
	under, _ := Mix(counts, MixConfig{Strategy: MixInterleaveUnder})
	want := []Ref{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}}
	if !reflect.DeepEqual(under, want) {
		t.Errorf("interleave_under = %v, want %v", under, want)
	}
	over, _ := Mix(counts, MixConfig{Strategy: MixInterleaveOver})
	want = []Ref{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2}, {0, 0}, {1, 3}, {0, 1}, {1, 4}}
	if !reflect.DeepEqual(over, want) {
		t.Errorf("interleave_over = %v, want %v", over, want)
	}
	// With probabilities the realised shares follow them.
	refs, err := Mix([]int{100000, 100000}, MixConfig{Strategy: MixInterleaveUnder, Probs: []float64{0.8, 0.2}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	n0 := 0
	for _, r := range refs {
		if r.Dataset == 0 {
			n0++
		}
	}
	if len(refs) < 100000 || len(refs) > 130000 || math.Abs(float64(n0)/float64(len(refs))-0.8) > 0.02 {
		t.Errorf("probs 0.8/0.2: %d samples, share %.3f", len(refs), float64(n0)/float64(len(refs)))
	}
	concat, _ := Mix([]int{2, 1}, MixConfig{})
	if !reflect.DeepEqual(concat, []Ref{{0, 0}, {0, 1}, {1, 0}}) {
		t.Errorf("concat = %v", concat)
	}
	for _, bad := range []MixConfig{{Strategy: "zip"}, {Ratios: []float64{1}}, {Ratios: []float64{0, 0}}, {Strategy: MixInterleaveUnder, Probs: []float64{-1, 2}}} {
		if _, err := Mix([]int{1, 1}, bad); err == nil {
			t.Errorf("Mix(%+v) accepted", bad)
		}
	}
}

func TestSplitVal(t *testing.T) {
	s := make([]int, 1000)
	for i := range s {
		s[i] = i
	}
	train, val, err := SplitVal(s, 0.1, 7)
	if err != nil || len(train) != 900 || len(val) != 100 {
		t.Fatalf("fraction: %d/%d %v", len(train), len(val), err)
	}
	seen := map[int]bool{}
	for _, x := range append(append([]int{}, train...), val...) {
		if seen[x] {
			t.Fatal("sample in both splits")
		}
		seen[x] = true
	}
	train2, val2, _ := SplitVal(s, 0.1, 7)
	if !reflect.DeepEqual(val, val2) || !reflect.DeepEqual(train, train2) {
		t.Error("split not deterministic")
	}
	if _, v, _ := SplitVal(s, 25, 7); len(v) != 25 {
		t.Errorf("count split gave %d", len(v))
	}
	if _, _, err := SplitVal(s, 1000, 7); err == nil {
		t.Error("val_size taking everything accepted")
	}
}
