#!/usr/bin/env bash
# `mlabench serve --device cuda` on the GPU machine (check.sh's "serve" stage; CI runs the same protocol checks on
# the CPU engine, tests/harness/test_serve*.cpp): the bundled model served from the GPU and from the CPU, both in
# float32, must answer the same greedy completions, chat and streams, with prompt log-probabilities within 1e-4;
# 16 concurrent requests to the GPU server (they share its continuous batch) must each equal the answer it gave
# alone; and `mlabench run --backend openai:` against the GPU server must score MMLU and GSM8K exactly as the
# in-process GPU engine does. Usage: serve_smoke.sh BUILD_DIR OUT_DIR. Prints one line per check; exit 1 on any failure.
set -uo pipefail
bin=$1/mlabench
out=$2
model=tests/data/models/mlabench-tiny-dsv2
mkdir -p "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT

start_server() {  # $1 device, $2 log; echoes the URL once it listens
  "$bin" serve --model $model --device "$1" --precision f32 --port 0 --max-logprob-tokens 4096 --kv-cache-gib 4 > "$2" 2> "$2.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$2" 2>/dev/null | head -1)
    [ -n "$url" ] && { echo "$url"; return 0; }
    sleep 0.2
  done
  echo "server on $1 did not start: $(tail -3 "$2.err")" >&2
  return 1
}

gpu_url=$(start_server "${SMOKE_DEVICE:-cuda}" "$out/serve_gpu.log") || exit 1
cpu_url=$(start_server cpu "$out/serve_cpu.log") || exit 1

python3 - "$gpu_url" "$cpu_url" <<'PY' || exit 1
import concurrent.futures, json, sys, urllib.request
gpu, cpu = sys.argv[1], sys.argv[2]
fail = []

def post(base, path, body, stream=False):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        data = r.read().decode()
    if not stream:
        return json.loads(data)
    chunks = [json.loads(l[6:]) for l in data.splitlines() if l.startswith("data: ") and l != "data: [DONE]"]
    return "".join(c["choices"][0].get("text", "") or c["choices"][0].get("delta", {}).get("content", "") or ""
                   for c in chunks)

def check(name, ok, detail=""):
    print(f"serve cuda: {name}: {'ok' if ok else 'FAILED'} {detail}")
    if not ok:
        fail.append(name)

def model_id(base):
    with urllib.request.urlopen(base + "/v1/models", timeout=30) as r:
        return json.loads(r.read())["data"][0]["id"]

prompts = ["The quick brown fox", "def add(a, b):", "Question: 2 + 3 =", "Once upon a time", "MLA caches"]
comp = {"model": model_id(gpu), "max_tokens": 24, "temperature": 0}
for p in prompts[:3]:
    body = dict(comp, prompt=p, echo=True, logprobs=1)
    a, b = post(gpu, "/v1/completions", body), post(cpu, "/v1/completions", body)
    ta, tb = a["choices"][0]["text"], b["choices"][0]["text"]
    la = a["choices"][0]["logprobs"]["token_logprobs"]
    lb = b["choices"][0]["logprobs"]["token_logprobs"]
    diff = max(abs(x - y) for x, y in zip(la, lb) if x is not None and y is not None)
    check(f"completion+echo+logprobs {p!r}", ta == tb and len(la) == len(lb) and diff < 1e-4,
          f"(GPU == CPU text: {ta == tb}, {len(la)} logprobs, max |dlogprob| {diff:.2e})")
chat = {"model": comp["model"], "max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": "Say hi"}]}
a, b = post(gpu, "/v1/chat/completions", chat), post(cpu, "/v1/chat/completions", chat)
check("chat", a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"])
s = post(gpu, "/v1/completions", dict(comp, prompt=prompts[0], stream=True), stream=True)
check("stream equals non-stream", s == post(gpu, "/v1/completions", dict(comp, prompt=prompts[0]))["choices"][0]["text"])
alone = {p: post(gpu, "/v1/completions", dict(comp, prompt=p))["choices"][0]["text"] for p in prompts}
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    futs = [(p, ex.submit(post, gpu, "/v1/completions", dict(comp, prompt=p))) for p in prompts * 4]
    same = sum(f.result()["choices"][0]["text"] == alone[p] for p, f in futs)
check("16 concurrent requests equal their answers alone", same == len(futs), f"({same}/{len(futs)})")
sys.exit(1 if fail else 0)
PY
rc=$?

# The remote backend against the GPU server, beside the in-process GPU engine: the same scores.
rm -rf "$out/run_remote" "$out/run_inproc"
mirror=${MLABENCH_SHARED_DIR:-../shared}/datasets
common=(--tasks mmlu,gsm8k_cot --limit 3 --mirror "$mirror" --data-dir /tmp/mlabench-datasets --offline --no-progress)
"$bin" run --backend "openai:$gpu_url/v1" --tokenizer $model "${common[@]}" --output "$out/run_remote" \
  > "$out/run_remote.log" 2>&1
r1=$?
"$bin" run --model $model --device "${SMOKE_DEVICE:-cuda}" --precision f32 "${common[@]}" --output "$out/run_inproc" > "$out/run_inproc.log" 2>&1
r2=$?
python3 - "$out/run_remote/results.json" "$out/run_inproc/results.json" "$r1" "$r2" <<'PY' || rc=1
import json, sys
if sys.argv[3] != "0" or sys.argv[4] != "0":
    print(f"serve cuda: remote backend run: FAILED (exit codes {sys.argv[3]}, {sys.argv[4]}; see run_*.log)")
    sys.exit(1)
a, b = (json.load(open(p))["results"] for p in sys.argv[1:3])
same = a == b
print(f"serve cuda: --backend openai: against the GPU server == in-process GPU engine (mmlu, gsm8k_cot, limit 3): "
      f"{'ok' if same else 'FAILED'} ({len(a)} result entries)")
sys.exit(0 if same else 1)
PY
exit $rc
