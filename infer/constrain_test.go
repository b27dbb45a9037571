package infer

import (
	"encoding/json"
	"testing"
	"time"

	"gotune/chat"
	"gotune/constrain"
)

// Greedy decoding of the bundled model (random weights, Qwen3's 151k
// vocabulary) under a schema gives text that parses and matches it, ending
// by itself once the value is complete (issue 13.20).
func TestGenerateConstrained(t *testing.T) {
	e := loadTiny(t)
	start := time.Now()
	v := e.Vocab()
	t.Logf("vocab of %d ids built in %v", v.Size(), time.Since(start))
	prompt, err := e.Prompt([]chat.Message{chat.NewMessage("user", "Describe a cat as JSON.")}, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	schema := json.RawMessage(`{"type":"object","properties":{"name":{"enum":["Tom","Kit"]},"age":{"type":"integer"},
		"indoor":{"type":"boolean"}},"required":["name","age","indoor"],"additionalProperties":false}`)
	n, err := constrain.CompileSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	res, err := e.Generate(Request{Prompt: prompt, MaxTokens: 200, Grammar: constrain.Value(n)})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("%d tokens in %v (%v a token): %q", len(res.Tokens), el, el/time.Duration(max(len(res.Tokens), 1)), res.Text)
	var got struct {
		Name   string `json:"name"`
		Age    *int   `json:"age"`
		Indoor *bool  `json:"indoor"`
	}
	if err := json.Unmarshal([]byte(res.Text), &got); err != nil || res.FinishReason != "stop" {
		t.Fatalf("%q (finish %s): %v", res.Text, res.FinishReason, err)
	}
	if (got.Name != "Tom" && got.Name != "Kit") || got.Age == nil || got.Indoor == nil {
		t.Errorf("%q does not match the schema", res.Text)
	}
	// Without the grammar the same greedy run is not JSON: the test means
	// something.
	plain, err := e.Generate(Request{Prompt: prompt, MaxTokens: 40})
	if err != nil {
		t.Fatal(err)
	}
	if json.Valid([]byte(plain.Text)) {
		t.Errorf("unconstrained output %q is JSON already", plain.Text)
	}
}
