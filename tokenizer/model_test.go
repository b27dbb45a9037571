package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// naiveMerge is BPE by definition: repeatedly merge the lowest-rank adjacent
// pair, leftmost first. For vocabularies where every token comes from one
// merge (trained ones, as testdata/bytelevel_bpe) the heap must agree.
func naiveMerge(m *bpeModel, w string) []int32 {
	var ids []int32
	for _, s := range m.initial(w, nil) {
		ids = append(ids, s.id)
	}
	for {
		best, bestRank, bestID := -1, int32(1<<31-1), int32(0)
		for k := 0; k+1 < len(ids); k++ {
			if v, ok := m.merges.get(ids[k], ids[k+1]); ok && v.rank < bestRank {
				best, bestRank, bestID = k, v.rank, v.id
			}
		}
		if best < 0 {
			return ids
		}
		ids = slices.Replace(ids, best, best+2, bestID)
	}
}

func TestMergeMatchesDefinition(t *testing.T) {
	tk := load(t, "bytelevel_bpe")
	m := tk.bpe
	words := strings.Fields(mixedText(20000))
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 300; n++ { // long random words exercise the heap
		b := make([]byte, 1+rng.IntN(200))
		for k := range b {
			b[k] = "aeiounrst th\u00e9"[rng.IntN(14)]
		}
		words = append(words, string(b))
	}
	c := newWordCache()
	for _, w := range words {
		var got []int32
		for _, k := range m.tokenize(w, nil, c) {
			got = append(got, k.id)
		}
		if want := naiveMerge(m, w); !slices.Equal(got, want) {
			t.Fatalf("%q: heap merge %v, definition %v", w, got, want)
		}
	}
}

// A Metaspace pre-tokenizer (prepend_scheme always, no split) must give the
// Prepend+Replace normalizer's ids for text that does not start with a space.
func TestMetaspaceMatchesNormalizerForm(t *testing.T) {
	b, err := os.ReadFile("testdata/spm_bpe/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	j["normalizer"] = nil
	j["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false}
	b, _ = json.Marshal(j)
	tk, err := Load(writeFiles(t, b, ""))
	if err != nil {
		t.Fatal(err)
	}
	cases, err := ReadCases("testdata/spm_bpe/tokenizer_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if strings.HasPrefix(c.Text, " ") {
			continue
		}
		if got := tk.Encode(c.Text, false); !slices.Equal(got, c.IDs) {
			t.Errorf("%q: %v, want %v", c.Text, got, c.IDs)
		}
	}
}

func TestIgnoreMerges(t *testing.T) {
	dir := writeTokenizer(t, func(j map[string]any) {
		m := get(j, "model")
		m["ignore_merges"] = true
		// Make "Ġworld" a whole-word token that merges alone would not reach.
		m["vocab"].(map[string]any)["Ġworld"] = 5000
	}, "")
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("Hello world", false); !slices.Contains(got, 5000) {
		t.Errorf("ignore_merges: %v, want the whole-word token 5000", got)
	}
	if tk.VocabSize() != 5001 {
		t.Errorf("VocabSize = %d, want 5001", tk.VocabSize())
	}
}

// An unrecognised split pattern goes through regexp2; wrapping the Qwen2
// pattern in a group keeps its meaning, so the reference ids must still come out.
func TestRegexFallbackMatchesReference(t *testing.T) {
	dir := writeTokenizer(t, func(j map[string]any) {
		get(j, "pre_tokenizer", "pretokenizers", 0)["pattern"] = map[string]any{"Regex": "(?:" + patQwen2 + ")"}
	}, "")
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.pre.(splitPreTokenizer).m.(regexMatcher); !ok {
		t.Fatalf("pre-tokenizer %T does not use regexp2", tk.pre)
	}
	cases, err := ReadCases("testdata/bytelevel_bpe/tokenizer_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if got := tk.Encode(c.Text, false); !slices.Equal(got, c.IDs) {
			t.Errorf("%q: %v, want %v", c.Text, got, c.IDs)
		}
	}
}

// Cutting a long piece where no token spans the boundary must give exactly
// the tokens of BPE over the whole piece.
func TestSegmentedMergeExact(t *testing.T) {
	tk := load(t, "spm_bpe")
	m := tk.bpe
	if !m.canSegment() {
		t.Fatal("spm_bpe should be segmentable")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []rune("ab e\u00e9\u4e2d\u6587▁▁  .,\n\t0123xyzǅ🦙\u0301")
	texts := []string{mixedText(20000), strings.Repeat("a", 500), strings.Repeat(" ", 300), strings.Repeat("ab ", 200)}
	for range 200 {
		rs := make([]rune, 70+rng.IntN(300))
		for k := range rs {
			rs[k] = alphabet[rng.IntN(len(alphabet))]
		}
		texts = append(texts, string(rs))
	}
	for _, text := range texts {
		w := tk.normalizer.normalize(nstr{s: text}).s
		whole := m.merge(w, nil, nil)
		parts := m.tokenizeSegments(w, nil, newWordCache())
		if !slices.Equal(whole, parts) {
			t.Fatalf("%q: segmented merge differs from the whole-piece merge", quoteShort(text))
		}
		// And through Encode (which cuts before the model), offsets included.
		ids, offs := tk.EncodeOffsets(text, false)
		want := make([]int, len(whole))
		for k, x := range whole {
			want[k] = int(x.id)
		}
		if !slices.Equal(ids, want) || len(offs) != len(ids) {
			t.Fatalf("%q: Encode differs from the whole-piece merge", quoteShort(text))
		}
	}
}

// The same for llama.cpp's score-based SentencePiece (GGUF "llama").
func TestSPMSegmentedExact(t *testing.T) {
	tk, err := LoadGGUF(thirdParty(t, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	m := tk.model.(*spmModel)
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []rune("ab e\u00e9\u4e2d\u6587▁  .,\n\t0123xyzǅ🦙\u0301")
	texts := []string{mixedText(20000), strings.Repeat("a", 500), strings.Repeat(" ", 300), "ab\xe4cd\xff" + mixedText(300)}
	for range 100 {
		rs := make([]rune, 70+rng.IntN(300))
		for k := range rs {
			rs[k] = alphabet[rng.IntN(len(alphabet))]
		}
		texts = append(texts, string(rs))
	}
	for _, text := range texts {
		w := tk.normalizer.normalize(nstr{s: text}).s
		var want []int
		for _, x := range m.merge(w, nil) {
			want = append(want, int(x.id))
		}
		if got := tk.Encode(text, false); !slices.Equal(got, want) {
			t.Fatalf("%s: segmented encode differs from the whole-piece merge", quoteShort(text))
		}
	}
}
