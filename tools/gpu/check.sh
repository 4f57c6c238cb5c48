#!/usr/bin/env bash
# The GPU-machine check (run it for every change to engine or kernel code; paste its table in the note):
#   1. build Release for this machine, run the whole test suite (GPU tests join as the CUDA engine lands);
#   2. regenerate the reference fixtures with transformers and compare them with the committed ones;
#   3. run the benchmarks (CPU engine; tokenizer vs Hugging Face tokenizers, side by side);
#   4. print a short table last.
# Usage, through the device tool (which copies no .git, so name the commit):
#   MLABENCH_COMMIT=<short hash> bash tools/gpu/check.sh      (logs and JSON land in $OUT)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/mlabench-check}
mkdir -p "$out"
jobs=$(nproc)
# PCRE2 / utf8proc development files carried from the Debian machine (tools/gpu/make_deps_prefix.sh).
[ -d .carry/prefix/lib/pkgconfig ] && export PKG_CONFIG_PATH="$PWD/.carry/prefix/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
# The shared data mirror, carried as .carry/shared (cp -r ../shared/tokenizers .carry/shared/), for the tests that use it.
[ -d .carry/shared ] && export MLABENCH_SHARED_DIR="$PWD/.carry/shared"
row() { printf '%-34s %s\n' "$1" "$2" >> "$out/summary.txt"; }
: > "$out/summary.txt"

gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "device" "${gpu:-no GPU} | $(nproc) CPU cores | $(uname -r)"
row "commit" "${MLABENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"

t0=$(date +%s)
if cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLABENCH_NATIVE=ON > "$out/build.log" 2>&1 &&
   cmake --build build-gpu -j "$jobs" >> "$out/build.log" 2>&1; then
  row "build (Release, -march=native)" "ok in $(( $(date +%s) - t0 )) s"
else
  row "build" "FAILED (build.log)"; tail -30 "$out/build.log"; cat "$out/summary.txt"; exit 1
fi

ctest --test-dir build-gpu -j "$jobs" --output-on-failure > "$out/ctest.log" 2>&1
row "tests (ctest)" "$(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
build-gpu/tests/test_reference_logits --gtest_brief=1 2>/dev/null | grep '^\[ parity' > /tmp/mlabench-parity.txt
cat /tmp/mlabench-parity.txt >> "$out/ctest.log"
worst=$(awk '{for(i=1;i<=NF;i++) if($i=="relative") print $(i+1)}' /tmp/mlabench-parity.txt | sort -g | tail -1)
row "logit parity vs transformers f64" "$(wc -l < /tmp/mlabench-parity.txt) runs, worst |err|/max|logit| = ${worst:-n/a}"

if python3 -c 'import transformers' 2>/dev/null; then
  rm -rf /tmp/mlabench-fixtures && PYTHONUNBUFFERED=1 python3 tools/make_fixtures.py --out /tmp/mlabench-fixtures/tests/data \
      > "$out/make_fixtures.log" 2>&1
  row "fixtures regenerated" "$(python3 tools/gpu/compare_fixtures.py tests/data /tmp/mlabench-fixtures/tests/data 2>&1 | tail -1)"
else
  row "fixtures regenerated" "skipped: no transformers on this machine"
fi

build-gpu/bench/bench_cpu_engine --benchmark_format=json --benchmark_out="$out/bench_cpu_engine.json" \
    --benchmark_out_format=json > /tmp/mlabench-bench.log 2>&1
python3 - "$out/bench_cpu_engine.json" >> "$out/summary.txt" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    extra = "  ".join(f"{k} {b[k]:.4g}" for k in ("GB/s", "GFLOP/s", "tokens/s", "weight GB/s") if k in b)
    print(f"{'bench ' + b['name'].split('/')[0]:34s} {b['real_time']:.4g} {b['time_unit']}  {extra}  [{b.get('label', '')}]")
PY
if bash tools/gpu/bench_tokenizer.sh > "$out/bench_tokenizer.log" 2>&1; then
  tail -n +1 "$out/bench_tokenizer.log" | sed 's/^/tokenizer  /' >> "$out/summary.txt"
else
  row "tokenizer benchmark" "FAILED (bench_tokenizer.log)"
fi
row "GPU tests / GPU benchmarks" "none yet: the CUDA engine arrives with its own issue"
echo
echo "================ mlabench GPU-machine check ================"
cat "$out/summary.txt"
