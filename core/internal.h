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
#endif
