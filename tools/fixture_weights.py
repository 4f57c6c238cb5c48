#!/usr/bin/env python3
"""Fixture weights regenerated bit for bit from a seed: DeepSeek-V2 checkpoints too large to commit.

A fixture folder that holds a weights.json instead of model.safetensors (tests/data/fixtures/dsv2-mla-8k-yarn)
is rebuilt from its config.json and weights.json by this file and by its C++ twin, tests/engine/
generated_weights.cpp. Both write the same bytes: weights.json commits their SHA-256, which tools/
make_long_fixture.py and the C++ tests check. Pure standard library (no numpy, no torch), so it runs anywhere.

Generator "mlabench-fixture-weights-v1" (change the name with any change below):
  tensors   the hub layout of DeepseekV2ForCausalLM (one tensor per expert), in the order of the engine's
            manifest (engine/weights/tensor_manifest.cpp): embed_tokens; per layer the two norms, the MLA
            projections, the dense MLP or router + experts + shared experts; model.norm; lm_head
  key       splitmix64(seed ^ fnv1a64(tensor name))                  (the engine's random_weights_key)
  draw      u_i = (splitmix64(key + i mod 2^64) >> 11) * 2^-53, uniform on [0, 1), i = row-major element index
  value     1-D (RMSNorm) weights      1 + (2u - 1) / 4               in [0.75, 1.25]
            model.embed_tokens         (2u - 1) * sqrt(3)              standard deviation 1
            mlp.gate (the router)      (2u - 1) * sqrt(27 / fan_in)    sd 3 / sqrt(fan_in): routing far from ties
            every other matrix         (2u - 1) * sqrt(3 / fan_in)     sd 1 / sqrt(fan_in), fan_in = shape[1]
            computed in IEEE float64 (each operation correctly rounded), rounded to float32, then from float32
            to BF16, both to nearest even
  file      safetensors: header length (8 bytes, little endian), the compact JSON header
            {"__metadata__":{"format":"pt"},"<name>":{"dtype":"BF16","shape":[...],"data_offsets":[b,e]},...}
            in tensor order, padded with spaces to a multiple of 8 bytes, then the tensors' bytes in that order

Usage: python3 tools/fixture_weights.py DIR [--out FILE] [--update]
  writes DIR's checkpoint to FILE (default: a temporary file, removed) and compares its SHA-256 with
  DIR/weights.json; --update writes the SHA-256 and size into weights.json instead.
"""

import argparse
import array
import hashlib
import json
import math
import os
import sys
import tempfile

GENERATOR = "mlabench-fixture-weights-v1"
MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def manifest(cfg):
    """(name, shape) of every tensor of a DeepseekV2 (MLA) config, in tensor_manifest(c, HUB)'s order."""
    H, V, nh = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"]
    nope, rope, v, kvl = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    E, mi = cfg.get("n_routed_experts") or 0, cfg["moe_intermediate_size"]

    def mlp(prefix, inter):
        return [(prefix + "gate_proj.weight", [inter, H]), (prefix + "up_proj.weight", [inter, H]),
                (prefix + "down_proj.weight", [H, inter])]

    out = [("model.embed_tokens.weight", [V, H])]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        out += [(p + "input_layernorm.weight", [H]), (p + "post_attention_layernorm.weight", [H])]
        if cfg.get("q_lora_rank"):
            r = cfg["q_lora_rank"]
            out += [(a + "q_a_proj.weight", [r, H]), (a + "q_a_layernorm.weight", [r]),
                    (a + "q_b_proj.weight", [nh * (nope + rope), r])]
        else:
            out.append((a + "q_proj.weight", [nh * (nope + rope), H]))
        out += [(a + "kv_a_proj_with_mqa.weight", [kvl + rope, H]), (a + "kv_a_layernorm.weight", [kvl]),
                (a + "kv_b_proj.weight", [nh * (nope + v), kvl]), (a + "o_proj.weight", [H, nh * v])]
        if E > 0 and i >= cfg["first_k_dense_replace"] and i % cfg["moe_layer_freq"] == 0:
            out.append((p + "mlp.gate.weight", [E, H]))
            for e in range(E):
                out += mlp(f"{p}mlp.experts.{e}.", mi)
            if cfg.get("n_shared_experts"):
                out += mlp(p + "mlp.shared_experts.", mi * cfg["n_shared_experts"])
        else:
            out += mlp(p + "mlp.", cfg["intermediate_size"])
    out.append(("model.norm.weight", [H]))
    if not cfg.get("tie_word_embeddings"):
        out.append(("lm_head.weight", [V, H]))
    return out


def tensor_bf16(name, shape, seed):
    """The tensor's BF16 values as little-endian bytes."""
    n = math.prod(shape)
    key = splitmix64(seed ^ fnv1a64(name))
    if len(shape) == 1:
        f64 = [1.0 + (2.0 * ((splitmix64((key + i) & MASK) >> 11) * 2.0**-53) - 1.0) / 4.0 for i in range(n)]
    else:
        fan_in = 1 if name == "model.embed_tokens.weight" else shape[1]
        a = math.sqrt((27.0 if name.endswith("mlp.gate.weight") else 3.0) / fan_in)
        f64 = [(2.0 * ((splitmix64((key + i) & MASK) >> 11) * 2.0**-53) - 1.0) * a for i in range(n)]
    f32 = array.array("I", array.array("f", f64).tobytes())  # array("f") rounds each double to float32 (C cast)
    bf16 = array.array("H", [((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF for b in f32])  # no NaN can occur
    if sys.byteorder != "little":
        bf16.byteswap()
    return bf16.tobytes()


def write_checkpoint(cfg, seed, path):
    """Writes the checkpoint; returns (sha256 hex, size in bytes)."""
    tensors = manifest(cfg)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        nbytes = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        head = len(h).to_bytes(8, "little") + h
        f.write(head)
        digest.update(head)
        for name, shape in tensors:
            b = tensor_bf16(name, shape, seed)
            f.write(b)
            digest.update(b)
    return digest.hexdigest(), len(h) + 8 + off


def read_spec(fixture_dir):
    with open(os.path.join(fixture_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(fixture_dir, "weights.json")) as f:
        spec = json.load(f)
    if spec["generator"] != GENERATOR:
        raise SystemExit(f"{fixture_dir}/weights.json names generator {spec['generator']}; this file is {GENERATOR}. "
                         "HINT: regenerate the fixture with the matching tools/fixture_weights.py")
    return cfg, spec


def write_fixture_checkpoint(fixture_dir, path):
    """Writes the checkpoint of a fixture folder to `path` and checks it against weights.json."""
    cfg, spec = read_spec(fixture_dir)
    sha, size = write_checkpoint(cfg, spec["seed"], path)
    if sha != spec["sha256"]:
        raise SystemExit(f"{path}: SHA-256 {sha} ({size} bytes), weights.json says {spec['sha256']} "
                         f"({spec['bytes']} bytes). HINT: the generator or config.json changed; if on purpose, run "
                         f"tools/fixture_weights.py {fixture_dir} --update and regenerate the reference")
    return sha


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="fixture folder with config.json and weights.json")
    ap.add_argument("--out", default="", help="where to write model.safetensors (default: a temporary file)")
    ap.add_argument("--update", action="store_true", help="store the checkpoint's SHA-256 and size in weights.json")
    args = ap.parse_args()
    out = args.out or tempfile.mkstemp(suffix=".safetensors")[1]
    try:
        if args.update:
            cfg, spec = read_spec(args.dir)
            spec["sha256"], spec["bytes"] = write_checkpoint(cfg, spec["seed"], out)
            with open(os.path.join(args.dir, "weights.json"), "w") as f:
                json.dump(spec, f, indent=1)
                f.write("\n")
            print(f"{args.dir}/weights.json: sha256 {spec['sha256']} ({spec['bytes']} bytes)")
        else:
            print(f"{out}: sha256 {write_fixture_checkpoint(args.dir, out)}, as weights.json says")
    finally:
        if not args.out:
            os.remove(out)


if __name__ == "__main__":
    main()
