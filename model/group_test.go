package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// Decoding a group step by step gives each sequence the logits a
// single-sequence session gives it, whichever rows are live.
func TestGroupSessionMatchesSession(t *testing.T) {
	onBackends(t, testGroupSessionMatchesSession)
}

func testGroupSessionMatchesSession(t *testing.T, be compute.Backend) {
	for _, shape := range []string{"ref-qwen3", "ref-llama", "ref-qwen2"} {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 11)
			dm := newDM(t, m, be, DeviceOptions{Inference: true})
			r := rand.New(rand.NewPCG(1, 2))
			prompt := []int32{5, 17, 3, 99, 4}
			const n, steps = 3, 6
			g := newGroupSession(t, dm, n, len(prompt)+steps)
			first, err := g.Prompt(prompt)
			if err != nil {
				t.Fatal(err)
			}
			seqs := make([][]int32, n)
			want := make([][]float32, n)
			for i := range seqs {
				seqs[i] = append([]int32(nil), prompt...)
			}
			ref := sessionLogits(t, dm, prompt)
			if d := relDiff(first, ref); d > 1e-6 {
				t.Fatalf("prompt logits differ by %.2g", d)
			}
			for step := 0; step < steps; step++ {
				// Row 1 stops after two tokens (it sampled a stop token).
				var rows []int
				var ids []int32
				for i := range seqs {
					if i == 1 && step >= 2 {
						continue
					}
					id := int32(r.IntN(m.Cfg.Vocab))
					seqs[i] = append(seqs[i], id)
					rows, ids = append(rows, i), append(ids, id)
				}
				got, err := g.Step(rows, ids)
				if err != nil {
					t.Fatal(err)
				}
				for k, row := range rows {
					want[row] = sessionLogits(t, dm, seqs[row])
					V := m.Cfg.Vocab
					if d := relDiff(got[k*V:(k+1)*V], want[row]); d > 1e-5 {
						t.Errorf("step %d row %d: logits differ by %.2g", step, row, d)
					}
				}
			}
			if _, err := g.Step([]int{0}, []int32{1}); err == nil {
				t.Error("stepping a full sequence: no error")
			}
		})
	}
}

// newGroupSession is dm.NewGroupSession, failing the test on an error and
// closing the session when the test ends.
func newGroupSession(t testing.TB, dm *DeviceModel, n, maxLen int) *DeviceGroupSession {
	t.Helper()
	g, err := dm.NewGroupSession(n, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// sessionLogits feeds seq to a fresh single-sequence session of dm and
// returns the logits after its last token.
func sessionLogits(t testing.TB, dm *DeviceModel, seq []int32) []float32 {
	t.Helper()
	s, err := dm.NewSession(len(seq))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lg, err := s.Feed(seq)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), lg...)
}

// BenchmarkGroupDecode compares decoding 8 completions of one prompt one after
// another with a session (as `gotune generate` decodes) with decoding them
// together with a group session (as stage grpo samples a group), on the CPU
// backend: 32 prompt tokens, 32 new tokens each. The metric is generated
// tokens per second.
func BenchmarkGroupDecode(b *testing.B) {
	for _, shape := range []string{"tiny", "smollm2-135m"} {
		cfg, err := Shape(shape)
		if err != nil {
			b.Fatal(err)
		}
		m := New(cfg)
		m.RandomInit(1)
		dm := newDM(b, m, cputest.Open(), DeviceOptions{Inference: true})
		prompt := make([]int32, 32)
		for i := range prompt {
			prompt[i] = int32(i * 7 % cfg.Vocab)
		}
		const n, steps = 8, 32
		b.Run(shape+"/session", func(b *testing.B) {
			for range b.N {
				for range n {
					s, err := dm.NewSession(len(prompt) + steps)
					if err != nil {
						b.Fatal(err)
					}
					lg, _ := s.Feed(prompt)
					for range steps - 1 {
						lg, _ = s.Feed([]int32{int32(Argmax(lg))})
					}
					s.Close()
				}
			}
			b.ReportMetric(float64(b.N*n*steps)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run(shape+"/group", func(b *testing.B) {
			rows := []int{0, 1, 2, 3, 4, 5, 6, 7}
			ids := make([]int32, n)
			for range b.N {
				g, err := dm.NewGroupSession(n, len(prompt)+steps)
				if err != nil {
					b.Fatal(err)
				}
				lg, _ := g.Prompt(prompt)
				for i := range ids {
					ids[i] = int32(Argmax(lg))
				}
				for range steps - 1 {
					lg, _ = g.Step(rows, ids)
					for i := range ids {
						ids[i] = int32(Argmax(lg[i*cfg.Vocab : (i+1)*cfg.Vocab]))
					}
				}
				g.Close()
			}
			b.ReportMetric(float64(b.N*n*steps)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// Groups of different prompts decoded in one session: each sequence's
// logits are those of its own prompt and tokens.
func TestGroupSessionSeveralPrompts(t *testing.T) {
	onBackends(t, testGroupSessionSeveralPrompts)
}

func testGroupSessionSeveralPrompts(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-qwen2", 12)
	dm := newDM(t, m, be, DeviceOptions{Inference: true})
	prompts := [][]int32{{4, 8, 15}, {16, 23, 42, 7, 9}}
	g := newGroupSession(t, dm, 4, 12)
	seqs := make([][]int32, 4)
	for p, rows := range [][]int{{0, 2}, {1, 3}} {
		if _, err := g.PromptRows(prompts[p], rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			seqs[r] = append([]int32(nil), prompts[p]...)
		}
	}
	V := m.Cfg.Vocab
	for step := range 4 {
		rows := []int{0, 1, 2, 3}
		ids := []int32{int32(step + 1), int32(step + 100), int32(step + 200), int32(step + 300)}
		got, err := g.Step(rows, ids)
		if err != nil {
			t.Fatal(err)
		}
		for k, r := range rows {
			seqs[r] = append(seqs[r], ids[k])
			want := sessionLogits(t, dm, seqs[r])
			if d := relDiff(got[k*V:(k+1)*V], want); d > 1e-5 {
				t.Errorf("step %d row %d: logits differ by %.2g", step, r, d)
			}
		}
	}
}

// BenchmarkDecodeRows measures how decoding throughput grows with the
// sequences decoded together (one prompt's group, or several prompts'
// groups in one session as stage grpo does), 32 new tokens each.
func BenchmarkDecodeRows(b *testing.B) {
	cfg, err := Shape("tiny")
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(1)
	dm := newDM(b, m, cputest.Open(), DeviceOptions{Inference: true})
	prompt := make([]int32, 32)
	for i := range prompt {
		prompt[i] = int32(i * 7 % cfg.Vocab)
	}
	const steps = 32
	for _, n := range []int{1, 8, 32, 64} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			rows := make([]int, n)
			ids := make([]int32, n)
			for i := range rows {
				rows[i] = i
			}
			g := newGroupSession(b, dm, n, len(prompt)+steps)
			for range b.N {
				lg, _ := g.Prompt(prompt)
				for i := range ids {
					ids[i] = int32(Argmax(lg))
				}
				for range steps - 1 {
					lg, _ = g.Step(rows, ids)
					for i := range ids {
						ids[i] = int32(Argmax(lg[i*cfg.Vocab : (i+1)*cfg.Vocab]))
					}
				}
			}
			b.ReportMetric(float64(b.N*n*steps)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
