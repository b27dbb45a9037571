package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

func TestHeadChunk(t *testing.T) {
	for _, c := range []struct{ vocab, rows, want int }{
		{49152, 255, 255},   // smollm2 at 256 tokens: one chunk
		{151936, 255, 255},  // qwen3 at 256 tokens: one chunk, past the budget
		{151936, 300, 150},  // two even chunks rather than 256 + 44
		{151936, 1023, 256}, // four chunks of the minimum
		{49152, 1023, 341},  // the budget: 16M logits
		{2048, 10000, 5000}, // small vocabulary: the budget allows 8192 rows
		{151936, 0, 1},      // nothing to compute
	} {
		if got := HeadChunk(c.vocab, c.rows); got != c.want {
			t.Errorf("HeadChunk(%d, %d) = %d, want %d", c.vocab, c.rows, got, c.want)
		}
	}
}

// The head over a batch of two sequences gives the loss and the gradients
// of the two computed one at a time: the trained rows of both gathered
// into one product and their gradients scattered back. (The CPU
// workspace's version of this test split the head into chunks of HeadChunk
// rows; the device head's chunks hold 96M logits, more than a unit test
// should allocate, so its chunking is not exercised here.)
func TestHeadRowsMatchOneSequenceAtATime(t *testing.T) {
	onBackends(t, testHeadRows)
}

func testHeadRows(t *testing.T, be compute.Backend) {
	cfg, err := Shape("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(3)
	setTrainable(m)
	const T = 200
	r := rand.New(rand.NewPCG(7, 8))
	seq := func() []int32 {
		ids := make([]int32, T)
		for i := range ids {
			ids[i] = int32(r.IntN(cfg.Vocab))
		}
		return ids
	}
	a, b := seq(), seq()
	batch := func(rows ...[]int32) *Batch {
		bt := &Batch{B: len(rows), T: T}
		for _, ids := range rows {
			bt.IDs = append(bt.IDs, ids...)
			bt.Labels = append(bt.Labels, ids...)
		}
		return bt
	}
	scale := float32(1.0 / float64(2*(T-1)))
	w := newDM(t, m, be, DeviceOptions{})
	sum, n := mustStep(t, w, batch(a, b), scale)
	both := deviceGrads(t, w, m.Params())
	w.ZeroGrad()
	sa, na := mustStep(t, w, batch(a), scale)
	sb, nb := mustStep(t, w, batch(b), scale)
	single := deviceGrads(t, w, m.Params())
	if n != na+nb {
		t.Fatalf("trained rows %d, want %d", n, na+nb)
	}
	if d := math.Abs(sum - (sa + sb)); d > 1e-6*math.Abs(sum) {
		t.Errorf("loss sum %v over the batch, %v per sequence", sum, sa+sb)
	}
	for i, p := range m.Params() {
		var num, den float64
		for j, v := range both[i] {
			d := float64(v - single[i][j])
			num += d * d
			den += float64(single[i][j]) * float64(single[i][j])
		}
		if rel := math.Sqrt(num / max(den, 1e-30)); rel > 1e-5 {
			t.Errorf("%s: gradient differs by %.2g (relative)", p.Name, rel)
		}
	}
}
