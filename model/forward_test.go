package model

import (
	"math"
	"testing"

	"gotune/compute"
)

func assertFinite(t *testing.T, what string, v []float32) {
	t.Helper()
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("%s[%d] = %v", what, i, x)
		}
	}
}

// TestPaddingAndPackingMatchSeparateRuns: a sequence's logits do not depend
// on what shares its batch: right padding, left padding (with position ids
// counting from the first real token, as Hugging Face builds them) and
// packing (segment ids with positions restarting per sample) all give the
// logits of the sequence run alone.
func TestPaddingAndPackingMatchSeparateRuns(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) { testPaddingAndPacking(t, be) })
}

func testPaddingAndPacking(t *testing.T, be compute.Backend) {
	for _, shape := range []string{"ref-qwen3", "ref-llama", "ref-qwen2"} {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 5)
			logitsOf := func(m *Model, b *Batch) []float32 { return logitsOn(t, m, be, b) }
			V := m.Cfg.Vocab
			a := []int32{11, 400, 7, 93, 5, 61, 2}
			c := []int32{300, 8, 1000, 17}
			alone := func(ids []int32) []float32 { return logitsOf(m, &Batch{B: 1, T: len(ids), IDs: ids}) }
			la, lc := alone(a), alone(c)
			rows := func(lg []float32, from, n int) []float32 { return lg[from*V : (from+n)*V] }

			// Right padding: row 1 is c then 3 pads.
			T := len(a)
			b := &Batch{B: 2, T: T, IDs: make([]int32, 2*T), Mask: make([]int32, 2*T)}
			copy(b.IDs, a)
			copy(b.IDs[T:], c)
			for i := range b.Mask {
				b.Mask[i] = b32(i < T+len(c))
			}
			lg := logitsOf(m, b)
			assertFinite(t, "right-padded logits", lg)
			if e := relErr32(rows(lg, 0, T), la); e > 1e-5 {
				t.Errorf("right padding: full row differs from running it alone by %.3g", e)
			}
			if e := relErr32(rows(lg, T, len(c)), lc); e > 1e-5 {
				t.Errorf("right padding: padded row differs from running it alone by %.3g", e)
			}

			// Left padding: row 1 is 3 pads then c.
			pad := T - len(c)
			b = &Batch{B: 2, T: T, IDs: make([]int32, 2*T), Mask: make([]int32, 2*T), Pos: make([]int32, 2*T)}
			copy(b.IDs, a)
			copy(b.IDs[T+pad:], c)
			for i := 0; i < T; i++ {
				b.Mask[i], b.Pos[i] = 1, int32(i)
				if i >= pad {
					b.Mask[T+i], b.Pos[T+i] = 1, int32(i-pad)
				} else {
					b.Pos[T+i] = 1 // what HF puts at masked positions
				}
			}
			lg = logitsOf(m, b)
			assertFinite(t, "left-padded logits", lg)
			if e := relErr32(rows(lg, T+pad, len(c)), lc); e > 1e-5 {
				t.Errorf("left padding: padded row differs from running it alone by %.3g", e)
			}

			// Packing: one row holding a then c.
			P := len(a) + len(c)
			b = &Batch{B: 1, T: P, IDs: append(append([]int32(nil), a...), c...), Seg: make([]int32, P), Pos: make([]int32, P)}
			for i := range b.Seg {
				if i >= len(a) {
					b.Seg[i], b.Pos[i] = 1, int32(i-len(a))
				} else {
					b.Pos[i] = int32(i)
				}
			}
			lg = logitsOf(m, b)
			if e := relErr32(rows(lg, 0, len(a)), la); e > 1e-5 {
				t.Errorf("packing: first sample differs from running it alone by %.3g", e)
			}
			if e := relErr32(rows(lg, len(a), len(c)), lc); e > 1e-5 {
				t.Errorf("packing: second sample differs from running it alone by %.3g", e)
			}
		})
	}
}

// TestLeftPaddedStepIsFinite: fully masked query rows (left padding) must
// give finite loss and gradients, and the same gradients as the unpadded
// sequence.
func TestLeftPaddedStepIsFinite(t *testing.T) {
	onBackends(t, testLeftPaddedStep)
}

func testLeftPaddedStep(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-qwen3", 6)
	setTrainable(m)
	ps := m.Params()
	ids := []int32{3, 99, 1500, 42, 7}
	plain := &Batch{B: 1, T: len(ids), IDs: ids, Labels: ids}
	w := newDM(t, m, be, DeviceOptions{})
	s0, n0 := mustStep(t, w, plain, 1)
	want := deviceGrads(t, w, ps)
	w.ZeroGrad()
	const pad = 4
	T := pad + len(ids)
	b := &Batch{B: 1, T: T, IDs: make([]int32, T), Labels: make([]int32, T), Mask: make([]int32, T), Pos: make([]int32, T)}
	for i := 0; i < T; i++ {
		b.Labels[i], b.Pos[i] = IgnoreIndex, 1
		if i >= pad {
			b.IDs[i], b.Labels[i], b.Mask[i], b.Pos[i] = ids[i-pad], ids[i-pad], 1, int32(i-pad)
		}
	}
	// The first real token has no real predecessor: not trained, as in the
	// unpadded batch, where no position predicts it.
	b.Labels[pad] = IgnoreIndex
	s1, n1 := mustStep(t, w, b, 1)
	if n1 != n0 || math.Abs(s1-s0) > 1e-5*math.Abs(s0) {
		t.Fatalf("left-padded loss (%v over %d) differs from unpadded (%v over %d)", s1, n1, s0, n0)
	}
	got := deviceGrads(t, w, ps)
	for i, p := range ps {
		assertFinite(t, p.Name, got[i])
		if p == m.Embed {
			continue // the pad token's row gets no gradient either way, others compared below
		}
		if e := relErr32(got[i], want[i]); e > 1e-5 {
			t.Errorf("%s: left-padded gradient differs from unpadded by %.3g", p.Name, e)
		}
	}
	// Embedding rows of the real tokens match; the pad id 0 row gets nothing.
	h := m.Cfg.Hidden
	var ge, we []float32
	for i, p := range ps {
		if p == m.Embed {
			ge, we = got[i], want[i]
		}
	}
	for _, id := range ids {
		if e := relErr32(ge[int(id)*h:(int(id)+1)*h], we[int(id)*h:(int(id)+1)*h]); e > 1e-5 {
			t.Errorf("embedding row %d: gradient differs by %.3g", id, e)
		}
	}
}

// TestNoTrainedTokens: a batch whose labels are all ignored has zero loss,
// zero count and leaves gradients at zero.
func TestNoTrainedTokens(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-llama", 7)
		setTrainable(m)
		b := &Batch{B: 1, T: 4, IDs: []int32{1, 2, 3, 4}, Labels: []int32{IgnoreIndex, IgnoreIndex, IgnoreIndex, IgnoreIndex}}
		dm := newDM(t, m, be, DeviceOptions{})
		s, n := mustStep(t, dm, b, 1)
		if s != 0 || n != 0 {
			t.Fatalf("loss %v over %d tokens, want 0 over 0", s, n)
		}
		ps := m.Params()
		for k, g := range deviceGrads(t, dm, ps) {
			for i, v := range g {
				if v != 0 {
					t.Fatalf("%s[%d] = %v, want 0", ps[k].Name, i, v)
				}
			}
		}
	})
}

// TestDynamicRopeWithinMaxPositionsIsDefault: dynamic NTK scaling changes
// nothing while the sequence fits max_position_embeddings, also for a model
// whose max_position_embeddings is below the 256-row table Model.Rope
// allocates at least.
func TestDynamicRopeWithinMaxPositionsIsDefault(t *testing.T) {
	base := `{"model_type":"llama","vocab_size":50,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":1,
		"num_attention_heads":2,"max_position_embeddings":16,"rope_theta":10000`
	build := func(extra string) *Model {
		cfg, err := ParseConfig("config.json", []byte(base+extra+"}"))
		if err != nil {
			t.Fatal(err)
		}
		m := New(cfg)
		m.RandomInit(9)
		for i := range m.Embed.Data {
			m.Embed.Data[i] *= 20
		}
		return m
	}
	def := build("")
	dyn := build(`,"rope_scaling":{"rope_type":"dynamic","factor":4}`)
	ids := []int32{1, 5, 9, 13, 17, 21, 25, 29, 33, 37}
	b := &Batch{B: 1, T: len(ids), IDs: ids}
	onBackends(t, func(t *testing.T, be compute.Backend) {
		if e := relErr32(logitsOn(t, dyn, be, b), logitsOn(t, def, be, b)); e > 1e-6 {
			t.Errorf("dynamic rope within max_position_embeddings differs from default rope by %.3g", e)
		}
	})
}

func b32(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

// TestLossIsShiftedCrossEntropyOfLogits: Loss equals the cross-entropy,
// computed here in float64 from Logits, of each trained label given the
// row before it.
func TestLossIsShiftedCrossEntropyOfLogits(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-qwen2", 8)
		b := gradBatch(m.Cfg.Vocab)
		V := m.Cfg.Vocab
		dm := newDM(t, m, be, DeviceOptions{Inference: true})
		lg := deviceLogits(t, dm, b)
		var want float64
		n := 0
		for r := 0; r < b.B; r++ {
			for i := 0; i+1 < b.T; i++ {
				y := b.Labels[r*b.T+i+1]
				if y == IgnoreIndex {
					continue
				}
				row := lg[(r*b.T+i)*V : (r*b.T+i+1)*V]
				mx := math.Inf(-1)
				for _, v := range row {
					mx = math.Max(mx, float64(v))
				}
				var s float64
				for _, v := range row {
					s += math.Exp(float64(v) - mx)
				}
				want += mx + math.Log(s) - float64(row[y])
				n++
			}
		}
		got, count := mustLoss(t, dm, b)
		if count != n || math.Abs(got-want) > 1e-6*math.Abs(want) {
			t.Fatalf("Loss = %v over %d tokens, float64 cross-entropy of the logits = %v over %d", got, count, want, n)
		}
	})
}

// TestDeviceReuseAcrossShapes: one device copy driven through batches of
// different shapes, with and without checkpointing, gives what a fresh
// copy gives each time.
func TestDeviceReuseAcrossShapes(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := tinyModel(t, "ref-qwen3", 9)
		setTrainable(m)
		big := gradBatch(m.Cfg.Vocab)
		small := &Batch{B: 1, T: 3, IDs: []int32{4, 5, 6}, Labels: []int32{4, 5, 6}}
		packed := &Batch{B: 1, T: 4, IDs: []int32{9, 8, 7, 6}, Labels: []int32{9, 8, 7, 6}, Seg: []int32{0, 0, 1, 1}, Pos: []int32{0, 1, 0, 1}}
		// Checkpointing changes what a copy keeps between the passes, so
		// a copy of each kind goes through the shapes.
		copies := []*DeviceModel{newDM(t, m, be, DeviceOptions{}), newDM(t, m, be, DeviceOptions{Checkpoint: true})}
		for i, b := range []*Batch{big, small, packed, big, small} {
			w := copies[i%2]
			fresh := newDM(t, m, be, DeviceOptions{Checkpoint: i%2 == 1})
			if e := relErr32(deviceLogits(t, w, b), deviceLogits(t, fresh, b)); e != 0 {
				t.Fatalf("batch %d (B=%d T=%d) on a reused copy: logits differ from a fresh one by %.3g", i, b.B, b.T, e)
			}
			gs, gn := mustStep(t, w, b, 1)
			fs, fn := mustStep(t, fresh, b, 1)
			if gs != fs || gn != fn {
				t.Fatalf("batch %d: loss %v/%d on a reused copy, %v/%d fresh", i, gs, gn, fs, fn)
			}
			// The reused copy accumulated earlier steps: compare one step.
			w.ZeroGrad()
			mustStep(t, w, b, 1)
			for _, p := range m.Params() {
				g, err := w.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				f, err := fresh.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				if e := relDiff(g, f); e != 0 {
					t.Fatalf("batch %d: %s: gradient on a reused copy differs from a fresh one by %.3g", i, p.Name, e)
				}
			}
			fresh.Close()
		}
	})
}
