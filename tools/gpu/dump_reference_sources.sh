#!/usr/bin/env bash
# Copies the reference implementation's source files (the installed transformers version) into $OUT,
# so the fixture script can be checked against exactly the code that produces the references.
set -euo pipefail
out=${OUT:?}
python3 - <<'PY' > "$out/versions.txt"
import transformers, torch, tokenizers, safetensors, numpy
print("transformers", transformers.__version__, "torch", torch.__version__, "tokenizers", tokenizers.__version__,
      "safetensors", safetensors.__version__, "numpy", numpy.__version__)
PY
root=$(python3 -c 'import transformers, os; print(os.path.dirname(transformers.__file__))')
tar czf "$out/tf_src.tgz" -C "$root" models/deepseek_v2 models/llama modeling_rope_utils.py conversion_mapping.py \
    core_model_loading.py integrations/moe.py 2>/dev/null || \
tar czf "$out/tf_src.tgz" -C "$root" models/deepseek_v2 models/llama modeling_rope_utils.py
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/versions.txt"
cat "$out/versions.txt"
