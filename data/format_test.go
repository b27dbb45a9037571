package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func msgs(pairs ...string) []Message {
	var out []Message
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Message{Role: pairs[i], Content: pairs[i+1]})
	}
	return out
}

func TestFormats(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		content string
		spec    Spec
		stage   string
		want    []Example // only Kind, Messages, Tools, Text, Chosen, Rejected compared
	}{
		{
			name: "alpaca json array with system and history",
			file: "a.json",
			content: `[{"instruction":"Add","input":"1+1","output":"2","system":"Be brief.","history":[["hi","hello"]]},
			           {"instruction":"Name a color","input":"","output":"Red"}]`,
			want: []Example{
				{Kind: KindChat, Messages: append(msgs(RoleSystem, "Be brief.", RoleUser, "hi", RoleAssistant, "hello", RoleUser, "Add\n1+1"), Message{Role: RoleAssistant, Content: "2"})},
				{Kind: KindChat, Messages: msgs(RoleUser, "Name a color", RoleAssistant, "Red")},
			},
		},
		{
			name:    "alpaca jsonl with inline think",
			file:    "a.jsonl",
			content: "{\"instruction\":\"Why?\",\"output\":\"<think>\\nbecause\\n</think>\\n\\nSo.\"}\n\n",
			want:    []Example{{Kind: KindChat, Messages: []Message{{Role: RoleUser, Content: "Why?"}, {Role: RoleAssistant, Content: "So.", Reasoning: "because"}}}},
		},
		{
			name:    "sharegpt with function call, observation and tools string",
			file:    "s.jsonl",
			content: `{"conversations":[{"from":"human","value":"Weather in Paris?"},{"from":"function_call","value":"{\"name\":\"weather\",\"arguments\":{\"city\":\"Paris\"}}"},{"from":"observation","value":"{\"temp\":20}"},{"from":"gpt","value":"20 degrees."}],"system":"sys","tools":"[{\"name\":\"weather\",\"description\":\"d\",\"parameters\":{}}]"}` + "\n",
			want: []Example{{Kind: KindChat, Tools: json.RawMessage(`[{"name":"weather","description":"d","parameters":{}}]`), Messages: []Message{
				{Role: RoleSystem, Content: "sys"}, {Role: RoleUser, Content: "Weather in Paris?"},
				{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "weather", Arguments: json.RawMessage(`{"city":"Paris"}`)}}},
				{Role: RoleTool, Content: `{"temp":20}`}, {Role: RoleAssistant, Content: "20 degrees."}}}},
		},
		{
			name:    "sharegpt with custom tags",
			file:    "c.json",
			content: `[{"dialog":[{"speaker":"me","text":"Hi"},{"speaker":"bot","text":"Hello"}]}]`,
			spec:    Spec{Formatting: FormatShareGPT, Columns: Columns{Messages: "dialog"}, Tags: Tags{RoleTag: "speaker", ContentTag: "text", UserTag: "me", AssistantTag: "bot"}},
			want:    []Example{{Kind: KindChat, Messages: msgs(RoleUser, "Hi", RoleAssistant, "Hello")}},
		},
		{
			name:    "openai messages with tool_calls, tool role and reasoning_content",
			file:    "o.jsonl",
			content: `{"messages":[{"role":"user","content":[{"type":"text","text":"2+2?"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"calc","arguments":"{\"x\": \"2+2\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"4"},{"role":"assistant","content":"4","reasoning_content":"add them"}],"tools":[{"type":"function","function":{"name":"calc"}}]}` + "\n",
			want: []Example{{Kind: KindChat, Tools: json.RawMessage(`[{"type":"function","function":{"name":"calc"}}]`), Messages: []Message{
				{Role: RoleUser, Content: "2+2?"},
				{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "calc", Arguments: json.RawMessage(`{"x": "2+2"}`)}}},
				{Role: RoleTool, Content: "4", ToolCallID: "c1"},
				{Role: RoleAssistant, Content: "4", Reasoning: "add them"}}}},
		},
		{
			name:    "plain text for pre-training",
			file:    "t.jsonl",
			content: `{"text":"Once upon a time."}` + "\n",
			stage:   "pt",
			want:    []Example{{Kind: KindText, Text: "Once upon a time."}},
		},
		{
			name:    "alpaca columns as text in pt stage (LLaMA-Factory c4_demo)",
			file:    "c4.jsonl",
			content: `{"text":"Plain words."}` + "\n",
			spec:    Spec{Formatting: FormatAlpaca, Columns: Columns{Prompt: "text"}},
			stage:   "pt",
			want:    []Example{{Kind: KindText, Text: "Plain words."}},
		},
		{
			name:    "preference prompt/chosen/rejected",
			file:    "p.jsonl",
			content: `{"prompt":"Q?","chosen":"Good.","rejected":"Bad."}` + "\n",
			stage:   "dpo",
			want:    []Example{{Kind: KindPreference, Messages: msgs(RoleUser, "Q?"), Chosen: &Message{Role: RoleAssistant, Content: "Good."}, Rejected: &Message{Role: RoleAssistant, Content: "Bad."}}},
		},
		{
			name:    "sharegpt ranking (LLaMA-Factory layout)",
			file:    "r.json",
			content: `[{"conversations":[{"from":"human","value":"Q?"}],"chosen":{"from":"gpt","value":"Good."},"rejected":{"from":"gpt","value":"Bad."}}]`,
			spec:    Spec{Formatting: FormatShareGPT, Ranking: true},
			stage:   "rm",
			want:    []Example{{Kind: KindPreference, Messages: msgs(RoleUser, "Q?"), Chosen: &Message{Role: RoleAssistant, Content: "Good."}, Rejected: &Message{Role: RoleAssistant, Content: "Bad."}}},
		},
		{
			name:    "alpaca ranking",
			file:    "ar.json",
			content: `[{"instruction":"Q?","input":"","chosen":"Good.","rejected":"Bad."}]`,
			spec:    Spec{Formatting: FormatAlpaca, Ranking: true},
			stage:   "dpo",
			want:    []Example{{Kind: KindPreference, Messages: msgs(RoleUser, "Q?"), Chosen: &Message{Role: RoleAssistant, Content: "Good."}, Rejected: &Message{Role: RoleAssistant, Content: "Bad."}}},
		},
		{
			name:    "TRL conversational preference",
			file:    "trl.jsonl",
			content: `{"chosen":[{"role":"user","content":"Q?"},{"role":"assistant","content":"Good."}],"rejected":[{"role":"user","content":"Q?"},{"role":"assistant","content":"Bad."}]}` + "\n",
			stage:   "dpo",
			want:    []Example{{Kind: KindPreference, Messages: msgs(RoleUser, "Q?"), Chosen: &Message{Role: RoleAssistant, Content: "Good."}, Rejected: &Message{Role: RoleAssistant, Content: "Bad."}}},
		},
		{
			name:    "plain text file, one document per line",
			file:    "wiki.txt",
			content: "\uFEFFFirst document.\n\nSecond one, after a blank line.\r\nThird\n",
			stage:   "pt",
			want: []Example{
				{Kind: KindText, Text: "First document."},
				{Kind: KindText, Text: "Second one, after a blank line."},
				{Kind: KindText, Text: "Third"},
			},
		},
		{
			name:    "LLaMA-Factory v1 messages: value parts, reasoning, tool calls, loss_weight",
			file:    "v1.jsonl",
			content: `{"messages": [{"role": "user", "content": [{"type": "text", "value": "hi"}], "loss_weight": 0.0}, {"role": "assistant", "content": [{"type": "text", "value": "hello"}], "loss_weight": 0.0}, {"role": "user", "content": [{"type": "text", "value": "area of r=2?"}]}, {"role": "assistant", "content": [{"type": "reasoning", "value": "Use the tool."}, {"type": "tool_call", "value": "{\"name\": \"area\", \"arguments\": {\"r\": 2}}"}], "loss_weight": 1.0}, {"role": "tool", "content": [{"type": "text", "value": "12.57"}]}, {"role": "assistant", "content": [{"type": "reasoning", "value": "Report it."}, {"type": "text", "value": "About 12.57."}], "loss_weight": 1.0}], "tools": "[{\"type\": \"function\", \"function\": {\"name\": \"area\", \"parameters\": {}}}]"}` + "\n",
			want: []Example{{Kind: KindChat, Tools: json.RawMessage(`[{"type": "function", "function": {"name": "area", "parameters": {}}}]`), Messages: []Message{
				{Role: RoleUser, Content: "hi"},
				{Role: RoleAssistant, Content: "hello", NoTrain: true},
				{Role: RoleUser, Content: "area of r=2?"},
				{Role: RoleAssistant, Reasoning: "Use the tool.", ToolCalls: []ToolCall{{Name: "area", Arguments: json.RawMessage(`{"r": 2}`)}}},
				{Role: RoleTool, Content: "12.57"},
				{Role: RoleAssistant, Content: "About 12.57.", Reasoning: "Report it."},
			}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := tc.spec
			spec.Name = "ds"
			spec.Path = writeFile(t, dir, tc.file, tc.content)
			got, rep, err := collect(t, Config{Datasets: []Spec{spec}, Stage: tc.stage, Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d examples, want %d (report %+v)", len(got), len(tc.want), rep.Sources[0])
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				g.Source, g.Loc = "", Loc{}
				if !reflect.DeepEqual(g, w) {
					gj, _ := json.Marshal(g)
					wj, _ := json.Marshal(w)
					t.Errorf("example %d:\n got %s\nwant %s", i, gj, wj)
				}
			}
		})
	}
}

type pqMsg struct {
	From  string `parquet:"from"`
	Value string `parquet:"value"`
}
type pqRow struct {
	Conversations []pqMsg `parquet:"conversations,list"`
	System        string  `parquet:"system"`
}
type pqAlpaca struct {
	Instruction string `parquet:"instruction"`
	Input       string `parquet:"input"`
	Output      string `parquet:"output"`
}

func TestParquet(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rows any) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		switch r := rows.(type) {
		case []pqRow:
			err = parquet.Write(f, r)
		case []pqAlpaca:
			err = parquet.Write(f, r)
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	sg := write("sg.parquet", []pqRow{
		{Conversations: []pqMsg{{"human", "Hi"}, {"gpt", "Hello"}}, System: "S"},
		{Conversations: []pqMsg{{"human", "Hi"}}}, // assistant missing: bad
	})
	al := write("al.parquet", []pqAlpaca{{"Say yes", "", "yes"}})
	got, rep, err := collect(t, Config{Datasets: []Spec{{Name: "sg", Path: sg}, {Name: "al", Path: al}}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Message{msgs(RoleSystem, "S", RoleUser, "Hi", RoleAssistant, "Hello"), msgs(RoleUser, "Say yes", RoleAssistant, "yes")}
	if len(got) != 2 {
		t.Fatalf("got %d examples, want 2", len(got))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i].Messages, want[i]) {
			t.Errorf("parquet example %d: got %+v want %+v", i, got[i].Messages, want[i])
		}
	}
	if rep.Sources[0].Bad != 1 || len(rep.Issues) != 1 || !strings.Contains(rep.Issues[0].String(), "sg.parquet:record 1") {
		t.Errorf("bad parquet row not reported with its index: %+v %v", rep.Sources[0], rep.Issues)
	}
}

func TestFolderAndDetection(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/b.jsonl", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`+"\n")
	writeFile(t, dir, "d/a.json", `[{"instruction":"i","output":"o"}]`)
	writeFile(t, dir, "d/notes.md", "ignored")
	got, rep, err := collect(t, Config{Datasets: []Spec{{Name: "mixed", Path: filepath.Join(dir, "d")}}, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Messages[0].Content != "i" || got[1].Messages[0].Content != "u" {
		t.Fatalf("folder read wrong: %+v", got)
	}
	if rep.Sources[0].Files != 2 || rep.Sources[0].Formats[FormatAlpaca] != 1 || rep.Sources[0].Formats[FormatOpenAI] != 1 {
		t.Errorf("formats per file: %+v", rep.Sources[0])
	}
}

// TestLossWeightZeroNotTrained: an answer with v1 loss_weight 0 is context.
func TestLossWeightZeroNotTrained(t *testing.T) {
	enc, err := LoadEncoder(filepath.Join("testdata", "qwen3"), EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ex := &Example{Kind: KindChat, Messages: []Message{
		{Role: RoleUser, Content: "hi"}, {Role: RoleAssistant, Content: "context answer", NoTrain: true},
		{Role: RoleUser, Content: "again"}, {Role: RoleAssistant, Content: "trained answer"},
	}}
	r, err := enc.Render(ex)
	if err != nil {
		t.Fatal(err)
	}
	var trained strings.Builder
	for _, seg := range renderedSample(ex, r).Segments {
		if seg.Trained {
			trained.WriteString(seg.Text)
		}
	}
	if strings.Contains(trained.String(), "context") || !strings.Contains(trained.String(), "trained answer") {
		t.Errorf("trained text %q: want only the second answer", trained.String())
	}
}
