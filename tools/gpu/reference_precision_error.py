#!/usr/bin/env python3
"""The error transformers itself makes on the committed fixtures when it runs in the checkpoint's dtype.

The GPU engine computes in the weights' dtype (BF16 / F16 GEMM inputs, float32 accumulation); the fixtures hold
float64 logits. This script runs transformers (DeepseekV2ForCausalLM / LlamaForCausalLM, eager attention and
experts) on the GPU in each fixture's stored dtype, on the fixture's tokens, and prints the same two numbers the
GPU engine's parity test prints: max |logit - reference| / max |reference| and top-1 agreement over positions.
That is the peer for the engine's numbers: what a reduced-precision run of the reference implementation gives.

Usage (GPU machine):  python3 tools/gpu/reference_precision_error.py [--out FILE.json]
"""
import argparse
import glob
import json
import os

import numpy as np
import torch
from transformers import DeepseekV2ForCausalLM, LlamaForCausalLM

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def fixture_dirs(root):
    # Fixtures with a weights.json have no checkpoint to load: tools/make_long_fixture.py measures theirs.
    dirs = sorted(d for d in glob.glob(os.path.join(root, "fixtures", "*"))
                  if os.path.exists(os.path.join(d, "reference.json")) and not os.path.exists(os.path.join(d, "weights.json")))
    return dirs + [os.path.join(root, "models", "mlabench-tiny-dsv2")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="tests/data")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    rows = []
    for d in fixture_dirs(args.data):
        cfg = json.load(open(os.path.join(d, "config.json")))
        ref = json.load(open(os.path.join(d, "reference.json")))
        tokens = torch.tensor([ref["tokens"]], device="cuda")
        want = np.load(os.path.join(d, ref["logits"]["file"])).astype(np.float64)
        dtype = DTYPES.get(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16", torch.bfloat16)
        is_dsv2 = cfg.get("model_type") == "deepseek_v2"
        cls = DeepseekV2ForCausalLM if is_dsv2 else LlamaForCausalLM
        kw = {"experts_implementation": "eager"} if is_dsv2 else {}
        model = cls.from_pretrained(d, dtype=dtype, attn_implementation="eager", **kw).to("cuda").eval()
        with torch.no_grad():
            got = model(tokens).logits[0].to(torch.float64).cpu().numpy()
        max_ref = float(np.abs(want).max())
        err = float(np.abs(got - want).max())
        agree = float((got.argmax(-1) == want.argmax(-1)).mean())
        rows.append({"fixture": os.path.basename(d), "dtype": str(dtype).replace("torch.", ""), "max_abs_err": err,
                     "relative": err / max_ref, "top1_agreement": agree, "positions": int(want.shape[0])})
        print(f"{os.path.basename(d):28s} {rows[-1]['dtype']:9s} max|err| {err:.3e}  relative {err / max_ref:.2e}  "
              f"top-1 agreement {100 * agree:.1f}% ({want.shape[0]} positions)", flush=True)
        del model
        torch.cuda.empty_cache()
    if args.out:
        import transformers
        json.dump({"tool": "reference_precision_error.py", "transformers": transformers.__version__,
                   "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "rows": rows},
                  open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
