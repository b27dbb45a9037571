package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gotune/checks"
)

// RenderCase is one case of a renders.json file: a template, a
// conversation and the variables transformers passed, with its output or
// the error it raised.
type RenderCase struct {
	Template            string
	Conversation        string
	AddGenerationPrompt bool
	Variables           Object
	Messages            []Message
	Tools               []any
	Output              *string
	Error               string
}

type rendersFile struct {
	Conversations map[string]struct {
		Messages            json.RawMessage `json:"messages"`
		Tools               json.RawMessage `json:"tools"`
		AddGenerationPrompt bool            `json:"add_generation_prompt"`
	} `json:"conversations"`
	FixedNow string `json:"fixed_now"`
	Results  []struct {
		Template            string          `json:"template"`
		Conversation        string          `json:"conversation"`
		AddGenerationPrompt bool            `json:"add_generation_prompt"`
		Variables           json.RawMessage `json:"variables"`
		Output              *string         `json:"output"`
		Error               *string         `json:"error"`
	} `json:"results"`
}

// ReadRenders reads a renders.json file and its fixed clock.
func ReadRenders(path string) ([]RenderCase, time.Time, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	var f rendersFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	now := time.Time{}
	if f.FixedNow != "" {
		if now, err = time.Parse("2006-01-02T15:04:05", f.FixedNow); err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: field fixed_now: %w", path, err)
		}
	}
	var out []RenderCase
	for i, r := range f.Results {
		where := fmt.Sprintf("%s: results[%d]", path, i)
		conv, ok := f.Conversations[r.Conversation]
		if !ok {
			return nil, now, fmt.Errorf("%s: unknown conversation %q", where, r.Conversation)
		}
		msgs, err := ParseMessages(conv.Messages)
		if err != nil {
			return nil, now, fmt.Errorf("%s: %w", where, err)
		}
		c := RenderCase{Template: r.Template, Conversation: r.Conversation, AddGenerationPrompt: r.AddGenerationPrompt, Messages: msgs, Output: r.Output}
		if len(conv.Tools) > 0 {
			if c.Tools, err = ParseTools(conv.Tools); err != nil {
				return nil, now, fmt.Errorf("%s: %w", where, err)
			}
		}
		if len(r.Variables) > 0 {
			if err := c.Variables.UnmarshalJSON(r.Variables); err != nil {
				return nil, now, fmt.Errorf("%s: field variables: %w", where, err)
			}
		}
		if r.Error != nil {
			c.Error = *r.Error
		} else if r.Output == nil {
			return nil, now, fmt.Errorf("%s: neither output nor error", where)
		}
		out = append(out, c)
	}
	return out, now, nil
}

// Options returns the render options of the case.
func (c RenderCase) Options(now time.Time) Options {
	opt := Options{AddGenerationPrompt: c.AddGenerationPrompt, Tools: c.Tools, Extra: map[string]any{}}
	for _, f := range c.Variables {
		switch f.Key {
		case "bos_token":
			opt.BOS, _ = f.Value.(string)
		case "eos_token":
			opt.EOS, _ = f.Value.(string)
		default:
			opt.Extra[f.Key] = f.Value
		}
	}
	opt.Now = func() time.Time { return now }
	return opt
}

// Check renders the case and compares with the reference. It returns ""
// when they agree, else what differs.
func (c RenderCase) Check(t *Template, now time.Time) string {
	got, err := t.Render(c.Messages, c.Options(now))
	if c.Error != "" {
		if err == nil {
			return fmt.Sprintf("expected the template to raise %q, it rendered", c.Error)
		}
		want := strings.TrimPrefix(c.Error, "TemplateError: ")
		var re *RaiseError
		if !errors.As(err, &re) || re.Message != want {
			return fmt.Sprintf("expected raise %q, got %v", want, err)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("render failed: %v", err)
	}
	want := *c.Output
	if got == want {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, clip(got[i:]), clip(want[i:]))
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// CheckRenders compares our renders with a renders.json whose templates
// lie beside it as NAME.jinja; one result per template (metric
// "mismatches", limit 0).
func CheckRenders(path string) ([]checks.Result, error) {
	cases, now, err := ReadRenders(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	type agg struct {
		bad   int
		first string
		n     int
	}
	byTmpl := map[string]*agg{}
	var order []string
	tmpls := map[string]*Template{}
	for _, c := range cases {
		a := byTmpl[c.Template]
		if a == nil {
			a = &agg{}
			byTmpl[c.Template] = a
			order = append(order, c.Template)
			p := filepath.Join(dir, c.Template+".jinja")
			src, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			t, err := Parse(p, string(src))
			if err != nil {
				a.first = err.Error()
			}
			tmpls[c.Template] = t
		}
		a.n++
		t := tmpls[c.Template]
		if t == nil {
			a.bad++
			continue
		}
		if d := c.Check(t, now); d != "" {
			a.bad++
			if a.first == "" {
				a.first = c.Conversation + ": " + d
			}
		}
	}
	sort.Strings(order)
	var res []checks.Result
	for _, name := range order {
		a := byTmpl[name]
		r := checks.New("chat_template/"+name, "mismatches", float64(a.bad), 0)
		if a.first != "" {
			r.Detail = a.first
		} else {
			r.Detail = fmt.Sprintf("%d cases byte-identical", a.n)
		}
		res = append(res, r)
	}
	return res, nil
}
