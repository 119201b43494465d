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
 *   moe_route_noaux_warp    the fused DeepSeek-V3 gate, one warp per token
 *                           (4 per block), for E = 32*VPT (VPT <= 8) with
 *                           groups of whole lanes (E/G a multiple of VPT,
 *                           E/G/VPT a power of 2) and K <= 32: each lane holds
 *                           VPT experts (float4 loads of logits and bias) ->
 *                           sigmoid without branches (same bits as ref) ->
 *                           +bias -> per-lane top-2 -> butterfly merge of
 *                           top-2 pairs inside the group's lanes -> group sum
 *                           -> every lane ranks its group against all G group
 *                           sums -> each lane sorts its kept keys -> K rounds
 *                           of __reduce_max_sync over the lanes' first keys,
 *                           the lowest lane holding it (ballot) takes it and
 *                           shifts its keys -> the K unbiased scores from
 *                           shared memory, summed in float64 (exact for these
 *                           magnitudes, so the same bits as ref), normalized,
 *                           scaled.
 *   moe_dispatch_histogram  chunks of >= 512 pairs (<= 256 chunks), one per
 *                           CTA: per-expert counts (one shared atomic per run
 *                           of equal ids in a warp, __match_any_sync) and the
 *                           chunk's first id outside [0, E), to a workspace
 *                           matrix (chunks, E).
 *   moe_dispatch_place      a programmatic dependent of the histogram, every
 *                           CTA again on its chunk: warp w counts slice w of
 *                           the chunk (before the wait: it reads only ids),
 *                           then totals and its own prefix per expert from the
 *                           matrix, block scans to offsets and padded offsets,
 *                           then stable placement: a second pass ranks lanes
 *                           of the same expert with __match_any_sync. CTA 0
 *                           writes the small arrays; padding, the tail and
 *                           block_expert are shared out over the grid.
 *   moe_permute_scatter     one block per token: the row read once (16-byte
 *                           vectors, or 2-byte elements when a row is not
 *                           16-byte aligned), 16 KB at a time, and written to
 *                           its K destinations (inverse).
 *   moe_combine_rows        one block per token, 16-byte vector loads of the K
 *                           expert rows (8 bf16 or 4 f32), float32 accumulators
 *                           in slot order, + shared, one rounding on store.
 *   moe_gate_gemm           one warp per logit, float64 sums (not a fast GEMM:
 *                           the teacher's gate GEMM belongs to qgemm / cuBLAS).
 *   moe_check_ids, moe_balance_load, moe_balance_affinity, moe_balance_finish
 *                           balance statistics: ids checked (range, repeats),
 *                           load by global atomics (exact), P_e as float64
 *                           sums per block of 64 tokens (one warp per token)
 *                           then atomics, the loss and the bias update in one
 *                           block.
 *
 * Version history (H100 SXM, CUDA events around one call, r1lab-bench):
 *   v1  gate: one warp per token, K rounds of a 5-step shuffle arg-max, IEEE
 *       division in the sigmoid. T=1 12.2 us, 16 11.8, 256 12.6, 4096 20.7,
 *       16384 49.2. dispatch: one block, 155.5 us at T=4096. permute 282 us
 *       (counted with N*d*2 read bytes), combine 188 us (0.94 of 2.98 TB/s).
 *       Balance: R1_EUNSUPPORTED.
 *   v2  gate: redux arg-max (2 instructions a round instead of 10 shuffles),
 *       __frcp_rn sigmoid, float4 bias, q from shared memory. dispatch: two
 *       kernels over chunks of 1024 pairs. Balance on CUDA. T=1 10.1 us,
 *       16 10.8, 256 10.8, 4096 15.9, 16384 35.1; dispatch 20.7 us at T=4096;
 *       permute 284 us (0.62 of 2.98 TB/s with the input counted once),
 *       combine 188 us (0.94). Targets still missed: gate <= 5 us at T <= 256
 *       (the time at T=1 is not the arithmetic: look at what else one call
 *       launches or waits for), dispatch <= 10 us, permute >= 0.8 (a scatter
 *       that reads each row once and writes its K copies).
 *   v3  What one call costs was measured first: an empty kernel takes 5.5-6.7
 *       us with events around its launch (bench/launch_floor.cu), and a
 *       clock64 trace of the v2 gate at T=1 gave 8100 cycles for one
 *       warp, 3700 of them in the sigmoids (a branch per value around the
 *       exp checks and __frcp_rn's slow path, so the VPT values ran one after
 *       another) and 2150 in the K rounds. gate: sigmoid without branches
 *       (exp on the clamped argument, the reciprocal's fast path, the slow
 *       path only for warps that need it; all 2^32 inputs checked against
 *       ref's bits by a test), branch-free top-2, each lane's keys sorted
 *       once so a round is one redux + one ballot + a shift. dispatch: place
 *       launched as a programmatic dependent, counting before its wait;
 *       chunks of 512 pairs. permute: scatter by inverse (the API takes
 *       inverse now, as combine does). Events / CUDA graph (20 calls), us:
 *       gate T=1 7.8 / 2.88, 16 7.8 / 2.90, 256 8.3 / 3.03, 4096 13.0 /
 *       7.99, 16384 29.9 / 24.9; dispatch 16.4 / 8.63; permute 195 (0.91 of
 *       the measured 2.98 TB/s); combine 187 (0.95). bench/results/h100-moe-
 *       v3.json. A globaltimer trace of dispatch (block 0, chunks of 1024)
 *       put 1.6 us in the counting pass, 0.85 in reading the matrix and 2.5
 *       in the placing pass. Next: the gate at large T reads its logits at
 *       only 0.2 of HBM (instruction-bound); dispatch's counts matrix could
 *       be scanned once by the last histogram CTA instead of by every CTA.
 */
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "core/internal.h"
}
#include "kernels/cuda_try.cuh"
#include "kernels/launch.cuh"
#include "core/moe_math.h"


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

/* sigmoid with the reciprocal instruction sequence: 1/x correctly rounded is
 * the same number as 1.0f/x correctly rounded, so these are
 * r1_moe_sigmoid_inline's bits at fewer instructions than a general division
 * (one value at a time; the gate's vector form is sigmoid_exact below). */
__device__ __forceinline__ float sigmoid_bits(float x) {
    return __frcp_rn(__fadd_rn(1.0f, r1_moe_exp_inline(-x)));
}

/* ---- the fused DeepSeek-V3 gate: one warp per token --------------------------------- */

/* The gate is a chain of dependent steps for one warp, so its time at small T
 * is that chain's latency: every step below is written without branches, so
 * that the VPT values of a lane go through it side by side. */

/* Denominators 1 + exp(-x) below this take the two-instruction reciprocal. */
constexpr float kFastReciprocalLimit = 0x1p126f;

/* 1/x rounded to nearest for 1 <= x < 2^126: the approximate reciprocal and
 * one Newton step, the path __frcp_rn takes for such x (it branches to a slow
 * path only for exponents outside this range, whose results are denormal or
 * special). */
__device__ __forceinline__ float reciprocal_in_fast_range(float x) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    const float error = __fmaf_rn(x, r, -1.0f);
    return __fmaf_rn(r, -error, r);
}

/* sigmoid(x) = 1 / (1 + exp(-x)) for a lane's VPT values at once, with the
 * bits of r1_moe_sigmoid_inline for every input (moe_cuda_check_sigmoid
 * compares all 2^32 of them), and no branch in the common case:
 *   - exp's argument is clamped into [-87, 88], where r1_moe_exp_core is
 *     r1_moe_exp_inline. For x > 87 the clamped exp(-87) ~ 1.6e-38 still
 *     rounds 1 + exp to 1, as exp = 0 does, so the sigmoid is 1 either way;
 *   - the reciprocal takes its fast path, exact for denominators below 2^126;
 *   - a warp with any value outside that (x < -87.3, where the clamp and the
 *     fast path are wrong) or a NaN computes all its values again the
 *     reference way (sigmoid_bits). */
template <int VPT> __device__ __forceinline__ void sigmoid_exact(float (&x)[VPT]) {
    float result[VPT];
    bool slow = false;
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
        const float e = r1_moe_exp_core(fminf(fmaxf(-x[v], -87.0f), 88.0f));
        const float denominator = __fadd_rn(1.0f, e);
        slow = slow || !(denominator < kFastReciprocalLimit) || x[v] != x[v];
        result[v] = reciprocal_in_fast_range(denominator);
    }
    if (__any_sync(FULL_MASK, slow)) {
#pragma unroll
        for (int v = 0; v < VPT; ++v) result[v] = sigmoid_bits(x[v]);
    }
#pragma unroll
    for (int v = 0; v < VPT; ++v) x[v] = result[v];
}

/* An unsigned key with the order of the float (finite or -inf, never NaN;
 * +0 for -0, since ref ranks -0 == +0 and breaks the tie by index). */
__device__ __forceinline__ unsigned order_key(float v) {
    const unsigned b = __float_as_uint(__fadd_rn(v, 0.0f));
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Sorts a lane's VPT (key, slot) pairs so that the expert ref would take
 * first comes first: larger key, then lower slot (a strict order, since the
 * slots differ). A bitonic network: compile-time indices, no branches. */
template <int VPT> __device__ __forceinline__ void sort_lane_keys(unsigned (&key)[VPT], int (&slot)[VPT]) {
#pragma unroll
    for (int size = 2; size <= VPT; size *= 2)
#pragma unroll
        for (int stride = size / 2; stride > 0; stride /= 2)
#pragma unroll
            for (int i = 0; i < VPT; ++i) {
                const int j = i ^ stride;
                if (j <= i) continue;
                /* First half of each size-block: j's pair must not rank
                 * before i's; second half: the reverse, so that the merge of
                 * the next size sees a bitonic sequence. */
                const bool j_first = key[j] > key[i] || (key[j] == key[i] && slot[j] < slot[i]);
                const bool swap = (i & size) == 0 ? j_first : !j_first;
                const unsigned k = key[i];
                const int s = slot[i];
                key[i] = swap ? key[j] : key[i];
                slot[i] = swap ? slot[j] : slot[i];
                key[j] = swap ? k : key[j];
                slot[j] = swap ? s : slot[j];
            }
}

constexpr int GATE_WARPS = 4; /* warps (tokens) per block */

/* One warp per token; lane L holds experts L*VPT .. L*VPT + VPT - 1.
 *   1. scores q = sigmoid(l), selection scores c = q + b;
 *   2. group score: the top two c of the group's lanes (per lane, then a
 *      butterfly over the group's lanes), summed; each lane counts the groups
 *      ranking before its own (ties: lower group first);
 *   3. keys: order_key(c) for experts of the topk_group best groups, 0 for
 *      the others; each lane sorts its keys;
 *   4. K rounds: the warp's largest head key (redux); the lowest lane holding
 *      it (ballot) owns the lowest expert with that key, records it and
 *      shifts its sorted keys by one;
 *   5. lane k < K reads the k-th expert and its q; the K scores are summed in
 *      float64 (a butterfly over the lanes that hold them), normalized and
 *      scaled. */
template <int VPT>
__global__ void __launch_bounds__(32 * GATE_WARPS)
moe_route_noaux_warp(const float *__restrict__ logits, const float *__restrict__ bias,
                     int32_t *__restrict__ ids, float *__restrict__ weights, long long tokens,
                     route_params p, int lanes_per_group) {
    __shared__ __align__(16) float s_q[GATE_WARPS][32 * VPT]; /* unbiased scores */
    __shared__ int s_chosen[GATE_WARPS][32];                   /* experts, in rank order */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long t = (long long)blockIdx.x * GATE_WARPS + warp;
    if (t >= tokens) return;
    const float *l = logits + t * p.E + lane * VPT;
    float q[VPT], b[VPT];
    if (VPT % 4 == 0) {
#pragma unroll
        for (int v = 0; v < VPT; v += 4) {
            const float4 x = __ldg(reinterpret_cast<const float4 *>(l + v));
            q[v] = x.x; q[v + 1] = x.y; q[v + 2] = x.z; q[v + 3] = x.w;
            float4 y = make_float4(0.f, 0.f, 0.f, 0.f);
            if (bias) y = __ldg(reinterpret_cast<const float4 *>(bias + lane * VPT + v));
            b[v] = y.x; b[v + 1] = y.y; b[v + 2] = y.z; b[v + 3] = y.w;
        }
    } else {
#pragma unroll
        for (int v = 0; v < VPT; ++v) {
            q[v] = __ldg(l + v);
            b[v] = bias ? __ldg(bias + lane * VPT + v) : 0.0f;
        }
    }
    bool finite = true;
#pragma unroll
    for (int v = 0; v < VPT; ++v) finite = finite && isfinite(q[v]) && isfinite(b[v]);
    if (__any_sync(FULL_MASK, !finite)) {
        if (lane < p.K) {
            ids[t * p.K + lane] = -1;
            weights[t * p.K + lane] = __int_as_float(0x7fc00000);
        }
        return;
    }
    /* 1. */
    sigmoid_exact<VPT>(q);
    float c[VPT];
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
        c[v] = __fadd_rn(q[v], b[v]);
        s_q[warp][lane * VPT + v] = q[v];
    }
    /* 2. Top two values (values only: the sum does not depend on which of two
     * equal values is taken). */
    float top1 = c[0], top2 = -INFINITY;
#pragma unroll
    for (int v = 1; v < VPT; ++v) {
        top2 = fmaxf(top2, fminf(top1, c[v]));
        top1 = fmaxf(top1, c[v]);
    }
    for (int offset = lanes_per_group / 2; offset > 0; offset /= 2) {
        const float o1 = __shfl_xor_sync(FULL_MASK, top1, offset);
        const float o2 = __shfl_xor_sync(FULL_MASK, top2, offset);
        const float n2 = top1 >= o1 ? fmaxf(top2, o1) : fmaxf(top1, o2);
        top1 = fmaxf(top1, o1);
        top2 = n2;
    }
    const float group_score = __fadd_rn(top1, top2);
    const int my_group = lane / lanes_per_group;
    int rank = 0;
#pragma unroll 8
    for (int h = 0; h < p.G; ++h) {
        const float other = __shfl_sync(FULL_MASK, group_score, h * lanes_per_group);
        rank += ranks_before(other, h, group_score, my_group);
    }
    /* 3. Every real key is above the key of -inf (0x007fffff). */
    const bool kept = rank < p.topk_group;
    unsigned key[VPT];
    int slot[VPT];
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
        key[v] = kept ? order_key(c[v]) : 0u;
        slot[v] = v;
    }
    sort_lane_keys<VPT>(key, slot);
    /* 4. Lanes hold ascending experts, so the lowest lane holding the top key
     * holds the lowest expert with it. */
    for (int k = 0; k < p.K; ++k) {
        const unsigned top = __reduce_max_sync(FULL_MASK, key[0]);
        const unsigned holders = __ballot_sync(FULL_MASK, key[0] == top);
        const bool won = lane == __ffs(holders) - 1;
        if (won) s_chosen[warp][k] = lane * VPT + slot[0];
#pragma unroll
        for (int v = 0; v + 1 < VPT; ++v) {
            key[v] = won ? key[v + 1] : key[v];
            slot[v] = won ? slot[v + 1] : slot[v];
        }
        key[VPT - 1] = won ? 0u : key[VPT - 1];
    }
    __syncwarp();
    /* 5. Lanes K.. add zeros, so a butterfly over the smallest power of two
     * >= K lanes gives the sum the full warp would. */
    const int my_id = lane < p.K ? s_chosen[warp][lane] : 0;
    const float my_q = lane < p.K ? s_q[warp][my_id] : 0.0f;
    int span = 1;
    while (span < p.K) span *= 2;
    double sum = (double)my_q;
    for (int offset = span / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, offset);
    if (lane < p.K) {
        double w = my_q;
        if (p.norm) w = w / (sum + 1e-20);
        ids[t * p.K + lane] = my_id;
        weights[t * p.K + lane] = (float)(w * (double)p.factor);
    }
}

/* Every float bit pattern x: sigmoid_exact's bits against r1_moe_sigmoid_inline's
 * (NaN against NaN); counts the differences and keeps the smallest differing
 * pattern. */
__global__ void moe_check_sigmoid_bits(unsigned long long *mismatches, unsigned *first) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x * 4;
    for (unsigned long long base = ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) * 4;
         base < (1ull << 32); base += stride) {
        float x[4], want[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            x[i] = __uint_as_float((unsigned)(base + i));
            want[i] = r1_moe_sigmoid_inline(x[i]);
        }
        sigmoid_exact<4>(x);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const bool same = __float_as_uint(x[i]) == __float_as_uint(want[i]) ||
                              (x[i] != x[i] && want[i] != want[i]);
            if (!same) {
                atomicAdd(mismatches, 1ull);
                atomicMin(first, (unsigned)(base + i));
            }
        }
    }
}

/* ---- dispatch: per-CTA histograms, then placement --------------------------------------- */

constexpr int DISPATCH_THREADS = 256;
constexpr int DISPATCH_WARPS = DISPATCH_THREADS / 32;
constexpr int DISPATCH_MAX_CTAS = 256;
/* Pairs per chunk, at least. Fewer, larger chunks leave the placement's
 * scattered stores to fewer SMs; more, smaller ones make every CTA read a
 * larger counts matrix. At T = 4096, top-8 on the H100 (CUDA graph): 1024
 * pairs 9.6 us, 512 pairs 8.6 us, 256 pairs 25 us. */
constexpr int DISPATCH_MIN_PAIRS = 512;
constexpr unsigned NO_BAD = 0xffffffffu;

struct dispatch_params {
    long long N;
    int E, block;
    int ctas, per_cta; /* chunks of per_cta pairs (a multiple of DISPATCH_THREADS) */
    long long capacity, blocks;
};

/* Ids each lane loads before it uses the first of them, so that the loads of
 * a batch overlap. */
constexpr int DISPATCH_BATCH = 4;

/* Chunk c's per-expert counts (cta_counts[c][e]) and its first id outside
 * [0, E) (cta_bad[c], NO_BAD if none). Lanes with the same expert are counted
 * by one shared atomic (__match_any_sync), so a skewed routing does not
 * serialize on one counter. Lets moe_dispatch_place launch at once: that
 * kernel counts its warps' slices while this one runs. */
__global__ void __launch_bounds__(DISPATCH_THREADS)
moe_dispatch_histogram(const int32_t *__restrict__ ids, dispatch_params p,
                       int32_t *__restrict__ cta_counts, unsigned *__restrict__ cta_bad) {
    let_next_kernel_launch();
    extern __shared__ int32_t s_count[]; /* (E) */
    __shared__ unsigned s_bad;
    const int tid = threadIdx.x, lane = tid & 31;
    for (int e = tid; e < p.E; e += DISPATCH_THREADS) s_count[e] = 0;
    if (tid == 0) s_bad = NO_BAD;
    __syncthreads();
    const long long begin = (long long)blockIdx.x * p.per_cta;
    const long long end = begin + p.per_cta < p.N ? begin + p.per_cta : p.N;
    for (long long base = begin; base < end; base += DISPATCH_THREADS * DISPATCH_BATCH) {
        int e[DISPATCH_BATCH];
#pragma unroll
        for (int i = 0; i < DISPATCH_BATCH; ++i) {
            const long long j = base + i * DISPATCH_THREADS + tid;
            e[i] = j < end ? __ldg(ids + j) : p.E;
        }
#pragma unroll
        for (int i = 0; i < DISPATCH_BATCH; ++i) {
            const long long j = base + i * DISPATCH_THREADS + tid;
            if (j < end && (e[i] < 0 || e[i] >= p.E)) {
                atomicMin(&s_bad, (unsigned)j);
                e[i] = p.E;
            }
            const unsigned peers = __match_any_sync(FULL_MASK, e[i]);
            if (e[i] < p.E && lane == __ffs(peers) - 1) atomicAdd(&s_count[e[i]], __popc(peers));
        }
    }
    __syncthreads();
    for (int e = tid; e < p.E; e += DISPATCH_THREADS)
        cta_counts[(long long)blockIdx.x * p.E + e] = s_count[e];
    if (tid == 0) cta_bad[blockIdx.x] = s_bad;
}

/* Warp w's slice of chunk c: ids [first, end) (end clipped to N). */
struct warp_slice {
    long long first, end;
};

__device__ __forceinline__ warp_slice slice_of_warp(const dispatch_params &p, int warp) {
    const int warp_pairs = p.per_cta / DISPATCH_WARPS;
    warp_slice s;
    s.first = (long long)blockIdx.x * p.per_cta + (long long)warp * warp_pairs;
    s.end = s.first + warp_pairs < p.N ? s.first + warp_pairs : p.N;
    return s;
}

/* One batch of the warp's slice: lane's ids at base + 32 i + lane, with E
 * for positions past the slice and for ids outside [0, E). */
__device__ __forceinline__ void load_slice_batch(const int32_t *__restrict__ ids, long long base,
                                                 const warp_slice &slice, int lane, int E,
                                                 int (&e)[DISPATCH_BATCH]) {
#pragma unroll
    for (int i = 0; i < DISPATCH_BATCH; ++i) {
        const long long j = base + i * 32 + lane;
        e[i] = j < slice.end ? __ldg(ids + j) : E;
        if (e[i] < 0 || e[i] >= E) e[i] = E;
    }
}

/* Every CTA: the per-warp counts of its chunk (before waiting for the
 * histogram kernel: they read only ids), then totals and its own prefix per
 * expert from the counts matrix, the scans to offsets and padded offsets,
 * then the stable placement of its chunk (warp w takes the w-th slice;
 * within a warp, __match_any_sync ranks lanes of the same expert). CTA 0
 * writes the small arrays; padding and block_expert are shared out. Launched
 * as a programmatic dependent of moe_dispatch_histogram. */
__global__ void __launch_bounds__(DISPATCH_THREADS)
moe_dispatch_place(const int32_t *__restrict__ ids, dispatch_params p,
                   const int32_t *__restrict__ cta_counts, const unsigned *__restrict__ cta_bad,
                   int32_t *counts, int32_t *offsets, int32_t *permutation, int32_t *inverse,
                   int32_t *padded_offsets, int32_t *sorted_padded, int32_t *block_expert,
                   int32_t *padded_total) {
    extern __shared__ int32_t sm[];
    int32_t *s_offset = sm;                /* (E+1) */
    int32_t *s_padded = sm + p.E + 1;      /* (E+1) */
    int32_t *s_total = sm + 2 * p.E + 2;   /* (E)   */
    int32_t *s_warp = sm + 3 * p.E + 2;    /* (warps, E) */
    __shared__ int32_t s_scan[2][DISPATCH_WARPS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int E = p.E;
    for (int i = tid; i < DISPATCH_WARPS * E; i += DISPATCH_THREADS) s_warp[i] = 0;
    __syncthreads();

    /* Pass 1: each warp counts its slice per expert (ids outside [0, E) are
     * skipped: the histogram kernel reports them, and this one stops below). */
    const warp_slice slice = slice_of_warp(p, warp);
    int32_t *my_counts = s_warp + warp * E;
    for (long long base = slice.first; base < slice.end; base += 32 * DISPATCH_BATCH) {
        int e[DISPATCH_BATCH];
        load_slice_batch(ids, base, slice, lane, E, e);
#pragma unroll
        for (int i = 0; i < DISPATCH_BATCH; ++i) {
            const unsigned peers = __match_any_sync(FULL_MASK, e[i]);
            if (e[i] < E && lane == __ffs(peers) - 1) my_counts[e[i]] += __popc(peers);
            __syncwarp();
        }
    }

    wait_for_previous_kernel();
    int bad = 0;
    for (int c = tid; c < p.ctas; c += DISPATCH_THREADS) bad |= __ldcg(cta_bad + c) != NO_BAD;
    if (__syncthreads_or(bad)) return;

    /* Totals per expert and the pairs of earlier chunks (the loads of up to
     * 32 chunks in flight at once). */
    for (int e = tid; e < E; e += DISPATCH_THREADS) {
        int total = 0, before = 0;
#pragma unroll 32
        for (int c = 0; c < p.ctas; ++c) {
            const int n = __ldcg(cta_counts + (long long)c * E + e);
            before += c < (int)blockIdx.x ? n : 0;
            total += n;
        }
        s_total[e] = total;
        s_offset[e] = before; /* parked here until the scan */
    }
    __syncthreads();
    /* Per-warp bases (rank within the expert), from `before`. */
    for (int e = tid; e < E; e += DISPATCH_THREADS) {
        int running = s_offset[e];
        for (int w = 0; w < DISPATCH_WARPS; ++w) {
            const int n = s_warp[w * E + e];
            s_warp[w * E + e] = running;
            running += n;
        }
    }
    __syncthreads();
    /* Exclusive scans of totals and padded totals: thread i takes experts
     * [i*per, i*per + per). */
    {
        const int per = (E + DISPATCH_THREADS - 1) / DISPATCH_THREADS;
        const int e0 = tid * per;
        int local = 0, local_padded = 0;
        for (int e = e0; e < e0 + per && e < E; ++e) {
            local += s_total[e];
            local_padded += (s_total[e] + p.block - 1) / p.block * p.block;
        }
        int scan = local, scan_padded = local_padded;
        for (int offset = 1; offset < 32; offset *= 2) {
            const int a = __shfl_up_sync(FULL_MASK, scan, offset);
            const int b = __shfl_up_sync(FULL_MASK, scan_padded, offset);
            if (lane >= offset) {
                scan += a;
                scan_padded += b;
            }
        }
        if (lane == 31) {
            s_scan[0][warp] = scan;
            s_scan[1][warp] = scan_padded;
        }
        __syncthreads();
        int warp_base = 0, warp_base_padded = 0;
        for (int w = 0; w < warp; ++w) {
            warp_base += s_scan[0][w];
            warp_base_padded += s_scan[1][w];
        }
        int running = warp_base + scan - local, running_padded = warp_base_padded + scan_padded - local_padded;
        for (int e = e0; e < e0 + per && e < E; ++e) {
            s_offset[e] = running;
            s_padded[e] = running_padded;
            running += s_total[e];
            running_padded += (s_total[e] + p.block - 1) / p.block * p.block;
        }
        if (tid == DISPATCH_THREADS - 1) {
            s_offset[E] = running;
            s_padded[E] = running_padded;
        }
    }
    __syncthreads();

    /* Pass 2: stable placement of the warp's slice, in flat order. */
    const bool padded = padded_offsets != nullptr;
    for (long long base = slice.first; base < slice.end; base += 32 * DISPATCH_BATCH) {
        int e[DISPATCH_BATCH];
        load_slice_batch(ids, base, slice, lane, E, e);
#pragma unroll
        for (int i = 0; i < DISPATCH_BATCH; ++i) {
            const long long j = base + i * 32 + lane;
            const unsigned peers = __match_any_sync(FULL_MASK, e[i]);
            if (e[i] < E) {
                const int r = my_counts[e[i]] + __popc(peers & ((1u << lane) - 1));
                const int position = s_offset[e[i]] + r;
                permutation[position] = (int32_t)j;
                inverse[j] = position;
                if (padded) sorted_padded[s_padded[e[i]] + r] = (int32_t)j;
            }
            __syncwarp();
            if (e[i] < E && lane == __ffs(peers) - 1) my_counts[e[i]] += __popc(peers);
            __syncwarp();
        }
    }

    /* The small arrays (CTA 0), padding (expert e by CTA e % ctas), the tail
     * and block_expert (all threads of the grid). */
    if (blockIdx.x == 0)
        for (int e = tid; e <= E; e += DISPATCH_THREADS) {
            offsets[e] = s_offset[e];
            if (e < E) counts[e] = s_total[e];
            if (padded) padded_offsets[e] = s_padded[e];
            if (padded && e == E) *padded_total = s_padded[E];
        }
    if (!padded) return;
    for (int e = (int)blockIdx.x; e < E; e += p.ctas)
        for (int i = s_padded[e] + s_total[e] + tid; i < s_padded[e + 1]; i += DISPATCH_THREADS)
            sorted_padded[i] = (int32_t)p.N;
    const long long total = s_padded[E];
    const long long stride = (long long)p.ctas * DISPATCH_THREADS;
    const long long gid = (long long)blockIdx.x * DISPATCH_THREADS + tid;
    for (long long i = total + gid; i < p.capacity; i += stride) sorted_padded[i] = (int32_t)p.N;
    for (long long b = gid; b < p.blocks; b += stride) {
        const long long row = b * p.block;
        int expert = -1;
        if (row < total) {
            int lo = 0, hi = E - 1; /* the last e with s_padded[e] <= row */
            while (lo < hi) {
                const int mid = (lo + hi + 1) / 2;
                if (s_padded[mid] <= row) lo = mid;
                else hi = mid - 1;
            }
            expert = lo;
        }
        block_expert[b] = expert;
    }
}

/* ---- permute and combine -------------------------------------------------------------- */

constexpr int PERMUTE_THREADS = 128;
constexpr int PERMUTE_VECTORS = 8; /* per thread in flight: a 16 KB slice of the row */

/* One block per token t: its K destination rows (inverse[t*K + k], those
 * outside [0, N) skipped) into shared memory, then the row of x a slice at a
 * time: loaded once (evict-first: it is not read again), stored K times.
 * Vector is uint4 (16-byte rows and pointers) or uint16_t. */
template <typename Vector>
__global__ void __launch_bounds__(PERMUTE_THREADS)
moe_permute_scatter(const char *__restrict__ x, const int32_t *__restrict__ inverse,
                    char *__restrict__ x_sorted, int K, long long N, long long row_bytes) {
    __shared__ long long s_row[R1_MOE_MAX_TOP_K];
    const long long t = blockIdx.x;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const long long j = inverse[t * K + k];
        s_row[k] = j >= 0 && j < N ? j : -1;
    }
    __syncthreads();
    const long long count = row_bytes / (long long)sizeof(Vector);
    const Vector *source = reinterpret_cast<const Vector *>(x + t * row_bytes);
    for (long long base = 0; base < count; base += (long long)PERMUTE_THREADS * PERMUTE_VECTORS) {
        Vector v[PERMUTE_VECTORS];
#pragma unroll
        for (int r = 0; r < PERMUTE_VECTORS; ++r) {
            const long long i = base + r * PERMUTE_THREADS + threadIdx.x;
            if (i < count) v[r] = __ldcs(source + i);
        }
        for (int k = 0; k < K; ++k) {
            if (s_row[k] < 0) continue;
            Vector *destination = reinterpret_cast<Vector *>(x_sorted + s_row[k] * row_bytes);
#pragma unroll
            for (int r = 0; r < PERMUTE_VECTORS; ++r) {
                const long long i = base + r * PERMUTE_THREADS + threadIdx.x;
                if (i < count) destination[i] = v[r];
            }
        }
    }
}

__device__ __forceinline__ float load_element(const void *rows, long long index, bool bf16) {
    return bf16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(rows)[index])
                : reinterpret_cast<const float *>(rows)[index];
}

template <bool BF16>
__global__ void moe_combine_rows(const void *expert_out, const int32_t *inverse,
                                 const float *weights, const void *shared, void *y, int K,
                                 long long N, long long d, int vector) {
    constexpr int PER = BF16 ? 8 : 4; /* elements per 16 bytes */
    __shared__ float s_w[R1_MOE_MAX_TOP_K];
    __shared__ long long s_row[R1_MOE_MAX_TOP_K];
    const long long t = blockIdx.x;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        /* an entry outside [0, N) is skipped: its slot adds nothing */
        const long long j = inverse[t * K + k];
        const bool inside = j >= 0 && j < N;
        s_w[k] = inside ? weights[t * K + k] : 0.0f;
        s_row[k] = inside ? j : -1;
    }
    __syncthreads();
    if (vector) {
        for (long long v = threadIdx.x; v < d / PER; v += blockDim.x) {
            float acc[PER];
#pragma unroll
            for (int i = 0; i < PER; ++i) acc[i] = 0.0f;
            for (int k = 0; k < K; ++k) {
                if (s_row[k] < 0) continue;
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
            for (int k = 0; k < K; ++k)
                if (s_row[k] >= 0) acc = fmaf(s_w[k], load_element(expert_out, s_row[k] * d + i, BF16), acc);
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

/* ---- balance statistics ------------------------------------------------------------- */

/* The first bad (token, slot) of ids: outside [0, E) (code 1) or a repeat of
 * an earlier slot of the same token (code 2); one thread per token. first_bad
 * holds (flat index << 2 | code), atomicMin. */
__global__ void moe_check_ids(const int32_t *ids, long long T, int K, int E,
                              unsigned long long *first_bad) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    const int32_t *row = ids + t * K;
    for (int k = 0; k < K; ++k) {
        const int id = row[k];
        int code = (id < 0 || id >= E) ? 1 : 0;
        for (int j = 0; j < k && !code; ++j) code = row[j] == id ? 2 : 0;
        if (code) {
            atomicMin(first_bad, ((unsigned long long)(t * K + k) << 2) | (unsigned long long)code);
            return;
        }
    }
}

/* load[e] (int32, exact): atomics on a zeroed array; order does not matter. */
__global__ void moe_balance_load(const int32_t *ids, long long N, int32_t *load) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < N; j += stride)
        atomicAdd(&load[ids[j]], 1);
}

/* P[e] += sum over this block's tokens of the normalized affinity s'_{t,e}
 * (float64). One warp per token: the row's normalizer (sum of sigmoids, or
 * the softmax max and sum) in float64, then each lane adds its experts'
 * affinities into the block's shared partial sums; one atomicAdd per expert
 * per block at the end. */
__global__ void moe_balance_affinity(const float *logits, long long T, int E, int sigmoid,
                                     int tokens_per_block, double *P) {
    extern __shared__ double s_P[]; /* (E) */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int e = threadIdx.x; e < E; e += blockDim.x) s_P[e] = 0.0;
    __syncthreads();
    const long long first = (long long)blockIdx.x * tokens_per_block;
    for (long long t = first + warp; t < first + tokens_per_block && t < T; t += warps) {
        const float *l = logits + t * E;
        float m = -INFINITY;
        if (!sigmoid) {
            for (int e = lane; e < E; e += 32) m = fmaxf(m, l[e]);
            for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(FULL_MASK, m, o));
        }
        double sum = 0.0;
        for (int e = lane; e < E; e += 32)
            sum += sigmoid ? (double)sigmoid_bits(l[e]) : (double)r1_moe_exp_inline(__fsub_rn(l[e], m));
        for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, o);
        for (int e = lane; e < E; e += 32) {
            double a;
            if (sigmoid) a = (double)sigmoid_bits(l[e]) / sum;
            else a = (double)(float)((double)r1_moe_exp_inline(__fsub_rn(l[e], m)) / sum);
            atomicAdd(&s_P[e], a);
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) atomicAdd(&P[e], s_P[e]);
}

/* One block: the loss alpha * sum_e f_e * P_e / T, the bias update and the
 * load copied out. */
__global__ void moe_balance_finish(const int32_t *load_scratch, const double *P, long long T,
                                   int K, int E, double alpha, float gamma, int32_t *load,
                                   double *aux_loss, float *bias) {
    __shared__ double s_sum[32];
    double part = 0.0;
    const double mean = (double)(T * K) / E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        const int n = load_scratch[e];
        if (load) load[e] = n;
        if (aux_loss) part += (double)E / ((double)K * (double)T) * n * (P[e] / (double)T);
        if (bias) {
            const double gap = mean - n;
            const float sign = gap > 0 ? 1.0f : gap < 0 ? -1.0f : 0.0f;
            bias[e] = __fadd_rn(bias[e], __fmul_rn(gamma, sign));
        }
    }
    if (!aux_loss) return;
    for (int o = 16; o > 0; o /= 2) part += __shfl_xor_sync(FULL_MASK, part, o);
    if ((threadIdx.x & 31) == 0) s_sum[threadIdx.x >> 5] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += s_sum[w];
        *aux_loss = alpha * total;
    }
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

/* Chunks of the dispatch: at least DISPATCH_MIN_PAIRS pairs each, at most
 * DISPATCH_MAX_CTAS of them. */
dispatch_params dispatch_shape(const r1_moe_desc *desc) {
    dispatch_params p;
    p.N = desc->tokens * desc->top_k;
    p.E = desc->experts;
    p.block = desc->block_size;
    long long per = (p.N + DISPATCH_MAX_CTAS - 1) / DISPATCH_MAX_CTAS;
    per = (per + DISPATCH_THREADS - 1) / DISPATCH_THREADS * DISPATCH_THREADS;
    if (per < DISPATCH_MIN_PAIRS) per = DISPATCH_MIN_PAIRS;
    p.per_cta = (int)per;
    p.ctas = (int)((p.N + per - 1) / per);
    p.capacity = r1_moe_padded_capacity(desc);
    p.blocks = p.block > 0 ? (p.capacity + p.block - 1) / p.block : 0;
    return p;
}

} // namespace

/* ---- host side ------------------------------------------------------------------------- */

extern "C" size_t moe_route_workspace_size_cuda(const r1_moe_desc *desc) {
    (void)desc;
    return 2 * sizeof(unsigned long long);
}

extern "C" size_t moe_dispatch_workspace_size_cuda(const r1_moe_desc *desc) {
    const dispatch_params p = dispatch_shape(desc);
    return (size_t)p.ctas * ((size_t)p.E + 1) * sizeof(int32_t);
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
    const bool aligned = ((uintptr_t)logits % 16) == 0 && ((uintptr_t)bias % 16) == 0;
    if (vpt != 0 && (aligned || vpt < 4)) {
        const int warps_per_block = GATE_WARPS;
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
    const dispatch_params p = dispatch_shape(desc);
    int32_t *cta_counts = (int32_t *)workspace;
    unsigned *cta_bad = (unsigned *)(cta_counts + (size_t)p.ctas * p.E);
    moe_dispatch_histogram<<<p.ctas, DISPATCH_THREADS, (size_t)p.E * sizeof(int32_t), s>>>(
        ids, p, cta_counts, cta_bad);
    CUDA_TRY(cudaGetLastError());
    cudaLaunchAttribute early_launch = early_launch_attribute();
    cudaLaunchConfig_t place = {};
    place.gridDim = dim3((unsigned)p.ctas, 1, 1);
    place.blockDim = dim3(DISPATCH_THREADS, 1, 1);
    place.dynamicSmemBytes = (3 * (size_t)p.E + 2 + (size_t)DISPATCH_WARPS * p.E) * sizeof(int32_t);
    place.stream = s;
    place.attrs = &early_launch;
    place.numAttrs = early_launch_supported() ? 1 : 0;
    CUDA_TRY(cudaLaunchKernelEx(&place, moe_dispatch_place, ids, p, (const int32_t *)cta_counts,
                                (const unsigned *)cta_bad, out->counts, out->offsets,
                                out->permutation, out->inverse, out->padded_offsets,
                                out->sorted_padded, out->block_expert, out->padded_total));
    if (!desc->asynchronous) {
        unsigned found[DISPATCH_MAX_CTAS];
        CUDA_TRY(cudaMemcpyAsync(found, cta_bad, (size_t)p.ctas * sizeof(unsigned),
                                 cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaStreamSynchronize(s));
        unsigned first = NO_BAD;
        for (int c = 0; c < p.ctas; ++c) first = found[c] < first ? found[c] : first;
        if (first != NO_BAD) {
            int32_t id;
            CUDA_TRY(cudaMemcpy(&id, ids + first, sizeof id, cudaMemcpyDeviceToHost));
            return r1_fail(R1_EINVAL, "ids[%lld][%lld] = %d: expert id outside [0, %d)",
                           (long long)(first / (unsigned)desc->top_k),
                           (long long)(first % (unsigned)desc->top_k), id, desc->experts);
        }
    }
    return R1_OK;
}

extern "C" r1_status moe_permute_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                                      const int32_t *inverse, void *x_sorted, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    const long long row_bytes = (long long)r1_dtype_bytes(dtype, (size_t)desc->hidden);
    const bool vector = row_bytes % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)x_sorted % 16 == 0;
    const long long N = desc->tokens * desc->top_k;
    const unsigned T = (unsigned)desc->tokens;
    if (vector)
        moe_permute_scatter<uint4><<<T, PERMUTE_THREADS, 0, s>>>(
            (const char *)x, inverse, (char *)x_sorted, desc->top_k, N, row_bytes);
    else
        moe_permute_scatter<uint16_t><<<T, PERMUTE_THREADS, 0, s>>>(
            (const char *)x, inverse, (char *)x_sorted, desc->top_k, N, row_bytes);
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
                                                 desc->top_k, desc->tokens * desc->top_k, d, vector);
    else
        moe_combine_rows<false><<<T, 128, 0, s>>>(expert_out, inverse, weights, shared, y,
                                                  desc->top_k, desc->tokens * desc->top_k, d, vector);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

extern "C" r1_status moe_balance_cuda(const r1_moe_desc *desc, const float *logits,
                                      const int32_t *ids, double alpha, float gamma,
                                      const r1_moe_balance_out *out) {
    const long long T = desc->tokens;
    const int E = desc->experts, K = desc->top_k;
    /* Scratch: 3 flags (first non-finite logit, first non-finite bias entry,
     * first bad id), load (E int32), P (E double). */
    const size_t bytes = 3 * sizeof(unsigned long long) + (size_t)E * sizeof(double) +
                         (size_t)E * sizeof(int32_t);
    void *scratch = NULL;
    r1_status status = r1_device_alloc(&scratch, bytes);
    if (status != R1_OK) return status;
    unsigned long long *flags = (unsigned long long *)scratch;
    double *P = (double *)(flags + 3);
    int32_t *load = (int32_t *)(P + E);
    cudaError_t error = cudaSuccess;
    unsigned long long found[3] = {~0ull, ~0ull, ~0ull};
#define BALANCE_TRY(call) if (error == cudaSuccess) error = (call)
    BALANCE_TRY(cudaMemset(flags, 0xff, 3 * sizeof(unsigned long long)));
    BALANCE_TRY(cudaMemset(P, 0, (size_t)E * (sizeof(double) + sizeof(int32_t))));
    if (error == cudaSuccess) {
        const long long count = T * E;
        long long blocks = (count + 255) / 256;
        if (blocks > 1024) blocks = 1024;
        /* the bias is updated in place: a non-finite entry is refused, as on the host */
        moe_scan_nonfinite<<<(unsigned)blocks, 256>>>(logits, count, out->bias, E, flags);
        moe_check_ids<<<(unsigned)((T + 127) / 128), 128>>>(ids, T, K, E, flags + 2);
        error = cudaGetLastError();
    }
    BALANCE_TRY(cudaMemcpy(found, flags, sizeof found, cudaMemcpyDeviceToHost));
    if (error == cudaSuccess && found[0] == ~0ull && found[1] == ~0ull && found[2] == ~0ull) {
        long long blocks = (T * K + 255) / 256;
        if (blocks > 1024) blocks = 1024;
        moe_balance_load<<<(unsigned)blocks, 256>>>(ids, T * K, load);
        if (out->aux_loss) {
            const int tokens_per_block = 64;
            moe_balance_affinity<<<(unsigned)((T + tokens_per_block - 1) / tokens_per_block), 256,
                                   (size_t)E * sizeof(double)>>>(
                logits, T, E, desc->routing == R1_MOE_NOAUX_TC, tokens_per_block, P);
        }
        moe_balance_finish<<<1, 1024>>>(load, P, T, K, E, alpha, gamma, out->load, out->aux_loss,
                                        out->bias);
        error = cudaGetLastError();
        BALANCE_TRY(cudaDeviceSynchronize());
    }
#undef BALANCE_TRY
    if (error != cudaSuccess) {
        r1_device_free(scratch);
        return r1_fail(R1_ECUDA, "moe balance: %s", cudaGetErrorString(error));
    }
    status = R1_OK;
    if (found[0] != ~0ull) {
        float value = 0.0f;
        cudaMemcpy(&value, logits + found[0], sizeof value, cudaMemcpyDeviceToHost);
        status = r1_fail(R1_ENUMERIC, "token %lld: logit of expert %lld is %g",
                         (long long)(found[0] / (unsigned long long)E),
                         (long long)(found[0] % (unsigned long long)E), (double)value);
    } else if (found[1] != ~0ull) {
        float value = 0.0f;
        cudaMemcpy(&value, out->bias + found[1], sizeof value, cudaMemcpyDeviceToHost);
        status = r1_fail(R1_ENUMERIC, "bias[%lld] = %g: must be finite", (long long)found[1],
                         (double)value);
    } else if (found[2] != ~0ull) {
        const long long flat = (long long)(found[2] >> 2);
        int32_t id = 0;
        cudaMemcpy(&id, ids + flat, sizeof id, cudaMemcpyDeviceToHost);
        if ((found[2] & 3) == 1)
            status = r1_fail(R1_EINVAL, "ids[%lld][%lld] = %d: expert id outside [0, %d)",
                             flat / K, flat % K, id, E);
        else
            status = r1_fail(R1_EINVAL, "ids[%lld]: expert %d is chosen twice (slot %lld repeats "
                             "an earlier slot)", flat / K, id, flat % K);
    }
    r1_device_free(scratch);
    return status;
}

extern "C" r1_status moe_cuda_check_sigmoid(uint64_t *mismatches, uint32_t *first_input) {
    void *scratch = NULL;
    r1_status status = r1_device_alloc(&scratch, 16);
    if (status != R1_OK) return status;
    unsigned long long *count = (unsigned long long *)scratch;
    unsigned *first = (unsigned *)(count + 1);
    cudaError_t error = cudaMemset(count, 0, 8);
    if (error == cudaSuccess) error = cudaMemset(first, 0xff, 4);
    if (error == cudaSuccess) {
        moe_check_sigmoid_bits<<<1024, 256>>>(count, first);
        error = cudaGetLastError();
    }
    unsigned long long found = 0;
    unsigned smallest = 0;
    if (error == cudaSuccess) error = cudaMemcpy(&found, count, 8, cudaMemcpyDeviceToHost);
    if (error == cudaSuccess) error = cudaMemcpy(&smallest, first, 4, cudaMemcpyDeviceToHost);
    r1_device_free(scratch);
    if (error != cudaSuccess)
        return r1_fail(R1_ECUDA, "sigmoid check: %s", cudaGetErrorString(error));
    *mismatches = found;
    *first_input = smallest;
    return R1_OK;
}
