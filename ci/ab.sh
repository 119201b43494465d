#!/usr/bin/env bash
# ci/ab.sh — versions of one source file compared side by side in one call on
# a GPU machine (A / B / A: name a version twice to see the drift between
# builds of the same code).
#
#   bash ci/ab.sh OUT_DIR FILE BENCHMARK_FILTER VERSION...
#
# VERSION is a path to a version of FILE (say probe/qgemm_b.cu, untracked), or
# "." for FILE as it is in the tree. For each VERSION in the order given, FILE
# is replaced by it, build-gpu/ rebuilds r1lab-bench and the test binaries
# named in R1LAB_AB_TESTS, those tests run (under compute-sanitizer too when
# R1LAB_AB_SANITIZE names its tools), then r1lab-bench with the filter. FILE
# is put back as it was when the script ends, however it ends. A missing
# build-gpu/ is made first by ci/gpu.sh (build only; its files in
# OUT_DIR/gpu).
#
# Writes to OUT_DIR:
#   ab.log    every command and its output
#   ab.json   {"file", "filter", "versions": [{"version", "rc", "benchmarks"}]}
#             (rc: the build's, else the first failing test's, else the bench's)
#   ab.txt    per benchmark, each version's time per call (CUDA events) and,
#             where the benchmark reports it, its CUDA-graph time per call
#
# Environment: R1LAB_AB_TESTS (test binaries in build-gpu/, e.g.
# "test_qgemm_cuda"), R1LAB_AB_SANITIZE (e.g. "racecheck"; each test runs
# with --small under each tool), R1LAB_AB_MIN_TIME (--benchmark_min_time in
# seconds, default 0.3), R1LAB_GPU_BUDGET_S (seconds for the whole call,
# default 540: a step that would pass it is cut short and counted failed).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
REPO=$(pwd)

if [ $# -lt 4 ]; then
    echo "usage: bash ci/ab.sh OUT_DIR FILE BENCHMARK_FILTER VERSION..." >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
FILE=$2
FILTER=$3
shift 3
VERSIONS=("$@")
[ -f "$FILE" ] || { echo "ci/ab.sh: $FILE is not a file in the tree" >&2; exit 2; }
for version in "${VERSIONS[@]}"; do
    [ "$version" = . ] || [ -f "$version" ] || { echo "ci/ab.sh: no version file $version" >&2; exit 2; }
done
TESTS=${R1LAB_AB_TESTS:-}
SANITIZE=${R1LAB_AB_SANITIZE:-}
MIN_TIME=${R1LAB_AB_MIN_TIME:-0.3}
BUDGET=${R1LAB_GPU_BUDGET_S:-540}
START=$SECONDS
LOG=$OUT/ab.log
WORK=$(mktemp -d)

# FILE as the tree has it, put back at the end with a new modification time,
# and the objects compiled from it removed: build-gpu/ holds the last
# version's objects, and a later call whose copy of the tree brings FILE with
# its old time would otherwise take them for the tree's and not recompile.
cp -p "$FILE" "$WORK/original" || exit 2
restore() {
    cp "$WORK/original" "$REPO/$FILE"
    find "$REPO/build-gpu" -name "$(basename "$FILE").o" -delete 2>/dev/null
}
trap 'restore; rm -rf "$WORK"' EXIT

if [ -d .devdeps/root ]; then
    LIBDIR=$REPO/.devdeps/root/usr/lib/x86_64-linux-gnu
    export LD_LIBRARY_PATH=$LIBDIR:$REPO/.devdeps/root/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export PATH=$PATH:/usr/local/cuda/bin
export R1LAB_SOURCE_DIR=$REPO

# run LIMIT COMMAND... — COMMAND with its output appended to the log, cut
# short at LIMIT seconds or at what is left of the budget.
run() {
    local limit=$1 left=$((BUDGET - (SECONDS - START)))
    shift
    [ "$left" -lt 5 ] && { echo "(budget spent: not run) $*" >> "$LOG"; return 124; }
    [ "$limit" -gt "$left" ] && limit=$left
    echo "\$ $*" >> "$LOG"
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
}

if [ ! -d build-gpu ]; then
    R1LAB_GPU_STEPS="" R1LAB_GPU_BUDGET_S=$((BUDGET - 30)) run "$BUDGET" bash ci/gpu.sh "$OUT/gpu" ||
        { echo "ci/ab.sh: the first build failed (see $OUT/gpu/build.log)" >&2; exit 1; }
fi

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
index=0
for version in "${VERSIONS[@]}"; do
    index=$((index + 1))
    echo "==== version $index: $version ====" >> "$LOG"
    if [ "$version" = . ]; then cp -p "$WORK/original" "$FILE"; else cp "$version" "$FILE"; fi
    touch "$FILE"
    rc=0
    # shellcheck disable=SC2086
    run 400 cmake --build build-gpu -j"$(nproc)" --target r1lab-bench $TESTS || rc=$?
    if [ $rc -eq 0 ]; then
        for test in $TESTS; do
            run 300 "build-gpu/$test" || { rc=$?; break; }
            for tool in $SANITIZE; do
                run 300 "$sanitizer" --tool "$tool" --error-exitcode 1 "build-gpu/$test" --small || { rc=$?; break 2; }
            done
        done
    fi
    if [ $rc -eq 0 ]; then
        run 300 build-gpu/r1lab-bench --benchmark_filter="$FILTER" --benchmark_min_time="$MIN_TIME" \
            --benchmark_out="$WORK/bench-$index.json" --benchmark_out_format=json || rc=$?
    fi
    printf '%s\t%s\n' "$version" "$rc" >> "$WORK/versions.tsv"
done

python3 - "$WORK" "$FILE" "$FILTER" "$OUT" <<'PYTHON'
import json, os, sys

work, file, filter_, out = sys.argv[1:5]
versions = []
with open(os.path.join(work, "versions.tsv")) as lines:
    for index, line in enumerate(lines, 1):
        version, rc = line.rstrip("\n").split("\t")
        path = os.path.join(work, f"bench-{index}.json")
        benchmarks = []
        if os.path.exists(path):
            with open(path) as f:
                benchmarks = json.load(f).get("benchmarks", [])
        versions.append({"version": version, "rc": int(rc), "benchmarks": benchmarks})
with open(os.path.join(out, "ab.json"), "w") as f:
    json.dump({"file": file, "filter": filter_, "versions": versions}, f, indent=1)

def per_call(benchmark):
    unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[benchmark.get("time_unit", "ns")]
    event = benchmark["real_time"] * unit
    graph = benchmark.get("graph_us_per_call")
    return f"{event:.1f}" + (f" / {graph:.1f}" if graph else "")

names = []
for v in versions:
    for b in v["benchmarks"]:
        if b["name"] not in names:
            names.append(b["name"])
with open(os.path.join(out, "ab.txt"), "w") as f:
    f.write(f"{file}, filter {filter_!r}; µs per call: CUDA events / CUDA graph\n")
    for i, v in enumerate(versions, 1):
        f.write(f"  [{i}] {v['version']} (rc {v['rc']})\n")
    for name in names:
        cells = []
        for v in versions:
            found = [b for b in v["benchmarks"] if b["name"] == name]
            cells.append(per_call(found[0]) if found else "-")
        f.write(name + "\n    " + "  |  ".join(f"[{i}] {c}" for i, c in enumerate(cells, 1)) + "\n")
PYTHON
cat "$OUT/ab.txt"
! grep -qv $'\t0$' "$WORK/versions.tsv"
