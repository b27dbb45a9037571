package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

const realStories = "../../../shared/testdata/real/stories260K"

// `gotune generate --raw` on a real base model prints run.c's greedy
// continuation exactly: BOS added as the tokenizer asks, first space kept
// (issue 13.14).
func TestGenerateRawMatchesRunC(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(realStories, "run_c_goldens.json"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real model goldens missing under CI: %v", err)
		}
		t.Skipf("real model data absent (../shared/testdata/real lives outside the repository): %v", err)
	}
	var g struct {
		Cases []struct {
			Prompt       string `json:"prompt"`
			IDs          []int  `json:"ids"`
			Text         string `json:"text"`
			StoppedOnBOS bool   `json:"stopped_on_bos"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil || len(g.Cases) == 0 {
		t.Fatalf("run_c_goldens.json: %v (%d cases)", err, len(g.Cases))
	}
	for _, c := range g.Cases {
		n := len(c.IDs)
		if c.StoppedOnBOS {
			n--
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{"generate", realStories, c.Prompt, "--raw", "--max-new-tokens", strconv.Itoa(n)}, &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", c.Prompt, code, stderr.String())
		}
		if got, want := stdout.String(), c.Text[len(c.Prompt):]+"\n"; got != want {
			t.Errorf("%q:\n got %q\nwant %q", c.Prompt, got, want)
		}
	}
}
