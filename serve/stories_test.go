package serve

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"gotune/infer"
)

// POST /v1/completions on a real base model whose tokenizer adds BOS
// (stories260K) returns run.c's greedy continuation, first space included,
// and counts the BOS in the prompt's usage (issue 13.14).
func TestCompletionsAddBOS(t *testing.T) {
	dir := "../../shared/testdata/real/stories260K"
	b, err := os.ReadFile(filepath.Join(dir, "run_c_goldens.json"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real model goldens missing under CI: %v", err)
		}
		t.Skipf("real model data absent (../shared/testdata/real lives outside the repository): %v", err)
	}
	var g struct {
		Cases []struct {
			Prompt       string `json:"prompt"`
			PromptIDs    []int  `json:"prompt_ids"`
			IDs          []int  `json:"ids"`
			Text         string `json:"text"`
			StoppedOnBOS bool   `json:"stopped_on_bos"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil || len(g.Cases) == 0 {
		t.Fatalf("run_c_goldens.json: %v", err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, e)
	m := FromEngines("stories", e)
	_, ts := testServer(t, Config{Models: []Model{m}})
	for _, c := range g.Cases {
		if c.Prompt == "" {
			continue // the API refuses an empty prompt
		}
		n := len(c.IDs)
		if c.StoppedOnBOS {
			n--
		}
		status, body, _ := post(t, ts.Client(), ts.URL+"/v1/completions", map[string]any{
			"model": "stories", "prompt": c.Prompt, "max_tokens": n, "temperature": 0})
		if status != 200 {
			t.Fatalf("%q: status %d %v", c.Prompt, status, body)
		}
		if got, want := get(body, "choices", 0, "text"), c.Text[len(c.Prompt):]; got != want {
			t.Errorf("%q:\n got %q\nwant %q", c.Prompt, got, want)
		}
		if got := get(body, "usage", "prompt_tokens"); got != float64(len(c.PromptIDs)) {
			t.Errorf("%q: prompt_tokens %v, want %d (BOS included)", c.Prompt, got, len(c.PromptIDs))
		}
	}
}
