package tokenizer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func load(t testing.TB, dir string) *Tokenizer {
	t.Helper()
	tk, err := Load(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// The hand-written splitters must agree with the general regex engine on
// every string (Oniguruma, which HF uses, and regexp2 agree on these
// patterns; U+017F is left out because only Oniguruma case-folds it to s).
func TestSplitMatchersAgreeWithRegex(t *testing.T) {
	alphabet := []rune("  \t\n\r\n aBzé中文1٣²!?.'\"sStTlLrReEvVdDmM_\u00a0\u3000\u200b🦙\u0301-")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, pat := range []string{patGPT2, patLlama3, patQwen2} {
		fast, err := compileSplitRegex(pat)
		if err != nil {
			t.Fatal(err)
		}
		re, err := compileRegex(pat)
		if err != nil {
			t.Fatal(err)
		}
		slow := regexMatcher{re}
		for n := 0; n < 3000; n++ {
			rs := make([]rune, rng.IntN(24))
			for k := range rs {
				rs[k] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(rs)
			if got, want := spans(fast, s), spans(slow, s); !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q:\n got  %v\n want %v", pat, s, got, want)
			}
		}
	}
}

func spans(m matcher, s string) []string {
	var out []string
	m.matches(s, func(i, j int) { out = append(out, s[i:j]) })
	return out
}

func TestOffsets(t *testing.T) {
	tests := []struct {
		dir, text string
		want      [][2]int
	}{
		{"bytelevel_bpe", "Hello world", [][2]int{{0, 1}, {1, 2}, {2, 4}, {4, 5}, {5, 7}, {7, 9}, {9, 11}}},
		// 北 is split into two byte-level tokens; both report the whole character.
		{"bytelevel_bpe", "a北", [][2]int{{0, 1}, {1, 4}, {1, 4}}},
		{"bytelevel_bpe", "<|im_start|>hi", [][2]int{{0, 12}, {12, 13}, {13, 14}}},
		// The prepended ▁ takes the first character's range.
		{"spm_bpe", "Hello world", [][2]int{{0, 1}, {0, 1}, {1, 3}, {3, 5}, {5, 6}, {6, 9}, {9, 10}, {10, 11}}},
	}
	for _, tc := range tests {
		tk := load(t, tc.dir)
		ids, offs := tk.EncodeOffsets(tc.text, false)
		if !slices.Equal(ids, tk.Encode(tc.text, false)) {
			t.Errorf("%s %q: EncodeOffsets ids differ from Encode", tc.dir, tc.text)
		}
		if len(offs) != len(ids) {
			t.Fatalf("%s %q: %d offsets for %d ids", tc.dir, tc.text, len(offs), len(ids))
		}
		if !slices.Equal(offs, tc.want) {
			toks := make([]string, len(ids))
			for k, id := range ids {
				toks[k] = tk.IDToToken(id)
			}
			t.Errorf("%s %q: tokens %q offsets %v, want %v", tc.dir, tc.text, toks, offs, tc.want)
		}
	}
}

// For byte-level BPE on text that NFC leaves alone, the offsets of the
// tokens of each whole character tile the input.
func TestOffsetsTileInput(t *testing.T) {
	tk := load(t, "bytelevel_bpe")
	cases, err := ReadCases("testdata/bytelevel_bpe/tokenizer_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !norm.NFC.IsNormalString(c.Text) {
			continue
		}
		ids, offs := tk.EncodeOffsets(c.Text, true)
		var sb strings.Builder
		end := 0
		for k := range ids {
			lo, hi := offs[k][0], offs[k][1]
			if lo < 0 || hi > len(c.Text) || lo > hi {
				t.Fatalf("%q: token %d offsets %v out of range", c.Text, k, offs[k])
			}
			if hi > end { // tokens inside one character repeat its range
				sb.WriteString(c.Text[max(lo, end):hi])
				end = hi
			}
		}
		if sb.String() != c.Text {
			t.Errorf("%q: offsets cover %q", c.Text, sb.String())
		}
	}
}

func TestSpecialTokensAndAPI(t *testing.T) {
	tk := load(t, "bytelevel_bpe")
	if id, ok := tk.EOS(); !ok || id != 2002 || tk.EOSToken() != "<|im_end|>" {
		t.Errorf("EOS = %d %v %q", id, ok, tk.EOSToken())
	}
	if id, ok := tk.PAD(); !ok || id != 2000 {
		t.Errorf("PAD = %d %v", id, ok)
	}
	if _, ok := tk.BOS(); ok {
		t.Error("BOS: Qwen-style tokenizer has none")
	}
	if !tk.IsSpecial(2001) || tk.IsSpecial(2003) || tk.IsSpecial(100) {
		t.Error("IsSpecial: want <|im_start|> special, <think> and ordinary tokens not")
	}
	if tk.VocabSize() != 2009 {
		t.Errorf("VocabSize = %d, want 2009", tk.VocabSize())
	}
	if id, ok := tk.TokenToID("<think>"); !ok || id != 2003 || tk.IDToToken(2003) != "<think>" {
		t.Errorf("TokenToID(<think>) = %d %v", id, ok)
	}
	if tk.IDToToken(-1) != "" || tk.IDToToken(1<<20) != "" {
		t.Error("IDToToken out of range must be empty")
	}
	spm := load(t, "spm_bpe")
	if id, ok := spm.BOS(); !ok || id != 1 || spm.BOSToken() != "<s>" {
		t.Errorf("spm BOS = %d %v", id, ok)
	}
	if got := spm.Encode("hi", true); got[0] != 1 {
		t.Errorf("spm Encode(addSpecial) = %v, want a leading BOS", got)
	}
	texts := []string{"Hello world", "", "<|im_start|>user\nhi<|im_end|>", "混合 English"}
	batch := tk.EncodeBatch(texts, true)
	for k, s := range texts {
		if !slices.Equal(batch[k], tk.Encode(s, true)) {
			t.Errorf("EncodeBatch[%d] differs from Encode", k)
		}
	}
}

// writeTokenizer writes a copy of testdata/bytelevel_bpe changed by edit
// (applied to the decoded JSON) and an optional tokenizer_config.json.
func writeTokenizer(t *testing.T, edit func(j map[string]any), config string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/bytelevel_bpe/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	edit(j)
	if b, err = json.Marshal(j); err != nil {
		t.Fatal(err)
	}
	return writeFiles(t, b, config)
}

func writeFiles(t *testing.T, tokenizerJSON []byte, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokenizerJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// get walks a decoded JSON value by object keys and list indexes.
func get(v any, path ...any) map[string]any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

func TestAddedTokenFlags(t *testing.T) {
	dir := writeTokenizer(t, func(j map[string]any) {
		think := get(j, "added_tokens", 3) // <think>
		think["lstrip"], think["rstrip"] = true, true
		get(j, "added_tokens", 4)["single_word"] = true // </think>
	}, "")
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	plain := load(t, "bytelevel_bpe")
	ids, offs := tk.EncodeOffsets("a  <think>  b", false)
	// The spaces around <think> belong to it.
	want := slices.Concat(plain.Encode("a", false), []int{2003}, plain.Encode("b", false))
	if !slices.Equal(ids, want) {
		t.Errorf("lstrip/rstrip: ids %v, want %v", ids, want)
	}
	if k := slices.Index(ids, 2003); k < 0 || offs[k] != [2]int{1, 12} {
		t.Errorf("lstrip/rstrip: offsets %v, want [1 12] for <think>", offs)
	}
	// single_word: not matched inside a word.
	if ids := tk.Encode("x</think>y", false); slices.Contains(ids, 2004) {
		t.Errorf("single_word token matched inside a word: %v", ids)
	}
	if ids := tk.Encode("x </think> y", false); !slices.Contains(ids, 2004) {
		t.Errorf("single_word token not matched between spaces: %v", ids)
	}
}

func TestDecodeHelpers(t *testing.T) {
	if got := lossyUTF8([]byte("a\xe5\x88b\xffc")); got != "a\uFFFDb\uFFFDc" {
		t.Errorf("lossyUTF8 = %q", got)
	}
	if got := cleanUpTokenization("a , b . c n't"); got != "a, b. cn't" {
		t.Errorf("cleanUpTokenization = %q", got)
	}
	if got := (byteFallbackDecoder{}).decodeChain([]string{"<0xE5>", "<0x88>", "x"}); !slices.Equal(got, []string{"\uFFFD", "\uFFFD", "x"}) {
		t.Errorf("byte fallback of an incomplete character = %q", got)
	}
	if got := (metaspaceDecoder{replacement: '▁'}).decodeChain([]string{"▁a▁b", "▁c"}); strings.Join(got, "") != "ab c" {
		t.Errorf("metaspace decode = %q", got)
	}
}

func TestSplitBehaviors(t *testing.T) {
	s := "a--b-c"
	tests := []struct {
		b    behavior
		want []string
	}{
		{removed, []string{"a", "b", "c"}},
		{isolated, []string{"a", "-", "-", "b", "-", "c"}},
		{mergedWithPrevious, []string{"a-", "-", "b-", "c"}},
		{mergedWithNext, []string{"a", "-", "-b", "-c"}},
		{contiguous, []string{"a", "--", "b", "-", "c"}},
	}
	for _, tc := range tests {
		var got []string
		splitPreTokenizer{m: literalMatcher("-"), behavior: tc.b}.split(nstr{s: s}, func(n nstr) { got = append(got, n.s) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("behavior %d: %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestBadInput(t *testing.T) {
	set := func(path []any, key string, v any) func(map[string]any) {
		return func(j map[string]any) { get(j, path...)[key] = v }
	}
	tests := []struct {
		name   string
		raw    string // tokenizer.json text, instead of an edit
		edit   func(map[string]any)
		config string
		want   []string // substrings of the error
	}{
		{"not json", "{", nil, "", []string{"tokenizer.json", "not a tokenizer.json"}},
		{"no model", `{"added_tokens": []}`, nil, "", []string{"tokenizer.json", `missing field "model"`}},
		{"unknown normalizer", "", set([]any{"normalizer"}, "type", "Bogus"), "", []string{"tokenizer.json", "normalizer.type", `"Bogus"`}},
		{"charsmap missing", "", set([]any{"normalizer"}, "type", "Precompiled"), "", []string{"tokenizer.json", "normalizer.precompiled_charsmap", "missing"}},
		{"charsmap truncated", "", func(j map[string]any) {
			j["normalizer"] = map[string]any{"type": "Precompiled", "precompiled_charsmap": "EAAAAGFi"} // size 16, 2 bytes follow
		}, "", []string{"normalizer.precompiled_charsmap", "does not fit"}},
		{"charsmap not base64", "", func(j map[string]any) {
			j["normalizer"] = map[string]any{"type": "Precompiled", "precompiled_charsmap": "!!"}
		}, "", []string{"tokenizer.json", "normalizer", "Precompiled"}},
		{"bad unigram vocab", "", func(j map[string]any) {
			j["model"] = map[string]any{"type": "Unigram", "vocab": []any{[]any{"a", -1.0}, []any{"b"}}}
		}, "", []string{"model.vocab[1]", "[piece, score]"}},
		{"unigram unk_id", "", func(j map[string]any) {
			j["model"] = map[string]any{"type": "Unigram", "unk_id": 7, "vocab": []any{[]any{"a", -1.0}}}
		}, "", []string{"model.unk_id", "outside"}},
		{"empty unigram", "", func(j map[string]any) { j["model"] = map[string]any{"type": "Unigram", "vocab": []any{}} }, "", []string{"model.vocab", "non-empty"}},
		{"wordpiece no vocab", "", func(j map[string]any) { j["model"] = map[string]any{"type": "WordPiece"} }, "", []string{"model.vocab", "missing"}},
		{"wordlevel bad id", "", func(j map[string]any) {
			j["model"] = map[string]any{"type": "WordLevel", "vocab": map[string]any{"a": -1}}
		}, "", []string{"model.vocab", "out of range"}},
		{"bad template sequence", "", func(j map[string]any) {
			j["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"Sequence": map[string]any{"id": "C"}}}, "special_tokens": map[string]any{}}
		}, "", []string{"post_processor.single[0].Sequence.id", `"C"`}},
		{"bad delimiter", "", func(j map[string]any) {
			j["pre_tokenizer"] = map[string]any{"type": "CharDelimiterSplit", "delimiter": "ab"}
		}, "", []string{"pre_tokenizer.delimiter"}},
		{"unknown pre-tokenizer", "", set([]any{"pre_tokenizer", "pretokenizers", 1}, "type", "Bogus"), "", []string{"pre_tokenizer.pretokenizers[1].type", `"Bogus"`}},
		{"unknown decoder", "", set([]any{"decoder"}, "type", "Bogus"), "", []string{"decoder.type", `"Bogus"`}},
		{"unknown post-processor", "", set([]any{"post_processor"}, "type", "Nope"), "", []string{"post_processor.type", `"Nope"`}},
		{"bad behavior", "", set([]any{"pre_tokenizer", "pretokenizers", 0}, "behavior", "Sideways"), "", []string{"pre_tokenizer.pretokenizers[0].behavior", "Sideways"}},
		{"bad regex", "", set([]any{"pre_tokenizer", "pretokenizers", 0}, "pattern", map[string]any{"Regex": "(["}), "", []string{"pre_tokenizer.pretokenizers[0].pattern.Regex"}},
		// ReDoS: with these a 26-character prompt took 10 s, doubling per character
		{"catastrophic regex", "", set([]any{"pre_tokenizer", "pretokenizers", 0}, "pattern", map[string]any{"Regex": "(a+)+$"}), "", []string{"tokenizer.json", "pre_tokenizer.pretokenizers[0].pattern.Regex", "backtracks"}},
		{"catastrophic regex words", "", set([]any{"pre_tokenizer", "pretokenizers", 0}, "pattern", map[string]any{"Regex": `(\w+\s?)*$`}), "", []string{"tokenizer.json", "backtracks"}},
		{"bad merge", "", func(j map[string]any) { get(j, "model")["merges"].([]any)[0] = []any{"Ġ", "no-such-token"} }, "", []string{"model", "merges[0]"}},
		{"unknown model", "", set([]any{"model"}, "type", "Bogus"), "", []string{"model.type", `"Bogus"`}},
		{"bad added id", "", set([]any{"added_tokens", 0}, "id", -3), "", []string{"added_tokens[0].id"}},
		{"bad config", "", func(map[string]any) {}, `{"eos_token": 5}`, []string{"tokenizer_config.json", "eos_token"}},
		{"bad added_tokens_decoder", "", func(map[string]any) {}, `{"added_tokens_decoder": {"x": {"content": "a"}}}`, []string{"tokenizer_config.json", "added_tokens_decoder", `"x"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			if tc.edit == nil {
				dir = writeFiles(t, []byte(tc.raw), tc.config)
			} else {
				dir = writeTokenizer(t, tc.edit, tc.config)
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty folder: no error")
	}
	if _, err := LoadGGUF(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("LoadGGUF of a missing file: no error")
	}
	if _, err := CheckCases(t.TempDir()); err == nil {
		t.Error("CheckCases of an empty folder: no error")
	}
}

// A wrong tokenizer must fail the parity check, naming the first case.
func TestCheckCasesDetectsMismatch(t *testing.T) {
	dir := writeTokenizer(t, func(j map[string]any) {
		m := get(j, "model")
		m["merges"] = m["merges"].([]any)[1:] // drop "Ġ t"
	}, "")
	cases, err := os.ReadFile("testdata/bytelevel_bpe/tokenizer_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_cases.json"), cases, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := CheckCases(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Pass || !strings.Contains(res[0].Detail, "first mismatch: case") {
		t.Errorf("ids check passed with a merge removed: %+v", res[0])
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "Hello world", " \t\n ", "<|im_start|>x<|im_end|>", "混合 English 123", "\xff\xfe", "a\u0301", "🦙🚀"} {
		f.Add(s)
	}
	byteLevel := load(f, "bytelevel_bpe")
	spm := load(f, "spm_bpe")
	others := []*Tokenizer{load(f, "unigram"), load(f, "wordpiece"), load(f, "wordlevel")}
	f.Fuzz(func(t *testing.T, s string) {
		ids, offs := byteLevel.EncodeOffsets(s, true)
		if !slices.Equal(ids, byteLevel.Encode(s, true)) {
			t.Fatalf("%q: EncodeOffsets and Encode disagree", s)
		}
		for _, o := range offs {
			if o[0] < 0 || o[1] > len(s) || o[0] > o[1] {
				t.Fatalf("%q: offsets %v out of range", s, o)
			}
		}
		if utf8.ValidString(s) {
			if got, want := byteLevel.Decode(ids, false), norm.NFC.String(s); got != want {
				t.Fatalf("byte-level round trip of %q gave %q", s, got)
			}
		}
		ids = spm.Encode(s, true)
		_ = spm.Decode(ids, true)
		_, _ = spm.EncodeOffsets(s, false)
		for _, tk := range others {
			ids, offs := tk.EncodeOffsets(s, true)
			if !slices.Equal(ids, tk.Encode(s, true)) || len(offs) != len(ids) {
				t.Fatalf("%q: EncodeOffsets and Encode disagree", s)
			}
			for _, o := range offs {
				if o[0] < 0 || o[1] > len(s) || o[0] > o[1] {
					t.Fatalf("%q: offsets %v out of range", s, o)
				}
			}
			_ = tk.Decode(ids, true)
			_ = tk.EncodePair(s, s, true)
		}
	})
}

// mixedText builds n bytes of English-like and Chinese text from fixed word
// lists (generated here, so no third-party text is involved).
func mixedText(n int) string {
	en := strings.Fields("the model learns to follow instructions and answers questions about data training " +
		"loss gradient token batch with careful attention to detail while it's running fast, 2024 results: 3.14%")
	zh := []string{"模型", "训练", "数据", "微调", "参数", "学习", "问题", "回答", "我们", "可以", "使用", "中文", "。", "，"}
	rng := rand.New(rand.NewPCG(7, 7))
	var sb strings.Builder
	for sb.Len() < n {
		if rng.IntN(3) == 0 {
			for k := rng.IntN(12) + 2; k > 0; k-- {
				sb.WriteString(zh[rng.IntN(len(zh))])
			}
		} else {
			for k := rng.IntN(15) + 3; k > 0; k-- {
				sb.WriteString(en[rng.IntN(len(en))])
				sb.WriteByte(' ')
			}
		}
		sb.WriteString([]string{"\n", " ", "\n\n", "  "}[rng.IntN(4)])
	}
	return sb.String()
}

// BenchmarkEncode reports MB/s on 1 MiB of generated English and Chinese:
// as one text, and line by line (one encode per line, as for training
// samples) through a fresh tokenizer so the word cache starts cold. The
// SentencePiece models (spm_bpe, and llama.cpp's llama-spm vocabulary when
// the third-party data is present) see the whole text as one piece, since
// they have no pre-tokenizer.
func BenchmarkEncode(b *testing.B) {
	text := mixedText(1 << 20)
	lines := strings.Split(text, "\n")
	for _, dir := range []string{"bytelevel_bpe", "spm_bpe"} {
		b.Run(dir, func(b *testing.B) {
			tk := load(b, dir)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tk.Encode(text, false)
			}
		})
		b.Run(dir+"/lines-cold", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				b.StopTimer()
				tk := load(b, dir)
				b.StartTimer()
				for _, l := range lines {
					tk.Encode(l, false)
				}
			}
		})
	}
	b.Run("gguf_llama_spm", func(b *testing.B) {
		tk, err := LoadGGUF(thirdParty(b, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tk.Encode(text, false)
		}
	})
}

func ExampleTokenizer_Encode() {
	tk, err := Load("testdata/bytelevel_bpe")
	if err != nil {
		panic(err)
	}
	ids := tk.Encode("<|im_start|>user\nhi<|im_end|>", false)
	fmt.Println(ids, tk.Decode(ids, true))
	// Output: [2001 84 559 198 71 72 2002] user
	// hi
}
