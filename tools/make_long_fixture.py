#!/usr/bin/env python3
"""The long-context reference: transformers' float64 logits over 8,317 tokens at DeepSeek-V2's real MLA shapes.

Runs on the GPU machine (transformers 5.17, torch 2.11, CUDA). The fixture folder's inputs are committed:
config.json (16 heads, kv_lora_rank 512 + qk_rope_head_dim 64, nope 128, v 128, plain q_proj as V2-Lite; hidden
256, vocab 384; a dense layer, then a MoE layer that takes all 4 of its experts and a shared expert (over 8K random
tokens a top-k of fewer always met a near-tied routing decision, which a float32 engine may flip: top-2 of 8 found
no draw with margins >= 2e-5 in 64 seeds; the small fixtures cover routing); YaRN as DeepSeek-V2: factor 40,
mscale = mscale_all_dim = 0.707, beta 32/1, but original_max_position_embeddings 1024, so 87% of the positions lie
past it) and weights.json (seed and SHA-256 of tools/fixture_weights.py's checkpoint). It writes

    OUT/reference.json   tokens, the stored positions, provenance, transformers' own BF16 error (below)
    OUT/logits.npy       float32 [positions, vocab]: the float64 logits at the stored positions, rounded once

Steps: write the checkpoint with the generator (its SHA-256 checked against weights.json); load it with
from_pretrained in float64 (eager attention and experts, CUDA) and check every tensor transformers holds is the
file's; draw tokens until every routing decision has a margin of at least 2e-5, as tools/make_fixtures.py does
(a float32 engine must pick the same experts); run float64 over all tokens in one forward; then load the same
file in BF16 and run the same tokens, and record max|bf16 - f64| / max|f64| and top-1 agreement at the stored
positions: the bound the engine's native precision is held to (tests/engine/test_gpu_engine.cpp).

Stored positions (logits of the whole sequence would be 12 MB): the first 32, every 64th, and the last 32.

Usage (GPU machine, repository root):
    python3 tools/make_long_fixture.py tests/data/fixtures/dsv2-mla-8k-yarn --out OUT    # then copy OUT/* there
    python3 tools/make_long_fixture.py tests/data/fixtures/dsv2-mla-8k-yarn --check      # regenerate and compare
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import DeepseekV2ForCausalLM

import fixture_weights
from make_fixtures import MIN_ROUTING_GAP, hub_state_dict, logits_f64, routing_gaps

N_TOKENS = 8317  # not a multiple of 64 or 128, so every kernel meets a partial tile
TOKENS_SEED = 41  # the first token draw; a draw with a near-tied routing decision moves to the next seed
MAX_DRAWS = 64
# --check: a float64 run on another GPU or driver may round a few logits to the neighbouring float32.
CHECK_TOLERANCE = 2.0**-22


def draw_tokens(seed, n, vocab):
    key = fixture_weights.splitmix64(seed)
    return [fixture_weights.splitmix64((key + i) & fixture_weights.MASK) % vocab for i in range(n)]


def stored_positions(n):
    return sorted(set(range(32)) | set(range(0, n, 64)) | set(range(n - 32, n)))


def load(folder, dtype):
    return DeepseekV2ForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager",
                                                 experts_implementation="eager").to("cuda").eval()


def check_loaded(model, path):
    """Every tensor the model holds is the file's, bit for bit (a name the model expects but the file lacks
    would otherwise be initialised at random without an error)."""
    want = load_file(path)
    got = hub_state_dict(model, torch.bfloat16)
    missing, unexpected = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    assert not missing and not unexpected, f"model expects {missing[:4]}, file has unused {unexpected[:4]}"
    differ = [k for k in want if not torch.equal(got[k].cpu(), want[k])]
    assert not differ, f"tensors differ after loading: {differ[:4]}"


def reference_run(ckpt, vocab):
    """Tokens (with their seed and routing margin) and transformers' float64 logits of every position."""
    model = load(ckpt, torch.float64)
    check_loaded(model, os.path.join(ckpt, "model.safetensors"))
    for seed in range(TOKENS_SEED, TOKENS_SEED + MAX_DRAWS):
        tokens = draw_tokens(seed, N_TOKENS, vocab)
        gap = routing_gaps(model, tokens)
        print(f"tokens seed {seed}: smallest routing margin {gap:.2e}", flush=True)
        if gap >= MIN_ROUTING_GAP:
            break
    else:
        raise SystemExit(f"no token draw with routing margins >= {MIN_ROUTING_GAP} in {MAX_DRAWS} seeds")
    logits = logits_f64(model, tokens)
    del model
    torch.cuda.empty_cache()
    return tokens, seed, gap, logits


def bf16_error(ckpt, tokens, ref, positions):
    """transformers in BF16 against its float64 logits: at the stored positions and over all of them."""
    model = load(ckpt, torch.bfloat16)
    got = logits_f64(model, tokens)
    del model
    torch.cuda.empty_cache()

    def measure(g, r):
        err = (g - r).abs().max().item()
        top1 = (g.argmax(-1) == r.argmax(-1)).double().mean().item()
        return {"max_abs_err": err, "relative": err / r.abs().max().item(), "top1_agreement": top1,
                "positions": int(r.shape[0])}

    out = measure(got[positions], ref[positions])
    out["all_positions"] = measure(got, ref)
    return out


def make(fixture, out):
    cfg, spec = fixture_weights.read_spec(fixture)
    ckpt = tempfile.mkdtemp(prefix="mlabench-long-")
    try:
        shutil.copy(os.path.join(fixture, "config.json"), ckpt)
        t0 = time.time()
        fixture_weights.write_fixture_checkpoint(fixture, os.path.join(ckpt, "model.safetensors"))
        print(f"checkpoint written and its SHA-256 checked in {time.time() - t0:.1f} s", flush=True)
        tokens, seed, gap, logits = reference_run(ckpt, cfg["vocab_size"])
        positions = stored_positions(len(tokens))
        bf16 = bf16_error(ckpt, tokens, logits, torch.tensor(positions, device=logits.device))
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    rows = logits[positions].to(torch.float32).cpu().numpy()
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "logits.npy"), np.ascontiguousarray(rows))
    original = cfg["rope_scaling"]["original_max_position_embeddings"]
    ref = {
        "name": os.path.basename(os.path.normpath(fixture)),
        "covers": f"DeepSeek-V2's real MLA shapes (16 heads, kv_lora_rank 512 + rope 64, nope 128, v 128, plain "
                  f"q_proj) over {len(tokens)} tokens, {len(tokens) - original} of them past YaRN's original "
                  f"{original} (factor 40, mscale 0.707); a dense layer, then a MoE layer taking all 4 experts + 1 shared; "
                  f"bf16 weights regenerated by tools/fixture_weights.py",
        "architecture": "deepseek_v2",
        "storage_dtype": "bfloat16",
        "weights": {k: spec[k] for k in ("generator", "seed", "sha256", "bytes")},
        "tokens_seed": seed,
        "tokens": tokens,
        "positions": positions,
        "logits": {"file": "logits.npy", "dtype": "float32", "shape": list(rows.shape), "rows": "positions",
                   "computed_in": "float64", "max_abs": float(np.abs(rows).max())},
        "min_routing_gap": gap if gap != float("inf") else None,  # None: no routing decision (every expert taken)
        "transformers_bf16": bf16,
        "reference": {"implementation": f"transformers {transformers.__version__} DeepseekV2ForCausalLM",
                      "torch": torch.__version__, "attn_implementation": "eager", "experts_implementation": "eager",
                      "device": torch.cuda.get_device_name(0)},
    }
    # The long lists on one line each, so the file stays short to read.
    text = json.dumps({**ref, "tokens": "@tokens", "positions": "@positions"}, indent=1, allow_nan=False)
    for k in ("tokens", "positions"):
        text = text.replace(f'"@{k}"', json.dumps(ref[k], separators=(",", ":")))
    with open(os.path.join(out, "reference.json"), "w") as f:
        f.write(text + "\n")
    print(f"{ref['name']}: {len(tokens)} tokens (seed {seed}), {len(positions)} rows stored, max|logit| "
          f"{ref['logits']['max_abs']:.4f}, routing margin {gap:.2e}; transformers bf16 relative error "
          f"{bf16['relative']:.3e}, top-1 {100 * bf16['top1_agreement']:.1f}% (all positions: "
          f"{bf16['all_positions']['relative']:.3e}, {100 * bf16['all_positions']['top1_agreement']:.1f}%)")


def check(fixture):
    """Regenerates into a temporary folder and compares with the committed outputs; one verdict line last."""
    tmp = tempfile.mkdtemp(prefix="mlabench-long-check-")
    try:
        make(fixture, tmp)
        old, new = (json.load(open(os.path.join(d, "reference.json"))) for d in (fixture, tmp))
        a, b = (np.load(os.path.join(d, "logits.npy")).astype(np.float64) for d in (fixture, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same_inputs = all(old[k] == new[k] for k in ("weights", "tokens", "positions"))
    diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    ok = same_inputs and diff <= CHECK_TOLERANCE * old["logits"]["max_abs"]
    print(f"{old['name']}: {'OK' if ok else 'DIFFERS'}: weights, tokens, positions "
          f"{'identical' if same_inputs else 'DIFFER'}, logits max diff {diff:.3g} (tolerance "
          f"{CHECK_TOLERANCE * old['logits']['max_abs']:.3g}), transformers bf16 relative "
          f"{new['transformers_bf16']['relative']:.3e} (committed {old['transformers_bf16']['relative']:.3e})")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixture", help="fixture folder with config.json and weights.json")
    ap.add_argument("--out", help="where to write reference.json and logits.npy")
    ap.add_argument("--check", action="store_true", help="regenerate and compare with the committed outputs")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU. HINT: run it on the GPU machine")
    # IEEE float32 in every float32 matmul (transformers' rotary angles are one): TF32 would round position ids.
    torch.set_float32_matmul_precision("highest")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}",
          file=sys.stderr)
    if args.check:
        sys.exit(0 if check(args.fixture) else 1)
    if not args.out:
        raise SystemExit("give --out DIR or --check")
    make(args.fixture, args.out)


if __name__ == "__main__":
    main()
