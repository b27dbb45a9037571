package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The corpus under testdata/jinja is ours: cases.json holds small templates
// written for gotune, goldens.json what Python's jinja2, configured as
// transformers configures it, rendered from them (scripts/templates).

// knownDivergences are cases where gotune still differs from jinja2, with
// the reason. The test asserts they still differ, so a fix is noticed.
var knownDivergences = map[string]string{}

type jinjaCase struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Vars     json.RawMessage `json:"vars"`
}

type jinjaGolden struct {
	Output *string `json:"output"`
	Error  string  `json:"error"`
}

// goldenFixedNow is render.py's clock for strftime_now.
var goldenFixedNow = time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC)

// jinjaOptions splits a case's variables as transformers passes them:
// messages, tools, add_generation_prompt and the special tokens, the rest
// as template kwargs.
func jinjaOptions(raw json.RawMessage) ([]Message, Options, error) {
	opt := Options{Extra: map[string]any{}, Now: func() time.Time { return goldenFixedNow }}
	msgs := []Message{}
	var vars Object
	if len(raw) > 0 {
		if err := vars.UnmarshalJSON(raw); err != nil {
			return nil, opt, err
		}
	}
	for _, f := range vars {
		switch f.Key {
		case "messages":
			b, err := json.Marshal(f.Value)
			if err != nil {
				return nil, opt, err
			}
			if msgs, err = ParseMessages(b); err != nil {
				return nil, opt, err
			}
		case "tools":
			opt.Tools = f.Value.([]any)
		case "add_generation_prompt":
			opt.AddGenerationPrompt = f.Value.(bool)
		case "bos_token":
			opt.BOS = f.Value.(string)
		case "eos_token":
			opt.EOS = f.Value.(string)
		default:
			opt.Extra[f.Key] = f.Value
		}
	}
	return msgs, opt, nil
}

// renderJinjaCase renders one case and compares it with its golden; "" when
// they agree.
func renderJinjaCase(c jinjaCase, g jinjaGolden) string {
	msgs, opt, err := jinjaOptions(c.Vars)
	if err != nil {
		return "bad case: " + err.Error()
	}
	var got string
	tm, err := Parse(c.Name, c.Template)
	parseErr := err != nil
	if err == nil {
		got, err = tm.Render(msgs, opt)
	}
	if g.Error != "" {
		if err == nil {
			return "jinja2 raised " + g.Error + ", gotune rendered " + clip(got)
		}
		if msg, ok := strings.CutPrefix(g.Error, "TemplateError: "); ok {
			var re *RaiseError
			if !errors.As(err, &re) || re.Message != msg {
				return "want raise_exception(" + msg + "), got " + err.Error()
			}
			return ""
		}
		// the same kind of error (TypeError, UndefinedError, ...); jinja2's
		// syntax errors are gotune's parse errors
		class, _, _ := strings.Cut(g.Error, ":")
		if class == "TemplateSyntaxError" || class == "TemplateAssertionError" {
			if !parseErr {
				return "jinja2 refused the template (" + g.Error + "), gotune parsed it and failed rendering: " + err.Error()
			}
			return ""
		}
		if parseErr || !strings.Contains(err.Error(), class+": ") {
			return "jinja2 raised " + g.Error + ", gotune failed otherwise: " + err.Error()
		}
		return ""
	}
	if err != nil {
		return "render failed: " + err.Error()
	}
	want := *g.Output
	if got == want {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, clip(got[i:]), clip(want[i:]))
}

func TestJinja2Goldens(t *testing.T) {
	dir := filepath.Join("testdata", "jinja")
	var cases []jinjaCase
	var goldens map[string]json.RawMessage
	for file, dst := range map[string]any{"cases.json": &cases, "goldens.json": &goldens} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, dst); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if len(cases) < 60 {
		t.Fatalf("only %d cases", len(cases))
	}
	seen := map[string]bool{}
	pass := 0
	for _, c := range cases {
		seen[c.Name] = true
		raw, ok := goldens[c.Name]
		if !ok {
			t.Errorf("%s: no golden (run scripts/templates/render.py)", c.Name)
			continue
		}
		var g jinjaGolden
		if err := json.Unmarshal(raw, &g); err != nil || (g.Output == nil && g.Error == "") {
			t.Errorf("%s: bad golden %s", c.Name, raw)
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			d := renderJinjaCase(c, g)
			if why, known := knownDivergences[c.Name]; known {
				if d == "" {
					t.Errorf("now agrees with jinja2: remove it from knownDivergences (%s)", why)
				}
				return
			}
			if d != "" {
				t.Error(d)
				return
			}
			pass++
		})
	}
	for name := range knownDivergences {
		if !seen[name] {
			t.Errorf("knownDivergences names %s, which is no case", name)
		}
	}
	t.Logf("%d of %d cases agree with jinja2, %d known divergences", pass, len(cases), len(knownDivergences))
}
