/*
 * ref/sampling.c — the reference sampler: each step of the semantics in
 * r1lab/sampling.h is one function below, in the order a reader meets them.
 * It sorts the whole row (O(V log V)); fast/ and kernels/ find the same cut
 * without sorting.
 *
 * For a row of logits l (V values) and its parameters:
 *   l'  = penalties(l, history)                  apply_penalties
 *   z   = l' / T            (T = 0: argmax l')    scale_by_temperature
 *   e_i = exp(z_i - max z)  weights, max e = 1    softmax_weights
 *   rank tokens by z descending, ties by id       sort_by_rank
 *   keep the first top_k                          top_k_cut
 *   keep the shortest prefix reaching top_p       top_p_cut
 *   drop e_i < min_p                              min_p_filter
 *   token = first id with cumsum(e) > u * F       draw_token
 * Shapes: logits (B, V); every per-row buffer below is (V).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "r1lab/philox.h"

/* A token and the value it is ranked by. */
typedef struct ranked_token {
    float value;
    int32_t id;
} ranked_token;

/* Per-row scratch, carved from the workspace. */
typedef struct ref_scratch {
    float *logits;          /* (V) l, then l' after penalties, then z        */
    float *weights;         /* (V) e                                          */
    ranked_token *ranking;  /* (V) tokens in rank order                       */
    unsigned char *kept;    /* (V) 1 if the token survives every filter       */
    int32_t *counts;        /* (V) occurrences in the history (kept all zero) */
} ref_scratch;

size_t sampling_workspace_size_ref(const r1_sampling_desc *desc) {
    size_t V = (size_t)desc->vocab;
    return V * (sizeof(float) * 2 + sizeof(ranked_token) + 1 + sizeof(int32_t)) + 64;
}

static ref_scratch carve_scratch(void *workspace, size_t V) {
    ref_scratch s;
    char *p = workspace;
    s.ranking = (ranked_token *)p;
    p += V * sizeof(ranked_token);
    s.logits = (float *)p;
    p += V * sizeof(float);
    s.weights = (float *)p;
    p += V * sizeof(float);
    s.counts = (int32_t *)p;
    p += V * sizeof(int32_t);
    s.kept = (unsigned char *)p;
    return s;
}

/* Row b of the input as float32 (bf16 widens exactly). */
static void load_row(const r1_sampling_desc *desc, const void *logits, int64_t b, float *row) {
    size_t V = (size_t)desc->vocab;
    if (desc->logits_dtype == R1_F32) {
        memcpy(row, (const float *)logits + (size_t)b * V, V * sizeof(float));
    } else {
        const uint16_t *bits = (const uint16_t *)logits + (size_t)b * V;
        for (size_t i = 0; i < V; ++i) row[i] = r1_bf16_to_f32(bits[i]);
    }
}

/* Step 1. Penalties over the history ids of this row.
 * Example: l = 2.0, repetition 2, seen 3 times, frequency 0.1, presence 0.5:
 *          2.0 / 2 = 1.0, then 1.0 - (0.1 * 3 + 0.5) = 0.2. */
static void apply_penalties(float *logits, int32_t *counts, const int32_t *history,
                            int64_t history_length, const r1_sampling_params *p) {
    for (int64_t j = 0; j < history_length; ++j) counts[history[j]] += 1;
    for (int64_t j = 0; j < history_length; ++j) {
        int32_t id = history[j];
        if (counts[id] == 0) continue; /* already applied for an earlier repeat */
        float x = logits[id];
        x = (x > 0.0f) ? x / p->repetition_penalty : x * p->repetition_penalty;
        float penalty = p->frequency_penalty * (float)counts[id] + p->presence_penalty;
        logits[id] = x - penalty;
        counts[id] = 0; /* also leaves the counts buffer zeroed for the next row */
    }
}

/* A row is usable when it holds no NaN, no +inf, and at least one value
 * above -inf. */
static int row_is_valid(const float *values, size_t V) {
    int has_finite = 0;
    for (size_t i = 0; i < V; ++i) {
        if (isnan(values[i]) || values[i] == INFINITY) return 0;
        if (values[i] != -INFINITY) has_finite = 1;
    }
    return has_finite;
}

/* Step 2, T = 0: the first index of the largest value. */
static int32_t greedy_argmax(const float *values, size_t V) {
    size_t best = 0;
    for (size_t i = 1; i < V; ++i)
        if (values[i] > values[best]) best = i;
    return (int32_t)best;
}

/* Step 2, T > 0: z = l' / T, each division rounded to float32. */
static void scale_by_temperature(float *values, size_t V, float temperature) {
    for (size_t i = 0; i < V; ++i) values[i] = values[i] / temperature;
}

/* Step 3: e_i = exp(z_i - m), m = max z, so the largest weight is exp(0) = 1. */
static void softmax_weights(const float *z, size_t V, float *weights) {
    float m = -INFINITY;
    for (size_t i = 0; i < V; ++i)
        if (z[i] > m) m = z[i];
    for (size_t i = 0; i < V; ++i) weights[i] = expf(z[i] - m);
}

/* Step 4: rank by value descending; equal values keep the lower id first. */
static int compare_rank(const void *a, const void *b) {
    const ranked_token *x = a, *y = b;
    if (x->value > y->value) return -1;
    if (x->value < y->value) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void sort_by_rank(const float *values, size_t V, ranked_token *ranking) {
    for (size_t i = 0; i < V; ++i) {
        ranking[i].value = values[i];
        ranking[i].id = (int32_t)i;
    }
    qsort(ranking, V, sizeof *ranking, compare_rank);
}

/* Step 5: how many ranked tokens top-k keeps. Example: top_k = 50 keeps 50. */
static size_t top_k_cut(size_t V, int32_t top_k) {
    return (top_k == 0 || (size_t)top_k > V) ? V : (size_t)top_k;
}

/* Step 6: the shortest ranked prefix whose weight reaches top_p of the weight
 * kept so far. Example: weights 1, .5, .3, .2 (sum 2) with top_p = .7 need
 * 1.4: 1 < 1.4, 1.5 >= 1.4, so two tokens stay. */
static size_t top_p_cut(const ranked_token *ranking, const float *weights, size_t kept,
                        float top_p) {
    if (top_p >= 1.0f) return kept;
    double total = 0;
    for (size_t r = 0; r < kept; ++r) total += weights[ranking[r].id];
    double target = (double)top_p * total;
    double running = 0;
    for (size_t r = 0; r < kept; ++r) {
        running += weights[ranking[r].id];
        if (running >= target) return r + 1;
    }
    return kept;
}

/* Step 7 (with 5 and 6): mark the kept tokens. min-p drops e_i < min_p;
 * the top token (e = 1) always stays. */
static void mark_kept(const ranked_token *ranking, size_t prefix, const float *weights,
                      float min_p, unsigned char *kept, size_t V) {
    memset(kept, 0, V);
    for (size_t r = 0; r < prefix; ++r) {
        int32_t id = ranking[r].id;
        if ((double)weights[id] >= (double)min_p) kept[id] = 1;
    }
}

/* Step 8: scan kept tokens by id; the first whose running weight exceeds
 * u * F is drawn. Example: kept weights (by id) .2, .5, .3 and u = .5:
 * .2 <= .5, .7 > .5, so the second kept token is drawn. */
static int32_t draw_token(const float *weights, const unsigned char *kept, size_t V, double u,
                          double *kept_weight) {
    double total = 0;
    for (size_t i = 0; i < V; ++i)
        if (kept[i]) total += weights[i];
    *kept_weight = total;
    double threshold = u * total, running = 0;
    int32_t last_positive = -1;
    for (size_t i = 0; i < V; ++i) {
        if (!kept[i]) continue;
        running += weights[i];
        if (weights[i] > 0) last_positive = (int32_t)i;
        if (running > threshold) return (int32_t)i;
    }
    return last_positive; /* rounding left u * F at the very top */
}

/* OpenAI-style top logprobs: the n most likely tokens of log_softmax(l) of
 * the raw row, before penalties and temperature, in float64. */
static void raw_top_logprobs(const float *raw, size_t V, int32_t n, ranked_token *ranking,
                             int32_t *top_ids, float *top_logprobs) {
    double m = -INFINITY, sum = 0;
    for (size_t i = 0; i < V; ++i)
        if (raw[i] > m) m = raw[i];
    for (size_t i = 0; i < V; ++i) sum += exp((double)raw[i] - m);
    double log_sum = log(sum);
    sort_by_rank(raw, V, ranking);
    for (int32_t j = 0; j < n; ++j) {
        top_ids[j] = ranking[j].id;
        /* (x - m) first: exact for nearby x, so a logprob near 0 keeps its
         * digits (x - (m + log sum) would round at the scale of m). */
        top_logprobs[j] = (float)(((double)ranking[j].value - m) - log_sum);
    }
}


static void sample_row(const r1_sampling_desc *desc, const void *logits, int64_t b,
                       const r1_sampling_outputs *out, ref_scratch *s) {
    const size_t V = (size_t)desc->vocab;
    const int32_t n = desc->top_logprobs;
    const r1_sampling_params *p = &desc->params[b];
    float *filtered = out->filtered_probs ? out->filtered_probs + (size_t)b * V : NULL;

    /* The raw row first, for the top logprobs (they ignore penalties). */
    load_row(desc, logits, b, s->logits);
    if (!row_is_valid(s->logits, V)) {
        sampling_write_invalid_row(out, b, V, n);
        return;
    }
    if (n > 0)
        raw_top_logprobs(s->logits, V, n, s->ranking, out->top_ids + (size_t)b * (size_t)n,
                         out->top_logprobs + (size_t)b * (size_t)n);

    /* Step 1. */
    if (desc->history_offsets) {
        int64_t begin = desc->history_offsets[b], end = desc->history_offsets[b + 1];
        apply_penalties(s->logits, s->counts, desc->history + begin, end - begin, p);
    }

    /* Step 2: greedy. */
    if (p->temperature == 0.0f) {
        if (!row_is_valid(s->logits, V)) {
            sampling_write_invalid_row(out, b, V, n);
            return;
        }
        int32_t token = greedy_argmax(s->logits, V);
        out->tokens[b] = token;
        if (out->logprobs) out->logprobs[b] = 0.0f;
        if (filtered) {
            for (size_t i = 0; i < V; ++i) filtered[i] = 0.0f;
            filtered[token] = 1.0f;
        }
        return;
    }
    scale_by_temperature(s->logits, V, p->temperature);
    if (!row_is_valid(s->logits, V)) {
        sampling_write_invalid_row(out, b, V, n);
        return;
    }

    /* Steps 3-7. */
    softmax_weights(s->logits, V, s->weights);
    sort_by_rank(s->logits, V, s->ranking);
    size_t prefix = top_k_cut(V, p->top_k);
    prefix = top_p_cut(s->ranking, s->weights, prefix, p->top_p);
    mark_kept(s->ranking, prefix, s->weights, p->min_p, s->kept, V);

    /* Step 8. */
    double u = r1_sampling_uniform(p->seed, (uint64_t)b, p->step);
    double kept_weight;
    int32_t token = draw_token(s->weights, s->kept, V, u, &kept_weight);
    out->tokens[b] = token;
    if (out->logprobs) out->logprobs[b] = (float)(log((double)s->weights[token]) - log(kept_weight));
    if (filtered)
        for (size_t i = 0; i < V; ++i)
            filtered[i] = s->kept[i] ? (float)((double)s->weights[i] / kept_weight) : 0.0f;
}

r1_status sampling_sample_ref(const r1_sampling_desc *desc, const void *logits,
                              const r1_sampling_outputs *out, void *workspace) {
    ref_scratch scratch = carve_scratch(workspace, (size_t)desc->vocab);
    memset(scratch.counts, 0, (size_t)desc->vocab * sizeof(int32_t));
    for (int64_t b = 0; b < desc->batch; ++b) sample_row(desc, logits, b, out, &scratch);
    return sampling_report_invalid_rows(out->tokens, desc->batch);
}
