package gguf

import (
	"fmt"
	"strings"
)

// ModelfileOptions describe an Ollama Modelfile.
type ModelfileOptions struct {
	// From is the GGUF model path (or an Ollama model name).
	From string
	// Adapter is an optional LoRA adapter GGUF path.
	Adapter string
	// Family picks the chat template and stop tokens: qwen3, qwen2, llama3,
	// mistral, phi3 or gemma.
	Family string
	// System is an optional default system prompt.
	System string
	// Parameters are extra PARAMETER lines (name → value), written sorted
	// after the stop lines.
	Parameters [][2]string
}

// ChatML with tool calls as Qwen2.5/Qwen3 format them: tools listed in the
// system turn inside <tools>, calls as JSON inside <tool_call>, results as
// user turns inside <tool_response>.
const chatMLTemplate = `{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ json .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ else if eq $m.Role "assistant" }}<|im_start|>assistant
{{- if $m.Content }}
{{ $m.Content }}
{{- end }}
{{- range $m.ToolCalls }}
<tool_call>
{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq $m.Role "tool" }}<|im_start|>user
<tool_response>
{{ $m.Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne $m.Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}`

// Llama 3.1 header format; tool results come back in the ipython role and
// calls are a JSON object with name and parameters. BOS is added by the
// tokenizer, not the template.
const llama3Template = `{{- if .Messages }}
{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

You have access to the following functions. To call a function, respond with JSON of the form {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.
{{- range .Tools }}

{{ json . }}
{{- end }}
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ $m.Content }}<|eot_id|>
{{- else if eq $m.Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if $m.ToolCalls }}

{{ range $j, $c := $m.ToolCalls }}{{ if $j }}
{{ end }}{"name": "{{ $c.Function.Name }}", "parameters": {{ json $c.Function.Arguments }}}
{{- end }}
{{- else }}

{{ $m.Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq $m.Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ $m.Content }}<|eot_id|>
{{- end }}
{{- if and (ne $m.Role "assistant") $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>

{{ .Prompt }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}{{ .Response }}{{ if .Response }}<|eot_id|>{{ end }}`

// Mistral instruct format (v3 tokens for tools): the system prompt and the
// tool list go with the last user turn, answers end with </s>.
const mistralTemplate = `{{- if .Messages }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}
{{- if and $.Tools $last }}[AVAILABLE_TOOLS] {{ json $.Tools }}[/AVAILABLE_TOOLS]
{{- end }}[INST] {{ if and $.System $last }}{{ $.System }}

{{ end }}{{ $m.Content }}[/INST]
{{- else if eq $m.Role "assistant" }}
{{- if $m.Content }} {{ $m.Content }}
{{- else if $m.ToolCalls }}[TOOL_CALLS] [
{{- range $j, $c := $m.ToolCalls }}{{ if $j }}, {{ end }}{"name": "{{ $c.Function.Name }}", "arguments": {{ json $c.Function.Arguments }}}
{{- end }}]
{{- end }}{{ if not $last }}</s>{{ end }}
{{- else if eq $m.Role "tool" }}[TOOL_RESULTS] {"content": {{ json $m.Content }}}[/TOOL_RESULTS]
{{- end }}
{{- end }}
{{- else }}[INST] {{ if .System }}{{ .System }}

{{ end }}{{ .Prompt }}[/INST]
{{- end }}{{ if .Response }} {{ .Response }}</s>{{ end }}`

// Phi-3's turns: <|system|>, <|user|>, <|assistant|>, each closed by <|end|>.
const phi3Template = `{{- if .Messages }}
{{- if .System }}<|system|>
{{ .System }}<|end|>
{{ end }}
{{- range .Messages }}{{ if ne .Role "system" }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}{{ end }}<|assistant|>
{{ else }}
{{- if .System }}<|system|>
{{ .System }}<|end|>
{{ end }}{{ if .Prompt }}<|user|>
{{ .Prompt }}<|end|>
{{ end }}<|assistant|>
{{ end }}{{ .Response }}{{ if .Response }}<|end|>{{ end }}`

// Gemma's turns: user and model, the system prompt in front of the first
// user turn (Gemma has no system role).
const gemmaTemplate = `{{- if .Messages }}
{{- $sys := .System }}
{{- range $m := .Messages }}
{{- if eq $m.Role "user" }}<start_of_turn>user
{{ if $sys }}{{ $sys }}

{{ $sys = "" }}{{ end }}{{ $m.Content }}<end_of_turn>
{{ else if eq $m.Role "assistant" }}<start_of_turn>model
{{ $m.Content }}<end_of_turn>
{{ end }}
{{- end }}<start_of_turn>model
{{ else }}<start_of_turn>user
{{ if .System }}{{ .System }}

{{ end }}{{ .Prompt }}<end_of_turn>
<start_of_turn>model
{{ end }}{{ .Response }}{{ if .Response }}<end_of_turn>{{ end }}`

type chatFamily struct {
	template string
	stops    []string
}

var families = map[string]chatFamily{
	"qwen3":   {chatMLTemplate, []string{"<|im_start|>", "<|im_end|>", "<|endoftext|>"}},
	"qwen2":   {chatMLTemplate, []string{"<|im_start|>", "<|im_end|>", "<|endoftext|>"}},
	"llama3":  {llama3Template, []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
	"mistral": {mistralTemplate, []string{"[INST]", "[/INST]", "</s>"}},
	"phi3":    {phi3Template, []string{"<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>"}},
	"gemma":   {gemmaTemplate, []string{"<start_of_turn>", "<end_of_turn>"}},
}

// Modelfile returns the text of an Ollama Modelfile.
func Modelfile(o ModelfileOptions) (string, error) {
	fam, ok := families[o.Family]
	if !ok {
		return "", fmt.Errorf("modelfile: family %q unknown (qwen3, qwen2, llama3, mistral, phi3, gemma)", o.Family)
	}
	from, err := modelfileArg("FROM", o.From)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s\n", from)
	if o.Adapter != "" {
		a, err := modelfileArg("ADAPTER", o.Adapter)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "ADAPTER %s\n", a)
	}
	fmt.Fprintf(&b, "TEMPLATE \"\"\"%s\"\"\"\n", fam.template)
	for _, s := range fam.stops {
		fmt.Fprintf(&b, "PARAMETER stop %q\n", s)
	}
	for _, p := range o.Parameters {
		if p[0] == "" || strings.ContainsAny(p[0]+p[1], "\n\r") || strings.ContainsAny(p[0], " \t\"") {
			return "", fmt.Errorf("modelfile: PARAMETER %q %q: names are single words and values one line", p[0], p[1])
		}
		fmt.Fprintf(&b, "PARAMETER %s %s\n", p[0], p[1])
	}
	if o.System != "" {
		if strings.Contains(o.System, `"""`) {
			return "", fmt.Errorf(`modelfile: SYSTEM text contains """, which ends a Modelfile block`)
		}
		fmt.Fprintf(&b, "SYSTEM \"\"\"%s\"\"\"\n", o.System)
	}
	return b.String(), nil
}

func modelfileArg(cmd, v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("modelfile: %s needs a value", cmd)
	}
	if strings.ContainsAny(v, "\n\r\"") {
		return "", fmt.Errorf("modelfile: %s %q: a newline or quote cannot be written", cmd, v)
	}
	if strings.ContainsAny(v, " \t") {
		return `"` + v + `"`, nil
	}
	return v, nil
}
