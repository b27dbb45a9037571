// Package family is the registry of model families: each family (llama,
// mistral, qwen2, qwen3, …) is one file here holding what differs between
// families — the config.json keys and quirks it reads, the Hugging Face
// weight names of a decoder layer (fused or split projections), and its
// llama.cpp architecture and tensor names — registered with one line.
// Loaders, the GGUF converter and export look families up here instead of
// switching on model_type. The package imports nothing of gotune's, so that
// model, gguf, export and peft can all use it.
package family

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Traits are the architecture switches a family sets from its config.json
// keys; the model's forward and backward passes read them.
type Traits struct {
	AttnBias    bool // biases on q, k, v
	AttnOutBias bool // bias on o_proj
	QKNorm      bool // RMSNorm over each head of q and k before RoPE
	// FusedQKV and FusedGateUp hold q/k/v (and gate/up) as one matrix, as
	// the checkpoint does (phi3's qkv_proj and gate_up_proj): LoRA then
	// adapts the fused matrix, as PEFT does, and merges keep the layout.
	FusedQKV    bool
	FusedGateUp bool

	// Gemma: RMSNorm weights act as (1 + weight); SandwichNorms adds norms
	// after attention and after the MLP (post_attention_layernorm is then
	// the attention output's norm and pre_feedforward_layernorm the MLP
	// input's); EmbedScale multiplies the token embeddings (√hidden, in the
	// checkpoint's dtype); the soft caps bound attention scores and final
	// logits smoothly (c·tanh(x/c), 0 when absent); QueryPreAttnScalar
	// replaces head_dim in the attention scale 1/√·.
	NormPlusOne   bool
	SandwichNorms bool
	EmbedScale    float64
	// EmbedScaleInputs: the scale applies to the model's input embeddings
	// (Gemma 2 multiplies inputs_embeds, so prompt-tuning's virtual tokens
	// too); otherwise only to the token embedding table (Gemma 3).
	EmbedScaleInputs   bool
	AttnSoftcap        float64
	FinalSoftcap       float64
	QueryPreAttnScalar float64
	// SlidingWindow is the window of the layers marked in Sliding (one
	// entry per layer; nil when every layer attends to the whole sequence).
	SlidingWindow int
	Sliding       []bool

	// Mixture of experts: Experts experts of ExpertIntermediate width per
	// MoE layer, TopK of them per token; NormTopK renormalises the chosen
	// routing weights to sum to one (Mixtral always, Qwen3-MoE with
	// norm_topk_prob); AuxCoef weighs the load-balancing loss in training
	// (router_aux_loss_coef when output_router_logits is set, else 0).
	// Dense lists the layers that keep a dense MLP (Qwen3-MoE's
	// mlp_only_layers and decoder_sparse_step); nil: none.
	Experts, TopK, ExpertIntermediate int
	NormTopK                          bool
	AuxCoef                           float64
	Dense                             []bool

	// Read back from GGUF files, where config.json's keys are absent: the
	// MLP activation the family fixes and the rotary base of its local
	// (sliding-window) layers; empty and 0 otherwise.
	Activation     string
	LocalRopeTheta float64
}

// IsMoE reports whether layer i has a mixture-of-experts MLP.
func (t *Traits) IsMoE(i int) bool {
	return t.Experts > 0 && (i >= len(t.Dense) || !t.Dense[i])
}

// IsSliding reports whether layer i attends within a sliding window.
func (t *Traits) IsSliding(i int) bool {
	return t.SlidingWindow > 0 && i < len(t.Sliding) && t.Sliding[i]
}

// Dims are the sizes a tensor's shape is written in.
type Dims struct {
	Vocab, Hidden, Intermediate, HeadDim int
	QDim, KVDim                          int
	Experts, ExpertIntermediate          int
}

// Tensor is one weight of every decoder layer.
type Tensor struct {
	HF   string // Hugging Face name after "model.layers.N."
	GGUF string // llama.cpp name after "blk.N."
	// Shape is the Hugging Face shape ([out, in] for a projection).
	Shape func(d Dims) []int
	// When, if set, says whether the tensor exists for these traits
	// (biases, q/k norms); without it the tensor always exists.
	When func(t Traits) bool
	// Optional tensors may be absent from a GGUF file llama.cpp loads.
	Optional bool
}

// Family is one model family.
type Family struct {
	// ModelType is config.json's model_type.
	ModelType string
	// GGUFArch is llama.cpp's general.architecture for an export.
	GGUFArch string
	// LoadsGGUF: a GGUF file of GGUFArch is read back as this family (one
	// family per architecture; mistral exports as llama and reads back as
	// llama).
	LoadsGGUF bool
	// PermuteQK: llama.cpp's architecture rotates interleaved pairs, so q/k
	// rows are reordered from Hugging Face's rotate-half layout on export.
	PermuteQK bool
	// RopeFreqs: llama.cpp reads llama3 rope scaling from a
	// rope_freqs.weight tensor of per-frequency divisors.
	RopeFreqs bool
	// NormPlusOne: the RMSNorm weights act as 1+weight; llama.cpp's
	// converter stores them so (GGUF norms are plain multipliers).
	NormPlusOne bool
	// RopeFactors: llama.cpp reads longrope's short and long factors from
	// rope_factors_short.weight and rope_factors_long.weight.
	RopeFactors bool
	// Modelfile is the Ollama chat family used when the chat template does
	// not tell.
	Modelfile string
	// Configure reads the family's own config.json keys; path names the
	// file in errors.
	Configure func(path string, k Keys, t *Traits) error
	// FromGGUF sets the traits of a GGUF file from its metadata and the
	// tensors it holds.
	FromGGUF func(path string, g GGUFMeta, t *Traits) error
	// Layer lists every per-layer weight, in Hugging Face order.
	Layer []Tensor
	// MoE names the module of an MoE layer's block (Block, under
	// "model.layers.N."), its router and each expert's projections, as the
	// checkpoint spells them: Block.Router.weight and
	// Block.experts.E.{Gate,Up,Down}.weight.
	MoE *MoENames
	// GGUFKeys, when set, gives the family's own GGUF metadata (keys
	// without the "<arch>." prefix; uint32 or float32 values) and refuses
	// configurations llama.cpp would run differently.
	GGUFKeys func(path string, k Keys, t Traits) (map[string]any, error)
}

// GGUFMeta is what FromGGUF reads of a GGUF file (keys with their
// "<arch>." prefix).
type GGUFMeta interface {
	HasTensor(name string) bool
	Int(key string) (int64, bool)
	Float(key string) (float64, bool)
}

// MoENames are the checkpoint names of an MoE block.
type MoENames struct {
	Block, Router, Gate, Up, Down string
	// PEFTExperts is the experts' module path under "model.layers.N." in
	// transformers' module tree, where PEFT names LoRA on the stacked
	// expert weights (target_parameters).
	PEFTExperts string
}

var registry = map[string]*Family{}

// Register adds a family; a second family with the same model_type is a
// programming error.
func Register(f *Family) {
	if _, dup := registry[f.ModelType]; dup {
		panic("family: " + f.ModelType + " registered twice")
	}
	registry[f.ModelType] = f
}

// Lookup returns the family of a config.json model_type.
func Lookup(modelType string) (*Family, error) {
	if f, ok := registry[modelType]; ok {
		return f, nil
	}
	if modelType == "" {
		return nil, fmt.Errorf("model_type is missing")
	}
	return nil, fmt.Errorf("model_type %q is not supported (supported: %s)", modelType, strings.Join(Names(), ", "))
}

// ByGGUFArch returns the family a GGUF file of this architecture loads as.
func ByGGUFArch(arch string) (*Family, error) {
	var archs []string
	for _, f := range registry {
		if f.LoadsGGUF {
			if f.GGUFArch == arch {
				return f, nil
			}
			archs = append(archs, f.GGUFArch)
		}
	}
	sort.Strings(archs)
	return nil, fmt.Errorf("general.architecture %q is not supported (%s)", arch, strings.Join(archs, ", "))
}

// Names lists the registered model_types, sorted.
func Names() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// GGUFArchs lists the architectures a GGUF file may be read back as.
func GGUFArchs() []string {
	var out []string
	for _, f := range registry {
		if f.LoadsGGUF {
			out = append(out, f.GGUFArch)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Has reports whether a per-layer tensor exists for these traits.
func (t Tensor) Has(tr Traits) bool { return t.When == nil || t.When(tr) }

// GGUFName maps a Hugging Face parameter name (without any PEFT prefix) to
// its llama.cpp name; ok is false for names with no GGUF counterpart.
func (f *Family) GGUFName(hf string) (string, bool) {
	switch hf {
	case "model.embed_tokens.weight":
		return "token_embd.weight", true
	case "model.norm.weight":
		return "output_norm.weight", true
	case "lm_head.weight":
		return "output.weight", true
	}
	rest, ok := strings.CutPrefix(hf, "model.layers.")
	if !ok {
		return "", false
	}
	num, suffix, ok := strings.Cut(rest, ".")
	if !ok || num == "" || len(num) > 6 || strings.TrimLeft(num, "0123456789") != "" || (len(num) > 1 && num[0] == '0') {
		return "", false
	}
	for _, t := range f.Layer {
		if t.HF == suffix && t.GGUF != "" {
			return "blk." + num + "." + t.GGUF, true
		}
	}
	return "", false
}

// GGUFExpert maps one expert's weight ("model.layers.N.<block>.experts.E.
// <proj>.weight") to the stacked llama.cpp tensor it goes into
// ("blk.N.ffn_gate_exps.weight") and its index E.
func (f *Family) GGUFExpert(hf string) (name string, expert int, ok bool) {
	if f.MoE == nil {
		return "", 0, false
	}
	rest, ok := strings.CutPrefix(hf, "model.layers.")
	if !ok {
		return "", 0, false
	}
	num, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return "", 0, false
	}
	rest, ok = strings.CutPrefix(rest, f.MoE.Block+".experts.")
	if !ok {
		return "", 0, false
	}
	e, rest, ok := strings.Cut(rest, ".")
	if !ok || e == "" || len(e) > 5 || strings.TrimLeft(e, "0123456789") != "" {
		return "", 0, false
	}
	kind := map[string]string{f.MoE.Gate + ".weight": "gate", f.MoE.Up + ".weight": "up", f.MoE.Down + ".weight": "down"}[rest]
	if kind == "" {
		return "", 0, false
	}
	idx := 0
	for _, c := range e {
		idx = idx*10 + int(c-'0')
	}
	return "blk." + num + ".ffn_" + kind + "_exps.weight", idx, true
}

// ByGGUF returns the family a GGUF file of this architecture loads as;
// with experts, the registered mixture-of-experts family of that
// architecture (llama.cpp's "llama" holds Mixtral too).
func ByGGUF(arch string, experts bool) (*Family, error) {
	if experts {
		for _, n := range Names() {
			if f := registry[n]; f.GGUFArch == arch && f.MoE != nil {
				return f, nil
			}
		}
	}
	return ByGGUFArch(arch)
}

// Keys are config.json's top-level keys, for a family's own reading.
type Keys map[string]json.RawMessage

// ParseKeys splits config.json into its keys.
func ParseKeys(b []byte) (Keys, error) {
	var k Keys
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	return k, nil
}

func (k Keys) present(key string) bool {
	v, ok := k[key]
	return ok && string(v) != "null"
}

// Bool reads a boolean key: def when absent or null.
func (k Keys) Bool(path, key string, def bool) (bool, error) {
	if !k.present(key) {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(k[key], &v); err != nil {
		return def, fmt.Errorf("%s: %s: want true or false, got %s", path, key, k[key])
	}
	return v, nil
}

// Float reads a number key: def when absent or null.
func (k Keys) Float(path, key string, def float64) (float64, error) {
	if !k.present(key) {
		return def, nil
	}
	var v float64
	if err := json.Unmarshal(k[key], &v); err != nil {
		return def, fmt.Errorf("%s: %s: want a number, got %s", path, key, k[key])
	}
	return v, nil
}

// Int reads an integer key: def when absent or null.
func (k Keys) Int(path, key string, def int) (int, error) {
	if !k.present(key) {
		return def, nil
	}
	var v int
	if err := json.Unmarshal(k[key], &v); err != nil {
		return def, fmt.Errorf("%s: %s: want an integer, got %s", path, key, k[key])
	}
	return v, nil
}

// String reads a string key: def when absent or null.
func (k Keys) String(path, key, def string) (string, error) {
	if !k.present(key) {
		return def, nil
	}
	var v string
	if err := json.Unmarshal(k[key], &v); err != nil {
		return def, fmt.Errorf("%s: %s: want a string, got %s", path, key, k[key])
	}
	return v, nil
}

// Strings reads a list of strings: nil when absent or null.
func (k Keys) Strings(path, key string) ([]string, error) {
	if !k.present(key) {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal(k[key], &v); err != nil {
		return nil, fmt.Errorf("%s: %s: want a list of strings, got %s", path, key, k[key])
	}
	return v, nil
}

func jsonInts(raw json.RawMessage, v *[]int) error { return json.Unmarshal(raw, v) }

// Shapes used by the layer tables.
func hidden(d Dims) []int       { return []int{d.Hidden} }
func headDim(d Dims) []int      { return []int{d.HeadDim} }
func qProj(d Dims) []int        { return []int{d.QDim, d.Hidden} }
func kvProj(d Dims) []int       { return []int{d.KVDim, d.Hidden} }
func oProj(d Dims) []int        { return []int{d.Hidden, d.QDim} }
func upProj(d Dims) []int       { return []int{d.Intermediate, d.Hidden} }
func downProj(d Dims) []int     { return []int{d.Hidden, d.Intermediate} }
func qBias(d Dims) []int        { return []int{d.QDim} }
func kvBias(d Dims) []int       { return []int{d.KVDim} }
func attnBias(t Traits) bool    { return t.AttnBias }
func attnOutBias(t Traits) bool { return t.AttnOutBias }
func qkNorm(t Traits) bool      { return t.QKNorm }

// llamaLayer is the decoder layer of the Llama family, with llama.cpp's
// names; families with the same layer reuse it.
func llamaLayer(biasOptional bool) []Tensor {
	return []Tensor{
		{HF: "input_layernorm.weight", GGUF: "attn_norm.weight", Shape: hidden},
		{HF: "self_attn.q_proj.weight", GGUF: "attn_q.weight", Shape: qProj},
		{HF: "self_attn.q_proj.bias", GGUF: "attn_q.bias", Shape: qBias, When: attnBias, Optional: biasOptional},
		{HF: "self_attn.k_proj.weight", GGUF: "attn_k.weight", Shape: kvProj},
		{HF: "self_attn.k_proj.bias", GGUF: "attn_k.bias", Shape: kvBias, When: attnBias, Optional: biasOptional},
		{HF: "self_attn.v_proj.weight", GGUF: "attn_v.weight", Shape: kvProj},
		{HF: "self_attn.v_proj.bias", GGUF: "attn_v.bias", Shape: kvBias, When: attnBias, Optional: biasOptional},
		{HF: "self_attn.o_proj.weight", GGUF: "attn_output.weight", Shape: oProj},
		{HF: "self_attn.o_proj.bias", GGUF: "attn_output.bias", Shape: hidden, When: attnOutBias, Optional: biasOptional},
		{HF: "self_attn.q_norm.weight", GGUF: "attn_q_norm.weight", Shape: headDim, When: qkNorm},
		{HF: "self_attn.k_norm.weight", GGUF: "attn_k_norm.weight", Shape: headDim, When: qkNorm},
		{HF: "post_attention_layernorm.weight", GGUF: "ffn_norm.weight", Shape: hidden},
		{HF: "mlp.gate_proj.weight", GGUF: "ffn_gate.weight", Shape: upProj},
		{HF: "mlp.up_proj.weight", GGUF: "ffn_up.weight", Shape: upProj},
		{HF: "mlp.down_proj.weight", GGUF: "ffn_down.weight", Shape: downProj},
	}
}
