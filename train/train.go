// Package train runs supervised fine-tuning from a configuration: it loads
// the model, attaches the method (full, freeze, LoRA family, QLoRA),
// prepares the data, and runs the optimisation loop with gradient
// accumulation weighted by token count, logging, evaluation, atomic
// checkpoints and exact resume.
package train

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gotune/ckpt"
	"gotune/config"
	"gotune/data"
	"gotune/method"
	"gotune/model"
	"gotune/nn"
	"gotune/optim"
	"gotune/peft"
	"gotune/quant"
	"gotune/runlog"
	"gotune/tboard"
)

// Trainer is one training run.
type Trainer struct {
	Cfg      *config.Config
	ModelDir string
	Model    *model.Model
	Method   peft.Method // nil for full and freeze
	Params   []*nn.Param // trainable

	out       io.Writer
	opt       optim.Optimizer
	sched     optim.Schedule
	cache     *data.Cache
	train     []int
	val       []int
	pad       int32
	perEpoch  int // optimizer steps per epoch
	total     int
	state     ckpt.TrainerState
	log       *runlog.Logger
	run       map[string]string  // recorded in checkpoints; see runIdentity
	dev       *model.DeviceModel // the model on the backend that trains it
	pref      *prefStage         // stage dpo or kto (pref.go); nil for sft and pt
	devScorer *deviceScorer      // the device's scorer, kept for its error
	resumed   string             // the checkpoint resumed from, or ""
	closeTB   func() error       // the TensorBoard writer, when reporting to it
	grpo      *grpoRun           // stage grpo's state (grpo.go)
}

// New prepares a run: model, method, data, optimizer and schedule, and
// the model's copy on the backend of o that trains it (o.Backend is
// required). modelDir overrides cfg.ModelNameOrPath when not empty (the
// bundled model).
func New(cfg *config.Config, modelDir string, out io.Writer, o Options) (*Trainer, error) {
	if o.Backend == nil {
		return nil, errors.New("train: no compute backend to train on (train.Options.Backend)")
	}
	if err := method.Validate(cfg); err != nil {
		return nil, err
	}
	if modelDir == "" {
		modelDir = cfg.ModelNameOrPath
	}
	t := &Trainer{Cfg: cfg, ModelDir: modelDir, out: out}
	if err := t.loadModel(); err != nil {
		return nil, err
	}
	if err := t.attachMethod(); err != nil {
		return nil, err
	}
	if cfg.Stage == "grpo" {
		// Prompts and rewards instead of tokenized samples (grpo.go).
		if err := t.setupGRPO(); err != nil {
			return nil, err
		}
	} else if err := t.loadData(); err != nil {
		return nil, err
	}
	if err := t.attachPref(); err != nil {
		return nil, err
	}
	if err := t.buildOptimizer(); err != nil {
		return nil, err
	}
	run, err := t.runIdentity()
	if err != nil {
		return nil, err
	}
	t.run = run
	if err := t.attachDevice(o); err != nil {
		return nil, err
	}
	if t.grpo != nil {
		if err := t.grpoDevice(); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

func (t *Trainer) printf(format string, args ...any) {
	if t.out != nil {
		fmt.Fprintf(t.out, format, args...)
	}
}

func (t *Trainer) loadModel() error {
	c := t.Cfg
	me, err := method.Of(c)
	if err != nil {
		return err
	}
	opt := model.LoadOptions{Storage: model.F32}
	if c.BF16 && me.BF16Base {
		opt.Storage = model.BF16
	}
	if c.QuantizationBit != nil {
		if !me.QuantizedBase {
			return fmt.Errorf("quantization_bit needs a method that keeps the quantized base frozen (finetuning_type lora: QLoRA), got %s", c.FinetuningType)
		}
		qo := quant.Options{DoubleQuant: c.DoubleQuantization}
		switch {
		case *c.QuantizationBit == 4 && c.QuantizationType == "fp4":
			qo.Type = quant.FP4
		case *c.QuantizationBit == 4:
			qo.Type = quant.NF4
		case *c.QuantizationBit == 8:
			qo.Type = quant.Int8Row
			qo.DoubleQuant = false
		default:
			return fmt.Errorf("quantization_bit %d: want 4 or 8", *c.QuantizationBit)
		}
		opt.Quant = &qo
	}
	m, err := model.Load(t.ModelDir, opt)
	if err != nil {
		return err
	}
	t.Model = m
	return nil
}

func (t *Trainer) attachMethod() error {
	c, m := t.Cfg, t.Model
	me, err := method.Of(c)
	if err != nil {
		return err
	}
	if t.Method, t.Params, err = me.Attach(method.Setup{Cfg: c, Model: m, ModelDir: t.ModelDir}); err != nil {
		return err
	}
	n := 0
	for _, p := range t.Params {
		n += p.Len()
	}
	all := int64(0)
	for _, p := range m.Params() {
		all += int64(p.Len())
	}
	t.printf("model %s: %s, %d layers; trainable %d parameters (%s)\n", t.ModelDir, m.Cfg.ModelType, m.Cfg.Layers, n, c.FinetuningType)
	if ctx := m.Cfg.MaxPositions; ctx > 0 && c.CutoffLen > ctx {
		t.printf("note: cutoff_len %d is above the model's context (max_position_embeddings %d): samples longer than %d train on positions the model was not trained for, and generate/chat/serve refuse such prompts\n",
			c.CutoffLen, ctx, ctx)
	}
	return nil
}

func (t *Trainer) loadData() error {
	c := t.Cfg
	dc, err := DataConfig(c)
	if err != nil {
		return err
	}
	enc, err := t.encoder(dc.Encode)
	if err != nil {
		return err
	}
	rows := t.Model.Cfg.Vocab
	if err := checkTokenizerRows(enc, t.ModelDir, rows); err != nil {
		return err
	}
	cacheDir := c.TokenizedPath
	if cacheDir == "" {
		cacheDir = filepath.Join(c.OutputDir, ".data")
	}
	fresh := false
	if c.TokenizedPath != "" {
		key, err := data.CacheKey(dc, enc)
		if err != nil {
			return err
		}
		_, statErr := os.Stat(filepath.Join(cacheDir, key+".gtdc"))
		fresh = statErr != nil
	}
	cache, err := data.Prepare(dc, enc, cacheDir)
	if err != nil {
		return err
	}
	if err := checkCacheRows(cache, rows); err != nil {
		cache.Close()
		return err
	}
	if fresh {
		// LLaMA-Factory's preprocessing run: with tokenized_path set and
		// nothing there yet, tokenize, save and stop; the next run with the
		// same tokenized_path trains from it.
		rep := cache.Report()
		cache.Close()
		if rep != nil && t.out != nil {
			if err := rep.WriteSummary(t.out); err != nil {
				return err
			}
		}
		return &PreprocessedError{Path: cache.Path()}
	}
	t.cache = cache
	t.train, t.val = cache.Train(), cache.Val()
	if pad, ok := enc.Tok.(data.HFTokenizer); ok {
		t.pad = int32(pad.PAD())
	}
	if rep := cache.Report(); rep != nil && t.out != nil {
		if err := rep.WriteSummary(t.out); err != nil {
			return err
		}
	}
	t.printf("data: %d training samples, %d validation (%s)\n", len(t.train), len(t.val), cache.Path())
	if len(t.train) == 0 {
		return fmt.Errorf("no training samples left after validation and filtering; see `gotune data inspect`")
	}
	return nil
}

// checkTokenizerRows refuses a tokenizer with ids past the model's
// embedding table: such an id would index out of its rows in the forward
// pass. The error names where the id came from.
func checkTokenizerRows(enc *data.Encoder, modelDir string, rows int) error {
	tk, ok := enc.Tok.(data.HFTokenizer)
	if !ok || tk.Tokenizer == nil || tk.VocabSize() <= rows {
		return nil
	}
	id := tk.VocabSize() - 1
	return fmt.Errorf("%s: token id %d (%q) is past the model's embedding table of %d rows (config.json vocab_size); "+
		"the tokenizer does not belong to this model or adds tokens the model was not resized for",
		filepath.Join(modelDir, "tokenizer.json"), id, tk.IDToToken(id), rows)
}

// checkCacheRows refuses a prepared cache holding ids past the embedding
// table (made with another tokenizer).
func checkCacheRows(cache *data.Cache, rows int) error {
	if id := cache.MaxTokenID(); id >= rows {
		return fmt.Errorf("%s: token id %d is past the model's embedding table of %d rows; "+
			"the cache was made with another tokenizer (delete it to rebuild)", cache.Path(), id, rows)
	}
	return nil
}

// DataConfig maps a training configuration onto the data pipeline's: the
// datasets resolved through dataset_dir/dataset_info.json, mixing, the
// validation split, masking options, and cleaning (by default exact and
// near duplicates and placeholder answers are removed), which `gotune data
// inspect` reports record by record.
func DataConfig(c *config.Config) (data.Config, error) {
	info, err := data.LoadDatasetInfo(c.DatasetDir)
	if err != nil {
		return data.Config{}, err
	}
	specs, err := info.Resolve(c.Dataset)
	if err != nil {
		return data.Config{}, err
	}
	clean := data.CleanConfig{Dedup: c.Dedup, NearDedup: c.NearDedup, NearThreshold: c.NearDedupThreshold,
		DropPlaceholders: c.DropPlaceholders, MinChars: c.MinChars, MaxChars: c.MaxChars, Scripts: c.Languages}
	dc := data.Config{Datasets: specs, Stage: c.Stage, ValSize: c.ValSize, Clean: clean, SkipInvalidJSON: c.SkipInvalidJSON,
		Encode: data.EncodeOptions{CutoffLen: c.CutoffLen, TrainOnPrompt: c.TrainOnPrompt, MaskHistory: c.MaskHistory, NoThinking: !c.EnableThinking},
		Mix:    data.MixConfig{Strategy: c.MixStrategy, Probs: c.InterleaveProbs, Seed: int64(c.Seed)}}
	if c.MaxSamples != nil {
		dc.MaxSamples = *c.MaxSamples
	}
	return dc, nil
}

// encoder tokenizes with the model's tokenizer and renders with the model's
// chat template, or with the built-in template named by `template`.
func (t *Trainer) encoder(opts data.EncodeOptions) (*data.Encoder, error) {
	enc, err := Encoder(t.ModelDir, t.Cfg.Template, opts)
	if err == nil && t.Cfg.Template != "" && t.Cfg.Template != "auto" {
		t.printf("template: built-in %q\n", t.Cfg.Template)
	}
	return enc, err
}

// Encoder builds the tokenizer and template glue for a model folder;
// template names a built-in template as LLaMA-Factory's `template` does
// ("default" is its Human:/Assistant: template); "" or "auto" use the
// model's own.
func Encoder(modelDir, template string, opts data.EncodeOptions) (*data.Encoder, error) {
	if template == "auto" {
		template = ""
	}
	return data.LoadEncoderTemplate(modelDir, template, opts)
}

// plan lays out the micro-batches of an epoch: the training samples
// shuffled by a seed derived from the epoch, so a resumed run sees the same
// batches as an uninterrupted one.
func (t *Trainer) plan(epoch int) ([]data.BatchPlan, error) {
	order := append([]int(nil), t.train...)
	data.Shuffle(order, int64(t.Cfg.Seed)+int64(epoch))
	bc := data.BatchConfig{BatchSize: max(t.Cfg.PerDeviceTrainBatchSize, 1), Packing: t.Cfg.PackingEnabled(), Seed: int64(t.Cfg.Seed) + int64(epoch)}
	if bc.Packing {
		bc.SeqLen = t.Cfg.CutoffLen
	}
	return data.Plan(t.cache, order, bc)
}

func (t *Trainer) buildOptimizer() error {
	c := t.Cfg
	if t.grpo != nil {
		t.perEpoch = t.grpoStepsPerEpoch()
	} else {
		plans, err := t.plan(0)
		if err != nil {
			return err
		}
		t.perEpoch = max(len(plans)/max(c.GradientAccumulationSteps, 1), 1)
	}
	if c.MaxSteps > 0 {
		t.total = c.MaxSteps
	} else {
		t.total = int(math.Ceil(c.NumTrainEpochs * float64(t.perEpoch)))
	}
	go_ := optim.GroupOptions{WeightDecay: c.WeightDecay, LearningRate: c.LearningRate, LoRAPlusEmbeddingLR: c.LoRAPlusLREmbedding}
	if c.LoRAPlusLRRatio != nil {
		go_.LoRAPlusRatio = *c.LoRAPlusLRRatio
	}
	groups := optim.MakeGroups(t.Params, go_)
	cfg := optim.Config{Beta1: c.AdamBeta1, Beta2: c.AdamBeta2, Eps: c.AdamEpsilon}
	var err error
	if t.opt, err = optim.New(c.Optim, groups, cfg); err != nil {
		return err
	}
	t.sched, err = optim.NewSchedule(c.LRSchedulerType, c.LearningRate, c.Warmup(t.total), t.total)
	if err != nil {
		return err
	}
	if v, ok := c.LRSchedulerKwargs["min_lr_rate"]; ok {
		t.sched.MinLRRate = v
	}
	if v, ok := c.LRSchedulerKwargs["min_lr"]; ok && c.LearningRate > 0 {
		t.sched.MinLRRate = v / c.LearningRate
	}
	if v, ok := c.LRSchedulerKwargs["num_cycles"]; ok {
		t.sched.NumCycles = v
	}
	return t.sched.Validate()
}

// Total is the number of optimizer steps of the run.
func (t *Trainer) Total() int { return t.total }

func batchOf(b data.Batch, packed bool) *model.Batch {
	mb := &model.Batch{B: b.B, T: b.T, IDs: b.InputIDs, Labels: b.Labels, Mask: b.AttentionMask, Pos: b.PositionIDs}
	if packed {
		mb.Seg = b.SegmentIDs
	}
	return mb
}

// runStep runs forward and backward over one optimizer step's planned
// micro-batches and returns the summed loss, the count it is a sum over
// (trained tokens; 1 for the preference stages, whose loss is already a
// mean over pairs) and the tokens processed, padding included.
func (t *Trainer) runStep(plans []data.BatchPlan, packed bool) (float64, int, int64, error) {
	if t.pref != nil {
		loss, tokens := t.pref.step(t, plans)
		return loss, 1, tokens, t.scorer().Err()
	}
	batches := make([]*model.Batch, 0, len(plans))
	var tokens int64
	for _, p := range plans {
		mb := batchOf(p.Build(t.cache, t.pad), packed)
		batches = append(batches, mb)
		tokens += int64(mb.B * mb.T)
	}
	sum, trained, err := t.accumulate(batches)
	return sum, trained, tokens, err
}

// Run trains to the end, resuming first when asked.
func (t *Trainer) Run() error {
	if t.grpo != nil {
		return t.runGRPO()
	}
	c := t.Cfg
	if err := t.maybeResume(); err != nil {
		return err
	}
	if err := t.deviceResumed(); err != nil {
		return err
	}
	if t.pref != nil {
		if err := t.pref.prepare(t, t.resumed); err != nil {
			return err
		}
	}
	if err := t.prepareOutput(); err != nil {
		return err
	}
	if err := t.writeDataReport(); err != nil {
		return err
	}
	if err := t.openLog(); err != nil {
		return err
	}
	defer t.closeLog()
	ga := max(c.GradientAccumulationSteps, 1)
	logEvery := max(c.LoggingSteps, 1)
	packed := c.PackingEnabled()
	// The logging window continues from the checkpoint (zero on a fresh run).
	logLoss, logNorm := t.state.Window.LossSum, t.state.Window.NormSum
	logSteps, tokensSeen := t.state.Window.Steps, t.state.Window.Tokens
	pos := t.state.Data
	for t.state.GlobalStep < t.total {
		plans, err := t.plan(pos.Epoch)
		if err != nil {
			return err
		}
		// Whole accumulation groups only, as the HF Trainer drops the tail.
		usable := len(plans) / ga * ga
		if usable == 0 {
			usable = len(plans)
		}
		for pos.BatchIndex < usable && t.state.GlobalStep < t.total {
			end := min(pos.BatchIndex+ga, usable)
			t.zeroGrad()
			if lora, ok := t.Method.(*peft.LoRASet); ok {
				lora.SetStep(uint64(t.state.GlobalStep))
			}
			sum, trained, tokens, err := t.runStep(plans[pos.BatchIndex:end], packed)
			if err != nil {
				return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
			}
			if trained > 0 && (math.IsNaN(sum) || math.IsInf(sum, 0)) {
				// Continuing would only spread NaN into every weight.
				return fmt.Errorf("step %d: the loss is %v; training stopped (lower learning_rate, or resume from an earlier checkpoint)", t.state.GlobalStep+1, sum/float64(trained))
			}
			tokensSeen += tokens
			norm, err := t.gradNorm()
			if err != nil {
				return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
			}
			lr := t.sched.LR(t.state.GlobalStep)
			if trained > 0 && !math.IsNaN(norm) && !math.IsInf(norm, 0) {
				if err := t.optimizerStep(lr, norm); err != nil {
					return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
				}
			}
			pos.BatchIndex = end
			t.state.GlobalStep++
			t.state.Epoch = float64(pos.Epoch) + float64(pos.BatchIndex)/float64(usable)
			if trained > 0 {
				logLoss += sum / float64(trained)
				logNorm += norm
				logSteps++
			}
			if t.state.GlobalStep%logEvery == 0 || t.state.GlobalStep == t.total {
				entry := ckpt.LogEntry{Step: t.state.GlobalStep, Epoch: t.state.Epoch, Loss: logLoss / float64(max(logSteps, 1)),
					LR: lr, GradNorm: logNorm / float64(max(logSteps, 1)), EvalLoss: math.NaN()}
				step := runlog.Step{Step: entry.Step, Epoch: entry.Epoch, Loss: entry.Loss, LR: entry.LR, GradNorm: entry.GradNorm, Tokens: tokensSeen}
				if t.pref != nil {
					step.Extra, entry.Metrics = t.pref.logValues()
				}
				t.log.Log(step)
				t.state.LogHistory = append(t.state.LogHistory, entry)
				logLoss, logNorm, logSteps, tokensSeen = 0, 0, 0, 0
			} else {
				// Between logged steps only the bar moves, with this step's loss.
				stepLoss := math.NaN()
				if trained > 0 {
					stepLoss = sum / float64(trained)
				}
				t.log.Progress(runlog.Step{Step: t.state.GlobalStep, Epoch: t.state.Epoch, Loss: stepLoss, LR: lr, GradNorm: norm, Tokens: tokensSeen})
			}
			t.state.Data = pos
			t.state.Window = ckpt.LogWindow{LossSum: logLoss, NormSum: logNorm, Steps: logSteps, Tokens: tokensSeen}
			if ev := c.EvalEvery(); len(t.val) > 0 && c.EvalStrategy == "steps" && ev > 0 && t.state.GlobalStep%ev == 0 {
				if err := t.evaluate(); err != nil {
					return err
				}
			}
			if (c.SaveStrategy == "" || c.SaveStrategy == "steps") && c.SaveSteps > 0 && t.state.GlobalStep%c.SaveSteps == 0 && t.state.GlobalStep < t.total {
				if err := t.saveCheckpoint(); err != nil {
					return err
				}
			}
		}
		if pos.BatchIndex >= usable {
			pos = ckpt.DataPosition{Epoch: pos.Epoch + 1}
			t.state.Data = pos
			if t.state.GlobalStep < t.total {
				if len(t.val) > 0 && c.EvalStrategy == "epoch" {
					if err := t.evaluate(); err != nil {
						return err
					}
				}
				if c.SaveStrategy == "epoch" {
					if err := t.saveCheckpoint(); err != nil {
						return err
					}
				}
			}
		}
	}
	if len(t.val) > 0 && (c.EvalStrategy != "no" || c.DoEval) {
		if err := t.evaluate(); err != nil {
			return err
		}
	}
	return t.saveFinal()
}

// openLog starts the run's log (trainer_log.jsonl, the progress display and
// TensorBoard when asked); the caller closes t.log.
func (t *Trainer) openLog() error {
	c := t.Cfg
	disp, err := runlog.ParseDisplay(c.Progress)
	if err != nil {
		return err
	}
	opts := runlog.Options{Dir: c.OutputDir, Out: t.out, Display: disp, Total: t.total, StartStep: t.state.GlobalStep}
	if t.dev != nil {
		opts.DeviceMem = func() (int64, int64) {
			st := t.dev.MemStats()
			return st.InUse, st.Peak
		}
	}
	if c.ReportsTo("tensorboard") {
		tb, err := tboard.Create(c.OutputDir)
		if err != nil {
			return err
		}
		t.closeTB = tb.Close
		warned := false
		opts.Sink = func(step int, keys []string, values []float64) {
			names := make([]string, len(keys))
			for i, k := range keys {
				names[i] = tboard.Tag(k)
			}
			// Losing the TensorBoard copy is no reason to stop training:
			// trainer_log.jsonl has every value.
			if err := tb.Scalars(int64(step), names, values); err != nil && !warned {
				warned = true
				t.printf("warning: %v\n", err)
			}
		}
	}
	t.log, err = runlog.New(opts)
	if err != nil && t.closeTB != nil {
		t.closeTB()
		t.closeTB = nil
	}
	return err
}

// closeLog ends what openLog started.
func (t *Trainer) closeLog() {
	t.log.Close()
	if t.closeTB != nil {
		t.closeTB()
		t.closeTB = nil
	}
}

// evaluate computes the mean loss over the validation split.
func (t *Trainer) evaluate() error {
	if t.pref != nil {
		loss, metrics, err := t.pref.evaluate(t)
		if err != nil || len(t.val) == 0 {
			return err
		}
		if len(t.state.LogHistory) > 0 {
			t.state.LogHistory[len(t.state.LogHistory)-1].EvalLoss = loss
		}
		return t.log.EvalWith(t.state.GlobalStep, loss, metrics)
	}
	order := append([]int(nil), t.val...)
	plans, err := data.Plan(t.cache, order, data.BatchConfig{BatchSize: max(t.Cfg.PerDeviceEvalBatchSize, 1)})
	if err != nil {
		return err
	}
	var sum float64
	var n int
	for _, p := range plans {
		s, k, err := t.loss(batchOf(p.Build(t.cache, t.pad), false))
		if err != nil {
			return err
		}
		sum += s
		n += k
	}
	if n == 0 {
		return nil
	}
	loss := sum / float64(n)
	if len(t.state.LogHistory) > 0 {
		t.state.LogHistory[len(t.state.LogHistory)-1].EvalLoss = loss
	}
	return t.log.Eval(t.state.GlobalStep, loss)
}

// prepareOutput checks a new run's output folder (a resumed run continues
// in its own) and creates it.
func (t *Trainer) prepareOutput() error {
	if t.state.GlobalStep == 0 {
		if err := t.checkOutputDir(); err != nil {
			return err
		}
	}
	return os.MkdirAll(t.Cfg.OutputDir, 0o755)
}

func (t *Trainer) checkOutputDir() error {
	c := t.Cfg
	if c.OverwriteOutputDir {
		// Starting over: the old run's checkpoints must go, or rotation
		// (which keeps the highest steps) would delete the new ones and a
		// later resume would continue the old run.
		n, err := ckpt.Clear(c.OutputDir)
		if err != nil {
			return fmt.Errorf("overwrite_output_dir: %w", err)
		}
		if n > 0 {
			t.printf("overwrite_output_dir: removed %d checkpoint(s) of an earlier run from %s\n", n, c.OutputDir)
		}
		return nil
	}
	if _, _, err := ckpt.Latest(c.OutputDir); err == nil {
		return fmt.Errorf("%s already holds checkpoints: set resume_from_checkpoint to continue or overwrite_output_dir: true to start over", c.OutputDir)
	}
	return nil
}

// DataReportFile is the run folder's record of what the data pipeline read,
// skipped, filtered and kept.
const DataReportFile = "data_report.json"

func (t *Trainer) writeDataReport() error {
	rep := t.cache.Report()
	if rep == nil {
		return nil
	}
	var b strings.Builder
	if err := rep.WriteJSON(&b); err != nil {
		return err
	}
	return ckpt.WriteFileAtomic(filepath.Join(t.Cfg.OutputDir, DataReportFile), []byte(b.String()), 0o644)
}

// PreprocessedError ends a run that only tokenized its data: tokenized_path
// was set and held no cache for these datasets, tokenizer and settings, as
// in LLaMA-Factory's preprocessing step. It is not a failure.
type PreprocessedError struct{ Path string }

func (e *PreprocessedError) Error() string {
	return fmt.Sprintf("tokenized dataset saved at %s; run again with the same tokenized_path to train on it", e.Path)
}
