/*
 * core/qgemm.c — the public qgemm entry points: validate once (shapes, K
 * alignment, scale shapes, pointers, finite quantizer inputs), then dispatch
 * to ref/, fast/ or kernels/. Semantics are in r1lab/qgemm.h.
 */
#include <math.h>
#include <stdlib.h>

#include "core/internal.h"

const char *r1_qgemm_scheme_name(r1_qgemm_scheme scheme) {
    switch (scheme) {
    case R1_QGEMM_W8A8: return "w8a8";
    case R1_QGEMM_W4A16: return "w4a16";
    case R1_QGEMM_FP8: return "fp8";
    }
    return "unknown";
}

static int scheme_valid(r1_qgemm_scheme scheme) {
    return scheme == R1_QGEMM_W8A8 || scheme == R1_QGEMM_W4A16 || scheme == R1_QGEMM_FP8;
}

/* a * b <= R1_QGEMM_MAX_ELEMENTS, for a, b in [1, 2^31) (the division
 * cannot overflow). */
static int product_fits(int64_t a, int64_t b) { return a <= R1_QGEMM_MAX_ELEMENTS / b; }

static int64_t blocks_of(int64_t n) { return (n + R1_QGEMM_BLOCK - 1) / R1_QGEMM_BLOCK; }

/* ---- quantizers ------------------------------------------------------------------ */

static r1_status validate_quant_desc(const r1_qgemm_quant_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (!scheme_valid(desc->scheme))
        return r1_fail(R1_EINVAL, "scheme = %d: expected R1_QGEMM_W8A8, _W4A16 or _FP8",
                       (int)desc->scheme);
    if (desc->role != R1_QGEMM_ACTIVATIONS && desc->role != R1_QGEMM_WEIGHTS)
        return r1_fail(R1_EINVAL, "role = %d: expected R1_QGEMM_ACTIVATIONS or _WEIGHTS",
                       (int)desc->role);
    if (desc->rows <= 0 || desc->cols <= 0)
        return r1_fail(R1_EINVAL, "rows = %lld, cols = %lld: both must be > 0",
                       (long long)desc->rows, (long long)desc->cols);
    if (desc->rows > INT32_MAX || desc->cols > INT32_MAX)
        return r1_fail(R1_EINVAL, "rows = %lld, cols = %lld: each must be < 2^31",
                       (long long)desc->rows, (long long)desc->cols);
    if (!product_fits(desc->rows, desc->cols))
        return r1_fail(R1_EINVAL, "rows * cols = %lld * %lld: more than 2^56 elements",
                       (long long)desc->rows, (long long)desc->cols);
    if (desc->scheme == R1_QGEMM_W4A16 && desc->role == R1_QGEMM_ACTIVATIONS)
        return r1_fail(R1_EINVAL, "W4A16 activations are not quantized: they are bf16 "
                                  "(convert with r1_f32_to_bf16)");
    if (desc->scheme != R1_QGEMM_W8A8 && desc->cols % R1_QGEMM_BLOCK != 0)
        return r1_fail(R1_EINVAL,
                       "cols (K) = %lld: %s quantizes K in blocks of %d, so K must be a "
                       "multiple of %d",
                       (long long)desc->cols, r1_qgemm_scheme_name(desc->scheme),
                       R1_QGEMM_BLOCK, R1_QGEMM_BLOCK);
    if (desc->asymmetric && desc->scheme != R1_QGEMM_W4A16)
        return r1_fail(R1_EINVAL, "asymmetric = 1 is only defined for W4A16 weights");
    if (desc->pow2_scales && desc->scheme != R1_QGEMM_FP8)
        return r1_fail(R1_EINVAL, "pow2_scales = 1 is only defined for FP8");
    return R1_OK;
}

void r1_qgemm_scale_shape(const r1_qgemm_quant_desc *desc, int64_t *scale_rows,
                          int64_t *scale_cols) {
    int64_t r = 0, c = 0;
    if (desc != NULL && scheme_valid(desc->scheme) && desc->rows > 0 && desc->cols > 0 &&
        desc->rows <= INT32_MAX && desc->cols <= INT32_MAX &&
        product_fits(desc->rows, desc->cols)) {
        if (desc->scheme == R1_QGEMM_W8A8) {
            r = desc->rows;
            c = 1;
        } else if (desc->scheme == R1_QGEMM_W4A16) {
            if (desc->role == R1_QGEMM_WEIGHTS) {
                r = desc->rows;
                c = desc->cols / R1_QGEMM_BLOCK;
            }
        } else {
            r = desc->role == R1_QGEMM_WEIGHTS ? blocks_of(desc->rows) : desc->rows;
            c = desc->cols / R1_QGEMM_BLOCK;
        }
    }
    if (scale_rows) *scale_rows = r;
    if (scale_cols) *scale_cols = c;
}

size_t r1_qgemm_quantized_bytes(const r1_qgemm_quant_desc *desc) {
    if (validate_quant_desc(desc) != R1_OK) return 0;
    size_t count = (size_t)desc->rows * (size_t)desc->cols;
    return desc->scheme == R1_QGEMM_W4A16 ? count / 2 : count;
}

/* First NaN / Inf of x (host), as R1_ENUMERIC with its index, or R1_OK. */
static r1_status check_finite(const float *x, int64_t rows, int64_t cols) {
    size_t count = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < count; ++i) {
        if (!isfinite(x[i]))
            return r1_fail(R1_ENUMERIC,
                           "x[%zu] (row %lld, column %lld) = %g: quantizer inputs must be "
                           "finite",
                           i, (long long)(i / (size_t)cols), (long long)(i % (size_t)cols),
                           (double)x[i]);
    }
    return R1_OK;
}

r1_status r1_qgemm_quantize(r1_backend backend, const r1_qgemm_quant_desc *desc,
                            const float *x, void *q, float *scale, uint8_t *zero,
                            void *stream) {
    r1_status status = validate_quant_desc(desc);
    if (status != R1_OK) return status;
    if (x == NULL || q == NULL || scale == NULL)
        return r1_fail(R1_EINVAL, "x, q and scale must not be NULL");
    if (desc->asymmetric && zero == NULL)
        return r1_fail(R1_EINVAL, "asymmetric W4A16 needs the zero-point array (zero is NULL)");
    {
        int64_t sr, sc;
        r1_qgemm_scale_shape(desc, &sr, &sc);
        const size_t x_bytes = (size_t)desc->rows * (size_t)desc->cols * sizeof(float);
        const size_t q_bytes = r1_qgemm_quantized_bytes(desc);
        const size_t scale_count = (size_t)sr * (size_t)sc;
        const uint8_t *z = desc->asymmetric ? zero : NULL;
        if ((status = r1_check_no_overlap("q", q, q_bytes, "x", x, x_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("scale", scale, scale_count * sizeof(float), "x", x,
                                          x_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("zero", z, scale_count, "x", x, x_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("scale", scale, scale_count * sizeof(float), "q", q,
                                          q_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("zero", z, scale_count, "q", q, q_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("zero", z, scale_count, "scale", scale,
                                          scale_count * sizeof(float))) != R1_OK)
            return status;
    }
    status = r1_check_backend(backend);
    if (status != R1_OK) return status;
    if (backend == R1_CUDA) return qgemm_quantize_cuda(desc, x, q, scale, zero, stream);
    status = check_finite(x, desc->rows, desc->cols);
    if (status != R1_OK) return status;
    if (backend == R1_FAST) return qgemm_quantize_fast(desc, x, q, scale, zero);
    qgemm_quantize_rows_ref(desc, 0, desc->rows, x, q, scale, zero);
    return R1_OK;
}

r1_status r1_qgemm_dequantize(const r1_qgemm_quant_desc *desc, const void *q,
                              const float *scale, const uint8_t *zero, float *x) {
    r1_status status = validate_quant_desc(desc);
    if (status != R1_OK) return status;
    if (x == NULL || q == NULL || scale == NULL)
        return r1_fail(R1_EINVAL, "q, scale and x must not be NULL");
    if (desc->asymmetric && zero == NULL)
        return r1_fail(R1_EINVAL, "asymmetric W4A16 needs the zero-point array (zero is NULL)");
    const int64_t rows = desc->rows, cols = desc->cols, groups = cols / R1_QGEMM_BLOCK;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < cols; ++k) {
            size_t i = (size_t)(r * cols + k);
            float value = 0.0f;
            switch (desc->scheme) {
            case R1_QGEMM_W8A8: value = (float)((const int8_t *)q)[i] * scale[r]; break;
            case R1_QGEMM_W4A16: {
                size_t g = (size_t)(r * groups + k / R1_QGEMM_BLOCK);
                int nibble = r1_i4_get(q, i);
                int level = desc->asymmetric ? (nibble & 0xF) - (int)zero[g] : nibble;
                value = (float)level * scale[g];
                break;
            }
            case R1_QGEMM_FP8: {
                int64_t scale_row = desc->role == R1_QGEMM_WEIGHTS ? r / R1_QGEMM_BLOCK : r;
                value = r1_f8e4m3_to_f32(((const uint8_t *)q)[i]) *
                        scale[scale_row * groups + k / R1_QGEMM_BLOCK];
                break;
            }
            }
            x[i] = value;
        }
    }
    return R1_OK;
}

/* ---- products -------------------------------------------------------------------- */

static void expected_scale_shapes(const r1_qgemm_desc *desc, int64_t shape[4]) {
    r1_qgemm_quant_desc xq = {desc->scheme, R1_QGEMM_ACTIVATIONS, desc->M, desc->K, 0, 0};
    r1_qgemm_quant_desc wq = {desc->scheme, R1_QGEMM_WEIGHTS, desc->N, desc->K, 0, 0};
    r1_qgemm_scale_shape(&xq, &shape[0], &shape[1]);
    r1_qgemm_scale_shape(&wq, &shape[2], &shape[3]);
}

void r1_qgemm_set_scale_shapes(const r1_qgemm_desc *desc, r1_qgemm_operands *operands) {
    if (desc == NULL || operands == NULL) return;
    int64_t shape[4];
    expected_scale_shapes(desc, shape);
    operands->x_scale_rows = shape[0];
    operands->x_scale_cols = shape[1];
    operands->w_scale_rows = shape[2];
    operands->w_scale_cols = shape[3];
}

r1_status r1_qgemm_validate(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops,
                            const void *y) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (ops == NULL) return r1_fail(R1_EINVAL, "operands is NULL");
    if (!scheme_valid(desc->scheme))
        return r1_fail(R1_EINVAL, "scheme = %d: expected R1_QGEMM_W8A8, _W4A16 or _FP8",
                       (int)desc->scheme);
    const char *name = r1_qgemm_scheme_name(desc->scheme);
    if (desc->M <= 0 || desc->N <= 0 || desc->K <= 0)
        return r1_fail(R1_EINVAL, "M = %lld, N = %lld, K = %lld: all must be > 0",
                       (long long)desc->M, (long long)desc->N, (long long)desc->K);
    if (desc->M > INT32_MAX || desc->N > INT32_MAX || desc->K > INT32_MAX)
        return r1_fail(R1_EINVAL, "M = %lld, N = %lld, K = %lld: each must be < 2^31",
                       (long long)desc->M, (long long)desc->N, (long long)desc->K);
    if (!product_fits(desc->M, desc->K) || !product_fits(desc->N, desc->K) ||
        !product_fits(desc->M, desc->N))
        return r1_fail(R1_EINVAL,
                       "M = %lld, N = %lld, K = %lld: M * K (x), N * K (w) and M * N (y) must "
                       "each be at most 2^56 elements",
                       (long long)desc->M, (long long)desc->N, (long long)desc->K);
    if (desc->scheme == R1_QGEMM_W8A8 && desc->K > R1_QGEMM_W8A8_MAX_K)
        return r1_fail(R1_EINVAL,
                       "K = %lld: W8A8 accumulates exactly in int32, which holds K * 128^2 "
                       "only for K <= %d",
                       (long long)desc->K, R1_QGEMM_W8A8_MAX_K);
    if (desc->scheme != R1_QGEMM_W8A8 && desc->K % R1_QGEMM_BLOCK != 0)
        return r1_fail(R1_EINVAL,
                       "K = %lld: %s scales K in blocks of %d, so K must be a multiple of %d "
                       "(pad K with zeros)",
                       (long long)desc->K, name, R1_QGEMM_BLOCK, R1_QGEMM_BLOCK);
    if (desc->out_dtype != R1_F32 && desc->out_dtype != R1_BF16)
        return r1_fail(R1_EINVAL, "out_dtype = %s: qgemm writes f32 or bf16",
                       r1_dtype_name(desc->out_dtype));
    if (desc->asymmetric && desc->scheme != R1_QGEMM_W4A16)
        return r1_fail(R1_EINVAL, "asymmetric = 1 is only defined for W4A16");
    if (ops->x == NULL || ops->w == NULL || y == NULL)
        return r1_fail(R1_EINVAL, "x, w and y must not be NULL");
    if (desc->scheme != R1_QGEMM_W4A16 && ops->x_scale == NULL)
        return r1_fail(R1_EINVAL, "x_scale is NULL: %s needs activation scales", name);
    if (ops->w_scale == NULL)
        return r1_fail(R1_EINVAL, "w_scale is NULL: %s needs weight scales", name);
    if (desc->asymmetric && ops->w_zero == NULL)
        return r1_fail(R1_EINVAL, "asymmetric W4A16 needs w_zero (zero points), got NULL");
    int64_t shape[4];
    expected_scale_shapes(desc, shape);
    if (desc->scheme != R1_QGEMM_W4A16 &&
        (ops->x_scale_rows != shape[0] || ops->x_scale_cols != shape[1]))
        return r1_fail(R1_EINVAL,
                       "x_scale shape (%lld, %lld): %s with M = %lld, K = %lld needs "
                       "(%lld, %lld)",
                       (long long)ops->x_scale_rows, (long long)ops->x_scale_cols, name,
                       (long long)desc->M, (long long)desc->K, (long long)shape[0],
                       (long long)shape[1]);
    if (ops->w_scale_rows != shape[2] || ops->w_scale_cols != shape[3])
        return r1_fail(R1_EINVAL,
                       "w_scale shape (%lld, %lld): %s with N = %lld, K = %lld needs "
                       "(%lld, %lld)",
                       (long long)ops->w_scale_rows, (long long)ops->w_scale_cols, name,
                       (long long)desc->N, (long long)desc->K, (long long)shape[2],
                       (long long)shape[3]);
    /* y must not overlap any operand. */
    const size_t M = (size_t)desc->M, N = (size_t)desc->N, K = (size_t)desc->K;
    const size_t y_bytes = r1_dtype_bytes(desc->out_dtype, M * N);
    const size_t x_bytes = desc->scheme == R1_QGEMM_W4A16 ? M * K * 2 : M * K;
    const size_t w_bytes = desc->scheme == R1_QGEMM_W4A16 ? N * K / 2 : N * K;
    const size_t w_scale_count = (size_t)shape[2] * (size_t)shape[3];
    const struct { const char *name; const void *ptr; size_t bytes; } operands[] = {
        {"x", ops->x, x_bytes},
        {"w", ops->w, w_bytes},
        {"x_scale", desc->scheme != R1_QGEMM_W4A16 ? (const void *)ops->x_scale : NULL,
         (size_t)shape[0] * (size_t)shape[1] * sizeof(float)},
        {"w_scale", ops->w_scale, w_scale_count * sizeof(float)},
        {"w_zero", desc->asymmetric ? (const void *)ops->w_zero : NULL, w_scale_count},
        {"bias", ops->bias, N * sizeof(float)},
    };
    for (size_t i = 0; i < sizeof operands / sizeof operands[0]; ++i) {
        r1_status status = r1_check_no_overlap("y", y, y_bytes, operands[i].name, operands[i].ptr,
                                               operands[i].bytes);
        if (status != R1_OK) return status;
    }
    return R1_OK;
}

/* Host backends: scales must be finite and > 0 (a quantizer never writes
 * anything else); the values of device arrays are not inspected. */
static r1_status check_scales_host(const char *what, const float *scale, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
        if (!(scale[i] > 0.0f) || !isfinite(scale[i]))
            return r1_fail(R1_EINVAL, "%s[%lld] = %g: scales must be finite and > 0", what,
                           (long long)i, (double)scale[i]);
    return R1_OK;
}

r1_status r1_qgemm(r1_backend backend, const r1_qgemm_desc *desc,
                   const r1_qgemm_operands *ops, void *y, void *stream) {
    r1_status status = r1_qgemm_validate(desc, ops, y);
    if (status != R1_OK) return status;
    status = r1_check_backend(backend);
    if (status != R1_OK) return status;
    if (backend == R1_CUDA) return qgemm_gemm_cuda(desc, ops, y, stream);
    if (ops->x_scale != NULL && desc->scheme != R1_QGEMM_W4A16) {
        status = check_scales_host("x_scale", ops->x_scale,
                                   ops->x_scale_rows * ops->x_scale_cols);
        if (status != R1_OK) return status;
    }
    status = check_scales_host("w_scale", ops->w_scale, ops->w_scale_rows * ops->w_scale_cols);
    if (status != R1_OK) return status;
    if (desc->asymmetric) {
        int64_t count = ops->w_scale_rows * ops->w_scale_cols;
        for (int64_t i = 0; i < count; ++i)
            if (ops->w_zero[i] > 15)
                return r1_fail(R1_EINVAL, "w_zero[%lld] = %d: zero points are in [0, 15]",
                               (long long)i, (int)ops->w_zero[i]);
    }
    return backend == R1_FAST ? qgemm_gemm_fast(desc, ops, y) : qgemm_gemm_ref(desc, ops, y);
}

r1_status r1_qgemm_w8a8_accumulators(r1_backend backend, int64_t M, int64_t N, int64_t K,
                                     const int8_t *x, const int8_t *w, int32_t *acc,
                                     void *stream) {
    if (M <= 0 || N <= 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return r1_fail(R1_EINVAL, "M = %lld, N = %lld, K = %lld: all must be in [1, 2^31)",
                       (long long)M, (long long)N, (long long)K);
    if (!product_fits(M, K) || !product_fits(N, K) || !product_fits(M, N))
        return r1_fail(R1_EINVAL,
                       "M = %lld, N = %lld, K = %lld: M * K (x), N * K (w) and M * N (acc) must "
                       "each be at most 2^56 elements",
                       (long long)M, (long long)N, (long long)K);
    if (K > R1_QGEMM_W8A8_MAX_K)
        return r1_fail(R1_EINVAL,
                       "K = %lld: W8A8 accumulates exactly in int32, which holds K * 128^2 "
                       "only for K <= %d",
                       (long long)K, R1_QGEMM_W8A8_MAX_K);
    if (x == NULL || w == NULL || acc == NULL)
        return r1_fail(R1_EINVAL, "x, w and acc must not be NULL");
    const size_t acc_bytes = (size_t)M * (size_t)N * sizeof(int32_t);
    r1_status status;
    if ((status = r1_check_no_overlap("acc", acc, acc_bytes, "x", x, (size_t)M * (size_t)K)) !=
            R1_OK ||
        (status = r1_check_no_overlap("acc", acc, acc_bytes, "w", w, (size_t)N * (size_t)K)) !=
            R1_OK)
        return status;
    status = r1_check_backend(backend);
    if (status != R1_OK) return status;
    switch (backend) {
    case R1_REF: return qgemm_w8a8_accumulators_ref(M, N, K, x, w, acc);
    case R1_FAST: return qgemm_w8a8_accumulators_fast(M, N, K, x, w, acc);
    case R1_CUDA: return qgemm_w8a8_accumulators_cuda(M, N, K, x, w, acc, stream);
    }
    return R1_EINTERNAL;
}

#ifndef R1LAB_HAVE_CUDA
/* CPU-only build: the CUDA backend is absent (check_backend returns
 * R1_EUNSUPPORTED before reaching these). */
r1_status qgemm_quantize_cuda(const r1_qgemm_quant_desc *desc, const float *x, void *q,
                              float *scale, uint8_t *zero, void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
r1_status qgemm_gemm_cuda(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y,
                          void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
r1_status qgemm_w8a8_accumulators_cuda(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                       const int8_t *w, int32_t *acc, void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
#endif
