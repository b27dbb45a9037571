package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"gotune/ckpt"
	"gotune/data"
	"gotune/model"
	"gotune/pref"
	"gotune/runlog"
)

// prefStage runs LLaMA-Factory's stage dpo (pref_loss sigmoid, hinge, ipo,
// kto_pair, orpo, simpo) and stage kto on the Trainer's model, method,
// optimizer, schedule and checkpoints. A step scores whole answers: the
// policy's log-probability of each answer token comes from
// DeviceModel.TokenLogProbs, the loss and its gradient in the summed
// log-probabilities from package pref, and BackwardTokens turns that
// gradient into every trainable parameter's.
//
// The reference model costs no second copy of the weights: with a PEFT
// method it is the base with the method switched off, scored per batch
// (or once for the whole dataset with precompute_ref_log_probs); with full
// and freeze tuning it is the initial weights, whose log-probabilities are
// scored once before the first update and kept in every checkpoint, so a
// resumed run compares against the same numbers.
type prefStage struct {
	kto    bool
	dpo    pref.Config
	ktoCfg pref.KTOConfig
	useRef bool
	// precompute: the reference is scored for the whole dataset before
	// training; ref then holds, per cache sample, the reference Σ log p of
	// the chosen and the rejected answer (DPO) or of the answer and of its
	// KL row (KTO).
	precompute bool
	ref        [][2]float64
	// partner[i] is the sample whose answer fills sample i's KL row (KTO).
	partner []int
	window  pref.Metrics // since the last logged step
	eval    pref.Metrics // of the evaluation under way
}

// refFile holds the precomputed reference log-probabilities inside a
// checkpoint; windowFile the preference metrics not yet logged.
const (
	refFile    = "ref_logps.json"
	windowFile = "pref_log_window.json"
)

// attachPref sets up a preference stage after the data is loaded.
func (t *Trainer) attachPref() error {
	c := t.Cfg
	if !c.IsPreference() {
		return nil
	}
	s := &prefStage{kto: c.Stage == "kto"}
	if s.kto {
		if t.cache.Paired() {
			return fmt.Errorf("stage kto: the data holds preference pairs; KTO trains on single answers labelled with kto_tag (use stage dpo for pairs)")
		}
		s.ktoCfg = pref.KTOConfig{Beta: c.PrefBeta, DesirableWeight: c.KTOChosenWeight, UndesirableWeight: c.KTOUndesirable(), FTX: c.PrefFTX}
		if err := s.ktoCfg.Validate(); err != nil {
			return err
		}
		s.useRef = true
		s.partner = ktoPartners(t.cache.Len(), t.train, t.val)
	} else {
		if !t.cache.Paired() {
			return fmt.Errorf("stage dpo: the data holds no preference pairs; declare the dataset with \"ranking\": true in dataset_info.json, or give chosen/rejected columns")
		}
		s.dpo = pref.Config{Loss: c.PrefLoss, Beta: c.PrefBeta, FTX: c.PrefFTX, LabelSmoothing: c.DPOLabelSmoothing, Gamma: c.SimPOGamma}
		if err := s.dpo.Validate(); err != nil {
			return err
		}
		s.useRef = s.dpo.UsesReference()
	}
	// Full and freeze tuning change the base weights themselves: only
	// scores taken before the first update can stand for the reference.
	s.precompute = s.useRef && (t.Method == nil || (c.PrecomputeRefLogProbs != nil && *c.PrecomputeRefLogProbs))
	t.pref = s
	ref := "none (the loss needs no reference model)"
	switch {
	case s.precompute && t.Method == nil:
		ref = "the initial weights, scored once before training"
	case s.precompute:
		ref = "the base model without the adapter, scored once before training"
	case s.useRef:
		ref = "the base model without the adapter, scored per batch"
	}
	t.printf("stage %s: %s; reference: %s\n", c.Stage, c.PrefSummary(), ref)
	return nil
}

// ktoPartners pairs each sample with the one before it in its split's
// order (the first with the last), as LLaMA-Factory offsets the answers by
// one to build KTO's mismatched pairs. Fixed for the run, so a resumed run
// builds the same KL rows.
func ktoPartners(n int, orders ...[]int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for _, o := range orders {
		for k, i := range o {
			p[i] = o[(k+len(o)-1)%len(o)]
		}
	}
	return p
}

// prepare makes the precomputed reference ready: scored now on a fresh
// run, read from the checkpoint on a resumed one.
func (s *prefStage) prepare(t *Trainer, resumed string) error {
	if resumed != "" {
		if err := s.loadWindow(resumed); err != nil {
			return err
		}
	}
	if !s.precompute {
		return nil
	}
	if resumed != "" {
		return s.loadRef(t, resumed)
	}
	n := t.cache.Len()
	what := "pairs"
	if s.kto {
		what = "answers"
	}
	t.printf("reference: scoring %d %s before training\n", n, what)
	s.ref = make([][2]float64, n)
	bs := max(t.Cfg.PerDeviceEvalBatchSize, 1)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	restore := func() {}
	if t.Method != nil {
		restore = t.scorer().WithoutAdapters()
	}
	defer restore()
	for lo := 0; lo < n; lo += bs {
		idx := all[lo:min(lo+bs, n)]
		a, b := s.score(t, idx)
		for k, i := range idx {
			s.ref[i] = [2]float64{a[k], b[k]}
		}
	}
	return nil
}

// score returns the summed log-probabilities of samples idx under the
// model as it is now: chosen and rejected answers (DPO), or answers and
// their KL rows (KTO).
func (s *prefStage) score(t *Trainer, idx []int) (first, second []float64) {
	n := len(idx)
	if s.kto {
		tb, kb, _ := data.KTOBatch(t.cache, idx, t.cache.Undesirable, s.partnerOf, t.Cfg.CutoffLen, t.pad)
		first, _ = sums(t.scorer(), batchOf(tb, false), n)
		second, _ = sums(t.scorer(), batchOf(kb, false), n)
		return first, second
	}
	all, _ := sums(t.scorer(), batchOf(data.PairBatch(t.cache, idx, t.pad), false), 2*n)
	return all[:n], all[n:]
}

func (s *prefStage) partnerOf(i int) int { return s.partner[i] }

// sums runs the forward pass and returns each row's Σ log p over its
// trained tokens and their count.
func sums(ws scorer, mb *model.Batch, rows int) ([]float64, []int) {
	lp := ws.TokenLogProbs(mb)
	return rowSums(lp, ws.TokenRows(), rows)
}

func rowSums(lp []float64, rows []int, n int) ([]float64, []int) {
	s := make([]float64, n)
	c := make([]int, n)
	for i, r := range rows {
		s[r] += lp[i]
		c[r]++
	}
	return s, c
}

// step runs forward and backward over the micro-batches of one optimizer
// step and returns the step's loss and the tokens it processed. Pairs (or
// KTO answers) are weighted by 1/(their number in the whole step), so k
// micro-batches give the gradient of one batch holding them all.
func (s *prefStage) step(t *Trainer, plans []data.BatchPlan) (float64, int64) {
	if s.kto {
		return s.ktoStep(t, plans)
	}
	n := 0
	for _, p := range plans {
		n += len(p.Rows)
	}
	var loss float64
	var tokens int64
	for _, p := range plans {
		l, tok := s.pairStep(t, rowsOf(p), 1/float64(n), true)
		loss += l
		tokens += tok
	}
	return loss, tokens
}

func rowsOf(p data.BatchPlan) []int {
	idx := make([]int, len(p.Rows))
	for k, r := range p.Rows {
		idx[k] = r[0] // preference batches are never packed
	}
	return idx
}

// pairStep scores the pairs idx and, when train is set, accumulates the
// gradient of weight·Σ loss. It returns weight·Σ loss and the tokens.
func (s *prefStage) pairStep(t *Trainer, idx []int, weight float64, train bool) (float64, int64) {
	mb := batchOf(data.PairBatch(t.cache, idx, t.pad), false)
	return s.pairLoss(t.scorer(), mb, idx, weight, train), int64(mb.B * mb.T)
}

// pairLoss is pairStep on a built pair batch (chosen rows, then rejected).
func (s *prefStage) pairLoss(ws scorer, mb *model.Batch, idx []int, weight float64, train bool) float64 {
	n := len(idx)
	var ref []float64
	if s.useRef {
		ref = make([]float64, 2*n)
		if s.precompute {
			for k, i := range idx {
				ref[k], ref[n+k] = s.ref[i][0], s.ref[i][1]
			}
		} else {
			restore := ws.WithoutAdapters()
			ref, _ = sums(ws, mb, 2*n)
			restore()
		}
	}
	lp := ws.TokenLogProbs(mb)
	rows := ws.TokenRows()
	sum, cnt := rowSums(lp, rows, 2*n)
	pairs := make([]pref.Pair, n)
	for k := range pairs {
		pairs[k] = pref.Pair{Chosen: sum[k], Rejected: sum[n+k], ChosenLen: max(cnt[k], 1), RejectedLen: max(cnt[n+k], 1)}
		if ref != nil {
			pairs[k].RefChosen, pairs[k].RefRejected = ref[k], ref[n+k]
		}
	}
	loss, grads, met := s.dpo.Pairs(pairs, weight)
	if train {
		coef := make([]float32, len(lp))
		for i, r := range rows {
			if r < n {
				coef[i] = float32(grads[r].Chosen)
			} else {
				coef[i] = float32(grads[r-n].Rejected)
			}
		}
		ws.BackwardTokens(coef)
		s.window.Add(met)
	} else {
		s.eval.Add(met)
	}
	return loss
}

// ktoMicro is one KTO micro-batch, built once for both passes.
type ktoMicro struct {
	idx        []int
	target, kl *model.Batch
	desirable  []bool
	ref        []float64 // reference Σ log p of each answer
}

// ktoStep first scores the KL rows of every micro-batch (no gradient) to
// estimate KTO's reference point over the whole step, then runs forward
// and backward on the answers. TRL estimates it per micro-batch and
// averages across devices; over the whole step, k micro-batches equal one
// batch.
func (s *prefStage) ktoStep(t *Trainer, plans []data.BatchPlan) (float64, int64) {
	micro, kl, tokens := s.ktoPrepare(t, plans)
	n := 0
	for _, mb := range micro {
		n += len(mb.idx)
	}
	var loss float64
	for _, mb := range micro {
		l, _ := s.ktoTrain(t, mb, kl, 1/float64(n), true)
		loss += l
	}
	s.window.KL += kl
	s.window.KLSteps++
	return loss, tokens
}

func (s *prefStage) ktoPrepare(t *Trainer, plans []data.BatchPlan) ([]ktoMicro, float64, int64) {
	var pol, ref []float64
	var tokens int64
	micro := make([]ktoMicro, len(plans))
	for k, p := range plans {
		idx := rowsOf(p)
		tb, kb, des := data.KTOBatch(t.cache, idx, t.cache.Undesirable, s.partnerOf, t.Cfg.CutoffLen, t.pad)
		mb := ktoMicro{idx: idx, target: batchOf(tb, false), kl: batchOf(kb, false), desirable: des}
		tokens += int64(tb.B*tb.T + kb.B*kb.T)
		p, _ := sums(t.scorer(), mb.kl, len(idx))
		pol = append(pol, p...)
		if s.precompute {
			mb.ref = make([]float64, len(idx))
			for j, i := range idx {
				mb.ref[j] = s.ref[i][0]
				ref = append(ref, s.ref[i][1])
			}
		} else {
			restore := t.scorer().WithoutAdapters()
			r, _ := sums(t.scorer(), mb.kl, len(idx))
			mb.ref, _ = sums(t.scorer(), mb.target, len(idx))
			restore()
			ref = append(ref, r...)
		}
		micro[k] = mb
	}
	return micro, pref.KL(pol, ref), tokens
}

func (s *prefStage) ktoTrain(t *Trainer, mb ktoMicro, kl, weight float64, train bool) (float64, pref.Metrics) {
	n := len(mb.idx)
	sc := t.scorer()
	lp := sc.TokenLogProbs(mb.target)
	rows := sc.TokenRows()
	sum, cnt := rowSums(lp, rows, n)
	samples := make([]pref.Sample, n)
	for k := range samples {
		samples[k] = pref.Sample{Logp: sum[k], RefLogp: mb.ref[k], Len: max(cnt[k], 1), Desirable: mb.desirable[k]}
	}
	loss, grads, m := s.ktoCfg.Loss(samples, kl, weight)
	if train {
		coef := make([]float32, len(lp))
		for i, r := range rows {
			coef[i] = float32(grads[r])
		}
		sc.BackwardTokens(coef)
		s.window.Add(m)
	}
	return loss, m
}

// evaluate is the preference loss over the validation split, with its
// metrics named as TRL logs them (eval_rewards/accuracies, …).
func (s *prefStage) evaluate(t *Trainer) (float64, []runlog.Value, error) {
	plans, err := data.Plan(t.cache, append([]int(nil), t.val...), data.BatchConfig{BatchSize: max(t.Cfg.PerDeviceEvalBatchSize, 1)})
	if err != nil {
		return 0, nil, err
	}
	n := len(t.val)
	s.eval = pref.Metrics{}
	var loss float64
	if s.kto {
		micro, kl, _ := s.ktoPrepare(t, plans)
		for _, mb := range micro {
			l, m := s.ktoTrain(t, mb, kl, 1/float64(n), false)
			loss += l
			s.eval.Add(m)
		}
		s.eval.KL, s.eval.KLSteps = kl, 1
	} else {
		for _, p := range plans {
			l, _ := s.pairStep(t, rowsOf(p), 1/float64(n), false)
			loss += l
		}
	}
	var out []runlog.Value
	for _, v := range s.eval.Values() {
		out = append(out, runlog.Value{Key: "eval_" + v.Key, Value: v.Value})
	}
	return loss, out, nil
}

// logValues returns the window's metrics for the log line and for the
// trainer state's log_history, and starts a new window.
func (s *prefStage) logValues() ([]runlog.Value, map[string]float64) {
	var out []runlog.Value
	hist := map[string]float64{}
	for _, v := range s.window.Values() {
		out = append(out, runlog.Value{Key: v.Key, Value: v.Value})
		hist[v.Key] = v.Value
	}
	s.window = pref.Metrics{}
	return out, hist
}

type refJSON struct {
	Content string       `json:"content"` // the data cache's ContentSum
	Ref     [][2]float64 `json:"ref"`
}

// save writes the stage's state into a checkpoint being written.
func (s *prefStage) save(t *Trainer, dir string) error {
	w, err := json.Marshal(s.window)
	if err != nil {
		return err
	}
	if err := ckpt.WriteFileAtomic(filepath.Join(dir, windowFile), w, 0o644); err != nil {
		return err
	}
	if !s.precompute {
		return nil
	}
	// encoding/json writes the shortest text that reads back to the same
	// float64, so a resume compares with exactly these numbers.
	b, err := json.Marshal(refJSON{Content: t.cache.ContentSum(), Ref: s.ref})
	if err != nil {
		return err
	}
	return ckpt.WriteFileAtomic(filepath.Join(dir, refFile), b, 0o644)
}

func (s *prefStage) loadWindow(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, windowFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &s.window); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, windowFile), err)
	}
	return nil
}

func (s *prefStage) loadRef(t *Trainer, dir string) error {
	path := filepath.Join(dir, refFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("resume: %w (a preference run with precomputed reference log-probabilities keeps them in every checkpoint; "+
			"without them the initial weights are lost)", err)
	}
	var r refJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if r.Content != t.cache.ContentSum() || len(r.Ref) != t.cache.Len() {
		return fmt.Errorf("%s: the reference log-probabilities belong to other data (%d samples, content %s; this run has %d, %s)",
			path, len(r.Ref), r.Content, t.cache.Len(), t.cache.ContentSum())
	}
	s.ref = r.Ref
	return nil
}

// PairStep runs forward and backward of one DPO-family step on a batch
// whose first B/2 rows are chosen answers and last B/2 the rejected ones
// (data.PairBatch's layout), the reference being m with its adapters off
// (nothing for ORPO and SimPO): what a preference step does per
// micro-batch, for benchmarks. It returns weight·Σ loss.
func PairStep(dm *model.DeviceModel, mb *model.Batch, c pref.Config, weight float64) (float64, error) {
	s := &prefStage{dpo: c, useRef: c.UsesReference()}
	sc := &deviceScorer{dm: dm}
	loss := s.pairLoss(sc, mb, make([]int, mb.B/2), weight, true)
	return loss, sc.Err()
}
