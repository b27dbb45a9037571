package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"gotune/model/family"
	"gotune/parallel"
)

// shapes are named architectures for benchmarks and planning: the shapes of
// the PyTorch peer in shared/bench and of the reference test models.
var shapes = map[string]Config{
	"tiny":         {ModelType: "qwen3", Vocab: 2048, Hidden: 128, Intermediate: 352, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 32, TieEmbeddings: true},
	"smollm2-135m": {ModelType: "llama", Vocab: 49152, Hidden: 576, Intermediate: 1536, Layers: 30, Heads: 9, KVHeads: 3, HeadDim: 64, TieEmbeddings: true},
	"qwen3-0.6b":   {ModelType: "qwen3", Vocab: 151936, Hidden: 1024, Intermediate: 3072, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, TieEmbeddings: true, Traits: family.Traits{QKNorm: true}},
	"qwen3-4b":     {ModelType: "qwen3", Vocab: 151936, Hidden: 2560, Intermediate: 9728, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, TieEmbeddings: true, Traits: family.Traits{QKNorm: true}},
	"ref-qwen3":    {ModelType: "qwen3", Vocab: 2048, Hidden: 64, Intermediate: 160, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 32, TieEmbeddings: true, Traits: family.Traits{QKNorm: true}},
	"ref-llama":    {ModelType: "llama", Vocab: 1216, Hidden: 64, Intermediate: 176, Layers: 2, Heads: 4, KVHeads: 1, HeadDim: 16},
	"ref-qwen2":    {ModelType: "qwen2", Vocab: 2048, Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, TieEmbeddings: true, Traits: family.Traits{AttnBias: true}},
	// A Qwen3-MoE shape with 8 experts, top-2, and the dense model with the
	// same active parameters (intermediate = 2 × the experts'): a step of
	// the first should cost about what the second's does.
	"moe-8x2": {ModelType: "qwen3_moe", Vocab: 32768, Hidden: 512, Intermediate: 1024, Layers: 8, Heads: 8, KVHeads: 4, HeadDim: 64, TieEmbeddings: true,
		Traits: family.Traits{QKNorm: true, Experts: 8, TopK: 2, ExpertIntermediate: 512, NormTopK: true}},
	"moe-8x2-dense": {ModelType: "qwen3", Vocab: 32768, Hidden: 512, Intermediate: 1024, Layers: 8, Heads: 8, KVHeads: 4, HeadDim: 64, TieEmbeddings: true,
		Traits: family.Traits{QKNorm: true}},
}

// ShapeNames lists the named shapes.
func ShapeNames() []string {
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Shape returns the configuration of a named shape.
func Shape(name string) (*Config, error) {
	c, ok := shapes[name]
	if !ok {
		return nil, fmt.Errorf("unknown shape %q (known: %v)", name, ShapeNames())
	}
	fam, err := family.Lookup(c.ModelType)
	if err != nil {
		return nil, fmt.Errorf("shape %q: %w", name, err)
	}
	c.Family = fam
	c.RMSNormEps = 1e-6
	c.MaxPositions = 32768
	c.Act = "silu"
	c.Pad = -1
	c.Rope = Rope{Theta: 1e6, Type: "default", Factor: 1, PartialFactor: 1}
	return &c, nil
}

// Params counts the parameters of a configuration.
func (c *Config) Params() int64 {
	h, i := int64(c.Hidden), int64(c.Intermediate)
	per := h*int64(c.QDim()) + 2*h*int64(c.KVDim()) + int64(c.QDim())*h + 3*h*i + 2*h
	if c.QKNorm {
		per += 2 * int64(c.HeadDim)
	}
	if c.SandwichNorms {
		per += 2 * h
	}
	if c.AttnBias {
		per += int64(c.QDim()) + 2*int64(c.KVDim())
	}
	n := int64(0)
	for li := 0; li < c.Layers; li++ {
		n += per
		if c.IsMoE(li) {
			// experts and router instead of the dense MLP
			n += int64(c.Experts)*3*h*int64(c.ExpertIntermediate) + int64(c.Experts)*h - 3*h*i
		}
	}
	n += int64(c.Vocab)*h + h
	if !c.TieEmbeddings {
		n += int64(c.Vocab) * h
	}
	return n
}

// RandomInit fills the weights as a freshly initialised model of the
// PyTorch peer: projections with variance 1/in, embeddings with standard
// deviation 0.02, norm weights one, biases zero. Uniform draws with the
// same variance keep this fast for large models.
func (m *Model) RandomInit(seed uint64) {
	fill := func(v []float32, std float64, stream uint64) {
		a := float32(std * math.Sqrt(3))
		parallel.For(len(v), 1<<16, func(lo, hi int) {
			r := rand.New(rand.NewPCG(seed^stream, uint64(lo)))
			for i := lo; i < hi; i++ {
				v[i] = a * (2*r.Float32() - 1)
			}
		})
	}
	fill(m.Embed.Data, 0.02, 1)
	if m.Head != m.Embed {
		fill(m.Head.Data, 1/math.Sqrt(float64(m.Cfg.Hidden)), 2)
	}
	for _, p := range m.Params() {
		if len(p.Shape) == 1 {
			for i := range p.Data {
				p.Data[i] = 1
			}
		}
	}
	lins := m.Linears()
	for _, l := range m.Layers {
		if l.MoE != nil {
			lins = append(lins, l.MoE.Router) // not a projection, but initialised as one
		}
	}
	for k, l := range lins {
		fill(l.F32().Data, 1/math.Sqrt(float64(l.In)), uint64(k+3)) // New holds float32
		if l.B != nil {
			clear(l.B.Data)
		}
	}
}
