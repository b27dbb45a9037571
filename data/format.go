package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Format names accepted in Spec.Formatting (and dataset_info.json's
// "formatting"). Empty means: detect from the first record of each file.
const (
	FormatAuto       = ""
	FormatAlpaca     = "alpaca"
	FormatShareGPT   = "sharegpt"
	FormatOpenAI     = "openai"
	FormatText       = "text"
	FormatPreference = "preference"
)

// Columns maps internal slots to a file's column names, with LLaMA-Factory's
// keys (dataset_info.json "columns").
type Columns struct {
	Prompt   string `json:"prompt,omitempty"`
	Query    string `json:"query,omitempty"`
	Response string `json:"response,omitempty"`
	History  string `json:"history,omitempty"`
	Messages string `json:"messages,omitempty"`
	System   string `json:"system,omitempty"`
	Tools    string `json:"tools,omitempty"`
	Chosen   string `json:"chosen,omitempty"`
	Rejected string `json:"rejected,omitempty"`
	Text     string `json:"text,omitempty"`
	// KTOTag is the column of KTO data's boolean label (desirable answer
	// or not); Images, Videos and Audios name multimodal columns.
	KTOTag string `json:"kto_tag,omitempty"`
	Images string `json:"images,omitempty"`
	Videos string `json:"videos,omitempty"`
	Audios string `json:"audios,omitempty"`
}

// Tags are the role and field names inside ShareGPT-style messages
// (dataset_info.json "tags").
type Tags struct {
	RoleTag        string `json:"role_tag,omitempty"`
	ContentTag     string `json:"content_tag,omitempty"`
	UserTag        string `json:"user_tag,omitempty"`
	AssistantTag   string `json:"assistant_tag,omitempty"`
	ObservationTag string `json:"observation_tag,omitempty"`
	FunctionTag    string `json:"function_tag,omitempty"`
	SystemTag      string `json:"system_tag,omitempty"`
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c Columns) withDefaults(format string) Columns {
	switch format {
	case FormatAlpaca:
		c.Prompt = or(c.Prompt, "instruction")
		c.Query = or(c.Query, "input")
		c.Response = or(c.Response, "output")
	case FormatShareGPT:
		c.Messages = or(c.Messages, "conversations")
	case FormatOpenAI:
		c.Messages = or(c.Messages, "messages")
	case FormatText:
		c.Text = or(c.Text, or(c.Prompt, "text"))
	case FormatPreference:
		c.Prompt = or(c.Prompt, "prompt")
	}
	c.History = or(c.History, "history")
	c.System = or(c.System, "system")
	c.Tools = or(c.Tools, "tools")
	c.Chosen = or(c.Chosen, "chosen")
	c.Rejected = or(c.Rejected, "rejected")
	c.Images = or(c.Images, "images")
	c.Videos = or(c.Videos, "videos")
	c.Audios = or(c.Audios, "audios")
	return c
}

// Reasons a well-formed record is left out because the stage cannot use
// what it means.
const (
	ReasonKTORejected = "KTO label false (an undesirable answer; stage sft would learn it)"
	ReasonMultimodal  = "image/video/audio record (gotune trains text only; <image> would be learnt as text)"
)

var mediaPlaceholders = []string{"<image>", "<video>", "<audio>"}

// ktoLabel reads a KTO record's label (kto_tag; a field "label", TRL's
// name, when none is declared) into ex: stage kto trains desirable and
// undesirable answers alike, each towards its side.
func (p *parser) ktoLabel(rec Record, ex *Example) *Issue {
	k := or(p.cols.KTOTag, "label")
	raw, ok := rec.Fields[k]
	if !ok {
		return issuef(rec.Loc, k, "stage kto needs each answer labelled desirable or not (true/false): add the field, or declare the label's column as columns.kto_tag in dataset_info.json")
	}
	var label bool
	if err := json.Unmarshal(raw, &label); err != nil {
		return issuef(rec.Loc, k, "expected the KTO label true or false, found %s", jsonKind(raw))
	}
	ex.Undesirable, ex.KTO = !label, true
	return nil
}

// unusable says why a parsed record must not be trained in this stage, or
// "". KTO data labels some answers as undesirable: supervised training on
// them teaches exactly those. Multimodal records carry media the text model
// never sees, and placeholders it would learn as words.
func (p *parser) unusable(rec Record, ex *Example) (string, *Issue) {
	if p.stage == "kto" {
		return "", p.ktoLabel(rec, ex)
	}
	if k := p.cols.KTOTag; k != "" {
		if raw, ok := rec.Fields[k]; ok {
			var label bool
			if err := json.Unmarshal(raw, &label); err != nil {
				return "", issuef(rec.Loc, k, "expected the KTO label true or false, found %s", jsonKind(raw))
			}
			if !label {
				return ReasonKTORejected, nil
			}
		}
	}
	if p.sawMedia {
		return ReasonMultimodal, nil
	}
	for _, k := range []string{p.cols.Images, p.cols.Videos, p.cols.Audios} {
		if raw, ok := rec.Fields[k]; ok {
			switch s := string(bytes.TrimSpace(raw)); s {
			case "", "null", "[]", `""`:
			default:
				return ReasonMultimodal, nil
			}
		}
	}
	// A placeholder alone is media only in a dataset declared multimodal:
	// elsewhere "<video>" is as likely an HTML tag in a coding answer.
	if sc := p.spec.Columns; sc.Images == "" && sc.Videos == "" && sc.Audios == "" {
		return "", nil
	}
	texts := []string{ex.Text}
	for _, m := range ex.Messages {
		texts = append(texts, m.Content)
	}
	for _, m := range []*Message{ex.Chosen, ex.Rejected} {
		if m != nil {
			texts = append(texts, m.Content)
		}
	}
	for _, t := range texts {
		for _, ph := range mediaPlaceholders {
			if strings.Contains(t, ph) {
				return ReasonMultimodal, nil
			}
		}
	}
	return "", nil
}

func (t Tags) withDefaults(format string) Tags {
	if format == FormatOpenAI {
		t.RoleTag = or(t.RoleTag, "role")
		t.ContentTag = or(t.ContentTag, "content")
		t.UserTag = or(t.UserTag, "user")
		t.AssistantTag = or(t.AssistantTag, "assistant")
		t.ObservationTag = or(t.ObservationTag, "tool")
		t.FunctionTag = or(t.FunctionTag, "function_call")
		t.SystemTag = or(t.SystemTag, "system")
		return t
	}
	t.RoleTag = or(t.RoleTag, "from")
	t.ContentTag = or(t.ContentTag, "value")
	t.UserTag = or(t.UserTag, "human")
	t.AssistantTag = or(t.AssistantTag, "gpt")
	t.ObservationTag = or(t.ObservationTag, "observation")
	t.FunctionTag = or(t.FunctionTag, "function_call")
	t.SystemTag = or(t.SystemTag, "system")
	return t
}

// DetectFormat guesses a record's format from its field names.
func DetectFormat(fields map[string]json.RawMessage) (string, error) {
	has := func(k string) bool { _, ok := fields[k]; return ok }
	convKey := ""
	for _, k := range []string{"conversations", "messages", "conversation"} {
		if has(k) {
			convKey = k
			break
		}
	}
	switch {
	case has("chosen") && has("rejected") && !has("instruction"):
		if convKey != "" {
			return FormatShareGPT, nil // LLaMA-Factory's ShareGPT ranking layout
		}
		return FormatPreference, nil
	case convKey != "":
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(fields[convKey], &msgs); err == nil && len(msgs) > 0 {
			if _, ok := msgs[0]["from"]; ok {
				return FormatShareGPT, nil
			}
			if _, ok := msgs[0]["role"]; ok {
				return FormatOpenAI, nil
			}
		}
		if convKey == "conversations" {
			return FormatShareGPT, nil
		}
		return FormatOpenAI, nil
	case has("instruction") || (has("output") && (has("input") || has("prompt"))):
		return FormatAlpaca, nil
	case has("text") || has("content"):
		return FormatText, nil
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	return "", fmt.Errorf("cannot tell the format from fields %v (expected instruction/output, conversations, messages, text, or prompt/chosen/rejected; or declare \"formatting\")", keys)
}

// parser turns raw records of one file into Examples.
type parser struct {
	spec   Spec
	format string
	cols   Columns
	tags   Tags
	stage  string
	// sawMedia is set while parsing a record that has image, video or
	// audio content parts.
	sawMedia bool
}

func newParser(spec Spec, format, stage string) *parser {
	return &parser{spec: spec, format: format, cols: spec.Columns.withDefaults(format), tags: spec.Tags.withDefaults(format), stage: stage}
}

func (p *parser) parse(rec Record) (Example, *Issue) {
	ex := Example{Source: p.spec.Name, Loc: rec.Loc}
	p.sawMedia = false
	var is *Issue
	switch p.format {
	case FormatAlpaca:
		is = p.alpaca(rec, &ex)
	case FormatShareGPT, FormatOpenAI:
		is = p.conversation(rec, &ex)
	case FormatText:
		is = p.text(rec, &ex)
	case FormatPreference:
		is = p.preference(rec, &ex)
	default:
		is = issuef(rec.Loc, "", "unknown formatting %q (expected alpaca, sharegpt, openai, text or preference)", p.format)
	}
	if is == nil && p.spec.Ranking && ex.Kind != KindPreference {
		is = issuef(rec.Loc, p.cols.Chosen, "dataset is declared as ranking but the record has no chosen/rejected pair")
	}
	return ex, is
}

// str reads an optional string field; JSON null and absence read as "".
// Numbers and booleans are accepted as their text, since spreadsheets turn
// "42" into 42.
func str(rec Record, key string) (string, bool, *Issue) {
	raw, ok := rec.Fields[key]
	if !ok || key == "" {
		return "", false, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, issuef(rec.Loc, key, "bad string: %v", err)
		}
		return s, true, nil
	case '{', '[':
		return "", true, issuef(rec.Loc, key, "expected a string, found %s", jsonKind(raw))
	}
	return string(raw), true, nil
}

func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func (p *parser) alpaca(rec Record, ex *Example) *Issue {
	c := p.cols
	prompt, _, is := str(rec, c.Prompt)
	if is != nil {
		return is
	}
	query, _, is := str(rec, c.Query)
	if is != nil {
		return is
	}
	if query != "" {
		if prompt != "" {
			prompt += "\n" + query
		} else {
			prompt = query
		}
	}
	if p.stage == "pt" {
		ex.Kind, ex.Text = KindText, prompt
		if prompt == "" {
			return issuef(rec.Loc, c.Prompt, "missing text for pre-training")
		}
		return nil
	}
	system, _, is := str(rec, c.System)
	if is != nil {
		return is
	}
	if system != "" {
		ex.Messages = append(ex.Messages, Message{Role: RoleSystem, Content: system})
	}
	if raw, ok := rec.Fields[c.History]; ok && string(bytes.TrimSpace(raw)) != "null" {
		var hist [][]string
		if err := json.Unmarshal(raw, &hist); err != nil {
			return issuef(rec.Loc, c.History, "expected a list of [question, answer] pairs: %s", jsonErr(err))
		}
		for i, pair := range hist {
			if len(pair) != 2 {
				return issuef(rec.Loc, c.History, "entry %d has %d items, expected [question, answer]", i, len(pair))
			}
			ex.Messages = append(ex.Messages, Message{Role: RoleUser, Content: pair[0]}, assistantMessage(pair[1], ""))
		}
	}
	if _, ok := rec.Fields[c.Prompt]; !ok && query == "" {
		return issuef(rec.Loc, c.Prompt, "missing (expected the instruction text)")
	}
	ex.Messages = append(ex.Messages, Message{Role: RoleUser, Content: prompt})
	if tools, is := p.tools(rec); is != nil {
		return is
	} else {
		ex.Tools = tools
	}
	if p.spec.Ranking || (hasField(rec, c.Chosen) && hasField(rec, c.Rejected) && !hasField(rec, c.Response)) {
		return p.pair(rec, ex)
	}
	resp, ok, is := str(rec, c.Response)
	if is != nil {
		return is
	}
	if !ok {
		return issuef(rec.Loc, c.Response, "missing (expected the answer text)")
	}
	ex.Kind = KindChat
	ex.Messages = append(ex.Messages, assistantMessage(resp, ""))
	return nil
}

func hasField(rec Record, k string) bool { _, ok := rec.Fields[k]; return ok }

// pair fills Chosen/Rejected from columns holding a string, one message
// object, or a list of messages (the last one is the answer).
func (p *parser) pair(rec Record, ex *Example) *Issue {
	ex.Kind = KindPreference
	var err *Issue
	ex.Chosen, err = p.answer(rec, p.cols.Chosen, ex)
	if err != nil {
		return err
	}
	ex.Rejected, err = p.answer(rec, p.cols.Rejected, nil)
	return err
}

func (p *parser) answer(rec Record, key string, ex *Example) (*Message, *Issue) {
	raw, ok := rec.Fields[key]
	if !ok {
		return nil, issuef(rec.Loc, key, "missing (expected the %s answer)", key)
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, issuef(rec.Loc, key, "bad string: %v", err)
		}
		m := assistantMessage(s, "")
		return &m, nil
	case len(raw) > 0 && raw[0] == '{':
		msgs, is := p.messages(rec, key, json.RawMessage("["+string(raw)+"]"))
		if is != nil {
			return nil, is
		}
		return &msgs[0], nil
	case len(raw) > 0 && raw[0] == '[':
		msgs, is := p.messages(rec, key, raw)
		if is != nil {
			return nil, is
		}
		if len(msgs) == 0 {
			return nil, issuef(rec.Loc, key, "empty message list")
		}
		// TRL's conversational layout repeats the prompt inside chosen.
		if ex != nil && len(ex.Messages) == 0 && len(msgs) > 1 {
			ex.Messages = msgs[:len(msgs)-1]
		}
		return &msgs[len(msgs)-1], nil
	}
	return nil, issuef(rec.Loc, key, "expected a string, a message or a list of messages, found %s", jsonKind(raw))
}

func (p *parser) tools(rec Record) (json.RawMessage, *Issue) {
	raw, ok := rec.Fields[p.cols.Tools]
	if !ok {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' { // LLaMA-Factory stores tools as a JSON string
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, issuef(rec.Loc, p.cols.Tools, "bad string: %v", err)
		}
		raw = json.RawMessage(strings.TrimSpace(s))
	}
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "[]" {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		var one map[string]json.RawMessage
		if json.Unmarshal(raw, &one) != nil {
			return nil, issuef(rec.Loc, p.cols.Tools, "expected a JSON list of tool definitions: %s", jsonErr(err))
		}
		raw = json.RawMessage("[" + string(raw) + "]")
	}
	return raw, nil
}

func (p *parser) text(rec Record, ex *Example) *Issue {
	ex.Kind = KindText
	for _, k := range []string{p.cols.Text, "content"} {
		s, ok, is := str(rec, k)
		if is != nil {
			return is
		}
		if ok {
			ex.Text = s
			return nil
		}
	}
	return issuef(rec.Loc, p.cols.Text, "missing (expected the text)")
}

func (p *parser) preference(rec Record, ex *Example) *Issue {
	raw, ok := rec.Fields[p.cols.Prompt]
	if ok {
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && raw[0] == '[' {
			msgs, is := p.messages(rec, p.cols.Prompt, raw)
			if is != nil {
				return is
			}
			ex.Messages = msgs
		} else {
			s, _, is := str(rec, p.cols.Prompt)
			if is != nil {
				return is
			}
			if sys, _, _ := str(rec, p.cols.System); sys != "" {
				ex.Messages = append(ex.Messages, Message{Role: RoleSystem, Content: sys})
			}
			ex.Messages = append(ex.Messages, Message{Role: RoleUser, Content: s})
		}
	}
	if is := p.pair(rec, ex); is != nil {
		return is
	}
	if len(ex.Messages) == 0 {
		return issuef(rec.Loc, p.cols.Prompt, "missing (expected the prompt)")
	}
	return nil
}

func (p *parser) conversation(rec Record, ex *Example) *Issue {
	raw, ok := rec.Fields[p.cols.Messages]
	if !ok {
		return issuef(rec.Loc, p.cols.Messages, "missing (expected a list of messages)")
	}
	msgs, is := p.messages(rec, p.cols.Messages, raw)
	if is != nil {
		return is
	}
	if sys, _, is := str(rec, p.cols.System); is != nil {
		return is
	} else if sys != "" && (len(msgs) == 0 || msgs[0].Role != RoleSystem) {
		msgs = append([]Message{{Role: RoleSystem, Content: sys}}, msgs...)
	}
	ex.Messages = msgs
	tools, is := p.tools(rec)
	if is != nil {
		return is
	}
	ex.Tools = tools
	if hasField(rec, p.cols.Chosen) && hasField(rec, p.cols.Rejected) {
		return p.pair(rec, ex)
	}
	ex.Kind = KindChat
	return nil
}

// messages decodes a list of ShareGPT (from/value) or OpenAI (role/content)
// messages, mapping the tag names onto internal roles.
func (p *parser) messages(rec Record, key string, raw json.RawMessage) ([]Message, *Issue) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, issuef(rec.Loc, key, "expected a list of message objects: %s", jsonErr(err))
	}
	t := p.tags
	out := make([]Message, 0, len(list))
	for i, m := range list {
		where := fmt.Sprintf("%s[%d]", key, i)
		roleRaw, ok := m[t.RoleTag]
		if !ok {
			if alt, ok2 := m["role"]; ok2 { // OpenAI message in a ShareGPT-tagged file
				roleRaw, ok = alt, true
			} else if alt, ok2 := m["from"]; ok2 {
				roleRaw, ok = alt, true
			}
		}
		if !ok {
			return nil, issuef(rec.Loc, where, "message has no %q (role) field", t.RoleTag)
		}
		var role string
		if err := json.Unmarshal(roleRaw, &role); err != nil {
			return nil, issuef(rec.Loc, where+"."+t.RoleTag, "expected a string role, found %s", jsonKind(roleRaw))
		}
		content, extra, is := contentOf(rec.Loc, where, m, t.ContentTag)
		if is != nil {
			return nil, is
		}
		p.sawMedia = p.sawMedia || extra.media
		msg := Message{Content: content}
		switch role {
		case t.UserTag, RoleUser, "human":
			msg.Role = RoleUser
		case t.AssistantTag, RoleAssistant, "gpt", "model":
			reasoning := extra.reasoning
			if reasoning == "" {
				reasoning = reasoningOf(m)
			}
			msg = assistantMessage(content, reasoning)
			msg.ToolCalls = extra.calls
		case t.SystemTag, RoleSystem:
			msg.Role = RoleSystem
		case t.ObservationTag, RoleTool, "observation", "function", "tool_response":
			msg.Role = RoleTool
		case t.FunctionTag, "function_call":
			// LLaMA-Factory: the value is a JSON call {"name","arguments"}
			// or a list of them, spoken by the assistant.
			calls, is := parseCalls(rec.Loc, where, json.RawMessage(content))
			if is != nil {
				return nil, is
			}
			msg = Message{Role: RoleAssistant, ToolCalls: calls}
		default:
			return nil, issuef(rec.Loc, where+"."+t.RoleTag, "unknown role %q (expected %s, %s, %s, %s or %s)", role, t.UserTag, t.AssistantTag, t.SystemTag, t.FunctionTag, t.ObservationTag)
		}
		if tc, ok := m["tool_calls"]; ok && string(tc) != "null" {
			calls, is := parseCalls(rec.Loc, where+".tool_calls", tc)
			if is != nil {
				return nil, is
			}
			msg.ToolCalls = append(msg.ToolCalls, calls...)
		}
		if id, ok := m["tool_call_id"]; ok {
			_ = json.Unmarshal(id, &msg.ToolCallID)
		}
		if n, ok := m["name"]; ok {
			_ = json.Unmarshal(n, &msg.Name)
		}
		if w, ok := m["loss_weight"]; ok && msg.Role == RoleAssistant {
			// LLaMA-Factory's v1 format: 0 keeps an answer as context only.
			var x float64
			if err := json.Unmarshal(w, &x); err != nil || x < 0 {
				return nil, issuef(rec.Loc, where+".loss_weight", "expected a number >= 0, found %s", jsonKind(w))
			}
			msg.NoTrain = x == 0
		}
		if len(extra.calls) > 0 && msg.Role != RoleAssistant {
			return nil, issuef(rec.Loc, where, "tool_call parts in a %s message (only the assistant calls tools)", role)
		}
		out = append(out, msg)
	}
	return out, nil
}

func reasoningOf(m map[string]json.RawMessage) string {
	for _, k := range []string{"reasoning_content", "reasoning", "thinking"} {
		if raw, ok := m[k]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil && s != "" {
				return s
			}
		}
	}
	return ""
}

// partsExtra is what a list of content parts holds beside text: reasoning
// and tool calls (LLaMA-Factory's v1 message format).
type partsExtra struct {
	reasoning string
	calls     []ToolCall
	media     bool // an image, video or audio part
}

// contentOf reads a message's content: a string, null, or a list of parts.
// Parts are OpenAI's {"type": "text", "text"} or LLaMA-Factory's v1
// {"type": "text" | "reasoning" | "tool_call", "value"}; reasoning, tool
// calls and the presence of image/video/audio parts come back in extra.
// Null or missing content is "": an assistant turn that only calls tools
// has no text, and "" is what every chat template renders (a None would
// make many raise in jinja2; see chat.FillNullContent).
func contentOf(loc Loc, where string, m map[string]json.RawMessage, tag string) (string, partsExtra, *Issue) {
	var extra partsExtra
	raw, ok := m[tag]
	if !ok {
		if raw, ok = m["content"]; !ok {
			raw, ok = m["value"]
		}
	}
	if !ok {
		return "", extra, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", extra, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", extra, issuef(loc, where+"."+tag, "bad string: %v", err)
		}
		return s, extra, nil
	case '[':
		var parts []struct {
			Type  string  `json:"type"`
			Text  *string `json:"text"`
			Value *string `json:"value"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", extra, issuef(loc, where+"."+tag, "expected a string or a list of {type, text} parts: %s", jsonErr(err))
		}
		var sb, rb strings.Builder
		for i, p := range parts {
			switch p.Type {
			case "image", "image_url", "video", "video_url", "audio", "input_audio":
				extra.media = true
				continue
			}
			v := p.Text
			if v == nil {
				v = p.Value
			}
			if v == nil {
				continue
			}
			switch p.Type {
			case "text", "":
				sb.WriteString(*v)
			case "reasoning", "thinking":
				rb.WriteString(*v)
			case "tool_call":
				calls, is := parseCalls(loc, fmt.Sprintf("%s.%s[%d]", where, tag, i), json.RawMessage(*v))
				if is != nil {
					return "", extra, is
				}
				extra.calls = append(extra.calls, calls...)
			}
		}
		extra.reasoning = rb.String()
		return sb.String(), extra, nil
	case '{':
		// A function_call value written as an object rather than a string.
		return string(raw), extra, nil
	}
	return string(raw), extra, nil
}

// parseCalls accepts one call or a list, each either {"name","arguments"} or
// OpenAI's {"id","type","function":{"name","arguments"}}, with arguments as
// an object or as a string holding JSON.
func parseCalls(loc Loc, where string, raw json.RawMessage) ([]ToolCall, *Issue) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			raw = json.RawMessage(strings.TrimSpace(s))
		}
	}
	if len(raw) == 0 {
		return nil, issuef(loc, where, "empty tool call")
	}
	var list []json.RawMessage
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, issuef(loc, where, "tool calls are not valid JSON: %s", jsonErr(err))
		}
	} else {
		list = []json.RawMessage{raw}
	}
	calls := make([]ToolCall, 0, len(list))
	for i, item := range list {
		var c struct {
			ID        string          `json:"id"`
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
			Function  *struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		}
		if err := json.Unmarshal(item, &c); err != nil {
			return nil, issuef(loc, where, "tool call %d is not a JSON object with name and arguments: %s", i, jsonErr(err))
		}
		if c.Function != nil {
			c.Name, c.Arguments = c.Function.Name, c.Function.Arguments
		}
		if c.Name == "" {
			return nil, issuef(loc, where, "tool call %d has no function name", i)
		}
		args := bytes.TrimSpace(c.Arguments)
		if len(args) == 0 || string(args) == "null" {
			args = json.RawMessage("{}")
		} else if args[0] == '"' {
			var s string
			_ = json.Unmarshal(args, &s)
			if !json.Valid([]byte(s)) {
				return nil, issuef(loc, where, "tool call %d (%s): arguments are not valid JSON: %.60q", i, c.Name, s)
			}
			args = json.RawMessage(s)
		}
		calls = append(calls, ToolCall{ID: c.ID, Name: c.Name, Arguments: append(json.RawMessage(nil), args...)})
	}
	return calls, nil
}

// assistantMessage maps reasoning written inline as <think>…</think> at the
// start of the answer, or given separately, onto Message.Reasoning.
func assistantMessage(content, reasoning string) Message {
	m := Message{Role: RoleAssistant, Content: content, Reasoning: reasoning}
	if reasoning != "" {
		return m
	}
	trimmed := strings.TrimLeft(content, " \t\r\n")
	if !strings.HasPrefix(trimmed, thinkOpen) {
		return m
	}
	end := strings.Index(trimmed, thinkClose)
	if end < 0 || strings.Count(trimmed, thinkOpen) != 1 || strings.Count(trimmed, thinkClose) != 1 {
		return m // unbalanced: leave it for validation to report
	}
	m.Reasoning = strings.Trim(trimmed[len(thinkOpen):end], "\n")
	m.Content = strings.TrimLeft(trimmed[end+len(thinkClose):], "\n")
	return m
}

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
)
