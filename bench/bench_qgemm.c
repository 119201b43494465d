/*
 * bench/bench_qgemm.c — quantized GEMM throughput: CPU (ref vs fast) and CUDA
 * (every scheme, the DeepSeek-V3 / R1 shapes), with a cuBLAS bf16 baseline.
 *
 * Formulas (per call):
 *   FLOP          2 * M * N * K  ("TFLOP/s" counter; int8 operations count the same)
 *   weight bytes  N * K * bits / 8 (+ scales: W8A8 4 N, W4A16 4 N K / 128
 *                 (+ N K / 128 zero points), FP8 4 ceil(N/128) K / 128)
 *   "weight_GB/s" weight bytes / time; "fraction_of_hbm" that over the H100's
 *                 2.98e12 B/s copy bandwidth (for small M the kernel should be
 *                 bound by streaming its weights once).
 *   "fraction_of_tc" FLOP/s over the measured-class dense tensor-core rate of
 *                 the scheme's math: fp8 and int8 1500e12, bf16 (W4A16 and
 *                 cuBLAS) 790e12.
 * CUDA benchmarks are timed with CUDA events around each call
 * (r1b_register_manual_time; each time includes the ~6 us launch) and, as the
 * counter "graph_us_per_call", from 20 calls replayed in a CUDA graph (the
 * GPU time of one call without the launch; r1lab's and cuBLAS's alike);
 * inputs are constant byte patterns (every scale
 * finite), and before timing one output is checked against its closed form
 * (for constant inputs y = K * x * w * scales), else the configuration is
 * skipped. Shapes: M in {1, 16, 64, 128, 1024, 4096} x (N, K) in
 * {(7168, 16384), (18432, 7168), (24576, 1536), (4096, 7168), (8192, 8192)},
 * plus the W4A16 decode shape (28672, 8192) of the issue.
 *
 * CPU: W8A8 at M = 64, N = K = 4096 on ref and fast (the speed-up the issue
 * asks for), and fast W4A16 / FP8 at the same shape.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/qgemm.h"

#ifdef R1LAB_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

#define HBM_BYTES_PER_SECOND 2.98e12
#define TC_8BIT_PER_SECOND 1500e12
#define TC_BF16_PER_SECOND 790e12

typedef struct qgemm_case {
    r1_backend backend;
    r1_qgemm_scheme scheme;
    int cublas_bf16; /* the baseline instead of r1_qgemm */
    int64_t M, N, K;
} qgemm_case;

static double weight_bytes(const qgemm_case *c) {
    const double N = (double)c->N, K = (double)c->K;
    if (c->cublas_bf16) return 2 * N * K;
    switch (c->scheme) {
    case R1_QGEMM_W8A8: return N * K + 4 * N;
    case R1_QGEMM_W4A16: return N * K / 2 + 4 * N * K / 128;
    case R1_QGEMM_FP8: return N * K + 4 * ceil(N / 128) * K / 128;
    }
    return 0;
}

static void report(r1b_state *state, const qgemm_case *c) {
    const double flop = 2.0 * (double)c->M * (double)c->N * (double)c->K;
    const int64_t iterations = r1b_iterations(state);
    r1b_counter_rate(state, "TFLOP/s", flop * (double)iterations / 1e12);
    r1b_counter_rate(state, "weight_GB/s", weight_bytes(c) * (double)iterations / 1e9);
    r1b_counter_rate(state, "fraction_of_hbm",
                     weight_bytes(c) * (double)iterations / HBM_BYTES_PER_SECOND);
    const double peak = (c->cublas_bf16 || c->scheme == R1_QGEMM_W4A16) ? TC_BF16_PER_SECOND
                                                                        : TC_8BIT_PER_SECOND;
    r1b_counter_rate(state, "fraction_of_tc", flop * (double)iterations / peak);
}

/* ---- CPU --------------------------------------------------------------------------- */

static void bench_cpu(r1b_state *state, const void *user) {
    const qgemm_case *c = user;
    const int64_t M = c->M, N = c->N, K = c->K;
    const size_t xb = (size_t)(M * K) * (c->scheme == R1_QGEMM_W4A16 ? 2 : 1);
    const size_t wb = (size_t)(N * K) / (c->scheme == R1_QGEMM_W4A16 ? 2 : 1);
    uint8_t *x = malloc(xb), *w = malloc(wb);
    float *sx = malloc((size_t)(M * K / 128 + M) * 4), *sw = malloc((size_t)(N * K / 128 + N) * 4);
    float *y = malloc((size_t)(M * N) * 4);
    for (size_t i = 0; i < xb; ++i) x[i] = (uint8_t)(i * 37 % 251);
    if (c->scheme == R1_QGEMM_W4A16)
        for (size_t i = 0; i < xb / 2; ++i) ((uint16_t *)x)[i] = r1_f32_to_bf16((float)(i % 7) - 3.0f);
    if (c->scheme == R1_QGEMM_FP8)
        for (size_t i = 0; i < xb; ++i) x[i] &= 0x77; /* finite e4m3 */
    for (size_t i = 0; i < wb; ++i) w[i] = (uint8_t)((i * 101 % 253) & (c->scheme == R1_QGEMM_FP8 ? 0x77 : 0xFF));
    for (int64_t i = 0; i < M * K / 128 + M; ++i) sx[i] = 0.01f;
    for (int64_t i = 0; i < N * K / 128 + N; ++i) sw[i] = 0.01f;
    r1_qgemm_desc d = {c->scheme, M, N, K, R1_F32, 0};
    r1_qgemm_operands o = {x, sx, w, sw, NULL, NULL, 0, 0, 0, 0};
    r1_qgemm_set_scale_shapes(&d, &o);
    if (r1_qgemm(c->backend, &d, &o, y, NULL) != R1_OK) {
        r1b_skip_with_error(state, r1_last_error());
    } else {
        for (; r1b_keep_running(state);) {
            r1_qgemm(c->backend, &d, &o, y, NULL);
            r1b_do_not_optimize(y);
        }
        report(state, c);
        if (c->backend == R1_FAST) r1b_set_label(state, r1_qgemm_fast_isa());
    }
    free(x), free(w), free(sx), free(sw), free(y);
}

/* ---- CUDA -------------------------------------------------------------------------- */

#ifdef R1LAB_HAVE_CUDA
static cublasHandle_t cublas_handle(void) {
    static cublasHandle_t handle = NULL;
    if (handle == NULL && cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) handle = NULL;
    return handle;
}

/* Y (M, N) row-major = X (M, K) · Wᵀ in bf16: column-major Yᵀ (N, M) = W (N, K) · Xᵀ,
 * W read as the transposed column-major (K, N). */
static int cublas_bf16_gemm(const qgemm_case *c, const void *x, const void *w, void *y,
                            void *stream) {
    const float alpha = 1.0f, beta = 0.0f;
    if (cublas_handle() == NULL ||
        cublasSetStream(cublas_handle(), (cudaStream_t)stream) != CUBLAS_STATUS_SUCCESS)
        return 0;
    return cublasGemmEx(cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, (int)c->N, (int)c->M,
                        (int)c->K, &alpha, w, CUDA_R_16BF, (int)c->K, x, CUDA_R_16BF, (int)c->K,
                        &beta, y, CUDA_R_16BF, (int)c->N, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
}

/* One timed product: r1lab's, or the cuBLAS bf16 baseline (r1b_time_cuda_calls). */
typedef struct qgemm_call {
    const qgemm_case *c;
    const r1_qgemm_desc *desc;
    const r1_qgemm_operands *operands;
    const void *x, *w;
    void *y;
    void *stream; /* NULL (the default stream), or r1b's capture stream */
} qgemm_call;

static int run_qgemm(void *context) {
    const qgemm_call *q = context;
    if (!q->c->cublas_bf16) return r1_qgemm(R1_CUDA, q->desc, q->operands, q->y, q->stream);
    return cublas_bf16_gemm(q->c, q->x, q->w, q->y, q->stream) ? R1_OK
                                                     : r1_fail(R1_ECUDA, "cublasGemmEx failed");
}

/* Which kernel kernels/qgemm.cu picks for this case (its dispatch rules). */
static const char *kernel_label(const qgemm_case *c) {
    const char *off = getenv("R1LAB_QGEMM_WGMMA");
    const int hopper = strstr(r1_device_name(), "(sm_90") != NULL && !(off && strcmp(off, "0") == 0);
    if (c->cublas_bf16) return "cuBLAS bf16 (baseline)";
    const char *old_w4 = getenv("R1LAB_QGEMM_W4_OLD");
    const int sm90 = strstr(r1_device_name(), "(sm_90") != NULL;
    /* v17 for 8 < M <= 16 (R1LAB_QGEMM_W4_SMALL=1: every M <= 16, =0: never) */
    const char *small_w4 = getenv("R1LAB_QGEMM_W4_SMALL");
    const int small_chosen = (small_w4 && strcmp(small_w4, "1") == 0) ||
                             (!(small_w4 && strcmp(small_w4, "0") == 0) && c->M > 8);
    if (c->scheme == R1_QGEMM_W4A16 && c->M <= 16 && sm90 && !(old_w4 && strcmp(old_w4, "1") == 0) && small_chosen)
        return "v28 wgmma for M <= 16: X resident in shared memory in a permuted K order (copied in step by step, "
               "permuted in place), a weight ring per half unit, four consumer warpgroups releasing a stage once "
               "its wgmmas are issued, K split over a cluster of 1 to 8 CTAs chosen by a time model, the partial "
               "sums pushed to rotating leaders whose idle warps add them";
    if (c->scheme == R1_QGEMM_W4A16 && c->M <= 16 && sm90 && !(old_w4 && strcmp(old_w4, "1") == 0))
        return "v7 weight stream (W as the mma A operand, X in shared memory fed by a producer warp, blocks staggered over K)";
    const char *decode = getenv("R1LAB_QGEMM_DECODE");
    const int decode_8bit = !(decode && strcmp(decode, "0") == 0);
    if (c->M <= (c->scheme == R1_QGEMM_W4A16 ? 16 : 32) && (c->scheme == R1_QGEMM_W4A16 || decode_8bit || !hopper))
        return "v2 decode (weight streaming)";
    if (c->scheme == R1_QGEMM_W4A16) {
        const char *w4_wgmma = getenv("R1LAB_QGEMM_W4_WGMMA");
        if (sm90 && !(w4_wgmma && strcmp(w4_wgmma, "0") == 0))
            return "v16 wgmma, dequantized weights as the register A operand, X by TMA; K split between the "
                   "consumers for one tile row";
        return "v1 mma.sync tiles";
    }
    if (hopper)
        return c->M > 128 ? "v12 wgmma, TMA, paired CTAs, tiles stored by TMA from shared memory, tile columns "
                            "past whole rounds in a second launch with K split"
                          : "v12 wgmma, TMA, one tile row: K split over a cluster of 2-8 CTAs where the tiles "
                            "leave SMs idle, tiles past one round split in a second launch, else stored by TMA; "
                            "M <= 64: one consumer warpgroup";
    return "v1 mma.sync tiles";
}

static void bench_cuda(r1b_state *state, const void *user) {
    const qgemm_case *c = user;
    if (!r1_backend_available(R1_CUDA)) {
        r1b_skip_with_error(state, "no GPU");
        return;
    }
    const int64_t M = c->M, N = c->N, K = c->K, G = K / 128;
    const int bf16_x = c->cublas_bf16 || c->scheme == R1_QGEMM_W4A16;
    const size_t xb = (size_t)(M * K) * (bf16_x ? 2 : 1);
    const size_t wb = c->cublas_bf16 ? (size_t)(N * K) * 2
                      : c->scheme == R1_QGEMM_W4A16 ? (size_t)(N * K) / 2
                                                    : (size_t)(N * K);
    const size_t yb = (size_t)(M * N) * 2; /* bf16 output */
    void *x = NULL, *w = NULL, *sx = NULL, *sw = NULL, *y = NULL;
    int ok = r1_device_alloc(&x, xb) == R1_OK && r1_device_alloc(&w, wb) == R1_OK &&
             r1_device_alloc(&sx, (size_t)(M * G + M) * 4) == R1_OK &&
             r1_device_alloc(&sw, (size_t)(N * G + N) * 4) == R1_OK &&
             r1_device_alloc(&y, yb) == R1_OK;
    /* Constant inputs: int8 17, e4m3 0x38 = 1.0, int4 nibbles 1, bf16 0x3F80 = 1.0
     * (filled as 0x3F3F = 0.74609375 bytes), scales 0x3C3C3C3C = 0.011489... */
    uint8_t xbyte = bf16_x ? 0x3F : c->scheme == R1_QGEMM_FP8 ? 0x38 : 0x11;
    uint8_t wbyte = c->cublas_bf16 ? 0x3F : c->scheme == R1_QGEMM_FP8 ? 0x38 : 0x11;
    if (ok)
        ok = r1_device_fill(x, xbyte, xb) == R1_OK && r1_device_fill(w, wbyte, wb) == R1_OK &&
             r1_device_fill(sx, 0x3C, (size_t)(M * G + M) * 4) == R1_OK &&
             r1_device_fill(sw, 0x3C, (size_t)(N * G + N) * 4) == R1_OK;
    r1_qgemm_desc d = {c->scheme, M, N, K, R1_BF16, 0};
    r1_qgemm_operands o = {x, sx, w, sw, NULL, NULL, 0, 0, 0, 0};
    r1_qgemm_set_scale_shapes(&d, &o);
    char message[512] = "";
    if (!ok) snprintf(message, sizeof message, "allocation failed: %s", r1_last_error());
    /* one call, then the closed form of y[0] and y[M*N-1] */
    if (ok) {
        int ran = c->cublas_bf16 ? cublas_bf16_gemm(c, x, w, y, NULL)
                                 : r1_qgemm(R1_CUDA, &d, &o, y, NULL) == R1_OK;
        if (!ran) {
            snprintf(message, sizeof message, "first call failed: %s", r1_last_error());
            ok = 0;
        }
    }
    if (ok) {
        uint16_t ends[2];
        r1_device_synchronize();
        r1_device_copy(&ends[0], y, 2, R1_DEVICE_TO_HOST);
        r1_device_copy(&ends[1], (char *)y + yb - 2, 2, R1_DEVICE_TO_HOST);
        float s;
        memset(&s, 0x3C, 4);
        const float xv = r1_bf16_to_f32(0x3F3F);
        double expected = c->cublas_bf16                ? (double)K * xv * xv
                          : c->scheme == R1_QGEMM_W8A8  ? (double)K * 17 * 17 * s * s
                          : c->scheme == R1_QGEMM_FP8   ? (double)K * s * s
                                                        : (double)K * xv * 1 * s;
        for (int e = 0; e < 2; ++e) {
            double got = r1_bf16_to_f32(ends[e]);
            if (!(fabs(got - expected) <= 1e-2 * fabs(expected))) {
                snprintf(message, sizeof message, "check failed: y[%s] = %g, expected %g",
                         e ? "last" : "0", got, expected);
                ok = 0;
            }
        }
    }
    if (!ok) {
        r1b_skip_with_error(state, message);
    } else {
        qgemm_call call = {c, &d, &o, x, w, y, NULL};
        if (r1b_time_cuda_calls(state, run_qgemm, &call) == R1_OK) {
            report(state, c);
            /* without the ~6 us launch in each timed call (bench.h) */
            const double graph_us = r1b_cuda_graph_us_per_call(run_qgemm, &call, &call.stream, 20);
            if (graph_us > 0) r1b_counter(state, "graph_us_per_call", graph_us);
        }
        r1b_set_label(state, kernel_label(c));
    }
    r1_device_free(x), r1_device_free(w), r1_device_free(sx), r1_device_free(sw),
        r1_device_free(y);
}
#endif

static void add(r1_backend backend, r1_qgemm_scheme scheme, int cublas, int64_t M, int64_t N,
                int64_t K) {
    qgemm_case *c = malloc(sizeof *c); /* kept until the process ends */
    *c = (qgemm_case){backend, scheme, cublas, M, N, K};
    char name[160];
    snprintf(name, sizeof name, "qgemm(%s,%s,M=%lld,N=%lld,K=%lld)",
             cublas ? "cuda" : r1_backend_name(backend),
             cublas ? "cublas_bf16" : r1_qgemm_scheme_name(scheme), (long long)M, (long long)N,
             (long long)K);
    if (backend != R1_CUDA) {
        r1b_register(name, bench_cpu, c);
        return;
    }
#ifdef R1LAB_HAVE_CUDA
    r1b_register_manual_time(name, bench_cuda, c);
#endif
}

void r1b_register_qgemm(void) {
    add(R1_REF, R1_QGEMM_W8A8, 0, 64, 4096, 4096);
    add(R1_FAST, R1_QGEMM_W8A8, 0, 64, 4096, 4096);
    add(R1_FAST, R1_QGEMM_FP8, 0, 64, 4096, 4096);
    add(R1_FAST, R1_QGEMM_W4A16, 0, 64, 4096, 4096);
#ifdef R1LAB_HAVE_CUDA
    static const int64_t ms[] = {1, 16, 64, 128, 1024, 4096};
    static const int64_t nk[][2] = {{7168, 16384}, {18432, 7168}, {24576, 1536},
                                    {4096, 7168},  {8192, 8192},  {28672, 8192}};
    for (int s = 0; s < 6; ++s)
        for (int i = 0; i < 6; ++i) {
            const int64_t M = ms[i], N = nk[s][0], K = nk[s][1];
            if (s == 5 && M > 16) continue; /* the W4A16 decode shape only */
            if (s < 5) {
                add(R1_CUDA, R1_QGEMM_FP8, 0, M, N, K);
                add(R1_CUDA, R1_QGEMM_W8A8, 0, M, N, K);
            }
            add(R1_CUDA, R1_QGEMM_W4A16, 0, M, N, K);
            add(R1_CUDA, R1_QGEMM_W8A8, 1, M, N, K);
        }
#endif
}
