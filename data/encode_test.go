package data

import (
	"encoding/json"
	"strings"
	"testing"
)

// trainedText returns the text of the trained tokens of s under byteTok.
func trainedText(s Sample) string {
	var b strings.Builder
	for _, l := range s.Labels {
		switch {
		case l == IgnoreIndex:
			b.WriteByte('.')
		case l == 1:
			b.WriteString("<S>")
		case l == 2:
			b.WriteString("<E>")
		case l >= 10:
			b.WriteByte(byte(l - 10))
		}
	}
	return b.String()
}

func squeeze(s string) string {
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", ".")
	}
	return s
}

func TestEncodeMasks(t *testing.T) {
	twoTurns := Example{Kind: KindChat, Messages: msgs(RoleSystem, "S", RoleUser, "q1", RoleAssistant, "a1", RoleUser, "q2", RoleAssistant, "a2")}
	tool := Example{Kind: KindChat, Messages: []Message{
		{Role: RoleUser, Content: "q"},
		{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "f", Arguments: json.RawMessage(`{"x":1}`)}}},
		{Role: RoleTool, Content: "r"},
		{Role: RoleAssistant, Content: "done", Reasoning: "hm"}}}
	cases := []struct {
		name string
		ex   Example
		opts EncodeOptions
		want string // trained text with untrained runs as "."
		drop string
	}{
		{"all assistant turns with end of turn", twoTurns, EncodeOptions{}, ".a1<E>\n.a2<E>\n", ""},
		{"last turn only", twoTurns, EncodeOptions{LastTurnOnly: true}, ".a2<E>\n", ""},
		{"mask history", twoTurns, EncodeOptions{MaskHistory: true}, ".a2<E>\n", ""},
		{"train on prompt", twoTurns, EncodeOptions{TrainOnPrompt: true}, "<S>system\nS<E>\n<S>user\nq1<E>\n<S>assistant\na1<E>\n<S>user\nq2<E>\n<S>assistant\na2<E>\n", ""},
		{"tool call and reasoning trained, tool result not", tool, EncodeOptions{}, ".\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\":1}}\n</tool_call><E>\n.<think>\nhm\n</think>\n\ndone<E>\n", ""},
		{"cut keeps a trained token", twoTurns, EncodeOptions{CutoffLen: 34}, ".a1", ""},
		{"cut leaves nothing trained", twoTurns, EncodeOptions{CutoffLen: 32}, "", DropNoTrainable},
		{"mask history keeps the end when cutting", twoTurns, EncodeOptions{MaskHistory: true, CutoffLen: 12}, ".a2<E>\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ss, drop, err := testEncoder(tc.opts).Encode(&tc.ex, 0)
			if err != nil {
				t.Fatal(err)
			}
			if drop != tc.drop {
				t.Fatalf("drop = %q, want %q", drop, tc.drop)
			}
			if tc.drop != "" {
				if len(ss) != 0 {
					t.Fatal("dropped example still gave samples")
				}
				return
			}
			s := ss[0]
			if c := tc.opts.CutoffLen; c > 0 && len(s.InputIDs) > c {
				t.Fatalf("%d tokens exceed cutoff %d", len(s.InputIDs), c)
			}
			for i, l := range s.Labels {
				if l != IgnoreIndex && l != s.InputIDs[i] {
					t.Fatalf("label %d at %d is not the input id %d", l, i, s.InputIDs[i])
				}
			}
			if got := squeeze(trainedText(s)); got != tc.want {
				t.Errorf("trained text\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestEncodeTextAndPreference(t *testing.T) {
	enc := testEncoder(EncodeOptions{CutoffLen: 8})
	text := Example{Kind: KindText, Text: "abcdefghijklmnopq"} // BOS + 17 + EOS = 19 tokens
	ss, _, err := enc.Encode(&text, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 || len(ss[0].InputIDs) != 8 || len(ss[2].InputIDs) != 3 || ss[0].InputIDs[0] != 3 || ss[2].InputIDs[2] != 2 || ss[1].Source != 2 {
		t.Errorf("text blocks: %+v", ss)
	}
	for _, s := range ss {
		if s.Trained() != len(s.InputIDs) {
			t.Error("pre-training text must be trained everywhere")
		}
	}
	pref := Example{Kind: KindPreference, Messages: msgs(RoleUser, "q"), Chosen: &Message{Role: RoleAssistant, Content: "good"}, Rejected: &Message{Role: RoleAssistant, Content: "bad"}}
	ss, _, err = testEncoder(EncodeOptions{}).Encode(&pref, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := squeeze(trainedText(ss[0])); got != ".good<E>\n" {
		t.Errorf("chosen trained %q", got)
	}
	if got := squeeze(trainedText(Sample{Labels: ss[0].RejectedLabels})); got != ".bad<E>\n" {
		t.Errorf("rejected trained %q", got)
	}
}
