package tokenizer

import (
	"encoding/binary"
	"sort"
	"testing"
)

// buildCharsMap writes a SentencePiece charsmap blob for rules (key to
// replacement) the way the format defines it: a darts-clone double array
// where the unit at pos^label holds the label and the offset to its
// children, a key's end is a child with label 0 whose unit holds the
// value (bit 31 set), and values are offsets into the NUL-separated
// replacement strings.
func buildCharsMap(t testing.TB, rules map[string]string) []byte {
	type node struct {
		kids  map[byte]*node
		value int // -1: no key ends here
	}
	root := &node{kids: map[byte]*node{}, value: -1}
	var repl []byte
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := root
		for i := 0; i < len(k); i++ {
			c, ok := n.kids[k[i]]
			if !ok {
				c = &node{kids: map[byte]*node{}, value: -1}
				n.kids[k[i]] = c
			}
			n = c
		}
		n.value = len(repl)
		repl = append(append(repl, rules[k]...), 0)
	}
	units := make([]uint32, 1)
	used := map[uint32]bool{0: true}
	bases := map[uint32]bool{}
	set := func(p, u uint32) {
		for int(p) >= len(units) {
			units = append(units, 0)
		}
		units[p] = u
		used[p] = true
	}
	offsetBits := func(off uint32) uint32 {
		if off >= 1<<21 {
			t.Fatalf("offset %d too large for this test builder", off)
		}
		return off << 10
	}
	// place finds a free base for n's children, writes them and recurses;
	// it returns the base.
	var place func(n *node) uint32
	place = func(n *node) uint32 {
		labels := []uint32{}
		if n.value >= 0 {
			labels = append(labels, 0)
		}
		cs := make([]int, 0, len(n.kids))
		for c := range n.kids {
			cs = append(cs, int(c))
		}
		sort.Ints(cs)
		for _, c := range cs {
			labels = append(labels, uint32(c))
		}
		base := uint32(1)
	search:
		for ; ; base++ {
			if bases[base] {
				continue
			}
			for _, l := range labels {
				if used[base^l] {
					continue search
				}
			}
			break
		}
		bases[base] = true
		for _, l := range labels {
			used[base^l] = true
		}
		if n.value >= 0 {
			set(base, 1<<31|uint32(n.value))
		}
		for _, c := range cs {
			kid := n.kids[byte(c)]
			p := base ^ uint32(c)
			set(p, 0) // reserve before recursing
			kb := place(kid)
			u := uint32(c) | offsetBits(p^kb)
			if kid.value >= 0 {
				u |= 1 << 8
			}
			units[p] = u
		}
		return base
	}
	rb := place(root)
	units[0] = offsetBits(rb)
	blob := binary.LittleEndian.AppendUint32(nil, uint32(4*len(units)))
	for _, u := range units {
		blob = binary.LittleEndian.AppendUint32(blob, u)
	}
	return append(blob, repl...)
}

func TestCharsMapLookup(t *testing.T) {
	m, err := parseCharsMap(buildCharsMap(t, map[string]string{
		"Ａ": "A", "ﬁ": "fi", "e\u0301": "é", "a": "α", "ab": "AB", "abc": "ABC",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.shortest("abcd"); !ok || r != "α" {
		t.Errorf("shortest(abcd) = %q, %v; want α (the first key on the path)", r, ok)
	}
	if r, n := m.longest("abcd"); r != "ABC" || n != 3 {
		t.Errorf("longest(abcd) = %q, %d; want ABC, 3", r, n)
	}
	if _, ok := m.shortest("b"); ok {
		t.Error("shortest(b) matched")
	}
	if r, n := m.longest("e"); n != 0 {
		t.Errorf("longest(e) = %q, %d; want no match (e alone is not a key)", r, n)
	}
}

func TestPrecompiledNormalizer(t *testing.T) {
	m, err := parseCharsMap(buildCharsMap(t, map[string]string{
		"Ａ": "A", "ﬁ": "fi", "e\u0301": "é", "\u3000": " ", "x": "",
	}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"Ａﬁ", "Afi"},
		// e + combining acute is one grapheme and a key: replaced whole.
		{"ce\u0301", "cé"},
		// HF replaces a whole grapheme (under 6 bytes) by the value of the
		// shortest key prefixing it: the combining mark after Ａ is lost.
		{"Ａ\u0302", "A"},
		// A grapheme no key prefixes is looked up character by character.
		{"b\u0302Ａ", "b\u0302A"},
		{"a\u3000b", "a b"},
		{"axb", "ab"}, // an empty replacement deletes
		{"plain", "plain"},
	}
	for _, tc := range tests {
		for _, track := range []bool{false, true} {
			got := precompiledNormalizer{m}.normalize(newNstr(tc.in, 0, track))
			if got.s != tc.want {
				t.Errorf("%q -> %q, want %q", tc.in, got.s, tc.want)
			}
			if track && len(got.align) != len(got.s) {
				t.Errorf("%q: %d alignments for %d bytes", tc.in, len(got.align), len(got.s))
			}
		}
	}
}

// A corrupt trie must not index out of range.
func TestCharsMapCorrupt(t *testing.T) {
	blob := buildCharsMap(t, map[string]string{"ab": "X"})
	for k := 4; k < len(blob); k++ {
		b := append([]byte(nil), blob...)
		b[k] ^= 0xFF
		m, err := parseCharsMap(b)
		if err != nil || m == nil {
			continue
		}
		precompiledNormalizer{m}.normalize(newNstr("abab\xffé", 0, true))
	}
}
