package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/data"
	"gotune/model"
	"gotune/peft"
	"gotune/pref"
	"gotune/tokenizer"
)

// TestDPOOnRealModel: on llama2.c's pretrained stories260K, a preference
// set that prefers a happy continuation ("She was very happy.") over a sad
// one ("She was very sad.") trains a LoRA adapter with sigmoid DPO
// (reference: the base with the adapter off) and pref_ftx 1. On held-out
// prompts the reward accuracy rises above 0.9, and greedy continuations
// move to the preferred style. Without the SFT term, DPO alone pushes both
// answers down (the known failure of small-data DPO): accuracy reaches 1
// but at this learning rate greedy text degrades, and at 3e-4 only a third
// of the continuations turn happy.
func TestDPOOnRealModel(t *testing.T) {
	dir := realModelDir(t)
	m, err := model.Load(dir, model.LoadOptions{Storage: model.F32})
	must(t, err)
	tok, err := tokenizer.Load(dir)
	must(t, err)
	enc := func(s string, bos bool) []int32 {
		ids := tok.Encode(s, bos)
		out := make([]int32, len(ids))
		for i, v := range ids {
			out[i] = int32(v)
		}
		return out
	}
	type person struct{ name, pro string }
	people := []person{{"Lily", "She"}, {"Tom", "He"}, {"Sue", "She"}, {"Ben", "He"}, {"Anna", "She"}, {"Max", "He"},
		{"Mia", "She"}, {"Sam", "He"}}
	things := []string{"a cat", "a big ball", "a red box", "a bird", "a tree", "a boat", "a toy car", "a flower"}
	prompt := func(p person, thing string) string { return fmt.Sprintf("%s saw %s.", p.name, thing) }
	var train, held pairSlice
	var heldPrompts []string
	for i, p := range people {
		for j, th := range things {
			pr := enc(prompt(p, th), true)
			mk := func(answer string) ([]int32, []int32) {
				a := enc(answer, false)
				ids := append(append([]int32(nil), pr...), a...)
				lab := make([]int32, len(ids))
				for k := range lab {
					lab[k] = data.IgnoreIndex
					if k >= len(pr) {
						lab[k] = ids[k]
					}
				}
				return ids, lab
			}
			var s data.Sample
			s.InputIDs, s.Labels = mk(p.pro + " was very happy.")
			s.RejectedIDs, s.RejectedLabels = mk(p.pro + " was very sad.")
			// Every fourth combination, shifted per person, is held out.
			if (i+j)%4 == 0 {
				held = append(held, s)
				heldPrompts = append(heldPrompts, prompt(p, th))
			} else {
				train = append(train, s)
			}
		}
	}
	greedy := func(dm *model.DeviceModel) (happy, sad int, sample string) {
		for k, p := range heldPrompts {
			out := greedyOn(t, dm, enc(p, true), 8)
			ids := make([]int, len(out))
			for i, v := range out {
				ids[i] = int(v)
			}
			text := tok.Decode(ids, true)
			if k == 0 {
				sample = p + " → " + text
			}
			happy += strings.Count(text, "happy")
			sad += strings.Count(text, "sad")
		}
		return happy, sad, sample
	}
	base, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: true})
	must(t, err)
	h0, s0, ex0 := greedy(base)
	base.Close()

	set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 8, Alpha: 16, Targets: []string{"all"}}, 1)
	must(t, err)
	if len(set.Params()) == 0 {
		t.Fatal("LoRA attached no parameters")
	}
	dm := onCPU(t, m, false)
	sc := &deviceScorer{dm: dm}
	s := &prefStage{dpo: pref.Config{Loss: pref.Sigmoid, Beta: 0.1, FTX: 1}, useRef: true}
	heldAccuracy := func() float64 {
		idx := make([]int, len(held))
		for i := range idx {
			idx[i] = i
		}
		mb := batchOf(data.PairBatch(held, idx, 0), false)
		restore := dm.WithoutAdapters()
		ref, _ := sums(sc, mb, 2*len(idx))
		restore()
		pol, cnt := sums(sc, mb, 2*len(idx))
		must(t, sc.Err())
		n := len(idx)
		var pairs []pref.Pair
		for k := range n {
			pairs = append(pairs, pref.Pair{Chosen: pol[k], Rejected: pol[n+k], RefChosen: ref[k], RefRejected: ref[n+k],
				ChosenLen: cnt[k], RejectedLen: cnt[n+k]})
		}
		_, _, met := s.dpo.Pairs(pairs, 1)
		return met.Correct / float64(met.Pairs)
	}
	acc0 := heldAccuracy()
	const steps, batch = 30, 8
	for step := range steps {
		idx := make([]int, batch)
		for k := range idx {
			idx[k] = (step*batch + k) % len(train)
		}
		dm.ZeroGrad()
		s.pairLoss(sc, batchOf(data.PairBatch(train, idx, 0), false), idx, 1/float64(batch), true)
		must(t, sc.Err())
		_, err := dm.AdamW(model.AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1})
		must(t, err)
	}
	acc := heldAccuracy()
	h1, s1, ex1 := greedy(dm)
	t.Logf("held-out reward accuracy %.2f → %.2f (%d pairs); greedy continuations of %d held-out prompts: happy %d, sad %d → happy %d, sad %d",
		acc0, acc, len(held), len(heldPrompts), h0, s0, h1, s1)
	t.Logf("before: %s", ex0)
	t.Logf("after:  %s", ex1)
	if acc <= 0.9 {
		t.Errorf("held-out reward accuracy %.2f, want > 0.9", acc)
	}
	if !(h1 > h0 && h1 > s1) {
		t.Errorf("greedy continuations did not move to the preferred style: happy %d→%d, sad %d→%d", h0, h1, s0, s1)
	}
}

// greedyOn decodes n tokens after prompt on dm, always taking the most
// likely one.
func greedyOn(t *testing.T, dm *model.DeviceModel, prompt []int32, n int) []int32 {
	t.Helper()
	s, err := dm.NewSession(len(prompt) + n)
	must(t, err)
	defer s.Close()
	logits, err := s.Feed(prompt)
	must(t, err)
	var out []int32
	for len(out) < n {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		out = append(out, int32(best))
		if len(out) < n {
			logits, err = s.Feed([]int32{int32(best)})
			must(t, err)
		}
	}
	return out
}

// realModelDir is llama2.c's pretrained stories260K in ../shared: a test
// skips without it (a fresh clone) and fails under CI, where it is present.
func realModelDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "testdata", "real", "stories260K")
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the real model is missing under CI: %v", err)
		}
		t.Skipf("%s absent (needs ../shared beside the repository): %v", dir, err)
	}
	return dir
}
