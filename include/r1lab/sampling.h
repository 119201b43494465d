/*
 * r1lab/sampling.h — drawing the next token from a row of logits, the way a
 * teacher model generates (DeepSeek-R1 distillation uses T = 0.6, top_p = 0.95).
 *
 * SEMANTICS (every backend follows them; golden/gen/sampling.py is an
 * independent numpy implementation of exactly this text).
 *
 * For each row b of the logits (B, V) with its parameters p = params[b]:
 *
 *  1. Penalties (vLLM / OpenAI meaning). count[i] = how many times token i
 *     occurs in the row's history (previously generated ids). For every i
 *     with count[i] > 0, in float32:
 *         x = l[i];  x = (x > 0) ? x / repetition_penalty : x * repetition_penalty;
 *         l'[i] = x - (frequency_penalty * count[i] + presence_penalty)
 *     Tokens that are not in the history keep l'[i] = l[i].
 *  2. Temperature. T = 0 means greedy: the token is the first index of the
 *     largest l' (ties go to the lower id); its logprob is 0 (the final
 *     distribution is one-hot); steps 3-8 are skipped. For T > 0,
 *     z[i] = l'[i] / T in float32.
 *     A row whose z (or l' when greedy) holds a NaN or +inf, or is entirely
 *     -inf, is invalid: token -1, logprob NaN, filtered row NaN, top_ids -1,
 *     top_logprobs NaN, and the call returns R1_ENUMERIC naming the first
 *     such row; other rows are still sampled.
 *  3. Softmax weights. m = max z;  e[i] = expf(z[i] - m) in float32 (so the
 *     largest weight is exactly 1). Probabilities are e[i] / sum(e); sums of
 *     weights are taken in float64. The order of summation is not part of
 *     the semantics (ref sums in rank order, the CUDA kernel sums bins of
 *     fixed-point weights): where a sum lands within its rounding of a
 *     threshold, implementations may keep one token more or fewer.
 *  4. Order. Tokens are ranked by z descending, ties by id ascending. Every
 *     filter below keeps a prefix of this order.
 *  5. top-k (0 = off): keep the first min(top_k, V) tokens of the order.
 *  6. top-p (1 = off): with S = the weight kept by step 5, keep the shortest
 *     prefix of the order whose weight reaches top_p * S (">="); never empty.
 *  7. min-p (0 = off): keep only tokens with e[i] >= min_p (the largest
 *     probability has weight 1, so this is p[i] >= min_p * p_max).
 *  8. Draw. F = weight of the kept set; u = r1_sampling_uniform(seed, b, step)
 *     (Philox4x32-10, see philox.h); scanning kept tokens by id upward with a
 *     float64 running sum c, the token is the first one with c > u * F. If
 *     rounding leaves none, the last kept token with e > 0 is taken.
 *     logprob = log(e[token]) - log(F), computed in float64, stored as float.
 *
 * OUTPUTS
 *  tokens[b]            the drawn token id (-1 for an invalid row)
 *  logprobs[b]          optional: its log-probability under the final
 *                       (filtered, renormalized) distribution
 *  filtered_probs[b,V]  optional: that final distribution, e[i] / F for kept
 *                       tokens, 0 elsewhere (one-hot for greedy)
 *  top_ids[b,n], top_logprobs[b,n]
 *                       optional (n = desc->top_logprobs): the n most likely
 *                       tokens of the RAW model distribution log_softmax(l),
 *                       before penalties and temperature, in descending order
 *                       (ties by lower id) — what OpenAI-compatible servers
 *                       return as top_logprobs. Computed in float64 as
 *                       (l[i] - m) - log(sum_j exp(l[j] - m)), m = max l.
 *
 * MEMORY
 *  ref / fast: every pointer is host memory. cuda: logits and outputs are
 *  device memory; the descriptor (params, history) is host memory and is
 *  copied into the workspace. Workspace bytes are given by
 *  r1_sampling_workspace_size(); workspace = NULL makes the call allocate and
 *  free it itself (convenient, not for hot loops).
 *  cuda is synchronous by default so that the status can name an invalid row;
 *  with desc->asynchronous = 1 it only enqueues work on `stream`, returns
 *  R1_OK, and invalid rows show as token -1.
 *
 * BAD INPUT (R1_EINVAL before any work, for every backend): batch or vocab
 *  <= 0; temperature < 0 or not finite; top_k < 0; top_p outside (0, 1];
 *  min_p outside [0, 1); repetition_penalty <= 0 or not finite; presence or
 *  frequency penalty not finite; history offsets not non-decreasing from 0; a
 *  history id outside [0, V); top_logprobs outside [0, R1_SAMPLING_MAX_TOP_LOGPROBS]
 *  or above V; a required pointer NULL; a dtype other than f32 / bf16.
 */
#ifndef R1LAB_SAMPLING_H
#define R1LAB_SAMPLING_H

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define R1_SAMPLING_MAX_TOP_LOGPROBS 20

/* One row's sampling parameters. r1_sampling_params_default() gives the
 * neutral values: T = 1, no filters, no penalties, seed 0, step 0. */
typedef struct r1_sampling_params {
    float temperature;        /* >= 0; 0 = greedy                    */
    int32_t top_k;            /* >= 0; 0 = off                       */
    float top_p;              /* (0, 1]; 1 = off                     */
    float min_p;              /* [0, 1); 0 = off                     */
    float repetition_penalty; /* > 0; 1 = off                        */
    float presence_penalty;   /* finite; 0 = off                     */
    float frequency_penalty;  /* finite; 0 = off                     */
    uint64_t seed;            /* Philox key                          */
    uint64_t step;            /* decoding step (Philox counter part) */
} r1_sampling_params;

typedef struct r1_sampling_desc {
    int64_t batch;                   /* B rows                                  */
    int64_t vocab;                   /* V logits per row                        */
    r1_dtype logits_dtype;           /* R1_F32 or R1_BF16                       */
    const r1_sampling_params *params;/* B entries, host memory                  */
    /* History for penalties: ids of row b are history[history_offsets[b] ..
     * history_offsets[b+1]). Both NULL = no history for any row. */
    const int32_t *history;
    const int64_t *history_offsets;  /* B + 1 entries                          */
    int32_t top_logprobs;            /* n for top_ids / top_logprobs; 0 = none  */
    int32_t asynchronous;            /* cuda only: see MEMORY above             */
} r1_sampling_desc;

typedef struct r1_sampling_outputs {
    int32_t *tokens;        /* (B), required           */
    float *logprobs;        /* (B), optional           */
    float *filtered_probs;  /* (B, V), optional        */
    int32_t *top_ids;       /* (B, n), required if n>0 */
    float *top_logprobs;    /* (B, n), required if n>0 */
} r1_sampling_outputs;

r1_sampling_params r1_sampling_params_default(void);

/* Checks the descriptor and pointers (the rules under BAD INPUT). */
r1_status r1_sampling_validate(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out);

/* Bytes of workspace the backend needs for this descriptor (0 if none). */
size_t r1_sampling_workspace_size(r1_backend backend, const r1_sampling_desc *desc);

/* Samples one token per row. `stream` is a cudaStream_t for R1_CUDA (NULL =
 * default stream) and ignored otherwise. */
r1_status r1_sampling_sample(r1_backend backend, const r1_sampling_desc *desc,
                             const void *logits, const r1_sampling_outputs *out,
                             void *workspace, size_t workspace_bytes, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_SAMPLING_H */
