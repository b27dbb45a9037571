package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gotune/ckpt"
	"gotune/data"
	"gotune/infer"
	"gotune/method"
	"gotune/model"
	"gotune/peft"
	"gotune/reward"
	"gotune/rl"
	"gotune/runlog"
	"gotune/tokenizer"
)

// Stage grpo: group-relative policy optimisation with rewards declared in
// the YAML. Each generation round samples num_generations completions for
// each of (per_device_train_batch_size × gradient_accumulation_steps) /
// num_generations prompts with the current policy, scores them, turns the
// rewards into group-relative advantages (package rl) and trains
// num_iterations optimizer steps on that batch. The reference policy of the
// KL term is the model with its adapter switched off (LoRA, QLoRA), or for
// full and freeze tuning a copy of the initial trainable weights kept only
// when beta > 0 (memory: 4 bytes per trainable parameter).

// grpoStateFile holds, in a checkpoint, what exact resume needs beyond the
// weights, optimizer and trainer state.
const grpoStateFile = "grpo_state.json"

type grpoRun struct {
	prompts, held []grpoPrompt
	sum           string // identifies the prompts for resume
	tok           *tokenizer.Tokenizer
	stops         map[int32]bool
	rewards       []reward.Func
	weights       []float64
	scale         rl.Scale
	// pcg is the sampler's random state, saved in checkpoints: a resumed
	// run samples the completions an uninterrupted one would have.
	pcg     *rand.PCG
	buf     *grpoBuffer
	window  grpoWindow
	perStep int // completions of one optimizer step
	longest int // prompt tokens of the longest prompt
	// numTokens counts prompt and completion tokens sampled so far (TRL's
	// num_tokens).
	numTokens int64
	// session holds the decoding caches, reused from batch to batch.
	session groupDecoder
}

// groupDecoder decodes the groups of several prompts together:
// model.GroupSession on the CPU, model.DeviceGroupSession on a device.
type groupDecoder interface {
	Rows() int
	Cap() int
	PromptRows(ids []int32, rows []int) ([]float32, error)
	Step(rows []int, ids []int32) ([]float32, error)
}

// grpoCompletion is one sampled completion of a generation round.
type grpoCompletion struct {
	Prompt    int       `json:"prompt"` // index into the training prompts
	IDs       []int32   `json:"ids"`    // sampled tokens, the stop token included
	Old       []float64 `json:"old,omitempty"`
	Ref       []float64 `json:"ref,omitempty"`
	Adv       float64   `json:"adv"`
	Truncated bool      `json:"truncated,omitempty"`
}

// grpoBuffer is a generation round, reused for num_iterations steps.
type grpoBuffer struct {
	Iter        int              `json:"iter"` // optimizer steps taken on it
	Completions []grpoCompletion `json:"completions"`
	Metrics     []runlog.Value   `json:"metrics"` // logged with the first step on it
}

// grpoWindow accumulates metrics between logged steps (as TRL averages the
// values appended since the last log).
type grpoWindow struct {
	Sums   map[string]float64 `json:"sums"`
	Counts map[string]int     `json:"counts"`
	Order  []string           `json:"order"`
	Seen   int64              `json:"seen"` // positions trained on, for tokens/s
}

func (w *grpoWindow) add(ms []runlog.Value) {
	if w.Sums == nil {
		w.Sums, w.Counts = map[string]float64{}, map[string]int{}
	}
	for _, m := range ms {
		if _, ok := w.Counts[m.Key]; !ok {
			w.Order = append(w.Order, m.Key)
		}
		if m.Key == "num_tokens" { // a running total: the latest, not a mean
			w.Sums[m.Key], w.Counts[m.Key] = m.Value, 1
			continue
		}
		w.Sums[m.Key] += m.Value
		w.Counts[m.Key]++
	}
}

func (w *grpoWindow) mean() []runlog.Value {
	out := make([]runlog.Value, 0, len(w.Order))
	for _, k := range w.Order {
		out = append(out, runlog.Value{Key: k, Value: w.Sums[k] / float64(w.Counts[k])})
	}
	return out
}

type grpoState struct {
	NumTokens int64       `json:"num_tokens"`
	RNG       []byte      `json:"rng"`
	Buffer    *grpoBuffer `json:"buffer,omitempty"`
	Window    grpoWindow  `json:"window"`
}

// setupGRPO replaces loadData for stage grpo: prompts, rewards, stop
// tokens, the sampler and (full tuning with beta > 0) the reference copy.
func (t *Trainer) setupGRPO() error {
	c := t.Cfg
	if me, err := method.Of(c); err != nil {
		return err
	} else if !me.GRPO {
		return fmt.Errorf("stage grpo: finetuning_type %s is not supported; use %s (LoRA also over a quantized base)", c.FinetuningType, strings.Join(method.GRPONames(), ", "))
	}
	if c.LoRADropout > 0 { // a LoRA key (validation refuses it beside other methods)
		// Dropout would make the sampling, old and current log-probabilities
		// of the same tokens disagree at random, which the importance ratio
		// reads as policy change (TRL recommends disabling it too).
		return fmt.Errorf("stage grpo: set lora_dropout: 0 (got %v): dropout turns the importance ratio into noise", c.LoRADropout)
	}
	scale, err := rl.ParseScale(c.ScaleRewards)
	if err != nil {
		return err
	}
	g := &grpoRun{scale: scale, stops: map[int32]bool{}}
	g.perStep = max(c.PerDeviceTrainBatchSize, 1) * max(c.GradientAccumulationSteps, 1)
	tok, tmpl, err := t.promptRendering()
	if err != nil {
		return err
	}
	g.tok = tok
	t.pad = int32(data.HFTokenizer{Tokenizer: tok}.PAD())
	if err := checkTokenizerRows(&data.Encoder{Tok: data.HFTokenizer{Tokenizer: tok}}, t.ModelDir, t.Model.Cfg.Vocab); err != nil {
		return err
	}
	for _, id := range t.Model.Cfg.EOS {
		g.stops[int32(id)] = true
	}
	if id, ok := tok.EOS(); ok {
		g.stops[int32(id)] = true
	}
	if gc, err := infer.LoadGenerationConfig(t.ModelDir); err == nil {
		for _, id := range gc.EOS {
			g.stops[int32(id)] = true
		}
	}
	if tmpl != nil {
		for _, s := range tmpl.StopStrings() {
			if id, ok := tok.TokenToID(s); ok {
				g.stops[int32(id)] = true
			}
		}
	}
	if len(g.stops) == 0 {
		t.printf("note: the model declares no end-of-sequence token: every completion runs to max_completion_length\n")
	}
	all, sum, err := t.loadPrompts(tok, tmpl)
	if err != nil {
		return err
	}
	if err := checkRewardColumns(c, all); err != nil {
		return err
	}
	g.sum = sum
	for _, p := range all {
		g.longest = max(g.longest, len(p.IDs))
		if mp := t.Model.Cfg.MaxPositions; mp > 0 && len(p.IDs)+c.MaxCompletionLength > mp {
			return fmt.Errorf("%s: the prompt's %d tokens + max_completion_length %d exceed the model's context of %d (max_position_embeddings)",
				p.Where, len(p.IDs), c.MaxCompletionLength, mp)
		}
	}
	g.prompts, g.held = splitPrompts(all, c.ValSize, uint64(c.Seed))
	P := g.perStep / c.NumGenerations
	if len(g.prompts) < P {
		return fmt.Errorf("stage grpo: %d training prompts, fewer than the %d prompts one step samples (per_device_train_batch_size × gradient_accumulation_steps / num_generations)", len(g.prompts), P)
	}
	for i, d := range c.RewardFuncs {
		f, err := reward.Build(c.RewardName(i), d)
		if err != nil {
			return err
		}
		g.rewards = append(g.rewards, f)
		w := 1.0
		if len(c.RewardWeights) > 0 {
			w = c.RewardWeights[i]
		}
		g.weights = append(g.weights, w)
	}
	g.pcg = rand.NewPCG(uint64(c.Seed), 0x6772706f) // "grpo"
	if c.Beta > 0 && t.Method == nil {
		n := 0
		for _, p := range t.Params {
			n += p.Len()
		}
		t.printf("grpo: beta %v with %s tuning keeps the initial trainable weights as the reference (%.1f MB)\n", c.Beta, c.FinetuningType, float64(n)*4/(1<<20))
	}
	t.grpo = g
	t.printf("grpo: %d training prompts, %d held out; %d prompts × %d generations per step\n", len(g.prompts), len(g.held), P, c.NumGenerations)
	return nil
}

// splitPrompts holds out val_size prompts (a fraction below 1, else a
// count), chosen by the seed.
func splitPrompts(all []grpoPrompt, valSize float64, seed uint64) (train, held []grpoPrompt) {
	n := 0
	switch {
	case valSize <= 0:
	case valSize < 1:
		n = int(math.Round(valSize * float64(len(all))))
	default:
		n = min(int(valSize), len(all)-1)
	}
	if n == 0 {
		return all, nil
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	rand.New(rand.NewPCG(seed, 0x68656c64)).Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	heldIdx := append([]int(nil), idx[:n]...)
	sort.Ints(heldIdx)
	isHeld := map[int]bool{}
	for _, i := range heldIdx {
		isHeld[i] = true
		held = append(held, all[i])
	}
	for i, p := range all {
		if !isHeld[i] {
			train = append(train, p)
		}
	}
	return train, held
}

// grpoStepsPerEpoch is the optimizer steps of one pass over the prompts.
func (t *Trainer) grpoStepsPerEpoch() int {
	P := t.grpo.perStep / t.Cfg.NumGenerations
	return max(len(t.grpo.prompts)/P, 1) * t.Cfg.NumIterations
}

// nextPrompts takes the next n prompts of the epoch's shuffled order,
// moving to the next epoch when too few are left (the tail is dropped, as a
// data loader's incomplete last batch).
func (t *Trainer) nextPrompts(n int) []int {
	pos := &t.state.Data
	if pos.BatchIndex+n > len(t.grpo.prompts) {
		pos.Epoch++
		pos.BatchIndex = 0
	}
	order := make([]int, len(t.grpo.prompts))
	for i := range order {
		order[i] = i
	}
	data.Shuffle(order, int64(t.Cfg.Seed)+int64(pos.Epoch))
	out := order[pos.BatchIndex : pos.BatchIndex+n]
	pos.BatchIndex += n
	return out
}

// drawer picks the next token from logits (which it may modify).
type drawer func(logits []float32) int32

// newDrawer samples as configured: greedily at temperature 0; from
// softmax(logits/temperature) directly when neither top_p nor top_k cuts the
// distribution (GRPO's usual setting: no sort of a 150k vocabulary per
// token); otherwise with infer's sampler, which sorts for top-p/top-k.
func newDrawer(temperature, topP float64, topK int, r *rand.Rand) drawer {
	if temperature <= 0 {
		return func(lg []float32) int32 { return int32(model.Argmax(lg)) }
	}
	if topK <= 0 && (topP <= 0 || topP >= 1) {
		var p []float64
		return func(lg []float32) int32 {
			mx := lg[model.Argmax(lg)]
			if cap(p) < len(lg) {
				p = make([]float64, len(lg))
			}
			p = p[:len(lg)]
			var sum float64
			for i, v := range lg {
				p[i] = math.Exp(float64(v-mx) / temperature)
				sum += p[i]
			}
			u := r.Float64() * sum
			for i, x := range p {
				if u -= x; u < 0 {
					return int32(i)
				}
			}
			return int32(model.Argmax(lg)) // rounding left u ≥ 0
		}
	}
	s := infer.NewSamplerRand(infer.SampleOptions{Temperature: temperature, TopP: topP, TopK: topK}, r)
	return func(lg []float32) int32 { return s.Next(lg, nil) }
}

// cacheBudget bounds the key/value caches of one decoding session (bytes):
// as many prompts' groups as fit are decoded together, each linear layer
// one product over all their live sequences.
const cacheBudget = 1 << 30

// sampleGroups draws n completions of each prompt with the KV cache,
// several groups decoded together; it returns the completions, prompt
// after prompt, and the tokens drawn.
func (t *Trainer) sampleGroups(prompts [][]int32, n int, draw drawer) ([]grpoCompletion, int, error) {
	c, g := t.Cfg, t.grpo
	maxNew := c.MaxCompletionLength
	positions := g.longest + maxNew
	for _, p := range prompts {
		positions = max(positions, len(p)+maxNew)
		if mp := t.Model.Cfg.MaxPositions; mp > 0 && len(p)+maxNew > mp {
			return nil, 0, fmt.Errorf("prompt of %d tokens + max_completion_length %d exceed the model's context of %d", len(p), maxNew, mp)
		}
	}
	mc := t.Model.Cfg
	perRow := int64(positions) * int64(mc.KVDim()) * int64(len(t.Model.Layers)) * 2 * 4
	groups := int(max(min(int64(len(prompts)), cacheBudget/(perRow*int64(n))), 1))
	rowsWanted := groups * n
	// One session serves every batch of this size and is reused: its caches
	// are the large part, and PromptRows starts sequences over.
	gs := g.session
	if gs == nil || gs.Rows() != rowsWanted || gs.Cap() < positions {
		g.closeSession()
		var err error
		if gs, err = t.newGroupSession(rowsWanted, positions); err != nil {
			return nil, 0, err
		}
		g.session = gs
	}
	V := mc.Vocab
	var out []grpoCompletion
	tokens := 0
	for lo := 0; lo < len(prompts); lo += groups {
		chunk := prompts[lo:min(lo+groups, len(prompts))]
		comps := make([]grpoCompletion, len(chunk)*n)
		rows := make([]int, len(comps))
		logits := make([]float32, len(comps)*V)
		for p, ids := range chunk {
			prow := make([]int, n)
			for i := range prow {
				prow[i] = p*n + i
			}
			first, err := gs.PromptRows(ids, prow)
			if err != nil {
				return nil, 0, err
			}
			for _, r := range prow {
				rows[r] = r
				copy(logits[r*V:], first)
			}
		}
		for len(rows) > 0 {
			var live []int
			var ids []int32
			for k, r := range rows {
				next := draw(logits[k*V : (k+1)*V])
				comps[r].IDs = append(comps[r].IDs, next)
				tokens++
				switch {
				case g.stops[next]:
				case len(comps[r].IDs) == maxNew:
					comps[r].Truncated = true
				default:
					live, ids = append(live, r), append(ids, next)
				}
			}
			if len(live) == 0 {
				break
			}
			lg, err := gs.Step(live, ids)
			if err != nil {
				return nil, 0, err
			}
			logits = append(logits[:0], lg...)
			rows = live
		}
		out = append(out, comps...)
	}
	return out, tokens, nil
}

// newGroupSession allocates decoding caches on the device that trains.
func (t *Trainer) newGroupSession(rows, positions int) (groupDecoder, error) {
	gs, err := t.dev.NewGroupSession(rows, positions)
	if err != nil {
		return nil, err
	}
	return gs, nil
}

// closeSession frees the decoding caches (device memory).
func (g *grpoRun) closeSession() {
	if c, ok := g.session.(interface{ Close() }); ok {
		c.Close()
	}
	g.session = nil
}

// completionText decodes a completion without its stop token.
func (g *grpoRun) completionText(ids []int32) string {
	v := make([]int, 0, len(ids))
	for _, id := range ids {
		if g.stops[id] {
			break
		}
		v = append(v, int(id))
	}
	return g.tok.Decode(v, true)
}

// score runs every reward over the samples: per-function scores and the
// weighted totals.
func (g *grpoRun) score(samples []reward.Sample) ([][]float64, []float64, error) {
	per := make([][]float64, len(g.rewards))
	total := make([]float64, len(samples))
	for f, fn := range g.rewards {
		s, err := fn.Score(context.Background(), samples)
		if err != nil {
			return nil, nil, err
		}
		if len(s) != len(samples) {
			return nil, nil, fmt.Errorf("reward %s: %d scores for %d samples", fn.Name(), len(s), len(samples))
		}
		per[f] = s
		for i, v := range s {
			total[i] += g.weights[f] * v
		}
	}
	return per, total, nil
}

func (g *grpoRun) samples(prompts []grpoPrompt, comps []grpoCompletion) []reward.Sample {
	out := make([]reward.Sample, len(comps))
	for i, cp := range comps {
		p := prompts[i]
		out[i] = reward.Sample{Prompt: p.Text, Completion: g.completionText(cp.IDs), Tokens: len(cp.IDs), Columns: p.Columns, Where: p.Where}
	}
	return out
}

// generateRound samples, scores and prepares the next generation batch.
func (t *Trainer) generateRound() (*grpoBuffer, float64, int, error) {
	c, g := t.Cfg, t.grpo
	G := c.NumGenerations
	idx := t.nextPrompts(g.perStep / G)
	draw := newDrawer(c.Temperature, c.TopP, c.TopK, rand.New(g.pcg))
	start := time.Now()
	buf := &grpoBuffer{}
	var ps []grpoPrompt
	var ids [][]int32
	for _, pi := range idx {
		ids = append(ids, g.prompts[pi].IDs)
	}
	comps, tokens, err := t.sampleGroups(ids, G, draw)
	if err != nil {
		return nil, 0, 0, err
	}
	for k, pi := range idx {
		g.numTokens += int64(G * len(g.prompts[pi].IDs))
		for i := k * G; i < (k+1)*G; i++ {
			comps[i].Prompt = pi
			ps = append(ps, g.prompts[pi])
		}
	}
	g.numTokens += int64(tokens)
	buf.Completions = comps
	genSec := time.Since(start).Seconds()
	samples := g.samples(ps, buf.Completions)
	per, total, err := g.score(samples)
	if err != nil {
		return nil, 0, 0, err
	}
	adv, zero, err := rl.Advantages(total, G, g.scale)
	if err != nil {
		return nil, 0, 0, err
	}
	for i := range buf.Completions {
		buf.Completions[i].Adv = adv[i]
	}
	m := []runlog.Value{{Key: "reward", Value: rl.Mean(total)}, {Key: "reward_std", Value: rl.StdDev(total)}}
	for f, fn := range g.rewards {
		m = append(m, runlog.Value{Key: "rewards/" + fn.Name() + "/mean", Value: rl.Mean(per[f])},
			runlog.Value{Key: "rewards/" + fn.Name() + "/std", Value: rl.StdDev(per[f])})
	}
	m = append(m, runlog.Value{Key: "frac_reward_zero_std", Value: zero})
	m = append(m, lengthMetrics(buf.Completions)...)
	m = append(m, runlog.Value{Key: "num_tokens", Value: float64(g.numTokens)})
	if c.LogCompletions {
		if err := t.logCompletions(samples, per, buf.Completions); err != nil {
			return nil, 0, 0, err
		}
	}
	if c.NumIterations > 1 {
		// The policy that sampled: later steps on this batch measure their
		// change against it (the importance ratio).
		old, err := t.seqLogProbs(buf.Completions, false)
		if err != nil {
			return nil, 0, 0, err
		}
		for i := range buf.Completions {
			buf.Completions[i].Old = old[i]
		}
	}
	if c.Beta > 0 {
		ref, err := t.seqLogProbs(buf.Completions, true)
		if err != nil {
			return nil, 0, 0, err
		}
		for i := range buf.Completions {
			buf.Completions[i].Ref = ref[i]
		}
	}
	buf.Metrics = m
	return buf, genSec, tokens, nil
}

// lengthMetrics are TRL's completions/* values.
func lengthMetrics(comps []grpoCompletion) []runlog.Value {
	var sum, tsum float64
	lo, hi := math.Inf(1), math.Inf(-1)
	tlo, thi := math.Inf(1), math.Inf(-1)
	trunc, term := 0, 0
	for _, cp := range comps {
		n := float64(len(cp.IDs))
		sum += n
		lo, hi = math.Min(lo, n), math.Max(hi, n)
		if cp.Truncated {
			trunc++
			continue
		}
		term++
		tsum += n
		tlo, thi = math.Min(tlo, n), math.Max(thi, n)
	}
	k := float64(len(comps))
	m := []runlog.Value{{Key: "completions/mean_length", Value: sum / k}, {Key: "completions/min_length", Value: lo},
		{Key: "completions/max_length", Value: hi}, {Key: "completions/clipped_ratio", Value: float64(trunc) / k}}
	if term > 0 {
		m = append(m, runlog.Value{Key: "completions/mean_terminated_length", Value: tsum / float64(term)},
			runlog.Value{Key: "completions/min_terminated_length", Value: tlo},
			runlog.Value{Key: "completions/max_terminated_length", Value: thi})
	}
	return m
}

// grpoBatch lays out completions [lo, hi) as a training batch: prompt then
// completion, only the completion's tokens labelled, right-padded.
func (t *Trainer) grpoBatch(comps []grpoCompletion) *model.Batch {
	T := 0
	for _, cp := range comps {
		T = max(T, len(t.grpo.prompts[cp.Prompt].IDs)+len(cp.IDs))
	}
	B := len(comps)
	b := &model.Batch{B: B, T: T, IDs: make([]int32, B*T), Labels: make([]int32, B*T), Mask: make([]int32, B*T)}
	for r, cp := range comps {
		p := t.grpo.prompts[cp.Prompt].IDs
		row := r * T
		for i := range T {
			b.IDs[row+i], b.Labels[row+i] = t.pad, model.IgnoreIndex
		}
		copy(b.IDs[row:], p)
		copy(b.IDs[row+len(p):], cp.IDs)
		for j, id := range cp.IDs {
			b.Labels[row+len(p)+j] = id
		}
		for i := range len(p) + len(cp.IDs) {
			b.Mask[row+i] = 1
		}
	}
	return b
}

// microBatches splits the completions into per_device_train_batch_size
// slices.
func (t *Trainer) microBatches(comps []grpoCompletion) [][]grpoCompletion {
	bs := max(t.Cfg.PerDeviceTrainBatchSize, 1)
	var out [][]grpoCompletion
	for lo := 0; lo < len(comps); lo += bs {
		out = append(out, comps[lo:min(lo+bs, len(comps))])
	}
	return out
}

// splitRows cuts TokenLogProbs' values into one slice per row.
func splitRows(lp []float64, rows []int, n int) [][]float64 {
	out := make([][]float64, n)
	for i, r := range rows {
		out[r] = append(out[r], lp[i])
	}
	return out
}

// seqLogProbs scores every completion's tokens without training: under the
// current policy, or under the reference (adapter off, or the initial
// weights for full and freeze tuning).
func (t *Trainer) seqLogProbs(comps []grpoCompletion, reference bool) ([][]float64, error) {
	t.setEntropy(false) // logged for the policy being trained only
	defer t.setEntropy(true)
	if reference {
		restore, err := t.withReference()
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	sc := t.scorer()
	var out [][]float64
	for _, mb := range t.microBatches(comps) {
		b := t.grpoBatch(mb)
		lp := sc.TokenLogProbs(b)
		if err := sc.Err(); err != nil {
			return nil, err
		}
		rows := splitRows(lp, sc.TokenRows(), len(mb))
		for r, cp := range mb {
			if len(rows[r]) != len(cp.IDs) {
				return nil, fmt.Errorf("grpo: %d log-probabilities for a completion of %d tokens", len(rows[r]), len(cp.IDs))
			}
		}
		out = append(out, rows...)
	}
	return out, nil
}

// setEntropy switches the entropy metric of the next scoring passes.
func (t *Trainer) setEntropy(on bool) { t.dev.SetEntropy(on) }

// withReference makes the next scoring passes run the reference policy:
// the model with its adapter off, or (full and freeze tuning) the initial
// trainable weights, the device copy kept by grpoDevice.
func (t *Trainer) withReference() (restore func(), err error) {
	if t.Method != nil {
		return t.scorer().WithoutAdapters(), nil
	}
	return t.dev.WithReference()
}

// grpoDevice readies the device copy for stage grpo: the sampling
// temperature on its head, the entropy metric (TRL's) and, for full and
// freeze tuning with beta > 0, the reference weights kept on the device.
func (t *Trainer) grpoDevice() error {
	t.dev.Temperature = t.Cfg.Temperature
	t.dev.SetEntropy(true)
	if t.Cfg.Beta > 0 && t.Method == nil {
		return t.dev.KeepReference()
	}
	return nil
}

// grpoStats are one step's loss statistics.
type grpoStats struct {
	loss              float64
	tokens            int
	seen              int64 // positions run forward and backward (prompts, completions, padding)
	kl                float64
	entropy           float64 // summed over the trained tokens
	low, high, region int
}

// grpoAccumulate runs forward and backward over the buffer's micro-batches,
// accumulating the gradient of the step's loss.
func (t *Trainer) grpoAccumulate(buf *grpoBuffer) (grpoStats, error) {
	c := t.Cfg
	mbs := t.microBatches(buf.Completions)
	obj := rl.Objective{Type: rl.LossType(c.LossType), Beta: c.Beta, EpsLow: c.Epsilon, EpsHigh: c.EpsHigh(),
		MaxCompletionLength: c.MaxCompletionLength, Accum: len(mbs)}
	masked := func(cp grpoCompletion) bool { return c.MaskTruncatedCompletions && cp.Truncated }
	for _, cp := range buf.Completions {
		if !masked(cp) {
			obj.StepTokens += len(cp.IDs)
		}
	}
	var st grpoStats
	sc := t.scorer()
	for _, mb := range mbs {
		b := t.grpoBatch(mb)
		st.seen += int64(b.B * b.T)
		lp := sc.TokenLogProbs(b)
		if err := sc.Err(); err != nil {
			return st, err
		}
		tokRows := sc.TokenRows()
		rows := splitRows(lp, tokRows, len(mb))
		for i, h := range sc.TokenEntropies() {
			if !masked(mb[tokRows[i]]) {
				st.entropy += h
			}
		}
		seqs := make([]rl.Seq, len(mb))
		for r, cp := range mb {
			seqs[r] = rl.Seq{Logp: rows[r], Old: cp.Old, Ref: cp.Ref, Adv: cp.Adv, Masked: masked(cp)}
		}
		res, err := obj.Loss(seqs)
		if err != nil {
			return st, err
		}
		coef := make([]float32, 0, len(lp))
		for _, cs := range res.Coef {
			for _, v := range cs {
				coef = append(coef, float32(v))
			}
		}
		sc.BackwardTokens(coef)
		if err := sc.Err(); err != nil {
			return st, err
		}
		st.loss += res.Loss
		st.tokens += res.Tokens
		st.kl += res.KLSum
		st.low += res.LowClipped
		st.high += res.HighClipped
		st.region += res.RegionClipped
	}
	return st, nil
}

// runGRPO is Run for stage grpo.
func (t *Trainer) runGRPO() error {
	c, g := t.Cfg, t.grpo
	if err := t.maybeResume(); err != nil {
		return err
	}
	if err := t.deviceResumed(); err != nil {
		return err
	}
	if err := t.prepareOutput(); err != nil {
		return err
	}
	if err := t.openLog(); err != nil {
		return err
	}
	defer t.closeLog()
	if err := t.trimCompletions(); err != nil {
		return err
	}
	logEvery := max(c.LoggingSteps, 1)
	evalEvery := c.EvalEvery()
	if t.state.GlobalStep == 0 && len(g.held) > 0 && c.EvalStrategy != "no" {
		if err := t.evaluateGRPO(); err != nil {
			return err
		}
	}
	stepStart := time.Now()
	for t.state.GlobalStep < t.total {
		var metrics []runlog.Value
		if g.buf == nil || g.buf.Iter >= c.NumIterations {
			buf, genSec, genTokens, err := t.generateRound()
			if err != nil {
				return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
			}
			g.buf = buf
			metrics = append(metrics, buf.Metrics...)
			metrics = append(metrics, runlog.Value{Key: "gen_tokens_per_s", Value: float64(genTokens) / math.Max(genSec, 1e-9)},
				runlog.Value{Key: "gen_seconds", Value: genSec})
		}
		t.zeroGrad()
		if lora, ok := t.Method.(*peft.LoRASet); ok {
			lora.SetStep(uint64(t.state.GlobalStep))
		}
		st, err := t.grpoAccumulate(g.buf)
		if err != nil {
			return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
		}
		if math.IsNaN(st.loss) || math.IsInf(st.loss, 0) {
			return fmt.Errorf("step %d: the loss is %v; training stopped (lower learning_rate, or resume from an earlier checkpoint)", t.state.GlobalStep+1, st.loss)
		}
		norm, err := t.gradNorm()
		if err != nil {
			return err
		}
		lr := t.sched.LR(t.state.GlobalStep)
		if !math.IsNaN(norm) && !math.IsInf(norm, 0) {
			if err := t.optimizerStep(lr, norm); err != nil {
				return fmt.Errorf("step %d: %w", t.state.GlobalStep+1, err)
			}
		}
		g.buf.Iter++
		t.state.GlobalStep++
		t.state.Epoch = float64(t.state.Data.Epoch) + float64(t.state.Data.BatchIndex)/float64(len(g.prompts))
		tok := float64(max(st.tokens, 1))
		metrics = append(metrics, runlog.Value{Key: "loss", Value: st.loss}, runlog.Value{Key: "grad_norm", Value: norm})
		if c.Beta > 0 {
			metrics = append(metrics, runlog.Value{Key: "kl", Value: st.kl / tok})
		}
		metrics = append(metrics, runlog.Value{Key: "entropy", Value: st.entropy / tok})
		metrics = append(metrics, runlog.Value{Key: "clip_ratio/low_mean", Value: float64(st.low) / tok},
			runlog.Value{Key: "clip_ratio/high_mean", Value: float64(st.high) / tok},
			runlog.Value{Key: "clip_ratio/region_mean", Value: float64(st.region) / tok})
		if gs := metricValue(metrics, "gen_seconds"); !math.IsNaN(gs) {
			metrics = append(metrics, runlog.Value{Key: "gen_share", Value: gs / math.Max(time.Since(stepStart).Seconds(), 1e-9)})
		}
		g.window.add(metrics)
		g.window.Seen += st.seen
		if t.state.GlobalStep%logEvery == 0 || t.state.GlobalStep == t.total {
			mean := g.window.mean()
			loss, gn := metricValue(mean, "loss"), metricValue(mean, "grad_norm")
			var extra []runlog.Value
			for _, m := range mean {
				if m.Key != "loss" && m.Key != "grad_norm" && m.Key != "gen_seconds" {
					extra = append(extra, m)
				}
			}
			t.log.Log(runlog.Step{Step: t.state.GlobalStep, Epoch: t.state.Epoch, Loss: loss, LR: lr, GradNorm: gn, Tokens: g.window.Seen, Extra: extra})
			t.state.LogHistory = append(t.state.LogHistory, ckpt.LogEntry{Step: t.state.GlobalStep, Epoch: t.state.Epoch, Loss: loss, LR: lr, GradNorm: gn, EvalLoss: math.NaN()})
			g.window = grpoWindow{}
		}
		if len(g.held) > 0 && c.EvalStrategy == "steps" && evalEvery > 0 && t.state.GlobalStep%evalEvery == 0 {
			if err := t.evaluateGRPO(); err != nil {
				return err
			}
		}
		// An epoch ends with the last generation batch that fits in it.
		epochEnd := g.buf.Iter >= c.NumIterations && t.state.Data.BatchIndex+g.perStep/c.NumGenerations > len(g.prompts)
		if len(g.held) > 0 && c.EvalStrategy == "epoch" && epochEnd && t.state.GlobalStep < t.total {
			if err := t.evaluateGRPO(); err != nil {
				return err
			}
		}
		steps := (c.SaveStrategy == "" || c.SaveStrategy == "steps") && c.SaveSteps > 0 && t.state.GlobalStep%c.SaveSteps == 0
		if (steps || c.SaveStrategy == "epoch" && epochEnd) && t.state.GlobalStep < t.total {
			if err := t.saveCheckpoint(); err != nil {
				return err
			}
		}
		// The next step's time starts here: evaluation and checkpoints are
		// not part of gen_share's denominator.
		stepStart = time.Now()
	}
	if len(g.held) > 0 && (c.EvalStrategy != "no" || c.DoEval) && (c.EvalStrategy != "steps" || evalEvery <= 0 || t.state.GlobalStep%evalEvery != 0) {
		if err := t.evaluateGRPO(); err != nil {
			return err
		}
	}
	return t.saveFinal()
}

func metricValue(ms []runlog.Value, key string) float64 {
	for _, m := range ms {
		if m.Key == key {
			return m.Value
		}
	}
	return math.NaN()
}

// EvalGRPO samples num_generations completions of every held-out prompt
// as training samples them (temperature, top_p, top_k) and returns the mean
// weighted reward and each function's mean: the expected reward of the
// policy on prompts it was not trained on. Its random stream is derived from
// the seed and the step, apart from the training sampler's, so evaluating
// changes nothing in training.
func (t *Trainer) EvalGRPO() ([]runlog.Value, error) {
	c, g := t.Cfg, t.grpo
	if g == nil || len(g.held) == 0 {
		return nil, nil
	}
	draw := newDrawer(c.Temperature, c.TopP, c.TopK, rand.New(rand.NewPCG(uint64(c.Seed)^0x6576616c, uint64(t.state.GlobalStep))))
	var ids [][]int32
	var ps []grpoPrompt
	for _, p := range g.held {
		ids = append(ids, p.IDs)
		for range c.NumGenerations {
			ps = append(ps, p)
		}
	}
	comps, _, err := t.sampleGroups(ids, c.NumGenerations, draw)
	if err != nil {
		return nil, err
	}
	per, total, err := g.score(g.samples(ps, comps))
	if err != nil {
		return nil, err
	}
	m := []runlog.Value{{Key: "eval_reward", Value: rl.Mean(total)}}
	for f, fn := range g.rewards {
		m = append(m, runlog.Value{Key: "eval_rewards/" + fn.Name() + "/mean", Value: rl.Mean(per[f])})
	}
	return m, nil
}

func (t *Trainer) evaluateGRPO() error {
	m, err := t.EvalGRPO()
	if err != nil {
		return fmt.Errorf("evaluation at step %d: %w", t.state.GlobalStep, err)
	}
	return t.log.EvalMetrics(t.state.GlobalStep, m)
}

// logCompletions appends the round's samples to completions.jsonl.
func (t *Trainer) logCompletions(samples []reward.Sample, per [][]float64, comps []grpoCompletion) error {
	f, err := os.OpenFile(filepath.Join(t.Cfg.OutputDir, "completions.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, s := range samples {
		rs := map[string]float64{}
		for k, fn := range t.grpo.rewards {
			rs[fn.Name()] = per[k][i]
		}
		b, err := json.Marshal(map[string]any{"step": t.state.GlobalStep + 1, "where": s.Where, "prompt": s.Prompt,
			"completion": s.Completion, "rewards": rs, "advantage": comps[i].Adv})
		if err != nil {
			return err
		}
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// trimCompletions drops from completions.jsonl what a killed run sampled
// after the checkpoint it resumes from: those rounds are sampled again, and
// the file keeps one line per completion trained on, as an uninterrupted
// run's.
func (t *Trainer) trimCompletions() error {
	path := filepath.Join(t.Cfg.OutputDir, "completions.jsonl")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		var rec struct {
			Step int `json:"step"`
		}
		if len(bytes.TrimSpace(line)) == 0 || line[len(line)-1] != '\n' || json.Unmarshal(line, &rec) != nil {
			continue // a line torn by the kill
		}
		if rec.Step <= t.state.GlobalStep {
			keep = append(keep, line...)
		}
	}
	if len(keep) == len(b) {
		return nil
	}
	return ckpt.WriteFileAtomic(path, keep, 0o644)
}

// saveGRPO writes the sampler state, the generation batch in use and the
// logging window into a checkpoint folder.
func (g *grpoRun) save(dir string) error {
	rng, err := g.pcg.MarshalBinary()
	if err != nil {
		return err
	}
	b, err := json.Marshal(grpoState{NumTokens: g.numTokens, RNG: rng, Buffer: g.buf, Window: g.window})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, grpoStateFile), b, 0o644)
}

func (g *grpoRun) load(dir string) error {
	path := filepath.Join(dir, grpoStateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("resume: %w (a grpo checkpoint keeps the sampler state there)", err)
	}
	var st grpoState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := g.pcg.UnmarshalBinary(st.RNG); err != nil {
		return fmt.Errorf("%s: sampler state: %w", path, err)
	}
	if st.Buffer != nil {
		for i, cp := range st.Buffer.Completions {
			if cp.Prompt < 0 || cp.Prompt >= len(g.prompts) {
				return fmt.Errorf("%s: completion %d refers to prompt %d of %d", path, i, cp.Prompt, len(g.prompts))
			}
		}
	}
	g.buf, g.window, g.numTokens = st.Buffer, st.Window, st.NumTokens
	return nil
}
