// Command gorender renders a corpus of chat-template cases with gotune's
// chat package and compares each with its jinja2 golden (both in the format
// of chat/testdata/jinja: cases.json and goldens.json, as render.py writes
// them). It prints one line per case that differs and a summary, and exits 1
// when any case differs.
//
// Usage: go run ./scripts/templates/gorender CASES GOLDENS
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"gotune/chat"
)

type jcase struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Vars     json.RawMessage `json:"vars"`
}

type golden struct {
	Output *string `json:"output"`
	Error  string  `json:"error"`
}

// fixedNow is render.py's clock for strftime_now.
var fixedNow = time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gorender CASES GOLDENS")
		os.Exit(2)
	}
	var cases []jcase
	var goldens map[string]json.RawMessage
	for path, dst := range map[string]any{os.Args[1]: &cases, os.Args[2]: &goldens} {
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, dst)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "gorender: %s: %v\n", path, err)
			os.Exit(2)
		}
	}
	equal, differ := 0, 0
	byTemplate := map[string][2]int{}
	for _, c := range cases {
		var g golden
		if err := json.Unmarshal(goldens[c.Name], &g); err != nil || (g.Output == nil && g.Error == "") {
			fmt.Printf("%s: no golden\n", c.Name)
			differ++
			continue
		}
		tmpl, _, _ := strings.Cut(c.Name, "/")
		n := byTemplate[tmpl]
		if d := compare(c, g); d != "" {
			fmt.Printf("DIFF %s: %s\n", c.Name, d)
			differ++
			n[1]++
		} else {
			equal++
			n[0]++
		}
		byTemplate[tmpl] = n
	}
	names := make([]string, 0, len(byTemplate))
	for k := range byTemplate {
		names = append(names, k)
	}
	sort.Strings(names)
	allEqual := 0
	for _, k := range names {
		if byTemplate[k][1] == 0 {
			allEqual++
		}
	}
	fmt.Printf("%d templates (%d with every render equal), %d renders: %d equal or the same error, %d differ\n",
		len(names), allEqual, equal+differ, equal, differ)
	if differ > 0 {
		os.Exit(1)
	}
}

// compare renders one case; "" when it agrees with the golden.
func compare(c jcase, g golden) string {
	msgs, opt, err := options(c.Vars)
	if err != nil {
		return "bad case: " + err.Error()
	}
	var got string
	t, err := chat.Parse(c.Name, c.Template)
	parseErr := err != nil
	if err == nil {
		got, err = t.Render(msgs, opt)
	}
	if g.Error != "" {
		if err == nil {
			return "jinja2 raised " + g.Error + ", gotune rendered " + clip(got)
		}
		if msg, ok := strings.CutPrefix(g.Error, "TemplateError: "); ok {
			var re *chat.RaiseError
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
		return "gotune failed: " + err.Error()
	}
	want := *g.Output
	if got == want {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("at byte %d: got %q, want %q", i, clip(got[i:]), clip(want[i:]))
}

// options splits a case's variables as transformers passes them.
func options(raw json.RawMessage) ([]chat.Message, chat.Options, error) {
	opt := chat.Options{Extra: map[string]any{}, Now: func() time.Time { return fixedNow }}
	msgs := []chat.Message{}
	var vars chat.Object
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
			if msgs, err = chat.ParseMessages(b); err != nil {
				return nil, opt, err
			}
		case "tools":
			opt.Tools, _ = f.Value.([]any)
		case "add_generation_prompt":
			opt.AddGenerationPrompt, _ = f.Value.(bool)
		case "bos_token":
			opt.BOS, _ = f.Value.(string)
		case "eos_token":
			opt.EOS, _ = f.Value.(string)
		default:
			opt.Extra[f.Key] = f.Value
		}
	}
	return msgs, opt, nil
}

// noneLeniency reports a difference that is chat's known leniency: jinja2
// raised a TypeError about None in + and gotune rendered.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
