// Package parity compares gotune with reference outputs produced by the
// Python stack (transformers, PEFT, torch). Given a folder laid out like
// shared/testdata/reference/<model> (model/ and ref/), it computes every
// quantity it knows and reports one checks.Result per comparison.
package parity

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"gotune/checks"
	"gotune/compute"
	"gotune/model"
	"gotune/quant"
	"gotune/safetensors"
)

// Tolerance for float32 computations against float64 references.
const Tolerance = 1e-4

// Ref is a reference folder: the model and its recorded outputs.
type Ref struct {
	Dir   string
	Model *model.Model
	Batch *model.Batch
	Meta  Meta
	// NaN counts the reference logits of the batch that are NaN: a fault
	// of the reference generator, after which its loss, gradients and
	// trajectories are NaN too and only the finite logits can be checked.
	NaN int

	o DeviceOptions
	// logitDev is the largest deviation of one logit from the reference's
	// that Forward saw: how far rounding may move a greedy choice.
	logitDev float64
	// perturb, when set, changes every model as it is loaded: the tests'
	// deliberately wrong model.
	perturb func(*model.Model)
}

// Meta is ref/meta.json.
type Meta struct {
	Loss     float64 `json:"loss"`
	Generate struct {
		PromptIDs []int     `json:"prompt_ids"`
		NewIDs    []int     `json:"new_ids"`
		Margins   []float64 `json:"top1_top2_margins"`
	} `json:"generate"`
}

// Open loads dir/model and dir/ref/batch.safetensors; the checks run on
// o's backend.
func Open(dir string, o DeviceOptions) (*Ref, error) {
	if o.Backend == nil {
		return nil, fmt.Errorf("parity: %s: no compute backend", dir)
	}
	if o.Compute == 0 {
		o.Compute = compute.F32
	}
	if o.Compute != compute.F32 && o.Compute != compute.BF16 {
		return nil, fmt.Errorf("parity: compute type %v (want f32 or bf16)", o.Compute)
	}
	r := &Ref{Dir: dir, o: o}
	var err error
	if r.Model, err = r.load(nil); err != nil {
		return nil, err
	}
	if r.Batch, err = ReadBatch(filepath.Join(dir, "ref", "batch.safetensors")); err != nil {
		return nil, err
	}
	if err := readJSON(filepath.Join(dir, "ref", "meta.json"), &r.Meta); err != nil {
		return nil, err
	}
	return r, nil
}

// load reads the base model again (quantized with q), as every check that
// trains starts from it.
func (r *Ref) load(q *quant.Options) (*model.Model, error) {
	m, err := model.Load(filepath.Join(r.Dir, "model"), model.LoadOptions{Quant: q})
	if err != nil {
		return nil, err
	}
	if r.perturb != nil {
		r.perturb(m)
	}
	return m, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Python's json writes NaN for a NaN float; read it as null (zero).
	b = nanLiteral.ReplaceAll(b, []byte("${1}null"))
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

var nanLiteral = regexp.MustCompile(`([:\[,]\s*)NaN\b`)

// relErrFinite is checks.RelErr over the entries whose reference is finite,
// with the number of the others.
func relErrFinite(got []float32, want []float64) (float64, int) {
	if len(got) != len(want) {
		return math.Inf(1), 0
	}
	var g []float32
	var w []float64
	nan := 0
	for i, v := range want {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			nan++
			continue
		}
		g, w = append(g, got[i]), append(w, v)
	}
	return checks.RelErr(g, w), nan
}

// ReadBatch reads input_ids, attention_mask and labels ([B, T] int64).
func ReadBatch(path string) (*model.Batch, error) {
	s, err := safetensors.OpenOne(path)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	info, ok := s.Info("input_ids")
	if !ok || len(info.Shape) != 2 {
		return nil, fmt.Errorf("%s: input_ids [B, T] missing", path)
	}
	b := &model.Batch{B: info.Shape[0], T: info.Shape[1]}
	get := func(name string) ([]int32, error) {
		if !s.Has(name) {
			return nil, nil
		}
		v, err := s.Int64s(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		if len(v) != b.B*b.T {
			return nil, fmt.Errorf("%s: %s has %d values, want %d", path, name, len(v), b.B*b.T)
		}
		out := make([]int32, len(v))
		for i, x := range v {
			out[i] = int32(x)
		}
		return out, nil
	}
	if b.IDs, err = get("input_ids"); err != nil {
		return nil, err
	}
	if b.Mask, err = get("attention_mask"); err != nil {
		return nil, err
	}
	if b.Labels, err = get("labels"); err != nil {
		return nil, err
	}
	return b, nil
}

// Forward checks logits of the padded batch, the loss, and the logits of the
// second sequence run alone without padding.
func (r *Ref) Forward() ([]checks.Result, error) {
	ref, err := safetensors.OpenOne(filepath.Join(r.Dir, "ref", "forward.safetensors"))
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	want, err := ref.Float64s("logits")
	if err != nil {
		return nil, err
	}
	wantLoss, err := ref.Float64s("loss")
	if err != nil {
		return nil, err
	}
	dm, err := r.device(r.Model, true)
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	got, err := dm.Logits(r.Batch)
	if err != nil {
		return nil, err
	}
	// Logits are single stored values, as gradients are: in bf16 each
	// carries the compute type's rounding.
	rel, nan := relErrFinite(got, want)
	out := []checks.Result{checks.New("forward.logits", "rel_err", rel, r.o.gradLimit())}
	if len(got) == len(want) {
		for i, w := range want {
			if d := math.Abs(float64(got[i]) - w); d > r.logitDev {
				r.logitDev = d
			}
		}
	}
	// A reference may mark padding positions NaN, "not compared" (the
	// Gemma references, whose padded row runs cut to its real tokens);
	// NaN anywhere else is a fault of the reference.
	pad := 0
	if b := r.Batch; b.Mask != nil && len(want) == b.B*b.T*r.Model.Cfg.Vocab {
		V := r.Model.Cfg.Vocab
		for i, m := range b.Mask {
			if m == 0 {
				for _, v := range want[i*V : (i+1)*V] {
					if math.IsNaN(v) {
						pad++
					}
				}
			}
		}
	}
	if pad > 0 {
		out[0].Detail = fmt.Sprintf("%d padding logits marked NaN (not compared)", pad)
	}
	r.NaN = nan - pad
	if r.NaN > 0 {
		nan = r.NaN
		out[0].Detail = fmt.Sprintf("%d of %d reference logits are NaN outside padding; compared the others", nan, len(want))
		res := checks.New("reference.nan", "nan_logits", float64(nan), 0)
		res.Detail = "the reference holds NaN logits, so its loss, gradients and trajectories are NaN: regenerate it (scripts/gpu/make_reference.py)"
		out = append(out, res)
	} else {
		sum, n, err := dm.Loss(r.Batch)
		if err != nil {
			return nil, err
		}
		loss := sum / float64(n)
		out = append(out, checks.New("forward.loss", "rel_err", math.Abs(loss-wantLoss[0])/math.Abs(wantLoss[0]), r.o.limit()))
	}

	if path := filepath.Join(r.Dir, "ref", "forward_seq1_unpadded.safetensors"); exists(path) {
		one, err := safetensors.OpenOne(path)
		if err != nil {
			return nil, err
		}
		defer one.Close()
		want1, err := one.Float64s("logits")
		if err != nil {
			return nil, err
		}
		got1, err := dm.Logits(r.unpadded(r.Batch.B - 1))
		if err != nil {
			return nil, err
		}
		rel, nan := relErrFinite(got1, want1)
		res := checks.New("forward.logits_unpadded", "rel_err", rel, r.o.gradLimit())
		if nan > 0 {
			res.Pass, res.Detail = false, fmt.Sprintf("%d reference logits are NaN", nan)
		}
		out = append(out, res)
	}
	return out, nil
}

// unpadded returns row i of the batch without its padding.
func (r *Ref) unpadded(i int) *model.Batch {
	b := r.Batch
	T := 0
	for t := 0; t < b.T; t++ {
		if b.Mask == nil || b.Mask[i*b.T+t] != 0 {
			T = t + 1
		}
	}
	return &model.Batch{B: 1, T: T, IDs: b.IDs[i*b.T : i*b.T+T], Labels: b.Labels[i*b.T : i*b.T+T]}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// GradsFull checks the gradient of the loss for every base parameter.
func (r *Ref) GradsFull() ([]checks.Result, error) {
	ref, err := safetensors.OpenOne(filepath.Join(r.Dir, "ref", "grads_full.safetensors"))
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	m, err := r.load(nil)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	dm, err := r.device(m, false)
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	count := r.Batch.TrainedTokens()
	if _, _, err := dm.Step(r.Batch, float32(1/float64(count))); err != nil {
		return nil, err
	}
	got, err := deviceGrads(dm, m.Params())
	if err != nil {
		return nil, err
	}
	res, err := compareGrads("grads_full", ref, got)
	return relimit(res, r.o.gradLimit()), err
}

// compareGrads compares every tensor of a reference gradient file with ours:
// one result for the whole set (norm of all differences over norm of all
// reference values) and the worst single tensor in Detail.
func compareGrads(check string, ref *safetensors.Set, got map[string][]float32) ([]checks.Result, error) {
	names := append([]string(nil), ref.Names()...)
	sort.Strings(names)
	var num, den, worst float64
	worstName := ""
	for _, name := range names {
		want, err := ref.Float64s(name)
		if err != nil {
			return nil, err
		}
		g, ok := got[name]
		if !ok {
			return []checks.Result{{Check: check, Metric: "rel_err", Value: math.Inf(1), Limit: Tolerance, Detail: "no gradient for " + name}}, nil
		}
		if len(g) != len(want) {
			return []checks.Result{{Check: check, Metric: "rel_err", Value: math.Inf(1), Limit: Tolerance, Detail: fmt.Sprintf("%s: %d values, reference has %d", name, len(g), len(want))}}, nil
		}
		var n, d float64
		for i := range want {
			e := float64(g[i]) - want[i]
			n += e * e
			d += want[i] * want[i]
		}
		num += n
		den += d
		if rel := math.Sqrt(n / math.Max(d, 1e-300)); rel > worst && d > 1e-20 {
			worst, worstName = rel, name
		}
	}
	res := checks.New(check, "rel_err", math.Sqrt(num/den), Tolerance)
	res.Detail = fmt.Sprintf("%d tensors; worst %s at %.3g", len(names), worstName, worst)
	return []checks.Result{res}, nil
}

// Generate checks greedy decoding from meta.json's prompt through a
// device session (the key/value cache of model.DeviceSession): the ids must
// be identical. Each step feeds the reference's id, so a step that differs
// is counted alone (in f32 a run with no difference is plain greedy
// decoding). In bf16 a step whose reference margin between the two best
// tokens is under twice the largest logit deviation Forward saw (run first)
// may pick either: such near ties are not counted.
func (r *Ref) Generate() ([]checks.Result, error) {
	g := r.Meta.Generate
	if len(g.PromptIDs) == 0 {
		return nil, nil
	}
	prompt := make([]int32, len(g.PromptIDs))
	for i, id := range g.PromptIDs {
		prompt[i] = int32(id)
	}
	want := make([]int32, len(g.NewIDs))
	for i, id := range g.NewIDs {
		want[i] = int32(id)
	}
	dm, err := r.device(r.Model, true)
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	got, err := greedy(dm, prompt, want)
	if err != nil {
		return nil, err
	}
	tie := 0.0
	if r.o.bf16() {
		tie = 2 * r.logitDev
	}
	mism, ties := 0, 0
	detail := ""
	for i, id := range want {
		if i < len(g.Margins) && g.Margins[i] < tie {
			ties++
			continue
		}
		if got[i] != id {
			mism++
			if detail == "" {
				detail = fmt.Sprintf("first difference at step %d: got %v, want %v", i, got, want)
			}
		}
	}
	if ties > 0 && detail == "" {
		detail = fmt.Sprintf("%d of %d steps not compared: the reference's margin is under %.3g, twice the largest logit deviation", ties, len(want), tie)
	}
	res := checks.New("generate.greedy_ids", "mismatches", float64(mism), 0)
	res.Detail = detail
	return []checks.Result{res}, nil
}

// greedy returns the most likely token of every step of want after
// prompt, feeding want's ids.
func greedy(dm *model.DeviceModel, prompt, want []int32) ([]int32, error) {
	s, err := dm.NewSession(len(prompt) + len(want))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	logits, err := s.Feed(prompt)
	if err != nil {
		return nil, err
	}
	out := make([]int32, len(want))
	for i, id := range want {
		out[i] = int32(model.Argmax(logits))
		if i+1 == len(want) {
			break
		}
		if logits, err = s.Feed([]int32{id}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
