/*
 * bench/launch_floor.cu — the floor under every small CUDA time in bench/: a
 * kernel that does nothing, timed as the other CUDA benchmarks are.
 *
 *   cuda_empty_kernel   one block of 32 threads, no memory touched.
 *     time              CUDA events around one launch (r1b_time_cuda_calls):
 *                       the host's launch latency and the GPU's start and end
 *                       of a grid. A call whose time is close to this one is
 *                       bound by the launch, not by its kernel.
 *     graph_us_per_call the same launch replayed from a CUDA graph of 20
 *                       (r1b_cuda_graph_us_per_call).
 */
#include <cuda_runtime.h>

#include "bench.h"
#include "r1lab/common.h"

namespace {

__global__ void empty_kernel() {}

struct empty_launch {
    void *stream; /* NULL, or the graph-capture stream */
};

int launch_empty(void *context) {
    const empty_launch *launch = static_cast<const empty_launch *>(context);
    empty_kernel<<<1, 32, 0, static_cast<cudaStream_t>(launch->stream)>>>();
    return cudaGetLastError() == cudaSuccess ? R1_OK : R1_ECUDA;
}

void bench_empty_kernel(r1b_state *state, const void *user) {
    (void)user;
    empty_launch launch = {nullptr};
    if (r1b_time_cuda_calls(state, launch_empty, &launch) != R1_OK) return;
    const double graph_us = r1b_cuda_graph_us_per_call(launch_empty, &launch, &launch.stream, 20);
    if (graph_us > 0) r1b_counter(state, "graph_us_per_call", graph_us);
}

}  // namespace

extern "C" void r1b_register_launch_floor(void) {
    if (!r1_backend_available(R1_CUDA)) return;
    r1b_register_manual_time("cuda_empty_kernel(grid=1,threads=32)", bench_empty_kernel, nullptr);
}
