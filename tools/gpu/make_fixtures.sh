#!/usr/bin/env bash
# Runs tools/make_fixtures.py on the GPU machine (transformers 5.17 there) and packs the result into
# $OUT/fixtures.tgz. Unpack it at the repository root: it fills tests/data/{fixtures,models,rope}.
set -euo pipefail
out=${OUT:?run through the device tool, which sets OUT}
work=$(mktemp -d)
PYTHONUNBUFFERED=1 python3 tools/make_fixtures.py --out "$work/tests/data" 2>&1 | tee "$out/make_fixtures.log"
tar czf "$out/fixtures.tgz" -C "$work" tests/data
du -sh "$work/tests/data"/*
