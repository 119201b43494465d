/*
 * fast/moe.c — MoE routing, dispatch, permute / combine and balance on the CPU,
 * threaded with OpenMP; same results as ref/moe.c (ids and dispatch arrays
 * exactly, weights and rows within float32 rounding).
 *
 * Versions:
 *   v1  tokens in parallel; routing in one pass per token: selection scores,
 *       group top-2 sums in one scan, groups ranked by counting, the K best
 *       experts kept in a small sorted list (insertion, ties to the lower
 *       index because experts are scanned in index order); dispatch as a
 *       parallel counting sort (per-thread histograms over contiguous chunks
 *       of pairs, then each thread places its chunk: stable); permute as row
 *       copies, each token's row to its K positions; combine with float32 accumulators, 8 slots per row in order;
 *       gate GEMM with four float64 partial sums per dot product.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/internal.h"
#include "core/threads.h"
#include "core/moe_math.h"


/* ---- gate GEMM ------------------------------------------------------------------ */

r1_status moe_gate_logits_fast(const r1_moe_desc *desc, const float *x,
                               const float *gate_weight, float *logits) {
    const int64_t T = desc->tokens, E = desc->experts, d = desc->hidden;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < E; ++e) {
            const float *a = x + t * d, *b = gate_weight + e * d;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = 0;
            for (; i + 4 <= d; i += 4) {
                s0 += (double)a[i] * b[i];
                s1 += (double)a[i + 1] * b[i + 1];
                s2 += (double)a[i + 2] * b[i + 2];
                s3 += (double)a[i + 3] * b[i + 3];
            }
            for (; i < d; ++i) s0 += (double)a[i] * b[i];
            logits[t * E + e] = (float)((s0 + s1) + (s2 + s3));
        }
    return R1_OK;
}

/* ---- routing ----------------------------------------------------------------------- */

/* r1_moe_exp_inline (core/moe_math.h) over a row, written without branches so
 * that the compiler vectorizes it: the same operations in the same order for
 * y in [-87, 88], and the same 0 / +inf outside (inputs are finite). */
static void exp_row(const float *restrict y_in, float *restrict out, int n, float sign,
                    float shift) {
    float y[R1_MOE_MAX_EXPERTS], yc[R1_MOE_MAX_EXPERTS];
    /* Three simple loops, each of which the compiler vectorizes. */
    for (int i = 0; i < n; ++i) {
        y[i] = sign * y_in[i] - shift;
        float clamped = y[i] < -87.0f ? -87.0f : y[i];
        yc[i] = clamped > 88.0f ? 88.0f : clamped;
    }
    for (int i = 0; i < n; ++i) {
        const float a = yc[i] * 1.44269504088896341f + 0.5f;
        const int32_t truncated = (int32_t)a;
        const int32_t n_int = truncated - ((float)truncated > a);
        const float n_float = (float)n_int;
        const float r = (yc[i] - n_float * 0.693145751953125f) - n_float * 1.428606765330187e-06f;
        float p = 1.98412698e-4f;
        p = p * r + 1.38888889e-3f;
        p = p * r + 8.33333333e-3f;
        p = p * r + 4.16666667e-2f;
        p = p * r + 1.66666667e-1f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        union { int32_t i; float f; } scale = {.i = (n_int + 127) << 23};
        out[i] = p * scale.f;
    }
    for (int i = 0; i < n; ++i) {
        float e = y[i] < -87.0f ? 0.0f : out[i];
        out[i] = y[i] > 88.0f ? INFINITY : e;
    }
}

static inline int ranks_before(float a, int ia, float b, int ib) {
    return a > b || (a == b && ia < ib);
}

/* Inserts (value, index) into the sorted list of at most k entries. */
static inline void list_insert(float *values, int32_t *indices, int *size, int k, float value,
                               int32_t index) {
    int n = *size;
    if (n == k && !ranks_before(value, index, values[n - 1], indices[n - 1])) return;
    int position = n < k ? n : k - 1;
    while (position > 0 && ranks_before(value, index, values[position - 1], indices[position - 1])) {
        values[position] = values[position - 1];
        indices[position] = indices[position - 1];
        --position;
    }
    values[position] = value;
    indices[position] = index;
    if (n < k) *size = n + 1;
}

static void route_token_fast(const r1_moe_desc *desc, const float *l, const float *bias,
                             int32_t *ids, float *weights) {
    const int E = desc->experts, K = desc->top_k;
    const int noaux = desc->routing == R1_MOE_NOAUX_TC;
    float q[R1_MOE_MAX_EXPERTS], c[R1_MOE_MAX_EXPERTS];
    double full_sum = 1.0;
    if (noaux) {
        /* sign = -1, shift = 0: exp(-l), then s = 1 / (1 + exp(-l)). */
        exp_row(l, q, E, -1.0f, 0.0f);
        for (int i = 0; i < E; ++i) {
            q[i] = 1.0f / (1.0f + q[i]);
            c[i] = q[i] + (bias ? bias[i] : 0.0f);
        }
    } else {
        float m = l[0];
        for (int i = 1; i < E; ++i) m = l[i] > m ? l[i] : m;
        exp_row(l, q, E, 1.0f, m); /* l - m: 1 * l is exact */
        full_sum = 0.0;
        for (int i = 0; i < E; ++i) {
            full_sum += q[i];
            c[i] = l[i];
        }
    }

    unsigned char group_kept[R1_MOE_MAX_EXPERTS];
    int G = 1, size = E;
    if (desc->routing != R1_MOE_SOFTMAX_TOPK) {
        G = desc->n_group;
        size = E / G;
        float group[R1_MOE_MAX_EXPERTS];
        /* Top two of every group, without branches: top2 = max(top2, min(top1, v)),
         * top1 = max(top1, v) is the exact top-two update, ties included. */
        float top1[R1_MOE_MAX_EXPERTS], top2[R1_MOE_MAX_EXPERTS];
        for (int g = 0; g < G; ++g) {
            top1[g] = -INFINITY;
            top2[g] = -INFINITY;
        }
        for (int i = 0; i < size; ++i)
            for (int g = 0; g < G; ++g) {
                const float v = c[g * size + i];
                const float low = v < top1[g] ? v : top1[g];
                top2[g] = low > top2[g] ? low : top2[g];
                top1[g] = v > top1[g] ? v : top1[g];
            }
        for (int g = 0; g < G; ++g) group[g] = noaux ? top1[g] + top2[g] : top1[g];
        for (int g = 0; g < G; ++g) {
            int rank = 0;
            for (int h = 0; h < G; ++h) rank += ranks_before(group[h], h, group[g], g);
            group_kept[g] = rank < desc->topk_group;
        }
    } else {
        group_kept[0] = 1;
    }

    float best[R1_MOE_MAX_TOP_K];
    int count = 0;
    for (int g = 0; g < G; ++g) {
        if (!group_kept[g]) continue;
        for (int i = g * size; i < (g + 1) * size; ++i) list_insert(best, ids, &count, K, c[i], i);
    }

    double sum = 0.0;
    float chosen[R1_MOE_MAX_TOP_K];
    for (int k = 0; k < K; ++k) {
        chosen[k] = noaux ? q[ids[k]] : (float)(q[ids[k]] / full_sum);
        sum += chosen[k];
    }
    for (int k = 0; k < K; ++k) {
        double w = chosen[k];
        if (desc->norm_topk_prob) w = w / (sum + 1e-20);
        weights[k] = (float)(w * desc->routed_scaling_factor);
    }
}

r1_status moe_route_fast(const r1_moe_desc *desc, const float *logits, const float *bias,
                         int32_t *ids, float *weights) {
    const int64_t E = desc->experts, K = desc->top_k;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < desc->tokens; ++t)
        route_token_fast(desc, logits + t * E, bias, ids + t * K, weights + t * K);
    return R1_OK;
}

/* ---- dispatch -------------------------------------------------------------------- */

size_t moe_dispatch_workspace_size_fast(const r1_moe_desc *desc) {
    return (size_t)r1_thread_count() * (size_t)desc->experts * sizeof(int32_t);
}

/* A parallel counting sort: thread h owns pairs [h*N/H, (h+1)*N/H). Its
 * histogram row, prefix-summed over (expert, thread), is where its pairs of
 * each expert start: the result is the stable order. */
r1_status moe_dispatch_fast(const r1_moe_desc *desc, const int32_t *ids,
                            const r1_moe_dispatch_out *out, void *workspace) {
    const int64_t N = desc->tokens * desc->top_k;
    const int E = desc->experts;
    int32_t *histogram = workspace; /* (H, E) */
    /* Below ~1M pairs one thread is faster than starting a team. */
    const int H = N < ((int64_t)1 << 20) ? 1 : r1_thread_count();
    memset(histogram, 0, (size_t)H * (size_t)E * sizeof(int32_t));
    int threads_used = H;
#pragma omp parallel num_threads(H) if (H > 1)
    {
        const int h = r1_thread_index();
#pragma omp single
        {
#ifdef _OPENMP
            threads_used = omp_get_num_threads();
#endif
        }
        const int64_t begin = N * h / threads_used, end = N * (h + 1) / threads_used;
        int32_t *row = histogram + (size_t)h * (size_t)E;
        for (int64_t j = begin; j < end; ++j) row[ids[j]] += 1;
#pragma omp barrier
#pragma omp single
        {
            int32_t running = 0;
            out->offsets[0] = 0;
            for (int e = 0; e < E; ++e) {
                int32_t total = 0;
                for (int g = 0; g < threads_used; ++g) {
                    int32_t c = histogram[(size_t)g * (size_t)E + e];
                    histogram[(size_t)g * (size_t)E + e] = running + total;
                    total += c;
                }
                out->counts[e] = total;
                running += total;
                out->offsets[e + 1] = running;
            }
        }
        for (int64_t j = begin; j < end; ++j) {
            int32_t position = row[ids[j]]++;
            out->permutation[position] = (int32_t)j;
            out->inverse[j] = position;
        }
    }
    if (out->padded_offsets) {
        const int B = desc->block_size;
        const int64_t P = r1_moe_padded_capacity(desc), blocks = (P + B - 1) / B;
        out->padded_offsets[0] = 0;
        for (int e = 0; e < E; ++e)
            out->padded_offsets[e + 1] = out->padded_offsets[e] + (out->counts[e] + B - 1) / B * B;
        const int32_t total = out->padded_offsets[E];
        *out->padded_total = total;
        for (int64_t i = total; i < P; ++i) out->sorted_padded[i] = (int32_t)N;
        for (int64_t b = total / B; b < blocks; ++b) out->block_expert[b] = -1;
        for (int e = 0; e < E; ++e) {
            const int32_t start = out->padded_offsets[e], count = out->counts[e];
            memcpy(out->sorted_padded + start, out->permutation + out->offsets[e],
                   (size_t)count * sizeof(int32_t));
            for (int32_t i = start + count; i < out->padded_offsets[e + 1]; ++i)
                out->sorted_padded[i] = (int32_t)N;
            for (int32_t b = start / B; b < out->padded_offsets[e + 1] / B; ++b)
                out->block_expert[b] = e;
        }
    }
    return R1_OK;
}

/* ---- permute and combine ------------------------------------------------------------ */

/* Threads over tokens: each row of x is read once and written K times. */
r1_status moe_permute_fast(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                           const int32_t *inverse, void *x_sorted) {
    const int64_t T = desc->tokens, K = desc->top_k;
    const size_t row_bytes = r1_dtype_bytes(dtype, (size_t)desc->hidden);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < K; ++k)
            memcpy((char *)x_sorted + (size_t)inverse[t * K + k] * row_bytes,
                   (const char *)x + (size_t)t * row_bytes, row_bytes);
    return R1_OK;
}

static inline float bf16_to_f32(uint16_t bits) {
    uint32_t u = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

r1_status moe_combine_fast(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                           const int32_t *inverse, const float *weights, const void *shared,
                           void *y) {
    const int64_t T = desc->tokens, K = desc->top_k, d = desc->hidden;
#pragma omp parallel
    {
        float *accumulator = malloc((size_t)d * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
            if (accumulator == NULL) continue;
            for (int64_t i = 0; i < d; ++i) accumulator[i] = 0.0f;
            for (int64_t k = 0; k < K; ++k) {
                const float w = weights[t * K + k];
                const size_t row = (size_t)inverse[t * K + k] * (size_t)d;
                if (dtype == R1_BF16) {
                    const uint16_t *r = (const uint16_t *)expert_out + row;
                    for (int64_t i = 0; i < d; ++i) accumulator[i] += w * bf16_to_f32(r[i]);
                } else {
                    const float *r = (const float *)expert_out + row;
                    for (int64_t i = 0; i < d; ++i) accumulator[i] += w * r[i];
                }
            }
            const size_t base = (size_t)(t * d);
            if (dtype == R1_BF16) {
                uint16_t *out = (uint16_t *)y + base;
                const uint16_t *s = shared ? (const uint16_t *)shared + base : NULL;
                for (int64_t i = 0; i < d; ++i)
                    out[i] = r1_f32_to_bf16(accumulator[i] + (s ? bf16_to_f32(s[i]) : 0.0f));
            } else {
                float *out = (float *)y + base;
                const float *s = shared ? (const float *)shared + base : NULL;
                for (int64_t i = 0; i < d; ++i) out[i] = accumulator[i] + (s ? s[i] : 0.0f);
            }
        }
        free(accumulator);
    }
    return R1_OK;
}

/* ---- balance ------------------------------------------------------------------------- */

r1_status moe_balance_fast(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                           double alpha, float gamma, const r1_moe_balance_out *out) {
    const int64_t T = desc->tokens, K = desc->top_k;
    const int E = desc->experts;
    int32_t load[R1_MOE_MAX_EXPERTS] = {0};
    for (int64_t j = 0; j < T * K; ++j) load[ids[j]] += 1;
    if (out->load) memcpy(out->load, load, (size_t)E * sizeof(int32_t));
    if (out->aux_loss) {
        double P[R1_MOE_MAX_EXPERTS] = {0};
#pragma omp parallel
        {
            double local[R1_MOE_MAX_EXPERTS] = {0}, a[R1_MOE_MAX_EXPERTS];
#pragma omp for schedule(static)
            for (int64_t t = 0; t < T; ++t) {
                const float *l = logits + t * E;
                double sum = 0.0;
                if (desc->routing == R1_MOE_NOAUX_TC) {
                    for (int i = 0; i < E; ++i) sum += a[i] = r1_moe_sigmoid_inline(l[i]);
                    for (int i = 0; i < E; ++i) local[i] += a[i] / sum;
                } else {
                    float m = l[0];
                    for (int i = 1; i < E; ++i) m = l[i] > m ? l[i] : m;
                    for (int i = 0; i < E; ++i) sum += a[i] = r1_moe_exp_inline(l[i] - m);
                    for (int i = 0; i < E; ++i) local[i] += (float)(a[i] / sum);
                }
            }
#pragma omp critical
            for (int i = 0; i < E; ++i) P[i] += local[i];
        }
        double loss = 0.0;
        for (int i = 0; i < E; ++i)
            loss += (double)E / ((double)K * (double)T) * load[i] * (P[i] / (double)T);
        *out->aux_loss = alpha * loss;
    }
    if (out->bias) {
        const double mean = (double)(T * K) / E;
        for (int i = 0; i < E; ++i) {
            const double gap = mean - load[i];
            out->bias[i] += gamma * (gap > 0 ? 1.0f : gap < 0 ? -1.0f : 0.0f);
        }
    }
    return R1_OK;
}
