package infer

import (
	"sync"

	"context"
	"errors"
	"fmt"
	"gotune/compute"
	"gotune/hfconfig"
	"gotune/method"
	"strings"
	"unicode/utf8"

	"gotune/chat"
	"gotune/constrain"
	"gotune/gguf"
	"gotune/model"
	"gotune/peft"
	"gotune/tokenizer"
)

// GenerationConfig holds the generation_config.json fields we honour.
type GenerationConfig struct {
	EOS               []int
	DoSample          bool
	Temperature       float64
	TopK              int
	TopP              float64
	RepetitionPenalty float64
}

// LoadGenerationConfig reads dir/generation_config.json; a missing file
// or field gives transformers' defaults.
func LoadGenerationConfig(dir string) (GenerationConfig, error) {
	g := GenerationConfig{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
	raw, err := hfconfig.ReadGenerationConfig(dir)
	if err != nil {
		return g, err
	}
	g.EOS = raw.EOSTokenIDs
	if raw.DoSample != nil {
		g.DoSample = *raw.DoSample
	}
	if raw.Temperature != nil {
		g.Temperature = *raw.Temperature
	}
	if raw.TopK != nil {
		g.TopK = *raw.TopK
	}
	if raw.TopP != nil {
		g.TopP = *raw.TopP
	}
	if raw.RepetitionPenalty != nil {
		g.RepetitionPenalty = *raw.RepetitionPenalty
	}
	return g, nil
}

// Engine is a loaded model ready to generate text.
type Engine struct {
	Model    *model.Model
	Tok      *tokenizer.Tokenizer
	Template *chat.Template // nil when the model has none
	// TemplateErr is why the model's template could not be used (it failed
	// to parse); Prompt reports it rather than "no chat template".
	TemplateErr error
	Gen         GenerationConfig
	Adapter     peft.Method
	stops       map[int32]bool

	// dev runs generation on a compute backend (UseDevice; an engine
	// without one refuses to generate); devMu keeps one generation at a
	// time there (a backend is not safe for concurrent use, so engines
	// sharing one share the lock).
	dev   *model.DeviceModel
	devMu *sync.Mutex
}

// UseDevice puts generation on a compute backend (bf16 or f32 weights);
// an engine generates only once it has one. A model or adapter the backend
// cannot run returns the error saying why and leaves the engine as it was.
// Engines on the same backend must pass the
// same lock (nil: a lock of its own). Engines of clones of one model
// (WithAdapter) that pass the same shared weights hold the base once on the
// device (nil: this engine's own copy).
func (e *Engine) UseDevice(be compute.Backend, bf16 bool, lock *sync.Mutex, shared *model.SharedWeights) error {
	dt := compute.ComputeType(be, bf16)
	dm, err := model.NewDeviceModel(e.Model, be, model.DeviceOptions{Compute: dt, Inference: true, Shared: shared})
	if err != nil {
		return err
	}
	e.Close()
	if lock == nil {
		lock = new(sync.Mutex)
	}
	e.dev, e.devMu = dm, lock
	return nil
}

// ErrNoBackend is Generate's error on an engine without a compute backend:
// Load reads the model, UseDevice says where it runs.
var ErrNoBackend = errors.New("infer: the engine has no compute backend to generate on (call UseDevice after Load)")

// Device names the backend generation runs on, "" before UseDevice.
func (e *Engine) Device() string {
	if e.dev == nil {
		return ""
	}
	return e.dev.BackendName()
}

// Close releases the device copy of the model, if any.
func (e *Engine) Close() {
	if e.dev != nil {
		e.dev.Close()
		e.dev = nil
	}
}

// Load opens a model folder, its tokenizer, chat template and generation
// config, and attaches an adapter when adapterDir is not empty.
func Load(modelDir, adapterDir string) (*Engine, error) {
	var e *Engine
	var err error
	if strings.HasSuffix(strings.ToLower(modelDir), ".gguf") {
		e, err = loadGGUF(modelDir)
	} else {
		e, err = loadFolder(modelDir)
	}
	if err != nil {
		return nil, err
	}
	m := e.Model
	if adapterDir != "" {
		if e.Adapter, err = method.Load(m, adapterDir); err != nil {
			return nil, err
		}
		peft.ForInference(e.Adapter)
		// An adapter trained by gotune carries the chat template it was
		// trained with; prefer it over the base model's.
		t, err := adapterTemplate(adapterDir)
		if err != nil {
			return nil, err
		}
		if t != nil {
			e.Template, e.TemplateErr = t, nil
		}
	}
	e.buildStops()
	return e, nil
}

func loadFolder(modelDir string) (*Engine, error) {
	m, err := model.Load(modelDir, model.LoadOptions{})
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		return nil, err
	}
	e := &Engine{Model: m, Tok: tok}
	e.Template, err = chat.Load(modelDir)
	if err != nil && !errors.Is(err, chat.ErrNoTemplate) {
		// Plain completion needs no template: keep the reason for Prompt.
		e.TemplateErr = err
	}
	if e.Gen, err = LoadGenerationConfig(modelDir); err != nil {
		return nil, err
	}
	return e, nil
}

// loadGGUF opens a single GGUF file: weights, the vocabulary stored in it,
// and its tokenizer.chat_template when present.
func loadGGUF(path string) (*Engine, error) {
	m, err := model.LoadGGUF(path, model.LoadOptions{})
	if err != nil {
		return nil, err
	}
	m.Dir = path
	tok, err := tokenizer.LoadGGUF(path)
	if err != nil {
		return nil, err
	}
	e := &Engine{Model: m, Tok: tok, Gen: GenerationConfig{Temperature: 1, TopP: 1, RepetitionPenalty: 1}}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if src, ok := f.String("tokenizer.chat_template"); ok && src != "" {
		t, err := chat.Parse(path, src)
		if err != nil {
			return nil, fmt.Errorf("%s: tokenizer.chat_template: %w", path, err)
		}
		t.BOS, t.EOS = tok.BOSToken(), tok.EOSToken()
		e.Template = t
	}
	return e, nil
}

// WithAdapter returns an engine that shares e's base weights (model.Clone)
// with the adapter in dir attached, or with none when dir is empty: several
// adapters or replicas cost their own small buffers, not another copy of
// the model.
func (e *Engine) WithAdapter(dir string) (*Engine, error) {
	c := &Engine{Model: e.Model.Clone(), Tok: e.Tok, Template: e.Template, Gen: e.Gen}
	if dir != "" {
		var err error
		if c.Adapter, err = method.Load(c.Model, dir); err != nil {
			return nil, err
		}
		peft.ForInference(c.Adapter)
		t, err := adapterTemplate(dir)
		if err != nil {
			return nil, err
		}
		if t != nil {
			c.Template, c.TemplateErr = t, nil
		}
	}
	c.buildStops()
	return c, nil
}

// buildStops gathers the ids that end a reply: generation_config's and the
// model's EOS ids, the tokenizer's EOS, and the template's end-of-turn tokens.
func (e *Engine) buildStops() {
	e.stops = map[int32]bool{}
	for _, id := range e.Gen.EOS {
		e.stops[int32(id)] = true
	}
	for _, id := range e.Model.Cfg.EOS {
		e.stops[int32(id)] = true
	}
	if id, ok := e.Tok.EOS(); ok {
		e.stops[int32(id)] = true
	}
	if e.Template != nil {
		for _, s := range e.Template.StopStrings() {
			if id, ok := e.Tok.TokenToID(s); ok {
				e.stops[int32(id)] = true
			}
		}
	}
}

func (e *Engine) stopIDs() []int32 {
	ids := make([]int32, 0, len(e.stops))
	for id := range e.stops {
		ids = append(ids, id)
	}
	return ids
}

// IsStop reports whether id ends generation.
func (e *Engine) IsStop(id int32) bool { return e.stops[id] }

// Prompt renders messages with the chat template and a generation prompt.
func (e *Engine) Prompt(msgs []chat.Message, opt chat.Options) (string, error) {
	if e.TemplateErr != nil {
		return "", e.TemplateErr
	}
	if e.Template == nil {
		return "", fmt.Errorf("%s has no chat template; give a template name or use plain completion", e.Model.Dir)
	}
	opt.AddGenerationPrompt = true
	return e.Template.Render(msgs, opt)
}

// Request is one generation.
type Request struct {
	Prompt    string
	MaxTokens int
	Sample    SampleOptions
	// Raw marks plain-text completion (no chat template). The prompt then
	// starts with BOS when the tokenizer adds one (add_bos_token, or its
	// post-processor), as transformers, llama.cpp and training on plain
	// text do; a rendered chat prompt carries its own. The continuation is
	// decoded after the prompt's last tokens, so a SentencePiece word keeps
	// the space in front of it ("Once upon a time" + " there").
	Raw bool
	// OnText receives decoded text as it is produced (may be nil).
	OnText func(string)
	// Grammar, when set, constrains the output (constrained decoding):
	// before each token is sampled, every token that would take the text
	// out of the grammar is masked, and a stop token is allowed only once
	// the text is complete. The generation ends by itself when nothing
	// more may follow.
	Grammar *constrain.Grammar
}

// Result is what a generation produced.
type Result struct {
	Text         string
	PromptTokens int
	Tokens       []int32
	FinishReason string // "stop" or "length"
}

// Generate continues the prompt text (already templated) token by token.
func (e *Engine) Generate(req Request) (Result, error) {
	return e.GenerateContext(context.Background(), req)
}

// CountTokens returns how many tokens the prompt text encodes to.
func (e *Engine) CountTokens(text string) int { return len(e.Tok.Encode(text, false)) }

// GenerateContext is Generate that stops between tokens once ctx is done:
// it then returns what was produced so far, FinishReason "cancelled" and
// ctx's error. An Engine runs one generation at a time: its model's layers
// and any attached adapter keep per-call buffers.
func (e *Engine) GenerateContext(ctx context.Context, req Request) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{FinishReason: "cancelled"}, err
	}
	ids := e.Tok.Encode(req.Prompt, false)
	if bos, ok := e.rawBOS(); ok && req.Raw && (len(ids) == 0 || ids[0] != bos) {
		ids = append([]int{bos}, ids...)
	}
	if len(ids) == 0 {
		if bos, ok := e.Tok.BOS(); ok {
			ids = []int{bos}
		} else {
			return Result{}, fmt.Errorf("empty prompt")
		}
	}
	prompt := make([]int32, len(ids))
	for i, id := range ids {
		prompt[i] = int32(id)
	}
	maxNew := req.MaxTokens
	if maxNew <= 0 {
		maxNew = 256
	}
	// The session's buffers are sized by prompt and completion: without
	// the model's context length as a bound, a huge prompt or max_tokens
	// allocates without limit (and the positions mean nothing past it).
	if n := e.Model.Cfg.MaxPositions; n > 0 {
		if len(prompt) >= n {
			return Result{PromptTokens: len(prompt)}, fmt.Errorf("the prompt has %d tokens; the model's context is %d (max_position_embeddings)", len(prompt), n)
		}
		maxNew = min(maxNew, n-len(prompt))
	}
	if e.dev == nil {
		return Result{PromptTokens: len(prompt)}, ErrNoBackend
	}
	e.devMu.Lock()
	defer e.devMu.Unlock()
	sess, err := e.dev.NewSession(len(prompt) + maxNew + 64)
	if err != nil {
		return Result{PromptTokens: len(prompt)}, err
	}
	defer sess.Close()
	logits, err := sess.Feed(prompt)
	if err != nil {
		return Result{}, err
	}
	sampler := NewSampler(req.Sample)
	var matcher *constrain.Matcher
	if req.Grammar != nil {
		matcher = constrain.NewMatcher(req.Grammar, e.Vocab(), e.stopIDs())
	}
	history := append([]int32(nil), prompt...)
	var lead []int32 // what the continuation is decoded after
	if req.Raw {
		lead = prompt[max(0, len(prompt)-rawContext):]
	}
	decode := func(ids []int32) string { return e.decodeAfter(lead, ids) }
	res := Result{PromptTokens: len(prompt), FinishReason: "length"}
	var emitted int
	for len(res.Tokens) < maxNew {
		// The one place logits are masked: everything the sampler does
		// (penalties, top-k/p, temperature) sees only allowed tokens.
		if matcher != nil {
			if matcher.Final() {
				res.FinishReason = "stop"
				break
			}
			if err := matcher.Mask(logits); err != nil {
				return res, err
			}
		}
		next := sampler.Next(logits, history)
		if matcher != nil && !e.IsStop(next) {
			if err := matcher.Accept(next); err != nil {
				return res, err
			}
		}
		if e.IsStop(next) {
			res.FinishReason = "stop"
			break
		}
		res.Tokens = append(res.Tokens, next)
		history = append(history, next)
		text := decode(res.Tokens)
		// Hold back an incomplete UTF-8 sequence until its bytes arrive.
		if complete := strings.TrimRight(text, "\uFFFD"); len(complete) > emitted && utf8.ValidString(complete) {
			if req.OnText != nil {
				req.OnText(complete[emitted:])
			}
			emitted = len(complete)
		}
		if len(res.Tokens) == maxNew {
			break
		}
		if err := ctx.Err(); err != nil {
			res.Text = decode(res.Tokens)
			res.FinishReason = "cancelled"
			return res, err
		}
		if logits, err = sess.Feed([]int32{next}); err != nil {
			return res, err
		}
	}
	res.Text = decode(res.Tokens)
	if req.OnText != nil && len(res.Text) > emitted {
		req.OnText(res.Text[emitted:])
	}
	return res, nil
}

func (e *Engine) decode(ids []int32) string {
	v := make([]int, len(ids))
	for i, id := range ids {
		v[i] = int(id)
	}
	return e.Tok.Decode(v, true)
}

// rawContext is how many prompt tokens a raw continuation is decoded after:
// enough for a decoder's context (SentencePiece's leading-space strip, a
// byte-fallback sequence), few enough to cost nothing per token.
const rawContext = 8

// decodeAfter decodes ids as they read after the lead tokens: the text of
// lead+ids with the text of lead cut off. Without lead tokens, or when their
// text is not a prefix (it always is for the decoders we have), ids are
// decoded alone.
func (e *Engine) decodeAfter(lead, ids []int32) string {
	if len(lead) == 0 {
		return e.decode(ids)
	}
	head := e.decode(lead)
	all := e.decode(append(lead[:len(lead):len(lead)], ids...))
	if rest, ok := strings.CutPrefix(all, head); ok {
		return rest
	}
	return e.decode(ids)
}

// rawBOS returns the BOS id when the tokenizer adds it in front of text
// encoded with special tokens (add_bos_token or a BOS-first post-processor).
func (e *Engine) rawBOS() (int, bool) {
	bos, ok := e.Tok.BOS()
	if !ok {
		return 0, false
	}
	with := e.Tok.Encode("a", true)
	plain := e.Tok.Encode("a", false)
	return bos, len(with) > 0 && with[0] == bos && (len(plain) == 0 || plain[0] != bos)
}

// adapterTemplate is an adapter folder's own chat template, nil when it has
// none. A template that is there but broken is an error: falling back to the
// base model's template would prompt the adapter in a format it was not
// trained on, without a word.
func adapterTemplate(dir string) (*chat.Template, error) {
	t, err := chat.Load(dir)
	if errors.Is(err, chat.ErrNoTemplate) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	return t, nil
}
