package gguf

import (
	"strings"
	"testing"

	"gotune/hfconfig"
)

// TestGGUFTemplate: chat_template.jinja wins over tokenizer_config.json's
// string, and a list of named templates is refused even beside the .jinja
// file, since GGUF holds one template.
func TestGGUFTemplate(t *testing.T) {
	named := []hfconfig.NamedTemplate{{Name: "default", Template: "D"}}
	for _, c := range []struct {
		name string
		tc   hfconfig.TokenizerConfig
		want string
		err  bool
	}{
		{"none", hfconfig.TokenizerConfig{}, "", false},
		{"single", hfconfig.TokenizerConfig{TemplateForm: hfconfig.SingleTemplate, ChatTemplate: "S"}, "S", false},
		{"jinja wins", hfconfig.TokenizerConfig{TemplateForm: hfconfig.SingleTemplate, ChatTemplate: "S", HasJinja: true, Jinja: "J"}, "J", false},
		{"jinja alone", hfconfig.TokenizerConfig{HasJinja: true, Jinja: "J"}, "J", false},
		{"named", hfconfig.TokenizerConfig{TemplateForm: hfconfig.NamedTemplates, ChatTemplates: named}, "", true},
		{"named beside jinja", hfconfig.TokenizerConfig{TemplateForm: hfconfig.NamedTemplates, ChatTemplates: named, HasJinja: true, Jinja: "J"}, "", true},
	} {
		c.tc.Path = "m/tokenizer_config.json"
		got, err := ggufTemplate(&c.tc)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%s: %q, %v", c.name, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "tokenizer_config.json: field chat_template") {
			t.Errorf("%s: error %q does not name the file and field", c.name, err)
		}
	}
}
