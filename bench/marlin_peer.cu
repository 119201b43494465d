/*
 * bench/marlin_peer.cu — Marlin's fp16 × int4 GEMM timed on the W4A16 shapes
 * of bench/bench_qgemm.c, so that r1lab's W4A16 kernels can be compared with
 * it in the same ci/gpu.sh run.
 *
 * Marlin (github.com/IST-DASLab/marlin) is not part of r1lab:
 * bench/build_marlin_peer.sh compiles this file together with Marlin's
 * marlin/marlin_cuda_kernel.cu from a checkout given on its command line, and
 * ci/gpu.sh runs the binary with the qgemm peers when R1LAB_MARLIN_PEER names
 * it. What is called is Marlin's own entry point, marlin_cuda(), as its torch
 * wrapper calls it (groups of 128 along K, the thread tiles it picks itself).
 *
 * The product: C (M, N) = A (M, K) · W (K, N), A and C fp16, W int4 levels q
 * (0..15) meaning (q − 8) · s[k / 128][n], s fp16. So per call Marlin reads
 * N K / 2 bytes of levels and 2 N K / 128 of scales; r1lab's W4A16 reads the
 * same levels and 4 N K / 128 of fp32 scales, with bf16 activations. Marlin
 * needs N % 128 == 0 and K % 128 == 0 (every shape here has them).
 *
 * W is given to Marlin in its own tile order: the (K, N) levels cut into
 * 16 × 16 tiles laid out row of tiles by row of tiles, each run of 1024
 * levels permuted so that one 32-bit load gives a thread the eight levels its
 * mma fragments need, eight levels per word (lowest nibble first); the scales
 * are permuted in runs of 64 the same way. pack_weights() and pack_scales()
 * below build that order from the description of Marlin's Layer.pack().
 *
 * Each shape's output is checked before timing: rows 0 and M − 1, 64 columns
 * spread over N, against a float64 sum over the same fp16 inputs and
 * levels (relative L2 <= 1e-2); a mismatch is reported and the shape skipped.
 * Timing, as r1lab-bench times its own CUDA calls (bench/native_peer.h): 3
 * warm-up calls, then calls each between two CUDA events until there are at
 * least `repeats` of them and they add up to at least `min-seconds` (default
 * 0.5 s); reported: their mean (as r1lab-bench reports) and median, and
 * "graph" µs: 20 calls
 * captured in one CUDA graph, the median of 20 replays divided by 20
 * (bench/cuda_timing.c's r1b_cuda_graph_us_per_call). The inputs are one
 * copy of each operand, as in bench_qgemm.c.
 *
 *   marlin_peer [--json PATH] [--repeats N] [--min-seconds S] [--case I]
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

static const char kPeerName[] = "marlin_peer";
#include "native_peer.h"

/* Marlin's entry point (marlin/marlin_cuda_kernel.cu); returns 0, or 1 / 2
 * for a problem / tile shape it does not support. */
int marlin_cuda(const void *A, const void *B, void *C, void *s, int prob_m, int prob_n, int prob_k,
                void *workspace, int groupsize, int dev, cudaStream_t stream, int thread_k, int thread_n,
                int sms, int max_par);

namespace {

constexpr int kGroup = 128, kMaxPar = 16;

uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The inputs, as functions of their indices (no host copy of the levels). */
int level_at(int64_t k, int64_t n, int64_t N) { return (int)(mix(0x51ED + k * N + n) & 15); }
float scale_at(int64_t g, int64_t n, int64_t N) {
    return __half2float(__float2half(0.005f + 0.015f * (float)(mix(0xC0FFEE + g * N + n) >> 40) * 0x1p-24f));
}
float input_at(int64_t m, int64_t k, int64_t K) {
    return __half2float(__float2half((float)((double)(mix(0xA11CE + m * K + k) >> 11) * 0x1p-52 * 2 - 1)));
}

/* Marlin's order of the 1024 levels of each run (see the header). */
std::vector<int> level_permutation() {
    std::vector<int> perm;
    for (int i = 0; i < 32; ++i) {
        int one[8], used = 0;
        const int col = i / 4;
        for (int block = 0; block < 2; ++block)
            for (int row : {2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4), 2 * (i % 4 + 4) + 1})
                one[used++] = 16 * row + col + 8 * block;
        for (int j = 0; j < 4; ++j)
            for (int p : one) perm.push_back(p + 256 * j);
    }
    static const int interleave[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    std::vector<int> out(perm.size());
    for (size_t r = 0; r < perm.size(); r += 8)
        for (int t = 0; t < 8; ++t) out[r + t] = perm[r + interleave[t]];
    return out;
}

/* W's levels as Marlin's int32 words: (K / 16) rows of 2 N words. */
std::vector<uint32_t> pack_weights(int64_t N, int64_t K) {
    const std::vector<int> perm = level_permutation();
    const int64_t words_per_row = 2 * N;
    std::vector<uint32_t> packed((size_t)(K / 16 * words_per_row));
    for (int64_t kt = 0; kt < K / 16; ++kt)
        for (int64_t p = 0; p < words_per_row; ++p) {
            uint32_t word = 0;
            for (int i = 0; i < 8; ++i) {
                const int64_t t = 8 * p + i, j = t / 1024 * 1024 + perm[t % 1024];
                /* position j of the tile-ordered row: tile j / 256, row (j % 256) / 16, column j % 16 */
                const int64_t k = kt * 16 + (j % 256) / 16, n = j / 256 * 16 + j % 16;
                word |= (uint32_t)level_at(k, n, N) << (4 * i);
            }
            packed[(size_t)(kt * words_per_row + p)] = word;
        }
    return packed;
}

/* The scales (K / 128, N) as Marlin's fp16, each run of 64 permuted. */
std::vector<__half> pack_scales(int64_t N, int64_t K) {
    int perm[64];
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) perm[8 * i + j] = i + 8 * j;
    const int64_t count = K / kGroup * N;
    std::vector<__half> out((size_t)count);
    for (int64_t t = 0; t < count; ++t) {
        const int64_t source = t / 64 * 64 + perm[t % 64];
        out[(size_t)t] = __float2half(scale_at(source / N, source % N, N));
    }
    return out;
}

struct Case {
    int M, N, K;
};

struct Result {
    std::string name;
    Case c;
    double mean_us, median_us, graph_us;
    int calls;
};

double check_output(const Case &c, const std::vector<__half> &out_rows) {
    double diff = 0, norm = 0;
    for (int r = 0; r < 2; ++r) {
        const int64_t m = r == 0 ? 0 : c.M - 1;
        for (int j = 0; j < 64; ++j) {
            const int64_t n = (int64_t)j * c.N / 64 + (j * 7) % 16;
            double want = 0;
            for (int64_t k = 0; k < c.K; ++k)
                want += (double)input_at(m, k, c.K) * (level_at(k, n, c.N) - 8) * scale_at(k / kGroup, n, c.N);
            const double got = __half2float(out_rows[(size_t)(r * c.N + n)]);
            diff += (got - want) * (got - want);
            norm += want * want;
        }
    }
    return std::sqrt(diff / (norm > 0 ? norm : 1));
}

bool run_case(const Case &c, int repeats, double min_seconds, int device, int sms, Result *result) {
    char name[160];
    snprintf(name, sizeof name, "qgemm(marlin,w4a16,M=%d,N=%d,K=%d)", c.M, c.N, c.K);
    const std::vector<uint32_t> weights = pack_weights(c.N, c.K);
    const std::vector<__half> scales = pack_scales(c.N, c.K);
    std::vector<__half> input((size_t)c.M * c.K);
    for (int64_t m = 0; m < c.M; ++m)
        for (int64_t k = 0; k < c.K; ++k) input[(size_t)(m * c.K + k)] = __float2half(input_at(m, k, c.K));

    void *d_a, *d_b, *d_c, *d_s, *d_workspace;
    CHECK(cudaMalloc(&d_a, input.size() * 2));
    CHECK(cudaMalloc(&d_b, weights.size() * 4));
    CHECK(cudaMalloc(&d_c, (size_t)c.M * c.N * 2));
    CHECK(cudaMalloc(&d_s, scales.size() * 2));
    CHECK(cudaMalloc(&d_workspace, (size_t)c.N / 128 * kMaxPar * 4));
    CHECK(cudaMemcpy(d_a, input.data(), input.size() * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_b, weights.data(), weights.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_s, scales.data(), scales.size() * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(d_workspace, 0, (size_t)c.N / 128 * kMaxPar * 4));
    CHECK(cudaMemset(d_c, 0, (size_t)c.M * c.N * 2));
    cudaStream_t stream;
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    int error = 0;
    auto call = [&](cudaStream_t on) {
        const int status = marlin_cuda(d_a, d_b, d_c, d_s, c.M, c.N, c.K, d_workspace, kGroup, device, on, -1, -1,
                                       sms, kMaxPar);
        if (status != 0 && error == 0) error = status;
    };
    call(stream);
    CHECK(cudaStreamSynchronize(stream));
    CHECK(cudaGetLastError());
    bool ok = error == 0;
    if (!ok) fprintf(stderr, "%s: marlin_cuda returned %d (unsupported shape), skipped\n", name, error);
    if (ok) {
        std::vector<__half> rows((size_t)2 * c.N);
        CHECK(cudaMemcpy(rows.data(), d_c, (size_t)c.N * 2, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(rows.data() + c.N, (char *)d_c + (size_t)(c.M - 1) * c.N * 2, (size_t)c.N * 2,
                         cudaMemcpyDeviceToHost));
        const double rel = check_output(c, rows);
        if (!(rel <= 1e-2)) {
            fprintf(stderr, "%s: relative L2 %.3g against the float64 reference, skipped\n", name, rel);
            ok = false;
        }
    }
    if (ok) {
        const EventTimes times =
            time_event_calls([&] { call(stream); }, stream, 3, repeats, min_seconds);
        result->median_us = times.median_us;
        result->mean_us = times.mean_us;
        result->calls = times.calls;
        cudaEvent_t start, stop;
        CHECK(cudaEventCreate(&start));
        CHECK(cudaEventCreate(&stop));

        /* 20 calls in one graph, replayed 20 times: the median replay / 20 */
        result->graph_us = -1;
        constexpr int kCalls = 20, kReplays = 20;
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < kCalls; ++i) call(stream);
        const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
        if (ended == cudaSuccess && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) {
            CHECK(cudaGraphLaunch(exec, stream));
            CHECK(cudaStreamSynchronize(stream));
            float replays[kReplays];
            for (int r = 0; r < kReplays; ++r) {
                CHECK(cudaEventRecord(start, stream));
                CHECK(cudaGraphLaunch(exec, stream));
                CHECK(cudaEventRecord(stop, stream));
                CHECK(cudaEventSynchronize(stop));
                CHECK(cudaEventElapsedTime(&replays[r], start, stop));
            }
            std::sort(replays, replays + kReplays);
            result->graph_us = replays[kReplays / 2] * 1e3 / kCalls;
        } else {
            fprintf(stderr, "%s: the graph capture failed (%s); no graph time\n", name,
                    cudaGetErrorString(ended != cudaSuccess ? ended : cudaGetLastError()));
            cudaGetLastError();
        }
        if (exec) cudaGraphExecDestroy(exec);
        if (graph) cudaGraphDestroy(graph);
        CHECK(cudaEventDestroy(start));
        CHECK(cudaEventDestroy(stop));
        result->name = name;
        result->c = c;
    }
    CHECK(cudaStreamDestroy(stream));
    for (void *ptr : {d_a, d_b, d_c, d_s, d_workspace}) CHECK(cudaFree(ptr));
    return ok;
}

/* Bytes Marlin must read per call: levels, fp16 scales and A. */
double bytes_read(const Case &c) {
    return (double)c.N * c.K / 2 + 2.0 * c.N * c.K / kGroup + 2.0 * c.M * c.K;
}

}  // namespace

int main(int argc, char **argv) {
    PeerOptions options;
    const int exit_code = parse_peer_options(
        argc, argv,
        "Times Marlin's fp16 x int4 GEMM (groups of 128) on bench_qgemm.c's W4A16\n"
        "shapes with M <= 128 (all of them, or only the I-th, counting from 0):\n"
        "at least N calls (default 20) and S seconds of them (default 0.5).\n",
        &options);
    if (exit_code >= 0) return exit_code;
    int device = 0;
    cudaDeviceProp prop;
    if (!peer_device(&device, &prop)) return 77;
    if (prop.major < 8) {
        fprintf(stderr, "marlin_peer: Marlin needs sm_80 or later, this is %s\n", prop.name);
        return 77;
    }
    std::vector<Case> cases;
    for (int m : {1, 16, 64, 128})
        for (auto nk : {std::pair<int, int>{28672, 8192}, {7168, 16384}, {18432, 7168}, {24576, 1536}, {4096, 7168},
                        {8192, 8192}})
            cases.push_back({m, nk.first, nk.second});
    std::vector<Result> results;
    int failures = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        if (options.only >= 0 && (size_t)options.only != i) continue;
        Result r;
        if (!run_case(cases[i], options.repeats, options.min_seconds, device, prop.multiProcessorCount, &r)) {
            ++failures;
            continue;
        }
        printf("%s: mean %.1f us (median %.1f) of %d calls, graph %.1f us, %.1f GB/s read (graph)\n",
               r.name.c_str(), r.mean_us, r.median_us, r.calls, r.graph_us,
               r.graph_us > 0 ? bytes_read(r.c) / r.graph_us / 1e3 : 0.0);
        fflush(stdout);
        results.push_back(r);
    }
    if (options.json) {
        FILE *f = open_peer_json(options.json, prop.name, "Marlin fp16 x int4, groups of 128");
        if (!f) return 1;
        for (size_t i = 0; i < results.size(); ++i) {
            const Result &r = results[i];
            fprintf(f,
                    "%s\n {\"name\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"mean_microseconds\": %.3f, "
                    "\"median_microseconds\": %.3f, \"graph_microseconds\": %.3f, \"calls\": %d, "
                    "\"bytes_read\": %.6g}",
                    i ? "," : "", r.name.c_str(), r.c.M, r.c.N, r.c.K, r.mean_us, r.median_us, r.graph_us, r.calls,
                    bytes_read(r.c));
        }
        close_peer_json(f);
    }
    return failures ? 1 : 0;
}
