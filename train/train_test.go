package train

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/ckpt"
	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/config"
	"gotune/data"
	"gotune/model"
	"gotune/optim"
)

// tinyModel is a random Qwen3-shaped model with every parameter trainable.
func tinyModel(t *testing.T) *model.Model {
	t.Helper()
	cfg, err := model.Shape("ref-qwen3")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(7)
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	return m
}

// onCPU copies m to the CPU backend in f32, every trainable parameter
// trained there.
func onCPU(t *testing.T, m *model.Model, checkpoint bool) *model.DeviceModel {
	t.Helper()
	dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Checkpoint: checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dm.Close)
	return dm
}

// grads downloads every parameter's gradient and clears them.
func grads(t *testing.T, m *model.Model, dm *model.DeviceModel) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range m.Params() {
		g, err := dm.Grad(p)
		must(t, err)
		out[p.Name] = g
	}
	dm.ZeroGrad()
	return out
}

// TestAccumulationEqualsBigBatch: four micro-batches of one sequence each,
// with different lengths and trained-token counts, give the loss and the
// gradients of one batch of four.
func TestAccumulationEqualsBigBatch(t *testing.T) {
	m := tinyModel(t)
	const T = 24
	lengths := []int{24, 9, 17, 5}
	trainedFrom := []int{3, 1, 12, 2}
	var singles []*model.Batch
	big := &model.Batch{B: 4, T: T, IDs: make([]int32, 4*T), Labels: make([]int32, 4*T), Mask: make([]int32, 4*T)}
	for r, n := range lengths {
		one := &model.Batch{B: 1, T: n, IDs: make([]int32, n), Labels: make([]int32, n), Mask: make([]int32, n)}
		for i := 0; i < T; i++ {
			j := r*T + i
			big.Labels[j] = model.IgnoreIndex
			if i >= n {
				continue
			}
			id := int32((r*131 + i*17) % m.Cfg.Vocab)
			lab := int32(model.IgnoreIndex)
			if i >= trainedFrom[r] {
				lab = id
			}
			big.IDs[j], big.Labels[j], big.Mask[j] = id, lab, 1
			one.IDs[i], one.Labels[i], one.Mask[i] = id, lab, 1
		}
		singles = append(singles, one)
	}
	dm := onCPU(t, m, false)
	tr := &Trainer{dev: dm}
	sumA, nA, err := tr.accumulate(singles)
	must(t, err)
	ga := grads(t, m, dm)
	sumB, nB, err := tr.accumulate([]*model.Batch{big})
	must(t, err)
	gb := grads(t, m, dm)
	if nA != nB || nA == 0 {
		t.Fatalf("trained tokens: accumulated %d, batch %d", nA, nB)
	}
	if d := math.Abs(sumA-sumB) / sumB; d > 1e-6 {
		t.Errorf("loss: accumulated %v, batch %v (rel %g)", sumA/float64(nA), sumB/float64(nB), d)
	}
	var num, den float64
	for name, a := range ga {
		for i, v := range a {
			d := float64(v - gb[name][i])
			num += d * d
			den += float64(gb[name][i]) * float64(gb[name][i])
		}
	}
	if den == 0 {
		t.Fatal("no gradient")
	}
	if rel := math.Sqrt(num / den); rel > 1e-5 {
		t.Errorf("gradients differ: relative error %g", rel)
	}
	// The naive mean of per-micro-batch means (the bug several trainers
	// shipped) must differ here, or the test proves nothing.
	var naive float64
	for _, b := range singles {
		s, n, err := dm.Loss(b)
		must(t, err)
		naive += s / float64(n) / 4
	}
	if math.Abs(naive-sumB/float64(nB)) < 1e-3 {
		t.Errorf("test batches too even: naive mean %v equals token mean %v", naive, sumB/float64(nB))
	}
}

func quickConfig(t *testing.T, out string) *config.Config {
	t.Helper()
	dataDir, err := assets.DataDir(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(assets.QuickstartConfig(), "quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ModelNameOrPath, cfg.DatasetDir, cfg.OutputDir = modelDir, dataDir, out
	must(t, cfg.ApplyFlags([]string{"--max_steps", "12", "--save_steps", "4", "--logging_steps", "1",
		"--lora_dropout", "0.1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
		"--learning_rate", "5e-3", "--progress=none"}))
	return cfg
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, cfg *config.Config) []ckpt.LogEntry {
	t.Helper()
	return runOn(t, cfg, cputest.Open())
}

// runOn trains cfg on be and returns the logged steps.
func runOn(t *testing.T, cfg *config.Config, be compute.Backend) []ckpt.LogEntry {
	t.Helper()
	tr, err := New(cfg, "", nil, Options{Backend: be})
	must(t, err)
	defer tr.Close()
	must(t, tr.Run())
	return tr.state.LogHistory
}

// cpu is the options of a run on the CPU backend.
func cpu() Options { return Options{Backend: cputest.Open()} }

// cpuEval is the options of an evaluation on the CPU backend.
func cpuEval() EvalOptions { return EvalOptions{Backend: cputest.Open()} }

// TestResumeMatchesUninterrupted: for every method, a run resumed from
// checkpoint-4 logs the same losses at steps 5…12 as the run that never
// stopped (LoRA with dropout included), and the loss falls.
func TestResumeMatchesUninterrupted(t *testing.T) {
	for _, method := range [][]string{
		{"--finetuning_type", "lora", "--lora_dropout", "0.1"},
		{"--finetuning_type", "lora", "--use_dora", "true"},
		{"--finetuning_type", "full"},
		{"--finetuning_type", "freeze", "--freeze_trainable_layers", "1"},
		{"--finetuning_type", "prompt_tuning", "--num_virtual_tokens", "4", "--learning_rate", "0.1"},
		{"--finetuning_type", "p_tuning", "--num_virtual_tokens", "4", "--encoder_reparameterization_type", "LSTM"},
		{"--finetuning_type", "prefix_tuning", "--num_virtual_tokens", "4", "--prefix_projection", "true"},
		{"--finetuning_type", "ia3", "--learning_rate", "0.05"},
		{"--finetuning_type", "adapter", "--adapter_size", "16"},
	} {
		t.Run(strings.Join(method[1:], " "), func(t *testing.T) {
			cfgA := quickConfig(t, filepath.Join(t.TempDir(), "a"))
			must(t, cfgA.ApplyFlags(method))
			dirA := cfgA.OutputDir
			full := run(t, cfgA)
			if len(full) != 12 {
				t.Fatalf("uninterrupted run logged %d steps, want 12", len(full))
			}
			first := (full[0].Loss + full[1].Loss + full[2].Loss + full[3].Loss) / 4
			last := (full[8].Loss + full[9].Loss + full[10].Loss + full[11].Loss) / 4
			if last >= first {
				t.Errorf("loss did not fall: mean of steps 1–4 %.4f, of steps 9–12 %.4f", first, last)
			}
			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(dirA, "checkpoint-4"))))
			cfg := quickConfig(t, dirB)
			must(t, cfg.ApplyFlags(method))
			must(t, cfg.Set("resume_from_checkpoint", "true"))
			resumed := run(t, cfg)
			if len(resumed) != 12 {
				t.Fatalf("resumed run has %d logged steps, want 12", len(resumed))
			}
			for i := 4; i < 12; i++ {
				a, b := full[i].Loss, resumed[i].Loss
				if math.Abs(a-b) > 1e-6*math.Abs(a) {
					t.Errorf("step %d: uninterrupted loss %.9g, resumed %.9g", i+1, a, b)
				}
			}
			// The final result was saved: an adapter folder, or a full model.
			saved := "adapter_config.json"
			if method[1] == "full" || method[1] == "freeze" {
				saved = "model.safetensors"
			}
			if _, err := os.Stat(filepath.Join(dirB, saved)); err != nil {
				t.Errorf("resumed run did not save %s", saved)
			}
			// Full and freeze fine-tuning resume exactly: the same loss
			// bits at every step and the same final weights, byte for byte.
			if saved == "model.safetensors" {
				for i := range full {
					if math.Float64bits(full[i].Loss) != math.Float64bits(resumed[i].Loss) {
						t.Errorf("step %d: loss %.17g uninterrupted, %.17g resumed", i+1, full[i].Loss, resumed[i].Loss)
					}
				}
				a, errA := os.ReadFile(filepath.Join(dirA, saved))
				b, errB := os.ReadFile(filepath.Join(dirB, saved))
				if errA != nil || errB != nil || !bytes.Equal(a, b) {
					t.Errorf("final weights differ between the uninterrupted and the resumed run (%v, %v)", errA, errB)
				}
			}
		})
	}
}

// TestEvaluationOnValidationSplit: with val_size and eval_strategy steps,
// the validation loss is computed, logged and recorded in the trainer state.
func TestEvaluationOnValidationSplit(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	must(t, cfg.ApplyFlags([]string{"--val_size", "0.25", "--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "no"}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	if len(tr.val) != 3 || len(tr.train) != 9 {
		t.Fatalf("split %d train / %d validation, want 9 / 3", len(tr.train), len(tr.val))
	}
	must(t, tr.Run())
	var evals []float64
	for _, e := range tr.state.LogHistory {
		if !math.IsNaN(e.EvalLoss) {
			evals = append(evals, e.EvalLoss)
		}
	}
	if len(evals) < 3 {
		t.Fatalf("%d evaluations logged, want one every 4 of 12 steps", len(evals))
	}
	if evals[len(evals)-1] >= evals[0] {
		t.Errorf("validation loss did not fall: %v", evals)
	}
	log, err := os.ReadFile(filepath.Join(cfg.OutputDir, "trainer_log.jsonl"))
	must(t, err)
	if !strings.Contains(string(log), "eval_loss") {
		t.Errorf("trainer_log.jsonl has no eval_loss line:\n%s", log)
	}
}

// TestBuiltinTemplateTravelsWithAdapter: training with a built-in template
// saves that template beside the adapter, so inference renders prompts the
// way training did.
func TestBuiltinTemplateTravelsWithAdapter(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	must(t, cfg.ApplyFlags([]string{"--template", "chatml", "--max_steps", "2", "--save_strategy", "no"}))
	run(t, cfg)
	got, err := os.ReadFile(filepath.Join(cfg.OutputDir, "chat_template.jinja"))
	must(t, err)
	want, err := chat.Builtin("chatml")
	must(t, err)
	if string(got) != want.Source {
		t.Errorf("saved chat_template.jinja is not the built-in chatml template")
	}
}

// TestDataConfigCleaning: the cleaning keys reach the data pipeline, with
// duplicates removed by default and kept when switched off.
func TestDataConfigCleaning(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	dc, err := DataConfig(cfg)
	must(t, err)
	if !dc.Clean.Dedup || !dc.Clean.NearDedup || dc.Clean.NearThreshold != 0.85 || !dc.Clean.DropPlaceholders {
		t.Errorf("default cleaning %+v, want exact and near dedup at 0.85 and placeholders", dc.Clean)
	}
	must(t, cfg.ApplyFlags([]string{"--dedup=false", "--near_dedup=false", "--languages", "en,zh", "--max_chars", "4000"}))
	dc, err = DataConfig(cfg)
	must(t, err)
	if dc.Clean.Dedup || dc.Clean.NearDedup || dc.Clean.MaxChars != 4000 || len(dc.Clean.Scripts) != 2 {
		t.Errorf("cleaning from flags %+v", dc.Clean)
	}
}

// TestEvaluate: after training, the adapter scores a lower loss than the
// base on the training data, and the overall figure is the token-weighted
// mean of the per-dataset ones.
func TestEvaluate(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	must(t, cfg.ApplyFlags([]string{"--max_steps", "30", "--save_strategy", "no", "--learning_rate", "1e-2"}))
	run(t, cfg)
	base, err := Evaluate(cfg, cfg.ModelNameOrPath, "", cpuEval())
	must(t, err)
	tuned, err := Evaluate(cfg, cfg.ModelNameOrPath, cfg.OutputDir, cpuEval())
	must(t, err)
	if len(base) != 2 || base[0].Samples != 12 || base[1].Dataset != "all" || base[0].Tokens != base[1].Tokens {
		t.Fatalf("unexpected results %+v", base)
	}
	if !(tuned[1].Loss < base[1].Loss/2) {
		t.Errorf("fine-tuned loss %.4f, base %.4f: expected the adapter to halve it", tuned[1].Loss, base[1].Loss)
	}
	if math.Abs(base[1].Perplexity-math.Exp(base[1].Loss)) > 1e-9*base[1].Perplexity {
		t.Errorf("perplexity %v is not exp(loss %v)", base[1].Perplexity, base[1].Loss)
	}
	// Evaluate reports its progress sample by sample (issue 13.8).
	var calls, last, total int
	again, err := Evaluate(cfg, cfg.ModelNameOrPath, "", EvalOptions{Backend: cputest.Open(), Progress: func(done, tot int) {
		calls++
		last, total = done, tot
	}})
	must(t, err)
	if calls != 13 || last != 12 || total != 12 || again[1].Loss != base[1].Loss {
		t.Errorf("%d progress calls ending at %d/%d, loss %v (without progress %v)", calls, last, total, again[1].Loss, base[1].Loss)
	}
}

// TestInvalidJSONStopsTraining: a dataset file broken in the middle stops
// training with file:line; with skip_invalid_json the run goes on, prints
// what it skipped and per-dataset counts, and records them in the run
// folder.
func TestInvalidJSONStopsTraining(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	src, err := os.ReadFile(filepath.Join(cfg.DatasetDir, "quickstart.json"))
	must(t, err)
	// Break the array after its third record: LLaMA-Factory users' files
	// break like this when hand-edited.
	lines := strings.Split(string(src), "\n")
	lines[3] = strings.Replace(lines[3], `"output":`, `"output"`, 1)
	broken := filepath.Join(cfg.DatasetDir, "broken.json")
	must(t, os.WriteFile(broken, []byte(strings.Join(lines, "\n")), 0o644))
	must(t, cfg.ApplyFlags([]string{"--dataset", "broken.json", "--max_steps", "1", "--save_strategy", "no"}))
	_, err = New(cfg, "", nil, cpu())
	if err == nil || !strings.Contains(err.Error(), broken+":4 (record 2)") || !strings.Contains(err.Error(), "skip_invalid_json") {
		t.Fatalf("want an error at %s:4 naming skip_invalid_json, got %v", broken, err)
	}
	must(t, cfg.ApplyFlags([]string{"--skip_invalid_json"}))
	var out strings.Builder
	tr, err := New(cfg, "", &out, cpu())
	must(t, err)
	must(t, tr.Run())
	for _, want := range []string{"skipped 1 records that are not valid JSON", "records", "kept", "broken.json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("training output lacks %q:\n%s", want, out.String())
		}
	}
	rep, err := os.ReadFile(filepath.Join(cfg.OutputDir, DataReportFile))
	must(t, err)
	if !strings.Contains(string(rep), `"invalid_json": 1`) {
		t.Errorf("%s does not record the skipped record:\n%s", DataReportFile, rep)
	}
}

// TestPretrainBaseModelWithoutTemplate: continued pre-training with LoRA on
// a real base model that has no chat template (llama2.c's stories260K),
// from a plain .txt file, runs and lowers the loss.
func TestPretrainBaseModelWithoutTemplate(t *testing.T) {
	modelDir := realModelDir(t)
	dir := t.TempDir()
	stories := "Lily and Tom went to the park. They saw a big red ball.\n" +
		"Tim had a little dog. The dog liked to run and jump in the sun.\n" +
		"Sue found a shiny stone by the river. She gave it to her mom.\n"
	must(t, os.WriteFile(filepath.Join(dir, "stories.txt"), []byte(stories), 0o644))
	cfg := config.Default()
	must(t, cfg.ApplyFlags([]string{"--model_name_or_path", modelDir, "--stage", "pt", "--dataset", "stories.txt",
		"--dataset_dir", dir, "--output_dir", filepath.Join(dir, "run"), "--max_steps", "8", "--learning_rate", "1e-2",
		"--per_device_train_batch_size", "1", "--cutoff_len", "64", "--logging_steps", "1", "--save_strategy", "no",
		"--lora_rank", "4", "--progress", "none"}))
	hist := run(t, cfg)
	if len(hist) < 2 || !(hist[len(hist)-1].Loss < hist[0].Loss) {
		t.Errorf("loss did not fall: %+v", hist)
	}
}

// TestTemplateDefaultIsLLaMAFactorys: `template: default` is LLaMA-Factory's
// Human:/Assistant: template, not the model's own chat template.
func TestTemplateDefaultIsLLaMAFactorys(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	enc, err := Encoder(cfg.ModelNameOrPath, "default", data.EncodeOptions{})
	must(t, err)
	r, err := enc.Render(&data.Example{Kind: data.KindChat, Messages: []data.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}}})
	must(t, err)
	eos := enc.Tok.(data.HFTokenizer).EOSToken()
	if want := "Human: Hi" + eos + "\nAssistant:Hello." + eos + "\n"; r.Text != want {
		t.Errorf("template default rendered %q, want %q", r.Text, want)
	}
	own, err := Encoder(cfg.ModelNameOrPath, "", data.EncodeOptions{})
	must(t, err)
	r2, err := own.Render(&data.Example{Kind: data.KindChat, Messages: []data.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}}})
	must(t, err)
	if r2.Text == r.Text {
		t.Errorf("no template and template default render alike: %q", r.Text)
	}
}

// TestTokenizedPathPreprocessesThenTrains: as in LLaMA-Factory, a first run
// with tokenized_path tokenizes, saves and stops; the next trains from it.
func TestTokenizedPathPreprocessesThenTrains(t *testing.T) {
	dir := t.TempDir()
	cfg := quickConfig(t, filepath.Join(dir, "run"))
	must(t, cfg.ApplyFlags([]string{"--tokenized_path", filepath.Join(dir, "tok"), "--max_steps", "1", "--save_strategy", "no"}))
	_, err := New(cfg, "", nil, cpu())
	var pre *PreprocessedError
	if !errors.As(err, &pre) || !strings.HasPrefix(pre.Path, filepath.Join(dir, "tok")) {
		t.Fatalf("first run: want a PreprocessedError under tokenized_path, got %v", err)
	}
	if _, err := os.Stat(pre.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutputDir, "adapter_model.safetensors")); err == nil {
		t.Fatal("the preprocessing run trained")
	}
	run(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.OutputDir, "adapter_model.safetensors")); err != nil {
		t.Errorf("second run did not train: %v", err)
	}
}

// TestTokenPastEmbeddingTable: a tokenizer that adds a token past the
// model's vocabulary used the id in the embedding lookup and panicked
// (slice bounds out of range); now it is an error naming tokenizer.json.
func TestTokenPastEmbeddingTable(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	tj := filepath.Join(cfg.ModelNameOrPath, "tokenizer.json")
	b, err := os.ReadFile(tj)
	must(t, err)
	const extra = `"added_tokens": [{"id": 2048, "content": "<|past|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},`
	s := strings.Replace(string(b), `"added_tokens": [`, extra, 1)
	if s == string(b) {
		t.Fatal("tokenizer.json has no added_tokens list")
	}
	must(t, os.WriteFile(tj, []byte(s), 0o644))
	_, err = New(cfg, "", nil, cpu())
	if err == nil || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "2048") {
		t.Fatalf("got %v, want an error naming tokenizer.json and id 2048", err)
	}
}

// TestFullFineTuningIsDeterministic: two identical full (and freeze) runs
// log bit-identical losses and end with bit-identical weights. The norm
// gradients were summed in goroutine completion order, and runs diverged
// within a few steps.
func TestFullFineTuningIsDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // several workers even on a small machine
	for _, method := range [][]string{
		{"--finetuning_type", "full"},
		{"--finetuning_type", "freeze", "--freeze_trainable_layers", "1"},
	} {
		t.Run(method[1], func(t *testing.T) {
			var losses [2][]float64
			var weights [2]map[string][]float32
			for k := range 2 {
				cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
				must(t, cfg.ApplyFlags(append(method, "--max_steps", "8", "--save_strategy", "no")))
				tr, err := New(cfg, "", nil, cpu())
				must(t, err)
				must(t, tr.Run())
				for _, e := range tr.state.LogHistory {
					losses[k] = append(losses[k], e.Loss)
				}
				weights[k] = map[string][]float32{}
				for _, p := range tr.Model.Params() {
					if p.Data != nil {
						weights[k][p.Name] = append([]float32(nil), p.Data...)
					}
				}
				for _, l := range tr.Model.Linears() {
					if l.F32() != nil {
						weights[k][l.Name] = append([]float32(nil), l.F32().Data...)
					}
				}
			}
			if len(losses[0]) != 8 {
				t.Fatalf("%d losses logged, want 8", len(losses[0]))
			}
			for i := range losses[0] {
				if math.Float64bits(losses[0][i]) != math.Float64bits(losses[1][i]) {
					t.Errorf("step %d: loss %.17g, then %.17g", i+1, losses[0][i], losses[1][i])
				}
			}
			for name, a := range weights[0] {
				b := weights[1][name]
				for j := range a {
					if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
						t.Errorf("%s[%d]: %v, then %v", name, j, a[j], b[j])
						break
					}
				}
			}
		})
	}
}

func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	list, err := ckpt.List(dir)
	must(t, err)
	var names []string
	for _, c := range list {
		names = append(names, filepath.Base(c.Path))
	}
	return names
}

// TestOverwriteOutputDirClearsOldRun: an earlier run's higher-numbered
// checkpoints made rotation delete every checkpoint of the new run.
func TestOverwriteOutputDirClearsOldRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	old := quickConfig(t, dir)
	must(t, old.ApplyFlags([]string{"--max_steps", "24", "--save_steps", "4", "--save_total_limit", "100"}))
	run(t, old)
	if n := len(checkpointNames(t, dir)); n != 5 {
		t.Fatalf("the first run left %d checkpoints, want 5", n)
	}
	cfg := quickConfig(t, dir)
	must(t, cfg.ApplyFlags([]string{"--max_steps", "8", "--save_steps", "2", "--save_total_limit", "2",
		"--overwrite_output_dir", "true", "--learning_rate", "1e-3"}))
	run(t, cfg)
	got := strings.Join(checkpointNames(t, dir), ",")
	if got != "checkpoint-4,checkpoint-6" {
		t.Fatalf("checkpoints after the second run: %s, want checkpoint-4,checkpoint-6", got)
	}
	for _, name := range []string{"checkpoint-4", "checkpoint-6"} {
		m, err := ckpt.ReadManifest(filepath.Join(dir, name))
		must(t, err)
		if m.Run["learning_rate"] != "0.001" || m.Run["max_steps"] != "8" {
			t.Errorf("%s was not written by the second run: %v", name, m.Run)
		}
	}
}

// TestResumeRefusesForeignCheckpoint: resuming used to continue whatever
// checkpoint the folder held, from another configuration or other data.
func TestResumeRefusesForeignCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	run(t, quickConfig(t, dir))
	cfg := quickConfig(t, dir)
	must(t, cfg.ApplyFlags([]string{"--learning_rate", "1e-3", "--resume_from_checkpoint", "true"}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	err = tr.Run()
	if err == nil || !strings.Contains(err.Error(), "different run") || !strings.Contains(err.Error(), "learning_rate was 0.005, now 0.001") {
		t.Fatalf("got %v, want a refusal naming learning_rate", err)
	}
	// the same configuration resumes
	same := quickConfig(t, dir)
	must(t, same.Set("resume_from_checkpoint", "true"))
	tr, err = New(same, "", nil, cpu())
	must(t, err)
	must(t, tr.Run())
}

// TestResumeDetectsDamagedOptimizerState: optimizer state overwritten at the
// same size (here with NaN) used to load silently and train to NaN.
func TestResumeDetectsDamagedOptimizerState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	run(t, quickConfig(t, dir))
	p := filepath.Join(dir, "checkpoint-8", optim.StateFile)
	b, err := os.ReadFile(p)
	must(t, err)
	nan := math.Float32bits(float32(math.NaN()))
	for i := len(b) - 64; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = byte(nan), byte(nan>>8), byte(nan>>16), byte(nan>>24)
	}
	must(t, os.WriteFile(p, b, 0o644))
	cfg := quickConfig(t, dir)
	must(t, cfg.Set("resume_from_checkpoint", "true"))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	if err := tr.Run(); err == nil || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), optim.StateFile) {
		t.Fatalf("got %v, want a checksum error naming %s", err, optim.StateFile)
	}
}

// TestNonFiniteLossStops: a diverged run used to train on to NaN and exit 0.
func TestNonFiniteLossStops(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	must(t, cfg.ApplyFlags([]string{"--learning_rate", "1e30", "--max_grad_norm", "0", "--save_strategy", "no"}))
	tr, err := New(cfg, "", nil, cpu())
	must(t, err)
	err = tr.Run()
	if err == nil || !strings.Contains(err.Error(), "the loss is") || !strings.Contains(err.Error(), "step ") {
		t.Fatalf("got %v, want an error naming the step with a non-finite loss", err)
	}
}

// TestResumeLogsWithUnevenLogging: with logging_steps 3 and save_steps 4,
// the line logged at step 6 after resuming from checkpoint-4 averaged steps
// 5–6 only; the window of steps since the last log now travels in the
// checkpoint.
func TestResumeLogsWithUnevenLogging(t *testing.T) {
	flags := []string{"--logging_steps", "3", "--finetuning_type", "full"}
	cfgA := quickConfig(t, filepath.Join(t.TempDir(), "a"))
	must(t, cfgA.ApplyFlags(flags))
	full := run(t, cfgA)
	dirB := filepath.Join(t.TempDir(), "b")
	must(t, os.MkdirAll(dirB, 0o755))
	must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(cfgA.OutputDir, "checkpoint-4"))))
	cfgB := quickConfig(t, dirB)
	must(t, cfgB.ApplyFlags(append(flags, "--resume_from_checkpoint", "true")))
	resumed := run(t, cfgB)
	if len(full) != 4 || len(resumed) != len(full) {
		t.Fatalf("logged %d lines uninterrupted, %d resumed; want 4 each", len(full), len(resumed))
	}
	for i := range full {
		a, b := full[i], resumed[i]
		if a.Step != b.Step || math.Float64bits(a.Loss) != math.Float64bits(b.Loss) || math.Float64bits(a.GradNorm) != math.Float64bits(b.GradNorm) {
			t.Errorf("line %d: uninterrupted step %d loss %.17g norm %.17g, resumed step %d loss %.17g norm %.17g",
				i, a.Step, a.Loss, a.GradNorm, b.Step, b.Loss, b.GradNorm)
		}
	}
}

// TestDamagedCheckpoints: a corpus of damaged or foreign checkpoints; each
// resume ends in an error naming the problem, never a panic or a run that
// silently continues from bad state.
func TestDamagedCheckpoints(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	run(t, quickConfig(t, src))
	good := filepath.Join(src, "checkpoint-8")
	overwrite := func(name string, edit func([]byte) []byte) func(string) {
		return func(ck string) {
			p := filepath.Join(ck, name)
			b, err := os.ReadFile(p)
			must(t, err)
			must(t, os.WriteFile(p, edit(b), 0o644))
		}
	}
	flip := func(b []byte) []byte { b[len(b)/2] ^= 0x55; return b }
	cases := []struct {
		name   string
		damage func(ck string)
		flags  []string
		want   string
	}{
		{"manifest missing", func(ck string) { os.Remove(filepath.Join(ck, ckpt.ManifestFile)) }, nil, "incomplete"},
		{"manifest not JSON", overwrite(ckpt.ManifestFile, func([]byte) []byte { return []byte("{") }), nil, ckpt.ManifestFile},
		{"manifest deep", overwrite(ckpt.ManifestFile, func([]byte) []byte { return []byte(strings.Repeat("[", 1<<20)) }), nil, "nested deeper"},
		{"manifest FIFO", func(ck string) {
			p := filepath.Join(ck, ckpt.ManifestFile)
			os.Remove(p)
			if syscall.Mkfifo(p, 0o644) != nil {
				t.Skip("no FIFOs")
			}
		}, nil, "not a regular file"},
		{"optimizer truncated", func(ck string) { os.Truncate(filepath.Join(ck, optim.StateFile), 100) }, nil, "damaged"},
		{"optimizer bit flip", overwrite(optim.StateFile, flip), nil, "checksum"},
		{"weights bit flip", overwrite("trainable/model.safetensors", flip), nil, "checksum"},
		{"trainer state bit flip", overwrite(ckpt.TrainerStateFile, flip), nil, "checksum"},
		{"optimizer removed", func(ck string) { os.Remove(filepath.Join(ck, optim.StateFile)) }, nil, optim.StateFile},
		{"another learning rate", func(string) {}, []string{"--learning_rate", "1e-3"}, "learning_rate was"},
		{"another method", func(string) {}, []string{"--lora_rank", "4"}, "different run"},
		{"other data", func(string) {}, []string{"--cutoff_len", "64"}, "different run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck := filepath.Join(t.TempDir(), "checkpoint-8")
			must(t, os.CopyFS(ck, os.DirFS(good)))
			c.damage(ck)
			cfg := quickConfig(t, filepath.Join(t.TempDir(), "out"))
			must(t, cfg.ApplyFlags(append(c.flags, "--resume_from_checkpoint", ck)))
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				tr, err := New(cfg, "", nil, cpu())
				if err != nil {
					return err
				}
				return tr.Run()
			}()
			if err == nil || strings.HasPrefix(err.Error(), "panic") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// TestEvaluateTokenPastEmbeddingTable: evaluation ran the same embedding
// lookup as training and panicked on an id past the table.
func TestEvaluateTokenPastEmbeddingTable(t *testing.T) {
	cfg := quickConfig(t, filepath.Join(t.TempDir(), "run"))
	tj := filepath.Join(cfg.ModelNameOrPath, "tokenizer.json")
	b, err := os.ReadFile(tj)
	must(t, err)
	s := strings.Replace(string(b), `"added_tokens": [`, `"added_tokens": [{"id": 2100, "content": "<|past|>", "special": true},`, 1)
	must(t, os.WriteFile(tj, []byte(s), 0o644))
	if _, err := Evaluate(cfg, cfg.ModelNameOrPath, "", cpuEval()); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("got %v, want an error naming tokenizer.json", err)
	}
}
