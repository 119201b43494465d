/*
 * core/internal.h — declarations shared inside the library, not installed.
 *
 * Each component's public entry point (core/<component>.c) validates its
 * descriptor once and then calls one of the backend functions declared here:
 * <component>_<verb>_ref (ref/), _fast (fast/), _cuda (kernels/).
 */
#ifndef R1LAB_CORE_INTERNAL_H
#define R1LAB_CORE_INTERNAL_H

#include "r1lab/common.h"
#include "r1lab/sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the library was built with the CUDA backend. */
int r1_cuda_built(void);

/* R1_OK for a backend that can run here; R1_EINVAL for a value that is no
 * backend, R1_EUNSUPPORTED for R1_CUDA without a CUDA build or a GPU, each
 * with its sentence. Every component's dispatcher calls it. */
r1_status r1_check_backend(r1_backend backend);

/* core/overlap.c. 1 when the byte ranges [a, a + a_bytes) and
 * [b, b + b_bytes) share a byte; NULL or 0 bytes never overlap. The same
 * arithmetic holds for device addresses of one address space. */
int r1_ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes);
/* R1_OK when the ranges do not overlap, else R1_EINVAL with the sentence
 * "<a_name> overlaps <b_name>: they must not overlap". */
r1_status r1_check_no_overlap(const char *a_name, const void *a, size_t a_bytes,
                              const char *b_name, const void *b, size_t b_bytes);

/* core/workspace.c. Acquire: with *workspace given, checks that
 * workspace_bytes >= needed (R1_EINVAL otherwise); with *workspace NULL and
 * needed > 0, allocates `needed` bytes (device memory for R1_CUDA) into
 * *workspace and *owned. Release: frees *owned after the call (for R1_CUDA
 * after synchronizing, whose error is returned when `status` was R1_OK) and
 * returns the call's status. */
r1_status r1_workspace_acquire(r1_backend backend, size_t needed, void **workspace,
                               size_t workspace_bytes, void **owned);
r1_status r1_workspace_release(r1_backend backend, void *owned, r1_status status);

/* Order-preserving key of a float: for a, b not NaN, a > b exactly when
 * key(a) > key(b) as unsigned integers, and a == b exactly when the keys are
 * equal (-0.0 is mapped to +0.0 first). */
static inline uint32_t r1_float_order_key(float value) {
    union { float f; uint32_t u; } bits;
    bits.f = (value == 0.0f) ? 0.0f : value;
    return (bits.u & 0x80000000u) ? ~bits.u : (bits.u | 0x80000000u);
}

/* ---- sampling backends (desc already validated) ------------------------- */
size_t sampling_workspace_size_ref(const r1_sampling_desc *desc);
r1_status sampling_sample_ref(const r1_sampling_desc *desc, const void *logits,
                              const r1_sampling_outputs *out, void *workspace);
size_t sampling_workspace_size_fast(const r1_sampling_desc *desc);
r1_status sampling_sample_fast(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out, void *workspace);
size_t sampling_workspace_size_cuda(const r1_sampling_desc *desc);
r1_status sampling_sample_cuda(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out, void *workspace,
                               void *stream);

/* What an invalid row reports (host outputs, n = top_logprobs): token -1,
 * logprob NaN, filtered row NaN, top ids -1 and top logprobs NaN. */
void sampling_write_invalid_row(const r1_sampling_outputs *out, int64_t b, size_t V,
                                int32_t n);

/* Reports the first invalid row (token -1) after a backend ran: R1_ENUMERIC
 * with a sentence, or R1_OK. `tokens` is host memory. */
r1_status sampling_report_invalid_rows(const int32_t *tokens, int64_t batch);

/* "null", "boolean", "number", "string", "array", "object": the JSON type
 * of a parsed cJSON item, for error sentences. */
struct cJSON;
const char *r1_json_type_name(const struct cJSON *item);


/* ---- answer backends (arguments already validated) ---------------------- */
#include "r1lab/answer.h"
/* Scratch size for one normalized answer (growth of \frac12 -> \frac{1}{2}
 * and Unicode -> LaTeX is at most 4x). */
#define ANSWER_SCRATCH (4 * R1_ANSWER_MAX_LENGTH + 64)
void answer_extract_ref(const char *text, size_t length, const r1_answer_options *options,
                        char *answer, size_t capacity, r1_answer_extraction *result);
void answer_extract_fast(const char *text, size_t length, const r1_answer_options *options,
                         char *answer, size_t capacity, r1_answer_extraction *result);
/* The fallback chain on text[region..n) (shared by fast: it runs only when
 * the region has no box). Returns found; *length = full answer length. */
int answer_fallbacks_ref(const char *text, size_t region, size_t n, const r1_answer_options *options,
                         char *answer, size_t capacity, size_t *length, r1_answer_source *source);
/* Normalizes `length` (<= R1_ANSWER_MAX_LENGTH) bytes into out[ANSWER_SCRATCH];
 * returns the normalized length. fast shares this one (answers are short). */
size_t answer_normalize_ref(const char *answer, size_t length, char *out);
/* Compares two normalized answers (NUL-terminated). */
r1_answer_verdict answer_compare_normalized_ref(const char *gold, const char *pred,
                                                const r1_answer_options *options);
r1_answer_verdict answer_equal_ref(const char *gold, size_t gold_length, const char *pred,
                                   size_t pred_length, const r1_answer_options *options);
r1_answer_verdict answer_equal_fast(const char *gold, size_t gold_length, const char *pred,
                                    size_t pred_length, const r1_answer_options *options);

#ifdef __cplusplus
}
#endif

/* ---- kd backends (desc already validated) --------------------------------- */
#include "r1lab/kd.h"
#ifdef __cplusplus
extern "C" {
#endif
/* Why a counted token's row could not be computed (R1_ENUMERIC). */
typedef enum kd_bad_reason {
    KD_ROW_OK = 0,
    KD_BAD_STUDENT = 1,      /* student logit NaN or +-inf                      */
    KD_BAD_TEACHER = 2,      /* teacher logit / logprob NaN or +inf             */
    KD_TEACHER_EMPTY = 3,    /* teacher row entirely -inf                       */
    KD_REVERSE_INFINITE = 4  /* beta = 1 and a teacher probability is 0         */
} kd_bad_reason;
/* The first bad token a backend met (first = -1: none) and how many. */
typedef struct kd_report {
    int64_t first;
    int32_t reason;
    int64_t count;
} kd_report;
/* Records row t's reason in the report (lowest t wins; not thread-safe). */
void kd_report_note(kd_report *report, int64_t t, int reason);
/* Counted tokens: labels != ignore_index (all N when labels is NULL). */
int64_t kd_counted_tokens(const r1_kd_desc *desc, const int32_t *labels);

size_t kd_workspace_size_ref(const r1_kd_desc *desc);
r1_status kd_loss_ref(const r1_kd_desc *desc, const r1_kd_inputs *in,
                      const r1_kd_outputs *out, void *workspace, kd_report *report);
size_t kd_linear_workspace_size_ref(const r1_kd_linear_desc *desc);
r1_status kd_linear_ref(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                        const r1_kd_linear_outputs *out, void *workspace, kd_report *report);
size_t kd_workspace_size_fast(const r1_kd_desc *desc);
r1_status kd_loss_fast(const r1_kd_desc *desc, const r1_kd_inputs *in,
                       const r1_kd_outputs *out, void *workspace, kd_report *report);
size_t kd_linear_workspace_size_fast(const r1_kd_linear_desc *desc);
r1_status kd_linear_fast(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                         const r1_kd_linear_outputs *out, void *workspace, kd_report *report);
/* cuda: also checks labels and sparse ids on the device (R1_EINVAL with the
 * same sentences as the host validation). */
size_t kd_workspace_size_cuda(const r1_kd_desc *desc);
r1_status kd_loss_cuda(const r1_kd_desc *desc, const r1_kd_inputs *in,
                       const r1_kd_outputs *out, void *workspace, kd_report *report,
                       void *stream);
size_t kd_linear_workspace_size_cuda(const r1_kd_linear_desc *desc);
r1_status kd_linear_cuda(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                         const r1_kd_linear_outputs *out, void *workspace, kd_report *report,
                         void *stream);
/* The sentences for bad labels / ids, shared by host and device validation. */
r1_status kd_fail_label(int64_t t, int32_t label, int64_t vocab, int32_t ignore_index);
r1_status kd_fail_sparse_id(int64_t t, int32_t j, int32_t id, int64_t vocab, int repeated);
#ifdef __cplusplus
}
#endif
/* ---- mla backends (begin; desc already validated) ----------------------- */
#include "r1lab/mla.h"
#ifdef __cplusplus
extern "C" {
#endif
/* RoPE frequencies of the config: inv_freq (dr/2), YaRN-adjusted when
 * config->yarn; *cos_sin_scale = mscale(factor, mscale) / mscale(factor,
 * mscale_all_dim) with YaRN, else 1 (ref/mla.c). */
void mla_rope_frequencies_ref(const r1_mla_config *config, double *inv_freq,
                              double *cos_sin_scale);
r1_status mla_decode_ref(const r1_mla_decode_desc *desc, const float *q,
                         const r1_mla_cache *cache, float *out, float *lse);
r1_status mla_decode_fast(const r1_mla_decode_desc *desc, const float *q,
                          const r1_mla_cache *cache, float *out, float *lse);
size_t mla_decode_workspace_size_cuda(const r1_mla_decode_desc *desc);
r1_status mla_decode_cuda(const r1_mla_decode_desc *desc, const void *q,
                          const r1_mla_cache *cache, void *out, float *lse, void *workspace,
                          void *stream);
size_t mla_forward_workspace_size_ref(const r1_mla_forward_desc *desc);
r1_status mla_forward_ref(const r1_mla_forward_desc *desc, const r1_mla_weights *weights,
                          const float *x, r1_mla_cache *cache, float *out, void *workspace);
size_t mla_forward_workspace_size_fast(const r1_mla_forward_desc *desc);
r1_status mla_forward_fast(const r1_mla_forward_desc *desc, const r1_mla_weights *weights,
                           const float *x, r1_mla_cache *cache, float *out, void *workspace);
#ifdef __cplusplus
}
#endif
/* ---- mla backends (end) ---------------------------------------------------- */


/* ---- moe backends (desc and pointers already validated) ------------------ */
#ifndef R1LAB_CORE_INTERNAL_MOE
#define R1LAB_CORE_INTERNAL_MOE
#include "r1lab/moe.h"
#ifdef __cplusplus
extern "C" {
#endif
/* R1_ENUMERIC naming the first token with a non-finite logit (or expert with
 * a non-finite bias); host memory. */
r1_status moe_check_logits_host(const r1_moe_desc *desc, const float *logits,
                                const float *bias);
r1_status moe_gate_logits_ref(const r1_moe_desc *desc, const float *x, const float *gate_weight,
                              float *logits);
r1_status moe_route_ref(const r1_moe_desc *desc, const float *logits, const float *bias,
                        int32_t *ids, float *weights);
r1_status moe_dispatch_ref(const r1_moe_desc *desc, const int32_t *ids,
                           const r1_moe_dispatch_out *out);
r1_status moe_permute_ref(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                          const int32_t *inverse, void *x_sorted);
r1_status moe_combine_ref(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                          const int32_t *inverse, const float *weights, const void *shared,
                          void *y);
r1_status moe_balance_ref(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                          double alpha, float gamma, const r1_moe_balance_out *out);
r1_status moe_layer_ref(const r1_moe_desc *desc, const r1_moe_layer_weights *weights,
                        const float *x, float *y);

r1_status moe_gate_logits_fast(const r1_moe_desc *desc, const float *x,
                               const float *gate_weight, float *logits);
r1_status moe_route_fast(const r1_moe_desc *desc, const float *logits, const float *bias,
                         int32_t *ids, float *weights);
size_t moe_dispatch_workspace_size_fast(const r1_moe_desc *desc);
r1_status moe_dispatch_fast(const r1_moe_desc *desc, const int32_t *ids,
                            const r1_moe_dispatch_out *out, void *workspace);
r1_status moe_permute_fast(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                           const int32_t *inverse, void *x_sorted);
r1_status moe_combine_fast(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                           const int32_t *inverse, const float *weights, const void *shared,
                           void *y);
r1_status moe_balance_fast(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                           double alpha, float gamma, const r1_moe_balance_out *out);

size_t moe_route_workspace_size_cuda(const r1_moe_desc *desc);
size_t moe_dispatch_workspace_size_cuda(const r1_moe_desc *desc);
r1_status moe_gate_logits_cuda(const r1_moe_desc *desc, const float *x,
                               const float *gate_weight, float *logits, void *stream);
r1_status moe_route_cuda(const r1_moe_desc *desc, const float *logits, const float *bias,
                         int32_t *ids, float *weights, void *workspace, void *stream);
r1_status moe_dispatch_cuda(const r1_moe_desc *desc, const int32_t *ids,
                            const r1_moe_dispatch_out *out, void *workspace, void *stream);
r1_status moe_permute_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                           const int32_t *inverse, void *x_sorted, void *stream);
r1_status moe_combine_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                           const int32_t *inverse, const float *weights, const void *shared,
                           void *y, void *stream);
r1_status moe_balance_cuda(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                           double alpha, float gamma, const r1_moe_balance_out *out);
/* Test hook: the CUDA gate's sigmoid against r1_moe_sigmoid_inline over all
 * 2^32 float inputs; the number of differing bit patterns and the smallest. */
r1_status moe_cuda_check_sigmoid(uint64_t *mismatches, uint32_t *first_input);
#ifdef __cplusplus
}
#endif
#endif /* R1LAB_CORE_INTERNAL_MOE */
/* ---- end of moe ----------------------------------------------------------- */

/* ---- qgemm backends (begin; descriptors already validated) -------------- */
#include "r1lab/qgemm.h"
#ifdef __cplusplus
extern "C" {
#endif
/* Quantizes rows [row_begin, row_end) of x (FP8 weights: whole 128-row
 * blocks); shared by ref and fast (fast runs it on several threads). */
void qgemm_quantize_rows_ref(const r1_qgemm_quant_desc *desc, int64_t row_begin,
                             int64_t row_end, const float *x, void *q, float *scale,
                             uint8_t *zero);
r1_status qgemm_quantize_fast(const r1_qgemm_quant_desc *desc, const float *x, void *q,
                              float *scale, uint8_t *zero);
r1_status qgemm_quantize_cuda(const r1_qgemm_quant_desc *desc, const float *x, void *q,
                              float *scale, uint8_t *zero, void *stream);
r1_status qgemm_gemm_ref(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y);
r1_status qgemm_gemm_fast(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y);
r1_status qgemm_gemm_cuda(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y,
                          void *stream);
r1_status qgemm_w8a8_accumulators_ref(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                      const int8_t *w, int32_t *acc);
r1_status qgemm_w8a8_accumulators_fast(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                       const int8_t *w, int32_t *acc);
r1_status qgemm_w8a8_accumulators_cuda(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                       const int8_t *w, int32_t *acc, void *stream);
#ifdef __cplusplus
}
#endif
/* ---- qgemm backends (end) ------------------------------------------------- */

#endif /* R1LAB_CORE_INTERNAL_H */
