#!/usr/bin/env bash
# Tokenizer speed, side by side on the GPU machine's CPU: mlabench vs Hugging Face `tokenizers` (Python
# binding) encoding the same ~10 MB of text (the tokenizer corpus, repeated), single-threaded and on all cores.
# Uses DeepSeek-V2's tokenizer when .carry/shared/tokenizers/deepseek-v2 holds it (from ../shared), else the bundled
# model's (same pipeline). Needs build-gpu/bench/bench_tokenizer (tools/gpu/check.sh builds it).
# Writes $OUT/tokenizer_speed.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/mlabench-check}
mkdir -p "$out"
bin=build-gpu/bench/bench_tokenizer
[ -x "$bin" ] || { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLABENCH_NATIVE=ON >/dev/null &&
                   cmake --build build-gpu -j "$(nproc)" --target bench_tokenizer >/dev/null; }
tokdirs=()
[ -f .carry/shared/tokenizers/deepseek-v2/tokenizer.json ] && tokdirs+=(.carry/shared/tokenizers/deepseek-v2)
tokdirs+=(tests/data/tokenizer/llama3-style)
text=/tmp/mlabench-bench-10mb.jsonl
python3 - "$text" <<'PY'
import gzip, json, sys
docs = [json.loads(l)["text"] for l in gzip.open("tests/data/tokenizer/corpus.jsonl.gz", "rt", encoding="utf-8")]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    size, r = 0, 0
    while size < 10_000_000:
        for d in docs[r % 7::1]:  # a rotation per pass, so passes differ in order
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            size += len(d.encode("utf-8"))
        r += 1
PY
results=()
for d in "${tokdirs[@]}"; do
  ours=$("$bin" --tokenizer "$d" --jsonl "$text" --repeat 3)
  hf1=$(RAYON_NUM_THREADS=1 python3 tools/gpu/bench_hf_tokenizers.py --tokenizer "$d" --jsonl "$text")
  hfn=$(python3 tools/gpu/bench_hf_tokenizers.py --tokenizer "$d" --jsonl "$text")
  results+=("{\"tokenizer\": \"$d\", \"mlabench\": $ours, \"hf_single\": $hf1, \"hf_all\": $hfn}")
done
printf '[%s]\n' "$(IFS=,; echo "${results[*]}")" > "$out/tokenizer_speed.json"
python3 - "$out/tokenizer_speed.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'tokenizer':34s} {'mlabench 1T':>12s} {'HF 1T':>9s} {'ratio':>6s} {'mlabench NT':>12s} {'HF NT':>9s} {'ratio':>6s} {'same tokens':>11s}")
for r in rows:
    m, h1, hn = r["mlabench"], r["hf_single"], r["hf_all"]
    print(f"{r['tokenizer']:34s} {m['single_thread_mb_s']:9.2f} MB/s {h1['mb_s']:6.2f} MB/s {m['single_thread_mb_s'] / h1['mb_s']:5.2f}x "
          f"{m['all_threads_mb_s']:9.2f} MB/s {hn['mb_s']:6.2f} MB/s {m['all_threads_mb_s'] / hn['mb_s']:5.2f}x "
          f"{str(m['tokens'] == h1['tokens'] == hn['tokens']):>11s}")
print(f"text: {rows[0]['mlabench']['bytes'] / 1e6:.1f} MB, {rows[0]['mlabench']['documents']} documents; threads: {rows[0]['mlabench']['threads']}")
PY
