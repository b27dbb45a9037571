package model

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gotune/gguf"
	"gotune/model/family"
	"gotune/nn"
)

// LoadGGUF reads a model from a GGUF file (llama, qwen2 and qwen3
// architectures, as llama.cpp and gotune export them): the metadata becomes
// a Config, tensors are mapped back to Hugging Face names, q/k rows of the
// llama architecture are returned to Hugging Face's rotate-half order, and
// every weight (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) is expanded to
// float32. Quantized files therefore load with their rounding baked in.
func LoadGGUF(path string, opt LoadOptions) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := ggufConfig(f)
	if err != nil {
		return nil, err
	}
	if err := checkMemory(cfg, LoadOptions{}, path); err != nil { // New allocates float32 first
		return nil, err
	}
	m := New(cfg)
	stacks := map[string][]float32{} // stacked expert tensors, decoded once
	for _, p := range m.Params() {
		if name, e, ok := cfg.Family.GGUFExpert(p.Name); ok {
			if err := readGGUFExpert(f, stacks, name, e, p); err != nil {
				return nil, err
			}
			continue
		}
		if err := readGGUFParam(f, cfg, p); err != nil {
			return nil, err
		}
	}
	if err := m.StoreLinears(opt.storage()); err != nil {
		return nil, err
	}
	return m, nil
}

// ggufConfig turns GGUF metadata into the architecture description that
// config.json would give.
func ggufConfig(f *gguf.File) (*Config, error) {
	arch, ok := f.String("general.architecture")
	if !ok {
		return nil, fmt.Errorf("%s: general.architecture is missing", f.Path)
	}
	experts, _ := f.Int(arch + ".expert_count")
	fam, err := family.ByGGUF(arch, experts > 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	a := arch + "."
	req := func(key string) (int, error) {
		v, ok := f.Int(a + key)
		if !ok {
			if _, present := f.Lookup(a + key); present {
				return 0, fmt.Errorf("%s: %s%s must be a single integer (per-layer values are not supported)", f.Path, a, key)
			}
			return 0, fmt.Errorf("%s: %s%s is missing", f.Path, a, key)
		}
		if v <= 0 || v > math.MaxInt32 {
			return 0, fmt.Errorf("%s: %s%s must be positive, got %d", f.Path, a, key, v)
		}
		return int(v), nil
	}
	c := &Config{ModelType: fam.ModelType, Family: fam, Act: "silu", Pad: -1}
	if c.Hidden, err = req("embedding_length"); err != nil {
		return nil, err
	}
	if c.Intermediate, err = req("feed_forward_length"); err != nil {
		return nil, err
	}
	if c.Layers, err = req("block_count"); err != nil {
		return nil, err
	}
	if c.Heads, err = req("attention.head_count"); err != nil {
		return nil, err
	}
	c.KVHeads = c.Heads
	if _, ok := f.Lookup(a + "attention.head_count_kv"); ok {
		if c.KVHeads, err = req("attention.head_count_kv"); err != nil {
			return nil, err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("%s: %sattention.head_count %d is not a multiple of head_count_kv %d", f.Path, a, c.Heads, c.KVHeads)
	}
	if _, ok := f.Lookup(a + "attention.key_length"); ok {
		if c.HeadDim, err = req("attention.key_length"); err != nil {
			return nil, err
		}
	} else {
		if c.Hidden%c.Heads != 0 {
			return nil, fmt.Errorf("%s: %sembedding_length %d is not a multiple of head_count %d and attention.key_length is absent", f.Path, a, c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%s: head dimension %d must be even for rotary embeddings", f.Path, c.HeadDim)
	}
	if vl, ok := f.Int(a + "attention.value_length"); ok && int(vl) != c.HeadDim {
		return nil, fmt.Errorf("%s: %sattention.value_length %d differs from key_length %d, which Llama-family models do not do", f.Path, a, vl, c.HeadDim)
	}
	if n, ok := f.Int(a + "context_length"); ok && n > 0 {
		c.MaxPositions = int(n)
	}
	c.RMSNormEps = 1e-6
	if v, ok := f.Float(a + "attention.layer_norm_rms_epsilon"); ok {
		c.RMSNormEps = decimal32(v)
	}
	if c.RMSNormEps <= 0 {
		return nil, fmt.Errorf("%s: %sattention.layer_norm_rms_epsilon must be positive, got %v", f.Path, a, c.RMSNormEps)
	}

	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		return nil, fmt.Errorf("%s: tensor token_embd.weight is missing", f.Path)
	}
	if len(emb.Dims) != 2 || int(emb.Dims[0]) != c.Hidden {
		return nil, fmt.Errorf("%s: tensor token_embd.weight has dims %v, want [%d, vocab]", f.Path, emb.Dims, c.Hidden)
	}
	c.Vocab = int(emb.Dims[1])
	if v, ok := f.Int(a + "vocab_size"); ok && int(v) != c.Vocab {
		return nil, fmt.Errorf("%s: %svocab_size %d but token_embd.weight holds %d rows", f.Path, a, v, c.Vocab)
	}
	_, hasOutput := f.Tensor("output.weight")
	c.TieEmbeddings = !hasOutput
	if err := fam.FromGGUF(f.Path, f, &c.Traits); err != nil {
		return nil, err
	}
	if c.Activation != "" {
		c.Act = c.Activation
	}

	tokID := func(key string) []int {
		if v, ok := f.Int(key); ok && v >= 0 {
			return []int{int(v)}
		}
		return nil
	}
	c.BOS = tokID("tokenizer.ggml.bos_token_id")
	c.EOS = tokID("tokenizer.ggml.eos_token_id")
	if p := tokID("tokenizer.ggml.padding_token_id"); p != nil {
		c.Pad = p[0]
	}
	if err := ggufRope(f, c, a); err != nil {
		return nil, err
	}
	if c.LocalRopeTheta > 0 {
		c.LocalRope = &Rope{Type: "default", Theta: c.LocalRopeTheta, Factor: 1, PartialFactor: c.Rope.PartialFactor, OriginalMaxPos: c.MaxPositions}
	}
	if err := c.checkSizes(f.Path); err != nil {
		return nil, err
	}
	return c, nil
}

// decimal32 undoes float32 storage of a value written from a short decimal
// (1e-5 stored as 9.99999974e-06), so a config read from GGUF equals the
// config.json it came from.
func decimal32(v float64) float64 {
	s := strconv.FormatFloat(float64(float32(v)), 'g', -1, 32)
	d, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return v
	}
	return d
}

func ggufRope(f *gguf.File, c *Config, a string) error {
	r := Rope{Type: "default", Theta: 10000, Factor: 1, PartialFactor: 1, BetaFast: 32, BetaSlow: 1, Truncate: true, OriginalMaxPos: c.MaxPositions}
	if v, ok := f.Float(a + "rope.freq_base"); ok {
		r.Theta = decimal32(v)
	}
	if r.Theta <= 0 || math.IsNaN(r.Theta) {
		return fmt.Errorf("%s: %srope.freq_base must be positive, got %v", f.Path, a, r.Theta)
	}
	if n, ok := f.Int(a + "rope.dimension_count"); ok && int(n) != c.HeadDim {
		if n <= 0 || int(n) > c.HeadDim || n%2 != 0 {
			return fmt.Errorf("%s: %srope.dimension_count %d does not fit head dimension %d", f.Path, a, n, c.HeadDim)
		}
		r.PartialFactor = float64(n) / float64(c.HeadDim)
	}
	if n, ok := f.Int(a + "rope.scaling.original_context_length"); ok && n > 0 {
		r.OriginalMaxPos = int(n)
	}
	typ, _ := f.String(a + "rope.scaling.type")
	factor, hasFactor := f.Float(a + "rope.scaling.factor")
	switch typ {
	case "", "none":
	case "linear", "yarn":
		if !hasFactor || factor <= 0 {
			return fmt.Errorf("%s: %srope.scaling.type %q needs a positive %srope.scaling.factor", f.Path, a, typ, a)
		}
		r.Type, r.Factor = typ, decimal32(factor)
	default:
		return fmt.Errorf("%s: %srope.scaling.type %q is not supported (none, linear, yarn)", f.Path, a, typ)
	}
	c.Rope = r
	if _, ok := f.Tensor("rope_factors_long.weight"); ok {
		return ggufLongRope(f, c, a)
	}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		if typ != "" && typ != "none" {
			return fmt.Errorf("%s: tensor rope_freqs.weight together with %srope.scaling.type %q is not supported", f.Path, a, typ)
		}
		freqs, _, err := f.TensorFloat32s("rope_freqs.weight")
		if err != nil {
			return fmt.Errorf("%s: tensor rope_freqs.weight: %w", f.Path, err)
		}
		if err := c.llama3FromFactors(freqs); err != nil {
			return fmt.Errorf("%s: tensor rope_freqs.weight: %w", f.Path, err)
		}
	}
	return nil
}

// llama3FromFactors recovers llama3 rope scaling parameters from the
// per-frequency divisors llama.cpp stores. The divisor of frequency x is 1
// where s(x) > 1, the factor where s(x) < 0 and 1/((1−s)/factor + s) in
// between, with s linear in x: s = (old·x/2π − low)/(high − low). Only the
// line s(x) matters (old, low and high scaled together give the same rope),
// so we fit it to the blended frequencies, pick any line consistent with the
// others when there are too few, and check the result reproduces every
// divisor.
func (c *Config) llama3FromFactors(div []float32) error {
	half := int(float64(c.HeadDim)*c.Rope.PartialFactor) / 2
	if len(div) != half {
		return fmt.Errorf("holds %d values, want %d (rotary dimensions / 2)", len(div), half)
	}
	factor := 1.0
	for i, d := range div {
		if !(d > 0) || math.IsInf(float64(d), 0) {
			return fmt.Errorf("value %d is %v, want a positive divisor", i, d)
		}
		factor = math.Max(factor, float64(d))
	}
	if factor == 1 {
		return nil // all ones: no scaling at all
	}
	// inverse frequencies exactly as invFreq computes them
	base := *c
	base.Rope.Type = "default"
	x, _ := base.invFreq(0)
	const tol = 1e-6
	var hiX, loX = math.Inf(1), math.Inf(-1) // smallest x left unscaled, largest x fully scaled
	var mx, ms []float64
	for i, d := range div {
		dv := float64(d)
		switch {
		case math.Abs(dv-1) <= tol:
			hiX = math.Min(hiX, x[i])
		case math.Abs(dv-factor) <= tol*factor:
			loX = math.Max(loX, x[i])
		default:
			mx = append(mx, x[i])
			ms = append(ms, (1/dv-1/factor)/(1-1/factor))
		}
	}
	var slope, icept float64
	switch {
	case len(mx) >= 2:
		var sx, ss, sxx, sxs float64
		for i := range mx {
			sx += mx[i]
			ss += ms[i]
			sxx += mx[i] * mx[i]
			sxs += mx[i] * ms[i]
		}
		n := float64(len(mx))
		slope = (n*sxs - sx*ss) / (n*sxx - sx*sx)
		icept = (ss - slope*sx) / n
	case len(mx) == 1:
		// Through the one blended point, steep enough to put the unscaled
		// frequencies above 1 and the scaled ones below 0.
		x1, s1 := mx[0], ms[0]
		need := s1 / x1 // keeps s(0) < 0
		if !math.IsInf(loX, -1) {
			need = math.Max(need, s1/(x1-loX))
		}
		if !math.IsInf(hiX, 1) {
			need = math.Max(need, (1-s1)/(hiX-x1))
		}
		slope = 2 * need
		icept = s1 - slope*x1
	default:
		if math.IsInf(loX, -1) {
			return fmt.Errorf("no frequency is scaled by the largest divisor %v", factor)
		}
		if math.IsInf(hiX, 1) {
			hiX = 2 * loX
		}
		// s = -0.5 at loX and 1.5 at hiX
		slope = 2 / (hiX - loX)
		icept = -0.5 - slope*loX
	}
	if !(slope > 0) || !(icept < 0) {
		return fmt.Errorf("divisors do not follow llama3 rope scaling (fitted slope %g, intercept %g)", slope, icept)
	}
	old := c.Rope.OriginalMaxPos
	if old <= 0 {
		old = 8192
	}
	span := float64(old) / (2 * math.Pi * slope) // high − low
	low := -icept * span
	r := c.Rope
	r.Type, r.Factor, r.LowFreqFactor, r.HighFreqFactor, r.OriginalMaxPos = "llama3", factor, low, low+span, old
	check := *c
	check.Rope = r
	got, _ := check.invFreq(0)
	for i := range got {
		want := x[i] / float64(div[i])
		if math.Abs(got[i]-want) > 1e-5*want {
			return fmt.Errorf("divisors do not follow llama3 rope scaling (frequency %d: reconstructed %g, stored %g)", i, x[i]/got[i], div[i])
		}
	}
	c.Rope = r
	return nil
}

// readGGUFParam fills one parameter from its GGUF tensor.
func readGGUFParam(f *gguf.File, c *Config, p *nn.Param) error {
	name, ok := c.Family.GGUFName(p.Name)
	if !ok {
		return fmt.Errorf("%s: parameter %s has no GGUF counterpart", f.Path, p.Name)
	}
	info, ok := f.Tensor(name)
	if !ok {
		return fmt.Errorf("%s: tensor %s (%s) is missing", f.Path, name, p.Name)
	}
	if !slices.Equal(info.Shape(), p.Shape) {
		return fmt.Errorf("%s: tensor %s has shape %v, the metadata implies %v", f.Path, name, info.Shape(), p.Shape)
	}
	v, _, err := f.TensorFloat32s(name)
	if err != nil {
		return fmt.Errorf("%s: tensor %s: %w", f.Path, name, err)
	}
	if len(v) != len(p.Data) {
		return fmt.Errorf("%s: tensor %s decoded to %d values, want %d", f.Path, name, len(v), len(p.Data))
	}
	if heads := unpermuteHeads(c, p.Name); heads > 0 {
		cols := 1
		if len(p.Shape) == 2 {
			cols = p.Shape[1]
		}
		if v, err = gguf.UnpermuteQK(v, p.Shape[0], cols, heads); err != nil {
			return fmt.Errorf("%s: tensor %s: %w", f.Path, name, err)
		}
	}
	copy(p.Data, v)
	if c.NormPlusOne && strings.HasSuffix(name, "norm.weight") {
		// llama.cpp's file holds 1+w for (1+w) norms.
		for i := range p.Data {
			p.Data[i]--
		}
	}
	for i, x := range p.Data {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%s: tensor %s holds a non-finite value at %d", f.Path, name, i)
		}
	}
	return nil
}

// readGGUFExpert fills one expert's weight from its slice of a stacked
// llama.cpp tensor ([Experts, out, in] in Hugging Face order).
func readGGUFExpert(f *gguf.File, stacks map[string][]float32, name string, e int, p *nn.Param) error {
	v, ok := stacks[name]
	if !ok {
		info, found := f.Tensor(name)
		if !found {
			return fmt.Errorf("%s: tensor %s (%s) is missing", f.Path, name, p.Name)
		}
		if len(info.Dims) != 3 || int(info.Dims[0]) != p.Shape[1] || int(info.Dims[1]) != p.Shape[0] {
			return fmt.Errorf("%s: tensor %s has dims %v, want [%d, %d, experts]", f.Path, name, info.Dims, p.Shape[1], p.Shape[0])
		}
		var err error
		if v, _, err = f.TensorFloat32s(name); err != nil {
			return fmt.Errorf("%s: tensor %s: %w", f.Path, name, err)
		}
		stacks[name] = v
	}
	n := len(p.Data)
	if (e+1)*n > len(v) {
		return fmt.Errorf("%s: tensor %s holds no expert %d", f.Path, name, e)
	}
	copy(p.Data, v[e*n:(e+1)*n])
	for i, x := range p.Data {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%s: tensor %s holds a non-finite value in expert %d at %d", f.Path, name, e, i)
		}
	}
	return nil
}

// unpermuteHeads is the head count whose row order llama.cpp's architecture
// interleaved in this parameter (families with PermuteQK), 0 for the others.
func unpermuteHeads(c *Config, hf string) int {
	if !c.Family.PermuteQK {
		return 0
	}
	switch {
	case !strings.HasPrefix(hf, "model.layers."):
		return 0
	case strings.Contains(hf, ".self_attn.q_proj."):
		return c.Heads
	case strings.Contains(hf, ".self_attn.k_proj."):
		return c.KVHeads
	}
	return 0
}

// ggufLongRope reads longrope scaling back: the factors from the
// rope_factors_short/long tensors, the attention factor and the pretrained
// context from the rope.scaling keys.
func ggufLongRope(f *gguf.File, c *Config, a string) error {
	r := &c.Rope
	half := int(float64(c.HeadDim)*r.PartialFactor) / 2
	for _, t := range []struct {
		name string
		dst  *[]float64
	}{{"rope_factors_short.weight", &r.ShortFactor}, {"rope_factors_long.weight", &r.LongFactor}} {
		v, _, err := f.TensorFloat32s(t.name)
		if err != nil {
			return fmt.Errorf("%s: tensor %s: %w", f.Path, t.name, err)
		}
		if len(v) != half {
			return fmt.Errorf("%s: tensor %s holds %d values, want %d (rotary dimensions / 2)", f.Path, t.name, len(v), half)
		}
		*t.dst = make([]float64, half)
		for i, x := range v {
			if !(x > 0) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("%s: tensor %s: value %d is %v, want a positive factor", f.Path, t.name, i, x)
			}
			(*t.dst)[i] = decimal32(float64(x))
		}
	}
	r.Type, r.AttnFactor = "longrope", 1
	if v, ok := f.Float(a + "rope.scaling.attn_factor"); ok {
		r.AttnFactor = v
	}
	if r.OriginalMaxPos <= 0 {
		return fmt.Errorf("%s: longrope needs %srope.scaling.original_context_length", f.Path, a)
	}
	return nil
}
