package data

import (
	"math/rand/v2"
	"testing"
)

func seqSamples(lens ...int) SampleSlice {
	var out SampleSlice
	for s, n := range lens {
		ids := make([]int32, n)
		lab := make([]int32, n)
		for i := range ids {
			ids[i] = int32(1000*(s+1) + i)
			lab[i] = ids[i]
		}
		out = append(out, Sample{InputIDs: ids, Labels: lab})
	}
	return out
}

func TestPacking(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	lens := make([]int, 200)
	total := 0
	for i := range lens {
		lens[i] = 1 + rng.IntN(60)
		total += lens[i]
	}
	src := seqSamples(lens...)
	order := make([]int, len(src))
	for i := range order {
		order[i] = i
	}
	const T = 64
	plans, err := Plan(src, order, BatchConfig{BatchSize: 4, SeqLen: T, Packing: true})
	if err != nil {
		t.Fatal(err)
	}
	placed := map[int]bool{}
	rows := 0
	for _, p := range plans {
		b := p.Build(src, -1)
		if b.T != T || len(b.InputIDs) != b.B*T {
			t.Fatalf("shape %dx%d, %d ids", b.B, b.T, len(b.InputIDs))
		}
		for r, row := range p.Rows {
			rows++
			at := 0
			for seg, i := range row {
				if placed[i] {
					t.Fatalf("sample %d packed twice", i)
				}
				placed[i] = true
				ids, lab := src.Tokens(i)
				for k := range ids {
					j := r*T + at + k
					if b.InputIDs[j] != ids[k] || b.PositionIDs[j] != int32(k) || b.SegmentIDs[j] != int32(seg+1) || b.AttentionMask[j] != 1 {
						t.Fatalf("row %d pos %d: id %d pos %d seg %d", r, at+k, b.InputIDs[j], b.PositionIDs[j], b.SegmentIDs[j])
					}
					want := lab[k]
					if k == 0 && seg > 0 {
						want = IgnoreIndex // never predict a neighbour's first token
					}
					if b.Labels[j] != want {
						t.Fatalf("row %d pos %d: label %d, want %d", r, at+k, b.Labels[j], want)
					}
				}
				at += len(ids)
			}
			for j := r*T + at; j < (r+1)*T; j++ {
				if b.InputIDs[j] != -1 || b.Labels[j] != IgnoreIndex || b.SegmentIDs[j] != 0 || b.AttentionMask[j] != 0 {
					t.Fatalf("padding at row %d pos %d not clean", r, j-r*T)
				}
			}
		}
	}
	if len(placed) != len(src) {
		t.Fatalf("packed %d of %d samples", len(placed), len(src))
	}
	if eff := float64(total) / float64(rows*T); eff < 0.9 {
		t.Errorf("packing efficiency %.2f < 0.9", eff)
	}
}

func TestPaddedBatchesGroupedByLength(t *testing.T) {
	lens := make([]int, 64)
	for i := range lens {
		lens[i] = 1 + (i*37)%50
	}
	src := seqSamples(lens...)
	order := make([]int, len(src))
	for i := range order {
		order[i] = i
	}
	plans, err := Plan(src, order, BatchConfig{BatchSize: 8, PadMultiple: 8, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	padded, real := 0, 0
	for _, p := range plans {
		b := p.Build(src, 0)
		if b.T%8 != 0 {
			t.Errorf("T %d not a multiple of 8", b.T)
		}
		for r, row := range p.Rows {
			if len(row) != 1 {
				t.Fatal("padded batches hold one sample a row")
			}
			seen++
			n := src.SeqLen(row[0])
			real += n
			padded += b.T
			if b.AttentionMask[r*b.T+n-1] != 1 || (n < b.T && b.AttentionMask[r*b.T+n] != 0) {
				t.Errorf("mask wrong at the end of row %d", r)
			}
		}
	}
	if seen != len(src) {
		t.Fatalf("batched %d of %d", seen, len(src))
	}
	if float64(real)/float64(padded) < 0.8 {
		t.Errorf("grouping by length wastes too much: %.2f useful", float64(real)/float64(padded))
	}
}
