#!/usr/bin/python3
"""Random expressions against Python's jinja2: a differential check of
gotune's template engine beyond the hand-written corpus.

Usage: scripts/templates/fuzz.py [SEED [COUNT [statements]]]

Builds COUNT (default 3000) random expressions from literals, variables,
operators, filters, tests, methods and subscripts (with "statements",
small templates of for/if/set/macro/namespace/with around them), renders each with
jinja2 (render.py's environment) and with gotune (gorender), and prints
the cases that differ. Cases and goldens go to a temporary folder; a
difference worth keeping becomes a case in make_cases.py.
"""

import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render import environment, render  # noqa: E402

ATOMS = ["1", "0", "-3", "2.5", "0.1", "'ab'", "''", "'A b'", "none", "true", "false",
         "[1, 2]", "[]", "['b', 'a']", "{'a': 1}", "{}", "(1, 'x')", "x", "s", "l", "d", "n",
         "missing", "10**20", "s.split()", "s.upper()", "l[1:]", "d.items() | list", "d.get('k')",
         "l[0]", "s[1]", "'{}-{}'.format(x, s)", "'%s' % x", "range(3) | list", "namespace(a=1).a",
         "dict(a=x)", "s.startswith('h')", "l | sort", "d.keys() | list", "s.replace('e', 'E')"]
BINARY = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or", "**"]
FILTERS = ["length", "string", "list", "first", "last", "lower", "upper", "trim", "title",
           "capitalize", "tojson", "int", "float", "abs", "round", "join", "join(',')", "sort",
           "unique | list", "reverse | list", "sum", "max", "min", "items | list", "dictsort",
           "default('z')", "default('z', true)", "select | list", "reject | list",
           "map('string') | list", "count", "wordcount", "center(6)", "indent(2)", "escape",
           "truncate(4, leeway=0)", "replace('a', 'b')", "batch(2) | list", "slice(2) | list",
           "format", "urlencode", "striptags", "float | round(1)", "string | length",
           "tojson(indent=1)", "groupby(0) | list", "attr('a')", "filesizeformat", "pprint",
           "wordwrap(5)", "items | list"]
TESTS = ["defined", "none", "string", "number", "integer", "float", "mapping", "iterable",
         "sequence", "boolean", "odd", "even", "lower", "upper", "true", "false",
         "divisibleby(3)", "in([1, 'ab'])", "eq(1)", "gt(0)", "sameas(none)"]
VARS = {"x": 3, "s": "hi There", "l": [3, 1, 2], "d": {"k": "v", "a": 2}, "n": None}


def expr(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice(ATOMS)
    if r < 0.55:
        return "(%s %s %s)" % (expr(rng, depth + 1), rng.choice(BINARY), expr(rng, depth + 1))
    if r < 0.8:
        return "(%s | %s)" % (expr(rng, depth + 1), rng.choice(FILTERS))
    if r < 0.9:
        return "(%s is %s%s)" % (expr(rng, depth + 1), rng.choice(["", "not "]), rng.choice(TESTS))
    return "(%s if %s else %s)" % (expr(rng, depth + 1), expr(rng, depth + 1), expr(rng, depth + 1))


def statement(rng):
    e = lambda: expr(rng, 1)  # noqa: E731
    shapes = [
        lambda: "{%% for i in %s %%}[{{ i }}|{{ loop.index }}|{{ %s }}]{%% else %%}empty{%% endfor %%}" % (e(), e()),
        lambda: "{%% if %s %%}a{%% elif %s %%}b{%% else %%}c{%% endif %%}" % (e(), e()),
        lambda: "{%% set v = %s %%}{{ v }}|{{ v is defined }}" % e(),
        lambda: "{%% macro m(a, b=%s) %%}<{{ a }}|{{ b }}>{%% endmacro %%}{{ m(%s) }}{{ m(1, %s) }}" % (e(), e(), e()),
        lambda: "{%% for k, w in (%s) | dictsort %%}{{ k }}={{ w }};{%% endfor %%}" % e(),
        lambda: "{%% set ns = namespace(t=%s) %%}{%% for i in l %%}{%% set ns.t = ns.t ~ i %%}{%% endfor %%}{{ ns.t }}" % e(),
        lambda: "{%% for i in l if %s %%}{{ loop.index }}{{ i }}{%% endfor %%}" % e().replace("x", "i"),
        lambda: "{%% with q = %s %%}{{ q }}{%% set x = 9 %%}{%% endwith %%}{{ x }}" % e(),
    ]
    return rng.choice(shapes)()


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = random.Random(seed)
    cases, seen = [], set()
    statements = len(sys.argv) > 3 and sys.argv[3] == "statements"
    while len(cases) < count:
        t = statement(rng) if statements else "{{ " + expr(rng) + " }}"
        if t not in seen:
            seen.add(t)
            cases.append({"name": "fuzz_%d_%04d" % (seed, len(cases)), "template": t, "vars": VARS})
    env = environment()
    # each render gets its own copy of the variables: jinja2's indent
    # extends a list in place (s += "\n"), which would leak into later cases
    goldens = {c["name"]: render(env, json.loads(json.dumps(c))) for c in cases}
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    with tempfile.TemporaryDirectory() as tmp:
        cpath, gpath = os.path.join(tmp, "cases.json"), os.path.join(tmp, "goldens.json")
        with open(cpath, "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False)
        with open(gpath, "w", encoding="utf-8") as f:
            json.dump(goldens, f, ensure_ascii=False)
        run = subprocess.run(["go", "run", "./scripts/templates/gorender", cpath, gpath], cwd=root,
                             capture_output=True, text=True)
    templates = {c["name"]: c["template"] for c in cases}
    for line in run.stdout.splitlines():
        print(line)
        if line.startswith("DIFF "):
            name = line[len("DIFF "):].split(":", 1)[0]
            print("    template: %s" % templates.get(name, "?"))
    sys.stderr.write(run.stderr if run.returncode not in (0, 1) else "")
    sys.exit(run.returncode)

if __name__ == "__main__":
    main()
