package gguf

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"gotune/model/family"
	"gotune/safetensors"
)

// Options control FromHF.
type Options struct {
	// Type is the type of the 2-D weights: F32, F16, BF16, Q8_0, Q4_0 or Q4_K.
	// Norms, biases and rope factors always stay F32. A weight whose rows do
	// not fit the type's block size falls back to Q8_0, then F16.
	Type TensorType
	// Name is general.name; the model folder's name when empty.
	Name string
	// Pre overrides tokenizer.ggml.pre (detected from the split regex).
	Pre string
	// Progress, when set, receives the float32 bytes of source tensors
	// converted so far out of the total, tensor by tensor.
	Progress func(done, total int64)
}

var fileTypes = map[TensorType]FileType{F32: FileF32, F16: FileF16, BF16: FileBF16, Q8_0: FileQ8_0, Q4_0: FileQ4_0, Q4_K: FileQ4_K_S}

var qkName = regexp.MustCompile(`^blk\.\d+\.attn_(q|k)\.(weight|bias)$`)

// hparams derives the GGUF shape parameters from a config.
func (c *HFConfig) hparams(arch string) Hparams {
	return Hparams{Arch: arch, Family: c.Family, Traits: c.Traits, Experts: c.Traits.Experts, ExpertFF: c.Traits.ExpertIntermediate,
		Vocab: c.VocabSize, Embd: c.HiddenSize, FF: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, HeadsKV: c.NumKeyValueHeads, HeadDimK: c.HeadDim, HeadDimV: c.HeadDim, RopeDim: c.HeadDim}
}

// needsPermute reports whether q/k rows must be reordered: some llama.cpp
// architectures ("llama") rotate interleaved pairs, while others use the NeoX
// (rotate-half) layout Hugging Face already stores; the family says which.
func needsPermute(arch string) bool {
	fam, err := family.ByGGUFArch(arch)
	return err == nil && fam.PermuteQK
}

// permuteHeads returns the head count for permuting a GGUF tensor (q or k,
// weight or bias, or a LoRA B), 0 when the tensor is not permuted.
func permuteHeads(arch, gguf string, c *HFConfig) int {
	if !needsPermute(arch) {
		return 0
	}
	m := qkName.FindStringSubmatch(gguf)
	if m == nil {
		return 0
	}
	if m[1] == "q" {
		return c.NumAttentionHeads
	}
	return c.NumKeyValueHeads
}

// chooseType picks a 2-D weight's type: the requested one, Q6_K for the output
// projection under 4-bit types (as llama.cpp's quantizer does), and fallbacks
// when the row length does not fit the block size.
func chooseType(want TensorType, name string, rowLen int, tied bool) TensorType {
	isOutput := name == "output.weight" || (tied && name == "token_embd.weight")
	if isOutput && (want == Q4_0 || want == Q4_K) {
		want = Q6_K
	}
	for _, t := range []TensorType{want, Q8_0, F16} {
		if rowLen%t.BlockSize() == 0 {
			return t
		}
	}
	return F32
}

// FromHF converts a Hugging Face model folder (config.json, safetensors
// weights, tokenizer.json, tokenizer_config.json) into a GGUF file llama.cpp
// and Ollama load.
func FromHF(modelDir, outPath string, opt Options) error {
	if _, ok := fileTypes[opt.Type]; !ok {
		return fmt.Errorf("GGUF export type %s is not supported (want F32, F16, BF16, Q8_0, Q4_0 or Q4_K)", opt.Type)
	}
	cfg, err := ReadHFConfig(modelDir)
	if err != nil {
		return err
	}
	arch, err := Arch(cfg.ModelType)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(modelDir, "config.json"), err)
	}
	st, err := safetensors.OpenDir(modelDir)
	if err != nil {
		return err
	}
	defer st.Close()

	kv, err := modelKV(cfg, arch, opt, modelDir)
	if err != nil {
		return err
	}
	vkv, err := vocabKV(modelDir, cfg.VocabSize, cfg, opt.Pre)
	if err != nil {
		return err
	}
	kv = append(kv, vkv...)

	h := cfg.hparams(arch)
	want, _ := expectedTensors(h)
	var tensors []Tensor
	if cfg.Family.RopeFreqs && cfg.RopeScaling.Kind() == "llama3" {
		rf, err := NewTensor("rope_freqs.weight", []int{cfg.HeadDim / 2}, Llama3RopeFactors(cfg.HeadDim, cfg.RopeTheta, cfg.RopeScaling), F32)
		if err != nil {
			return err
		}
		tensors = append(tensors, rf)
	}
	if rs := cfg.RopeScaling; cfg.Family.RopeFactors && (rs.Kind() == "longrope" || rs.Kind() == "su") {
		for _, f := range []struct {
			name string
			v    []float64
		}{{"rope_factors_long.weight", rs.LongFactor}, {"rope_factors_short.weight", rs.ShortFactor}} {
			if len(f.v) != cfg.HeadDim/2 {
				return fmt.Errorf("%s: longrope has %d factors for %s, want %d (head_dim / 2; partial rotary is not supported for GGUF export)", filepath.Join(modelDir, "config.json"), len(f.v), f.name, cfg.HeadDim/2)
			}
			v := make([]float32, len(f.v))
			for i, x := range f.v {
				v[i] = float32(x)
			}
			t, err := NewTensor(f.name, []int{len(v)}, v, F32)
			if err != nil {
				return err
			}
			tensors = append(tensors, t)
		}
	}
	names := slices.Clone(st.Names())
	slices.Sort(names)
	stacks := map[string][]string{} // stacked expert tensor → its experts' HF names
	for _, hf := range names {
		if hf == "lm_head.weight" && cfg.TieWordEmbeddings {
			continue // llama.cpp reuses token_embd when output.weight is absent
		}
		if g, e, ok := cfg.Family.GGUFExpert(hf); ok {
			if e >= cfg.Traits.Experts {
				return fmt.Errorf("%s: tensor %q is expert %d, config.json has %d experts", st.FileOf(hf), hf, e, cfg.Traits.Experts)
			}
			if stacks[g] == nil {
				stacks[g] = make([]string, cfg.Traits.Experts)
			}
			stacks[g][e] = hf
			continue
		}
		name, ok := cfg.Family.GGUFName(hf)
		if !ok {
			if strings.HasSuffix(hf, "rotary_emb.inv_freq") {
				continue
			}
			return fmt.Errorf("%s: tensor %q has no GGUF counterpart for %s", st.FileOf(hf), hf, arch)
		}
		info, _ := st.Info(hf)
		dims := make([]uint64, len(info.Shape))
		for i, s := range info.Shape {
			dims[len(dims)-1-i] = uint64(s)
		}
		wd, known := want[name]
		if !known {
			return fmt.Errorf("%s: tensor %q (%s) is not part of llama.cpp's %s model", st.FileOf(hf), hf, name, arch)
		}
		if !slices.Equal(dims, wd) {
			return fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", st.FileOf(hf), hf, info.Shape, reverseDims(wd))
		}
		typ := F32
		if len(dims) == 2 {
			typ = chooseType(opt.Type, name, int(dims[0]), cfg.TieWordEmbeddings)
		}
		heads := permuteHeads(arch, name, cfg)
		// llama.cpp multiplies by a norm's weight; (1+w) families store 1+w.
		plusOne := cfg.Family.NormPlusOne && strings.HasSuffix(name, "norm.weight")
		tensors = append(tensors, Tensor{Name: name, Dims: dims, Type: typ, Encode: func() ([]byte, error) {
			v, _, err := st.Float32s(hf)
			if err != nil {
				return nil, err
			}
			if plusOne {
				for i := range v {
					v[i]++
				}
			}
			if heads > 0 {
				cols := 1
				if len(dims) == 2 {
					cols = int(dims[0])
				}
				if v, err = PermuteQK(v, len(v)/cols, cols, heads); err != nil {
					return nil, fmt.Errorf("%s: %w", hf, err)
				}
			}
			return Encode(v, typ)
		}})
	}
	stacked, err := stackExperts(st, stacks, want, opt.Type)
	if err != nil {
		return err
	}
	tensors = append(tensors, stacked...)
	slices.SortStableFunc(tensors, func(a, b Tensor) int { return tensorOrder(a.Name) - tensorOrder(b.Name) })
	if opt.Progress != nil {
		trackProgress(tensors, opt.Progress)
	}
	return Write(outPath, kv, tensors)
}

// trackProgress wraps each tensor's encoder to report the bytes (as float32)
// converted so far.
func trackProgress(tensors []Tensor, report func(done, total int64)) {
	var total int64
	size := func(t Tensor) int64 {
		n := int64(4)
		for _, d := range t.Dims {
			n *= int64(d)
		}
		return n
	}
	for _, t := range tensors {
		total += size(t)
	}
	var done atomic.Int64
	for i := range tensors {
		enc, n := tensors[i].Encode, size(tensors[i])
		if enc == nil {
			done.Add(n)
			continue
		}
		tensors[i].Encode = func() ([]byte, error) {
			b, err := enc()
			report(done.Add(n), total)
			return b, err
		}
	}
}

// tensorOrder sorts token_embd and rope factors first, then blocks in
// numeric order, then the output head, as llama.cpp's converter does.
func tensorOrder(name string) int {
	switch name {
	case "token_embd.weight":
		return -2
	case "rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight":
		return -1
	case "output_norm.weight":
		return 1 << 30
	case "output.weight":
		return 1<<30 + 1
	}
	var n int
	fmt.Sscanf(name, "blk.%d.", &n)
	return n
}

func reverseDims(d []uint64) []int {
	out := make([]int, len(d))
	for i, v := range d {
		out[len(d)-1-i] = int(v)
	}
	return out
}

func modelKV(c *HFConfig, arch string, opt Options, modelDir string) ([]KV, error) {
	name := opt.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(modelDir))
	}
	a := arch + "."
	kv := []KV{
		{"general.architecture", arch},
		{"general.type", "model"},
		{"general.name", name},
		{"general.file_type", uint32(fileTypes[opt.Type])},
		{"general.quantization_version", uint32(2)},
		{a + "vocab_size", uint32(c.VocabSize)},
		{a + "context_length", uint32(c.MaxPositionEmbeddings)},
		{a + "embedding_length", uint32(c.HiddenSize)},
		{a + "block_count", uint32(c.NumHiddenLayers)},
		{a + "feed_forward_length", uint32(c.IntermediateSize)},
		{a + "attention.head_count", uint32(c.NumAttentionHeads)},
		{a + "attention.head_count_kv", uint32(c.NumKeyValueHeads)},
		{a + "attention.layer_norm_rms_epsilon", float32(c.RMSNormEps)},
		{a + "rope.freq_base", float32(c.RopeTheta)},
		{a + "rope.dimension_count", uint32(c.HeadDim)},
		{a + "attention.key_length", uint32(c.HeadDim)},
		{a + "attention.value_length", uint32(c.HeadDim)},
	}
	if f := c.Family.GGUFKeys; f != nil {
		extra, err := f(filepath.Join(modelDir, "config.json"), c.Keys, c.Traits)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			kv = append(kv, KV{a + k, extra[k]})
		}
	}
	rs := c.RopeScaling
	switch kind := rs.Kind(); kind {
	case "default":
	case "llama3":
		if !c.Family.RopeFreqs {
			return nil, fmt.Errorf("%s: rope_type llama3 on a %s model is not supported", modelDir, arch)
		}
		// Carried by the rope_freqs.weight tensor.
	case "linear":
		kv = append(kv, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(rs.Factor)})
	case "yarn":
		orig := rs.OriginalMaxPositionEmbeddings
		if orig == 0 {
			orig = c.MaxPositionEmbeddings
		}
		kv = append(kv, KV{a + "rope.scaling.type", "yarn"}, KV{a + "rope.scaling.factor", float32(rs.Factor)},
			KV{a + "rope.scaling.original_context_length", uint32(orig)})
	case "longrope", "su":
		if !c.Family.RopeFactors {
			return nil, fmt.Errorf("%s: rope_type longrope on a %s model is not supported", modelDir, arch)
		}
		// The factors travel as tensors; the attention factor and the
		// pretrained context as keys, as transformers derives them.
		orig := rs.OriginalMaxPositionEmbeddings
		if c.OriginalMaxPositionEmbeddings > 0 {
			orig = c.OriginalMaxPositionEmbeddings
		}
		if orig <= 0 {
			return nil, fmt.Errorf("%s: rope_type longrope needs original_max_position_embeddings", modelDir)
		}
		attn := rs.AttentionFactor
		if attn == 0 {
			attn = 1
			if f := float64(c.MaxPositionEmbeddings) / float64(orig); f > 1 {
				attn = math.Sqrt(1 + math.Log(f)/math.Log(float64(orig)))
			}
		}
		kv = append(kv, KV{a + "rope.scaling.attn_factor", float32(attn)}, KV{a + "rope.scaling.original_context_length", uint32(orig)})
	default:
		return nil, fmt.Errorf("%s: config.json rope_type %q is not supported for GGUF export (default, llama3, linear, yarn, longrope)", modelDir, kind)
	}
	return kv, nil
}

// stackExperts builds llama.cpp's stacked expert tensors, [Experts, out,
// in] in Hugging Face order (GGUF dims [in, out, Experts]): each expert's
// weight in turn.
func stackExperts(st *safetensors.Set, stacks map[string][]string, want map[string][]uint64, typ TensorType) ([]Tensor, error) {
	names := make([]string, 0, len(stacks))
	for g := range stacks {
		names = append(names, g)
	}
	slices.Sort(names)
	var out []Tensor
	for _, g := range names {
		srcs := stacks[g]
		for e, hf := range srcs {
			if hf == "" {
				return nil, fmt.Errorf("%s: expert %d of %s is missing", st.Dir, e, g)
			}
		}
		info, _ := st.Info(srcs[0])
		if len(info.Shape) != 2 {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want a matrix", st.FileOf(srcs[0]), srcs[0], info.Shape)
		}
		dims := []uint64{uint64(info.Shape[1]), uint64(info.Shape[0]), uint64(len(srcs))}
		wd, known := want[g]
		if !known || !slices.Equal(dims, wd) {
			return nil, fmt.Errorf("%s: stacked %s would have dims %v, llama.cpp expects %v", st.FileOf(srcs[0]), g, dims, wd)
		}
		for _, hf := range srcs[1:] {
			if i, _ := st.Info(hf); !slices.Equal(i.Shape, info.Shape) {
				return nil, fmt.Errorf("%s: tensor %q has shape %v, expert 0 has %v", st.FileOf(hf), hf, i.Shape, info.Shape)
			}
		}
		t := chooseType(typ, g, int(dims[0]), false)
		out = append(out, Tensor{Name: g, Dims: dims, Type: t, Encode: func() ([]byte, error) {
			var all []float32
			for _, hf := range srcs {
				v, _, err := st.Float32s(hf)
				if err != nil {
					return nil, err
				}
				all = append(all, v...)
			}
			return Encode(all, t)
		}})
	}
	return out, nil
}
