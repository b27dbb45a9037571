package train

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"gotune/compute"
	"gotune/config"
	"gotune/data"
	"gotune/method"
	"gotune/model"
	"gotune/peft"
)

// EvalResult is the loss of a model on one dataset.
type EvalResult struct {
	Dataset    string  `json:"dataset"`
	Samples    int     `json:"samples"`
	Tokens     int     `json:"tokens"` // trained (scored) tokens
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
	Device     string  `json:"device,omitempty"` // the backend that scored
}

// EvalOptions are the backend an evaluation scores on and its progress
// reports (nil funcs report nothing).
type EvalOptions struct {
	// DataProgress receives bytes of the dataset files read (when the
	// tokenized cache has to be built).
	DataProgress func(done, total int64)
	// Progress receives the samples scored out of the total.
	Progress func(done, total int)
	// Backend scores (required; bf16 when the config says bf16).
	Backend compute.Backend
	// Fallback, when set, scores a model or adapter Backend cannot run
	// (as train.Options.Fallback).
	Fallback compute.Backend
}

// Evaluate scores a model (with an adapter when adapterDir is set) on the
// datasets of cfg: the mean cross-entropy of the tokens training would train
// on, and its perplexity, per dataset and overall (Dataset "all"). Comparing
// the base model with the fine-tuned one on general data measures forgetting.
// It scores on opt.Backend (required).
func Evaluate(cfg *config.Config, modelDir, adapterDir string, opt EvalOptions) ([]EvalResult, error) {
	if opt.Backend == nil {
		return nil, errors.New("eval: no compute backend to score on (train.EvalOptions.Backend)")
	}
	dc, err := DataConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc.ValSize = 0
	dc.Progress = opt.DataProgress
	enc, err := Encoder(modelDir, cfg.Template, dc.Encode)
	if err != nil {
		return nil, err
	}
	dir := cfg.TokenizedPath
	if dir == "" {
		dir = filepath.Join(cfg.OutputDir, ".data")
	}
	cache, err := data.Prepare(dc, enc, dir)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	m, err := model.Load(modelDir, model.LoadOptions{})
	if err != nil {
		return nil, err
	}
	if err := checkTokenizerRows(enc, modelDir, m.Cfg.Vocab); err != nil {
		return nil, err
	}
	if err := checkCacheRows(cache, m.Cfg.Vocab); err != nil {
		return nil, err
	}
	if adapterDir != "" {
		ad, err := method.Load(m, adapterDir)
		if err != nil {
			return nil, err
		}
		peft.ForInference(ad)
	}
	pad := int32(0)
	if tok, ok := enc.Tok.(data.HFTokenizer); ok {
		pad = int32(tok.PAD())
	}
	open := func(be compute.Backend) (*model.DeviceModel, error) {
		dt := compute.ComputeType(be, cfg.BF16 || cfg.FP16)
		return model.NewDeviceModel(m, be, model.DeviceOptions{Compute: dt, Inference: true})
	}
	be := opt.Backend
	dm, err := open(be)
	if err != nil && opt.Fallback != nil {
		be = opt.Fallback
		dm, err = open(be)
	}
	if err != nil {
		return nil, fmt.Errorf("eval: device %s: %w", be.Name(), err)
	}
	defer dm.Close()
	loss, device := dm.Loss, be.Name()
	sums := make([]float64, len(dc.Datasets))
	tokens := make([]int, len(dc.Datasets))
	samples := make([]int, len(dc.Datasets))
	scored := cache.Train()
	for k, i := range scored {
		if opt.Progress != nil {
			opt.Progress(k, len(scored))
		}
		s := cache.Sample(i)
		b := data.BatchPlan{Rows: [][]int{{i}}, T: len(s.InputIDs)}.Build(cache, pad)
		sum, n, err := loss(batchOf(b, false))
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		sums[s.Source] += sum
		tokens[s.Source] += n
		samples[s.Source]++
	}
	if opt.Progress != nil {
		opt.Progress(len(scored), len(scored))
	}
	var out []EvalResult
	var all EvalResult
	all.Dataset, all.Device = "all", device
	for d, spec := range dc.Datasets {
		r := EvalResult{Dataset: spec.Name, Samples: samples[d], Tokens: tokens[d], Device: device}
		if tokens[d] > 0 {
			r.Loss = sums[d] / float64(tokens[d])
			r.Perplexity = math.Exp(r.Loss)
		}
		out = append(out, r)
		all.Samples += samples[d]
		all.Tokens += tokens[d]
		all.Loss += sums[d]
	}
	if all.Tokens == 0 {
		return nil, fmt.Errorf("eval: no scored tokens in %v", cfg.Dataset)
	}
	all.Loss /= float64(all.Tokens)
	all.Perplexity = math.Exp(all.Loss)
	return append(out, all), nil
}
