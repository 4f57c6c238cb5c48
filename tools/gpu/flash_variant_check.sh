#!/usr/bin/env bash
# Builds tools/gpu/flash_variant_check.cu with nvcc alone (no CMake build: ~30 s, for short device calls) and runs it
# under each flash prefill variant named (default: pipe pingpong); the outputs of ragged batches must be the same
# bytes across variants that differ only in scheduling. Usage: tools/gpu/flash_variant_check.sh OUT_DIR [variants...]
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:?OUT_DIR}; shift
variants=("$@"); [ ${#variants[@]} -eq 0 ] && variants=(pipe pingpong)
mkdir -p "$out"
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
bin=$out/flash_variant_check
t0=$(date +%s)
"$nvcc" -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -DFMT_SHARED -DFMT_USE_CONSTEXPR=1 -DMLABENCH_HAS_SM90A=1 \
  --expt-relaxed-constexpr -I. -Iengine/include -Icore/include tools/gpu/flash_variant_check.cu \
  engine/kernels/cuda/flash_prefill.cu engine/kernels/cuda/hopper.cu engine/kernels/cuda/cuda_check.cpp core/check.cpp \
  -lfmt -o "$bin" || { echo "flash_variant_check: build FAILED"; exit 1; }
echo "flash_variant_check: built in $(( $(date +%s) - t0 )) s"
rc=0
for v in "${variants[@]}"; do
  MLABENCH_FLASH=$v timeout 60 "$bin" "$out" || { echo "flash_variant_check: $v FAILED (rc $?)"; rc=1; }
done
for f in mla gqa; do
  for v in "${variants[@]:1}"; do
    if cmp -s "$out/${variants[0]}_$f.bin" "$out/${v}_$f.bin"; then
      echo "flash_variant_check: $f outputs of ${variants[0]} and $v: the same bytes"
    else
      echo "flash_variant_check: $f outputs of ${variants[0]} and $v DIFFER"; rc=1
    fi
  done
done
rm -f "$out"/*.bin "$bin"
exit $rc
