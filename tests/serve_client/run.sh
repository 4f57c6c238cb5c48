#!/usr/bin/env bash
# ctest serve_openai_client: starts `mlabench serve` on an ephemeral loopback port over the tiny model, runs
# client.mjs (the official openai npm client) against it, stops the server. Exit codes: 0 pass, 1 a check failed
# (or the server did not start), 77 skipped (node or node_modules missing: `npm ci` in tests/serve_client).
# Usage: run.sh MLABENCH_BINARY MODEL_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 model=$2
if ! command -v node >/dev/null || [ ! -d "$here/node_modules/openai" ]; then
  echo "SKIPPED: node_modules missing (node: $(command -v node || echo none)). HINT: run npm ci in tests/serve_client"
  exit 77
fi
work=$(mktemp -d)
"$bin" serve --model "$model" --port 0 --threads 1 --served-model-name tiny >"$work/out" 2>"$work/err" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
url=""
for _ in $(seq 1 300); do
  url=$(grep -o 'http://[0-9.:]*' "$work/out" 2>/dev/null | head -1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "FAILED: mlabench serve did not start"; cat "$work/err"; exit 1
fi
echo "server at $url"
node "$here/client.mjs" "$url/v1" tiny
rc=$?
[ $rc -eq 0 ] || { echo "FAILED: client.mjs exited $rc; server stderr:"; cat "$work/err"; exit 1; }
