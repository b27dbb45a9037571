package serve

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"unicode/utf8"
)

type outputCase struct {
	Name      string     `json:"name"`
	Format    ToolFormat `json:"format"`
	Tools     bool       `json:"tools"`
	InThink   bool       `json:"in_think"`
	Text      string     `json:"text"`
	Reasoning string     `json:"reasoning"`
	Content   string     `json:"content"`
	Calls     []struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"calls"`
}

func TestParseOutput(t *testing.T) {
	b, err := os.ReadFile("testdata/outputs.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []outputCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			want := Output{Reasoning: tc.Reasoning, Content: tc.Content}
			for _, c := range tc.Calls {
				want.ToolCalls = append(want.ToolCalls, ToolCall{Name: c.Name, Arguments: c.Arguments})
			}
			got := ParseOutput(tc.Text, tc.Format, tc.Tools, tc.InThink)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("whole text:\n got %+v\nwant %+v", got, want)
			}
			// Streamed one rune at a time: the same parts, and no delta is
			// ever taken back.
			p := NewParser(tc.Format, tc.Tools, tc.InThink)
			var streamed Output
			for i, r := range tc.Text {
				d := p.Push(tc.Text[i : i+utf8.RuneLen(r)])
				streamed.Reasoning += d.Reasoning
				streamed.Content += d.Content
			}
			d, calls := p.Finish()
			streamed.Reasoning += d.Reasoning
			streamed.Content += d.Content
			streamed.ToolCalls = calls
			if !reflect.DeepEqual(streamed, want) {
				t.Fatalf("streamed:\n got %+v\nwant %+v", streamed, want)
			}
		})
	}
}

func TestDetectToolFormat(t *testing.T) {
	tests := []struct {
		src  string
		want ToolFormat
	}{
		{"{{- '<tool_call>\\n' }}", FormatHermes},
		{"{{- '[TOOL_CALLS]' + tool_calls|tojson }}", FormatMistral},
		{"<|start_header_id|>assistant<|end_header_id|>{{ '<|eot_id|>' }}", FormatLlama3},
		{"plain", FormatHermes},
	}
	for _, tc := range tests {
		if got := DetectToolFormat(tc.src); got != tc.want {
			t.Errorf("DetectToolFormat(%q) = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestStopper(t *testing.T) {
	tests := []struct {
		name   string
		stops  []string
		pieces []string
		want   string
		hit    bool
	}{
		{"no stops", nil, []string{"ab", "c"}, "abc", false},
		{"stop inside a piece", []string{"END"}, []string{"abcENDxyz"}, "abc", true},
		{"stop across pieces", []string{"END"}, []string{"ab", "E", "N", "Dzz"}, "ab", true},
		{"false start is released", []string{"END"}, []string{"aE", "Nx", "y"}, "aENxy", false},
		{"earliest of several", []string{"zz", "b"}, []string{"a", "bzz"}, "a", true},
		{"held text flushed at the end", []string{"END"}, []string{"xEN"}, "xEN", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := stopper{stops: tc.stops}
			var got string
			var hit bool
			for _, p := range tc.pieces {
				out, h := s.push(p)
				got += out
				if h {
					hit = true
					break
				}
			}
			if !hit {
				got += s.flush()
			}
			if got != tc.want || hit != tc.hit {
				t.Errorf("got %q hit=%v, want %q hit=%v", got, hit, tc.want, tc.hit)
			}
		})
	}
}
