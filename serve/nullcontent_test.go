package serve

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"gotune/chat"
)

// TestRequestNullContentRenders: an OpenAI request replaying a turn that
// only called tools (content null, or no content key) renders with every
// built-in template exactly as the same request with content "" — the
// server fills it in; the template engine itself raises on None as jinja2
// does (chat.FillNullContent).
func TestRequestNullContentRenders(t *testing.T) {
	const call = `"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]`
	conv := func(content string) json.RawMessage {
		return json.RawMessage(`[{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant"` + content + `, ` + call + `}, {"role": "tool", "tool_call_id": "call_1", "content": "21"}]`)
	}
	tools := json.RawMessage(`[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]`)
	render := func(tmpl *chat.Template, msgs json.RawMessage) (string, error) {
		in, err := parseChatInput(&chatRequest{Messages: msgs, Tools: tools})
		if err != nil {
			t.Fatal(err)
		}
		return tmpl.Render(in.msgs, chat.Options{Tools: in.tools, AddGenerationPrompt: true})
	}
	rendered := 0
	for _, name := range chat.BuiltinNames() {
		tmpl, err := chat.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.BOS == "" && tmpl.EOS == "" {
			// as a model folder's tokenizer fills them in
			tmpl.BOS, tmpl.EOS = "<s>", "</s>"
		}
		want, wantErr := render(tmpl, conv(`, "content": ""`))
		for _, c := range []string{`, "content": null`, ``} {
			got, err := render(tmpl, conv(c))
			var refused *chat.RaiseError
			switch {
			case wantErr != nil && errors.As(err, &refused) && err.Error() == wantErr.Error():
				// the template refuses tool turns whatever the content
			case err != nil:
				t.Errorf("%s, content%s: %v", name, c, err)
			case wantErr != nil:
				t.Errorf("%s, content%s: rendered where content \"\" fails with %v", name, c, wantErr)
			case got != want:
				t.Errorf("%s, content%s renders differently from content \"\":\n%q\n%q", name, c, got, want)
			case strings.Contains(got, "None"):
				t.Errorf("%s: None rendered: %q", name, got)
			default:
				rendered++
			}
		}
	}
	// chatml, llama3, qwen, qwen3, qwen3_nothink render tool calls
	if rendered < 10 {
		t.Errorf("only %d renders of the tool-call turn", rendered)
	}
}
