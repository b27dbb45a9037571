package gguf

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"text/template"
)

// Shapes of the values Ollama passes to a template (api.Message, api.Tool).
type tmplCall struct {
	Function struct {
		Name      string
		Arguments map[string]any
	}
}
type tmplMsg struct {
	Role, Content string
	ToolCalls     []tmplCall
}
type tmplTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Parameters  map[string]any `json:"parameters"`
	} `json:"function"`
}

func render(t *testing.T, mf string, vals map[string]any) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)TEMPLATE """(.*?)"""`).FindStringSubmatch(mf)
	if m == nil {
		t.Fatal("no TEMPLATE block")
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("").Funcs(funcs).Parse(m[1])
	if err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	if _, ok := vals["Response"]; !ok {
		vals["Response"] = "" // Ollama always sets it
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, vals); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestModelfileTemplates(t *testing.T) {
	call := tmplCall{}
	call.Function.Name = "get_weather"
	call.Function.Arguments = map[string]any{"city": "Paris"}
	tool := tmplTool{Type: "function"}
	tool.Function.Name = "get_weather"
	tool.Function.Parameters = map[string]any{"type": "object"}
	chat := []tmplMsg{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!"}, {Role: "user", Content: "Bye"}}
	tools := []tmplMsg{{Role: "user", Content: "Weather?"}, {Role: "assistant", ToolCalls: []tmplCall{call}}, {Role: "tool", Content: "sunny"}}
	cases := []struct {
		family, name string
		vals         map[string]any
		want         string
	}{
		{"qwen3", "chat", map[string]any{"System": "Be brief.", "Messages": chat},
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen2", "tools", map[string]any{"Messages": tools, "Tools": []tmplTool{tool}},
			"<|im_start|>system\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
				`{"type": "function", "function": {"name":"get_weather","description":"","parameters":{"type":"object"}}}` +
				"\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"},
		{"qwen3", "legacy prompt", map[string]any{"Prompt": "Hi", "Response": "Yo"},
			"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>"},
		{"llama3", "chat", map[string]any{"System": "Be brief.", "Messages": chat},
			"<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3", "tools", map[string]any{"Messages": tools},
			"<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\":\"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"mistral", "chat", map[string]any{"System": "Be brief.", "Messages": chat},
			"[INST] Hi[/INST] Hello!</s>[INST] Be brief.\n\nBye[/INST]"},
		{"phi3", "chat", map[string]any{"System": "Be brief.", "Messages": chat},
			"<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"},
		{"phi3", "legacy prompt", map[string]any{"Prompt": "Hi", "Response": "Yo"},
			"<|user|>\nHi<|end|>\n<|assistant|>\nYo<|end|>"},
		{"gemma", "chat", map[string]any{"System": "Be brief.", "Messages": chat},
			"<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
		{"gemma", "legacy prompt", map[string]any{"Prompt": "Hi", "Response": "Yo"},
			"<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>"},
		{"mistral", "tools", map[string]any{"Messages": tools},
			"[INST] Weather?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}]</s>[TOOL_RESULTS] {\"content\": \"sunny\"}[/TOOL_RESULTS]"},
	}
	for _, c := range cases {
		t.Run(c.family+" "+c.name, func(t *testing.T) {
			mf, err := Modelfile(ModelfileOptions{From: "./m.gguf", Family: c.family})
			if err != nil {
				t.Fatal(err)
			}
			if got := render(t, mf, c.vals); got != c.want {
				t.Errorf("rendered\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

func TestModelfileText(t *testing.T) {
	mf, err := Modelfile(ModelfileOptions{From: "/models/my model.gguf", Adapter: "lora.gguf", Family: "qwen3", System: "You are terse.",
		Parameters: [][2]string{{"temperature", "0.7"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`FROM "/models/my model.gguf"`, "ADAPTER lora.gguf", `PARAMETER stop "<|im_end|>"`, "PARAMETER temperature 0.7", `SYSTEM """You are terse."""`} {
		if !strings.Contains(mf, line+"\n") {
			t.Errorf("missing line %q in\n%s", line, mf)
		}
	}
	for _, bad := range []ModelfileOptions{
		{From: "m.gguf", Family: "gpt5"},
		{From: "", Family: "qwen3"},
		{From: "m.gguf", Family: "qwen3", System: `say """`},
		{From: "a\nb", Family: "qwen3"},
	} {
		if _, err := Modelfile(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
