package tokenizer

import (
	"encoding/json"
	"slices"
	"testing"
)

// Expected values below follow from the definitions in Hugging Face's
// tokenizers library (normalizers/, pre_tokenizers/, decoders/), worked by
// hand; the comment on each row says how.

func TestNormalizers(t *testing.T) {
	tests := []struct {
		name, json, in, want string
	}{
		// clean_text drops \x00, U+FFFD and controls (U+200B is Cf) and maps
		// whitespace (\t, U+3000) to ' '; CJK ideographs get spaces around
		// them; strip_accents follows lowercase: NFD then drop Mn; É→e.
		{"bert", `{"type":"BertNormalizer"}`, "Héllo\tWörld\x00\u200b中文\u3000Ã\uFFFD", "hello world 中  文  a"},
		{"bert keep accents", `{"type":"BertNormalizer","strip_accents":false}`, "Éa", "éa"},
		{"bert no lowercase", `{"type":"BertNormalizer","lowercase":false,"handle_chinese_chars":false}`, "Éa中", "Éa中"},
		{"bert lowercase, strip", `{"type":"BertNormalizer","lowercase":false,"strip_accents":true}`, "Éa", "Ea"},
		// Nmt: \x01 and \x7f dropped; \t, U+200B, U+FEFF, U+2581 become ' '.
		{"nmt", `{"type":"Nmt"}`, "a\x01b\tc\u200bd\ufeffe\u2581f\x7f", "ab c d e f"},
		{"lowercase", `{"type":"Lowercase"}`, "ÀBİ", "àbi\u0307"},
		{"strip both", `{"type":"Strip","left":true,"right":true}`, " \t a b \n", "a b"},
		{"strip left", `{"type":"Strip","left":true,"right":false}`, "  a ", "a "},
		// StripAccents alone drops Mn without decomposing: precomposed é stays.
		{"strip accents", `{"type":"StripAccents"}`, "e\u0301é", "eé"},
		{"nfkc", `{"type":"NFKC"}`, "ﬁ①Ａ", "fi1A"},
		{"nfkd", `{"type":"NFKD"}`, "ﬁé", "fie\u0301"},
		{"nfd", `{"type":"NFD"}`, "ﬁé", "ﬁe\u0301"},
		{"nfc", `{"type":"NFC"}`, "e\u0301", "é"},
		{"replace literal", `{"type":"Replace","pattern":{"String":" "},"content":"▁"}`, "a b  c", "a▁b▁▁c"},
		{"replace regex", `{"type":"Replace","pattern":{"Regex":" {2,}"},"content":" "}`, "a  b   c d", "a b c d"},
		{"prepend", `{"type":"Prepend","prepend":"▁"}`, "ab", "▁ab"},
		{"prepend empty", `{"type":"Prepend","prepend":"▁"}`, "", ""},
		{"sequence", `{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]}`, "ＡＢ", "ab"},
		// ByteLevel: bytes to GPT-2's alphabet; space is Ġ, é (C3 A9) is Ã©.
		{"byte level", `{"type":"ByteLevel"}`, "a é\n", "aĠÃ©Ċ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &loader{file: "test.json"}
			n, err := l.normalizer(json.RawMessage(tc.json), "normalizer")
			if err != nil {
				t.Fatal(err)
			}
			for _, track := range []bool{false, true} {
				got := n.normalize(newNstr(tc.in, 0, track))
				if got.s != tc.want {
					t.Errorf("track=%v: %q -> %q, want %q", track, tc.in, got.s, tc.want)
				}
				if track && len(got.align) != len(got.s) {
					t.Errorf("alignment has %d entries for %d bytes", len(got.align), len(got.s))
				}
			}
		})
	}
}

func TestPreTokenizers(t *testing.T) {
	tests := []struct {
		name, json, in string
		want           []string
	}{
		// Whitespace keeps the matches of \w+|[^\w\s]+.
		{"whitespace", `{"type":"Whitespace"}`, "Hey, friend_1!  ¿où?", []string{"Hey", ",", "friend_1", "!", "¿", "où", "?"}},
		{"whitespace split", `{"type":"WhitespaceSplit"}`, " a,b \t c ", []string{"a,b", "c"}},
		// Bert: split on whitespace (removed), then isolate each punctuation
		// character (ASCII punctuation or Unicode P*: $ and ^ are ASCII).
		{"bert", `{"type":"BertPreTokenizer"}`, "Hi!! $5 a^b 「x」", []string{"Hi", "!", "!", "$", "5", "a", "^", "b", "「", "x", "」"}},
		{"punctuation isolated", `{"type":"Punctuation"}`, "a,,b", []string{"a", ",", ",", "b"}},
		{"punctuation contiguous", `{"type":"Punctuation","behavior":"Contiguous"}`, "a,,b.", []string{"a", ",,", "b", "."}},
		{"digits contiguous", `{"type":"Digits","individual_digits":false}`, "a12b3", []string{"a", "12", "b", "3"}},
		{"digits individual", `{"type":"Digits","individual_digits":true}`, "a12b", []string{"a", "1", "2", "b"}},
		// A lookahead-only pattern matches empty strings: each is a cut (HF's
		// Split over Oniguruma's matches), and no empty piece comes out.
		{"split empty matches", `{"type":"Split","pattern":{"Regex":"(?=(\\d{3})+(?!\\d))"},"behavior":"Isolated"}`, "x1234567", []string{"x1", "234", "567"}},
		{"split empty matches merged", `{"type":"Split","pattern":{"Regex":"(?=b)"},"behavior":"MergedWithPrevious"}`, "abab", []string{"a", "ba", "b"}},
		{"char delimiter", `{"type":"CharDelimiterSplit","delimiter":"|"}`, "a|b||c", []string{"a", "b", "c"}},
		// UnicodeScripts: a cut before each character whose script differs
		// from the last non-space one; spaces join the piece before them,
		// kana count as Han, and leading spaces are dropped.
		{"unicode scripts", `{"type":"UnicodeScripts"}`, "  Hello世界ひらがな 123 Привет", []string{"Hello", "世界ひらがな ", "123 ", "Привет"}},
		// U+0378 is unassigned: Any, so it joins the Greek around it.
		{"unicode scripts any", `{"type":"UnicodeScripts"}`, "αβ͸γ", []string{"αβ͸γ"}},
		{"fixed length", `{"type":"FixedLength","length":2}`, "abcdé", []string{"ab", "cd", "é"}},
		// Split behaviours on the pattern "-" over "a-b--c".
		{"split removed", `{"type":"Split","pattern":{"String":"-"},"behavior":"Removed","invert":false}`, "a-b--c", []string{"a", "b", "c"}},
		{"split isolated", `{"type":"Split","pattern":{"String":"-"},"behavior":"Isolated","invert":false}`, "a-b--c", []string{"a", "-", "b", "-", "-", "c"}},
		{"split merged previous", `{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithPrevious","invert":false}`, "a-b--c", []string{"a-", "b-", "-", "c"}},
		{"split merged next", `{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithNext","invert":false}`, "a-b--c", []string{"a", "-b", "-", "-c"}},
		{"split contiguous", `{"type":"Split","pattern":{"String":"-"},"behavior":"Contiguous","invert":false}`, "a-b--c", []string{"a", "-", "b", "--", "c"}},
		{"split invert", `{"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Removed","invert":true}`, "a12b3", []string{"12", "3"}},
		// Metaspace: spaces become ▁, ▁ is prepended (always / first piece
		// only / never) and pieces start at each ▁.
		{"metaspace always", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`, "hi  there", []string{"▁hi", "▁", "▁there"}},
		{"metaspace never", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true}`, "hi there", []string{"hi", "▁there"}},
		{"metaspace no split", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`, "hi there", []string{"▁hi▁there"}},
		{"sequence", `{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},{"type":"Digits","individual_digits":true}]}`, "ab12 c", []string{"ab", "1", "2", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &loader{file: "test.json"}
			p, err := l.preTokenizer(json.RawMessage(tc.json), "pre_tokenizer")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			p.split(newNstr(tc.in, 0, true), func(n nstr) { got = append(got, n.s) })
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q -> %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecoders(t *testing.T) {
	tests := []struct {
		name, json string
		in         []string
		want       string
	}{
		// WordPiece: "##" pieces glue on, others get a space; cleanup then
		// removes the space before punctuation, token by token (so " do
		// not", which spans two tokens, stays).
		{"wordpiece", `{"type":"WordPiece","prefix":"##","cleanup":true}`, []string{"un", "##aff", "##able", "do", "not", "stop", "!", "'s"}, "unaffable do not stop!'s"},
		{"wordpiece no cleanup", `{"type":"WordPiece","cleanup":false}`, []string{"a", "##b", ","}, "ab ,"},
		// CTC: repeats collapse, <pad> disappears, | becomes a space.
		{"ctc", `{"type":"CTC"}`, []string{"<pad>", "h", "h", "e", "<pad>", "l", "l", "<pad>", "l", "o", "|", "|", "w"}, "hello w"},
		{"bpe suffix", `{"type":"BPEDecoder","suffix":"</w>"}`, []string{"hel", "lo</w>", "you</w>"}, "hello you"},
		{"metaspace", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`, []string{"▁Hi", "▁there"}, "Hi there"},
		// ByteFallback decodes a run of byte tokens at once: valid UTF-8
		// becomes its text, an invalid run one U+FFFD per byte.
		{"byte fallback", `{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}`, []string{"a", "<0xC3>", "<0xA9>", "b", "<0xC3>", "<0xA9>", "<0xC3>"}, "aéb\uFFFD\uFFFD\uFFFD"},
		{"strip", `{"type":"Strip","content":" ","start":1,"stop":1}`, []string{" a ", "  b  "}, "a b "},
		{"replace", `{"type":"Replace","pattern":{"String":"▁"},"content":" "}`, []string{"▁a", "▁b"}, " a b"},
		{"byte level", `{"type":"ByteLevel"}`, []string{"Ġh", "Ã©"}, " hé"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &loader{file: "test.json"}
			d, err := l.decoder(json.RawMessage(tc.json), "decoder")
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, s := range d.decodeChain(slices.Clone(tc.in)) {
				got += s
			}
			if got != tc.want {
				t.Errorf("%q -> %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// A BPE over GPT-2's byte alphabet fed by the ByteLevel normalizer (no
// pre-tokenizer): " a é" is Ġ a Ġ Ã © in that alphabet; merge 0 (Ã ©) then
// merge 1 (Ġ a) give Ġa Ġ Ã© = 5 1 4, and the ByteLevel decoder maps back.
func TestByteLevelNormalizerModel(t *testing.T) {
	js := `{"normalizer":{"type":"ByteLevel"},"pre_tokenizer":null,"decoder":{"type":"ByteLevel"},
	 "model":{"type":"BPE","vocab":{"a":0,"Ġ":1,"Ã":2,"©":3,"Ã©":4,"Ġa":5},"merges":["Ã ©","Ġ a"]}}`
	dir := writeFiles(t, []byte(js), "")
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode(" a é", false); !slices.Equal(got, []int{5, 1, 4}) {
		t.Errorf("ids %v, want [5 1 4]", got)
	}
	if got := tk.Decode([]int{5, 1, 4}, false); got != " a é" {
		t.Errorf("decoded %q", got)
	}
}
