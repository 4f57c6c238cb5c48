#!/usr/bin/env bash
# The GPU-machine check (run it for every change to engine or kernel code; paste its table in the note):
#   1. build Release for this machine (CUDA engine included), run the whole test suite, GPU tests included;
#   2. compute-sanitizer memcheck over the GPU tests;
#   3. regenerate the reference fixtures with transformers (the long one too) and compare them with the committed ones;
#   4. benchmarks: the GPU engine (mlabench bench) beside transformers on the same shapes and random weights,
#      the CPU engine, the tokenizer beside Hugging Face tokenizers;
#   5. print a short table last.
# Usage, through the device tool (which copies no .git, so name the commit):
#   MLABENCH_COMMIT=<short hash> bash tools/gpu/check.sh [STAGES]     (in $OUT: summary.txt, logs.txt, the report, and
#   every other output (bench JSON, fixtures) in outputs-<pid>.tar.gz: the device tool returns at most 8 files)
# STAGES (default "all"): a comma list of build,test,serve,sanitize,fixtures,bench,kernels,moe,gemv,peer,harness,report,cpubench,
# tokenizer. "gputest" (named only) runs the GPU test binaries alone, for calls short of device time; "gpukernels" and
# "gpuengine" its two halves.
# Long-context stages, run only when named (each takes minutes; give each its own device call after a build):
#   profile      bench --profile (V2-Lite b1/b256, Llama-3-8B b1), an unprofiled b1 row, ncu kernel times of b1 decode
#                (PROFILE_ARGS adds bench options to the V2-Lite runs, e.g. "--weights-dtype fp8 --kv-cache-dtype fp8";
#                PROFILE_NCU_ONLY=1 the ncu part alone; PROFILE_NCU_BATCHES its batches, default "1 128 256")
#   longprefill  mlabench bench, one uncached 32K and 128K prompt (TTFT, prefill tok/s), V2-Lite random weights
#   longdecode   mlabench bench, decode at 8K x 64 and 32K x 16 context x batch
#   longdecode128  mlabench bench, decode at 128K x 1 (its decode pass prefills its own uncached 128K prompt)
#   longpeer     transformers on the same 32K and 128K prompts (prefill only)
#   fp8          issue 20: the FP8 kernel tests (quantisers, cuBLASLt's block-scaled GEMM, the grouped expert GEMMs), the
#                FP8 engine tests, and bench V2-Lite --weights-dtype fp8 beside BF16 (b1, b256; FP8_BATCHES to change,
#                e.g. max; FP8_KERNEL_TESTS a gtest filter, FP8_BENCH_TIMEOUT seconds a bench)
#   fp8kv        issue 20: the MLA and GQA decode kernels over FP8 slots: their tests, bench_decode_attention mla16 and
#                gqa, V2-Lite decode at 32K x 16 with the BF16 and FP8 caches and weights (FP8KV_SHAPES to change)
#   fp8b1        issue 20: FP8 at batch 1: the fused skinny FP8 GEMM and FP8 decode-FFN tests, the FP8 engine tests, V2-Lite
#                b1 with BF16, FP8 weights + cache, and the same with MLABENCH_FP8_FUSED_QUANT=0 (one call: ratios)
#   router       issue 20: norm_router's tests, V2-Lite b1 / b16 BF16 and FP8 with the fused MoE entry and without
#   normfuse     issues 15/16/20: the input norms in the projections' launches (MLABENCH_FUSE_NORM): the norm-form kernel
#                tests, then V2-Lite b1 / b2 (BF16; FP8 weights + cache) and Llama-3-8B b1, each with the fusion and
#                without (one call: ratios; NORMFUSE_BATCHES to change), b2 with MLABENCH_FUSE_NORM=2 and 1
#                (NORMFUSE_BATCHES2); NORMFUSE_LONG=1 adds V2-Lite 128K x 1 BF16 with the fusion and without
#   topk         issue 16: the router's top-k inside moe_decode_ffn (MLABENCH_FUSE_TOPK): its tests, V2-Lite b1 BF16 and
#                FP8 with it and without (TOPK_BATCHES)
#   append       issue 16: latent_append in W_UK's launch (MLABENCH_FUSE_APPEND): its tests, V2-Lite b1 BF16 and FP8 with
#                it and without (APPEND_BATCHES)
#   persist      issues 15/16: the MLA decode kernel's items looped by SM-many CTAs (MLABENCH_MLA_DECODE_PERSISTENT): its
#                tests, bench_decode_attention mla16 on the engine's decode shapes with it and without, V2-Lite b256 BF16
#                and FP8 with it and without (PERSIST_BATCHES), the 1 x 128K timeline
#   gqafp8       issue 20: GQA prefill over FP8 slots gathered into BF16 pools (MLABENCH_GQA_FP8_PREFILL): the FP8
#                engine tests with it and without, Llama-3-8B 4K prompts over FP8 slots with it and without, DeepSeek 67B
#                (FP8 weights and cache) --batch max at 4K-token sequences with it
#   fp8f16       issue 20: the MLA decode kernel over FP8 slots in its F16 form (codes widened exactly, scales outside
#                the values) against the BF16-value form (MLABENCH_MLA_FP8_DECODE=f16|bf16): the MLA decode and FP8 cache
#                kernel tests, the FP8 engine tests, bench_decode_attention mla-fp8 both forms (and a --timeline), V2-Lite
#                32K x 16 BF16/BF16 and FP8/FP8 both forms
#   b1skip       issue 20: V2-Lite b1 BF16, FP8, and FP8 with each MLABENCH_TIMING_SKIP stage left out (the most a fusion
#                of that launch can save; outputs wrong by design)
#   fp8b16       issue 20: FP8 at batch 16: skinny_gemm_fp8 at 1-16 rows (tests), the FP8 and sharded GPU engine tests,
#                V2-Lite b16 and 32K x 16 with BF16, FP8 weights, FP8 weights + cache (one call)
#   fp8side      issue 20: the FP8 shared experts on the MoE layer's second stream: its test and the FP8 gather's,
#                V2-Lite b16 BF16 and FP8 weights + cache with it and without (switch_ab; FP8SIDE_BATCHES), the FP8
#                engine tests with it, 32K x 16 (FP8SIDE_32K: the configs, default "auto1 fp81 fp80": dtype, switch);
#                FP8SIDE_NCU=1 adds an ncu of FP8 b16
#   fp8persist   issue 20: the MLA decode kernel over FP8 slots with SM-many CTAs (MLABENCH_MLA_DECODE_PERSISTENT=1)
#                against one CTA an item (the default, 2): its tests, the kernel at the maximum batch's shapes and long
#                context beside the BF16 kernel, V2-Lite FP8 weights + cache at batch FP8PERSIST_BATCH (2482) with both
#   fp8harness   issue 20: MMLU and GSM8K through the harness on V2-Lite shapes (random weights, the real tokenizer) with
#                BF16, the FP8 cache, FP8 weights and both, paired by mlabench compare (FP8H_LIMIT, FP8H_TIMEOUT)
#   nccl         bench_nccl: NCCL all-reduce / all-gather between the GPUs (a kind with 2 or more)
#   sharded      --tp on V2-Lite (1 GPU: ranks sharing it), DeepSeek-V2 and 67B on several GPUs: load time, decode b1/b64;
#                --tp N --ep N and --ep N --dp-attention beside --tp N on V2-Lite and DeepSeek-V2
#   ep           issue 22's expert parallelism and DP attention on GPU ranks: the EP layer test, the EP and DP engine
#                tests, V2-Lite --tp 2 --ep 2 and --ep 2 --dp-attention beside --tp 2 (ranks sharing a GPU, or one
#                GPU a rank where there are several)
#   targets      the one-GPU target rows of issues 15, 16 and 20 in one call (~8 minutes on an H200): V2-Lite b1 and
#                b256 with BF16 and FP8 weights, `--batch max` BF16 and FP8 weights + cache, Llama-3-8B b1, the MLA decode
#                kernel at 1 x 128K and 64 x 8K (share of copy), V2-Lite decode at 128K x 1, 32K x 16 BF16 and FP8
#                weights + cache, DeepSeek 67B FP8 + FP8 cache --batch max (TARGETS_SKIP: a space list of lite, llama,
#                kernel, long128, max, maxfp8, kv32k, 67b to leave out)
#   niahgrid     the full default NIAH grid (12 lengths x 12 depths to 128K), V2-Lite random weights, the real
#                tokenizer: wall time, and the prompt tokens computed against those taken from the prefix cache
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/mlabench-check}
mkdir -p "$out"
jobs=$(nproc)
# PCRE2 / utf8proc development files carried from the Debian machine (tools/gpu/make_deps_prefix.sh).
[ -d .carry/prefix/lib/pkgconfig ] && export PKG_CONFIG_PATH="$PWD/.carry/prefix/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
# The shared data mirror, carried as .carry/shared (cp -r ../shared/tokenizers ../shared/datasets .carry/shared/),
# for the tests that use it and the harness stage.
[ -d .carry/shared ] && export MLABENCH_SHARED_DIR="$PWD/.carry/shared"
# NCCL for bench_nccl (issue 22): the toolkit's where it has one, else the GPU machine's Python wheel nvidia-nccl.
# NVLink multicast stays off for every program this script starts (the device README).
export NCCL_NVLS_ENABLE=0
if [ ! -f /usr/local/cuda/include/nccl.h ] && [ -z "${MLABENCH_NCCL_DIR:-}" ]; then
  MLABENCH_NCCL_DIR=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null) && export MLABENCH_NCCL_DIR
fi
# V2-Lite's config beside the real DeepSeek-V2 tokenizer: a model folder for text tasks on random weights.
lite_with_tokenizer() {
  local d=/tmp/v2lite-tok
  mkdir -p $d && cp configs/deepseek-v2-lite/config.json $d/ && cp .carry/shared/tokenizers/deepseek-v2/tokenizer*.json $d/
  echo $d
}
row() { printf '%-34s %s\n' "$1" "$2" >> "$out/summary.txt"; }
# gtests LOG ROW BINARY FILTER LINES N: run a test binary's filter into $out/LOG, a summary row of its PASSED /
# FAILED lines, and its first N lines matching LINES (failures, printed errors) under it.
gtests() {
  "build-gpu/tests/$3" --gtest_filter="$4" > "$out/$1" 2>&1
  row "$2" "$(grep -E '^\[  (PASSED|FAILED)' "$out/$1" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure|$5" "$out/$1" | head -"$6" | cut -c1-200 | sed 's/^/    /' >> "$out/summary.txt"
}
stages=${1:-all}
# CHECK_TARGETS (a space list of CMake targets) builds those alone, for calls that run one named stage.
want() { [ "$stages" = all ] || [[ ",$stages," == *",$1,"* ]]; }
named() { [[ ",$stages," == *",$1,"* ]]; }  # stages "all" leaves out
# gputest in two halves for calls short of device time (the whole takes ~10 minutes on an H200, most of it the CPU
# twins of the long kernel tests): gpukernels (kernel tests, the MoE and flash variants), gpuengine (engine tests,
# serve smoke, reference parity).
gpukernels() { named gputest || named gpukernels; }
gpuengine() { named gputest || named gpuengine; }
export MLABENCH_COMMIT=${MLABENCH_COMMIT:-unknown}
: > "$out/summary.txt"

gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "device" "${gpu:-no GPU} | $(nproc) CPU cores | $(uname -r)"
row "commit" "${MLABENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"

# OpenSSL's libcrypto from the carried prefix when the machine has no headers of its own.
ssl=()
[ -f /usr/include/openssl/evp.h ] || ssl=(-DOPENSSL_ROOT_DIR="$PWD/.carry/prefix/openssl" -DOPENSSL_USE_STATIC_LIBS=TRUE)
t0=$(date +%s)
if cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLABENCH_NATIVE=ON "${ssl[@]}" \
     -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc > "$out/build.log" 2>&1 &&
   cmake --build build-gpu -j "$jobs" ${CHECK_TARGETS:+--target $CHECK_TARGETS} -- -k 0 >> "$out/build.log" 2>&1; then
  row "build (Release, -march=native)" "ok in $(( $(date +%s) - t0 )) s"
elif [ -x build-gpu/mlabench ]; then
  # -k 0 built everything that could be built: the stages below run what exists, the failures are listed here.
  row "build" "FAILED for some targets (build.log); the others were built"
  grep -E '^FAILED:|error:' "$out/build.log" | head -12 | cut -c1-300 | sed 's/^/    /' >> "$out/summary.txt"
else
  row "build" "FAILED (build.log)"; tail -30 "$out/build.log"; cat "$out/summary.txt"; exit 1
fi

if want test; then
ctest --test-dir build-gpu -j 4 --output-on-failure -E 'GpuFixture|GpuEngine[.]' > "$out/ctest.log" 2>&1
row "tests (ctest, GPU engine apart)" "$(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
grep -E "SKIPPED|Failed|\*\*\*" "$out/ctest.log" | head -20 | sed 's/^/    /' >> "$out/summary.txt"
elif gpukernels; then
# Only the GPU tests (CI runs the rest): the CUDA kernels against their twins, then the engine and parity below.
build-gpu/tests/test_cuda_kernels > "$out/ctest.log" 2>&1
row "CUDA kernel tests" "$(grep -E '^\[  (PASSED|FAILED)' "$out/ctest.log" | tr '\n' ' ')"
grep -E '^\[  FAILED|Failure' "$out/ctest.log" | head -10 | sed 's/^/    /' >> "$out/summary.txt"
fi
if want test || gpukernels; then
# The MoE layer's COMPACT rows take the Hopper grouped GEMM on an H100/H200; its two older paths (mma.sync with the
# counts on the device, cuBLAS's grouped GEMM after a host read) again under MLABENCH_MOE_GEMM=mma, and the PAIR
# rows' cuBLAS batched GEMM (MLABENCH_SKINNY_GEMM=0) in place of skinny_gemm.
MLABENCH_MOE_GEMM=mma MLABENCH_SKINNY_GEMM=0 build-gpu/tests/test_cuda_kernels --gtest_filter='CudaMoe*' > "$out/moe_mma.log" 2>&1
row "CUDA MoE tests, MOE_GEMM=mma SKINNY_GEMM=0" "$(grep -E '^\[  (PASSED|FAILED)' "$out/moe_mma.log" | tr '\n' ' ')"
cat "$out/moe_mma.log" >> "$out/ctest.log"
# The opt-in BF16 expert rows (STORE_DT down GEMM, BF16 combine) through the whole layer against its twin.
MLABENCH_MOE_BF16_ROWS=1 build-gpu/tests/test_cuda_kernels --gtest_filter='CudaMoeLayer*' > "$out/moe_rows.log" 2>&1
row "CUDA MoE layer tests, MOE_BF16_ROWS=1" "$(grep -E '^\[  (PASSED|FAILED)' "$out/moe_rows.log" | tr '\n' ' ')"
cat "$out/moe_rows.log" >> "$out/ctest.log"
fi
if want test || gpukernels; then
# The flash prefill kernel's former default schedule (MLABENCH_FLASH=pipe, no ping-pong) against the CPU twin.
MLABENCH_FLASH=pipe timeout 120 build-gpu/tests/test_cuda_kernels --gtest_filter='CudaAttention.Flash*:CudaAttention.*Prefill*' > "$out/flash_pipe.log" 2>&1
row "CUDA flash tests, FLASH=pipe" "$(grep -E '^\[  (PASSED|FAILED)' "$out/flash_pipe.log" | tr '\n' ' ')"
cat "$out/flash_pipe.log" >> "$out/ctest.log"
fi
if want test || gpuengine; then
# The engine tests run alone: they size their caches from free GPU memory.
build-gpu/tests/test_gpu_engine > "$out/gpu_engine.log" 2>&1
row "GPU engine tests" "$(grep -E '^\[  (PASSED|FAILED)' "$out/gpu_engine.log" | tr '\n' ' ')"
grep -E '^\[ gpu (parity|greedy)|^\[ sharded gpu|^\[  FAILED|Failure' "$out/gpu_engine.log" | sed 's/^/    /' >> "$out/summary.txt"
cat "$out/gpu_engine.log" >> "$out/ctest.log"
fi
if want serve || gpuengine; then
  # mlabench serve --device cuda (tools/gpu/serve_smoke.sh): GPU answers equal the CPU server's, concurrent requests
  # equal their answers alone, the remote backend against it scores as the in-process GPU engine does.
  bash tools/gpu/serve_smoke.sh build-gpu "$out/serve" > "$out/serve.log" 2>&1
  rc=$?
  row "serve --device cuda (serve_smoke.sh)" "$([ $rc = 0 ] && echo "ok: $(grep -c ': ok' "$out/serve.log") checks" || echo "FAILED (serve.log)")"
  grep -E 'FAILED|max \|dlogprob' "$out/serve.log" | head -6 | sed 's/^/    /' >> "$out/summary.txt"
fi
if want sanitize; then
  san=/usr/local/cuda/bin/compute-sanitizer
  # The kernel tests whose names say LongContext or LargeBatches (128K keys, hundreds of sequences) run under
  # memcheck only when MEMCHECK_ALL=1: they exercise the same code at sizes that take memcheck many minutes.
  filter=-'*LongContext*:*LargeBatches*'; [ "${MEMCHECK_ALL:-0}" = 1 ] && filter='*'
  for t in ${MEMCHECK_TESTS:-test_cuda_kernels test_gpu_engine}; do
    timeout ${MEMCHECK_TIMEOUT:-200} $san --tool memcheck --error-exitcode 9 --leak-check no build-gpu/tests/$t --gtest_brief=1 \
      --gtest_filter="$filter" > "$out/memcheck_$t.log" 2>&1
    rc=$?
    row "memcheck $t" "$([ $rc = 0 ] && echo clean || echo "rc $rc: $(grep -m3 -E 'ERROR SUMMARY|Invalid|FAILED' "$out/memcheck_$t.log" | tr '\n' ' ')")"
  done
  # The serving path at V2-Lite shapes (2 layers, so memcheck stays quick): batched prefill, graphed decode, and a
  # batch of 200 (graphed in the 256 bucket, so the MoE layer takes its device-count grouped GEMM).
  mkdir -p /tmp/v2lite-2l && python3 -c "import json; c=json.load(open('configs/deepseek-v2-lite/config.json')); c['num_hidden_layers']=2; json.dump(c, open('/tmp/v2lite-2l/config.json','w'))"
  timeout 150 $san --tool memcheck --error-exitcode 9 --leak-check no build-gpu/mlabench bench --device cuda \
    --model /tmp/v2lite-2l --random-weights 0 --batch 1,16,64,200 --prompt 128 --gen 8 --kv-cache-gib 4 > "$out/memcheck_bench.log" 2>&1
  rc=$?
  row "memcheck bench (V2-Lite, 2 layers)" "$([ $rc = 0 ] && echo clean || echo "rc $rc: $(grep -m3 -E 'ERROR SUMMARY|Invalid|error' "$out/memcheck_bench.log" | tr '\n' ' ')")"
  cat "$out"/memcheck_*.log > "$out/memcheck.log" 2>/dev/null; rm -f "$out"/memcheck_*.log
fi
if want test || gpuengine; then
build-gpu/tests/test_reference_logits --gtest_brief=1 2>/dev/null | grep '^\[ parity' > /tmp/mlabench-parity.txt
cat /tmp/mlabench-parity.txt >> "$out/ctest.log"
worst=$(awk '{for(i=1;i<=NF;i++) if($i=="relative") print $(i+1)}' /tmp/mlabench-parity.txt | sort -g | tail -1)
row "logit parity vs transformers f64" "$(wc -l < /tmp/mlabench-parity.txt) runs, worst |err|/max|logit| = ${worst:-n/a}"

fi
if want fixtures && python3 -c 'import transformers' 2>/dev/null; then
  rm -rf /tmp/mlabench-fixtures && PYTHONUNBUFFERED=1 python3 tools/make_fixtures.py --out /tmp/mlabench-fixtures/tests/data \
      > "$out/make_fixtures.log" 2>&1
  row "fixtures regenerated" "$(python3 tools/gpu/compare_fixtures.py tests/data /tmp/mlabench-fixtures/tests/data 2>&1 | tail -1)"
  # The long fixture at DeepSeek-V2's real MLA shapes: checkpoint rewritten by the pure-Python generator, transformers
  # float64 and BF16 rerun over its 8,317 tokens on the GPU (a minute or two), compared with the committed rows.
  PYTHONUNBUFFERED=1 python3 tools/make_long_fixture.py tests/data/fixtures/dsv2-mla-8k-yarn --check \
      > "$out/long_fixture.log" 2>&1
  row "long fixture regenerated" "rc $?: $(tail -1 "$out/long_fixture.log")"
fi

if want fixtures && python3 -c 'import transformers' 2>/dev/null; then
  # The peer of the GPU engine's parity numbers: transformers itself in each fixture's stored dtype.
  python3 tools/gpu/reference_precision_error.py --out "$out/reference_precision.json" > "$out/refprec.log" 2>&1
  row "transformers in stored dtype vs f64" "rc $?"
  sed 's/^/    /' "$out/refprec.log" | tail -8 >> "$out/summary.txt"
fi

if want bench; then
  m=build-gpu/mlabench
  timeout 420 $m bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 --batch ${BENCH_BATCHES:-1,16,64,256} \
    --prompt 512 --gen 128 --out "$out/bench_dsv2_lite.json" > "$out/bench.log" 2>&1
  row "bench V2-Lite (mlabench, cuda)" "$(head -c 0 /dev/null)"
  grep -E '^ +[0-9]+ +512|^ *batch' "$out/bench.log" | sed 's/^/    /' >> "$out/summary.txt"
  grep -E '^error' "$out/bench.log" | sed 's/^/    /' >> "$out/summary.txt"
  timeout 240 $m bench --device cuda --model configs/llama-3-8b --random-weights 0 --batch 1,64 --prompt 512 --gen 64 \
    --out "$out/bench_llama3_8b.json" >> "$out/bench.log" 2>&1
  row "bench Llama-3-8B shape (cuda)" ""
  grep -E '^ +[0-9]+ +512' "$out/bench.log" | tail -2 | sed 's/^/    /' >> "$out/summary.txt"
  timeout 180 $m bench --device cuda --model configs/llama-2-7b --random-weights 0 --batch 1 --prompt 512 --gen 32 \
    --out "$out/bench_llama2_7b_mha.json" >> "$out/bench.log" 2>&1
  # The float32 precision (parity mode): float32 weights (63 GB for V2-Lite), GEMMs, KV cache and attention.
  timeout 240 $m bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 --precision f32 --batch 1,16 \
    --prompt 512 --gen 64 --out "$out/bench_dsv2_lite_f32.json" > "$out/bench_f32.log" 2>&1
  row "bench V2-Lite --precision f32" ""
  grep -E '^ +[0-9]+ +512' "$out/bench_f32.log" | sed 's/^/    /' >> "$out/summary.txt"
  grep -E '^error' "$out/bench_f32.log" | sed 's/^/    /' >> "$out/summary.txt"
  cat "$out/bench_f32.log" >> "$out/bench.log"; rm -f "$out/bench_f32.log"
  python3 - "$out" >> "$out/summary.txt" <<'PY'
import json, os, sys
for f in ("bench_dsv2_lite.json", "bench_llama3_8b.json", "bench_llama2_7b_mha.json", "bench_dsv2_lite_f32.json"):
    p = os.path.join(sys.argv[1], f)
    if not os.path.exists(p): print(f"    {f}: missing"); continue
    d = json.load(open(p)); kv = d["device_info"]["kv_cache"]; g = d["device_info"].get("graphs", {})
    print(f"    {f}: weights {d['weight_bytes']/2**30:.1f} GiB, KV {kv['bytes']/2**30:.1f} GiB = {kv['tokens']} tokens"
          f" = {kv['tokens']//4096} concurrent 4K sequences ({kv['bytes_per_token']} B/token), copy {d['copy_gb_per_s']:.0f} GB/s,"
          f" CUDA graphs: {g.get('replays', 0)} replays, largest batch {g.get('largest_batch', 0)}")
PY
fi
# The attention kernels over their shape sweeps, each beside the copy bandwidth and GEMM rate of the same run, and
# torch sdpa (each backend that takes the shape, and its default choice) on the prefill shapes (KERNELS_QUICK=1: fewer prefill shapes).
if want kernels; then
  q=(); [ "${KERNELS_QUICK:-0}" = 1 ] && q=(--quick)
  timeout 200 build-gpu/bench/bench_prefill_attention "${q[@]}" --json "$out/bench_prefill_attention.json" > "$out/kernels.log" 2>&1
  row "bench prefill attention" "rc $?"
  MLABENCH_FLASH=pipe timeout 100 build-gpu/bench/bench_prefill_attention --only '32768 causal' >> "$out/kernels.log" 2>&1
  row "bench prefill attention, FLASH=pipe (1 x 32K)" "rc $?"
  grep -E 'copy bandwidth|x 32768 causal|x 131072 causal|chunk' "$out/kernels.log" | sed 's/^/    /' >> "$out/summary.txt"
  timeout 150 build-gpu/bench/bench_decode_attention --reps 30 >> "$out/kernels.log" 2>&1
  row "bench decode attention" "rc $?"
  grep -E '^(mla|gqa) +(16|32) +(1 +131072|64 +8192|16 +32768)' "$out/kernels.log" | sed 's/^/    /' >> "$out/summary.txt"
  if python3 -c 'import torch' 2>/dev/null; then
    timeout 200 python3 tools/gpu/bench_sdpa.py "${q[@]}" --json "$out/peer_sdpa.json" >> "$out/kernels.log" 2>&1
    row "peer: torch sdpa (flash, cudnn, efficient, default)" "rc $?"
    grep -E '^torch sdpa.*(x 32768 causal|x 131072 causal)' "$out/kernels.log" | sed 's/^/    /' >> "$out/summary.txt"
  fi
fi
# The decode step's few-row GEMMs: skinny_gemm beside cuBLAS at 1-8 rows, V2-Lite and Llama-3-8B projections.
if want kernels || named gemv; then
  timeout 120 build-gpu/bench/bench_skinny_gemm --json "$out/bench_skinny_gemm.json" > "$out/gemv.log" 2>&1
  row "bench skinny GEMM (decode projections)" "rc $?"
  grep -E '^(device| +[0-9]|V2-Lite|Llama)' "$out/gemv.log" | grep -E '^device| 1  | 8  ' | sed 's/^/    /' >> "$out/summary.txt"
fi
# The routed experts of one MoE layer by each grouped-GEMM strategy (Hopper wgmma, mma.sync, cuBLAS grouped, cuBLAS
# per expert), V2-Lite and V2 shapes, decode and prefill row counts, beside the same run's ceilings.
if want kernels || named moe; then
  timeout 200 build-gpu/bench/bench_moe_gemm --json "$out/bench_moe_gemm.json" > "$out/moe.log" 2>&1
  row "bench MoE grouped GEMM" "rc $?"
  grep -E '^(device|hopper|mma|cublas|#)' "$out/moe.log" | sed 's/^/    /' >> "$out/summary.txt"
fi
# Where a decode step's time goes (named only): V2-Lite batch 1 and 256 and Llama-3-8B batch 1 under bench --profile
# (CUDA-event phase times of eager steps), an unprofiled batch-1 row (graphed: tok/s and the kernels a step launches),
# and, where ncu reads counters, each kernel's duration over steady decode steps 20-22 at batch 1 and 128
# (MLABENCH_PROFILER_DECODE_STEPS opens the profiler window)
# (tools/gpu/ncu_summary.py groups them by kernel).
if named profile; then
  m=build-gpu/mlabench
  # PROFILE_ARGS: more bench options for the V2-Lite runs, e.g. "--weights-dtype fp8 --kv-cache-dtype fp8".
  lite=(--device cuda --model configs/deepseek-v2-lite --random-weights 0 --prompt 512 ${PROFILE_ARGS:-})
  if [ "${PROFILE_NCU_ONLY:-0}" != 1 ]; then
  timeout 120 $m bench "${lite[@]}" --batch 1 --gen 128 --out "$out/bench_dsv2_lite_b1.json" > "$out/profile.log" 2>&1
  timeout 200 $m bench "${lite[@]}" --batch 1,256 --gen 32 --profile --out "$out/profile_dsv2_lite.json" >> "$out/profile.log" 2>&1
  timeout 120 $m bench --device cuda --model configs/llama-3-8b --random-weights 0 --prompt 512 --batch 1 --gen 32 \
    --profile --out "$out/profile_llama3_8b.json" >> "$out/profile.log" 2>&1
  row "bench --profile (V2-Lite b1/b256, Llama-3-8B b1)" "rc $?"
  grep -E '^ +[0-9]+ +512 |decode step:|steps, .* rows|ms a step' "$out/profile.log" | sed 's/^/    /' >> "$out/summary.txt"
  # The routed experts at decode batches: the Hopper grouped GEMM's 128-row tiles against the mma.sync kernel's
  # 16-row MMA tiles (at batch 128-256 an expert holds 12-24 rows, so most of a 128-row tile's MMAs are padding).
  for g in hopper mma; do
    MLABENCH_MOE_GEMM=$g timeout 150 $m bench "${lite[@]}" --batch 64,128,256 --gen 64 \
      --out "$out/bench_dsv2_lite_moe_$g.json" > "$out/moe_$g.log" 2>&1
    row "bench V2-Lite b64-256, MOE_GEMM=$g" "rc $?"
    grep -E '^ +[0-9]+ +512 ' "$out/moe_$g.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
  fi
  for sh in 1x512 1x1024 1x4096 8x1024 32x1024; do
    timeout 60 build-gpu/bench/bench_decode_attention --only mla --shape $sh --reps 30 2>&1 | grep -E '^mla ' | sed 's/^/    /' >> "$out/summary.txt"
  done
  if command -v ncu > /dev/null; then
    # Kernel durations of 3 steady decode steps (graph replays; warm caches, as in a real step) at batch 1, 128 and 256
    # (256: issue 16's 20,000 tok/s row, whose 15.5 ms step is 2.3x the copy time of the expert weights it reads).
    # PROFILE_NCU_BATCHES: other batches (a space list), e.g. "16" for the FP8 weight path at a decode batch.
    for b in ${PROFILE_NCU_BATCHES:-1 128 256}; do
      MLABENCH_PROFILER_DECODE_STEPS=20,3 timeout 200 ncu --profile-from-start off --cache-control none --clock-control none \
        --metrics gpu__time_duration.sum --csv $m bench "${lite[@]}" --batch $b --gen 40 --warmup 0 \
        > "$out/ncu_b$b.csv" 2> "$out/ncu_b$b.err"
      row "ncu, V2-Lite batch-$b decode steps 20-22" "rc $?"
      python3 tools/gpu/ncu_summary.py "$out/ncu_b$b.csv" --steps 3 2>&1 | head -45 | sed 's/^/    /' >> "$out/summary.txt"
    done
  fi
fi
# Long context (docs/harness.md, "Long context"): the bench sizes --max-context to its longest shape; every measured
# prompt is fresh, so TTFT is an uncached prefill (the rows' "reused" column must read 0). A 128K prompt prefills
# in one step (LONG_STEP_TOKENS, default 131072), as transformers runs it: 16,384-token steps decompress the latent
# prefix again at each step (36 x 16K keys against 8 x 16K) and measured 4.4% slower (docs/perf-notes.md, round 23).
long_bench() {  # NAME TIMEOUT SHAPES [more bench options]
  local name=$1 t=$2 shapes=$3; shift 3
  timeout "$t" build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 \
    --shapes "$shapes" --gen 128 --max-step-tokens ${LONG_STEP_TOKENS:-131072} --out "$out/bench_dsv2_lite_$name.json" \
    "$@" > "$out/bench_$name.log" 2>&1
  row "bench V2-Lite $name" "rc $? ($shapes)"
  grep -E '^ +[0-9]+ +[0-9]+ |^ *batch|^error|^warning' "$out/bench_$name.log" | sed 's/^/    /' >> "$out/summary.txt"
}
# bench_67b_fp8 NAME TIMEOUT: DeepSeek 67B (random weights) with FP8 weights and cache, --batch max at 4K-token
# sequences (issue 20's memory row: weights, cache and concurrent sequences on one GPU).
bench_67b_fp8() {
  timeout "$2" build-gpu/mlabench bench --device cuda --model configs/deepseek-67b --random-weights 0 \
    --weights-dtype fp8 --kv-cache-dtype fp8 --batch max --prompt 3968 --gen 64 --out "$out/bench_$1.json" > "$out/$1.log" 2>&1
  row "bench DeepSeek 67B FP8 + FP8 cache --batch max" "rc $?"
  grep -E '^# engine|^# --batch max|^ +[0-9]+ +3968 |^# maximum|^error' "$out/$1.log" |
    sed 's/^/    /' >> "$out/summary.txt"
}
named longprefill && long_bench long_prefill 540 32768x1:prefill,131072x1:prefill
named longdecode && long_bench long_decode 540 8192x64:decode,32768x16:decode
named longdecode128 && long_bench long_decode128 540 131072x1:decode
if named fp8; then
  gtests fp8_kernels.log "FP8 kernel tests" test_cuda_kernels "${FP8_KERNEL_TESTS:-CudaFp8*:CudaMoeFp8*:CudaSkinnyFp8*}" \
    'max \||^\[ qgmma|^\[ decode ffn' 40
  gtests fp8_engine.log "FP8 engine tests" test_gpu_engine '*GpuFp8*' 'gpu fp8|Expected|actual' 24
  timeout 150 build-gpu/bench/bench_moe_gemm --quick --json "$out/bench_moe_gemm_fp8.json" > "$out/fp8_moe.log" 2>&1
  row "bench_moe_gemm --quick (fp8 row)" "rc $?"
  grep -E '^device|^(hopper|mma|fp8)|vs fp8-mma' "$out/fp8_moe.log" | sed 's/^/    /' >> "$out/summary.txt"
  for w in auto fp8; do
    timeout ${FP8_BENCH_TIMEOUT:-200} build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 \
      --weights-dtype $w --batch ${FP8_BATCHES:-1,256} --prompt 512 --gen 128 --out "$out/bench_dsv2_lite_weights_$w.json" \
      > "$out/bench_fp8_$w.log" 2>&1
    row "bench V2-Lite --weights-dtype $w" "rc $?"
    grep -E '^ +[0-9]+ +512|^ *batch|^error|max|peak' "$out/bench_fp8_$w.log" | grep -v '^ *{' | head -12 | sed 's/^/    /' >> "$out/summary.txt"
  done
fi
# Issue 20's FP8 KV cache on the Hopper MLA decode kernel (named only): the MLA decode kernel tests (the FP8 pool
# modes among them) and the FP8 cache tests, the 16-head decode kernel over BF16 and FP8 slots (bench_decode_attention
# --only mla16), and V2-Lite decode at 32K x 16 with the BF16 and the FP8 cache, BF16 and FP8 weights (issue 20's
# 1.7x target; FP8KV_SHAPES to change the shape).
if named fp8kv; then
  gtests fp8kv_tests.log "MLA/GQA decode + FP8 cache tests" test_cuda_kernels \
    'CudaAttention.MlaDecode*:CudaAttention.Gqa*:CudaFp8Cache*' 'fp8 cache \]' 24
  timeout 150 build-gpu/bench/bench_decode_attention --only mla16 --reps 20 > "$out/fp8kv_kernel.log" 2>&1
  row "bench decode attention (mla16, BF16 and FP8 slots)" "rc $?"
  timeout 100 build-gpu/bench/bench_decode_attention --only gqa --reps 20 | grep -E '^gqa' >> "$out/fp8kv_kernel.log" 2>&1
  row "bench decode attention (gqa, BF16 and FP8 slots)" "rc $?"
  grep -E '^(#|kernel|mla|gqa)' "$out/fp8kv_kernel.log" | sed 's/^/    /' >> "$out/summary.txt"
  for w in auto fp8; do
    for kv in auto fp8; do
      timeout 200 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 \
        --shapes "${FP8KV_SHAPES:-32768x16:decode}" --gen 128 --weights-dtype $w --kv-cache-dtype $kv \
        --out "$out/bench_dsv2_lite_kv_${kv}_weights_$w.json" > "$out/bench_fp8kv_${kv}_$w.log" 2>&1
      row "bench V2-Lite kv $kv, weights $w" "rc $?"
      grep -E '^ +[0-9]+ +[0-9]+ |^ *batch|^error' "$out/bench_fp8kv_${kv}_$w.log" | sed 's/^/    /' >> "$out/summary.txt"
    done
  done
fi
# Issue 20 at batch 1 (named only): the fused skinny FP8 GEMM and the FP8 decode FFN against their twins, the FP8
# engine tests, then V2-Lite b1 with BF16, FP8 weights + cache, and FP8 with MLABENCH_FP8_FUSED_QUANT=0 (one call).
if named fp8b1; then
  gtests fp8b1_kernels.log "skinny FP8 + decode FFN tests" test_cuda_kernels \
    'CudaSkinnyFp8*:CudaMoeFp8.DecodeFfn*:CudaMoe.DecodeFfn*' 'skinny fp8 fused|decode ffn' 16
  gtests fp8b1_engine.log "FP8 engine tests" test_gpu_engine '*GpuFp8*' 'gpu fp8' 12
  b1=(--device cuda --model configs/deepseek-v2-lite --random-weights 0 --prompt 512 --batch 1 --gen 128)
  for cfg in "bf16 1 auto" "fp8 1 fp8" "fp8_unfused 0 fp8"; do
    set -- $cfg
    MLABENCH_FP8_FUSED_QUANT=$2 timeout 60 build-gpu/mlabench bench "${b1[@]}" --weights-dtype $3 --kv-cache-dtype $3 \
      --out "$out/bench_dsv2_lite_b1_$1.json" > "$out/fp8b1_$1.log" 2>&1
    row "bench V2-Lite b1, $1" "rc $?"
    grep -E '^ +1 +512 |^error' "$out/fp8b1_$1.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
fi
# The MoE decode entry in one launch (named only; issue 20 round 7): norm_router and the router / decode-FFN kernels
# against their twins, then V2-Lite b1 and b16 with BF16 and with FP8 weights + cache, each with the fused launch and
# with MLABENCH_FUSE_ROUTER=0 (rms_norm, the router GEMM and router: three launches), side by side in one call.
# switch_ab NAME VAR BATCHES [VALUES]: V2-Lite decode (512 + 128, random weights) at each batch with BF16 and with FP8
# weights + cache, each with VAR at each of VALUES (default "1 0": one call, the ratios), JSON and log as
# NAME_b<batch>_<dtype>_fuse<v>.
switch_ab() {
  local name=$1 var=$2 b dt wd v log
  for b in $3; do
    for dt in bf16 fp8; do
      wd=auto; [ $dt = fp8 ] && wd=fp8
      for v in ${4:-1 0}; do
        log="$out/${name}_b${b}_${dt}_fuse$v"
        env "$var=$v" timeout 60 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite \
          --random-weights 0 --prompt 512 --batch $b --gen 128 --weights-dtype $wd --kv-cache-dtype $wd \
          --out "$out/bench_${name}_b${b}_${dt}_fuse$v.json" > "$log.log" 2>&1
        row "bench V2-Lite b$b $dt, ${var#MLABENCH_}=$v" "rc $? $(grep -E "^ +$b +512 " "$log.log" | head -1)"
      done
    done
  done
}
# kernel_ab NAME LABEL FILTER LINES N VAR BATCHES: a fused path's kernel tests (gtests into NAME_kernels.log), then
# its switch's A/B (switch_ab NAME VAR BATCHES).
kernel_ab() {
  gtests "$1_kernels.log" "$2" test_cuda_kernels "$3" "$4" "$5"
  switch_ab "$1" "$6" "$7"
}
if named router; then
  kernel_ab router "norm_router + router + decode FFN tests" \
    'CudaMoe.NormRouter*:CudaMoe.Router*:CudaMoe.DecodeFfn*:CudaMoeFp8.DecodeFfn*' 'norm router' 8 \
    MLABENCH_FUSE_ROUTER "${ROUTER_BATCHES:-1 16}"
fi
# The input norms in the projections' launches (named only): the kernels against rms_norm then the product, bit for
# bit, then decode tok/s with MLABENCH_FUSE_NORM=1 (the default: one row) and 0 side by side, and at two rows with
# MLABENCH_FUSE_NORM=2 (the norm forms at two rows) against 1 (the separate launch).
if named normfuse; then
  gtests normfuse_kernels.log "norm-form kernel tests" test_cuda_kernels \
    'CudaNormFusion.*:CudaSkinnyGemm.*:CudaSkinnyFp8.*:CudaMoe.NormRouter*:CudaElementwise*' 'norm|skinny' 24
  switch_ab normfuse MLABENCH_FUSE_NORM "${NORMFUSE_BATCHES:-1}"
  switch_ab normfuse MLABENCH_FUSE_NORM "${NORMFUSE_BATCHES2:-2}" "2 1"
  for f in 1 0; do
    MLABENCH_FUSE_NORM=$f timeout 90 build-gpu/mlabench bench --device cuda --model configs/llama-3-8b --random-weights 0 \
      --prompt 512 --batch 1 --gen 128 --out "$out/bench_normfuse_llama3_b1_fuse$f.json" > "$out/normfuse_llama3_fuse$f.log" 2>&1
    row "bench Llama-3-8B b1, FUSE_NORM=$f" "rc $? $(grep -E '^ +1 +512 ' "$out/normfuse_llama3_fuse$f.log" | head -1)"
  done
  if [ "${NORMFUSE_LONG:-0}" = 1 ]; then
    for f in 1 0; do
      MLABENCH_FUSE_NORM=$f timeout 150 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite \
        --random-weights 0 --prompt 131072 --batch 1 --gen 64 --out "$out/bench_normfuse_128k_fuse$f.json" \
        > "$out/normfuse_128k_fuse$f.log" 2>&1
      row "bench V2-Lite 128K x 1, FUSE_NORM=$f" "rc $? $(grep -E '^ +1 +131072 ' "$out/normfuse_128k_fuse$f.log" | head -1)"
    done
  fi
fi
# The router's top-k inside moe_decode_ffn's two launches (named only; issue 16 round 13): the decode-FFN and router
# kernel tests (the route form against the twin), then V2-Lite b1 BF16 and FP8 with MLABENCH_FUSE_TOPK=1 and 0.
if named topk; then
  kernel_ab topk "decode FFN + router tests" 'CudaMoe.DecodeFfn*:CudaMoeFp8.DecodeFfn*:CudaMoe.Router*:CudaMoe.Layer*' \
    'route|ffn' 16 MLABENCH_FUSE_TOPK "${TOPK_BATCHES:-1}"
fi
# A decode step's latent_append in W_UK's launch (named only; issue 16 round 13): the fused launch against the two,
# latent_append's tests (BF16 and FP8 pools), then V2-Lite b1 BF16 and FP8 with MLABENCH_FUSE_APPEND=1 and 0.
if named append; then
  kernel_ab append "W_UK + latent_append tests" \
    'CudaSkinnyGemm.*:CudaElementwise.LatentAppend*:CudaFp8Cache.CacheWrite*:CudaFp8Cache.LatentAndKv*' 'append|latent' \
    16 MLABENCH_FUSE_APPEND "${APPEND_BATCHES:-1}"
fi
if named persist; then
  gtests persist_kernels.log "MLA decode tests" test_cuda_kernels 'CudaAttention.MlaDecode*' 'mla decode' 12
  for v in 1 0; do
    MLABENCH_MLA_DECODE_PERSISTENT=$v timeout 120 build-gpu/bench/bench_decode_attention --only mla16 --reps 20 \
      --shape 256x576 --shape 512x576 --shape 2048x640 --shape 1x131072 --shape 256x2048 |
      grep -E '^mla' | sed "s/^/persistent $v: /" >> "$out/persist_kernel.log" 2>&1
  done
  sed 's/^/    /' "$out/persist_kernel.log" >> "$out/summary.txt"
  timeout 60 build-gpu/bench/bench_decode_attention --only mla16 --shape 1x131072 --timeline --reps 20 \
    > "$out/persist_timeline.log" 2>&1
  grep -E '^#   (min|p10|p50|p90|max)' "$out/persist_timeline.log" | sed 's/^/    /' >> "$out/summary.txt"
  switch_ab persist MLABENCH_MLA_DECODE_PERSISTENT "${PERSIST_BATCHES:-256}"
fi
# Issue 20 round 13 (named only): SM-many CTAs for the MLA decode kernel over FP8 slots too, now that the F16 form's tiles
# are cheaper (MLABENCH_MLA_DECODE_PERSISTENT 1 = both pools, 2 = BF16 pools only, the default): the MLA decode tests,
# the FP8 kernel at the maximum batch's shapes with both, the BF16 kernel beside them, and V2-Lite FP8 weights + cache
# at the H100's maximum batch (FP8PERSIST_BATCH) with both.
if named fp8persist; then
  gtests fp8persist_kernels.log "MLA decode tests" test_cuda_kernels 'CudaAttention.MlaDecode*:CudaFp8Cache*' 'mla decode' 12
  shapes=(--shape 2048x640 --shape 1024x640 --shape 256x576 --shape 256x2048 --shape 16x32768 --shape 1x131072)
  for v in 2 1; do
    MLABENCH_MLA_DECODE_PERSISTENT=$v timeout 90 build-gpu/bench/bench_decode_attention --only mla-fp8 --reps 20 \
      "${shapes[@]}" | grep -E '^mla' | sed "s/^/fp8 persistent $v: /" >> "$out/fp8persist_kernel.log" 2>&1
  done
  timeout 90 build-gpu/bench/bench_decode_attention --only mla16 --reps 20 "${shapes[@]}" | grep -E '^mla' |
    sed 's/^/bf16 (persistent): /' >> "$out/fp8persist_kernel.log" 2>&1
  sed 's/^/    /' "$out/fp8persist_kernel.log" >> "$out/summary.txt"
  for v in 2 1; do
    MLABENCH_MLA_DECODE_PERSISTENT=$v timeout 150 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite \
      --random-weights 0 --weights-dtype fp8 --kv-cache-dtype fp8 --batch ${FP8PERSIST_BATCH:-2482} --prompt 512 \
      --gen 128 --out "$out/bench_fp8persist_$v.json" > "$out/fp8persist_$v.log" 2>&1
    row "bench V2-Lite FP8 b${FP8PERSIST_BATCH:-2482}, PERSISTENT=$v" "rc $? $(grep -E '^ +[0-9]+ +512 ' "$out/fp8persist_$v.log" | head -1)"
  done
fi
# GQA prefill over FP8 slots (named only): the gathered BF16 pools (MLABENCH_GQA_FP8_PREFILL=1) against the float32
# generic kernel (0) in the FP8 engine tests and a Llama-3-8B 4K prompt; DeepSeek 67B in FP8 on one GPU with them.
if named gqafp8; then
  for v in 1 0; do
    (export MLABENCH_GQA_FP8_PREFILL=$v
     gtests gqafp8_tests_$v.log "FP8 engine tests, GQA_FP8_PREFILL=$v" test_gpu_engine '*GpuFp8*' 'gpu fp8 kv|Expected|actual' 12)
  done
  for v in 1 0; do
    MLABENCH_GQA_FP8_PREFILL=$v timeout ${GQAFP8_TIMEOUT:-150} build-gpu/mlabench bench --device cuda \
      --model configs/llama-3-8b --random-weights 0 --kv-cache-dtype fp8 --batch 1,8 --prompt 4032 --gen 64 \
      --out "$out/bench_llama3_8b_fp8kv_gather$v.json" > "$out/gqafp8_llama_$v.log" 2>&1
    row "bench Llama-3-8B FP8 cache, GQA_FP8_PREFILL=$v" "rc $? $(grep -E '^ +[0-9]+ +4032 ' "$out/gqafp8_llama_$v.log" | tr -s ' ' | tr '\n' ';')"
  done
  MLABENCH_GQA_FP8_PREFILL=1 bench_67b_fp8 67b_fp8_fp8kv ${GQAFP8_67B_TIMEOUT:-240}
fi
# Issue 20 round 10 (named only): the FP8 MLA decode kernel's F16 form against its BF16-value form.
if named fp8f16; then
  gtests fp8f16_tests.log "MLA decode + FP8 cache kernel tests" test_cuda_kernels 'CudaAttention.MlaDecode*:CudaFp8Cache*' \
    'fp8 cache \]|Expected|actual|Which is' 24
  (export MLABENCH_MLA_FP8_DECODE=f16
   gtests fp8f16_engine.log "FP8 engine tests, F16 form" test_gpu_engine '*GpuFp8*' 'gpu fp8|Expected|actual' 12)
  for form in f16 bf16; do
    MLABENCH_MLA_FP8_DECODE=$form timeout 120 build-gpu/bench/bench_decode_attention --only mla-fp8 --reps 20 \
      > "$out/fp8f16_kernel_$form.log" 2>&1
    row "bench decode attention mla-fp8, form $form" "rc $?"
    grep -E '^(#|kernel|mla)' "$out/fp8f16_kernel_$form.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
  MLABENCH_MLA_FP8_DECODE=f16 timeout 60 build-gpu/bench/bench_decode_attention --only mla-fp8 --reps 20 --shape 1x131072 --shape 16x32768 \
    --timeline > "$out/fp8f16_timeline.log" 2>&1
  row "bench decode attention mla-fp8 --timeline" "rc $?"
  for cfg in "bf16 auto auto" "f16 fp8 fp8" "bf16 fp8 fp8"; do
    set -- $cfg
    MLABENCH_MLA_FP8_DECODE=$1 timeout 150 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite \
      --random-weights 0 --shapes "${FP8F16_SHAPES:-32768x16:decode}" --gen 128 --weights-dtype $2 --kv-cache-dtype $3 \
      --out "$out/bench_dsv2_lite_32kx16_$2_form$1.json" > "$out/fp8f16_engine_$2_$1.log" 2>&1
    row "bench V2-Lite 32K x 16, $2 weights + cache, form $1" "rc $?"
    grep -E '^ +[0-9]+ +[0-9]+ |^error' "$out/fp8f16_engine_$2_$1.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
fi
# Issue 20 at batch 1, where the step's time goes (named only): V2-Lite b1 with BF16 and with FP8 weights + cache,
# then FP8 with each MLABENCH_TIMING_SKIP stage left out alone and all of them together (engine/kernels/cuda/
# cuda_check.h: those launches skipped, outputs wrong): what fusing each launch away can save at most, graphed.
if named b1skip; then
  b1=(--device cuda --model configs/deepseek-v2-lite --random-weights 0 --prompt 512 --batch 1 --gen 128)
  all=input_norm,latent_append,w_uk,combine,w_uv,post_norm,router_gemm,router_topk
  for cfg in "bf16 auto -" "fp8 fp8 -" "fp8 fp8 input_norm" "fp8 fp8 latent_append" "fp8 fp8 w_uk" "fp8 fp8 combine" \
             "fp8 fp8 w_uv" "fp8 fp8 post_norm" "fp8 fp8 router_gemm" "fp8 fp8 router_topk" "fp8 fp8 $all"; do
    set -- $cfg
    skip=$3; [ "$skip" = - ] && skip=
    name="$1_${skip:-none}"; [ "$skip" = "$all" ] && name="$1_all"
    MLABENCH_TIMING_SKIP=$skip timeout 60 build-gpu/mlabench bench "${b1[@]}" --weights-dtype $2 --kv-cache-dtype $2 \
      --out "$out/bench_b1skip_$name.json" > "$out/b1skip_$name.log" 2>&1
    row "bench V2-Lite b1, $name" "rc $? $(grep -E '^ +1 +512 ' "$out/b1skip_$name.log" | awk '{print $0}' | head -1)"
  done
fi
# Issue 20 at batch 16 (named only): skinny_gemm_fp8 at 1-16 rows against its twin, the FP8 and sharded GPU engine
# tests, then V2-Lite b16 (512-token prompts) and 32K x 16 with BF16, FP8 weights, and FP8 weights + cache (one call).
if named fp8b16; then
  gtests fp8b16_kernels.log "skinny FP8 tests (1-16 rows)" test_cuda_kernels 'CudaSkinnyFp8*' 'skinny_gemm_fp8 m|fused' 24
  gtests fp8b16_engine.log "FP8 engine tests, FP8 on GPU ranks" test_gpu_engine '*GpuFp8*:ShardedGpu.*' 'gpu fp8|sharded gpu' 24
  # Weights / cache: BF16 / BF16, FP8 / BF16, FP8 / FP8 (the FP8 cache's own ratio is the last row over the second).
  for cfg in "auto auto" "fp8 auto" "fp8 fp8"; do
    set -- $cfg
    timeout 100 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 \
      --weights-dtype $1 --kv-cache-dtype $2 --batch 16 --prompt 512 --gen 128 \
      --out "$out/bench_dsv2_lite_b16_w$1_kv$2.json" > "$out/fp8b16_w$1_kv$2.log" 2>&1
    row "bench V2-Lite b16, weights $1, cache $2" "rc $?"
    grep -E '^ +16 +512 |^error' "$out/fp8b16_w$1_kv$2.log" | sed 's/^/    /' >> "$out/summary.txt"
    timeout 200 build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite --random-weights 0 \
      --shapes 32768x16:decode --gen 128 --weights-dtype $1 --kv-cache-dtype $2 \
      --out "$out/bench_dsv2_lite_32kx16_w$1_kv$2.json" > "$out/fp8b16_32k_w$1_kv$2.log" 2>&1
    row "bench V2-Lite 32K x 16, weights $1, cache $2" "rc $?"
    grep -E '^ +16 +32768 |^error' "$out/fp8b16_32k_w$1_kv$2.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
fi
# Issue 20 round 12 (named only): the FP8 shared experts on the MoE layer's second stream (MLABENCH_MOE_SHARED_STREAM):
# its test (the same bits as one stream, eager and graphed), the FP8 engine tests, V2-Lite b16 and 32K x 16 with FP8
# weights + cache with the side stream and without, BF16 / BF16 beside them (the ratios of issue 20's targets), and
# (FP8SIDE_NCU=1) ncu kernel times of 3 graphed FP8 b16 steps.
if named fp8side; then
  kernel_ab fp8side "side stream, FP8 gather, FP8 tests" \
    'CudaMoeLayerSharedStream.*:CudaMoe.Fp8Gather*:CudaMoe.Gather*:CudaFp8*' 'side|gather' 12 \
    MLABENCH_MOE_SHARED_STREAM "${FP8SIDE_BATCHES:-16}"
  # The engine tests with the side stream on (gputest runs them with the defaults).
  MLABENCH_MOE_SHARED_STREAM=1 gtests fp8side_engine.log "FP8 engine tests, side stream 1" test_gpu_engine '*GpuFp8*' \
    'gpu fp8|Expected|actual' 24
  for cfg in ${FP8SIDE_32K:-auto1 fp81 fp80}; do  # weights + cache dtype, then the switch's value
    # 16K-token steps (the CUDA default), as fp8kv's rows: one 128K-token step's activations leave an 80 GB card too
    # little cache for 16 x 32K BF16 sequences, which then pre-empt and recompute.
    LONG_STEP_TOKENS=16384 MLABENCH_MOE_SHARED_STREAM=${cfg: -1} long_bench fp8side_32k_$cfg 200 32768x16:decode \
      --weights-dtype ${cfg%?} --kv-cache-dtype ${cfg%?}
  done
  python3 - "$out" >> "$out/summary.txt" <<'PY'
import json, os, sys
def tok(name):
    p = os.path.join(sys.argv[1], name)
    if not os.path.exists(p): return None
    r = next(iter(json.load(open(p)).get("rows", [])), None)
    return r and (r.get("decode_full_batch_tokens_per_s") or r.get("decode_tokens_per_s"))
b = os.environ.get("FP8SIDE_BATCHES", "16").split()[0]
for shape, name in ((f"b{b}", f"bench_fp8side_b{b}_{{}}_fuse{{}}.json"), ("32kx16", "bench_dsv2_lite_fp8side_32k_{}{}.json")):
    bf, on, off = (tok(name.format(w if shape == "32kx16" else d, s)) for w, d, s in
                   (("auto", "bf16", 1), ("fp8", "fp8", 1), ("fp8", "fp8", 0)))
    if bf and on:
        print(f"    {shape}: BF16 {bf:,.1f}, FP8 side stream {on:,.1f} ({on / bf:.2f}x)" + (
              f", one stream {off:,.1f} ({off / bf:.2f}x); side / one {on / off:.3f}" if off else ""))
PY
  if [ "${FP8SIDE_NCU:-0}" = 1 ] && command -v ncu > /dev/null; then
    MLABENCH_PROFILER_DECODE_STEPS=20,3 timeout 200 ncu --profile-from-start off --cache-control none --clock-control none \
      --metrics gpu__time_duration.sum --csv build-gpu/mlabench bench --device cuda --model configs/deepseek-v2-lite \
      --random-weights 0 --weights-dtype fp8 --kv-cache-dtype fp8 --prompt 512 --batch 16 --gen 40 --warmup 0 \
      > "$out/ncu_fp8_b16.csv" 2> "$out/ncu_fp8_b16.err"
    row "ncu, V2-Lite FP8 batch-16 decode steps 20-22" "rc $?"
    python3 tools/gpu/ncu_summary.py "$out/ncu_fp8_b16.csv" --steps 3 2>&1 | head -45 | sed 's/^/    /' >> "$out/summary.txt"
  fi
fi
# Issue 20's accuracy cost through the harness (named only): V2-Lite's shapes, random weights, the real tokenizer, MMLU
# 5-shot and GSM8K 8-shot CoT (--limit FP8H_LIMIT, default 3) with BF16, the FP8 cache, FP8 weights and both;
# `mlabench compare` pairs each with BF16 (argmax agreement, |delta log p|, McNemar) into $out/fp8_compare.json.
if named fp8harness && [ -d .carry/shared/datasets ]; then
  lite=$(lite_with_tokenizer)
  ds=(--mirror "$PWD/.carry/shared/datasets" --data-dir /tmp/mlabench-datasets --offline --no-progress)
  runs=()
  for cfg in "bf16 auto auto" "kv-fp8 auto fp8" "weights-fp8 fp8 auto" "both-fp8 fp8 fp8"; do
    set -- $cfg
    rm -rf "/tmp/fp8h-$1"
    timeout ${FP8H_TIMEOUT:-90} build-gpu/mlabench run --model $lite --random-weights 0 --device cuda --tasks mmlu,gsm8k_cot \
      --limit ${FP8H_LIMIT:-3} --weights-dtype $2 --kv-cache-dtype $3 --output "/tmp/fp8h-$1" "${ds[@]}" > "$out/fp8h_$1.log" 2>&1
    row "harness V2-Lite $1" "rc $?"
    runs+=("$1=/tmp/fp8h-$1")
  done
  build-gpu/mlabench compare "${runs[@]}" --out "$out/fp8_compare.json" > "$out/fp8_compare.log" 2>&1
  row "mlabench compare (FP8 against BF16)" "rc $?"
  sed 's/^/    /' "$out/fp8_compare.log" | head -40 >> "$out/summary.txt"
fi
if named longpeer; then
  timeout 560 python3 tools/gpu/bench_transformers.py --config configs/deepseek-v2-lite --batch 1 --prompt 32768,131072 \
    --prefill-only --max-seconds 540 --out "$out/peer_transformers_long.json" > "$out/peer_long.log" 2>&1
  row "peer: transformers V2-Lite long" "rc $?"
  tail -5 "$out/peer_long.log" | sed 's/^/    /' >> "$out/summary.txt"
fi

# NCCL between this host's GPUs (named only; needs 2 or more): all-reduce and all-gather at decode and prefill sizes,
# checked bit for bit against the CPU twin of the collectives (bench/bench_nccl.cpp).
if named nccl; then
  if [ -x build-gpu/bench/bench_nccl ]; then
    timeout 300 build-gpu/bench/bench_nccl --reps 30 > "$out/nccl.log" 2>&1
    row "bench_nccl" "rc $?"
    sed 's/^/    /' "$out/nccl.log" >> "$out/summary.txt"
  else
    row "bench_nccl" "not built (no NCCL found: build.log)"
  fi
fi
# Several GPUs (issue 22; named only). The sharded engine on V2-Lite at --tp 1, 2, 4, 8 (as far as the GPUs go; on
# one GPU, --tp 2 with the ranks sharing it and joining through the host: parity, not speed), NCCL and host-staged
# joins side by side at --tp 2; then DeepSeek-V2 (236B, 4 or more GPUs) and DeepSeek 67B (2 or more) in BF16, random
# weights generated a rank's slice at a time on each GPU: load time (bench's load_seconds), decode at batch 1 and 64.
sharded_bench() {  # NAME TIMEOUT ARGS...
  local name=$1 t=$2; shift 2
  timeout "$t" build-gpu/mlabench bench --device cuda --random-weights 0 --prompt 512 --gen 64 --batch 1,64 \
    --out "$out/bench_sharded_$name.json" "$@" > "$out/sharded_$name.log" 2>&1
  row "sharded $name" "rc $?"
  grep -E '^# engine opened|^ +[0-9]+ +512 |^error' "$out/sharded_$name.log" | sed 's/^/    /' >> "$out/summary.txt"
}
if named sharded; then
  ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
  lite=(--model configs/deepseek-v2-lite --kv-cache-gib 16)
  if [ "$ngpu" -lt 2 ]; then
    sharded_bench lite_tp1 150 "${lite[@]}"
    sharded_bench lite_tp2_shared 200 "${lite[@]}" --tp 2
    sharded_bench lite_tp2_ep2_shared 200 "${lite[@]}" --tp 2 --ep 2
  else
    for tp in 1 2 4 8; do
      [ "$tp" -le "$ngpu" ] && sharded_bench "lite_tp$tp" 150 "${lite[@]}" --tp $tp
      [ "$tp" -gt 1 ] && [ "$tp" -le "$ngpu" ] && sharded_bench "lite_tp${tp}_ep$tp" 150 "${lite[@]}" --tp $tp --ep $tp
      [ "$tp" -gt 1 ] && [ "$tp" -le "$ngpu" ] && sharded_bench "lite_ep${tp}_dp" 150 "${lite[@]}" --ep $tp --dp-attention
    done
    MLABENCH_COLLECTIVES=host sharded_bench lite_tp2_host 150 "${lite[@]}" --tp 2
    big=4; [ "$ngpu" -ge 8 ] && big=8
    [ "$ngpu" -ge 4 ] && sharded_bench v2_tp$big 400 --model configs/deepseek-v2 --kv-cache-gib 8 --tp $big
    [ "$ngpu" -ge 4 ] && sharded_bench v2_tp${big}_ep$big 400 --model configs/deepseek-v2 --kv-cache-gib 8 --tp $big --ep $big
    [ "$ngpu" -ge 4 ] && sharded_bench v2_ep${big}_dp 400 --model configs/deepseek-v2 --kv-cache-gib 8 --ep $big --dp-attention
    sharded_bench 67b_tp$(( ngpu >= 4 ? 4 : 2 )) 300 --model configs/deepseek-67b --kv-cache-gib 8 --tp $(( ngpu >= 4 ? 4 : 2 ))
  fi
fi
# Expert parallelism and DP attention on GPU ranks (named only): their tests, then V2-Lite --tp 2 --ep 2 and
# --ep 2 --dp-attention beside --tp 2.
if named ep; then
  gtests ep_kernels.log "EP MoE layer tests" test_cuda_kernels 'CudaMoeLayer*ExpertParallel*' 'rank' 12
  gtests ep_engine.log "EP / DP engine tests" test_gpu_engine \
    'ShardedGpu.ExpertParallel*:ShardedGpu.Fp8WeightsAndCache*:ShardedGpu.DpAttention*:ShardedGpu.Refuses*' 'sharded gpu' 24
  ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
  lite=(--model configs/deepseek-v2-lite --kv-cache-gib 16)
  sharded_bench lite_tp2 200 "${lite[@]}" --tp 2
  sharded_bench lite_tp2_ep2 200 "${lite[@]}" --tp 2 --ep 2
  sharded_bench lite_ep2_dp 200 "${lite[@]}" --ep 2 --dp-attention
  [ "$ngpu" -ge 4 ] && sharded_bench lite_tp4_ep4 200 "${lite[@]}" --tp 4 --ep 4
fi
# The one-GPU target rows of issues 15, 16 and 20 (named only), each the issue's shape, every run's JSON kept.
if named targets; then
  skip=" ${TARGETS_SKIP:-} "
  m=build-gpu/mlabench
  lite=(--device cuda --model configs/deepseek-v2-lite --random-weights 0)
  if [[ $skip != *" lite "* ]]; then
    for w in auto fp8; do
      timeout 200 $m bench "${lite[@]}" --weights-dtype $w --batch 1,256 --prompt 512 --gen 128 \
        --out "$out/bench_targets_lite_w$w.json" > "$out/targets_lite_w$w.log" 2>&1
      row "target V2-Lite b1/b256, weights $w" "rc $?"
      grep -E '^ +[0-9]+ +512 |^ *batch|^error' "$out/targets_lite_w$w.log" | sed 's/^/    /' >> "$out/summary.txt"
    done
  fi
  if [[ $skip != *" llama "* ]]; then
    timeout 120 $m bench --device cuda --model configs/llama-3-8b --random-weights 0 --batch 1 --prompt 512 --gen 128 \
      --out "$out/bench_targets_llama3_8b_b1.json" > "$out/targets_llama.log" 2>&1
    row "target Llama-3-8B b1" "rc $?"
    grep -E '^ +[0-9]+ +512 |^ *batch|^error|copy' "$out/targets_llama.log" | sed 's/^/    /' >> "$out/summary.txt"
  fi
  if [[ $skip != *" kernel "* ]]; then
    timeout 90 build-gpu/bench/bench_decode_attention --only mla16 --reps 30 > "$out/targets_kernel.log" 2>&1
    row "target MLA decode kernel (share of copy)" "rc $?"
    grep -E '^#|^kernel|^mla +16 +(1 +131072|64 +8192) ' "$out/targets_kernel.log" | sed 's/^/    /' >> "$out/summary.txt"
  fi
  if [[ $skip != *" long128 "* ]]; then
    long_bench targets_long128 200 131072x1:decode
  fi
  for w in auto fp8; do
    [[ $w = auto && $skip = *" max "* ]] && continue
    [[ $w = fp8 && $skip = *" maxfp8 "* ]] && continue
    timeout 240 $m bench "${lite[@]}" --weights-dtype $w --kv-cache-dtype $w --batch max --prompt 512 --gen 128 \
      --out "$out/bench_targets_lite_max_$w.json" > "$out/targets_max_$w.log" 2>&1
    row "target V2-Lite --batch max, weights + cache $w" "rc $?"
    grep -E '^# --batch max|^ +[0-9]+ +512 |^# maximum|^error' "$out/targets_max_$w.log" | sed 's/^/    /' >> "$out/summary.txt"
  done
  # Issue 20's FP8 cache target: 32K x 16 (16K-token steps, the CUDA default), BF16 weights + cache against FP8 both.
  if [[ $skip != *" kv32k "* ]]; then
    for w in auto fp8; do
      LONG_STEP_TOKENS=16384 long_bench targets_32kx16_$w 200 32768x16:decode --weights-dtype $w --kv-cache-dtype $w
    done
  fi
  # Issue 20's memory row: DeepSeek 67B with FP8 weights and cache on one GPU, concurrent 4K-token sequences.
  if [[ $skip != *" 67b "* ]]; then
    bench_67b_fp8 targets_67b_fp8 240
  fi
  # Each target beside its row: FP8 against BF16 from the same call.
  python3 - "$out" >> "$out/summary.txt" <<'PY'
import json, os, sys
def load(name):
    p = os.path.join(sys.argv[1], name)
    return json.load(open(p)) if os.path.exists(p) else None
def tok(d, batch):
    return next((r["decode_tokens_per_s"] for r in (d or {}).get("rows", []) if r["batch"] == batch), None)
bf, f8 = load("bench_targets_lite_wauto.json"), load("bench_targets_lite_wfp8.json")
for b, target in ((1, "700 tok/s (issue 16); FP8 weights 1.6x (issue 20)"), (256, "20,000 tok/s (issue 16)")):
    x, y = tok(bf, b), tok(f8, b)
    if x: print(f"    V2-Lite b{b}: BF16 {x:,.1f} tok/s" + (f", FP8 weights {y:,.1f} ({y / x:.2f}x)" if y else "") + f"; target {target}")
m0, m1 = load("bench_targets_lite_max_auto.json"), load("bench_targets_lite_max_fp8.json")
g = lambda d: (d or {}).get("max_generation_throughput", {}).get("generated_tokens_per_s")
if g(m0): print(f"    max generation: BF16 {g(m0):,.0f} tok/s (target 30,000)" +
                (f", FP8 weights + cache {g(m1):,.0f} ({g(m1) / g(m0):.2f}x; target 1.4x)" if g(m1) else ""))
ll = load("bench_targets_llama3_8b_b1.json")
r = next(iter((ll or {}).get("rows", [])), None)
if r: print(f"    Llama-3-8B b1: {r['decode_tokens_per_s']:,.1f} tok/s, {100 * r['roofline_share']:.1f}% of copy (target 85%)")
k0, k1 = load("bench_dsv2_lite_targets_32kx16_auto.json"), load("bench_dsv2_lite_targets_32kx16_fp8.json")
fb = lambda d: next((r.get("decode_full_batch_tokens_per_s") or r["decode_tokens_per_s"]
                     for r in (d or {}).get("rows", [])), None)
if fb(k0) and fb(k1): print(f"    V2-Lite 32K x 16: BF16 {fb(k0):,.1f} tok/s, FP8 weights + cache {fb(k1):,.1f} "
                           f"({fb(k1) / fb(k0):.2f}x; target 1.7x)")
lc = load("bench_dsv2_lite_targets_long128.json")
r = next(iter((lc or {}).get("rows", [])), None)
if r and r.get("decode_tokens_per_s"): print(f"    V2-Lite 128K x 1: {r['decode_tokens_per_s']:,.1f} tok/s (target 350)")
PY
fi
if named niahgrid && [ -d .carry/shared/datasets ]; then
  lite=$(lite_with_tokenizer)
  rm -rf /tmp/niah-grid
  t0=$(date +%s.%N)
  timeout ${NIAH_TIMEOUT:-560} build-gpu/mlabench run --model $lite --random-weights 0 --device cuda --max-context 131072 \
    --max-step-tokens ${NIAH_STEP_TOKENS:-16384} --tasks niah --output /tmp/niah-grid --mirror "$PWD/.carry/shared/datasets" \
    --data-dir /tmp/mlabench-datasets --offline --no-progress > "$out/niah_grid.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  cp /tmp/niah-grid/results.json "$out/niah_grid_results.json" 2>/dev/null
  python3 - "$rc" "$t0" "$t1" >> "$out/summary.txt" <<'PY'
import json, sys
rc, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
if rc != 0:
    print(f"{'niah grid V2-Lite random, cuda':34s} FAILED rc {rc} after {t1-t0:.0f} s (niah_grid.log)"); sys.exit()
r = json.load(open("/tmp/niah-grid/results.json"))
s = [json.loads(l) for l in open("/tmp/niah-grid/samples_niah.jsonl")]
st = r["provenance"]["engine_this_invocation"]
total = sum(x["context_tokens"] for x in s)
print(f"{'niah grid V2-Lite random, cuda':34s} {len(s)} prompts to {max(x['context_tokens'] for x in s)} tokens in "
      f"{t1-t0:.1f} s (load included); {total} prompt tokens, {st['prefill_tokens_computed']} computed, "
      f"{st['prefix_tokens_reused']} from the prefix cache ({total / max(st['prefill_tokens_computed'], 1):.2f}x fewer), "
      f"{st['decode_tokens']} decoded, {st['preemptions']} pre-emptions")
PY
fi

if want peer; then
  timeout 400 python3 tools/gpu/bench_transformers.py --config configs/deepseek-v2-lite --batch ${PEER_BATCHES:-1,16,64} \
    --prompt 512 --gen 128 --max-seconds 300 --out "$out/peer_transformers.json" > "$out/peer.log" 2>&1
  row "peer: transformers V2-Lite" "rc $?"
  tail -8 "$out/peer.log" | sed 's/^/    /' >> "$out/summary.txt"
fi

if want harness && [ -d .carry/shared/datasets ]; then
  # The evaluator on the GPU: the bundled model on CPU and on CUDA (float32 precision: the same answers up to
  # near-ties), then V2-Lite's shapes with random weights and the real DeepSeek-V2 tokenizer on MMLU 5-shot and
  # GSM8K 8-shot CoT (throughput of the whole harness path: prompts, shared contexts, batched generation).
  m=build-gpu/mlabench
  ds=(--mirror "$PWD/.carry/shared/datasets" --data-dir /tmp/mlabench-datasets --offline --no-progress)
  rm -rf /tmp/h-cpu /tmp/h-cuda /tmp/h-lite /tmp/h-code /tmp/bh-he
  $m run --tasks mmlu,gsm8k_cot --limit 3 --output /tmp/h-cpu "${ds[@]}" > "$out/harness.log" 2>&1
  $m run --tasks mmlu,gsm8k_cot --limit 3 --output /tmp/h-cuda --device cuda --precision f32 "${ds[@]}" >> "$out/harness.log" 2>&1
  python3 - >> "$out/summary.txt" <<'PY'
import json
a, b = (json.load(open(f"/tmp/h-{d}/results.json")) for d in ("cpu", "cuda"))
def docs(d):
    return {(s["subtask"], s["doc_id"]): s for s in map(json.loads, open(f"/tmp/h-{d}/samples_mmlu.jsonl"))}
da, db = docs("cpu"), docs("cuda")
diff = max(abs(x - y) for k in da for x, y in zip(da[k]["logprobs"], db[k]["logprobs"]))
same = sum(da[k]["pred"] == db[k]["pred"] for k in da)
print(f"{'harness tiny cpu vs cuda f32':34s} mmlu acc {a['groups']['mmlu']['acc,none']:.4f} vs {b['groups']['mmlu']['acc,none']:.4f}, "
      f"same prediction {same}/{len(da)}, max |logprob diff| {diff:.2e}")
PY
  lite=$(lite_with_tokenizer)
  t0=$(date +%s.%N)
  timeout 300 $m run --model $lite --random-weights 0 --device cuda --tasks mmlu,gsm8k_cot --limit 20 --batch-docs 256 \
    --output /tmp/h-lite "${ds[@]}" >> "$out/harness.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  python3 - "$rc" "$t0" "$t1" >> "$out/summary.txt" <<'PY'
import json, sys
rc, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
if rc != 0:
    print(f"{'harness V2-Lite random, cuda':34s} FAILED rc {rc} (logs.txt)"); sys.exit()
s = [json.loads(l) for f in ("mmlu", "gsm8k_cot") for l in open(f"/tmp/h-lite/samples_{f}.jsonl")]
ctx = sum(x.get("context_tokens", 0) for x in s); gen = sum(x.get("generated_tokens", 0) for x in s)
print(f"{'harness V2-Lite random, cuda':34s} {len(s)} docs in {t1-t0:.1f} s (load included): {ctx} prompt tokens, {gen} generated")
PY
  # Code and long context: the 164 canonical HumanEval solutions graded in the sandbox on every core; then V2-Lite
  # (random weights, YaRN to 160K) on HumanEval (generation + grading) and a NIAH grid up to 128K tokens through
  # chunked prefill, each prompt checked to be exactly its cell's length.
  build-gpu/bench/bench_harness --mirror "$PWD/.carry/shared/datasets" --tasks humaneval --work /tmp/bh-he \
    > /tmp/bh-he.json 2>> "$out/harness.log"
  python3 - >> "$out/summary.txt" <<'PY'
import json
try:
    j = json.loads(open("/tmp/bh-he.json").read().strip().splitlines()[-1])
    print(f"{'humaneval canonical, sandboxed':34s} {j['docs']} graded in {j['seconds_total']:.2f} s on {j['cores']} cores, "
          f"pass@1 {j['scores']['humaneval']['pass@1,none']:.4f}")
except Exception as e:
    print(f"{'humaneval canonical, sandboxed':34s} FAILED ({e})")
PY
  t0=$(date +%s.%N)
  timeout 420 $m run --model $lite --random-weights 0 --device cuda --max-context 131072 --tasks humaneval,niah --limit 32 \
    --set 'niah.generator.context_lengths=[1000,32000,128000]' --set 'niah.generator.depth_percents=[0,50,100]' \
    --output /tmp/h-code "${ds[@]}" >> "$out/harness.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  python3 - "$rc" "$t0" "$t1" >> "$out/summary.txt" <<'PY'
import json, sys
rc, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
if rc != 0:
    print(f"{'humaneval+niah V2-Lite random':34s} FAILED rc {rc} (logs.txt)"); sys.exit()
he = [json.loads(l) for l in open("/tmp/h-code/samples_humaneval.jsonl")]
ni = [json.loads(l) for l in open("/tmp/h-code/samples_niah.jsonl")]
exact = sum(x["context_tokens"] == x["doc"]["context_length"] for x in ni)
gen = sum(x.get("generated_tokens", 0) for x in he)
res = {}
for x in he:
    r = x["verdicts"][0]["result"].split(":")[0]
    res[r] = res.get(r, 0) + 1
print(f"{'humaneval+niah V2-Lite random':34s} {len(he)} + {len(ni)} docs in {t1-t0:.1f} s (load included); humaneval "
      f"{gen} tokens generated, verdicts {res}; niah prompts exact {exact}/{len(ni)}, longest "
      f"{max(x['context_tokens'] for x in ni)} tokens")
PY
fi
if want report; then
  # The HTML report of this check: the GPU runs of the harness stage (each also wrote its own report.html) beside
  # the bench JSON files of the bench stage, MLA against GQA and MHA, and the Markdown summary's table in the log.
  # Run it in one call with the stages it reads (bench,harness,report): $OUT starts empty on every device call.
  inputs=()
  for r in h-lite h-code; do
    [ -f /tmp/$r/results.json ] || continue
    label="v2-lite random"; [ $r = h-code ] && label="v2-lite random, code+niah"
    inputs+=("$label=/tmp/$r")
    [ -f /tmp/$r/report.html ] || row "report of $r" "MISSING (mlabench run wrote none)"
  done
  [ -f "$out/bench_dsv2_lite.json" ] && inputs+=("v2-lite random=$out/bench_dsv2_lite.json")
  [ -f "$out/bench_llama3_8b.json" ] && inputs+=("$out/bench_llama3_8b.json")
  [ -f "$out/bench_llama2_7b_mha.json" ] && inputs+=("$out/bench_llama2_7b_mha.json")
  if [ ${#inputs[@]} -gt 0 ] && build-gpu/mlabench report "${inputs[@]}" --paper-model DeepSeek-V2-Lite \
       --out "$out/report.html" 2>> "$out/harness.log" &&
     build-gpu/mlabench report "${inputs[@]}" --paper-model DeepSeek-V2-Lite --format md --out "$out/report.md"; then
    row "report" "$out/report.html ($(wc -c < "$out/report.html") bytes, ${#inputs[@]} inputs), report.md"
  else
    row "report" "FAILED (harness.log)"
  fi
fi
if want cpubench; then
build-gpu/bench/bench_cpu_engine --benchmark_format=json --benchmark_out="$out/bench_cpu_engine.json" \
    --benchmark_out_format=json > /tmp/mlabench-bench.log 2>&1
python3 - "$out/bench_cpu_engine.json" >> "$out/summary.txt" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    extra = "  ".join(f"{k} {b[k]:.4g}" for k in ("GB/s", "GFLOP/s", "tokens/s", "weight GB/s") if k in b)
    print(f"{'bench ' + b['name'].split('/')[0]:34s} {b['real_time']:.4g} {b['time_unit']}  {extra}  [{b.get('label', '')}]")
PY
fi
if want tokenizer; then
if bash tools/gpu/bench_tokenizer.sh > "$out/bench_tokenizer.log" 2>&1; then
  tail -n +1 "$out/bench_tokenizer.log" | sed 's/^/tokenizer  /' >> "$out/summary.txt"
else
  row "tokenizer benchmark" "FAILED (bench_tokenizer.log)"
fi
fi
# At most 8 files come back from the device tool: every log travels in logs.txt (appended: a call may run this script
# several times), every other output but the summary and the report in one outputs-<pid>.tar.gz (tar -xzf it here).
for f in "$out"/*.log; do
  [ -f "$f" ] && { echo "===== $(basename "$f")"; cat "$f"; rm -f "$f"; }
done >> "$out/logs.txt"
mapfile -t rest < <(cd "$out" && ls -A | grep -vxE 'summary\.txt|logs\.txt|report\.html|report\.md|outputs-[0-9]+\.tar\.gz')
if [ ${#rest[@]} -gt 0 ]; then
  (cd "$out" && tar -czf "outputs-$$.tar.gz" -- "${rest[@]}" && rm -rf -- "${rest[@]}")
fi
echo
echo "================ mlabench GPU-machine check ================"
cat "$out/summary.txt"
