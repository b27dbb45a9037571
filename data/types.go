// Package data turns users' dataset files (LLaMA-Factory layouts: Alpaca,
// ShareGPT, OpenAI messages, plain text, preference pairs; JSON, JSONL,
// Parquet) into tokenized, masked training samples, and reports what is in
// the data and what is wrong with it before any training starts.
//
// Data flows one way: Read (stream raw records) → Parse (one internal
// conversation form) → Validate → Clean (dedup, filters) → Encode (chat
// template + tokenizer + label mask) → Mix/Split → Pack into Batches. Prepare
// runs the whole chain once and stores the result in a memory-mappable cache.
package data

import (
	"encoding/json"
	"fmt"
)

// IgnoreIndex is the label of a token that is not trained (PyTorch's default
// ignore_index for cross-entropy).
const IgnoreIndex = -100

// Role names of the internal conversation form. They are the OpenAI/Hugging
// Face names, which every chat template understands.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of the internal conversation form that every input
// format maps onto.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Reasoning  string     `json:"reasoning_content,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
	// NoTrain keeps an assistant turn as context only (LLaMA-Factory's v1
	// loss_weight 0).
	NoTrain bool `json:"no_train,omitempty"`
}

// ToolCall is one function call made by the assistant. Arguments is always
// a JSON value (usually an object), never a string holding JSON.
type ToolCall struct {
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// Kind says what an Example is for.
type Kind uint8

const (
	KindChat       Kind = iota // supervised conversation: train on assistant turns
	KindText                   // plain text for continued pre-training
	KindPreference             // prompt + chosen + rejected assistant answer
)

func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindText:
		return "text"
	case KindPreference:
		return "preference"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Loc points at a record in a user's file: Line for JSONL (1-based), Index
// (0-based record number) for JSON arrays and Parquet rows.
type Loc struct {
	File  string `json:"file"`
	Line  int    `json:"line,omitempty"`
	Index int    `json:"index"`
	// InArray marks an element of a JSON array file, whose line alone does
	// not say which record it is.
	InArray bool `json:"in_array,omitempty"`
}

func (l Loc) String() string {
	switch {
	case l.Line > 0 && l.InArray && l.Index >= 0:
		return fmt.Sprintf("%s:%d (record %d)", l.File, l.Line, l.Index)
	case l.Line > 0:
		return fmt.Sprintf("%s:%d", l.File, l.Line)
	}
	return fmt.Sprintf("%s:record %d", l.File, l.Index)
}

// Example is one parsed record in the internal form.
type Example struct {
	Source   string          // dataset name
	Loc      Loc             // where it came from
	Kind     Kind            //
	Messages []Message       // chat: the whole conversation; preference: the prompt turns
	Tools    json.RawMessage // tool definitions (a JSON array), or nil
	Text     string          // KindText only
	Chosen   *Message        // KindPreference only
	Rejected *Message        // KindPreference only
	// Undesirable marks a KTO example whose answer is labelled bad
	// (kto_tag false); stage kto only.
	Undesirable bool
	// KTO marks a stage kto example: its last assistant turn is the answer
	// and the rest its prompt, cut to cutoff_len as LLaMA-Factory cuts
	// them (ShareCutoff).
	KTO bool
}

// Issue is a problem found in one record.
type Issue struct {
	Loc    Loc    `json:"loc"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`

	syntax bool // the record is not well-formed JSON
}

func (i Issue) String() string {
	if i.Field != "" {
		return fmt.Sprintf("%s: field %q: %s", i.Loc, i.Field, i.Reason)
	}
	return fmt.Sprintf("%s: %s", i.Loc, i.Reason)
}

// RecordError is returned in strict mode for the first bad record.
type RecordError struct {
	Issue Issue
	Hint  string // what the user can do about it, or ""
}

func (e *RecordError) Error() string {
	if e.Hint != "" {
		return e.Issue.String() + " (" + e.Hint + ")"
	}
	return e.Issue.String()
}

func issuef(loc Loc, field, format string, args ...any) *Issue {
	return &Issue{Loc: loc, Field: field, Reason: fmt.Sprintf(format, args...)}
}
