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
 *
 *   cuda_w4a16_read_floor(N, K)   the bytes a W4A16 product with M <= 16
 *                       must read: the N x K int4 weights (N K / 2 bytes) and
 *                       their fp32 group scales (4 N K / 128 bytes). X and Y
 *                       (at most 16 rows each) are left out: under 0.5 % of
 *                       those bytes at the benchmark shapes. The kernel reads
 *                       them as gemm_w4a16_stream does (a warp per 16 weight
 *                       rows and K slice, lane (gq, tig) 16 bytes of rows gq
 *                       and gq + 8 per 128-K step, ld.global.nc.L1::no_allocate,
 *                       4 steps in flight, 16 warps and one block per SM,
 *                       tiles split evenly over the blocks, K split into as
 *                       many slices as keep the 16 warps busy) and does
 *                       nothing else with them: the time a kernel at this
 *                       shape cannot beat with these loads. Like the qgemm
 *                       benchmarks' graph times it replays calls on the same
 *                       operands, so operands that fit in the L2 cache (50 MB
 *                       on the H100: (24576, 1536), (4096, 7168), and most of
 *                       (8192, 8192)) are read from there.
 *     graph_us_per_call 20 calls replayed from a CUDA graph, as the qgemm
 *                       benchmarks' graph time;
 *     read_GB/s         bytes / graph time.
 */
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "bench.h"
#include "kernels/streaming_load.cuh"
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

constexpr int kReadWarps = 16, kReadSteps = 4; /* warps per block, steps in flight per warp */

/* Reads every weight byte and scale once; the xor of all of them is written
 * only if it equals one value (in practice never), so the loads cannot be
 * dropped. Warp w takes the items w, w + 16, ... of the block's tiles x
 * `slices` (tile, K slice) pairs; slice s is the steps s, s + slices, ...
 * N is a multiple of 16 and K / 128 of slices here. */
__global__ void __launch_bounds__(kReadWarps * 32, 1)
    read_w4a16_operands(const uint8_t *w, const float *scale, int64_t N, int64_t K, int slices, uint32_t *sink) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tig = lane & 3;
    const int64_t tiles = N / 16, first = blockIdx.x * tiles / gridDim.x, last = (blockIdx.x + 1) * tiles / gridDim.x;
    const int G = (int)(K / 128), steps = G / slices;
    const int64_t row_bytes = K / 2;
    uint32_t bits = 0;
    for (int64_t item = warp; item < (last - first) * slices; item += kReadWarps) {
        const int64_t tile = first + item / slices;
        const int slice = (int)(item % slices);
        const uint8_t *row_lo = w + (tile * 16 + gq) * row_bytes + tig * 16 + slice * 64, *row_hi = row_lo + 8 * row_bytes;
        const float *scale_lo = scale + (tile * 16 + gq) * G + slice, *scale_hi = scale_lo + 8 * G;
        const int64_t stride = (int64_t)slices * 64; /* bytes from one of the slice's steps to the next */
        uint4 lo[kReadSteps], hi[kReadSteps];
        float s_lo[kReadSteps], s_hi[kReadSteps];
        auto load = [&](int u, int i) { /* the slice's step i into slot u; past its end, its last step again */
            i = i < steps ? i : steps - 1;
            lo[u] = ldg_stream(row_lo + i * stride);
            hi[u] = ldg_stream(row_hi + i * stride);
            s_lo[u] = __ldg(scale_lo + i * slices);
            s_hi[u] = __ldg(scale_hi + i * slices);
        };
#pragma unroll
        for (int u = 0; u < kReadSteps; ++u) load(u, u);
        for (int i0 = 0; i0 < steps; i0 += kReadSteps)
#pragma unroll
            for (int u = 0; u < kReadSteps; ++u) {
                bits ^= lo[u].x ^ lo[u].y ^ lo[u].z ^ lo[u].w ^ hi[u].x ^ hi[u].y ^ hi[u].z ^ hi[u].w ^
                        __float_as_uint(s_lo[u]) ^ __float_as_uint(s_hi[u]);
                load(u, i0 + u + kReadSteps);
            }
    }
    if (bits == 0x9E3779B9u) *sink = bits;
}

struct read_floor_shape {
    int64_t N, K; /* N % 16 == 0, K % 128 == 0 */
};

struct read_floor_launch {
    const uint8_t *w;
    const float *scale;
    uint32_t *sink;
    int64_t N, K;
    int blocks, slices;
    void *stream;
};

int launch_read_floor(void *context) {
    const read_floor_launch *launch = static_cast<const read_floor_launch *>(context);
    read_w4a16_operands<<<launch->blocks, kReadWarps * 32, 0, static_cast<cudaStream_t>(launch->stream)>>>(
        launch->w, launch->scale, launch->N, launch->K, launch->slices, launch->sink);
    return cudaGetLastError() == cudaSuccess ? R1_OK : R1_ECUDA;
}

void bench_read_floor(r1b_state *state, const void *user) {
    const read_floor_shape *shape = static_cast<const read_floor_shape *>(user);
    const size_t weight_bytes = (size_t)(shape->N * shape->K / 2), scale_bytes = (size_t)(shape->N * (shape->K / 128) * 4);
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms < 1) {
        r1b_skip_with_error(state, "no CUDA device");
        return;
    }
    uint8_t *w = nullptr;
    float *scale = nullptr;
    uint32_t *sink = nullptr;
    if (cudaMalloc(&w, weight_bytes) != cudaSuccess || cudaMalloc(&scale, scale_bytes) != cudaSuccess ||
        cudaMalloc(&sink, sizeof(uint32_t)) != cudaSuccess || cudaMemset(w, 0x5A, weight_bytes) != cudaSuccess ||
        cudaMemset(scale, 0, scale_bytes) != cudaSuccess) {
        r1b_skip_with_error(state, "could not allocate the W4A16 operands on the device");
    } else {
        const int64_t tiles = shape->N / 16, blocks = tiles < sms ? tiles : sms;
        const int64_t tiles_per_block = (tiles + blocks - 1) / blocks, G = shape->K / 128;
        int slices = 1; /* K slices per tile while the block's warps are not all busy */
        while (tiles_per_block * slices * 2 <= kReadWarps && G % (slices * 2) == 0) slices *= 2;
        read_floor_launch launch = {w, scale, sink, shape->N, shape->K, (int)blocks, slices, nullptr};
        if (r1b_time_cuda_calls(state, launch_read_floor, &launch) == R1_OK) {
            const double graph_us = r1b_cuda_graph_us_per_call(launch_read_floor, &launch, &launch.stream, 20);
            if (graph_us > 0) {
                r1b_counter(state, "graph_us_per_call", graph_us);
                r1b_counter(state, "read_GB/s", (double)(weight_bytes + scale_bytes) / graph_us / 1e3);
            }
        }
    }
    cudaFree(w);
    cudaFree(scale);
    cudaFree(sink);
}

/* The (N, K) of issue 8's W4A16 benchmarks (bench_qgemm.c's shapes). */
const read_floor_shape kReadFloorShapes[] = {{7168, 16384}, {18432, 7168}, {24576, 1536},
                                             {4096, 7168},  {8192, 8192},  {28672, 8192}};

}  // namespace

extern "C" void r1b_register_launch_floor(void) {
    if (!r1_backend_available(R1_CUDA)) return;
    r1b_register_manual_time("cuda_empty_kernel(grid=1,threads=32)", bench_empty_kernel, nullptr);
    for (const read_floor_shape &shape : kReadFloorShapes) {
        char name[96];
        snprintf(name, sizeof name, "cuda_w4a16_read_floor(N=%lld,K=%lld)", (long long)shape.N, (long long)shape.K);
        r1b_register_manual_time(name, bench_read_floor, &shape);
    }
}
