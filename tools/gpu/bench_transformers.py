#!/usr/bin/env python3
"""The peer benchmark: Hugging Face transformers running the same model shapes as `mlabench bench`, on the GPU
machine, with random bf16 weights built on the device from a config folder (configs/deepseek-v2-lite,
configs/llama-3-8b). For each prompt length and batch size: a random prompt of that many tokens, then --gen greedy
new tokens through model.generate (min_new_tokens = max_new_tokens, so every row makes all of them).

Measured per (prompt, batch), after one warm-up generate: prefill = a generate with max_new_tokens=1 (its time is
the TTFT; with --prefill-only the second such generate of the shape, as mlabench bench warms each shape first;
transformers keeps no cache between generate calls, so every prompt is uncached, as in mlabench bench), total =
the full generate; prefill tok/s = batch*prompt/prefill, decode tok/s = batch*(gen-1)/(total - prefill), peak
memory = torch.cuda.max_memory_allocated over the row. --prefill-only skips the full generate (the long prompts
of `mlabench bench --shapes 32768x1:prefill,131072x1:prefill`). --max-seconds bounds the whole run: a row is
skipped (and reported as such) once the time spent plus the previous row's time would pass it.

Usage: python3 tools/gpu/bench_transformers.py --config configs/deepseek-v2-lite --batch 1,16,64 \
         --prompt 512 --gen 128 --out peer.json
       python3 tools/gpu/bench_transformers.py --config configs/deepseek-v2-lite --batch 1 \
         --prompt 32768,131072 --prefill-only --out peer_long.json
Prints a table; --out writes JSON with the versions, the GPU, every parameter and every measurement."""
import argparse
import json
import os
import sys
import time
import traceback

T_START = time.perf_counter()

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--config", default="configs/deepseek-v2-lite", help="folder holding config.json")
ap.add_argument("--batch", default="1,16,64", help="comma list of batch sizes")
ap.add_argument("--prompt", default="512", help="comma list of prompt lengths (tokens per sequence)")
ap.add_argument("--prefill-only", action="store_true", help="measure the prefill (TTFT) only, no decode")
ap.add_argument("--gen", type=int, default=128, help="new tokens per sequence (greedy)")
ap.add_argument("--attn", default="sdpa", help="attn_implementation")
ap.add_argument("--experts", default="grouped_mm",
                help="experts_implementation for MoE models ('' or 'none' keeps transformers' default)")
ap.add_argument("--layers", type=int, default=0, help="truncate to this many layers (0: the config's count)")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--max-seconds", type=float, default=240.0, help="time budget of the whole run, load included")
ap.add_argument("--out", default="", help="JSON output file")
args = ap.parse_args()

batches = [int(b) for b in args.batch.split(",") if b.strip()]
prompts = [int(p) for p in args.prompt.split(",") if p.strip()]
if not batches or min(batches) < 1 or not prompts or min(prompts) < 1 or (args.gen < 2 and not args.prefill_only):
    sys.exit("bench_transformers: need batch sizes >= 1, prompt lengths >= 1 and --gen >= 2 (decode = gen - 1 "
             "tokens) unless --prefill-only")

import torch  # noqa: E402  (after argument checks, so --help works without a GPU)
import transformers  # noqa: E402

if not torch.cuda.is_available():
    sys.exit("bench_transformers: no CUDA device visible to torch")
torch.manual_seed(args.seed)

report = {
    "implementation": f"transformers {transformers.__version__}",
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0),
    "params": vars(args),
    "notes": [],
    "results": [],
}


def note(msg):
    print(f"[bench_transformers] {msg}", flush=True)
    report["notes"].append(msg)


def write_report():
    report["wall_s"] = time.perf_counter() - T_START
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


# ---- the model --------------------------------------------------------------------------------------------

config = transformers.AutoConfig.from_pretrained(args.config)
if args.layers > 0:
    config.num_hidden_layers = min(args.layers, config.num_hidden_layers)
is_moe = bool(getattr(config, "n_routed_experts", 0) or getattr(config, "num_local_experts", 0))
report["model_type"] = config.model_type
report["num_hidden_layers"] = config.num_hidden_layers
report["vocab_size"] = config.vocab_size

kwargs = {"attn_implementation": args.attn}
experts = args.experts if args.experts not in ("", "none") else None
if is_moe and experts:
    kwargs["experts_implementation"] = experts


def build(kw):
    # transformers 5 spells the dtype argument `dtype`; 4.x only knew `torch_dtype`.
    with torch.device("cuda"):
        try:
            return transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, **kw)
        except TypeError:
            return transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16, **kw)


t0 = time.perf_counter()
try:
    model = build(kwargs)
except Exception as e:  # an experts backend this version lacks: fall back to the default and say so
    if "experts_implementation" not in kwargs:
        raise
    note(f"experts_implementation={experts} refused ({type(e).__name__}: {e}); using the default")
    kwargs.pop("experts_implementation")
    model = build(kwargs)
model.eval()
torch.cuda.synchronize()
report["init_s"] = time.perf_counter() - t0
report["model_class"] = type(model).__name__
report["n_params"] = sum(p.numel() for p in model.parameters())
report["weights_gib"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
report["attn_implementation"] = getattr(model.config, "_attn_implementation", args.attn)
if hasattr(model, "get_experts_implementation"):
    try:
        report["experts_implementation"] = model.get_experts_implementation()
    except Exception as e:  # informational only
        report["experts_implementation"] = f"unknown ({type(e).__name__})"

# Random weights must be finite, or routing and argmax degenerate: transformers initialises from_config models,
# but check one matrix per kind and redo everything with N(0, 0.02) if anything is off.
with torch.no_grad():
    bad = [n for n, p in model.named_parameters() if p.dim() >= 1 and not torch.isfinite(p.float().sum())]
    if bad:
        note(f"{len(bad)} non-finite parameters after from_config (first {bad[0]}); re-initialising N(0, 0.02)")
        for n, p in model.named_parameters():
            if p.dim() == 1 and "norm" in n:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)

gen_cfg = model.generation_config or transformers.GenerationConfig()
gen_cfg.pad_token_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else 0
print(f"[bench_transformers] {report['model_class']} {report['n_params'] / 1e9:.2f}B params "
      f"({report['weights_gib']:.1f} GiB bf16), {config.num_hidden_layers} layers, attn {report['attn_implementation']}"
      f", experts {report.get('experts_implementation', '-')}, init {report['init_s']:.1f} s", flush=True)


def generate(ids, new_tokens):
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             min_new_tokens=new_tokens, max_new_tokens=new_tokens, use_cache=True,
                             pad_token_id=gen_cfg.pad_token_id)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if out.shape[1] != ids.shape[1] + new_tokens:
        raise RuntimeError(f"generate made {out.shape[1] - ids.shape[1]} tokens, not {new_tokens}")
    return dt


def prompt_ids(batch, prompt):
    g = torch.Generator(device="cuda").manual_seed(args.seed + batch)
    # Ids from 1000 up, clear of the special tokens at either end of common vocabularies.
    v = config.vocab_size
    lo, hi = (1000, v - 1000) if v > 4000 else (0, v)
    return torch.randint(lo, hi, (batch, prompt), device="cuda", generator=g)


# ---- the runs ---------------------------------------------------------------------------------------------

try:
    t0 = time.perf_counter()
    generate(prompt_ids(batches[0], min(prompts[0], 64)), 4)  # kernels, cuBLAS handles, allocator
    report["warmup_s"] = time.perf_counter() - t0
except Exception as e:
    note(f"warm-up failed: {type(e).__name__}: {e}")
    traceback.print_exc()
    write_report()
    sys.exit(1)

last_batch_s = 0.0
for p, b in [(p, b) for p in prompts for b in batches]:
    row = {"batch": b, "prompt": p, "gen": 1 if args.prefill_only else args.gen}
    spent = time.perf_counter() - T_START
    if spent + last_batch_s > args.max_seconds:
        row["status"] = f"skipped (budget: {spent:.0f} s spent + ~{last_batch_s:.0f} s > {args.max_seconds:.0f} s)"
        report["results"].append(row)
        continue
    t_batch = time.perf_counter()
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        ids = prompt_ids(b, p)
        prefill = generate(ids, 1)
        if args.prefill_only:
            # The shape's first prefill pays one-time costs at that shape (attention backend plans, allocator growth):
            # measured on an H200, 1,543 ms for a 32K prompt run first against 850 ms after a 128K one. mlabench
            # bench warms each shape with one full prompt before it measures, so the peer measures its second pass.
            row["first_prefill_s"] = prefill
            prefill = generate(ids, 1)
        row.update({"status": "ok", "prefill_s": prefill, "ttft_ms": prefill * 1e3, "prefill_tok_s": b * p / prefill})
        if not args.prefill_only:
            total = generate(ids, args.gen)
            row.update({
                "total_s": total,
                "decode_tok_s": b * (args.gen - 1) / max(total - prefill, 1e-9),
                "decode_ms_per_step": (total - prefill) / (args.gen - 1) * 1e3,
            })
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except torch.cuda.OutOfMemoryError as e:
        row["status"] = "out of memory"
        row["error"] = str(e).split("\n")[0]
    except Exception as e:  # record and go on: one failing shape should not lose the others
        row["status"] = f"error: {type(e).__name__}: {e}"
        traceback.print_exc()
    last_batch_s = time.perf_counter() - t_batch
    row["wall_s"] = last_batch_s
    report["results"].append(row)
    torch.cuda.empty_cache()
    write_report()  # after every batch, so a run cut off by a timeout still leaves its numbers

write_report()

# ---- the table --------------------------------------------------------------------------------------------

name = os.path.basename(os.path.normpath(args.config))
print(f"transformers {transformers.__version__} / torch {torch.__version__} on {report['gpu']}: {name}, "
      f"prompt {args.prompt}, gen {1 if args.prefill_only else args.gen}, bf16, attn {report['attn_implementation']}")
print("TTFT ms: one generate with max_new_tokens=1 on an uncached prompt (the whole batch at once)")
print(f"{'batch':>5} {'prompt':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'TTFT ms':>9} {'ms/step':>8} "
      f"{'peak GiB':>9}  status")
for r in report["results"]:
    if r["status"] == "ok":
        dec = f"{r['decode_tok_s']:>13.1f}" if "decode_tok_s" in r else f"{'-':>13}"
        step = f"{r['decode_ms_per_step']:>8.2f}" if "decode_ms_per_step" in r else f"{'-':>8}"
        print(f"{r['batch']:>5} {r['prompt']:>7} {r['prefill_tok_s']:>14.0f} {dec} {r['ttft_ms']:>9.1f} {step} "
              f"{r['peak_mem_gib']:>9.1f}  ok")
    else:
        print(f"{r['batch']:>5} {r['prompt']:>7} {'-':>14} {'-':>13} {'-':>9} {'-':>8} {'-':>9}  {r['status']}")
print(f"wall {report['wall_s']:.0f} s (init {report['init_s']:.0f} s)" + (f", JSON in {args.out}" if args.out else ""))
