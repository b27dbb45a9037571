package constrain

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// synthVocab is a 151k-token vocabulary shaped like a byte-level BPE one:
// every single byte, words with and without a leading space, digits,
// punctuation runs, whitespace runs and CJK characters.
func synthVocab(n int) ([][]byte, *Vocab) {
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	var toks [][]byte
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			toks = append(toks, []byte(s))
		}
	}
	for b := 0; b < 256; b++ {
		add(string([]byte{byte(b)}))
	}
	letters := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	punct := `{}[]":,.;!?()-_'/\<>=+*&%$#@`
	for len(toks) < n {
		var b []byte
		switch k := r.IntN(10); {
		case k < 6:
			if r.IntN(2) == 0 {
				b = append(b, ' ')
			}
			for l := 2 + r.IntN(8); l > 0; l-- {
				b = append(b, letters[r.IntN(len(letters))])
			}
		case k == 6:
			for l := 1 + r.IntN(3); l > 0; l-- {
				b = append(b, byte('0'+r.IntN(10)))
			}
		case k == 7:
			for l := 1 + r.IntN(3); l > 0; l-- {
				b = append(b, punct[r.IntN(len(punct))])
			}
		case k == 8:
			b = append(b, '\n')
			for l := r.IntN(12); l > 0; l-- {
				b = append(b, ' ')
			}
		default:
			for l := 1 + r.IntN(2); l > 0; l-- {
				b = append(b, string(rune(0x4E00+r.IntN(20000)))...)
			}
		}
		add(string(b))
	}
	return toks, NewVocab(len(toks), func(id int) ([]byte, bool) { return toks[id], true })
}

// The cost of masking on a 151k vocabulary: a walk of the whole sorted
// vocabulary for a state not seen before, a cache hit plus the pass over
// the logits otherwise.
func TestMaskSpeed(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	start := time.Now()
	toks, v := synthVocab(151_000)
	t.Logf("vocab: %d tokens, built in %v", len(toks), time.Since(start))
	n, err := CompileSchema([]byte(`{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}`))
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, v.Size())
	for _, prefix := range []string{``, `{"name": "Jo`, `{"name": "Jo", "age": 4`, `{"na`, `{"name": "x", "other": [1, {"k": "v`, `{"name": "x", "ot`, `{"name": "\u00`, "{\"name\": \"\xe4"} {
		m := NewMatcher(Value(n), v, nil)
		for i := 0; i < len(prefix); i++ {
			if m.state = m.state.Step(prefix[i]); m.state.Dead() {
				t.Fatalf("%q is not a valid prefix", prefix)
			}
		}
		t0 := time.Now()
		if err := m.Mask(logits); err != nil {
			t.Fatal(err)
		}
		cold := time.Since(t0)
		t0 = time.Now()
		const reps = 20
		for i := 0; i < reps; i++ {
			if err := m.Mask(logits); err != nil {
				t.Fatal(err)
			}
		}
		warm := time.Since(t0) / reps
		full := NewMatcher(Value(n), v, nil)
		full.state, full.fullWalk = m.state, true
		if a, b := m.Allowed(), full.Allowed(); !slices.Equal(a, b) {
			t.Errorf("after %q: the plain-text shortcut allows other tokens than the full walk", prefix)
		}
		allowed := 0
		for _, w := range m.Allowed() {
			for ; w != 0; w &= w - 1 {
				allowed++
			}
		}
		t.Logf("after %-40q %6d tokens allowed; mask %8v uncached, %8v cached", prefix, allowed, cold, warm)
		if cold > 5*time.Second {
			t.Errorf("masking took %v", cold)
		}
	}
}
