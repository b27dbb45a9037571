package model

import (
	"fmt"

	"gotune/nn"
)

// Model is a decoder-only transformer of the Llama family.
type Model struct {
	Cfg    *Config
	Dir    string
	Embed  *nn.Param // [Vocab, Hidden]
	Layers []*Layer
	Norm   *nn.Param // [Hidden]
	Head   *nn.Param // [Vocab, Hidden]; the same Param as Embed when tied
	// Input, when set, prepends virtual tokens (prompt tuning, P-tuning).
	Input InputHook

	ropes map[int]*RopeTable
	local *Model // rope tables of sliding-window layers with their own rope
}

// Layer is one transformer block.
type Layer struct {
	Index            int
	InNorm, PostNorm *nn.Param // before attention, before the MLP
	QNorm, KNorm     *nn.Param // qwen3, gemma3 only
	// AttnPostNorm and MLPPostNorm normalise the attention and MLP outputs
	// before they join the residual stream (Gemma's sandwich norms).
	AttnPostNorm, MLPPostNorm *nn.Param
	Q, K, V, O                *nn.Linear // Q, K, V nil when QKV holds them
	Gate, Up, Down            *nn.Linear // Gate, Up nil when GateUp holds them
	// QKV and GateUp are the fused projections of families that store them
	// so (phi3's qkv_proj: rows q, then k, then v; gate_up_proj: rows gate,
	// then up). They stay fused so that LoRA adapts the fused matrix and
	// merges and exports keep the checkpoint's layout, as PEFT does.
	QKV, GateUp *nn.Linear
	// MoE replaces Gate, Up and Down in the layers of a mixture-of-experts
	// model that have one.
	MoE *MoE
	// Prefix, when set, supplies extra keys and values that every query of
	// this layer attends to before the sequence's own (prefix tuning).
	Prefix KVPrefix
	// AttnOut and MLPOut, when set, transform the attention and MLP outputs
	// before they join the residual stream (bottleneck adapters).
	AttnOut, MLPOut SublayerHook
}

// InputHook prepends virtual tokens to every sequence (prompt tuning,
// P-tuning): their embeddings come from the hook's encoder, take positions
// 0…P-1, are attended to like real tokens and are never trained on.
type InputHook interface {
	Virtual() int
	PromptEncoder
}

// SublayerHook changes a sub-layer's output (a bottleneck adapter after
// attention or after the MLP).
type SublayerHook interface {
	BottleneckHook
}

// KVPrefix supplies Len prefix keys/values per layer from its encoder,
// shared by every sequence of a batch (prefix tuning).
type KVPrefix interface {
	Len() int
	PromptEncoder
}

func linear(name string, in, out int, bias, alloc bool) *nn.Linear {
	w := &nn.Param{Name: name + ".weight", Shape: []int{out, in}}
	if alloc {
		w.Data = make([]float32, out*in)
	}
	l := &nn.Linear{Name: name, In: in, Out: out, W: w}
	if bias {
		l.B = nn.NewParam(name+".bias", out)
	}
	return l
}

// New allocates a model with zero weights.
func New(cfg *Config) *Model { return newModel(cfg, true) }

// newModel builds the module tree; without alloc the linear weights are left
// for the loader to fill in their storage form.
func newModel(cfg *Config, alloc bool) *Model {
	h := cfg.Hidden
	m := &Model{Cfg: cfg, Embed: nn.NewParam("model.embed_tokens.weight", cfg.Vocab, h), Norm: nn.NewParam("model.norm.weight", h)}
	if cfg.TieEmbeddings {
		m.Head = m.Embed
	} else {
		m.Head = nn.NewParam("lm_head.weight", cfg.Vocab, h)
	}
	for i := 0; i < cfg.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := &Layer{
			Index:    i,
			InNorm:   nn.NewParam(p+"input_layernorm.weight", h),
			PostNorm: nn.NewParam(p+"post_attention_layernorm.weight", h),
			O:        linear(p+"self_attn.o_proj", cfg.QDim(), h, cfg.AttnOutBias, alloc),
			Down:     linear(p+"mlp.down_proj", cfg.Intermediate, h, cfg.MLPBias, alloc),
		}
		if cfg.FusedQKV {
			l.QKV = linear(p+"self_attn.qkv_proj", h, cfg.QDim()+2*cfg.KVDim(), cfg.AttnBias, alloc)
		} else {
			l.Q = linear(p+"self_attn.q_proj", h, cfg.QDim(), cfg.AttnBias, alloc)
			l.K = linear(p+"self_attn.k_proj", h, cfg.KVDim(), cfg.AttnBias, alloc)
			l.V = linear(p+"self_attn.v_proj", h, cfg.KVDim(), cfg.AttnBias, alloc)
		}
		switch {
		case cfg.IsMoE(i):
			l.Down = nil
			l.MoE = newMoE(cfg, p, alloc)
		case cfg.FusedGateUp:
			l.GateUp = linear(p+"mlp.gate_up_proj", h, 2*cfg.Intermediate, cfg.MLPBias, alloc)
		default:
			l.Gate = linear(p+"mlp.gate_proj", h, cfg.Intermediate, cfg.MLPBias, alloc)
			l.Up = linear(p+"mlp.up_proj", h, cfg.Intermediate, cfg.MLPBias, alloc)
		}
		if cfg.SandwichNorms {
			// Gemma's post_attention_layernorm follows attention; the MLP's
			// input norm is pre_feedforward_layernorm.
			l.AttnPostNorm = l.PostNorm
			l.PostNorm = nn.NewParam(p+"pre_feedforward_layernorm.weight", h)
			l.MLPPostNorm = nn.NewParam(p+"post_feedforward_layernorm.weight", h)
		}
		if cfg.QKNorm {
			l.QNorm = nn.NewParam(p+"self_attn.q_norm.weight", cfg.HeadDim)
			l.KNorm = nn.NewParam(p+"self_attn.k_norm.weight", cfg.HeadDim)
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}

// Linears lists the projections of a layer, in order: the attention's
// (q, k, v, o or qkv, o), then the MLP's (gate, up, down or gate_up, down).
func (l *Layer) Linears() []*nn.Linear { return append(l.attnLinears(), l.mlpLinears()...) }

func (l *Layer) attnLinears() []*nn.Linear {
	if l.QKV != nil {
		return []*nn.Linear{l.QKV, l.O}
	}
	return []*nn.Linear{l.Q, l.K, l.V, l.O}
}

func (l *Layer) mlpLinears() []*nn.Linear {
	if l.MoE != nil {
		return l.MoE.linears()
	}
	if l.GateUp != nil {
		return []*nn.Linear{l.GateUp, l.Down}
	}
	return []*nn.Linear{l.Gate, l.Up, l.Down}
}

// Linears lists every projection of the model.
func (m *Model) Linears() []*nn.Linear {
	var out []*nn.Linear
	for _, l := range m.Layers {
		out = append(out, l.Linears()...)
	}
	return out
}

// Params lists every base-model parameter once, in Hugging Face order
// (embeddings, layers, final norm, untied head). Weights held in bf16 or
// quantized form are not listed.
func (m *Model) Params() []*nn.Param {
	ps := []*nn.Param{m.Embed}
	for _, l := range m.Layers {
		ps = append(ps, l.InNorm)
		for _, lin := range l.attnLinears() {
			ps = appendLinear(ps, lin)
		}
		if l.QNorm != nil {
			ps = append(ps, l.QNorm, l.KNorm)
		}
		if l.AttnPostNorm != nil {
			ps = append(ps, l.AttnPostNorm)
		}
		ps = append(ps, l.PostNorm)
		if l.MoE != nil {
			ps = appendLinear(ps, l.MoE.Router)
		}
		for _, lin := range l.mlpLinears() {
			ps = appendLinear(ps, lin)
		}
		if l.MLPPostNorm != nil {
			ps = append(ps, l.MLPPostNorm)
		}
	}
	ps = append(ps, m.Norm)
	if m.Head != m.Embed {
		ps = append(ps, m.Head)
	}
	return ps
}

func appendLinear(ps []*nn.Param, l *nn.Linear) []*nn.Param {
	if w := l.F32(); w != nil {
		ps = append(ps, w)
	}
	if l.B != nil {
		ps = append(ps, l.B)
	}
	return ps
}

// ropeFor returns the rotary table of layer i: the local one for a
// sliding-window layer of a model that has one (Gemma 3), else Rope(n).
func (m *Model) ropeFor(i, n int) *RopeTable {
	c := m.Cfg
	if c.LocalRope == nil || !c.IsSliding(i) {
		return m.Rope(n)
	}
	if m.local == nil {
		lc := *c
		lc.Rope, lc.LocalRope = *c.LocalRope, nil
		m.local = &Model{Cfg: &lc}
	}
	return m.local.Rope(n)
}

// Rope returns cos/sin tables covering positions [0, n).
func (m *Model) Rope(n int) *RopeTable {
	if m.ropes == nil {
		m.ropes = map[int]*RopeTable{}
	}
	c := m.Cfg
	dynamic := c.Rope.Type == "dynamic" && c.MaxPositions > 0
	// Dynamic NTK scaling depends on the sequence length past
	// max_position_embeddings; below it, and for every other type, one
	// growing table serves every length.
	key := 0
	if dynamic && n > c.MaxPositions {
		key = n
	}
	// longrope switches frequencies once past the pretrained context: one
	// growing table on each side.
	if c.Rope.Type == "longrope" {
		long := c.ropeLong(n)
		if long {
			key = -1
		}
		t := m.ropes[key]
		if t == nil || len(t.Cos) < n*t.Dim {
			size := max(n, 256)
			seqLen := size
			if !long {
				seqLen = min(size, c.Rope.OriginalMaxPos)
			}
			t = c.newRopeTable(size, seqLen)
			m.ropes[key] = t
		}
		return t
	}
	t := m.ropes[key]
	if t == nil || len(t.Cos) < n*t.Dim {
		size := max(n, 256)
		switch {
		case key != 0:
			size = n
			// Only the newest long table is kept: decoding past the limit
			// would otherwise keep one table per length.
			for k := range m.ropes {
				if k != 0 {
					delete(m.ropes, k)
				}
			}
		case dynamic:
			size = min(size, c.MaxPositions)
		}
		t = c.NewRopeTable(size)
		m.ropes[key] = t
	}
	return t
}

// WithoutAdapters switches every attached method off — adapters on linear
// layers, sub-layer hooks, KV prefixes and virtual input tokens — and
// returns the function that switches them back on. With them off the model
// is its base, so the reference policy of preference and RL training costs
// no second copy of the weights.
func (m *Model) WithoutAdapters() (restore func()) {
	type saved struct {
		l *nn.Linear
		a nn.Adapter
	}
	var lins []saved
	for _, l := range m.Linears() {
		if l.Adapter != nil {
			lins = append(lins, saved{l, l.Adapter})
			l.Adapter = nil
		}
	}
	type hooks struct {
		prefix          KVPrefix
		attnOut, mlpOut SublayerHook
	}
	layers := make([]hooks, len(m.Layers))
	for i, l := range m.Layers {
		layers[i] = hooks{l.Prefix, l.AttnOut, l.MLPOut}
		l.Prefix, l.AttnOut, l.MLPOut = nil, nil, nil
	}
	input := m.Input
	m.Input = nil
	return func() {
		for _, s := range lins {
			s.l.Adapter = s.a
		}
		for i, l := range m.Layers {
			l.Prefix, l.AttnOut, l.MLPOut = layers[i].prefix, layers[i].attnOut, layers[i].mlpOut
		}
		m.Input = input
	}
}
