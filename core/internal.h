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

#ifdef __cplusplus
}
#endif
#endif

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
                          const int32_t *permutation, void *x_sorted);
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
                           const int32_t *permutation, void *x_sorted);
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
                           const int32_t *permutation, void *x_sorted, void *stream);
r1_status moe_combine_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                           const int32_t *inverse, const float *weights, const void *shared,
                           void *y, void *stream);
#ifdef __cplusplus
}
#endif
#endif /* R1LAB_CORE_INTERNAL_MOE */
/* ---- end of moe ----------------------------------------------------------- */
