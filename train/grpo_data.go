package train

import (
	"io"
	"math"

	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"gotune/config"
	"strings"

	"gotune/chat"
	"gotune/data"
	"gotune/tokenizer"
)

// grpoPrompt is one prompt of stage grpo: what the policy is asked, and the
// record's columns, which rewards read (the expected answer, the declared
// tools).
type grpoPrompt struct {
	IDs     []int32
	Text    string // the rendered prompt
	Columns map[string]json.RawMessage
	Where   string // file:line of the record
}

// promptMessages reads the prompt of a record: a prompt column (a string,
// or a list of chat messages as TRL's conversational format), Alpaca's
// instruction (+ input, system), or a conversation without its final
// assistant turn. Column names follow dataset_info.json's columns.
func promptMessages(fields map[string]json.RawMessage, cols data.Columns) ([]data.Message, error) {
	name := func(col, def string) string {
		if col != "" {
			return col
		}
		return def
	}
	text := func(key string) (string, bool, error) {
		raw, ok := fields[key]
		if !ok || string(raw) == "null" {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, fmt.Errorf("field %q: expected a string", key)
		}
		return s, true, nil
	}
	var msgs []data.Message
	if sys, ok, err := text(name(cols.System, "system")); err != nil {
		return nil, err
	} else if ok && sys != "" {
		msgs = append(msgs, data.Message{Role: data.RoleSystem, Content: sys})
	}
	promptKey := name(cols.Prompt, "prompt")
	if raw, ok := fields[promptKey]; ok && strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
		turns, err := chatTurns(raw)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", promptKey, err)
		}
		return append(msgs, turns...), nil
	}
	for _, key := range []string{promptKey, "instruction", "question", "query"} {
		p, ok, err := text(key)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if in, ok, err := text(name(cols.Query, "input")); err != nil {
			return nil, err
		} else if ok && in != "" && key != "query" {
			p += "\n" + in
		}
		return append(msgs, data.Message{Role: data.RoleUser, Content: p}), nil
	}
	for _, key := range []string{name(cols.Messages, "messages"), "conversations"} {
		raw, ok := fields[key]
		if !ok {
			continue
		}
		turns, err := chatTurns(raw)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", key, err)
		}
		// The prompt is everything before the last assistant turn.
		for len(turns) > 0 && turns[len(turns)-1].Role == data.RoleAssistant {
			turns = turns[:len(turns)-1]
		}
		if len(turns) == 0 {
			return nil, fmt.Errorf("field %q: no turn before the answer", key)
		}
		return append(msgs, turns...), nil
	}
	return nil, fmt.Errorf("no prompt: want a %q column (text or chat messages), instruction (Alpaca) or messages", promptKey)
}

// chatTurns reads OpenAI ({role, content}) or ShareGPT ({from, value})
// messages.
func chatTurns(raw json.RawMessage) ([]data.Message, error) {
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("expected a list of messages")
	}
	roles := map[string]string{"human": data.RoleUser, "user": data.RoleUser, "gpt": data.RoleAssistant,
		"assistant": data.RoleAssistant, "system": data.RoleSystem, "tool": data.RoleTool, "observation": data.RoleTool}
	var out []data.Message
	for i, m := range list {
		r, _ := m["role"].(string)
		if r == "" {
			r, _ = m["from"].(string)
		}
		c, ok := m["content"].(string)
		if !ok {
			c, ok = m["value"].(string)
		}
		role, known := roles[r]
		if !known || !ok {
			return nil, fmt.Errorf("message %d: want role/content or from/value strings", i)
		}
		out = append(out, data.Message{Role: role, Content: c})
	}
	return out, nil
}

// loadPrompts reads every record of the configured datasets into prompts,
// rendered with the chat template (with the generation prompt) or, for a
// model without one, as plain text after BOS. Records that have no prompt
// are errors naming file, line and field.
func (t *Trainer) loadPrompts(tok *tokenizer.Tokenizer, tmpl *chat.Template) ([]grpoPrompt, string, error) {
	c := t.Cfg
	info, err := data.LoadDatasetInfo(c.DatasetDir)
	if err != nil {
		return nil, "", err
	}
	specs, err := info.Resolve(c.Dataset)
	if err != nil {
		return nil, "", err
	}
	var extra map[string]any
	if !c.EnableThinking {
		extra = map[string]any{"enable_thinking": false}
	}
	sum := sha256.New()
	var out []grpoPrompt
	for _, spec := range specs {
		files, err := data.DataFiles(spec.Path)
		if err != nil {
			return nil, "", err
		}
		kept := 0
		for _, f := range files {
			err := data.ReadFile(f, func(rec data.Record) error {
				if spec.NumSamples > 0 && kept >= spec.NumSamples {
					return nil
				}
				if rec.Bad != nil {
					if c.SkipInvalidJSON {
						return nil
					}
					return fmt.Errorf("%s", rec.Bad.String())
				}
				msgs, err := promptMessages(rec.Fields, spec.Columns)
				if err != nil {
					return fmt.Errorf("%s: %w", rec.Loc, err)
				}
				p := grpoPrompt{Columns: rec.Fields, Where: rec.Loc.String()}
				var ids []int
				if tmpl != nil {
					cm, err := data.ChatMessages(msgs)
					if err != nil {
						return fmt.Errorf("%s: %w", rec.Loc, err)
					}
					opt := chat.Options{AddGenerationPrompt: true, Extra: extra}
					if raw, ok := rec.Fields[or(spec.Columns.Tools, "tools")]; ok && string(raw) != "null" {
						var s string
						if json.Unmarshal(raw, &s) == nil {
							raw = json.RawMessage(s)
						}
						if opt.Tools, err = chat.ParseTools(raw); err != nil {
							return fmt.Errorf("%s: field \"tools\": %w", rec.Loc, err)
						}
					}
					if p.Text, err = tmpl.Render(cm, opt); err != nil {
						return fmt.Errorf("%s: chat template: %w", rec.Loc, err)
					}
					ids = tok.Encode(p.Text, false)
				} else {
					// A base model: the prompt is the plain text of the turns.
					var parts []string
					for _, m := range msgs {
						parts = append(parts, m.Content)
					}
					p.Text = strings.Join(parts, "\n")
					ids = tok.Encode(p.Text, true)
					if bos, ok := tok.BOS(); ok && (len(ids) == 0 || ids[0] != bos) {
						ids = append([]int{bos}, ids...)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("%s: the prompt is empty", rec.Loc)
				}
				if c.CutoffLen > 0 && len(ids) > c.CutoffLen {
					return fmt.Errorf("%s: the prompt has %d tokens, more than cutoff_len %d", rec.Loc, len(ids), c.CutoffLen)
				}
				for _, id := range ids {
					p.IDs = append(p.IDs, int32(id))
				}
				b, _ := json.Marshal(rec.Fields) // map keys sorted: stable
				sum.Write(b)
				fmt.Fprintf(sum, "\n%s\n", p.Text)
				out = append(out, p)
				kept++
				return nil
			})
			if err != nil {
				return nil, "", err
			}
		}
	}
	if c.MaxSamples != nil && *c.MaxSamples > 0 && len(out) > *c.MaxSamples {
		out = out[:*c.MaxSamples]
	}
	return out, hex.EncodeToString(sum.Sum(nil)[:8]), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// promptRendering loads the tokenizer and the chat template prompts are
// rendered with (nil for a base model without one).
func (t *Trainer) promptRendering() (*tokenizer.Tokenizer, *chat.Template, error) {
	tok, err := tokenizer.Load(t.ModelDir)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	var tmpl *chat.Template
	if name := t.Cfg.Template; name != "" && name != "auto" {
		if tmpl, err = chat.Builtin(name); err != nil {
			return nil, nil, err
		}
		if tmpl.BOS == "" && tmpl.EOS == "" {
			tmpl.BOS, tmpl.EOS = tok.BOSToken(), tok.EOSToken()
		}
	} else if tmpl, err = chat.Load(t.ModelDir); errors.Is(err, chat.ErrNoTemplate) {
		tmpl = nil
		t.printf("note: %s has no chat template: prompts are plain text\n", t.ModelDir)
	} else if err != nil {
		return nil, nil, fmt.Errorf("chat template: %w", err)
	}
	return tok, tmpl, nil
}

// checkRewardColumns finds, before any training, the records that lack a
// column a reward reads: a run would otherwise stop at the step that first
// samples one.
func checkRewardColumns(c *config.Config, prompts []grpoPrompt) error {
	var problems []string
	total := 0
	for i, f := range c.RewardFuncs {
		col := f.Column
		if f.Type == "tool_call" && col == "" && f.Tools == "" {
			col = "tools"
		}
		if col == "" || (f.Type != "match" && f.Type != "tool_call") {
			continue
		}
		var missing []string
		for _, p := range prompts {
			if raw, ok := p.Columns[col]; !ok || string(raw) == "null" {
				missing = append(missing, p.Where)
			}
		}
		if len(missing) == 0 {
			continue
		}
		total += len(missing)
		shown := missing[:min(len(missing), 3)]
		problems = append(problems, fmt.Sprintf("reward %s reads column %q, which %d of %d records lack (%s%s)",
			c.RewardName(i), col, len(missing), len(prompts), strings.Join(shown, "; "), map[bool]string{true: "; …", false: ""}[len(missing) > len(shown)]))
	}
	if total > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// InspectPrompts reports what stage grpo would train on: how many prompts
// (and held out), their rendered length in tokens, one rendered prompt, and
// whether every record has the columns the rewards read. It is `gotune data
// inspect` for a grpo configuration.
func InspectPrompts(cfg *config.Config, w io.Writer) error {
	t := &Trainer{Cfg: cfg, ModelDir: cfg.ModelNameOrPath, out: w}
	tok, tmpl, err := t.promptRendering()
	if err != nil {
		return err
	}
	prompts, _, err := t.loadPrompts(tok, tmpl)
	if err != nil {
		return err
	}
	trainP, held := splitPrompts(prompts, cfg.ValSize, uint64(cfg.Seed))
	fmt.Fprintf(w, "stage grpo: %d prompts (%d for training, %d held out)\n", len(prompts), len(trainP), len(held))
	if len(prompts) > 0 {
		lo, hi, sum := math.MaxInt, 0, 0
		for _, p := range prompts {
			lo, hi, sum = min(lo, len(p.IDs)), max(hi, len(p.IDs)), sum+len(p.IDs)
		}
		fmt.Fprintf(w, "prompt tokens: min %d, mean %.1f, max %d; completions up to %d tokens, %d per prompt\n",
			lo, float64(sum)/float64(len(prompts)), hi, cfg.MaxCompletionLength, cfg.NumGenerations)
		fmt.Fprintf(w, "first prompt (%s):\n%s\n", prompts[0].Where, prompts[0].Text)
	}
	for i := range cfg.RewardFuncs {
		f := cfg.RewardFuncs[i]
		fmt.Fprintf(w, "reward %s: type %s", cfg.RewardName(i), f.Type)
		if f.Column != "" {
			fmt.Fprintf(w, ", column %s", f.Column)
		}
		fmt.Fprintln(w)
	}
	return checkRewardColumns(cfg, prompts)
}
