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
// sequence's tokens take positions Virtual…Virtual+T−1.
type Prefix struct {
	Config PrefixConfig
	// Embedding is prompt_encoder.default.embedding.weight: the prefix
	// itself [Virtual, Layers·2·KVDim], or with Projection the encoder's
	// input [Virtual, KVDim].
	Embedding *nn.Param
	transform []*dense // transform.0, transform.2 (Projection only)
	m         *model.Model
	kd        int
	kv        [][2][]float32 // per layer: keys, values [Virtual, KVDim]
	enc       encoderActs
	reported  int // layers whose gradient arrived in this backward pass
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
	p.kv = make([][2][]float32, len(m.Layers))
	for i := range p.kv {
		p.kv[i] = [2][]float32{make([]float32, cfg.Virtual*kd), make([]float32, cfg.Virtual*kd)}
	}
	p.split()
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
		p.split()
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
		p.enc = encoderActs{}
	}
	p.split()
	return p, nil
}

// prefix returns the full prefix [Virtual, Layers·2·KVDim].
func (p *Prefix) prefix() []float32 {
	if p.transform != nil {
		return p.encode()
	}
	return p.Embedding.Data
}

func (p *Prefix) encode() []float32 {
	P := p.Config.Virtual
	y := p.enc.mlp(p.transform, toF64(p.Embedding.Data), P, tanhAct)
	p.enc.out = toF32(p.enc.out, y)
	p.enc.dout = zeroed(p.enc.dout, len(y))
	p.enc.have = false
	return p.enc.out
}

// split computes the prefix and lays it out per layer.
func (p *Prefix) split() {
	all := p.prefix()
	kd, w := p.kd, 2*len(p.m.Layers)*p.kd
	for l := range p.kv {
		for t := 0; t < p.Config.Virtual; t++ {
			row := all[t*w : (t+1)*w]
			copy(p.kv[l][0][t*kd:(t+1)*kd], row[2*l*kd:(2*l+1)*kd])
			copy(p.kv[l][1][t*kd:(t+1)*kd], row[(2*l+1)*kd:(2*l+2)*kd])
		}
	}
	if p.transform == nil {
		p.enc.dout = zeroed(p.enc.dout, len(all))
		p.enc.have = false
	}
}

// Len implements model.KVPrefix.
func (p *Prefix) Len() int { return p.Config.Virtual }

// KV implements model.KVPrefix. Layer 0 is asked first in every forward
// pass: that is when the prefix is recomputed from the current weights,
// unless gradients have started arriving (gradient checkpointing recomputes
// layer 0 last, in the middle of the backward pass, with unchanged weights).
func (p *Prefix) KV(layer int) (k, v []float32) {
	if layer == 0 && p.reported == 0 {
		p.split()
	}
	return p.kv[layer][0], p.kv[layer][1]
}

// AccumulateGrad implements model.KVPrefix. Gradients gather into the full
// prefix's gradient; once every layer has reported, they go through the
// encoder (or straight into the embedding).
func (p *Prefix) AccumulateGrad(layer int, dk, dv []float32, batch int) {
	P, kd, w := p.Config.Virtual, p.kd, 2*len(p.m.Layers)*p.kd
	d := p.enc.dout
	for b := 0; b < batch; b++ {
		for t := 0; t < P; t++ {
			row := d[t*w : (t+1)*w]
			src := (b*P + t) * kd
			addTo(row[2*layer*kd:(2*layer+1)*kd], dk[src:src+kd])
			addTo(row[(2*layer+1)*kd:(2*layer+2)*kd], dv[src:src+kd])
		}
	}
	p.reported++
	if p.reported < len(p.m.Layers) {
		return
	}
	p.reported = 0
	p.enc.have = true
	if p.transform == nil {
		if g := p.Embedding.Grad; g != nil {
			addTo(g, d)
		}
		return
	}
	dx := p.enc.mlpBackward(p.transform, toF64(d), P, tanhAct)
	if g := p.Embedding.Grad; g != nil {
		for i, v := range dx {
			g[i] += float32(v)
		}
	}
}

func addTo(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}

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

// Output implements Encoded: the prefix [Virtual, Layers·2·KVDim] and, after
// a backward pass, its gradient.
func (p *Prefix) Output() (out, grad []float32) {
	out = append([]float32(nil), p.prefix()...)
	if p.enc.have {
		grad = p.enc.dout
	}
	return out, grad
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
	out, _ := p.Output()
	return map[string][]float32{promptEmbeddingsKey: out}
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
	out, _ := p.Output()
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
