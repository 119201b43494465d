#!/usr/bin/env bash
# ci/profile.sh OUT_DIR [FILTER...] — Nsight Compute report of the sampling
# kernels for benchmark configurations (one call each, after warm-up: the
# chunk summaries, the row decisions and the cluster kernel for the rows
# left, which is an empty launch when every row was decided), on a
# GPU machine, using the build-gpu/ tree that ci/gpu.sh made (built here if
# absent). Writes OUT_DIR/ncu.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
OUT=$1; shift
mkdir -p "$OUT"
if [ -d .devdeps/root ]; then
    LIBDIR=$PWD/.devdeps/root/usr/lib/x86_64-linux-gnu
    export CMAKE_PREFIX_PATH=$PWD/.devdeps/root/usr CPATH=$PWD/.devdeps/root/usr/include
    export LIBRARY_PATH=$LIBDIR LD_LIBRARY_PATH=$LIBDIR
fi
export PATH=/usr/local/cuda/bin:$PATH
if [ ! -x build-gpu/r1lab-bench ]; then
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DR1LAB_CUDA=ON >/dev/null &&
        cmake --build build-gpu -j"$(nproc)" --target r1lab-bench >/dev/null || exit 1
fi
FILTERS=("$@")
[ ${#FILTERS[@]} -eq 0 ] && FILTERS=('backend=cuda,B=256,V=152064,T=0.6,top_p=0.95' 'backend=cuda,B=256,V=152064,T=0.6,min_p=0.05')
for filter in "${FILTERS[@]}"; do
    echo "==== $filter ====" >> "$OUT/ncu.txt"
    ncu --launch-skip 9 --launch-count 3 -k 'regex:summarize_chunks|decide_rows|sample_rows' \
        --set detailed \
        build-gpu/r1lab-bench --benchmark_filter="$filter" --benchmark_min_time=0.01 \
        >> "$OUT/ncu.txt" 2>&1
done
