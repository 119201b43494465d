#!/usr/bin/env bash
# ci/gpu.sh — the one script to run on a GPU machine (NVIDIA H100, nvcc,
# cmake, python3 with torch; no internet, no apt). Builds r1lab with CUDA into
# build-gpu/, runs the cuda and cpu tests, the cuda test binaries on small
# cases under compute-sanitizer (memcheck, racecheck), `r1lab check`, the
# benchmarks and the PyTorch sampling baseline, and writes everything to
# OUT_DIR as a few flat files:
#
#   summary.txt          one line per step: step, rc, seconds (also printed last)
#   nvidia-smi.txt       the GPU, driver, nvcc and cmake versions
#   build.log            configure + build
#   ctest.log            ctest -L cuda, ctest -L cpu
#   sanitizer.log        compute-sanitizer memcheck + racecheck of each cuda test
#   run.log              r1lab check, r1lab-bench's console output, torch baseline
#   bench.json           r1lab-bench --benchmark_out (Google Benchmark JSON)
#   peers.json           every bench/torch_<component>.py's results, by component
#
# Every step runs even when an earlier one failed (steps that need the build
# are marked skipped when it failed); the exit code is 1 when any step failed.
# Debian packages the build needs (cJSON, Google Benchmark) come extracted in
# .devdeps/root (made by ci/fetch_devdeps.sh on a machine with apt).
#
# Time: the whole run stays inside R1LAB_GPU_BUDGET_S seconds (default 540, for
# machines that stop a command after 10 minutes): each step's timeout is cut
# to what is left, and steps that find no time left are recorded as NOT RUN.
# A second run reuses build-gpu/ and only rebuilds what changed.
#
# Environment: R1LAB_GPU_BUDGET_S (seconds, default 540), R1LAB_GPU_STEPS
# (default "test sanitize check bench peers goldens"; set but empty: only the
# build), R1LAB_SANITIZER_TOOLS (default
# "memcheck racecheck"), R1LAB_GPU_PEERS (a regex of the components whose
# bench/torch_<component>.py runs; default all), R1LAB_FLASHMLA_PEER (a
# binary built by bench/build_flashmla_peer.sh: FlashMLA's decode, run with
# the mla peers), R1LAB_MARLIN_PEER (a binary built by
# bench/build_marlin_peer.sh: Marlin's int4 GEMM, run with the qgemm peers).
#
#   bash ci/gpu.sh OUT_DIR [BENCHMARK_FILTER_REGEX]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
REPO=$(pwd)

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash ci/gpu.sh OUT_DIR [BENCHMARK_FILTER_REGEX]" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
BENCH_FILTER=${2:-}
BUILD=build-gpu
JOBS=$(nproc 2>/dev/null || echo 8)

BUDGET=${R1LAB_GPU_BUDGET_S:-540}
# Which steps run after the build (the build always runs; a second call on the
# same machine rebuilds only what changed): any of test sanitize check bench peers.
STEPS=${R1LAB_GPU_STEPS-test sanitize check bench peers goldens}  # set but empty: the build only
want() { [[ " $STEPS " == *" $1 "* ]]; }
# Which compute-sanitizer tools run (racecheck takes minutes).
SANITIZER_TOOLS=${R1LAB_SANITIZER_TOOLS:-memcheck racecheck}
SUMMARY=$OUT/summary.txt
FAILED=0
BUILD_OK=1
START=$SECONDS

# ---- environment -----------------------------------------------------------------
DEVDEPS=$REPO/.devdeps/root
CONFIGURE_EXTRA=()
DEVDEPS_NOTE="none (system packages)"
if [ -d "$DEVDEPS" ]; then
    LIBDIR=$DEVDEPS/usr/lib/x86_64-linux-gnu
    DEVDEPS_NOTE=$DEVDEPS
    # The Debian library needs glibc >= 2.32 and libstdc++ with GLIBCXX_3.4.30
    # (GCC 12). Where the system's are older, build without r1lab-bench rather
    # than fail the whole build at link time.
    if ldd "$LIBDIR/libbenchmark.so.1debian" 2>&1 | grep -q "not found"; then
        CONFIGURE_EXTRA+=(-DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON)
        DEVDEPS_NOTE="$DEVDEPS (its libbenchmark cannot load here: r1lab-bench not built)"
    fi
    export CMAKE_PREFIX_PATH=$DEVDEPS/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
    export CPATH=$DEVDEPS/usr/include${CPATH:+:$CPATH}
    export LIBRARY_PATH=$LIBDIR${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# Python wheels for the peers that the GPU machine lacks (liger-kernel, ...)
# travel in .whl/ (made on a machine with pip; see bench/README.md).
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/r1lab-site .whl/*.whl && export PYTHONPATH=/tmp/r1lab-site${PYTHONPATH:+:$PYTHONPATH}
fi
# nvcc and compute-sanitizer live in the CUDA toolkit, which may not be on PATH.
for cuda_bin in "${CUDA_HOME:-}/bin" /usr/local/cuda/bin; do
    if [ -x "$cuda_bin/nvcc" ] && ! command -v nvcc >/dev/null 2>&1; then
        export PATH=$cuda_bin:$PATH
    fi
done
# compute-sanitizer: on PATH, in a CUDA toolkit (bin/ or compute-sanitizer/),
# or from the nvidia-cuda-sanitizer-api Python wheel.
find_sanitizer() {
    command -v compute-sanitizer && return
    local roots=("${CUDA_HOME:-/nonexistent}") root
    command -v nvcc >/dev/null 2>&1 && roots+=("$(dirname "$(dirname "$(command -v nvcc)")")")
    roots+=(/usr/local/cuda /usr/local/cuda-* /opt/nvidia/*)
    for root in "${roots[@]}"; do
        for candidate in "$root/bin/compute-sanitizer" "$root/compute-sanitizer/compute-sanitizer"; do
            [ -x "$candidate" ] && { echo "$candidate"; return; }
        done
    done
    python3 - <<'PYTHON' 2>/dev/null
import glob, os, site, sys
for folder in site.getsitepackages() + [site.getusersitepackages()]:
    for path in glob.glob(os.path.join(folder, "nvidia", "*", "compute-sanitizer", "compute-sanitizer")):
        if os.access(path, os.X_OK):
            print(path)
            sys.exit(0)
PYTHON
}
SANITIZER=$(find_sanitizer | head -1)
# The tests find golden files through this (ctest sets it too).
export R1LAB_SOURCE_DIR=$REPO

echo "benchmark filter: ${BENCH_FILTER:-none (all benchmarks)}" > "$SUMMARY"
printf '%-44s %5s %8s\n' "step" "rc" "seconds" >> "$SUMMARY"

# run_step NAME LOG TIMEOUT_SECONDS COMMAND... — runs COMMAND with its output
# appended to $OUT/LOG (and echoed), records NAME, rc and seconds in the
# summary. rc 77 (a test binary's skip) is recorded as a skip, not a failure.
run_step() {
    local name=$1 log=$OUT/$2 limit=$3
    shift 3
    local started=$SECONDS rc status
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then
        skip_step "$name" "time budget of ${BUDGET}s spent"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    {
        printf '\n==== %s ====\n$ %s\n' "$name" "$*"
    } | tee -a "$log"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status="" ;;
        77) status="skipped (exit 77)" ;;
        124|137) status="TIMEOUT after ${limit}s"; FAILED=1 ;;
        *) status="FAILED"; FAILED=1 ;;
    esac
    printf -- '---- %s: rc=%d %s(%ds)\n' "$name" "$rc" "${status:+$status }" $((SECONDS - started)) | tee -a "$log"
    printf '%-44s %5d %8d  %s\n' "$name" "$rc" $((SECONDS - started)) "$status" >> "$SUMMARY"
    return "$rc"
}

# skip_step NAME REASON — records a step that could not run (a failure).
skip_step() {
    printf '%-44s %5s %8s  %s\n' "$1" "-" "-" "NOT RUN: $2" >> "$SUMMARY"
    FAILED=1
}
# A step left out on purpose (not a failure).
left_out_step() {
    printf '%-44s %5s %8s  %s\n' "$1" "-" "-" "left out: $2" >> "$SUMMARY"
}

# ---- the machine ------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "revision: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "devdeps: $DEVDEPS_NOTE"
    [ -d "$DEVDEPS" ] && ldd "$LIBDIR/libbenchmark.so.1debian" 2>&1 | sed 's/^/    /'
    echo "compute-sanitizer: ${SANITIZER:-not found}"
    echo
    nvidia-smi 2>&1 || echo "nvidia-smi failed (rc $?)"
    echo
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,power.limit \
        --format=csv 2>&1 || true
    echo
    nvcc --version 2>&1 || echo "nvcc not found"
    echo
    cmake --version 2>&1 | head -1
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 || true
} > "$OUT/nvidia-smi.txt"
cat "$OUT/nvidia-smi.txt"

# ---- build ---------------------------------------------------------------------------
run_step "configure ($BUILD, R1LAB_CUDA=ON)" build.log 300 \
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DR1LAB_CUDA=ON "${CONFIGURE_EXTRA[@]}" || BUILD_OK=0
if [ $BUILD_OK -eq 1 ]; then
    run_step "build" build.log 900 cmake --build "$BUILD" -j"$JOBS" || BUILD_OK=0
else
    skip_step "build" "configure failed"
fi

# ---- tests ---------------------------------------------------------------------------
if ! want test; then
    left_out_step "ctest" "not in R1LAB_GPU_STEPS"
elif [ $BUILD_OK -eq 1 ]; then
    run_step "ctest -L cuda" ctest.log 900 \
        ctest --test-dir "$BUILD" -L cuda --output-on-failure -j1
    run_step "ctest -L cpu" ctest.log 900 \
        ctest --test-dir "$BUILD" -L cpu --output-on-failure -j"$JOBS"
else
    skip_step "ctest -L cuda" "build failed"
    skip_step "ctest -L cpu" "build failed"
fi

# The executables of the tests labelled cuda, from ctest's own listing.
cuda_test_binaries() {
    ctest --test-dir "$BUILD" -L cuda --show-only=json-v1 2>/dev/null | python3 -c '
import json, sys
for test in json.load(sys.stdin).get("tests", []):
    command = test.get("command") or []
    if command:
        print(command[0])
'
}

if ! want sanitize; then
    left_out_step "compute-sanitizer" "not in R1LAB_GPU_STEPS"
elif [ $BUILD_OK -eq 1 ] && [ -n "$SANITIZER" ]; then
    mapfile -t CUDA_TESTS < <(cuda_test_binaries)
    if [ ${#CUDA_TESTS[@]} -eq 0 ]; then
        skip_step "compute-sanitizer" "no test labelled cuda was found"
    fi
    for binary in "${CUDA_TESTS[@]}"; do
        test_name=$(basename "$binary")
        if [[ " $SANITIZER_TOOLS " == *" memcheck "* ]]; then
            run_step "memcheck $test_name --small" sanitizer.log 600 \
                "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 1 "$binary" --small
        else
            left_out_step "memcheck $test_name --small" "not in R1LAB_SANITIZER_TOOLS"
        fi
        # racecheck instruments every shared-memory access: golden cases
        # above V = 40000 (the same code path at a larger cluster) are left
        # to memcheck and the plain run to keep it to minutes.
        if [[ " $SANITIZER_TOOLS " == *" racecheck "* ]]; then
            run_step "racecheck $test_name --small" sanitizer.log 600 \
                env R1T_MAX_VOCAB=40000 "$SANITIZER" --tool racecheck --error-exitcode 1 "$binary" --small
        else
            left_out_step "racecheck $test_name --small" "not in R1LAB_SANITIZER_TOOLS"
        fi
    done
elif [ $BUILD_OK -eq 1 ]; then
    skip_step "compute-sanitizer" "compute-sanitizer not found"
else
    skip_step "compute-sanitizer" "build failed"
fi

# ---- r1lab check, benchmarks ------------------------------------------------------------
if [ $BUILD_OK -eq 1 ]; then
    if want check; then
        run_step "r1lab check --bench" run.log 600 "$BUILD/r1lab" check --bench
    else
        left_out_step "r1lab check" "not in R1LAB_GPU_STEPS"
    fi
    if ! want bench; then
        left_out_step "r1lab-bench" "not in R1LAB_GPU_STEPS"
    elif [ -x "$BUILD/r1lab-bench" ]; then
        bench_arguments=(--benchmark_out="$OUT/bench.json" --benchmark_out_format=json)
        [ -n "$BENCH_FILTER" ] && bench_arguments+=(--benchmark_filter="$BENCH_FILTER")
        run_step "r1lab-bench" run.log 900 \
            "$BUILD/r1lab-bench" "${bench_arguments[@]}"
    else
        skip_step "r1lab-bench" "$BUILD/r1lab-bench was not built (Google Benchmark not found?)"
    fi
else
    skip_step "r1lab check" "build failed"
    skip_step "r1lab-bench" "build failed"
fi

# Peers measured in the same run: every bench/torch_<component>.py writes its
# results with --json; they are merged into one peers.json {component: results}.
PEERS_DIR=$(mktemp -d)
for peer in bench/torch_*.py; do
    [ -f "$peer" ] && want peers || continue
    component=$(basename "$peer" .py)
    component=${component#torch_}
    [[ "$component" =~ ^(${R1LAB_GPU_PEERS:-.*})$ ]] || continue
    run_step "$(basename "$peer")" run.log 600 \
        python3 "$peer" --json "$PEERS_DIR/$component.json"
done
# Native peers built from a checkout of their project (not part of r1lab), run
# when their variable names a binary and their component's peers run; results
# land in peers.json as NAME_COMPONENT:
#   R1LAB_FLASHMLA_PEER  bench/build_flashmla_peer.sh: FlashMLA's decode (mla)
#   R1LAB_MARLIN_PEER    bench/build_marlin_peer.sh: Marlin's int4 GEMM (qgemm)
run_native_peer() { # NAME COMPONENT VARIABLE
    local name=$1 component=$2 variable=$3
    local binary=${!variable:-}
    want peers && [ -n "$binary" ] && [[ "$component" =~ ^(${R1LAB_GPU_PEERS:-.*})$ ]] || return 0
    if [ -x "$binary" ]; then
        run_step "${name}_peer" run.log 600 "$binary" --json "$PEERS_DIR/${name}_${component}.json"
    else
        skip_step "${name}_peer" "$variable=$binary is not an executable"
    fi
}
run_native_peer flashmla mla R1LAB_FLASHMLA_PEER
run_native_peer marlin qgemm R1LAB_MARLIN_PEER
python3 - "$PEERS_DIR" "$OUT/peers.json" <<'PYTHON'
import glob, json, os, sys
merged = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    with open(path) as f:
        merged[os.path.basename(path)[:-5]] = json.load(f)
with open(sys.argv[2], "w") as f:
    json.dump(merged, f, indent=1)
PYTHON
rm -rf "$PEERS_DIR"

# The golden generators that need torch/transformers (those without the
# "# ci: --check" line that ci/test.sh runs) are verified here, where both are
# installed: regenerated in a scratch copy and compared by content.
if want goldens; then
    torch_generators=()
    for generator in golden/gen/*.py; do
        [ "$generator" = golden/gen/verify.py ] && continue
        grep -q "MANIFEST" "$generator" || continue
        head -40 "$generator" | grep -q '^# ci: --check' || torch_generators+=("$generator")
    done
    if [ ${#torch_generators[@]} -gt 0 ]; then
        run_step "golden/gen/verify.py (torch generators)" run.log 300 \
            python3 golden/gen/verify.py "${torch_generators[@]}"
    fi
fi

# ---- summary ----------------------------------------------------------------------------
{
    echo
    if [ $FAILED -eq 0 ]; then
        echo "all steps passed in $((SECONDS - START))s"
    else
        echo "SOME STEPS FAILED (total $((SECONDS - START))s)"
    fi
} >> "$SUMMARY"
printf '\n==== summary (%s) ====\n' "$SUMMARY"
cat "$SUMMARY"
exit $FAILED
