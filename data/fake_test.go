package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// byteTok is a test tokenizer: the ChatML markers are single tokens, every
// other byte is its own token (id = byte + 10).
type byteTok struct{}

var byteSpecials = []string{"<|im_start|>", "<|im_end|>"}

func (byteTok) EncodeOffsets(text string, addSpecial bool) ([]int, [][2]int) {
	var ids []int
	var off [][2]int
	if addSpecial {
		ids, off = append(ids, 3), append(off, [2]int{0, 0}) // BOS
	}
	for i := 0; i < len(text); {
		matched := false
		for k, sp := range byteSpecials {
			if strings.HasPrefix(text[i:], sp) {
				ids, off = append(ids, 1+k), append(off, [2]int{i, i + len(sp)})
				i += len(sp)
				matched = true
				break
			}
		}
		if !matched {
			ids, off = append(ids, int(text[i])+10), append(off, [2]int{i, i + 1})
			i++
		}
	}
	return ids, off
}
func (byteTok) EOS() int { return 2 }
func (byteTok) PAD() int { return 0 }

// chatML is a test renderer in the Qwen2.5 layout.
type chatML struct{}

func (chatML) Render(msgs []Message, tools json.RawMessage) (string, []Span, error) {
	var b strings.Builder
	var spans []Span
	if len(tools) > 0 && (len(msgs) == 0 || msgs[0].Role != RoleSystem) {
		b.WriteString("<|im_start|>system\n# Tools\n" + string(tools) + "<|im_end|>\n")
	}
	for i, m := range msgs {
		role := m.Role
		if role == RoleTool {
			role = "user"
		}
		b.WriteString("<|im_start|>" + role + "\n")
		start := b.Len()
		if m.Role == RoleSystem && len(tools) > 0 {
			b.WriteString(m.Content + "\n# Tools\n" + string(tools))
		} else if m.Role == RoleTool {
			b.WriteString("<tool_response>\n" + m.Content + "\n</tool_response>")
		} else {
			if m.Reasoning != "" {
				b.WriteString("<think>\n" + m.Reasoning + "\n</think>\n\n")
			}
			b.WriteString(m.Content)
			for _, c := range m.ToolCalls {
				b.WriteString("\n<tool_call>\n{\"name\": \"" + c.Name + "\", \"arguments\": " + string(c.Arguments) + "}\n</tool_call>")
			}
		}
		b.WriteString("<|im_end|>\n")
		spans = append(spans, Span{Message: i, Role: m.Role, Start: start, End: b.Len(), Generation: m.Role == RoleAssistant})
	}
	return b.String(), spans, nil
}

func testEncoder(opts EncodeOptions) *Encoder {
	return &Encoder{Tok: byteTok{}, Tmpl: chatML{}, Opts: opts, Fingerprint: "byte+chatml"}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// collect reads one dataset fully and returns the kept examples and report.
func collect(t *testing.T, cfg Config) ([]Example, *Report, error) {
	t.Helper()
	rep := newReport(cfg)
	var out []Example
	err := walk(cfg, rep, func(_ int, ex *Example) error {
		out = append(out, *ex)
		return nil
	})
	return out, rep, err
}
