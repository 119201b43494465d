/*
 * r1lab/kd.h — knowledge-distillation losses with their gradients: the
 * student learns from the teacher's distribution (logit distillation, Hinton
 * et al. 2015) mixed with cross-entropy on the labels.
 *
 * SEMANTICS (every backend follows them; golden/gen/kd.py is an independent
 * PyTorch autograd implementation of exactly this text).
 *
 * Per token t (N tokens, V vocabulary entries): student logits s (V), teacher
 * logits z (V) or a sparse teacher (below), label y. With temperature T:
 *     q   = softmax(s / T)        the student at temperature T
 *     p   = softmax(z / T)        the teacher at temperature T
 *     r   = softmax(s)            the student at temperature 1 (for CE)
 *     CE  = -log r[y]
 *     l_t = (1 - gamma) * CE  +  gamma * T^2 * D_beta(p, q)
 * The divergence D_beta follows Liger-Kernel's generalized JSD (LigerJSD,
 * beta = jsd_beta), with P = teacher p and Q = student q:
 *     beta = 0      D = KL(p || q) = sum_i p_i (log p_i - log q_i)   forward KL
 *     beta = 1      D = KL(q || p) = sum_i q_i (log q_i - log p_i)   reverse KL
 *     0 < beta < 1  M = beta p + (1 - beta) q
 *                   D = beta KL(p || M) + (1 - beta) KL(q || M)      generalized JSD
 * (beta = 0 and 1 are defined as the two KLs, as Liger does; the JSD formula
 * itself tends to 0 at both ends.) 0 log 0 = 0: an entry with p_i = 0 adds
 * nothing to KL(p || q) or to KL(p || M). Logs are taken in the log domain
 * (log q_i = s_i/T - logsumexp(s/T)), never as log of an underflowed exp.
 * Liger's LigerKLDIVLoss is KL(y_true || exp(y_pred)) = our beta = 0 with
 * gamma = 1, without the T^2 factor (Liger applies no temperature there).
 *
 * Tokens with y == ignore_index are not counted: l_t = 0, gradient 0, and
 * their logits are not inspected. C = number of counted tokens (all N when
 * labels is NULL, allowed only for gamma = 1).
 * Reduction:  MEAN  L = sum_t l_t / C  (0 when C = 0: loss 0, zero gradients)
 *             SUM   L = sum_t l_t
 *             NONE  token_losses[t] = l_t is the output; L = sum_t l_t too.
 * Sums over tokens are taken in float64 (the order is not part of the
 * semantics).
 *
 * GRADIENT dL/ds (closed form; w = 1/C for MEAN, 1 for SUM and NONE):
 *     dL/ds_j = w * [ (1 - gamma) (r_j - [j == y])  +  gamma * T * G_j ]
 * where G_j = dD / d(s_j / T), per divergence:
 *     beta = 0      G_j = q_j - p_j
 *     beta = 1      G_j = q_j (g_j - gbar),  g_j = log q_j - log p_j
 *     0 < beta < 1  G_j = q_j (g_j - gbar),  g_j = (1 - beta)(log q_j - log M_j)
 *                   with gbar = sum_i q_i g_i (beta = 1: gbar = D).
 * (d T^2 D / ds_j = T^2 * G_j / T = T G_j.)
 *
 * SPARSE TEACHER (desc->teacher_topk = k > 0): instead of z, the teacher's
 * top-k token ids and log-probabilities per token (what an OpenAI-compatible
 * server returns as top_logprobs). Rule "renormalized top-k": the teacher at
 * temperature T puts mass only on its k ids,
 *     p_i = exp(lp_i / T) / sum_{j in top-k} exp(lp_j / T)   for i in top-k,
 *     p_i = 0                                                 elsewhere;
 * the mass 1 - sum exp(lp) the server did not report is dropped (not spread
 * over the other ids). Since lp = z - logsumexp(z), lp / T equals z / T up to
 * a constant, so this is softmax(z / T) restricted to the k ids. lp_i = -inf
 * is a zero-probability entry. Ids must be distinct and in [0, V).
 *
 * NUMERICS Every backend reduces each row with a running max (online softmax);
 * bf16 inputs are widened to float32 and accumulated in float32 or wider.
 * Bad numbers in a counted row give R1_ENUMERIC naming the first such token;
 * its l_t is NaN and its gradient row 0 (other rows are computed): a student
 * logit NaN or +-inf; a teacher logit (or logprob) NaN or +inf; a teacher row
 * that is entirely -inf; beta = 1 with a teacher entry of probability 0
 * (KL(q || p) is infinite; always the case for a sparse teacher with k < V).
 *
 * FUSED-LINEAR FORM (r1_kd_linear): the student logits are s = h W^T from
 * hidden states h (N, d) and the LM head W (V, d); the teacher is given as its
 * own hidden states ht (N, dt) and head Wt (V, dt), or as dense logits, or
 * sparse. Outputs: L, dL/dh = (dL/ds) W (N, d) and dL/dW = (dL/ds)^T h (V, d),
 * without ever holding all (N, V) logits: tokens are processed in chunks.
 *
 * MEMORY ref / fast: host pointers. cuda: device pointers (inputs, outputs),
 * the descriptor on the host; the call is synchronous (it reads back the loss
 * to report R1_ENUMERIC) unless desc->asynchronous = 1. The gradient has the
 * dtype of the logits (f32 or bf16) and may be the student logits themselves
 * (grad == student_logits: written in place; that exact alias is the only one
 * allowed). grad must not overlap teacher_logits, teacher_ids,
 * teacher_logprobs, labels, loss or token_losses, nor overlap student_logits
 * partially. Fused-linear gradients are f32; grad_hidden and grad_weight
 * must not overlap any input, loss, token_losses or each other.
 * Workspace bytes: r1_kd_workspace_size / r1_kd_linear_workspace_size;
 * workspace = NULL makes the call allocate it (not for hot loops).
 *
 * BAD INPUT (R1_EINVAL before any work): tokens or vocab outside
 * [1, 2^31 - 1]; for the fused form hidden outside [1, 2^31 - 1],
 * teacher_hidden or chunk_tokens outside [0, 2^31 - 1]; a tensor of more than
 * R1_KD_MAX_ELEMENTS = 2^56 elements: N * V (logits), and for the fused form
 * N * d, V * d, N * dt, V * dt (so every byte count, workspaces included, fits
 * in a 64-bit size_t; V = 256000 allows N up to 2^31 - 1); the workspace-size
 * functions return 0 for such a descriptor; temperature below FLT_MIN (<= 0, or so small
 * that 1/T overflows float32) or not finite; gamma or beta outside
 * [0, 1]; a label outside [0, V) that is not ignore_index; labels NULL with
 * gamma < 1; teacher_topk < 0 or > V; sparse ids outside [0, V) or repeated in
 * a row; a required pointer NULL; reduction unknown; NONE without
 * token_losses; a dtype other than f32 / bf16; an output overlapping an input
 * it must not overlap (see MEMORY; the sentence names both arguments).
 */
#ifndef R1LAB_KD_H
#define R1LAB_KD_H

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most elements of any one tensor (N * V, N * d, V * d, N * dt, V * dt). */
#define R1_KD_MAX_ELEMENTS ((int64_t)1 << 56)

typedef enum r1_kd_reduction {
    R1_KD_MEAN = 0, /* over counted tokens */
    R1_KD_SUM = 1,
    R1_KD_NONE = 2  /* per-token losses in token_losses */
} r1_kd_reduction;

typedef struct r1_kd_desc {
    int64_t tokens;            /* N                                            */
    int64_t vocab;             /* V                                            */
    r1_dtype dtype;            /* logits (fused form: h, W, ht, Wt): f32 / bf16 */
    float gamma;               /* [0, 1]: weight of the distillation term       */
    float temperature;         /* T >= FLT_MIN, finite                          */
    float beta;                /* [0, 1]: 0 forward KL, 1 reverse KL, else JSD  */
    int32_t ignore_index;      /* labels equal to it are not counted (-100)     */
    r1_kd_reduction reduction; /* MEAN, SUM, NONE                               */
    int32_t teacher_topk;      /* 0: dense teacher logits; k > 0: sparse        */
    int32_t asynchronous;      /* cuda only: see MEMORY                         */
} r1_kd_desc;

/* Defaults: gamma 1, T 1, beta 0 (forward KL), ignore_index -100, MEAN, dense,
 * f32; tokens and vocab 0 (the caller sets them). */
r1_kd_desc r1_kd_desc_default(void);

typedef struct r1_kd_inputs {
    const void *student_logits;     /* (N, V) dtype                              */
    const void *teacher_logits;     /* (N, V) dtype, dense teacher (topk = 0)    */
    const int32_t *teacher_ids;     /* (N, k) sparse teacher ids                 */
    const float *teacher_logprobs;  /* (N, k) their log-probabilities, f32       */
    const int32_t *labels;          /* (N); NULL = every token counted, gamma=1  */
} r1_kd_inputs;

typedef struct r1_kd_outputs {
    float *loss;          /* (1), required: L                                     */
    float *token_losses;  /* (N), optional (required for NONE): l_t               */
    void *grad;           /* (N, V) dtype, optional: dL/ds (may be student_logits) */
} r1_kd_outputs;

r1_status r1_kd_validate(const r1_kd_desc *desc, const r1_kd_inputs *in,
                         const r1_kd_outputs *out);
size_t r1_kd_workspace_size(r1_backend backend, const r1_kd_desc *desc);
/* Loss (and gradient when out->grad is set). `stream`: cudaStream_t or NULL. */
r1_status r1_kd_loss(r1_backend backend, const r1_kd_desc *desc, const r1_kd_inputs *in,
                     const r1_kd_outputs *out, void *workspace, size_t workspace_bytes,
                     void *stream);

/* ---- fused-linear form ------------------------------------------------------ */

typedef struct r1_kd_linear_desc {
    r1_kd_desc kd;           /* N, V, dtype of h / W / ht / Wt, loss parameters   */
    int64_t hidden;          /* d                                                 */
    int64_t teacher_hidden;  /* dt (teacher as ht, Wt); 0 = teacher as logits      */
    int64_t chunk_tokens;    /* tokens per chunk; 0 = the backend's choice         */
} r1_kd_linear_desc;

typedef struct r1_kd_linear_inputs {
    const void *student_hidden;    /* (N, d)  dtype                              */
    const void *student_weight;    /* (V, d)  dtype                              */
    const void *teacher_hidden;    /* (N, dt) dtype, when teacher_hidden > 0     */
    const void *teacher_weight;    /* (V, dt) dtype, when teacher_hidden > 0     */
    const void *teacher_logits;    /* (N, V)  dtype, dense, when teacher_hidden = 0 */
    const int32_t *teacher_ids;    /* (N, k) sparse (teacher_hidden = 0, k > 0)  */
    const float *teacher_logprobs; /* (N, k)                                     */
    const int32_t *labels;         /* (N)                                        */
} r1_kd_linear_inputs;

typedef struct r1_kd_linear_outputs {
    float *loss;          /* (1), required                                  */
    float *token_losses;  /* (N), optional (required for NONE)              */
    float *grad_hidden;   /* (N, d) f32, optional: dL/dh                    */
    float *grad_weight;   /* (V, d) f32, optional: dL/dW (overwritten)      */
} r1_kd_linear_outputs;

r1_status r1_kd_linear_validate(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                                const r1_kd_linear_outputs *out);
size_t r1_kd_linear_workspace_size(r1_backend backend, const r1_kd_linear_desc *desc);
r1_status r1_kd_linear(r1_backend backend, const r1_kd_linear_desc *desc,
                       const r1_kd_linear_inputs *in, const r1_kd_linear_outputs *out,
                       void *workspace, size_t workspace_bytes, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_KD_H */
