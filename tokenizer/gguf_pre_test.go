package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"gotune/gguf"
)

// The pre-tokenizers llama.cpp implements with code of its own rather than
// split regexes cut text as the tokenizers they came from. The expected
// pieces in testdata/gguf_pre_splits.json are worked out by hand from each
// rule (its "why"), on text with the characters the rule is about.
func TestGGUFCustomPreSplits(t *testing.T) {
	raw, err := os.ReadFile("testdata/gguf_pre_splits.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Pre, Model, Text, Why string
		Pieces                []string
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		pre, ok := ggufPrePatterns[c.Pre]
		if !ok {
			t.Errorf("%s: not in the table", c.Pre)
			continue
		}
		seq, err := pre.splitter(c.Model == "whitespace")
		if err != nil {
			t.Errorf("%s: %v", c.Pre, err)
			continue
		}
		n := newNstr(c.Text, 0, false)
		if pre.escapeSpaces {
			n = replaceNormalizer{literal: " ", content: "▁"}.normalize(n)
		}
		var got []string
		seq.split(n, func(m nstr) { got = append(got, m.s) })
		if !slices.Equal(got, c.Pieces) {
			t.Errorf("%s on %q:\n got %q\nwant %q (%s)", c.Pre, c.Text, got, c.Pieces, c.Why)
		}
	}
}

// spmStyleVocab is a SentencePiece-style BPE vocabulary as llama.cpp's
// converter writes Gemma 4's: ▁ for spaces, <0xNN> byte tokens, merges over
// characters.
func spmStyleVocab(model, pre string, withBOSKey bool) []gguf.KV {
	toks := []string{"<pad>", "<eos>", "<bos>", "<unk>", "<0x0A>", "<0xC3>", "<0xA9>",
		"▁", "a", "b", "c", "\n", "\n\n", "▁a", "ab", "▁ab", "abc", "▁▁"}
	types := make([]int32, len(toks))
	for k := range types {
		switch {
		case k < 4:
			types[k] = ggmlControl
		case k < 7:
			types[k] = 6 // byte
		default:
			types[k] = ggmlNormal
		}
	}
	kv := []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: model},
		{Key: "tokenizer.ggml.pre", Value: pre},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.token_type", Value: types},
		// "\n \n" is ranked first: a run of two newlines is still the whole
		// token "\n\n" only because of the whole-newline rule.
		{Key: "tokenizer.ggml.merges", Value: []string{"▁ a", "a b", "▁a b", "ab c", "▁ ▁", "\n \n"}},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(1)},
	}
	if withBOSKey {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: false})
	}
	return kv
}

func TestGGUFSPMStyleBPE(t *testing.T) {
	// Model "gemma4" with a stale pre name: llama.cpp uses Gemma 4's rules
	// whatever the file says, and adds BOS even when told not to.
	gemma, err := LoadGGUF(writeVocab(t, spmStyleVocab("gemma4", "default", true)))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, gemma, []ggufCase{
		{"ab abc", []int{14, 15, 10}, []int{2, 14, 15, 10}, "merges over characters: a+b, then ▁a+b; c has no merge with ▁ab"},
		{"abc", []int{16}, nil, "ab+c"},
		{"a  a", []int{8, 7, 13}, nil, "two spaces are ▁▁; ▁ a (rank 0) merges before ▁ ▁ (rank 4)"},
		{"a  ", []int{8, 17}, nil, "▁ ▁ merges when no ▁ a competes"},
		{"a\n\nb", []int{8, 12, 9}, nil, "a run of newlines is split off and taken whole"},
		{"é", []int{5, 6}, nil, "é is not a token: its UTF-8 bytes C3 A9 as <0xNN> tokens"},
		{"a\nz", []int{8, 11}, nil, "z has neither a token nor byte tokens (7A): dropped, as llama.cpp drops it"},
	})
	if got := gemma.Decode([]int{2, 15, 5, 6, 12, 13}, true); got != " abé\n\n a" {
		t.Errorf("decode = %q", got)
	}
	// The same vocabulary as "gpt2" + "sarvam-moe": no BOS forced, no whole-newline rule.
	sarvam, err := LoadGGUF(writeVocab(t, spmStyleVocab("gpt2", "sarvam-moe", false)))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, sarvam, []ggufCase{
		{"ab", []int{14}, []int{14}, "no BOS: sarvam-moe has no BOS default"},
		{"\n\n", []int{12}, nil, "\\n \\n merges to \\n\\n anyway"},
	})
}

// llama.cpp's "whitespace" tokenizer model: whitespace dropped, merges over
// raw UTF-8 characters (jina-embeddings-v2-base-zh).
func TestGGUFWhitespaceModel(t *testing.T) {
	toks := []string{"[PAD]", "[UNK]", "a", "b", "ab", "中", "文", "中文"}
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "whitespace"},
		{Key: "tokenizer.ggml.pre", Value: "whitespace"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.merges", Value: []string{"a b", "中 文"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, tk, []ggufCase{
		{" ab\t中文  a b ", []int{4, 7, 2, 3}, nil, "words between whitespace; nothing for the whitespace itself"},
	})
}

// Superword BPE: merges may cross spaces; digits never join the words around them.
func TestGGUFSuperBPE(t *testing.T) {
	var toks []string
	for b := range 256 {
		toks = append(toks, string(byteToRune[b]))
	}
	id := func(s string) int { return slices.Index(toks, s) }
	toks = append(toks, "Ġt", "Ġth", "Ġthe", "Ġthe1", "12", "123")
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: "superbpe"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.merges", Value: []string{"Ġ t", "Ġt h", "Ġth e", "Ġthe 1", "1 2", "12 3"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, tk, []ggufCase{
		{"a the123456", []int{id("a"), id("Ġthe"), id("123"), id("4"), id("5"), id("6")}, nil,
			"a space does not end a word: a+Ġthe; the merge Ġthe 1 never applies because digits are pieces of their own, cut into 123 | 456"},
		{"1234", []int{id("1"), id("2"), id("3"), id("4")}, nil, "cut 1 | 234 from the right, so 12 3 never meet"},
	})
}
