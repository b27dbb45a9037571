package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute/cpu/cputest"
)

// TestHostHeadChunk: the head's chunks on a host backend (the CPU
// workspace's HeadChunk before it).
func TestHostHeadChunk(t *testing.T) {
	for _, c := range []struct{ vocab, rows, want int }{
		{49152, 255, 255},   // smollm2 at 256 tokens: one chunk
		{151936, 255, 255},  // qwen3 at 256 tokens: one chunk, past the budget
		{151936, 300, 150},  // two even chunks rather than 256 + 44
		{151936, 1023, 256}, // four chunks of the minimum
		{49152, 1023, 341},  // the budget: 16M logits
		{2048, 10000, 5000}, // small vocabulary: the budget allows 8192 rows
		{151936, 0, 1},      // nothing to compute
	} {
		if got := HostHeadChunk(c.vocab, c.rows); got != c.want {
			t.Errorf("HostHeadChunk(%d, %d) = %d, want %d", c.vocab, c.rows, got, c.want)
		}
	}
}

// A head computed in several chunks gives the loss and the gradients of the
// same rows computed in one, on the CPU backend (a host backend's chunks
// are small enough to exercise; the reference backend's and a GPU's hold
// 96M logits).
func TestHeadChunksMatchOneChunk(t *testing.T) {
	cfg, err := Shape("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vocab = 70000 // 256 rows per chunk at most
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
	both := batch(a, b) // 398 rows with a target: two chunks of 199
	if got := HostHeadChunk(cfg.Vocab, 2*(T-1)); got != T-1 {
		t.Fatalf("test needs two chunks, HostHeadChunk gives %d rows", got)
	}
	scale := float32(1.0 / float64(2*(T-1)))
	w := newDM(t, m, cputest.Open(), DeviceOptions{})
	sum, n := mustStep(t, w, both, scale)
	chunked := deviceGrads(t, w, m.Params())
	w.ZeroGrad()
	sa, na := mustStep(t, w, batch(a), scale)
	sb, nb := mustStep(t, w, batch(b), scale)
	single := deviceGrads(t, w, m.Params())
	if n != na+nb {
		t.Fatalf("trained rows %d, want %d", n, na+nb)
	}
	if d := math.Abs(sum - (sa + sb)); d > 1e-6*math.Abs(sum) {
		t.Errorf("loss sum %v in chunks, %v per sequence", sum, sa+sb)
	}
	for i, p := range m.Params() {
		var num, den float64
		for j, v := range chunked[i] {
			d := float64(v - single[i][j])
			num += d * d
			den += float64(single[i][j]) * float64(single[i][j])
		}
		if rel := math.Sqrt(num / max(den, 1e-30)); rel > 1e-5 {
			t.Errorf("%s: gradient differs by %.2g (relative)", p.Name, rel)
		}
	}
}
