#!/usr/bin/python3
"""Render real chat templates with jinja2 (set up as transformers sets it up,
see render.py) and with gotune, and report byte-equality.

Usage: scripts/templates/real_templates.py [DIR ...]

Each DIR holds *.jinja files (or tokenizer_config.json files with a
chat_template, named NAME.json). Templates published by model makers are
not ours: keep them in a git-ignored folder (default: .templates-real/ at
the repository root, plus ../shared/testdata/third_party/chat_templates when
present); this script writes its cases and goldens into .templates-real/out/
and never into the repository's test data.

Every template is rendered with the conversations below: plain, system and
multi-turn, training form without a generation prompt, tool definitions,
tool calls with their results (OpenAI's content null too), nested tool
schemas and arguments, content as a list of parts, reasoning, and awkward
characters. Where jinja2 raises, gotune must raise the same kind of error
(TypeError, UndefinedError, ...; raise_exception with the same message).
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render import environment, render  # noqa: E402

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}]

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}

CONVERSATIONS = {
    "plain": {"messages": [{"role": "user", "content": "Hello!"}],
              "add_generation_prompt": True},
    "system_multi": {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}], "add_generation_prompt": True},
    "train": {"messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}]},
    "tools_prompt": {"tools": TOOLS, "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Weather in Paris?"}]},
    "tool_calls": {"tools": TOOLS, "messages": [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
         "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "It is 21 °C."}]},
    # As OpenAI's API sends them: arguments a JSON string, content None,
    # two calls in one turn.
    "tool_calls_openai": {"tools": TOOLS, "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21"},
        {"role": "tool", "tool_call_id": "call_2", "content": "25"}]},
    "reasoning": {"enable_thinking": True, "messages": [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": "<think>\nDivisors: none.\n</think>\n\nYes.",
         "reasoning_content": "Divisors: none."},
        {"role": "user", "content": "And 9?"}], "add_generation_prompt": True},
    "no_thinking": {"enable_thinking": False, "add_generation_prompt": True,
                    "messages": [{"role": "user", "content": "Hi"}]},
    "awkward": {"messages": [
        {"role": "user", "content": "Quotes ' \" {{ braces }} {% tag %}\n\ttab — ünïcödé 🦙"},
        {"role": "assistant", "content": "  spaced  \n"}], "add_generation_prompt": True},
}

# Richer tool schemas (arrays, nested objects, enums, no description) and
# content given as a list of parts, as OpenAI and multimodal clients send it.
TOOLS_NESTED = [{
    "type": "function",
    "function": {
        "name": "book",
        "description": "Book rooms.",
        "parameters": {
            "type": "object",
            "properties": {
                "rooms": {"type": "array", "items": {"type": "object", "properties": {
                    "beds": {"type": "integer"}, "view": {"type": "boolean"}}, "required": ["beds"]}},
                "guest": {"type": "object", "properties": {"name": {"type": "string", "description": "Full name"},
                                                            "vip": {"type": "boolean", "nullable": True}}},
                "when": {"type": "string", "enum": ["today", "tomorrow"]},
                "notes": {"type": ["string", "null"]},
            },
            "required": ["rooms", "when"],
        },
    },
}, {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}]

CONVERSATIONS["tools_nested"] = {"tools": TOOLS_NESTED, "add_generation_prompt": True, "messages": [
    {"role": "system", "content": "Book carefully."},
    {"role": "user", "content": "Two rooms for Ana, tomorrow."},
    {"role": "assistant", "content": "Booking.", "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "book", "arguments": {
            "rooms": [{"beds": 2, "view": True}, {"beds": 1}], "guest": {"name": "Ana", "vip": None},
            "when": "tomorrow", "notes": "late \"arrival\" ✓"}}},
        {"id": "call_10", "type": "function", "function": {"name": "ping", "arguments": {}}}]},
    {"role": "tool", "tool_call_id": "call_9", "name": "book", "content": "{\"ok\": true, \"ids\": [1, 2]}"},
    {"role": "tool", "tool_call_id": "call_10", "name": "ping", "content": "pong"},
    {"role": "assistant", "content": "Done: rooms 1 and 2."},
    {"role": "user", "content": "Thanks!"}]}
CONVERSATIONS["content_parts"] = {"add_generation_prompt": True, "messages": [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [{"type": "text", "text": "Hi, "}, {"type": "text", "text": "who are you?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A model."}]},
    {"role": "user", "content": [{"type": "text", "text": "Thanks."}]}]}

# Odd shapes that templates still meet: no messages, an assistant first,
# two system messages, OpenAI's raw string arguments with content "", the
# developer role, an assistant turn to continue (last message).
CONVERSATIONS["empty"] = {"messages": [], "add_generation_prompt": True}
CONVERSATIONS["assistant_first"] = {"messages": [
    {"role": "assistant", "content": "Hi, how can I help?"},
    {"role": "user", "content": "Tell me a joke."}], "add_generation_prompt": True}
CONVERSATIONS["two_systems"] = {"messages": [
    {"role": "system", "content": "Rule one."}, {"role": "system", "content": "Rule two."},
    {"role": "user", "content": "Go."}], "add_generation_prompt": True}
CONVERSATIONS["tool_call_string_args"] = {"tools": TOOLS, "messages": [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abcdefghi", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "name": "get_weather", "content": "-3"},
    {"role": "assistant", "content": "It is -3 °C."}]}
CONVERSATIONS["developer_role"] = {"messages": [
    {"role": "developer", "content": "Answer in French."},
    {"role": "user", "content": "Hello"}], "add_generation_prompt": True}
CONVERSATIONS["continue_last"] = {"messages": [
    {"role": "user", "content": "Count to three."},
    {"role": "assistant", "content": "One, two,"}]}

SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>"}


def templates(dirs):
    out = {}
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            path = os.path.join(d, fn)
            name, ext = os.path.splitext(fn)
            if ext == ".jinja":
                with open(path, encoding="utf-8") as f:
                    out[name] = f.read()
            elif ext == ".json":
                with open(path, encoding="utf-8") as f:
                    cfg = json.load(f)
                t = cfg.get("chat_template") if isinstance(cfg, dict) else None
                if isinstance(t, list):  # named variants: the default one
                    t = next((x["template"] for x in t if x.get("name") == "default"), None)
                if isinstance(t, str):
                    out[name] = t
    return out


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    dirs = sys.argv[1:] or [os.path.join(root, ".templates-real"),
                            os.path.join(root, "..", "shared", "testdata", "third_party", "chat_templates")]
    tmpls = templates(dirs)
    if not tmpls:
        sys.exit("no templates in %s" % ", ".join(dirs))
    cases = []
    for name, src in sorted(tmpls.items()):
        for conv, variables in CONVERSATIONS.items():
            v = dict(SPECIAL)
            v.update(variables)
            cases.append({"name": "%s/%s" % (name, conv), "template": src, "vars": v})
    env = environment()
    goldens = {c["name"]: render(env, c) for c in cases}
    out = os.path.join(root, ".templates-real", "out")
    os.makedirs(out, exist_ok=True)
    cpath, gpath = os.path.join(out, "cases.json"), os.path.join(out, "goldens.json")
    with open(cpath, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    with open(gpath, "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
    raised = sum(1 for g in goldens.values() if "error" in g)
    print("%d templates, %d renders (%d raise in jinja2)" % (len(tmpls), len(cases), raised))
    sys.exit(subprocess.call(["go", "run", "./scripts/templates/gorender", cpath, gpath], cwd=root))


if __name__ == "__main__":
    main()
