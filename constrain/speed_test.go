package constrain

import (
	"math/rand/v2"
	"slices"
	"testing"
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

// schemaPrefixes are the states the masking tests and benchmark visit:
// inside strings, keys, numbers, nested containers and escapes.
var schemaPrefixes = []string{``, `{"name": "Jo`, `{"name": "Jo", "age": 4`, `{"na`, `{"name": "x", "other": [1, {"k": "v`, `{"name": "x", "ot`, `{"name": "\u00`, "{\"name\": \"\xe4"}

func testSchema(t testing.TB) *Node {
	n, err := CompileSchema([]byte(`{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// matcherAfter returns a matcher that has read prefix.
func matcherAfter(t testing.TB, n *Node, v *Vocab, prefix string) *Matcher {
	m := NewMatcher(Value(n), v, nil)
	for i := 0; i < len(prefix); i++ {
		if m.state = m.state.Step(prefix[i]); m.state.Dead() {
			t.Fatalf("%q is not a valid prefix", prefix)
		}
	}
	return m
}

// TestMaskShortcutEqualsFullWalk: inside strings, plain-text tokens are
// allowed without walking each one; the mask must be exactly the one the
// full walk of the sorted vocabulary gives, on a byte-level-BPE-shaped
// vocabulary of 151k tokens.
func TestMaskShortcutEqualsFullWalk(t *testing.T) {
	_, v := synthVocab(151_000)
	n := testSchema(t)
	logits := make([]float32, v.Size())
	for _, prefix := range schemaPrefixes {
		m := matcherAfter(t, n, v, prefix)
		if err := m.Mask(logits); err != nil {
			t.Fatal(err)
		}
		full := NewMatcher(Value(n), v, nil)
		full.state, full.fullWalk = m.state, true
		if a, b := m.Allowed(), full.Allowed(); !slices.Equal(a, b) {
			t.Errorf("after %q: the plain-text shortcut allows other tokens than the full walk", prefix)
		}
	}
}

// BenchmarkMask measures masking a 151k vocabulary: uncached (a walk of the
// sorted vocabulary for a state not seen before) and cached.
func BenchmarkMask(b *testing.B) {
	_, v := synthVocab(151_000)
	n := testSchema(b)
	logits := make([]float32, v.Size())
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			for _, prefix := range schemaPrefixes {
				if err := matcherAfter(b, n, v, prefix).Mask(logits); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		var ms []*Matcher
		for _, prefix := range schemaPrefixes {
			m := matcherAfter(b, n, v, prefix)
			if err := m.Mask(logits); err != nil {
				b.Fatal(err)
			}
			ms = append(ms, m)
		}
		for b.Loop() {
			for _, m := range ms {
				if err := m.Mask(logits); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
