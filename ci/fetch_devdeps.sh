#!/usr/bin/env bash
# ci/fetch_devdeps.sh — runs here, on a Debian machine with apt: downloads the
# Debian packages that ci/gpu.sh needs on the GPU machine (which has no
# internet and no apt) and extracts them into .devdeps/root/ (git-ignored), a
# folder that travels with the working tree:
#   libcjson1 libcjson-dev                 cJSON (r1lab links it)
#   libbenchmark1debian libbenchmark-dev   Google Benchmark (r1lab-bench)
# Headers land in .devdeps/root/usr/include, libraries and Google Benchmark's
# CMake config in .devdeps/root/usr/lib/x86_64-linux-gnu; ci/gpu.sh points
# CMAKE_PREFIX_PATH, CPATH, LIBRARY_PATH and LD_LIBRARY_PATH there.
#
#   bash ci/fetch_devdeps.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(libcjson1 libcjson-dev libbenchmark1debian libbenchmark-dev)
LIMIT_KIB=$((16 * 1024))   # the working tree that travels is limited: stay small

download_folder=$(mktemp -d)
trap 'rm -rf "$download_folder"' EXIT
# (apt may warn that the download ran "unsandboxed as root": harmless)

download() { (cd "$download_folder" && apt-get download "${PACKAGES[@]}"); }
if ! download; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "apt-get download failed; updating the package lists once and retrying"
        apt-get update
        download
    else
        echo "fetch_devdeps.sh: apt-get download failed (run 'apt-get update' as root first?)" >&2
        exit 1
    fi
fi

rm -rf .devdeps/root
mkdir -p .devdeps/root
: > .devdeps/VERSIONS.txt
for deb in "$download_folder"/*.deb; do
    dpkg -x "$deb" .devdeps/root
    dpkg-deb -f "$deb" Package Version Architecture | paste -sd' ' >> .devdeps/VERSIONS.txt
done
rm -rf .devdeps/root/usr/share/doc .devdeps/root/usr/share/lintian   # not needed to build

echo "extracted into .devdeps/root:"
cat .devdeps/VERSIONS.txt
config=.devdeps/root/usr/lib/x86_64-linux-gnu/cmake/benchmark/benchmarkConfig.cmake
[ -f "$config" ] || { echo "fetch_devdeps.sh: $config is missing" >&2; exit 1; }
[ -f .devdeps/root/usr/include/cjson/cJSON.h ] || { echo "fetch_devdeps.sh: cJSON.h is missing" >&2; exit 1; }
size_kib=$(du -sk .devdeps | cut -f1)
echo ".devdeps: ${size_kib} KiB"
if [ "$size_kib" -gt "$LIMIT_KIB" ]; then
    echo "fetch_devdeps.sh: .devdeps is ${size_kib} KiB, over the ${LIMIT_KIB} KiB budget" >&2
    exit 1
fi
