/*
 * kernels/kd.cu — the distillation loss and its gradient on the GPU (the
 * semantics of r1lab/kd.h).
 *
 * Logits form, per call:
 *  1. kd_prepare: one block checks labels and sparse ids (the same sentences
 *     as the host validation), counts the counted tokens C (the MEAN weight
 *     w = 1/C is read on the device, so nothing waits for the host);
 *  2. sparse teacher only: kd_densify writes the top-k log-probs into an
 *     (N, V) f32 row of -inf in the workspace; softmax(lp / T) of that row is
 *     exactly the "renormalized top-k" rule, so the dense kernel follows;
 *  3. kd_rows: one CTA per token row. Pass 1 streams s and z once with an
 *     online max / rescaled sum per thread (student at 1/T and at 1, teacher
 *     at 1/T), merged across the block. beta = 0 (forward KL): pass 2 reads
 *     the row again and writes the loss terms and the gradient
 *     w [(1 - gamma)(r - onehot) + gamma T (q - p)] in the same pass. beta > 0
 *     (reverse KL, JSD): pass 2 sums D and gbar = sum q g, pass 3 writes
 *     w [... + gamma T q (g - gbar)]. Values are float32; the row sums of the
 *     loss terms float64. JSD's g is centred on its p = 0 value as in fast/.
 *  4. kd_finish: one block sums the row losses in float64 in token order (a
 *     deterministic loss), writes token_losses, and the first bad row.
 * Fused-linear form: chunks of C tokens; per piece of P tokens of a chunk
 * cuBLAS computes the student (and teacher) logits (P, V) in f32 (bf16
 * inputs on tensor cores, f32 accumulation, kept f32), the row kernel turns
 * them into the chunk's rows of G (bf16 for bf16 inputs, so the backward
 * GEMMs run on tensor cores too), then dH = G W and dW += G^T H per chunk.
 * Where the cluster row kernel runs (sm_90, bf16, teacher as hidden states
 * or sparse) P = C and G goes over the student's f32 logits. Peak extra
 * memory: a piece's logits (and teacher logits), and a chunk's G unless it
 * is in place (linear_sizes: C = P = 2048 at V = 128256, 2,004 MiB).
 *
 * VERSIONS
 *  v1  the design above; loads are scalar and coalesced; bytes per element of
 *      the benchmark (bf16, forward KL): read s, z twice, write g once
 *      (10 bytes per element: ~4.2 ms at N = 8192, V = 152064, 2.97 TB/s).
 *  v2  forward KL with bf16 inputs on sm_90 (the benchmark case): a cluster
 *      of CTAs per row holds the row in shared memory (kd_rows_cluster), so
 *      HBM sees the floor, 6 bytes per element; 16-byte loads and stores.
 *      Measured (H100) 10.9 ms at N = 8192, V = 152064: 0.23 of HBM
 *      bandwidth. Cause: not the traffic but the arithmetic. Per element it
 *      did an online-softmax update with a data-dependent branch and three
 *      libm expf (pass 1), then three more expf and a float64 FMA with two
 *      float32 -> float64 conversions (pass 2): about 90 instructions per
 *      element, issue-bound at ~4 ms even with perfect overlap, and loads
 *      were issued one 16-byte pair per thread between those computations
 *      (little in flight). Cluster of 7 CTAs x 87 KB, 512 threads.
 *  v3  (default; R1LAB_KD_VERSION=1|2 selects the others) kd_rows_v3: bf16
 *      with a dense teacher, every beta. Cluster of 8 CTAs x 76 KB (256
 *      threads, two CTAs per SM); the slice arrives by cp.async (all of it in
 *      flight at once); max/min pass, then exp2 sums against the exact row
 *      maxima (no rescaling, no branches), then the gradient pass; ex2.approx
 *      on log2-scaled arguments (FFMA + MUFU per exponential), r from q for
 *      T = 1, 2; float32 per-thread partial sums, float64 across threads and
 *      CTAs; statistics pushed into every CTA's shared memory, one cluster
 *      barrier per exchange. Reverse KL and JSD run the same way with one more
 *      pass over shared memory (D and gbar before the gradient).
 *  v4  JSD (0 < beta < 1) counted its exponentials and logarithms: nine MUFU
 *      operations per element (two in pass B, four in C, three in D): at
 *      N = 8192, V = 152064 that is 1.1e10 operations, 2.7 ms at 16 per clock
 *      per SM (132 SMs, 1.98 GHz), against 4.57 ms for the whole forward-KL
 *      call, which needs four per element. Now h = ln(M / q) -
 *      ln(1 - beta) is log2 of M = beta p + (1 - beta) q minus q's exact log2
 *      argument (one lg2 instead of an ex2 and an lg2), and pass C stores h
 *      as float16 over the teacher's slice, which pass D no longer needs: six
 *      MUFU operations per element. H100, same run as Liger: beta = 0.5
 *      5,319 us (3.66x LigerJSD's 19,451 us; v3 at its default cluster of 12
 *      took 6,549 us, at 8 6,449 us, in earlier runs); beta = 0 4,531 us and
 *      beta = 1 4,694 us (unchanged paths: v3 4,571 and 4,705 us).
 *      bench/results/h100-kd-v4.json.
 *  v5  a trace of v4's CTAs (globaltimer at each phase, forward KL) showed
 *      each CTA loading for 2.8 us and then spending 18 us in its passes and
 *      four cluster barriers: every cluster_sync compiled to MEMBAR.ALL.GPU
 *      (waiting for the CTA's global stores) and waited for the slowest of 12
 *      CTAs, so only 56 of 423 resident CTAs were loading at a time. Now the
 *      CTAs exchange with st.async into each other's shared memory, counted
 *      by a transaction barrier (kernels/cluster.cuh: push_to_block,
 *      arrival_wait); nobody waits for a peer it does not need. Forward KL
 *      has one exchange: pass A takes the slice's maxima on packed bf16
 *      pairs, pass B sums against the slice maxima (rescaled to the row's
 *      when merged) and also W = sum p~ (u - x), from which KL comes without
 *      a pass or an exchange after the gradient. The gradient pass kept g[8]
 *      in local memory (the label's one-hot term was indexed by a variable);
 *      now only by constants. The kernel also takes float logits (and a bf16
 *      gradient from them), which the fused-linear form now uses: its logits
 *      stay f32 (rounding them to bf16 moved the agreement error of one
 *      random case to 0.8 of the bf16 bar). H100: forward KL 4,531 ->
 *      2,968 us (0.84 of HBM), JSD 5,319 -> 4,075 us, reverse KL 4,694 ->
 *      3,341 us; fused linear 85 -> 57 ms. Fused linear then writes G over
 *      the student's f32 logits (row t of G in the first half of row t of
 *      S), which lets C = P = 2048 in 2 GiB: 12 fewer kernel boundaries per
 *      call; H100, interleaved runs: 56.7-57.3 -> 55.6-56.0 ms.
 */
#include <cooperative_groups.h>
#include <cublas_v2.h>
#include <mutex>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/internal.h"
#include "kernels/cuda_try.cuh"
#include "kernels/cluster.cuh"
#include "kernels/launch.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;


#define CUBLAS_TRY(call)                                                                  \
    do {                                                                                  \
        cublasStatus_t cublas_try_status = (call);                                        \
        if (cublas_try_status != CUBLAS_STATUS_SUCCESS)                                   \
            return r1_fail(R1_ECUDA, "%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__,    \
                           #call, (int)cublas_try_status);                                \
    } while (0)

/* What kd_prepare and kd_finish report back (device memory, in the workspace). */
struct PrepareReport {
    long long counted;         /* C                                         */
    long long bad_label_token; /* lowest token with a bad label, or N       */
    long long bad_id_slot;     /* lowest t * k + j with a bad id, or N * k  */
    int repeated;              /* that id repeats an earlier one            */
    int pad;
    long long first_bad_row;   /* lowest row with a kd_bad_reason, or -1    */
    long long bad_rows;
    int first_reason;
    int pad2;
    float loss;                /* L, mirrored for the host                  */
};

struct RowParams {
    int N;             /* rows in this launch                  */
    long long V;
    float inv_T, T, gamma, beta;
    int ignore_index;
    int has_labels;
    int mean;          /* MEAN reduction: w = 1 / C             */
    long long grad_ld; /* elements from one gradient row to the next: V, or
                          2V for a bf16 gradient written over f32 logits (v3) */
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* (max, sum of exp((x - max) * scale)) merged: the online-softmax step. */
__device__ __forceinline__ void merge(float &m, float &sum, float m2, float sum2, float scale) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) { m = m2; sum = sum2; return; }
    float n = fmaxf(m, m2);
    sum = sum * expf((m - n) * scale) + sum2 * expf((m2 - n) * scale);
    m = n;
}

template <typename T>
__device__ __forceinline__ T block_sum(T v, T *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    T total = 0;
    for (int w = 0; w < kWarps; ++w) total += shared[w];
    return total;
}

/* Block-wide merge of (m, sum) pairs for the three softmaxes. */
__device__ void block_merge(float *m, float *sum, const float *scale, int count, float *shared) {
    for (int c = 0; c < count; ++c) {
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m[c], o);
            float s2 = __shfl_xor_sync(0xffffffffu, sum[c], o);
            merge(m[c], sum[c], m2, s2, scale[c]);
        }
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
        for (int c = 0; c < count; ++c) {
            shared[(threadIdx.x >> 5) * 6 + 2 * c] = m[c];
            shared[(threadIdx.x >> 5) * 6 + 2 * c + 1] = sum[c];
        }
    __syncthreads();
    for (int c = 0; c < count; ++c) {
        float mm = -INFINITY, ss = 0.0f;
        for (int w = 0; w < kWarps; ++w) merge(mm, ss, shared[w * 6 + 2 * c], shared[w * 6 + 2 * c + 1], scale[c]);
        m[c] = mm;
        sum[c] = ss;
    }
}

__global__ void kd_prepare(const int32_t *labels, const int32_t *ids, long long N, long long V,
                           int k, int ignore_index, PrepareReport *report) {
    __shared__ long long shared[kWarps];
    __shared__ unsigned long long bad_label, bad_id;
    if (threadIdx.x == 0) {
        bad_label = (unsigned long long)N;
        bad_id = (unsigned long long)(N * k);
    }
    __syncthreads();
    long long counted = 0;
    for (long long t = threadIdx.x; t < N; t += blockDim.x) {
        if (labels == nullptr) { ++counted; continue; }
        int y = labels[t];
        if (y != ignore_index) ++counted;
        if (y != ignore_index && (y < 0 || y >= V)) atomicMin(&bad_label, (unsigned long long)t);
    }
    for (long long slot = threadIdx.x; slot < N * k; slot += blockDim.x) {
        long long t = slot / k;
        int j = (int)(slot % k), id = ids[slot];
        int bad = id < 0 || id >= V, rep = 0;
        for (int i = 0; i < j && !bad; ++i) rep |= ids[t * k + i] == id;
        if (bad || rep) atomicMin(&bad_id, (unsigned long long)slot);
    }
    long long total = block_sum<long long>(counted, shared);
    __syncthreads();
    if (threadIdx.x == 0) {
        report->counted = total;
        report->bad_label_token = (long long)bad_label;
        report->bad_id_slot = (long long)bad_id;
        if (bad_id < (unsigned long long)(N * k)) {
            long long t = (long long)bad_id / k;
            int j = (int)((long long)bad_id % k), id = ids[bad_id];
            int rep = 0;
            for (int i = 0; i < j; ++i) rep |= ids[t * k + i] == id;
            report->repeated = rep && !(id < 0 || id >= V);
        }
        report->first_bad_row = -1;
        report->bad_rows = 0;
    }
}

/* Sparse teacher as an f32 row: lp on the ids, -inf elsewhere. */
__global__ void kd_densify(const int32_t *ids, const float *lp, long long N, long long V, int k,
                           float *z) {
    long long t = blockIdx.x;
    for (long long i = threadIdx.x; i < V; i += blockDim.x) z[t * V + i] = -INFINITY;
    __syncthreads();
    for (int j = threadIdx.x; j < k; j += blockDim.x) z[t * V + ids[t * k + j]] = lp[t * k + j];
}

/* One CTA per row. s, z: (N, V) rows of this launch; grad may be null (loss
 * only) and may alias s. labels point at this launch's first token. */
template <typename TS, typename TZ, typename TG>
__global__ void __launch_bounds__(kThreads)
kd_rows(const TS *__restrict__ s_all, const TZ *__restrict__ z_all, TG *grad_all,
        const int32_t *labels, RowParams prm, const PrepareReport *report, float *row_loss,
        int *row_reason) {
    __shared__ float shared_f[kWarps * 6];
    __shared__ double shared_d[kWarps];
    __shared__ float s_label;
    const long long t = blockIdx.x, V = prm.V;
    const TS *s = s_all + t * V;
    const TZ *z = z_all + t * V;
    TG *grad = grad_all ? grad_all + t * V : nullptr;
    const int y = prm.has_labels ? labels[t] : -1;
    const bool counted = !prm.has_labels || y != prm.ignore_index;
    const long long C = report->counted;
    const float w = prm.mean ? (C > 0 ? (float)(1.0 / (double)C) : 0.0f) : 1.0f;
    const bool need_r = prm.gamma < 1.0f;

    int reason = KD_ROW_OK;
    float m[3] = {-INFINITY, -INFINITY, -INFINITY}, sum[3] = {0.0f, 0.0f, 0.0f};
    const float scale[3] = {prm.inv_T, 1.0f, prm.inv_T};
    if (counted) {
        /* pass 1: online max / sums, bad-number flags */
        int bad_s = 0, bad_z = 0, zero_p = 0;
        for (long long i = threadIdx.x; i < V; i += kThreads) {
            float x = to_float(s[i]), u = to_float(z[i]);
            bad_s |= !isfinite(x);
            bad_z |= isnan(u) || u == INFINITY;
            zero_p |= u == -INFINITY;
            if (x > m[0]) {
                sum[0] = sum[0] * expf((m[0] - x) * prm.inv_T) + 1.0f;
                sum[1] = sum[1] * expf(m[0] - x) + 1.0f;
                m[0] = m[1] = x;
            } else {
                sum[0] += expf((x - m[0]) * prm.inv_T);
                sum[1] += expf(x - m[0]);
            }
            if (u > m[2]) {
                sum[2] = (m[2] == -INFINITY ? 0.0f : sum[2] * expf((m[2] - u) * prm.inv_T)) + 1.0f;
                m[2] = u;
            } else if (u != -INFINITY) {
                sum[2] += expf((u - m[2]) * prm.inv_T);
            }
        }
        bad_s = __syncthreads_or(bad_s);
        bad_z = __syncthreads_or(bad_z);
        zero_p = __syncthreads_or(zero_p);
        if (!bad_s && !bad_z) block_merge(m, sum, scale, 3, shared_f);
        if (bad_s) reason = KD_BAD_STUDENT;
        else if (bad_z) reason = KD_BAD_TEACHER;
        else if (m[2] == -INFINITY) reason = KD_TEACHER_EMPTY;
        else if (prm.beta == 1.0f && zero_p) reason = KD_REVERSE_INFINITE;
        /* (y is checked by kd_prepare; an asynchronous call with a bad label gets NaN) */
        if (threadIdx.x == 0 && need_r && reason == KD_ROW_OK)
            s_label = (y >= 0 && y < V) ? to_float(s[y]) : NAN;
        __syncthreads();
    }
    if (!counted || reason != KD_ROW_OK) {
        if (grad)
            for (long long i = threadIdx.x; i < V; i += kThreads) store(&grad[i], 0.0f);
        if (threadIdx.x == 0) {
            row_loss[t] = reason == KD_ROW_OK ? 0.0f : NAN;
            row_reason[t] = reason;
        }
        return;
    }
    /* log q_i = (s_i - m_s)/T - log S_q, log p_i = (z_i - m_z)/T - log S_p, log r = s_i - m_s - log S_r */
    const float m_s = m[0], m_z = m[2];
    const float log_sq = logf(sum[0]), log_sr = logf(sum[1]), log_sp = logf(sum[2]);
    const float a = w * (1.0f - prm.gamma), c = w * prm.gamma * prm.T;
    const float beta = prm.beta, one_minus = 1.0f - beta;
    double D = 0.0;
    if (beta == 0.0f) {
        /* pass 2: forward KL, loss terms and gradient together */
        for (long long i = threadIdx.x; i < V; i += kThreads) {
            float x = to_float(s[i]), u = to_float(z[i]);
            float log_q = (x - m_s) * prm.inv_T - log_sq;
            float log_p = (u - m_z) * prm.inv_T - log_sp;
            float q = expf(log_q), p = expf(log_p);
            if (p > 0.0f) D += (double)p * (double)(log_p - log_q);
            if (grad) {
                float r = need_r ? expf(x - m_s - log_sr) : 0.0f;
                float g = a * (r - (i == y ? 1.0f : 0.0f)) + c * (q - p);
                store(&grad[i], g);
            }
        }
        D = block_sum<double>(D, shared_d);
    } else {
        /* pass 2: D and gbar; pass 3: the gradient. d = log p - log q, h and g
         * are float64, d formed from the logits: g (reverse KL -d, JSD -(1 -
         * beta) h) can be tens where g - gbar is ~0.1, and d as the difference
         * of two float logs of that size put ~1e-5 into the gradient's relative
         * L2 (fast/kd.c met it at 1.05x the bar). The per-row constants may
         * stay float: they shift every g alike, and g - gbar not at all. */
        const bool reverse = beta == 1.0f;
        const double rho = reverse ? 0.0 : (double)beta / one_minus;
        /* -log(1 - beta) = log(1 + rho) = h(0), formed as h is, so that where
         * p = q the loss terms cancel exactly (identical distributions: 0) */
        const double log_one_minus = reverse ? 0.0 : -log1p(rho);
        const double c0 = -(double)one_minus * log_one_minus;
        const double inv_T = prm.inv_T, shift = (double)log_sq - (double)log_sp;
        auto d_of = [&](float x, float u) { return ((double)u - m_z) * inv_T - ((double)x - m_s) * inv_T + shift; };
        /* JSD: h = log(1 + rho e^d) without overflow, g = -(1 - beta) h */
        auto h_of = [&](double d) {
            const double e = exp(-fabs(d));
            return d > 0.0 ? d + log(rho + e) : log1p(rho * e);
        };
        auto g_of = [&](double d) { return reverse ? -d : -(double)one_minus * h_of(d); };
        double gbar = 0.0;
        for (long long i = threadIdx.x; i < V; i += kThreads) {
            float x = to_float(s[i]), u = to_float(z[i]);
            float q = expf((x - m_s) * prm.inv_T - log_sq), p = expf((u - m_z) * prm.inv_T - log_sp);
            const double d = d_of(x, u);
            double g;
            if (reverse) {
                g = -d;
                D += (double)q * g;
            } else {
                const double h = h_of(d);
                g = -(double)one_minus * h;
                if (p > 0.0f) D += beta * (double)p * (d - h - log_one_minus);
                D += (double)q * (g + c0);
            }
            gbar += (double)q * g;
        }
        D = block_sum<double>(D, shared_d);
        gbar = block_sum<double>(gbar, shared_d);
        if (grad) {
            for (long long i = threadIdx.x; i < V; i += kThreads) {
                float x = to_float(s[i]), u = to_float(z[i]);
                float q = expf((x - m_s) * prm.inv_T - log_sq);
                const float g_minus_gbar = (float)(g_of(d_of(x, u)) - gbar);
                float r = need_r ? expf(x - m_s - log_sr) : 0.0f;
                store(&grad[i], a * (r - (i == y ? 1.0f : 0.0f)) + c * q * g_minus_gbar);
            }
        }
    }
    if (threadIdx.x == 0) {
        double loss = (double)prm.gamma * prm.T * prm.T * D;
        if (need_r) loss += (1.0 - prm.gamma) * ((double)m_s + log_sr - s_label);
        row_loss[t] = (float)loss;
        row_reason[t] = KD_ROW_OK;
    }
}

/* ---- v2: a cluster of CTAs per row, the row held in shared memory ----------
 * Forward KL, bf16 student and teacher, V % 8 == 0, sm_90. The row is split
 * into `cluster` slices; each CTA reads its slice of s and z from HBM once
 * (16-byte loads) into shared memory while taking the online max / sums, the
 * CTAs of the cluster exchange their statistics through distributed shared
 * memory, then each writes its slice's gradient (16-byte stores) from shared
 * memory: HBM traffic is the floor, read s, z once and write g once. */
struct SliceStats {
    float m_s, sum_q, sum_r, m_z, sum_p;
    int bad_s, bad_z;
    int has_label;
    float s_label;
    double D;
};




__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits16) {
    return __uint_as_float(bits16 << 16);
}

__global__ void __launch_bounds__(kThreads)
kd_rows_cluster(const uint16_t *__restrict__ s_all, const uint16_t *__restrict__ z_all,
                uint16_t *grad_all, const int32_t *labels, RowParams prm, int cluster,
                long long slice, const PrepareReport *report, float *row_loss, int *row_reason) {
    extern __shared__ __align__(16) uint16_t slice_values[]; /* s slice, then z slice */
    __shared__ float shared_f[kWarps * 6];
    __shared__ double shared_d[kWarps];
    __shared__ SliceStats mine;
    const unsigned rank = cluster_rank();
    const long long t = blockIdx.x / cluster, V = prm.V;
    const long long begin = (long long)rank * slice;
    const long long end = begin + slice < V ? begin + slice : V;
    const long long n = end > begin ? end - begin : 0; /* a multiple of 8 */
    uint16_t *ss = slice_values, *zs = slice_values + slice;
    const uint16_t *s = s_all + t * V + begin, *z = z_all + t * V + begin;
    uint16_t *grad = grad_all ? grad_all + t * V + begin : nullptr;
    const int y = prm.has_labels ? labels[t] : -1;
    const bool counted = !prm.has_labels || y != prm.ignore_index;
    const long long C = report->counted;
    const float w = prm.mean ? (C > 0 ? (float)(1.0 / (double)C) : 0.0f) : 1.0f;
    const bool need_r = prm.gamma < 1.0f;

    float m[3] = {-INFINITY, -INFINITY, -INFINITY}, sum[3] = {0.0f, 0.0f, 0.0f};
    const float scale[3] = {prm.inv_T, 1.0f, prm.inv_T};
    int bad_s = 0, bad_z = 0;
    if (counted) {
        for (long long i = 8 * (long long)threadIdx.x; i < n; i += 8 * kThreads) {
            uint4 sv = *reinterpret_cast<const uint4 *>(s + i);
            uint4 zv = *reinterpret_cast<const uint4 *>(z + i);
            *reinterpret_cast<uint4 *>(ss + i) = sv;
            *reinterpret_cast<uint4 *>(zs + i) = zv;
            const uint32_t sw[4] = {sv.x, sv.y, sv.z, sv.w}, zw[4] = {zv.x, zv.y, zv.z, zv.w};
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float x = bf16_bits_to_float((sw[e >> 1] >> (16 * (e & 1))) & 0xffffu);
                float u = bf16_bits_to_float((zw[e >> 1] >> (16 * (e & 1))) & 0xffffu);
                bad_s |= !isfinite(x);
                bad_z |= isnan(u) || u == INFINITY;
                if (x > m[0]) {
                    sum[0] = sum[0] * expf((m[0] - x) * prm.inv_T) + 1.0f;
                    sum[1] = sum[1] * expf(m[0] - x) + 1.0f;
                    m[0] = m[1] = x;
                } else {
                    sum[0] += expf((x - m[0]) * prm.inv_T);
                    sum[1] += expf(x - m[0]);
                }
                if (u > m[2]) {
                    sum[2] = (m[2] == -INFINITY ? 0.0f : sum[2] * expf((m[2] - u) * prm.inv_T)) + 1.0f;
                    m[2] = u;
                } else if (u != -INFINITY) {
                    sum[2] += expf((u - m[2]) * prm.inv_T);
                }
            }
        }
        bad_s = __syncthreads_or(bad_s);
        bad_z = __syncthreads_or(bad_z);
        if (!bad_s && !bad_z) block_merge(m, sum, scale, 3, shared_f);
        if (threadIdx.x == 0) {
            mine.m_s = m[0];
            mine.sum_q = sum[0];
            mine.sum_r = sum[1];
            mine.m_z = m[2];
            mine.sum_p = sum[2];
            mine.bad_s = bad_s;
            mine.bad_z = bad_z;
            mine.has_label = need_r && y >= begin && y < end;
            mine.s_label = mine.has_label ? bf16_bits_to_float(s_all[t * V + y]) : 0.0f;
        }
    }
    cluster_sync(); /* every slice's statistics are written */
    /* the row's statistics, merged in rank order (the same on every CTA) */
    float row_m[3] = {-INFINITY, -INFINITY, -INFINITY}, row_sum[3] = {0.0f, 0.0f, 0.0f};
    int row_bad_s = 0, row_bad_z = 0;
    float s_label = 0.0f;
    if (counted) {
        for (int r = 0; r < cluster; ++r) {
            const SliceStats *o = in_block(&mine, (unsigned)r);
            row_bad_s |= o->bad_s;
            row_bad_z |= o->bad_z;
            if (o->has_label) s_label = o->s_label;
            float om_s = o->m_s, osq = o->sum_q, osr = o->sum_r, om_z = o->m_z, osp = o->sum_p;
            float m0 = row_m[0];
            merge(row_m[0], row_sum[0], om_s, osq, prm.inv_T);
            row_m[1] = m0;
            merge(row_m[1], row_sum[1], om_s, osr, 1.0f);
            merge(row_m[2], row_sum[2], om_z, osp, prm.inv_T);
        }
    }
    int reason = KD_ROW_OK;
    if (counted) {
        if (row_bad_s) reason = KD_BAD_STUDENT;
        else if (row_bad_z) reason = KD_BAD_TEACHER;
        else if (row_m[2] == -INFINITY) reason = KD_TEACHER_EMPTY;
    }
    double D = 0.0;
    if (!counted || reason != KD_ROW_OK) {
        if (grad)
            for (long long i = 8 * (long long)threadIdx.x; i < n; i += 8 * kThreads)
                *reinterpret_cast<uint4 *>(grad + i) = make_uint4(0, 0, 0, 0);
    } else {
        const float m_s = row_m[0], m_z = row_m[2];
        const float log_sq = logf(row_sum[0]), log_sr = logf(row_sum[1]), log_sp = logf(row_sum[2]);
        const float a = w * (1.0f - prm.gamma), c = w * prm.gamma * prm.T;
        for (long long i = 8 * (long long)threadIdx.x; i < n; i += 8 * kThreads) {
            uint4 sv = *reinterpret_cast<const uint4 *>(ss + i);
            uint4 zv = *reinterpret_cast<const uint4 *>(zs + i);
            const uint32_t sw[4] = {sv.x, sv.y, sv.z, sv.w}, zw[4] = {zv.x, zv.y, zv.z, zv.w};
            uint32_t out[4] = {0, 0, 0, 0};
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float x = bf16_bits_to_float((sw[e >> 1] >> (16 * (e & 1))) & 0xffffu);
                float u = bf16_bits_to_float((zw[e >> 1] >> (16 * (e & 1))) & 0xffffu);
                float log_q = (x - m_s) * prm.inv_T - log_sq;
                float log_p = (u - m_z) * prm.inv_T - log_sp;
                float q = expf(log_q), p = expf(log_p);
                if (p > 0.0f) D += (double)p * (double)(log_p - log_q);
                float r = need_r ? expf(x - m_s - log_sr) : 0.0f;
                float g = a * (r - (begin + i + e == y ? 1.0f : 0.0f)) + c * (q - p);
                uint32_t bits = __bfloat16_as_ushort(__float2bfloat16_rn(g));
                out[e >> 1] |= bits << (16 * (e & 1));
            }
            if (grad) *reinterpret_cast<uint4 *>(grad + i) = make_uint4(out[0], out[1], out[2], out[3]);
        }
        D = block_sum<double>(D, shared_d);
    }
    __syncthreads();
    if (threadIdx.x == 0) mine.D = D;
    cluster_sync(); /* every slice's D is written; statistics reads are done */
    if (rank == 0 && threadIdx.x == 0) {
        double total = 0.0;
        for (int r = 0; r < cluster; ++r) total += in_block(&mine, (unsigned)r)->D;
        double loss = 0.0;
        if (counted && reason == KD_ROW_OK) {
            loss = (double)prm.gamma * prm.T * prm.T * total;
            if (need_r) loss += (1.0 - prm.gamma) * ((double)row_m[0] + logf(row_sum[1]) - s_label);
        }
        row_loss[t] = reason == KD_ROW_OK ? (float)loss : NAN;
        row_reason[t] = reason;
    }
    cluster_sync(); /* no CTA exits while rank 0 reads its shared memory */
}


/* ---- v3 (as changed by v5): a cluster of CTAs per row, every divergence ----
 * Student and dense teacher of one type (bf16 or float; the gradient of that
 * type, or bf16 from float), V % 8 == 0, sm_90. The row is split into
 * `cluster` slices (12 for bf16: 12,672 elements, 51 KB of s + z per CTA at
 * V = 152064, four CTAs per SM; 16 for float). Each CTA
 *   0. copies its slice of s and z into shared memory with 16-byte cp.async
 *      (the whole slice in flight at once: no register round trip);
 *   A. takes max / min of its slice from shared memory (no exponentials);
 *   B. sums exp2 terms against its slice's maxima: S_q, S_r, S_p (forward
 *      KL also W, see the sums below), and sends them with its maxima into
 *      every CTA's shared memory (push_to_block: st.async counted by each
 *      receiver's transaction barrier); every CTA merges the slices in one
 *      fixed order, each slice's sums scaled by 2^(its offset - the row's):
 *      every CTA of the cluster gets the same bits;
 *   C. forward KL: writes the gradient (16-byte stores); KL itself is
 *      ln 2 [kq W / S_p - log2 (Z_p / Z_q)] from B's sums;
 *      reverse KL / JSD: sums D and gbar, sends them to every CTA, then
 *   D. writes the gradient.
 * HBM traffic is the floor: s, z read once, g written once (6 B/element for
 * bf16). Exponentials are ex2.approx on log2-scaled arguments (one FFMA + one
 * MUFU each); for T = 1 and T = 2 the temperature-1 student r comes from q
 * (r = q, r = q^2 S_q^2 / S_r) instead of another exponential. Per-thread
 * partial sums are float32 (about 50 terms each), everything above float64.
 * Bad numbers: max/min catch +-inf in s and +inf / all -inf in z; a NaN
 * anywhere turns the float64 row sums into NaN. A row whose label is
 * ignore_index exchanges nothing (the same in every CTA of its cluster). */
constexpr int kV3Threads = 256;
constexpr int kV3Warps = kV3Threads / 32;
constexpr int kV3MaxCluster = 16;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr double kLn2Double = 0.6931471805599453;
/* JSD's h is stored as float16 (over bf16 logits) between passes C and D;
 * its largest value. */
constexpr float kJsdHMax = 60000.0f;

__device__ __forceinline__ float fast_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float fast_lg2(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ void unpack8(const uint4 v, float f[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        f[2 * k] = __uint_as_float(w[k] << 16);
        f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}

/* Two bf16 values stored in one 32-bit word, as a bf16 pair. */
__device__ __forceinline__ __nv_bfloat162 bf16_pair(uint32_t w) {
    return *reinterpret_cast<const __nv_bfloat162 *>(&w);
}

__device__ __forceinline__ uint4 pack8(const float g[8]) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        __nv_bfloat162 h = __floats2bfloat162_rn(g[2 * k], g[2 * k + 1]);
        w[k] = *reinterpret_cast<uint32_t *>(&h);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* Eight floats as float16 (round to nearest) in 16 bytes, and back. */
__device__ __forceinline__ uint4 pack8_half(const float f[8]) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        __half2 h = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
        w[k] = *reinterpret_cast<uint32_t *>(&h);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void unpack8_half(const uint4 v, float f[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const float2 pair = __half22float2(*reinterpret_cast<const __half2 *>(&w[k]));
        f[2 * k] = pair.x;
        f[2 * k + 1] = pair.y;
    }
}

__device__ __forceinline__ void cp_async16(void *shared, const void *global) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned address = (unsigned)__cvta_generic_to_shared(shared);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global) : "memory");
#else
    *reinterpret_cast<uint4 *>(shared) = *reinterpret_cast<const uint4 *>(global);
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
#endif
}

template <typename T> __device__ __forceinline__ T reduce_op(int op, T x, T y) {
    return op == 0 ? x + y : op == 1 ? (x > y ? x : y) : (x < y ? x : y);
}

/* Reduces COUNT per-thread values over the block (op per value: 0 sum, 1 max,
 * 2 min) in a fixed order, so every run and every CTA that reduces the same
 * values gets the same bits; every thread gets the results. `scratch`:
 * kV3Warps * COUNT values, not reused by a later reduction of the kernel. */
template <int COUNT, typename T>
__device__ __forceinline__ void block_reduce(T (&v)[COUNT], const int (&op)[COUNT], T *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int c = 0; c < COUNT; ++c)
        for (int o = 16; o > 0; o >>= 1) v[c] = reduce_op(op[c], v[c], __shfl_xor_sync(0xffffffffu, v[c], o));
    if (lane == 0)
#pragma unroll
        for (int c = 0; c < COUNT; ++c) scratch[warp * COUNT + c] = v[c];
    __syncthreads();
#pragma unroll
    for (int c = 0; c < COUNT; ++c) {
        T total = scratch[c];
        for (int w = 1; w < kV3Warps; ++w) total = reduce_op(op[c], total, scratch[w * COUNT + c]);
        v[c] = total;
    }
}

/* Eight logits or gradient values as stored (bf16 bits or float), as floats
 * and back; JSD's h over the teacher's slice (float16 over bf16 logits, so
 * that it fits, float over float logits). */
__device__ __forceinline__ void load8(const uint16_t *p, float f[8]) {
    unpack8(*reinterpret_cast<const uint4 *>(p), f);
}
__device__ __forceinline__ void load8(const float *p, float f[8]) {
    const float4 lo = reinterpret_cast<const float4 *>(p)[0], hi = reinterpret_cast<const float4 *>(p)[1];
    f[0] = lo.x, f[1] = lo.y, f[2] = lo.z, f[3] = lo.w, f[4] = hi.x, f[5] = hi.y, f[6] = hi.z, f[7] = hi.w;
}
__device__ __forceinline__ void store8(uint16_t *p, const float g[8]) {
    *reinterpret_cast<uint4 *>(p) = pack8(g);
}
__device__ __forceinline__ void store8(float *p, const float g[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(g[0], g[1], g[2], g[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(g[4], g[5], g[6], g[7]);
}
__device__ __forceinline__ float logit_value(uint16_t bits) { return bf16_bits_to_float(bits); }
__device__ __forceinline__ float logit_value(float x) { return x; }
__device__ __forceinline__ void store_h8(uint16_t *p, const float h[8]) {
    *reinterpret_cast<uint4 *>(p) = pack8_half(h);
}
__device__ __forceinline__ void store_h8(float *p, const float h[8]) { store8(p, h); }
__device__ __forceinline__ void load_h8(const uint16_t *p, float h[8]) {
    unpack8_half(*reinterpret_cast<const uint4 *>(p), h);
}
__device__ __forceinline__ void load_h8(const float *p, float h[8]) { load8(p, h); }
template <typename T> __device__ __forceinline__ void store_zeros8(T *p) {
    const float zeros[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    store8(p, zeros);
}

/* What each CTA tells every CTA of its cluster about its slice: max and min
 * of s and z; S_q, S_r, S_p against the slice's own maxima; the label's logit
 * when it lies in the slice (0 otherwise); forward KL's W (pass B); padding. */
constexpr int kSliceStats = 10;

/* MODE: 0 forward KL, 1 reverse KL, 2 JSD. In: the logits' type (uint16_t =
 * bf16 bits, or float); Out: the gradient's (uint16_t = bf16, or float). */
template <int MODE, typename In, typename Out>
__global__ void __launch_bounds__(kV3Threads, 4)
kd_rows_v3(const In *s_all, const In *__restrict__ z_all, Out *grad_all,
           const int32_t *labels, RowParams prm, int cluster, long long slice,
           const PrepareReport *report, float *row_loss, int *row_reason) {
    extern __shared__ __align__(16) unsigned char slice_bytes[]; /* s slice, then z slice */
    __shared__ float scratch_a[kV3Warps * 4];
    __shared__ double scratch_b[kV3Warps * 5], scratch_c[kV3Warps * 2];
    /* filled by the cluster's CTAs (push_to_block), slot = sender's rank */
    __shared__ __align__(16) double stats_slots[kV3MaxCluster][kSliceStats];
    __shared__ __align__(16) double late_slots[kV3MaxCluster][2]; /* (D, gbar) */
    __shared__ double row_stats[kSliceStats];
    __shared__ __align__(8) unsigned long long stats_arrived, late_arrived;
    const unsigned rank = cluster_rank();
    const long long t = blockIdx.x / cluster, V = prm.V;
    const long long begin = (long long)rank * slice;
    const long long n = begin < V ? (V - begin < slice ? V - begin : slice) : 0; /* multiple of 8 */
    const int chunks = (int)(n / 8);
    In *ss = reinterpret_cast<In *>(slice_bytes), *zs = ss + slice;
    Out *grad = grad_all ? grad_all + t * prm.grad_ld + begin : nullptr;
    const int y = prm.has_labels ? labels[t] : -1;
    const bool need_r = prm.gamma < 1.0f;

    if (prm.has_labels && y == prm.ignore_index) {
        /* the same in every CTA of the cluster: nothing is exchanged */
        if (grad)
            for (int c = threadIdx.x; c < chunks; c += kV3Threads) store_zeros8(grad + 8 * c);
        if (rank == 0 && threadIdx.x == 0) {
            row_loss[t] = 0.0f;
            row_reason[t] = KD_ROW_OK;
        }
        return;
    }
    /* every CTA receives every slice's statistics; reverse KL and JSD then
     * also every slice's (D, gbar). The barriers are armed after the
     * __syncthreads below: a peer's bytes may land first, which only delays
     * the phase's completion to the arming. */
    if (threadIdx.x == 0) {
        arrival_init(&stats_arrived);
        if (MODE != 0) arrival_init(&late_arrived);
    }
    cluster_arrive_relaxed(); /* waited for below, before the first push */
    {
        /* 16-byte pieces: one per 8 bf16 values, two per 8 floats */
        constexpr int kPieces = (int)sizeof(In) / 2;
        const char *s = reinterpret_cast<const char *>(s_all + t * V + begin);
        const char *z = reinterpret_cast<const char *>(z_all + t * V + begin);
        char *s_shared = reinterpret_cast<char *>(ss), *z_shared = reinterpret_cast<char *>(zs);
        for (int c = threadIdx.x; c < chunks * kPieces; c += kV3Threads) {
            cp_async16(s_shared + 16 * c, s + 16 * c);
            cp_async16(z_shared + 16 * c, z + 16 * c);
        }
        cp_async_wait_all();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        arrival_expect(&stats_arrived, (unsigned)(cluster * kSliceStats * sizeof(double)));
        if (MODE != 0) arrival_expect(&late_arrived, (unsigned)(cluster * 2 * sizeof(double)));
    }

    /* A: max / min of this slice's s and z (z's minimum only for reverse
     * KL); bf16 on the pairs as stored, one packed max or min per two values */
    float slice_a[4] = {-INFINITY, INFINITY, -INFINITY, INFINITY};
    if constexpr (sizeof(In) == 4) {
        for (int c = threadIdx.x; c < chunks; c += kV3Threads) {
            float x[8], u[8];
            load8(ss + 8 * c, x);
            load8(zs + 8 * c, u);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                slice_a[0] = fmaxf(slice_a[0], x[e]);
                slice_a[1] = fminf(slice_a[1], x[e]);
                slice_a[2] = fmaxf(slice_a[2], u[e]);
                if (MODE == 1) slice_a[3] = fminf(slice_a[3], u[e]);
            }
        }
    } else {
        const __nv_bfloat162 lowest = bf16_pair(0xff80ff80u), highest = bf16_pair(0x7f807f80u);
        __nv_bfloat162 mx_s = lowest, mn_s = highest, mx_z = lowest, mn_z = highest;
        for (int c = threadIdx.x; c < chunks; c += kV3Threads) {
            const uint4 x = *reinterpret_cast<const uint4 *>(ss + 8 * c);
            const uint4 u = *reinterpret_cast<const uint4 *>(zs + 8 * c);
            const __nv_bfloat162 x0 = bf16_pair(x.x), x1 = bf16_pair(x.y), x2 = bf16_pair(x.z),
                                 x3 = bf16_pair(x.w);
            const __nv_bfloat162 u0 = bf16_pair(u.x), u1 = bf16_pair(u.y), u2 = bf16_pair(u.z),
                                 u3 = bf16_pair(u.w);
            mx_s = __hmax2(mx_s, __hmax2(__hmax2(x0, x1), __hmax2(x2, x3)));
            mn_s = __hmin2(mn_s, __hmin2(__hmin2(x0, x1), __hmin2(x2, x3)));
            mx_z = __hmax2(mx_z, __hmax2(__hmax2(u0, u1), __hmax2(u2, u3)));
            if (MODE == 1) mn_z = __hmin2(mn_z, __hmin2(__hmin2(u0, u1), __hmin2(u2, u3)));
        }
        slice_a[0] = fmaxf(__low2float(mx_s), __high2float(mx_s));
        slice_a[1] = fminf(__low2float(mn_s), __high2float(mn_s));
        slice_a[2] = fmaxf(__low2float(mx_z), __high2float(mx_z));
        slice_a[3] = fminf(__low2float(mn_z), __high2float(mn_z));
    }
    const int op_a[4] = {1, 2, 1, 2};
    block_reduce<4>(slice_a, op_a, scratch_a);

    /* B: S_q = sum 2^(x kq - m kq), S_r (temperature 1), S_p against this
     * slice's maxima m (a maximum that is not finite makes the row bad; its
     * offset is 0 so that the sums stay defined) */
    const float kq = kLog2e * prm.inv_T;
    const int r_mode = !need_r ? 0 : prm.T == 1.0f ? 1 : prm.T == 2.0f ? 2 : 3;
    auto offsets = [&](float m_s, float m_z, float &cq0, float &cr0, float &cp0) {
        cq0 = isfinite(m_s) ? m_s * kq : 0.0f;
        cr0 = isfinite(m_s) ? m_s * kLog2e : 0.0f;
        cp0 = isfinite(m_z) ? m_z * kq : 0.0f;
    };
    float slice_cq0, slice_cr0, slice_cp0;
    offsets(slice_a[0], slice_a[2], slice_cq0, slice_cr0, slice_cp0);
    /* Forward KL also sums W = sum 2^(u kq - m kq) (u - x), so that
     *   KL(p || q) = ln 2 [kq W / S_p - (c_p + log2 S_p - c_q - log2 S_q)]
     * (c = the row maximum times kq) comes out of the sums: its gradient pass
     * then needs no logarithms and no exchange after it. u = -inf adds 0. */
    float sq = 0.0f, sr = 0.0f, sp = 0.0f, wd = 0.0f;
    for (int c = threadIdx.x; c < chunks; c += kV3Threads) {
        float x[8], u[8];
        load8(ss + 8 * c, x);
        load8(zs + 8 * c, u);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            float eq = fast_ex2(fmaf(x[e], kq, -slice_cq0));
            sq += eq;
            if (r_mode == 2) sr = fmaf(eq, eq, sr);
            else if (r_mode == 3) sr += fast_ex2(fmaf(x[e], kLog2e, -slice_cr0));
            const float ep = fast_ex2(fmaf(u[e], kq, -slice_cp0));
            sp += ep;
            if (MODE == 0) wd = fmaf(ep, fmaxf(u[e], -FLT_MAX) - x[e], wd);
        }
    }
    /* the label's logit travels with the sums (read before any gradient
     * store: grad may be s itself) */
    const int y_local = (y >= begin && y < begin + n) ? (int)(y - begin) : -1;
    const float s_label_part = (threadIdx.x == 0 && y_local >= 0) ? logit_value(ss[y_local]) : 0.0f;
    double slice_b[5] = {sq, sr, sp, s_label_part, wd};
    const int op_b[5] = {0, 0, 0, 0, 0};
    block_reduce<5>(slice_b, op_b, scratch_b);

    /* every CTA of the cluster has started (its barriers are armed): send
     * this slice's statistics to each of them, thread r to rank r */
    cluster_wait();
    if (threadIdx.x < (unsigned)cluster) {
        double *slot = stats_slots[rank];
        const unsigned to = threadIdx.x;
        push_to_block(slot + 0, slice_a[0], slice_a[1], &stats_arrived, to);
        push_to_block(slot + 2, slice_a[2], slice_a[3], &stats_arrived, to);
        push_to_block(slot + 4, slice_b[0], slice_b[1], &stats_arrived, to);
        push_to_block(slot + 6, slice_b[2], slice_b[3], &stats_arrived, to);
        push_to_block(slot + 8, slice_b[4], 0.0, &stats_arrived, to);
    }
    arrival_wait(&stats_arrived);

    /* The row from its slices, lane r reading slice r, merged by one fixed
     * shuffle tree (every CTA of the cluster gets the same bits): maxima and
     * minima, then each slice's sums scaled from its maxima to the row's,
     * S = sum_r S_r 2^(c_r - c) with c = m kq (T = 2: S_r carries q^2, so
     * its factor is squared). */
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        const bool has = lane < cluster;
        const double *slot = stats_slots[has ? lane : 0];
        float m[4] = {has ? (float)slot[0] : -INFINITY, has ? (float)slot[1] : INFINITY,
                      has ? (float)slot[2] : -INFINITY, has ? (float)slot[3] : INFINITY};
        float mine_q, mine_r, mine_p;
        offsets(m[0], m[2], mine_q, mine_r, mine_p);
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int c = 0; c < 4; ++c) m[c] = reduce_op(op_a[c], m[c], __shfl_xor_sync(0xffffffffu, m[c], o));
        float row_q, row_r, row_p;
        offsets(m[0], m[2], row_q, row_r, row_p);
        /* a slice whose sum is 0 adds 0 whatever its factor */
        auto scaled = [](double sum, double log2_factor) { return sum == 0.0 ? 0.0 : sum * exp2(log2_factor); };
        double v[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        if (has) {
            const double dq = (double)mine_q - (double)row_q, dp = (double)mine_p - (double)row_p;
            v[0] = scaled(slot[4], dq);
            v[1] = r_mode == 2 ? scaled(slot[5], 2.0 * dq)
                               : scaled(slot[5], (double)mine_r - (double)row_r);
            v[2] = scaled(slot[6], dp);
            v[3] = slot[7];
            v[4] = scaled(slot[8], dp);
        }
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int c = 0; c < 5; ++c) v[c] += __shfl_xor_sync(0xffffffffu, v[c], o);
        if (lane == 0) {
#pragma unroll
            for (int c = 0; c < 4; ++c) row_stats[c] = m[c];
#pragma unroll
            for (int c = 0; c < 5; ++c) row_stats[4 + c] = v[c];
        }
    }
    __syncthreads();
    const float m_s = (float)row_stats[0], m_z = (float)row_stats[2];
    float cq0, cr0, cp0;
    offsets(m_s, m_z, cq0, cr0, cp0);
    const bool bad_s_minmax = !(isfinite(m_s) && isfinite((float)row_stats[1]));
    const bool bad_z_max = m_z == INFINITY;
    const double Sq = row_stats[4], Sr = r_mode == 1 ? row_stats[4] : row_stats[5], Sp = row_stats[6];
    const double s_label_row = row_stats[7];
    int reason = KD_ROW_OK;
    if (bad_s_minmax || isnan(Sq) || (r_mode >= 2 && isnan(Sr))) reason = KD_BAD_STUDENT;
    else if (bad_z_max || isnan(Sp)) reason = KD_BAD_TEACHER;
    else if (m_z == -INFINITY) reason = KD_TEACHER_EMPTY;
    else if (MODE == 1 && row_stats[3] == -INFINITY) reason = KD_REVERSE_INFINITE;
    const bool live = reason == KD_ROW_OK; /* the same in every CTA of the cluster */

    const long long C = report->counted;
    const float w = prm.mean ? (C > 0 ? (float)(1.0 / (double)C) : 0.0f) : 1.0f;
    const float a = w * (1.0f - prm.gamma), cg_ = w * prm.gamma * prm.T;
    /* The offsets c = c0 + log2 S, each as a float and, for a float
     * gradient, the float remainder that float leaves (c = hi + lo to ~2^-48):
     * every q of a row shares cq's rounding, so a float cq scales the whole
     * row by up to 2^(ulp/2) ~ 1 + 7e-7, and JSD's q (g - gbar), where g is
     * close to gbar, turns that into a relative error ~20x larger (a random
     * case, R1_SEED=214135979838644 on the H100, at 1.29x the 1e-5 bar; 0.06x
     * with the remainder in a float64 emulation of this kernel). */
    constexpr bool kPrecise = std::is_same<Out, float>::value;
    const double cq_exact = (double)cq0 + log2(Sq), cp_exact = (double)cp0 + log2(Sp);
    const double cr_exact = (double)cr0 + log2(Sr);
    const float cq = (float)cq_exact, cp = (float)cp_exact, cr = (float)cr_exact;
    auto remainder = [](double exact, float hi) { return isfinite(hi) ? (float)(exact - hi) : 0.0f; };
    const float cq_lo = remainder(cq_exact, cq), cp_lo = remainder(cp_exact, cp), cr_lo = remainder(cr_exact, cr);
    /* the log2-scaled arguments of q, p and r: x kq - cq and so on */
    auto arg_q = [&](float x) { const float v = fmaf(x, kq, -cq); return kPrecise ? v - cq_lo : v; };
    auto arg_p = [&](float u) { const float v = fmaf(u, kq, -cp); return kPrecise ? v - cp_lo : v; };
    auto arg_r = [&](float x) { const float v = fmaf(x, kLog2e, -cr); return kPrecise ? v - cr_lo : v; };
    const float ratio = r_mode == 2 ? (float)(Sq * Sq / Sr) : 0.0f;
    const float beta = prm.beta, one_minus = 1.0f - beta;
    const float log_one_minus = MODE == 2 ? logf(one_minus) : 0.0f;
    const float c0 = MODE == 2 ? -one_minus * log_one_minus : 0.0f;

    /* the student at temperature 1 from its log2-scaled argument */
    auto r_of = [&](float x, float q) -> float {
        return r_mode == 0 ? 0.0f : r_mode == 1 ? q : r_mode == 2 ? q * q * ratio
                                                                 : fast_ex2(arg_r(x));
    };
    /* JSD: g = -(1 - beta) h with h = ln(M / q) - ln(1 - beta), M = beta p +
     * (1 - beta) q, from q, p and q's exact log2 argument lq2 (one lg2):
     *   h = (log2 M - lq2) ln 2 - ln(1 - beta).
     * lq2 is the argument, not log2 of the rounded q, so h stays right where q
     * underflows and p does not. Where both underflow, M is floored at the
     * smallest normal float: h is then only kept finite, and it is multiplied
     * by q = 0 and p = 0 everywhere it is used. h is at least 0; it is capped
     * at kJsdHMax so that it fits pass D's float16 store. */
    auto jsd_h_from = [&](float q, float p, float lq2) -> float {
        const float M = fmaf(beta, p, one_minus * q);
        const float h = fmaf(fast_lg2(fmaxf(M, 1.17549435e-38f)) - lq2, kLn2, -log_one_minus);
        return fminf(h, kJsdHMax);
    };
    /* JSD with a float gradient (float inputs: the bar is 1e-5; a bf16
     * gradient, rounded to 2^-9, keeps the form above): h in float64 from
     * the difference of the logits, d = (u - x) kq - (cp - cq) = log2(p/q),
     *   h = ln(1 + 2^(d + log2k)),  k = beta / (1 - beta),
     * and gbar and g - gbar in float64 too. In float32, h and gbar (both of
     * the size of ln 2) round by ~3e-8, and g - gbar, where g is close to
     * gbar, loses that many times over (the case above: 0.60x the bar with
     * the remainders but h in float32, in the emulation). */
    const double cpq = cp_exact - cq_exact, log2k = MODE == 2 ? log2((double)beta / one_minus) : 0.0;
    auto jsd_h_double = [&](float u, float x) -> double {
        const double e = ((double)u - (double)x) * (double)kq - cpq + log2k;
        return fmin(e > 60.0 ? e * kLn2Double : log1p(exp2(e)), (double)kJsdHMax);
    };

    /* Reverse KL with a float gradient: g = ln q - ln p = ((x - u) kq - (cq -
     * cp)) ln 2 and gbar in float64 from the logits. g can be tens where g -
     * gbar is ~0.1; as the difference of two float log2 arguments of that size
     * it put ~1e-5 into the gradient's relative L2 (fast/kd.c met the same at
     * 1.05x the bar). kq's own rounding scales every g alike: harmless. */
    const double cqp = cq_exact - cp_exact;
    auto reverse_g_double = [&](float x, float u) -> double {
        return (((double)x - (double)u) * (double)kq - cqp) * kLn2Double;
    };

    float Dp = 0.0f, gp = 0.0f; /* per-thread partial D and gbar */
    double gp_precise = 0.0;     /* gbar's partial for a float gradient */
    double row_c[2] = {0.0, 0.0};
    if (MODE != 0) {
        /* C: D and gbar */
        if (live)
            for (int c = threadIdx.x; c < chunks; c += kV3Threads) {
                float x[8], u[8];
                load8(ss + 8 * c, x);
                load8(zs + 8 * c, u);
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    float lq2 = arg_q(x[e]), lp2 = arg_p(u[e]);
                    float q = fast_ex2(lq2);
                    if (MODE == 1) {
                        if (kPrecise) {
                            const double g = reverse_g_double(x[e], u[e]);
                            Dp = fmaf(q, (float)g, Dp);
                            gp_precise += (double)q * g;
                        } else {
                            Dp = fmaf(q, (lq2 - lp2) * kLn2, Dp);
                        }
                    } else {
                        float p = fast_ex2(lp2);
                        if (kPrecise) {
                            const double h = jsd_h_double(u[e], x[e]), g = -(double)one_minus * h;
                            if (p > 0.0f)
                                Dp += beta * p * (float)((double)(lp2 - lq2) * kLn2 - h - log_one_minus);
                            Dp = fmaf(q, (float)g + c0, Dp);
                            gp_precise += (double)q * g;
                        } else {
                            const float h = jsd_h_from(q, p, lq2), g = -one_minus * h;
                            if (p > 0.0f) Dp += beta * p * ((lp2 - lq2) * kLn2 - h - log_one_minus);
                            Dp = fmaf(q, g + c0, Dp);
                            gp = fmaf(q, g, gp);
                            u[e] = h;
                        }
                    }
                }
                /* JSD: pass D reads h here instead of computing it again
                 * (float64 h: pass D computes it again from the logits). */
                if (MODE == 2 && !kPrecise) store_h8(zs + 8 * c, u);
            }
        /* (D, gbar) to every CTA, summed in rank order */
        if (live) {
            double slice_c[2] = {Dp, kPrecise ? gp_precise : gp};
            const int op_c[2] = {0, 0};
            block_reduce<2>(slice_c, op_c, scratch_c);
            if (threadIdx.x < (unsigned)cluster)
                push_to_block(late_slots[rank], slice_c[0], slice_c[1], &late_arrived, threadIdx.x);
            arrival_wait(&late_arrived);
            for (int r = 0; r < cluster; ++r) {
                row_c[0] += late_slots[r][0];
                row_c[1] += late_slots[r][1];
            }
        }
    }
    const float gbar = MODE == 1 ? (float)row_c[0] : (float)row_c[1];

    /* the gradient (C for forward KL, D otherwise) */
    if (grad && !live) {
        for (int c = threadIdx.x; c < chunks; c += kV3Threads) store_zeros8(grad + 8 * c);
    } else if (live && grad) {
        for (int c = threadIdx.x; c < chunks; c += kV3Threads) {
            float x[8], u[8], g[8];
            load8(ss + 8 * c, x);
            /* u: the teacher's logits, or for JSD the h that pass C stored */
            if (MODE == 2) load_h8(zs + 8 * c, u);
            else load8(zs + 8 * c, u);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float lq2 = arg_q(x[e]);
                float q = fast_ex2(lq2), r = r_of(x[e], q);
                if (MODE == 0) {
                    float p = fast_ex2(arg_p(u[e]));
                    g[e] = fmaf(a, r, cg_ * (q - p));
                } else {
                    float gj_minus_gbar;
                    if (MODE == 2 && kPrecise)
                        gj_minus_gbar = (float)(-(double)one_minus * jsd_h_double(u[e], x[e]) - row_c[1]);
                    else if (MODE == 1 && kPrecise)
                        gj_minus_gbar = (float)(reverse_g_double(x[e], u[e]) - row_c[1]);
                    else
                        gj_minus_gbar = (MODE == 1 ? (lq2 - arg_p(u[e])) * kLn2 : -one_minus * u[e]) - gbar;
                    g[e] = fmaf(a, r, cg_ * q * gj_minus_gbar);
                }
            }
            /* the label's one-hot term; g is indexed with constants only, so
             * it stays in registers */
            const int label_at = y_local - 8 * c;
            if ((unsigned)label_at < 8u)
#pragma unroll
                for (int e = 0; e < 8; ++e) g[e] -= e == label_at ? a : 0.0f;
            store8(grad + 8 * c, g);
        }
    }
    if (rank == 0 && threadIdx.x == 0) {
        double loss = 0.0;
        if (live) {
            /* forward KL: D from the sums of pass B */
            const double D = MODE != 0 ? row_c[0]
                                       : (double)kLn2 * ((double)kq * row_stats[8] / Sp -
                                                         ((double)cp0 - (double)cq0 + log2(Sp) - log2(Sq)));
            loss = (double)prm.gamma * prm.T * prm.T * D;
            if (need_r) {
                const double s_label = (y >= 0 && y < V) ? s_label_row : NAN;
                loss += (1.0 - prm.gamma) * ((double)m_s + log(Sr) - s_label);
            }
        }
        row_loss[t] = live ? (float)loss : NAN;
        row_reason[t] = reason;
    }
}
/* One block of 1024 threads: L in float64 (each thread a fixed strided set of
 * rows, then a fixed tree: the same order every run), token_losses, the first
 * bad row. */
constexpr int kFinishThreads = 1024;
__global__ void __launch_bounds__(kFinishThreads)
kd_finish(const float *row_loss, const int *row_reason, long long N, int mean,
          float *token_losses, float *loss, PrepareReport *report) {
    __shared__ double partial[kFinishThreads];
    __shared__ unsigned long long first_bad;
    __shared__ unsigned long long bad_count;
    if (threadIdx.x == 0) {
        first_bad = ~0ull;
        bad_count = 0;
    }
    __syncthreads();
    double total = 0.0;
    unsigned long long bad = 0;
    for (long long t = threadIdx.x; t < N; t += kFinishThreads) {
        total += row_loss[t];
        if (token_losses) token_losses[t] = row_loss[t];
        if (row_reason[t] != KD_ROW_OK) {
            atomicMin(&first_bad, (unsigned long long)t);
            ++bad;
        }
    }
    if (bad) atomicAdd(&bad_count, bad);
    partial[threadIdx.x] = total;
    __syncthreads();
    for (int stride = kFinishThreads / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        long long C = report->counted;
        double sum = partial[0];
        float L = (float)(mean ? (C > 0 ? sum / (double)C : 0.0) : sum);
        *loss = L;
        report->loss = L;
        report->first_bad_row = first_bad == ~0ull ? -1 : (long long)first_bad;
        report->bad_rows = (long long)bad_count;
        report->first_reason = first_bad == ~0ull ? 0 : row_reason[first_bad];
    }
}

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

/* Workspace layout of the logits form. */
struct Layout {
    size_t report, row_loss, row_reason, dense, total;
};

Layout logits_layout(const r1_kd_desc *desc) {
    const size_t N = (size_t)desc->tokens, V = (size_t)desc->vocab;
    Layout l;
    l.report = 0;
    l.row_loss = align_up(sizeof(PrepareReport));
    l.row_reason = l.row_loss + align_up(N * 4);
    l.dense = l.row_reason + align_up(N * 4);
    l.total = l.dense + (desc->teacher_topk > 0 ? align_up(N * V * 4) : 0);
    return l;
}

RowParams row_params(const r1_kd_desc *desc, int has_labels) {
    RowParams p;
    p.N = (int)desc->tokens;
    p.V = desc->vocab;
    p.T = desc->temperature;
    p.inv_T = 1.0f / desc->temperature;
    p.gamma = desc->gamma;
    p.beta = desc->beta;
    p.ignore_index = desc->ignore_index;
    p.has_labels = has_labels;
    p.mean = desc->reduction == R1_KD_MEAN;
    p.grad_ld = desc->vocab;
    return p;
}

template <typename TS, typename TZ, typename TG>
void launch_rows(long long rows, const void *s, const void *z, void *grad, const int32_t *labels,
                 RowParams prm, const PrepareReport *report, float *row_loss, int *row_reason,
                 cudaStream_t stream) {
    kd_rows<TS, TZ, TG><<<(unsigned)rows, kThreads, 0, stream>>>(
        (const TS *)s, (const TZ *)z, (TG *)grad, labels, prm, report, row_loss, row_reason);
}

/* Dispatch on (student, teacher, gradient) element types. */
void rows_any(r1_dtype s_type, r1_dtype z_type, r1_dtype g_type, long long rows, const void *s,
              const void *z, void *grad, const int32_t *labels, RowParams prm,
              const PrepareReport *report, float *row_loss, int *row_reason, cudaStream_t st) {
    typedef __nv_bfloat16 bf;
    const bool sb = s_type == R1_BF16, zb = z_type == R1_BF16, gb = g_type == R1_BF16;
    if (!sb && !zb && !gb) launch_rows<float, float, float>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (!sb && !zb && gb) launch_rows<float, float, bf>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (!sb && zb && !gb) launch_rows<float, bf, float>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (!sb && zb && gb) launch_rows<float, bf, bf>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (sb && !zb && !gb) launch_rows<bf, float, float>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (sb && !zb && gb) launch_rows<bf, float, bf>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else if (sb && zb && !gb) launch_rows<bf, bf, float>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
    else launch_rows<bf, bf, bf>(rows, s, z, grad, labels, prm, report, row_loss, row_reason, st);
}

/* v2's plan for a row of V bf16 values: cluster size and slice length, or 0
 * when v2 does not apply (then kd_rows runs). R1LAB_KD_V1=1 forces v1. */
struct ClusterPlan {
    int cluster;
    long long slice;
    size_t shared_bytes;
};

ClusterPlan cluster_plan(const r1_kd_desc *desc, int teacher_dense_bf16) {
    ClusterPlan plan = {0, 0, 0};
    const long long V = desc->vocab;
    if (device_compute_major() < 9 || desc->dtype != R1_BF16 || !teacher_dense_bf16 || desc->beta != 0.0f ||
        V % 8 != 0)
        return plan;
    const long long target = 98304; /* bytes of s + z per CTA: two CTAs per SM */
    long long cluster = (V * 4 + target - 1) / target;
    if (cluster < 1) cluster = 1;
    if (cluster > 8) return plan;
    long long slice = (V + cluster - 1) / cluster;
    slice = (slice + 7) / 8 * 8;
    plan.cluster = (int)cluster;
    plan.slice = slice;
    plan.shared_bytes = (size_t)slice * 4;
    return plan;
}

r1_status launch_rows_cluster(const ClusterPlan &plan, long long rows, const void *s,
                              const void *z, void *grad, const int32_t *labels, RowParams prm,
                              const PrepareReport *report, float *row_loss, int *row_reason,
                              cudaStream_t stream) {
    static size_t raised_to = 0;
    if (raised_to < plan.shared_bytes) {
        CUDA_TRY(cudaFuncSetAttribute(kd_rows_cluster, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)plan.shared_bytes));
        CUDA_TRY(cudaFuncSetAttribute(kd_rows_cluster, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      (int)cudaSharedmemCarveoutMaxShared));
        raised_to = plan.shared_bytes;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)(rows * plan.cluster), 1, 1);
    config.blockDim = dim3(kThreads, 1, 1);
    config.dynamicSmemBytes = plan.shared_bytes;
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeClusterDimension;
    attribute[0].val.clusterDim.x = (unsigned)plan.cluster;
    attribute[0].val.clusterDim.y = 1;
    attribute[0].val.clusterDim.z = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    CUDA_TRY(cudaLaunchKernelEx(&config, kd_rows_cluster, (const uint16_t *)s, (const uint16_t *)z,
                                (uint16_t *)grad, labels, prm, plan.cluster, plan.slice, report,
                                row_loss, row_reason));
    return R1_OK;
}

/* Which row kernel runs: R1LAB_KD_VERSION=1|2|3 (R1LAB_KD_V1=1 is version 1);
 * default 3. Versions 2 and 3 fall back to 1 where they do not apply. */
int kd_version() {
    const char *force = getenv("R1LAB_KD_V1");
    if (force && force[0] == '1') return 1;
    const char *v = getenv("R1LAB_KD_VERSION");
    if (v && (v[0] == '1' || v[0] == '2') && v[1] == 0) return v[0] - '0';
    return 3;
}

/* R1LAB_KD_CLUSTER (1..16) when set, else `cluster`. */
int v3_cluster(int cluster) {
    const char *env = getenv("R1LAB_KD_CLUSTER");
    if (env) {
        int c = atoi(env);
        if (c >= 1 && c <= kV3MaxCluster) return c;
    }
    return cluster;
}

/* v3's plan for logits of `logit_bytes` each (2: bf16, 4: float) and a
 * cluster of `cluster` CTAs: slice, shared bytes;
 * cluster = 0 when v3 does not apply. Defaults (run_rows): 12 for bf16 (H100,
 * V = 152064: 4.57 ms against 4.88 for 8 and 5.27 for 16 with v3's cluster
 * barriers), 16 for float (64 KB of s + z per CTA at V = 128256). */
ClusterPlan cluster_plan_v3(long long V, int logit_bytes, const void *s, const void *z,
                            const void *g, int cluster) {
    ClusterPlan plan = {0, 0, 0};
    if (device_compute_major() < 9 || V % 8 != 0 ||
        (((uintptr_t)s | (uintptr_t)z | (uintptr_t)g) & 15) != 0)
        return plan;
    long long slice = (V + cluster - 1) / cluster;
    slice = (slice + 7) / 8 * 8;
    const long long bytes = slice * 2 * logit_bytes;
    if (bytes > 200 * 1024) return plan; /* one CTA per SM at least */
    plan.cluster = cluster;
    plan.slice = slice;
    plan.shared_bytes = (size_t)bytes;
    return plan;
}

template <int MODE, typename In, typename Out>
r1_status launch_v3_mode(const ClusterPlan &plan, long long rows, const void *s, const void *z,
                         void *grad, const int32_t *labels, RowParams prm,
                         const PrepareReport *report, float *row_loss, int *row_reason,
                         cudaStream_t stream) {
    static size_t raised_to = 0;
    static int non_portable = 0;
    auto kernel = kd_rows_v3<MODE, In, Out>;
    if (plan.cluster > 8 && !non_portable) {
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        non_portable = 1;
    }
    if (raised_to < plan.shared_bytes) {
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)plan.shared_bytes));
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      (int)cudaSharedmemCarveoutMaxShared));
        raised_to = plan.shared_bytes;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)(rows * plan.cluster), 1, 1);
    config.blockDim = dim3(kV3Threads, 1, 1);
    config.dynamicSmemBytes = plan.shared_bytes;
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeClusterDimension;
    attribute[0].val.clusterDim.x = (unsigned)plan.cluster;
    attribute[0].val.clusterDim.y = 1;
    attribute[0].val.clusterDim.z = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    CUDA_TRY(cudaLaunchKernelEx(&config, kernel, (const In *)s, (const In *)z, (Out *)grad, labels,
                                prm, plan.cluster, plan.slice, report, row_loss, row_reason));
    return R1_OK;
}

template <typename In, typename Out>
r1_status launch_rows_v3(const ClusterPlan &plan, long long rows, const void *s, const void *z,
                         void *grad, const int32_t *labels, RowParams prm,
                         const PrepareReport *report, float *row_loss, int *row_reason,
                         cudaStream_t stream) {
    if (prm.beta == 0.0f)
        return launch_v3_mode<0, In, Out>(plan, rows, s, z, grad, labels, prm, report, row_loss,
                                          row_reason, stream);
    if (prm.beta == 1.0f)
        return launch_v3_mode<1, In, Out>(plan, rows, s, z, grad, labels, prm, report, row_loss,
                                          row_reason, stream);
    return launch_v3_mode<2, In, Out>(plan, rows, s, z, grad, labels, prm, report, row_loss,
                                      row_reason, stream);
}

/* v3 for (logits, gradient) types bf16 / bf16, f32 / f32 or f32 / bf16. */
r1_status launch_rows_v3(r1_dtype logit_type, r1_dtype grad_type, const ClusterPlan &plan,
                         long long rows, const void *s, const void *z, void *grad,
                         const int32_t *labels, RowParams prm, const PrepareReport *report,
                         float *row_loss, int *row_reason, cudaStream_t stream) {
    if (logit_type == R1_BF16)
        return launch_rows_v3<uint16_t, uint16_t>(plan, rows, s, z, grad, labels, prm, report,
                                                  row_loss, row_reason, stream);
    if (grad_type == R1_BF16)
        return launch_rows_v3<float, uint16_t>(plan, rows, s, z, grad, labels, prm, report,
                                               row_loss, row_reason, stream);
    return launch_rows_v3<float, float>(plan, rows, s, z, grad, labels, prm, report, row_loss,
                                        row_reason, stream);
}

/* The row kernel for `rows` rows: v3 where it applies (student and teacher
 * of one type, bf16 or f32, the gradient of theirs or bf16 from f32; a
 * cluster above the portable 8 that the device refuses falls back to 8), v2
 * when asked for, v1 otherwise. */
r1_status run_rows(const r1_kd_desc *desc, long long rows, r1_dtype s_type, r1_dtype z_type,
                   r1_dtype g_type, const void *s, const void *z, void *grad,
                   const int32_t *labels, RowParams prm, const PrepareReport *report,
                   float *row_loss, int *row_reason, cudaStream_t stream) {
    const int version = kd_version();
    const bool v3_types = s_type == z_type && (g_type == s_type || g_type == R1_BF16);
    const int logit_bytes = s_type == R1_BF16 ? 2 : 4;
    ClusterPlan plan3 = version == 3 && v3_types
                            ? cluster_plan_v3(desc->vocab, logit_bytes, s, z, grad,
                                              v3_cluster(logit_bytes == 2 ? 12 : 16))
                            : ClusterPlan{0, 0, 0};
    const bool all_bf16 = s_type == R1_BF16 && z_type == R1_BF16 && g_type == R1_BF16;
    ClusterPlan plan = version == 2 && all_bf16 ? cluster_plan(desc, desc->teacher_topk == 0)
                                                : ClusterPlan{0, 0, 0};
    if (prm.grad_ld != desc->vocab && plan3.cluster == 0)
        return r1_fail(R1_EINVAL, "kd: a gradient written over its logits needs the cluster "
                                  "row kernel, which does not apply here");
    if (plan3.cluster > 0) {
        r1_status status = launch_rows_v3(s_type, g_type, plan3, rows, s, z, grad, labels, prm,
                                          report, row_loss, row_reason, stream);
        if (status != R1_OK && plan3.cluster > 8) {
            /* a cluster above the portable 8 refused by this device */
            (void)cudaGetLastError();
            plan3 = cluster_plan_v3(desc->vocab, logit_bytes, s, z, grad, 8);
            if (plan3.cluster == 8)
                status = launch_rows_v3(s_type, g_type, plan3, rows, s, z, grad, labels, prm,
                                        report, row_loss, row_reason, stream);
            else
                status = r1_fail(R1_ECUDA, "kd: this device refuses clusters above 8 CTAs and a "
                                           "cluster of 8 does not fit a row of %lld logits",
                                 (long long)desc->vocab);
        }
        if (status != R1_OK) return status;
    } else if (plan.cluster > 0) {
        r1_status status = launch_rows_cluster(plan, rows, s, z, grad, labels, prm, report,
                                               row_loss, row_reason, stream);
        if (status != R1_OK) return status;
    } else {
        rows_any(s_type, z_type, g_type, rows, s, z, grad, labels, prm, report, row_loss,
                 row_reason, stream);
    }
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

/* Reads the report back (synchronous calls) and turns it into a status. */
r1_status read_report(const r1_kd_desc *desc, const int32_t *labels, const int32_t *ids,
                      const PrepareReport *device_report, kd_report *report, cudaStream_t stream) {
    PrepareReport host;
    CUDA_TRY(cudaMemcpyAsync(&host, device_report, sizeof host, cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    const long long N = desc->tokens, k = desc->teacher_topk;
    if (host.bad_label_token < N) {
        int32_t y = 0;
        CUDA_TRY(cudaMemcpy(&y, labels + host.bad_label_token, 4, cudaMemcpyDeviceToHost));
        return kd_fail_label(host.bad_label_token, y, desc->vocab, desc->ignore_index);
    }
    if (k > 0 && host.bad_id_slot < N * k) {
        int32_t id = 0;
        CUDA_TRY(cudaMemcpy(&id, ids + host.bad_id_slot, 4, cudaMemcpyDeviceToHost));
        return kd_fail_sparse_id(host.bad_id_slot / k, (int32_t)(host.bad_id_slot % k), id,
                                 desc->vocab, host.repeated);
    }
    if (host.first_bad_row >= 0) {
        report->first = host.first_bad_row;
        report->reason = host.first_reason;
        report->count = host.bad_rows;
    }
    return R1_OK;
}

/* ---- cuBLAS ------------------------------------------------------------------ */

/* One cuBLAS handle for the process, made once on first use and destroyed
 * at exit (atexit handlers run in reverse order of registration, so this runs
 * before the CUDA runtime's own teardown, registered at its first call). */
cublasHandle_t process_blas_handle = nullptr;

void blas_handle_release() {
    if (process_blas_handle != nullptr) cublasDestroy(process_blas_handle);
    process_blas_handle = nullptr;
}

cublasHandle_t blas_handle(r1_status *status) {
    static std::once_flag once;
    std::call_once(once, [] {
        if (cublasCreate(&process_blas_handle) == CUBLAS_STATUS_SUCCESS)
            atexit(blas_handle_release);
        else
            process_blas_handle = nullptr;
    });
    if (process_blas_handle == nullptr) *status = r1_fail(R1_ECUDA, "cublasCreate failed");
    return process_blas_handle;
}

cudaDataType_t blas_type(r1_dtype dtype) { return dtype == R1_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Row-major out (rows, V) f32 = X (rows, dim) W^T, W (V, dim). */
r1_status gemm_logits(cublasHandle_t h, r1_dtype dtype, const void *X, const void *W, long long rows,
                      long long V, long long dim, float *out) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)V, (int)rows, (int)dim, &one, W,
                            blas_type(dtype), (int)dim, X, blas_type(dtype), (int)dim, &zero, out,
                            CUDA_R_32F, (int)V, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return R1_OK;
}

/* Fused-linear chunking. For bf16 inputs the gradient G of a chunk of C
 * tokens is kept in bf16 (the GEMMs dH = G W and dW += G^T H run on tensor
 * cores); the logits are float32 (accumulated in f32 and kept so: rounding
 * them to bf16 would move q and p by up to 2^-9 |s| / T), computed and
 * turned into G in pieces of P tokens. Where the cluster row kernel (v3)
 * runs, P = C and G is written over the student logits S: row t of G takes
 * the first half of row t's bytes of S (leading dimension 2V), which only
 * row t's CTAs read, and they have all read their slices before any of them
 * writes (every CTA waits for every slice's statistics first). f32 inputs:
 * P = C and G is written over S. */
struct LinearSizes {
    size_t chunk;  /* C: tokens per dH / dW GEMM                  */
    size_t piece;  /* P: tokens per logits GEMM and row kernel     */
    bool in_place; /* G over S, leading dimension 2V (bf16)        */
};

/* Rounds a token count down to a multiple of 256 (whole GEMM tiles), when at
 * least 256. */
size_t whole_tiles(size_t tokens) { return tokens >= 256 ? tokens - tokens % 256 : tokens; }

/* Whether a bf16 gradient can go over the f32 logits: only the cluster row
 * kernel reads a row whole before writing it, and it takes student and
 * teacher of one type (the teacher's logits f32: from hidden states or
 * sparse). The workspace's buffers are aligned, so there is no
 * pointer for cluster_plan_v3 to check. */
bool linear_in_place_possible(const r1_kd_linear_desc *desc) {
    const bool f32_teacher = desc->teacher_hidden > 0 || desc->kd.teacher_topk > 0;
    return desc->kd.dtype == R1_BF16 && f32_teacher && kd_version() == 3 &&
           cluster_plan_v3(desc->kd.vocab, 4, nullptr, nullptr, nullptr, v3_cluster(16)).cluster > 0;
}

/* In place (bf16 on sm_90): C = P = desc->chunk_tokens or as many tokens as
 * fit 2 GiB of f32 logits, student and teacher (or 1 GiB of the student's
 * alone): C = 2048 at V = 128256, 2,004 MiB, 0.50 of one (N = 8192, V) f32
 * buffer. Otherwise C as many tokens as fit 512 MiB of bf16 G and P as many
 * as fit 1 GiB of f32 logits (C = 2048, P = 1024 at V = 128256, 1,503 MiB);
 * f32 inputs: C = P, 1 GiB of logits. Larger C means fewer f32
 * read-modify-writes of dW (V, d), 2.1 GB each at d = 4096; larger P fuller
 * GEMMs (H100: the f32-output logits GEMM ran at 672 TFLOP/s with 512
 * tokens, 783 with 1024, 832 with 2048). */
LinearSizes linear_sizes(const r1_kd_linear_desc *desc) {
    const size_t V = (size_t)desc->kd.vocab, N = (size_t)desc->kd.tokens;
    const size_t logit_bytes =
        4 + (desc->teacher_hidden > 0 || desc->kd.teacher_topk > 0 ? 4 : 0); /* per (token, v) */
    const size_t GiB = (size_t)1 << 30;
    LinearSizes z;
    z.in_place = linear_in_place_possible(desc);
    if (z.in_place) {
        z.chunk = desc->chunk_tokens > 0 ? (size_t)desc->chunk_tokens
                                         : whole_tiles(2 * GiB / (V * logit_bytes));
        z.piece = z.chunk;
    } else if (desc->kd.dtype == R1_BF16) {
        z.chunk = desc->chunk_tokens > 0 ? (size_t)desc->chunk_tokens
                                         : whole_tiles(GiB / 2 / (V * 2));
        z.piece = whole_tiles(GiB / (V * logit_bytes));
    } else {
        z.chunk = desc->chunk_tokens > 0 ? (size_t)desc->chunk_tokens
                                         : whole_tiles(GiB / (V * logit_bytes));
        z.piece = z.chunk;
    }
    if (z.chunk < 1) z.chunk = 1;
    if (z.chunk > N) z.chunk = N;
    if (z.piece < 1) z.piece = 1;
    if (z.piece > z.chunk) z.piece = z.chunk;
    return z;
}

struct LinearLayout {
    LinearSizes sizes;
    size_t report, row_loss, row_reason, dense, S, Z, G, total;
};

/* S: the student logits of a piece (f32); Z: the teacher's from ht Wt;
 * dense: a sparse teacher as f32 rows; G: the bf16 gradient of a chunk
 * (in place, or for f32 inputs: G is written over S). */
LinearLayout linear_layout(const r1_kd_linear_desc *desc) {
    const r1_kd_desc *kd = &desc->kd;
    const size_t N = (size_t)kd->tokens, V = (size_t)kd->vocab;
    const LinearSizes z = linear_sizes(desc);
    LinearLayout l;
    l.sizes = z;
    l.report = 0;
    l.row_loss = align_up(sizeof(PrepareReport));
    l.row_reason = l.row_loss + align_up(N * 4);
    l.dense = l.row_reason + align_up(N * 4);
    l.S = l.dense + (kd->teacher_topk > 0 ? align_up(z.piece * V * 4) : 0);
    l.Z = l.S + align_up(z.piece * V * 4);
    l.G = l.Z + (desc->teacher_hidden > 0 ? align_up(z.piece * V * 4) : 0);
    l.total = l.G + (kd->dtype == R1_BF16 && !z.in_place ? align_up(z.chunk * V * 2) : 0);
    return l;
}

}  // namespace

extern "C" size_t kd_workspace_size_cuda(const r1_kd_desc *desc) {
    return logits_layout(desc).total;
}

extern "C" r1_status kd_loss_cuda(const r1_kd_desc *desc, const r1_kd_inputs *in,
                                  const r1_kd_outputs *out, void *workspace, kd_report *report,
                                  void *stream_pointer) {
    cudaStream_t stream = (cudaStream_t)stream_pointer;
    const long long N = desc->tokens, V = desc->vocab;
    const int k = desc->teacher_topk;
    Layout l = logits_layout(desc);
    char *ws = (char *)workspace;
    PrepareReport *dev_report = (PrepareReport *)(ws + l.report);
    float *row_loss = (float *)(ws + l.row_loss);
    int *row_reason = (int *)(ws + l.row_reason);
    kd_prepare<<<1, kThreads, 0, stream>>>(in->labels, in->teacher_ids, N, V, k,
                                           desc->ignore_index, dev_report);
    CUDA_TRY(cudaGetLastError());
    if (!desc->asynchronous) {
        /* bad labels / ids must not reach the row kernel (it indexes with them) */
        r1_status status = read_report(desc, in->labels, in->teacher_ids, dev_report, report, stream);
        if (status != R1_OK) return status;
    }
    const void *teacher = in->teacher_logits;
    r1_dtype teacher_type = desc->dtype;
    if (k > 0) {
        float *dense = (float *)(ws + l.dense);
        kd_densify<<<(unsigned)N, kThreads, 0, stream>>>(in->teacher_ids, in->teacher_logprobs, N, V,
                                                          k, dense);
        CUDA_TRY(cudaGetLastError());
        teacher = dense;
        teacher_type = R1_F32;
    }
    RowParams prm = row_params(desc, in->labels != nullptr);
    r1_status status = run_rows(desc, N, desc->dtype, teacher_type, desc->dtype, in->student_logits,
                                teacher, out->grad, in->labels, prm, dev_report, row_loss,
                                row_reason, stream);
    if (status != R1_OK) return status;
    kd_finish<<<1, kFinishThreads, 0, stream>>>(row_loss, row_reason, N, prm.mean, out->token_losses, out->loss,
                                     dev_report);
    CUDA_TRY(cudaGetLastError());
    if (desc->asynchronous) return R1_OK;
    return read_report(desc, in->labels, in->teacher_ids, dev_report, report, stream);
}

extern "C" size_t kd_linear_workspace_size_cuda(const r1_kd_linear_desc *desc) {
    return linear_layout(desc).total;
}

extern "C" r1_status kd_linear_cuda(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                                    const r1_kd_linear_outputs *out, void *workspace,
                                    kd_report *report, void *stream_pointer) {
    cudaStream_t stream = (cudaStream_t)stream_pointer;
    const r1_kd_desc *kd = &desc->kd;
    const long long N = kd->tokens, V = kd->vocab, d = desc->hidden, dt = desc->teacher_hidden;
    const int k = kd->teacher_topk;
    const LinearLayout l = linear_layout(desc);
    const LinearSizes sizes = l.sizes;
    const long long C = (long long)sizes.chunk, P = (long long)sizes.piece;
    const size_t elem = kd->dtype == R1_BF16 ? 2 : 4;
    char *ws = (char *)workspace;
    PrepareReport *dev_report = (PrepareReport *)(ws + l.report);
    float *row_loss = (float *)(ws + l.row_loss);
    int *row_reason = (int *)(ws + l.row_reason);
    float *S = (float *)(ws + l.S), *Z = (float *)(ws + l.Z);
    /* a chunk's gradient, ldG elements from row to row */
    char *G = kd->dtype == R1_BF16 && !sizes.in_place ? ws + l.G : (char *)S;
    const long long ldG = sizes.in_place ? 2 * V : V;
    r1_status status = R1_OK;
    cublasHandle_t h = blas_handle(&status);
    if (status != R1_OK) return status;
    CUBLAS_TRY(cublasSetStream(h, stream));
    kd_prepare<<<1, kThreads, 0, stream>>>(in->labels, in->teacher_ids, N, V, k, kd->ignore_index,
                                           dev_report);
    CUDA_TRY(cudaGetLastError());
    if (!kd->asynchronous) {
        status = read_report(kd, in->labels, in->teacher_ids, dev_report, report, stream);
        if (status != R1_OK) return status;
    }
    RowParams prm = row_params(kd, in->labels != nullptr);
    prm.grad_ld = ldG;
    const float one = 1.0f, zero = 0.0f;
    for (long long t0 = 0; t0 < N; t0 += C) {
        const long long n = N - t0 < C ? N - t0 : C;
        /* G (n, V) of this chunk, P tokens at a time from f32 logits */
        for (long long p0 = 0; p0 < n; p0 += P) {
            const long long m = n - p0 < P ? n - p0 : P, row0 = t0 + p0;
            const char *Hs = (const char *)in->student_hidden + (size_t)(row0 * d) * elem;
            const void *teacher;
            r1_dtype teacher_type = R1_F32;
            status = gemm_logits(h, kd->dtype, Hs, in->student_weight, m, V, d, S);
            if (status != R1_OK) return status;
            if (dt > 0) {
                const char *Ht = (const char *)in->teacher_hidden + (size_t)(row0 * dt) * elem;
                status = gemm_logits(h, kd->dtype, Ht, in->teacher_weight, m, V, dt, Z);
                if (status != R1_OK) return status;
                teacher = Z;
            } else if (k > 0) {
                float *dense = (float *)(ws + l.dense);
                kd_densify<<<(unsigned)m, kThreads, 0, stream>>>(in->teacher_ids + row0 * k,
                                                                  in->teacher_logprobs + row0 * k, m,
                                                                  V, k, dense);
                CUDA_TRY(cudaGetLastError());
                teacher = dense;
            } else {
                teacher = (const char *)in->teacher_logits + (size_t)(row0 * V) * elem;
                teacher_type = kd->dtype;
            }
            status = run_rows(kd, m, R1_F32, teacher_type, kd->dtype, S, teacher,
                              G + (size_t)(p0 * ldG) * elem, in->labels ? in->labels + row0 : nullptr,
                              prm, dev_report, row_loss + row0, row_reason + row0, stream);
            if (status != R1_OK) return status;
        }
        const char *H = (const char *)in->student_hidden + (size_t)(t0 * d) * elem;
        cudaDataType_t type = blas_type(kd->dtype);
        if (out->grad_hidden) {
            /* dH (n, d) = G (n, V) W (V, d) */
            CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)d, (int)n, (int)V, &one,
                                    in->student_weight, type, (int)d, G, type, (int)ldG, &zero,
                                    out->grad_hidden + t0 * d, CUDA_R_32F, (int)d,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
        if (out->grad_weight) {
            /* dW (V, d) += G^T (V, n) H (n, d) */
            CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)V, (int)n, &one, H,
                                    type, (int)d, G, type, (int)ldG, t0 == 0 ? &zero : &one,
                                    out->grad_weight, CUDA_R_32F, (int)d, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
        }
    }
    kd_finish<<<1, kFinishThreads, 0, stream>>>(row_loss, row_reason, N, prm.mean, out->token_losses, out->loss,
                                     dev_report);
    CUDA_TRY(cudaGetLastError());
    if (kd->asynchronous) return R1_OK;
    return read_report(kd, in->labels, in->teacher_ids, dev_report, report, stream);
}
