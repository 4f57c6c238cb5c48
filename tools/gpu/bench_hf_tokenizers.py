#!/usr/bin/env python3
"""Hugging Face `tokenizers` throughput on a JSONL file, for the side-by-side comparison in
tools/gpu/bench_tokenizer.sh. Threads are set by RAYON_NUM_THREADS before the import (1 = single-threaded).
Encodes with encode_batch(add_special_tokens=False), best of --repeat runs; prints one JSON line."""
import argparse
import json
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("--tokenizer", required=True)
ap.add_argument("--jsonl", required=True)
ap.add_argument("--repeat", type=int, default=3)
args = ap.parse_args()

import tokenizers  # noqa: E402  (after RAYON_NUM_THREADS is in the environment)

tok = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
texts = [json.loads(line)["text"] for line in open(args.jsonl, encoding="utf-8")]
n_bytes = sum(len(t.encode("utf-8")) for t in texts)
best, n_tokens = 1e30, 0
for _ in range(args.repeat):
    t0 = time.perf_counter()
    enc = tok.encode_batch(texts, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
    n_tokens = sum(len(e.ids) for e in enc)
threads = os.environ.get("RAYON_NUM_THREADS", str(os.cpu_count()))
print(json.dumps({"implementation": f"tokenizers {tokenizers.__version__}", "threads": int(threads),
                  "bytes": n_bytes, "tokens": n_tokens, "mb_s": n_bytes / best / 1e6, "tokens_s": n_tokens / best}))
