#!/usr/bin/env python3
"""The browser test of a real report: make real runs, render one report from them, open it in headless Chromium.

Runs (all through the `mlabench` binary, on the real datasets of the local mirror):
  gold        a replay of gold answers on MMLU, C-Eval, GSM8K (CoT), HumanEval (graded in the sandbox) and a
              3 x 3 needle-in-a-haystack grid, with --limit 9 (the whole grid)
  engine      the bundled model on the engine, the same NIAH grid (a real generation run)
  hostile     GSM8K answered with markup, quotes and javascript: URLs, under a label that is markup too
and three committed `mlabench bench` JSON files from an H100 (reports/baselines/): DeepSeek-V2-Lite (MLA),
Llama-3-8B (GQA) and Llama-2-7B (MHA). Then:
  - `mlabench run` wrote report.html into each run folder (checked);
  - `mlabench report` over all six inputs, twice: the two files must be byte-identical;
  - `--format md` and `--format csv` of the same inputs must carry the numbers;
  - check_report_in_browser.py opens the page: every section, the exact number of charts of each kind, the hostile
    strings shown as text, one script, no javascript: link, no console error, no request leaving the page, and
    a full-page screenshot (ARTIFACTS/report.png) to look at.
Exit codes: 0 passed, 1 failed, 77 skipped (no chromium, or no dataset mirror).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HOSTILE = ("<script>alert(\"pwned\")</script> </textarea><img src=x onerror=alert(1)> \"double\" 'single' "
           "<a href=\"javascript:alert(2)\">click</a> javascript:alert(3) The answer is 18.")
HOSTILE_LABEL = "<b>hostile</b>"
# CI's short mode (MLABENCH_TEST_SHORT=1, label slow; README "Tests and checks") runs the same 3 x 3 grid at about
# half the lengths: the engine run's prefill is quadratic in them (at full size that run is half of this test's time
# under ASan).
SHORT = os.environ.get("MLABENCH_TEST_SHORT", "") not in ("", "0")
NIAH_LENGTHS = [200, 400, 800] if SHORT else [300, 700, 1500]
NIAH_GRID = ["--set", f"niah.generator.context_lengths=[{','.join(map(str, NIAH_LENGTHS))}]",
             "--set", "niah.generator.depth_percents=[0,50,100]"]
ABLATION = "2026-12-04_h200_8d586f4wip_ablation_dsv2_lite.json"
BENCHES = ["2026-11-23_h100_d697413_bench_dsv2_lite.json", "2026-11-23_h100_d697413_bench_llama3_8b.json",
           "2026-11-23_h100_d697413_bench_llama2_7b_mha.json"]


def run(cmd, log):
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(str(c) for c in cmd) + "\n").encode())
        f.flush()
        rc = subprocess.call([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.stdout.write(Path(log).read_text(errors="replace")[-4000:])
        raise SystemExit(f"FAIL: {cmd[0]} {cmd[1]} exited with {rc} (log: {log})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlabench", required=True)
    ap.add_argument("--gold-replay-tool", required=True)
    ap.add_argument("--checker", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--mirror", required=True)
    ap.add_argument("--work", required=True, help="scratch folder (emptied first)")
    ap.add_argument("--artifacts", required=True, help="report.html, report.png, report.md, report.csv land here")
    a = ap.parse_args()

    if os.environ.get("MLABENCH_SHARED_DIR"):  # as the C++ tests: the mirror moves with the shared folder
        a.mirror = os.path.join(os.environ["MLABENCH_SHARED_DIR"], "datasets")
    src = Path(a.source_dir)
    model = src / "tests/data/models/mlabench-tiny-dsv2"
    if not (Path(a.mirror) / "mmlu/mmlu.zip").exists():
        print(f"SKIPPED: the dataset mirror {a.mirror} is absent (it holds the real data)")
        return 77
    work, art = Path(a.work), Path(a.artifacts)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    art.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = ["--mirror", a.mirror, "--data-dir", work / "datasets", "--offline", "--no-progress"]

    tasks = "mmlu,ceval,gsm8k_cot,humaneval,niah"
    run([a.gold_replay_tool, "--tasks", tasks, "--limit", "9", *NIAH_GRID, "--tokenizer", model, "--mirror", a.mirror,
         "--data-dir", work / "datasets", "--out", work / "gold.jsonl"], log)
    run([a.mlabench, "run", "--backend", f"replay:{work / 'gold.jsonl'}", "--tokenizer", model, "--tasks", tasks,
         "--limit", "9", *NIAH_GRID, "--output", work / "gold", *data], log)

    hostile = []
    for line in (work / "gold.jsonl").read_text().splitlines():
        j = json.loads(line)
        if j["task"] == "gsm8k_cot":
            j["responses"] = [HOSTILE]
            hostile.append(json.dumps(j))
    (work / "hostile.jsonl").write_text("\n".join(hostile) + "\n")
    run([a.mlabench, "run", "--backend", f"replay:{work / 'hostile.jsonl'}", "--tasks", "gsm8k_cot", "--limit", "2",
         "--output", work / "hostile", *data], log)
    run([a.mlabench, "run", "--model", model, "--tasks", "niah", *NIAH_GRID, "--gen-kwargs", "max_gen_toks=8",
         "--output", work / "engine", *data], log)
    for r in ("gold", "hostile", "engine"):
        if not (work / r / "report.html").is_file():
            raise SystemExit(f"FAIL: mlabench run wrote no report.html in {work / r}")

    inputs = [f"gold={work / 'gold'}", f"tiny-dsv2={work / 'engine'}", f"{HOSTILE_LABEL}={work / 'hostile'}"]
    inputs += [str(src / "reports/baselines" / b) for b in BENCHES]
    # The committed H200 ablation of V2-Lite, and one made now on the bundled model (CPU, two mechanisms).
    run([a.mlabench, "ablate", "--model", src / "tests/data/models/mlabench-tiny-dsv2", "--attention", "mla,mqa",
         "--batch", "1,2", "--prompt", "8", "--gen", "2", "--out", work / "ablation"], log)
    inputs += [str(src / "reports/baselines" / ABLATION), str(work / "ablation" / "ablation.json")]
    report = [a.mlabench, "report", *inputs, "--paper-model", "DeepSeek-V2-Lite"]
    run([*report, "--out", art / "report.html"], log)
    run([*report, "--out", work / "again.html"], log)
    if (art / "report.html").read_bytes() != (work / "again.html").read_bytes():
        raise SystemExit("FAIL: two reports of the same inputs differ")
    run([*report, "--format", "md", "--out", art / "report.md"], log)
    run([*report, "--format", "csv", "--out", art / "report.csv"], log)
    md, csv = (art / "report.md").read_text(), (art / "report.csv").read_text()
    failures = []
    if "| gold | MMLU (mmlu) | 100.0 | DeepSeek-V2-Lite | 58.3 | +41.7 | Table 6, p. 29 |" not in md:
        failures.append("report.md: no MMLU row of the gold run against Table 6")
    if "bench,llama-3-8b,configs/llama-3-8b,batch=64,decode_tokens_per_s," not in csv:
        failures.append("report.csv: no decode tokens/s row of the Llama-3-8B bench at batch 64")
    cell = f"{NIAH_LENGTHS[-1]}@50"
    if f"breakdown,tiny-dsv2,niah,cell={cell},needle_score,none," not in csv:
        failures.append(f"report.csv: no NIAH cell {cell} of the engine run")

    # Charts: decode and prefill tokens/s (2 lines); TTFT and TPOT per bench, KV bytes per token and the
    # headline metrics side by side (3 x 2 + 1 + 1 bars); NIAH of gold and engine and the paper's Figure 4.
    expect = {
        "sections": ["summary", "results", "paper", "compare", "niah", "performance", "ablation", "samples"],
        "charts": {"line": 4, "bar": 10, "heatmap": 3},
        "texts": [HOSTILE.split(" </textarea>")[0], "</textarea><img src=x onerror=alert(1)>", "'single'",
                  "<a href=\"javascript:alert(2)\">click</a>", HOSTILE_LABEL, "Table 6, p. 29", "+41.7",
                  "The answer is 18.", "STEM", "Figure 4"],
        "selectors": [{"selector": "script", "count": 1}, {"selector": "a[href^='javascript:' i]", "count": 0},
                      {"selector": "img", "count": 0}, {"selector": "textarea", "count": 0},
                      {"selector": "b", "count": 0}, {"selector": "main > section", "count": 8},
                      {"selector": "#samples details.sample", "count": 5 * 5 + 5 + 2},
                      {"selector": "#paper td.num.off", "count": 4}],
        "min_body_height": 2000,
    }
    (work / "expect.json").write_text(json.dumps(expect, indent=1))
    rc = subprocess.call([sys.executable, a.checker, "--html", art / "report.html", "--expect", work / "expect.json",
                          "--screenshot", art / "report.png", "--dom-out", art / "dom.json", "--timeout", "120"])
    if rc == 77:
        print("SKIPPED: chromium not found. HINT: apt-get install chromium")
        return 77
    if rc != 0:
        failures.append(f"check_report_in_browser.py exited with {rc} (details above; {art / 'dom.json'})")
    for f in failures:
        print("FAIL:", f)
    print(f"screenshot: {art / 'report.png'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
