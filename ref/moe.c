/*
 * ref/moe.c — Mixture-of-Experts routing, dispatch, combine and balance, as
 * plainly as possible (the SEMANTICS of include/r1lab/moe.h, step by step).
 *
 * Letters: T tokens, E experts, G groups of E/G experts, K slots per token,
 * N = T*K (token, slot) pairs, d hidden size, I expert intermediate size.
 *
 *   gate        l = x W^T                                      (T, E)
 *   routing     softmax top-k          : p = softmax(l), top K of p
 *               group-limited greedy   : group score max p, top groups, top K
 *               noaux_tc (DeepSeek-V3) : s = sigmoid(l), c = s + b,
 *                                        group score = top-2 sum of c,
 *                                        top groups, top K of c, weights from s
 *               w = q (/ sum q) * routed_scaling_factor
 *   dispatch    counts, exclusive offsets, stable permutation by expert,
 *               inverse, padded layout (moe_align_block_size)
 *   permute     x_sorted[inverse[t*K+k]] = x[t]  (= x[perm[j] / K] at row j)
 *   combine     y[t] = sum_k w[t,k] out[inverse[t*K+k]] + shared[t]
 *   balance     f_i = E/(K T) load_i, P_i = mean_t s'_{t,i},
 *               L = alpha sum_i f_i P_i,  b_i += gamma sign(N/E - load_i)
 *   layer       SwiGLU experts over the permuted rows + a shared expert
 *
 * DeepSeek-V3 technical report, section 2.1.2 (eq. 12-16: gating, eq. 17-20:
 * sequence-wise balance loss) and the auxiliary-loss-free bias update.
 * Single thread; float32 values with float64 accumulators for long sums.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/moe_math.h"

/* ---- the gate GEMM ------------------------------------------------------------ */

/* logits (T, E) = x (T, d) W (E, d)^T, float64 sums. */
r1_status moe_gate_logits_ref(const r1_moe_desc *desc, const float *x, const float *gate_weight,
                              float *logits) {
    const int64_t T = desc->tokens, E = desc->experts, d = desc->hidden;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < E; ++e) {
            double sum = 0.0;
            for (int64_t i = 0; i < d; ++i)
                sum += (double)x[t * d + i] * (double)gate_weight[e * d + i];
            logits[t * E + e] = (float)sum;
        }
    return R1_OK;
}

/* ---- routing ------------------------------------------------------------------- */

/* 1 when (value a, index ia) ranks before (value b, index ib): larger value
 * first, the lower index on a tie. */
static int ranks_before(float a, int ia, float b, int ib) {
    return a > b || (a == b && ia < ib);
}

/* The `k` best entries of score[0..n) among those with allowed[i] != 0, best
 * first, written to chosen[0..k). Selection by repeated scans. */
static void top_k_indices(const float *score, const unsigned char *allowed, int n, int k,
                          int32_t *chosen) {
    unsigned char taken[R1_MOE_MAX_EXPERTS];
    memset(taken, 0, (size_t)n);
    for (int j = 0; j < k; ++j) {
        int best = -1;
        for (int i = 0; i < n; ++i) {
            if (!allowed[i] || taken[i]) continue;
            if (best < 0 || ranks_before(score[i], i, score[best], best)) best = i;
        }
        chosen[j] = best;
        taken[best] = 1;
    }
}

/* Group scores (G): max of `rank_score` per group (V2), or the sum of the two
 * largest values, largest first (V3). */
static void group_scores(const float *rank_score, int E, int G, int top2_sum, float *group) {
    const int size = E / G;
    for (int g = 0; g < G; ++g) {
        const float *c = rank_score + g * size;
        int first = 0;
        for (int i = 1; i < size; ++i)
            if (ranks_before(c[i], i, c[first], first)) first = i;
        if (!top2_sum) {
            group[g] = c[first];
            continue;
        }
        int second = first == 0 ? 1 : 0;
        for (int i = 0; i < size; ++i)
            if (i != first && ranks_before(c[i], i, c[second], second)) second = i;
        group[g] = c[first] + c[second];
    }
}

/* allowed (E): 1 for experts of the topk_group best groups. */
static void keep_best_groups(const float *group, int E, int G, int topk_group,
                             unsigned char *allowed) {
    unsigned char all_groups[R1_MOE_MAX_EXPERTS];
    int32_t kept[R1_MOE_MAX_EXPERTS];
    memset(all_groups, 1, (size_t)G);
    top_k_indices(group, all_groups, G, topk_group, kept);
    memset(allowed, 0, (size_t)E);
    const int size = E / G;
    for (int j = 0; j < topk_group; ++j)
        memset(allowed + kept[j] * size, 1, (size_t)size);
}

/* softmax probabilities p (E) of one row: e_i = exp(l_i - m), p_i = e_i / sum. */
static void softmax_row(const float *l, int E, float *p) {
    float m = l[0];
    for (int i = 1; i < E; ++i)
        if (l[i] > m) m = l[i];
    double sum = 0.0;
    for (int i = 0; i < E; ++i) {
        p[i] = r1_moe_exp_inline(l[i] - m);
        sum += p[i];
    }
    for (int i = 0; i < E; ++i) p[i] = (float)(p[i] / sum);
}

/* Routes one token: l (E) -> ids (K), weights (K). */
static void route_token(const r1_moe_desc *desc, const float *l, const float *bias,
                        int32_t *ids, float *weights) {
    const int E = desc->experts, K = desc->top_k;
    float q[R1_MOE_MAX_EXPERTS];          /* the weights' source: p or s      */
    float rank_score[R1_MOE_MAX_EXPERTS]; /* what is ranked: l or c = s + b   */
    unsigned char allowed[R1_MOE_MAX_EXPERTS];

    if (desc->routing == R1_MOE_NOAUX_TC) {
        for (int i = 0; i < E; ++i) {
            q[i] = r1_moe_sigmoid_inline(l[i]);
            rank_score[i] = q[i] + (bias ? bias[i] : 0.0f);
        }
    } else {
        softmax_row(l, E, q);
        memcpy(rank_score, l, (size_t)E * sizeof(float)); /* softmax is monotone */
    }

    if (desc->routing == R1_MOE_SOFTMAX_TOPK) {
        memset(allowed, 1, (size_t)E);
    } else {
        float group[R1_MOE_MAX_EXPERTS];
        group_scores(rank_score, E, desc->n_group, desc->routing == R1_MOE_NOAUX_TC, group);
        keep_best_groups(group, E, desc->n_group, desc->topk_group, allowed);
    }
    top_k_indices(rank_score, allowed, E, K, ids);

    double sum = 0.0;
    for (int k = 0; k < K; ++k) sum += q[ids[k]];
    for (int k = 0; k < K; ++k) {
        double w = q[ids[k]];
        if (desc->norm_topk_prob) w = w / (sum + 1e-20);
        weights[k] = (float)(w * desc->routed_scaling_factor);
    }
}

/* ids (T, K), weights (T, K) from logits (T, E). */
r1_status moe_route_ref(const r1_moe_desc *desc, const float *logits, const float *bias,
                        int32_t *ids, float *weights) {
    const int64_t E = desc->experts, K = desc->top_k;
    for (int64_t t = 0; t < desc->tokens; ++t)
        route_token(desc, logits + t * E, bias, ids + t * K, weights + t * K);
    return R1_OK;
}

/* ---- dispatch ------------------------------------------------------------------ */

/* counts (E), offsets (E+1) = exclusive prefix sums of counts. */
static void count_and_offsets(const int32_t *ids, int64_t N, int E, int32_t *counts,
                              int32_t *offsets) {
    memset(counts, 0, (size_t)E * sizeof(int32_t));
    for (int64_t j = 0; j < N; ++j) counts[ids[j]] += 1;
    offsets[0] = 0;
    for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
}

/* permutation (N): pair indices in expert order, stable (a counting sort);
 * inverse (N): the position of each pair. */
static void stable_permutation(const int32_t *ids, int64_t N, int E, const int32_t *offsets,
                               int32_t *permutation, int32_t *inverse) {
    int32_t *cursor = malloc((size_t)E * sizeof(int32_t));
    memcpy(cursor, offsets, (size_t)E * sizeof(int32_t));
    for (int64_t j = 0; j < N; ++j) {
        int32_t position = cursor[ids[j]]++;
        permutation[position] = (int32_t)j;
        inverse[j] = position;
    }
    free(cursor);
}

/* The padded layout: every expert's rows rounded up to a multiple of B. */
static void padded_layout(const r1_moe_desc *desc, const int32_t *counts,
                          const int32_t *offsets, const int32_t *permutation,
                          const r1_moe_dispatch_out *out) {
    const int E = desc->experts, B = desc->block_size;
    const int64_t N = desc->tokens * desc->top_k;
    const int64_t P = r1_moe_padded_capacity(desc);
    const int64_t blocks = (P + B - 1) / B;
    out->padded_offsets[0] = 0;
    for (int e = 0; e < E; ++e)
        out->padded_offsets[e + 1] =
            out->padded_offsets[e] + (counts[e] + B - 1) / B * B;
    for (int64_t i = 0; i < P; ++i) out->sorted_padded[i] = (int32_t)N;
    for (int64_t b = 0; b < blocks; ++b) out->block_expert[b] = -1;
    for (int e = 0; e < E; ++e) {
        for (int32_t r = 0; r < counts[e]; ++r)
            out->sorted_padded[out->padded_offsets[e] + r] = permutation[offsets[e] + r];
        for (int32_t b = out->padded_offsets[e] / B; b < out->padded_offsets[e + 1] / B; ++b)
            out->block_expert[b] = e;
    }
    *out->padded_total = out->padded_offsets[E];
}

r1_status moe_dispatch_ref(const r1_moe_desc *desc, const int32_t *ids,
                           const r1_moe_dispatch_out *out) {
    const int64_t N = desc->tokens * desc->top_k;
    const int E = desc->experts;
    count_and_offsets(ids, N, E, out->counts, out->offsets);
    stable_permutation(ids, N, E, out->offsets, out->permutation, out->inverse);
    if (out->padded_offsets) padded_layout(desc, out->counts, out->offsets, out->permutation, out);
    return R1_OK;
}

/* ---- permute and combine ------------------------------------------------------- */

static float load_value(r1_dtype dtype, const void *rows, size_t index) {
    return dtype == R1_BF16 ? r1_bf16_to_f32(((const uint16_t *)rows)[index])
                            : ((const float *)rows)[index];
}

static void store_value(r1_dtype dtype, void *rows, size_t index, float value) {
    if (dtype == R1_BF16) ((uint16_t *)rows)[index] = r1_f32_to_bf16(value);
    else ((float *)rows)[index] = value;
}

/* x_sorted[inverse[t*K+k]] = x[t]: token t's row goes to the position of each
 * of its K pairs in the expert order, so x_sorted (N, d) holds
 * x[permutation[j] / K] at row j. */
r1_status moe_permute_ref(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                          const int32_t *inverse, void *x_sorted) {
    const size_t T = (size_t)desc->tokens, K = (size_t)desc->top_k;
    const size_t row_bytes = r1_dtype_bytes(dtype, (size_t)desc->hidden);
    for (size_t t = 0; t < T; ++t)
        for (size_t k = 0; k < K; ++k) {
            size_t row = (size_t)inverse[t * K + k];
            memcpy((char *)x_sorted + row * row_bytes, (const char *)x + t * row_bytes, row_bytes);
        }
    return R1_OK;
}

/* y (T, d) = sum_k w[t,k] expert_out[inverse[t*K+k]] (+ shared), float64 sums. */
r1_status moe_combine_ref(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                          const int32_t *inverse, const float *weights, const void *shared,
                          void *y) {
    const size_t T = (size_t)desc->tokens, K = (size_t)desc->top_k, d = (size_t)desc->hidden;
    for (size_t t = 0; t < T; ++t)
        for (size_t i = 0; i < d; ++i) {
            double sum = 0.0;
            for (size_t k = 0; k < K; ++k) {
                size_t row = (size_t)inverse[t * K + k];
                sum += (double)weights[t * K + k] * load_value(dtype, expert_out, row * d + i);
            }
            if (shared) sum += load_value(dtype, shared, t * d + i);
            store_value(dtype, y, t * d + i, (float)sum);
        }
    return R1_OK;
}

/* ---- balance ------------------------------------------------------------------- */

/* s' (E) of one token: normalized affinities (sigmoid / sum, or softmax). */
static void normalized_affinity(const r1_moe_desc *desc, const float *l, double *affinity) {
    const int E = desc->experts;
    if (desc->routing == R1_MOE_NOAUX_TC) {
        double sum = 0.0;
        for (int i = 0; i < E; ++i) sum += affinity[i] = r1_moe_sigmoid_inline(l[i]);
        for (int i = 0; i < E; ++i) affinity[i] /= sum;
    } else {
        float p[R1_MOE_MAX_EXPERTS];
        softmax_row(l, E, p);
        for (int i = 0; i < E; ++i) affinity[i] = p[i];
    }
}

r1_status moe_balance_ref(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                          double alpha, float gamma, const r1_moe_balance_out *out) {
    const int64_t T = desc->tokens, K = desc->top_k;
    const int E = desc->experts;
    int32_t load[R1_MOE_MAX_EXPERTS] = {0};
    for (int64_t j = 0; j < T * K; ++j) load[ids[j]] += 1;
    if (out->load) memcpy(out->load, load, (size_t)E * sizeof(int32_t));

    if (out->aux_loss) {
        double P[R1_MOE_MAX_EXPERTS] = {0}, affinity[R1_MOE_MAX_EXPERTS];
        for (int64_t t = 0; t < T; ++t) {
            normalized_affinity(desc, logits + t * E, affinity);
            for (int i = 0; i < E; ++i) P[i] += affinity[i];
        }
        double loss = 0.0;
        for (int i = 0; i < E; ++i) {
            double f = (double)E / ((double)K * (double)T) * load[i];
            loss += f * (P[i] / (double)T);
        }
        *out->aux_loss = alpha * loss;
    }
    if (out->bias) {
        double mean = (double)(T * K) / E;
        for (int i = 0; i < E; ++i) {
            double gap = mean - load[i];
            float sign = gap > 0 ? 1.0f : gap < 0 ? -1.0f : 0.0f;
            out->bias[i] += gamma * sign;
        }
    }
    return R1_OK;
}

/* ---- the reference layer ------------------------------------------------------- */

static float silu(float v) { return v * r1_moe_sigmoid_inline(v); }

/* out (d) = W2 (silu(W1 row) * (W3 row)); W1, W3 (I, d), W2 (d, I). */
static void swiglu_row(const float *row, const float *w1, const float *w3, const float *w2,
                       int64_t d, int64_t I, float *hidden, float *out) {
    for (int64_t j = 0; j < I; ++j) {
        double gate = 0.0, up = 0.0;
        for (int64_t i = 0; i < d; ++i) {
            gate += (double)w1[j * d + i] * row[i];
            up += (double)w3[j * d + i] * row[i];
        }
        hidden[j] = silu((float)gate) * (float)up;
    }
    for (int64_t i = 0; i < d; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j < I; ++j) sum += (double)w2[i * I + j] * hidden[j];
        out[i] = (float)sum;
    }
}

r1_status moe_layer_ref(const r1_moe_desc *desc, const r1_moe_layer_weights *w, const float *x,
                        float *y) {
    const int64_t T = desc->tokens, K = desc->top_k, E = desc->experts, d = desc->hidden;
    const int64_t N = T * K, I = w->intermediate, Is = w->shared_intermediate;
    const int64_t H = I > Is ? I : Is;
    float *logits = malloc((size_t)(T * E) * sizeof(float));
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    float *weights = malloc((size_t)N * sizeof(float));
    int32_t *counts = malloc((size_t)E * sizeof(int32_t));
    int32_t *offsets = malloc((size_t)(E + 1) * sizeof(int32_t));
    int32_t *permutation = malloc((size_t)N * sizeof(int32_t));
    int32_t *inverse = malloc((size_t)N * sizeof(int32_t));
    float *x_sorted = malloc((size_t)(N * d) * sizeof(float));
    float *expert_out = malloc((size_t)(N * d) * sizeof(float));
    float *shared = Is > 0 ? malloc((size_t)(T * d) * sizeof(float)) : NULL;
    float *hidden = malloc((size_t)(H > 0 ? H : 1) * sizeof(float));
    r1_status status = R1_OK;
    if (!logits || !ids || !weights || !counts || !offsets || !permutation || !inverse ||
        !x_sorted || !expert_out || (Is > 0 && !shared) || !hidden) {
        status = r1_fail(R1_ENOMEM, "moe layer: out of memory for T = %lld, d = %lld",
                         (long long)T, (long long)d);
        goto done;
    }
    moe_gate_logits_ref(desc, x, w->gate_weight, logits);
    status = moe_check_logits_host(desc, logits, w->bias);
    if (status != R1_OK) goto done;
    moe_route_ref(desc, logits, w->bias, ids, weights);
    r1_moe_dispatch_out dispatch = {counts, offsets, permutation, inverse, NULL, NULL, NULL, NULL};
    moe_dispatch_ref(desc, ids, &dispatch);
    moe_permute_ref(desc, R1_F32, x, inverse, x_sorted);
    /* Expert e runs on rows offsets[e] .. offsets[e+1] of x_sorted. */
    for (int64_t e = 0; e < E; ++e)
        for (int64_t j = offsets[e]; j < offsets[e + 1]; ++j)
            swiglu_row(x_sorted + j * d, w->w1 + e * I * d, w->w3 + e * I * d,
                       w->w2 + e * d * I, d, I, hidden, expert_out + j * d);
    for (int64_t t = 0; t < T && Is > 0; ++t)
        swiglu_row(x + t * d, w->shared_w1, w->shared_w3, w->shared_w2, d, Is, hidden,
                   shared + t * d);
    moe_combine_ref(desc, R1_F32, expert_out, inverse, weights, shared, y);
done:
    free(logits); free(ids); free(weights); free(counts); free(offsets);
    free(permutation); free(inverse); free(x_sorted); free(expert_out); free(shared);
    free(hidden);
    return status;
}
