package tokenizer

import (
	"fmt"

	"gotune/gguf"
)

// llama.cpp token types (tokenizer.ggml.token_type) that matter here.
const (
	ggmlNormal      = 1
	ggmlUnknown     = 2
	ggmlControl     = 3
	ggmlUserDefined = 4
	ggmlUnused      = 5
)

// LoadGGUF reads the vocabulary of a GGUF file (tokenizer.ggml.*): model
// "gpt2" (byte-level BPE, split regex chosen by tokenizer.ggml.pre) or
// "llama" (llama.cpp's score-based SentencePiece).
func LoadGGUF(path string) (*Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	return FromGGUF(f)
}

// FromGGUF builds the tokenizer from an open GGUF file's metadata.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v := ggufVocab{file: f.Path}
	var ok bool
	if v.model, ok = f.String("tokenizer.ggml.model"); !ok {
		return nil, v.errf("tokenizer.ggml.model", "missing, expected \"gpt2\" or \"llama\"")
	}
	if v.tokens, ok = f.Strings("tokenizer.ggml.tokens"); !ok {
		return nil, v.errf("tokenizer.ggml.tokens", "missing, expected an array of strings")
	}
	v.pre, _ = f.String("tokenizer.ggml.pre")
	v.merges, _ = f.Strings("tokenizer.ggml.merges")
	v.scores, _ = f.Float32s("tokenizer.ggml.scores")
	v.types, _ = f.Ints("tokenizer.ggml.token_type")
	id := func(key string) int {
		if x, ok := f.Int(key); ok {
			return int(x)
		}
		return -1
	}
	v.bos, v.eos = id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id")
	v.unk, v.pad = id("tokenizer.ggml.unknown_token_id"), id("tokenizer.ggml.padding_token_id")
	v.addBOS, v.hasAddBOS = f.Bool("tokenizer.ggml.add_bos_token")
	v.addEOS, _ = f.Bool("tokenizer.ggml.add_eos_token")
	v.addSpacePrefix = true
	if b, ok := f.Bool("tokenizer.ggml.add_space_prefix"); ok {
		v.addSpacePrefix = b
	}
	return v.build()
}

// ggufVocab is the tokenizer part of GGUF metadata.
type ggufVocab struct {
	file               string
	model, pre         string
	tokens, merges     []string
	scores             []float32
	types              []int64
	bos, eos, unk, pad int
	addBOS, addEOS     bool
	hasAddBOS          bool
	addSpacePrefix     bool
}

func (v *ggufVocab) errf(key, format string, args ...any) error {
	return fmt.Errorf("tokenizer: %s: %s: %s", v.file, key, fmt.Sprintf(format, args...))
}

// ggufPreSplits maps tokenizer.ggml.pre to the split regexes of the
// Hugging Face tokenizer it was converted from.
var ggufPreSplits = map[string][]string{
	"gpt2": {patGPT2}, "gpt-2": {patGPT2}, "default": {patGPT2}, "phi-2": {patGPT2}, "olmo": {patGPT2},
	"llama3": {patLlama3}, "llama-v3": {patLlama3}, "llama-bpe": {patLlama3}, "smaug-bpe": {patLlama3},
	"qwen2": {patQwen2}, "deepseek-r1-qwen": {patQwen2},
	"deepseek-v3": {
		`\p{N}{1,3}`,
		`[一-龥぀-ゟ゠-ヿ]+`,
		"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	},
}

func (v *ggufVocab) build() (*Tokenizer, error) {
	n := len(v.tokens)
	if v.types != nil && len(v.types) != n {
		return nil, v.errf("tokenizer.ggml.token_type", "%d entries for %d tokens", len(v.types), n)
	}
	typ := func(id int) int64 {
		if v.types == nil {
			return ggmlNormal
		}
		return v.types[id]
	}
	t := &Tokenizer{ids: map[string]int{}, added: map[int]*AddedToken{}}
	vocab := make(map[string]int, n)
	for id, s := range v.tokens {
		if typ(id) == ggmlUnused {
			// Padding ids ([PADn] in gotune's and llama.cpp's converters)
			// have no text: llama.cpp prints nothing for them, and neither
			// does the Hugging Face tokenizer, which lacks these ids.
			continue
		}
		t.setToken(id, s)
		if _, dup := vocab[s]; !dup {
			vocab[s] = id
		}
	}
	if len(t.tokens) < n {
		// Keep every id of the file addressable, unused ones as "" (no text).
		t.tokens = append(t.tokens, make([]string, n-len(t.tokens))...)
	}
	var added []AddedToken
	for id, s := range v.tokens {
		switch typ(id) {
		case ggmlControl, ggmlUnknown:
			added = append(added, AddedToken{ID: id, Content: s, Special: true})
		case ggmlUserDefined:
			added = append(added, AddedToken{ID: id, Content: s})
		}
	}
	switch v.model {
	case "gpt2":
		if err := v.buildBPE(t, vocab); err != nil {
			return nil, err
		}
	case "llama":
		if err := v.buildSPM(t, vocab); err != nil {
			return nil, err
		}
	default:
		return nil, v.errf("tokenizer.ggml.model", "unsupported tokenizer model %q (supported: gpt2, llama)", v.model)
	}
	t.setAdded(added)
	name := func(id int) string {
		if id >= 0 && id < n {
			return v.tokens[id]
		}
		return ""
	}
	t.bosTok, t.eosTok, t.unkTok, t.padTok = name(v.bos), name(v.eos), name(v.unk), name(v.pad)
	addBOS := v.addBOS || (!v.hasAddBOS && v.model == "llama")
	var p templatePost
	if addBOS && v.bos >= 0 {
		p.single = append(p.single, templateItem{ids: []int{v.bos}})
	}
	p.single = append(p.single, templateItem{sequence: true})
	if v.addEOS && v.eos >= 0 {
		p.single = append(p.single, templateItem{ids: []int{v.eos}})
	}
	t.post = p
	return t, nil
}

func (v *ggufVocab) buildBPE(t *Tokenizer, vocab map[string]int) error {
	pats, ok := ggufPreSplits[v.pre]
	if v.pre == "" {
		pats, ok = ggufPreSplits["default"], true
	}
	if !ok {
		return v.errf("tokenizer.ggml.pre", "unsupported pre-tokenizer %q", v.pre)
	}
	merges := make([][2]string, len(v.merges))
	for k, s := range v.merges {
		a, b, ok := cutMerge(s)
		if !ok {
			return v.errf(fmt.Sprintf("tokenizer.ggml.merges[%d]", k), "expected \"left right\", got %q", s)
		}
		merges[k] = [2]string{a, b}
	}
	m, err := newBPE(vocab, merges, bpeOptions{byteLevel: true})
	if err != nil {
		return v.errf("tokenizer.ggml.merges", "%v", err)
	}
	var seq seqPreTokenizer
	for _, p := range pats {
		mt, err := compileSplitRegex(p)
		if err != nil {
			return v.errf("tokenizer.ggml.pre", "%v", err)
		}
		seq = append(seq, splitPreTokenizer{m: mt, behavior: isolated})
	}
	t.model, t.bpe, t.pre, t.dec = m, m, seq, byteLevelDecoder{}
	return nil
}

func cutMerge(s string) (string, string, bool) {
	for i := 1; i < len(s)-1; i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

func (v *ggufVocab) buildSPM(t *Tokenizer, vocab map[string]int) error {
	if len(v.scores) != len(v.tokens) {
		return v.errf("tokenizer.ggml.scores", "%d scores for %d tokens", len(v.scores), len(v.tokens))
	}
	m := &spmModel{vocab: make(map[string]int32, len(vocab)), scores: v.scores, unk: int32(v.unk)}
	for s, id := range vocab {
		m.vocab[s] = int32(id)
	}
	for b := range 256 {
		m.byteIDs[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = int32(id)
		}
	}
	var norm seqNormalizer
	dec := seqDecoder{replaceDecoder{literal: "▁", content: " "}, byteFallbackDecoder{}, fuseDecoder{}}
	if v.addSpacePrefix {
		// llama.cpp adds the space before the text and after every special
		// token, which is HF's Prepend normalizer applied per segment.
		norm = append(norm, prependNormalizer{"▁"})
		dec = append(dec, stripDecoder{content: ' ', start: 1})
	}
	norm = append(norm, replaceNormalizer{literal: " ", content: "▁"})
	t.model, t.normalizer, t.dec = m, norm, dec
	return nil
}
