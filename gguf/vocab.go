package gguf

import (
	"encoding/json"
	"fmt"
	"gotune/hfconfig"
	"gotune/safefile"
	"path/filepath"
	"regexp"
	"strings"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type         string            `json:"type"`
		Vocab        json.RawMessage   `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		ByteFallback bool              `json:"byte_fallback"`
		UnkToken     *string           `json:"unk_token"`
	} `json:"model"`
}

// Known pre-tokenizer split patterns and llama.cpp's names for them
// (tokenizer.ggml.pre). llama.cpp identifies these by hashing the
// tokenization of a probe text; matching the regex is the Go-side stand-in.
var preTokenizers = []struct{ name, regex string }{
	{"qwen2", `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
	{"llama-bpe", `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
	{"gpt-2", `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`},
}

var byteToken = regexp.MustCompile(`^<0x[0-9A-Fa-f]{2}>$`)

// vocabKV builds the tokenizer.* metadata from a model folder's
// tokenizer.json, tokenizer_config.json and chat template. vocabSize pads the
// token list with unused entries to the embedding's row count.
func vocabKV(modelDir string, vocabSize int, cfg *HFConfig, pre string) ([]KV, error) {
	path := filepath.Join(modelDir, "tokenizer.json")
	b, err := safefile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("GGUF export needs tokenizer.json: %w", err)
	}
	var tj hfTokenizer
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tc, err := hfconfig.ReadTokenizerConfig(modelDir)
	if err != nil {
		return nil, err
	}
	tmpl, err := ggufTemplate(tc)
	if err != nil {
		return nil, err
	}

	tokens := make([]string, vocabSize)
	have := make([]bool, vocabSize)
	scores := make([]float32, vocabSize)
	set := func(id int, tok string, where string) error {
		if id < 0 || id >= vocabSize {
			return fmt.Errorf("%s: %s: token %q has id %d outside the model's vocabulary of %d", path, where, tok, id, vocabSize)
		}
		tokens[id], have[id] = tok, true
		return nil
	}
	var merges []string
	switch tj.Model.Type {
	case "BPE":
		var vocab map[string]int
		if err := json.Unmarshal(tj.Model.Vocab, &vocab); err != nil {
			return nil, fmt.Errorf("%s: model.vocab: want an object of token → id: %w", path, err)
		}
		for tok, id := range vocab {
			if err := set(id, tok, "model.vocab"); err != nil {
				return nil, err
			}
		}
		for i, raw := range tj.Model.Merges {
			m, err := mergeString(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: model.merges[%d]: %w", path, i, err)
			}
			merges = append(merges, m)
		}
	case "Unigram":
		var vocab [][2]json.RawMessage
		if err := json.Unmarshal(tj.Model.Vocab, &vocab); err != nil {
			return nil, fmt.Errorf("%s: model.vocab: want a list of [piece, score]: %w", path, err)
		}
		for id, e := range vocab {
			var tok string
			var score float32
			if json.Unmarshal(e[0], &tok) != nil || json.Unmarshal(e[1], &score) != nil {
				return nil, fmt.Errorf("%s: model.vocab[%d]: want [string, number]", path, id)
			}
			if err := set(id, tok, "model.vocab"); err != nil {
				return nil, err
			}
			scores[id] = score
		}
	default:
		return nil, fmt.Errorf("%s: model.type %q is not supported (want BPE or Unigram)", path, tj.Model.Type)
	}
	added := map[int]bool{}
	special := map[int]bool{}
	for i, a := range tj.AddedTokens {
		if err := set(a.ID, a.Content, fmt.Sprintf("added_tokens[%d]", i)); err != nil {
			return nil, err
		}
		added[a.ID] = true
		special[a.ID] = a.Special
	}

	byteLevel := strings.Contains(string(tj.PreTokenizer), `"ByteLevel"`) || strings.Contains(string(tj.Decoder), `"ByteLevel"`)
	spm := !byteLevel && (tj.Model.ByteFallback || tj.Model.Type == "Unigram")
	if !byteLevel && !spm {
		return nil, fmt.Errorf("%s: tokenizer is neither byte-level BPE nor SentencePiece-style (byte fallback or Unigram); llama.cpp cannot run it", path)
	}
	unk := ""
	if tj.Model.UnkToken != nil {
		unk = *tj.Model.UnkToken
	}
	types := make([]int32, vocabSize)
	for id := range tokens {
		switch {
		case !have[id]:
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), TokenUnused
		case spm && tokens[id] == unk:
			types[id] = TokenUnknown
		case spm && byteToken.MatchString(tokens[id]):
			types[id] = TokenByte
		case added[id] && (special[id] || looksSpecial(tokens[id])):
			types[id] = TokenControl
		case added[id]:
			types[id] = TokenUserDefined
			if byteLevel {
				// llama.cpp pre-normalizes user-defined pieces to plain spaces.
				tokens[id] = strings.ReplaceAll(tokens[id], "▁", " ")
			}
		default:
			types[id] = TokenNormal
		}
	}

	var kv []KV
	if byteLevel {
		if pre == "" {
			pre = detectPre(tj.PreTokenizer)
		}
		kv = append(kv, KV{"tokenizer.ggml.model", "gpt2"}, KV{"tokenizer.ggml.pre", pre},
			KV{"tokenizer.ggml.tokens", tokens}, KV{"tokenizer.ggml.token_type", types},
			KV{"tokenizer.ggml.merges", merges})
	} else {
		if tj.Model.Type == "BPE" {
			// llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
			// result scores highest; scoring each merge result by minus its merge
			// rank makes it apply merges in BPE priority order.
			rank := map[string]int{}
			for i, m := range merges {
				a, bb, _ := strings.Cut(m, " ")
				if _, dup := rank[a+bb]; !dup {
					rank[a+bb] = i
				}
			}
			for id, tok := range tokens {
				if r, ok := rank[tok]; ok && types[id] == TokenNormal {
					scores[id] = -float32(r + 1)
				}
			}
		}
		kv = append(kv, KV{"tokenizer.ggml.model", "llama"}, KV{"tokenizer.ggml.pre", "default"},
			KV{"tokenizer.ggml.tokens", tokens}, KV{"tokenizer.ggml.scores", scores},
			KV{"tokenizer.ggml.token_type", types},
			KV{"tokenizer.ggml.add_space_prefix", strings.Contains(string(tj.Normalizer), `"Prepend"`) || strings.Contains(string(tj.PreTokenizer), `"prepend_scheme":"always"`)})
	}

	lookup := func(tok string) (int, bool) {
		for id, t := range tokens {
			if have[id] && t == tok {
				return id, true
			}
		}
		return 0, false
	}
	ids := []struct {
		key  string
		tok  string
		conf *int
	}{
		{"tokenizer.ggml.bos_token_id", tc.BOS, cfg.BOSTokenID},
		{"tokenizer.ggml.eos_token_id", tc.EOS, cfg.EOSTokenID},
		{"tokenizer.ggml.unknown_token_id", tc.UNK, nil},
		{"tokenizer.ggml.padding_token_id", tc.PAD, cfg.PadTokenID},
	}
	for _, s := range ids {
		id, ok := -1, false
		if s.tok != "" {
			if id, ok = lookup(s.tok); !ok {
				return nil, fmt.Errorf("%s: %s %q is not in the vocabulary", tc.Path, strings.TrimPrefix(s.key, "tokenizer.ggml."), s.tok)
			}
		} else if s.conf != nil {
			id, ok = *s.conf, true
		}
		if ok {
			if id < 0 || id >= vocabSize {
				return nil, fmt.Errorf("%s: %s = %d is outside the vocabulary of %d", modelDir, s.key, id, vocabSize)
			}
			kv = append(kv, KV{s.key, uint32(id)})
		}
	}
	addBOS := tc.AddBOS
	if addBOS == nil {
		// Without an explicit flag, a post-processor template that starts with
		// the BOS token is what adds it.
		v := tc.BOS != "" && templateAddsFirst(tj.PostProcessor, tc.BOS)
		addBOS = &v
	}
	kv = append(kv, KV{"tokenizer.ggml.add_bos_token", *addBOS})
	addEOS := false
	if tc.AddEOS != nil {
		addEOS = *tc.AddEOS
	}
	kv = append(kv, KV{"tokenizer.ggml.add_eos_token", addEOS})
	if tmpl != "" {
		kv = append(kv, KV{"tokenizer.chat_template", tmpl})
	}
	return kv, nil
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func mergeString(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if strings.Count(s, " ") != 1 {
			return "", fmt.Errorf("merge %q: want two pieces separated by one space", s)
		}
		return s, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		if strings.Contains(pair[0], " ") || strings.Contains(pair[1], " ") {
			// GGUF stores merges as "a b"; a piece with a space cannot be encoded.
			return "", fmt.Errorf("merge %q contains a space, which GGUF's \"a b\" merge format cannot hold", pair)
		}
		return pair[0] + " " + pair[1], nil
	}
	return "", fmt.Errorf("want \"a b\" or [\"a\", \"b\"], got %s", raw)
}

func looksSpecial(tok string) bool {
	return (strings.HasPrefix(tok, "<|") && strings.HasSuffix(tok, "|>")) ||
		(strings.HasPrefix(tok, "<｜") && strings.HasSuffix(tok, "｜>"))
}

func detectPre(raw json.RawMessage) string {
	s := string(raw)
	for _, p := range preTokenizers {
		if strings.Contains(s, jsonString(p.regex)) {
			return p.name
		}
	}
	return "default"
}

// ggufTemplate is the chat template that goes into tokenizer.chat_template:
// chat_template.jinja, else tokenizer_config.json's chat_template. GGUF has
// one template, so a list of named ones is refused even when the .jinja
// file would win, rather than dropping the other variants unnoticed.
func ggufTemplate(tc *hfconfig.TokenizerConfig) (string, error) {
	if tc.TemplateForm == hfconfig.NamedTemplates {
		return "", fmt.Errorf("%s: field chat_template: only a single template string can go into GGUF, not a list of named ones", tc.Path)
	}
	if tc.HasJinja {
		return tc.Jinja, nil
	}
	return tc.ChatTemplate, nil
}

// templateAddsFirst reports whether a TemplateProcessing post-processor (alone
// or inside a Sequence) puts the given special token first in a single
// sequence.
func templateAddsFirst(raw json.RawMessage, tok string) bool {
	var p struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return false
	}
	switch p.Type {
	case "Sequence":
		for _, q := range p.Processors {
			if templateAddsFirst(q, tok) {
				return true
			}
		}
	case "TemplateProcessing":
		return len(p.Single) > 0 && p.Single[0].SpecialToken != nil && p.Single[0].SpecialToken.ID == tok
	}
	return false
}
