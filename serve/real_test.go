package serve

import (
	"context"
	"strings"
	"testing"

	"gotune/compute/cpu/cputest"
	"gotune/infer"
)

// TestRealModel serves the bundled tiny model (random weights, real Qwen3
// tokenizer and template) end to end.
func TestRealModel(t *testing.T) {
	dir, err := tinyDir()
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, e)
	m := FromEngines(ModelName(dir), e)
	if m.Name != "tiny-qwen3" || m.ToolFormat != FormatHermes || m.ContextLength != 512 || m.Defaults.Temperature != 0 {
		t.Fatalf("FromEngines: %+v", m)
	}
	_, ts := testServer(t, Config{Models: []Model{m}})
	c := ts.Client()
	msgs := []any{map[string]any{"role": "user", "content": "What does LoRA train?"}}
	tools := []any{map[string]any{"type": "function", "function": map[string]any{"name": "search",
		"parameters": map[string]any{"type": "object"}}}}

	// Greedy: the streamed text must equal the whole reply.
	status, body, _ := post(t, c, ts.URL+"/v1/chat/completions", map[string]any{
		"model": "tiny-qwen3", "messages": msgs, "max_tokens": 12, "temperature": 0})
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	n, _ := get(body, "usage", "completion_tokens").(float64)
	finish := get(body, "choices", 0, "finish_reason")
	if n < 1 || n > 12 || (finish == "length") != (n == 12) || get(body, "usage", "prompt_tokens") != float64(e.CountTokens(mustPrompt(t, e, "What does LoRA train?"))) {
		t.Fatalf("usage %v finish %v", body["usage"], finish)
	}
	whole, _ := get(body, "choices", 0, "message", "content").(string)
	reasoning, _ := get(body, "choices", 0, "message", "reasoning_content").(string)

	ev := openStream(t, context.Background(), c, ts.URL+"/v1/chat/completions", map[string]any{
		"model": "tiny-qwen3", "messages": msgs, "max_tokens": 12, "temperature": 0, "stream": true})
	defer ev.body.Close()
	var content, streamedReasoning strings.Builder
	for d := ev.next(t); d != "[DONE]"; d = ev.next(t) {
		if d == "" {
			t.Fatal("stream ended without [DONE]")
		}
		ch := map[string]any{}
		if err := jsonUnmarshal(d, &ch); err != nil {
			t.Fatal(err)
		}
		if s, ok := get(ch, "choices", 0, "delta", "content").(string); ok {
			content.WriteString(s)
		}
		if s, ok := get(ch, "choices", 0, "delta", "reasoning_content").(string); ok {
			streamedReasoning.WriteString(s)
		}
	}
	if content.String() != whole || streamedReasoning.String() != reasoning {
		t.Errorf("streamed %q / %q, whole reply %q / %q", content.String(), streamedReasoning.String(), whole, reasoning)
	}

	// Sampling with a seed is repeatable; tools render through the template.
	req := map[string]any{"messages": msgs, "tools": tools, "max_tokens": 8, "temperature": 1.5, "top_p": 0.9, "seed": 42}
	_, a, _ := post(t, c, ts.URL+"/v1/chat/completions", req)
	_, b, _ := post(t, c, ts.URL+"/v1/chat/completions", req)
	if get(a, "choices", 0, "message") == nil || !equalJSON(get(a, "choices", 0, "message"), get(b, "choices", 0, "message")) {
		t.Errorf("same seed, different replies:\n%v\n%v", a, b)
	}

	// Completions continue raw text.
	status, body, _ = post(t, c, ts.URL+"/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 5})
	if status != 200 || get(body, "usage", "prompt_tokens") != float64(e.CountTokens("Once upon a time")) {
		t.Errorf("completion %d: %v", status, body)
	}

	// The context bound: prompt plus max_tokens beyond 512 tokens is refused.
	long := strings.Repeat("word ", 600)
	status, body, _ = post(t, c, ts.URL+"/v1/completions", map[string]any{"prompt": long, "max_tokens": 5})
	if status != 400 || get(body, "error", "code") != "context_length_exceeded" {
		t.Errorf("long prompt: %d %v", status, body)
	}
}

// onCPU puts e's generation on the CPU backend.
func onCPU(t testing.TB, e *infer.Engine) {
	t.Helper()
	if err := e.UseDevice(cputest.Open(), false, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
}
