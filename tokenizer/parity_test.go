package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReferenceCases(t *testing.T) {
	for _, dir := range []string{"bytelevel_bpe", "spm_bpe"} {
		t.Run(dir, func(t *testing.T) {
			res, err := CheckCases(filepath.Join("testdata", dir))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 5 {
				t.Fatalf("got %d results, want 5", len(res))
			}
			for _, r := range res {
				if !r.Pass || r.Value != 0 {
					t.Errorf("%s: %v mismatches: %s", r.Check, r.Value, r.Detail)
				}
			}
		})
	}
}

// thirdParty returns a path under ../shared/testdata/third_party (relative to
// the repository root) or skips the test when that folder is absent; under
// CI, where ../shared is always present, its absence fails the test.
func thirdParty(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "testdata", "third_party", rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("third-party test data missing under CI (%s): %v", p, err)
		}
		t.Skipf("third-party test data not available (%s): %v", p, err)
	}
	return p
}

// Every llama.cpp test vocabulary that has .inp/.out goldens must encode
// them exactly.
func TestLlamaCppVocab(t *testing.T) {
	dir := thirdParty(t, "llamacpp-vocab")
	files, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range files {
		if _, err := os.Stat(path + ".out"); err != nil {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			res, err := CheckLlamaCppVocab(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if !r.Pass {
					t.Errorf("%s: %v mismatches: %s", r.Check, r.Value, r.Detail)
				}
			}
		})
	}
	if n == 0 {
		t.Errorf("no .gguf with .inp/.out goldens in %s", dir)
	}
}

func TestGGUFVocabAPI(t *testing.T) {
	spm, err := LoadGGUF(thirdParty(t, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := spm.BOS(); !ok || id != 1 || spm.BOSToken() != "<s>" {
		t.Errorf("BOS = %d %v %q", id, ok, spm.BOSToken())
	}
	if id, ok := spm.EOS(); !ok || id != 2 {
		t.Errorf("EOS = %d %v", id, ok)
	}
	if spm.VocabSize() != 32000 || !spm.IsSpecial(1) || spm.IsSpecial(100) {
		t.Errorf("VocabSize %d, IsSpecial(1) %v", spm.VocabSize(), spm.IsSpecial(1))
	}
	if got := spm.Encode("Hello", true); len(got) == 0 || got[0] != 1 {
		t.Errorf("Encode(addSpecial) = %v, want BOS first (add_bos_token)", got)
	}
	gpt2, err := LoadGGUF(thirdParty(t, "llamacpp-vocab/ggml-vocab-gpt-2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	inputs, _, err := ReadLlamaCppVocabTest(thirdParty(t, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range inputs {
		if got := gpt2.Decode(gpt2.Encode(s, false), false); got != s {
			t.Errorf("gpt-2 round trip of %q gave %q", s, got)
		}
		if got := spm.Decode(spm.Encode(s, false), false); got != s {
			t.Errorf("llama-spm round trip of %q gave %q", s, got)
		}
	}
	if got := spm.Decode(spm.Encode("<s>hi</s>", false), true); got != "hi" {
		t.Errorf("llama-spm decode skipping specials = %q", got)
	}
}

func TestGGUFPreSplitsCompile(t *testing.T) {
	for name, pre := range ggufPrePatterns {
		for _, p := range pre.pats {
			if _, err := compileSplitRegex(p); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// llama.cpp writes some split regexes differently from the tokenizer.json
// they came from (GPT-2's without the final |\s+, Llama 3's and Qwen2's with
// (?:'[sS]|…) for (?i:'s|…)); the table uses the tokenizer.json form. Both
// must cut text into the same pieces (an Isolated split keeps unmatched text
// as pieces too).
func TestGGUFPreRegexVariantsAgree(t *testing.T) {
	pairs := [][2]string{
		{patGPT2, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`},
		{patLlama3, `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
		{patQwen2, `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
	}
	alphabet := []rune("  \t\n\r\n aBzé中文1٣²!?.'\"sStTlLrReEvVdDmM_\u00a0\u3000\u200b🦙\u0301-")
	rng := rand.New(rand.NewPCG(9, 9))
	for _, p := range pairs {
		ours, err := compileSplitRegex(p[0])
		if err != nil {
			t.Fatal(err)
		}
		re, err := compileRegex(p[1])
		if err != nil {
			t.Fatal(err)
		}
		theirs := splitPreTokenizer{m: regexMatcher{re}, behavior: isolated}
		mine := splitPreTokenizer{m: ours, behavior: isolated}
		for range 3000 {
			rs := make([]rune, rng.IntN(24))
			for k := range rs {
				rs[k] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(rs)
			var a, b []string
			mine.split(newNstr(s, 0, false), func(n nstr) { a = append(a, n.s) })
			theirs.split(newNstr(s, 0, false), func(n nstr) { b = append(b, n.s) })
			if !slices.Equal(a, b) {
				t.Fatalf("%q on %q: %q vs llama.cpp's form %q", p[0], s, a, b)
			}
		}
	}
}
