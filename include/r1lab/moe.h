/*
 * r1lab/moe.h — Mixture-of-Experts routing, dispatch / combine and balance
 * statistics, the way DeepSeek-V3/R1 routes every token to 8 of 256 experts.
 *
 * SEMANTICS (every backend follows them; golden/gen/moe.py checks them with
 * Hugging Face transformers' own DeepseekV3 router and MoE modules and with an
 * independent numpy transcription).
 *
 * Letters: T tokens, E routed experts, G = n_group groups of E/G experts,
 * K = top_k slots per token, N = T*K (token, slot) pairs, d hidden size.
 *
 * 0. Scores. The router's logits l (T, E) are given, or computed from hidden
 *    states x (T, d) and the gate weight W (E, d) as l = x W^T in float32
 *    (r1_moe_gate_logits; sums in float64 in ref).
 *    exp and sigmoid are r1lab's own float32 functions r1_moe_expf /
 *    r1_moe_sigmoidf (an explicit polynomial in IEEE float operations, no fused
 *    multiply-add, defined in core/moe_math.h), so that every backend gets the
 *    same bits and chooses the same experts. They are within 2 ulp of the true
 *    functions; peers (torch.sigmoid) differ by an ulp or two.
 *
 * 1. Routing, per token t (the mode is desc->routing):
 *    R1_MOE_SOFTMAX_TOPK (Mixtral, Qwen-MoE, DeepSeek-V2 "greedy"):
 *        p = softmax(l) (e_i = r1_moe_expf(l_i - max l), p_i = e_i / sum e);
 *        choose the K largest p. Softmax is monotone, so r1lab ranks by the
 *        logit itself: exact ties in p that come from distinct logits (two
 *        logits an ulp apart can round to the same p) are ordered by logit.
 *    R1_MOE_GROUP_LIMITED_GREEDY (DeepSeek-V2): p as above; group score =
 *        max p in the group (ranked by the max logit); keep the topk_group
 *        best groups; choose the K largest p inside the kept groups.
 *    R1_MOE_NOAUX_TC (DeepSeek-V3/R1): s = r1_moe_sigmoidf(l); selection
 *        score c = s + b (b = per-expert correction bias, fp32; NULL = 0);
 *        group score = c1 + c2, the two largest c of the group added in float32
 *        (largest first); keep the topk_group best groups; choose the K largest
 *        c inside the kept groups (experts of other groups count as -inf).
 *        The weights use the UNBIASED s of the chosen experts.
 *    Ties: the lower index wins, for groups and for experts. The chosen
 *    experts are listed best first (score descending, index ascending).
 *    Weights: w_k = q_k (p_k for the softmax modes, s_k for noaux_tc); when
 *    norm_topk_prob, w_k = q_k / (sum_j q_j + 1e-20); then
 *    w_k *= routed_scaling_factor.
 *
 *    Where the peers differ (r1lab's choice in brackets):
 *    - DeepSeek-V3 inference/model.py Gate always normalizes sigmoid weights
 *      (q / sum q, no epsilon) and always multiplies by route_scale; Hugging
 *      Face DeepseekV3TopkRouter normalizes only when norm_topk_prob and adds
 *      1e-20 to the denominator, then multiplies by routed_scaling_factor.
 *      [HF: norm_topk_prob flag, + 1e-20, then the factor; with
 *      norm_topk_prob = 1 (the V3 config) both agree within an ulp.]
 *    - Both peers use the biased c for the group score (top-2 sum) and for the
 *      expert choice, and the unbiased s for the weights. [Same.]
 *    - V3's Gate uses amax for the group score when there is no bias (V2-style);
 *      with a bias, the top-2 sum. [noaux_tc always uses the top-2 sum; the
 *      amax rule is R1_MOE_GROUP_LIMITED_GREEDY.]
 *    - Old HF remote code masked other groups' experts with 0.0 instead of
 *      -inf (different when c < 0); transformers >= 4.5x and V3 use -inf. [-inf]
 *    - torch.topk / vLLM grouped_topk / SGLang moe_fused_gate do not promise a
 *      tie order and HF returns the K experts unsorted. [lower index wins,
 *      best first.]
 *    - DeepSeek-V2 multiplies by routed_scaling_factor only when it does not
 *      renormalize. [Always multiplies: set the factor to 1 for V2 / Mixtral.]
 *
 * 2. Dispatch. From ids (T, K): counts[e] = pairs routed to e; offsets (E+1)
 *    exclusive prefix sums; permutation (N): the flat pair indices t*K + k
 *    sorted by expert, stable (token order within an expert); inverse (N):
 *    inverse[t*K + k] = position of that pair in permutation. Padded layout
 *    (like vLLM's moe_align_block_size, block size B): padded_offsets (E+1)
 *    with each expert's rows rounded up to a multiple of B (0 rows stay 0);
 *    sorted_padded (capacity P = N + E*(B-1)) holds permutation's entries at
 *    padded_offsets[e] + r and the sentinel N everywhere else (also after
 *    the total); block_expert (P/B rounded up) holds the expert of each block
 *    and -1 for blocks past the total; *padded_total = padded_offsets[E].
 * 3. Permute: x_sorted[inverse[t*K+k]] = x[t] for every pair (t, k), (N, d):
 *    the rows of x in permutation order, dense (unpadded), which is
 *    x_sorted[j] = x[permutation[j] / K]. It takes inverse, as combine does,
 *    so that each row of x is read once and written K times. Combine: y[t] = sum_k w[t,k] * expert_out[inverse[t*K+k]]
 *    (+ shared[t] when given), summed over k = 0..K-1, float32 accumulators in
 *    fast and cuda, float64 in ref; rows f32 or bf16 (bf16 output rounded once).
 * 4. Balance (one sequence of T tokens; host memory for ref / fast, device
 *    memory for cuda, synchronous on the default stream):
 *    load[e] = counts[e]; with s'_{t,i} the normalized affinity (noaux_tc:
 *    s_i / sum_j s_j; softmax modes: p_i), DeepSeek-V3 eq. 17-20:
 *      f_i = E / (K T) * load[i],  P_i = (1/T) sum_t s'_{t,i},
 *      aux_loss = alpha * sum_i f_i P_i;
 *    bias update (auxiliary-loss-free balancing): mean = N / E,
 *      b_i += gamma * sign(mean - load[i])  (sign(0) = 0).
 * 5. Reference layer (ref only): route, dispatch, permute, SwiGLU experts
 *    out = W2_e (silu(W1_e x) * (W3_e x)) on the permuted rows, shared expert
 *    on every token, combine.
 *
 * MEMORY: ref / fast take host pointers; cuda takes device pointers and a
 * cudaStream_t (NULL = default). Descriptors are host memory. Workspace sizes
 * are given by r1_moe_workspace_size(); NULL workspace makes the call allocate.
 * cuda calls are synchronous by default so that a bad input can be named;
 * with desc->asynchronous = 1 they only enqueue (a token with NaN / Inf
 * logits then gets ids -1 and NaN weights, without an error).
 *
 * BAD INPUT (before any work, every backend): R1_EINVAL for tokens <= 0 or
 * > R1_MOE_MAX_TOKENS = 33554431 (T * K < 2^31 for every top_k);
 * experts <= 0 or > R1_MOE_MAX_EXPERTS; top_k <= 0 or > R1_MOE_MAX_TOP_K or
 * > experts; for the
 * group modes n_group <= 0, experts % n_group != 0, topk_group <= 0 or >
 * n_group, top_k > topk_group * experts / n_group, and for noaux_tc groups of
 * fewer than 2 experts; routing not one of the three; routed_scaling_factor
 * not finite or <= 0; block_size <= 0 or > R1_MOE_MAX_BLOCK_SIZE = 4096
 * (dispatch); with padded_offsets, a padded capacity P above 2^31 - 1
 * (dispatch); an id outside [0, E) or a repeated id within a token
 * (dispatch); hidden <= 0 or > R1_MOE_MAX_HIDDEN = 2^24 (permute / combine /
 * gate / layer); layer intermediate outside [1, 2^24] or shared_intermediate
 * outside [0, 2^24]; a dtype other than f32 / bf16; a required pointer NULL;
 * buffers that overlap against the OVERLAP rules below (the sentence names
 * both arguments).
 * r1_moe_workspace_size and r1_moe_padded_capacity return 0 for a descriptor
 * that breaks these rules (padded capacity: also for a bad block_size).
 * R1_ENUMERIC for a NaN or +-Inf logit, naming the first such token, and for
 * a non-finite bias entry, naming the expert. Ids, permutation and inverse
 * are checked on the host for ref / fast; cuda checks ids in range (dispatch,
 * synchronous calls; balance: range and repeats too) but takes permutation
 * and inverse as r1_moe_dispatch made them (device memory is not read back to
 * be checked).
 *
 * OVERLAP. Outputs must not overlap inputs or each other, with one exception
 * that may alias exactly (same start pointer): combine's y may be its shared
 * input (every backend; y[t, i] reads only shared[t, i]). Route's weights
 * must not overlap its logits, not even weights == logits: fast and cuda
 * route tokens in parallel, so one token's weights would overwrite another
 * token's logits while they are read. So: gate logits must not overlap x or
 * gate_weight; route ids and weights must not overlap logits, bias or each
 * other; every dispatch output must not overlap ids or another dispatch
 * output; permute's x_sorted must not overlap x or permutation; combine's y
 * must not overlap expert_out, inverse or weights (nor shared, other than
 * y == shared); balance's load, aux_loss and bias must not overlap
 * logits, ids or each other.
 */
#ifndef R1LAB_MOE_H
#define R1LAB_MOE_H

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define R1_MOE_MAX_EXPERTS 1024
#define R1_MOE_MAX_TOP_K 64
#define R1_MOE_MAX_TOKENS (INT32_MAX / R1_MOE_MAX_TOP_K) /* 33554431 */
#define R1_MOE_MAX_HIDDEN ((int64_t)1 << 24)
#define R1_MOE_MAX_BLOCK_SIZE 4096

typedef enum r1_moe_routing {
    R1_MOE_SOFTMAX_TOPK = 0,         /* softmax, top-k (optionally renormalized)    */
    R1_MOE_GROUP_LIMITED_GREEDY = 1, /* DeepSeek-V2: softmax, group score = max     */
    R1_MOE_NOAUX_TC = 2              /* DeepSeek-V3: sigmoid + bias, top-2 sums     */
} r1_moe_routing;

typedef struct r1_moe_desc {
    int64_t tokens;              /* T                                            */
    int32_t experts;             /* E (routed experts)                           */
    int32_t top_k;               /* K                                            */
    int32_t n_group;             /* G (group modes)                              */
    int32_t topk_group;          /* groups kept per token (group modes)          */
    r1_moe_routing routing;
    int32_t norm_topk_prob;      /* 1: the K weights are renormalized to sum 1   */
    float routed_scaling_factor; /* > 0, multiplies the weights                  */
    int64_t hidden;              /* d: permute / combine / gate GEMM / layer     */
    int32_t block_size;          /* B of the padded layout (dispatch)            */
    int32_t asynchronous;        /* cuda only: see MEMORY                         */
} r1_moe_desc;

/* DeepSeek-V3: E = 256, G = 8, topk_group = 4, K = 8, noaux_tc,
 * norm_topk_prob = 1, factor 2.5, d = 7168, B = 64, synchronous; tokens = 1. */
r1_moe_desc r1_moe_desc_default(void);

/* r1lab's exp and sigmoid (see SEMANTICS 0), the same bits on every backend. */
float r1_moe_expf(float x);
float r1_moe_sigmoidf(float x);

/* Outputs of dispatch (all int32; sizes in the comments). */
typedef struct r1_moe_dispatch_out {
    int32_t *counts;         /* (E)        required                           */
    int32_t *offsets;        /* (E+1)      required                           */
    int32_t *permutation;    /* (N)        required                           */
    int32_t *inverse;        /* (N)        required                           */
    int32_t *padded_offsets; /* (E+1)      optional (NULL: no padded layout)  */
    int32_t *sorted_padded;  /* (P)        with padded_offsets                */
    int32_t *block_expert;   /* (ceil(P/B)) with padded_offsets               */
    int32_t *padded_total;   /* (1)        with padded_offsets                */
} r1_moe_dispatch_out;

/* P = N + E*(B-1), the capacity of sorted_padded; 0 for an invalid
 * descriptor or block_size (see BAD INPUT). */
int64_t r1_moe_padded_capacity(const r1_moe_desc *desc);

/* Checks the descriptor's routing shape rules (BAD INPUT). */
r1_status r1_moe_validate(const r1_moe_desc *desc);

/* Workspace bytes a backend needs for route / dispatch (0 if none). */
size_t r1_moe_workspace_size(r1_backend backend, const r1_moe_desc *desc);

/* logits (T, E) = x (T, d) W (E, d)^T, all f32. */
r1_status r1_moe_gate_logits(r1_backend backend, const r1_moe_desc *desc, const float *x,
                             const float *gate_weight, float *logits, void *stream);

/* Routing: logits (T, E) f32, bias (E) f32 or NULL (noaux_tc only) ->
 * ids (T, K) int32, weights (T, K) f32. */
r1_status r1_moe_route(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                       const float *bias, int32_t *ids, float *weights, void *workspace,
                       size_t workspace_bytes, void *stream);

/* Dispatch arrays from ids (T, K). */
r1_status r1_moe_dispatch(r1_backend backend, const r1_moe_desc *desc, const int32_t *ids,
                          const r1_moe_dispatch_out *out, void *workspace,
                          size_t workspace_bytes, void *stream);

/* x_sorted (N, d): x_sorted[inverse[t*K+k]] = x[t] (x (T, d) rows in
 * permutation order); inverse is r1_moe_dispatch's; dtype f32 or bf16.
 * ref / fast refuse an inverse entry outside [0, N) with R1_EINVAL; cuda
 * skips such an entry (it cannot stop a queued kernel), writing no row for
 * it. */
r1_status r1_moe_permute(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                         const void *x, const int32_t *inverse, void *x_sorted,
                         void *stream);

/* y (T, d) = sum_k weights[t,k] * expert_out[inverse[t*K+k]] (+ shared (T, d)
 * when not NULL); expert_out (N, d) in permutation order; dtype f32 or bf16
 * for expert_out, shared and y; weights f32. ref / fast refuse an inverse
 * entry outside [0, N) with R1_EINVAL; cuda skips that slot (it adds
 * nothing). */
r1_status r1_moe_combine(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                         const void *expert_out, const int32_t *inverse, const float *weights,
                         const void *shared, void *y, void *stream);

/* Balance statistics for one sequence (ref / fast: host memory; cuda: device
 * memory, load and aux_loss written on the device, synchronous).
 * logits (T, E), ids (T, K) -> load (E) int32 (optional), the auxiliary loss
 * (optional, with weight alpha), and, when bias is not NULL, the bias update
 * bias[e] += gamma * sign(N/E - load[e]) in place. */
typedef struct r1_moe_balance_out {
    int32_t *load;     /* (E) optional */
    double *aux_loss;  /* (1) optional */
    float *bias;       /* (E) optional: updated in place */
} r1_moe_balance_out;

r1_status r1_moe_balance(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                         const int32_t *ids, double alpha, float gamma,
                         const r1_moe_balance_out *out);

/* The whole MoE layer (ref only; R1_EUNSUPPORTED otherwise), all f32:
 * x (T, d), gate_weight (E, d), bias (E) or NULL, w1 and w3 (E, I, d) gate and
 * up projections, w2 (E, d, I) down projection, shared_w1 / shared_w3
 * (Is, d), shared_w2 (d, Is) (Is = shared_intermediate; 0 = no shared expert)
 * -> y (T, d). */
typedef struct r1_moe_layer_weights {
    int64_t intermediate;        /* I  */
    int64_t shared_intermediate; /* Is */
    const float *gate_weight, *bias;
    const float *w1, *w3, *w2;
    const float *shared_w1, *shared_w3, *shared_w2;
} r1_moe_layer_weights;

r1_status r1_moe_layer(r1_backend backend, const r1_moe_desc *desc,
                       const r1_moe_layer_weights *weights, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_MOE_H */
