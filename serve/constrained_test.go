package serve

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"gotune/chat"
	"gotune/constrain"
	"gotune/infer"
)

// Issue 13.20: fields the server does not know are refused by name; the
// OpenAI fields it can honestly accept are accepted.
func TestUnknownFields(t *testing.T) {
	_, ts := testServer(t, Config{Models: []Model{{Name: "m", Engines: []Engine{&fakeEngine{}}}}})
	c := ts.Client()
	chatURL, cmplURL := ts.URL+"/v1/chat/completions", ts.URL+"/v1/completions"
	user := []any{map[string]any{"role": "user", "content": "hi"}}
	withField := func(k string, v any) map[string]any {
		return map[string]any{"messages": user, k: v}
	}
	refused := []struct {
		url   string
		body  map[string]any
		param string
	}{
		{chatURL, withField("temprature", 0.5), "temprature"},
		{chatURL, withField("functions", []any{}), "functions"},
		{chatURL, withField("reasoning_effort", "low"), "reasoning_effort"},
		{chatURL, withField("frequency_penalty", 0.5), "frequency_penalty"},
		{chatURL, withField("logit_bias", map[string]any{"1": 5}), "logit_bias"},
		{chatURL, withField("logprobs", true), "logprobs"},
		{chatURL, withField("top_logprobs", 3), "top_logprobs"},
		{chatURL, withField("stream_options", map[string]any{"include_usage": true, "extra": 1}), "extra"},
		{chatURL, withField("response_format", map[string]any{"type": "yaml"}), "response_format"},
		{chatURL, withField("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{
			"name": "x", "schema": map[string]any{"type": "string", "maxLength": 3}}}), "response_format"},
		{cmplURL, map[string]any{"prompt": "a", "suffix": "b"}, "suffix"},
		{cmplURL, map[string]any{"prompt": "a", "echo": true}, "echo"},
		{cmplURL, map[string]any{"prompt": "a", "messages": user}, "messages"},
	}
	for _, tc := range refused {
		status, body, _ := post(t, c, tc.url, tc.body)
		if status != 400 || get(body, "error", "param") != tc.param {
			t.Errorf("%v: %d %v, want 400 naming %q", tc.body, status, body, tc.param)
		}
	}
	status, body, _ := post(t, c, chatURL, withField("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{
		"name": "x", "schema": map[string]any{"type": "string", "maxLength": 3}}}))
	if msg, _ := get(body, "error", "message").(string); status != 400 || !strings.Contains(msg, "maxLength") {
		t.Errorf("unsupported schema keyword: %d %q, want it named", status, msg)
	}
	accepted := []map[string]any{
		{"messages": user, "user": "u1", "metadata": map[string]any{"k": "v"}, "store": false, "service_tier": "auto",
			"parallel_tool_calls": true, "frequency_penalty": 0, "presence_penalty": 0, "logprobs": false,
			"prompt_cache_key": "k", "safety_identifier": "s", "response_format": map[string]any{"type": "text"}},
	}
	for _, b := range accepted {
		if status, body, _ := post(t, c, chatURL, b); status != 200 {
			t.Errorf("%v: %d %v", b, status, body)
		}
	}
	if status, body, _ := post(t, c, cmplURL, map[string]any{"prompt": "a", "user": "u", "echo": false, "best_of": 1, "logprobs": nil}); status != 200 {
		t.Errorf("completions with default-valued fields: %d %v", status, body)
	}
}

// Greedy decoding of the bundled model (random weights: unconstrained, it
// writes no JSON and no tool call) under response_format and tool_choice
// gives output that parses and matches (issue 13.20).
func TestConstrainedOutput(t *testing.T) {
	dir, err := tinyDir()
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, e)
	_, ts := testServer(t, Config{Models: []Model{FromEngines(ModelName(dir), e)}})
	c := ts.Client()
	url := ts.URL + "/v1/chat/completions"
	msgs := []any{map[string]any{"role": "user", "content": "Give me a record."}}
	// Budgets large enough for the random model's love of whitespace.
	// Thinking is off: the template lets the model open a <think> block,
	// and random weights never close one (TestToolCallGrammarFormats
	// covers replies that reason first).
	chatReq := func(extra map[string]any) map[string]any {
		r := map[string]any{"messages": msgs, "max_tokens": 400, "temperature": 0,
			"chat_template_kwargs": map[string]any{"enable_thinking": false}}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	content := func(body map[string]any) string {
		s, _ := get(body, "choices", 0, "message", "content").(string)
		return s
	}

	// Unconstrained, the reply is not JSON: the constraint is what makes it.
	_, body, _ := post(t, c, url, chatReq(nil))
	if json.Valid([]byte(content(body))) {
		t.Fatalf("unconstrained reply %q is already JSON", content(body))
	}

	status, body, _ := post(t, c, url, chatReq(map[string]any{"response_format": map[string]any{"type": "json_object"}}))
	var obj map[string]any
	if err := json.Unmarshal([]byte(content(body)), &obj); status != 200 || err != nil {
		t.Errorf("json_object: %d %q: %v", status, content(body), err)
	}

	schema := json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"},"kind":{"enum":["a","b"]},
		"tags":{"type":"array","items":{"type":"boolean"}},"note":{"anyOf":[{"type":"null"},{"type":"number"}]}},
		"required":["id","kind","tags","note"],"additionalProperties":false}`)
	status, body, _ = post(t, c, url, chatReq(map[string]any{"response_format": map[string]any{"type": "json_schema",
		"json_schema": map[string]any{"name": "rec", "strict": true, "schema": schema}}}))
	n, _ := constrain.CompileSchema(schema)
	if status != 200 || !constrain.Accepts(n, content(body)) || !json.Valid([]byte(content(body))) || get(body, "choices", 0, "finish_reason") != "stop" {
		t.Errorf("json_schema: %d %q does not match the schema (%v)", status, content(body), body)
	}

	// Streamed, the same reply arrives in pieces.
	streamReq := chatReq(map[string]any{"stream": true, "response_format": map[string]any{"type": "json_schema",
		"json_schema": map[string]any{"name": "rec", "strict": true, "schema": schema}}})
	ev := openStream(t, context.Background(), c, url, streamReq)
	var streamed strings.Builder
	for d := ev.next(t); d != "[DONE]"; d = ev.next(t) {
		if d == "" {
			t.Fatal("stream ended without [DONE]")
		}
		ch := map[string]any{}
		if err := jsonUnmarshal(d, &ch); err != nil {
			t.Fatal(err)
		}
		if s, ok := get(ch, "choices", 0, "delta", "content").(string); ok {
			streamed.WriteString(s)
		}
	}
	ev.body.Close()
	if streamed.String() != content(body) {
		t.Errorf("streamed %q, whole %q", streamed.String(), content(body))
	}

	tools := []any{
		map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "parameters": map[string]any{
			"type": "object", "properties": map[string]any{"city": map[string]any{"enum": []any{"Paris", "Rome"}}},
			"required": []any{"city"}, "additionalProperties": false}}},
		map[string]any{"type": "function", "function": map[string]any{"name": "get_time", "parameters": map[string]any{
			"type": "object", "properties": map[string]any{}, "additionalProperties": false}}},
	}
	for _, choice := range []any{"required", map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}} {
		status, body, _ = post(t, c, url, chatReq(map[string]any{"tools": tools, "tool_choice": choice, "parallel_tool_calls": false, "max_tokens": 200}))
		msg, _ := get(body, "choices", 0, "message").(map[string]any)
		name, _ := get(body, "choices", 0, "message", "tool_calls", 0, "function", "name").(string)
		args, _ := get(body, "choices", 0, "message", "tool_calls", 0, "function", "arguments").(string)
		content, hasContent := msg["content"]
		if status != 200 || get(body, "choices", 0, "finish_reason") != "tool_calls" || !hasContent || content != nil {
			t.Errorf("tool_choice %v: %d %v", choice, status, body)
			continue
		}
		var a map[string]any
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			t.Errorf("tool_choice %v: arguments %q: %v", choice, args, err)
		}
		switch {
		case name == "get_weather" && (a["city"] == "Paris" || a["city"] == "Rome") && len(a) == 1:
		case name == "get_time" && len(a) == 0 && choice == "required":
		default:
			t.Errorf("tool_choice %v: call %s(%s) is not one the tools allow", choice, name, args)
		}
	}
}

// The grammar of a forced tool call accepts what each format's parser
// reads as calls, and refuses what it would read as content (issue 13.20).
func TestToolCallGrammarFormats(t *testing.T) {
	tools := []any{}
	for _, s := range []string{
		`{"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}}}`,
		`{"type":"function","function":{"name":"now"}}`,
	} {
		var o chat.Object
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			t.Fatal(err)
		}
		tools = append(tools, o)
	}
	tests := []struct {
		format   ToolFormat
		parallel bool
		inThink  bool
		mayThink bool
		text     string
		ok       bool
		calls    int
	}{
		{FormatHermes, true, false, false, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>", true, 1},
		{FormatHermes, true, false, false, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", true, 2},
		{FormatHermes, false, false, false, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>\n<tool_call>", false, 0},
		{FormatHermes, true, false, false, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": \"2\"}}\n</tool_call>", false, 0},
		{FormatHermes, true, true, false, "Let me add.\n</think>\n\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", true, 1},
		{FormatHermes, true, false, false, "I will call add.", false, 0},
		{FormatHermes, true, false, true, "<think>\nAdd.\n</think>\n\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", true, 1},
		{FormatHermes, true, false, true, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", true, 1},
		{FormatHermes, true, false, false, "<think>\nAdd.\n</think>\n\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", false, 0},
		{FormatLlama3, true, false, true, "<think>x</think>{\"name\": \"now\", \"parameters\": {}}", true, 1},
		{FormatLlama3, true, false, false, `{"name": "add", "parameters": {"a": 1}}; {"name": "now", "parameters": {}}`, true, 2},
		{FormatLlama3, true, false, false, `{"name": "add", "arguments": {"a": 1}}`, false, 0},
		{FormatMistral, true, false, false, `[{"name": "add", "arguments": {"a": 1}}, {"name": "now", "arguments": {}}]`, true, 2},
		{FormatMistral, true, false, false, `[]`, false, 0},
		{FormatMistral, false, false, false, `[{"name": "now", "arguments": {}}, {"name": "now", "arguments": {}}]`, false, 0},
	}
	for _, tc := range tests {
		calls, names, err := toolCallSpec(tools, tc.format)
		if err != nil {
			t.Fatal(err)
		}
		spec := outputSpec{calls: calls, tools: names, parallel: tc.parallel}
		s := spec.grammar(tc.format, tc.inThink, tc.mayThink).Start().StepBytes([]byte(tc.text))
		if ok := !s.Dead() && s.Complete(); ok != tc.ok {
			t.Errorf("%s %q: accepted %v, want %v", tc.format, tc.text, ok, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		out := ParseOutput(tc.text, tc.format, true, tc.inThink)
		if len(out.ToolCalls) != tc.calls || strings.TrimSpace(out.Content) != "" {
			t.Errorf("%s %q: parsed %+v, want %d calls and no content", tc.format, tc.text, out, tc.calls)
		}
	}
}
