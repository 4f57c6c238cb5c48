#!/usr/bin/env python3
"""Groups an `ncu --csv --metrics gpu__time_duration.sum` log by kernel: total microseconds, launches, share.

Usage: ncu_summary.py NCU.csv [--steps N]   (tools/gpu/check.sh's profile stage; with N, times are per step). ncu replays each kernel alone with cold caches
(its default cache control), so the durations are each kernel's own, without launch gaps or overlap."""
import csv
import io
import sys
from collections import defaultdict


def kernel_name(full):
    """The kernel with its template arguments, without namespaces or parameters: skinny_gemm_kernel<1, 8, ...>
    instances are told apart (each is one GEMV shape of a decode layer)."""
    name = full.removeprefix("void ")
    for ns in ("(anonymous namespace)::", "mlabench::kernels::cuda::", "mlabench::kernels::", "mlabench::"):
        name = name.replace(ns, "")
    depth = 0
    for i, ch in enumerate(name):  # cut at the parameter list: the first "(" outside the template arguments
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            name = name[:i]
            break
    return name[:90]


def main(path, steps):
    text = open(path, errors="replace").read()
    start = text.find('"ID"')
    if start < 0:
        print(f"{path}: no ncu CSV table (see the .err file)")
        return 1
    rows = list(csv.DictReader(io.StringIO(text[start:])))
    total = defaultdict(float)
    calls = defaultdict(int)
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = kernel_name(r["Kernel Name"])
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(r.get("Metric Unit", "nsecond"), 1e-3)
        total[name] += float(r["Metric Value"].replace(",", "")) * scale
        calls[name] += 1
    s = sum(total.values())
    n = sum(calls.values())
    print(f"{n} kernels, {s:.1f} us in all ({s / max(n, 1):.2f} us a kernel)"
          + (f"; a step: {n / steps:.0f} kernels, {s / steps:.1f} us" if steps > 1 else ""))
    for name, t in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{t / steps:10.1f} us {100 * t / s:5.1f}% {calls[name] / steps:6.0f} x {t / calls[name]:8.2f} us  {name}")
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    steps = int(a[a.index("--steps") + 1]) if "--steps" in a else 1
    sys.exit(main(a[0], steps))
