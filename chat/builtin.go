package chat

import (
	"fmt"
	"sort"
	"strings"
)

// Built-in templates for models without one, named as LLaMA-Factory's
// `template:` values. Each marks the trained assistant text (content and
// end-of-turn) with {% generation %} so spans need no inference.

type builtin struct {
	src      string
	bos, eos string
	stops    []string
}

// chatmlTools renders Qwen-style tool definitions into the system turn.
const chatmlTools = `{%- macro tools_block() -%}
{{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' -}}{{- tool | tojson -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}
{%- endmacro -%}
{%- macro tool_calls(message, content) -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- if content or not loop.first %}{{ '\n' }}{% endif -%}
{{- '<tool_call>\n{"name": "' + fn.name + '", "arguments": ' -}}
{%- if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{%- endmacro -%}
`

// chatmlBody is ChatML with Qwen tool calls; default_system is set by the
// variant, think selects the reasoning handling of LLaMA-Factory's qwen3
// template: in training every assistant turn carries its <think> block
// (empty when the data has no reasoning) as part of the answer; with
// enable_thinking false every turn gets the empty block before the answer,
// outside the trained span. Prompts for generation render past turns the
// same way, so a prompt is exactly the start of a training sample
// (LLaMA-Factory's inference drops past turns' reasoning instead).
const chatmlBody = `{%- set sys = messages[0].content if messages and messages[0].role == 'system' else default_system -%}
{%- if sys or tools -%}
{{- '<|im_start|>system\n' + (sys if sys else '') -}}
{%- if tools %}{{ tools_block() }}{% endif -%}
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- set nothink = think and enable_thinking is defined and enable_thinking is false -%}
{%- for m in messages -%}
{%- if m.role == 'system' and loop.first -%}
{%- elif m.role == 'assistant' -%}
{%- set content = m.content if m.content is string else '' -%}
{%- set reasoning = m.reasoning_content if m.reasoning_content is string else '' -%}
{%- if think and not reasoning and '</think>' in content -%}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\n') -%}
{%- set content = content.split('</think>')[-1].lstrip('\n') -%}
{%- endif -%}
{{- '<|im_start|>assistant\n' -}}
{%- if nothink %}{{ '<think>\n\n</think>\n\n' }}{% endif -%}
{%- generation -%}
{%- if think and not nothink -%}
{{- '<think>\n' + reasoning + '\n</think>\n\n' -}}
{%- endif -%}
{{- content -}}
{%- if m.tool_calls %}{{ tool_calls(m, content) }}{% endif -%}
{{- '<|im_end|>\n' -}}
{%- endgeneration -%}
{%- elif m.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{ '<|im_start|>user' }}{% endif -%}
{{- '\n<tool_response>\n' + m.content + '\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{ '<|im_end|>\n' }}{% endif -%}
{%- else -%}
{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if nothink %}{{ '<think>\n\n</think>\n\n' }}{% endif -%}
{%- endif -%}
`

func chatml(defaultSystem string, think bool) string {
	t := "false"
	if think {
		t = "true"
	}
	return "{%- set default_system = " + libString(defaultSystem) + " -%}{%- set think = " + t + " -%}\n" + chatmlTools + chatmlBody
}

var builtins = map[string]builtin{
	// LLaMA-Factory's "default": plain Human/Assistant turns, each closed
	// by the tokenizer's EOS (filled in from the tokenizer when loaded).
	"default": {src: `{%- for m in messages -%}
{%- if m.role == 'system' -%}
{{- 'System: ' + m.content + eos_token + '\n' -}}
{%- elif m.role == 'user' or m.role == 'tool' -%}
{{- 'Human: ' + m.content + eos_token + '\nAssistant:' -}}
{%- elif m.role == 'assistant' -%}
{%- if m.tool_calls -%}
{{- raise_exception('template default: tool calls are not supported; use the model\'s own template (omit template) or a tool-aware one such as qwen3') -}}
{%- endif -%}
{%- generation -%}{{- m.content + eos_token + '\n' -}}{%- endgeneration -%}
{%- endif -%}
{%- endfor -%}
`},
	"qwen3":         {src: chatml("", true), eos: "<|im_end|>", stops: []string{"<|im_end|>", "<|endoftext|>"}},
	"qwen3_nothink": {src: chatml("", false), eos: "<|im_end|>", stops: []string{"<|im_end|>", "<|endoftext|>"}},
	"qwen":          {src: chatml("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", false), eos: "<|im_end|>", stops: []string{"<|im_end|>", "<|endoftext|>"}},
	"chatml":        {src: chatml("", false), eos: "<|im_end|>", stops: []string{"<|im_end|>"}},
	"llama3": {bos: "<|begin_of_text|>", eos: "<|eot_id|>", stops: []string{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}, src: `{{- bos_token -}}
{%- for m in messages -%}
{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' -}}
{%- if m.role == 'assistant' -%}
{%- generation -%}{{- m.content | trim -}}{{- '<|eot_id|>' -}}{%- endgeneration -%}
{%- else -%}
{{- m.content | trim -}}{{- '<|eot_id|>' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif -%}
`},
	"mistral": {bos: "<s>", eos: "</s>", stops: []string{"</s>"}, src: `{{- bos_token -}}
{%- set sys = messages[0].content if messages and messages[0].role == 'system' else '' -%}
{%- set ns = namespace(first=true) -%}
{%- for m in messages -%}
{%- if m.role == 'user' -%}
{{- '[INST] ' + (sys + '\n\n' if ns.first and sys else '') + m.content + '[/INST]' -}}
{%- set ns.first = false -%}
{%- elif m.role == 'assistant' -%}
{%- generation -%}{{- m.content -}}{{- eos_token -}}{%- endgeneration -%}
{%- elif m.role != 'system' -%}
{{- raise_exception('mistral template: unsupported role ' + m.role) -}}
{%- endif -%}
{%- endfor -%}
`},
	"gemma": {bos: "<bos>", eos: "<end_of_turn>", stops: []string{"<end_of_turn>", "<eos>"}, src: `{{- bos_token -}}
{%- set sys = messages[0].content if messages and messages[0].role == 'system' else '' -%}
{%- set ns = namespace(first=true) -%}
{%- for m in messages -%}
{%- if m.role == 'user' -%}
{{- '<start_of_turn>user\n' + (sys + '\n\n' if ns.first and sys else '') + m.content + '<end_of_turn>\n' -}}
{%- set ns.first = false -%}
{%- elif m.role == 'assistant' -%}
{{- '<start_of_turn>model\n' -}}
{%- generation -%}{{- m.content + '<end_of_turn>\n' -}}{%- endgeneration -%}
{%- elif m.role != 'system' -%}
{{- raise_exception('gemma template: unsupported role ' + m.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif -%}
`},
	"deepseek3": {bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>", stops: []string{"<｜end▁of▁sentence｜>"}, src: `{{- bos_token -}}
{%- if messages and messages[0].role == 'system' %}{{ messages[0].content }}{% endif -%}
{%- for m in messages -%}
{%- if m.role == 'user' -%}
{{- '<｜User｜>' + m.content -}}
{%- elif m.role == 'assistant' -%}
{{- '<｜Assistant｜>' -}}
{%- generation -%}{{- m.content + '<｜end▁of▁sentence｜>' -}}{%- endgeneration -%}
{%- elif m.role != 'system' -%}
{{- raise_exception('deepseek3 template: unsupported role ' + m.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif -%}
`},
}

// BuiltinNames lists the built-in template names.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtin returns a built-in template by LLaMA-Factory template name.
func Builtin(name string) (*Template, error) {
	b, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("unknown built-in chat template %q (have %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	t, err := Parse("builtin:"+name, b.src)
	if err != nil {
		return nil, fmt.Errorf("built-in template %s: %w", name, err)
	}
	t.BOS, t.EOS, t.stops = b.bos, b.eos, b.stops
	return t, nil
}
