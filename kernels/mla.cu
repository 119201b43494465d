/*
 * kernels/mla.cu — the MLA decode core on the GPU: MQA over the paged latent
 * cache, bf16 queries and cache, fp32 accumulation, bf16 out, fp32 lse.
 * Semantics in r1lab/mla.h; ref/mla.c (mla_decode_ref) is the same function.
 *
 *   out[b,i,h] = sum_j softmax_j(scale * q[b,i,h] . K_j) K_j[:Dv],
 *   lse[b,i,h] = ln sum_j exp(scale * q . K_j),  K_j = cache row j (D = 576)
 *
 * Split-KV: the keys of one sequence are cut into `splits` ranges of whole
 * 64-token blocks; each range gives a partial (O_s normalized, lse_s), and
 * the combine kernel merges them:  m = max_s lse_s,  w_s = exp(lse_s - m),
 * out = sum_s w_s O_s / sum_s w_s,  lse = m + ln sum_s w_s. An empty range
 * has lse_s = -inf and weight 0; a query that sees no key gets out 0, lse -inf.
 * splits is chosen so that about two CTAs per SM exist even for small batches.
 *
 * VERSIONS
 *   v1 (this file)  one CTA of 256 threads per (split, sequence * query,
 *       group of 16 heads). The 16 queries sit in shared memory as fp32; keys
 *       stream through shared memory 32 rows (half a block) at a time, rows
 *       past the query's range loaded as zeros (never read: the NaN tests);
 *       each thread computes 2 of the 16 x 32 scores on CUDA cores, one thread
 *       per head updates the online softmax (running max m, sum l, the
 *       correction exp(m_old - m_new)), and each thread keeps 32 of the
 *       16 x 512 output accumulators in registers. Correct and simple; bound by
 *       CUDA-core FLOPs (1088 FMA per head and key), not by HBM.
 *   Next (not done): QK^T and PV on tensor cores with mma.sync m16n8k16 bf16
 *       (a 64-head tile as in FlashMLA: the 576-dim keys are read once for 64
 *       heads), double-buffered cp.async loads of the next block, exp2 with the
 *       scale folded into log2(e).
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

extern "C" {
#include "core/internal.h"
}

namespace {

constexpr int kThreads = 256;
constexpr int kHeadGroup = 16;               /* heads per CTA                       */
constexpr int kTile = 32;                    /* key rows per shared-memory tile     */
constexpr int kLanesPerHead = kThreads / kHeadGroup;  /* 16 threads own one head's out */
constexpr int kMaxDv = 512;
constexpr int kMaxD = 576;
constexpr int kColumnsPerThread = kMaxDv / kLanesPerHead; /* 32 */
constexpr int kMaxSplits = 64;

#define CUDA_TRY(call)                                                                    \
    do {                                                                                  \
        cudaError_t cuda_try_error = (call);                                              \
        if (cuda_try_error != cudaSuccess)                                                \
            return r1_fail(R1_ECUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #call,          \
                           cudaGetErrorString(cuda_try_error));                           \
    } while (0)

struct decode_params {
    const __nv_bfloat16 *q;     /* (B, S, H, D)                 */
    const __nv_bfloat16 *cache; /* (num_blocks, 64, D)          */
    const int32_t *block_table; /* (B, max_blocks)              */
    const int32_t *seq_lens;    /* (B)                          */
    float *partial_out;         /* (B*S*H, splits, Dv)          */
    float *partial_lse;         /* (B*S*H, splits)              */
    __nv_bfloat16 *out;         /* (B, S, H, Dv)                */
    float *lse;                 /* (B, S, H) or null            */
    int S, H, D, Dv, max_blocks, splits, causal;
    float scale;
};

__global__ void __launch_bounds__(kThreads) decode_split_kernel(decode_params p) {
    extern __shared__ float shared[];
    float *q_s = shared;                                        /* [16][D] */
    float *score_s = q_s + kHeadGroup * p.D;                    /* [16][kTile] */
    float *correction_s = score_s + kHeadGroup * kTile;         /* [16] */
    __nv_bfloat16 *key_s = reinterpret_cast<__nv_bfloat16 *>(correction_s + kHeadGroup); /* [kTile][D] */

    const int split = blockIdx.x;
    const int bi = blockIdx.y, b = bi / p.S, i = bi % p.S;
    const int h0 = blockIdx.z * kHeadGroup;
    const int heads = min(kHeadGroup, p.H - h0);
    const int tid = threadIdx.x;

    /* Keys this query sees, and this split's range of them (whole blocks). */
    int n = p.seq_lens[b];
    if (p.causal) n = n - p.S + 1 + i;
    if (n < 0) n = 0;
    const int blocks = (n + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
    const int per_split = (blocks + p.splits - 1) / p.splits;
    const int begin = min(n, split * per_split * R1_MLA_BLOCK_SIZE);
    const int end = min(n, (split + 1) * per_split * R1_MLA_BLOCK_SIZE);

    for (int e = tid; e < kHeadGroup * p.D; e += kThreads) {
        int g = e / p.D, k = e % p.D;
        q_s[e] = g < heads ? __bfloat162float(p.q[((int64_t)bi * p.H + h0 + g) * p.D + k]) : 0.0f;
    }
    /* Output ownership: thread -> head g, columns lane, lane + 16, ... */
    const int g_own = tid / kLanesPerHead, lane = tid % kLanesPerHead;
    float acc[kColumnsPerThread];
#pragma unroll
    for (int c = 0; c < kColumnsPerThread; ++c) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f; /* meaningful in threads tid < 16 (one per head) */
    const int32_t *table = p.block_table + (int64_t)b * p.max_blocks;
    __syncthreads();

    for (int start = begin; start < end; start += kTile) {
        /* Load kTile rows (8 bf16 = 16 bytes at a time); rows past `end` are zeros. */
        const int vectors = p.D / 8;
        for (int e = tid; e < kTile * vectors; e += kThreads) {
            int j = e / vectors, v = e % vectors, t = start + j;
            uint4 value = make_uint4(0, 0, 0, 0);
            if (t < end) {
                int64_t row = (int64_t)table[t / R1_MLA_BLOCK_SIZE] * R1_MLA_BLOCK_SIZE + t % R1_MLA_BLOCK_SIZE;
                value = reinterpret_cast<const uint4 *>(p.cache + row * p.D)[v];
            }
            reinterpret_cast<uint4 *>(key_s + j * p.D)[v] = value;
        }
        __syncthreads();
        /* Scores: thread -> head tid / 16, keys tid % 16 and tid % 16 + 16. */
        {
            const int g = tid / 16;
            for (int jj = 0; jj < 2; ++jj) {
                const int j = tid % 16 + 16 * jj;
                const float *qrow = q_s + g * p.D;
                const __nv_bfloat162 *krow = reinterpret_cast<const __nv_bfloat162 *>(key_s + j * p.D);
                float sum = 0.0f;
                for (int k = 0; k < p.D / 2; ++k) {
                    float2 kv = __bfloat1622float2(krow[k]);
                    sum = fmaf(qrow[2 * k], kv.x, sum);
                    sum = fmaf(qrow[2 * k + 1], kv.y, sum);
                }
                score_s[g * kTile + j] = start + j < end ? sum * p.scale : -INFINITY;
            }
        }
        __syncthreads();
        /* Online softmax, one thread per head. */
        if (tid < kHeadGroup) {
            float tile_max = -INFINITY;
            for (int j = 0; j < kTile; ++j) tile_max = fmaxf(tile_max, score_s[tid * kTile + j]);
            const float m_new = fmaxf(m, tile_max);
            const float correction = m == -INFINITY ? 0.0f : __expf(m - m_new);
            float sum = 0.0f;
            for (int j = 0; j < kTile; ++j) {
                float s = score_s[tid * kTile + j];
                /* masked keys (-inf) weigh 0 even when m_new is -inf */
                float w = s == -INFINITY ? 0.0f : __expf(s - m_new);
                score_s[tid * kTile + j] = w;
                sum += w;
            }
            l = l * correction + sum;
            m = m_new;
            correction_s[tid] = correction;
        }
        __syncthreads();
        /* acc = acc * correction + P . K[:, :Dv] */
        {
            const float correction = correction_s[g_own];
#pragma unroll
            for (int c = 0; c < kColumnsPerThread; ++c) acc[c] *= correction;
            for (int j = 0; j < kTile; ++j) {
                const float w = score_s[g_own * kTile + j];
                const __nv_bfloat16 *krow = key_s + j * p.D;
#pragma unroll
                for (int c = 0; c < kColumnsPerThread; ++c) {
                    const int column = lane + c * kLanesPerHead;
                    if (column < p.Dv) acc[c] = fmaf(w, __bfloat162float(krow[column]), acc[c]);
                }
            }
        }
        __syncthreads();
    }
    /* m and l live in thread g; share them. */
    if (tid < kHeadGroup) {
        score_s[tid] = m;
        score_s[kHeadGroup + tid] = l;
    }
    __syncthreads();
    if (g_own < heads) {
        const float m_own = score_s[g_own], l_own = score_s[kHeadGroup + g_own];
        const int64_t row = (int64_t)bi * p.H + h0 + g_own;
        float *o = p.partial_out + (row * p.splits + split) * p.Dv;
        const float inverse = l_own > 0.0f || isnan(l_own) ? 1.0f / l_own : 0.0f;
#pragma unroll
        for (int c = 0; c < kColumnsPerThread; ++c) {
            const int column = lane + c * kLanesPerHead;
            if (column < p.Dv) o[column] = l_own == 0.0f ? 0.0f : acc[c] * inverse;
        }
        if (lane == 0)
            p.partial_lse[row * p.splits + split] = l_own == 0.0f ? -INFINITY : m_own + logf(l_own);
    }
}

/* One CTA of 128 threads per (b, i, h) row: merge the splits' partials. */
__global__ void decode_combine_kernel(decode_params p) {
    const int64_t row = blockIdx.x;
    const float *lse_s = p.partial_lse + row * p.splits;
    float m = -INFINITY;
    bool any_nan = false;
    for (int s = 0; s < p.splits; ++s) {
        any_nan |= isnan(lse_s[s]);
        m = fmaxf(m, lse_s[s]);
    }
    float total = 0.0f;
    for (int s = 0; s < p.splits; ++s) total += lse_s[s] == -INFINITY ? 0.0f : __expf(lse_s[s] - m);
    if (any_nan) total = NAN;
    for (int column = threadIdx.x; column < p.Dv; column += blockDim.x) {
        float value = 0.0f;
        if (total > 0.0f || isnan(total)) {
            for (int s = 0; s < p.splits; ++s) {
                if (lse_s[s] == -INFINITY) continue;
                value += __expf(lse_s[s] - m) * p.partial_out[(row * p.splits + s) * p.Dv + column];
            }
            value /= total;
        }
        p.out[row * p.Dv + column] = __float2bfloat16(value);
    }
    if (threadIdx.x == 0 && p.lse)
        p.lse[row] = total == 0.0f ? -INFINITY : m + logf(total);
}

int sm_count() {
    static int count = 0;
    if (count == 0) {
        int device = 0;
        cudaGetDevice(&device);
        if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
            count = 132;
    }
    return count;
}

int choose_splits(const r1_mla_decode_desc *desc) {
    const int64_t groups = (desc->n_heads + kHeadGroup - 1) / kHeadGroup;
    const int64_t ctas = desc->batch * desc->s_q * groups;
    int64_t splits = (2 * sm_count() + ctas - 1) / ctas;
    if (splits > desc->max_blocks_per_seq) splits = desc->max_blocks_per_seq;
    if (splits > kMaxSplits) splits = kMaxSplits;
    return splits < 1 ? 1 : (int)splits;
}

size_t align_up(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

} // namespace

extern "C" size_t mla_decode_workspace_size_cuda(const r1_mla_decode_desc *desc) {
    const size_t rows = (size_t)(desc->batch * desc->s_q * desc->n_heads);
    const size_t splits = (size_t)choose_splits(desc);
    return align_up(rows * splits * (size_t)desc->dim_v * sizeof(float)) +
           align_up(rows * splits * sizeof(float)) +
           align_up((size_t)(desc->batch * desc->max_blocks_per_seq) * sizeof(int32_t)) +
           align_up((size_t)desc->batch * sizeof(int32_t));
}

extern "C" r1_status mla_decode_cuda(const r1_mla_decode_desc *desc, const void *q,
                                     const r1_mla_cache *cache, void *out, float *lse,
                                     void *workspace, void *stream_pointer) {
    if (desc->dim_qk > kMaxD || desc->dim_v > kMaxDv)
        return r1_fail(R1_EUNSUPPORTED,
                       "dim_qk = %lld, dim_v = %lld: the cuda decode core handles up to %d / %d",
                       (long long)desc->dim_qk, (long long)desc->dim_v, kMaxD, kMaxDv);
    cudaStream_t stream = static_cast<cudaStream_t>(stream_pointer);
    const int64_t rows = desc->batch * desc->s_q * desc->n_heads;
    decode_params p;
    p.splits = choose_splits(desc);
    char *w = static_cast<char *>(workspace);
    p.partial_out = reinterpret_cast<float *>(w);
    w += align_up((size_t)rows * p.splits * desc->dim_v * sizeof(float));
    p.partial_lse = reinterpret_cast<float *>(w);
    w += align_up((size_t)rows * p.splits * sizeof(float));
    int32_t *table_copy = reinterpret_cast<int32_t *>(w);
    w += align_up((size_t)(desc->batch * desc->max_blocks_per_seq) * sizeof(int32_t));
    int32_t *lens_copy = reinterpret_cast<int32_t *>(w);
    if (desc->device_block_table) {
        p.block_table = desc->device_block_table;
    } else {
        CUDA_TRY(cudaMemcpyAsync(table_copy, desc->block_table,
                                 (size_t)(desc->batch * desc->max_blocks_per_seq) * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream));
        p.block_table = table_copy;
    }
    if (desc->device_seq_lens) {
        p.seq_lens = desc->device_seq_lens;
    } else {
        CUDA_TRY(cudaMemcpyAsync(lens_copy, desc->seq_lens, (size_t)desc->batch * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream));
        p.seq_lens = lens_copy;
    }
    p.q = static_cast<const __nv_bfloat16 *>(q);
    p.cache = static_cast<const __nv_bfloat16 *>(cache->blocks);
    p.out = static_cast<__nv_bfloat16 *>(out);
    p.lse = lse;
    p.S = (int)desc->s_q;
    p.H = (int)desc->n_heads;
    p.D = (int)desc->dim_qk;
    p.Dv = (int)desc->dim_v;
    p.max_blocks = (int)desc->max_blocks_per_seq;
    p.causal = desc->causal ? 1 : 0;
    p.scale = (float)desc->softmax_scale;

    const size_t shared = (size_t)kHeadGroup * p.D * sizeof(float) +
                          (size_t)kHeadGroup * kTile * sizeof(float) + kHeadGroup * sizeof(float) +
                          (size_t)kTile * p.D * sizeof(__nv_bfloat16);
    CUDA_TRY(cudaFuncSetAttribute(decode_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)shared));
    dim3 grid((unsigned)p.splits, (unsigned)(desc->batch * desc->s_q),
              (unsigned)((desc->n_heads + kHeadGroup - 1) / kHeadGroup));
    decode_split_kernel<<<grid, kThreads, shared, stream>>>(p);
    CUDA_TRY(cudaGetLastError());
    decode_combine_kernel<<<(unsigned)rows, 128, 0, stream>>>(p);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}
