#!/usr/bin/env bash
# SASS of a CUDA file on a machine with no GPU and no cuobjdump: compiles it to a cubin with this machine's nvcc and
# disassembles it with Debian's nvdisasm (CUDA 11.8, package nvidia-cuda-toolkit in bookworm's non-free), which
# reads a CUDA 13 sm_90a cubin once the ELF header's ABI fields are set back to the values 11.8 writes (OS/ABI
# 0x33, ABI version 7, e_flags for sm_90). The instructions are decoded as sm_90 (wgmma, TMA and mbarrier opcodes
# included); use it to check ptxas's schedule (where waits land, spills) before spending device time.
#
#   tools/sass_local.sh engine/kernels/cuda/flash_prefill.cu OUT.sass [extra nvcc flags]
#
# nvdisasm is fetched once into ~/.cache/mlabench-nvdisasm with `apt-get download` (no install, no root needed
# beyond apt's lists); NVDISASM=/path overrides it.
set -euo pipefail
src=${1:?usage: $0 FILE.cu OUT.sass [nvcc flags]}; out=${2:?usage: $0 FILE.cu OUT.sass [nvcc flags]}; shift 2
cd "$(dirname "$0")/.."
nvd=${NVDISASM:-$HOME/.cache/mlabench-nvdisasm/usr/bin/nvdisasm}
if [ ! -x "$nvd" ]; then
  d=$HOME/.cache/mlabench-nvdisasm; mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$d/nf.sources"
  A=(-o Dir::Etc::sourcelist="$d/nf.sources" -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache")
  apt-get "${A[@]}" update -q > /dev/null
  (cd "$d" && apt-get "${A[@]}" download nvidia-cuda-toolkit > /dev/null && dpkg -x nvidia-cuda-toolkit_*.deb "$d")
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/local/cuda/bin/nvcc -DFMT_SHARED -DFMT_USE_CONSTEXPR=1 -DMLABENCH_HAS_SM90A=1 -I engine/include -I . -O3 -DNDEBUG \
  -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -std=c++20 -Xptxas -v -cubin -o "$tmp/k.cubin" "$@" "$src" \
  2> "$out.ptxas"
python3 - "$tmp/k.cubin" "$tmp/old.cubin" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
b[7], b[8] = 0x33, 7                      # OS/ABI and ABI version as CUDA 11.8 writes them
struct.pack_into("<I", b, 0x30, 0x5a055a)  # e_flags: sm_90, virtual sm_90, 64-bit addresses, unified textures
open(sys.argv[2], "wb").write(b)
PY
"$nvd" -c "$tmp/old.cubin" > "$out"
echo "$out: $(grep -c '^\s*/\*[0-9a-f]*\*/' "$out") instructions; ptxas report (registers, spills) in $out.ptxas"
