package hfconfig

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// folder writes the named files into a new temporary folder.
func folder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTok(t *testing.T, cfg string) (*TokenizerConfig, error) {
	t.Helper()
	return ReadTokenizerConfig(folder(t, map[string]string{"tokenizer_config.json": cfg}))
}

func TestTokenizerConfigSpecialTokens(t *testing.T) {
	for _, c := range []struct {
		name, cfg          string
		bos, eos, pad, unk string
		extra              []string
	}{
		{"absent", `{}`, "", "", "", "", nil},
		{"null", `{"bos_token": null, "eos_token": null}`, "", "", "", "", nil},
		{"strings", `{"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}`, "<s>", "</s>", "<pad>", "<unk>", nil},
		{"AddedToken objects", `{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": {"content": "</s>"}}`,
			"<s>", "</s>", "", "", nil},
		{"extra list", `{"additional_special_tokens": ["<a>", {"content": "<b>"}, ""]}`, "", "", "", "", []string{"<a>", "<b>"}},
		{"extra object in name order", `{"extra_special_tokens": {"z_tok": "<z>", "a_tok": {"content": "<a>"}}}`, "", "", "", "", []string{"<a>", "<z>"}},
		{"both extra fields", `{"additional_special_tokens": ["<x>"], "extra_special_tokens": ["<y>"]}`, "", "", "", "", []string{"<x>", "<y>"}},
		{"extra null", `{"additional_special_tokens": null, "extra_special_tokens": []}`, "", "", "", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc, err := readTok(t, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.Found || tc.BOS != c.bos || tc.EOS != c.eos || tc.PAD != c.pad || tc.UNK != c.unk || !reflect.DeepEqual(tc.Extra, c.extra) {
				t.Errorf("got found=%v bos=%q eos=%q pad=%q unk=%q extra=%q", tc.Found, tc.BOS, tc.EOS, tc.PAD, tc.UNK, tc.Extra)
			}
		})
	}
}

func TestTokenizerConfigFields(t *testing.T) {
	yes, no := true, false
	tc, err := readTok(t, `{
		"add_bos_token": true, "add_eos_token": false, "clean_up_tokenization_spaces": false,
		"tokenizer_class": "LlamaTokenizerFast", "model_max_length": 1000000000000000019884624838656,
		"added_tokens_decoder": {
			"32001": {"content": "<|b|>", "special": true, "normalized": false},
			"32000": {"content": "<|a|>", "lstrip": true, "rstrip": true, "single_word": true}
		}}`)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tc.AddBOS, &yes) || !reflect.DeepEqual(tc.AddEOS, &no) || !reflect.DeepEqual(tc.CleanUpSpaces, &no) {
		t.Errorf("add_bos %v add_eos %v clean_up %v", tc.AddBOS, tc.AddEOS, tc.CleanUpSpaces)
	}
	if tc.Class != "LlamaTokenizerFast" || tc.ModelMaxLength < 1e30 {
		t.Errorf("class %q, model_max_length %g", tc.Class, tc.ModelMaxLength)
	}
	want := []AddedToken{
		{ID: 32000, Content: "<|a|>", SingleWord: true, LStrip: true, RStrip: true},
		{ID: 32001, Content: "<|b|>", Normalized: &no, Special: true},
	}
	if !reflect.DeepEqual(tc.AddedTokens, want) {
		t.Errorf("added_tokens_decoder = %+v, want %+v", tc.AddedTokens, want)
	}

	// Absent fields stay unset, so callers apply their own defaults.
	tc, err = readTok(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if tc.AddBOS != nil || tc.AddEOS != nil || tc.CleanUpSpaces != nil || tc.Class != "" || tc.ModelMaxLength != 0 || tc.AddedTokens != nil {
		t.Errorf("empty config: %+v", tc)
	}
}

func TestTokenizerConfigTemplates(t *testing.T) {
	named := `[{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]`
	for _, c := range []struct {
		name     string
		files    map[string]string
		found    bool
		form     TemplateForm
		single   string
		names    []string
		hasJinja bool
		jinja    string
	}{
		{"no files", map[string]string{}, false, NoTemplate, "", nil, false, ""},
		{"no template", map[string]string{"tokenizer_config.json": `{}`}, true, NoTemplate, "", nil, false, ""},
		{"null", map[string]string{"tokenizer_config.json": `{"chat_template": null}`}, true, NoTemplate, "", nil, false, ""},
		{"single", map[string]string{"tokenizer_config.json": `{"chat_template": "{{ x }}"}`}, true, SingleTemplate, "{{ x }}", nil, false, ""},
		{"empty single", map[string]string{"tokenizer_config.json": `{"chat_template": ""}`}, true, SingleTemplate, "", nil, false, ""},
		{"named", map[string]string{"tokenizer_config.json": `{"chat_template": ` + named + `}`}, true, NamedTemplates, "", []string{"default", "tool_use"}, false, ""},
		{"jinja beside single", map[string]string{"tokenizer_config.json": `{"chat_template": "old"}`, "chat_template.jinja": "new"},
			true, SingleTemplate, "old", nil, true, "new"},
		{"jinja alone", map[string]string{"chat_template.jinja": "only"}, false, NoTemplate, "", nil, true, "only"},
		{"empty jinja", map[string]string{"chat_template.jinja": ""}, false, NoTemplate, "", nil, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := folder(t, c.files)
			tc, err := ReadTokenizerConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.Found != c.found || tc.TemplateForm != c.form || tc.ChatTemplate != c.single || !reflect.DeepEqual(tc.Names(), c.names) ||
				tc.HasJinja != c.hasJinja || tc.Jinja != c.jinja {
				t.Errorf("got found=%v form=%v single=%q names=%q jinja=%v %q", tc.Found, tc.TemplateForm, tc.ChatTemplate, tc.Names(), tc.HasJinja, tc.Jinja)
			}
			if tc.Path != filepath.Join(dir, "tokenizer_config.json") || tc.JinjaPath != filepath.Join(dir, "chat_template.jinja") {
				t.Errorf("paths %q, %q", tc.Path, tc.JinjaPath)
			}
		})
	}
	tc, err := readTok(t, `{"chat_template": `+named+`}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []NamedTemplate{{"default", "D"}, {"tool_use", "T"}}; !reflect.DeepEqual(tc.ChatTemplates, want) {
		t.Errorf("ChatTemplates = %+v", tc.ChatTemplates)
	}
}

// wantFieldError checks that err names the file and the field.
func wantFieldError(t *testing.T, err error, file, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %s and %s", file, field)
	}
	for _, w := range []string{file, field} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func TestTokenizerConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, cfg, field string }{
		{"bos number", `{"bos_token": 5}`, "bos_token"},
		{"eos object without content", `{"eos_token": {"lstrip": true}}`, "eos_token"},
		{"pad list", `{"pad_token": ["<pad>"]}`, "pad_token"},
		{"unk bool", `{"unk_token": true}`, "unk_token"},
		{"extra string", `{"additional_special_tokens": "<a>"}`, "additional_special_tokens"},
		{"extra bad item", `{"additional_special_tokens": [1]}`, "additional_special_tokens"},
		{"extra5 bad item", `{"extra_special_tokens": {"a": 1}}`, "extra_special_tokens"},
		{"added key", `{"added_tokens_decoder": {"x": {"content": "a"}}}`, `added_tokens_decoder: key "x"`},
		{"added negative key", `{"added_tokens_decoder": {"-1": {"content": "a"}}}`, `added_tokens_decoder: key "-1"`},
		{"added content type", `{"added_tokens_decoder": {"1": {"content": 3}}}`, "added_tokens_decoder.content"},
		{"added list", `{"added_tokens_decoder": []}`, "added_tokens_decoder"},
		{"add_bos string", `{"add_bos_token": "yes"}`, "field add_bos_token"},
		{"clean_up number", `{"clean_up_tokenization_spaces": 1}`, "field clean_up_tokenization_spaces"},
		{"class number", `{"tokenizer_class": 1}`, "field tokenizer_class"},
		{"max length string", `{"model_max_length": "big"}`, "field model_max_length"},
		{"template number", `{"chat_template": 3}`, "field chat_template"},
		{"template list of strings", `{"chat_template": ["a"]}`, "field chat_template"},
		{"template variant type", `{"chat_template": [{"name": "a", "template": 1}]}`, "field chat_template"},
		{"not JSON", `{"bos_token": `, "not valid JSON"},
		{"not an object", `[]`, "tokenizer_config.json"},
		{"deep", strings.Repeat("[", 1000) + strings.Repeat("]", 1000), "nested deeper"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readTok(t, c.cfg)
			wantFieldError(t, err, "tokenizer_config.json", c.field)
		})
	}
	// A chat_template.jinja that is not a regular file is an error, not a
	// silent fallback to tokenizer_config.json's template.
	dir := folder(t, map[string]string{"tokenizer_config.json": `{"chat_template": "x"}`})
	if err := os.Mkdir(filepath.Join(dir, "chat_template.jinja"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTokenizerConfig(dir); err == nil || !strings.Contains(err.Error(), "chat_template.jinja") {
		t.Errorf("chat_template.jinja a folder: err = %v", err)
	}
}
