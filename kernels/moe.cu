/*
 * kernels/moe.cu — MoE routing, dispatch, permute and combine on the GPU; the
 * SEMANTICS of include/r1lab/moe.h, same ids and dispatch arrays as ref/moe.c.
 *
 * Letters: T tokens, E experts, G groups, K slots, N = T*K pairs, d hidden.
 *
 * Kernels (v1: obviously correct first, then the fast paths):
 *   moe_scan_nonfinite      synchronous calls only: the smallest flat index of
 *                           a non-finite logit / bias entry (atomicMin), read
 *                           back before any routing work, so the status can
 *                           name the token as ref does.
 *   moe_route_generic       any mode and shape: one block per token; threads
 *                           compute the scores into shared memory, thread 0
 *                           selects groups and experts exactly as ref does
 *                           (serial scans, float64 sums in index order).
 *   moe_route_noaux_warp    the fused DeepSeek-V3 gate, one warp per token,
 *                           for E = 32*VPT (VPT <= 8) with groups of whole
 *                           lanes (E/G a multiple of VPT, E/G/VPT a power of 2)
 *                           and K <= 32: each lane holds VPT experts (float4
 *                           loads) -> sigmoid -> +bias -> per-lane top-2 ->
 *                           butterfly merge of top-2 pairs inside the group's
 *                           lanes -> group sum -> every lane ranks its group
 *                           against all G group sums (kept if rank <
 *                           topk_group) -> K rounds of a warp arg-max over
 *                           (value desc, index asc) -> the K unbiased scores,
 *                           summed in float64 (exact for these magnitudes, so
 *                           the same bits as ref), normalized, scaled.
 *   moe_dispatch_block      one block: counts (shared atomics), a warp scan to
 *                           offsets and padded offsets, the padding and
 *                           block_expert, then the stable placement in chunks
 *                           of blockDim pairs taken in flat order: within a
 *                           warp, __match_any_sync groups lanes with the same
 *                           expert (rank = lower lanes of the group); across
 *                           warps, per-warp per-expert counts in shared memory;
 *                           a per-expert cursor carries chunk to chunk.
 *   moe_permute_rows        one block per output row, 16-byte vector copies
 *                           (scalar path when a row is not 16-byte aligned).
 *   moe_combine_rows        one block per token, 16-byte vector loads of the K
 *                           expert rows (8 bf16 or 4 f32), float32 accumulators
 *                           in slot order, + shared, one rounding on store.
 *   moe_gate_gemm           one warp per logit, float64 sums (not a fast GEMM:
 *                           the teacher's gate GEMM belongs to qgemm / cuBLAS).
 */
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "core/internal.h"
}
#include "core/moe_math.h"

#define CUDA_TRY(call)                                                                      \
    do {                                                                                    \
        cudaError_t error_ = (call);                                                        \
        if (error_ != cudaSuccess)                                                          \
            return r1_fail(R1_ECUDA, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call,      \
                           cudaGetErrorString(error_));                                     \
    } while (0)

namespace {

constexpr unsigned FULL_MASK = 0xffffffffu;

__device__ __forceinline__ bool ranks_before(float a, int ia, float b, int ib) {
    return a > b || (a == b && ia < ib);
}

/* ---- non-finite scan ------------------------------------------------------------ */

__global__ void moe_scan_nonfinite(const float *logits, long long count, const float *bias,
                                   int experts, unsigned long long *first_bad) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        if (!isfinite(logits[i])) atomicMin(&first_bad[0], (unsigned long long)i);
    if (bias && blockIdx.x == 0)
        for (int e = threadIdx.x; e < experts; e += blockDim.x)
            if (!isfinite(bias[e])) atomicMin(&first_bad[1], (unsigned long long)e);
}

/* ---- generic routing: one block per token, thread 0 selects ---------------------- */

struct route_params {
    int E, K, G, topk_group, routing, norm;
    float factor;
};

__global__ void moe_route_generic(const float *logits, const float *bias, int32_t *ids,
                                  float *weights, route_params p) {
    extern __shared__ float shared[];
    float *q = shared;             /* (E) weights' source: p or s */
    float *c = shared + p.E;       /* (E) ranked score: l or s+b  */
    float *group = shared + 2 * p.E; /* (G <= E) group scores     */
    unsigned char *allowed = (unsigned char *)(shared + 3 * p.E); /* (E) */
    __shared__ int bad;
    const long long t = blockIdx.x;
    const float *l = logits + t * p.E;
    if (threadIdx.x == 0) bad = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < p.E; i += blockDim.x) {
        float v = l[i];
        if (!isfinite(v) || (bias && !isfinite(bias[i]))) atomicOr(&bad, 1);
        if (p.routing == R1_MOE_NOAUX_TC) {
            q[i] = r1_moe_sigmoid_inline(v);
            c[i] = __fadd_rn(q[i], bias ? bias[i] : 0.0f);
        } else {
            c[i] = v;
        }
        allowed[i] = 1;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    int32_t *out_ids = ids + t * p.K;
    float *out_w = weights + t * p.K;
    if (bad) {
        for (int k = 0; k < p.K; ++k) {
            out_ids[k] = -1;
            out_w[k] = __int_as_float(0x7fc00000);
        }
        return;
    }
    if (p.routing != R1_MOE_NOAUX_TC) {
        float m = c[0];
        for (int i = 1; i < p.E; ++i) m = c[i] > m ? c[i] : m;
        double sum = 0.0;
        for (int i = 0; i < p.E; ++i) {
            q[i] = r1_moe_exp_inline(__fsub_rn(c[i], m));
            sum += q[i];
        }
        for (int i = 0; i < p.E; ++i) q[i] = (float)(q[i] / sum);
    }
    if (p.routing != R1_MOE_SOFTMAX_TOPK) {
        const int size = p.E / p.G;
        for (int g = 0; g < p.G; ++g) {
            const float *v = c + g * size;
            int first = 0;
            for (int i = 1; i < size; ++i)
                if (ranks_before(v[i], i, v[first], first)) first = i;
            float score = v[first];
            if (p.routing == R1_MOE_NOAUX_TC) {
                int second = first == 0 ? 1 : 0;
                for (int i = 0; i < size; ++i)
                    if (i != first && ranks_before(v[i], i, v[second], second)) second = i;
                score = __fadd_rn(v[first], v[second]);
            }
            group[g] = score;
        }
        for (int g = 0; g < p.G; ++g) {
            int rank = 0;
            for (int h = 0; h < p.G; ++h) rank += ranks_before(group[h], h, group[g], g);
            for (int i = 0; i < size; ++i) allowed[g * size + i] = rank < p.topk_group;
        }
    }
    double sum = 0.0;
    for (int k = 0; k < p.K; ++k) {
        int best = -1;
        for (int i = 0; i < p.E; ++i)
            if (allowed[i] && (best < 0 || ranks_before(c[i], i, c[best], best))) best = i;
        out_ids[k] = best;
        allowed[best] = 0;
        sum += q[best];
    }
    for (int k = 0; k < p.K; ++k) {
        double w = q[out_ids[k]];
        if (p.norm) w = w / (sum + 1e-20);
        out_w[k] = (float)(w * (double)p.factor);
    }
}

/* ---- the fused DeepSeek-V3 gate: one warp per token --------------------------------- */

template <int VPT>
__global__ void moe_route_noaux_warp(const float *logits, const float *bias, int32_t *ids,
                                     float *weights, long long tokens, route_params p,
                                     int lanes_per_group) {
    const int lane = threadIdx.x & 31;
    const long long t = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (t >= tokens) return;
    const float *l = logits + t * p.E + lane * VPT;
    float q[VPT], c[VPT];
    bool finite = true;
    if (VPT % 4 == 0) {
#pragma unroll
        for (int v = 0; v < VPT; v += 4) {
            float4 x = *reinterpret_cast<const float4 *>(l + v);
            q[v] = x.x; q[v + 1] = x.y; q[v + 2] = x.z; q[v + 3] = x.w;
        }
    } else {
#pragma unroll
        for (int v = 0; v < VPT; ++v) q[v] = l[v];
    }
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
        float b = bias ? bias[lane * VPT + v] : 0.0f;
        finite = finite && isfinite(q[v]) && isfinite(b);
        q[v] = r1_moe_sigmoid_inline(q[v]);
        c[v] = __fadd_rn(q[v], b);
    }
    if (__any_sync(FULL_MASK, !finite)) {
        if (lane < p.K) {
            ids[t * p.K + lane] = -1;
            weights[t * p.K + lane] = __int_as_float(0x7fc00000);
        }
        return;
    }
    /* Top two values of the lane, then of the group's lanes (values only: the
     * sum does not depend on which of two equal values is taken). */
    float top1 = -INFINITY, top2 = -INFINITY;
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
        if (c[v] > top1) {
            top2 = top1;
            top1 = c[v];
        } else if (c[v] > top2) {
            top2 = c[v];
        }
    }
    for (int offset = lanes_per_group / 2; offset > 0; offset /= 2) {
        float o1 = __shfl_xor_sync(FULL_MASK, top1, offset);
        float o2 = __shfl_xor_sync(FULL_MASK, top2, offset);
        float n1 = fmaxf(top1, o1);
        float n2 = top1 >= o1 ? fmaxf(top2, o1) : fmaxf(top1, o2);
        top1 = n1;
        top2 = n2;
    }
    const float group_score = __fadd_rn(top1, top2);
    const int my_group = lane / lanes_per_group;
    int rank = 0;
    for (int h = 0; h < p.G; ++h) {
        float other = __shfl_sync(FULL_MASK, group_score, h * lanes_per_group);
        rank += ranks_before(other, h, group_score, my_group);
    }
    if (rank >= p.topk_group) {
#pragma unroll
        for (int v = 0; v < VPT; ++v) c[v] = -INFINITY;
    }
    /* K rounds of a warp arg-max over (value desc, index asc). */
    int my_id = -1;
    float my_q = 0.0f;
    unsigned taken = 0;
    for (int k = 0; k < p.K; ++k) {
        float best = -INFINITY;
        int best_index = 0x7fffffff;
#pragma unroll
        for (int v = 0; v < VPT; ++v) {
            int index = lane * VPT + v;
            if (!(taken & (1u << v)) && ranks_before(c[v], index, best, best_index)) {
                best = c[v];
                best_index = index;
            }
        }
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
            float ov = __shfl_xor_sync(FULL_MASK, best, offset);
            int oi = __shfl_xor_sync(FULL_MASK, best_index, offset);
            if (ranks_before(ov, oi, best, best_index)) {
                best = ov;
                best_index = oi;
            }
        }
        const int owner = best_index / VPT;
        float chosen_q = 0.0f;
        if (lane == owner) {
#pragma unroll
            for (int v = 0; v < VPT; ++v)
                if (v == best_index - owner * VPT) {
                    chosen_q = q[v];
                    taken |= 1u << v;
                }
        }
        chosen_q = __shfl_sync(FULL_MASK, chosen_q, owner);
        if (lane == k) {
            my_id = best_index;
            my_q = chosen_q;
        }
    }
    double sum = lane < p.K ? (double)my_q : 0.0;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, offset);
    if (lane < p.K) {
        double w = my_q;
        if (p.norm) w = w / (sum + 1e-20);
        ids[t * p.K + lane] = my_id;
        weights[t * p.K + lane] = (float)(w * (double)p.factor);
    }
}

/* ---- dispatch: one block --------------------------------------------------------------- */

struct dispatch_params {
    long long N;
    int E, block, warps;
    long long capacity, blocks;
};

__global__ void moe_dispatch_block(const int32_t *ids, dispatch_params p, int32_t *counts,
                                   int32_t *offsets, int32_t *permutation, int32_t *inverse,
                                   int32_t *padded_offsets, int32_t *sorted_padded,
                                   int32_t *block_expert, int32_t *padded_total,
                                   unsigned long long *first_bad) {
    extern __shared__ int32_t s[];
    int32_t *s_count = s;                     /* (E)            */
    int32_t *s_offset = s + p.E;              /* (E+1)          */
    int32_t *s_padded = s + 2 * p.E + 1;      /* (E+1)          */
    int32_t *s_cursor = s + 3 * p.E + 2;      /* (E)            */
    int32_t *s_warp = s + 4 * p.E + 2;        /* (warps, E)     */
    __shared__ int s_bad;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int threads = blockDim.x;
    if (tid == 0) s_bad = 0;
    for (int e = tid; e < p.E; e += threads) {
        s_count[e] = 0;
        s_cursor[e] = 0;
    }
    for (int i = tid; i < p.warps * p.E; i += threads) s_warp[i] = 0;
    __syncthreads();
    for (long long j = tid; j < p.N; j += threads) {
        int e = ids[j];
        if (e < 0 || e >= p.E) {
            atomicOr(&s_bad, 1);
            atomicMin(first_bad, (unsigned long long)j);
        } else {
            atomicAdd(&s_count[e], 1);
        }
    }
    __syncthreads();
    if (s_bad) return;
    /* Warp 0: exclusive scans of counts and padded counts. */
    if (warp == 0) {
        const int per_lane = (p.E + 31) / 32;
        const int begin = lane * per_lane;
        int local = 0, local_padded = 0;
        for (int e = begin; e < begin + per_lane && e < p.E; ++e) {
            local += s_count[e];
            local_padded += (s_count[e] + p.block - 1) / p.block * p.block;
        }
        int scan = local, scan_padded = local_padded;
        for (int offset = 1; offset < 32; offset *= 2) {
            int a = __shfl_up_sync(FULL_MASK, scan, offset);
            int b = __shfl_up_sync(FULL_MASK, scan_padded, offset);
            if (lane >= offset) {
                scan += a;
                scan_padded += b;
            }
        }
        int running = scan - local, running_padded = scan_padded - local_padded;
        for (int e = begin; e < begin + per_lane && e < p.E; ++e) {
            s_offset[e] = running;
            s_padded[e] = running_padded;
            running += s_count[e];
            running_padded += (s_count[e] + p.block - 1) / p.block * p.block;
        }
        if (lane == 31) {
            s_offset[p.E] = scan;
            s_padded[p.E] = scan_padded;
        }
    }
    __syncthreads();
    for (int e = tid; e <= p.E; e += threads) {
        offsets[e] = s_offset[e];
        if (e < p.E) counts[e] = s_count[e];
        if (padded_offsets) padded_offsets[e] = s_padded[e];
    }
    if (padded_offsets) {
        const int total = s_padded[p.E];
        if (tid == 0) *padded_total = total;
        /* Padding inside each expert's rows, and the tail after the total. */
        for (int e = tid; e < p.E; e += threads)
            for (int i = s_padded[e] + s_count[e]; i < s_padded[e + 1]; ++i) sorted_padded[i] = (int32_t)p.N;
        for (long long i = total + tid; i < p.capacity; i += threads) sorted_padded[i] = (int32_t)p.N;
        for (long long b = tid; b < p.blocks; b += threads) {
            long long row = b * p.block;
            int expert = -1;
            if (row < total) {
                int lo = 0, hi = p.E - 1; /* the last e with s_padded[e] <= row */
                while (lo < hi) {
                    int mid = (lo + hi + 1) / 2;
                    if (s_padded[mid] <= row) lo = mid;
                    else hi = mid - 1;
                }
                expert = lo;
            }
            block_expert[b] = expert;
        }
    }
    /* Stable placement, chunk by chunk in flat order. */
    for (long long base = 0; base < p.N; base += threads) {
        const long long j = base + tid;
        const int e = j < p.N ? ids[j] : p.E; /* p.E: no expert */
        const unsigned peers = __match_any_sync(FULL_MASK, e);
        const int lane_rank = __popc(peers & ((1u << lane) - 1));
        if (e < p.E && lane_rank == 0) s_warp[warp * p.E + e] = __popc(peers);
        __syncthreads();
        if (e < p.E) {
            int before = s_cursor[e] + lane_rank;
            for (int w = 0; w < warp; ++w) before += s_warp[w * p.E + e];
            const int position = s_offset[e] + before;
            permutation[position] = (int32_t)j;
            inverse[j] = position;
            if (padded_offsets) sorted_padded[s_padded[e] + before] = (int32_t)j;
        }
        __syncthreads();
        for (int x = tid; x < p.E; x += threads) {
            int add = 0;
            for (int w = 0; w < p.warps; ++w) {
                add += s_warp[w * p.E + x];
                s_warp[w * p.E + x] = 0;
            }
            s_cursor[x] += add;
        }
        __syncthreads();
    }
}

/* ---- permute and combine -------------------------------------------------------------- */

__global__ void moe_permute_rows(const char *x, const int32_t *permutation, char *x_sorted,
                                 int K, long long row_bytes, int vector) {
    const long long j = blockIdx.x;
    const long long token = permutation[j] / K;
    const char *source = x + token * row_bytes;
    char *destination = x_sorted + j * row_bytes;
    if (vector) {
        const uint4 *s = reinterpret_cast<const uint4 *>(source);
        uint4 *d = reinterpret_cast<uint4 *>(destination);
        for (long long i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) d[i] = s[i];
    } else {
        const uint16_t *s = reinterpret_cast<const uint16_t *>(source);
        uint16_t *d = reinterpret_cast<uint16_t *>(destination);
        for (long long i = threadIdx.x; i < row_bytes / 2; i += blockDim.x) d[i] = s[i];
    }
}

__device__ __forceinline__ float load_element(const void *rows, long long index, bool bf16) {
    return bf16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(rows)[index])
                : reinterpret_cast<const float *>(rows)[index];
}

template <bool BF16>
__global__ void moe_combine_rows(const void *expert_out, const int32_t *inverse,
                                 const float *weights, const void *shared, void *y, int K,
                                 long long d, int vector) {
    constexpr int PER = BF16 ? 8 : 4; /* elements per 16 bytes */
    __shared__ float s_w[R1_MOE_MAX_TOP_K];
    __shared__ long long s_row[R1_MOE_MAX_TOP_K];
    const long long t = blockIdx.x;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        s_w[k] = weights[t * K + k];
        s_row[k] = inverse[t * K + k];
    }
    __syncthreads();
    if (vector) {
        for (long long v = threadIdx.x; v < d / PER; v += blockDim.x) {
            float acc[PER];
#pragma unroll
            for (int i = 0; i < PER; ++i) acc[i] = 0.0f;
            for (int k = 0; k < K; ++k) {
                const uint4 raw = reinterpret_cast<const uint4 *>(expert_out)[(s_row[k] * d) / PER + v];
                const float w = s_w[k];
                if (BF16) {
                    const __nv_bfloat16 *h = reinterpret_cast<const __nv_bfloat16 *>(&raw);
#pragma unroll
                    for (int i = 0; i < PER; ++i) acc[i] = fmaf(w, __bfloat162float(h[i]), acc[i]);
                } else {
                    const float *f = reinterpret_cast<const float *>(&raw);
#pragma unroll
                    for (int i = 0; i < PER; ++i) acc[i] = fmaf(w, f[i], acc[i]);
                }
            }
            if (shared) {
                const uint4 raw = reinterpret_cast<const uint4 *>(shared)[(t * d) / PER + v];
#pragma unroll
                for (int i = 0; i < PER; ++i)
                    acc[i] += BF16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(&raw)[i])
                                   : reinterpret_cast<const float *>(&raw)[i];
            }
            uint4 packed;
            if (BF16) {
                __nv_bfloat16 *h = reinterpret_cast<__nv_bfloat16 *>(&packed);
#pragma unroll
                for (int i = 0; i < PER; ++i) h[i] = __float2bfloat16_rn(acc[i]);
            } else {
                float *f = reinterpret_cast<float *>(&packed);
#pragma unroll
                for (int i = 0; i < PER; ++i) f[i] = acc[i];
            }
            reinterpret_cast<uint4 *>(y)[(t * d) / PER + v] = packed;
        }
    } else {
        for (long long i = threadIdx.x; i < d; i += blockDim.x) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k) acc = fmaf(s_w[k], load_element(expert_out, s_row[k] * d + i, BF16), acc);
            if (shared) acc += load_element(shared, t * d + i, BF16);
            if (BF16) reinterpret_cast<__nv_bfloat16 *>(y)[t * d + i] = __float2bfloat16_rn(acc);
            else reinterpret_cast<float *>(y)[t * d + i] = acc;
        }
    }
}

/* ---- gate GEMM: one warp per logit, float64 sums ------------------------------------------ */

__global__ void moe_gate_gemm(const float *x, const float *w, float *logits, long long T, int E,
                              long long d) {
    const long long warp_id = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (warp_id >= T * E) return;
    const long long t = warp_id / E, e = warp_id % E;
    double sum = 0.0;
    for (long long i = lane; i < d; i += 32) sum += (double)x[t * d + i] * (double)w[e * d + i];
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, offset);
    if (lane == 0) logits[t * E + e] = (float)sum;
}

/* Which fused-gate shape applies: VPT, or 0 for the generic kernel. */
int fused_vpt(const r1_moe_desc *desc, int *lanes_per_group) {
    if (desc->routing != R1_MOE_NOAUX_TC || desc->experts % 32 != 0 || desc->top_k > 32) return 0;
    const int vpt = desc->experts / 32;
    if (vpt != 1 && vpt != 2 && vpt != 4 && vpt != 8) return 0;
    const int size = desc->experts / desc->n_group;
    if (size % vpt != 0) return 0;
    const int lanes = size / vpt;
    if ((lanes & (lanes - 1)) != 0) return 0;
    *lanes_per_group = lanes;
    return vpt;
}

/* Warps of the dispatch block: its shared memory, (4E + 2 + warps*E) int32,
 * stays under the default 48 KiB for every E <= 1024. */
int dispatch_warps(int E) {
    int warps = 6144 / E;
    return warps < 1 ? 1 : warps > 32 ? 32 : warps;
}

} // namespace

/* ---- host side ------------------------------------------------------------------------- */

extern "C" size_t moe_route_workspace_size_cuda(const r1_moe_desc *desc) {
    (void)desc;
    return 2 * sizeof(unsigned long long);
}

extern "C" size_t moe_dispatch_workspace_size_cuda(const r1_moe_desc *desc) {
    (void)desc;
    return sizeof(unsigned long long);
}

extern "C" r1_status moe_gate_logits_cuda(const r1_moe_desc *desc, const float *x,
                                          const float *gate_weight, float *logits, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    const long long warps = desc->tokens * desc->experts;
    const int threads = 256;
    const long long blocks = (warps * 32 + threads - 1) / threads;
    moe_gate_gemm<<<(unsigned)blocks, threads, 0, s>>>(x, gate_weight, logits, desc->tokens,
                                                       desc->experts, desc->hidden);
    CUDA_TRY(cudaGetLastError());
    if (!desc->asynchronous) CUDA_TRY(cudaStreamSynchronize(s));
    return R1_OK;
}

extern "C" r1_status moe_route_cuda(const r1_moe_desc *desc, const float *logits,
                                    const float *bias, int32_t *ids, float *weights,
                                    void *workspace, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    const long long T = desc->tokens;
    const int E = desc->experts;
    if (!desc->asynchronous) {
        unsigned long long *first_bad = (unsigned long long *)workspace;
        CUDA_TRY(cudaMemsetAsync(first_bad, 0xff, 2 * sizeof(unsigned long long), s));
        const long long count = T * E;
        long long blocks = (count + 255) / 256;
        if (blocks > 1024) blocks = 1024;
        moe_scan_nonfinite<<<(unsigned)blocks, 256, 0, s>>>(logits, count, bias, E, first_bad);
        CUDA_TRY(cudaGetLastError());
        unsigned long long found[2];
        CUDA_TRY(cudaMemcpyAsync(found, first_bad, sizeof found, cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaStreamSynchronize(s));
        if (found[0] != ~0ull) {
            float value;
            CUDA_TRY(cudaMemcpy(&value, logits + found[0], sizeof value, cudaMemcpyDeviceToHost));
            return r1_fail(R1_ENUMERIC, "token %lld: logit of expert %lld is %g",
                           (long long)(found[0] / (unsigned long long)E),
                           (long long)(found[0] % (unsigned long long)E), (double)value);
        }
        if (found[1] != ~0ull) {
            float value;
            CUDA_TRY(cudaMemcpy(&value, bias + found[1], sizeof value, cudaMemcpyDeviceToHost));
            return r1_fail(R1_ENUMERIC, "bias[%lld] = %g: must be finite", (long long)found[1],
                           (double)value);
        }
    }
    route_params p = {E, desc->top_k, desc->n_group, desc->topk_group, (int)desc->routing,
                      desc->norm_topk_prob, desc->routed_scaling_factor};
    if (p.routing == R1_MOE_SOFTMAX_TOPK) p.G = 1;
    int lanes_per_group = 0;
    const int vpt = fused_vpt(desc, &lanes_per_group);
    const bool aligned = ((uintptr_t)logits % 16) == 0;
    if (vpt != 0 && (aligned || vpt < 4)) {
        const int warps_per_block = 4;
        const unsigned blocks = (unsigned)((T + warps_per_block - 1) / warps_per_block);
        switch (vpt) {
        case 1: moe_route_noaux_warp<1><<<blocks, 32 * warps_per_block, 0, s>>>(logits, bias, ids, weights, T, p, lanes_per_group); break;
        case 2: moe_route_noaux_warp<2><<<blocks, 32 * warps_per_block, 0, s>>>(logits, bias, ids, weights, T, p, lanes_per_group); break;
        case 4: moe_route_noaux_warp<4><<<blocks, 32 * warps_per_block, 0, s>>>(logits, bias, ids, weights, T, p, lanes_per_group); break;
        default: moe_route_noaux_warp<8><<<blocks, 32 * warps_per_block, 0, s>>>(logits, bias, ids, weights, T, p, lanes_per_group); break;
        }
    } else {
        /* q, c, group scores (E floats each), allowed (E bytes). */
        const size_t shared = 3 * (size_t)E * 4 + (size_t)E;
        moe_route_generic<<<(unsigned)T, 128, shared, s>>>(logits, bias, ids, weights, p);
    }
    CUDA_TRY(cudaGetLastError());
    if (!desc->asynchronous) CUDA_TRY(cudaStreamSynchronize(s));
    return R1_OK;
}

extern "C" r1_status moe_dispatch_cuda(const r1_moe_desc *desc, const int32_t *ids,
                                       const r1_moe_dispatch_out *out, void *workspace,
                                       void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    dispatch_params p;
    p.N = desc->tokens * desc->top_k;
    p.E = desc->experts;
    p.block = desc->block_size;
    p.warps = dispatch_warps(p.E);
    p.capacity = r1_moe_padded_capacity(desc);
    p.blocks = (p.capacity + p.block - 1) / p.block;
    unsigned long long *first_bad = (unsigned long long *)workspace;
    CUDA_TRY(cudaMemsetAsync(first_bad, 0xff, sizeof(unsigned long long), s));
    const size_t shared = (4 * (size_t)p.E + 2 + (size_t)p.warps * p.E) * sizeof(int32_t);
    moe_dispatch_block<<<1, 32 * p.warps, shared, s>>>(
        ids, p, out->counts, out->offsets, out->permutation, out->inverse, out->padded_offsets,
        out->sorted_padded, out->block_expert, out->padded_total, first_bad);
    CUDA_TRY(cudaGetLastError());
    if (!desc->asynchronous) {
        unsigned long long found;
        CUDA_TRY(cudaMemcpyAsync(&found, first_bad, sizeof found, cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaStreamSynchronize(s));
        if (found != ~0ull) {
            int32_t id;
            CUDA_TRY(cudaMemcpy(&id, ids + found, sizeof id, cudaMemcpyDeviceToHost));
            return r1_fail(R1_EINVAL, "ids[%lld][%lld] = %d: expert id outside [0, %d)",
                           (long long)(found / (unsigned long long)desc->top_k),
                           (long long)(found % (unsigned long long)desc->top_k), id, desc->experts);
        }
    }
    return R1_OK;
}

extern "C" r1_status moe_permute_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                                      const int32_t *permutation, void *x_sorted, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    const long long row_bytes = (long long)r1_dtype_bytes(dtype, (size_t)desc->hidden);
    const int vector = row_bytes % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)x_sorted % 16 == 0;
    const long long N = desc->tokens * desc->top_k;
    moe_permute_rows<<<(unsigned)N, 128, 0, s>>>((const char *)x, permutation, (char *)x_sorted,
                                                 desc->top_k, row_bytes, vector);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

extern "C" r1_status moe_combine_cuda(const r1_moe_desc *desc, r1_dtype dtype,
                                      const void *expert_out, const int32_t *inverse,
                                      const float *weights, const void *shared, void *y,
                                      void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    const long long d = desc->hidden;
    const int per = dtype == R1_BF16 ? 8 : 4;
    const int vector = d % per == 0 && (uintptr_t)expert_out % 16 == 0 && (uintptr_t)y % 16 == 0 &&
                       (shared == NULL || (uintptr_t)shared % 16 == 0);
    const unsigned T = (unsigned)desc->tokens;
    if (dtype == R1_BF16)
        moe_combine_rows<true><<<T, 128, 0, s>>>(expert_out, inverse, weights, shared, y,
                                                 desc->top_k, d, vector);
    else
        moe_combine_rows<false><<<T, 128, 0, s>>>(expert_out, inverse, weights, shared, y,
                                                  desc->top_k, d, vector);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}
