package data

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestMalformedRecords(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		content string
		stage   string
		loc     string // expected location prefix in the issue
		reason  string // substring of the issue
	}{
		{"bad JSON line", "x.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\": oops}\n", "", "x.jsonl:2", "invalid JSON line"},
		{"array element not an object", "x.json", `[{"instruction":"a","output":"b"}, "just a string"]`, "", "x.json:1 (record 1)", "not a JSON object"},
		{"truncated JSON array", "x.json", `[{"instruction":"a","output":"b"}, {"instruction":"c",`, "", "x.json:1 (record 1)", "invalid JSON"},
		{"missing output", "x.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\"}\n", "", "x.jsonl:2", `field "output": missing`},
		{"output not a string", "x.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\",\"output\":{\"x\":1}}\n", "", "x.jsonl:2", "expected a string, found an object"},
		{"roles do not alternate", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}]}` + "\n", "", "x.jsonl:2", "roles must alternate"},
		{"assistant not last", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}` + "\n", "", "x.jsonl:2", "assistant must speak last"},
		{"starts with assistant", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"assistant","content":"b"}]}` + "\n", "", "x.jsonl:2", "expected user first"},
		{"tool args not JSON", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{bad"}}]},{"role":"tool","content":"r"},{"role":"assistant","content":"c"}]}` + "\n", "", "x.jsonl:2", "arguments are not valid JSON"},
		{"tool result without call", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"tool","content":"r"},{"role":"assistant","content":"c"}]}` + "\n", "", "x.jsonl:2", "without a preceding assistant tool call"},
		{"unbalanced think", "x.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\",\"output\":\"<think>never closed\"}\n", "", "x.jsonl:2", "unclosed <think>"},
		{"stray closing think", "x.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\",\"output\":\"x</think>y\"}\n", "", "x.jsonl:2", "</think> without"},
		{"empty user turn", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"b"}]}` + "\n", "", "x.jsonl:2", "empty user turn"},
		{"empty assistant turn", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""}]}` + "\n", "", "x.jsonl:2", "empty assistant turn"},
		{"unknown sharegpt role", "x.jsonl", `{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":"b"}]}` + "\n" + `{"conversations":[{"from":"human","value":"a"},{"from":"robot","value":"b"}]}` + "\n", "", "x.jsonl:2", `unknown role "robot"`},
		{"identical preference pair", "x.jsonl", `{"prompt":"q","chosen":"a","rejected":"b"}` + "\n" + `{"prompt":"q","chosen":"a","rejected":"a"}` + "\n", "dpo", "x.jsonl:2", "identical to chosen"},
		{"wrong kind for stage", "x.jsonl", `{"prompt":"q","chosen":"a","rejected":"b"}` + "\n", "", "x.jsonl:1", "preference record"},
		{"tool without name", "x.jsonl", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"tools":[{"description":"x"}]}` + "\n", "", "x.jsonl:2", "no name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, tc.file, tc.content)
			cfg := Config{Datasets: []Spec{{Name: "ds", Path: path}}, Stage: tc.stage, SkipInvalidJSON: true}
			_, rep, err := collect(t, cfg)
			if err != nil {
				t.Fatalf("lenient mode must skip, got %v", err)
			}
			if rep.Sources[0].Bad != 1 || len(rep.Issues) != 1 {
				t.Fatalf("want exactly one bad record, got %d (%v)", rep.Sources[0].Bad, rep.Issues)
			}
			msg := rep.Issues[0].String()
			if !strings.HasPrefix(msg, path[:len(path)-len(tc.file)]+tc.loc) || !strings.Contains(msg, tc.reason) {
				t.Errorf("issue %q: want location %q and reason %q", msg, tc.loc, tc.reason)
			}
			cfg.Strict = true
			_, _, err = collect(t, cfg)
			var re *RecordError
			if !errors.As(err, &re) || re.Issue.String() != msg {
				t.Errorf("strict mode: got %v, want the same issue as an error", err)
			}
		})
	}
}

func TestThinkBalance(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                            "",
		"<think>a</think>b":                "",
		"<think>a</think><think>b</think>": "",
		"<think>a":                         "unclosed <think> tag",
		"a</think>":                        "</think> without an opening <think>",
		"<think><think>a</think></think>":  "nested <think> tags",
	} {
		if got := thinkBalance(in); got != want {
			t.Errorf("thinkBalance(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIssueCounting(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, "{\"instruction\":\"q%d\"}\n", i) // all missing output
	}
	b.WriteString(`{"instruction":"ok","output":"fine"}` + "\n")
	path := writeFile(t, dir, "x.jsonl", b.String())
	got, rep, err := collect(t, Config{Datasets: []Spec{{Name: "ds", Path: path}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || rep.Sources[0].Bad != 30 || len(rep.Issues) != maxIssues {
		t.Fatalf("kept %d bad %d listed %d", len(got), rep.Sources[0].Bad, len(rep.Issues))
	}
	if rep.Sources[0].BadReasons[`output: missing`] != 30 {
		t.Errorf("reasons not grouped: %v", rep.Sources[0].BadReasons)
	}
}

// A file that is not well-formed JSON stops the run at the break, naming
// file and line, unless skipping was asked for; then the skipped records
// are counted. Inspect reports without stopping.
func TestInvalidJSONStops(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	cases := []struct {
		name, file, content string
		loc, reason         string
		kept                int // with skip_invalid_json
	}{
		{"array broken at record 1", "a.json", "[\n  {\"instruction\":\"a\",\"output\":\"b\"},\n  {\"instruction\": \"c\",\n   \"output\": oops}\n]\n",
			"a.json:4 (record 1)", "invalid JSON", 1},
		{"unclosed array", "a.json", "[\n  {\"instruction\":\"a\",\"output\":\"b\"}\n", "a.json:2", "JSON array not closed", 1},
		{"bad JSONL line", "a.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\",\"output\":\"b\"\n{\"instruction\":\"c\",\"output\":\"d\"}\n",
			"a.jsonl:2", "invalid JSON line", 2},
		{"deep nesting in JSONL", "a.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"q\",\"output\":\"b\",\"x\":" + deep + "}\n",
			"a.jsonl:2", "nested deeper than", 1},
		{"deep nesting in array", "a.json", "[{\"instruction\":\"a\",\"output\":\"b\"},\n{\"instruction\":\"q\",\"output\":\"b\",\"x\":" + deep + "}]",
			"a.json:2 (record 1)", "nested deeper than", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, tc.file, tc.content)
			cfg := Config{Datasets: []Spec{{Name: "ds", Path: path}}}
			_, _, err := collect(t, cfg)
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("want the run stopped with a RecordError, got %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, filepathJoin(dir, tc.loc)) || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "skip_invalid_json") {
				t.Errorf("error %q: want %q, %q and the skip_invalid_json hint", msg, tc.loc, tc.reason)
			}
			cfg.SkipInvalidJSON = true
			got, rep, err := collect(t, cfg)
			if err != nil {
				t.Fatalf("skip_invalid_json: %v", err)
			}
			if len(got) != tc.kept || rep.Sources[0].InvalidJSON != 1 {
				t.Errorf("skip_invalid_json: kept %d (want %d), invalid %d (want 1)", len(got), tc.kept, rep.Sources[0].InvalidJSON)
			}
			cfg.SkipInvalidJSON = false
			rep, err = Inspect(cfg, nil, InspectOptions{Samples: -1})
			if err != nil || rep.Sources[0].InvalidJSON != 1 {
				t.Errorf("inspect must report, not stop: %v", err)
			}
		})
	}
}

func filepathJoin(dir, rest string) string { return dir + string(os.PathSeparator) + rest }
