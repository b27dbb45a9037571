package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// ToolFormat is how a model writes tool calls in its replies.
type ToolFormat string

const (
	// FormatHermes wraps each call in tags: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
	// (Qwen2.5, Qwen3, Hermes).
	FormatHermes ToolFormat = "hermes"
	// FormatLlama3 is a bare JSON object {"name": ..., "parameters": {...}},
	// optionally after <|python_tag|>, several joined by ';'.
	FormatLlama3 ToolFormat = "llama3"
	// FormatMistral is [TOOL_CALLS] followed by a JSON array of
	// {"name": ..., "arguments": {...}}.
	FormatMistral ToolFormat = "mistral"
)

// DetectToolFormat guesses the tool-call format from a chat template's
// source: the format the template itself writes assistant tool calls in.
func DetectToolFormat(templateSource string) ToolFormat {
	switch {
	case strings.Contains(templateSource, "<tool_call>"):
		return FormatHermes
	case strings.Contains(templateSource, "[TOOL_CALLS]"):
		return FormatMistral
	case strings.Contains(templateSource, "<|eot_id|>") || strings.Contains(templateSource, "<|python_tag|>"):
		return FormatLlama3
	}
	return FormatHermes
}

// ToolCall is one function call the model asked for. Arguments is a JSON
// text, as OpenAI's API carries it.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Output is a finished reply split into its parts.
type Output struct {
	Reasoning string // text inside <think>…</think>
	Content   string
	ToolCalls []ToolCall
}

// Delta is the part of a reply that became final with one Push.
type Delta struct {
	Reasoning, Content string
}

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
	hermesOpen = "<tool_call>"
	hermesEnd  = "</tool_call>"
	mistralTag = "[TOOL_CALLS]"
	pythonTag  = "<|python_tag|>"
)

type parseState int

const (
	inContent parseState = iota
	inReasoning
	inTools
)

// Parser splits streamed model text into reasoning, content and tool calls.
// It holds back the few bytes that could start a marker (</think>,
// <tool_call>, ...) until the next piece shows what they are, so every
// delta it returns is final. Feeding a whole reply at once gives the same
// result as feeding it piece by piece.
type Parser struct {
	format ToolFormat
	tools  bool
	state  parseState
	buf    string // text not yet classified
	tool   strings.Builder
	// started: content other than whitespace has been emitted, so a later
	// <think> or JSON is plain text, not a reasoning block or a call.
	started, reasonStarted bool
	thought                bool   // a <think> block was opened
	pendingWS              string // trailing whitespace held back
	toolWS                 string // whitespace before the call, kept in case it is not one
}

// NewParser returns a parser. tools enables tool-call recognition in the
// given format; inThink says the prompt already opened a <think> block.
func NewParser(format ToolFormat, tools, inThink bool) *Parser {
	p := &Parser{format: format, tools: tools}
	if inThink {
		p.state, p.thought = inReasoning, true
	}
	return p
}

// ParseOutput splits a complete reply; see Parser.
func ParseOutput(text string, format ToolFormat, tools, inThink bool) Output {
	p := NewParser(format, tools, inThink)
	d := p.Push(text)
	fd, calls := p.Finish()
	return Output{Reasoning: d.Reasoning + fd.Reasoning, Content: d.Content + fd.Content, ToolCalls: calls}
}

// Push adds generated text and returns what is now known to be reasoning
// or content.
func (p *Parser) Push(s string) Delta {
	p.buf += s
	var d Delta
	for {
		switch p.state {
		case inTools:
			p.tool.WriteString(p.buf)
			p.buf = ""
			return d
		case inReasoning:
			if i := strings.Index(p.buf, thinkClose); i >= 0 {
				d.Reasoning += p.emitReasoning(p.buf[:i])
				p.buf = p.buf[i+len(thinkClose):]
				p.pendingWS = "" // whitespace before </think> is layout
				p.state = inContent
				continue
			}
			keep := holdLen(p.buf, thinkClose)
			d.Reasoning += p.emitReasoning(p.buf[:len(p.buf)-keep])
			p.buf = p.buf[len(p.buf)-keep:]
			return d
		case inContent:
			if !p.started {
				p.buf = strings.TrimLeftFunc(p.buf, unicode.IsSpace)
				if p.buf == "" {
					return d
				}
				if strings.HasPrefix(p.buf, thinkOpen) && !p.thought {
					p.buf = p.buf[len(thinkOpen):]
					p.state, p.thought = inReasoning, true
					continue
				}
				if len(p.buf) < len(thinkOpen) && strings.HasPrefix(thinkOpen, p.buf) && !p.thought {
					return d // maybe the start of <think>
				}
				if p.tools && p.bareJSONStart(p.buf) {
					p.state = inTools
					continue
				}
			}
			if p.tools {
				if i := p.markerIndex(p.buf); i >= 0 {
					d.Content += p.emitContent(p.buf[:i])
					p.buf = p.buf[i:]
					p.toolWS, p.pendingWS = p.pendingWS, ""
					p.state = inTools
					continue
				}
			}
			keep := 0
			if p.tools {
				keep = holdLen(p.buf, p.markers()...)
			}
			d.Content += p.emitContent(p.buf[:len(p.buf)-keep])
			p.buf = p.buf[len(p.buf)-keep:]
			return d
		}
	}
}

// Finish ends the reply: it returns held-back text and the parsed tool
// calls (their IDs empty). Text that looked like a call but does not parse
// is returned as content.
func (p *Parser) Finish() (Delta, []ToolCall) {
	var d Delta
	switch p.state {
	case inReasoning:
		d.Reasoning = p.emitReasoning(p.buf)
	case inContent:
		d.Content = p.emitContent(p.buf)
	case inTools:
		text := p.tool.String()
		calls, rest, err := parseToolCalls(p.format, text)
		if err == nil && len(calls) > 0 {
			if rest = strings.TrimSpace(rest); rest != "" {
				d.Content = p.emitContent(rest)
			}
			return d, calls
		}
		d.Content = p.emitContent(p.toolWS + text)
	}
	p.buf = ""
	p.pendingWS = ""
	return d, nil
}

func (p *Parser) emitReasoning(s string) string {
	if !p.reasonStarted {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if s == "" {
			return ""
		}
		p.reasonStarted = true
	}
	return p.holdSpace(s)
}

func (p *Parser) emitContent(s string) string {
	if !p.started {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if s == "" {
			return ""
		}
		p.started = true
	}
	return p.holdSpace(s)
}

// holdSpace keeps trailing whitespace back until more text follows, so a
// reply's last part ends without the newlines before </think> or a call.
func (p *Parser) holdSpace(s string) string {
	s = p.pendingWS + s
	t := strings.TrimRightFunc(s, unicode.IsSpace)
	p.pendingWS = s[len(t):]
	return t
}

func (p *Parser) markers() []string {
	switch p.format {
	case FormatMistral:
		return []string{mistralTag}
	case FormatLlama3:
		return []string{pythonTag}
	}
	return []string{hermesOpen}
}

func (p *Parser) markerIndex(s string) int {
	best := -1
	for _, m := range p.markers() {
		if i := strings.Index(s, m); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// bareJSONStart: Llama 3 writes a call as a bare JSON object, and
// Mistral's [TOOL_CALLS] is a special token that decoding drops, leaving
// a bare array.
func (p *Parser) bareJSONStart(s string) bool {
	switch p.format {
	case FormatLlama3:
		return s[0] == '{'
	case FormatMistral:
		return s[0] == '['
	}
	return false
}

// holdLen returns the length of the longest suffix of s that is a proper
// prefix of one of the markers.
func holdLen(s string, markers ...string) int {
	best := 0
	for _, m := range markers {
		for k := min(len(m)-1, len(s)); k > best; k-- {
			if strings.HasSuffix(s, m[:k]) {
				best = k
				break
			}
		}
	}
	return best
}

// parseToolCalls reads calls written in format; rest is text outside them.
func parseToolCalls(format ToolFormat, text string) (calls []ToolCall, rest string, err error) {
	if format == FormatHermes {
		return parseHermes(text)
	}
	s := strings.TrimSpace(text)
	s = strings.TrimPrefix(s, pythonTag)
	s = strings.TrimSpace(strings.TrimPrefix(s, mistralTag))
	for s != "" {
		var raw json.RawMessage
		dec := json.NewDecoder(strings.NewReader(s))
		if err := dec.Decode(&raw); err != nil {
			return nil, "", fmt.Errorf("tool call JSON: %w", err)
		}
		if raw[0] == '[' {
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, "", err
			}
			for _, one := range list {
				c, err := parseCall(one)
				if err != nil {
					return nil, "", err
				}
				calls = append(calls, c)
			}
		} else {
			c, err := parseCall(raw)
			if err != nil {
				return nil, "", err
			}
			calls = append(calls, c)
		}
		s = strings.TrimLeft(s[dec.InputOffset():], " \t\r\n;")
	}
	return calls, "", nil
}

func parseHermes(text string) ([]ToolCall, string, error) {
	var calls []ToolCall
	var rest strings.Builder
	s := text
	for {
		i := strings.Index(s, hermesOpen)
		if i < 0 {
			rest.WriteString(s)
			break
		}
		rest.WriteString(s[:i])
		s = s[i+len(hermesOpen):]
		body := s
		if j := strings.Index(s, hermesEnd); j >= 0 {
			body, s = s[:j], s[j+len(hermesEnd):]
		} else {
			s = "" // cut off by the token limit or a stop: take what is there
		}
		c, err := parseCall(json.RawMessage(strings.TrimSpace(body)))
		if err != nil {
			return nil, "", err
		}
		calls = append(calls, c)
	}
	return calls, rest.String(), nil
}

// parseCall reads {"name": ..., "arguments"|"parameters": {...} or "..."}.
func parseCall(raw json.RawMessage) (ToolCall, error) {
	var c struct {
		Name       *string         `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return ToolCall{}, fmt.Errorf("tool call: %w", err)
	}
	if c.Name == nil || *c.Name == "" {
		return ToolCall{}, fmt.Errorf("tool call: no \"name\"")
	}
	args := c.Arguments
	if len(args) == 0 {
		args = c.Parameters
	}
	out := ToolCall{Name: *c.Name, Arguments: "{}"}
	switch {
	case len(args) == 0 || string(args) == "null":
	case args[0] == '"':
		if err := json.Unmarshal(args, &out.Arguments); err != nil {
			return ToolCall{}, err
		}
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, args); err != nil {
			return ToolCall{}, err
		}
		out.Arguments = b.String()
	}
	return out, nil
}

// stopper cuts generated text at the first of the request's stop strings,
// holding back text that could be the start of one.
type stopper struct {
	stops []string
	buf   string
	hit   bool
}

// push returns the text now safe to pass on, and whether a stop string was
// reached (after which the rest of the generation is discarded).
func (s *stopper) push(t string) (string, bool) {
	if s.hit {
		return "", true
	}
	if len(s.stops) == 0 {
		return t, false
	}
	s.buf += t
	cut := -1
	for _, st := range s.stops {
		if i := strings.Index(s.buf, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := s.buf[:cut]
		s.buf, s.hit = "", true
		return out, true
	}
	keep := holdLen(s.buf, s.stops...)
	out := s.buf[:len(s.buf)-keep]
	s.buf = s.buf[len(s.buf)-keep:]
	return out, false
}

// flush returns the held-back text at the end of a generation.
func (s *stopper) flush() string {
	out := s.buf
	s.buf = ""
	return out
}
