package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"gotune/hfconfig"
	"gotune/jsondepth"
	"gotune/safefile"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// Load reads a model folder: tokenizer.json and, when present,
// tokenizer_config.json (special token strings, added_tokens_decoder,
// add_bos_token/add_eos_token, clean_up_tokenization_spaces).
func Load(dir string) (*Tokenizer, error) {
	tj := filepath.Join(dir, "tokenizer.json")
	data, err := safefile.ReadFile(tj)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cfg, err := hfconfig.ReadTokenizerConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return build(tj, data, cfg)
}

// FromJSON reads a tokenizer.json file alone (no tokenizer_config.json).
func FromJSON(path string) (*Tokenizer, error) {
	data, err := safefile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return build(path, data, nil)
}

// componentError names the file and the JSON path of a bad component.
type componentError struct {
	file, path, msg string
}

func (e *componentError) Error() string {
	return fmt.Sprintf("tokenizer: %s: %s: %s", e.file, e.path, e.msg)
}

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
}

type addedTokenJSON struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// maxTokenID bounds ids read from files, so a corrupt id cannot make the
// id-to-token table huge. Real vocabularies are well under a million.
const maxTokenID = 1 << 24

// loader carries the file name for error messages.
type loader struct {
	file      string
	byteLevel bool // a ByteLevel pre-tokenizer is present
}

func (l *loader) errf(path, format string, args ...any) error {
	return &componentError{file: l.file, path: path, msg: fmt.Sprintf(format, args...)}
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// object decodes a component and returns its "type".
func (l *loader) object(raw json.RawMessage, path string, v any) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", l.errf(path, "expected an object with a \"type\": %v", err)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return "", l.errf(path, "bad %s: %v", head.Type, err)
		}
	}
	return head.Type, nil
}

// build makes the tokenizer of a tokenizer.json and, when not nil, the
// folder's tokenizer_config.json.
func build(file string, data []byte, tc *hfconfig.TokenizerConfig) (*Tokenizer, error) {
	// Components nest (Sequence in Sequence) and each level is decoded
	// again: bound the nesting before anything is decoded.
	if err := jsondepth.Check(data, jsondepth.Default); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file, err)
	}
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a tokenizer.json: %w", file, err)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("tokenizer: %s: missing field \"model\"", file)
	}
	l := &loader{file: file}
	t := &Tokenizer{ids: map[string]int{}, added: map[int]*AddedToken{}}
	var err error
	if t.normalizer, err = l.normalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	if t.pre, err = l.preTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if err := l.checkByteLevelLast(f.PreTokenizer); err != nil {
		return nil, err
	}
	vocab, err := l.model(f.Model, "model", t)
	if err != nil {
		return nil, err
	}
	for s, id := range vocab {
		t.setToken(id, s)
	}
	if t.dec, err = l.decoder(f.Decoder, "decoder"); err != nil {
		return nil, err
	}
	var added []AddedToken
	for k, a := range f.AddedTokens {
		if a.ID == nil || *a.ID < 0 || *a.ID >= maxTokenID {
			return nil, l.errf(fmt.Sprintf("added_tokens[%d].id", k), "expected an integer in [0, %d)", maxTokenID)
		}
		if a.Content == "" {
			return nil, l.errf(fmt.Sprintf("added_tokens[%d].content", k), "expected a non-empty string")
		}
		added = append(added, AddedToken{ID: *a.ID, Content: a.Content, SingleWord: a.SingleWord,
			LStrip: a.LStrip, RStrip: a.RStrip, Normalized: normalizedDefault(a.Normalized, a.Special), Special: a.Special})
	}
	cfg, err := configFrom(tc)
	if err != nil {
		return nil, err
	}
	added = mergeAdded(added, cfg.added)
	t.bosTok, t.eosTok, t.padTok, t.unkTok = cfg.bos, cfg.eos, cfg.pad, cfg.unk
	t.cleanUp = cfg.cleanUp
	// transformers registers its special tokens with the backend as special
	// added tokens; one that is missing from the vocabulary gets a new id.
	for _, s := range cfg.specials() {
		if has(added, s) {
			continue
		}
		id, ok := t.ids[s]
		if !ok {
			id = max(len(t.tokens), maxAddedID(added)+1)
		}
		added = append(added, AddedToken{ID: id, Content: s, Special: true})
	}
	for _, a := range added {
		t.setToken(a.ID, a.Content)
	}
	t.setAdded(added)
	for _, s := range cfg.specials() {
		if id, ok := t.ids[s]; ok {
			t.special[id] = true
		}
	}
	if t.post, err = l.postProcessor(f.PostProcessor, "post_processor", t); err != nil {
		return nil, err
	}
	if cfg.overridesTemplate() {
		t.post = cfg.template(t, t.post)
	}
	return t, nil
}

func normalizedDefault(v *bool, special bool) bool {
	if v != nil {
		return *v
	}
	return !special
}

func has(added []AddedToken, s string) bool {
	for _, a := range added {
		if a.Content == s {
			return true
		}
	}
	return false
}

func maxAddedID(added []AddedToken) int {
	m := -1
	for _, a := range added {
		m = max(m, a.ID)
	}
	return m
}

// mergeAdded adds the config's added_tokens_decoder entries that
// tokenizer.json lacks; for shared ids tokenizer.json's flags win, except
// that either file can mark a token special.
func mergeAdded(base, extra []AddedToken) []AddedToken {
	byID := map[int]int{}
	for k, a := range base {
		byID[a.ID] = k
	}
	for _, a := range extra {
		if k, ok := byID[a.ID]; ok {
			base[k].Special = base[k].Special || a.Special
			continue
		}
		byID[a.ID] = len(base)
		base = append(base, a)
	}
	return base
}

func (t *Tokenizer) setToken(id int, s string) {
	if id >= cap(t.tokens) {
		n := make([]string, len(t.tokens), max(id+1, 2*cap(t.tokens)))
		copy(n, t.tokens)
		t.tokens = n
	}
	if id >= len(t.tokens) {
		t.tokens = t.tokens[:id+1]
	}
	t.tokens[id] = s
	if old, ok := t.ids[s]; !ok || old > id {
		t.ids[s] = id
	}
}

// setAdded installs the added tokens and builds their matchers. Added
// tokens take precedence over model tokens with the same string.
func (t *Tokenizer) setAdded(added []AddedToken) {
	t.special = make([]bool, len(t.tokens))
	var raw, normd []*addedPattern
	sort.SliceStable(added, func(a, b int) bool { return added[a].ID < added[b].ID })
	for k := range added {
		a := &added[k]
		t.added[a.ID] = a
		t.ids[a.Content] = a.ID
		if a.Special {
			t.special[a.ID] = true
		}
		if a.Normalized && t.normalizer != nil {
			normd = append(normd, &addedPattern{text: t.normalizer.normalize(nstr{s: a.Content}).s, tok: a})
		} else if a.Normalized {
			normd = append(normd, &addedPattern{text: a.Content, tok: a})
		} else {
			raw = append(raw, &addedPattern{text: a.Content, tok: a})
		}
	}
	t.rawSplit = newAddedMatcher(raw)
	t.normSplit = newAddedMatcher(normd)
}

func (l *loader) normalizer(raw json.RawMessage, path string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		Normalizers []json.RawMessage `json:"normalizers"`
		Prepend     string            `json:"prepend"`
		Pattern     json.RawMessage   `json:"pattern"`
		Content     string            `json:"content"`
		Left        bool              `json:"left"`
		Right       bool              `json:"right"`
		CleanText   *bool             `json:"clean_text"`
		Chinese     *bool             `json:"handle_chinese_chars"`
		StripAcc    *bool             `json:"strip_accents"`
		Lowercase   *bool             `json:"lowercase"`
		Charsmap    *[]byte           `json:"precompiled_charsmap"`
	}
	typ, err := l.object(raw, path, &v)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		items, err := sequence(v.Normalizers, path, "normalizers", l.normalizer)
		if err != nil {
			return nil, err
		}
		return seqNormalizer(items), nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Prepend":
		return prependNormalizer{v.Prepend}, nil
	case "Strip":
		return stripNormalizer{left: v.Left, right: v.Right}, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	case "Replace":
		lit, re, err := l.pattern(v.Pattern, path+".pattern")
		if err != nil {
			return nil, err
		}
		return replaceNormalizer{literal: lit, re: re, content: v.Content}, nil
	case "BertNormalizer":
		flag := func(b *bool, def bool) bool {
			if b == nil {
				return def
			}
			return *b
		}
		lower := flag(v.Lowercase, true)
		return bertNormalizer{cleanText: flag(v.CleanText, true), chinese: flag(v.Chinese, true),
			stripAccents: flag(v.StripAcc, lower), lowercase: lower}, nil
	case "Nmt":
		return nmtNormalizer{}, nil
	case "ByteLevel":
		return byteLevelNormalizer{}, nil
	case "Precompiled":
		// encoding/json decodes a base64 string into []byte.
		if v.Charsmap == nil {
			return nil, l.errf(path+".precompiled_charsmap", "missing, expected a base64 string")
		}
		m, err := parseCharsMap(*v.Charsmap)
		if err != nil {
			return nil, l.errf(path+".precompiled_charsmap", "%v", err)
		}
		if m == nil {
			return nil, nil
		}
		return precompiledNormalizer{m}, nil
	}
	return nil, l.errf(path+".type", "unsupported normalizer %q (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Strip, StripAccents, Replace, BertNormalizer, Nmt, Precompiled, ByteLevel)", typ)
}

// pattern decodes {"String": "..."} or {"Regex": "..."}; a literal is
// returned as a string and a regex compiled.
func (l *loader) pattern(raw json.RawMessage, path string) (string, *regexp2.Regexp, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if isNull(raw) {
		return "", nil, l.errf(path, "missing pattern, expected {\"String\": ...} or {\"Regex\": ...}")
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", nil, l.errf(path, "expected {\"String\": ...} or {\"Regex\": ...}: %v", err)
	}
	switch {
	case p.String != nil:
		return *p.String, nil, nil
	case p.Regex != nil:
		re, err := compileRegex(*p.Regex)
		if err != nil {
			return "", nil, l.errf(path+".Regex", "bad regular expression: %v", err)
		}
		return "", re, nil
	}
	return "", nil, l.errf(path, "expected {\"String\": ...} or {\"Regex\": ...}")
}

func (l *loader) preTokenizer(raw json.RawMessage, path string) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		Pretokenizers    []json.RawMessage `json:"pretokenizers"`
		Pattern          json.RawMessage   `json:"pattern"`
		Behavior         string            `json:"behavior"`
		Invert           bool              `json:"invert"`
		AddPrefixSpace   bool              `json:"add_prefix_space"`
		UseRegex         *bool             `json:"use_regex"`
		IndividualDigits bool              `json:"individual_digits"`
		Replacement      string            `json:"replacement"`
		PrependScheme    string            `json:"prepend_scheme"`
		Split            *bool             `json:"split"`
		Delimiter        string            `json:"delimiter"`
		Length           *int              `json:"length"`
	}
	typ, err := l.object(raw, path, &v)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		items, err := sequence(v.Pretokenizers, path, "pretokenizers", l.preTokenizer)
		if err != nil {
			return nil, err
		}
		seq := seqPreTokenizer(items)
		switch len(seq) {
		case 0:
			return nil, nil
		case 1:
			return seq[0], nil
		}
		return seq, nil
	case "ByteLevel":
		l.byteLevel = true
		b := byteLevelPreTokenizer{addPrefixSpace: v.AddPrefixSpace}
		if v.UseRegex == nil || *v.UseRegex {
			b.re = gpt2Matcher{}
		}
		if !b.addPrefixSpace && b.re == nil {
			// Only the byte mapping is left, and the model does that.
			return nil, nil
		}
		return b, nil
	case "Split":
		beh, err := l.behavior(v.Behavior, path+".behavior")
		if err != nil {
			return nil, err
		}
		var p struct {
			String *string `json:"String"`
			Regex  *string `json:"Regex"`
		}
		if err := json.Unmarshal(v.Pattern, &p); err != nil || (p.String == nil && p.Regex == nil) {
			return nil, l.errf(path+".pattern", "expected {\"String\": ...} or {\"Regex\": ...}")
		}
		var m matcher
		if p.String != nil {
			m = literalMatcher(*p.String)
		} else if m, err = compileSplitRegex(*p.Regex); err != nil {
			return nil, l.errf(path+".pattern.Regex", "bad regular expression: %v", err)
		}
		return splitPreTokenizer{m: m, behavior: beh, invert: v.Invert}, nil
	case "Digits":
		b := contiguous
		if v.IndividualDigits {
			b = isolated
		}
		return splitPreTokenizer{m: runeMatcher(isNumeric), behavior: b}, nil
	case "Metaspace":
		m := metaspacePreTokenizer{replacement: v.Replacement, splitPieces: v.Split == nil || *v.Split}
		if utf8.RuneCountInString(v.Replacement) != 1 {
			return nil, l.errf(path+".replacement", "expected one character, got %q", v.Replacement)
		}
		if m.scheme, err = l.prependScheme(v.PrependScheme, v.AddPrefixSpace, raw, path); err != nil {
			return nil, err
		}
		return m, nil
	case "WhitespaceSplit":
		return splitPreTokenizer{m: runeMatcher(isSpaceRune), behavior: removed}, nil
	case "Punctuation":
		beh := isolated
		if v.Behavior != "" {
			if beh, err = l.behavior(v.Behavior, path+".behavior"); err != nil {
				return nil, err
			}
		}
		return splitPreTokenizer{m: runeMatcher(isPunctuation), behavior: beh}, nil
	case "BertPreTokenizer":
		return seqPreTokenizer{
			splitPreTokenizer{m: runeMatcher(isSpaceRune), behavior: removed},
			splitPreTokenizer{m: runeMatcher(isPunctuation), behavior: isolated},
		}, nil
	case "Whitespace":
		return whitespacePreTokenizer{}, nil
	case "CharDelimiterSplit":
		if utf8.RuneCountInString(v.Delimiter) != 1 {
			return nil, l.errf(path+".delimiter", "expected one character, got %q", v.Delimiter)
		}
		d, _ := utf8.DecodeRuneInString(v.Delimiter)
		return splitPreTokenizer{m: runeMatcher(func(r rune) bool { return r == d }), behavior: removed}, nil
	case "UnicodeScripts":
		return unicodeScriptsPreTokenizer{}, nil
	case "FixedLength":
		n := 5 // HF's default
		if v.Length != nil {
			n = *v.Length
		}
		if n <= 0 {
			return nil, l.errf(path+".length", "expected a positive integer, got %d", n)
		}
		return fixedLengthPreTokenizer{length: n}, nil
	}
	return nil, l.errf(path+".type", "unsupported pre-tokenizer %q (supported: Sequence, ByteLevel, Split, Digits, Metaspace, WhitespaceSplit, Punctuation, BertPreTokenizer, Whitespace, CharDelimiterSplit, UnicodeScripts, FixedLength)", typ)
}

// checkByteLevelLast rejects pipelines where something runs after ByteLevel
// on the byte-mapped text: the BPE model here maps bytes itself, so ByteLevel
// has to come last.
func (l *loader) checkByteLevelLast(raw json.RawMessage) error {
	var v struct {
		Type          string            `json:"type"`
		Pretokenizers []json.RawMessage `json:"pretokenizers"`
	}
	if isNull(raw) || json.Unmarshal(raw, &v) != nil || v.Type != "Sequence" {
		return nil
	}
	seen := false
	for k, r := range v.Pretokenizers {
		var c struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(r, &c)
		if seen && c.Type != "ByteLevel" {
			return l.errf(fmt.Sprintf("pre_tokenizer.pretokenizers[%d]", k), "unsupported: %s after ByteLevel", c.Type)
		}
		seen = seen || c.Type == "ByteLevel"
	}
	return nil
}

func (l *loader) behavior(s, path string) (behavior, error) {
	switch s {
	case "Removed":
		return removed, nil
	case "Isolated":
		return isolated, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, l.errf(path, "unknown split behavior %q (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)", s)
}

func (l *loader) prependScheme(s string, addPrefixSpace bool, raw json.RawMessage, path string) (prependScheme, error) {
	switch s {
	case "always":
		return prependAlways, nil
	case "first":
		return prependFirst, nil
	case "never":
		return prependNever, nil
	case "":
		// Files older than prepend_scheme use add_prefix_space (default true).
		var v struct {
			AddPrefixSpace *bool `json:"add_prefix_space"`
		}
		_ = json.Unmarshal(raw, &v)
		if v.AddPrefixSpace != nil && !*v.AddPrefixSpace {
			return prependNever, nil
		}
		return prependAlways, nil
	}
	return 0, l.errf(path+".prepend_scheme", "unknown prepend scheme %q (expected always, first or never)", s)
}

func (l *loader) decoder(raw json.RawMessage, path string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		Decoders      []json.RawMessage `json:"decoders"`
		Pattern       json.RawMessage   `json:"pattern"`
		Content       json.RawMessage   `json:"content"`
		Start         int               `json:"start"`
		Stop          int               `json:"stop"`
		Replacement   string            `json:"replacement"`
		PrependScheme string            `json:"prepend_scheme"`
		AddPrefix     bool              `json:"add_prefix_space"`
		Suffix        *string           `json:"suffix"`
		Prefix        *string           `json:"prefix"`
		Cleanup       *bool             `json:"cleanup"`
		PadToken      *string           `json:"pad_token"`
		WordDelimiter *string           `json:"word_delimiter_token"`
	}
	typ, err := l.object(raw, path, &v)
	if err != nil {
		return nil, err
	}
	content := func() string {
		var s string
		_ = json.Unmarshal(v.Content, &s)
		return s
	}
	switch typ {
	case "Sequence":
		items, err := sequence(v.Decoders, path, "decoders", l.decoder)
		if err != nil {
			return nil, err
		}
		return seqDecoder(items), nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		c := content()
		if utf8.RuneCountInString(c) != 1 {
			return nil, l.errf(path+".content", "expected one character, got %q", c)
		}
		r, _ := utf8.DecodeRuneInString(c)
		return stripDecoder{content: r, start: v.Start, stop: v.Stop}, nil
	case "Replace":
		lit, re, err := l.pattern(v.Pattern, path+".pattern")
		if err != nil {
			return nil, err
		}
		return replaceDecoder{literal: lit, re: re, content: content()}, nil
	case "Metaspace":
		if utf8.RuneCountInString(v.Replacement) != 1 {
			return nil, l.errf(path+".replacement", "expected one character, got %q", v.Replacement)
		}
		r, _ := utf8.DecodeRuneInString(v.Replacement)
		scheme, err := l.prependScheme(v.PrependScheme, v.AddPrefix, raw, path)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{replacement: r, scheme: scheme}, nil
	case "BPEDecoder":
		return bpeSuffixDecoder{suffix: str(v.Suffix, "</w>")}, nil
	case "WordPiece":
		return wordPieceDecoder{prefix: str(v.Prefix, "##"), cleanup: v.Cleanup == nil || *v.Cleanup}, nil
	case "CTC":
		return ctcDecoder{pad: str(v.PadToken, "<pad>"), delimiter: str(v.WordDelimiter, "|"),
			cleanup: v.Cleanup == nil || *v.Cleanup}, nil
	}
	return nil, l.errf(path+".type", "unsupported decoder %q (supported: Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, BPEDecoder, WordPiece, CTC)", typ)
}

func (l *loader) postProcessor(raw json.RawMessage, path string, t *Tokenizer) (postProcessor, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		Processors     []json.RawMessage        `json:"processors"`
		Single         []json.RawMessage        `json:"single"`
		Pair           []json.RawMessage        `json:"pair"`
		SpecialTokens  map[string]specialTokens `json:"special_tokens"`
		TrimOffsets    *bool                    `json:"trim_offsets"`
		AddPrefixSpace *bool                    `json:"add_prefix_space"`
		Sep            []json.RawMessage        `json:"sep"`
		Cls            []json.RawMessage        `json:"cls"`
	}
	typ, err := l.object(raw, path, &v)
	if err != nil {
		return nil, err
	}
	flag := func(b *bool, def bool) bool {
		if b == nil {
			return def
		}
		return *b
	}
	switch typ {
	case "Sequence":
		items, err := sequence(v.Processors, path, "processors", func(r json.RawMessage, p string) (postProcessor, error) {
			return l.postProcessor(r, p, t)
		})
		if err != nil {
			return nil, err
		}
		return seqPost(items), nil
	case "ByteLevel":
		return byteLevelPost{trimOffsets: flag(v.TrimOffsets, true), addPrefixSpace: flag(v.AddPrefixSpace, true)}, nil
	case "TemplateProcessing":
		var p templatePost
		if p.single, err = l.template(v.Single, v.SpecialTokens, path, "single"); err != nil {
			return nil, err
		}
		if v.Pair != nil {
			if p.pair, err = l.template(v.Pair, v.SpecialTokens, path, "pair"); err != nil {
				return nil, err
			}
		}
		return p, nil
	case "RobertaProcessing", "BertProcessing":
		sep, err1 := l.pairID(v.Sep, path+".sep")
		cls, err2 := l.pairID(v.Cls, path+".cls")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		p := wrapPost{cls: cls, sep: sep, roberta: typ == "RobertaProcessing"}
		if p.roberta {
			p.trimOffsets = flag(v.TrimOffsets, true)
			p.addPrefixSpace = flag(v.AddPrefixSpace, true)
		}
		return p, nil
	}
	return nil, l.errf(path+".type", "unsupported post-processor %q (supported: Sequence, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing)", typ)
}

type specialTokens struct {
	IDs []int `json:"ids"`
}

// template reads a TemplateProcessing template (path.field): a list of
// {"Sequence": {"id": "A"|"B"}} and {"SpecialToken": {"id": name}} items.
func (l *loader) template(items []json.RawMessage, specials map[string]specialTokens, path, field string) ([]templateItem, error) {
	var out []templateItem
	for k, r := range items {
		ipath := fmt.Sprintf("%s.%s[%d]", path, field, k)
		var item struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		}
		if err := json.Unmarshal(r, &item); err != nil {
			return nil, l.errf(ipath, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}: %v", err)
		}
		switch {
		case item.Sequence != nil:
			seq := 0
			switch item.Sequence.ID {
			case "A", "":
			case "B":
				seq = 1
			default:
				return nil, l.errf(ipath+".Sequence.id", "expected \"A\" or \"B\", got %q", item.Sequence.ID)
			}
			out = append(out, templateItem{sequence: true, seq: seq})
		case item.SpecialToken != nil:
			st, ok := specials[item.SpecialToken.ID]
			if !ok {
				return nil, l.errf(ipath, "special token %q missing from %s.special_tokens", item.SpecialToken.ID, path)
			}
			out = append(out, templateItem{ids: st.IDs})
		default:
			return nil, l.errf(ipath, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}")
		}
	}
	return out, nil
}

// str returns *p, or def when the field is absent (HF's serde defaults).
func str(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// pairID reads ["token", id].
func (l *loader) pairID(raw []json.RawMessage, path string) (int, error) {
	var id int
	if len(raw) != 2 || json.Unmarshal(raw[1], &id) != nil {
		return 0, l.errf(path, "expected [\"token\", id]")
	}
	return id, nil
}

// model builds the model named by "type" and returns its vocabulary (token
// string to id); Unigram, whose vocabulary is a list, sets its tokens itself.
func (l *loader) model(raw json.RawMessage, path string, t *Tokenizer) (map[string]int, error) {
	var head struct {
		Type   string          `json:"type"`
		Merges json.RawMessage `json:"merges"`
		Vocab  json.RawMessage `json:"vocab"`
		Prefix json.RawMessage `json:"continuing_subword_prefix"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, l.errf(path, "expected a model object: %v", err)
	}
	typ := head.Type
	if typ == "" {
		// Old files omit "type"; HF then tells the models apart by their
		// fields, in this order.
		switch v := bytes.TrimSpace(head.Vocab); {
		case head.Merges != nil:
			typ = "BPE"
		case len(v) > 0 && v[0] == '[':
			typ = "Unigram"
		case head.Prefix != nil:
			typ = "WordPiece"
		default:
			typ = "WordLevel"
		}
	}
	switch typ {
	case "BPE":
		return l.bpe(raw, path, t)
	case "Unigram":
		return nil, l.unigram(raw, path, t)
	case "WordPiece":
		return l.wordPiece(raw, path, t)
	case "WordLevel":
		return l.wordLevel(raw, path, t)
	}
	return nil, l.errf(path+".type", "unsupported model %q (supported: BPE, Unigram, WordPiece, WordLevel)", typ)
}

// unigram builds the Unigram model: vocab is a list of [piece, score] and a
// token's id is its index.
func (l *loader) unigram(raw json.RawMessage, path string, t *Tokenizer) error {
	var v struct {
		Vocab        []json.RawMessage `json:"vocab"`
		UnkID        *int              `json:"unk_id"`
		ByteFallback bool              `json:"byte_fallback"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return l.errf(path, "expected a Unigram model object: %v", err)
	}
	if len(v.Vocab) == 0 {
		return l.errf(path+".vocab", "expected a non-empty list of [piece, score]")
	}
	if len(v.Vocab) >= maxTokenID {
		return l.errf(path+".vocab", "%d tokens, more than the %d supported", len(v.Vocab), maxTokenID)
	}
	pieces := make([]string, len(v.Vocab))
	scores := make([]float64, len(v.Vocab))
	for k, r := range v.Vocab {
		var pair []json.RawMessage
		if json.Unmarshal(r, &pair) != nil || len(pair) != 2 ||
			json.Unmarshal(pair[0], &pieces[k]) != nil || json.Unmarshal(pair[1], &scores[k]) != nil {
			return l.errf(fmt.Sprintf("%s.vocab[%d]", path, k), "expected [piece, score]")
		}
	}
	unk := -1
	if v.UnkID != nil {
		if *v.UnkID < 0 || *v.UnkID >= len(pieces) {
			return l.errf(path+".unk_id", "%d is outside the vocabulary of %d tokens", *v.UnkID, len(pieces))
		}
		unk = *v.UnkID
	}
	m, err := newUnigram(pieces, scores, unk, v.ByteFallback)
	if err != nil {
		return l.errf(path, "%v", err)
	}
	for id, s := range pieces {
		t.setToken(id, s)
	}
	t.model = m
	return nil
}

// vocabMap checks a token-to-id vocabulary.
func (l *loader) vocabMap(vocab map[string]int, path string) (map[string]int32, error) {
	if vocab == nil {
		return nil, l.errf(path, "missing field, expected an object of token to id")
	}
	out := make(map[string]int32, len(vocab))
	for s, id := range vocab {
		if id < 0 || id >= maxTokenID {
			return nil, l.errf(fmt.Sprintf("%s[%q]", path, s), "id %d out of range [0, %d)", id, maxTokenID)
		}
		out[s] = int32(id)
	}
	return out, nil
}

func (l *loader) wordPiece(raw json.RawMessage, path string, t *Tokenizer) (map[string]int, error) {
	v := struct {
		Vocab    map[string]int `json:"vocab"`
		Unk      string         `json:"unk_token"`
		Prefix   string         `json:"continuing_subword_prefix"`
		MaxChars int            `json:"max_input_chars_per_word"`
	}{Unk: "[UNK]", Prefix: "##", MaxChars: 100} // HF's defaults
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, l.errf(path, "expected a WordPiece model object: %v", err)
	}
	vocab, err := l.vocabMap(v.Vocab, path+".vocab")
	if err != nil {
		return nil, err
	}
	if v.MaxChars < 0 {
		return nil, l.errf(path+".max_input_chars_per_word", "expected a non-negative integer, got %d", v.MaxChars)
	}
	m := &wordPieceModel{vocab: vocab, prefix: v.Prefix, maxChars: v.MaxChars, unk: -1}
	if id, ok := vocab[v.Unk]; ok {
		m.unk = id
	}
	t.model = m
	return v.Vocab, nil
}

func (l *loader) wordLevel(raw json.RawMessage, path string, t *Tokenizer) (map[string]int, error) {
	v := struct {
		Vocab map[string]int `json:"vocab"`
		Unk   string         `json:"unk_token"`
	}{Unk: "<unk>"}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, l.errf(path, "expected a WordLevel model object: %v", err)
	}
	vocab, err := l.vocabMap(v.Vocab, path+".vocab")
	if err != nil {
		return nil, err
	}
	m := &wordLevelModel{vocab: vocab, unk: -1}
	if id, ok := vocab[v.Unk]; ok {
		m.unk = id
	}
	t.model = m
	return v.Vocab, nil
}

// bpe builds the BPE model and returns the vocabulary (token string to id).
func (l *loader) bpe(raw json.RawMessage, path string, t *Tokenizer) (map[string]int, error) {
	var v struct {
		Type         string            `json:"type"`
		Vocab        map[string]int    `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		UnkToken     *string           `json:"unk_token"`
		Prefix       *string           `json:"continuing_subword_prefix"`
		Suffix       *string           `json:"end_of_word_suffix"`
		FuseUnk      bool              `json:"fuse_unk"`
		ByteFallback bool              `json:"byte_fallback"`
		IgnoreMerges bool              `json:"ignore_merges"`
		Dropout      *float64          `json:"dropout"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, l.errf(path, "expected a BPE model object: %v", err)
	}
	if v.Vocab == nil {
		return nil, l.errf(path+".vocab", "missing field, expected an object of token to id")
	}
	if v.Dropout != nil && *v.Dropout > 0 {
		return nil, l.errf(path+".dropout", "BPE dropout is not supported (got %v)", *v.Dropout)
	}
	merges := make([][2]string, len(v.Merges))
	for k, r := range v.Merges {
		mpath := fmt.Sprintf("%s.merges[%d]", path, k)
		var s string
		if json.Unmarshal(r, &s) == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, l.errf(mpath, "expected \"left right\", got %q", s)
			}
			merges[k] = [2]string{a, b}
			continue
		}
		var p []string
		if err := json.Unmarshal(r, &p); err != nil || len(p) != 2 {
			return nil, l.errf(mpath, "expected \"left right\" or [left, right]")
		}
		merges[k] = [2]string{p[0], p[1]}
	}
	opts := bpeOptions{byteLevel: l.byteLevel, byteFallback: v.ByteFallback, fuseUnk: v.FuseUnk, ignoreMerges: v.IgnoreMerges}
	if v.UnkToken != nil {
		opts.unk = *v.UnkToken
	}
	if v.Prefix != nil {
		opts.prefix = *v.Prefix
	}
	if v.Suffix != nil {
		opts.suffix = *v.Suffix
	}
	m, err := newBPE(v.Vocab, merges, opts)
	if err != nil {
		return nil, l.errf(path, "%v", err)
	}
	t.model, t.bpe = m, m
	return v.Vocab, nil
}

type bpeOptions struct {
	byteLevel, byteFallback, fuseUnk, ignoreMerges bool
	wholeNewlines                                  bool
	unk, prefix, suffix                            string
}

func newBPE(vocab map[string]int, merges [][2]string, o bpeOptions) (*bpeModel, error) {
	m := &bpeModel{
		vocab:         make(map[string]int32, len(vocab)),
		merges:        newPairTable(len(merges)),
		byteLevel:     o.byteLevel,
		byteFallback:  o.byteFallback,
		fuseUnk:       o.fuseUnk,
		ignoreMerges:  o.ignoreMerges,
		wholeNewlines: o.wholeNewlines,
		prefix:        o.prefix,
		suffix:        o.suffix,
		unk:           -1,
	}
	for s, id := range vocab {
		if id < 0 || id >= maxTokenID {
			return nil, fmt.Errorf("vocab[%q]: id %d out of range [0, %d)", s, id, maxTokenID)
		}
		key := s
		if o.byteLevel {
			raw, ok := unByteLevel(s)
			if !ok {
				continue // not reachable from bytes; still known to TokenToID
			}
			key = raw
		}
		if old, ok := m.vocab[key]; !ok || int(old) > id {
			m.vocab[key] = int32(id)
		}
	}
	for b := range 256 {
		m.byteIDs[b], m.fallbackIDs[b] = -1, -1
		if id, ok := vocab[string(byteToRune[b])]; ok && o.byteLevel {
			m.byteIDs[b] = int32(id)
		}
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackIDs[b] = int32(id)
		}
	}
	if o.unk != "" {
		id, ok := vocab[o.unk]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", o.unk)
		}
		m.unk = int32(id)
	}
	prefixLen := len(o.prefix)
	for k, p := range merges {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		right := p[1]
		if prefixLen > 0 && strings.HasPrefix(right, o.prefix) {
			right = right[prefixLen:]
		}
		c, okC := vocab[p[0]+right]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("merges[%d]: %q + %q: token not in the vocabulary", k, p[0], p[1])
		}
		m.merges.put(int32(a), int32(b), mergeVal{rank: int32(k), id: int32(c)})
	}
	return m, nil
}

// config is what tokenizer_config.json contributes.
type config struct {
	bos, eos, pad, unk string
	extra              []string
	added              []AddedToken
	cleanUp            bool
	addBOS, addEOS     *bool
	class              string
}

func (c *config) specials() []string {
	var out []string
	for _, s := range append([]string{c.bos, c.eos, c.unk, c.pad}, c.extra...) {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// overridesTemplate reports whether transformers rebuilds the post-processor
// from add_bos_token/add_eos_token: the Llama and Gemma tokenizer classes do.
func (c *config) overridesTemplate() bool {
	if c.addBOS == nil && c.addEOS == nil {
		return false
	}
	for _, p := range []string{"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"} {
		if c.class == p || c.class == p+"Fast" {
			return true
		}
	}
	return false
}

func (c *config) template(t *Tokenizer, old postProcessor) postProcessor {
	var p templatePost
	addBOS := c.addBOS == nil || *c.addBOS // Llama's default
	if id, ok := t.BOS(); ok && addBOS {
		p.single = append(p.single, templateItem{ids: []int{id}})
	}
	p.single = append(p.single, templateItem{sequence: true})
	if id, ok := t.EOS(); ok && c.addEOS != nil && *c.addEOS {
		p.single = append(p.single, templateItem{ids: []int{id}})
	}
	switch old.(type) {
	case nil, templatePost:
		return p
	}
	return seqPost{old, p}
}

// configFrom takes what the tokenizer needs from tokenizer_config.json
// (nil or not found: nothing) and checks the added tokens' ids and content.
func configFrom(tc *hfconfig.TokenizerConfig) (*config, error) {
	c := &config{}
	if tc == nil || !tc.Found {
		return c, nil
	}
	for _, a := range tc.AddedTokens {
		if a.ID >= maxTokenID {
			return nil, fmt.Errorf("tokenizer: %s: added_tokens_decoder: key \"%d\" is not a token id below %d", tc.Path, a.ID, maxTokenID)
		}
		if a.Content == "" {
			return nil, fmt.Errorf("tokenizer: %s: added_tokens_decoder[\"%d\"].content: expected a non-empty string", tc.Path, a.ID)
		}
		c.added = append(c.added, AddedToken{ID: a.ID, Content: a.Content, SingleWord: a.SingleWord, LStrip: a.LStrip,
			RStrip: a.RStrip, Normalized: normalizedDefault(a.Normalized, a.Special), Special: a.Special})
	}
	c.bos, c.eos, c.pad, c.unk, c.extra = tc.BOS, tc.EOS, tc.PAD, tc.UNK, tc.Extra
	if tc.CleanUpSpaces != nil {
		c.cleanUp = *tc.CleanUpSpaces
	}
	c.addBOS, c.addEOS, c.class = tc.AddBOS, tc.AddEOS, tc.Class
	return c, nil
}

// sequence builds every item of a Sequence component (its JSON path is
// path.field[k]), dropping items that build to nothing.
func sequence[T any](items []json.RawMessage, path, field string, build func(json.RawMessage, string) (T, error)) ([]T, error) {
	var out []T
	for k, r := range items {
		c, err := build(r, fmt.Sprintf("%s.%s[%d]", path, field, k))
		if err != nil {
			return nil, err
		}
		if any(c) != nil {
			out = append(out, c)
		}
	}
	return out, nil
}
