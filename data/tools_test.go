package data

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"gotune/chat"
)

// TestGlaiveToolsRenderLikeOpenAI: the same conversation and tools, once as
// a LLaMA-Factory glaive record (bare {"name","description","parameters"}
// tools in a JSON string) and once as an OpenAI request ({"type":
// "function","function":{…}} tools), give the same token ids; so a model
// trained on the first sees at inference the prompt it was trained on.
func TestGlaiveToolsRenderLikeOpenAI(t *testing.T) {
	fn := `{"name": "get_weather", "description": "Weather of a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}`
	glaive := `{"conversations": [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"}, {"from": "observation", "value": "{\"temp\": 21}"}, {"from": "gpt", "value": "It is 21 degrees."}], "tools": ` + mustQuote(t, "["+fn+"]") + `}`
	openaiMsgs := `[{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 degrees."}]`
	openaiTools := `[{"type": "function", "function": ` + fn + `}]`

	for _, model := range []string{"qwen3"} {
		t.Run(model, func(t *testing.T) {
			modelDir := filepath.Join("testdata", model)
			enc, err := LoadEncoder(modelDir, EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, t.TempDir(), "glaive.jsonl", glaive+"\n")
			exs, _, err := collect(t, Config{Datasets: []Spec{{Name: "glaive", Path: path, Formatting: FormatShareGPT}}, Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			trained, err := enc.Render(&exs[0])
			if err != nil {
				t.Fatal(err)
			}

			msgs, err := chat.ParseMessages(json.RawMessage(openaiMsgs))
			if err != nil {
				t.Fatal(err)
			}
			tools, err := chat.ParseTools(json.RawMessage(openaiTools))
			if err != nil {
				t.Fatal(err)
			}
			tmpl := enc.Tmpl.(TemplateRenderer).T
			text, err := tmpl.Render(msgs, chat.Options{Tools: tools})
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := enc.Tok.EncodeOffsets(text, false)
			if !slices.Equal(trained.IDs, ids) {
				t.Errorf("glaive record and OpenAI request render differently:\n training: %q\n request:  %q", trained.Text, text)
			}
			// The request's prompt is what the trained conversation starts with.
			prompt, err := tmpl.Render(msgs[:1], chat.Options{Tools: tools, AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			pids, _ := enc.Tok.EncodeOffsets(prompt, false)
			if len(pids) > len(trained.IDs) || !slices.Equal(trained.IDs[:len(pids)], pids) {
				t.Errorf("the request prompt is not a prefix of the training sample:\n prompt: %q", prompt)
			}
		})
	}
}

func mustQuote(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
