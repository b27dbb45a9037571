"""Encoding speed of the Hugging Face tokenizers library on a text file, for
comparison with gotune's BenchmarkEncodeFile on the same machine and input.

Usage: python3 hf_tokenizer_speed.py TOKENIZER_JSON TEXT_FILE
Prints one JSON line: MB/s encoding the whole text at once and line by line
(encode per line, single thread; and encode_batch, the library's threads).
"""
import json
import sys
import time

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
lines = text.split("\n")
mb = len(text.encode("utf-8")) / 1e6


def best(fn, n=5):
    t = float("inf")
    for _ in range(n):
        s = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - s)
    return t


out = {
    "bench": "hf_tokenizers_encode", "tokenizer": sys.argv[1], "mb": round(mb, 3),
    "whole_mb_s": round(mb / best(lambda: tok.encode(text, add_special_tokens=False)), 2),
    "lines_mb_s": round(mb / best(lambda: [tok.encode(l, add_special_tokens=False) for l in lines]), 2),
    "batch_mb_s": round(mb / best(lambda: tok.encode_batch(lines, add_special_tokens=False)), 2),
}
print(json.dumps(out))
