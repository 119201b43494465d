/*
 * fast/sampling.c — the optimized CPU sampler. Same function as ref/sampling.c
 * (semantics in r1lab/sampling.h): for each row of logits l (V values),
 *   l' = penalties(l, history), z = l' / T (T = 0: argmax l'),
 *   e_i = expf(z_i - max z), keep the top-k / top-p prefix of the rank order
 *   "z descending, ties by lower id", drop e_i < min_p, draw the first kept id
 *   (by id) whose float64 running weight exceeds u * F, u = Philox(seed, row, step).
 * Shapes: logits (B, V); every per-row buffer below is (V) unless stated.
 *
 * ALGORITHM (no sort: a few O(V) passes per row, the select touches few tokens)
 *  1. top logprobs of the raw row: one pass keeps the best n (<= 20) in a
 *     small sorted array, skipping 64-value blocks with nothing above the
 *     current n-th; log-sum-exp in float64 (a vectorized exp);
 *  2. z = l / T while loading (bf16 widens exactly), then the penalties for
 *     the history ids only, recomputed from the input logit as ref does, then
 *     max z and the NaN / +inf / all -inf check (an integer-key maximum in 16
 *     lanes, so the loop vectorizes);
 *  3. e = expf(z - m) and key = r1_float_order_key(z) in one vectorized pass.
 *     The expf is glibc's own algorithm (the ARM optimized-routines expf that
 *     glibc >= 2.28 ships: x * 32/ln2 = k + r, 2^(k/32) from a 32-entry table,
 *     a cubic in r, all in double, rounded once to float), written as plain C
 *     that the compiler vectorizes. On the development machine (glibc 2.36,
 *     its FMA variant) it returns glibc's bits for every float <= 0 and -inf
 *     (checked exhaustively: 2.1e9 inputs, 0 differences; built without FMA,
 *     1 differs by 1 ulp), so e, the kept set and the draw match ref bit for
 *     bit;
 *  4. radix select over the 32-bit key, digits of 11 + 11 + 10 bits from the
 *     most significant: histograms of counts (top-k) and float64 weight sums
 *     (top-p) over the tokens still matching the digits chosen so far; walking
 *     the buckets from the top, the bucket where the running count / weight
 *     reaches the target is chosen. The walk stops early when that bucket
 *     holds one token (or completes k exactly); at the last digit the key is
 *     exact and the tied tokens (equal z, so equal e) needed follow from
 *     arithmetic, taken in increasing id order. top-k and top-p are prefixes
 *     of the same order, so the kept prefix is the shorter one; top-p's target
 *     is top_p * (weight of the top-k prefix). The first histogram is shared
 *     by both and first covers only the tokens with z >= m - 16 (a prefix of
 *     the order, usually a handful, whose ids it lists); when they fall short
 *     of a target it is rebuilt over all V. Weight sums run over buckets from
 *     the top down, and a bucket whose largest weight is below half an ulp
 *     of the running sum adds nothing, as in ref's one-by-one rank-order sum
 *     (see add_weights); the tail below m - 16 is summed in step 3;
 *  5. the kept ids (prefix and e >= min_p) in increasing order, from that list
 *     or from a V scan that skips 64-key blocks holding none; then F and the
 *     draw in float64 by increasing id, the same additions as ref.
 *  Rows run in parallel (OpenMP, dynamic schedule); the workspace holds one
 *  scratch area per thread (omp_get_max_threads(), at most B).
 *
 * VERSIONS. B = 64 (and 1), V = 152064, T = 0.6, top_p = 0.95, f32 logits
 * normal(0, 2) with 10 tokens raised by 8..15; 2-core AMD EPYC (Zen 5,
 * AVX-512) VM, gcc 12 -O3 -march=native -fopenmp; ref takes about 1.3 s at
 * B = 64 and 19 ms at B = 1. Times on this VM vary by up to 30 %.
 *  v1  radix select 11+11+10 over all V; glibc-exact vectorized expf;
 *      OpenMP over rows.                                 14.8 ms (0.41 ms)
 *  v2  64-wide block tests in the id scans (gcc leaves 16-wide ones
 *      scalar); the first histogram first looks only at z >= m - 16.
 *                                                        11.1 ms (0.32 ms)
 *  v3  max as its own loop over integer keys (fused with the division it
 *      compiled to scalar code inside the library).       5.9 ms (0.17 ms)
 *  v4  division fused with the load (penalties recomputed from the input);
 *      the prefilter's id list replaces two V scans; top-p's total summed
 *      over buckets from the top down.                    5.1 ms (0.13 ms)
 *  v5  top-p's sums follow ref's rounding (add_weights): tied top logits
 *      with a tail of tiny weights now cut where ref cuts (without it, 44
 *      token and 99 kept-set differences in 28k such rows). Tail sum and
 *      maximum in the expf pass.                           ~same
 *  v6  no id list when every token is kept (top_k = 0, top_p = 1,
 *      min_p = 0): 0.31 -> 0.24 ms per row at B = 1 in that case.
 *  Final (median of 5 rounds): 6.0 ms at B = 64 (ref 1.22 s: 202x),
 *  0.15 ms at B = 1 (ref 19.7 ms: 132x), 27 ms at B = 256 (ref 5.8 s);
 *  V = 32000: 1.4 ms at B = 64 (ref 0.30 s: 216x).
 *  Now about 2/3 of a row is the expf pass, bound by its table gather
 *  (vpgatherqq); an AVX-512 two-register permute instead measured 92 -> 65 us
 *  per row for that pass and was left out to keep one portable C path.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/internal.h"
#include "r1lab/philox.h"

/* ---- expf, vectorizable --------------------------------------------------
 * glibc's expf: with N = 32, x * N / ln2 = k + r (k integer, |r| <= 1/2),
 * exp(x) = 2^(k/N) * 2^(r/N) ~= s * (C0 r^3 + C1 r^2 + C2 r + 1),
 * s = 2^(k/N) built from EXP_TABLE[k % N] + (k << 47) (the table holds the bits
 * of 2^(i/N) rounded to double, minus i << 47). Table and coefficients are
 * those of ARM's optimized-routines expf (MIT licence), which glibc ships. */
#define EXP_TABLE_BITS 5
static const uint64_t EXP_TABLE[1 << EXP_TABLE_BITS] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};
#define EXP_INV_LN2_N (0x1.71547652b82fep+0 * 32)
#define EXP_SHIFT 0x1.8p+52
#define EXP_C0 (0x1.c6af84b912394p-5 / 32 / 32 / 32)
#define EXP_C1 (0x1.ebfce50fac4f3p-3 / 32 / 32)
#define EXP_C2 (0x1.62e42ff0c52d6p-1 / 32)
/* Bit patterns of float / double values <= 0 grow with the magnitude, so the
 * clamps below compare bits as unsigned integers (float comparisons inside a
 * conditional keep gcc from vectorizing under its default -ftrapping-math). */
#define EXPF_CLAMP_BITS 0xC2DC0000u           /* -110.0f                      */
#define EXP_CLAMP_BITS 0xC085E00000000000ull  /* -700.0: below, taken as 0       */

/* 2^(k/N) * 2^(r/N) for x = (k + r) ln2 / N, x in [-700, 0], in double;
 * relative error about 1e-10 (the rounding to float then matches glibc). */
static inline double exp_core(double x) {
    double scaled = EXP_INV_LN2_N * x;
    double shifted = scaled + EXP_SHIFT;
    uint64_t k_bits;
    memcpy(&k_bits, &shifted, sizeof k_bits);
    double k = shifted - EXP_SHIFT;
    /* With one rounding (FMA) this matches glibc's __expf_fma bit for bit on
     * every float <= 0; without FMA 1 input in 2.1e9 differs by 1 ulp. */
#ifdef __FMA__
    double r = fma(EXP_INV_LN2_N, x, -k);
#else
    double r = scaled - k;
#endif
    uint64_t s_bits =
        EXP_TABLE[k_bits % (1u << EXP_TABLE_BITS)] + (k_bits << (52 - EXP_TABLE_BITS));
    double s;
    memcpy(&s, &s_bits, sizeof s);
    double cubic = EXP_C0 * r + EXP_C1;
    double r2 = r * r;
    double y = EXP_C2 * r + 1.0;
    y = cubic * r2 + y;
    return y * s;
}

/* expf(x) for x <= 0 (or -inf): the bits glibc's expf returns. Below
 * -0x1.9fe368p6f (exp < 2^-150) the final rounding itself gives 0, so only
 * the clamp (which also maps -inf) is needed. */
static inline float expf_nonpositive(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits = bits > EXPF_CLAMP_BITS ? EXPF_CLAMP_BITS : bits;
    float clamped;
    memcpy(&clamped, &bits, sizeof clamped);
    return (float)exp_core((double)clamped);
}

/* exp(x) for x <= 0 in double, relative error about 1e-10; 0 below -700. */
static inline double exp_nonpositive(double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint64_t clamped_bits = bits > EXP_CLAMP_BITS ? EXP_CLAMP_BITS : bits;
    double clamped;
    memcpy(&clamped, &clamped_bits, sizeof clamped);
    double y = exp_core(clamped);
    uint64_t y_bits;
    memcpy(&y_bits, &y, sizeof y_bits);
    y_bits = bits > EXP_CLAMP_BITS ? 0u : y_bits;
    memcpy(&y, &y_bits, sizeof y);
    return y;
}

/* ---- scratch ------------------------------------------------------------- */

#define DIGIT_LEVELS 3
static const int DIGIT_SHIFT[DIGIT_LEVELS] = {21, 10, 0};
static const int DIGIT_BITS[DIGIT_LEVELS] = {11, 11, 10};
#define MAX_BUCKETS 2048
#define PREFILTER_DEPTH 16.0f /* first look at tokens with z >= max z - 16 */
#define LANES 16       /* independent partial results of a reduction        */
#define SCAN_BLOCK 64  /* values tested together before a scalar look (gcc
                          vectorizes a 64-long test, not a 16-long one) */

typedef struct fast_scratch {
    float *values;          /* (V) z = l' / T (l' itself when greedy)           */
    float *weights;         /* (V) e                                            */
    uint32_t *keys;         /* (V) r1_float_order_key(z)                        */
    int32_t *counts;        /* (V) history counts; only history ids are touched */
    int32_t *near_top;      /* (V) ids with key >= from_key (the prefilter)     */
    int32_t *ids;           /* (V) candidates of the select, then kept ids      */
    uint32_t *cand_keys;    /* (V) keys of the candidates                       */
    float *cand_weights;    /* (V) weights of the candidates (step 3: scratch)  */
    uint32_t *level0_count; /* (MAX_BUCKETS) first digit: tokens per bucket     */
    double *level0_weight;  /* (MAX_BUCKETS) their weight sum                   */
    float *level0_max;      /* (MAX_BUCKETS) their largest weight               */
    uint32_t *level_count;  /* (MAX_BUCKETS) the same for the deeper digits     */
    double *level_weight;   /* (MAX_BUCKETS)                                    */
    float *level_max;       /* (MAX_BUCKETS)                                    */
} fast_scratch;

static size_t align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

static size_t scratch_bytes(size_t V) {
    return 8 * align64(V * 4) + 2 * align64(MAX_BUCKETS * (4 + 8 + 4)) + 64;
}

static fast_scratch carve_scratch(void *area, size_t V) {
    char *p = (char *)(((uintptr_t)area + 63) & ~(uintptr_t)63);
    fast_scratch s;
    s.values = (float *)p, p += align64(V * 4);
    s.weights = (float *)p, p += align64(V * 4);
    s.keys = (uint32_t *)p, p += align64(V * 4);
    s.counts = (int32_t *)p, p += align64(V * 4);
    s.near_top = (int32_t *)p, p += align64(V * 4);
    s.ids = (int32_t *)p, p += align64(V * 4);
    s.cand_keys = (uint32_t *)p, p += align64(V * 4);
    s.cand_weights = (float *)p, p += align64(V * 4);
    s.level0_weight = (double *)p, p += MAX_BUCKETS * 8;
    s.level0_count = (uint32_t *)p, p += MAX_BUCKETS * 4;
    s.level0_max = (float *)p, p += align64(MAX_BUCKETS * 4);
    s.level_weight = (double *)p, p += MAX_BUCKETS * 8;
    s.level_count = (uint32_t *)p, p += MAX_BUCKETS * 4;
    s.level_max = (float *)p;
    return s;
}

/* Threads the call uses (and sizes the workspace for): never more than rows. */
static int thread_count(const r1_sampling_desc *desc) {
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    if ((int64_t)threads > desc->batch) threads = (int)desc->batch;
    return threads < 1 ? 1 : threads;
#else
    return 1;
#endif
}

size_t sampling_workspace_size_fast(const r1_sampling_desc *desc) {
    return (size_t)thread_count(desc) * scratch_bytes((size_t)desc->vocab);
}

/* ---- vectorized passes --------------------------------------------------- */

/* Order key with the same meaning as r1_float_order_key, in a form that
 * vectorizes. */
static inline uint32_t order_key(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    bits = bits == 0x80000000u ? 0u : bits; /* -0.0 -> +0.0 */
    uint32_t sign_mask = (uint32_t)((int32_t)bits >> 31);
    return bits ^ (sign_mask | 0x80000000u);
}

/* Logit i of a row of the input as float32 (bf16 widens exactly, as
 * r1_bf16_to_f32). */
static inline float input_value(const void *row, r1_dtype dtype, size_t i) {
    if (dtype == R1_F32) return ((const float *)row)[i];
    uint32_t wide = (uint32_t)((const uint16_t *)row)[i] << 16;
    float value;
    memcpy(&value, &wide, sizeof value);
    return value;
}

/* Steps 1-2 without the penalties: x = l / divisor (V), each division
 * rounded to float32 as ref does (divisor = T, or 1 for greedy, exact). */
static void load_scaled(const void *row, r1_dtype dtype, size_t V, float divisor, float *x) {
    if (dtype == R1_F32) {
        const float *in = row;
        for (size_t i = 0; i < V; ++i) x[i] = in[i] / divisor;
    } else {
        const uint16_t *in = row;
        for (size_t i = 0; i < V; ++i) {
            uint32_t wide = (uint32_t)in[i] << 16;
            float value;
            memcpy(&value, &wide, sizeof value);
            x[i] = value / divisor;
        }
    }
}

/* A signed integer that orders floats like their values (NaN aside; -0.0
 * sorts just below +0.0, which is harmless for a maximum). */
static inline int32_t signed_order(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return (int32_t)(bits ^ ((uint32_t)((int32_t)bits >> 31) >> 1));
}

static inline float from_signed_order(int32_t order) {
    uint32_t bits = (uint32_t)order ^ ((uint32_t)(order >> 31) >> 1);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline uint32_t is_nan_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return (bits & 0x7fffffffu) > 0x7f800000u;
}

/* Largest value of x (V) and whether the row is usable: no NaN, no +inf, at
 * least one value above -inf. The maximum runs over integer order keys in
 * LANES independent lanes so that the loop vectorizes. */
static int max_and_check(const float *x, size_t V, float *max_out) {
    int32_t lane_max[LANES];
    uint32_t lane_nan[LANES];
    for (int j = 0; j < LANES; ++j) lane_max[j] = INT32_MIN, lane_nan[j] = 0;
    size_t i = 0;
    for (; i + LANES <= V; i += LANES)
        for (int j = 0; j < LANES; ++j) {
            int32_t order = signed_order(x[i + j]);
            lane_max[j] = order > lane_max[j] ? order : lane_max[j];
            lane_nan[j] |= is_nan_bits(x[i + j]);
        }
    for (; i < V; ++i) {
        int32_t order = signed_order(x[i]);
        lane_max[0] = order > lane_max[0] ? order : lane_max[0];
        lane_nan[0] |= is_nan_bits(x[i]);
    }
    int32_t best = INT32_MIN;
    uint32_t nan = 0;
    for (int j = 0; j < LANES; ++j) {
        best = lane_max[j] > best ? lane_max[j] : best;
        nan |= lane_nan[j];
    }
    float m = from_signed_order(best);
    *max_out = m;
    return !nan && m != INFINITY && m != -INFINITY;
}

/* Step 3: e = expf(z - m) and key = order key of z, for z (V). Returns the
 * float64 sum of e over the tokens with key < from_key (the tail that the
 * first look of the select leaves out) and their largest e in *tail_max.
 * tail (V) is scratch: e where key < from_key, else 0. */
static double weights_and_keys(const float *z, size_t V, float m, uint32_t from_key, float *e,
                               uint32_t *keys, float *tail, float *tail_max) {
    for (size_t i = 0; i < V; ++i) {
        float weight = expf_nonpositive(z[i] - m);
        uint32_t key = order_key(z[i]);
        e[i] = weight;
        keys[i] = key;
        tail[i] = key < from_key ? weight : 0.0f;
    }
    /* 2 * LANES lanes (gcc keeps the 16-lane form of this loop scalar); the
     * bits of e >= 0 order like e. */
    double lane_sum[2 * LANES] = {0};
    uint32_t lane_max[2 * LANES] = {0};
    size_t i = 0;
    for (; i + 2 * LANES <= V; i += 2 * LANES)
        for (int j = 0; j < 2 * LANES; ++j) {
            uint32_t bits;
            memcpy(&bits, &tail[i + j], sizeof bits);
            lane_max[j] = bits > lane_max[j] ? bits : lane_max[j];
            lane_sum[j] += (double)tail[i + j];
        }
    double sum = 0;
    uint32_t largest = 0;
    for (; i < V; ++i) {
        uint32_t bits;
        memcpy(&bits, &tail[i], sizeof bits);
        largest = bits > largest ? bits : largest;
        sum += tail[i];
    }
    for (int j = 0; j < 2 * LANES; ++j) {
        sum += lane_sum[j];
        largest = lane_max[j] > largest ? lane_max[j] : largest;
    }
    memcpy(tail_max, &largest, sizeof largest);
    return sum;
}

/* ---- top logprobs of the raw row ---------------------------------------- */

/* Inserts (v, id) into the sorted list best_value / best_id, whose entries
 * [0, position) stay and whose entry `position` is overwritten: shifts down
 * the entries v beats. id is above every listed id, so equal values keep the
 * lower id first. */
static inline void insert_sorted(float *best_value, int32_t *best_id, int position, float v,
                                 int32_t id) {
    while (position > 0 && v > best_value[position - 1]) {
        best_value[position] = best_value[position - 1];
        best_id[position] = best_id[position - 1];
        --position;
    }
    best_value[position] = v;
    best_id[position] = id;
}

/* best_value / best_id (n entries, full): (value desc, id asc). Puts (v, id)
 * in its place if it beats the last. */
static inline void offer_top(float *best_value, int32_t *best_id, int n, float v, int32_t id) {
    if (v > best_value[n - 1]) insert_sorted(best_value, best_id, n - 1, v, id);
}

/* The n best of raw (V) by (value descending, id ascending), and
 * log_softmax in float64: (raw - m) - log sum exp(raw - m), m = max raw. */
static void raw_top_logprobs(const float *raw, size_t V, int32_t n, int32_t *top_ids,
                             float *top_logprobs) {
    float best_value[R1_SAMPLING_MAX_TOP_LOGPROBS];
    int32_t best_id[R1_SAMPLING_MAX_TOP_LOGPROBS];
    /* The first n fill the list (by insertion), the rest are offered; a block
     * with nothing above the current n-th value is skipped whole. */
    for (int filled = 0; filled < n; ++filled)
        insert_sorted(best_value, best_id, filled, raw[filled], filled);
    size_t i = (size_t)n;
    for (; i < V && i % SCAN_BLOCK != 0; ++i) offer_top(best_value, best_id, n, raw[i], (int32_t)i);
    for (; i + SCAN_BLOCK <= V; i += SCAN_BLOCK) {
        float threshold = best_value[n - 1];
        int any = 0;
        for (int j = 0; j < SCAN_BLOCK; ++j) any |= raw[i + j] > threshold;
        if (any)
            for (int j = 0; j < SCAN_BLOCK; ++j)
                offer_top(best_value, best_id, n, raw[i + j], (int32_t)(i + j));
    }
    for (; i < V; ++i) offer_top(best_value, best_id, n, raw[i], (int32_t)i);

    int32_t lane_max[LANES];
    for (int j = 0; j < LANES; ++j) lane_max[j] = INT32_MIN;
    size_t k = 0;
    for (; k + LANES <= V; k += LANES)
        for (int j = 0; j < LANES; ++j) {
            int32_t order = signed_order(raw[k + j]);
            lane_max[j] = order > lane_max[j] ? order : lane_max[j];
        }
    for (size_t r = k; r < V; ++r) {
        int32_t order = signed_order(raw[r]);
        lane_max[0] = order > lane_max[0] ? order : lane_max[0];
    }
    int32_t best = INT32_MIN;
    for (int j = 0; j < LANES; ++j) best = lane_max[j] > best ? lane_max[j] : best;
    const double m = from_signed_order(best);
    double lane_sum[LANES] = {0};
    for (k = 0; k + LANES <= V; k += LANES)
        for (int j = 0; j < LANES; ++j) lane_sum[j] += exp_nonpositive((double)raw[k + j] - m);
    double sum = 0;
    for (size_t r = k; r < V; ++r) sum += exp_nonpositive((double)raw[r] - m);
    for (int j = 0; j < LANES; ++j) sum += lane_sum[j];
    const double log_sum = log(sum); /* (x - m) - log_sum: see ref */
    for (int32_t j = 0; j < n; ++j) {
        top_ids[j] = best_id[j];
        top_logprobs[j] = (float)(((double)best_value[j] - m) - log_sum);
    }
}

/* ---- radix select -------------------------------------------------------- */

/* A prefix of the rank order: every token with key >= take_from, plus the
 * first `ties` tokens (by id) whose key is tie_key (< take_from). */
typedef struct prefix_cut {
    uint32_t take_from;
    uint32_t tie_key;
    int64_t ties;
    int64_t length; /* tokens in the prefix */
    double weight;  /* their weight e, float64 */
    int reached;    /* 0: the tokens with key >= from_key do not reach the target */
} prefix_cut;

/* The first digit's histogram over the tokens with key >= from_key (a prefix
 * of the rank order; from_key = 0: all V): counts, and weight sums when
 * with_weights. Blocks of SCAN_BLOCK keys below from_key are skipped whole;
 * with from_key > 0 the ids counted are listed in s->near_top (id order) and
 * their number returned. */
static size_t histogram_level0(const fast_scratch *s, size_t V, int with_weights,
                               uint32_t from_key) {
    uint32_t *count = s->level0_count;
    double *weight = s->level0_weight;
    float *largest = s->level0_max;
    const int shift = DIGIT_SHIFT[0];
    memset(count, 0, MAX_BUCKETS * sizeof *count);
    if (with_weights) {
        memset(weight, 0, MAX_BUCKETS * sizeof *weight);
        memset(largest, 0, MAX_BUCKETS * sizeof *largest);
    }
    if (from_key == 0) {
        if (with_weights) {
            for (size_t i = 0; i < V; ++i) {
                uint32_t d = s->keys[i] >> shift;
                count[d] += 1;
                weight[d] += s->weights[i];
                if (s->weights[i] > largest[d]) largest[d] = s->weights[i];
            }
        } else {
            for (size_t i = 0; i < V; ++i) count[s->keys[i] >> shift] += 1;
        }
        return V;
    }
    size_t listed = 0;
    for (size_t i = 0; i < V; i += SCAN_BLOCK) {
        size_t end = i + SCAN_BLOCK;
        if (end <= V) {
            uint32_t any = 0;
            for (int j = 0; j < SCAN_BLOCK; ++j) any |= s->keys[i + j] >= from_key;
            if (!any) continue;
        } else {
            end = V;
        }
        for (size_t t = i; t < end; ++t) {
            if (s->keys[t] < from_key) continue;
            uint32_t d = s->keys[t] >> shift;
            count[d] += 1;
            if (with_weights) {
                weight[d] += s->weights[t];
                if (s->weights[t] > largest[d]) largest[d] = s->weights[t];
            }
            s->near_top[listed++] = (int32_t)t;
        }
    }
    return listed;
}

/* running + (a bucket's weight sum), the way ref's rank-order sum sees it.
 * ref adds weights one at a time from the top of the order; one below half
 * an ulp of its running sum leaves the sum unchanged, and so do all the
 * smaller ones after it. A bucket whose largest weight is below that adds
 * nothing here either, so that tied weights that reach a top-p target
 * exactly in ref (e.g. many equal top logits and a tail of tiny weights)
 * reach it here too. Buckets are added from the top down. Not emulated: a
 * first-digit bucket holding both weights near 1 and such tiny ones (|z| of
 * 150 or more, so T of about 0.01): its sum, taken by id, keeps part of the
 * tiny ones, and an exactly hit target may then keep one more tie than ref. */
static inline double add_weights(double running, double bucket_sum, float bucket_max) {
    if (running > 0.0 && (double)bucket_max < 0.5 * (nextafter(running, INFINITY) - running))
        return running;
    return running + bucket_sum;
}

/* The weight of all tokens the first digit's histogram counted. */
static double level0_weight_total(const fast_scratch *s) {
    double total = 0;
    for (int d = MAX_BUCKETS - 1; d >= 0; --d)
        if (s->level0_count[d] > 0) total = add_weights(total, s->level0_weight[d], s->level0_max[d]);
    return total;
}

/* Moves the candidates (s->ids, cand_keys, cand_weights) whose digit at
 * `shift` is `digit` to the front; returns how many. Level 0 gathers them
 * from all V tokens (from_key = 0) or from the near_top list, stopping once
 * `expected` are found. */
static size_t narrow_candidates(const fast_scratch *s, size_t V, int level, size_t candidates,
                                uint32_t digit, uint32_t from_key, size_t listed,
                                size_t expected) {
    const int shift = DIGIT_SHIFT[level];
    const uint32_t mask = (1u << DIGIT_BITS[level]) - 1;
    size_t kept = 0;
    if (level > 0) {
        for (size_t c = 0; c < candidates; ++c) {
            if (((s->cand_keys[c] >> shift) & mask) == digit) {
                s->ids[kept] = s->ids[c];
                s->cand_keys[kept] = s->cand_keys[c];
                s->cand_weights[kept] = s->cand_weights[c];
                ++kept;
            }
        }
        return kept;
    }
    if (from_key > 0) {
        for (size_t c = 0; c < listed && kept < expected; ++c) {
            int32_t id = s->near_top[c];
            if ((s->keys[id] >> shift) == digit) {
                s->ids[kept] = id;
                s->cand_keys[kept] = s->keys[id];
                s->cand_weights[kept] = s->weights[id];
                ++kept;
            }
        }
        return kept;
    }
    for (size_t i = 0; i < V && kept < expected; i += SCAN_BLOCK) {
        size_t end = i + SCAN_BLOCK;
        if (end <= V) {
            uint32_t any = 0;
            for (int j = 0; j < SCAN_BLOCK; ++j) any |= (s->keys[i + j] >> shift) == digit;
            if (!any) continue;
        } else {
            end = V;
        }
        for (size_t t = i; t < end; ++t) {
            if ((s->keys[t] >> shift) == digit) {
                s->ids[kept] = (int32_t)t;
                s->cand_keys[kept] = s->keys[t];
                s->cand_weights[kept] = s->weights[t];
                ++kept;
            }
        }
    }
    return kept;
}

/* The shortest prefix of the rank order holding count_target tokens
 * (by_weight = 0) or reaching weight_target (by_weight = 1, ">="), among the
 * tokens with key >= from_key. Weights are summed when with_weights (always in
 * weight mode). Needs histogram_level0 with the same with_weights, from_key
 * (`listed` is what it returned).
 * cut.reached = 0 when those tokens fall short of the target. */
static prefix_cut select_prefix(const fast_scratch *s, size_t V, int by_weight,
                                int64_t count_target, double weight_target, int with_weights,
                                uint32_t from_key, size_t listed) {
    prefix_cut cut = {0, 0, 0, 0, 0.0, 1};
    int64_t count_above = 0;   /* tokens ranked above the current range */
    double weight_above = 0.0; /* their weight */
    uint64_t base = 0;         /* lowest key of the current range */
    size_t candidates = 0;     /* tokens in the current range (level >= 1) */
    for (int level = 0; level < DIGIT_LEVELS; ++level) {
        const int shift = DIGIT_SHIFT[level], buckets = 1 << DIGIT_BITS[level];
        const uint32_t mask = (uint32_t)buckets - 1;
        const uint32_t *count = s->level0_count;
        const double *weight = s->level0_weight;
        const float *largest = s->level0_max;
        if (level > 0) {
            uint32_t *level_count = s->level_count;
            double *level_weight = s->level_weight;
            float *level_max = s->level_max;
            memset(level_count, 0, (size_t)buckets * sizeof *level_count);
            if (with_weights) {
                memset(level_weight, 0, (size_t)buckets * sizeof *level_weight);
                memset(level_max, 0, (size_t)buckets * sizeof *level_max);
                for (size_t c = 0; c < candidates; ++c) {
                    uint32_t d = (s->cand_keys[c] >> shift) & mask;
                    level_count[d] += 1;
                    level_weight[d] += s->cand_weights[c];
                    if (s->cand_weights[c] > level_max[d]) level_max[d] = s->cand_weights[c];
                }
            } else {
                for (size_t c = 0; c < candidates; ++c)
                    level_count[(s->cand_keys[c] >> shift) & mask] += 1;
            }
            count = level_count;
            weight = level_weight;
            largest = level_max;
        }

        /* Walk the buckets from the top until the target is reached. */
        int chosen = -1;
        for (int d = buckets - 1; d >= 0; --d) {
            if (count[d] == 0) continue;
            double with_d =
                with_weights ? add_weights(weight_above, weight[d], largest[d]) : 0.0;
            int reached = by_weight ? (with_d >= weight_target)
                                    : (count_above + (int64_t)count[d] >= count_target);
            if (reached) {
                chosen = d;
                break;
            }
            count_above += count[d];
            weight_above = with_d;
        }
        if (chosen < 0) {
            /* At level 0: the counted tokens fall short. Deeper, only float64
             * rounding can leave a weight target unreached: keep the range. */
            cut.reached = level > 0;
            cut.take_from = (uint32_t)base;
            cut.length = count_above;
            cut.weight = weight_above;
            break;
        }
        const uint64_t low = base + ((uint64_t)chosen << shift);
        const int64_t chosen_count = count[chosen];
        if (chosen_count == 1 || (!by_weight && count_above + chosen_count == count_target)) {
            /* The whole bucket belongs to the prefix. */
            cut.take_from = (uint32_t)low;
            cut.length = count_above + chosen_count;
            if (with_weights)
                cut.weight = add_weights(weight_above, weight[chosen], largest[chosen]);
            break;
        }
        candidates = narrow_candidates(s, V, level, candidates, (uint32_t)chosen, from_key,
                                       listed, (size_t)chosen_count);
        base = low;
        if (level == DIGIT_LEVELS - 1) {
            /* Every candidate has key == low: equal z, equal e. Take ties in
             * increasing id order, as many as the target needs. */
            const double tie_weight = s->cand_weights[0];
            int64_t ties;
            if (!by_weight) {
                ties = count_target - count_above;
            } else if (tie_weight > 0.0) {
                double needed = ceil((weight_target - weight_above) / tie_weight);
                ties = needed < 1.0 ? 1 : needed > (double)chosen_count ? chosen_count
                                                                          : (int64_t)needed;
                while (ties > 1 && weight_above + (double)(ties - 1) * tie_weight >= weight_target)
                    --ties;
                while (ties < chosen_count &&
                       weight_above + (double)ties * tie_weight < weight_target)
                    ++ties;
            } else {
                ties = chosen_count;
            }
            cut.take_from = (uint32_t)(low + 1); /* keys of valid z stay below 0xFF800000 */
            cut.tie_key = (uint32_t)low;
            cut.ties = ties;
            cut.length = count_above + ties;
            cut.weight = add_weights(weight_above, (double)ties * tie_weight, (float)tie_weight);
        }
    }
    /* Only tokens with key >= from_key were counted; a bucket's lower end may
     * lie below from_key. */
    if (cut.take_from < from_key) cut.take_from = from_key;
    if (cut.ties == 0) cut.tie_key = cut.take_from;
    return cut;
}

/* ---- outputs ------------------------------------------------------------- */


/* Step 1 over the history ids only, on the scaled row: x[id] = l'[id] /
 * divisor with l'[id] computed from the input logit l[id] as ref does.
 * counts[] is zeroed for the history ids first, and left zero. */
static void apply_penalties(float *x, const void *row, r1_dtype dtype, float divisor,
                            int32_t *counts, const int32_t *history, int64_t length,
                            const r1_sampling_params *p) {
    for (int64_t j = 0; j < length; ++j) counts[history[j]] = 0;
    for (int64_t j = 0; j < length; ++j) counts[history[j]] += 1;
    for (int64_t j = 0; j < length; ++j) {
        int32_t id = history[j];
        if (counts[id] == 0) continue; /* already applied for an earlier repeat */
        float value = input_value(row, dtype, (size_t)id);
        value = (value > 0.0f) ? value / p->repetition_penalty : value * p->repetition_penalty;
        float penalty = p->frequency_penalty * (float)counts[id] + p->presence_penalty;
        x[id] = (value - penalty) / divisor;
        counts[id] = 0;
    }
}

/* Whether block [i, i + SCAN_BLOCK) may hold a kept token: integer compares
 * only (weights are >= 0, so their bits order like their values). */
static inline int block_may_keep(const uint32_t *keys, const float *weights, uint32_t take_from,
                                 uint32_t tie_key, uint32_t min_p_bits) {
    uint32_t any = 0;
    for (int j = 0; j < SCAN_BLOCK; ++j) {
        uint32_t weight_bits;
        memcpy(&weight_bits, &weights[j], sizeof weight_bits);
        any |= ((keys[j] >= take_from) | (keys[j] == tie_key)) & (weight_bits >= min_p_bits);
    }
    return any != 0;
}

/* The kept ids (in the prefix `cut`, and e >= min_p) in increasing order into
 * s->ids; returns how many. With from_key > 0 the prefix lies inside the
 * near_top list (`listed` ids), else all V are scanned. */
static size_t collect_kept(const fast_scratch *s, size_t V, prefix_cut cut, float min_p,
                           uint32_t from_key, size_t listed) {
    const uint32_t take_from = cut.take_from;
    const uint32_t tie_key = cut.ties > 0 ? cut.tie_key : take_from;
    uint32_t min_p_bits = 0;
    if (min_p > 0.0f) memcpy(&min_p_bits, &min_p, sizeof min_p_bits);
    int64_t ties_left = cut.ties;
    size_t kept = 0;
#define KEEP_IF_KEPT(t)                                                        \
    do {                                                                       \
        uint32_t key = s->keys[t];                                             \
        int in_prefix = key >= take_from;                                      \
        if (!in_prefix && key == tie_key && ties_left > 0) {                   \
            in_prefix = 1; /* ties are taken in increasing id order */         \
            --ties_left;                                                       \
        }                                                                      \
        if (in_prefix && s->weights[t] >= min_p) s->ids[kept++] = (int32_t)(t); \
    } while (0)
    if (from_key > 0) {
        for (size_t c = 0; c < listed; ++c) KEEP_IF_KEPT(s->near_top[c]);
        return kept;
    }
    for (size_t i = 0; i < V; i += SCAN_BLOCK) {
        size_t end = i + SCAN_BLOCK;
        if (end <= V) {
            if (!block_may_keep(s->keys + i, s->weights + i, take_from, tie_key, min_p_bits))
                continue;
        } else {
            end = V;
        }
        for (size_t t = i; t < end; ++t) KEEP_IF_KEPT(t);
    }
#undef KEEP_IF_KEPT
    return kept;
}

/* One row: steps 1-8 of the semantics. */
static void sample_row(const r1_sampling_desc *desc, const void *logits, int64_t b,
                       const r1_sampling_outputs *out, const fast_scratch *s) {
    const size_t V = (size_t)desc->vocab;
    const int32_t n = desc->top_logprobs;
    const r1_sampling_params *p = &desc->params[b];
    const r1_dtype dtype = desc->logits_dtype;
    const void *row = (const char *)logits + (size_t)b * V * (dtype == R1_F32 ? 4 : 2);
    float *filtered = out->filtered_probs ? out->filtered_probs + (size_t)b * V : NULL;

    /* Top logprobs from the raw row. It is valid whenever the final row is
     * (penalties and T cannot clear a NaN, +inf or an all -inf row), so an
     * invalid row found below simply overwrites them. */
    if (n > 0) {
        const float *raw = row;
        if (dtype != R1_F32) {
            load_scaled(row, dtype, V, 1.0f, s->weights); /* widened, x / 1 = x */
            raw = s->weights;
        }
        raw_top_logprobs(raw, V, n, out->top_ids + (size_t)b * (size_t)n,
                         out->top_logprobs + (size_t)b * (size_t)n);
    }

    /* Steps 1-2: x = l' / T (l' itself when greedy: division by 1 is exact). */
    const int greedy = p->temperature == 0.0f;
    const float divisor = greedy ? 1.0f : p->temperature;
    load_scaled(row, dtype, V, divisor, s->values);
    if (desc->history_offsets) {
        int64_t begin = desc->history_offsets[b], end = desc->history_offsets[b + 1];
        apply_penalties(s->values, row, dtype, divisor, s->counts, desc->history + begin,
                        end - begin, p);
    }
    float m;
    if (!max_and_check(s->values, V, &m)) {
        sampling_write_invalid_row(out, b, V, n);
        return;
    }
    if (greedy) {
        size_t token = 0;
        while (s->values[token] != m) ++token; /* first index of the max */
        out->tokens[b] = (int32_t)token;
        if (out->logprobs) out->logprobs[b] = 0.0f;
        if (filtered) {
            memset(filtered, 0, V * sizeof *filtered);
            filtered[token] = 1.0f;
        }
        return;
    }

    /* Step 3. */
    uint32_t from_key = order_key(m - PREFILTER_DEPTH);
    float tail_max;
    double tail_weight =
        weights_and_keys(s->values, V, m, from_key, s->weights, s->keys, s->cand_weights,
                         &tail_max);

    /* Steps 4-6: the kept prefix. The select first looks only at the tokens
     * with z >= m - PREFILTER_DEPTH (weights above about e^-16: usually a
     * handful, listed in s->near_top); if they fall short of the target it
     * looks again at all V. */
    const int top_k_on = p->top_k > 0 && (size_t)p->top_k < V;
    const int top_p_on = p->top_p < 1.0f;
    prefix_cut cut = {0, 0, 0, (int64_t)V, 0.0, 1}; /* everything */
    size_t listed = V;
    if (!top_k_on && !top_p_on) from_key = 0;
    while (top_k_on || top_p_on) {
        prefix_cut prefix = cut;
        listed = histogram_level0(s, V, top_p_on, from_key);
        if (top_k_on)
            prefix = select_prefix(s, V, 0, p->top_k, 0.0, top_p_on, from_key, listed);
        if (top_p_on && prefix.reached) {
            /* top-p's target: top_p times the weight top-k kept (all V:
             * the first digit's buckets from the top, then the tail). */
            double kept_weight = top_k_on ? prefix.weight
                                          : add_weights(level0_weight_total(s), tail_weight,
                                                        tail_max);
            prefix_cut by_p = select_prefix(s, V, 1, 0, (double)p->top_p * kept_weight, 1,
                                            from_key, listed);
            if (!by_p.reached) prefix.reached = 0;
            else if (by_p.length <= prefix.length) prefix = by_p;
        }
        if (prefix.reached || from_key == 0) {
            cut = prefix;
            break;
        }
        from_key = 0;
        tail_weight = 0.0;
        tail_max = 0.0f;
    }

    /* Step 7: min-p while listing the kept ids (no list when every token is
     * kept). Step 8: the draw, by id, with ref's additions in ref's order. */
    const int keep_all = cut.take_from == 0 && cut.ties == 0 && !(p->min_p > 0.0f);
    const size_t kept = keep_all ? V : collect_kept(s, V, cut, p->min_p, from_key, listed);
    double kept_weight = 0;
    if (keep_all)
        for (size_t i = 0; i < V; ++i) kept_weight += s->weights[i];
    else
        for (size_t j = 0; j < kept; ++j) kept_weight += s->weights[s->ids[j]];
    const double u = r1_sampling_uniform(p->seed, (uint64_t)b, p->step);
    const double threshold = u * kept_weight;
    double running = 0;
    int32_t token = -1, last_positive = -1;
    for (size_t j = 0; j < kept; ++j) {
        int32_t id = keep_all ? (int32_t)j : s->ids[j];
        running += s->weights[id];
        if (s->weights[id] > 0) last_positive = id;
        if (running > threshold) {
            token = id;
            break;
        }
    }
    if (token < 0) token = last_positive; /* rounding left u * F at the very top */
    out->tokens[b] = token;
    if (out->logprobs)
        out->logprobs[b] = (float)(log((double)s->weights[token]) - log(kept_weight));
    if (filtered && keep_all) {
        for (size_t i = 0; i < V; ++i) filtered[i] = (float)((double)s->weights[i] / kept_weight);
    } else if (filtered) {
        memset(filtered, 0, V * sizeof *filtered);
        for (size_t j = 0; j < kept; ++j) {
            int32_t id = s->ids[j];
            filtered[id] = (float)((double)s->weights[id] / kept_weight);
        }
    }
}

r1_status sampling_sample_fast(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out, void *workspace) {
    const size_t V = (size_t)desc->vocab;
    const size_t per_thread = scratch_bytes(V);
    const int threads = thread_count(desc);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(threads)
#endif
    for (int64_t b = 0; b < desc->batch; ++b) {
#ifdef _OPENMP
        int thread = omp_get_thread_num();
#else
        int thread = 0;
#endif
        fast_scratch s = carve_scratch((char *)workspace + (size_t)thread * per_thread, V);
        sample_row(desc, logits, b, out, &s);
    }
    return sampling_report_invalid_rows(out->tokens, desc->batch);
}
