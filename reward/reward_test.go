package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gotune/config"
)

func samplesOf(completions []string, answer string) []Sample {
	out := make([]Sample, len(completions))
	for i, c := range completions {
		out[i] = Sample{Prompt: "q", Completion: c, Tokens: len(strings.Fields(c)),
			Columns: map[string]json.RawMessage{"answer": json.RawMessage(answer)}, Where: fmt.Sprintf("train.jsonl:%d", i+1)}
	}
	return out
}

func score(t *testing.T, d config.RewardFunc, samples []Sample) ([]float64, error) {
	t.Helper()
	f, err := Build("r", d)
	if err != nil {
		t.Fatal(err)
	}
	return f.Score(context.Background(), samples)
}

func TestMatch(t *testing.T) {
	cases := []struct {
		name       string
		d          config.RewardFunc
		answer     string
		completion string
		want       float64
	}{
		{"last number", config.RewardFunc{Type: "match", Column: "answer"}, `"42"`, "6 times 7 is 42", 1},
		{"last number wins", config.RewardFunc{Type: "match", Column: "answer"}, `42`, "42? no: 41", 0},
		{"number column", config.RewardFunc{Type: "match", Column: "answer"}, `1000`, "so 1,000.", 1},
		{"decimal equal", config.RewardFunc{Type: "match", Column: "answer"}, `"72"`, "72.0", 1},
		{"gsm8k answer", config.RewardFunc{Type: "match", Column: "answer"}, `"48/2 = 24 ... #### 72"`, "The answer is 72", 1},
		{"no number", config.RewardFunc{Type: "match", Column: "answer"}, `"3"`, "three", 0},
		{"negative", config.RewardFunc{Type: "match", Column: "answer"}, `"-5"`, "x = -5", 1},
		{"boxed", config.RewardFunc{Type: "match", Extract: "boxed", Column: "answer"}, `"\\frac{1}{2}"`, `so \boxed{\frac{1}{2}} done`, 1},
		{"boxed last", config.RewardFunc{Type: "match", Extract: "boxed", Column: "answer"}, `"2"`, `\boxed{1} then \boxed{2}`, 1},
		{"boxed unclosed", config.RewardFunc{Type: "match", Extract: "boxed", Column: "answer"}, `"2"`, `\boxed{2`, 0},
		{"regex group", config.RewardFunc{Type: "match", Extract: "regex", Pattern: `<answer>(.*?)</answer>`, Column: "answer"}, `"Paris"`, "<think>hm</think><answer>Paris</answer>", 1},
		{"regex named group", config.RewardFunc{Type: "match", Extract: "regex", Pattern: `(?P<label>\w+): (?P<answer>\w+)`, Column: "answer"}, `"yes"`, "verdict: yes", 1},
		{"regex no match", config.RewardFunc{Type: "match", Extract: "regex", Pattern: `<answer>(.*?)</answer>`, Column: "answer"}, `"Paris"`, "Paris", 0},
		{"json field", config.RewardFunc{Type: "match", Extract: "json", Field: "result.city", Column: "answer"}, `"Paris"`, `ok {"result": {"city": "Paris"}}`, 1},
		{"json number field", config.RewardFunc{Type: "match", Extract: "json", Field: "n", Column: "answer"}, `3`, `{"n": 3.0}`, 1},
		{"json broken", config.RewardFunc{Type: "match", Extract: "json", Field: "n", Column: "answer"}, `3`, `{"n": 3`, 0},
		{"text", config.RewardFunc{Type: "match", Extract: "text", Column: "answer"}, `"yes"`, "  yes\n", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := score(t, c.d, samplesOf([]string{c.completion}, c.answer))
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != c.want {
				t.Errorf("reward %v, want %v", got[0], c.want)
			}
		})
	}
}

// A record without the column is the dataset's fault: an error naming the
// record, not a zero.
func TestMatchMissingColumn(t *testing.T) {
	s := samplesOf([]string{"1", "2"}, `"2"`)
	delete(s[1].Columns, "answer")
	_, err := score(t, config.RewardFunc{Type: "match", Column: "answer"}, s)
	if err == nil || !strings.Contains(err.Error(), "train.jsonl:2") || !strings.Contains(err.Error(), `"answer"`) {
		t.Fatalf("error %v does not name the record and column", err)
	}
}

func TestFormatAndLength(t *testing.T) {
	got, err := score(t, config.RewardFunc{Type: "regex", Pattern: `(?s)^<think>.*?</think>\s*\S`},
		samplesOf([]string{"<think>a\nb</think> 4", "4", "<think>x</think>"}, `""`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 0 0]" {
		t.Errorf("format rewards %v", got)
	}
	s := make([]Sample, 5)
	for i, n := range []int{3, 6, 8, 10, 12} {
		s[i] = Sample{Tokens: n}
	}
	got, err = score(t, config.RewardFunc{Type: "length", MaxTokens: 10, SoftCache: 4}, s)
	if err != nil {
		t.Fatal(err)
	}
	// Free up to 6 tokens, then −(n−6)/4 down to −1 at 10, −1 beyond.
	want := []float64{0, 0, -0.5, -1, -1}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d tokens: %v, want %v", s[i].Tokens, got[i], want[i])
		}
	}
}

const weatherTools = `[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
 "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}]`

func TestToolCall(t *testing.T) {
	cases := []struct {
		completion string
		want       float64
	}{
		{`<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>`, 1},
		{`<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}</tool_call>`, 1},
		{`{"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}`, 1},
		{`<tool_call>{"name": "get_weather", "arguments": {"days": 3}}</tool_call>`, 0},                   // required city missing
		{`<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1.5}}</tool_call>`, 0}, // not an integer
		{`<tool_call>{"name": "get_time", "arguments": {}}</tool_call>`, 0},                               // undeclared tool
		{`<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>`, 0},                      // does not parse
		{`It is sunny.`, 0}, // no call
		{`<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call><tool_call>{"name": "x"}</tool_call>`, 0},
	}
	for _, col := range []bool{true, false} {
		d := config.RewardFunc{Type: "tool_call"}
		if !col {
			d.Tools = weatherTools
		}
		for i, c := range cases {
			s := samplesOf([]string{c.completion}, `""`)
			s[0].Columns["tools"] = json.RawMessage(weatherTools)
			got, err := score(t, d, s)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != c.want {
				t.Errorf("case %d (tools from column %v): %v, want %v", i, col, got[0], c.want)
			}
		}
	}
	// A tools column that is not tool definitions names the record.
	s := samplesOf([]string{"{}"}, `""`)
	s[0].Columns["tools"] = json.RawMessage(`"not json"`)
	if _, err := score(t, config.RewardFunc{Type: "tool_call"}, s); err == nil || !strings.Contains(err.Error(), "train.jsonl:1") {
		t.Errorf("bad tools column: error %v", err)
	}
}

func TestCommand(t *testing.T) {
	// Scores 1 for a completion that is exactly "yes": the script sees the
	// JSON lines, including the dataset columns.
	script := `while IFS= read -r l; do case "$l" in *'"completion":"yes"'*'"answer":"a"'*|*'"answer":"a"'*'"completion":"yes"'*) echo 1;; *) echo 0.25;; esac; done`
	samples := samplesOf([]string{"yes", "no", "yes"}, `"a"`)
	got, err := score(t, config.RewardFunc{Type: "command", Command: []string{"sh", "-c", script}}, samples)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 0.25 1]" {
		t.Errorf("command rewards %v", got)
	}
	fails := []struct {
		name    string
		script  string
		timeout float64
		want    []string
	}{
		{"crash", `echo oops >&2; exit 3`, 0, []string{"failed", "exit status 3", "oops", "train.jsonl:1"}},
		{"garbage", `cat >/dev/null; echo 1; echo banana; echo 0`, 0, []string{"banana", "line 2", "sample 1", "train.jsonl:2"}},
		{"too few lines", `cat >/dev/null; echo 1`, 0, []string{"1 lines for 3 samples"}},
		{"nan", `cat >/dev/null; echo 1; echo NaN; echo 0`, 0, []string{"NaN", "train.jsonl:2"}},
		{"timeout", `sleep 30`, 0.2, []string{"timed out", "train.jsonl:1"}},
	}
	for _, f := range fails {
		t.Run(f.name, func(t *testing.T) {
			_, err := score(t, config.RewardFunc{Type: "command", Command: []string{"sh", "-c", f.script}, Timeout: f.timeout}, samples)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range f.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := score(t, config.RewardFunc{Type: "command", Command: []string{"/nonexistent/scorer"}}, samples); err == nil {
		t.Error("a missing program: no error")
	}
}

func TestHTTP(t *testing.T) {
	var mode string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		switch mode {
		case "array":
			var out []float64
			for _, l := range lines {
				var rec struct {
					Completion string `json:"completion"`
					Answer     string `json:"answer"`
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					http.Error(w, err.Error(), 400)
					return
				}
				out = append(out, float64(len(rec.Completion)+len(rec.Answer)))
			}
			json.NewEncoder(w).Encode(out)
		case "object":
			fmt.Fprint(w, `{"rewards": [0.5, 0.5, 0.5]}`)
		case "lines":
			fmt.Fprint(w, "1\n2\n3\n")
		case "error":
			http.Error(w, "model overloaded", 503)
		case "garbage":
			fmt.Fprint(w, "<html>")
		case "short":
			fmt.Fprint(w, "[1]")
		case "slow":
			select { // longer than the reward's timeout
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer srv.Close()
	samples := samplesOf([]string{"yes", "no", "maybe"}, `"ab"`)
	d := config.RewardFunc{Type: "http", URL: srv.URL}
	for _, c := range []struct{ mode, want string }{{"array", "[5 4 7]"}, {"object", "[0.5 0.5 0.5]"}, {"lines", "[1 2 3]"}} {
		mode = c.mode
		got, err := score(t, d, samples)
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		if fmt.Sprint(got) != c.want {
			t.Errorf("%s: %v, want %s", c.mode, got, c.want)
		}
	}
	for _, c := range []struct{ mode, want string }{{"error", "503"}, {"garbage", "1 lines for 3 samples"}, {"short", "1 numbers for 3 samples"}} {
		mode = c.mode
		if _, err := score(t, d, samples); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.mode, err, c.want)
		}
	}
	mode = "slow"
	if _, err := score(t, config.RewardFunc{Type: "http", URL: srv.URL, Timeout: 0.2}, samples); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("slow endpoint: error %v, want a timeout", err)
	}
	srv.Close()
	if _, err := score(t, d, samples); err == nil || !strings.Contains(err.Error(), "POST") {
		t.Errorf("closed server: error %v", err)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, d := range []config.RewardFunc{
		{Type: "match", Extract: "regex", Pattern: "(", Column: "a"},
		{Type: "match", Extract: "regex", Pattern: "no group", Column: "a"},
		{Type: "match", Extract: "xml", Column: "a"},
		{Type: "regex", Pattern: "[z-a]"},
		{Type: "tool_call", Tools: "{"},
		{Type: "length"},
		{Type: "length", MaxTokens: 4, SoftCache: 5},
		{Type: "command"},
		{Type: "magic"},
	} {
		if _, err := Build("r", d); err == nil {
			t.Errorf("%+v: no error", d)
		}
	}
}
