#!/usr/bin/env bash
# One-command set-up of mlabench on a fresh Debian 12 machine (the README's two commands).
#
#   tools/bootstrap.sh demo   install what the build needs (apt-get), build Release, then run the main job on the
#                             bundled default model: `mlabench info`, then an evaluation on MMLU and GSM8K (CoT)
#                             with --limit, its data fetched through datasets_manifest/ (from the mirror in
#                             $MLABENCH_DATA_MIRROR, else ../shared/datasets when present, else the network)
#   tools/bootstrap.sh test   install (with Debian's chromium for the report's browser test), build with
#                             AddressSanitizer + UndefinedBehaviorSanitizer, run every test, then the
#                             libFuzzer targets (tools/fuzz.sh)
#
# Uses sudo for apt-get when not root. Build folders: build/ (demo), build-test/ (test). Needs no network after
# apt-get: every test input is in tests/data.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

# Debian packages the build uses (see README "Dependencies" for why each).
packages=(build-essential cmake ninja-build pkg-config libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          libgmock-dev libbenchmark-dev libpcre2-dev libutf8proc-dev libsentencepiece-dev zlib1g-dev
          libarchive-dev libcurl4-openssl-dev libssl-dev libseccomp-dev libcpp-httplib-dev python3)
# The tests also open a real report in headless Chromium (tests/browser/), with fonts for its Latin and CJK text
# (C-Eval), so the screenshot it keeps is legible.
if [ "$mode" = test ]; then packages+=(chromium fonts-dejavu-core fonts-droid-fallback); fi
# `mlabench serve` is also tested with the official openai npm client (tests/serve_client): node and npm, for tests
# only (Debian's, where the machine has no npm of its own).
if [ "$mode" = test ] && ! command -v npm > /dev/null; then packages+=(nodejs npm); fi
# The fuzz stage (tools/fuzz.sh, docs/fuzzing.md) needs clang and its libFuzzer/sanitizer runtime.
if [ "$mode" = test ]; then packages+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "== apt-get install ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
if [ "$mode" = demo ]; then
  # The CUDA engine builds when nvcc is found (MLABENCH_CUDA=OFF forces a CPU-only build).
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLABENCH_BUILD_TESTS=OFF -DMLABENCH_CUDA="${MLABENCH_CUDA:-ON}"
  cmake --build build -j "$jobs"
  model=tests/data/models/mlabench-tiny-dsv2
  echo "== mlabench info --model $model"
  build/mlabench info --model "$model"
  # Datasets come through the manifests: from a mirror when one is set (CI: ../shared/datasets), else downloaded.
  if [ -z "${MLABENCH_DATA_MIRROR:-}" ] && [ -d ../shared/datasets ]; then
    export MLABENCH_DATA_MIRROR="$(cd ../shared/datasets && pwd)"
  fi
  export MLABENCH_DATA_DIR="${MLABENCH_DATA_DIR:-$PWD/build/datasets}"
  # MMLU, GSM8K, HumanEval (graded in the sandbox) and a two-length NIAH grid (the bundled model's window is 2,560).
  demo=(--tasks mmlu,gsm8k_cot,humaneval,niah --limit 2 --set 'niah.generator.context_lengths=[1000,2000]')
  echo "== mlabench run --model $model ${demo[*]} (mirror: ${MLABENCH_DATA_MIRROR:-none, network})"
  rm -rf build/demo-run
  build/mlabench run --model "$model" "${demo[@]}" --output build/demo-run
  if nvidia-smi > /dev/null 2>&1 && build/mlabench info --model "$model" > /dev/null; then
    echo "== the same on the GPU engine (--device cuda)"
    rm -rf build/demo-run-cuda
    build/mlabench run --model "$model" "${demo[@]}" --output build/demo-run-cuda --device cuda || true
  fi
else
  # -O1 -g1 under the sanitizers: -O2 -g compiled 2.2x slower on CI's 2 cores (cli/cli_bench.cpp 145 s against
  # 65 s) and the build was two thirds of the CI run; -g1 keeps file:line in sanitizer stack traces.
  # Where nvcc exists but no GPU does (CI), the GPU tests could only skip: the sanitized test build is CPU-only and
  # the CUDA engine, its GPU tests and the kernel benchmarks are compiled and linked once more in a Release build
  # (build-cuda-check), so a CUDA compile error still fails the run. CI's last runs, which compiled them under the
  # sanitizers, took 41-43 minutes. The check builds no `mlabench` binary: its CLI, harness and report sources have
  # no CUDA-dependent code (MLABENCH_HAS_CUDA is read in engine/, tests/ and bench/ only) and compile in the
  # sanitized build above, and a second -O2 compile of them was half the check (2026-12-07, 2 cores: 1,107 s of
  # compiler time for 8 targets, 556 s for these 7; the GPU test binaries link the CUDA engine with the harness).
  # MLABENCH_CUDA=ON or OFF chooses explicitly.
  test_cuda="${MLABENCH_CUDA:-}"
  cuda_check=0
  if [ -z "$test_cuda" ]; then
    test_cuda=ON
    if ! nvidia-smi > /dev/null 2>&1 && { command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
      test_cuda=OFF
      cuda_check=1
    fi
  fi
  cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DMLABENCH_SANITIZE=ON -DMLABENCH_CUDA="$test_cuda"
  cmake --build build-test -j "$jobs"
  if [ "$cuda_check" = 1 ]; then
    echo "== no GPU here: compiling the CUDA engine, GPU tests and kernel benchmarks (Release) in build-cuda-check"
    start=$(date +%s)
    cmake -S . -B build-cuda-check -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLABENCH_CUDA=ON > /dev/null
    cuda_targets=(test_cuda_kernels test_gpu_engine)
    # The list is read once: `grep -q` on ninja's output would end the pipe early, and under pipefail the SIGPIPE
    # ninja gets then counts as "no such target".
    all_targets=$(ninja -C build-cuda-check -t targets all 2>/dev/null | cut -d: -f1)
    for t in bench_decode_attention bench_moe_gemm bench_nccl bench_prefill_attention bench_skinny_gemm; do
      if grep -qx "$t" <<< "$all_targets"; then cuda_targets+=("$t"); fi
    done
    cmake --build build-cuda-check -j "$jobs" --target "${cuda_targets[@]}"
    echo "== CUDA compile check: ${#cuda_targets[@]} targets in $(( $(date +%s) - start )) s"
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # OpenMP threads waiting for work sleep instead of spinning: ctest -j runs as many tests as there are cores, each
  # engine test with a thread per core, and one test's spinning threads took the cores the other test's threads
  # needed (26 engine and CLI tests at -j2 on 2 cores: 67 s spinning, 45 s so; a test alone is as fast either way).
  export OMP_WAIT_POLICY=passive
  # The programs HumanEval and LiveCodeBench grade run on Debian's python3 (installed above), not on the first python3
  # on PATH: a pyenv interpreter there imports its site-packages at every start (docs/sandbox.md: 65 ms against 23),
  # and the tests start hundreds (the 42 sandbox and grading tests at -j2 on 2 cores: 89 s, 72 s so).
  if [ -z "${MLABENCH_PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then export MLABENCH_PYTHON=/usr/bin/python3; fi
  # Tests labelled `slow` run a smaller size of the same checks (README, "Tests and checks"; ctest -L slow without
  # this runs their full size).
  export MLABENCH_TEST_SHORT=1
  # The openai npm client that tests `mlabench serve` (pinned in tests/serve_client/package-lock.json); the only
  # npm use, test clients only. Without it that test reports SKIPPED.
  (cd tests/serve_client && npm ci --no-audit --no-fund) || echo "== npm ci failed: serve_openai_client will be SKIPPED"
  ctest --test-dir build-test --output-on-failure -j "$jobs"
  # libFuzzer targets (docs/fuzzing.md): a clang build of the parsers only (about 3 minutes on 2 cores), each corpus
  # replayed, then MLABENCH_FUZZ_SECONDS (default 15: CI's short mode, which keeps the whole run under 40 minutes) of
  # fuzzing per target, one target per core at a time: the twelve targets' replay and fuzzing take about 1.7 minutes
  # on 2 cores (3.4 one after the other). MLABENCH_FUZZ_SECONDS=0 skips the stage.
  if [ "${MLABENCH_FUZZ_SECONDS:-15}" != 0 ]; then
    MLABENCH_FUZZ_JOBS="$jobs" tools/fuzz.sh "${MLABENCH_FUZZ_SECONDS:-15}"
  fi
fi
