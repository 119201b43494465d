/*
 * r1lab/qgemm.h — quantized matrix products for serving the teacher and the
 * student: W8A8 int8, W4A16 int4 and FP8 E4M3 with DeepSeek-V3 block scaling.
 *
 * WHAT IT COMPUTES
 *     Y (M, N) = X (M, K) · Wᵀ  [+ bias (N)],   W is (N, K), output f32 or bf16.
 * Every backend (ref, fast, cuda) implements the same text below; the golden
 * files (golden/gen/qgemm.py, numpy) are an independent implementation of it.
 *
 * QUANTIZERS (r1_qgemm_quantize). Input float32, finite (NaN / Inf is
 * R1_ENUMERIC naming the first bad index). All arithmetic is float32, in the
 * order written, with correctly rounded division; rint() rounds half to even.
 * Every amax is floored at R1_QGEMM_AMAX_FLOOR = 1e-4 (DeepSeek-V3's act_quant
 * floor), so an all-zero row, group or tile gets a small positive scale and
 * quantizes to zeros instead of 0/0.
 *   W8A8, activations and weights alike, one scale per row (per token /
 *     per output channel):   s[r] = max(amax_r, 1e-4) / 127
 *                            q[r, k] = clamp(rint(x[r, k] / s[r]), -127, 127)   (int8)
 *   W4A16 weights, groups of 128 along K, scale (N, K/128):
 *     symmetric:   s = max(amax_g, 1e-4) / 7;  q = clamp(rint(x / s), -8, 7)
 *                  stored as signed nibbles (R1_I4 layout: element 2i low nibble)
 *     asymmetric:  lo = min(min_g, 0), hi = max(max_g, 0);
 *                  s = max(hi - lo, 1e-4) / 15;  z = clamp(rint(-lo / s), 0, 15);
 *                  q = clamp(rint(x / s) + z, 0, 15)   stored as unsigned nibbles,
 *                  zero points z as uint8 (N, K/128).
 *     (W4A16 activations are not quantized: they are bf16, r1_f32_to_bf16.)
 *   FP8 activations, 1 x 128 tiles along K, scale (M, K/128);
 *   FP8 weights, 128 x 128 blocks, scale (ceil(N/128), K/128) (the last block
 *     row may be partial):
 *                  s = max(amax_tile, 1e-4) / 448
 *                  pow2_scales: s = the smallest power of two >= s (UE8M0-style)
 *                  q = e4m3(x / s), round to nearest even, saturating at +-448
 *                  (r1_f32_to_f8e4m3).
 * Dequantize (host only) is the inverse map in float32:
 *   W8A8 q * s;  W4A16 (q - z) * s (z = 0 symmetric);  FP8 e4m3_to_f32(q) * s.
 *
 * PRODUCTS (r1_qgemm). Scales are the quantizer's.
 *   W8A8   acc[m, n] = sum_k qx[m, k] * qw[n, k]     exact int32 (K <= 131071)
 *          y = ((float)acc * s_x[m]) * s_w[n]  (+ bias[n])        float32 ops
 *   W4A16  y = sum_k x[m, k] * ((qw[n, k] - z[n, g]) * s_w[n, g]),  g = k / 128
 *          (fp32 accumulation; x is bf16)
 *   FP8    for each K block kb of 128 (DeepGEMM-style promotion):
 *              p = sum_{k in kb} e4m3(qx[m, k]) * e4m3(qw[n, k])   (float32)
 *              acc += p * (s_x[m, kb] * s_w[n / 128, kb])           (float32)
 *          y = acc (+ bias[n])
 *   Output bf16 is the float32 y rounded to nearest even (r1_f32_to_bf16).
 * Agreement: W8A8 accumulators agree bit for bit across backends
 * (r1_qgemm_w8a8_accumulators); W8A8 outputs within float32 rounding; W4A16
 * and FP8 within relative L2 1e-3 of ref on the same quantized values
 * (summation order differs between backends).
 *
 * SHAPES (R1_EINVAL otherwise). M, N, K in [1, 2^31 - 1] (quantizers: rows
 * and cols in [1, 2^31 - 1]), and every operand at most R1_QGEMM_MAX_ELEMENTS
 * = 2^56 elements: M * K (x), N * K (w), M * N (y; rows * cols for a
 * quantizer), so every byte count fits in a 64-bit size_t. W8A8: K <= 131071
 * (exact int32: K * 128^2 < 2^31). W4A16 and FP8: K a positive multiple of 128
 * (groups and blocks are whole). Every scale array has its shape stated in the
 * operands and checked.
 *
 * MEMORY. ref / fast: host pointers. cuda: device pointers and a
 * cudaStream_t (NULL = default stream); the call only enqueues work, except
 * r1_qgemm_quantize, which waits to report NaN / Inf. No workspace.
 * cuda FP8 needs sm_89 or newer (e4m3 tensor cores): R1_EUNSUPPORTED below.
 */
#ifndef R1LAB_QGEMM_H
#define R1LAB_QGEMM_H

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum r1_qgemm_scheme {
    R1_QGEMM_W8A8 = 0,  /* int8 x int8, per-token x per-channel scales */
    R1_QGEMM_W4A16 = 1, /* bf16 x int4, group-128 scales (+ zero points)  */
    R1_QGEMM_FP8 = 2    /* e4m3 x e4m3, 1x128 / 128x128 block scales      */
} r1_qgemm_scheme;

#define R1_QGEMM_BLOCK 128        /* K block (FP8) and group (W4A16) size */
#define R1_QGEMM_AMAX_FLOOR 1e-4f /* every amax is floored here           */
#define R1_QGEMM_W8A8_MAX_K 131071
#define R1_QGEMM_MAX_ELEMENTS ((int64_t)1 << 56) /* per operand, see SHAPES */

/* "w8a8", "w4a16", "fp8"; "unknown" otherwise. */
const char *r1_qgemm_scheme_name(r1_qgemm_scheme scheme);

/* Which operand a quantizer makes. */
typedef enum r1_qgemm_role {
    R1_QGEMM_ACTIVATIONS = 0, /* x (M, K): W8A8 per row, FP8 1x128 tiles     */
    R1_QGEMM_WEIGHTS = 1      /* w (N, K): W8A8 per row, W4A16 groups, FP8 128x128 */
} r1_qgemm_role;

typedef struct r1_qgemm_quant_desc {
    r1_qgemm_scheme scheme;
    r1_qgemm_role role;
    int64_t rows, cols; /* (M, K) or (N, K)                                 */
    int asymmetric;     /* W4A16 weights: unsigned nibbles + zero points    */
    int pow2_scales;    /* FP8: scales rounded up to powers of two          */
} r1_qgemm_quant_desc;

/* Element count of the scale array a quantizer writes (and r1_qgemm reads),
 * as (scale_rows, scale_cols); 0 x 0 for a combination that has none
 * (W4A16 activations) or an invalid descriptor. Zero points (W4A16
 * asymmetric) have the scale's shape. */
void r1_qgemm_scale_shape(const r1_qgemm_quant_desc *desc, int64_t *scale_rows,
                          int64_t *scale_cols);

/* Bytes of the quantized array q: rows * cols for int8 / e4m3, rows * cols / 2
 * for int4. 0 for a descriptor r1_qgemm_quantize refuses (any rule under
 * SHAPES, W4A16 activations included; the sentence is in r1_last_error). */
size_t r1_qgemm_quantized_bytes(const r1_qgemm_quant_desc *desc);

/* Quantizes x (rows, cols) float32 into q (r1_qgemm_quantized_bytes bytes),
 * scale (float32, r1_qgemm_scale_shape) and, for W4A16 asymmetric, zero
 * (uint8, same shape; NULL otherwise). R1_EINVAL for a bad descriptor or a
 * W4A16 activation request (use r1_f32_to_bf16), R1_ENUMERIC naming the first
 * index (row, column) of a NaN or Inf. cuda: device pointers; synchronous.
 * q, scale and zero must not overlap x or each other (R1_EINVAL naming both). */
r1_status r1_qgemm_quantize(r1_backend backend, const r1_qgemm_quant_desc *desc,
                            const float *x, void *q, float *scale, uint8_t *zero,
                            void *stream);

/* The inverse map into float32 x (rows, cols); host pointers, every backend's
 * quantized data is the same bytes. */
r1_status r1_qgemm_dequantize(const r1_qgemm_quant_desc *desc, const void *q,
                              const float *scale, const uint8_t *zero, float *x);

/* ---- products --------------------------------------------------------------- */

typedef struct r1_qgemm_desc {
    r1_qgemm_scheme scheme;
    int64_t M, N, K;
    r1_dtype out_dtype; /* R1_F32 or R1_BF16                           */
    int asymmetric;     /* W4A16: w holds unsigned nibbles, w_zero set */
} r1_qgemm_desc;

typedef struct r1_qgemm_operands {
    const void *x;          /* W8A8 int8 (M, K); W4A16 bf16 bits (M, K); FP8 e4m3 (M, K) */
    const float *x_scale;   /* W8A8 (M); FP8 (M, K/128); W4A16 NULL                      */
    const void *w;          /* W8A8 int8 (N, K); W4A16 packed (N, K/2); FP8 e4m3 (N, K)  */
    const float *w_scale;   /* W8A8 (N); W4A16 (N, K/128); FP8 (ceil(N/128), K/128)      */
    const uint8_t *w_zero;  /* W4A16 asymmetric (N, K/128); NULL otherwise              */
    const float *bias;      /* (N) or NULL                                              */
    /* The shapes of the scale arrays the caller holds, checked against the
     * scheme's (a 1-D array is (n, 1)). */
    int64_t x_scale_rows, x_scale_cols;
    int64_t w_scale_rows, w_scale_cols;
} r1_qgemm_operands;

/* The scale shapes r1_qgemm expects for desc, written into the four shape
 * fields of `operands` (a convenience for callers). */
void r1_qgemm_set_scale_shapes(const r1_qgemm_desc *desc, r1_qgemm_operands *operands);

/* Checks everything r1_qgemm checks (shapes, alignment, scale shapes,
 * pointers), without running. */
r1_status r1_qgemm_validate(const r1_qgemm_desc *desc, const r1_qgemm_operands *operands,
                            const void *y);

/* y (M, N) in desc->out_dtype. y must not overlap x, w, x_scale, w_scale,
 * w_zero or bias (R1_EINVAL naming both arguments, also from
 * r1_qgemm_validate). */
r1_status r1_qgemm(r1_backend backend, const r1_qgemm_desc *desc,
                   const r1_qgemm_operands *operands, void *y, void *stream);

/* Test mode of W8A8: the exact int32 accumulators acc (M, N) =
 * sum_k x[m, k] * w[n, k] of int8 x (M, K) and w (N, K), no scaling. acc
 * must not overlap x or w (R1_EINVAL naming both arguments). */
r1_status r1_qgemm_w8a8_accumulators(r1_backend backend, int64_t M, int64_t N, int64_t K,
                                     const int8_t *x, const int8_t *w, int32_t *acc,
                                     void *stream);

/* fast backend: the int8 dot-product path it uses here ("avx512-vnni",
 * "avx-vnni", "avx2" or "scalar"). R1LAB_QGEMM_ISA=<name> in the environment
 * caps it (tests run every available path). */
const char *r1_qgemm_fast_isa(void);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_QGEMM_H */
