"""bench/peer_timing.py — what every PyTorch peer (bench/torch_<component>.py)
shares: the command line, CUDA-event timing and the JSON it writes.

Timing (time_median_us): a few untimed warm-up calls, then `repeats` calls,
each between two CUDA events recorded on the current stream; the result is
the median in microseconds. Each call starts on an idle GPU, so its time
includes the host's work to launch it (for torch: Python, the dispatcher and
the launch), as r1lab's event times (bench/cuda_timing.c) include its own.
With `inputs`, call i gets inputs[i % len(inputs)], so that a set of inputs
larger than the L2 cache can be cycled through (a peer timed on one small
input would be measured from L2, not HBM).

time_graph_us: the GPU time of one call without that host work, as r1lab's
"graph_us_per_call" counter measures it: `calls` calls captured in one CUDA
graph, the graph replayed between two events, the median replay divided by
`calls`. The two together say whether a ratio comes from the kernels or from
the launches around them.

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


def call_numbered(function, inputs):
    """call(i): function() without inputs, else function(inputs[i % len(inputs)])."""
    if inputs is None:
        return lambda i: function()
    return lambda i: function(inputs[i % len(inputs)])


def time_median_us(function, repeats, inputs=None, warmup=5):
    """Median time of function() (or function(inputs[i % len])) in µs."""
    call = call_numbered(function, inputs)
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


def time_graph_us(function, calls=20, replays=20, inputs=None, warmup=3):
    """Median GPU time per call of `calls` calls replayed from one CUDA graph,
    in µs (bench/cuda_timing.c's r1b_cuda_graph_us_per_call, for torch); None
    (and a line on stderr) when the calls cannot be captured."""
    call = call_numbered(function, inputs)
    graph = torch.cuda.CUDAGraph()
    try:
        # capture needs the work warmed up on a side stream (lazy cuBLAS handles, workspaces)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for i in range(warmup):
                call(i)
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            for i in range(calls):
                call(i)
        graph.replay()
        torch.cuda.synchronize()
    except RuntimeError as error:
        print(f"peer_timing: the calls could not be captured in a CUDA graph: {str(error)[:200]}",
              file=sys.stderr)
        torch.cuda.synchronize()
        return None
    times = []
    for _ in range(replays):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000.0 / calls)
    del graph
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
