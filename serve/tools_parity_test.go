package serve

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gotune/chat"
	"gotune/data"
)

// TestRequestToolsRenderLikeGlaiveTraining: an OpenAI request (tools as
// {"type": "function", "function": {…}}, tool-call arguments as a JSON
// string) goes through the server's own parsing and renders to the token
// ids training produced from the same conversation as a LLaMA-Factory
// glaive record (bare {"name", "description", "parameters"} tools).
func TestRequestToolsRenderLikeGlaiveTraining(t *testing.T) {
	modelDir := filepath.Join("..", "data", "testdata", "qwen3")
	fn := `{"name": "get_weather", "description": "Weather of a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}`
	toolsStr, _ := json.Marshal("[" + fn + "]")
	glaive := `{"conversations": [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"}, {"from": "observation", "value": "{\"temp\": 21}"}, {"from": "gpt", "value": "It is 21 degrees."}], "tools": ` + string(toolsStr) + `}`
	path := filepath.Join(t.TempDir(), "glaive.jsonl")
	if err := writeText(path, glaive+"\n"); err != nil {
		t.Fatal(err)
	}
	enc, err := data.LoadEncoder(modelDir, data.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := data.Prepare(data.Config{Datasets: []data.Spec{{Name: "glaive", Path: path, Formatting: data.FormatShareGPT}}, Strict: true}, enc, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	trained := cache.Sample(0).InputIDs

	req := chatRequest{
		Messages: json.RawMessage(`[{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 degrees."}]`),
		Tools:    json.RawMessage(`[{"type": "function", "function": ` + fn + `}]`),
	}
	in, err := parseChatInput(&req)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	// The prompt a client sends before the model's first answer.
	prompt, err := tmpl.Render(in.msgs[:1], chat.Options{Tools: in.tools, AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := enc.Tok.EncodeOffsets(prompt, false)
	got := make([]int32, len(ids))
	for i, id := range ids {
		got[i] = int32(id)
	}
	if len(got) > len(trained) || !slices.Equal(trained[:len(got)], got) {
		t.Errorf("the served prompt (%d tokens) is not how training began (%d tokens):\n%q", len(got), len(trained), prompt)
	}
	// The whole conversation, as a client replays it.
	full, err := tmpl.Render(in.msgs, chat.Options{Tools: in.tools})
	if err != nil {
		t.Fatal(err)
	}
	fids, _ := enc.Tok.EncodeOffsets(full, false)
	if len(fids) != len(trained) {
		t.Errorf("replayed conversation: %d tokens, training sample %d:\n%q", len(fids), len(trained), full)
	}
}

func writeText(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
