package tokenizer

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotune/gguf"
)

// writeVocab writes a GGUF file holding only tokenizer metadata.
func writeVocab(t *testing.T, kv []gguf.KV) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vocab.gguf")
	if err := gguf.Write(p, append([]gguf.KV{{Key: "general.architecture", Value: "test"}}, kv...), nil); err != nil {
		t.Fatal(err)
	}
	return p
}

type ggufCase struct {
	text        string
	ids, withSp []int
	why         string
}

func checkGGUFCases(t *testing.T, tk *Tokenizer, cases []ggufCase) {
	t.Helper()
	for _, c := range cases {
		if got := tk.Encode(c.text, false); !slices.Equal(got, c.ids) {
			t.Errorf("%q: %v, want %v (%s)", c.text, got, c.ids, c.why)
		}
		if c.withSp != nil {
			if got := tk.Encode(c.text, true); !slices.Equal(got, c.withSp) {
				t.Errorf("%q with special tokens: %v, want %v", c.text, got, c.withSp)
			}
		}
	}
}

// A "bert" vocabulary as llama.cpp's converter writes it: word-initial
// pieces carry "▁", continuations have lost their "##".
func TestGGUFBert(t *testing.T) {
	toks := []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁world", "▁un", "aff", "able", "▁!", "▁,", "▁中", "▁cafe", "▁a", "b"}
	types := make([]int32, len(toks))
	for k := range types {
		types[k] = ggmlNormal
		if k < 4 {
			types[k] = ggmlControl
		}
	}
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "bert"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.seperator_token_id", Value: uint32(3)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.padding_token_id", Value: uint32(0)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, tk, []ggufCase{
		{"Hello, World!", []int{4, 10, 5, 9}, []int{2, 4, 10, 5, 9, 3}, "lowercased words, punctuation split off, each word ▁-prefixed"},
		{"Unaffable", []int{6, 7, 8}, nil, "▁unaffable: longest first ▁un, then aff, able"},
		{"Café", []int{1}, nil, "NFD keeps the combining acute in the word (no accent stripping), and no piece covers it: the word is [UNK]"},
		{"ab中", []int{13, 14, 11}, nil, "中 is a word of its own; ▁ab is ▁a + b"},
		{"xyz", []int{1}, nil, "no piece starts ▁x"},
	})
	if got := tk.Decode([]int{4, 10, 5, 9}, false); got != "hello , world !" {
		t.Errorf("decode = %q", got)
	}
}

// A "t5" (Unigram) vocabulary with a charsmap, add_space_prefix and
// remove_extra_whitespaces, as T5's converted files have.
func TestGGUFT5(t *testing.T) {
	toks := []string{"<pad>", "</s>", "<unk>", "▁", "▁a", "▁ab", "a", "b", "ab", "c", "bc", "fi", "▁fi", "<extra_id_0>", "x", "A", "▁A"}
	scores := []float32{0, 0, 0, -2, -3, -4, -3, -3, -2.5, -3.5, -3, -2, -4.5, 0, -6, -2, -3}
	types := make([]int32, len(toks))
	for k := range types {
		types[k] = ggmlNormal
	}
	types[0], types[1], types[2], types[13] = ggmlControl, ggmlControl, ggmlUnknown, ggmlUserDefined
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "t5"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.padding_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_space_prefix", Value: true},
		{Key: "tokenizer.ggml.remove_extra_whitespaces", Value: true},
		{Key: "tokenizer.ggml.precompiled_charsmap", Value: buildCharsMap(t, map[string]string{"Ａ": "A", "ﬁ": "fi", "\u3000": " "})},
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, tk, []ggufCase{
		{"ab", []int{5}, []int{5, 1}, "▁ab -4 beats ▁|ab -4.5, ▁a|b -6; T5 appends </s>"},
		{"abc", []int{4, 10}, nil, "▁a|bc -6 is the best of the seven segmentations"},
		{"ﬁ Ａ", []int{3, 11, 16}, nil, "charsmap: fi A; one text ▁fi▁A (no pre-tokenizer): ▁|fi|▁A -7 beats ▁fi|▁A -7.5"},
		{"  a  b  ", []int{4, 3, 7}, nil, "extra spaces removed: ▁a▁b = ▁a|▁|b -8"},
		{"xß", []int{3, 14, 2}, nil, "ß has no token: unknown, scored lowest normal (-6) minus 10; no byte fallback in T5"},
		{"øø", []int{3, 2}, nil, "two unknown characters fuse into one <unk>"},
		{"a<extra_id_0>b", []int{4, 13, 3, 7}, nil, "the user-defined token splits the text; each side gets its space prefix"},
	})
	if got := tk.Decode([]int{3, 11, 16}, false); got != "fi A" {
		t.Errorf("decode = %q", got)
	}
}

func TestGGUFBadVocab(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []gguf.KV
		want string
	}{
		{"t5 scores", []gguf.KV{{Key: "tokenizer.ggml.model", Value: "t5"}, {Key: "tokenizer.ggml.tokens", Value: []string{"a"}}}, "tokenizer.ggml.scores"},
		{"t5 charsmap", []gguf.KV{{Key: "tokenizer.ggml.model", Value: "t5"}, {Key: "tokenizer.ggml.tokens", Value: []string{"a"}},
			{Key: "tokenizer.ggml.scores", Value: []float32{-1}}, {Key: "tokenizer.ggml.precompiled_charsmap", Value: []uint8{9, 0, 0, 0, 1}}}, "tokenizer.ggml.precompiled_charsmap"},
		{"unknown pre", []gguf.KV{{Key: "tokenizer.ggml.model", Value: "gpt2"}, {Key: "tokenizer.ggml.tokens", Value: []string{"a"}},
			{Key: "tokenizer.ggml.merges", Value: []string{}}, {Key: "tokenizer.ggml.pre", Value: "no-such-pre"}}, "no-such-pre"},
		{"unknown model", []gguf.KV{{Key: "tokenizer.ggml.model", Value: "rwkv"}, {Key: "tokenizer.ggml.tokens", Value: []string{"a"}}}, "rwkv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadGGUF(writeVocab(t, tc.kv))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "vocab.gguf") {
				t.Errorf("error %v, want one naming the file and %q", err, tc.want)
			}
		})
	}
}

// Without tokenizer.ggml.add_space_prefix a "t5" vocabulary gets no space
// prefix (llama.cpp's default for it is off), and without
// remove_extra_whitespaces every space is kept as ▁.
func TestGGUFT5Defaults(t *testing.T) {
	toks := []string{"<pad>", "</s>", "<unk>", "▁", "a", "b", "▁a"}
	scores := []float32{0, 0, 0, -2, -3, -3, -3}
	types := []int32{ggmlControl, ggmlControl, ggmlUnknown, ggmlNormal, ggmlNormal, ggmlNormal, ggmlNormal}
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "t5"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkGGUFCases(t, tk, []ggufCase{
		{"ab", []int{4, 5}, []int{4, 5, 1}, "no ▁ in front: a|b; </s> (default id 1) appended"},
		{"b  a", []int{5, 3, 6}, nil, "two spaces kept: b ▁▁a = b|▁|▁a (-8) beats b|▁|▁|a (-11)"},
	})
}

// BERT's default special ids (101, 102, 100) do not exist in a small
// vocabulary: they are dropped, not emitted.
func TestGGUFDefaultIDsOutOfRange(t *testing.T) {
	tk, err := LoadGGUF(writeVocab(t, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "bert"},
		{Key: "tokenizer.ggml.tokens", Value: []string{"[PAD]", "▁a"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("a b", true); !slices.Equal(got, []int{1}) {
		t.Errorf("ids %v, want [1] (b has no token and there is no unk to stand for it)", got)
	}
}
