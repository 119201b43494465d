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
 *   v1  one CTA of 256 threads per (split, sequence * query, group of 16 heads).
 *       The 16 queries sit in shared memory as fp32; keys stream through shared
 *       memory 32 rows (half a block) at a time, rows past the query's range
 *       loaded as zeros (never read: the NaN tests); each thread computes 2 of
 *       the 16 x 32 scores on CUDA cores, one thread per head updates the online
 *       softmax (running max m, sum l, the correction exp(m_old - m_new)), and
 *       each thread keeps 32 of the 16 x 512 output accumulators in registers.
 *       Correct and simple; bound by CUDA-core FLOPs (1088 FMA per head and key):
 *       b=128, s_q=1, h=128, s_k=4096 took 55177 us on an H100 (11 GB/s).
 *       Kept as the reference path: shapes v2 does not take (dim_qk != 576,
 *       dim_v != 512, h not a multiple of 16 or above 128, s_q > 2, devices with
 *       less than 225 KiB of shared memory per CTA) and R1LAB_MLA_V1=1.
 *   v2  (the default where it applies) tensor cores, FlashMLA's decomposition:
 *       all s_q * h query rows of a sequence share each key block, so one CTA
 *       takes 64 of them (MQA over the latent) and reads each 64 x 576 block
 *       once for 64 rows; QK^T and PV on mma.sync m16n8k16 bf16 with ldmatrix
 *       (.trans for V) from swizzled shared memory; cp.async double buffering
 *       (block j + 1 loads while j computes); exp2 with the scale folded into
 *       log2 e; bf16 out and lse written directly when the sequence is not split.
 *       The split count minimises waves x blocks per CTA (one CTA per SM).
 *       Measured on an NVIDIA H100 80GB HBM3 (docs/mla.md has the table):
 *       b=128, s_q=1, h=128, s_k=4096: 654 us, 0.95 TB/s, 223 TFLOP/s, 2.53x the
 *       PyTorch einsum path of the same run (1656 us); s_q=2: 1267 us, 230 TFLOP/s.
 *       Compute-bound on mma.sync at h=128: the warps run QK^T, softmax and PV in
 *       lockstep. The default on GPUs without sm_90a code.
 *   v3  (the default on sm_90) the v2 tiles on wgmma with FlashMLA's two-warpgroup
 *       "seesaw" schedule (Q and two key blocks in TMA-loaded swizzled boxes, O split
 *       by columns between the warpgroups, one block's softmax overlapping the other
 *       warpgroup's products); described at decode_split_kernel_v3.
 *       Measured on the same H100 (one ci/gpu.sh run, bench/results/h100-mla-v3.json):
 *       b=128, s_q=1, h=128, s_k=4096: 304 us, 2.05 TB/s read (0.69 of the 2.98 TB/s
 *       copy), 480 TFLOP/s, 5.3x the einsum path; s_q=2: 564 us, 518 TFLOP/s.
 *       R1LAB_MLA_V3=0 runs v2 instead.
 *   v3 + wide combine: v2's and v3's splits merged by one CTA per (row, 128
 *       columns) as a programmatic dependent launch (decode_combine_kernel_wide);
 *       b=1 h=16 s_k=8192 77.9 -> 20.0 us. Side by side with FlashMLA in one run
 *       (bench/results/h100-mla-v4.json, h100-flashmla-mla.json): 0.81x at the
 *       headline shape (313 vs 254 us), 1.08-1.84x at b=1. Next: a persistent
 *       grid with a TMA epilogue (docs/mla.md has the profile).
 *   v3b the pairs that are neither of the last two (no key past a row's length,
 *       every next block present) run a copy of the step without those tests, as
 *       FlashMLA's do; the cache's tensor map asks for no L2 promotion (FlashMLA's
 *       setting). H100, b=128, s_q=1, h=128, s_k=4096, Nsight Compute at base
 *       clocks: 57.3 -> 54.9 M warp instructions, 444.5 k -> 440.6 k cycles; L2
 *       traffic 1.63 -> 1.28 GB with the same 623 MB from DRAM; event and graph
 *       times within the run-to-run spread (2-3 %).
 *   v3c unsplit tiles write out through shared memory with coalesced 16-byte
 *       stores (v3_store_out): H100 A/B/A/B, graph time at b=128, h=128,
 *       s_k=4096: 285 -> 274 us (s_q=1), 540 -> 530 us (s_q=2). One ci/gpu.sh run
 *       (bench/results/h100-mla-v6.json, FlashMLA timed as r1lab is): 295.0 us =
 *       2.11 TB/s against FlashMLA's 274.2 (0.93x); s_q=2 536.4 us = 544 TFLOP/s
 *       (0.92x). Next: a persistent grid that splits the work evenly (at b=128
 *       an SM runs two tiles of 64 blocks, FlashMLA's parts about 124 blocks).
 *       v7 run (h100-mla-v7.json): 280.6 us against FlashMLA's 268.4 (0.96x).
 *   tried, not kept: a persistent schedule (tiles cut evenly between one CTA per
 *       SM, a tile's later pieces merged by the CTA with its first blocks); correct
 *       but slower, 313 against 281 us (graph) at b=128, h=128, s_k=4096: each
 *       extra piece boundary costs more than the even cut saves (docs/mla.md,
 *       "A persistent schedule, measured"; branch mla-persistent-schedule).
 *   split count: choose_splits_v2 counts the combine's traffic (the fp32 partial
 *       sums written and read back), fitted on b=1, s_k=8192: h=128 takes 32
 *       splits instead of 64, 20.1 -> 17.1 us (graph); the other benchmarked
 *       shapes keep their counts.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

extern "C" {
#include "core/internal.h"
}
#include "kernels/cuda_try.cuh"
#include "kernels/hopper.cuh"
#include "kernels/launch.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kHeadGroup = 16;               /* heads per CTA                       */
constexpr int kTile = 32;                    /* key rows per shared-memory tile     */
constexpr int kLanesPerHead = kThreads / kHeadGroup;  /* 16 threads own one head's out */
constexpr int kMaxDv = 512;
constexpr int kMaxD = 576;
constexpr int kColumnsPerThread = kMaxDv / kLanesPerHead; /* 32 */
constexpr int kMaxSplits = 64;


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

/* The same merge for the tensor-core paths (dim_v a multiple of 4), spread out:
 * one CTA per (row, 128 columns), its 4 warps taking every 4th split, each
 * lane 4 columns (16-byte loads, 4 splits in flight). The partial sums of the
 * warps are added in warp order in shared memory. With few rows (small
 * batches) the old one-CTA-per-row loop waited on one load after another.
 * Launched as a programmatic dependent of the split kernel: its CTAs start
 * while the split kernel drains and wait (griddepcontrol.wait) for its results. */
constexpr int kCombineColumns = 128, kCombineWarps = 4;
static_assert(kMaxSplits <= 64, "the wide combine holds two lse per lane");

__global__ void __launch_bounds__(kCombineWarps * 32) decode_combine_kernel_wide(decode_params p) {
    wait_for_previous_kernel();
    __shared__ float4 sums[kCombineWarps - 1][32];
    const int64_t row = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int column = blockIdx.y * kCombineColumns + 4 * lane;
    const float *lse_s = p.partial_lse + row * p.splits;
    /* Every warp finds the max and the total itself (at most kMaxSplits = 64 splits). */
    float mine[2];
    float m = -INFINITY;
    bool any_nan = false;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
        const int s = lane + 32 * k;
        mine[k] = s < p.splits ? lse_s[s] : -INFINITY;
        any_nan |= isnan(mine[k]);
        m = fmaxf(m, mine[k]);
    }
#pragma unroll
    for (int x = 16; x >= 1; x >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, x));
    any_nan = __any_sync(0xffffffffu, any_nan);
    float weight[2], total = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
        weight[k] = mine[k] == -INFINITY ? 0.0f : __expf(mine[k] - m);
        total += weight[k];
    }
#pragma unroll
    for (int x = 16; x >= 1; x >>= 1) total += __shfl_xor_sync(0xffffffffu, total, x);
    if (any_nan) total = NAN;

    float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const bool in_range = column < p.Dv;
    if (total > 0.0f || isnan(total)) {
#pragma unroll 4
        for (int s = warp; s < p.splits; s += kCombineWarps) {
            const float w = __shfl_sync(0xffffffffu, s < 32 ? weight[0] : weight[1], s % 32);
            const float l = __shfl_sync(0xffffffffu, s < 32 ? mine[0] : mine[1], s % 32);
            if (l == -INFINITY || !in_range) continue; /* an empty split adds nothing */
            const float4 part = *reinterpret_cast<const float4 *>(p.partial_out + (row * p.splits + s) * p.Dv + column);
            value.x += w * part.x;
            value.y += w * part.y;
            value.z += w * part.z;
            value.w += w * part.w;
        }
    }
    if (warp > 0) sums[warp - 1][lane] = value;
    __syncthreads();
    if (warp != 0) return;
    for (int w = 0; w < kCombineWarps - 1; ++w) {
        const float4 other = sums[w][lane];
        value.x += other.x;
        value.y += other.y;
        value.z += other.z;
        value.w += other.w;
    }
    if (in_range) {
        const bool defined = total > 0.0f || isnan(total);
        __nv_bfloat16 *dst = p.out + row * p.Dv + column;
        *reinterpret_cast<__nv_bfloat162 *>(dst) =
            __floats2bfloat162_rn(defined ? value.x / total : 0.0f, defined ? value.y / total : 0.0f);
        *reinterpret_cast<__nv_bfloat162 *>(dst + 2) =
            __floats2bfloat162_rn(defined ? value.z / total : 0.0f, defined ? value.w / total : 0.0f);
    }
    if (blockIdx.y == 0 && lane == 0 && p.lse) p.lse[row] = total == 0.0f ? -INFINITY : m + logf(total);
}

/* ---------------------------------------------------------------------------------
 * v2: tensor cores. One CTA of 8 warps per (split, sequence, tile of 64 query rows);
 * the rows of sequence b are its s_q * h queries in (i, head) order, so every row of
 * a tile shares the keys. Shared memory (swizzled: 16-byte chunk c of row r is
 * stored at chunk c ^ (r & 7), so the 8 rows an ldmatrix reads hit 8 different
 * bank groups although a row is 1152 bytes = 9 * 128):
 *   Q   64 x 576 bf16 (72 KiB)    loaded once
 *   K   2 x 64 x 576 bf16 (144 KiB) cp.async, block j + 1 loads while j computes
 *   P   64 x 64 bf16 (8 KiB)      softmax weights, shared by the two warps of a row group
 *   max, sum exchange (1 KiB)
 * Warp w: row group g = w & 3 (rows 16g .. 16g + 15), half = w >> 2.
 *   S   = Q K^T for its 16 rows and keys 32 half .. 32 half + 31 (mma m16n8k16,
 *         36 k-steps, A and B by ldmatrix from row-major Q and K);
 *   the two warps of a row group swap row maxima (named barrier 1 + g), so both
 *   keep the same running max m and the same correction exp2(m_old - m_new);
 *   P = exp2(S * scale * log2 e - m) goes to shared memory as bf16;
 *   O[16 rows, columns 256 half .. +255] += P (16 x 64) V (64 x 256), V = the first
 *   512 columns of the same K block, B fragments by ldmatrix.trans; 128 fp32
 *   accumulators per thread. l (the row sum) is kept per warp over its 32 keys
 *   and added at the end.
 * Keys past the largest length any row of the tile sees are loaded as zeros
 * (cp.async zero-fill), so NaN in a cache tail never reaches P V; keys a row does
 * not see score -inf. */
constexpr int kV2Threads = 256;
constexpr int kV2Rows = 64;
constexpr int kV2D = 576, kV2Dv = 512;
constexpr int kV2Chunks = kV2D / 8;                       /* 72 chunks of 16 bytes per row */
constexpr int kV2RowBytes = kV2D * 2;                     /* 1152 */
constexpr int kV2TileBytes = kV2Rows * kV2RowBytes;       /* 73728 */
constexpr int kV2PBytes = kV2Rows * 64 * 2;               /* 8192 */
constexpr int kV2Shared = 3 * kV2TileBytes + kV2PBytes + 2 * 2 * kV2Rows * 4; /* 230400 */

__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
    return (uint32_t)(row * kV2RowBytes + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    const int bytes = valid ? 16 : 0; /* 0: the 16 bytes are zero-filled, nothing is read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}
/* c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col) */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Keys query row r (= i * H + head) of sequence b sees. */
__device__ __forceinline__ int v2_keys_seen(const decode_params &p, int n_seq, int r) {
    if (r >= p.S * p.H) return 0;
    int n = p.causal ? n_seq - p.S + 1 + r / p.H : n_seq;
    return n < 0 ? 0 : n;
}

__global__ void __launch_bounds__(kV2Threads, 1) decode_split_kernel_v2(decode_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t q_base = (uint32_t)__cvta_generic_to_shared(smem);
    const uint32_t k_base = q_base + kV2TileBytes; /* two buffers */
    const uint32_t p_base = q_base + 3 * kV2TileBytes;
    float *max_s = reinterpret_cast<float *>(smem + 3 * kV2TileBytes + kV2PBytes); /* [2][64] */
    float *sum_s = max_s + 2 * kV2Rows;                                              /* [2][64] */

    const int split = blockIdx.x, row0 = blockIdx.y * kV2Rows, b = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = warp & 3, half = warp >> 2;
    const int rows_total = p.S * p.H;
    const int n_seq = p.seq_lens[b];

    /* This tile's key range: whole blocks of the longest row, cut into splits. */
    const int n_max = v2_keys_seen(p, n_seq, min(rows_total, row0 + kV2Rows) - 1);
    const int blocks = (n_max + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
    const int per_split = (blocks + p.splits - 1) / p.splits;
    const int block_begin = min(blocks, split * per_split);
    const int block_end = min(blocks, block_begin + per_split);
    const int32_t *table = p.block_table + (int64_t)b * p.max_blocks;

    /* This thread's two rows (mma layout: lane / 4 and lane / 4 + 8 of the group). */
    const int r_lo = 16 * group + (lane >> 2), r_hi = r_lo + 8;
    const int n_lo = v2_keys_seen(p, n_seq, row0 + r_lo), n_hi = v2_keys_seen(p, n_seq, row0 + r_hi);

    auto load_block = [&](int blk, uint32_t buffer) {
        const int t0 = blk * R1_MLA_BLOCK_SIZE;
        const __nv_bfloat16 *src = p.cache + (int64_t)table[blk] * R1_MLA_BLOCK_SIZE * kV2D;
        for (int e = tid; e < kV2Rows * kV2Chunks; e += kV2Threads) {
            const int row = e / kV2Chunks, chunk = e % kV2Chunks;
            const bool valid = t0 + row < n_max;
            cp_async16(buffer + swizzled(row, chunk), valid ? src + row * kV2D + chunk * 8 : src, valid);
        }
    };

    if (block_begin < block_end) {
        const __nv_bfloat16 *q = p.q + ((int64_t)b * rows_total + row0) * kV2D;
        for (int e = tid; e < kV2Rows * kV2Chunks; e += kV2Threads) {
            const int row = e / kV2Chunks, chunk = e % kV2Chunks;
            const bool valid = row0 + row < rows_total;
            cp_async16(q_base + swizzled(row, chunk), valid ? q + row * kV2D + chunk * 8 : q, valid);
        }
        load_block(block_begin, k_base);
    }
    cp_async_commit();

    float o[32][4];
#pragma unroll
    for (int n = 0; n < 32; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    const float scale_log2 = p.scale * 1.4426950408889634f;

    for (int blk = block_begin; blk < block_end; ++blk) {
        const uint32_t k_tile = k_base + (uint32_t)((blk - block_begin) & 1) * kV2TileBytes;
        cp_async_wait_all();
        __syncthreads(); /* block blk visible; every warp is done with blk - 1 */
        if (blk + 1 < block_end)
            load_block(blk + 1, k_base + (uint32_t)((blk + 1 - block_begin) & 1) * kV2TileBytes);
        cp_async_commit();

        /* S (16 x 32) = Q[16 group rows] . K[32 half keys]^T; even and odd k-steps
         * accumulate apart (8 independent mma chains per warp), then add. */
        float s[4][4], s_odd[4][4];
#pragma unroll
        for (int n = 0; n < 4; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[n][e] = s_odd[n][e] = 0.0f;
        const int a_row = 16 * group + (lane & 15);
        const int b_key = 32 * half + (lane & 7) + ((lane >> 4) << 3);
#pragma unroll 2
        for (int ks = 0; ks < kV2D / 16; ks += 2) {
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                uint32_t a[4], b0[4], b1[4];
                ldmatrix_x4(a, q_base + swizzled(a_row, 2 * (ks + u) + (lane >> 4)));
                ldmatrix_x4(b0, k_tile + swizzled(b_key, 2 * (ks + u) + ((lane >> 3) & 1)));
                ldmatrix_x4(b1, k_tile + swizzled(b_key + 16, 2 * (ks + u) + ((lane >> 3) & 1)));
                float(*acc)[4] = u ? s_odd : s;
                mma_bf16(acc[0], a, b0[0], b0[1]);
                mma_bf16(acc[1], a, b0[2], b0[3]);
                mma_bf16(acc[2], a, b1[0], b1[1]);
                mma_bf16(acc[3], a, b1[2], b1[3]);
            }
        }
#pragma unroll
        for (int n = 0; n < 4; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[n][e] += s_odd[n][e];
        /* Scale to log2 units, mask keys a row does not see, local row maxima. */
        const int t_base = blk * R1_MLA_BLOCK_SIZE + 32 * half + 2 * (lane & 3);
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int n = 0; n < 4; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int t = t_base + 8 * n + e;
                s[n][e] = t < n_lo ? s[n][e] * scale_log2 : -INFINITY;
                s[n][2 + e] = t < n_hi ? s[n][2 + e] * scale_log2 : -INFINITY;
                mx_lo = fmaxf(mx_lo, s[n][e]);
                mx_hi = fmaxf(mx_hi, s[n][2 + e]);
            }
#pragma unroll
        for (int x = 1; x <= 2; x <<= 1) {
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, x));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, x));
        }
        if ((lane & 3) == 0) {
            max_s[half * kV2Rows + r_lo] = mx_lo;
            max_s[half * kV2Rows + r_hi] = mx_hi;
        }
        named_barrier(1 + group, 64);
        mx_lo = fmaxf(mx_lo, max_s[(1 - half) * kV2Rows + r_lo]);
        mx_hi = fmaxf(mx_hi, max_s[(1 - half) * kV2Rows + r_hi]);
        const float new_lo = fmaxf(m_lo, mx_lo), new_hi = fmaxf(m_hi, mx_hi);
        /* a row with no key yet keeps m = -inf; subtract 0 then (every weight is 0) */
        const float use_lo = new_lo == -INFINITY ? 0.0f : new_lo;
        const float use_hi = new_hi == -INFINITY ? 0.0f : new_hi;
        const float corr_lo = exp2f(m_lo - use_lo), corr_hi = exp2f(m_hi - use_hi);
        m_lo = new_lo;
        m_hi = new_hi;
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int n = 0; n < 4; ++n) {
            s[n][0] = exp2f(s[n][0] - use_lo);
            s[n][1] = exp2f(s[n][1] - use_lo);
            s[n][2] = exp2f(s[n][2] - use_hi);
            s[n][3] = exp2f(s[n][3] - use_hi);
            sum_lo += s[n][0] + s[n][1];
            sum_hi += s[n][2] + s[n][3];
            /* P row r, keys 32 half + 8n + 2(lane & 3): chunk 4 half + n of a 128-byte row */
            const int chunk = 4 * half + n, byte = 4 * (lane & 3);
            asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(p_base + r_lo * 128 + ((chunk ^ (r_lo & 7)) << 4) + byte),
                         "r"(pack_bf16(s[n][0], s[n][1])));
            asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(p_base + r_hi * 128 + ((chunk ^ (r_hi & 7)) << 4) + byte),
                         "r"(pack_bf16(s[n][2], s[n][3])));
        }
        l_lo = l_lo * corr_lo + sum_lo;
        l_hi = l_hi * corr_hi + sum_hi;
#pragma unroll
        for (int n = 0; n < 32; ++n) {
            o[n][0] *= corr_lo;
            o[n][1] *= corr_lo;
            o[n][2] *= corr_hi;
            o[n][3] *= corr_hi;
        }
        named_barrier(1 + group, 64);

        /* O[16 rows, 256 half + 0..255] += P (16 x 64) . V (64 x 256) */
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            uint32_t a[4];
            const int pr = 16 * group + (lane & 15), pc = 2 * kk + (lane >> 4);
            ldmatrix_x4(a, p_base + pr * 128 + ((pc ^ (pr & 7)) << 4));
            const int v_key = 16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3);
#pragma unroll
            for (int np = 0; np < 16; ++np) {
                uint32_t v[4];
                ldmatrix_x4_trans(v, k_tile + swizzled(v_key, 32 * half + 2 * np + (lane >> 4)));
                mma_bf16(o[2 * np], a, v[0], v[1]);
                mma_bf16(o[2 * np + 1], a, v[2], v[3]);
            }
        }
    }
    cp_async_wait_all();

    /* The row sums: quad reduction, then the two halves of the row group. */
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, x);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, x);
    }
    if ((lane & 3) == 0) {
        sum_s[half * kV2Rows + r_lo] = l_lo;
        sum_s[half * kV2Rows + r_hi] = l_hi;
    }
    named_barrier(1 + group, 64);
    l_lo += sum_s[(1 - half) * kV2Rows + r_lo];
    l_hi += sum_s[(1 - half) * kV2Rows + r_hi];

#pragma unroll
    for (int which = 0; which < 2; ++which) {
        const int r = which ? r_hi : r_lo;
        if (row0 + r >= rows_total) continue;
        const float l = which ? l_hi : l_lo, m = which ? m_hi : m_lo;
        const bool empty = l == 0.0f; /* no key seen (NaN l is not empty) */
        const float inverse = empty ? 0.0f : 1.0f / l;
        const float row_lse = empty ? -INFINITY : (m + log2f(l)) * 0.6931471805599453f;
        const int64_t row = (int64_t)b * rows_total + row0 + r;
        const int column0 = 256 * half + 2 * (lane & 3);
        if (p.splits == 1) {
            __nv_bfloat16 *dst = p.out + row * kV2Dv + column0;
#pragma unroll
            for (int n = 0; n < 32; ++n)
                *reinterpret_cast<__nv_bfloat162 *>(dst + 8 * n) =
                    __floats2bfloat162_rn(o[n][2 * which] * inverse, o[n][2 * which + 1] * inverse);
            if (half == 0 && (lane & 3) == 0 && p.lse) p.lse[row] = row_lse;
        } else {
            float *dst = p.partial_out + (row * p.splits + split) * kV2Dv + column0;
#pragma unroll
            for (int n = 0; n < 32; ++n)
                *reinterpret_cast<float2 *>(dst + 8 * n) =
                    make_float2(o[n][2 * which] * inverse, o[n][2 * which + 1] * inverse);
            if (half == 0 && (lane & 3) == 0) p.partial_lse[row * p.splits + split] = row_lse;
        }
    }
}

/* ---------------------------------------------------------------------------------
 * v3 (sm_90a): the same tiles as v2 (64 query rows of one sequence, one split of its
 * key blocks), computed by wgmma with FlashMLA's two-warpgroup "seesaw" schedule.
 *
 * Shared memory, every piece in boxes of 64 rows x 128 bytes (64 bf16) written by the
 * copy engine with the 128-byte swizzle, the layout wgmma reads:
 *   Q            9 boxes (72 KiB), loaded once; box 8 (dims 512..575) is then held in
 *                registers and its space holds P_odd
 *   K_even/odd   2 x 9 boxes: key blocks 2i and 2i + 1 of the range. A block is its
 *                own V: V = the first 512 columns, boxes 0-3 (V_left), 4-7 (V_right)
 *   P_even       64 x 64 bf16
 * O (64 x 512 fp32) is too large for one warpgroup's registers, so warpgroup 0 keeps
 * O_left (columns 0..255) and warpgroup 1 O_right. Per pair of blocks, with m the
 * running row maximum (log2 units) both share through shared memory:
 *   wg0: S_even = Q K_even^T;           wg1: S_odd = Q K_odd^T       (computed ahead)
 *   wg0: m_e = max(m, rowmax S_even), c_e = 2^(m - m_e), P_even = 2^(S_even - m_e),
 *        O_left = c_e O_left + P_even V_even,left
 *   wg1: m_o = max(m_e, rowmax S_odd),  c_o = 2^(m_e - m_o), P_odd = 2^(S_odd - m_o),
 *        O_right = c_e c_o O_right + P_odd V_odd,right
 *   wg0: writes c_o P_even to shared memory;   wg1: writes P_odd
 *   wg0: O_left = c_o O_left + P_odd V_odd,left        (P_odd from shared memory)
 *   wg1: O_right += (c_o P_even) V_even,right           (P_even from shared memory)
 * Both halves end relative to m_o, as one FlashAttention step over the two blocks
 * would leave them. While one warpgroup does its softmax (CUDA cores) the other's
 * wgmmas run. Each warpgroup sums the P it computed into its row sums l; the two
 * are added at the end. A buffer's boxes are reloaded (block 2i + 2 or 2i + 3) as
 * soon as both warpgroups are done with them: box 8 right after Q K^T, boxes 0-3
 * after the V_left product, 4-7 after V_right, each box with its own mbarrier
 * (armed again by its waiter right after each wait) so the next Q K^T starts on
 * the first box to land. wgmma descriptors are computed once per buffer and
 * advanced by constants.
 * Keys past the longest row of the tile in the range's last block may hold
 * anything (NaN in the tests): their scores are masked to -inf and their V rows
 * zeroed in shared memory before any P V reads them, so 0 * NaN never happens.
 * Named barriers (id, 256 threads, bar.sync on both sides: one side is nearly
 * always waiting already, and compute-sanitizer's racecheck models bar.sync but
 * reports false hazards with bar.arrive) order the hand-offs between the
 * warpgroups. */
constexpr int kV3Threads = 256;
constexpr int kV3Box = 64 * 128;                 /* 64 rows x 64 bf16 */
constexpr int kV3Boxes = kV2D / 64;              /* 9 */
constexpr int kV3BlockBytes = kV3Boxes * kV3Box; /* 73728 */
constexpr int kV3Dynamic = 3 * kV3BlockBytes + kV3Box + 1024; /* Q, K_even, K_odd, P_even + alignment */
enum V3Barrier { kEvenScaled = 1, kOddScaled, kEvenStored, kOddStored, kZeroedLeft, kZeroedRight };


/* The v3 device code exists only in the sm_90a pass (where the kernel's body is). */
#ifdef R1LAB_SM90A
/* Copies boxes [First, End) of cache block `block` into `buffer`; each box counts
 * its bytes on its own barrier (armed by the warpgroup that waits on it). */
template <int First, int End>
__device__ __forceinline__ void v3_load_boxes(const CUtensorMap *cache_map, uint8_t *buffer, int block,
                                              unsigned long long *full) {
#pragma unroll
    for (int box = First; box < End; ++box)
        tma_load_2d(buffer + box * kV3Box, cache_map, box * 64, block * R1_MLA_BLOCK_SIZE, &full[box]);
}

/* S [+]= Q K^T over the dimensions of boxes [First, End): per box, wait for it to
 * land, 4 wgmmas (k = 16 each), one commit group. Box 8 of Q comes from registers. */
template <int First, int End>
__device__ __forceinline__ void v3_scores(float (&s)[32], uint64_t q_desc, const uint32_t (&q8)[4][4],
                                          uint64_t k_desc, unsigned long long *full, unsigned parity,
                                          bool start) {
#pragma unroll
    for (int box = First; box < End; ++box) {
        barrier_wait(&full[box], parity);
        /* this phase is complete for every thread (the next cannot complete before
         * the warpgroup releases the box): arm the box's next load */
        if (threadIdx.x % 128 == 0) barrier_arrive_expect_bytes(&full[box], kV3Box);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const uint64_t k = descriptor_advance(k_desc, box * kV3Box + kk * 32);
            const int accumulate = (start && box == First && kk == 0) ? 0 : 1;
            if (box < 8)
                wgmma_m64n64k16_bf16(s, descriptor_advance(q_desc, box * kV3Box + kk * 32), k, accumulate);
            else
                wgmma_m64n64k16_bf16_a_registers(s, q8[kk], k, accumulate);
        }
        wgmma_commit();
    }
}

/* O += P V for one half of V (v_desc: its first box, MN-major): P from registers
 * (p[kk] = keys 16 kk .. 16 kk + 15) or from a swizzled 64 x 64 tile. */
__device__ __forceinline__ void v3_pv_registers(float (&o)[128], const uint32_t (&p)[4][4], uint64_t v_desc) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
        wgmma_m64n256k16_bf16_a_registers_b_mn(o, p[kk], descriptor_advance(v_desc, kk * 2048));
    wgmma_commit();
}
__device__ __forceinline__ void v3_pv_shared(float (&o)[128], uint64_t p_desc, uint64_t v_desc) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
        wgmma_m64n256k16_bf16_b_mn(o, descriptor_advance(p_desc, kk * 32), descriptor_advance(v_desc, kk * 2048));
    wgmma_commit();
}

/* The thread's place in a warpgroup's accumulators: rows a = 16 (t / 32) + (t % 32) / 4
 * and b = a + 8; s[4 j + e] is (a, key 8 j + 2 (t % 4) + e), s[4 j + 2 + e] is (b, ...). */
struct v3_rows {
    int a, b, lane, column; /* column = 2 (t % 4) */
    int seen_a, seen_b;     /* keys each row sees (rows past the sequence: the tile's) */
};

/* Scores of keys a row does not see become -inf (only blocks that reach past a
 * row's length need the test). */
__device__ __forceinline__ void v3_mask(float (&s)[32], int key0, const v3_rows &r) {
    if (key0 + R1_MLA_BLOCK_SIZE <= min(r.seen_a, r.seen_b)) return;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int key = key0 + 8 * j + r.column + e;
            if (key >= r.seen_a) s[4 * j + e] = -INFINITY;
            if (key >= r.seen_b) s[4 * j + 2 + e] = -INFINITY;
        }
}

/* 2^x by the SFU (ex2.approx.ftz: relative error ~2^-22, subnormals to 0; 2^-inf = 0). */
__device__ __forceinline__ float v3_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* One online-softmax step on this warpgroup's block: the new running maximum
 * goes to row_max, the correction 2^(m_old - m_new) to `correction` (and is
 * returned), s becomes P = 2^(s scale_log2 - m_new), its row sums are returned.
 * A row with no key yet keeps m = -inf and subtracts 0 (every P is 0). NaN
 * scores are skipped by fmaxf and give NaN P. */
__device__ __forceinline__ void v3_softmax(float (&s)[32], const v3_rows &r, float scale_log2,
                                           float *row_max, float *correction, float &c_a, float &c_b,
                                           float &sum_a, float &sum_b) {
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        mx_a = fmaxf(mx_a, fmaxf(s[4 * j], s[4 * j + 1]));
        mx_b = fmaxf(mx_b, fmaxf(s[4 * j + 2], s[4 * j + 3]));
    }
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, x));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, x));
    }
    const float old_a = row_max[r.a], old_b = row_max[r.b];
    const float new_a = fmaxf(old_a, mx_a * scale_log2), new_b = fmaxf(old_b, mx_b * scale_log2);
    const float use_a = new_a == -INFINITY ? 0.0f : new_a, use_b = new_b == -INFINITY ? 0.0f : new_b;
    c_a = v3_exp2(old_a - use_a);
    c_b = v3_exp2(old_b - use_b);
    __syncwarp(); /* the quad has read row_max before its first lane overwrites it */
    if ((r.lane & 3) == 0) {
        row_max[r.a] = new_a;
        row_max[r.b] = new_b;
        correction[r.a] = c_a;
        correction[r.b] = c_b;
    }
    sum_a = sum_b = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        s[4 * j] = v3_exp2(fmaf(s[4 * j], scale_log2, -use_a));
        s[4 * j + 1] = v3_exp2(fmaf(s[4 * j + 1], scale_log2, -use_a));
        s[4 * j + 2] = v3_exp2(fmaf(s[4 * j + 2], scale_log2, -use_b));
        s[4 * j + 3] = v3_exp2(fmaf(s[4 * j + 3], scale_log2, -use_b));
        sum_a += s[4 * j] + s[4 * j + 1];
        sum_b += s[4 * j + 2] + s[4 * j + 3];
    }
}

__device__ __forceinline__ void v3_scale_o(float (&o)[128], float c_a, float c_b) {
#pragma unroll
    for (int j = 0; j < 32; ++j) {
        o[4 * j] *= c_a;
        o[4 * j + 1] *= c_a;
        o[4 * j + 2] *= c_b;
        o[4 * j + 3] *= c_b;
    }
}

/* P (accumulator layout) as the A operand of the P V wgmmas: keys 16 kk .. 16 kk + 15
 * of rows a and b, bf16 pairs. */
__device__ __forceinline__ void v3_pack_p(const float (&s)[32], uint32_t (&p)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        p[kk][0] = pack_bf16(s[8 * kk], s[8 * kk + 1]);
        p[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        p[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        p[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

/* f_row P written to a swizzled 64 x 64 bf16 tile (row r, key k at byte
 * 128 r + 16 ((k / 8) ^ (r % 8)) + 2 (k % 8)) by stmatrix: per 16 keys, the warp's
 * four 8 x 8 pieces (rows 0-7 / 8-15 of its 16, keys 0-7 / 8-15), each lane naming
 * one row of one piece; then made visible to wgmma. */
__device__ __forceinline__ void v3_store_p(uint8_t *tile, const float (&s)[32], const v3_rows &r, float f_a,
                                           float f_b) {
    const int row = (r.a & ~15) + (r.lane & 7) + ((r.lane >> 3) & 1) * 8;
    const uint32_t row_base = shared_address(tile) + row * 128;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        const int chunk = 2 * kk + (r.lane >> 4);
        asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                         row_base + ((chunk ^ (row & 7)) << 4)),
                     "r"(pack_bf16(s[8 * kk] * f_a, s[8 * kk + 1] * f_a)),
                     "r"(pack_bf16(s[8 * kk + 2] * f_b, s[8 * kk + 3] * f_b)),
                     "r"(pack_bf16(s[8 * kk + 4] * f_a, s[8 * kk + 5] * f_a)),
                     "r"(pack_bf16(s[8 * kk + 6] * f_b, s[8 * kk + 7] * f_b)));
    }
    fence_async_shared();
}

/* Zeroes rows valid..63 of boxes first_box .. first_box + 3 of a block (one half of
 * V) with the warpgroup's 128 threads, and makes the zeros visible to its wgmmas. */
__device__ __forceinline__ void v3_zero_v_rows(uint8_t *block, int first_box, int valid, int t,
                                               int barrier_id) {
    const int chunks = (R1_MLA_BLOCK_SIZE - valid) * 4 * 8;
    for (int i = t; i < chunks; i += 128) {
        const int row = valid + i / 32, box = first_box + (i / 8) % 4, chunk = i % 8;
        const uint32_t at = shared_address(block + box * kV3Box + row * 128 + chunk * 16);
        asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(at), "r"(0));
    }
    fence_async_shared();
    named_barrier(barrier_id, 128);
}

struct v3_state {
    uint8_t *q_buf, *k_buf[2], *p_even, *p_odd;
    unsigned long long *full[2];
    uint64_t q_desc, k_desc[2], v_desc[2], p_even_desc, p_odd_desc; /* wgmma descriptors */
    float *row_max, *c_even, *c_odd;
    const CUtensorMap *cache_map;
    const int32_t *table;
    int block_begin, block_end, n_max, t;
    float scale_log2;
};

/* The warpgroup is done with boxes [First, End) of buffer `which` (0-3: V_left,
 * 4-7: V_right, 8: the rest of the key, free as soon as Q K^T is done): thread 0
 * of the warpgroup starts the copies of block `block` there. */
template <int First, int End>
__device__ __forceinline__ void v3_refill(const v3_state &w, int which, int block) {
    if (w.t == 0) v3_load_boxes<First, End>(w.cache_map, w.k_buf[which], block, w.full[which]);
}

/* The pair of blocks starting at `blk` (even: blk, odd: blk + 1) and the blocks the
 * buffers take next (their table entries read early, used after the softmax).
 * kMiddle: blk + 3 < block_end, so all four blocks exist, and none of the pair's
 * keys reaches past a row's length (rows of a tile see at least n_max - 1 keys and
 * the pair ends two blocks before the last): no test, no mask, no zeroing. */
struct v3_pair {
    bool has_odd, next_even, next_odd;
    int even_block, odd_block; /* blk + 2, blk + 3 */
};
template <bool kMiddle>
__device__ __forceinline__ v3_pair v3_pair_at(const v3_state &w, int blk) {
    v3_pair q;
    q.has_odd = kMiddle || blk + 1 < w.block_end;
    q.next_even = kMiddle || blk + 2 < w.block_end;
    q.next_odd = kMiddle || blk + 3 < w.block_end;
    q.even_block = q.next_even ? w.table[blk + 2] : 0;
    q.odd_block = q.next_odd ? w.table[blk + 3] : 0;
    return q;
}

/* Runs pair(blk, parity, middle) over the warpgroup's pairs: the middle ones from
 * one copy of the step without the tests, then the last one or two. */
template <typename Step>
__device__ __forceinline__ void v3_for_each_pair(const v3_state &w, Step &&step) {
    int blk = w.block_begin;
    unsigned parity = 0;
#pragma unroll 1
    for (; blk + 3 < w.block_end; blk += 2, parity ^= 1) step(blk, parity, std::true_type{});
#pragma unroll 1
    for (; blk < w.block_end; blk += 2, parity ^= 1) step(blk, parity, std::false_type{});
}

/* Warpgroup 0: even blocks, O_left. Enters with S_even of the first block. */
__device__ __forceinline__ void v3_even_warpgroup(const v3_state &w, const v3_rows &r, const uint32_t (&q8)[4][4],
                                                  float (&o)[128], float &l_a, float &l_b) {
    float s[32];
    uint32_t p[4][4];
    if (w.block_begin < w.block_end) {
        v3_scores<0, kV3Boxes>(s, w.q_desc, q8, w.k_desc[0], w.full[0], 0, true);
        wgmma_wait<0>();
        keep_registers(s);
    }
    v3_for_each_pair(w, [&](int blk, unsigned parity, auto middle) {
        constexpr bool kMiddle = decltype(middle)::value;
        const v3_pair pair = v3_pair_at<kMiddle>(w, blk);
        const bool has_odd = pair.has_odd, next_even = pair.next_even, next_odd = pair.next_odd;
        const int even_block = pair.even_block, odd_block = pair.odd_block;
        float c_a, c_b, sum_a, sum_b;
        if (!kMiddle) v3_mask(s, blk * R1_MLA_BLOCK_SIZE, r);
        v3_softmax(s, r, w.scale_log2, w.row_max, w.c_even, c_a, c_b, sum_a, sum_b);
        named_barrier(kEvenScaled, kV3Threads);
        v3_scale_o(o, c_a, c_b);
        l_a = l_a * c_a + sum_a;
        l_b = l_b * c_b + sum_b;
        v3_pack_p(s, p);
        if (!kMiddle && (blk + 1) * R1_MLA_BLOCK_SIZE > w.n_max)
            v3_zero_v_rows(w.k_buf[0], 0, w.n_max - blk * R1_MLA_BLOCK_SIZE, w.t, kZeroedLeft);
        v3_pv_registers(o, p, w.v_desc[0]);
        if (next_even) v3_refill<8, 9>(w, 0, even_block); /* Q K_even^T is done */
        wgmma_wait<0>();
        keep_registers(o);

        named_barrier(kOddScaled, kV3Threads); /* c_odd written, m final for the pair */
        if (next_even) v3_refill<0, 4>(w, 0, even_block);
        const float o_a = has_odd ? w.c_odd[r.a] : 1.0f, o_b = has_odd ? w.c_odd[r.b] : 1.0f;
        v3_store_p(w.p_even, s, r, o_a, o_b);
        named_barrier(kEvenStored, kV3Threads);
        if (has_odd) {
            if (!kMiddle && (blk + 2) * R1_MLA_BLOCK_SIZE > w.n_max)
                v3_zero_v_rows(w.k_buf[1], 0, w.n_max - (blk + 1) * R1_MLA_BLOCK_SIZE, w.t, kZeroedLeft);
            named_barrier(kOddStored, kV3Threads);
            v3_scale_o(o, o_a, o_b);
            l_a *= o_a;
            l_b *= o_b;
            v3_pv_shared(o, w.p_odd_desc, w.v_desc[1]);
        }
        if (next_even) v3_scores<0, 4>(s, w.q_desc, q8, w.k_desc[0], w.full[0], parity ^ 1, true);
        wgmma_wait<4>(); /* P_odd V_odd,left done: boxes 0-3 of K_odd are free */
        if (next_odd) {
            v3_refill<0, 4>(w, 1, odd_block);
        }
        if (next_even) v3_scores<4, kV3Boxes>(s, w.q_desc, q8, w.k_desc[0], w.full[0], parity ^ 1, false);
        wgmma_wait<0>();
        keep_registers(o);
        keep_registers(s);
    });
}

/* Warpgroup 1: odd blocks, O_right. */
__device__ __forceinline__ void v3_odd_warpgroup(const v3_state &w, const v3_rows &r, const uint32_t (&q8)[4][4],
                                                 float (&o)[128], float &l_a, float &l_b) {
    float s[32];
    uint32_t p[4][4];
    if (w.block_begin + 1 < w.block_end) {
        v3_scores<0, kV3Boxes>(s, w.q_desc, q8, w.k_desc[1], w.full[1], 0, true);
        wgmma_wait<0>();
        keep_registers(s);
    }
    v3_for_each_pair(w, [&](int blk, unsigned parity, auto middle) {
        constexpr bool kMiddle = decltype(middle)::value;
        const v3_pair pair = v3_pair_at<kMiddle>(w, blk);
        const bool has_odd = pair.has_odd, next_even = pair.next_even, next_odd = pair.next_odd;
        const int even_block = pair.even_block, odd_block = pair.odd_block;
        float c_a, c_b, sum_a, sum_b;
        named_barrier(kEvenScaled, kV3Threads); /* row_max includes the even block */
        /* Without an odd block every score is masked: m stays, c = 1, P = 0. (Always
         * running the step keeps ptxas from serializing the wgmmas on s.) */
        if (!kMiddle) v3_mask(s, has_odd ? (blk + 1) * R1_MLA_BLOCK_SIZE : w.n_max, r);
        v3_softmax(s, r, w.scale_log2, w.row_max, w.c_odd, c_a, c_b, sum_a, sum_b);
        c_a *= w.c_even[r.a];
        c_b *= w.c_even[r.b];
        named_barrier(kOddScaled, kV3Threads);
        v3_scale_o(o, c_a, c_b);
        l_a = l_a * c_a + sum_a;
        l_b = l_b * c_b + sum_b;
        if (has_odd) {
            v3_pack_p(s, p);
            v3_store_p(w.p_odd, s, r, 1.0f, 1.0f);
            if (!kMiddle && (blk + 2) * R1_MLA_BLOCK_SIZE > w.n_max)
                v3_zero_v_rows(w.k_buf[1], 4, w.n_max - (blk + 1) * R1_MLA_BLOCK_SIZE, w.t, kZeroedRight);
            v3_pv_registers(o, p, descriptor_advance(w.v_desc[1], 4 * kV3Box));
        }
        if (next_odd) v3_refill<8, 9>(w, 1, odd_block); /* Q K_odd^T is done */
        named_barrier(kEvenStored, kV3Threads);
        if (!kMiddle && (blk + 1) * R1_MLA_BLOCK_SIZE > w.n_max)
            v3_zero_v_rows(w.k_buf[0], 4, w.n_max - blk * R1_MLA_BLOCK_SIZE, w.t, kZeroedRight);
        v3_pv_shared(o, w.p_even_desc, descriptor_advance(w.v_desc[0], 4 * kV3Box));
        if (has_odd) named_barrier(kOddStored, kV3Threads);
        if (next_odd) {
            wgmma_wait<1>(); /* P_odd V_odd,right done */
            v3_refill<4, 8>(w, 1, odd_block);
        }
        if (next_even) {
            wgmma_wait<0>(); /* P_even V_even,right done */
            v3_refill<4, 8>(w, 0, even_block);
        }
        if (next_odd) {
            v3_scores<4, kV3Boxes>(s, w.q_desc, q8, w.k_desc[1], w.full[1], parity ^ 1, true);
            v3_scores<0, 4>(s, w.q_desc, q8, w.k_desc[1], w.full[1], parity ^ 1, false);
        }
        wgmma_wait<0>();
        keep_registers(o);
        keep_registers(s);
    });
}

/* The epilogue: O / l of the tile's rows and their lse. Unsplit tiles write bf16
 * out: the accumulators go first to shared memory (the key buffers, free once
 * every wgmma is done; 64 rows of 1 KiB, 16-byte piece c of row r at piece
 * c ^ (r % 8), so the 8 rows a warp writes at once fall in different banks), then
 * each thread copies whole 16-byte pieces, consecutive threads along a row: the
 * global stores are coalesced (stored straight from the accumulators, 4 bytes a
 * lane and half a 32-byte sector per quad of lanes, the 64 stores per thread
 * throttled the load-store unit at the end of every tile: H100, b = 128, h = 128,
 * s_k = 4096, graph time 285 -> 274 us at s_q = 1 and 540 -> 530 us at s_q = 2).
 * Split tiles write fp32 partial sums straight from the accumulators: 8 bytes a
 * lane, a whole sector per quad; through shared memory they measured 0.7-3 %
 * slower (graph time at four split shapes). Rows past the sequence's s_q * h are not written. */
__device__ __forceinline__ void v3_store_out(uint8_t *stage, const float (&o)[128], const v3_rows &r,
                                             int warpgroup, const float (*row_sum)[kV2Rows],
                                             const float *row_max, int b, int row0, int rows_total,
                                             int split, const decode_params &p) {
    const int valid_rows = min(kV2Rows, rows_total - row0);
    if (p.splits == 1) {
        constexpr int kRowBytes = kV2Dv * 2, kPieces = kRowBytes / 16;
#pragma unroll
        for (int which = 0; which < 2; ++which) {
            const int row = which ? r.b : r.a;
            const float l = row_sum[0][row] + row_sum[1][row];
            const float inverse = l == 0.0f ? 0.0f : 1.0f / l; /* no key seen: 0 (NaN l stays NaN) */
#pragma unroll
            for (int j = 0; j < 32; ++j) {
                const int byte = 2 * (256 * warpgroup + 8 * j + r.column);
                uint8_t *at = stage + row * kRowBytes + ((((byte >> 4) ^ (row & 7)) << 4) | (byte & 15));
                *reinterpret_cast<__nv_bfloat162 *>(at) =
                    __floats2bfloat162_rn(o[4 * j + 2 * which] * inverse, o[4 * j + 2 * which + 1] * inverse);
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < valid_rows * kPieces; i += kV3Threads) {
            const int row = i / kPieces, piece = i % kPieces;
            const uint4 v = *reinterpret_cast<const uint4 *>(stage + row * kRowBytes + ((piece ^ (row & 7)) << 4));
            reinterpret_cast<uint4 *>(p.out + ((int64_t)b * rows_total + row0 + row) * kV2Dv)[piece] = v;
        }
    } else {
#pragma unroll
        for (int which = 0; which < 2; ++which) {
            const int row = which ? r.b : r.a;
            if (row >= valid_rows) continue;
            const float l = row_sum[0][row] + row_sum[1][row];
            const float inverse = l == 0.0f ? 0.0f : 1.0f / l;
            float *dst = p.partial_out + (((int64_t)b * rows_total + row0 + row) * p.splits + split) * kV2Dv +
                         256 * warpgroup + r.column;
#pragma unroll
            for (int j = 0; j < 32; ++j)
                *reinterpret_cast<float2 *>(dst + 8 * j) =
                    make_float2(o[4 * j + 2 * which] * inverse, o[4 * j + 2 * which + 1] * inverse);
        }
    }
    if (threadIdx.x < valid_rows) {
        const int row = threadIdx.x;
        const float l = row_sum[0][row] + row_sum[1][row], m = row_max[row];
        const float lse = l == 0.0f ? -INFINITY : (m + log2f(l)) * 0.6931471805599453f;
        const int64_t global_row = (int64_t)b * rows_total + row0 + row;
        if (p.splits == 1) {
            if (p.lse) p.lse[global_row] = lse;
        } else {
            p.partial_lse[global_row * p.splits + split] = lse;
        }
    }
}

#endif /* R1LAB_SM90A */

__global__ void __launch_bounds__(kV3Threads, 1)
    decode_split_kernel_v3(const __grid_constant__ CUtensorMap q_map,
                           const __grid_constant__ CUtensorMap cache_map, decode_params p) {
#ifdef R1LAB_SM90A
    extern __shared__ uint8_t shared_raw[];
    __shared__ unsigned long long q_full, full[2][kV3Boxes];
    __shared__ float row_max[kV2Rows], c_even[kV2Rows], c_odd[kV2Rows], row_sum[2][kV2Rows];
    uint8_t *q_buf = (uint8_t *)(((uintptr_t)shared_raw + 1023) & ~(uintptr_t)1023);

    const int split = blockIdx.x, row0 = blockIdx.y * kV2Rows, b = blockIdx.z;
    const int warpgroup = threadIdx.x / 128, t = threadIdx.x % 128;
    const int rows_total = p.S * p.H;
    const int n_seq = p.seq_lens[b];

    v3_state w;
    w.q_buf = q_buf;
    w.k_buf[0] = q_buf + kV3BlockBytes;
    w.k_buf[1] = q_buf + 2 * kV3BlockBytes;
    w.p_even = q_buf + 3 * kV3BlockBytes;
    w.p_odd = q_buf + 8 * kV3Box; /* Q's box 8, once it sits in registers */
    w.q_desc = swizzled_tile_descriptor(w.q_buf);
    for (int i = 0; i < 2; ++i) {
        w.k_desc[i] = swizzled_tile_descriptor(w.k_buf[i]);
        w.v_desc[i] = swizzled_mn_descriptor(w.k_buf[i], kV3Box);
    }
    w.p_even_desc = swizzled_tile_descriptor(w.p_even);
    w.p_odd_desc = swizzled_tile_descriptor(w.p_odd);
    w.full[0] = full[0];
    w.full[1] = full[1];
    w.row_max = row_max;
    w.c_even = c_even;
    w.c_odd = c_odd;
    w.cache_map = &cache_map;
    w.table = p.block_table + (int64_t)b * p.max_blocks;
    w.t = t;
    w.scale_log2 = p.scale * 1.4426950408889634f;
    /* This tile's key range, as in v2. */
    w.n_max = v2_keys_seen(p, n_seq, min(rows_total, row0 + kV2Rows) - 1);
    const int blocks = (w.n_max + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
    const int per_split = (blocks + p.splits - 1) / p.splits;
    w.block_begin = min(blocks, split * per_split);
    w.block_end = min(blocks, w.block_begin + per_split);

    v3_rows r;
    r.lane = t & 31;
    r.a = 16 * (t / 32) + r.lane / 4;
    r.b = r.a + 8;
    r.column = 2 * (r.lane & 3);
    r.seen_a = row0 + r.a < rows_total ? v2_keys_seen(p, n_seq, row0 + r.a) : w.n_max;
    r.seen_b = row0 + r.b < rows_total ? v2_keys_seen(p, n_seq, row0 + r.b) : w.n_max;

    const bool any = w.block_begin < w.block_end;
    if (threadIdx.x == 0) {
        barrier_init(&q_full, 1);
        for (int box = 0; box < kV3Boxes; ++box) {
            barrier_init(&full[0][box], 1);
            barrier_init(&full[1][box], 1);
        }
        barrier_init_fence();
        /* the first two blocks' boxes (a box's later loads are armed by its waiter) */
        for (int box = 0; box < kV3Boxes; ++box) {
            barrier_arrive_expect_bytes(&full[0][box], kV3Box);
            barrier_arrive_expect_bytes(&full[1][box], kV3Box);
        }
    }
    if (threadIdx.x < kV2Rows) row_max[threadIdx.x] = -INFINITY;
    __syncthreads();
    if (threadIdx.x == 0 && any) {
        /* Rows past this sequence's s_q * h are other sequences' queries or zeros
         * past the tensor: computed, never written. */
        barrier_arrive_expect_bytes(&q_full, kV3BlockBytes);
        for (int box = 0; box < kV3Boxes; ++box)
            tma_load_2d(q_buf + box * kV3Box, &q_map, box * 64, b * rows_total + row0, &q_full);
        v3_load_boxes<0, kV3Boxes>(&cache_map, w.k_buf[0], w.table[w.block_begin], full[0]);
        if (w.block_begin + 1 < w.block_end)
            v3_load_boxes<0, kV3Boxes>(&cache_map, w.k_buf[1], w.table[w.block_begin + 1], full[1]);
    }
    /* Q's dims 512..575 in registers, as the A operand of their wgmmas. */
    uint32_t q8[4][4] = {};
    if (any) {
        barrier_wait(&q_full, 0);
        const uint32_t box8 = shared_address(q_buf + 8 * kV3Box);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int part = 0; part < 4; ++part) {
                const int row = (part & 1) ? r.b : r.a, chunk = 2 * kk + (part >> 1);
                asm volatile("ld.shared.u32 %0, [%1];\n"
                             : "=r"(q8[kk][part])
                             : "r"(box8 + row * 128 + ((chunk ^ (row & 7)) << 4) + 2 * r.column));
            }
    }
    __syncthreads(); /* box 8 may now be overwritten (P_odd) */

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.0f;
    float l_a = 0.0f, l_b = 0.0f;
    if (warpgroup == 0) v3_even_warpgroup(w, r, q8, o, l_a, l_b);
    else v3_odd_warpgroup(w, r, q8, o, l_a, l_b);
    /* The combine (a programmatic dependent launch) may start its CTAs now; it
     * waits for this grid's results before reading them. */
    let_next_kernel_launch();

    /* Row sums: the quad, then the two warpgroups. */
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, x);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, x);
    }
    if ((r.lane & 3) == 0) {
        row_sum[warpgroup][r.a] = l_a;
        row_sum[warpgroup][r.b] = l_b;
    }
    __syncthreads(); /* also: every wgmma is done, the key buffers are free */
    v3_store_out(w.k_buf[0], o, r, warpgroup, row_sum, row_max, b, row0, rows_total, split, p);
#endif
}

int choose_splits(const r1_mla_decode_desc *desc) {
    const int64_t groups = (desc->n_heads + kHeadGroup - 1) / kHeadGroup;
    const int64_t ctas = desc->batch * desc->s_q * groups;
    int64_t splits = (2 * multiprocessor_count() + ctas - 1) / ctas;
    if (splits > desc->max_blocks_per_seq) splits = desc->max_blocks_per_seq;
    if (splits > kMaxSplits) splits = kMaxSplits;
    return splits < 1 ? 1 : (int)splits;
}

/* v2 applies to: dim_qk 576 / dim_v 512, h a multiple of 16 up to 128, s_q 1 or 2,
 * 16-byte aligned q and cache, batch <= 65535; R1LAB_MLA_V1=1 forces v1. */
bool use_v2(const r1_mla_decode_desc *desc) {
    const char *force_v1 = getenv("R1LAB_MLA_V1");
    if (force_v1 && force_v1[0] == '1') return false;
    /* v2 needs 225 KiB of shared memory per CTA (sm_90) */
    if (shared_memory_per_block_optin() < kV2Shared) return false;
    return desc->dim_qk == kV2D && desc->dim_v == kV2Dv && desc->n_heads % 16 == 0 &&
           desc->n_heads <= 128 && (desc->s_q == 1 || desc->s_q == 2) && desc->batch <= 65535;
}

/* v3 runs where v2 would, on sm_90 (compute capability 9.0, where the sm_90a code
 * exists); R1LAB_MLA_V3=0 keeps v2 (for comparisons). */
bool v3_enabled() {
    const char *text = getenv("R1LAB_MLA_V3");
    return !(text && text[0] == '0') && device_capability() == 90;
}

/* v2's splits: the count that minimises, in units of one key block's time,
 *   (waves of CTAs) x (blocks per CTA + 2, the Q load and epilogue)
 *   + when split: 1 for the combine launch, plus the combine's traffic: the
 *     fp32 partial sums (rows x splits x 2 KiB) written and read back, one
 *     unit per kCombineBytesPerBlock;
 * one CTA per SM. Ties go to more splits. The traffic term was fitted on the
 * H100 (b = 1, s_k = 8192, graph time by split count): 64 splits were best at
 * h = 16 (11.9 us against 14.0 with 32) and 32 at h = 128 (17.1 against 20.1
 * with 64, whose combine moves 2 x 16 MiB); a block took ~1.5 us there. */
constexpr double kCombineBytesPerBlock = 4.0 * 1024 * 1024;

int choose_splits_v2(const r1_mla_decode_desc *desc) {
    const int64_t rows = desc->batch * desc->s_q * desc->n_heads;
    const int64_t tiles = desc->batch * ((desc->s_q * desc->n_heads + kV2Rows - 1) / kV2Rows);
    const int64_t blocks = desc->max_blocks_per_seq;
    int best = 1;
    double best_cost = -1;
    for (int64_t s = 1; s <= kMaxSplits && s <= (blocks < 1 ? 1 : blocks); ++s) {
        const int64_t waves = (tiles * s + multiprocessor_count() - 1) / multiprocessor_count();
        const double combine_bytes = 2.0 * (double)rows * (double)s * kV2Dv * sizeof(float);
        const double cost = (double)(waves * ((blocks + s - 1) / s + 2)) +
                            (s > 1 ? 1.0 + combine_bytes / kCombineBytesPerBlock : 0.0);
        if (best_cost < 0 || cost <= best_cost) {
            best_cost = cost;
            best = (int)s;
        }
    }
    return best;
}

size_t align_up(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* The wide combine, as a programmatic dependent launch of the split kernel on
 * sm_90 (where griddepcontrol exists), an ordinary launch elsewhere. */
r1_status launch_combine_wide(const decode_params &p, int64_t rows, cudaStream_t stream) {
    static_assert(kV2Dv % 4 == 0, "the wide combine loads 4 columns at a time");
    cudaLaunchAttribute early_launch = early_launch_attribute();
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)rows, (unsigned)((p.Dv + kCombineColumns - 1) / kCombineColumns));
    config.blockDim = dim3(kCombineWarps * 32);
    config.stream = stream;
    config.attrs = &early_launch;
    config.numAttrs = early_launch_supported() ? 1 : 0;
    CUDA_TRY(cudaLaunchKernelEx(&config, decode_combine_kernel_wide, p));
    return R1_OK;
}

} // namespace

extern "C" size_t mla_decode_workspace_size_cuda(const r1_mla_decode_desc *desc) {
    const size_t rows = (size_t)(desc->batch * desc->s_q * desc->n_heads);
    size_t splits = (size_t)choose_splits(desc);
    if (use_v2(desc) && (size_t)choose_splits_v2(desc) > splits) splits = (size_t)choose_splits_v2(desc);
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
    const bool v2 = use_v2(desc) && ((uintptr_t)q % 16 == 0) && ((uintptr_t)cache->blocks % 16 == 0) &&
                    ((uintptr_t)out % 4 == 0);
    p.splits = v2 ? choose_splits_v2(desc) : choose_splits(desc);
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

    CUtensorMap q_map, cache_map;
    const bool v3 = v2 && v3_enabled() && (int64_t)cache->num_blocks * R1_MLA_BLOCK_SIZE < INT32_MAX &&
                    encode_swizzled_map(&q_map, q, 2, rows, kV2D, kV2D * 2, 64) &&
                    encode_swizzled_map(&cache_map, cache->blocks, 2, cache->num_blocks * R1_MLA_BLOCK_SIZE,
                                        kV2D, kV2D * 2, 64, CU_TENSOR_MAP_L2_PROMOTION_NONE);
    if (v3) {
        CUDA_TRY(allow_dynamic_shared_memory<decode_split_kernel_v3>(kV3Dynamic));
        dim3 grid((unsigned)p.splits, (unsigned)((p.S * p.H + kV2Rows - 1) / kV2Rows),
                  (unsigned)desc->batch);
        decode_split_kernel_v3<<<grid, kV3Threads, kV3Dynamic, stream>>>(q_map, cache_map, p);
        CUDA_TRY(cudaGetLastError());
        if (p.splits == 1) return R1_OK; /* v3 wrote out and lse itself */
    } else if (v2) {
        CUDA_TRY(allow_dynamic_shared_memory<decode_split_kernel_v2>(kV2Shared));
        dim3 grid((unsigned)p.splits, (unsigned)((p.S * p.H + kV2Rows - 1) / kV2Rows),
                  (unsigned)desc->batch);
        decode_split_kernel_v2<<<grid, kV2Threads, kV2Shared, stream>>>(p);
        CUDA_TRY(cudaGetLastError());
        if (p.splits == 1) return R1_OK; /* v2 wrote out and lse itself */
    } else {
        const size_t shared = (size_t)kHeadGroup * p.D * sizeof(float) +
                              (size_t)kHeadGroup * kTile * sizeof(float) + kHeadGroup * sizeof(float) +
                              (size_t)kTile * p.D * sizeof(__nv_bfloat16);
        CUDA_TRY(allow_dynamic_shared_memory<decode_split_kernel>(shared));
        dim3 grid((unsigned)p.splits, (unsigned)(desc->batch * desc->s_q),
                  (unsigned)((desc->n_heads + kHeadGroup - 1) / kHeadGroup));
        decode_split_kernel<<<grid, kThreads, shared, stream>>>(p);
        CUDA_TRY(cudaGetLastError());
    }
    if (v2) return launch_combine_wide(p, rows, stream); /* dim_v = kV2Dv */
    decode_combine_kernel<<<(unsigned)rows, 128, 0, stream>>>(p);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}
