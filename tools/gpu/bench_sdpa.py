#!/usr/bin/env python3
"""The peer of bench_prefill_attention: torch scaled_dot_product_attention on the same shapes, same call.

Causal whole prompts (q_len == kv_len; torch's is_causal aligns the mask top-left, so chunk shapes are left
out), BF16, batch-first [B, H, N, D]. Each shape runs on every backend that takes it, one row each: flash (MLA at V2
shapes has dqk 192, dv 128, which flash refuses: then v padded to 192, what transformers' flash-attention path does),
cuDNN, memory-efficient, and "default", sdpa with no backend forced: what transformers' sdpa attention gets. GQA at
Llama-3-8B shapes (32 / 8 heads x 128) uses enable_gqa. TFLOP/s counts causal FLOPs as the C++ bench does:
2 x visible keys x (dqk + dv) per row and head.

Usage: python3 tools/gpu/bench_sdpa.py [--quick] [--json FILE]
"""
import argparse
import json
import statistics
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def causal_flops(batch, n, heads, dqk, dv):
    visible = batch * n * (n + 1) / 2
    return 2.0 * visible * heads * (dqk + dv)


def run(backend, q, k, v, gqa=False, pad_v_to=None):
    def fn():
        vv = F.pad(v, (0, pad_v_to - v.shape[-1])) if pad_v_to else v
        if backend is None:  # sdpa's own choice
            out = F.scaled_dot_product_attention(q, k, vv, is_causal=True, enable_gqa=gqa)
        else:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, vv, is_causal=True, enable_gqa=gqa)
        return out[..., : v.shape[-1]] if pad_v_to else out
    return fn


def bench_shape(name, batch, n, heads, kv_heads, dqk, dv):
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(batch, heads, n, dqk, device=dev, dtype=dt)
    k = torch.randn(batch, kv_heads, n, dqk, device=dev, dtype=dt)
    v = torch.randn(batch, kv_heads, n, dv, device=dev, dtype=dt)
    flops = causal_flops(batch, n, heads, dqk, dv)
    reps = 3 if flops > 5e13 else 5 if flops > 5e12 else 20
    gqa = kv_heads != heads
    flash = [("flash", SDPBackend.FLASH_ATTENTION, None)] if dv == dqk else \
        [(f"flash, v padded to {dqk}", SDPBackend.FLASH_ATTENTION, dqk)]
    tries = flash + [("cudnn", SDPBackend.CUDNN_ATTENTION, None), ("efficient", SDPBackend.EFFICIENT_ATTENTION, None),
                     ("default", None, None)]
    rows = []
    for label, backend, pad in tries:
        try:
            ms = time_ms(run(backend, q, k, v, gqa, pad), reps)
        except RuntimeError as e:  # the backend refuses this shape
            print(f"  {name}: {label} not available ({str(e).splitlines()[0][:90]})")
            continue
        rows.append({"kernel": f"torch sdpa {label}", "shape": name, "ms": ms, "tflops": flops / (ms * 1e9)})
    return rows


def main():
    warnings.filterwarnings("ignore", message=".*(kernel not used|runtime disabled|requires q,k,v).*")
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    lengths = [1024, 8192, 32768] if args.quick else [1024, 4096, 16384, 32768, 65536, 131072]
    rows = []
    print(f"device {torch.cuda.get_device_name()} | torch {torch.__version__}")
    for n in lengths:
        rows.append(bench_shape(f"1 x {n} causal, 16 heads", 1, n, 16, 16, 192, 128))
        if n <= 32768:
            rows.append(bench_shape(f"1 x {n} causal, 128 heads", 1, n, 128, 128, 192, 128))
        rows.append(bench_shape(f"1 x {n} causal (gqa 32/8 x 128)", 1, n, 32, 8, 128, 128))
        torch.cuda.empty_cache()
    for count, n in [(64, 512), (16, 2048), (256, 128)]:
        rows.append(bench_shape(f"{count} x {n} causal, 16 heads", count, n, 16, 16, 192, 128))
        rows.append(bench_shape(f"{count} x {n} causal (gqa 32/8 x 128)", count, n, 32, 8, 128, 128))
    rows = [r for shape_rows in rows for r in shape_rows]
    print(f"{'kernel':<36} {'shape':<36} {'ms':>10} {'TFLOP/s':>9}")
    for r in rows:
        print(f"{r['kernel']:<36} {r['shape']:<36} {r['ms']:>10.3f} {r['tflops']:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
