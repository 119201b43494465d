/*
 * kernels/sampling.cu — the CUDA sampler: the semantics of r1lab/sampling.h
 * without sorting the row.
 *
 * A call runs up to three kernels:
 *
 *   summarize_chunks_kernel   a block per 8192-token chunk of a row, no block
 *                             waiting on another, so the whole GPU streams the
 *                             logits: each chunk's max, validity, and a list of
 *                             its tokens near its own max (see "two stages").
 *   decide_rows_kernel        a block per row: greedy and invalid rows from the
 *                             chunk maxima; otherwise the listed tokens within
 *                             reach of the row's max are the row's shortlist,
 *                             and when it holds the cut (the usual case for a
 *                             peaked row) the block sorts, cuts and draws it
 *                             (warp 0 alone, in registers, for up to 32).
 *   sample_rows_kernel        the rows left (flat rows, top-k beyond the lists,
 *                             pure temperature sampling), one cluster per row,
 *                             as described below. Each row of it first tries a
 *                             cluster-wide shortlist (shortlist_path), then
 *                             the radix select.
 *
 * The cut is always ref's: the shortlist is every token with z above a
 * floor, so every other token ranks below all of it; it decides a row only
 * when it provably holds the top-k, the top-p prefix or every token min-p
 * keeps (shortlist_decides). Weights of tokens far below the max are summed
 * from a fused multiply-add and exp2 instead of a division and expf; their
 * error, a few parts per million of weights below e^-16, stays inside the
 * fixed-point rounding that the row's total already carries.
 *
 * sample_rows_kernel: one thread-block CLUSTER per row (Hopper). The row is split into C
 * contiguous chunks, one per block of the cluster, and each block keeps its
 * chunk of z = l' / T in shared memory, so every later pass reads shared
 * memory, not HBM. Blocks combine results through distributed shared memory.
 * C is the smallest of 1, 2, 4, 8 whose chunk fits; on GPUs without clusters
 * (sm_80) C = 1, and a chunk that does not fit is re-read from global memory.
 *
 *   load      z, its max m, the first argmax, validity      (reads the row once)
 *   select    the top-k and top-p cuts by radix select over the order key of
 *             z (z descending, ties to the lower id): 11 + 11 + 10 bit digits;
 *             each round histograms count and weight e = expf(z - m) of the
 *             tokens still matching the chosen prefix, merges the histograms
 *             across the cluster, and picks the digit where the running count
 *             (top-k) or weight (top-p) from the top reaches the target.
 *             A cut is (prefix of the key, number of exact ties taken by id).
 *   draw      per-warp kept weight over id-ordered segments, cluster prefix
 *             sums, then one warp scans the segment holding u * F.
 *
 * Versions
 *   v1  cluster-resident row, radix select with shared-memory histograms of
 *       float weights: a top-p cut landing within float rounding of a token
 *       boundary could keep one token more than ref (seen once in 100,000
 *       random rows on an H100).
 *   v2  float64 histogram weights (shared-memory double atomics): cuts agree
 *       with ref's float64 running sums. H100, B=256, V=152064, T=0.6,
 *       top_p=0.95: 911 us (floor 52 us); B=1: 89 us, of which the select
 *       took ~47 us (same row with min_p only: 41 us).
 *   v3  the first select round bins by distance from the max instead of the
 *       key's top bits (a peaked row crowded ~40 exponent bins, serializing
 *       the double atomics); device attributes and the kernel's shared-memory
 *       opt-in are set once per process instead of every call.
 *       H100, B=256, V=152064: top_p 567 us, min_p 297 us. Nsight Compute:
 *       41% issue-slot use, 50% occupancy, DRAM 7-14% busy, 46% of shared
 *       wavefronts excess (4-way conflicted cache stores, double CAS atomics).
 *   v4  16-byte stores into the cached chunk; histogram weights in 64-bit
 *       fixed point (native integer atomics instead of a double CAS loop).
 *       H100, B=256, V=152064: top_p 532 us, top_k 636 us, min_p 281 us.
 *   v5  fewer instructions per token: 16-byte reads in the full passes, no
 *       expf where the fixed-point weight rounds to 0, and select rounds after
 *       the first scan a list of the chosen distance bin's tokens. H100,
 *       B=256, V=152064: top_p 528 us (v4: 532): instruction count was not
 *       the limit.
 *   v6  latency: cluster-wide values are gathered by one warp, one block per
 *       lane, in parallel (every thread walked the 8 blocks' shared memory in
 *       turn); histogram digits are read 128 at a time; the final scan gives
 *       each lane a contiguous run (one warp scan, then one lane walks its
 *       run) instead of 37 warp-wide steps. H100, B=256, V=152064: top_p
 *       538 us (no change), min_p 252 us (v5: 271), B=1 top_p 57 us (v5: 62).
 *   v7  (tried, reverted) the cut inside the chosen distance bin in one
 *       step: its tokens, at most 512 in the cluster, ranked against each
 *       other in parallel with exact fixed-point prefix sums, replacing up
 *       to three radix rounds. Correct (all tests, racecheck clean), but
 *       slower: top_p 566 us, min_p 271 us (v6 twice: 537/538, 252/252);
 *       register spills grew from ~130 to ~450 bytes per thread.
 *   v8  shortlist_path in the cluster kernel: tokens within D of the max
 *       (D of 4, 8, 12, 16 from a rough profile) gathered into block 0,
 *       bitonic-sorted and cut there when they decide the row; the load keeps
 *       raw x and divides only the max. top_p 298 us, min_p 292 us (the
 *       cluster per row still waited on its own barriers: 37% of stall samples
 *       at CTA and cluster barriers, DRAM 19% busy).
 *   v9  the two stages in front (a block per chunk, then a block per row);
 *       the cluster kernel only for the rows left: top_p 127 us, min_p 127 us,
 *       top_k 50 720 us (its rows mostly fall through: a chunk lists at most
 *       64 tokens, and the row needs 50 above the highest chunk floor).
 *   v10 the rows left are taken by as many clusters as fit, looping (an
 *       empty list costs one 3 us launch, not 2048 blocks), and stage 2
 *       gathers every listed token in one parallel step: top_p 121 us. Tried
 *       and reverted on the way: the row decision in the block finishing a
 *       row's last chunk (one kernel, counters zeroed by a memset) with 128
 *       listed tokens, top_p 160 us. Nsight Compute on v10: stage 1 107 us
 *       (at profiling clocks), issue-bound: 77% SM throughput at 45% of DRAM
 *       peak; stage 2 20 us; the cluster kernel 3 us.
 *   v11 stage 1 without the argmax index unless greedy, 16-byte shared reads
 *       in both passes.
 *       H100, B=256, V=152064, T=0.6: top_p 117 us (PyTorch 5,163 us, 44x),
 *       min_p 119 us, top_k 50 869 us; B=1 top_p 31 us.
 *   v12 stage 1 with fewer instructions per token: a NaN-propagating max
 *       (max.NaN) instead of a NaN/inf test per value, the rough class counts
 *       from the exponent of the distance (a byte per class in one word, 6
 *       instructions per token instead of 14), ex2.approx.ftz for the rest.
 *       top_p 107 us; Nsight Compute: stage 1 89 us (was 107), now latency-
 *       bound (53% of DRAM peak, 63% SM). Then: a warp sorts shortlists of up
 *       to 32 keys in registers (no block barrier per bitonic stage), calls of
 *       up to 256 rows without penalties pass the row parameters inside
 *       stage 1's launch (no pageable upload), and kernels 2 and 3 launch as
 *       programmatic dependents (griddepcontrol.wait; the same build without
 *       it measured top_p 111 us in the same run).
 *       H100, B=256, V=152064, T=0.6: top_p 102-107 us (two runs), min_p
 *       103-108 us, top_k 50 853 us; B=64 top_p 53 us; B=1 top_p 28 us.
 *       Tried and reverted: stage 1 as resident blocks streaming chunks
 *       through two cp.async buffers, with one exact pass keeping every
 *       token within the widest class as a candidate: 299 us, because most
 *       tokens of a chunk without a raised token are within 16 of its own
 *       max, so nearly every token took a division and a vote.
 *   v13 stage 2 as a short chain. Timestamps (%globaltimer) taken inside the
 *       kernels of one B = 256 top-p call, in an instrumented build, showed
 *       every dependent step of a row costing 0.5-2 us: the stage-2 blocks
 *       started 1 us after stage 1 ended and took 9-15 us more, the slowest
 *       rows those sorting 100+ keys with a barrier per bitonic stage. Now:
 *       (a) stage 1 lets stage 2 launch when all its blocks have started
 *       (griddepcontrol.launch_dependents), so stage 2 waits on the SMs;
 *       (b) stage 1 reads the logits evict-first (__ldcs), keeping the
 *       summaries in L2 (the same build without it: 103 against 98-100 us);
 *       (c) a summary starts with a 32-byte head (max, floor, count, the
 *       chunk's total weight including its listed tokens), read by every
 *       warp of the row's block, lane c for chunk c, and reduced in registers
 *       with no block barrier; only chunks whose max reaches the row's floor
 *       offer their listed tokens (80 rather than 400 per row here), read as
 *       8-byte (z, id) pairs, four per thread in flight; (d) warp 0 alone
 *       sorts, cuts and draws shortlists of up to 32 keys in registers, and
 *       longer ones are first narrowed to the tokens within 1, 2, 4 or 8 of
 *       the max when those hold the cut. Per row, stage 2 went from 7.6 to
 *       4.5 us (median) after its wait. Tried: a warp per row (97 against
 *       91 us), and stage 2 letting the cluster kernel launch early, which
 *       ran the rows left 1.25-1.55x slower (top-k 50: 1,055 against 853 us;
 *       flat top-p: 2,156 against 1,381 us).
 *       H100, B=256, V=152064, T=0.6: top_p 93.4 us (PyTorch 5,144 us, 55x),
 *       min_p 97.3 us, top_k 50 854 us; B=64 top_p 43.9 us; B=1 21.3 us.
 *   Next: stage 1 streams at about 2.1 TB/s and is latency-bound: more
 *   chunks in flight per SM. Top-k rows need deeper chunk lists (a numpy
 *   model of the benchmark rows: 128 tokens at distances up to 20 put the
 *   row's top 50 in every shortlist; not yet measured).
 *
 * Grid: (C * B) blocks of 512 threads, cluster (C, 1, 1). Shapes: logits (B, V).
 */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstddef>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" {
#include "core/internal.h"
}
#include "kernels/cuda_try.cuh"
#include "kernels/cluster.cuh"
#include "kernels/launch.cuh"
#include "r1lab/philox.h"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 2048;       /* 11-bit digits, the last one 10 bits */
constexpr int kMaxCluster = 8;
constexpr int kCandidates = 1024; /* per block: tokens of the chosen distance bin */


/* Cluster helpers (cluster_rank, cluster_sync, in_block): kernels/cluster.cuh. */

__device__ __forceinline__ uint32_t order_key(float value) {
    uint32_t bits = __float_as_uint(value == 0.0f ? 0.0f : value);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float key_value(uint32_t key) {
    uint32_t bits = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
    return __uint_as_float(bits);
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/* ---- block reductions ---------------------------------------------------- */

template <typename T> __device__ __forceinline__ T warp_sum(T value) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    return value;
}

/* Sum over the block (any size); every thread gets the result. `scratch`
 * holds one value per warp. */
template <typename T> __device__ T block_sum(T value, T *scratch) {
    value = warp_sum(value);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = value;
    __syncthreads();
    T total = 0;
    for (int w = 0; w < (int)blockDim.x / 32; ++w) total += scratch[w];
    return total;
}

/* ---- what blocks of a cluster share --------------------------------------- */

struct Shared {
    /* load */
    float block_max;
    int block_argmax;
    int block_bad;        /* NaN or +inf seen */
    int block_finite;     /* some value above -inf */
    /* select: this block's merged segment of the histogram */
    double segment_weight;
    long long segment_count;
    /* draw */
    double warp_weight[kWarps];
    int warp_ties[kWarps];
    double block_weight;
    int block_ties;
    /* scratch */
    float scratch_f[kWarps];
    int scratch_i[kWarps];
    double scratch_d[kWarps];
    long long scratch_l[kWarps];
    int result_digit;
    double result_target;
    /* Local copies of cluster-wide results, gathered by warp 0 (one remote
     * read per lane, in parallel) and published to the block. */
    float row_max;
    int row_argmax, row_bad, row_finite;
    long long ties_before_block;
    double row_weight, weight_before_block;
    int chosen_block;
    int candidate_count;    /* tokens of the chosen distance bin in this block */
    int candidate_overflow; /* more than kCandidates of them                   */
    double result_above_weight;
    long long result_above_count;
    /* shortlist: this block's part, then block 0's cut for the others */
    int short_count;            /* shortlisted tokens in this block (may exceed the list) */
    double short_total;         /* weight of every token in this block                    */
    long long short_weight;     /* fixed-point weight of the shortlisted ones             */
    float short_out_max;        /* largest z left out of the shortlist                    */
    unsigned long long short_cut_key; /* rank key of the last token the cut keeps         */
    double short_kept_weight;   /* F, the kept weight                                     */
    int short_kept;             /* tokens kept after min-p                                */
    int short_decides;          /* the shortlist holds the cut (same in every block)      */
    int chunk_class_count[4];   /* two stages: tokens within each class distance          */
    int chunk_listed;           /* two stages: tokens listed                              */
    float short_distance;       /* D, or 0: no shortlist (same in every block)            */
    /* narrowing: shortlisted tokens (and fixed-point weight) within each narrow distance */
    int narrow_count[4];
    unsigned long long narrow_weight[4];
    int narrow_listed;
    /* distance profile: tokens (and rough weight) within each class distance */
    int profile_count[4];
    double profile_weight[4];
    double profile_total;
};

/* A prefix of the rank order: every token whose top `bits` key bits exceed
 * `prefix`, plus, among tokens whose top bits equal it, either all of them
 * (take == bucket_count) or the first `take` by id (then bits == 32: exact
 * ties, all of weight tie_weight). */
struct Cut {
    int bucket;          /* distance digit of the cut; -1 = no cut, all kept */
    uint32_t prefix;
    int bits;
    long long take;
    long long bucket_count;
    long long count;     /* tokens in the prefix */
    double weight;       /* their weight         */
    float tie_weight;
};

struct RowContext {
    const float *cached;   /* shared-memory chunk: raw x after the load, z
                              after raw_chunk_to_z; or NULL                  */
    const void *source;    /* the row in global memory (input or penalized)  */
    int source_is_bf16;
    float temperature;     /* 0 = greedy: z = l'                              */
    long long begin, end;  /* this block's chunk [begin, end) of the row      */
    float max_z;
    unsigned rank, cluster;
};

/* z = x / T, rounded as ref rounds it (T = 0: z = x). */
__device__ __forceinline__ float z_of(const RowContext &row, float x) {
    return row.temperature > 0.0f ? __fdiv_rn(x, row.temperature) : x;
}

/* Raw x of element i from global memory. */
__device__ __forceinline__ float load_x_global(const RowContext &row, long long i) {
    return row.source_is_bf16 ? to_float(((const __nv_bfloat16 *)row.source)[i])
                              : ((const float *)row.source)[i];
}

/* Raw x of element i of this block's chunk (before raw_chunk_to_z). */
__device__ __forceinline__ float load_x(const RowContext &row, long long i) {
    return row.cached ? row.cached[i - row.begin] : load_x_global(row, i);
}

/* z of element i (after raw_chunk_to_z). */
__device__ __forceinline__ float load_z(const RowContext &row, long long i) {
    if (row.cached) return row.cached[i - row.begin];
    return z_of(row, load_x_global(row, i));
}

/* The radix select and the full draw read z: the cached chunk is divided in
 * place once, when the shortlist did not decide the row. */
__device__ void raw_chunk_to_z(const RowContext &row, float *cache) {
    if (cache && row.temperature > 0.0f) {
        const int n = (int)(row.end - row.begin);
        for (int j = threadIdx.x; j < n; j += kThreads) cache[j] = __fdiv_rn(cache[j], row.temperature);
    }
    __syncthreads();
}

__device__ __forceinline__ float weight_of(const RowContext &row, float z) {
    return expf(z - row.max_z);
}

/* The first round of the select bins tokens by their distance from the max,
 * d = m - z, in kBins steps of 64 / (kBins - 1) (tokens with d >= 64, weight
 * below e^-64, share the last bin). The digit is reversed so that, like the
 * key digits after it, a higher digit means a larger z. Binning a rounded d
 * is monotone in z, so bins never reorder tokens; they spread a peaked row
 * over many bins (the key's top bits would crowd it into a few exponents,
 * and shared-memory atomics on one address serialize). */
constexpr float kDistanceScale = (float)(kBins - 1) / 64.0f;
__device__ __forceinline__ int distance_digit(const RowContext &row, float z) {
    float scaled = fminf((row.max_z - z) * kDistanceScale, (float)(kBins - 1));
    return kBins - 1 - (int)scaled;
}

/* ---- load: z into shared memory, max, argmax, validity -------------------- */

/* Sixteen bytes of input: 4 floats or 8 bf16. */
template <typename In> struct Vector;
template <> struct Vector<float> {
    static constexpr int kCount = 4;
    __device__ static void load(const float *p, float *out) {
        float4 v = *(const float4 *)p;
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    }
    /* Read once: marked evict-first, so that the stream of logits does not
     * push the chunk summaries (which stage 2 reads next) out of L2. */
    __device__ static void load_once(const float *p, float *out) {
        float4 v = __ldcs((const float4 *)p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    }
};
template <> struct Vector<__nv_bfloat16> {
    static constexpr int kCount = 8;
    __device__ static void load(const __nv_bfloat16 *p, float *out) {
        unpack(*(const uint4 *)p, out);
    }
    __device__ static void load_once(const __nv_bfloat16 *p, float *out) {
        unpack(__ldcs((const uint4 *)p), out);
    }
    __device__ static void unpack(uint4 v, float *out) {
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            out[2 * k] = __uint_as_float(words[k] << 16);
            out[2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
        }
    }
};

/* The load reads raw values x, not z = x / T: division rounds monotonically,
 * so max z = max x / T, and only that one division is needed to find the
 * max, +inf (x / T can overflow only at the max) and a row of -inf. The
 * chunk is kept raw; the paths after the load divide what they read. */
struct LoadState {
    float best = -INFINITY;
    long long best_index = LLONG_MAX;
    int bad = 0;
    /* Folds raw element i into the running max and validity. */
    __device__ __forceinline__ void take(long long i, float x) {
        bad |= !(x < INFINITY); /* NaN or +inf */
        if (x > best) { best = x; best_index = i; }
    }
};

template <typename In>
__device__ void load_row(RowContext &row, const In *source, float *cache, Shared &s) {
    constexpr int kVector = Vector<In>::kCount;
    LoadState state;
    const bool aligned = ((uintptr_t)(source + row.begin) % 16 == 0) &&
                         ((row.end - row.begin) % kVector == 0);
    if (aligned) {
        /* Each thread's elements still come in increasing index order, so the
         * first maximum it sees is the lowest index. */
#pragma unroll 2
        for (long long i = row.begin + (long long)threadIdx.x * kVector; i < row.end;
             i += (long long)kThreads * kVector) {
            float x[kVector];
            Vector<In>::load(source + i, x);
#pragma unroll
            for (int k = 0; k < kVector; ++k) state.take(i + k, x[k]);
            /* 16-byte stores: a warp writes whole 128-byte lines, no bank
             * conflicts (four scalar stores at a 16-byte stride were 4-way). */
            if (cache) {
                float4 *to = (float4 *)(cache + (i - row.begin));
#pragma unroll
                for (int k = 0; k < kVector / 4; ++k)
                    to[k] = make_float4(x[4 * k], x[4 * k + 1], x[4 * k + 2], x[4 * k + 3]);
            }
        }
    } else {
        for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads) {
            const float x = to_float(source[i]);
            state.take(i, x);
            if (cache) cache[i - row.begin] = x;
        }
    }
    float best = state.best;
    long long best_index = state.best_index;
    int bad = state.bad, finite = best > -INFINITY;
    /* Block argmax with ties to the lower index. */
    for (int offset = 16; offset > 0; offset >>= 1) {
        float other = __shfl_xor_sync(0xFFFFFFFFu, best, offset);
        long long other_index = __shfl_xor_sync(0xFFFFFFFFu, best_index, offset);
        if (other > best || (other == best && other_index < best_index)) {
            best = other;
            best_index = other_index;
        }
    }
    bad = __any_sync(0xFFFFFFFFu, bad);
    finite = __any_sync(0xFFFFFFFFu, finite);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        s.scratch_f[warp] = best;
        s.scratch_l[warp] = best_index;
        s.scratch_i[warp] = bad | (finite << 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float b = -INFINITY;
        long long bi = LLONG_MAX;
        int flags = 0;
        for (int w = 0; w < kWarps; ++w) {
            if (s.scratch_f[w] > b || (s.scratch_f[w] == b && s.scratch_l[w] < bi)) {
                b = s.scratch_f[w];
                bi = s.scratch_l[w];
            }
            flags |= s.scratch_i[w];
        }
        s.block_max = b;
        s.block_argmax = bi == LLONG_MAX ? -1 : (int)bi;
        s.block_bad = flags & 1;
        s.block_finite = (flags >> 1) & 1;
    }
    __syncthreads();
}

/* ---- select: one radix round ------------------------------------------------ */

/* Finds, in merged bins [first, first + count) read from block `owner`, the
 * digit (scanning from the top) where above + running reaches the target.
 * Run by warp 0 of every block; returns -1 if the target is not reached. */
/* Histogram weights are fixed point: round(e * 2^40) in 64-bit integers.
 * Integer atomics are native on shared memory (double atomics are a
 * compare-and-swap loop), sums are exact and independent of order, and the
 * rounding, at most 2^-41 per token, sits far below the float64 sums' bar. */
typedef unsigned long long fixed_weight;
constexpr double kFixedScale = 1099511627776.0; /* 2^40 */
__device__ __forceinline__ fixed_weight to_fixed(float e) {
    return __float2ull_rn(e * 1099511627776.0f);
}
__device__ __forceinline__ double from_fixed(fixed_weight w) { return (double)w / kFixedScale; }
/* The fixed-point weight of z. Below d = -29, e * 2^40 < 0.28 rounds to 0,
 * so expf is skipped there with the same result. */
__device__ __forceinline__ fixed_weight fixed_weight_of(float max_z, float z) {
    float d = z - max_z;
    return d < -29.0f ? 0ull : to_fixed(expf(d));
}

__device__ int find_crossing_digit(const fixed_weight *bin_weight, const int *bin_count, int first,
                                   int count, bool by_count, double target,
                                   double &above_weight, long long &above_count) {
    /* 128 digits per step, from the top: lane l takes the 4 consecutive
     * digits top - 4l - k (k = 0..3), reading them together (the bins may be
     * in another block's shared memory: one round trip, not four). */
    constexpr int kPerLane = 4;
    const int lane = threadIdx.x % 32;
    for (int top = first + count - 1; top >= first; top -= 32 * kPerLane) {
        double w[kPerLane];
        int c[kPerLane];
#pragma unroll
        for (int k = 0; k < kPerLane; ++k) {
            int digit = top - kPerLane * lane - k;
            w[k] = digit >= first ? from_fixed(bin_weight[digit - first]) : 0.0;
            c[k] = digit >= first ? bin_count[digit - first] : 0;
        }
        double lane_weight = 0;
        long long lane_count = 0;
#pragma unroll
        for (int k = 0; k < kPerLane; ++k) {
            lane_weight += w[k];
            lane_count += c[k];
        }
        double w_scan = lane_weight; /* inclusive over lanes = descending digits */
        long long c_scan = lane_count;
        for (int offset = 1; offset < 32; offset <<= 1) {
            double wo = __shfl_up_sync(0xFFFFFFFFu, w_scan, offset);
            long long co = __shfl_up_sync(0xFFFFFFFFu, c_scan, offset);
            if (lane >= offset) { w_scan += wo; c_scan += co; }
        }
        bool reached = lane_count > 0 && (by_count ? (above_count + c_scan >= (long long)target)
                                                   : (above_weight + w_scan >= target));
        unsigned ballot = __ballot_sync(0xFFFFFFFFu, reached);
        if (ballot) {
            const int winner = __ffs(ballot) - 1;
            int found = -1;
            double aw = above_weight + (w_scan - lane_weight);
            long long ac = above_count + (c_scan - lane_count);
            if (lane == winner) {
                for (int k = 0; k < kPerLane && found < 0; ++k) {
                    bool hit = c[k] > 0 && (by_count ? ac + c[k] >= (long long)target
                                                     : aw + w[k] >= target);
                    if (hit) {
                        found = top - kPerLane * lane - k;
                    } else {
                        aw += w[k];
                        ac += c[k];
                    }
                }
                if (found < 0) { /* rounding between the two sums: the last digit */
                    for (int k = kPerLane - 1; k >= 0 && found < 0; --k)
                        if (c[k] > 0) {
                            found = top - kPerLane * lane - k;
                            aw -= w[k];
                            ac -= c[k];
                        }
                }
            }
            above_weight = __shfl_sync(0xFFFFFFFFu, aw, winner);
            above_count = __shfl_sync(0xFFFFFFFFu, ac, winner);
            return __shfl_sync(0xFFFFFFFFu, found, winner);
        }
        above_weight += __shfl_sync(0xFFFFFFFFu, w_scan, 31);
        above_count += __shfl_sync(0xFFFFFFFFu, c_scan, 31);
    }
    return -1;
}

/* Lists this block's tokens (chunk-local indices) whose distance digit is
 * `bucket`, so that later select rounds scan them instead of the chunk.
 * Returns false (every block agrees) when some block has more than
 * kCandidates of them; the rounds then scan the whole chunk. */
__device__ bool list_bucket(const RowContext &row, int bucket, int *candidates, Shared &s) {
    if (threadIdx.x == 0) s.candidate_count = 0;
    __syncthreads();
    const int n = (int)(row.end - row.begin);
    const int lane = threadIdx.x % 32;
    for (int base = 0; base < n; base += kThreads) {
        int j = base + (int)threadIdx.x;
        bool mine = j < n && distance_digit(row, row.cached[j]) == bucket;
        unsigned ballot = __ballot_sync(0xFFFFFFFFu, mine);
        int slot = 0;
        if (lane == 0 && ballot) slot = atomicAdd(&s.candidate_count, __popc(ballot));
        slot = __shfl_sync(0xFFFFFFFFu, slot, 0) + __popc(ballot & ((1u << lane) - 1u));
        if (mine && slot < kCandidates) candidates[slot] = j;
    }
    __syncthreads();
    /* Every block must take the same path: agree on the overflow. */
    if (threadIdx.x == 0) s.candidate_overflow = s.candidate_count > kCandidates;
    cluster_sync();
    bool overflow = false;
    for (unsigned b = 0; b < row.cluster; ++b) overflow |= in_block(&s, b)->candidate_overflow != 0;
    cluster_sync(); /* the flags are read above before any block rewrites them */
    return !overflow;
}

/* Radix select of the shortest prefix whose count reaches `target` (top-k) or
 * whose weight reaches it (top-p). hist_* are kBins-sized shared arrays;
 * merged_* hold this block's kBins / C digits of the merged histogram.
 * Weights are summed in float64 (shared-memory double atomics) so that the
 * cut agrees with ref's float64 running sums, not just to float precision. */
__device__ __noinline__ Cut radix_select(const RowContext &row, bool by_count, double target,
                            bool target_is_fraction_of_total,
                            fixed_weight *hist_weight, int *hist_count, fixed_weight *merged_weight,
                            int *merged_count, int *candidates, Shared &s) {
    int bucket = -1; /* distance digit chosen by round 0 */
    uint32_t prefix = 0;
    int bits = 0;
    double above_weight = 0;
    long long above_count = 0;
    long long bucket_count = 0;
    double bucket_weight = 0;
    const unsigned C = row.cluster;
    const int per_block = kBins / (int)C;
    bool use_candidates = false;

    for (int round = 0; round == 0 || bits < 32; ++round) {
        const int digit_bits = bits < 22 ? 11 : 10;
        const int shift = 32 - bits - digit_bits;
        for (int i = threadIdx.x; i < kBins; i += kThreads) {
            hist_weight[i] = 0;
            hist_count[i] = 0;
        }
        __syncthreads();
        const int n = (int)(row.end - row.begin);
        if (round == 0 && row.cached) {
            /* Every token: 16-byte reads of the cached chunk. */
            for (int j = 4 * (int)threadIdx.x; j < n; j += 4 * kThreads) {
                float4 v = *(const float4 *)(row.cached + j);
                const float zs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    if (j + k >= n) break;
                    int digit = distance_digit(row, zs[k]);
                    atomicAdd(&hist_weight[digit], fixed_weight_of(row.max_z, zs[k]));
                    atomicAdd(&hist_count[digit], 1);
                }
            }
        } else if (round > 0 && use_candidates) {
            /* Only the chosen distance bin's tokens, listed in round 1. */
            for (int t = threadIdx.x; t < s.candidate_count; t += kThreads) {
                float z = row.cached[candidates[t]];
                uint32_t key = order_key(z);
                if (bits > 0 && (key >> (32 - bits)) != prefix) continue;
                int digit = (int)((key >> shift) & ((1u << digit_bits) - 1u));
                atomicAdd(&hist_weight[digit], fixed_weight_of(row.max_z, z));
                atomicAdd(&hist_count[digit], 1);
            }
        } else {
            for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads) {
                float z = load_z(row, i);
                int digit = distance_digit(row, z);
                if (round > 0) {
                    uint32_t key = order_key(z);
                    if (digit != bucket || (bits > 0 && (key >> (32 - bits)) != prefix)) continue;
                    digit = (int)((key >> shift) & ((1u << digit_bits) - 1u));
                }
                atomicAdd(&hist_weight[digit], fixed_weight_of(row.max_z, z));
                atomicAdd(&hist_count[digit], 1);
            }
        }
        cluster_sync();
        /* Merge: this block owns digits [rank * per_block, (rank + 1) * per_block). */
        double my_weight = 0;
        long long my_count = 0;
        for (int j = threadIdx.x; j < per_block; j += kThreads) {
            int digit = (int)row.rank * per_block + j;
            fixed_weight w = 0;
            int c = 0;
            for (unsigned b = 0; b < C; ++b) {
                w += in_block(hist_weight, b)[digit];
                c += in_block(hist_count, b)[digit];
            }
            merged_weight[j] = w;
            merged_count[j] = c;
            my_weight += from_fixed(w);
            my_count += c;
        }
        my_weight = block_sum(my_weight, s.scratch_d);
        my_count = block_sum(my_count, s.scratch_l);
        if (threadIdx.x == 0) {
            s.segment_weight = my_weight;
            s.segment_count = my_count;
        }
        cluster_sync();
        /* Every block finds the crossing digit the same way, in warp 0: lane
         * b reads block b's segment totals (in parallel), then the segments
         * are walked from the top in registers. */
        if (threadIdx.x < 32) {
            const unsigned lane = threadIdx.x;
            double my_segment_weight = 0;
            long long my_segment_count = 0;
            if (lane < C) {
                const Shared *other = in_block(&s, lane);
                my_segment_weight = other->segment_weight;
                my_segment_count = other->segment_count;
            }
            if (round == 0 && target_is_fraction_of_total) {
                /* top-p over the whole row: the target is top_p times the
                 * total weight, which round 0's histogram just summed. */
                double total = 0;
                for (int b = 0; b < (int)C; ++b)
                    total += __shfl_sync(0xFFFFFFFFu, my_segment_weight, b);
                target *= total;
            }
            double aw = above_weight;
            long long ac = above_count;
            int digit = -1;
            for (int b = (int)C - 1; b >= 0 && digit < 0; --b) {
                double sw = __shfl_sync(0xFFFFFFFFu, my_segment_weight, b);
                long long sc = __shfl_sync(0xFFFFFFFFu, my_segment_count, b);
                bool reached = sc > 0 && (by_count ? ac + sc >= (long long)target
                                                   : aw + sw >= target);
                if (!reached) {
                    aw += sw;
                    ac += sc;
                    continue;
                }
                digit = find_crossing_digit(in_block(merged_weight, (unsigned)b),
                                            in_block(merged_count, (unsigned)b),
                                            b * per_block, per_block, by_count, target, aw, ac);
            }
            if (threadIdx.x == 0) {
                s.result_digit = digit;
                s.result_above_weight = aw;
                s.result_above_count = ac;
                s.result_target = target;
            }
        }
        __syncthreads();
        target = s.result_target;
        int digit = s.result_digit;
        if (digit < 0) {
            /* Rounding kept the target out of reach: keep everything that
             * matches the prefix so far (the whole row, or the whole bucket
             * chosen in the previous round). */
            Cut all = {bucket, prefix, bits, LLONG_MAX, LLONG_MAX, LLONG_MAX, 0.0, 0.0f};
            if (round > 0) {
                all.take = all.bucket_count = bucket_count;
                all.count = above_count + bucket_count;
                all.weight = above_weight + bucket_weight;
            }
            cluster_sync();
            return all;
        }
        {
            /* The chosen bin's totals live in its owner's merged arrays. */
            unsigned owner = (unsigned)(digit / per_block);
            bucket_weight = from_fixed(in_block(merged_weight, owner)[digit - (int)owner * per_block]);
            bucket_count = in_block(merged_count, owner)[digit - (int)owner * per_block];
        }
        above_weight = s.result_above_weight;
        above_count = s.result_above_count;
        if (round == 0) {
            bucket = digit;
            use_candidates = row.cached != nullptr && bucket_count > 1;
            if (use_candidates) use_candidates = list_bucket(row, bucket, candidates, s);
        } else {
            prefix = (prefix << digit_bits) | (uint32_t)digit;
            bits += digit_bits;
        }
        cluster_sync(); /* merged arrays are read above; they are rewritten next round */
        if (bucket_count == 1) break;
        if (by_count && above_count + bucket_count == (long long)target) break;
    }

    Cut cut;
    cut.bucket = bucket;
    cut.prefix = prefix;
    cut.bits = bits;
    cut.bucket_count = bucket_count;
    cut.tie_weight = 0.0f;
    if (bits == 32 && bucket_count > 1) {
        /* Exact ties: equal z, so equal weight. */
        float tie_weight = weight_of(row, key_value(prefix));
        cut.tie_weight = tie_weight;
        long long take;
        if (by_count) {
            take = (long long)target - above_count;
        } else {
            double need = (target - above_weight) / (double)tie_weight;
            take = (long long)ceil(need);
            while (take > 1 && above_weight + (double)(take - 1) * tie_weight >= target) --take;
        }
        if (take < 1) take = 1;
        if (take > bucket_count) take = bucket_count;
        cut.take = take;
        cut.weight = above_weight + (double)take * (double)tie_weight;
    } else {
        cut.take = bucket_count;
        cut.weight = above_weight + bucket_weight;
    }
    cut.count = above_count + cut.take;
    return cut;
}

/* ---- draw -------------------------------------------------------------------- */

/* Where token i stands relative to the cut. */
struct KeepRule {
    Cut cut;
    bool partial_ties;  /* only the first cut.take exact ties are kept */
    float min_p;
    /* z below this has e < min_p for certain (ln(min_p) less a margin far
     * above expf's error), so its weight need not be computed. */
    float min_p_reject_below;
};

/* 1: in the prefix (not a partial tie); 2: a tie of a partial cut; 0: out. */
__device__ __forceinline__ int classify(const RowContext &row, const KeepRule &rule, float z) {
    const Cut &c = rule.cut;
    if (c.bucket < 0) return 1;
    int digit = distance_digit(row, z);
    if (digit != c.bucket) return digit > c.bucket ? 1 : 0;
    if (c.bits == 0) return 1; /* the whole bucket is in */
    uint32_t key = order_key(z);
    uint32_t top = c.bits == 32 ? key : (key >> (32 - c.bits));
    if (top > c.prefix) return 1;
    if (top < c.prefix) return 0;
    return rule.partial_ties ? 2 : 1;
}

/* Each warp owns an id-ordered segment of its block's chunk. */
__device__ __forceinline__ void warp_segment(const RowContext &row, int warp, long long &first,
                                             long long &last) {
    long long length = row.end - row.begin;
    long long per_warp = ((length + kWarps - 1) / kWarps + 31) / 32 * 32;
    first = row.begin + (long long)warp * per_warp;
    last = first + per_warp;
    if (first > row.end) first = row.end;
    if (last > row.end) last = row.end;
}

/* Kept weight of element i given how many partial ties precede it. */
__device__ __forceinline__ float kept_weight(const RowContext &row, const KeepRule &rule, float z,
                                             int kind, long long ties_before) {
    if (kind == 0 || z < rule.min_p_reject_below) return 0.0f;
    float e = kind == 2 ? rule.cut.tie_weight : weight_of(row, z);
    if (kind == 2 && ties_before >= rule.cut.take) return 0.0f;
    return e >= rule.min_p ? e : 0.0f;
}

struct DrawResult {
    int token;
    float weight;
};

/* One warp scans its segment for the first token whose running kept weight
 * exceeds `threshold` (relative to the segment start); with threshold =
 * +inf it returns the last kept token with positive weight. Each lane takes
 * a contiguous run of the segment (an odd length, so the lanes' reads fall
 * in different banks): lane totals, one warp scan to find the lane, then
 * that lane walks its run. */
__device__ DrawResult scan_segment(const RowContext &row, const KeepRule &rule, long long first,
                                   long long last, long long ties_before, double threshold) {
    const int lane = threadIdx.x % 32;
    const long long length = last - first;
    const long long run = ((length + 31) / 32) | 1;
    long long my_first = first + lane * run, my_last = my_first + run;
    if (my_first > last) my_first = last;
    if (my_last > last) my_last = last;

    /* Pass 1: this lane's weight without partial ties, and its tie count. */
    double weight = 0;
    long long ties = 0;
    for (long long i = my_first; i < my_last; ++i) {
        float z = load_z(row, i);
        int kind = classify(row, rule, z);
        if (kind == 2) ++ties;
        else weight += kept_weight(row, rule, z, kind, 0);
    }
    long long ties_scan = ties; /* inclusive, in lane (= id) order */
    for (int offset = 1; offset < 32; offset <<= 1) {
        long long other = __shfl_up_sync(0xFFFFFFFFu, ties_scan, offset);
        if (lane >= offset) ties_scan += other;
    }
    const long long my_ties_before = ties_before + ties_scan - ties;
    if (rule.partial_ties && ties > 0) {
        long long kept = rule.cut.take - my_ties_before;
        kept = kept < 0 ? 0 : (kept > ties ? ties : kept);
        float e = rule.cut.tie_weight >= rule.min_p ? rule.cut.tie_weight : 0.0f;
        weight += (double)kept * e;
    }
    double inclusive = weight;
    for (int offset = 1; offset < 32; offset <<= 1) {
        double other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
        if (lane >= offset) inclusive += other;
    }
    unsigned crosses = __ballot_sync(0xFFFFFFFFu, weight > 0 && inclusive > threshold);
    unsigned positive = __ballot_sync(0xFFFFFFFFu, weight > 0);
    DrawResult found = {-1, 0.0f};
    if (!positive) return found;
    const int chosen = crosses ? __ffs(crosses) - 1 : 31 - __clz(positive);

    /* Pass 2: the chosen lane walks its run. */
    if (lane == chosen) {
        double running = inclusive - weight;
        long long tie_rank = my_ties_before;
        for (long long i = my_first; i < my_last; ++i) {
            float z = load_z(row, i);
            int kind = classify(row, rule, z);
            float e = kept_weight(row, rule, z, kind, tie_rank);
            if (kind == 2) ++tie_rank;
            if (e <= 0.0f) continue;
            running += e;
            found.token = (int)i;
            found.weight = e;
            if (running > threshold) break; /* else: the last positive so far */
        }
    }
    found.token = __shfl_sync(0xFFFFFFFFu, found.token, chosen);
    found.weight = __shfl_sync(0xFFFFFFFFu, found.weight, chosen);
    return found;
}

/* ---- shortlist: the usual case, a cut among the tokens near the max --------------- */

/* The shortlist is every token with z >= max z - D, for the smallest D of
 * 4, 8, 12, 16 that a first, rough pass (distance_profile) says is enough.
 * Every other token ranks below all of it, so the shortlist alone decides
 * the row when
 *   top-k is on and the shortlist holds at least k tokens, or
 *   top-p alone is on and the shortlist's weight reaches top_p of the row's, or
 *   min-p alone is on and every token left out has e < min_p.
 * Then block 0 gathers the shortlist (at most kShortlistCapacity tokens),
 * sorts it in rank order, cuts it and draws from it: no radix rounds and no
 * second pass over the row. A peaked row, the usual shape of an LLM's
 * logits, has a few dozen shortlisted tokens. Otherwise (a flat row, or
 * pure temperature sampling) radix_select and the full draw run. */
constexpr int kDistanceClasses = 4;
__device__ __forceinline__ float class_distance(int c) { return 4.0f * (float)(c + 1); }
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kShortlistCapacity = kCandidates; /* for the whole row */

/* Pass 1, rough: how many tokens, and about how much weight, lie within each
 * class distance of the max, from x * (log2 e / T) - max z * log2 e and
 * exp2 (no division; each weight good to a few parts per million). */
__device__ void distance_profile(const RowContext &row, Shared &s) {
    const float scale = kLog2e / row.temperature, shift = -row.max_z * kLog2e;
    int count[kDistanceClasses] = {};
    float weight[kDistanceClasses] = {};
    float total = 0.0f;
    const int n = (int)(row.end - row.begin);
    auto visit = [&](float x) {
        const float t = fmaf(x, scale, shift); /* (z - max z) log2 e, roughly */
        const float e = exp2f(t);
        total += e;
#pragma unroll
        for (int c = 0; c < kDistanceClasses; ++c)
            if (t >= -class_distance(c) * kLog2e) {
                count[c] += 1;
                weight[c] += e;
            }
    };
    if (row.cached) {
        int j = 4 * (int)threadIdx.x;
        for (; j + 3 < n; j += 4 * kThreads) {
            const float4 v = *(const float4 *)(row.cached + j);
            visit(v.x), visit(v.y), visit(v.z), visit(v.w);
        }
        for (; j < n; ++j) visit(row.cached[j]); /* the tail of the chunk */
    } else {
        for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads) visit(load_x_global(row, i));
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int c = 0; c < kDistanceClasses; ++c) {
        count[c] = warp_sum(count[c]);
        weight[c] = warp_sum(weight[c]);
    }
    total = warp_sum(total);
    __syncthreads();
    if (lane == 0) s.scratch_d[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0;
        for (int w = 0; w < kWarps; ++w) sum += s.scratch_d[w];
        s.profile_total = sum;
        for (int c = 0; c < kDistanceClasses; ++c) s.profile_count[c] = 0, s.profile_weight[c] = 0;
    }
    __syncthreads();
    if (lane == 0) {
        for (int c = 0; c < kDistanceClasses; ++c) {
            atomicAdd(&s.profile_count[c], count[c]);
            atomicAdd(&s.profile_weight[c], (double)weight[c]);
        }
    }
    __syncthreads();
}

/* The class distance D for the shortlist, or 0 when no class will do, from
 * the cluster's profile (the same answer in every block). */
__device__ float choose_distance(const r1_sampling_params &p, long long V, const long long *count,
                                 const double *weight, double total) {
    const bool top_k_on = p.top_k > 0 && (long long)p.top_k < V;
    const float min_p_distance = p.min_p > 0.0f ? -logf(p.min_p) + 0.01f : INFINITY;
    for (int c = 0; c < kDistanceClasses; ++c) {
        if (count[c] > kShortlistCapacity) return 0.0f;
        bool enough;
        if (top_k_on) enough = count[c] >= (long long)p.top_k;
        else if (p.top_p < 1.0f) enough = weight[c] >= (double)p.top_p * total * (1.0 + 1e-4);
        else enough = class_distance(c) >= min_p_distance;
        if (enough) return class_distance(c);
    }
    return 0.0f;
}

/* Rank order as one 64-bit key, larger = earlier: z descending, then id
 * ascending. */
__device__ __forceinline__ unsigned long long rank_key(float z, long long id) {
    return ((unsigned long long)order_key(z) << 32) | (0xFFFFFFFFu - (uint32_t)id);
}
__device__ __forceinline__ int rank_key_id(unsigned long long key) {
    return (int)(0xFFFFFFFFu - (uint32_t)key);
}
__device__ __forceinline__ float rank_key_z(unsigned long long key) {
    return key_value((uint32_t)(key >> 32));
}

/* Id order with the weight alongside, larger = earlier: id ascending. */
__device__ __forceinline__ unsigned long long id_key(int id, float e) {
    return ((unsigned long long)(0xFFFFFFFFu - (uint32_t)id) << 32) | __float_as_uint(e);
}

__device__ __forceinline__ int next_power_of_two(int n) {
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}

/* Bitonic sort of one key per lane into descending order across the warp
 * (lane 0 gets the largest), in registers. */
__device__ __forceinline__ unsigned long long warp_sort_descending(unsigned long long key) {
    const int lane = threadIdx.x % 32;
    for (int size = 2; size <= 32; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            const unsigned long long other = __shfl_xor_sync(0xFFFFFFFFu, key, stride);
            /* the lower lane of a pair keeps the larger key where the run of
             * `size` descends, the smaller where it ascends */
            const bool keep_larger = ((lane & stride) == 0) == ((lane & size) == 0);
            key = keep_larger ? (key > other ? key : other) : (key < other ? key : other);
        }
    return key;
}

/* Bitonic sort of keys[0, count), count a power of two, into descending
 * order, by the whole block (any size from a warp up): in one warp's
 * registers up to 32 keys, in shared memory beyond. Callers synchronize
 * before; the sorted keys are visible to the block on return. */
__device__ void sort_descending(unsigned long long *keys, int count) {
    if (count <= 32) { /* one warp, in registers: no block barrier per stage */
        if (threadIdx.x < 32) {
            const int lane = threadIdx.x;
            const unsigned long long key = warp_sort_descending(lane < count ? keys[lane] : 0);
            if (lane < count) keys[lane] = key;
        }
        __syncthreads();
        return;
    }
    for (int size = 2; size <= count; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < count; i += blockDim.x) {
                const int partner = i ^ stride;
                if (partner <= i) continue;
                const unsigned long long x = keys[i], y = keys[partner];
                const bool descending = (i & size) == 0;
                if (descending ? x < y : x > y) {
                    keys[i] = y;
                    keys[partner] = x;
                }
            }
            __syncthreads();
        }
    }
}

/* A raw value below the result cannot reach z = RN(x / T) >= floor_z (T > 0):
 * that needs x / T >= floor_z - ulp, so the bound is T (floor_z - ulp),
 * lowered by a few more ulps in double. */
__device__ __forceinline__ float lowest_raw_reaching(float floor_z, float T) {
    const double bound = ((double)floor_z - fabs((double)floor_z) * 0x1p-20) * (double)T;
    return (float)(bound - fabs(bound) * 0x1p-20 - 0x1p-140);
}

/* One pass over this block's raw chunk: the shortlist (chunk indices in
 * `list`, count, fixed-point weight), the weight of the rest, and the
 * largest z left out, published in s.
 *
 * Most tokens are far below the max. A raw value below x_low cannot reach
 * z >= keep_from, so it is never divided: its weight comes from one fused
 * multiply-add and exp2, good to a few parts per million of a weight below
 * e^-16, well inside the fixed-point rounding of the row's total. Values
 * at or above x_low are divided exactly and shortlisted by their z. */
__device__ void shortlist_chunk(const RowContext &row, float distance, int *list, Shared &s) {
    const float keep_from = row.max_z - distance;
    const float T = row.temperature;
    const float x_low = lowest_raw_reaching(keep_from, T);
    const float scale = 1.4426950408889634f / T, shift = -row.max_z * 1.4426950408889634f;
    if (threadIdx.x == 0) s.short_count = 0;
    __syncthreads();
    fixed_weight kept = 0;
    float rest = 0.0f, out_x = -INFINITY, out_z = -INFINITY;
    const int n = (int)(row.end - row.begin), lane = threadIdx.x % 32;
    for (int base = 0; base < n; base += 4 * kThreads) { /* uniform trip count: ballots below */
        const int j = base + 4 * (int)threadIdx.x;
        float xs[4];
        if (row.cached && j + 3 < n) {
            float4 v = *(const float4 *)(row.cached + j);
            xs[0] = v.x; xs[1] = v.y; xs[2] = v.z; xs[3] = v.w;
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) xs[k] = j + k < n ? load_x(row, row.begin + j + k) : -INFINITY;
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const bool near = xs[k] >= x_low;
            if (!near) {
                rest += exp2f(fmaf(xs[k], scale, shift));
                out_x = fmaxf(out_x, xs[k]);
            }
            if (!__any_sync(0xFFFFFFFFu, near)) continue;
            bool in = false;
            if (near) {
                const float z = __fdiv_rn(xs[k], T);
                in = z >= keep_from;
                if (in) {
                    kept += fixed_weight_of(row.max_z, z);
                } else {
                    rest += expf(z - row.max_z);
                    out_z = fmaxf(out_z, z);
                }
            }
            const unsigned ballot = __ballot_sync(0xFFFFFFFFu, in);
            if (ballot) {
                int slot = 0;
                if (lane == 0) slot = atomicAdd(&s.short_count, __popc(ballot));
                slot = __shfl_sync(0xFFFFFFFFu, slot, 0) + __popc(ballot & ((1u << lane) - 1u));
                if (in && slot < kShortlistCapacity) list[slot] = j + k;
            }
        }
    }
    out_z = fmaxf(out_z, out_x > -INFINITY ? __fdiv_rn(out_x, T) : -INFINITY);
    const double block_rest = block_sum((double)rest, s.scratch_d);
    const long long block_kept = block_sum((long long)kept, s.scratch_l);
    for (int offset = 16; offset > 0; offset >>= 1)
        out_z = fmaxf(out_z, __shfl_xor_sync(0xFFFFFFFFu, out_z, offset));
    if (threadIdx.x % 32 == 0) s.scratch_f[threadIdx.x / 32] = out_z;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = -INFINITY;
        for (int w = 0; w < kWarps; ++w) m = fmaxf(m, s.scratch_f[w]);
        s.short_total = from_fixed((fixed_weight)block_kept) + block_rest;
        s.short_weight = block_kept;
        s.short_out_max = m;
    }
}

/* Whether the shortlist decides the row (see above); every block computes
 * the same answer from the same cluster-wide totals. */
__device__ bool shortlist_decides(const r1_sampling_params &p, long long V, float max_z,
                                  long long count, double total, fixed_weight weight,
                                  float out_max) {
    if (count > kShortlistCapacity) return false;
    if (p.top_k > 0 && (long long)p.top_k < V) return (long long)p.top_k <= count;
    if (p.top_p < 1.0f) return from_fixed(weight) >= (double)p.top_p * total;
    if (p.min_p > 0.0f) /* a margin for expf's last-bit rounding */
        return out_max == -INFINITY || expf(out_max - max_z) < p.min_p * 0.999f;
    return false;
}

/* The shortlist narrowed before it is sorted. A peaked row's cut usually
 * lies within a unit or two of its max, while its shortlist may hold a
 * hundred tokens or more. The tokens with z >= max z - D are a prefix of
 * the rank order, so when, for the smallest D of 1, 2, 4, 8, they hold the
 * top-k, enough fixed-point weight for the top-p cut (the very sums the
 * draw compares), or every token min-p keeps, the draw needs only them.
 * They replace keys[0, count) (order aside) and their count is returned;
 * otherwise count is. Any block size; callers synchronize before, and
 * the draw's own barrier publishes the moved keys. */
constexpr int kNarrowClasses = 4;
__device__ __forceinline__ float narrow_distance(int c) { return (float)(1 << c); } /* 1 2 4 8 */

__device__ int narrow_shortlist(float max_z, const r1_sampling_params &p, long long V,
                                double row_total, int count, unsigned long long *keys,
                                unsigned long long *scratch, Shared &s) {
    const bool top_k_on = p.top_k > 0 && (long long)p.top_k < V;
    if (count <= 32 || (!top_k_on && p.top_p >= 1.0f && p.min_p <= 0.0f))
        return count; /* a warp sorts 32 keys cheaply; pure temperature keeps all */
    if (threadIdx.x < kNarrowClasses) {
        s.narrow_count[threadIdx.x] = 0;
        s.narrow_weight[threadIdx.x] = 0;
    }
    if (threadIdx.x == 0) s.narrow_listed = 0;
    __syncthreads();
    int in_class[kNarrowClasses] = {};
    fixed_weight class_weight[kNarrowClasses] = {};
    for (int r = threadIdx.x; r < count; r += blockDim.x) {
        const float z = rank_key_z(keys[r]);
        const fixed_weight w = fixed_weight_of(max_z, z);
#pragma unroll
        for (int c = 0; c < kNarrowClasses; ++c)
            if (z >= max_z - narrow_distance(c)) {
                in_class[c] += 1;
                class_weight[c] += w;
            }
    }
#pragma unroll
    for (int c = 0; c < kNarrowClasses; ++c) {
        in_class[c] = warp_sum(in_class[c]);
        class_weight[c] = warp_sum(class_weight[c]);
        if (threadIdx.x % 32 == 0) {
            atomicAdd(&s.narrow_count[c], in_class[c]);
            atomicAdd(&s.narrow_weight[c], class_weight[c]);
        }
    }
    __syncthreads();
    int chosen = -1;
    for (int c = 0; c < kNarrowClasses && chosen < 0; ++c) {
        bool enough;
        if (top_k_on) enough = s.narrow_count[c] >= p.top_k;
        else if (p.top_p < 1.0f) enough = from_fixed(s.narrow_weight[c]) >= (double)p.top_p * row_total;
        else /* every token left out has e below min_p (a margin for expf's last bit) */
            enough = expf((max_z - narrow_distance(c)) - max_z) < p.min_p * 0.999f;
        if (enough) chosen = c;
    }
    if (chosen < 0 || s.narrow_count[chosen] >= count) return count;
    const float keep_from = max_z - narrow_distance(chosen);
    const int lane = threadIdx.x % 32;
    for (int base = 0; base < count; base += blockDim.x) { /* uniform trip count: ballots */
        const int r = base + (int)threadIdx.x;
        const unsigned long long key = r < count ? keys[r] : 0;
        const bool in = r < count && rank_key_z(key) >= keep_from;
        const unsigned ballot = __ballot_sync(0xFFFFFFFFu, in);
        int slot = 0;
        if (lane == 0 && ballot) slot = atomicAdd(&s.narrow_listed, __popc(ballot));
        slot = __shfl_sync(0xFFFFFFFFu, slot, 0) + __popc(ballot & ((1u << lane) - 1u));
        if (in) scratch[slot] = key;
    }
    __syncthreads();
    const int narrowed = s.narrow_count[chosen];
    for (int r = threadIdx.x; r < narrowed; r += blockDim.x) keys[r] = scratch[r];
    return narrowed;
}

/* The draw's lane: lane l holds `weight`, the kept weight of its run of
 * tokens in id order. Returns the first lane whose running sum exceeds
 * u * F among lanes of positive weight (else the last of them; -1 when
 * none), with F, u * F and the lane's running sum up to its run's end. */
struct DrawLane {
    int lane;
    double F, threshold, inclusive;
};
__device__ DrawLane find_draw_lane(double weight, const r1_sampling_params &p, long long b) {
    const int lane = threadIdx.x % 32;
    DrawLane d;
    d.inclusive = weight;
    for (int offset = 1; offset < 32; offset <<= 1) {
        const double other = __shfl_up_sync(0xFFFFFFFFu, d.inclusive, offset);
        if (lane >= offset) d.inclusive += other;
    }
    d.F = __shfl_sync(0xFFFFFFFFu, d.inclusive, 31);
    d.threshold = r1_sampling_uniform(p.seed, (uint64_t)b, p.step) * d.F;
    const unsigned crosses = __ballot_sync(0xFFFFFFFFu, weight > 0 && d.inclusive > d.threshold);
    const unsigned positive = __ballot_sync(0xFFFFFFFFu, weight > 0);
    d.lane = crosses ? __ffs(crosses) - 1 : 31 - __clz(positive); /* -1: none positive */
    return d;
}

/* shortlist_draw for at most 32 keys, by warp 0 alone in registers (lane r
 * holds the r-th key once sorted): the same sums in the same order as the
 * block version, so the same cut and token, without a block barrier. */
__device__ void shortlist_draw_warp(const RowContext &row, const r1_sampling_params &p, long long b,
                                    long long V, double row_total, int count,
                                    const unsigned long long *keys, int32_t *tokens,
                                    float *logprobs, Shared &s) {
    const int lane = threadIdx.x % 32;
    const unsigned long long key = warp_sort_descending(lane < count ? keys[lane] : 0);
    const float z = rank_key_z(key);
    /* Running fixed-point weight in rank order. */
    const fixed_weight mine = lane < count ? fixed_weight_of(row.max_z, z) : 0;
    fixed_weight cumulative = mine;
    for (int offset = 1; offset < 32; offset <<= 1) {
        const fixed_weight other = __shfl_up_sync(0xFFFFFFFFu, cumulative, offset);
        if (lane >= offset) cumulative += other;
    }
    /* top-k, then top-p of what top-k kept (or of the whole row). */
    const bool top_k_on = p.top_k > 0 && (long long)p.top_k < V;
    int keep = top_k_on ? p.top_k : count;
    if (p.top_p < 1.0f) {
        const fixed_weight top_k_weight = __shfl_sync(0xFFFFFFFFu, cumulative, (keep - 1) & 31);
        const double base = top_k_on ? from_fixed(top_k_weight) : row_total;
        const double target = (double)p.top_p * base;
        const unsigned reached = __ballot_sync(0xFFFFFFFFu, lane < keep && from_fixed(cumulative) >= target);
        if (reached) keep = __ffs(reached); /* the first prefix that reaches it */
    }
    const unsigned long long cut_key = __shfl_sync(0xFFFFFFFFu, key, (keep - 1) & 31);
    /* min-p, then the kept tokens in id order. */
    const float e = lane < keep ? expf(z - row.max_z) : 0.0f;
    const bool in = lane < keep && e >= p.min_p;
    const int kept = __popc(__ballot_sync(0xFFFFFFFFu, in));
    const unsigned long long by_id = warp_sort_descending(in ? id_key(rank_key_id(key), e) : 0);
    /* The draw: the first kept token by id whose running weight exceeds u * F. */
    const double weight = lane < kept ? (double)__uint_as_float((uint32_t)by_id) : 0.0;
    const DrawLane draw = find_draw_lane(weight, p, b);
    if (lane == (draw.lane >= 0 ? draw.lane : 0)) {
        const int token = draw.lane >= 0 ? (int)(0xFFFFFFFFu - (uint32_t)(by_id >> 32)) : -1;
        tokens[b] = token;
        if (logprobs) logprobs[b] = token >= 0 ? (float)(log(weight) - log(draw.F)) : NAN;
        s.short_cut_key = cut_key;
        s.short_kept = kept;
        s.short_kept_weight = draw.F;
    }
}

/* One block (block 0 of the cluster, or decide_rows_kernel's block; any
 * size): narrows the gathered shortlist keys[0, count) (narrow_shortlist),
 * sorts it into rank order, cuts it (top-k, top-p, then min-p), and draws by
 * id order, as ref does. The cut's last key, F and the token go to s;
 * `scratch` holds kShortlistCapacity. */
__device__ void shortlist_draw(const RowContext &row, const r1_sampling_params &p, long long b,
                               long long V, double row_total, int count,
                               unsigned long long *keys, unsigned long long *scratch,
                               int32_t *tokens, float *logprobs, Shared &s) {
    if (count <= 32) {
        if (threadIdx.x < 32) shortlist_draw_warp(row, p, b, V, row_total, count, keys, tokens, logprobs, s);
        __syncthreads();
        return;
    }
    count = narrow_shortlist(row.max_z, p, V, row_total, count, keys, scratch, s);
    const int padded = next_power_of_two(count);
    for (int r = count + (int)threadIdx.x; r < padded; r += blockDim.x) keys[r] = 0;
    __syncthreads();
    sort_descending(keys, padded);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0) {
        /* Running fixed-point weight in rank order: lane l sums a run. */
        const int run = (count + 31) / 32;
        const int first = lane * run < count ? lane * run : count;
        const int last = first + run < count ? first + run : count;
        fixed_weight mine = 0;
        for (int r = first; r < last; ++r) mine += fixed_weight_of(row.max_z, rank_key_z(keys[r]));
        fixed_weight inclusive = mine;
        for (int offset = 1; offset < 32; offset <<= 1) {
            fixed_weight other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
            if (lane >= offset) inclusive += other;
        }
        fixed_weight running = inclusive - mine;
        fixed_weight *cumulative = scratch;
        for (int r = first; r < last; ++r) {
            running += fixed_weight_of(row.max_z, rank_key_z(keys[r]));
            cumulative[r] = running;
        }
        __syncwarp();
        /* top-k, then top-p of what top-k kept (or of the whole row). */
        const bool top_k_on = p.top_k > 0 && (long long)p.top_k < V;
        int keep = top_k_on ? p.top_k : count;
        if (p.top_p < 1.0f) {
            const double base = top_k_on ? from_fixed(cumulative[keep - 1]) : row_total;
            const double target = (double)p.top_p * base;
            int reach = keep;
            for (int r = first; r < last && r < keep; ++r)
                if (from_fixed(cumulative[r]) >= target) {
                    reach = r + 1;
                    break;
                }
            for (int offset = 16; offset > 0; offset >>= 1)
                reach = min(reach, __shfl_xor_sync(0xFFFFFFFFu, reach, offset));
            keep = reach;
        }
        __syncwarp();
        /* min-p, then the kept tokens as id keys (rank order is no longer needed). */
        int kept = 0;
        for (int base = 0; base < keep; base += 32) {
            const int r = base + lane;
            float e = 0.0f;
            int id = 0;
            if (r < keep) {
                e = expf(rank_key_z(keys[r]) - row.max_z);
                id = rank_key_id(keys[r]);
            }
            const bool in = r < keep && e >= p.min_p;
            const unsigned ballot = __ballot_sync(0xFFFFFFFFu, in);
            if (in) scratch[kept + __popc(ballot & ((1u << lane) - 1u))] = id_key(id, e);
            kept += __popc(ballot);
        }
        if (lane == 0) {
            s.short_cut_key = keys[keep - 1];
            s.short_kept = kept;
        }
    }
    __syncthreads();
    const int kept = s.short_kept, kept_padded = next_power_of_two(kept);
    for (int r = kept + (int)threadIdx.x; r < kept_padded; r += blockDim.x) scratch[r] = 0;
    __syncthreads();
    sort_descending(scratch, kept_padded);

    if (warp == 0) {
        /* The draw: the first kept token by id whose running weight exceeds
         * u * F. Lane l sums a run, a warp scan finds the lane, it walks. */
        const int run = (kept + 31) / 32;
        const int first = lane * run < kept ? lane * run : kept;
        const int last = first + run < kept ? first + run : kept;
        double weight = 0;
        for (int r = first; r < last; ++r) weight += __uint_as_float((uint32_t)scratch[r]);
        const DrawLane draw = find_draw_lane(weight, p, b);
        const double F = draw.F, threshold = draw.threshold;
        if (lane == draw.lane) {
            double running = draw.inclusive - weight;
            int token = -1;
            float token_weight = 0.0f;
            for (int r = first; r < last; ++r) {
                const float e = __uint_as_float((uint32_t)scratch[r]);
                if (e <= 0.0f) continue;
                running += e;
                token = 0xFFFFFFFF - (uint32_t)(scratch[r] >> 32);
                token_weight = e;
                if (running > threshold) break; /* else: the last positive so far */
            }
            tokens[b] = token;
            if (logprobs)
                logprobs[b] = token >= 0 ? (float)(log((double)token_weight) - log(F)) : NAN;
            s.short_kept_weight = F;
        }
    }
    __syncthreads();
}

/* The shortlist path for one row: returns true (in every block) when it
 * decided the row and wrote its outputs; false leaves the row to the radix
 * select. `keys` and `scratch` are kShortlistCapacity-sized shared arrays. */
__device__ __noinline__ bool shortlist_path(const RowContext &row, const r1_sampling_params &p, long long b,
                               long long V, long long chunk, int *list,
                               unsigned long long *keys, unsigned long long *scratch,
                               int32_t *tokens, float *logprobs, float *filtered_rows,
                               Shared &s) {
    /* Pass 1: the profile, and the distance D it calls for. */
    distance_profile(row, s);
    cluster_sync();
    if (threadIdx.x < 32) {
        const unsigned lane = threadIdx.x;
        long long count[kDistanceClasses] = {};
        double weight[kDistanceClasses] = {}, total = 0;
        /* Block r's values are read by lane r, then summed in block order. */
        long long my_count[kDistanceClasses] = {};
        double my_weight[kDistanceClasses] = {}, my_total = 0;
        if (lane < row.cluster) {
            const Shared *other = in_block(&s, lane);
            for (int c = 0; c < kDistanceClasses; ++c) {
                my_count[c] = other->profile_count[c];
                my_weight[c] = other->profile_weight[c];
            }
            my_total = other->profile_total;
        }
        for (int r = 0; r < (int)row.cluster; ++r) {
            for (int c = 0; c < kDistanceClasses; ++c) {
                count[c] += __shfl_sync(0xFFFFFFFFu, my_count[c], r);
                weight[c] += __shfl_sync(0xFFFFFFFFu, my_weight[c], r);
            }
            total += __shfl_sync(0xFFFFFFFFu, my_total, r);
        }
        if (lane == 0) s.short_distance = choose_distance(p, V, count, weight, total);
    }
    __syncthreads();
    const float distance = s.short_distance;
    if (distance == 0.0f) return false;

    /* Pass 2, exact: the shortlist at that distance. */
    shortlist_chunk(row, distance, list, s);
    cluster_sync();
    /* Cluster-wide totals: lane r of warp 0 reads block r. */
    if (threadIdx.x < 32) {
        const unsigned lane = threadIdx.x;
        long long count = 0, weight = 0;
        double total = 0;
        float out_max = -INFINITY;
        if (lane < row.cluster) {
            const Shared *other = in_block(&s, lane);
            count = other->short_count;
            weight = other->short_weight;
            total = other->short_total;
            out_max = other->short_out_max;
        }
        count = warp_sum(count);
        weight = warp_sum(weight);
        /* The row's total in block order, the same sum in every block. */
        double row_total = 0;
        for (int r = 0; r < (int)row.cluster; ++r) row_total += __shfl_sync(0xFFFFFFFFu, total, r);
        for (int offset = 16; offset > 0; offset >>= 1)
            out_max = fmaxf(out_max, __shfl_xor_sync(0xFFFFFFFFu, out_max, offset));
        if (lane == 0) {
            s.short_decides = shortlist_decides(p, V, row.max_z, count, row_total,
                                                (fixed_weight)weight, out_max);
            s.row_weight = row_total;
            s.short_kept = (int)(count < kShortlistCapacity ? count : kShortlistCapacity);
        }
    }
    __syncthreads();
    if (!s.short_decides) return false;

    const int count = s.short_kept;
    const double row_total = s.row_weight;
    if (row.rank == 0) {
        /* Gather every block's list as rank keys. */
        int offset = 0;
        for (unsigned r = 0; r < row.cluster; ++r) {
            const Shared *other = in_block(&s, r);
            const int n = other->short_count;
            const int *their_list = in_block(list, r);
            const float *their_cache = row.cached ? in_block((float *)row.cached, r) : nullptr;
            for (int t = threadIdx.x; t < n; t += kThreads) {
                const int j = their_list[t];
                const long long i = (long long)r * chunk + j;
                const float x = their_cache ? their_cache[j] : load_x_global(row, i);
                keys[offset + t] = rank_key(z_of(row, x), i);
            }
            offset += n;
        }
    }
    cluster_sync(); /* the lists are read; blocks may now leave or reuse them */
    if (row.rank == 0)
        shortlist_draw(row, p, b, V, row_total, count, keys, scratch, tokens, logprobs, s);
    if (!filtered_rows) return true;

    /* The filtered distribution: every block writes its chunk with block 0's cut. */
    cluster_sync();
    const Shared *leader = in_block(&s, 0);
    const unsigned long long cut_key = leader->short_cut_key;
    const double F = leader->short_kept_weight;
    float *filtered = filtered_rows + b * V;
    for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads) {
        const float z = z_of(row, load_x(row, i));
        const float e = expf(z - row.max_z);
        const bool kept = rank_key(z, i) >= cut_key && e >= p.min_p;
        filtered[i] = kept ? (float)((double)e / F) : 0.0f;
    }
    cluster_sync(); /* block 0's cut is read above before it leaves */
    return true;
}

/* ---- the kernel ------------------------------------------------------------------ */

struct KernelArguments {
    const void *logits;          /* (B, V) input                                   */
    const float *penalized;      /* (B, V) penalized logits, or NULL               */
    const r1_sampling_params *params;
    long long vocab;
    int cache_in_shared;         /* chunk of z kept in shared memory               */
    long long chunk;             /* elements per block                             */
    int32_t *tokens;
    float *logprobs;
    float *filtered;
    long long batch;
    const int *rows;             /* rows to sample (row_count of them), or NULL: all */
    const int *row_count;
};

/* One row b, by the whole cluster. Every way out leaves no block reading
 * another's shared memory, so the cluster can go on to its next row. */
template <typename In> __device__ void sample_row(const KernelArguments &a, long long b) {
    extern __shared__ __align__(16) unsigned char dynamic_shared[];
    __shared__ Shared s;
    RowContext row;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    row.cluster = cg::this_cluster().num_blocks();
#else
    row.cluster = 1;
#endif
    /* Layout: histogram (kBins doubles + ints), this block's merged digits
     * (kBins / C doubles + ints), then the cached chunk of z. */
    const int merged_bins = kBins / (int)row.cluster;
    fixed_weight *hist_weight = (fixed_weight *)dynamic_shared;
    fixed_weight *merged_weight = hist_weight + kBins;
    int *hist_count = (int *)(merged_weight + merged_bins);
    int *merged_count = hist_count + kBins;
    int *candidates = merged_count + merged_bins;
    float *cache = a.cache_in_shared ? (float *)(candidates + kCandidates) : nullptr;

    row.rank = cluster_rank();
    const long long V = a.vocab;
    const r1_sampling_params p = a.params[b];
    row.begin = (long long)row.rank * a.chunk;
    row.end = row.begin + a.chunk < V ? row.begin + a.chunk : V;
    if (row.begin > V) row.begin = V;
    row.temperature = p.temperature;
    row.cached = cache;
    if (a.penalized) {
        row.source = a.penalized + b * V;
        row.source_is_bf16 = 0;
        load_row(row, a.penalized + b * V, cache, s);
    } else {
        row.source = (const In *)a.logits + b * V;
        row.source_is_bf16 = sizeof(In) == 2;
        load_row(row, (const In *)a.logits + b * V, cache, s);
    }
    cluster_sync();

    /* Combine load results across the cluster (every block the same way):
     * lane r of warp 0 reads block r, the warp reduces, ties to the lower id. */
    if (threadIdx.x < 32) {
        const unsigned lane = threadIdx.x;
        float m = -INFINITY;
        int argmax = -1, bad = 0, finite = 0;
        if (lane < row.cluster) {
            const Shared *other = in_block(&s, lane);
            m = other->block_max;
            argmax = other->block_argmax;
            bad = other->block_bad;
            finite = other->block_finite;
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            float om = __shfl_xor_sync(0xFFFFFFFFu, m, offset);
            int oa = __shfl_xor_sync(0xFFFFFFFFu, argmax, offset);
            if (oa >= 0 && (argmax < 0 || om > m || (om == m && oa < argmax))) {
                m = om;
                argmax = oa;
            }
        }
        bad = __any_sync(0xFFFFFFFFu, bad);
        finite = __any_sync(0xFFFFFFFFu, finite);
        if (lane == 0) {
            s.row_max = m;
            s.row_argmax = argmax;
            s.row_bad = bad;
            s.row_finite = finite;
        }
    }
    __syncthreads();
    /* max z = max x / T; a finite x overflows to z = +inf only at the max,
     * and every z is -inf only when max z is. */
    row.max_z = p.temperature > 0.0f ? __fdiv_rn(s.row_max, p.temperature) : s.row_max;
    const int argmax = s.row_argmax;
    const int bad = s.row_bad || row.max_z == INFINITY;
    const int finite = row.max_z > -INFINITY;
    float *filtered = a.filtered ? a.filtered + b * V : nullptr;
    const bool leader = row.rank == 0 && threadIdx.x == 0;

    if (bad || !finite) {
        if (leader) {
            a.tokens[b] = -1;
            if (a.logprobs) a.logprobs[b] = NAN;
        }
        if (filtered)
            for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads)
                filtered[i] = NAN;
        cluster_sync();
        return;
    }
    if (p.temperature == 0.0f) {
        if (leader) {
            a.tokens[b] = argmax;
            if (a.logprobs) a.logprobs[b] = 0.0f;
        }
        if (filtered)
            for (long long i = row.begin + threadIdx.x; i < row.end; i += kThreads)
                filtered[i] = i == argmax ? 1.0f : 0.0f;
        cluster_sync();
        return;
    }

    /* The usual case: the cut lies among the few tokens near the max. */
    if (shortlist_path(row, p, b, V, a.chunk, candidates, hist_weight, hist_weight + kShortlistCapacity,
                       a.tokens, a.logprobs, a.filtered, s))
        return;
    raw_chunk_to_z(row, cache);

    /* Select: top-k by count, then top-p by weight; keep the shorter prefix. */
    const bool use_top_k = p.top_k > 0 && (long long)p.top_k < V;
    const bool use_top_p = p.top_p < 1.0f;
    Cut cut = {-1, 0u, 0, LLONG_MAX, LLONG_MAX, V, 0.0, 0.0f};
    if (use_top_k)
        cut = radix_select(row, true, (double)p.top_k, false, hist_weight, hist_count,
                           merged_weight, merged_count, candidates, s);
    if (use_top_p) {
        /* With top-k, top-p's share is of the top-k prefix's weight;
         * without, of the whole row's (summed by the select's first round). */
        Cut p_cut = use_top_k
                        ? radix_select(row, false, (double)p.top_p * cut.weight, false,
                                       hist_weight, hist_count, merged_weight, merged_count,
                                       candidates, s)
                        : radix_select(row, false, (double)p.top_p, true, hist_weight,
                                       hist_count, merged_weight, merged_count, candidates, s);
        if (!use_top_k || p_cut.count < cut.count) cut = p_cut;
    }
    KeepRule rule;
    rule.cut = cut;
    rule.partial_ties = cut.bits == 32 && cut.take < cut.bucket_count;
    rule.min_p = p.min_p;
    rule.min_p_reject_below = p.min_p > 0.0f ? row.max_z + logf(p.min_p) - 1e-3f : -INFINITY;

    /* Draw, step 1: per-warp kept weight and partial-tie counts. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    long long first, last;
    warp_segment(row, warp, first, last);
    {
        double weight = 0;
        int ties = 0;
        auto visit = [&](long long i, float z) {
            int kind = classify(row, rule, z);
            if (kind == 2) {
                ++ties;
                return;
            }
            float e = kept_weight(row, rule, z, kind, 0);
            weight += e;
        };
        if (row.cached) {
            /* 16-byte reads; the segment starts 128-byte aligned in the chunk. */
            const int from = (int)(first - row.begin), to = (int)(last - row.begin);
            for (int j = from + 4 * lane; j < to; j += 128) {
                float4 v = *(const float4 *)(row.cached + j);
                const float zs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (j + k < to) visit(row.begin + j + k, zs[k]);
            }
        } else {
            for (long long i = first + lane; i < last; i += 32) visit(i, load_z(row, i));
        }
        weight = warp_sum(weight);
        ties = warp_sum(ties);
        if (lane == 0) {
            s.warp_weight[warp] = weight;
            s.warp_ties[warp] = ties;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int ties = 0;
        for (int w = 0; w < kWarps; ++w) ties += s.warp_ties[w];
        s.block_ties = ties;
    }
    cluster_sync();
    /* Ties before this block: lane r of warp 0 reads block r's count. */
    if (threadIdx.x < 32) {
        long long t = threadIdx.x < row.rank ? in_block(&s, threadIdx.x)->block_ties : 0;
        t = warp_sum(t);
        if (threadIdx.x == 0) s.ties_before_block = t;
    }
    __syncthreads();
    const long long ties_before_block = s.ties_before_block;
    const float tie_e = rule.partial_ties && cut.tie_weight >= rule.min_p ? cut.tie_weight : 0.0f;
    auto kept_ties = [&](long long before, long long count) -> long long {
        long long k = cut.take - before;
        if (!rule.partial_ties || k <= 0) return 0;
        return k < count ? k : count;
    };
    if (threadIdx.x == 0) {
        long long before = ties_before_block;
        double total = 0;
        for (int w = 0; w < kWarps; ++w) {
            long long kt = kept_ties(before, s.warp_ties[w]);
            double ww = s.warp_weight[w] + (double)kt * tie_e;
            s.warp_weight[w] = ww; /* now includes its kept ties */
            total += ww;
            before += s.warp_ties[w];
        }
        s.block_weight = total;
    }
    cluster_sync();
    const double u = r1_sampling_uniform(p.seed, (uint64_t)b, p.step);
    /* F, the weight before this block, and the block holding u * F: lane r
     * of warp 0 reads block r's weight; an inclusive scan over lanes (the
     * same in every block) gives all three. The fallback, u * F >= F by
     * rounding, is the last block with weight. */
    if (threadIdx.x < 32) {
        const unsigned lane = threadIdx.x;
        double w = lane < row.cluster ? in_block(&s, lane)->block_weight : 0.0;
        double inclusive = w;
        for (int offset = 1; offset < 32; offset <<= 1) {
            double other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
            if ((int)lane >= offset) inclusive += other;
        }
        const double total = __shfl_sync(0xFFFFFFFFu, inclusive, 31);
        const double threshold_all = u * total;
        unsigned crosses = __ballot_sync(0xFFFFFFFFu, w > 0 && inclusive > threshold_all);
        unsigned positive = __ballot_sync(0xFFFFFFFFu, w > 0);
        double before = __shfl_sync(0xFFFFFFFFu, inclusive - w, row.rank);
        if (lane == 0) {
            s.row_weight = total;
            s.weight_before_block = before;
            s.chosen_block = crosses ? __ffs(crosses) - 1 : (positive ? 31 - __clz(positive) : 0);
        }
    }
    __syncthreads();
    const double F = s.row_weight, before_block = s.weight_before_block;
    const double threshold = u * F;
    const int chosen_block = s.chosen_block;

    if ((int)row.rank == chosen_block && warp == 0) {
        double running = before_block;
        int chosen_warp = -1, last_warp = 0;
        long long ties_before_warp = ties_before_block, ties_at_chosen = 0;
        for (int w = 0; w < kWarps; ++w) {
            double ww = s.warp_weight[w];
            if (ww > 0) last_warp = w;
            if (chosen_warp < 0 && ww > 0 && running + ww > threshold) {
                chosen_warp = w;
                ties_at_chosen = ties_before_warp;
            }
            if (chosen_warp < 0) running += ww;
            ties_before_warp += s.warp_ties[w];
        }
        double relative = threshold - running;
        if (chosen_warp < 0) { /* rounding: take the last kept token with weight */
            chosen_warp = last_warp;
            relative = INFINITY;
            long long t = ties_before_block;
            for (int w = 0; w < last_warp; ++w) t += s.warp_ties[w];
            ties_at_chosen = t;
        }
        long long seg_first, seg_last;
        warp_segment(row, chosen_warp, seg_first, seg_last);
        DrawResult drawn = scan_segment(row, rule, seg_first, seg_last, ties_at_chosen, relative);
        if (lane == 0) {
            a.tokens[b] = drawn.token;
            if (a.logprobs)
                a.logprobs[b] = drawn.token >= 0
                                    ? (float)(log((double)drawn.weight) - log(F))
                                    : NAN;
        }
    }

    /* Optional: the filtered distribution. */
    if (filtered) {
        long long ties_before = ties_before_block;
        for (int w = 0; w < warp; ++w) ties_before += s.warp_ties[w];
        for (long long base = first; base < last; base += 32) {
            long long i = base + lane;
            float z = i < last ? load_z(row, i) : -INFINITY;
            int kind = i < last ? classify(row, rule, z) : 0;
            unsigned tie_mask = __ballot_sync(0xFFFFFFFFu, kind == 2);
            long long mine = ties_before + __popc(tie_mask & ((1u << lane) - 1u));
            float e = kept_weight(row, rule, z, kind, mine);
            ties_before += __popc(tie_mask);
            if (i < last) filtered[i] = (float)((double)e / F);
        }
    }
    cluster_sync(); /* no block may exit while others read its shared memory */
}

/* Each cluster takes rows slot, slot + clusters, ...: of the list that the
 * two stages left (a.rows), or of the whole batch. */
template <typename In> __global__ void __launch_bounds__(kThreads, 2)
sample_rows_kernel(KernelArguments a) {
    wait_for_previous_kernel();
    const unsigned cluster =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        cg::this_cluster().num_blocks();
#else
        1;
#endif
    const long long clusters = gridDim.x / cluster;
    const long long rows = a.rows ? (long long)*a.row_count : a.batch;
    for (long long slot = blockIdx.x / cluster; slot < rows; slot += clusters)
        sample_row<In>(a, a.rows ? (long long)a.rows[slot] : slot);
}

/* ---- two stages: chunk summaries, then rows decided from them --------------------- */

/* Stage 1 (summarize_chunks_kernel) gives every kChunk-token chunk of every
 * row its own block, with no cluster and no wait on other blocks, so the
 * whole GPU streams the logits at once. A block keeps its chunk in shared
 * memory and writes a summary: its max z, first argmax, validity, and the
 * list of its tokens within D of its own max, for the largest D of 2, 4, 8,
 * 16 whose list fits in kChunkList (with the weight of the rest). Every
 * token of the chunk with z >= floor_z = max - D is listed.
 *
 * Stage 2 (decide_rows_kernel), a block per row: the row's max is the
 * largest chunk max, and every token with z >= the largest chunk floor is
 * listed somewhere. Those tokens are the row's shortlist; when it decides
 * the row (shortlist_decides), the block sorts, cuts and draws it
 * (shortlist_draw). Greedy and invalid rows are decided from the maxima.
 * The rest, flat rows mostly, and rows of more than 32 chunks, go to a
 * list that sample_rows_kernel takes. */
constexpr int kChunkThreads = 256;
constexpr int kChunk = 8192;    /* tokens per chunk: 32 KB of shared memory */
constexpr int kChunkList = 64;  /* tokens a chunk may list                   */

/* A listed token: z and its index in the row, read together. */
struct __align__(8) ListedToken {
    float z;
    int id;
};

/* The first 32 bytes, read by stage 2 in two 16-byte loads, say everything
 * about the chunk but its list. */
struct __align__(32) ChunkSummary {
    float max_z;     /* the chunk's largest z (exact); -inf when every x is -inf */
    int argmax;      /* first index of the largest x; -1 when none              */
    int bad;         /* NaN or +inf seen (or z = x / T overflowed)              */
    int count;       /* tokens listed                                           */
    float floor_z;   /* every token with z >= floor_z is listed (+inf: none is) */
    int unused;
    double total;    /* sum of exp(z - max_z) over the chunk: the listed tokens
                      * exact (in double), the rest rough                      */
    ListedToken listed[kChunkList];
};
static_assert(offsetof(ChunkSummary, listed) == 32, "the head is 32 bytes");

/* Block-wide argmax with ties to the lower index, and an OR of `bad`. */
__device__ void block_argmax(float &best, long long &best_index, int &bad, float *scratch_f,
                             long long *scratch_l, int *scratch_i) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(0xFFFFFFFFu, best, offset);
        const long long other_index = __shfl_xor_sync(0xFFFFFFFFu, best_index, offset);
        if (other > best || (other == best && other_index < best_index)) {
            best = other;
            best_index = other_index;
        }
    }
    bad = __any_sync(0xFFFFFFFFu, bad);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) {
        scratch_f[warp] = best;
        scratch_l[warp] = best_index;
        scratch_i[warp] = bad;
    }
    __syncthreads();
    best = -INFINITY;
    best_index = LLONG_MAX;
    bad = 0;
    for (int w = 0; w < warps; ++w) {
        if (scratch_f[w] > best || (scratch_f[w] == best && scratch_l[w] < best_index)) {
            best = scratch_f[w];
            best_index = scratch_l[w];
        }
        bad |= scratch_i[w];
    }
    __syncthreads();
}

/* Chunk [begin, begin + n) of a row into x (shared memory), folding each
 * value into `state`: 16-byte reads where the chunk is aligned. */
template <typename Src, typename State>
__device__ void load_chunk(const Src *row, long long begin, int n, float *x, State &state) {
    constexpr int kVector = Vector<Src>::kCount;
    const Src *from = row + begin;
    const int vector_n = (uintptr_t)from % 16 == 0 ? n / kVector * kVector : 0;
#pragma unroll 2
    for (int j = (int)threadIdx.x * kVector; j < vector_n; j += kChunkThreads * kVector) {
        float v[kVector];
        Vector<Src>::load_once(from + j, v);
#pragma unroll
        for (int k = 0; k < kVector; ++k) state.take(begin + j + k, v[k]);
#pragma unroll
        for (int k = 0; k < kVector / 4; ++k)
            *(float4 *)(x + j + 4 * k) = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
    }
    for (int j = vector_n + (int)threadIdx.x; j < n; j += kChunkThreads) {
        const float v = to_float(from[j]);
        state.take(begin + j, v);
        x[j] = v;
    }
}

/* visit(j, x[j]) for every j of a chunk of n floats in shared memory, read
 * 16 bytes at a time. */
template <typename Visit> __device__ __forceinline__ void visit_chunk(const float *x, int n, Visit &&visit) {
    const int whole = n / 4 * 4;
    for (int j = 4 * (int)threadIdx.x; j < whole; j += 4 * (int)blockDim.x) {
        const float4 v = *(const float4 *)(x + j);
        visit(j, v.x);
        visit(j + 1, v.y);
        visit(j + 2, v.z);
        visit(j + 3, v.w);
    }
    for (int j = whole + (int)threadIdx.x; j < n; j += (int)blockDim.x) visit(j, x[j]);
}

/* max(a, b), or NaN when either is NaN. */
__device__ __forceinline__ float max_or_nan(float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
#else
    return a != a || b != b ? NAN : fmaxf(a, b);
#endif
}

/* The running max and validity only, where the argmax is not needed
 * (T > 0): one max per value, which a NaN turns into NaN, so the max
 * alone says whether a NaN or +inf was seen. */
struct MaxState {
    float best = -INFINITY;
    long long best_index = LLONG_MAX;
    __device__ __forceinline__ void take(long long, float x) { best = max_or_nan(best, x); }
    __device__ __forceinline__ int bad() const { return !(best < INFINITY); }
};

/* 2^x for the weights of the rest (x <= 0): the hardware approximation
 * (relative error about 2^-22), results below 2^-126 flushed to 0, which
 * a row total of at least 1 cannot see. */
__device__ __forceinline__ float rough_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

/* a << shift, 0 when shift >= 32 (the PTX shift clamps; C++ leaves it undefined). */
__device__ __forceinline__ unsigned shift_left_clamped(unsigned a, unsigned shift) {
    unsigned r;
    asm("shl.b32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(shift));
    return r;
}

constexpr int kChunkClasses = 4;
__device__ __forceinline__ float chunk_class_distance(int c) { return (float)(2 << c); } /* 2 4 8 16 */

/* Stage 1 for chunk `chunk` of row b: its summary, from x (kChunk floats of
 * shared memory). */
template <typename In>
__device__ void summarize_chunk(const In *logits, const float *penalized, float T, long long V,
                                long long b, int chunk, ChunkSummary *out, float *x, Shared &s) {
    float *scratch_f = s.scratch_f;
    long long *scratch_l = s.scratch_l;
    int *scratch_i = s.scratch_i;
    double *scratch_d = s.scratch_d;
    int *class_count = s.chunk_class_count;
    int &listed = s.chunk_listed;
    const long long begin = (long long)chunk * kChunk;
    const int n = (int)(V - begin < kChunk ? V - begin : kChunk);

    /* Load: the raw chunk, its max, validity, and (greedy only) first argmax. */
    float max_x;
    long long argmax;
    int bad;
    if (T > 0.0f) {
        MaxState state;
        if (penalized) load_chunk(penalized + b * V, begin, n, x, state);
        else load_chunk(logits + b * V, begin, n, x, state);
        max_x = state.best, argmax = state.best_index, bad = state.bad();
    } else {
        LoadState state;
        if (penalized) load_chunk(penalized + b * V, begin, n, x, state);
        else load_chunk(logits + b * V, begin, n, x, state);
        max_x = state.best, argmax = state.best_index, bad = state.bad;
    }
    if (threadIdx.x < kChunkClasses) class_count[threadIdx.x] = 0;
    if (threadIdx.x == 0) listed = 0;
    block_argmax(max_x, argmax, bad, scratch_f, scratch_l, scratch_i);
    const float max_z = T > 0.0f ? __fdiv_rn(max_x, T) : max_x;
    bad |= max_z == INFINITY;
    if (threadIdx.x == 0) {
        out->max_z = max_z;
        out->argmax = argmax == LLONG_MAX ? -1 : (int)argmax;
        out->bad = bad;
    }
    if (bad || T == 0.0f || max_z == -INFINITY) { /* stage 2 needs only the above */
        if (threadIdx.x == 0) {
            out->count = 0;
            out->floor_z = -FLT_MAX; /* no token above -inf to list */
            out->total = 0.0;
        }
        return;
    }

    /* Pass 1, rough: tokens within each class distance 2^(c+1), counted in
     * one word with a byte per class (a thread visits kChunk / kChunkThreads
     * = 32 tokens). A token's distance d = max z - z, less a margin for the
     * rounding of d = fma(x, -1/T, max z), is within 2^(c+1) when the
     * exponent of d is at most c (d < 1, or slightly negative: every class),
     * so 0x01010101 shifted left by 8 times that exponent adds the token to
     * every class it is in, and to none past the last. */
    static_assert(kChunk / kChunkThreads < 256, "a class count must fit in a byte");
    const float minus_inv_T = -1.0f / T, near_max = max_z - 0.01f;
    unsigned packed = 0;
    visit_chunk(x, n, [&](int, float v) {
        const int exponent_8 = (int)((__float_as_uint(fmaf(v, minus_inv_T, near_max)) >> 20) & 0x7F8u);
        packed += shift_left_clamped(0x01010101u, (unsigned)max(exponent_8 - 127 * 8, 0));
    });
#pragma unroll
    for (int c = 0; c < kChunkClasses; ++c) {
        const int sum = warp_sum((int)((packed >> (8 * c)) & 0xFFu));
        if (threadIdx.x % 32 == 0) atomicAdd(&class_count[c], sum);
    }
    __syncthreads();
    int chosen = -1; /* the largest class whose tokens fit in the list */
    for (int c = 0; c < kChunkClasses; ++c)
        if (class_count[c] <= kChunkList) chosen = c;
    if (chosen < 0) {
        if (threadIdx.x == 0) {
            out->count = 0;
            out->floor_z = INFINITY;
            out->total = 0.0;
        }
        return;
    }

    /* Pass 2, exact: list every token with z >= floor_z; the rest's weight. */
    const float floor_z = max_z - chunk_class_distance(chosen);
    const float x_low = lowest_raw_reaching(floor_z, T);
    const float scale = kLog2e / T, shift = -max_z * kLog2e;
    float rest = 0.0f;
    double listed_weight = 0.0;
    visit_chunk(x, n, [&](int j, float v) {
        if (v < x_low) {
            rest += rough_exp2(fmaf(v, scale, shift));
            return;
        }
        const float z = __fdiv_rn(v, T);
        if (z >= floor_z) {
            listed_weight += (double)expf(z - max_z);
            const int slot = atomicAdd(&listed, 1);
            if (slot < kChunkList) out->listed[slot] = ListedToken{z, (int)(begin + j)};
        } else {
            rest += expf(z - max_z);
        }
    });
    const double block_total = block_sum((double)rest + listed_weight, scratch_d);
    if (threadIdx.x == 0) {
        const bool fits = listed <= kChunkList; /* the rough count's margin held */
        out->count = fits ? listed : 0;
        out->floor_z = fits ? floor_z : INFINITY;
        out->total = block_total;
    }
}

/* The head of a chunk's summary, from its first 32 bytes. The summaries
 * were written by other blocks: read through L2 (__ldcg). */
struct ChunkHead {
    float max_z, floor_z;
    int argmax, bad, count;
    double total;
};
__device__ __forceinline__ ChunkHead load_head(const ChunkSummary &summary) {
    const int4 first = __ldcg((const int4 *)&summary);
    const int4 second = __ldcg((const int4 *)&summary + 1);
    ChunkHead head;
    head.max_z = __int_as_float(first.x);
    head.argmax = first.y;
    head.bad = first.z;
    head.count = first.w;
    head.floor_z = __int_as_float(second.x);
    head.total = __hiloint2double(second.w, second.z);
    return head;
}

constexpr int kMaxDecideChunks = 32; /* rows of more chunks (V > 262144) go to sample_rows */
constexpr int kGatherUnroll = 4;     /* listed tokens each thread reads at once        */

/* Stage 2 for row b, from its chunks' summaries, by a block of any size (a
 * multiple of 32); keys and scratch hold kShortlistCapacity. The row is a
 * chain of short dependent steps, so the steps are few: every warp reads
 * the chunk heads (lane c, chunk c) and reduces them in registers, with no
 * block barrier; then one read of the listed tokens that can reach the
 * row's floor, one barrier, and the draw. s.chunk_listed and s.short_weight
 * are 0 on entry. */
template <typename In>
__device__ void decide_row(const In *logits, const float *penalized, const r1_sampling_params &p,
                           long long V, long long b, int chunks, const ChunkSummary *summaries,
                           int32_t *tokens, float *logprobs, float *filtered_rows,
                           int *fallback_rows, int *fallback_count, unsigned long long *keys,
                           unsigned long long *scratch, Shared &s) {
    const ChunkSummary *row_summaries = summaries + b * chunks;
    const int threads = (int)blockDim.x, lane = (int)threadIdx.x % 32;
    if (chunks > kMaxDecideChunks) {
        if (threadIdx.x == 0) fallback_rows[atomicAdd(fallback_count, 1)] = (int)b;
        return;
    }

    /* The row's max (first chunk on ties: its argmax is the row's), validity,
     * and highest floor. */
    ChunkHead head = {-INFINITY, -INFINITY, -1, 0, 0, 0.0};
    if (lane < chunks) head = load_head(row_summaries[lane]);
    float max_z = head.max_z, floor_z = head.floor_z;
    int best_chunk = lane, bad = __any_sync(0xFFFFFFFFu, head.bad);
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(0xFFFFFFFFu, max_z, offset);
        const int other_chunk = __shfl_xor_sync(0xFFFFFFFFu, best_chunk, offset);
        if (other > max_z || (other == max_z && other_chunk < best_chunk)) {
            max_z = other;
            best_chunk = other_chunk;
        }
        floor_z = fmaxf(floor_z, __shfl_xor_sync(0xFFFFFFFFu, floor_z, offset));
    }

    RowContext row = {};
    row.source = penalized ? (const void *)(penalized + b * V) : (const void *)((const In *)logits + b * V);
    row.source_is_bf16 = !penalized && sizeof(In) == 2;
    row.temperature = p.temperature;
    row.begin = 0;
    row.end = V;
    row.max_z = max_z;
    row.cluster = 1;
    float *filtered = filtered_rows ? filtered_rows + b * V : nullptr;

    if (bad || max_z == -INFINITY) { /* NaN, +inf, or no value above -inf */
        if (threadIdx.x == 0) {
            tokens[b] = -1;
            if (logprobs) logprobs[b] = NAN;
        }
        if (filtered)
            for (long long i = threadIdx.x; i < V; i += threads) filtered[i] = NAN;
        return;
    }
    if (p.temperature == 0.0f) {
        const int argmax = __shfl_sync(0xFFFFFFFFu, head.argmax, best_chunk);
        if (threadIdx.x == 0) {
            tokens[b] = argmax;
            if (logprobs) logprobs[b] = 0.0f;
        }
        if (filtered)
            for (long long i = threadIdx.x; i < V; i += threads) filtered[i] = i == argmax ? 1.0f : 0.0f;
        return;
    }
    if (floor_z == INFINITY) { /* a chunk's list overflowed: no shortlist */
        if (threadIdx.x == 0) fallback_rows[atomicAdd(fallback_count, 1)] = (int)b;
        return;
    }

    /* The row's weight: every chunk's total, rescaled to the row's max. The
     * shortlist: every listed token with z >= floor_z (that is, every token
     * of the row with z >= floor_z), offered only by chunks whose max
     * reaches the floor; chunk c's offer starts at entry `start` of lane c. */
    const double total =
        warp_sum(lane < chunks ? head.total * exp((double)head.max_z - (double)max_z) : 0.0);
    const int offer = lane < chunks && head.max_z >= floor_z ? head.count : 0;
    int inclusive = offer;
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
        if (lane >= offset) inclusive += other;
    }
    const int start = inclusive - offer, offered = __shfl_sync(0xFFFFFFFFu, inclusive, 31);

    /* Every offered token at once, kGatherUnroll per thread in flight. */
    fixed_weight shortlist_weight = 0;
    for (int base = 0; base < offered; base += kGatherUnroll * threads) { /* uniform: shuffles */
        ListedToken item[kGatherUnroll];
#pragma unroll
        for (int k = 0; k < kGatherUnroll; ++k) {
            const int e = base + k * threads + (int)threadIdx.x;
            /* its chunk: the last whose offer starts at or before e (offers may be empty) */
            int c = 0, c_start = 0;
            for (int step = 16; step > 0; step >>= 1) {
                const int probe = c + step;
                const int probe_start = __shfl_sync(0xFFFFFFFFu, start, probe & 31);
                if (probe < chunks && probe_start <= e) c = probe, c_start = probe_start;
            }
            item[k] = ListedToken{-INFINITY, 0};
            if (e < offered) {
                const int2 v = __ldcg((const int2 *)&row_summaries[c].listed[e - c_start]);
                item[k] = ListedToken{__int_as_float(v.x), v.y};
            }
        }
#pragma unroll
        for (int k = 0; k < kGatherUnroll; ++k) {
            const bool in = item[k].z >= floor_z;
            if (in) shortlist_weight += fixed_weight_of(max_z, item[k].z);
            const unsigned ballot = __ballot_sync(0xFFFFFFFFu, in);
            if (!ballot) continue;
            int slot = 0;
            if (lane == 0) slot = atomicAdd(&s.chunk_listed, __popc(ballot));
            slot = __shfl_sync(0xFFFFFFFFu, slot, 0) + __popc(ballot & ((1u << lane) - 1u));
            if (in && slot < kShortlistCapacity) keys[slot] = rank_key(item[k].z, item[k].id);
        }
    }
    shortlist_weight = warp_sum(shortlist_weight);
    if (lane == 0 && shortlist_weight)
        atomicAdd((unsigned long long *)&s.short_weight, (unsigned long long)shortlist_weight);
    __syncthreads();
    const int listed = s.chunk_listed;
    if (!shortlist_decides(p, V, max_z, listed, total, (fixed_weight)s.short_weight, floor_z)) {
        if (threadIdx.x == 0) fallback_rows[atomicAdd(fallback_count, 1)] = (int)b;
        return;
    }
    shortlist_draw(row, p, b, V, total, listed, keys, scratch, tokens, logprobs, s);
    if (filtered) {
        const unsigned long long cut_key = s.short_cut_key;
        const double F = s.short_kept_weight;
        for (long long i = threadIdx.x; i < V; i += threads) {
            const float z = z_of(row, load_x_global(row, i));
            const float e = expf(z - max_z);
            const bool kept = rank_key(z, i) >= cut_key && e >= p.min_p;
            filtered[i] = kept ? (float)((double)e / F) : 0.0f;
        }
    }
}

/* Row parameters carried by stage 1's launch itself (kernel parameters may
 * take up to 32 KB since CUDA 12.1): calls of at most kInlineRows rows and
 * no penalties need no host-to-device copy, which costs a DMA before the
 * first kernel can start. Stage 1 stores them in the workspace for the
 * stages after it. */
constexpr int kInlineRows = 256;
struct InlineParams {
    r1_sampling_params row[kInlineRows];
    int count; /* rows given here; 0: already in the workspace */
};

/* Stage 1: a block per chunk, no block waits on another. Block 0 also
 * empties the fallback list that stage 2 appends to. */
template <typename In>
__global__ void __launch_bounds__(kChunkThreads)
summarize_chunks_kernel(const In *logits, const float *penalized, r1_sampling_params *params,
                        const InlineParams given, long long V, int chunks, ChunkSummary *summaries,
                        int *fallback_count) {
    __shared__ __align__(16) float x[kChunk];
    __shared__ Shared s;
    let_next_kernel_launch();
    if (blockIdx.x == 0 && threadIdx.x == 0) *fallback_count = 0;
    const long long b = blockIdx.x / chunks;
    const int chunk = (int)(blockIdx.x % chunks);
    float T;
    if (given.count > 0) {
        T = given.row[b].temperature;
        if (chunk == 0 && threadIdx.x == 0) params[b] = given.row[b]; /* for stages 2 and 3 */
    } else {
        T = params[b].temperature;
    }
    summarize_chunk(logits, penalized, T, V, b, chunk, summaries + blockIdx.x, x, s);
}

/* Stage 2: a block per row. (A warp per row measured slower on an H100:
 * 97 against 91 us a call for B = 256, top-p, as its gathers and sorts
 * take 8 times the steps.) */
template <typename In>
__global__ void __launch_bounds__(kChunkThreads)
decide_rows_kernel(const In *logits, const float *penalized, const r1_sampling_params *params,
                   long long V, int chunks, const ChunkSummary *summaries, int32_t *tokens,
                   float *logprobs, float *filtered, int *fallback_rows, int *fallback_count) {
    __shared__ unsigned long long keys[kShortlistCapacity], scratch[kShortlistCapacity];
    __shared__ Shared s;
    /* No let_next_kernel_launch() here: sample_rows_kernel's clusters,
     * placed early among this kernel's blocks, ran the rows left 1.25 to
     * 1.55 times slower (B = 256 top-k 50: 1,055 against 853 us). */
    if (threadIdx.x == 0) {
        s.chunk_listed = 0;
        s.short_weight = 0;
    }
    __syncthreads(); /* while stage 1 may still run */
    wait_for_previous_kernel();
    const r1_sampling_params p = params[blockIdx.x];
    decide_row(logits, penalized, p, V, blockIdx.x, chunks, summaries, tokens, logprobs, filtered,
               fallback_rows, fallback_count, keys, scratch, s);
}

/* ---- penalties: the penalized rows go to a workspace copy ------------------------- */

template <typename In>
__global__ void penalize_rows_kernel(const In *logits, long long vocab,
                                     const r1_sampling_params *params, const int32_t *history,
                                     const long long *offsets, float *penalized, int *counts) {
    const long long b = blockIdx.x;
    const In *row = logits + b * vocab;
    float *out = penalized + b * vocab;
    int *count = counts + b * vocab;
    for (long long i = threadIdx.x; i < vocab; i += blockDim.x) out[i] = to_float(row[i]);
    const long long begin = offsets[b], end = offsets[b + 1];
    for (long long j = begin + threadIdx.x; j < end; j += blockDim.x) count[history[j]] = 0;
    __syncthreads();
    for (long long j = begin + threadIdx.x; j < end; j += blockDim.x)
        atomicAdd(&count[history[j]], 1);
    __syncthreads();
    const r1_sampling_params p = params[b];
    for (long long j = begin + threadIdx.x; j < end; j += blockDim.x) {
        int id = history[j];
        int c = atomicExch(&count[id], 0); /* the first thread of each id applies it */
        if (c == 0) continue;
        float x = out[id];
        x = (x > 0.0f) ? __fdiv_rn(x, p.repetition_penalty) : __fmul_rn(x, p.repetition_penalty);
        float penalty = __fadd_rn(__fmul_rn(p.frequency_penalty, (float)c), p.presence_penalty);
        out[id] = __fsub_rn(x, penalty);
    }
}

/* ---- top logprobs of the raw distribution ------------------------------------------ */

/* One block per row: log-sum-exp, then n rounds of "largest below the last
 * one taken" in the order (value desc, id asc). */
template <typename In>
__global__ void raw_top_logprobs_kernel(const In *logits, long long vocab, int n,
                                        const int32_t *tokens, int32_t *top_ids,
                                        float *top_logprobs) {
    __shared__ double scratch_d[kWarps];
    __shared__ float scratch_f[kWarps];
    __shared__ long long scratch_l[kWarps];
    const long long b = blockIdx.x;
    const In *row = logits + b * vocab;
    if (tokens[b] < 0) {
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            top_ids[b * n + j] = -1;
            top_logprobs[b * n + j] = NAN;
        }
        return;
    }
    float m = -INFINITY;
    for (long long i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, to_float(row[i]));
    for (int offset = 16; offset > 0; offset >>= 1)
        m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
    if (threadIdx.x % 32 == 0) scratch_f[threadIdx.x / 32] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, scratch_f[w]);
    double sum = 0;
    for (long long i = threadIdx.x; i < vocab; i += blockDim.x)
        sum += exp((double)to_float(row[i]) - (double)m);
    sum = block_sum(sum, scratch_d);
    const double log_sum = log(sum); /* (x - m) - log_sum: see ref */
    float last_value = INFINITY;
    long long last_id = -1;
    for (int j = 0; j < n; ++j) {
        float best = -INFINITY;
        long long best_id = LLONG_MAX;
        for (long long i = threadIdx.x; i < vocab; i += blockDim.x) {
            float x = to_float(row[i]);
            bool after_last = x < last_value || (x == last_value && i > last_id);
            if (after_last && (x > best || (x == best && i < best_id) || best_id == LLONG_MAX)) {
                best = x;
                best_id = i;
            }
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            float ob = __shfl_xor_sync(0xFFFFFFFFu, best, offset);
            long long oi = __shfl_xor_sync(0xFFFFFFFFu, best_id, offset);
            if (oi != LLONG_MAX && (best_id == LLONG_MAX || ob > best || (ob == best && oi < best_id))) {
                best = ob;
                best_id = oi;
            }
        }
        __syncthreads();
        if (threadIdx.x % 32 == 0) {
            scratch_f[threadIdx.x / 32] = best;
            scratch_l[threadIdx.x / 32] = best_id;
        }
        __syncthreads();
        best = -INFINITY;
        best_id = LLONG_MAX;
        for (int w = 0; w < kWarps; ++w) {
            float ob = scratch_f[w];
            long long oi = scratch_l[w];
            if (oi != LLONG_MAX && (best_id == LLONG_MAX || ob > best || (ob == best && oi < best_id))) {
                best = ob;
                best_id = oi;
            }
        }
        if (threadIdx.x == 0) {
            top_ids[b * n + j] = (int32_t)best_id;
            top_logprobs[b * n + j] = (float)(((double)best - (double)m) - log_sum);
        }
        last_value = best;
        last_id = best_id;
    }
}

/* ---- host side ------------------------------------------------------------------------ */

struct Plan {
    int cluster;        /* blocks per row                    */
    long long chunk;    /* elements per block                */
    int cache;          /* chunk of z in shared memory       */
    size_t shared_bytes;
};

/* Histogram and merged digits: kBins and kBins / C (fixed-point weight + int
 * count), then the candidate list. */
size_t histogram_bytes(int cluster) {
    return (size_t)(kBins + kBins / cluster) * 12 + (size_t)kCandidates * 4;
}

/* The current device's compute capability and shared-memory opt-in limit,
 * read once per device. */
struct DeviceLimits {
    int major, optin;
};
DeviceLimits device_limits() {
    static DeviceLimits cached[64];
    static bool known[64];
    int device = 0;
    cudaGetDevice(&device);
    if (device < 0 || device >= 64) device = 0;
    if (!known[device]) {
        cudaDeviceGetAttribute(&cached[device].major, cudaDevAttrComputeCapabilityMajor, device);
        cudaDeviceGetAttribute(&cached[device].optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                               device);
        known[device] = true;
    }
    return cached[device];
}

Plan make_plan(long long vocab) {
    DeviceLimits limits = device_limits();
    const int major = limits.major, optin = limits.optin;
    /* Two blocks per SM: half the opt-in limit each, less the static part. */
    size_t budget = (size_t)optin / 2 > sizeof(Shared) + 1024
                        ? (size_t)optin / 2 - sizeof(Shared) - 1024
                        : 0;
    int max_cluster = major >= 9 ? kMaxCluster : 1;
    Plan plan;
    for (int c = 1; c <= max_cluster; c *= 2) {
        long long chunk = ((vocab + c - 1) / c + 7) / 8 * 8;
        if (histogram_bytes(c) + (size_t)chunk * 4 <= budget) {
            plan.cluster = c;
            plan.chunk = chunk;
            plan.cache = 1;
            plan.shared_bytes = histogram_bytes(c) + (size_t)chunk * 4;
            return plan;
        }
    }
    /* Too large to keep: the largest cluster, re-reading global memory. */
    plan.cluster = max_cluster;
    plan.chunk = ((vocab + max_cluster - 1) / max_cluster + 7) / 8 * 8;
    plan.cache = 0;
    plan.shared_bytes = histogram_bytes(max_cluster);
    return plan;
}

bool any_history(const r1_sampling_desc *desc) {
    return desc->history_offsets != NULL && desc->history_offsets[desc->batch] > 0;
}

struct WorkspaceLayout {
    size_t params, offsets, history, penalized, counts;
    /* the two stages (off where chunks_per_row is 0) */
    size_t summaries, fallback_rows, fallback_count;
    size_t total;
};

/* Chunks per row for the two stages, or 0 where they are off (a grid of
 * more than 2^31 - 1 blocks). */
long long chunks_per_row(const r1_sampling_desc *desc) {
    const long long chunks = (desc->vocab + kChunk - 1) / kChunk;
    return chunks * desc->batch <= INT_MAX ? chunks : 0;
}

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

WorkspaceLayout layout_for(const r1_sampling_desc *desc) {
    WorkspaceLayout w;
    const size_t B = (size_t)desc->batch, V = (size_t)desc->vocab;
    size_t at = 0;
    w.params = at;
    at += align_up(B * sizeof(r1_sampling_params));
    w.offsets = at;
    w.history = at;
    w.penalized = at;
    w.counts = at;
    if (any_history(desc)) {
        size_t H = (size_t)desc->history_offsets[desc->batch];
        w.offsets = at;
        at += align_up((B + 1) * sizeof(long long));
        w.history = at;
        at += align_up(H * sizeof(int32_t));
        w.penalized = at;
        at += align_up(B * V * sizeof(float));
        w.counts = at;
        at += align_up(B * V * sizeof(int));
    }
    w.summaries = w.fallback_rows = w.fallback_count = 0;
    if (chunks_per_row(desc) > 0) {
        w.summaries = at;
        at += align_up(B * (size_t)chunks_per_row(desc) * sizeof(ChunkSummary));
        w.fallback_rows = at;
        at += align_up(B * sizeof(int));
        w.fallback_count = at;
        at += align_up(sizeof(int));
    }
    w.total = at;
    return w;
}

template <typename In>
r1_status launch(const r1_sampling_desc *desc, const void *logits, const r1_sampling_outputs *out,
                 unsigned char *ws, const WorkspaceLayout &layout, const InlineParams &given,
                 cudaStream_t stream) {
    const long long B = desc->batch, V = desc->vocab;
    r1_sampling_params *params = (r1_sampling_params *)(ws + layout.params);
    float *penalized = nullptr;
    if (any_history(desc)) {
        penalized = (float *)(ws + layout.penalized);
        penalize_rows_kernel<In><<<(unsigned)B, kThreads, 0, stream>>>(
            (const In *)logits, V, params, (const int32_t *)(ws + layout.history),
            (const long long *)(ws + layout.offsets), penalized, (int *)(ws + layout.counts));
        CUDA_TRY(cudaGetLastError());
    }
    Plan plan = make_plan(V);
    KernelArguments a;
    a.logits = logits;
    a.penalized = penalized;
    a.params = params;
    a.vocab = V;
    a.cache_in_shared = plan.cache;
    a.chunk = plan.chunk;
    a.tokens = out->tokens;
    a.logprobs = out->logprobs;
    a.filtered = out->filtered_probs;
    a.batch = B;
    a.rows = nullptr;
    a.row_count = nullptr;

    /* Kernels 2 and 3 launch as programmatic dependents of the kernel before
     * them (sm_90, kernels/launch.cuh): the launch may start while that
     * kernel drains. Stage 1 lets stage 2 launch early; stage 2 does not
     * (see decide_rows_kernel). */
    cudaLaunchAttribute early_launch = early_launch_attribute();
    const bool early_launch_on = device_limits().major >= 9;

    /* Stages 1 and 2 decide most rows; sample_rows_kernel takes the rest. */
    const long long chunks = chunks_per_row(desc);
    if (chunks > 0) {
        ChunkSummary *summaries = (ChunkSummary *)(ws + layout.summaries);
        int *fallback_rows = (int *)(ws + layout.fallback_rows);
        int *fallback_count = (int *)(ws + layout.fallback_count);
        summarize_chunks_kernel<In><<<(unsigned)(B * chunks), kChunkThreads, 0, stream>>>(
            (const In *)logits, penalized, params, given, V, (int)chunks, summaries, fallback_count);
        CUDA_TRY(cudaGetLastError());
        cudaLaunchConfig_t decide = {};
        decide.gridDim = dim3((unsigned)B, 1, 1);
        decide.blockDim = dim3(kChunkThreads, 1, 1);
        decide.stream = stream;
        decide.attrs = &early_launch;
        decide.numAttrs = early_launch_on ? 1 : 0;
        CUDA_TRY(cudaLaunchKernelEx(&decide, decide_rows_kernel<In>, (const In *)logits,
                                    (const float *)penalized, (const r1_sampling_params *)params, V,
                                    (int)chunks, (const ChunkSummary *)summaries, out->tokens,
                                    out->logprobs, out->filtered_probs, fallback_rows,
                                    fallback_count));
        a.rows = fallback_rows;
        a.row_count = fallback_count;
    }

    auto kernel = sample_rows_kernel<In>;
    /* Raise the kernel's dynamic shared-memory limit once, to the most any
     * plan asks for on this device (half the opt-in limit). */
    static int raised_to = 0;
    if (raised_to < (int)plan.shared_bytes) {
        int limit = device_limits().optin / 2;
        if (limit < (int)plan.shared_bytes) limit = (int)plan.shared_bytes;
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit));
        /* Ask for the largest shared-memory carveout so that two blocks fit
         * on an SM. */
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      (int)cudaSharedmemCarveoutMaxShared));
        raised_to = limit;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)(B * plan.cluster), 1, 1);
    config.blockDim = dim3(kThreads, 1, 1);
    config.dynamicSmemBytes = plan.shared_bytes;
    config.stream = stream;
    cudaLaunchAttribute attribute[2];
    unsigned attributes = 0;
    if (plan.cluster > 1) {
        attribute[attributes].id = cudaLaunchAttributeClusterDimension;
        attribute[attributes].val.clusterDim.x = (unsigned)plan.cluster;
        attribute[attributes].val.clusterDim.y = 1;
        attribute[attributes].val.clusterDim.z = 1;
        ++attributes;
    }
    config.attrs = attribute;
    config.numAttrs = attributes;
    /* Clusters loop over rows: as many as fit at once (asked once per
     * cluster size and shared-memory size), not more than the rows. */
    static int resident_clusters = 0, resident_for_cluster = 0;
    static size_t resident_for_bytes = 0;
    if (resident_for_cluster != plan.cluster || resident_for_bytes != plan.shared_bytes) {
        int n = 0;
        if (cudaOccupancyMaxActiveClusters(&n, (void *)kernel, &config) != cudaSuccess || n <= 0) {
            (void)cudaGetLastError(); /* the query is advice: fall back to a cluster per row */
            n = 0;
        }
        resident_clusters = n;
        resident_for_cluster = plan.cluster;
        resident_for_bytes = plan.shared_bytes;
    }
    const long long clusters = resident_clusters > 0 && resident_clusters < B ? resident_clusters : B;
    config.gridDim = dim3((unsigned)(clusters * plan.cluster), 1, 1);
    if (early_launch_on && (chunks > 0 || penalized)) attribute[config.numAttrs++] = early_launch;
    CUDA_TRY(cudaLaunchKernelEx(&config, kernel, a));

    if (desc->top_logprobs > 0) {
        raw_top_logprobs_kernel<In><<<(unsigned)B, kThreads, 0, stream>>>(
            (const In *)logits, V, desc->top_logprobs, out->tokens, out->top_ids,
            out->top_logprobs);
        CUDA_TRY(cudaGetLastError());
    }
    return R1_OK;
}

} // namespace

extern "C" size_t sampling_workspace_size_cuda(const r1_sampling_desc *desc) {
    return layout_for(desc).total;
}

extern "C" r1_status sampling_sample_cuda(const r1_sampling_desc *desc, const void *logits,
                                          const r1_sampling_outputs *out, void *workspace,
                                          void *stream_pointer) {
    cudaStream_t stream = (cudaStream_t)stream_pointer;
    WorkspaceLayout layout = layout_for(desc);
    unsigned char *ws = (unsigned char *)workspace;
    const size_t B = (size_t)desc->batch;
    /* Small calls without penalties hand the parameters to stage 1's launch;
     * the others copy them to the workspace first. */
    static thread_local InlineParams given;
    given.count = 0;
    if (B <= (size_t)kInlineRows && !any_history(desc) && chunks_per_row(desc) > 0) {
        memcpy(given.row, desc->params, B * sizeof(r1_sampling_params));
        given.count = (int)B;
    } else {
        CUDA_TRY(cudaMemcpyAsync(ws + layout.params, desc->params, B * sizeof(r1_sampling_params),
                                 cudaMemcpyHostToDevice, stream));
    }
    if (any_history(desc)) {
        size_t H = (size_t)desc->history_offsets[desc->batch];
        CUDA_TRY(cudaMemcpyAsync(ws + layout.offsets, desc->history_offsets,
                                 (B + 1) * sizeof(long long), cudaMemcpyHostToDevice, stream));
        CUDA_TRY(cudaMemcpyAsync(ws + layout.history, desc->history, H * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream));
    }
    r1_status status = desc->logits_dtype == R1_BF16
                           ? launch<__nv_bfloat16>(desc, logits, out, ws, layout, given, stream)
                           : launch<float>(desc, logits, out, ws, layout, given, stream);
    if (status != R1_OK || desc->asynchronous) return status;
    CUDA_TRY(cudaStreamSynchronize(stream));
    int32_t small[256];
    int32_t *tokens = B <= 256 ? small : (int32_t *)malloc(B * sizeof(int32_t));
    if (!tokens) return r1_fail(R1_ENOMEM, "could not allocate %zu bytes", B * sizeof(int32_t));
    cudaError_t error = cudaMemcpy(tokens, out->tokens, B * sizeof(int32_t), cudaMemcpyDeviceToHost);
    if (error == cudaSuccess) status = sampling_report_invalid_rows(tokens, desc->batch);
    else status = r1_fail(R1_ECUDA, "copying tokens back: %s", cudaGetErrorString(error));
    if (tokens != small) free(tokens);
    return status;
}
