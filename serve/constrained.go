package serve

import (
	"encoding/json"
	"errors"
	"fmt"

	"gotune/chat"
	"gotune/constrain"
)

// outputSpec is what a chat request asks the output to be, checked before
// any engine is taken: a JSON value (response_format) or a tool call
// (tool_choice "required" or a named function). The grammar itself is made
// once the prompt shows whether the reply starts inside a <think> block.
type outputSpec struct {
	value    *constrain.Node   // response_format json_object / json_schema
	calls    []*constrain.Node // tool_choice required/named: one node per tool, in the format's keys
	tools    []string          // their names, for the calls' nodes
	parallel bool              // more than one call may follow
}

func (o *outputSpec) active() bool { return o.value != nil || len(o.tools) > 0 }

// parseResponseFormat reads OpenAI's response_format: {"type": "text"},
// {"type": "json_object"}, or {"type": "json_schema", "json_schema":
// {"name", "description", "schema", "strict"}}. A schema keyword the
// recogniser does not enforce is a 400 naming it, strict or not: the
// output would otherwise be said to match a schema it was never held to.
func parseResponseFormat(raw json.RawMessage) (*constrain.Node, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Schema      json.RawMessage `json:"schema"`
			Strict      *bool           `json:"strict"`
		} `json:"json_schema"`
	}
	if err := decodeStrict(raw, &rf); err != nil {
		if f, ok := unknownField(err); ok {
			return nil, invalid("response_format", "response_format: unknown field %q", f)
		}
		return nil, invalid("response_format", "response_format must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}: %v", err)
	}
	switch rf.Type {
	case "text":
		if rf.JSONSchema != nil {
			return nil, invalid("response_format", "response_format: json_schema goes with type \"json_schema\"")
		}
		return nil, nil
	case "json_object":
		if rf.JSONSchema != nil {
			return nil, invalid("response_format", "response_format: json_schema goes with type \"json_schema\"")
		}
		return constrain.AnyObject(), nil
	case "json_schema":
		if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 || string(rf.JSONSchema.Schema) == "null" {
			return nil, invalid("response_format", "response_format: type \"json_schema\" needs json_schema.schema")
		}
		n, err := constrain.CompileSchema(rf.JSONSchema.Schema)
		if err != nil {
			return nil, schemaError("response_format", "response_format.json_schema.schema", err)
		}
		return n, nil
	}
	return nil, invalid("response_format", "response_format.type must be \"text\", \"json_object\" or \"json_schema\", got %q", rf.Type)
}

func schemaError(param, where string, err error) error {
	var se *constrain.SchemaError
	if errors.As(err, &se) && se.Keyword != "" {
		return invalid(param, "%s: %v (keywords enforced: type, properties, required, additionalProperties, items, minItems, maxItems, enum, const, anyOf, oneOf, local $ref/$defs)", where, err)
	}
	return invalid(param, "%s: %v", where, err)
}

// toolCallSpec compiles the parameters schema of each tool a forced
// tool_choice leaves on offer.
func toolCallSpec(tools []any, format ToolFormat) ([]*constrain.Node, []string, error) {
	argKey := "arguments"
	if format == FormatLlama3 {
		argKey = "parameters"
	}
	var nodes []*constrain.Node
	var names []string
	for i, t := range tools {
		name, err := toolName(t)
		if err != nil {
			return nil, nil, invalid(fmt.Sprintf("tools[%d]", i), "tools[%d]: %v", i, err)
		}
		var params *constrain.Node
		fn, _ := t.(chat.Object).Get("function")
		if p, ok := fn.(chat.Object).Get("parameters"); ok && p != nil {
			raw, err := json.Marshal(p)
			if err != nil {
				return nil, nil, invalid(fmt.Sprintf("tools[%d]", i), "tools[%d].function.parameters: %v", i, err)
			}
			if params, err = constrain.CompileSchema(raw); err != nil {
				return nil, nil, schemaError("tools", fmt.Sprintf("tools[%d].function.parameters (%s)", i, name), err)
			}
		}
		nodes = append(nodes, constrain.ToolCall(name, params, argKey))
		names = append(names, name)
	}
	return nodes, names, nil
}

// grammar is the output's grammar for a model writing tool calls in
// format. inThink: the prompt opened a <think> block, which the reply
// closes before the constrained part; mayThink: the reply may open and
// close one itself first. Reasoning is free text, as with vLLM's
// reasoning parsers: the constraint is on the answer.
func (o *outputSpec) grammar(format ToolFormat, inThink, mayThink bool) *constrain.Grammar {
	var head []constrain.Item
	switch {
	case inThink:
		head = append(head, constrain.Until(thinkClose))
	case mayThink:
		head = append(head, constrain.WS(), constrain.Block(thinkOpen, thinkClose))
	}
	head = append(head, constrain.WS())
	if len(o.calls) == 0 {
		return constrain.NewGrammar(append(head, constrain.Val(o.value)), nil)
	}
	call := constrain.AnyOf(o.calls...)
	var one, again []constrain.Item
	switch format {
	case FormatLlama3:
		// Bare JSON objects, several joined by ';'.
		one = []constrain.Item{constrain.Val(call)}
		again = []constrain.Item{constrain.WS(), constrain.Lit(";"), constrain.WS(), constrain.Val(call)}
	case FormatMistral:
		// [TOOL_CALLS] is a special token that decoding drops: the text is
		// a JSON array of calls.
		most := 0
		if !o.parallel {
			most = 1
		}
		one = []constrain.Item{constrain.Val(constrain.ArrayOf(call, 1, most))}
	default:
		one = []constrain.Item{constrain.Lit(hermesOpen), constrain.WS(), constrain.Val(call), constrain.WS(), constrain.Lit(hermesEnd)}
		again = append([]constrain.Item{constrain.WS()}, one...)
	}
	if !o.parallel {
		again = nil
	}
	return constrain.NewGrammar(append(head, one...), again)
}

// parseOutputSpec reads what a chat request asks its output to be. A
// forced tool call wins over response_format: the reply is then a call,
// not content.
func parseOutputSpec(req *chatRequest, in chatInput, format ToolFormat) (outputSpec, error) {
	spec := outputSpec{parallel: req.ParallelToolCalls == nil || *req.ParallelToolCalls}
	var err error
	if spec.value, err = parseResponseFormat(req.ResponseFormat); err != nil {
		return spec, err
	}
	if in.forceTool {
		if spec.calls, spec.tools, err = toolCallSpec(in.tools, format); err != nil {
			return spec, err
		}
	}
	return spec, nil
}
