package gguf

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gotune/model/family"
)

// keySpec is one metadata key llama.cpp reads, with the exact type its
// loader insists on (it refuses a key stored with another type).
type keySpec struct {
	key      string
	typ      ValueType
	elem     ValueType // for arrays
	required bool
}

func modelKeySpecs(arch string) []keySpec {
	a := arch + "."
	return []keySpec{
		{"general.architecture", TypeString, 0, true},
		{"general.name", TypeString, 0, true},
		{"general.file_type", TypeUint32, 0, true},
		{"general.quantization_version", TypeUint32, 0, false},
		{"general.alignment", TypeUint32, 0, false},
		{a + "context_length", TypeUint32, 0, true},
		{a + "embedding_length", TypeUint32, 0, true},
		{a + "block_count", TypeUint32, 0, true},
		{a + "feed_forward_length", TypeUint32, 0, true},
		{a + "attention.head_count", TypeUint32, 0, true},
		{a + "attention.head_count_kv", TypeUint32, 0, true},
		{a + "attention.layer_norm_rms_epsilon", TypeFloat32, 0, true},
		{a + "rope.freq_base", TypeFloat32, 0, true},
		{a + "rope.dimension_count", TypeUint32, 0, false},
		{a + "attention.key_length", TypeUint32, 0, false},
		{a + "attention.value_length", TypeUint32, 0, false},
		{a + "vocab_size", TypeUint32, 0, false},
		{a + "rope.scaling.type", TypeString, 0, false},
		{a + "rope.scaling.factor", TypeFloat32, 0, false},
		{a + "rope.scaling.original_context_length", TypeUint32, 0, false},
		{a + "rope.scaling.attn_factor", TypeFloat32, 0, false},
		{a + "attention.sliding_window", TypeUint32, 0, false},
		{a + "attn_logit_softcapping", TypeFloat32, 0, false},
		{a + "final_logit_softcapping", TypeFloat32, 0, false},
		{a + "expert_count", TypeUint32, 0, false},
		{a + "expert_used_count", TypeUint32, 0, false},
		{a + "expert_feed_forward_length", TypeUint32, 0, false},
		{"tokenizer.ggml.model", TypeString, 0, true},
		{"tokenizer.ggml.pre", TypeString, 0, false},
		{"tokenizer.ggml.tokens", TypeArray, TypeString, true},
		{"tokenizer.ggml.token_type", TypeArray, TypeInt32, true},
		{"tokenizer.ggml.scores", TypeArray, TypeFloat32, false},
		{"tokenizer.ggml.merges", TypeArray, TypeString, false},
		{"tokenizer.ggml.bos_token_id", TypeUint32, 0, false},
		{"tokenizer.ggml.eos_token_id", TypeUint32, 0, true},
		{"tokenizer.ggml.unknown_token_id", TypeUint32, 0, false},
		{"tokenizer.ggml.padding_token_id", TypeUint32, 0, false},
		{"tokenizer.ggml.add_bos_token", TypeBool, 0, false},
		{"tokenizer.ggml.add_eos_token", TypeBool, 0, false},
		{"tokenizer.ggml.add_space_prefix", TypeBool, 0, false},
		// Optional in llama.cpp (llama_model_chat_template returns NULL
		// without it): a base model with no chat template must export.
		{"tokenizer.chat_template", TypeString, 0, false},
	}
}

// Hparams are the shape-defining values of a model, as GGUF stores them.
type Hparams struct {
	Arch                               string
	Family                             *family.Family
	Traits                             family.Traits
	Vocab, Embd, FF, Layers            int
	Heads, HeadsKV, HeadDimK, HeadDimV int
	RopeDim                            int
	Experts, ExpertFF                  int
}

// expectedTensors lists every tensor llama.cpp's loader creates for the
// architecture, with GGUF dims; optional ones may be absent.
func expectedTensors(h Hparams) (map[string][]uint64, map[string]bool) {
	u := func(v ...int) []uint64 {
		out := make([]uint64, len(v))
		for i, x := range v {
			out[i] = uint64(x)
		}
		return out
	}
	want := map[string][]uint64{
		"token_embd.weight":  u(h.Embd, h.Vocab),
		"output_norm.weight": u(h.Embd),
		// Absent output.weight means tied embeddings: llama.cpp reuses token_embd.
		"output.weight": u(h.Embd, h.Vocab),
	}
	optional := map[string]bool{"output.weight": true}
	if h.Family == nil {
		return want, optional
	}
	d := family.Dims{Vocab: h.Vocab, Hidden: h.Embd, Intermediate: h.FF, HeadDim: h.HeadDimK,
		QDim: h.Heads * h.HeadDimK, KVDim: h.HeadsKV * h.HeadDimK, Experts: h.Experts, ExpertIntermediate: h.ExpertFF}
	for i := 0; i < h.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		for _, t := range h.Family.Layer {
			// An optional tensor (llama's attention biases) may be there
			// whatever the traits say.
			if t.GGUF == "" || !(t.Has(h.Traits) || t.Optional) {
				continue
			}
			shape := t.Shape(d)
			dims := make([]int, len(shape))
			for j, s := range shape {
				dims[len(shape)-1-j] = s
			}
			want[p+t.GGUF] = u(dims...)
			if t.Optional {
				optional[p+t.GGUF] = true
			}
		}
	}
	if h.Family.RopeFreqs {
		want["rope_freqs.weight"] = u(h.RopeDim / 2)
		optional["rope_freqs.weight"] = true
	}
	if h.Family.RopeFactors {
		for _, n := range []string{"rope_factors_long.weight", "rope_factors_short.weight"} {
			want[n] = u(h.RopeDim / 2)
			optional[n] = true
		}
	}
	return want, optional
}

// CheckModel reports everything about a model file that would stop llama.cpp
// from loading it or make it run wrongly: missing or mistyped metadata,
// inconsistent hyperparameters, token tables of the wrong length, and
// missing, unexpected or misshapen tensors. An empty result means the file
// passes.
func CheckModel(f *File) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	arch, ok := f.String("general.architecture")
	if !ok {
		return []error{fmt.Errorf("%s: general.architecture is missing or not a string", f.Path)}
	}
	experts, _ := f.Int(arch + ".expert_count")
	fam, err := family.ByGGUF(arch, experts > 0)
	if err != nil {
		return []error{fmt.Errorf("%s: architecture %q is not one this checker knows (%s)", f.Path, arch, strings.Join(family.GGUFArchs(), ", "))}
	}
	var traits family.Traits
	if err := fam.FromGGUF(f.Path, f, &traits); err != nil {
		return []error{err}
	}
	for _, s := range modelKeySpecs(arch) {
		v, present := f.Lookup(s.key)
		if !present {
			if s.required {
				fail("%s: required key %s is missing", f.Path, s.key)
			}
			continue
		}
		t, et, _ := KV{Value: v}.Type()
		if t != s.typ || (t == TypeArray && et != s.elem) {
			want, got := s.typ.String(), t.String()
			if s.typ == TypeArray {
				want, got = "array of "+s.elem.String(), "array of "+et.String()
			}
			fail("%s: key %s has type %s, llama.cpp reads it as %s", f.Path, s.key, got, want)
		}
	}
	geti := func(key string) int {
		v, _ := f.Int(key)
		return int(v)
	}
	a := arch + "."
	traits.Experts = int(experts)
	if experts > 0 {
		traits.TopK = max(int(geti0(f, arch+".expert_used_count")), 1)
	}
	h := Hparams{Arch: arch, Family: fam, Traits: traits, Experts: int(experts), Embd: geti(a + "embedding_length"), FF: geti(a + "feed_forward_length"),
		Layers: geti(a + "block_count"), Heads: geti(a + "attention.head_count"), HeadsKV: geti(a + "attention.head_count_kv")}
	if geti(a+"context_length") <= 0 {
		fail("%s: %scontext_length must be positive", f.Path, a)
	}
	for _, c := range []struct {
		k string
		v int
	}{{"embedding_length", h.Embd}, {"feed_forward_length", h.FF}, {"block_count", h.Layers}, {"attention.head_count", h.Heads}, {"attention.head_count_kv", h.HeadsKV}} {
		if c.v <= 0 {
			fail("%s: %s%s must be positive", f.Path, a, c.k)
		}
	}
	if len(errs) > 0 {
		return errs // shapes cannot be derived
	}
	h.ExpertFF = h.FF
	if v, ok := f.Int(a + "expert_feed_forward_length"); ok {
		h.ExpertFF = int(v)
	}
	if h.Heads%h.HeadsKV != 0 {
		fail("%s: head_count %d is not a multiple of head_count_kv %d", f.Path, h.Heads, h.HeadsKV)
	}
	// llama.cpp defaults the head size to embedding_length/head_count; a model
	// whose head size differs must say so in key_length/value_length.
	h.HeadDimK, h.HeadDimV = h.Embd/h.Heads, h.Embd/h.Heads
	if v, ok := f.Int(a + "attention.key_length"); ok {
		h.HeadDimK = int(v)
	}
	if v, ok := f.Int(a + "attention.value_length"); ok {
		h.HeadDimV = int(v)
	}
	h.RopeDim = h.HeadDimK
	if v, ok := f.Int(a + "rope.dimension_count"); ok {
		h.RopeDim = int(v)
	}
	if eps, _ := f.Float(a + "attention.layer_norm_rms_epsilon"); !(eps > 0 && eps < 1) {
		fail("%s: %sattention.layer_norm_rms_epsilon = %g, want a small positive number", f.Path, a, eps)
	}
	if base, _ := f.Float(a + "rope.freq_base"); !(base > 0) || math.IsInf(base, 0) {
		fail("%s: %srope.freq_base = %g, want positive", f.Path, a, base)
	}
	if st, ok := f.String(a + "rope.scaling.type"); ok {
		switch st {
		case "none":
		case "linear", "yarn":
			if fac, _ := f.Float(a + "rope.scaling.factor"); !(fac > 0) {
				fail("%s: rope scaling %q needs a positive %srope.scaling.factor", f.Path, st, a)
			}
			if _, ok := f.Int(a + "rope.scaling.original_context_length"); st == "yarn" && !ok {
				fail("%s: yarn rope scaling needs %srope.scaling.original_context_length", f.Path, a)
			}
		default:
			fail("%s: %srope.scaling.type %q is not one llama.cpp knows (none, linear, yarn)", f.Path, a, st)
		}
	}

	// Tokenizer tables.
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	h.Vocab = len(tokens)
	if h.Vocab == 0 {
		fail("%s: tokenizer.ggml.tokens is empty", f.Path)
	}
	if types, ok := f.Ints("tokenizer.ggml.token_type"); ok && len(types) != h.Vocab {
		fail("%s: tokenizer.ggml.token_type has %d entries for %d tokens", f.Path, len(types), h.Vocab)
	}
	if v, ok := f.Int(a + "vocab_size"); ok && int(v) != h.Vocab {
		fail("%s: %svocab_size %d differs from the %d tokens", f.Path, a, v, h.Vocab)
	}
	model, _ := f.String("tokenizer.ggml.model")
	switch model {
	case "gpt2":
		if m, _ := f.Strings("tokenizer.ggml.merges"); len(m) == 0 {
			fail("%s: a gpt2 (byte-level BPE) tokenizer needs tokenizer.ggml.merges", f.Path)
		}
		if p, _ := f.String("tokenizer.ggml.pre"); p == "" {
			fail("%s: tokenizer.ggml.pre is missing: llama.cpp would fall back to the 'default' pre-tokenizer and split text differently", f.Path)
		}
	case "llama":
		s, ok := f.Float32s("tokenizer.ggml.scores")
		if !ok {
			fail("%s: a llama (SentencePiece) tokenizer needs tokenizer.ggml.scores", f.Path)
		} else if len(s) != h.Vocab {
			fail("%s: tokenizer.ggml.scores has %d entries for %d tokens", f.Path, len(s), h.Vocab)
		}
	case "":
	default:
		fail("%s: tokenizer.ggml.model %q is not gpt2 or llama", f.Path, model)
	}
	for _, k := range []string{"bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"} {
		if id, ok := f.Int("tokenizer.ggml." + k); ok && (id < 0 || int(id) >= h.Vocab) {
			fail("%s: tokenizer.ggml.%s = %d is outside the %d tokens", f.Path, k, id, h.Vocab)
		}
	}
	addBOS, set := f.Bool("tokenizer.ggml.add_bos_token")
	if _, ok := f.Int("tokenizer.ggml.bos_token_id"); !ok && (addBOS || (!set && model == "llama")) {
		fail("%s: the tokenizer adds a BOS token but tokenizer.ggml.bos_token_id is missing", f.Path)
	}

	// Tensors: llama.cpp refuses a file with missing, extra or misshapen tensors.
	want, optional := expectedTensors(h)
	seen := map[string]bool{}
	for _, ti := range f.Tensors() {
		seen[ti.Name] = true
		dims, ok := want[ti.Name]
		if !ok {
			fail("%s: unexpected tensor %s (llama.cpp's %s loader would not use it and refuses the file)", f.Path, ti.Name, arch)
			continue
		}
		if !slices.Equal(ti.Dims, dims) {
			fail("%s: tensor %s has dims %v, want %v", f.Path, ti.Name, ti.Dims, dims)
		}
		if len(ti.Dims) == 1 && ti.Type != F32 {
			fail("%s: tensor %s is %s; norms and biases must stay F32", f.Path, ti.Name, ti.Type)
		}
	}
	var missing []string
	for name := range want {
		if !seen[name] && !optional[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	for _, name := range missing {
		fail("%s: tensor %s is missing", f.Path, name)
	}
	return errs
}

func geti0(f *File, key string) int64 {
	v, _ := f.Int(key)
	return v
}
