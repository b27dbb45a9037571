package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"gotune/jsondepth"
	"io"
	"sort"
)

// Field is one key of an ordered JSON object.
type Field struct {
	Key   string
	Value any
}

// Object is a JSON object that keeps its key order, as Python dicts do, so
// that a template's tojson prints keys in the order the user wrote them.
// Values are nil, bool, json.Number, float64, int, int64, string, []any,
// Object, json.RawMessage or map[string]any (whose keys are sorted).
type Object []Field

// Get returns the value of key.
func (o Object) Get(key string) (any, bool) {
	for _, f := range o {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// With returns a copy of o with key set to v, keeping the key's position
// when it exists and appending it otherwise.
func (o Object) With(key string, v any) Object {
	out := make(Object, len(o), len(o)+1)
	copy(out, o)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = v
			return out
		}
	}
	return append(out, Field{key, v})
}

// MarshalJSON writes the object with its keys in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.Key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", f.Key, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object keeping key order.
func (o *Object) UnmarshalJSON(data []byte) error {
	v, err := DecodeJSON(data)
	if err != nil {
		return err
	}
	obj, ok := v.(Object)
	if !ok {
		return fmt.Errorf("expected a JSON object, got %s", jsonKind(v))
	}
	*o = obj
	return nil
}

// DecodeJSON decodes one JSON value into nil, bool, json.Number, string,
// []any and Object, keeping object key order.
// Nesting is bounded (jsondepth.Default) because the walk recurses: tool
// arguments arrive as strings of JSON from untrusted clients.
func DecodeJSON(data []byte) (any, error) {
	if err := jsondepth.Check(data, jsondepth.Default); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := Object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				obj = obj.With(k, v) // a repeated key keeps its first position, last value (as Python)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case Object, map[string]any:
		return "an object"
	}
	return "a number"
}

// Message is one chat message: an ordered JSON object with at least "role".
// Everything the user gave (content parts, reasoning_content, tool_calls,
// tool_call_id, name, any extra field) reaches the template unchanged.
type Message struct {
	Fields Object
}

// NewMessage builds a message with a role and content (a string, a list of
// content parts, or nil).
func NewMessage(role string, content any) Message {
	return Message{Fields: Object{{"role", role}, {"content", content}}}
}

// ToolCall builds the usual {"type": "function", "function": {...}} entry;
// arguments is an Object, a map, or a JSON string.
func ToolCall(name string, arguments any) Object {
	return Object{{"type", "function"}, {"function", Object{{"name", name}, {"arguments", arguments}}}}
}

// FillNullContent returns m with a null or missing "content" set to "".
//
// An OpenAI assistant turn that only calls tools arrives with content null,
// and ShareGPT or LLaMA-Factory records may leave content out. transformers'
// apply_chat_template hands such a message to the template as it is, and
// many templates then fail in jinja2 ('\n' + content, '</think>' in content,
// content.strip()). What the sender means is "no text", so gotune writes ""
// wherever it builds messages from data records or requests: those
// conversations train and serve with every template, while the template
// engine itself stays exactly jinja2 for any value passed to it on purpose.
func (m Message) FillNullContent() Message {
	if c, ok := m.Fields.Get("content"); !ok || c == nil {
		return m.With("content", "")
	}
	return m
}

// With returns a copy of the message with field key set.
func (m Message) With(key string, v any) Message { return Message{Fields: m.Fields.With(key, v)} }

// Role returns the message role.
func (m Message) Role() string {
	v, _ := m.Fields.Get("role")
	s, _ := v.(string)
	return s
}

// Content returns the content field (string, []any of parts, or nil).
func (m Message) Content() any {
	v, _ := m.Fields.Get("content")
	return v
}

// MarshalJSON writes the message fields in order.
func (m Message) MarshalJSON() ([]byte, error) { return m.Fields.MarshalJSON() }

// UnmarshalJSON reads a message and checks its role.
func (m *Message) UnmarshalJSON(data []byte) error {
	var o Object
	if err := o.UnmarshalJSON(data); err != nil {
		return err
	}
	msg, err := messageFromObject(o)
	if err != nil {
		return err
	}
	*m = msg
	return nil
}

func messageFromObject(o Object) (Message, error) {
	r, ok := o.Get("role")
	if !ok {
		return Message{}, fmt.Errorf("field \"role\" is missing")
	}
	if _, ok := r.(string); !ok {
		return Message{}, fmt.Errorf("field \"role\": expected a string, got %s", jsonKind(r))
	}
	if c, ok := o.Get("content"); ok {
		switch c.(type) {
		case nil, string, []any:
		default:
			return Message{}, fmt.Errorf("field \"content\": expected a string, a list of parts or null, got %s", jsonKind(c))
		}
	}
	if tc, ok := o.Get("tool_calls"); ok && tc != nil {
		if _, ok := tc.([]any); !ok {
			return Message{}, fmt.Errorf("field \"tool_calls\": expected an array, got %s", jsonKind(tc))
		}
	}
	return Message{Fields: o}, nil
}

// ParseMessages reads a JSON array of messages, keeping every field and its
// order. Errors name the message index and field.
func ParseMessages(raw json.RawMessage) ([]Message, error) {
	v, err := DecodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("messages: expected a JSON array, got %s", jsonKind(v))
	}
	msgs := make([]Message, len(arr))
	for i, e := range arr {
		o, ok := e.(Object)
		if !ok {
			return nil, fmt.Errorf("messages[%d]: expected an object, got %s", i, jsonKind(e))
		}
		if msgs[i], err = messageFromObject(o); err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
	}
	return msgs, nil
}

// ParseTools reads a JSON array of tool definitions, keeping key order, and
// normalises each with NormalizeTool so training data and requests render
// the same tools identically.
func ParseTools(raw json.RawMessage) ([]any, error) {
	v, err := DecodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("tools: expected a JSON array, got %s", jsonKind(v))
	}
	for i, t := range arr {
		arr[i] = NormalizeTool(t)
	}
	return arr, nil
}

// NormalizeTool puts a tool definition in the form chat templates are
// written for, the one transformers' apply_chat_template(tools=...) passes
// them (and OpenAI requests carry): {"type": "function", "function":
// {"name", "description", "parameters"}}. LLaMA-Factory's datasets (glaive
// tool-call data) store the bare function {"name", "description",
// "parameters"}; rendered unwrapped, a model would be trained on a prompt it
// never sees at inference. Other shapes pass through unchanged.
func NormalizeTool(t any) any {
	o, ok := t.(Object)
	if !ok {
		return t
	}
	if _, typed := o.Get("type"); typed {
		return o
	}
	if fn, ok := o.Get("function"); ok {
		if _, isObj := fn.(Object); isObj && len(o) == 1 {
			return Object{{"type", "function"}, {"function", fn}}
		}
		return o
	}
	if _, named := o.Get("name"); named {
		return Object{{"type", "function"}, {"function", o}}
	}
	return o
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func errorf(format string, a ...any) error   { return fmt.Errorf(format, a...) }
func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
