#!/usr/bin/env python3
"""Reference fixtures for mlabench's engines, made with the reference implementation.

Runs where transformers (5.17), torch and safetensors are installed (the GPU machine; a CPU is enough).
For every fixture it writes a tiny checkpoint whose every weight is random, the token ids it was run on,
and the logits transformers computes for every position in float64:

    <out>/<name>/config.json            hub-style config (or what transformers' save_pretrained writes)
    <out>/<name>/model*.safetensors     hub layout: one tensor per expert (or transformers' own layout)
    <out>/<name>/reference.json         tokens, provenance, what the fixture covers
    <out>/<name>/logits.npy             float32 [n_tokens, vocab]: float64 logits rounded once to float32

The weights are rounded to the storage dtype (bf16 / f16 / f32) before the float64 model is built from
them, so the reference is exact arithmetic on exactly the stored values. The script re-loads every
checkpoint it wrote through `from_pretrained` and checks the logits are unchanged, so the files are in a
layout transformers itself accepts. Routing decisions are checked to be well away from ties (a float32
engine must pick the same experts), and the token sequence is redrawn if they are not.

Usage: python3 tools/make_fixtures.py --out DIR
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, LlamaConfig, LlamaForCausalLM

STORAGE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MIN_ROUTING_GAP = 2e-5  # router probabilities: a float32 engine must not flip a top-k decision

# ------------------------------------------------------------------------------------------------
# Fixture definitions. Dimensions are deliberately all different (q_lora 40, kv_lora 24, nope 16,
# rope 8, v 12, ...) so that a transposed or mis-split tensor cannot pass by accident.


def dsv2_base(**over):
    cfg = {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 96,
        "moe_intermediate_size": 24,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 40,
        "kv_lora_rank": 24,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 12,
        "n_routed_experts": 8,
        "n_shared_experts": 2,
        "num_experts_per_tok": 3,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "topk_method": "greedy",
        "n_group": 1,
        "topk_group": 1,
        "routed_scaling_factor": 1.0,
        "norm_topk_prob": False,
        "scoring_func": "softmax",
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "ep_size": 1,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 640,
        "rope_theta": 10000,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }
    cfg.update(over)
    return cfg


def yarn(factor, original, mscale, mscale_all_dim, beta_fast=32, beta_slow=1):
    return {"type": "yarn", "factor": factor, "original_max_position_embeddings": original,
            "beta_fast": beta_fast, "beta_slow": beta_slow, "mscale": mscale, "mscale_all_dim": mscale_all_dim}


def llama_base(**over):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 384,
        "hidden_size": 64,
        "intermediate_size": 112,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": "float16",
    }
    cfg.update(over)
    return cfg


FIXTURES = [
    {
        "name": "dsv2-qlora-grouped-yarn",
        "covers": "q_lora_rank (q_a_proj -> q_a_layernorm -> q_b_proj); group_limited_greedy (4 groups of 2, "
                  "top-2 groups, top-3 experts); routed_scaling_factor 16; 1 dense first layer; YaRN factor 40 "
                  "with original_max_position_embeddings 16 and 96 tokens (6x past it); mscale = mscale_all_dim "
                  "= 0.707 as in DeepSeek-V2; bf16 weights",
        "config": dsv2_base(topk_method="group_limited_greedy", n_group=4, topk_group=2,
                            routed_scaling_factor=16.0, rope_scaling=yarn(40, 16, 0.707, 0.707)),
        "storage": "bfloat16", "n_tokens": 96, "seed": 11,
    },
    {
        "name": "dsv2-lite-greedy-yarn",
        "covers": "q_lora_rank null (plain q_proj, as DeepSeek-V2-Lite); greedy top-3 of 8; routed_scaling_factor "
                  "1; 2 dense first layers of 4; YaRN factor 40 with mscale = mscale_all_dim = 1.0 (V2.5/V3 "
                  "softmax scale) and 80 tokens past original 16; float32 weights",
        "config": dsv2_base(q_lora_rank=None, num_hidden_layers=4, first_k_dense_replace=2,
                            rope_scaling=yarn(40, 16, 1.0, 1.0), torch_dtype="float32"),
        "storage": "float32", "n_tokens": 80, "seed": 12,
    },
    {
        "name": "dsv2-noyarn-allmoe-f16",
        "covers": "no rope_scaling (plain interleaved RoPE, softmax scale qk_head_dim^-0.5); every layer MoE "
                  "(first_k_dense_replace 0); one shared expert; top-2 of 8 greedy; routed_scaling_factor 2.5; "
                  "float16 weights",
        "config": dsv2_base(first_k_dense_replace=0, n_shared_experts=1, num_experts_per_tok=2,
                            routed_scaling_factor=2.5, torch_dtype="float16"),
        "storage": "float16", "n_tokens": 48, "seed": 13,
    },
    {
        "name": "dsv2-tf5-saved",
        "covers": "the checkpoint exactly as transformers 5 save_pretrained writes it: config.json in the "
                  "transformers-5 style (rope_parameters, dtype, head_dim = qk_rope_head_dim), sharded in 5 files "
                  "with model.safetensors.index.json (5.17 converts experts back to one tensor each on save); "
                  "group-limited routing with one group kept, YaRN, q_lora_rank; bf16 weights",
        "config": dsv2_base(topk_method="group_limited_greedy", n_group=2, topk_group=1, num_experts_per_tok=2,
                            routed_scaling_factor=4.0, rope_scaling=yarn(40, 16, 0.707, 0.707)),
        "storage": "bfloat16", "n_tokens": 64, "seed": 14, "save_pretrained": True,
    },
    {
        "name": "dsv2-fused-experts",
        "covers": "experts in the fused layout transformers >= 5 holds in memory (mlp.experts.gate_up_proj "
                  "[E, 2I, H], mlp.experts.down_proj [E, H, I]), saved as is; plain q_proj; greedy top-3 of 8 with "
                  "norm_topk_prob false; routed_scaling_factor 1.5; bf16 weights",
        "config": dsv2_base(q_lora_rank=None, routed_scaling_factor=1.5, rope_scaling=yarn(40, 16, 0.707, 0.707)),
        "storage": "bfloat16", "n_tokens": 40, "seed": 15, "fused": True,
    },
    {
        "name": "llama-mha",
        "covers": "Llama MHA (4 heads, 4 KV heads), default RoPE theta 10000 (half-split rotate_half), untied "
                  "lm_head, rms_norm_eps 1e-5; float16 weights",
        "config": llama_base(),
        "storage": "float16", "n_tokens": 64, "seed": 21,
    },
    {
        "name": "llama-gqa-llama3-tied",
        "covers": "Llama GQA (8 query heads, 2 KV heads), explicit head_dim 16 (q_proj 128 wide on hidden 64), "
                  "rope_theta 500000 with llama3 rope_scaling (factor 8, low 1, high 4, original 64: one "
                  "frequency kept, one smoothed, the rest divided), tie_word_embeddings; bf16 weights",
        "config": llama_base(num_attention_heads=8, num_key_value_heads=2, head_dim=16, rope_theta=500000.0,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                             tie_word_embeddings=True, torch_dtype="bfloat16"),
        "storage": "bfloat16", "n_tokens": 80, "seed": 22,
    },
]

# The bundled default model: DeepSeek-V2's structure (q_lora, group-limited routing, scaled routed output,
# YaRN with mscale 0.707, dense first layer) at a size that runs instantly on any CPU.
DEFAULT_MODEL = {
    "name": "mlabench-tiny-dsv2",
    "covers": "bundled default model: DeepSeek-V2 structure at toy size",
    "config": dsv2_base(vocab_size=2048, hidden_size=96, intermediate_size=192, moe_intermediate_size=24,
                        num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=6, q_lora_rank=64,
                        kv_lora_rank=48, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                        n_routed_experts=16, n_shared_experts=2, num_experts_per_tok=4,
                        topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=4.0,
                        max_position_embeddings=2560, rope_scaling=yarn(40, 64, 0.707, 0.707),
                        bos_token_id=0, eos_token_id=1),
    "storage": "bfloat16", "n_tokens": 48, "seed": 31,
}

# ------------------------------------------------------------------------------------------------


def randomize(model, seed, storage_dtype):
    """Every parameter random (transformers zero-initialises the router), then rounded to storage dtype."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                v = 0.75 + 0.5 * torch.rand(p.shape, generator=g, dtype=torch.float64)
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=g, dtype=torch.float64)
            elif name.endswith("mlp.gate.weight"):
                v = torch.randn(p.shape, generator=g, dtype=torch.float64) * (3.0 / math.sqrt(p.shape[-1]))
            else:
                v = torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(p.shape[-1])
            p.copy_(v.to(storage_dtype).to(p.dtype))


def hub_state_dict(model, storage_dtype):
    """transformers' in-memory names -> the hub layout: experts one tensor each, tied lm_head dropped."""
    sd = {}
    tied = model.config.tie_word_embeddings
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        v = v.detach().to(storage_dtype).contiguous()
        if k.endswith("mlp.experts.gate_up_proj"):
            prefix = k[: -len("gate_up_proj")]
            inter = v.shape[1] // 2
            for e in range(v.shape[0]):
                sd[f"{prefix}{e}.gate_proj.weight"] = v[e, :inter].clone()
                sd[f"{prefix}{e}.up_proj.weight"] = v[e, inter:].clone()
        elif k.endswith("mlp.experts.down_proj"):
            prefix = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                sd[f"{prefix}{e}.down_proj.weight"] = v[e].clone()
        else:
            sd[k] = v
    return sd


def routing_gaps(model, tokens):
    """Smallest margin of every top-k decision the MoE routers make on `tokens` (float64 recomputation)."""
    cfg = model.config
    gaps = []
    hooks = []

    def hook(module, args):
        x = args[0].reshape(-1, cfg.hidden_size).to(torch.float64)
        w = module.gate.weight.to(torch.float64)
        s = torch.softmax(x @ w.T, dim=-1)
        k = cfg.num_experts_per_tok
        if cfg.topk_method == "group_limited_greedy":
            per = cfg.n_routed_experts // cfg.n_group
            g = s.view(-1, cfg.n_group, per).max(dim=-1).values
            gs = torch.sort(g, dim=-1, descending=True).values
            if cfg.topk_group < cfg.n_group:
                gaps.append((gs[:, cfg.topk_group - 1] - gs[:, cfg.topk_group]).min().item())
            keep = torch.zeros_like(g)
            keep.scatter_(1, torch.topk(g, cfg.topk_group, dim=-1).indices, 1.0)
            s = s * keep.repeat_interleave(per, dim=1)
        if k >= s.shape[-1]:  # every expert chosen: no decision to flip
            return
        ss = torch.sort(s, dim=-1, descending=True).values
        gaps.append((ss[:, k - 1] - ss[:, k]).min().item())

    for layer in model.model.layers:
        if hasattr(layer.mlp, "gate"):
            hooks.append(layer.mlp.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(input_ids=torch.tensor([tokens], device=model.device), use_cache=False)
    for h in hooks:
        h.remove()
    return min(gaps) if gaps else float("inf")


def logits_f64(model, tokens):
    """[n_tokens, vocab] float64 logits, on the model's device."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long, device=model.device), use_cache=False)
    return out.logits[0].to(torch.float64)


def write_npy(path, arr):
    np.save(path, np.ascontiguousarray(arr))


def make_one(spec, out_root):
    name = spec["name"]
    arch = spec["config"]["model_type"]
    storage = STORAGE[spec["storage"]]
    out = os.path.join(out_root, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    hub_cfg = copy.deepcopy(spec["config"])
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hub_cfg, f, indent=2)
    # Parse the hub-style file the way a user's checkpoint is parsed.
    cls_cfg, cls_model = (DeepseekV2Config, DeepseekV2ForCausalLM) if arch == "deepseek_v2" else \
        (LlamaConfig, LlamaForCausalLM)
    config = cls_cfg.from_pretrained(out)
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"  # grouped_mm has no float64 kernel
    torch.manual_seed(spec["seed"])
    model = cls_model(config)
    randomize(model, spec["seed"], storage)
    model = model.to(torch.float64).eval()
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"

    rng = np.random.default_rng(spec["seed"])
    for attempt in range(200):
        tokens = [int(t) for t in rng.integers(0, hub_cfg["vocab_size"], size=spec["n_tokens"])]
        gap = routing_gaps(model, tokens) if arch == "deepseek_v2" else float("inf")
        if gap >= MIN_ROUTING_GAP:
            break
    else:
        raise SystemExit(f"{name}: no token sequence with routing margins >= {MIN_ROUTING_GAP}")
    logits = logits_f64(model, tokens)

    if spec.get("save_pretrained"):
        os.remove(os.path.join(out, "config.json"))
        model.to(storage).save_pretrained(out, max_shard_size="100KB")
        model = model.to(torch.float64)
    elif spec.get("fused"):
        sd = {k: v.detach().to(storage).contiguous() for k, v in model.state_dict().items()}
        assert any(k.endswith("mlp.experts.gate_up_proj") for k in sd), "transformers no longer holds fused experts"
        save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    else:
        save_file(hub_state_dict(model, storage), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    # The files must be a checkpoint transformers itself loads to the same logits.
    kw = {"experts_implementation": "eager"} if arch == "deepseek_v2" else {}
    reloaded = cls_model.from_pretrained(out, dtype=torch.float64, attn_implementation="eager", **kw).eval()
    rel = logits_f64(reloaded, tokens)
    reload_diff = (rel - logits).abs().max().item()
    assert reload_diff == 0.0, f"{name}: reloaded checkpoint gives different logits ({reload_diff})"

    # Incremental decoding through transformers' own cache, as a sanity check of the reference itself.
    with torch.no_grad():
        n0 = spec["n_tokens"] // 2
        o = reloaded(input_ids=torch.tensor([tokens[:n0]]), use_cache=True)
        cache, steps = o.past_key_values, [o.logits[0]]
        for t in tokens[n0:]:
            o = reloaded(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True)
            cache = o.past_key_values
            steps.append(o.logits[0])
        inc_diff = (torch.cat(steps).to(torch.float64) - logits).abs().max().item()

    write_npy(os.path.join(out, "logits.npy"), logits.to(torch.float32).numpy())
    files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors") or f.endswith(".json"))
    ref = {
        "name": name,
        "covers": spec["covers"],
        "architecture": arch,
        "storage_dtype": spec["storage"],
        "tokens": tokens,
        "logits": {"file": "logits.npy", "dtype": "float32", "shape": list(logits.shape),
                   "computed_in": "float64", "max_abs": float(logits.abs().max().item())},
        "min_routing_gap": gap if gap != float("inf") else None,
        "transformers_incremental_max_abs_diff": inc_diff,
        "reference": {"implementation": f"transformers {transformers.__version__} {cls_model.__name__}",
                      "torch": torch.__version__, "attn_implementation": "eager"},
        "files": files,
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{name:28s} tokens {spec['n_tokens']:3d}  max|logit| {ref['logits']['max_abs']:9.4f}  "
          f"routing gap {gap:.2e}  hf-incremental diff {inc_diff:.1e}  files {len(files)}")


def yarn_table(out_root):
    """transformers' YaRN numbers for the real DeepSeek-V2 config: inv_freq, cos/sin multiplier, softmax scale,
    and cos/sin at positions around and far past original_max_position_embeddings (4096)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.deepseek_v2 import modeling_deepseek_v2 as m

    cfg = DeepseekV2Config(**{k: v for k, v in dsv2_base(
        vocab_size=102400, hidden_size=5120, num_attention_heads=128, num_key_value_heads=128,
        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, max_position_embeddings=163840,
        rope_scaling=yarn(40, 4096, 0.707, 0.707)).items() if k not in ("architectures", "torch_dtype")})
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](cfg, None)
    scale = m.yarn_apply_mscale(cfg.rope_parameters, (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) ** -0.5)
    positions = [0, 1, 4095, 4096, 30000, 163839]
    # transformers' rotary forward: float32 product of position and inv_freq, then cos/sin of that float32 angle.
    ang = (torch.tensor(positions, dtype=torch.float32)[:, None] * inv_freq[None, :].to(torch.float32))
    table = {
        "config": "DeepSeek-V2 (qk_rope_head_dim 64, rope_theta 10000, yarn factor 40, original 4096, beta 32/1, "
                  "mscale 0.707, mscale_all_dim 0.707)",
        "reference": f"transformers {transformers.__version__} _compute_yarn_parameters / yarn_apply_mscale",
        "inv_freq_float32": [float(x) for x in inv_freq.to(torch.float32)],
        "cos_sin_multiplier": float(attention_factor),
        "softmax_scale": float(scale),
        "positions": positions,
        "cos": [[float(x) for x in row] for row in torch.cos(ang.to(torch.float64))],
        "sin": [[float(x) for x in row] for row in torch.sin(ang.to(torch.float64))],
    }
    os.makedirs(out_root, exist_ok=True)
    with open(os.path.join(out_root, "yarn_deepseek_v2.json"), "w") as f:
        json.dump(table, f, indent=1)
    print(f"yarn table: multiplier {attention_factor:.6f} softmax scale {scale:.6f} inv_freq[23] {inv_freq[23]:.4e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (fixtures/, default-model/ and rope/ inside)")
    args = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)
    for spec in FIXTURES:
        make_one(spec, os.path.join(args.out, "fixtures"))
    make_one(DEFAULT_MODEL, os.path.join(args.out, "models"))
    yarn_table(os.path.join(args.out, "rope"))


if __name__ == "__main__":
    main()
