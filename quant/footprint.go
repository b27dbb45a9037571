package quant

import "fmt"

// ModelShape is what the weight footprint of a decoder-only transformer
// (Llama/Qwen family: q,k,v,o projections, gated MLP, RMSNorms) depends on.
type ModelShape struct {
	Hidden, Intermediate, Layers int
	Heads, HeadDim, KVHeads      int
	Vocab                        int
	TiedEmbeddings               bool // lm_head shares embed_tokens
	QKNorm                       bool // per-head RMSNorm on q and k (Qwen3)
}

// Qwen3_0_6B is the shape of Qwen/Qwen3-0.6B.
func Qwen3_0_6B() ModelShape {
	return ModelShape{Hidden: 1024, Intermediate: 3072, Layers: 28, Heads: 16, HeadDim: 128, KVHeads: 8,
		Vocab: 151936, TiedEmbeddings: true, QKNorm: true}
}

// Memory is the resident size of a model's frozen weights, by group.
type Memory struct {
	// Linear: the 7 projections of every layer (q,k,v,o,gate,up,down).
	LinearParams, LinearBytes int64
	// Embeddings: embed_tokens, plus lm_head when untied.
	EmbeddingParams, EmbeddingBytes int64
	// Norms: input/post-attention RMSNorm per layer, q/k norms, final norm;
	// kept in f32, or bf16 when the embeddings are bf16.
	NormParams, NormBytes int64
	TotalBytes            int64
}

// Footprint computes the resident bytes of a model's frozen weights with the
// linear layers stored as linear and the embeddings as embed (F32, BF16 or a
// quantized type; quantized sizes are exactly Matrix.Bytes of each matrix).
func Footprint(s ModelShape, linear, embed Options) (Memory, error) {
	if s.Hidden < 1 || s.Intermediate < 1 || s.Layers < 1 || s.Heads < 1 || s.HeadDim < 1 || s.KVHeads < 1 || s.Vocab < 1 {
		return Memory{}, fmt.Errorf("quant: footprint: every size of %+v must be positive", s)
	}
	var m Memory
	q, kv := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	shapes := [][2]int{{q, s.Hidden}, {kv, s.Hidden}, {kv, s.Hidden}, {s.Hidden, q},
		{s.Intermediate, s.Hidden}, {s.Intermediate, s.Hidden}, {s.Hidden, s.Intermediate}}
	for _, sh := range shapes {
		b, err := BytesFor(sh[0], sh[1], linear)
		if err != nil {
			return Memory{}, fmt.Errorf("quant: footprint of linear layers: %w", err)
		}
		m.LinearParams += int64(s.Layers) * int64(sh[0]) * int64(sh[1])
		m.LinearBytes += int64(s.Layers) * b
	}
	tables := int64(1)
	if !s.TiedEmbeddings {
		tables = 2
	}
	eb, err := BytesFor(s.Vocab, s.Hidden, embed)
	if err != nil {
		return Memory{}, fmt.Errorf("quant: footprint of embeddings: %w", err)
	}
	m.EmbeddingParams = tables * int64(s.Vocab) * int64(s.Hidden)
	m.EmbeddingBytes = tables * eb
	perLayer := 2 * s.Hidden
	if s.QKNorm {
		perLayer += 2 * s.HeadDim
	}
	m.NormParams = int64(s.Layers*perLayer + s.Hidden)
	m.NormBytes = 4 * m.NormParams
	if embed.Type == BF16 {
		m.NormBytes = 2 * m.NormParams
	}
	m.TotalBytes = m.LinearBytes + m.EmbeddingBytes + m.NormBytes
	return m, nil
}

// BytesFor is the resident size of a rows×cols matrix stored with opt:
// what Matrix.Bytes reports after Quantize, or 4 or 2 bytes a value for F32
// and BF16.
func BytesFor(rows, cols int, opt Options) (int64, error) {
	n := int64(rows) * int64(cols)
	switch opt.Type {
	case F32:
		return 4 * n, nil
	case BF16:
		return 2 * n, nil
	}
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		return 0, err
	}
	if rows < 1 || cols < 1 {
		return 0, fmt.Errorf("quant: shape %d×%d, want positive rows and cols", rows, cols)
	}
	bs := int64(opt.BlockSize)
	if opt.Type == Int8Row {
		bs = int64(cols)
	}
	blocks := (n + bs - 1) / bs
	switch opt.Type {
	case Int8Row, Int8Block:
		return n + 4*blocks, nil
	}
	b := (n+1)/2 + 16*4 + 256*8
	if opt.DoubleQuant {
		nbs := int64(opt.NestedBlockSize)
		return b + blocks + 4*((blocks+nbs-1)/nbs) + 256*4 + 4, nil
	}
	return b + 4*blocks, nil
}
