#!/usr/bin/env python3
"""golden/gen/verify.py — regenerate golden files in a scratch copy and compare
them with the committed ones by content.

For generators whose files are not byte-for-byte reproducible: the
safetensors package writes the `__metadata__` map in hash order, so two runs
of the same script give the same tensors with the header's keys shuffled.
"Same content" here means: the same tensor names, dtypes, shapes and raw
bytes, and the same metadata map (order ignored). Generators that serialize
their own headers (sampling.py, qgemm.py, answer.py) have `--check`, which
compares bytes, and run in CI (ci/test.sh); the torch/transformers ones
(kd.py, mla.py, moe.py) are verified with this script where torch and
transformers are installed (ci/gpu.sh runs it on the GPU machine).

    python3 golden/gen/verify.py golden/gen/kd.py [golden/gen/moe.py ...]

Exit status 0 when every file of every script matches, 1 otherwise.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_safetensors(path):
    """(header without __metadata__, metadata map, raw tensor bytes by name)."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_length])
    data = blob[8 + header_length:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = (entry["dtype"], tuple(entry["shape"]), data[begin:end])
    return metadata, tensors


def same_content(expected_path, produced_path):
    """None when both files hold the same content, else a sentence saying how they differ."""
    if not expected_path.endswith(".safetensors"):
        with open(expected_path, "rb") as a, open(produced_path, "rb") as b:
            return None if a.read() == b.read() else "bytes differ"
    expected_metadata, expected = read_safetensors(expected_path)
    produced_metadata, produced = read_safetensors(produced_path)
    if expected_metadata != produced_metadata:
        keys = sorted(k for k in set(expected_metadata) | set(produced_metadata)
                      if expected_metadata.get(k) != produced_metadata.get(k))
        return f"metadata differs at {keys}"
    if set(expected) != set(produced):
        return f"tensor names differ: {sorted(set(expected) ^ set(produced))}"
    for name in sorted(expected):
        if expected[name] != produced[name]:
            return f"tensor {name} differs (dtype, shape or values)"
    return None


def manifest_files(manifest_path, script):
    """The golden files that MANIFEST says `script` makes."""
    files = []
    with open(manifest_path) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 4 and not line.startswith("#") and fields[1] == script:
                files.append(fields[0])
    return files


def verify(script):
    """Regenerates `script`'s files in a scratch copy; returns the number of mismatches."""
    committed = manifest_files(os.path.join(REPO, "golden", "MANIFEST"), script)
    if not committed:
        print(f"{script}: no file in golden/MANIFEST names this script")
        return 1
    scratch = tempfile.mkdtemp(prefix="r1lab-golden-")
    try:
        shutil.copytree(os.path.join(REPO, "golden"), os.path.join(scratch, "golden"))
        for folder in ("include",):  # generators may read headers for constants
            if os.path.isdir(os.path.join(REPO, folder)):
                shutil.copytree(os.path.join(REPO, folder), os.path.join(scratch, folder))
        for path in committed:  # so a file the script no longer makes is noticed
            os.remove(os.path.join(scratch, path))
        run = subprocess.run([sys.executable, script], cwd=scratch,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if run.returncode != 0:
            print(run.stdout[-4000:])
            print(f"{script}: the generator failed (exit {run.returncode})")
            return 1
        mismatches = 0
        for path in committed:
            produced = os.path.join(scratch, path)
            if not os.path.exists(produced):
                print(f"  {path}: not made by {script}")
                mismatches += 1
                continue
            why = same_content(os.path.join(REPO, path), produced)
            if why:
                print(f"  {path}: {why}")
                mismatches += 1
        print(f"{script}: {len(committed) - mismatches} of {len(committed)} files match")
        return mismatches
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(arguments):
    if not arguments or any(a.startswith("-") for a in arguments):
        print(__doc__)
        return 2
    failures = sum(verify(script) for script in arguments)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
