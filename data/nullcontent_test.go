package data

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gotune/chat"
)

// nullContentRecords are the same tool-calling conversation as OpenAI
// messages (the assistant's call turn with content null, arguments a JSON
// string) and as a LLaMA-Factory ShareGPT/glaive record.
var nullContentRecords = map[string]string{
	"openai":            `{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 degrees."}], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}`,
	"openai_no_content": `{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 degrees."}]}`,
	"sharegpt":          `{"conversations": [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"}, {"from": "observation", "value": "{\"temp\": 21}"}, {"from": "gpt", "value": "It is 21 degrees."}], "tools": "[{\"name\": \"get_weather\", \"description\": \"Weather of a city.\", \"parameters\": {\"type\": \"object\"}}]"}`,
}

// TestToolCallNullContentEveryTemplate: an assistant turn that only calls a
// tool (content null, or no content at all) trains with every built-in
// template and with the model folders' own templates. The template engine
// renders as jinja2 does, where '\n' + None raises; the readers turn null
// content into "", which is what the record means.
func TestToolCallNullContentEveryTemplate(t *testing.T) {
	type setup struct {
		name     string
		modelDir string
		builtin  string
	}
	var setups []setup
	for _, name := range chat.BuiltinNames() {
		setups = append(setups, setup{"builtin:" + name, filepath.Join("testdata", "qwen3"), name})
	}
	for _, dir := range []string{"qwen3", "llama"} {
		setups = append(setups, setup{dir, filepath.Join("testdata", dir), ""})
	}
	if len(setups) < 10 {
		t.Fatalf("only %d templates", len(setups))
	}
	// the templates that render tool calls: each must train every record
	toolAware := map[string]bool{"builtin:chatml": true, "builtin:llama3": true, "builtin:qwen": true,
		"builtin:qwen3": true, "builtin:qwen3_nothink": true, "qwen3": true}
	trainedWith := map[string]bool{}
	defer func() {
		if t.Failed() {
			return
		}
		for name := range toolAware {
			for rec := range nullContentRecords {
				if !trainedWith[name+"/"+rec] {
					t.Errorf("%s did not train %s", name, rec)
				}
			}
		}
	}()
	for _, s := range setups {
		enc, err := LoadEncoderTemplate(s.modelDir, s.builtin, EncodeOptions{})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for rec, line := range nullContentRecords {
			t.Run(s.name+"/"+rec, func(t *testing.T) {
				path := writeFile(t, t.TempDir(), "r.jsonl", line+"\n")
				exs, _, err := collect(t, Config{Datasets: []Spec{{Name: rec, Path: path}}, Strict: true})
				if err != nil {
					t.Fatal(err)
				}
				if len(exs) != 1 || len(exs[0].Messages) != 4 || len(exs[0].Messages[1].ToolCalls) != 1 {
					t.Fatalf("read %+v", exs)
				}
				if c := exs[0].Messages[1].Content; c != "" {
					t.Fatalf("the call turn's content is %q, want \"\"", c)
				}
				r, err := enc.Render(&exs[0])
				var refused *chat.RaiseError
				if errors.As(err, &refused) && !toolAware[s.name] {
					// the template's own raise_exception: it has no tool
					// role (default, gemma, mistral, deepseek3) or wants
					// Mistral's 9-character call ids; nothing to do with
					// the content
					return
				}
				if err != nil {
					t.Fatalf("does not train: %v", err)
				}
				trainedWith[s.name+"/"+rec] = true
				trained, _ := decodeTrained(r)
				if !strings.Contains(trained, "It is 21 degrees.") {
					t.Errorf("the final answer is not trained:\n%s", trained)
				}
				if strings.Contains(r.Text, "None") {
					t.Errorf("None rendered:\n%s", r.Text)
				}
			})
		}
	}
}

// TestTemplateRaisesOnNullContentAsJinja2: the same message with content
// None, handed to the Qwen3 template directly as transformers would hand
// it, raises jinja2's TypeError; the readers above are what make it train.
func TestTemplateRaisesOnNullContentAsJinja2(t *testing.T) {
	tmpl, err := chat.Load(filepath.Join("testdata", "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := chat.ParseMessages([]byte(`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]}, {"role": "tool", "content": "1"}]`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(msgs, chat.Options{})
	if err == nil || !strings.Contains(err.Error(), "TypeError") || !strings.Contains(err.Error(), "line ") {
		t.Fatalf("want jinja2's TypeError with the template line, got %v", err)
	}
	for i := range msgs {
		msgs[i] = msgs[i].FillNullContent()
	}
	if _, err := tmpl.Render(msgs, chat.Options{}); err != nil {
		t.Fatalf("with content \"\": %v", err)
	}
}
