/*
 * ref/qgemm.c — quantized matrix products, written as the math.
 *
 *     Y (M, N) = X (M, K) · Wᵀ [+ bias],  W is (N, K)
 *
 * Three ways to store X and W in fewer bits (r1lab/qgemm.h has the full text):
 *
 *   W8A8   x ≈ qx · s_x[m],  w ≈ qw · s_w[n],  qx, qw int8, s = amax / 127
 *          Y[m, n] = s_x[m] · s_w[n] · Σ_k qx[m, k] · qw[n, k]
 *          The sum is of integers: exact in int32.
 *   W4A16  w ≈ (qw − z) · s_w[n, g] per group g of 128 along K, qw 4 bits;
 *          x stays bf16.  Y[m, n] = Σ_k x[m, k] · (qw[n, k] − z[n, g]) · s_w[n, g]
 *   FP8    (DeepSeek-V3) x ≈ e4m3(qx) · s_x[m, kb] in 1 × 128 tiles,
 *          w ≈ e4m3(qw) · s_w[n/128, kb] in 128 × 128 blocks:
 *          Y[m, n] = Σ_kb s_x[m, kb] · s_w[n/128, kb] · Σ_{k ∈ kb} qx[m, k] · qw[n, k]
 *          The inner sum (one block of 128) is taken in float32, as an fp8
 *          tensor core does, then scaled and added to a float32 accumulator
 *          ("promotion", DeepGEMM): the accumulation error never grows past
 *          one block.
 *
 * Letters: M tokens (rows of X), N output channels (rows of W), K the shared
 * dimension, B = 128 the block / group size, G = K / B blocks per row.
 *
 * Every amax is floored at 1e-4 (DeepSeek-V3's act_quant), so an all-zero row
 * or tile quantizes to zeros with a small positive scale.
 */
#include <math.h>
#include <string.h>

#include "core/internal.h"

#define B R1_QGEMM_BLOCK

/* ---- quantizers ------------------------------------------------------------------ */

/* The largest |x[i]| of count values spaced stride apart, floored at 1e-4. */
static float floored_amax(const float *x, int64_t count, int64_t stride) {
    float amax = 0.0f;
    for (int64_t i = 0; i < count; ++i) amax = fmaxf(amax, fabsf(x[i * stride]));
    return fmaxf(amax, R1_QGEMM_AMAX_FLOOR);
}

/* The smallest power of two >= s (s > 0, finite): exact, through frexp
 * (s = f · 2^e with f in [0.5, 1); f = 0.5 means s is already 2^(e-1)). */
static float power_of_two_at_least(float s) {
    int e;
    float f = frexpf(s, &e);
    return f == 0.5f ? ldexpf(1.0f, e - 1) : ldexpf(1.0f, e);
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* W8A8, one row of K: s = amax / 127, q = clamp(rint(x / s), -127, 127).
 * x (K), q (K). */
static void quantize_row_int8(const float *x, int64_t K, int8_t *q, float *scale) {
    float s = floored_amax(x, K, 1) / 127.0f;
    for (int64_t k = 0; k < K; ++k) q[k] = (int8_t)clampf(rintf(x[k] / s), -127.0f, 127.0f);
    *scale = s;
}

/* W4A16, one group of 128 weights of row n, starting at column k0 (element
 * index `first` of the packed row-major (N, K) array).
 *   symmetric:  s = amax / 7, q = clamp(rint(x / s), -8, 7)
 *   asymmetric: lo = min(min x, 0), hi = max(max x, 0), s = (hi - lo) / 15,
 *               z = clamp(rint(-lo / s), 0, 15), q = clamp(rint(x / s) + z, 0, 15) */
static void quantize_group_int4(const float *x, int asymmetric, uint8_t *packed,
                                size_t first, float *scale, uint8_t *zero) {
    if (!asymmetric) {
        float s = floored_amax(x, B, 1) / 7.0f;
        for (int k = 0; k < B; ++k)
            r1_i4_set(packed, first + (size_t)k, (int)clampf(rintf(x[k] / s), -8.0f, 7.0f));
        *scale = s;
        return;
    }
    float lo = 0.0f, hi = 0.0f;
    for (int k = 0; k < B; ++k) {
        lo = fminf(lo, x[k]);
        hi = fmaxf(hi, x[k]);
    }
    float s = fmaxf(hi - lo, R1_QGEMM_AMAX_FLOOR) / 15.0f;
    float z = clampf(rintf(-lo / s), 0.0f, 15.0f);
    for (int k = 0; k < B; ++k)
        r1_i4_set(packed, first + (size_t)k, (int)clampf(rintf(x[k] / s) + z, 0.0f, 15.0f));
    *scale = s;
    *zero = (uint8_t)z;
}

/* FP8: the scale of a tile with the given amax: amax / 448, optionally rounded
 * up to a power of two. */
static float fp8_scale(float amax, int pow2_scales) {
    float s = amax / 448.0f;
    return pow2_scales ? power_of_two_at_least(s) : s;
}

/* FP8 activations, one 1 x 128 tile: x (B), q (B). */
static void quantize_tile_fp8(const float *x, int pow2_scales, uint8_t *q, float *scale) {
    float s = fp8_scale(floored_amax(x, B, 1), pow2_scales);
    for (int k = 0; k < B; ++k) q[k] = r1_f32_to_f8e4m3(x[k] / s);
    *scale = s;
}

/* FP8 weights, one block of rows [n0, n1) (n1 - n0 <= 128) x columns [k0, k0 + 128)
 * of w (N, K). */
static void quantize_block_fp8(const float *w, int64_t K, int64_t n0, int64_t n1, int64_t k0,
                               int pow2_scales, uint8_t *q, float *scale) {
    float amax = 0.0f;
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t k = k0; k < k0 + B; ++k) amax = fmaxf(amax, fabsf(w[n * K + k]));
    float s = fp8_scale(fmaxf(amax, R1_QGEMM_AMAX_FLOOR), pow2_scales);
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t k = k0; k < k0 + B; ++k) q[n * K + k] = r1_f32_to_f8e4m3(w[n * K + k] / s);
    *scale = s;
}

/* Rows [row_begin, row_end) of x (rows, K); for FP8 weights the range covers
 * whole 128-row blocks (row_begin a multiple of 128). */
void qgemm_quantize_rows_ref(const r1_qgemm_quant_desc *desc, int64_t row_begin,
                             int64_t row_end, const float *x, void *q, float *scale,
                             uint8_t *zero) {
    const int64_t K = desc->cols, G = K / B;
    switch (desc->scheme) {
    case R1_QGEMM_W8A8:
        for (int64_t r = row_begin; r < row_end; ++r)
            quantize_row_int8(x + r * K, K, (int8_t *)q + r * K, &scale[r]);
        break;
    case R1_QGEMM_W4A16:
        for (int64_t r = row_begin; r < row_end; ++r)
            for (int64_t g = 0; g < G; ++g)
                quantize_group_int4(x + r * K + g * B, desc->asymmetric, q,
                                    (size_t)(r * K + g * B), &scale[r * G + g],
                                    desc->asymmetric ? &zero[r * G + g] : NULL);
        break;
    case R1_QGEMM_FP8:
        if (desc->role == R1_QGEMM_ACTIVATIONS) {
            for (int64_t r = row_begin; r < row_end; ++r)
                for (int64_t g = 0; g < G; ++g)
                    quantize_tile_fp8(x + r * K + g * B, desc->pow2_scales,
                                      (uint8_t *)q + r * K + g * B, &scale[r * G + g]);
        } else {
            for (int64_t n0 = row_begin; n0 < row_end; n0 += B) {
                int64_t n1 = n0 + B < desc->rows ? n0 + B : desc->rows;
                for (int64_t g = 0; g < G; ++g)
                    quantize_block_fp8(x, K, n0, n1, g * B, desc->pow2_scales, q,
                                       &scale[(n0 / B) * G + g]);
            }
        }
        break;
    }
}

/* ---- products ---------------------------------------------------------------------- */

/* Σ_k x[k] · w[k] of two int8 rows, exact: |term| <= 2^14, K <= 131071. */
static int32_t dot_int8(const int8_t *x, const int8_t *w, int64_t K) {
    int32_t acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += (int32_t)x[k] * (int32_t)w[k];
    return acc;
}

/* acc (M, N) = X (M, K) · Wᵀ, W (N, K), int8 -> int32. */
r1_status qgemm_w8a8_accumulators_ref(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                      const int8_t *w, int32_t *acc) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) acc[m * N + n] = dot_int8(x + m * K, w + n * K, K);
    return R1_OK;
}

/* Stores y[i] as f32 or bf16 (round to nearest even). */
static void store_output(void *y, r1_dtype dtype, size_t i, float value) {
    if (dtype == R1_BF16) ((uint16_t *)y)[i] = r1_f32_to_bf16(value);
    else ((float *)y)[i] = value;
}

/* W8A8: y = ((float)acc · s_x[m]) · s_w[n] + bias[n], in float32. */
static void gemm_w8a8(const r1_qgemm_desc *d, const r1_qgemm_operands *o, void *y) {
    const int8_t *x = o->x, *w = o->w;
    for (int64_t m = 0; m < d->M; ++m)
        for (int64_t n = 0; n < d->N; ++n) {
            int32_t acc = dot_int8(x + m * d->K, w + n * d->K, d->K);
            float value = ((float)acc * o->x_scale[m]) * o->w_scale[n];
            if (o->bias) value += o->bias[n];
            store_output(y, d->out_dtype, (size_t)(m * d->N + n), value);
        }
}

/* The dequantized int4 weight (q - z) · s of element k of row n. */
static float int4_weight(const r1_qgemm_desc *d, const r1_qgemm_operands *o, int64_t n,
                         int64_t k) {
    const int64_t G = d->K / B, g = n * G + k / B;
    int nibble = r1_i4_get(o->w, (size_t)(n * d->K + k));
    int level = d->asymmetric ? (nibble & 0xF) - (int)o->w_zero[g] : nibble;
    return (float)level * o->w_scale[g];
}

/* W4A16: y = Σ_k x[m, k] · w_deq[n, k] (+ bias), summed in float64. */
static void gemm_w4a16(const r1_qgemm_desc *d, const r1_qgemm_operands *o, void *y) {
    const uint16_t *x = o->x;
    for (int64_t m = 0; m < d->M; ++m)
        for (int64_t n = 0; n < d->N; ++n) {
            double acc = 0.0;
            for (int64_t k = 0; k < d->K; ++k)
                acc += (double)r1_bf16_to_f32(x[m * d->K + k]) * (double)int4_weight(d, o, n, k);
            float value = (float)acc;
            if (o->bias) value += o->bias[n];
            store_output(y, d->out_dtype, (size_t)(m * d->N + n), value);
        }
}

/* FP8: per K block, a float32 partial sum of e4m3 products, promoted into the
 * float32 accumulator with the two block scales. */
static void gemm_fp8(const r1_qgemm_desc *d, const r1_qgemm_operands *o, void *y) {
    const uint8_t *x = o->x, *w = o->w;
    const int64_t G = d->K / B;
    for (int64_t m = 0; m < d->M; ++m)
        for (int64_t n = 0; n < d->N; ++n) {
            float acc = 0.0f;
            for (int64_t kb = 0; kb < G; ++kb) {
                float partial = 0.0f;
                for (int64_t k = kb * B; k < (kb + 1) * B; ++k)
                    partial += r1_f8e4m3_to_f32(x[m * d->K + k]) * r1_f8e4m3_to_f32(w[n * d->K + k]);
                acc += partial * (o->x_scale[m * G + kb] * o->w_scale[(n / B) * G + kb]);
            }
            if (o->bias) acc += o->bias[n];
            store_output(y, d->out_dtype, (size_t)(m * d->N + n), acc);
        }
}

r1_status qgemm_gemm_ref(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y) {
    switch (desc->scheme) {
    case R1_QGEMM_W8A8: gemm_w8a8(desc, ops, y); break;
    case R1_QGEMM_W4A16: gemm_w4a16(desc, ops, y); break;
    case R1_QGEMM_FP8: gemm_fp8(desc, ops, y); break;
    }
    return R1_OK;
}
