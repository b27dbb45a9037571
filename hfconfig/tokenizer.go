package hfconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"gotune/safefile"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
)

// TokenizerConfig is what a model folder's tokenizer_config.json and
// chat_template.jinja say. Every field is the file's value as written;
// defaults and checks of the values belong to the callers, which differ.
type TokenizerConfig struct {
	Path  string // tokenizer_config.json, for messages
	Found bool   // whether tokenizer_config.json exists

	// Special tokens, "" when absent or null.
	BOS, EOS, PAD, UNK string
	// Extra is additional_special_tokens then extra_special_tokens
	// (transformers 5), each a list or a name -> token object (taken in
	// name order); empty tokens are left out.
	Extra []string
	// AddedTokens is added_tokens_decoder, ordered by id.
	AddedTokens []AddedToken

	AddBOS, AddEOS *bool  // add_bos_token, add_eos_token
	CleanUpSpaces  *bool  // clean_up_tokenization_spaces
	Class          string // tokenizer_class
	// ModelMaxLength is model_max_length, 0 when absent; transformers
	// writes about 1e30 for "no limit", hence a float.
	ModelMaxLength float64

	// TemplateForm says which form tokenizer_config.json's chat_template
	// takes: ChatTemplate holds a single string, ChatTemplates a list of
	// named variants.
	TemplateForm  TemplateForm
	ChatTemplate  string
	ChatTemplates []NamedTemplate

	// Jinja is chat_template.jinja's text when HasJinja; transformers 5
	// saves the template there, and that file wins over chat_template.
	JinjaPath string
	Jinja     string
	HasJinja  bool
}

// AddedToken is one entry of added_tokens_decoder.
type AddedToken struct {
	ID         int
	Content    string
	SingleWord bool
	LStrip     bool
	RStrip     bool
	Normalized *bool // nil when absent: the default depends on Special
	Special    bool
}

// TemplateForm is the form of tokenizer_config.json's chat_template.
type TemplateForm int

const (
	NoTemplate     TemplateForm = iota // absent or null
	SingleTemplate                     // one string
	NamedTemplates                     // a list of {"name", "template"}
)

// NamedTemplate is one variant of a chat_template list.
type NamedTemplate struct {
	Name     string `json:"name"`
	Template string `json:"template"`
}

// Names lists the variants' names in sorted order.
func (c *TokenizerConfig) Names() []string {
	var out []string
	for _, t := range c.ChatTemplates {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// ReadTokenizerConfig reads dir/tokenizer_config.json and
// dir/chat_template.jinja. Either may be missing (Found and HasJinja say
// which are there); a file that exists but cannot be read or decoded is an
// error naming the file and, where it is one field's fault, the field.
func ReadTokenizerConfig(dir string) (*TokenizerConfig, error) {
	c := &TokenizerConfig{
		Path:      filepath.Join(dir, "tokenizer_config.json"),
		JinjaPath: filepath.Join(dir, "chat_template.jinja"),
	}
	var raw struct {
		BOS            json.RawMessage           `json:"bos_token"`
		EOS            json.RawMessage           `json:"eos_token"`
		PAD            json.RawMessage           `json:"pad_token"`
		UNK            json.RawMessage           `json:"unk_token"`
		Extra          json.RawMessage           `json:"additional_special_tokens"`
		Extra5         json.RawMessage           `json:"extra_special_tokens"`
		Added          map[string]addedTokenJSON `json:"added_tokens_decoder"`
		AddBOS         *bool                     `json:"add_bos_token"`
		AddEOS         *bool                     `json:"add_eos_token"`
		CleanUp        *bool                     `json:"clean_up_tokenization_spaces"`
		Class          *string                   `json:"tokenizer_class"`
		ModelMaxLength *float64                  `json:"model_max_length"`
		ChatTemplate   json.RawMessage           `json:"chat_template"`
	}
	err := readJSON(c.Path, &raw)
	switch {
	case err == nil:
		c.Found = true
		if err := c.fill(raw.BOS, raw.EOS, raw.PAD, raw.UNK, raw.Extra, raw.Extra5, raw.Added, raw.ChatTemplate); err != nil {
			return nil, err
		}
		c.AddBOS, c.AddEOS, c.CleanUpSpaces = raw.AddBOS, raw.AddEOS, raw.CleanUp
		if raw.Class != nil {
			c.Class = *raw.Class
		}
		if raw.ModelMaxLength != nil {
			c.ModelMaxLength = *raw.ModelMaxLength
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	b, err := safefile.ReadFile(c.JinjaPath)
	switch {
	case err == nil:
		c.Jinja, c.HasJinja = string(b), true
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return c, nil
}

type addedTokenJSON struct {
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// fill decodes the fields that take more than one form.
func (c *TokenizerConfig) fill(bos, eos, pad, unk, extra, extra5 json.RawMessage,
	added map[string]addedTokenJSON, tmpl json.RawMessage) error {
	var err error
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{{"bos_token", bos, &c.BOS}, {"eos_token", eos, &c.EOS}, {"pad_token", pad, &c.PAD}, {"unk_token", unk, &c.UNK}} {
		if *f.dst, err = TokenString(f.raw); err != nil {
			return fieldError(c.Path, f.name, "%v", err)
		}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"additional_special_tokens", extra}, {"extra_special_tokens", extra5}} {
		toks, err := tokenList(c.Path, f.name, f.raw)
		if err != nil {
			return err
		}
		c.Extra = append(c.Extra, toks...)
	}
	for key, a := range added {
		id, err := strconv.Atoi(key)
		if err != nil || id < 0 {
			return fieldError(c.Path, "added_tokens_decoder", "key %q is not a token id", key)
		}
		c.AddedTokens = append(c.AddedTokens, AddedToken{ID: id, Content: a.Content, SingleWord: a.SingleWord,
			LStrip: a.LStrip, RStrip: a.RStrip, Normalized: a.Normalized, Special: a.Special})
	}
	sort.Slice(c.AddedTokens, func(a, b int) bool { return c.AddedTokens[a].ID < c.AddedTokens[b].ID })
	if isNull(tmpl) {
		return nil
	}
	if json.Unmarshal(tmpl, &c.ChatTemplate) == nil {
		c.TemplateForm = SingleTemplate
		return nil
	}
	if err := json.Unmarshal(tmpl, &c.ChatTemplates); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fieldError(c.Path, "chat_template[]."+te.Field, "expected %s, got %s", jsonKind(te.Type), te.Value)
		}
		return fieldError(c.Path, "chat_template", "expected a string or a list of {name, template}")
	}
	c.TemplateForm = NamedTemplates
	return nil
}

// tokenList reads a list of special tokens, or transformers 5's object of
// name -> token, taking the object's tokens in name order so that the
// result does not depend on map iteration.
func tokenList(path, field string, raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	var labels []string // each item's place, for errors
	if json.Unmarshal(raw, &items) == nil {
		for k := range items {
			labels = append(labels, fmt.Sprintf("%s[%d]", field, k))
		}
	} else {
		var named map[string]json.RawMessage
		if json.Unmarshal(raw, &named) != nil {
			return nil, fieldError(path, field, "expected a list or an object of tokens, got %.80s", raw)
		}
		keys := make([]string, 0, len(named))
		for k := range named {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			items = append(items, named[k])
			labels = append(labels, field+"."+k)
		}
	}
	var out []string
	for k, r := range items {
		s, err := TokenString(r)
		if err != nil {
			return nil, fieldError(path, labels[k], "%v", err)
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}
