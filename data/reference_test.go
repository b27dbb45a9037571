package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"gotune/safetensors"
)

// TestReferenceMasks renders the reference conversations with each model's
// own template and tokenizer and checks input ids and labels token by token
// against the batch the Python reference stack produced.
func TestReferenceMasks(t *testing.T) {
	// qwen3 and llama are copied into testdata; qwen2 (and the others
	// again) are read from the repository's testdata/reference.
	cases := []struct{ name, modelDir, refDir string }{
		{"qwen3", filepath.Join("testdata", "qwen3"), filepath.Join("testdata", "qwen3")},
		{"llama", filepath.Join("testdata", "llama"), filepath.Join("testdata", "llama")},
	}
	for _, m := range []string{"qwen3", "llama", "qwen2"} {
		base := filepath.Join("..", "testdata", "reference", m)
		cases = append(cases, struct{ name, modelDir, refDir string }{"shared-" + m, filepath.Join(base, "model"), filepath.Join(base, "ref")})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(c.refDir); err != nil {
				t.Fatalf("reference data %s missing", c.refDir)
			}
			dir := c.refDir
			enc, err := LoadEncoder(c.modelDir, EncodeOptions{LastTurnOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var meta struct {
				Conversations [][]Message `json:"conversations"`
			}
			b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &meta); err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.Open(filepath.Join(dir, "batch.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			read := func(name string) ([]int64, int) {
				raw, info, err := f.Bytes(name)
				if err != nil {
					t.Fatal(err)
				}
				v, err := safetensors.Int64s(raw, info)
				if err != nil {
					t.Fatal(err)
				}
				return v, info.Shape[1]
			}
			refIDs, T := read("input_ids")
			refLabels, _ := read("labels")
			refMask, _ := read("attention_mask")

			var samples SampleSlice
			for i, conv := range meta.Conversations {
				ex := Example{Kind: KindChat, Messages: conv, Loc: Loc{File: "meta.json", Index: i}}
				if is := Validate(&ex); is != nil {
					t.Fatalf("reference conversation %d invalid: %v", i, is)
				}
				// The default (all assistant turns) must agree too: each
				// conversation has a single assistant turn.
				for _, opts := range []EncodeOptions{{}, {LastTurnOnly: true}} {
					e := *enc
					e.Opts = opts
					ss, drop, err := e.Encode(&ex, 0)
					if err != nil || drop != "" {
						t.Fatalf("conversation %d: %v %s", i, err, drop)
					}
					s := ss[0]
					n := 0
					for j := 0; j < T; j++ {
						if refMask[i*T+j] == 1 {
							n++
						}
					}
					if len(s.InputIDs) != n {
						t.Fatalf("conversation %d: %d tokens, reference %d", i, len(s.InputIDs), n)
					}
					for j := 0; j < n; j++ {
						if int64(s.InputIDs[j]) != refIDs[i*T+j] || int64(s.Labels[j]) != refLabels[i*T+j] {
							t.Errorf("conversation %d token %d: id %d label %d, reference id %d label %d",
								i, j, s.InputIDs[j], s.Labels[j], refIDs[i*T+j], refLabels[i*T+j])
						}
					}
				}
				ss, _, _ := enc.Encode(&ex, 0)
				samples = append(samples, ss[0])
			}
			// The padded batch, as the trainer gets it, equals the reference
			// batch: same T, right padding with PAD, labels -100 on padding.
			plan := BatchPlan{Rows: [][]int{{0}, {1}}, T: T}
			batch := plan.Build(samples, int32(enc.Tok.PAD()))
			for j := range refIDs {
				if int64(batch.InputIDs[j]) != refIDs[j] || int64(batch.Labels[j]) != refLabels[j] || int64(batch.AttentionMask[j]) != refMask[j] {
					t.Fatalf("batch position %d: id %d label %d mask %d, reference %d %d %d", j,
						batch.InputIDs[j], batch.Labels[j], batch.AttentionMask[j], refIDs[j], refLabels[j], refMask[j])
				}
			}
		})
	}
}
