package data

// This file is the only one that depends on gotune/tokenizer and
// gotune/chat; everything else works through the Tokenizer and Renderer
// interfaces so tests can use small fakes.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"gotune/chat"
	"gotune/safefile"
	"gotune/tokenizer"
)

// HFTokenizer adapts *tokenizer.Tokenizer to Tokenizer.
type HFTokenizer struct{ *tokenizer.Tokenizer }

// EOS is the end-of-sequence id (appended to pre-training text).
func (t HFTokenizer) EOS() int {
	id, _ := t.Tokenizer.EOS()
	return id
}

// PAD is the padding id, falling back to EOS as transformers users do when
// a tokenizer defines none.
func (t HFTokenizer) PAD() int {
	if id, ok := t.Tokenizer.PAD(); ok {
		return id
	}
	return t.EOS()
}

// TemplateRenderer adapts *chat.Template to Renderer.
type TemplateRenderer struct {
	T *chat.Template
	// Extra template variables, e.g. enable_thinking.
	Extra map[string]any
}

// Render renders the conversation without a generation prompt; assistant
// spans cover what the model must produce.
func (r TemplateRenderer) Render(msgs []Message, tools json.RawMessage) (string, []Span, error) {
	cm, err := ChatMessages(msgs)
	if err != nil {
		return "", nil, err
	}
	opt := chat.Options{Extra: r.Extra}
	if len(tools) > 0 {
		if opt.Tools, err = chat.ParseTools(tools); err != nil {
			return "", nil, fmt.Errorf("tools: %w", err)
		}
	}
	text, cs, err := r.T.RenderSpans(cm, opt)
	if err != nil {
		return "", nil, err
	}
	spans := make([]Span, len(cs))
	for i, s := range cs {
		spans[i] = Span{Message: s.Message, Role: s.Role, Start: s.Start, End: s.End, Generation: s.Generation}
	}
	return text, spans, nil
}

// ChatMessages converts the internal form into chat template messages with
// the field names Hugging Face templates read (content, reasoning_content,
// tool_calls with function name and arguments, tool_call_id, name).
// Content is always a string here ("" for a turn that only calls tools,
// never None), so the templates render these messages as jinja2 would.
func ChatMessages(msgs []Message) ([]chat.Message, error) {
	out := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		cm := chat.NewMessage(m.Role, m.Content)
		if m.Reasoning != "" {
			cm = cm.With("reasoning_content", m.Reasoning)
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				args, err := chat.DecodeJSON(c.Arguments)
				if err != nil {
					return nil, fmt.Errorf("message %d tool call %d arguments: %w", i, j, err)
				}
				tc := chat.ToolCall(c.Name, args)
				if c.ID != "" {
					tc = tc.With("id", c.ID)
				}
				calls[j] = tc
			}
			cm = cm.With("tool_calls", calls)
		}
		if m.ToolCallID != "" {
			cm = cm.With("tool_call_id", m.ToolCallID)
		}
		if m.Name != "" {
			cm = cm.With("name", m.Name)
		}
		out[i] = cm
	}
	return out, nil
}

// LoadEncoder builds an Encoder from a Hugging Face model folder
// (tokenizer.json, tokenizer_config.json, chat template). The fingerprint
// hashes those files' contents, so editing any of them invalidates caches.
func LoadEncoder(modelDir string, opts EncodeOptions) (*Encoder, error) {
	return LoadEncoderTemplate(modelDir, "", opts)
}

// LoadEncoderTemplate is LoadEncoder with a built-in template chosen by name
// (LLaMA-Factory's `template` key) instead of the model's own; an empty name
// uses the model's.
func LoadEncoderTemplate(modelDir, template string, opts EncodeOptions) (*Encoder, error) {
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var tmpl *chat.Template
	if template != "" {
		tmpl, err = chat.Builtin(template)
		if err == nil && tmpl.BOS == "" && tmpl.EOS == "" {
			tmpl.BOS, tmpl.EOS = tok.BOSToken(), tok.EOSToken()
		}
	} else {
		tmpl, err = chat.Load(modelDir)
	}
	var renderer Renderer
	switch {
	case errors.Is(err, chat.ErrNoTemplate):
		// A base model: plain text needs no template, conversations get
		// this error when they are encoded (see NeedsTemplate).
		renderer = missingTemplate{fmt.Errorf("chat template: %w", err)}
	case err != nil:
		return nil, fmt.Errorf("chat template: %w", err)
	default:
		renderer = TemplateRenderer{T: tmpl, Extra: thinkingVars(opts)}
	}
	h := sha256.New()
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json"} {
		// The tokenizer and template loaded above already refused FIFOs and
		// unreadable files among these; one that went away since is left out.
		b, err := safefile.ReadFile(filepath.Join(modelDir, name))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	if tmpl != nil {
		fmt.Fprintf(h, "template %s\n", tmpl.Source)
	}
	return &Encoder{
		Tok:         HFTokenizer{tok},
		Tmpl:        renderer,
		Opts:        opts,
		Fingerprint: hex.EncodeToString(h.Sum(nil)),
	}, nil
}

// thinkingVars passes enable_thinking: false to templates that read it
// (Qwen3's and the built-in qwen3), nothing otherwise.
func thinkingVars(opts EncodeOptions) map[string]any {
	if !opts.NoThinking {
		return nil
	}
	return map[string]any{"enable_thinking": false}
}

// missingTemplate stands in for the chat template of a model that has none.
type missingTemplate struct{ err error }

func (m missingTemplate) Render([]Message, json.RawMessage) (string, []Span, error) {
	return "", nil, m.err
}

// checkTemplate fails early when the stage renders conversations and the
// model has no chat template, instead of dropping every record.
func (e *Encoder) checkTemplate(cfg Config) error {
	if m, ok := e.Tmpl.(missingTemplate); ok && cfg.wantKind() != KindText {
		return fmt.Errorf("%w; stage %s renders conversations (stage pt trains plain text without one)", m.err, or(cfg.Stage, "sft"))
	}
	return nil
}
