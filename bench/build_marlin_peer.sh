#!/usr/bin/env bash
# bench/build_marlin_peer.sh — builds bench/marlin_peer.cu against a Marlin
# checkout, for the side-by-side W4A16 benchmark.
#
#   bench/build_marlin_peer.sh MARLIN_DIR OUT_BINARY
#
# MARLIN_DIR is a checkout of github.com/IST-DASLab/marlin (Marlin is not part
# of r1lab and is not committed here). Its kernel file has no dependency on
# torch: it is compiled with Marlin's own tile configurations and the
# --expt-relaxed-constexpr that torch's extension builder adds, for sm_90a,
# and linked with the harness. One change, made to a copy: the weights' copies
# lose their L2 evict-first hint (createpolicy + cp.async ... L2::cache_hint
# becomes a plain cp.async.cg). Built by nvcc 13.0 for sm_90 (sm_90a, or
# compute_80 PTX compiled by the driver), that pair stops the kernel with "an
# illegal instruction was encountered" on an H100; the hint only keeps the
# weights, read once, from displacing other lines in L2.
# ci/gpu.sh runs the result in its peers step, with the qgemm peers, when
# R1LAB_MARLIN_PEER names it (the GPU machine has no network, so the binary is
# built where Marlin can be fetched and carried there).
set -euo pipefail
if [ $# -ne 2 ]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
kernel=$(cd "$1" && pwd)/marlin/marlin_cuda_kernel.cu
out=$2
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$kernel" ] || { echo "build_marlin_peer: $kernel is missing (a Marlin checkout?)" >&2; exit 1; }
flags=(-O3 -std=c++17 --expt-relaxed-constexpr -gencode arch=compute_90a,code=sm_90a)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the copy without the cache hint (exactly one such copy in the file)
python3 - "$kernel" "$work/marlin_cuda_kernel.cu" <<'PYTHON'
import sys
text = open(sys.argv[1]).read()
hinted = ('"   createpolicy.fractional.L2::evict_first.b64 p, 1.0;"\n'
          '    "   cp.async.cg.shared.global.L2::cache_hint [%0], [%1], %2, p;\\n"')
plain = '"   cp.async.cg.shared.global [%0], [%1], %2;\\n"'
if text.count(hinted) != 1:
    sys.exit("build_marlin_peer: the hinted copy in %s is not as expected; not patched" % sys.argv[1])
open(sys.argv[2], "w").write(text.replace(hinted, plain))
PYTHON
nvcc "${flags[@]}" -diag-suppress 39,179 -c "$work/marlin_cuda_kernel.cu" -o "$work/marlin.o" &
nvcc "${flags[@]}" -c "$here/marlin_peer.cu" -o "$work/peer.o" &
for job in $(jobs -p); do wait "$job"; done
nvcc -gencode arch=compute_90a,code=sm_90a "$work"/*.o -o "$out"
echo "build_marlin_peer: wrote $out"
