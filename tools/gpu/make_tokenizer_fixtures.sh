#!/usr/bin/env bash
# Runs tools/make_tokenizer_fixtures.py on the GPU machine and packs the result into $OUT/tokenizer_fixtures.tgz
# (unpack at the repository root: tests/data/tokenizer/... and tests/data/models/...).
# DeepSeek-V2's tokenizer is not in the repository: the caller carries it in .carry/shared/tokenizers/deepseek-v2 (ignored
# folder) from the local mirror ../shared/tokenizers/deepseek-v2.
set -euo pipefail
out=${OUT:?run through the device tool, which sets OUT}
work=$(mktemp -d)
PYTHONUNBUFFERED=1 python3 tools/make_tokenizer_fixtures.py --deepseek .carry/shared/tokenizers/deepseek-v2 --out "$work/tests/data" \
  2>&1 | tee "$out/make_tokenizer_fixtures.log"
tar czf "$out/tokenizer_fixtures.tgz" -C "$work" tests/data
du -sh "$work/tests/data"/* "$work/tests/data/tokenizer"/*
