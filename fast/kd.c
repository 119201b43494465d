/*
 * fast/kd.c — the distillation loss on the CPU: the semantics of r1lab/kd.h,
 * vectorized and threaded over tokens.
 *
 * Per counted token (one thread owns the row; OpenMP over tokens):
 *  1. one streaming pass over the inputs widens s and z (bf16 -> f32, or the
 *     sparse teacher scattered into a -inf row) into the thread's scratch and
 *     keeps, per 512-element block, the running maxima and rescaled sums of
 *     exp((s - m_s)/T), exp(s - m_s) and exp((z - m_z)/T) (online softmax),
 *     plus the NaN / inf checks as integer bit tests;
 *  2. beta = 0 (forward KL): one pass over the (cache-resident) scratch
 *     computes log q, log p, the loss terms and writes the gradient
 *     w [(1 - gamma)(r - onehot) + gamma T (q - p)] — its gradient needs no
 *     row total. beta > 0: the pass sums D and gbar = sum q g; a third pass
 *     writes w [... + gamma T q (g - gbar)].
 *  Row sums of loss terms are float64; exponentials are a vectorizable
 *  float32 exp (range reduction by ln2, degree-6 polynomial, ~2 ulp).
 * Fused-linear: chunks of tokens; the chunk's logits (rows, V) are a blocked
 * matrix product into the scratch, the row pass above turns them into the
 * gradient in place, then dh = G W and dW += G^T h (threads over d / V).
 *
 * VERSIONS (N = 256, V = 152064, 2-core VM, gcc -O3 -march=native -fopenmp):
 *  v1  the design above; libm fmaxf / roundf calls and branches kept the
 *      row loops scalar: 1.09 s (ref 1.52 s).
 *  v2  branch-free masks, integer-free rounding, no-trapping-math so gcc
 *      if-converts; vectorized bf16 store; vectorizable log / log1p for JSD.
 *      forward KL 39.0 ms (ref 952 ms: 24x), JSD 77.7 ms.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/internal.h"
#include "core/threads.h"

/* `omp simd` on the row loops. Under AddressSanitizer (the sanitizer and fuzz
 * builds) clang cannot vectorize the instrumented loops and -Werror turns its
 * -Wpass-failed notice into an error, so there the loops are left scalar. */
#define KD_PRAGMA(text) _Pragma(#text)
#if defined(__SANITIZE_ADDRESS__)
#define KD_SIMD(...)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_SIMD(...)
#endif
#endif
#ifndef KD_SIMD
#define KD_SIMD(...) KD_PRAGMA(omp simd __VA_ARGS__)
#endif

/* Float compares inside selects (clamps, masks) keep gcc from if-converting,
 * hence from vectorizing, under its default -ftrapping-math; this file never
 * relies on floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define BLOCK 512


/* exp(x) for x <= 0 (or -inf), float32, vectorizable: x = k ln2 + r,
 * |r| <= ln2/2, exp(r) by its Taylor polynomial to degree 6, times 2^k built
 * in the exponent bits. Below -87.3 the result is 0. Relative error ~2e-7. */
static inline float exp_nonpositive(float x) {
    x = x < -87.3f ? -87.3f : x; /* also maps -inf */
    /* round to nearest by adding and removing 1.5 * 2^23 (no libm call) */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693145751953125f;   /* ln2 high part, exact product */
    r = r - k * 1.428606765330187045e-06f;  /* ln2 low part                 */
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    return x <= -87.3f ? 0.0f : y;
}

/* log(x) for finite x > 0, float32, vectorizable: x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(u), u = (m - 1)/(m + 1), |u| <= 0.172,
 * by its odd series to u^11 (truncation < 1e-9). Relative error ~1e-7. */
static inline float log_positive(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    int32_t e = (int32_t)(bits >> 23) - 127;
    uint32_t mbits = (bits & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m;
    memcpy(&m, &mbits, 4);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float u = (m - 1.0f) / (m + 1.0f), u2 = u * u;
    float series = 1.0f / 11;
    series = series * u2 + 1.0f / 9;
    series = series * u2 + 1.0f / 7;
    series = series * u2 + 1.0f / 5;
    series = series * u2 + 1.0f / 3;
    series = series * u2 + 1.0f;
    return (float)e * 0.693147180559945f + 2.0f * u * series;
}

/* log(1 + x) for x >= 0 with the rounding of 1 + x corrected. */
static inline float log1p_nonnegative(float x) {
    float u = 1.0f + x;
    return log_positive(u) - ((u - 1.0f) - x) / u;
}

static inline float load_value(const void *tensor, r1_dtype dtype, size_t i) {
    if (dtype == R1_F32) return ((const float *)tensor)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)tensor)[i] << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Row statistics after pass 1. */
typedef struct row_stats {
    double log_sum_q; /* logsumexp(s / T) */
    double log_sum_r; /* logsumexp(s)     */
    double log_sum_p; /* logsumexp(z / T) */
    int reason;
} row_stats;

/* Pass 1 over float rows s, z (V): online max / sums per block, bad-number tests. */
static row_stats row_statistics(const float *s, const float *z, size_t V, float inv_T,
                                int need_r, int reverse) {
    float m_s = -INFINITY, m_z = -INFINITY;
    double sum_q = 0, sum_r = 0, sum_p = 0;
    uint32_t bad_s = 0, bad_z = 0, zero_p = 0;
    for (size_t b = 0; b < V; b += BLOCK) {
        size_t n = V - b < BLOCK ? V - b : BLOCK;
        const float *sb = s + b, *zb = z + b;
        float bm_s = -INFINITY, bm_z = -INFINITY;
KD_SIMD(reduction(max : bm_s, bm_z) reduction(| : bad_s, bad_z, zero_p))
        for (size_t i = 0; i < n; ++i) {
            uint32_t us, uz;
            memcpy(&us, &sb[i], 4);
            memcpy(&uz, &zb[i], 4);
            bad_s |= (us & 0x7f800000u) == 0x7f800000u;            /* NaN or +-inf */
            bad_z |= (uz & 0x7fffffffu) > 0x7f800000u || uz == 0x7f800000u; /* NaN, +inf */
            zero_p |= uz == 0xff800000u;                            /* -inf */
            bm_s = sb[i] > bm_s ? sb[i] : bm_s; /* not fmaxf: a libm call without -ffast-math */
            bm_z = zb[i] > bm_z ? zb[i] : bm_z;
        }
        if (bad_s | bad_z) break;
        float n_s = bm_s > m_s ? bm_s : m_s, n_z = bm_z > m_z ? bm_z : m_z;
        if (n_s > m_s) {
            sum_q *= exp((double)((m_s - n_s) * inv_T));
            sum_r *= exp((double)(m_s - n_s));
            m_s = n_s;
        }
        if (n_z > m_z) {
            sum_p *= m_z == -INFINITY ? 0.0 : exp((double)((m_z - n_z) * inv_T));
            m_z = n_z;
        }
        float bq = 0, br = 0, bp = 0;
        const float zmax = m_z == -INFINITY ? 0.0f : m_z;
KD_SIMD(reduction(+ : bq, br, bp))
        for (size_t i = 0; i < n; ++i) {
            bq += exp_nonpositive((sb[i] - m_s) * inv_T);
            br += need_r ? exp_nonpositive(sb[i] - m_s) : 0.0f;
            bp += exp_nonpositive((zb[i] - zmax) * inv_T);
        }
        sum_q += bq;
        sum_r += br;
        sum_p += bp;
    }
    row_stats st = {0, 0, 0, KD_ROW_OK};
    if (bad_s) st.reason = KD_BAD_STUDENT;
    else if (bad_z) st.reason = KD_BAD_TEACHER;
    else if (m_z == -INFINITY) st.reason = KD_TEACHER_EMPTY;
    else if (reverse && zero_p) st.reason = KD_REVERSE_INFINITE;
    st.log_sum_q = (double)m_s * inv_T + log(sum_q);
    st.log_sum_r = (double)m_s + log(sum_r);
    st.log_sum_p = (double)m_z * inv_T + log(sum_p);
    return st;
}

/* Passes 2 (and 3): the loss of one counted token; writes the float gradient
 * (times w) into `grad_row` (V), which may alias s. JSD (0 < beta < 1) keeps
 * g' in z; reverse KL (beta = 1) recomputes g from s and z.
 * log q, log p and d = log p - log q are formed in float64 (|s / T| may reach
 * tens, where a float32 ulp is ~2e-6); exps and logs of the small results are
 * float32. */
static double row_loss_and_gradient(const r1_kd_desc *desc, const float *s, float *z, size_t V,
                                    int32_t y, row_stats st, float w, float *grad_row) {
    const float T = desc->temperature, gamma = desc->gamma, beta = desc->beta;
    const double inv_T = 1.0 / (double)T;
    const double lse_q = st.log_sum_q, lse_p = st.log_sum_p;
    /* gamma = 1: r is unused; s - inf = -inf makes exp give 0 for any finite s
     * (a finite sentinel such as 1e30 let s near FLT_MAX through: 0 * inf). */
    const double lse_r = gamma < 1.0f ? st.log_sum_r : INFINITY;
    const float a = w * (1.0f - gamma), c = w * gamma * T;
    const int need_r = gamma < 1.0f;
    const float s_y = need_r ? s[y] : 0.0f; /* s may be overwritten below */
    double D = 0.0;
    if (beta == 0.0f) {
KD_SIMD(reduction(+ : D))
        for (size_t i = 0; i < V; ++i) {
            /* branch-free: log p = -inf is clamped so that p * (log p - log q) = 0 * finite */
            double log_q = s[i] * inv_T - lse_q, log_p = z[i] * inv_T - lse_p;
            log_p = log_p < -1e30 ? -1e30 : log_p;
            float p = exp_nonpositive((float)log_p), q = exp_nonpositive((float)log_q);
            D += p * (log_p - log_q);
            float r = exp_nonpositive((float)(s[i] - lse_r)); /* a = 0 when gamma = 1 */
            grad_row[i] = a * r + c * (q - p);
        }
    } else {
        /* JSD: g = (1 - beta)(log q - log M) = c0 + g', with c0 = -(1 - beta) log(1 - beta)
         * the value where p = 0 and g' = -(1 - beta) log(1 + rho e^d), rho = beta / (1 - beta),
         * d = log p - log q. g - gbar = g' - g'bar: no cancellation against c0. */
        const float one_minus = 1.0f - beta, rho = beta / one_minus;
        /* -log(1 - beta) = log(1 + rho), formed with the loop's own log1p and
         * rounding so that where p = q (d = 0, h = log(1 + rho)) both terms
         * cancel exactly and identical distributions give a loss of 0 (with
         * float64 logs here they left ~1e-9 per token against ref's 0) */
        const float minus_log_one_minus = beta < 1.0f ? log1p_nonnegative(rho) : 0.0f;
        const double c0 = (double)(one_minus * minus_log_one_minus); /* = g' at d = 0, negated */
        const int reverse = beta == 1.0f;
        const double log_one_minus = -(double)minus_log_one_minus;
        double gbar = 0.0;
KD_SIMD(reduction(+ : D, gbar))
        for (size_t i = 0; i < V; ++i) {
            double log_q = s[i] * inv_T - lse_q, log_p = z[i] * inv_T - lse_p;
            float p = exp_nonpositive((float)log_p), q = exp_nonpositive((float)log_q);
            /* -inf where p = 0; capped above where log q is far below float
             * range (s / T near FLT_MAX): q = 0 there, so only g must stay finite */
            double d_wide = log_p - log_q;
            d_wide = d_wide > 1e38 ? 1e38 : d_wide;
            float d = (float)d_wide;
            double term;
            float g;
            if (reverse) {
                g = -d;
                term = (double)q * g;
                gbar -= (double)q * d_wide;
            } else {
                float e = exp_nonpositive(-fabsf(d));
                /* h = log(1 + rho e^d), and d - h without subtracting large numbers */
                const float above = log_positive(rho + e), below = log1p_nonnegative(rho * e);
                const float h = d > 0.0f ? d + above : below;
                const float d_minus_h = d > 0.0f ? -above : d - below;
                g = -one_minus * h; /* g' */
                /* log p - log M = d - h - log(1 - beta);  q g = q (g' + c0) */
                term = (p > 0.0f ? beta * (double)p * ((double)d_minus_h - log_one_minus) : 0.0) +
                       (double)q * ((double)g + c0);
            }
            D += term;
            if (!reverse) {
                gbar += (double)q * g;
                z[i] = g; /* g' for pass 3 */
            }
        }
        if (reverse) {
            /* g - gbar = -(d + gbar) with d recomputed in float64 from s and z:
             * g is ~|d| (up to tens) where g - gbar may be ~0.1, so a float32
             * g kept from pass 2 lost ~1e-5 of the gradient's relative L2 */
KD_SIMD()
            for (size_t i = 0; i < V; ++i) {
                double d = (z[i] * inv_T - lse_p) - (s[i] * inv_T - lse_q);
                d = d > 1e38 ? 1e38 : d;
                float q = exp_nonpositive((float)(s[i] * inv_T - lse_q));
                float r = exp_nonpositive((float)(s[i] - lse_r)); /* a = 0 when gamma = 1 */
                grad_row[i] = a * r + c * q * (float)(-d - gbar);
            }
        } else {
            const float gb = (float)gbar;
KD_SIMD()
            for (size_t i = 0; i < V; ++i) {
                float q = exp_nonpositive((float)(s[i] * inv_T - lse_q));
                float r = exp_nonpositive((float)(s[i] - lse_r)); /* a = 0 when gamma = 1 */
                grad_row[i] = a * r + c * q * (z[i] - gb);
            }
        }
    }
    double loss = (double)gamma * T * T * D;
    if (need_r) {
        loss += (1.0 - gamma) * (lse_r - s_y);
        grad_row[y] -= a;
    }
    return loss;
}

/* Widens token t's rows into s, z (V floats); sparse: z = -inf except top-k. */
static void load_rows(const r1_kd_desc *desc, const void *student, const void *teacher,
                      r1_dtype teacher_dtype, const int32_t *ids, const float *logprobs,
                      size_t t, size_t V, float *s, float *z) {
    if (desc->dtype == R1_F32) {
        memcpy(s, (const float *)student + t * V, V * 4);
    } else {
        const uint16_t *in = (const uint16_t *)student + t * V;
KD_SIMD()
        for (size_t i = 0; i < V; ++i) {
            uint32_t bits = (uint32_t)in[i] << 16;
            memcpy(&s[i], &bits, 4);
        }
    }
    const int32_t k = desc->teacher_topk;
    if (k > 0) {
        for (size_t i = 0; i < V; ++i) z[i] = -INFINITY;
        for (int32_t j = 0; j < k; ++j) z[ids[t * k + j]] = logprobs[t * k + j];
    } else if (teacher_dtype == R1_F32) {
        memcpy(z, (const float *)teacher + t * V, V * 4);
    } else {
        const uint16_t *in = (const uint16_t *)teacher + t * V;
KD_SIMD()
        for (size_t i = 0; i < V; ++i) {
            uint32_t bits = (uint32_t)in[i] << 16;
            memcpy(&z[i], &bits, 4);
        }
    }
}

static void store_row(void *grad, r1_dtype dtype, size_t t, size_t V, const float *row) {
    if (dtype == R1_F32) {
        memcpy((float *)grad + t * V, row, V * 4);
        return;
    }
    /* round to nearest even, as r1_f32_to_bf16 (gradients are never NaN here) */
    uint16_t *out = (uint16_t *)grad + t * V;
KD_SIMD()
    for (size_t i = 0; i < V; ++i) {
        uint32_t bits;
        memcpy(&bits, &row[i], 4);
        bits += 0x7fffu + ((bits >> 16) & 1u);
        out[i] = (uint16_t)(bits >> 16);
    }
}

static float reduction_weight(const r1_kd_desc *desc, int64_t counted) {
    if (desc->reduction != R1_KD_MEAN) return 1.0f;
    return counted > 0 ? (float)(1.0 / (double)counted) : 0.0f;
}

/* One token end to end on float rows s, z; the gradient lands in s. */
static double token(const r1_kd_desc *desc, float *s, float *z, size_t V, int32_t y,
                    float w, int *reason) {
    row_stats st = row_statistics(s, z, V, 1.0f / desc->temperature, desc->gamma < 1.0f,
                                  desc->beta == 1.0f);
    *reason = st.reason;
    if (st.reason != KD_ROW_OK) return NAN;
    return row_loss_and_gradient(desc, s, z, V, y, st, w, s);
}

size_t kd_workspace_size_fast(const r1_kd_desc *desc) {
    return (size_t)r1_thread_count() * 2 * (size_t)desc->vocab * sizeof(float) + 64;
}

/* Shapes: logits and grad (N, V); ids, logprobs (N, k); labels, token_losses (N). */
r1_status kd_loss_fast(const r1_kd_desc *desc, const r1_kd_inputs *in, const r1_kd_outputs *out,
                       void *workspace, kd_report *report) {
    const int64_t N = desc->tokens;
    const size_t V = (size_t)desc->vocab;
    const float w = reduction_weight(desc, kd_counted_tokens(desc, in->labels));
    double total = 0.0;
    int threads = r1_thread_count();
    if (threads > N) threads = (int)N;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        float *s = (float *)workspace + (size_t)r1_thread_index() * 2 * V;
        float *z = s + V;
        kd_report mine = {-1, 0, 0};
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < N; ++t) {
            int32_t y = in->labels ? in->labels[t] : -1;
            int counted = in->labels == NULL || y != desc->ignore_index;
            double loss = 0.0;
            int reason = KD_ROW_OK;
            if (counted) {
                load_rows(desc, in->student_logits, in->teacher_logits, desc->dtype,
                          in->teacher_ids, in->teacher_logprobs, (size_t)t, V, s, z);
                loss = token(desc, s, z, V, y, w, &reason);
            }
            if (!counted || reason != KD_ROW_OK) memset(s, 0, V * 4);
            kd_report_note(&mine, t, reason);
            total += loss;
            if (out->token_losses) out->token_losses[t] = (float)loss;
            if (out->grad) store_row(out->grad, desc->dtype, (size_t)t, V, s);
        }
#pragma omp critical
        {
            if (mine.first >= 0) {
                int64_t count = report->count + mine.count;
                kd_report_note(report, mine.first, mine.reason);
                report->count = count;
            }
        }
    }
    *out->loss = (float)(desc->reduction == R1_KD_MEAN ? total * w : total);
    return R1_OK;
}

/* ---- fused-linear form ------------------------------------------------------ */

#define CHUNK_DEFAULT 32

static size_t linear_chunk(const r1_kd_linear_desc *desc) {
    size_t chunk = desc->chunk_tokens > 0 ? (size_t)desc->chunk_tokens : CHUNK_DEFAULT;
    return chunk > (size_t)desc->kd.tokens ? (size_t)desc->kd.tokens : chunk;
}

size_t kd_linear_workspace_size_fast(const r1_kd_linear_desc *desc) {
    size_t V = (size_t)desc->kd.vocab, d = (size_t)desc->hidden, dt = (size_t)desc->teacher_hidden;
    size_t C = linear_chunk(desc);
    size_t width = d > dt ? d : dt;
    /* chunk logits s, z (C, V); widened W (V, d) or Wt; chunk h (C, max(d, dt)) */
    return (2 * C * V + V * width + C * width) * sizeof(float) + 64;
}

/* Widens n elements of a (dtype) tensor starting at `offset` into out. */
static void widen(const void *tensor, r1_dtype dtype, size_t offset, size_t n, float *out) {
    if (dtype == R1_F32) {
        memcpy(out, (const float *)tensor + offset, n * 4);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) out[i] = load_value(tensor, dtype, offset + i);
}

/* out (C, V) = X (C, dim) W^T, W (V, dim); threads over V. */
static void logits_chunk(const float *X, const float *W, size_t C, size_t V, size_t dim,
                         float *out) {
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < V; ++j) {
        const float *wj = W + j * dim;
        for (size_t c = 0; c < C; ++c) {
            const float *x = X + c * dim;
            float sum = 0.0f;
KD_SIMD(reduction(+ : sum))
            for (size_t e = 0; e < dim; ++e) sum += x[e] * wj[e];
            out[c * V + j] = sum;
        }
    }
}

/* Shapes: h (N, d), W (V, d), ht (N, dt), Wt (V, dt), dh (N, d), dW (V, d). */
r1_status kd_linear_fast(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                         const r1_kd_linear_outputs *out, void *workspace, kd_report *report) {
    const r1_kd_desc *kd = &desc->kd;
    const size_t N = (size_t)kd->tokens, V = (size_t)kd->vocab, d = (size_t)desc->hidden;
    const size_t dt = (size_t)desc->teacher_hidden, C = linear_chunk(desc);
    const size_t width = d > dt ? d : dt;
    float *S = workspace, *Z = S + C * V, *Wf = Z + C * V, *H = Wf + V * width;
    const float w = reduction_weight(kd, kd_counted_tokens(kd, in->labels));
    if (out->grad_weight) memset(out->grad_weight, 0, V * d * sizeof(float));
    double total = 0.0;
    for (size_t t0 = 0; t0 < N; t0 += C) {
        size_t n = N - t0 < C ? N - t0 : C;
        /* teacher logits of the chunk into Z (or its rows of dense / sparse input) */
        if (dt > 0) {
            widen(in->teacher_weight, kd->dtype, 0, V * dt, Wf);
            widen(in->teacher_hidden, kd->dtype, t0 * dt, n * dt, H);
            logits_chunk(H, Wf, n, V, dt, Z);
        }
        widen(in->student_weight, kd->dtype, 0, V * d, Wf);
        widen(in->student_hidden, kd->dtype, t0 * d, n * d, H);
        logits_chunk(H, Wf, n, V, d, S);
        double chunk_total = 0.0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : chunk_total)
        for (size_t c = 0; c < n; ++c) {
            size_t t = t0 + c;
            float *s = S + c * V, *z = Z + c * V;
            int32_t y = in->labels ? in->labels[t] : -1;
            int counted = in->labels == NULL || y != kd->ignore_index;
            double loss = 0.0;
            int reason = KD_ROW_OK;
            if (counted) {
                if (dt == 0) {
                    /* dense or sparse teacher rows into z; s stays as computed */
                    if (kd->teacher_topk > 0) {
                        for (size_t i = 0; i < V; ++i) z[i] = -INFINITY;
                        for (int32_t j = 0; j < kd->teacher_topk; ++j)
                            z[in->teacher_ids[t * kd->teacher_topk + j]] =
                                in->teacher_logprobs[t * kd->teacher_topk + j];
                    } else {
                        for (size_t i = 0; i < V; ++i)
                            z[i] = load_value(in->teacher_logits, kd->dtype, t * V + i);
                    }
                }
                loss = token(kd, s, z, V, y, w, &reason);
            }
            if (!counted || reason != KD_ROW_OK) memset(s, 0, V * 4);
#pragma omp critical
            kd_report_note(report, (int64_t)t, reason);
            chunk_total += loss;
            if (out->token_losses) out->token_losses[t] = (float)loss;
        }
        total += chunk_total;
        /* dh (n, d) = G (n, V) W (V, d), threads over the chunk's rows x d */
        if (out->grad_hidden) {
#pragma omp parallel for schedule(static)
            for (size_t c = 0; c < n; ++c) {
                float *dh = out->grad_hidden + (t0 + c) * d;
                memset(dh, 0, d * 4);
                const float *g = S + c * V;
                for (size_t j = 0; j < V; ++j) {
                    float gj = g[j];
                    if (gj == 0.0f) continue;
                    const float *wj = Wf + j * d;
KD_SIMD()
                    for (size_t e = 0; e < d; ++e) dh[e] += gj * wj[e];
                }
            }
        }
        /* dW (V, d) += G^T (V, n) h (n, d), threads over V */
        if (out->grad_weight) {
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < V; ++j) {
                float *dw = out->grad_weight + j * d;
                for (size_t c = 0; c < n; ++c) {
                    float gj = S[c * V + j];
                    if (gj == 0.0f) continue;
                    const float *h = H + c * d;
KD_SIMD()
                    for (size_t e = 0; e < d; ++e) dw[e] += gj * h[e];
                }
            }
        }
    }
    *out->loss = (float)(kd->reduction == R1_KD_MEAN ? total * w : total);
    return R1_OK;
}
