#!/usr/bin/env bash
# libFuzzer targets (issue 17; docs/fuzzing.md). Usage: tools/fuzz.sh [SECONDS] [target...]
# Configures build-fuzz with clang (ASan + UBSan + libFuzzer), builds the targets, then for each target replays
# its whole committed corpus (tests/fuzz/corpus/<name>) and fuzzes it for SECONDS (default 30). New inputs go to
# a scratch copy of the corpus, never into the committed one. Exits non-zero on any crash, leak, sanitizer report
# or timeout, printing the reproducer. Env: MLABENCH_FUZZ_JOBS (build -j, default 2), MLABENCH_FUZZ_SCRATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-30}
[[ $# -gt 0 ]] && shift
all_targets=(safetensors config tokenizer sentencepiece chat_template pickle_string manifest report archive serve_request replay task_spec)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
build=$root/build-fuzz
scratch=${MLABENCH_FUZZ_SCRATCH:-$build/fuzz-work}

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
t0=$SECONDS
if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMLABENCH_FUZZ=ON \
    -DMLABENCH_CUDA=OFF -DMLABENCH_BUILD_TESTS=OFF -DMLABENCH_BUILD_BENCHMARKS=OFF >/dev/null
fi
ninja -C "$build" -j "${MLABENCH_FUZZ_JOBS:-2}" "${targets[@]/#/fuzz_}"
echo "fuzz: build took $((SECONDS - t0)) s"

# Set here, not inherited: tools/bootstrap.sh test exports its own for ctest.
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$root/tests/fuzz/corpus/$t
  [[ -d $corpus ]] || { echo "fuzz: no corpus $corpus" >&2; exit 2; }
  work=$scratch/$t
  rm -rf "$work"; mkdir -p "$work/corpus" "$work/artifacts"
  cp "$corpus"/* "$work/corpus/"
  common=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/")
  # Replay: every committed input once (earlier findings must stay fixed).
  if ! "$build/fuzz_$t" "${common[@]}" -runs=0 "$corpus" >"$work/replay.log" 2>&1; then
    echo "fuzz: $t: corpus replay FAILED"; tail -40 "$work/replay.log"; failed+=("$t(replay)"); continue
  fi
  rc=0
  "$build/fuzz_$t" "${common[@]}" -max_total_time="$secs" -print_final_stats=1 "$work/corpus" \
    >"$work/fuzz.log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  crashes=$(find "$work/artifacts" -type f | wc -l)
  summary+=("$(printf '%-14s execs=%-9s cov=%-6s ft=%-6s crashes=%s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes")")
  if [[ $rc -ne 0 || $crashes -ne 0 ]]; then
    echo "fuzz: $t FAILED (exit $rc); log $work/fuzz.log"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|terminate' "$work/fuzz.log" | head -20
    find "$work/artifacts" -type f -printf 'fuzz: reproducer %p\n'
    failed+=("$t")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
echo "fuzz: total $((SECONDS - t0)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: build-fuzz/fuzz_<name> <reproducer>)" >&2
  exit 1
fi
