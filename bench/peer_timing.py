"""bench/peer_timing.py — what every PyTorch peer (bench/torch_<component>.py)
shares: the command line, CUDA-event timing and the JSON it writes.

Timing: a few untimed warm-up calls, then `repeats` calls, each between two
CUDA events recorded on the current stream; the result is the median in
microseconds. With `inputs`, call i gets inputs[i % len(inputs)], so that a
set of inputs larger than the L2 cache can be cycled through (a peer timed on
one small input would be measured from L2, not HBM).

The JSON: {"device": ..., "torch": ..., "results": [{"name": ..., ...}, ...]};
ci/gpu.sh merges every peer's file into peers.json by component.
"""
import argparse
import json
import statistics
import sys

import torch


def parse_arguments(description, default_repeats):
    """--json PATH and --repeats N, the options every peer takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--repeats", type=int, default=default_repeats)
    return parser.parse_args()


def gpu_visible(peer_name):
    """True when a GPU is visible; otherwise says so on stderr."""
    if torch.cuda.is_available():
        return True
    print(f"{peer_name}: no GPU visible", file=sys.stderr)
    return False


def time_median_us(function, repeats, inputs=None, warmup=5):
    """Median time of function() (or function(inputs[i % len])) in µs."""
    def call(i):
        if inputs is None:
            return function()
        return function(inputs[i % len(inputs)])

    for i in range(warmup):
        call(i)
    torch.cuda.synchronize()
    times = []
    for i in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        call(i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000.0)
    return statistics.median(times)


def write_results(path, results, **extra):
    """Writes the peer's JSON (when path is given) with the device named."""
    if not path:
        return
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "results": results}
    info.update(extra)
    with open(path, "w") as f:
        json.dump(info, f, indent=1)
