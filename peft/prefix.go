package peft

import (
	"fmt"
	"math/rand/v2"

	"gotune/model"
	"gotune/nn"
)

// PrefixConfig configures prefix tuning, also known as P-tuning v2 (PEFT's
// PrefixTuningConfig).
type PrefixConfig struct {
	Virtual int // num_virtual_tokens
	// Projection reparameterizes the prefix as PEFT's prefix_projection does:
	// Embedding [Virtual, KVDim] → Linear(KVDim, EncoderHidden) → Tanh →
	// Linear(EncoderHidden, Layers·2·KVDim).
	Projection    bool
	EncoderHidden int // encoder_hidden_size; 0 means the model's hidden size
	BaseModel     string
}

// Prefix gives every layer trained keys and values that every query attends
// to before the sequence's own. As in PEFT, one row of the prefix holds, for
// layer l, the key at [2l·KVDim, (2l+1)·KVDim) and the value at the next
// KVDim values (KVDim = KV heads × head dim, so grouped-query models get a
// KV-sized prefix); keys are used as they are, without rotation, and the
// sequence's tokens take positions Virtual…Virtual+T−1. The device block
// lays the prefix out per layer and trains it (model.PromptEncoder); the
// host computes the projection's output only for saving and loading.
type Prefix struct {
	Config PrefixConfig
	// Embedding is prompt_encoder.default.embedding.weight: the prefix
	// itself [Virtual, Layers·2·KVDim], or with Projection the encoder's
	// input [Virtual, KVDim].
	Embedding *nn.Param
	transform []*dense // transform.0, transform.2 (Projection only)
	m         *model.Model
	kd        int
}

// AttachPrefix adds prefix tuning to every layer of m.
func AttachPrefix(m *model.Model, cfg PrefixConfig, seed uint64) (*Prefix, error) {
	if cfg.Virtual <= 0 {
		return nil, fmt.Errorf("prefix tuning: num_virtual_tokens must be positive, got %d", cfg.Virtual)
	}
	for _, l := range m.Layers {
		if l.Prefix != nil {
			return nil, fmt.Errorf("prefix tuning: layer %d already has a prefix", l.Index)
		}
	}
	if cfg.EncoderHidden <= 0 {
		cfg.EncoderHidden = m.Cfg.Hidden
	}
	kd := m.Cfg.KVDim()
	width := len(m.Layers) * 2 * kd
	p := &Prefix{Config: cfg, m: m, kd: kd}
	rng := rand.New(rand.NewPCG(seed, 0x70726566))
	if cfg.Projection {
		p.Embedding = nn.NewParam(promptEncoderPrefix+"embedding.weight", cfg.Virtual, kd)
		p.transform = []*dense{
			newDense(promptEncoderPrefix+"transform.0", kd, cfg.EncoderHidden, rng),
			newDense(promptEncoderPrefix+"transform.2", cfg.EncoderHidden, width, rng),
		}
	} else {
		p.Embedding = nn.NewParam(promptEncoderPrefix+"embedding.weight", cfg.Virtual, width)
	}
	for i := range p.Embedding.Data {
		p.Embedding.Data[i] = float32(rng.NormFloat64())
	}
	for _, q := range p.Params() {
		q.SetTrainable(true)
	}
	for _, l := range m.Layers {
		l.Prefix = p
	}
	return p, nil
}

// LoadPrefix attaches the prefix-tuning adapter saved in dir. With
// prefix_projection PEFT saves only the projection's output; when gotune's
// prompt_encoder.safetensors is beside it the encoder is restored,
// otherwise the saved prefix is trained directly.
func LoadPrefix(m *model.Model, dir string) (*Prefix, error) {
	f, path, err := readPromptConfig(dir, "PREFIX_TUNING")
	if err != nil {
		return nil, err
	}
	kd := m.Cfg.KVDim()
	if err := checkDims(f, path, m, kd, m.Cfg.KVHeads); err != nil {
		return nil, err
	}
	cfg := PrefixConfig{Virtual: f.NumVirtualTokens, Projection: f.PrefixProjection, EncoderHidden: f.EncoderHiddenSize, BaseModel: f.BaseModel}
	emb, err := readPromptEmbeddings(dir, f.NumVirtualTokens, len(m.Layers)*2*kd)
	if err != nil {
		return nil, err
	}
	p, err := AttachPrefix(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cfg.Projection {
		copy(p.Embedding.Data, emb)
		return p, nil
	}
	ok, err := loadEncoder(dir, p.Params())
	if err == nil && ok {
		err = sameOutput(dir, p.encode(), emb)
	}
	if err != nil {
		p.Detach()
		return nil, err
	}
	if !ok {
		p.transform = nil
		p.Embedding = nn.NewParam(promptEncoderPrefix+"embedding.weight", cfg.Virtual, len(m.Layers)*2*kd)
		copy(p.Embedding.Data, emb)
		p.Embedding.SetTrainable(true)
	}
	return p, nil
}

// encode runs the projection on the host, in float64: the prefix PEFT
// saves.
func (p *Prefix) encode() []float32 {
	return toF32(mlp(p.transform, toF64(p.Embedding.Data), p.Config.Virtual, tanhAct))
}

// Len implements model.KVPrefix.
func (p *Prefix) Len() int { return p.Config.Virtual }

// HasEncoder implements Encoded.
func (p *Prefix) HasEncoder() bool { return p.transform != nil }

// EncoderTrainableCount implements Encoded.
func (p *Prefix) EncoderTrainableCount() int {
	P, kd, hid := p.Config.Virtual, p.kd, p.Config.EncoderHidden
	w := 2 * len(p.m.Layers) * kd
	if !p.Config.Projection {
		return P * w
	}
	return P*kd + kd*hid + hid + hid*w + w
}

// OutputLayer implements Encoded.
func (p *Prefix) OutputLayer() string { return promptEncoderPrefix + "transform.2" }

// Output implements Encoded: the prefix [Virtual, Layers·2·KVDim].
func (p *Prefix) Output() []float32 {
	if p.transform != nil {
		return p.encode()
	}
	return p.Embedding.Data
}

// Type implements Method.
func (p *Prefix) Type() string { return "PREFIX_TUNING" }

// Params implements Method.
func (p *Prefix) Params() []*nn.Param {
	ps := []*nn.Param{p.Embedding}
	for _, d := range p.transform {
		ps = append(ps, d.W, d.B)
	}
	return ps
}

// SavedTensors implements SavedTensorer.
func (p *Prefix) SavedTensors() map[string][]float32 {
	return map[string][]float32{promptEmbeddingsKey: append([]float32(nil), p.Output()...)}
}

// Detach implements Method.
func (p *Prefix) Detach() {
	for _, l := range p.m.Layers {
		if l.Prefix == model.KVPrefix(p) {
			l.Prefix = nil
		}
	}
}

// Save implements Method.
func (p *Prefix) Save(dir string) error {
	out := p.Output()
	var enc []*nn.Param
	if p.HasEncoder() {
		enc = p.Params()
	}
	cfg := promptJSON("PREFIX_TUNING", p.Config.BaseModel, p.m, p.Config.Virtual, p.kd, p.m.Cfg.KVHeads)
	cfg["encoder_hidden_size"] = p.Config.EncoderHidden
	cfg["prefix_projection"] = p.Config.Projection
	cfg["init_weights"] = nil
	return savePrompt(dir, out, []int{p.Config.Virtual, 2 * len(p.m.Layers) * p.kd}, enc, cfg)
}
