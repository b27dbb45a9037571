#!/usr/bin/python3
"""Render chat/testdata/jinja/cases.json with Python's jinja2, configured as
transformers configures it for chat templates, into goldens.json.

Usage: scripts/templates/render.py [cases.json [goldens.json]]

Each case is {name, template, vars}. Like transformers, messages defaults to
an empty list, tools and documents to None and add_generation_prompt to
False; vars override them. The golden of a case is {"output": text} or
{"error": "ExceptionType: message"}; a raise_exception call gives
"TemplateError: message".
"""

import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime(2024, 7, 26)


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


class GenerationTag(Extension):
    """{% generation %}...{% endgeneration %}, which transformers' chat
    template environment accepts (it marks assistant text for
    return_assistant_tokens_mask) and renders as its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, case):
    variables = {"messages": [], "tools": None, "documents": None,
                 "add_generation_prompt": False}
    variables.update(case.get("vars") or {})
    try:
        tmpl = env.from_string(case["template"])
        return {"output": tmpl.render(**variables)}
    except Exception as e:  # noqa: BLE001 - any jinja2 failure is a golden
        return {"error": "%s: %s" % (type(e).__name__, e)}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "..", "chat", "testdata", "jinja")
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(data, "cases.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(data, "goldens.json")
    with open(src, encoding="utf-8") as f:
        cases = json.load(f)
    env = environment()
    out = {}
    for case in cases:
        if case["name"] in out:
            sys.exit("duplicate case name %r" % case["name"])
        out[case["name"]] = render(env, case)
    out["_meta"] = {"jinja2": jinja2.__version__, "fixed_now": FIXED_NOW.isoformat()}
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    errors = sum(1 for v in out.values() if "error" in v)
    print("%d cases, %d raised" % (len(cases), errors))


if __name__ == "__main__":
    main()
