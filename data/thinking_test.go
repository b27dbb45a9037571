package data

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestEnableThinking renders a two-turn conversation whose answers carry
// reasoning (one as a field, one inline) with enable_thinking on and off,
// through the built-in qwen3 template and Qwen3's own, and compares the
// trained/untrained text with goldens. Off, as LLaMA-Factory's reasoning
// templates: no reasoning from the data survives, and the empty <think>
// block before each answer is prompt, not trained.
func TestEnableThinking(t *testing.T) {
	conv := []Message{
		{Role: RoleUser, Content: "2+2?"},
		{Role: RoleAssistant, Content: "4", Reasoning: "Two plus two."},
		{Role: RoleUser, Content: "3+3?"},
		{Role: RoleAssistant, Content: "<think>\nThree and three.\n</think>\n\n6"},
	}
	for _, tmpl := range []string{"builtin-qwen3", "qwen3"} {
		for _, thinking := range []bool{true, false} {
			name := tmpl + map[bool]string{true: "-thinking", false: "-nothink"}[thinking]
			t.Run(name, func(t *testing.T) {
				opts := EncodeOptions{NoThinking: !thinking}
				var enc *Encoder
				var err error
				if tmpl == "builtin-qwen3" {
					enc, err = LoadEncoderTemplate(filepath.Join("testdata", "qwen3"), "qwen3", opts)
				} else {
					enc, err = LoadEncoder(filepath.Join("testdata", tmpl), opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				r, err := enc.Render(&Example{Kind: KindChat, Messages: conv})
				if err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				for _, seg := range renderedSample(&Example{}, r).Segments {
					if seg.Trained {
						b.WriteString("[[" + seg.Text + "]]")
					} else {
						b.WriteString(seg.Text)
					}
				}
				got := b.String()
				if !thinking && (strings.Contains(got, "Two plus") || strings.Contains(got, "Three and")) {
					t.Errorf("reasoning from the data survived enable_thinking: false:\n%s", got)
				}
				if !thinking && strings.Contains(got, "[[<think>") {
					t.Errorf("the empty think block is trained with enable_thinking: false:\n%s", got)
				}
				golden := filepath.Join("testdata", "thinking", name+".txt")
				if *update {
					os.MkdirAll(filepath.Dir(golden), 0o755)
					os.WriteFile(golden, []byte(got), 0o644)
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got != string(want) {
					t.Errorf("render differs from %s:\n%s", golden, got)
				}
			})
		}
	}
}
