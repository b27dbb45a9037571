package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
)

// TestDeviceGroupSessionMatchesFullForward: decoding the groups of two
// prompts of different lengths together on the device gives every row at
// every step the logits of a full forward pass over that row's tokens alone
// on the reference backend (no cache), and sampling both with the same seed
// draws the same tokens — with rows that stop early and a row that sits out
// steps and comes back (gaps in its cache), on the three reference shapes.
func TestDeviceGroupSessionMatchesFullForward(t *testing.T) {
	testDeviceGroupSession(t, ref.New())
}

func TestDeviceGroupSessionMatchesFullForwardOnGPU(t *testing.T) {
	testDeviceGroupSession(t, cudatest.Open(t))
}

// drawSoftmax samples softmax(logits) with u from r (as GRPO's drawer at
// temperature 1).
func drawSoftmax(lg []float32, r *rand.Rand) int32 {
	mx := lg[Argmax(lg)]
	var sum float64
	p := make([]float64, len(lg))
	for i, v := range lg {
		p[i] = math.Exp(float64(v - mx))
		sum += p[i]
	}
	u := r.Float64() * sum
	for i, x := range p {
		if u -= x; u < 0 {
			return int32(i)
		}
	}
	return int32(Argmax(lg))
}

func testDeviceGroupSession(t *testing.T, d compute.Backend) {
	prompts := [][]int32{{3, 141, 59, 26, 535}, {97, 9, 32}}
	const n, steps = 3, 16
	for _, shape := range []string{"ref-qwen3", "ref-llama", "ref-qwen2"} {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 11)
			V := m.Cfg.Vocab
			// A scoring copy shares one set of activations between blocks.
			dm, err := NewDeviceModel(m, d, DeviceOptions{Compute: compute.F32, Inference: shape == "ref-llama"})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			capacity := len(prompts[0]) + steps
			oracle := newDM(t, m, ref.New(), DeviceOptions{Inference: true})
			// last is the full forward's logits after seq's last token.
			last := func(seq []int32) []float32 {
				return deviceLogits(t, oracle, &Batch{B: 1, T: len(seq), IDs: seq})[(len(seq)-1)*V:]
			}
			dg, err := dm.NewGroupSession(len(prompts)*n, capacity)
			if err != nil {
				t.Fatal(err)
			}
			defer dg.Close()
			if dg.Rows() != len(prompts)*n || dg.Cap() != capacity {
				t.Fatalf("device session %d rows × %d, want %d × %d", dg.Rows(), dg.Cap(), len(prompts)*n, capacity)
			}
			seqs := make([][]int32, len(prompts)*n)
			refLogits := make([]float32, len(prompts)*n*V)
			devLogits := make([]float32, len(prompts)*n*V)
			for p, ids := range prompts {
				rows := []int{p * n, p*n + 1, p*n + 2}
				want := last(ids)
				got, err := dg.PromptRows(ids, rows)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr32(got, want); e > 1e-5 {
					t.Fatalf("prompt %d: logits differ from the full forward's by %.3g", p, e)
				}
				for _, r := range rows {
					seqs[r] = append([]int32(nil), ids...)
					copy(refLogits[r*V:], want)
					copy(devLogits[r*V:], got)
				}
			}
			rc, rd := rand.New(rand.NewPCG(5, 6)), rand.New(rand.NewPCG(5, 6))
			live := []int{0, 1, 2, 3, 4, 5}
			for step := 0; step < steps; step++ {
				var rows []int
				var cids, dids []int32
				for _, r := range live {
					// Row 1 stops after 3 tokens; row 4 sits out steps 2–5.
					if r == 1 && step >= 3 || r == 4 && step >= 2 && step <= 5 {
						continue
					}
					rows = append(rows, r)
					cids = append(cids, drawSoftmax(refLogits[r*V:(r+1)*V], rc))
					dids = append(dids, drawSoftmax(devLogits[r*V:(r+1)*V], rd))
				}
				for i := range cids {
					if cids[i] != dids[i] {
						t.Fatalf("step %d row %d: device sampled %d, reference %d", step, rows[i], dids[i], cids[i])
					}
				}
				got, err := dg.Step(rows, dids)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range rows {
					seqs[r] = append(seqs[r], cids[i])
					w, g := last(seqs[r]), got[i*V:(i+1)*V]
					if e := relErr32(g, w); e > 1e-5 {
						t.Fatalf("step %d row %d: logits differ from the full forward's by %.3g", step, r, e)
					}
					copy(refLogits[r*V:], w)
					copy(devLogits[r*V:], g)
				}
			}
			for r := range dg.Lens {
				if dg.Lens[r] != len(seqs[r]) {
					t.Errorf("row %d holds %d positions, its sequence %d", r, dg.Lens[r], len(seqs[r]))
				}
			}
			for _, c := range []struct {
				rows []int
				ids  []int32
				want string
			}{
				{[]int{1, 1}, []int32{1, 2}, "at most once"},
				{[]int{9}, []int32{1}, "row 9 of 6"},
				{[]int{1}, []int32{int32(V)}, "outside the vocabulary"},
				{[]int{0}, []int32{1}, "sequence 0 is full"},
				// Row 1 holds 8 positions, but the frontier is at the end.
				{[]int{1}, []int32{1}, "positions are used"},
			} {
				if _, err := dg.Step(c.rows, c.ids); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("step %v %v: error %v, want one mentioning %q", c.rows, c.ids, err, c.want)
				}
			}
		})
	}
}
