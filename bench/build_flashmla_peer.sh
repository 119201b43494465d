#!/usr/bin/env bash
# bench/build_flashmla_peer.sh — builds bench/flashmla_peer.cu against a
# FlashMLA checkout, for the side-by-side MLA decode benchmark.
#
#   bench/build_flashmla_peer.sh FLASHMLA_DIR OUT_BINARY
#
# FLASHMLA_DIR is a checkout of github.com/deepseek-ai/FlashMLA with its
# CUTLASS submodule in csrc/cutlass (FlashMLA is not part of r1lab and is not
# committed here). Needs nvcc >= 12.3; the binary runs on sm_90 (H100/H800).
# It compiles FlashMLA's dense bf16 decode kernel, its combine kernel and its
# tile scheduler with the flags of FlashMLA's setup.py, then links them with
# the harness. ci/gpu.sh runs the result in its peers step when
# R1LAB_FLASHMLA_PEER names it (the GPU machine has no network, so the binary
# is built where FlashMLA can be fetched and carried there).
set -euo pipefail
if [ $# -ne 2 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
src=$(cd "$1" && pwd)/csrc
out=$2
here=$(cd "$(dirname "$0")" && pwd)
for f in sm90/decode/dense/instantiations/bf16.cu smxx/decode/combine/combine.cu \
         smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu cutlass/include/cute/tensor.hpp; do
    [ -f "$src/$f" ] || { echo "build_flashmla_peer: $src/$f is missing (FlashMLA checkout with csrc/cutlass?)" >&2; exit 1; }
done
flags=(-O3 -std=c++20 -DNDEBUG -D_USE_MATH_DEFINES -Wno-deprecated-declarations
       -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_HALF2_OPERATORS__
       -U__CUDA_NO_BFLOAT16_CONVERSIONS__ --expt-relaxed-constexpr --expt-extended-lambda
       --use_fast_math -DFLASH_MLA_DISABLE_FP16 -gencode arch=compute_90a,code=sm_90a
       -I"$src" -I"$src/kerutils/include" -I"$src/sm90" -I"$src/cutlass/include"
       -I"$src/cutlass/tools/util/include")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nvcc "${flags[@]}" -c "$src/sm90/decode/dense/instantiations/bf16.cu" -o "$work/decode.o" &
nvcc "${flags[@]}" -c "$src/smxx/decode/combine/combine.cu" -o "$work/combine.o" &
nvcc "${flags[@]}" -c "$src/smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu" -o "$work/meta.o" &
nvcc "${flags[@]}" -c "$here/flashmla_peer.cu" -o "$work/peer.o" &
for job in $(jobs -p); do wait "$job"; done
nvcc -gencode arch=compute_90a,code=sm_90a "$work"/*.o -o "$out" -lcuda
echo "build_flashmla_peer: wrote $out"
