package data

import (
	"encoding/json"
	"strings"
	"testing"
)

// decodeTrained returns the rendered text of the trained tokens (a "|"
// between non-adjacent runs) and of the untrained ones.
func decodeTrained(r Rendered) (trained, untrained string) {
	var t, u strings.Builder
	last := -1
	for i, o := range r.Offsets {
		piece := r.Text[o[0]:o[1]]
		if r.Trained[i] {
			if last >= 0 && last != i-1 {
				t.WriteString("|")
			}
			t.WriteString(piece)
			last = i
		} else {
			u.WriteString(piece)
		}
	}
	return t.String(), u.String()
}

// TestQwen3ToolConversation runs a tool-calling conversation with inline
// reasoning through the real Qwen3 template and tokenizer: the call and the
// final answer are trained, the tool result and prompts are not.
func TestQwen3ToolConversation(t *testing.T) {
	enc, err := LoadEncoder("testdata/qwen3", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, t.TempDir(), "tools.jsonl", `{"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","content":"{\"temp\": 21}"},{"role":"assistant","content":"<think>\nIt is mild.\n</think>\n\nIt is 21 degrees."}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}`+"\n")
	exs, _, err := collect(t, Config{Datasets: []Spec{{Name: "t", Path: path}}, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if exs[0].Messages[3].Reasoning != "It is mild." {
		t.Fatalf("reasoning not split: %+v", exs[0].Messages[3])
	}
	r, err := enc.Render(&exs[0])
	if err != nil {
		t.Fatal(err)
	}
	trained, untrained := decodeTrained(r)
	for _, want := range []string{`<tool_call>`, `"name": "get_weather", "arguments": {"city": "Paris"}`, "<think>\nIt is mild.\n</think>\n\nIt is 21 degrees.<|im_end|>"} {
		if !strings.Contains(trained, want) {
			t.Errorf("trained text lacks %q:\n%s", want, trained)
		}
	}
	for _, want := range []string{"Weather in Paris?", `{"temp": 21}`, "# Tools", "<|im_start|>assistant\n"} {
		if !strings.Contains(untrained, want) || strings.Contains(trained, want) {
			t.Errorf("%q should be in the prompt only", want)
		}
	}
	if !strings.Contains(r.Text, `"name": "get_weather", "parameters": {"type": "object"}`) {
		t.Errorf("tool definitions not rendered in order:\n%s", r.Text)
	}
}

func TestChatMessagesRoundTrip(t *testing.T) {
	in := []Message{{Role: RoleAssistant, Content: "x", Reasoning: "r", ToolCalls: []ToolCall{{ID: "abc123def", Name: "f", Arguments: json.RawMessage(`{"b":1,"a":2}`)}}}, {Role: RoleTool, Content: "out", ToolCallID: "abc123def", Name: "f"}}
	cm, err := ChatMessages(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cm)
	want := `[{"role":"assistant","content":"x","reasoning_content":"r","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"b":1,"a":2}},"id":"abc123def"}]},{"role":"tool","content":"out","tool_call_id":"abc123def","name":"f"}]`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestMaxSamples(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 50; i++ {
		b.WriteString(`{"instruction":"q` + strings.Repeat("x", i) + `","output":"a"}` + "\n")
	}
	p := writeFile(t, dir, "d.jsonl", b.String())
	exs, _, err := collect(t, Config{Datasets: []Spec{{Name: "a", Path: p}, {Name: "b", Path: p, NumSamples: 5}}, MaxSamples: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 15 || exs[9].Messages[0].Content != "q"+strings.Repeat("x", 9) {
		t.Errorf("max_samples 10 + num_samples 5: got %d examples", len(exs))
	}
}
