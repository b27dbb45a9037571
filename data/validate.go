package data

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Validate checks one parsed example and returns the first problem found,
// or nil. The rules are those a chat template and a trainer rely on: roles
// alternate (a tool result follows an assistant tool call), the assistant
// speaks last, no turn is empty, think tags balance, tool definitions name
// their function.
func Validate(ex *Example) *Issue {
	switch ex.Kind {
	case KindText:
		if strings.TrimSpace(ex.Text) == "" {
			return issuef(ex.Loc, "text", "empty text")
		}
		return nil
	case KindPreference:
		if is := validateTurns(ex, false); is != nil {
			return is
		}
		if n := len(ex.Messages); n == 0 || (ex.Messages[n-1].Role != RoleUser && ex.Messages[n-1].Role != RoleTool) {
			return issuef(ex.Loc, "prompt", "the prompt must end with a user turn or a tool result")
		}
		for _, a := range []struct {
			name string
			m    *Message
		}{{"chosen", ex.Chosen}, {"rejected", ex.Rejected}} {
			if a.m == nil {
				return issuef(ex.Loc, a.name, "missing")
			}
			if a.m.Role != RoleAssistant {
				return issuef(ex.Loc, a.name, "expected an assistant answer, found role %q", a.m.Role)
			}
			if isEmptyTurn(*a.m) {
				return issuef(ex.Loc, a.name, "empty answer")
			}
			if r := thinkBalance(a.m.Content); r != "" {
				return issuef(ex.Loc, a.name, "%s", r)
			}
		}
		if sameAnswer(ex.Chosen, ex.Rejected) {
			return issuef(ex.Loc, "rejected", "identical to chosen: the pair teaches nothing")
		}
		return nil
	}
	if is := validateTurns(ex, true); is != nil {
		return is
	}
	return nil
}

func sameAnswer(a, b *Message) bool {
	if a.Content != b.Content || a.Reasoning != b.Reasoning || len(a.ToolCalls) != len(b.ToolCalls) {
		return false
	}
	for i := range a.ToolCalls {
		if a.ToolCalls[i].Name != b.ToolCalls[i].Name || string(a.ToolCalls[i].Arguments) != string(b.ToolCalls[i].Arguments) {
			return false
		}
	}
	return true
}

func isEmptyTurn(m Message) bool {
	return strings.TrimSpace(m.Content) == "" && len(m.ToolCalls) == 0
}

func validateTurns(ex *Example, sft bool) *Issue {
	msgs := ex.Messages
	if len(msgs) == 0 {
		return issuef(ex.Loc, "messages", "no messages")
	}
	if is := validateTools(ex); is != nil {
		return is
	}
	prev := ""
	for i, m := range msgs {
		field := fmt.Sprintf("messages[%d]", i)
		if m.Role == RoleSystem {
			if i != 0 {
				return issuef(ex.Loc, field, "system message after the first turn")
			}
			continue
		}
		if isEmptyTurn(m) && !(m.Role == RoleTool && m.Content != "") {
			return issuef(ex.Loc, field, "empty %s turn", m.Role)
		}
		ok := false
		switch m.Role {
		case RoleUser:
			ok = prev == "" || prev == RoleAssistant
		case RoleAssistant:
			ok = prev == RoleUser || prev == RoleTool
		case RoleTool:
			ok = prev == RoleTool || (prev == RoleAssistant && len(msgs[i-1].ToolCalls) > 0)
		}
		if !ok {
			switch {
			case prev == "":
				return issuef(ex.Loc, field, "conversation starts with %s; expected user first", m.Role)
			case m.Role == RoleTool:
				return issuef(ex.Loc, field, "tool result without a preceding assistant tool call")
			default:
				return issuef(ex.Loc, field, "roles must alternate user/assistant: %s follows %s", m.Role, prev)
			}
		}
		if m.Role == RoleAssistant {
			if r := thinkBalance(m.Content); r != "" {
				return issuef(ex.Loc, field, "%s", r)
			}
			for j, c := range m.ToolCalls {
				if !json.Valid(c.Arguments) {
					return issuef(ex.Loc, fmt.Sprintf("%s.tool_calls[%d]", field, j), "arguments are not valid JSON")
				}
			}
		}
		prev = m.Role
	}
	if sft && prev != RoleAssistant {
		if prev == "" {
			return issuef(ex.Loc, "messages", "only a system message")
		}
		return issuef(ex.Loc, fmt.Sprintf("messages[%d]", len(msgs)-1), "the last turn is %s; the assistant must speak last for supervised training", prev)
	}
	return nil
}

// thinkBalance reports unbalanced or nested <think> tags in text.
func thinkBalance(s string) string {
	depth := 0
	for {
		o, c := strings.Index(s, thinkOpen), strings.Index(s, thinkClose)
		switch {
		case o < 0 && c < 0:
			if depth != 0 {
				return "unclosed <think> tag"
			}
			return ""
		case c < 0 || (o >= 0 && o < c):
			if depth > 0 {
				return "nested <think> tags"
			}
			depth++
			s = s[o+len(thinkOpen):]
		default:
			if depth == 0 {
				return "</think> without an opening <think>"
			}
			depth--
			s = s[c+len(thinkClose):]
		}
	}
}

func validateTools(ex *Example) *Issue {
	if len(ex.Tools) == 0 {
		return nil
	}
	var tools []struct {
		Name     string `json:"name"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(ex.Tools, &tools); err != nil {
		return issuef(ex.Loc, "tools", "expected a list of tool definitions: %s", jsonErr(err))
	}
	for i, t := range tools {
		if t.Name == "" && (t.Function == nil || t.Function.Name == "") {
			return issuef(ex.Loc, fmt.Sprintf("tools[%d]", i), "tool definition has no name")
		}
	}
	return nil
}
