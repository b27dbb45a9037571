package train

import (
	"encoding/json"
	"strings"
	"testing"

	"gotune/data"
)

// The prompt of a record in each layout stage grpo reads.
func TestPromptMessages(t *testing.T) {
	cases := []struct {
		name, record string
		cols         data.Columns
		want, err    string
	}{
		{"prompt text", `{"prompt": "2+2?", "answer": "4"}`, data.Columns{}, "user:2+2?", ""},
		{"prompt chat", `{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}`, data.Columns{}, "system:Be brief.|user:Hi", ""},
		{"alpaca", `{"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "S"}`, data.Columns{}, "system:S|user:Translate\nbonjour", ""},
		{"mapped column", `{"q": "Why?", "a": "Because"}`, data.Columns{Prompt: "q"}, "user:Why?", ""},
		{"sharegpt", `{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}`, data.Columns{}, "user:Hi", ""},
		{"messages", `{"messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}, {"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}]}`, data.Columns{}, "user:A|assistant:B|user:C", ""},
		{"no prompt", `{"answer": "4"}`, data.Columns{}, "", `want a "prompt" column`},
		{"prompt not text", `{"prompt": 4}`, data.Columns{}, "", `field "prompt": expected a string`},
		{"only an answer", `{"messages": [{"role": "assistant", "content": "B"}]}`, data.Columns{}, "", "no turn before the answer"},
		{"bad role", `{"prompt": [{"role": "wizard", "content": "x"}]}`, data.Columns{}, "", "message 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var fields map[string]json.RawMessage
			must(t, json.Unmarshal([]byte(c.record), &fields))
			msgs, err := promptMessages(fields, c.cols)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			must(t, err)
			var parts []string
			for _, m := range msgs {
				parts = append(parts, m.Role+":"+m.Content)
			}
			if got := strings.Join(parts, "|"); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
