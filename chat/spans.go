package chat

import (
	"fmt"
	"strings"
)

// Span says which bytes of a rendered conversation came from one message.
// For an assistant message it covers the text a model is trained to
// produce: everything after the generation prompt, the end-of-turn text
// included. For other messages it covers the message's turn.
type Span struct {
	Message    int
	Role       string
	Start, End int // byte offsets into the rendered text
	// Generation is true when the template's {% generation %} marks gave
	// the span rather than incremental rendering.
	Generation bool
}

// RenderSpans renders the conversation and locates each message in the
// text. Templates with {% generation %} blocks give the assistant spans
// directly. Otherwise each prefix of the conversation is rendered with and
// without the generation prompt and compared with the full text; templates
// that rewrite history (Qwen3 dropping earlier reasoning, system prompts
// merged into a later user turn) are handled by locating the assistant's
// generated text in the full render. Spans are in message order; a
// non-assistant message whose text cannot be separated from its neighbours
// is left out, an assistant message that cannot be located is an error.
func (t *Template) RenderSpans(msgs []Message, opt Options) (string, []Span, error) {
	full, gens, err := t.render(msgs, opt, true)
	if err != nil {
		return "", nil, err
	}
	n := len(msgs)
	var asst []int
	for i, m := range msgs {
		if m.Role() == "assistant" {
			asst = append(asst, i)
		}
	}
	if t.hasGen && len(gens) != len(asst) {
		return "", nil, fmt.Errorf("chat template %s: %d {%% generation %%} blocks for %d assistant messages", t.Name, len(gens), len(asst))
	}

	prefixOpt := opt
	prefixOpt.AddGenerationPrompt = false
	// b[k] is where the first k messages end in full, or -1.
	b := make([]int, n+1)
	rk := make([]string, n+1)
	okR := make([]bool, n+1)
	for k := 0; k <= n; k++ {
		b[k] = -1
		if k == 0 {
			// text rendered for no messages (a BOS) belongs to the first
			b[k], okR[k] = 0, true
			continue
		}
		if k == n && !opt.AddGenerationPrompt {
			rk[k], okR[k] = full, true
			b[k] = len(full)
			continue
		}
		r, err := t.Render(msgs[:k], prefixOpt)
		if err != nil {
			continue
		}
		rk[k], okR[k] = r, true
		if strings.HasPrefix(full, r) {
			b[k] = len(r)
		}
	}

	spans := make([]Span, n)
	have := make([]bool, n)
	cursor := 0
	genIdx := 0
	for i := 0; i < n; i++ {
		if msgs[i].Role() != "assistant" {
			if b[i] >= 0 {
				cursor = max(cursor, b[i])
			}
			continue
		}
		sp := Span{Message: i, Role: "assistant"}
		if t.hasGen {
			g := gens[genIdx]
			genIdx++
			sp.Start, sp.End, sp.Generation = g.start, g.end, true
		} else {
			gOpt := opt
			gOpt.AddGenerationPrompt = true
			prompt, err := t.Render(msgs[:i], gOpt)
			if err != nil {
				return "", nil, fmt.Errorf("chat template %s: message %d: rendering the prompt before it: %w", t.Name, i, err)
			}
			if !okR[i+1] {
				return "", nil, fmt.Errorf("chat template %s: message %d: rendering the conversation up to it failed", t.Name, i)
			}
			var gen string
			if strings.HasPrefix(rk[i+1], prompt) {
				gen = rk[i+1][len(prompt):]
			} else {
				// The template rewrote earlier turns once the assistant
				// answered (e.g. a system prompt moves to the last user
				// turn): the answer follows the longest tail of the prompt
				// that the conversation still contains.
				pos, l := locate(rk[i+1], 0, prompt)
				if l == 0 {
					return "", nil, fmt.Errorf("chat template %s: message %d: cannot tell what the assistant produced: the conversation up to it shares no ending with the generation prompt (use a template with {%% generation %%} marks)", t.Name, i)
				}
				gen = rk[i+1][pos+l:]
			}
			switch {
			case strings.HasPrefix(full, prompt) && b[i+1] >= len(prompt):
				sp.Start, sp.End = len(prompt), b[i+1]
			case strings.HasPrefix(full, prompt) && strings.HasPrefix(full[len(prompt):], gen):
				sp.Start, sp.End = len(prompt), len(prompt)+len(gen)
			default:
				start := cursor
				if strings.HasPrefix(full, prompt) {
					start = max(start, len(prompt))
				}
				pos, l := locate(full, start, gen)
				if l == 0 {
					return "", nil, fmt.Errorf("chat template %s: message %d: assistant text not found in the rendered conversation (the template rewrites it)", t.Name, i)
				}
				if strings.HasPrefix(full, prompt) && pos >= len(prompt) && len(prompt) >= cursor {
					sp.Start = len(prompt) // a shortened turn (e.g. reasoning dropped) still starts after the prompt
				} else {
					sp.Start = pos
				}
				sp.End = pos + l
			}
		}
		if sp.Start < cursor || sp.End < sp.Start {
			return "", nil, fmt.Errorf("chat template %s: message %d: span [%d,%d) overlaps earlier text (ends at %d)", t.Name, i, sp.Start, sp.End, cursor)
		}
		spans[i], have[i] = sp, true
		cursor = sp.End
	}

	// Non-assistant messages fill the text between their neighbours.
	prevEnd := 0
	for i := 0; i < n; i++ {
		if have[i] {
			prevEnd = spans[i].End
			continue
		}
		start := prevEnd
		if b[i] > start {
			start = b[i]
		}
		end := -1
		switch {
		case b[i+1] >= start:
			end = b[i+1]
		case i+1 < n && have[i+1]:
			end = spans[i+1].Start
		}
		if i+1 < n && have[i+1] && end > spans[i+1].Start {
			end = spans[i+1].Start
		}
		if end >= start {
			spans[i], have[i] = Span{Message: i, Role: msgs[i].Role(), Start: start, End: end}, true
			prevEnd = end
		}
	}
	out := make([]Span, 0, n)
	for i := range spans {
		if have[i] {
			out = append(out, spans[i])
		}
	}
	return full, out, nil
}

// locate finds text, or failing that its longest suffix that still holds a
// non-space character, in s at or after from; it returns the position and
// matched length (0 when nothing matched).
func locate(s string, from int, text string) (int, int) {
	if from > len(s) {
		return 0, 0
	}
	for k := 0; k < len(text); k++ {
		suf := text[k:]
		if strings.TrimSpace(suf) == "" {
			break
		}
		if j := strings.Index(s[from:], suf); j >= 0 {
			return from + j, len(suf)
		}
	}
	return 0, 0
}
