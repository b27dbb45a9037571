package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/compute"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
	"gotune/config"
	"gotune/data"
	"gotune/model"
	"gotune/plot"
	"gotune/pref"
)

// prefData writes a small synthetic preference set in LLaMA-Factory's
// layouts beside the bundled model: "pairs" (ShareGPT, ranking: true, as
// dpo_en_demo) prefers a polite style ("Certainly! …") over a curt one
// ("… Whatever."), and "kto" (as kto_en_demo) labels the same answers
// desirable and undesirable, alternating. n prompts.
func prefData(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(dir, 0o755))
	topics := []string{"the sea", "a cat", "the moon", "bread", "rain", "a kite", "the forest", "a train", "snow", "music",
		"a garden", "the sun", "a river", "honey", "a lamp", "the wind", "a boat", "an owl", "a clock", "the city"}
	type msg struct {
		From  string `json:"from"`
		Value string `json:"value"`
	}
	type pair struct {
		Conversations []msg `json:"conversations"`
		Chosen        msg   `json:"chosen"`
		Rejected      msg   `json:"rejected"`
	}
	type kmsg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type kto struct {
		Messages []kmsg `json:"messages"`
		Label    bool   `json:"label"`
	}
	var pairs []pair
	var ktos []kto
	for i := range n {
		topic := topics[i%len(topics)]
		q := fmt.Sprintf("Tell me about %s (%d).", topic, i)
		good := fmt.Sprintf("Certainly! Here is a note about %s.", topic)
		bad := fmt.Sprintf("It is %s. Whatever.", topic)
		pairs = append(pairs, pair{Conversations: []msg{{"human", q}}, Chosen: msg{"gpt", good}, Rejected: msg{"gpt", bad}})
		ans, label := good, true
		if i%2 == 1 {
			ans, label = bad, false
		}
		ktos = append(ktos, kto{Messages: []kmsg{{"user", q}, {"assistant", ans}}, Label: label})
	}
	write := func(name string, v any) {
		b, err := json.MarshalIndent(v, "", " ")
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	write("pairs.json", pairs)
	write("kto.json", ktos)
	must(t, os.WriteFile(filepath.Join(dir, "dataset_info.json"), []byte(`{
 "pairs": {"file_name": "pairs.json", "ranking": true, "formatting": "sharegpt",
           "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
 "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
 "dpo_en_demo": {"file_name": "pairs.json", "ranking": true, "formatting": "sharegpt",
           "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
 "kto_en_demo": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
}`), 0o644))
	return dir
}

// prefConfig is a LLaMA-Factory-style DPO (or KTO) configuration on the
// bundled tiny model and prefData.
func prefConfig(t *testing.T, stage, out string, n int, flags ...string) *config.Config {
	t.Helper()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	must(t, err)
	dataset := "pairs"
	if stage == "kto" {
		dataset = "kto"
	}
	yaml := fmt.Sprintf(`model_name_or_path: %s
stage: %s
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
pref_beta: 0.1
dataset: %s
dataset_dir: %s
cutoff_len: 128
output_dir: %s
logging_steps: 1
save_steps: 500
overwrite_output_dir: true
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
learning_rate: 1.0e-3
max_steps: 12
lr_scheduler_type: cosine
warmup_ratio: 0.1
report_to: none
progress: none
near_dedup: false
`, modelDir, stage, dataset, prefData(t, n), out)
	cfg, err := config.Parse([]byte(yaml), "pref.yaml")
	must(t, err)
	must(t, cfg.ApplyFlags(flags))
	return cfg
}

// logLines reads trainer_log.jsonl's step lines.
func logLines(t *testing.T, dir string) []map[string]float64 {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "trainer_log.jsonl"))
	must(t, err)
	defer f.Close()
	var out []map[string]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		must(t, json.Unmarshal(sc.Bytes(), &m))
		if _, ok := m["loss"]; !ok {
			continue
		}
		v := map[string]float64{}
		for k, x := range m {
			if f, ok := x.(float64); ok {
				v[k] = f
			}
		}
		out = append(out, v)
	}
	return out
}

// pairSlice serves preference pairs from memory.
type pairSlice []data.Sample

func (p pairSlice) Sample(i int) data.Sample { return p[i] }

// tinyPairs are three pairs over vocab with shared prompts, answers of
// different lengths, and right padding in the batch.
func tinyPairs(vocab int) pairSlice {
	r := rand.New(rand.NewPCG(11, 12))
	tok := func(n int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(r.IntN(vocab))
		}
		return s
	}
	mk := func(prompt []int32, answer []int32) ([]int32, []int32) {
		ids := append(append([]int32(nil), prompt...), answer...)
		lab := make([]int32, len(ids))
		for i := range lab {
			lab[i] = data.IgnoreIndex
			if i >= len(prompt) {
				lab[i] = ids[i]
			}
		}
		return ids, lab
	}
	var out pairSlice
	for _, l := range [][3]int{{3, 4, 2}, {5, 2, 5}, {2, 3, 3}} {
		p := tok(l[0])
		var s data.Sample
		s.InputIDs, s.Labels = mk(p, tok(l[1]))
		s.RejectedIDs, s.RejectedLabels = mk(p, tok(l[2]))
		out = append(out, s)
	}
	return out
}

// TestPairLossGradientThroughModel: the gradient that pairLoss sends
// through BackwardTokens equals central differences of the loss, along a
// random direction of every parameter tensor of a tiny model, for each
// pairwise loss (reference log-probabilities fixed, as precomputed ones
// are).
func TestPairLossGradientThroughModel(t *testing.T) {
	m := tinyModel(t)
	pairs := tinyPairs(m.Cfg.Vocab)
	idx := []int{0, 1, 2}
	mb := batchOf(data.PairBatch(pairs, idx, 0), false)
	plain := onCPU(t, m, false)
	base, _ := sums(&deviceScorer{dm: plain}, mb, 6)
	// The last case recomputes each block in backward (gradient
	// checkpointing) instead of keeping its activations.
	for i, c := range []pref.Config{
		{Loss: pref.Sigmoid, Beta: 0.5, FTX: 0.3},
		{Loss: pref.Sigmoid, Beta: 2, LabelSmoothing: 0.1},
		{Loss: pref.Hinge, Beta: 0.3},
		{Loss: pref.IPO, Beta: 0.5},
		{Loss: pref.KTOPair, Beta: 0.5},
		{Loss: pref.ORPO, Beta: 0.5},
		{Loss: pref.SimPO, Beta: 2, Gamma: 0.5},
		{Loss: pref.Sigmoid, Beta: 0.5},
	} {
		t.Run(fmt.Sprint(c.Loss, i), func(t *testing.T) {
			dm := plain
			if i == 7 {
				dm = onCPU(t, m, true)
			}
			// References a little off the policy, so no loss sits at a kink.
			s := &prefStage{dpo: c, useRef: c.UsesReference(), precompute: true}
			for k := range idx {
				s.ref = append(s.ref, [2]float64{base[k] + 0.7 + 0.1*float64(k), base[3+k] - 0.4})
			}
			sc := &deviceScorer{dm: dm}
			loss := func() float64 {
				// The host's weights, perturbed, go to the backend first.
				must(t, dm.LoadTrainableFromHost())
				l := s.pairLoss(sc, mb, idx, 1/3.0, false)
				must(t, sc.Err())
				return l
			}
			dm.ZeroGrad()
			s.pairLoss(sc, mb, idx, 1/3.0, true)
			must(t, sc.Err())
			checkDirectional(t, m, grads(t, m, dm), loss)
			must(t, dm.LoadTrainableFromHost())
		})
	}
}

// checkDirectional compares every parameter tensor's gradient with central
// differences of loss along a random direction (steps 1% of the tensor's
// RMS, as model's gradient checks do); grad holds the gradients by name.
func checkDirectional(t *testing.T, m *model.Model, grad map[string][]float32, loss func() float64) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range m.Params() {
		pg := grad[p.Name]
		d := make([]float32, len(p.Data))
		var gd, gn, dn, pn float64
		for i := range d {
			d[i] = float32(r.NormFloat64())
			gd += float64(pg[i]) * float64(d[i])
			gn += float64(pg[i]) * float64(pg[i])
			dn += float64(d[i]) * float64(d[i])
			pn += float64(p.Data[i]) * float64(p.Data[i])
		}
		step := 1e-2 * math.Sqrt(pn/dn)
		orig := append([]float32(nil), p.Data...)
		for i := range p.Data {
			p.Data[i] = orig[i] + float32(step)*d[i]
		}
		lp := loss()
		for i := range p.Data {
			p.Data[i] = orig[i] - float32(step)*d[i]
		}
		lm := loss()
		copy(p.Data, orig)
		fd := (lp - lm) / (2 * step)
		typical := math.Sqrt(gn) * math.Sqrt(dn) / math.Sqrt(float64(len(d)))
		if math.Abs(fd-gd) > 0.02*math.Max(math.Abs(gd), typical) {
			t.Errorf("%s: directional derivative %.6g, finite difference %.6g", p.Name, gd, fd)
		}
	}
}

// Identical chosen and rejected answers: sigmoid DPO costs log 2 and the
// two sides' gradients cancel in every parameter.
func TestIdenticalPairHasNoGradient(t *testing.T) {
	m := tinyModel(t)
	pairs := tinyPairs(m.Cfg.Vocab)
	for i := range pairs {
		pairs[i].RejectedIDs, pairs[i].RejectedLabels = pairs[i].InputIDs, pairs[i].Labels
	}
	mb := batchOf(data.PairBatch(pairs, []int{0, 1, 2}, 0), false)
	dm := onCPU(t, m, false)
	s := &prefStage{dpo: pref.Config{Loss: pref.Sigmoid, Beta: 0.1}, useRef: true, precompute: true, ref: make([][2]float64, 3)}
	sc := &deviceScorer{dm: dm}
	if l := s.pairLoss(sc, mb, []int{0, 1, 2}, 1/3.0, true); math.Abs(l-math.Ln2) > 1e-12 {
		t.Errorf("loss %v, want log 2", l)
	}
	must(t, sc.Err())
	gs := grads(t, m, dm)
	for _, p := range m.Params() {
		var g float64
		for _, v := range gs[p.Name] {
			g = max(g, math.Abs(float64(v)))
		}
		if g > 1e-6 {
			t.Errorf("%s: gradient %g, want 0", p.Name, g)
		}
	}
}

// TestPrefAccumulationEqualsBigBatch: pairs (and KTO answers) split over
// micro-batches of uneven size give the loss and the gradients of one
// batch holding them all.
func TestPrefAccumulationEqualsBigBatch(t *testing.T) {
	for _, stage := range []string{"dpo", "kto"} {
		t.Run(stage, func(t *testing.T) {
			cfg := prefConfig(t, stage, filepath.Join(t.TempDir(), "run"), 8, "--finetuning_type", "full")
			tr, err := New(cfg, "", nil, cpu())
			must(t, err)
			must(t, tr.pref.prepare(tr, ""))
			rows := func(idx ...int) data.BatchPlan {
				p := data.BatchPlan{}
				for _, i := range idx {
					p.Rows = append(p.Rows, []int{i})
				}
				return p
			}
			run := func(plans ...data.BatchPlan) (float64, [][]float32) {
				tr.zeroGrad()
				loss, _ := tr.pref.step(tr, plans)
				var g [][]float32
				for _, p := range tr.Params {
					pg, err := tr.dev.Grad(p)
					must(t, err)
					g = append(g, pg)
				}
				return loss, g
			}
			one, g1 := run(rows(0, 1, 2, 3, 4))
			split, g2 := run(rows(3), rows(0, 4, 1, 2))
			if math.Abs(one-split) > 1e-9*math.Abs(one) {
				t.Errorf("loss: one batch %.12g, micro-batches %.12g", one, split)
			}
			var num, den float64
			for i := range g1 {
				for j := range g1[i] {
					d := float64(g1[i][j] - g2[i][j])
					num += d * d
					den += float64(g1[i][j]) * float64(g1[i][j])
				}
			}
			if den == 0 || math.Sqrt(num/den) > 1e-5 {
				t.Errorf("gradients differ: relative %.3g (norm² %g)", math.Sqrt(num/den), den)
			}
		})
	}
}

// TestPrefTrainsAndResumes: LLaMA-Factory-style DPO and KTO configs train
// the bundled model on a synthetic preference set with LoRA (reference:
// adapter off) and full fine-tuning (reference: precomputed), log the
// preference metrics every step, move rewards towards the preferred style,
// and a run resumed from checkpoint-4 logs what the uninterrupted run
// logged (bit for bit with full fine-tuning).
func TestPrefTrainsAndResumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stage string
		flags []string
	}{
		{"dpo lora", "dpo", nil},
		{"dpo lora dropout", "dpo", []string{"--lora_dropout", "0.1"}},
		{"dpo full", "dpo", []string{"--finetuning_type", "full", "--learning_rate", "1e-4"}},
		{"dpo lora precomputed", "dpo", []string{"--precompute_ref_log_probs", "true", "--gradient_accumulation_steps", "2", "--per_device_train_batch_size", "2"}},
		{"kto lora", "kto", []string{"--kto_undesirable_weight", "1.5"}},
		{"kto full", "kto", []string{"--finetuning_type", "full", "--learning_rate", "1e-4", "--pref_ftx", "0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := append([]string{"--save_steps", "4"}, tc.flags...)
			dirA := filepath.Join(t.TempDir(), "a")
			cfg := prefConfig(t, tc.stage, dirA, 16, flags...)
			var out strings.Builder
			tr, err := New(cfg, "", &out, cpu())
			must(t, err)
			must(t, tr.Run())
			full := logLines(t, dirA)
			if len(full) != 12 {
				t.Fatalf("%d logged steps, want 12", len(full))
			}
			keys := []string{"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "sft_loss"}
			if tc.stage == "dpo" {
				keys = append(keys, "rewards/accuracies")
			} else {
				keys = append(keys, "kl")
			}
			mean := func(key string, lo, hi int) float64 {
				var s float64
				var n int
				for _, l := range full[lo:hi] {
					if v, ok := l[key]; ok {
						s += v
						n++
					}
				}
				return s / float64(n)
			}
			if tc.stage == "dpo" {
				for _, k := range keys {
					if _, ok := full[11][k]; !ok {
						t.Errorf("step 12 logs no %s: %v", k, full[11])
					}
				}
				if a := mean("rewards/accuracies", 8, 12); a < 0.9 {
					t.Errorf("reward accuracy of steps 9–12 %.2f, want ≥ 0.9", a)
				}
				if m0, m1 := full[0]["rewards/margins"], mean("rewards/margins", 8, 12); !(m1 > m0+0.1) {
					t.Errorf("reward margin did not rise: step 1 %.4f, steps 9–12 %.4f", m0, m1)
				}
			} else {
				// KTO: desirable answers' rewards end above undesirable ones'.
				if c, r := mean("rewards/chosen", 6, 12), mean("rewards/rejected", 6, 12); !(c > r) {
					t.Errorf("KTO rewards: desirable %.4f, undesirable %.4f", c, r)
				}
				if _, ok := full[11]["kl"]; !ok {
					t.Errorf("no kl logged: %v", full[11])
				}
			}
			if h := tr.state.LogHistory; len(h) != 12 || h[11].Metrics["rewards/margins"] != full[11]["rewards/margins"] {
				t.Errorf("trainer_state log_history does not carry the preference metrics: %+v", h[len(h)-1])
			}
			if l0, l1 := full[0]["loss"], mean("loss", 8, 12); !(l1 < l0) {
				t.Errorf("loss did not fall: %.4f → %.4f", l0, l1)
			}

			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(dirA, "checkpoint-4"))))
			cfgB := prefConfig(t, tc.stage, dirB, 16, append(flags, "--resume_from_checkpoint", "true", "--overwrite_output_dir", "false")...)
			trB, err := New(cfgB, "", nil, cpu())
			must(t, err)
			must(t, trB.Run())
			resumed := logLines(t, dirB)
			if len(resumed) != 8 {
				t.Fatalf("resumed run logged %d steps, want 8", len(resumed))
			}
			exact := tc.flags != nil && tc.flags[1] == "full"
			for i, l := range resumed {
				for _, k := range keys {
					a, b := full[4+i][k], l[k]
					if d := math.Abs(a - b); (exact && a != b) || d > 1e-6*math.Max(1, math.Abs(a)) {
						t.Errorf("step %d %s: uninterrupted %.12g, resumed %.12g", 5+i, k, a, b)
					}
				}
			}
			if exact {
				a, errA := os.ReadFile(filepath.Join(dirA, "model.safetensors"))
				b, errB := os.ReadFile(filepath.Join(dirB, "model.safetensors"))
				if errA != nil || errB != nil || !bytes.Equal(a, b) {
					t.Errorf("final weights differ between the uninterrupted and the resumed run (%v, %v)", errA, errB)
				}
			}
		})
	}
}

// TestPrefEveryLossTrains: each pref_loss trains a few LoRA steps to a
// finite, falling loss and a wider reward margin.
func TestPrefEveryLossTrains(t *testing.T) {
	for _, tc := range [][]string{
		{"--pref_loss", "sigmoid", "--dpo_label_smoothing", "0.1", "--pref_ftx", "0.1"},
		{"--pref_loss", "hinge"},
		{"--pref_loss", "ipo"},
		{"--pref_loss", "kto_pair"},
		{"--pref_loss", "orpo"},
		{"--pref_loss", "simpo", "--pref_beta", "2.5", "--simpo_gamma", "1.4"},
	} {
		t.Run(strings.Join(tc, " "), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			cfg := prefConfig(t, "dpo", dir, 12, append(tc, "--max_steps", "8")...)
			tr, err := New(cfg, "", nil, cpu())
			must(t, err)
			must(t, tr.Run())
			l := logLines(t, dir)
			first, last := l[0], l[len(l)-1]
			if !(last["loss"] < first["loss"]) || math.IsNaN(last["loss"]) {
				t.Errorf("loss %v → %v", first["loss"], last["loss"])
			}
			if !(last["rewards/margins"] > first["rewards/margins"]) {
				t.Errorf("margin %v → %v", first["rewards/margins"], last["rewards/margins"])
			}
			if tc[1] == "orpo" {
				if _, ok := last["odds_ratio_loss"]; !ok {
					t.Errorf("ORPO logs no odds_ratio_loss: %v", last)
				}
			}
		})
	}
}

// Preference stages run on the CPU: device auto says so, device cuda
// (Required) refuses.
// TestPrefOnDevice: the preference stages train through the compute seam
// (the reference backend standing in for a GPU) with the CPU's losses and
// metrics, step for step: DPO with the adapter-off reference, DPO with
// full fine-tuning's precomputed reference, and KTO.
func TestPrefOnDevice(t *testing.T) {
	testPrefOnDevice(t, func() compute.Backend { return ref.New() }, 1e-4)
}

// TestPrefOnGPU is the same on a GPU in f32 (skipped where there is none).
func TestPrefOnGPU(t *testing.T) {
	d := cudatest.Open(t)
	testPrefOnDevice(t, func() compute.Backend { return d }, 1e-3)
}

func testPrefOnDevice(t *testing.T, backend func() compute.Backend, tol float64) {
	for _, tc := range []struct {
		name, stage string
		flags       []string
	}{
		{"dpo lora", "dpo", nil},
		{"dpo full", "dpo", []string{"--finetuning_type", "full", "--learning_rate", "1e-4"}},
		{"kto lora", "kto", nil},
		// The reference policy is the base with the method off: no virtual
		// tokens (a shorter batch), no prefix, no bottleneck adapters.
		{"dpo prompt_tuning", "dpo", []string{"--finetuning_type", "prompt_tuning", "--num_virtual_tokens", "4", "--learning_rate", "0.05"}},
		{"dpo prefix_tuning", "dpo", []string{"--finetuning_type", "prefix_tuning", "--num_virtual_tokens", "3", "--learning_rate", "1e-2"}},
		{"dpo adapter", "dpo", []string{"--finetuning_type", "adapter", "--adapter_size", "8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := append([]string{"--max_steps", "6"}, tc.flags...)
			cpuDir := filepath.Join(t.TempDir(), "cpu")
			tr, err := New(prefConfig(t, tc.stage, cpuDir, 16, flags...), "", nil, cpu())
			must(t, err)
			must(t, tr.Run())
			devDir := filepath.Join(t.TempDir(), "dev")
			var out strings.Builder
			td, err := New(prefConfig(t, tc.stage, devDir, 16, flags...), "", &out, Options{Backend: backend()})
			must(t, err)
			must(t, td.Run())
			td.Close()
			want, got := logLines(t, cpuDir), logLines(t, devDir)
			if len(got) != len(want) || len(want) != 6 {
				t.Fatalf("device logged %d steps, CPU %d", len(got), len(want))
			}
			for i := range want {
				for _, k := range []string{"loss", "rewards/chosen", "rewards/rejected", "logps/chosen"} {
					w, g := want[i][k], got[i][k]
					if math.Abs(g-w) > tol*math.Max(1, math.Abs(w)) {
						t.Errorf("step %d %s: device %.7g, CPU %.7g", i+1, k, g, w)
					}
				}
			}
		})
	}
}

// A stage that does not fit the data says what to change.
func TestPrefStageNeedsMatchingData(t *testing.T) {
	cfg := prefConfig(t, "dpo", filepath.Join(t.TempDir(), "run"), 8, "--dataset", "kto")
	if _, err := New(cfg, "", nil, cpu()); err == nil || !strings.Contains(err.Error(), "expected preference records") && !strings.Contains(err.Error(), "no training samples") {
		t.Errorf("dpo on KTO data: %v", err)
	}
	cfg = prefConfig(t, "kto", filepath.Join(t.TempDir(), "run"), 8, "--dataset", "pairs")
	if _, err := New(cfg, "", nil, cpu()); err == nil {
		t.Errorf("kto on pairs: no error")
	}
}

// TestLLaMAFactoryPreferenceExamples: configs with the keys of
// LLaMA-Factory's LoRA DPO and KTO examples train, with only the model,
// data folder, output folder and run length changed, on data in the
// layouts of its dpo_en_demo and kto_en_demo.
func TestLLaMAFactoryPreferenceExamples(t *testing.T) {
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	must(t, err)
	dataDir := prefData(t, 12)
	for _, file := range []string{"lf_dpo.yaml", "lf_kto.yaml"} {
		t.Run(file, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cfg, err := config.Open(filepath.Join("testdata", file), []string{"--model_name_or_path", modelDir,
				"--dataset_dir", dataDir, "--output_dir", out, "--max_steps", "3", "--logging_steps", "1", "--progress", "none"}, nil)
			must(t, err)
			tr, err := New(cfg, "", nil, cpu())
			must(t, err)
			must(t, tr.Run())
			l := logLines(t, out)
			if len(l) != 3 {
				t.Fatalf("%d logged steps, want 3", len(l))
			}
			if _, ok := l[2]["rewards/margins"]; !ok {
				t.Errorf("no rewards logged: %v", l[2])
			}
			if _, err := os.Stat(filepath.Join(out, "adapter_model.safetensors")); err != nil {
				t.Errorf("no adapter saved: %v", err)
			}
		})
	}
}

// With a validation split, the preference loss is evaluated and logged as
// eval_loss.
func TestPrefEvaluation(t *testing.T) {
	for _, stage := range []string{"dpo", "kto"} {
		dir := filepath.Join(t.TempDir(), "run")
		cfg := prefConfig(t, stage, dir, 16, "--val_size", "4", "--eval_strategy", "steps", "--eval_steps", "4", "--max_steps", "8")
		tr, err := New(cfg, "", nil, cpu())
		must(t, err)
		must(t, tr.Run())
		var evals []float64
		for _, e := range tr.state.LogHistory {
			if !math.IsNaN(e.EvalLoss) {
				evals = append(evals, e.EvalLoss)
			}
		}
		if len(evals) < 2 || !(evals[len(evals)-1] < evals[0]) {
			t.Errorf("%s: eval losses %v, want at least two, falling", stage, evals)
		}
		b, err := os.ReadFile(filepath.Join(dir, "trainer_log.jsonl"))
		must(t, err)
		want := `"eval_rewards/accuracies":`
		if stage == "kto" {
			want = `"eval_kl":` // (this validation split happens to hold one label only: no margins)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: no %s in the evaluation lines:\n%s", stage, want, b)
		}
	}
}

// TestPrefEveryMethod: DPO trains with every fine-tuning method (the
// reference is the base with the method switched off, or the initial
// weights for freeze), and the reward margin widens.
func TestPrefEveryMethod(t *testing.T) {
	for _, method := range [][]string{
		{"--finetuning_type", "freeze", "--freeze_trainable_layers", "1", "--learning_rate", "1e-4"},
		{"--finetuning_type", "lora", "--use_dora", "true"},
		{"--finetuning_type", "lora", "--quantization_bit", "4"},
		{"--finetuning_type", "prompt_tuning", "--num_virtual_tokens", "4", "--learning_rate", "0.05"},
		{"--finetuning_type", "p_tuning", "--num_virtual_tokens", "4"},
		{"--finetuning_type", "prefix_tuning", "--num_virtual_tokens", "4", "--learning_rate", "1e-2"},
		{"--finetuning_type", "ia3", "--learning_rate", "0.05"},
		{"--finetuning_type", "adapter", "--adapter_size", "16"},
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			cfg := prefConfig(t, "dpo", dir, 12, append(method, "--max_steps", "8")...)
			tr, err := New(cfg, "", nil, cpu())
			must(t, err)
			must(t, tr.Run())
			l := logLines(t, dir)
			first, last := l[0], l[len(l)-1]
			if !(last["rewards/margins"] > first["rewards/margins"]) || math.IsNaN(last["loss"]) {
				t.Errorf("margin %v → %v, loss %v → %v", first["rewards/margins"], last["rewards/margins"], first["loss"], last["loss"])
			}
		})
	}
}

// Each KTO sample's KL row takes the answer of the sample before it in its
// split (the first the last's), never crossing train and validation.
func TestKTOPartners(t *testing.T) {
	got := ktoPartners(6, []int{4, 0, 2}, []int{5, 1})
	want := []int{4, 5, 0, 3, 2, 1} // 3 is in neither split: itself
	if !slices.Equal(got, want) {
		t.Errorf("partners %v, want %v", got, want)
	}
}

// A run resumed between two logged steps (logging_steps 3, checkpoint at
// 4) logs the same window means as the uninterrupted run: the preference
// metrics of steps 4 and 5… are carried in the checkpoint.
func TestPrefResumeLogsWithUnevenLogging(t *testing.T) {
	flags := []string{"--logging_steps", "3", "--save_steps", "4", "--gradient_accumulation_steps", "2", "--per_device_train_batch_size", "2"}
	dirA := filepath.Join(t.TempDir(), "a")
	trA, err := New(prefConfig(t, "dpo", dirA, 16, flags...), "", nil, cpu())
	must(t, err)
	must(t, trA.Run())
	dirB := filepath.Join(t.TempDir(), "b")
	must(t, os.MkdirAll(dirB, 0o755))
	must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(dirA, "checkpoint-4"))))
	trB, err := New(prefConfig(t, "dpo", dirB, 16, append(flags, "--resume_from_checkpoint", "true", "--overwrite_output_dir", "false")...), "", nil, cpu())
	must(t, err)
	must(t, trB.Run())
	a, b := logLines(t, dirA), logLines(t, dirB)
	if len(a) != 4 || len(b) != 3 {
		t.Fatalf("logged %d and %d lines, want 4 and 3", len(a), len(b))
	}
	for i, l := range b {
		want := a[i+1]
		if l["step"] != want["step"] {
			t.Fatalf("line %d: step %v, want %v", i, l["step"], want["step"])
		}
		for _, k := range []string{"loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "sft_loss"} {
			if d := math.Abs(l[k] - want[k]); d > 1e-6*math.Max(1, math.Abs(want[k])) {
				t.Errorf("step %v %s: uninterrupted %.10g, resumed %.10g", l["step"], k, want[k], l[k])
			}
		}
	}
}

// A pair whose prompt alone fills cutoff_len trains: its prompt is cut so
// both answers fit, in the layout LLaMA-Factory's rule gives (the first
// tokens of the prompt, then the first tokens of each answer, the lengths
// shared out by infer_seqlen over the prompt and the longer answer).
func TestPrefLongPromptTrains(t *testing.T) {
	const cutoff = 20
	dir := filepath.Join(t.TempDir(), "run")
	cfg := prefConfig(t, "dpo", dir, 8, "--cutoff_len", fmt.Sprint(cutoff), "--max_steps", "6", "--val_size", "0")
	dc, err := DataConfig(cfg)
	must(t, err)
	dc.Encode.CutoffLen = 0
	enc, err := Encoder(cfg.ModelNameOrPath, "", dc.Encode)
	must(t, err)
	full, err := data.Prepare(dc, enc, t.TempDir())
	must(t, err)
	defer full.Close()

	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
	if tr.cache.Len() != full.Len() || tr.cache.Report().Totals().Truncated != full.Len() {
		t.Fatalf("%d pairs kept of %d, %d truncated", tr.cache.Len(), full.Len(), tr.cache.Report().Totals().Truncated)
	}
	start := func(lab []int32) int {
		for k, l := range lab {
			if l != data.IgnoreIndex {
				return k
			}
		}
		return len(lab)
	}
	for i := range full.Len() {
		f, g := full.Sample(i), tr.cache.Sample(i)
		p := start(f.Labels)
		if p < cutoff {
			t.Fatalf("pair %d: prompt of %d tokens fits cutoff_len %d; the test wants it longer", i, p, cutoff)
		}
		tc, tj := len(f.InputIDs)-p, len(f.RejectedIDs)-start(f.RejectedLabels)
		src, tgt := data.ShareCutoff(p, max(tc, tj), cutoff)
		if i == 0 {
			t.Logf("pair 0: prompt %d, answers %d and %d tokens → prompt %d, answers up to %d", p, tc, tj, src, tgt)
		}
		wantC := append(slices.Clone(f.InputIDs[:src]), f.InputIDs[p:p+min(tgt, tc)]...)
		wantJ := append(slices.Clone(f.RejectedIDs[:src]), f.RejectedIDs[p:p+min(tgt, tj)]...)
		if !slices.Equal(g.InputIDs, wantC) || !slices.Equal(g.RejectedIDs, wantJ) || start(g.Labels) != src || start(g.RejectedLabels) != src {
			t.Errorf("pair %d: chosen %v\nwant %v\nrejected %v\nwant %v", i, g.InputIDs, wantC, g.RejectedIDs, wantJ)
		}
	}
	l := logLines(t, dir)
	if first, last := l[0], l[len(l)-1]; !(last["loss"] < first["loss"]) || !(last["rewards/margins"] > first["rewards/margins"]) {
		t.Errorf("loss %v → %v, margin %v → %v", first["loss"], last["loss"], first["rewards/margins"], last["rewards/margins"])
	}
	checkRewardCharts(t, dir, 6, "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
}

// checkRewardCharts: the run folder holds training_loss.svg and
// training_rewards.svg, the latter with a curve of steps points for each
// of keys.
func checkRewardCharts(t *testing.T, dir string, steps int, keys ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, plot.LossFile)); err != nil {
		t.Error(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, plot.RewardsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		m := regexp.MustCompile(`data-name="` + k + `"><polyline [^>]*points="([^"]*)"`).FindSubmatch(svg)
		if m == nil || len(strings.Fields(string(m[1]))) != steps {
			t.Errorf("%s: no curve of %d points in %s", k, steps, plot.RewardsFile)
		}
	}
}

// KTO answers after a prompt that fills cutoff_len are kept and trained the
// same way, none dropped.
func TestKTOLongPromptTrains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	cfg := prefConfig(t, "kto", dir, 8, "--cutoff_len", "20", "--max_steps", "3", "--val_size", "0")
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
	if tot := tr.cache.Report().Totals(); tr.cache.Len() != 8 || tot.Truncated != 8 || tot.Dropped[data.DropPromptFills] != 0 {
		t.Errorf("%d answers kept of 8, %d truncated, %d dropped", tr.cache.Len(), tot.Truncated, tot.Dropped[data.DropPromptFills])
	}
	for i := range tr.cache.Len() {
		if s := tr.cache.Sample(i); len(s.InputIDs) > 20 || s.Trained() == 0 {
			t.Errorf("answer %d: %d tokens, %d trained", i, len(s.InputIDs), s.Trained())
		}
	}
	if l := logLines(t, dir); len(l) != 3 || math.IsNaN(l[2]["loss"]) {
		t.Errorf("log %v", l)
	}
	checkRewardCharts(t, dir, 3, "rewards/chosen", "rewards/rejected", "rewards/margins")
}
