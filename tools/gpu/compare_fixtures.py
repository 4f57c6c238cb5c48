#!/usr/bin/env python3
"""Compares committed fixtures with freshly generated ones: weights byte for byte, logits to the last bit (and
their largest difference if not). Prints one line per fixture and a verdict line last."""
import hashlib
import os
import sys

import numpy as np


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main(old_root, new_root):
    same, total, worst = 0, 0, 0.0
    for kind in ("fixtures", "models"):
        for name in sorted(os.listdir(os.path.join(old_root, kind))):
            old, new = os.path.join(old_root, kind, name), os.path.join(new_root, kind, name)
            if os.path.exists(os.path.join(old, "weights.json")):
                continue  # generated weights: tools/make_long_fixture.py --check compares those
            total += 1
            if not os.path.isdir(new):
                print(f"{name}: not regenerated")
                continue
            weights = sorted(f for f in os.listdir(old) if f.endswith(".safetensors"))
            w_ok = all(os.path.exists(os.path.join(new, f)) and digest(os.path.join(old, f)) == digest(os.path.join(new, f))
                       for f in weights)
            d = float(np.abs(np.load(os.path.join(old, "logits.npy")).astype(np.float64) -
                             np.load(os.path.join(new, "logits.npy")).astype(np.float64)).max())
            worst = max(worst, d)
            ok = w_ok and d == 0.0
            same += ok
            print(f"{name}: weights {'identical' if w_ok else 'DIFFER'}, logits max diff {d:.3g}")
    print(f"{same}/{total} identical (weights and logits), worst logit diff {worst:.3g}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
