#!/usr/bin/python3
"""Collect published chat templates into .templates-real/ (git-ignored) for
real_templates.py. Templates made by model publishers are not ours: they
are test input on this machine only and are never committed.

Usage: scripts/templates/collect_real.py SOURCE ...

Each SOURCE is one of:
  - huggingface.js's packages/ollama-utils/src/chat-template-automap.ts
    (its "gguf" strings are the chat templates of GGUF models on the Hub);
  - a folder of *.jinja files (chujiezheng/chat_templates' chat_templates/,
    llama.cpp's models/templates/);
  - a single *.jinja file.

Templates already present (same text) are skipped; names are the model or
file name with unsafe characters replaced, prefixed by the source folder's
name when it would collide.
"""

import hashlib
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEST = os.path.join(ROOT, ".templates-real")

JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'",
              "`": "`", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def js_string(src, start):
    """The JavaScript string literal starting at src[start] (a quote), decoded."""
    quote, i, out = src[start], start + 1, []
    while src[i] != quote:
        c = src[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = src[i + 1]
        if e in JS_ESCAPES:
            out.append(JS_ESCAPES[e])
            i += 2
        elif e == "u" and src[i + 2] == "{":
            end = src.index("}", i)
            out.append(chr(int(src[i + 3:end], 16)))
            i = end + 1
        elif e == "u":
            out.append(chr(int(src[i + 2:i + 6], 16)))
            i += 6
        elif e == "x":
            out.append(chr(int(src[i + 2:i + 4], 16)))
            i += 4
        else:
            out.append(e)
            i += 2
    return "".join(out)


def from_automap(path):
    with open(path, encoding="utf-8") as f:
        src = f.read()
    for m in re.finditer(r'model:\s*"([^"]+)",\s*gguf:\s*', src):
        name = m.group(1).replace("library/", "")
        yield name, js_string(src, m.end())


def from_folder(path):
    for fn in sorted(os.listdir(path)):
        if fn.endswith(".jinja"):
            with open(os.path.join(path, fn), encoding="utf-8") as f:
                yield fn[:-len(".jinja")], f.read()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.makedirs(DEST, exist_ok=True)
    # real_templates.py also renders ../shared's templates: skip those
    seen = set()
    for d in (DEST, os.path.join(ROOT, "..", "shared", "testdata", "third_party", "chat_templates")):
        for fn in os.listdir(d) if os.path.isdir(d) else []:
            if fn.endswith(".jinja"):
                with open(os.path.join(d, fn), "rb") as f:
                    seen.add(hashlib.sha256(f.read()).hexdigest())
    added = 0
    for source in sys.argv[1:]:
        if source.endswith(".ts"):
            items, prefix = from_automap(source), ""
        elif os.path.isdir(source):
            items, prefix = from_folder(source), os.path.basename(os.path.normpath(source))
        else:
            items = [(os.path.basename(source)[:-len(".jinja")], open(source, encoding="utf-8").read())]
            prefix = ""
        for name, text in items:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            base = re.sub(r"[^A-Za-z0-9._-]", "_", name)
            path = os.path.join(DEST, base + ".jinja")
            if os.path.exists(path) and prefix:
                path = os.path.join(DEST, prefix + "-" + base + ".jinja")
            n = 2
            while os.path.exists(path):
                path = os.path.join(DEST, "%s-%d.jinja" % (base, n))
                n += 1
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            added += 1
    print("%d templates added to %s" % (added, DEST))


if __name__ == "__main__":
    main()
