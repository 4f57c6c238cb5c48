#!/usr/bin/env bash
# libFuzzer targets (issue 17; docs/fuzzing.md). Usage: tools/fuzz.sh [SECONDS] [target...]
# Configures build-fuzz with clang (ASan + UBSan + libFuzzer), builds the targets, then for each target replays
# its whole committed corpus (tests/fuzz/corpus/<name>) and fuzzes it for SECONDS (default 30). New inputs go to
# a scratch copy of the corpus, never into the committed one. Exits non-zero on any crash, leak, sanitizer report
# or timeout, printing the reproducer. Env: MLABENCH_FUZZ_JOBS (build -j, and how many targets replay and fuzz at
# once, each on one core; default 2), MLABENCH_FUZZ_TIMEOUT (libFuzzer's per-input -timeout in seconds, default 10:
# raise it for long runs beside other work, where a niced process starved of CPU trips the wall-clock alarm),
# MLABENCH_FUZZ_SCRATCH.
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
jobs=${MLABENCH_FUZZ_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: MLABENCH_FUZZ_JOBS=$jobs is not a positive integer" >&2; exit 2; }
unit_timeout=${MLABENCH_FUZZ_TIMEOUT:-10}
[[ $unit_timeout =~ ^[1-9][0-9]*$ ]] ||
  { echo "fuzz: MLABENCH_FUZZ_TIMEOUT=$unit_timeout is not a positive integer (seconds)" >&2; exit 2; }
[[ $secs =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS=$secs is not a non-negative integer" >&2; exit 2; }

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
for t in "${targets[@]}"; do
  [[ -d $root/tests/fuzz/corpus/$t ]] || { echo "fuzz: no corpus $root/tests/fuzz/corpus/$t" >&2; exit 2; }
done
t0=$SECONDS
if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMLABENCH_FUZZ=ON \
    -DMLABENCH_CUDA=OFF -DMLABENCH_BUILD_TESTS=OFF -DMLABENCH_BUILD_BENCHMARKS=OFF >/dev/null
fi
ninja -C "$build" -j "$jobs" "${targets[@]/#/fuzz_}"
echo "fuzz: build took $((SECONDS - t0)) s"

# Set here, not inherited: tools/bootstrap.sh test exports its own for ctest.
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# One target, start to end, in its own scratch folder: replay, then fuzz. It prints nothing (targets run side by
# side); what the summary needs goes to files there: `status` (ok, failed or replay-failed), `summary` (the
# table's line) and `report` (what to show on a failure).
fuzz_target() {
  local t=$1 corpus=$root/tests/fuzz/corpus/$1 work=$scratch/$1
  rm -rf "$work"; mkdir -p "$work/corpus" "$work/artifacts"
  cp "$corpus"/* "$work/corpus/"
  local common=(-timeout="$unit_timeout" -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/")
  # Replay: every committed input once (earlier findings must stay fixed).
  if ! "$build/fuzz_$t" "${common[@]}" -runs=0 "$corpus" >"$work/replay.log" 2>&1; then
    { echo "fuzz: $t: corpus replay FAILED"; tail -40 "$work/replay.log"; } >"$work/report"
    printf '%-14s corpus replay FAILED (log %s)\n' "$t" "$work/replay.log" >"$work/summary"
    echo replay-failed >"$work/status"
    return 0
  fi
  local rc=0
  "$build/fuzz_$t" "${common[@]}" -max_total_time="$secs" -print_final_stats=1 "$work/corpus" \
    >"$work/fuzz.log" 2>&1 || rc=$?
  local execs last cov ft crashes slow
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  # Findings are libFuzzer's crash-, leak-, timeout- and oom- files. A slow-unit- file only records an input that
  # took longer than -report_slow_units (10 s); it is not a failure (on a busy machine a starved process writes
  # them), so it is counted apart for a look, not as a crash.
  crashes=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  slow=$(find "$work/artifacts" -type f -name 'slow-unit-*' | wc -l)
  printf '%-14s execs=%-9s cov=%-6s ft=%-6s crashes=%s%s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes" \
    "$( [[ $slow -gt 0 ]] && echo " slow-units=$slow (not failures; $work/artifacts)" )" >"$work/summary"
  if [[ $rc -ne 0 || $crashes -ne 0 ]]; then
    {
      echo "fuzz: $t FAILED (exit $rc); log $work/fuzz.log"
      grep -E 'ERROR|SUMMARY|runtime error|Test unit written|terminate' "$work/fuzz.log" | head -20 || true
      find "$work/artifacts" -type f ! -name 'slow-unit-*' -printf 'fuzz: reproducer %p\n'
    } >"$work/report"
    echo failed >"$work/status"
  else
    echo ok >"$work/status"
  fi
}

# MLABENCH_FUZZ_JOBS targets at a time (libFuzzer runs one process on one core): on CI's 2 cores the twelve
# targets' 15 s each take half the time they took one after the other, each target getting the same seconds.
t1=$SECONDS
for t in "${targets[@]}"; do
  rm -f "$scratch/$t/status"
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  fuzz_target "$t" &
done
wait

# Reported in the order of the targets, whichever finished first.
failed=()
summary=()
for t in "${targets[@]}"; do
  work=$scratch/$t
  status=$(cat "$work/status" 2>/dev/null || echo "no-status")
  case $status in
    ok) ;;
    failed) cat "$work/report"; failed+=("$t") ;;
    replay-failed) cat "$work/report"; failed+=("$t(replay)") ;;
    *) echo "fuzz: $t: the run left no status in $work (killed?)"; failed+=("$t(no result)") ;;
  esac
  [[ -f $work/summary ]] && summary+=("$(cat "$work/summary")")
done
[[ ${#summary[@]} -gt 0 ]] && printf 'fuzz: %s\n' "${summary[@]}"
echo "fuzz: replay and fuzzing $((SECONDS - t1)) s ($jobs at a time); total $((SECONDS - t0)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: build-fuzz/fuzz_<name> <reproducer>)" >&2
  exit 1
fi
