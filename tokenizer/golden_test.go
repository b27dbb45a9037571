package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// goldenCase is one row of testdata/{unigram,wordpiece,wordlevel}/cases.json.
// These tokenizers were written by hand; each expected value follows from
// the algorithm's definition as the row's "why" explains (no reference
// implementation was run to produce them).
type goldenCase struct {
	Text           string  `json:"text"`
	Pair           *string `json:"pair"`
	IDs            []int   `json:"ids"`
	IDsWithSpecial []int   `json:"ids_with_special"`
	Decoded        string  `json:"decoded"`
	Why            string  `json:"why"`
}

func TestOwnGoldens(t *testing.T) {
	for _, dir := range []string{"unigram", "wordpiece", "wordlevel"} {
		t.Run(dir, func(t *testing.T) {
			tk := load(t, dir)
			b, err := os.ReadFile(filepath.Join("testdata", dir, "cases.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cases []goldenCase
			if err := json.Unmarshal(b, &cases); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				var ids, withSpecial []int
				if c.Pair != nil {
					ids, withSpecial = tk.EncodePair(c.Text, *c.Pair, false), tk.EncodePair(c.Text, *c.Pair, true)
				} else {
					ids, withSpecial = tk.Encode(c.Text, false), tk.Encode(c.Text, true)
					// Offsets must not change the ids.
					if o, _ := tk.EncodeOffsets(c.Text, true); !slices.Equal(o, withSpecial) {
						t.Errorf("%q: EncodeOffsets ids %v, Encode %v", c.Text, o, withSpecial)
					}
				}
				if !slices.Equal(ids, c.IDs) {
					t.Errorf("%q: ids %v, want %v (%s)", c.Text, ids, c.IDs, c.Why)
				}
				if !slices.Equal(withSpecial, c.IDsWithSpecial) {
					t.Errorf("%q: ids with special tokens %v, want %v (%s)", c.Text, withSpecial, c.IDsWithSpecial, c.Why)
				}
				if got := tk.Decode(c.IDs, false); got != c.Decoded {
					t.Errorf("%q: decoded %q, want %q", c.Text, got, c.Decoded)
				}
			}
		})
	}
}
