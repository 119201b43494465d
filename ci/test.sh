#!/usr/bin/env bash
# ci/test.sh — r1lab's test command (the README's; .ci/run calls it): on a
# machine without a GPU, installs the Debian packages the build needs (when
# run as root and one is missing), builds everything into build/ (CUDA code
# too where nvcc is found), runs every cpu-labelled test, repeats the cpu
# tests in an ASan + UBSan build (build-sanitize/), and self-tests the
# benchmark comparison script. Stops at the first failing section.
#
#   bash ci/test.sh            from anywhere inside a clone
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=$(nproc 2>/dev/null || echo 2)
TOTAL_START=$SECONDS
SECTION_NAME="setup"
SECTION_START=$SECONDS

section() {
    SECTION_NAME=$1
    SECTION_START=$SECONDS
    printf '\n==== %s ====\n' "$SECTION_NAME"
}
section_done() {
    printf -- '---- %s: ok (%ds)\n' "$SECTION_NAME" $((SECONDS - SECTION_START))
}
trap 'printf -- "---- %s: FAILED after %ds (total %ds)\n" "$SECTION_NAME" $((SECONDS - SECTION_START)) $((SECONDS - TOTAL_START)) >&2' ERR

# ---- packages -------------------------------------------------------------------
section "packages"
PACKAGES=(cmake gcc g++ make pkg-config libcjson-dev libcurl4-openssl-dev libbenchmark-dev python3 python3-venv)
if command -v dpkg >/dev/null 2>&1; then
    MISSING=()
    for package in "${PACKAGES[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || MISSING+=("$package")
    done
    if [ ${#MISSING[@]} -eq 0 ]; then
        echo "all needed packages are installed: ${PACKAGES[*]}"
    elif [ "$(id -u)" -eq 0 ]; then
        echo "installing: ${MISSING[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${MISSING[@]}"
    else
        echo "warning: missing packages (${MISSING[*]}) and not root: not installing; the build may fail" >&2
    fi
else
    echo "no dpkg: not a Debian system, using the tools on PATH"
fi
section_done

# ---- build --------------------------------------------------------------------------
section "configure + build (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS"
section_done

section "cpu tests (build/)"
ctest --test-dir build -L cpu --output-on-failure -j2
section_done

# ---- sanitizers -----------------------------------------------------------------------
section "configure + build (build-sanitize/, ASan + UBSan, RelWithDebInfo, no CUDA)"
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DR1LAB_SANITIZE=ON -DR1LAB_CUDA=OFF
cmake --build build-sanitize -j"$JOBS"
section_done

section "cpu tests under ASan + UBSan (build-sanitize/)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize -L cpu --output-on-failure -j2
section_done

# ---- scripts --------------------------------------------------------------------------
section "ci/bench_compare.py self-test"
python3 ci/test_bench_compare.py
section_done

# The golden files must be exactly what golden/gen makes: regenerate them in
# memory (numpy, safetensors pinned in golden/gen/requirements.txt, installed
# into a private venv) and compare byte for byte.
section "golden files regenerate byte for byte (golden/gen)"
if [ ! -x build/golden-venv/bin/python3 ]; then
    python3 -m venv build/golden-venv
    build/golden-venv/bin/python3 -m pip install -q -r golden/gen/requirements.txt
fi
# Every generator that needs only the pinned packages carries the line
# "# ci: --check" near its top; generators that need torch or transformers are
# checked where those are installed (golden/gen/README.md).
for generator in golden/gen/*.py; do
    if head -40 "$generator" | grep -q '^# ci: --check'; then
        echo "$ build/golden-venv/bin/python3 $generator --check"
        build/golden-venv/bin/python3 "$generator" --check
    fi
done
section_done

trap - ERR
printf '\nall sections passed in %ds\n' $((SECONDS - TOTAL_START))
