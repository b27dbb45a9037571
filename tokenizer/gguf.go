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
	// llama.cpp's default special ids for the models that have them.
	orDefault := func(x *int, def int) {
		if *x < 0 {
			*x = def
		}
	}
	switch v.model {
	case "bert":
		orDefault(&v.bos, 101)
		orDefault(&v.unk, 100)
		orDefault(&v.pad, 0)
	case "t5":
		orDefault(&v.eos, 1)
		orDefault(&v.unk, 2)
		orDefault(&v.pad, 0)
	}
	v.sep = id("tokenizer.ggml.seperator_token_id") // llama.cpp's spelling
	if v.sep < 0 && v.model == "bert" {
		v.sep = 102
	}
	// Like llama.cpp, drop special ids (defaults or not) outside the
	// vocabulary rather than emit ids the model has no row for.
	for _, x := range []*int{&v.bos, &v.eos, &v.unk, &v.pad, &v.sep} {
		if *x >= len(v.tokens) {
			*x = -1
		}
	}
	v.addBOS, v.hasAddBOS = f.Bool("tokenizer.ggml.add_bos_token")
	v.addEOS, v.hasAddEOS = f.Bool("tokenizer.ggml.add_eos_token")
	v.addSep, v.hasAddSep = f.Bool("tokenizer.ggml.add_sep_token")
	v.removeExtraSpaces, _ = f.Bool("tokenizer.ggml.remove_extra_whitespaces")
	if raw, ok := f.Lookup("tokenizer.ggml.precompiled_charsmap"); ok {
		switch b := raw.(type) {
		case []uint8:
			v.charsmap = b
		case []int8:
			v.charsmap = make([]byte, len(b))
			for k, x := range b {
				v.charsmap[k] = byte(x)
			}
		default:
			return nil, v.errf("tokenizer.ggml.precompiled_charsmap", "expected an array of bytes, got %T", raw)
		}
	}
	// llama.cpp turns the space prefix on for SentencePiece by default;
	// other models (T5's Unigram) have it only when the file says so.
	v.addSpacePrefix = v.model == "llama"
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
	sep                int
	addBOS, addEOS     bool
	hasAddBOS          bool
	hasAddEOS          bool
	addSep, hasAddSep  bool
	removeExtraSpaces  bool
	charsmap           []byte
	addSpacePrefix     bool
}

func (v *ggufVocab) errf(key, format string, args ...any) error {
	return fmt.Errorf("tokenizer: %s: %s: %s", v.file, key, fmt.Sprintf(format, args...))
}

// Split regexes of the pre-tokenizers llama.cpp knows, as their Hugging Face
// tokenizer.json files write them (llama.cpp sometimes rewrites a pattern
// for its own regex engine; the tokenizer.json form is the reference its
// test vocabularies were generated with). The pieces of each regex are split
// again by the next one, matches and the text between them alike.
var (
	preGPT2     = []string{patGPT2}
	preLlama3   = []string{patLlama3}
	preQwen2    = []string{patQwen2}
	preStarcode = []string{`\p{N}`, patGPT2}
	preBloom    = []string{` ?[^(\s|.,!?…。，、।۔،)]+`}
	preDeepV3   = []string{
		`\p{N}{1,3}`,
		`[一-龥぀-ゟ゠-ヿ]+`,
		"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	}
	// GPT-4o's (o200k) pattern: cased words with an optional contraction.
	preGPT4o = []string{
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	}
	preTekken = []string{
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	}
	preTinyAya   = append([]string{`\d{1,3}(?=(?:\d{3})*\b)`}, preGPT4o...)
	preFalcon    = []string{`[\p{P}\$\+<=>\^~\|]+`, patGPT2, `[0-9][0-9][0-9]`}
	preDefault   = []string{`[\p{P}\$\+<=>\^~\|]+`, patGPT2, `\p{N}+`, `[0-9][0-9][0-9]`}
	preLines     = []string{`[^\n]+|[\n]+`}
	preSeedCoder = []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`}
)

// ggufPre is how llama.cpp pre-tokenizes for one tokenizer.ggml.pre name.
type ggufPre struct {
	// pats are the split regexes, applied in turn (Isolated).
	pats []string
	// ignoreMerges: a word that is itself a token is that token (llama.cpp's
	// ignore_merges).
	ignoreMerges bool
	// rawUTF8: a SentencePiece-style BPE rather than a byte-level one: the
	// merges join characters, a character missing from the vocabulary falls
	// back to its <0xNN> byte tokens, and the decoder undoes no byte mapping
	// (llama.cpp's byte_encode = false).
	rawUTF8 bool
	// escapeSpaces: spaces are written "▁" before splitting (llama.cpp's
	// escape_whitespaces for BPE vocabularies).
	escapeSpaces bool
	// wholeNewlines: a piece of only "\n" that is a token is that token,
	// merges aside (llama.cpp's rule for Gemma 4).
	wholeNewlines bool
	// addBOS: llama.cpp adds BOS when the file does not say otherwise;
	// forceBOS: even when it says not to (llama.cpp's Gemma 4 override).
	addBOS, forceBOS bool
}

// ggufPrePatterns maps every tokenizer.ggml.pre name llama.cpp accepts for
// BPE vocabularies to how it splits text. Names llama.cpp handles with code
// of its own rather than split regexes are written here as the regexes of
// the tokenizers they came from, which that code reproduces.
var ggufPrePatterns = map[string]ggufPre{
	"default": {pats: preDefault},
	// gotune's own exports before the names were aligned with llama.cpp.
	"gpt2": {pats: preGPT2},

	"llama3": {pats: preLlama3, ignoreMerges: true, addBOS: true}, "llama-v3": {pats: preLlama3, ignoreMerges: true, addBOS: true},
	"llama-bpe": {pats: preLlama3, ignoreMerges: true, addBOS: true}, "falcon3": {pats: preLlama3, ignoreMerges: true, addBOS: true},
	"falcon-h1": {pats: preLlama3, ignoreMerges: true, addBOS: true}, "pixtral": {pats: preLlama3, ignoreMerges: true, addBOS: true},
	"midm-2.0": {pats: preLlama3, ignoreMerges: true, addBOS: true}, "lfm2": {pats: preLlama3, ignoreMerges: true, addBOS: true},
	"jina-v5-nano": {pats: preLlama3, ignoreMerges: true, addBOS: true},
	"dbrx":         {pats: preLlama3}, "smaug-bpe": {pats: preLlama3},
	"glm4": {pats: preLlama3}, "chatglm-bpe": {pats: preLlama3},
	"jais-2":   {pats: []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}`}},
	"minicpm5": {pats: []string{`\p{N}{1,3}`, `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`}, ignoreMerges: true},

	// deepseek-llm spells out the cased letters (Lu, Ll, Lt) as ranges.
	"deepseek-llm":   {pats: []string{`[\r\n]`, `\s?[\p{Lu}\p{Ll}\p{Lt}]+`, `\s?[!-/:-~！-／：-～‘-‟　-。]+`, `\s+$`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}+`}},
	"deepseek-coder": {pats: []string{`[\r\n]`, `\s?\p{L}+`, `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}`}},
	"deepseek-v3":    {pats: preDeepV3}, "hunyuan-dense": {pats: preDeepV3}, "joyai-llm": {pats: preDeepV3}, "hy_v4": {pats: preDeepV3},
	"spark2_5": {pats: []string{preDeepV3[0], preDeepV3[1], "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\\r\\n]|\\s+(?!\\S)|\\s+", `\p{N}`}},
	"youtu": {pats: []string{
		`[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+`,
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	}, ignoreMerges: true},

	"falcon": {pats: preFalcon},
	"mpt":    {pats: preGPT2}, "olmo": {pats: preGPT2}, "jais": {pats: preGPT2}, "trillion": {pats: preGPT2},
	"granite-docling": {pats: preGPT2}, "exaone4": {pats: preGPT2},
	"gpt-2": {pats: preGPT2}, "phi-2": {pats: preGPT2}, "jina-es": {pats: preGPT2}, "jina-de": {pats: preGPT2},
	"gigachat": {pats: preGPT2}, "jina-v2-es": {pats: preGPT2}, "jina-v2-de": {pats: preGPT2},
	"a.x-4.0": {pats: preGPT2}, "mellum": {pats: preGPT2}, "modern-bert": {pats: preGPT2},
	"jina-v1-en": {pats: preGPT2}, "jina-v2-code": {pats: preGPT2}, "roberta-bpe": {pats: preGPT2},

	"starcoder": {pats: preStarcode}, "refact": {pats: preStarcode}, "command-r": {pats: preStarcode},
	"smollm": {pats: preStarcode}, "codeshell": {pats: preStarcode}, "exaone": {pats: preStarcode},
	"minerva-7b": {pats: preStarcode}, "mellum2": {pats: preStarcode},

	"qwen2": {pats: preQwen2}, "deepseek-r1-qwen": {pats: preQwen2}, "kormo": {pats: preQwen2}, "f2llmv2": {pats: preQwen2},
	"stablelm2": {pats: preQwen2}, "hunyuan": {pats: preQwen2}, "solar-open": {pats: preQwen2}, "megrez": {pats: preQwen2},
	"grok-2":      {pats: preQwen2},
	"qwen35":      {pats: []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`}},
	"ufakzeka":    {pats: []string{`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`}},
	"laguna":      {pats: []string{`[^\n]+|[\n]+`, patQwen2}},
	"seed-coder":  {pats: preSeedCoder},
	"bailingmoe":  {pats: []string{`'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`}},
	"bailingmoe2": {pats: []string{`'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`}},
	"llada-moe":   {pats: []string{`'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`}},
	"exaone-moe":  {pats: []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+`}},

	"poro-chat": {pats: preBloom}, "bloom": {pats: preBloom}, "gpt3-finnish": {pats: preBloom},
	"viking": {pats: append(append([]string(nil), preBloom...), `\p{N}`)},

	"tekken":    {pats: preTekken, ignoreMerges: true, addBOS: true},
	"chameleon": {pats: []string{`<sentinel:[0-9]+>`, `(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z`, `([\t\n]|    |  )`, `\p{N}`, `[\p{P}!-/:-@\[-` + "`" + `{-~]`, patGPT2}, addBOS: true},
	"gpt-4o":    {pats: preGPT4o}, "llama4": {pats: preGPT4o}, "kanana2": {pats: preGPT4o}, "talkie": {pats: preGPT4o},
	"minimax-m2":              {pats: preGPT4o},
	"granite-embed-multi-97m": {pats: preGPT4o, ignoreMerges: true},
	"tiny_aya":                {pats: preTinyAya}, "cohere2moe": {pats: preTinyAya},

	// Digits alone, then cut into threes from the right (the lookahead
	// matches are empty: split points); nothing else is split, so words run
	// across spaces ("superword" tokens).
	"superbpe": {pats: []string{`\p{N}+`, `(?=(\d{3})+(?!\d))`}},
	// Digit runs cut into threes from the right, CJK and South-East Asian
	// scripts in runs of their own, then DeepSeek-V3's word pattern.
	"afmoe": {pats: []string{
		`\p{N}+`,
		`(?=(?:\p{N}{3})+(?!\p{N}))`,
		`[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+`,
		preDeepV3[2],
	}},
	// Kimi K2's tiktoken pattern: Han runs apart, and the cased-word
	// alternatives of GPT-4o's pattern with Han taken out of their classes.
	"kimi-k2": {pats: []string{
		`\p{Han}+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}-[\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}-[\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}-[\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}-[\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	}},
	// SentencePiece-style BPE: spaces become "▁", only newline runs are
	// split off, merges run over whole lines.
	"gemma4":                   {pats: preLines, rawUTF8: true, escapeSpaces: true, wholeNewlines: true, addBOS: true, forceBOS: true},
	"granite-embed-multi-311m": {pats: preLines, rawUTF8: true, escapeSpaces: true, wholeNewlines: true, addBOS: true, forceBOS: true},
	"sarvam-moe":               {pats: preLines, rawUTF8: true, escapeSpaces: true},
	// Runs of non-space characters over raw UTF-8 (jina-embeddings-v2-base-zh).
	"whitespace": {pats: []string{`\S+`}, rawUTF8: true},
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
	var pre ggufPre
	switch v.model {
	case "gpt2", "gemma4", "whitespace":
		var err error
		if pre, err = v.buildBPE(t, vocab); err != nil {
			return nil, err
		}
	case "llama":
		if err := v.buildSPM(t, vocab); err != nil {
			return nil, err
		}
	case "bert":
		v.buildWPM(t, vocab)
	case "t5":
		if err := v.buildUGM(t); err != nil {
			return nil, err
		}
	default:
		return nil, v.errf("tokenizer.ggml.model", "unsupported tokenizer model %q (supported: gpt2, gemma4, whitespace, llama, bert, t5)", v.model)
	}
	t.setAdded(added)
	name := func(id int) string {
		if id >= 0 && id < n {
			return v.tokens[id]
		}
		return ""
	}
	t.bosTok, t.eosTok, t.unkTok, t.padTok = name(v.bos), name(v.eos), name(v.unk), name(v.pad)
	// llama.cpp's defaults per model when the file does not say: BOS for
	// SentencePiece and BERT, EOS for T5, SEP for BERT.
	addBOS := v.addBOS || (!v.hasAddBOS && (v.model == "llama" || v.model == "bert" || pre.addBOS)) || pre.forceBOS
	addEOS := v.addEOS || (!v.hasAddEOS && v.model == "t5")
	addSep := v.addSep || (!v.hasAddSep && v.model == "bert")
	var p templatePost
	if addBOS && v.bos >= 0 {
		p.single = append(p.single, templateItem{ids: []int{v.bos}})
	}
	p.single = append(p.single, templateItem{sequence: true})
	if addEOS && v.eos >= 0 {
		p.single = append(p.single, templateItem{ids: []int{v.eos}})
	}
	if addSep && v.sep >= 0 {
		p.single = append(p.single, templateItem{ids: []int{v.sep}})
	}
	t.post = p
	return t, nil
}

func (v *ggufVocab) buildBPE(t *Tokenizer, vocab map[string]int) (ggufPre, error) {
	name := v.pre
	switch {
	case v.model == "gemma4":
		name = "gemma4" // llama.cpp ignores the file's pre name for this model
	case name == "":
		name = "default" // as llama.cpp
	}
	pre, ok := ggufPrePatterns[name]
	if !ok {
		return pre, v.errf("tokenizer.ggml.pre", "unknown pre-tokenizer %q (llama.cpp does not know it either)", name)
	}
	merges := make([][2]string, len(v.merges))
	for k, s := range v.merges {
		a, b, ok := cutMerge(s)
		if !ok {
			return pre, v.errf(fmt.Sprintf("tokenizer.ggml.merges[%d]", k), "expected \"left right\", got %q", s)
		}
		merges[k] = [2]string{a, b}
	}
	m, err := newBPE(vocab, merges, bpeOptions{
		byteLevel:     !pre.rawUTF8,
		byteFallback:  pre.rawUTF8,
		ignoreMerges:  pre.ignoreMerges,
		wholeNewlines: pre.wholeNewlines,
	})
	if err != nil {
		return pre, v.errf("tokenizer.ggml.merges", "%v", err)
	}
	seq, err := pre.splitter(v.model == "whitespace")
	if err != nil {
		return pre, v.errf("tokenizer.ggml.pre", "%v", err)
	}
	t.model, t.bpe, t.pre = m, m, seq
	if !pre.rawUTF8 {
		t.dec = byteLevelDecoder{}
		return pre, nil
	}
	dec := seqDecoder{byteFallbackDecoder{}, fuseDecoder{}}
	if pre.escapeSpaces {
		t.normalizer = replaceNormalizer{literal: " ", content: "▁"}
		dec = append(seqDecoder{replaceDecoder{literal: "▁", content: " "}}, dec...)
	}
	t.dec = dec
	return pre, nil
}

// splitter is the pre-tokenizer of the split regexes; dropSpaces first
// removes whitespace, as llama.cpp's "whitespace" tokenizer model does before
// its regexes see the text.
func (pre ggufPre) splitter(dropSpaces bool) (seqPreTokenizer, error) {
	var seq seqPreTokenizer
	if dropSpaces {
		seq = append(seq, splitPreTokenizer{m: runeMatcher(isSpaceRune), behavior: removed})
	}
	for _, p := range pre.pats {
		mt, err := compileSplitRegex(p)
		if err != nil {
			return nil, err
		}
		seq = append(seq, splitPreTokenizer{m: mt, behavior: isolated})
	}
	return seq, nil
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
