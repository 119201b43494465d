/*
 * tests/test_qgemm.c — qgemm on the CPU backends: golden files (ref and fast),
 * fast vs ref agreement on every int8 path this CPU has (R1LAB_QGEMM_ISA caps
 * the path), the int32 range edge, and bad input (every error names its
 * argument).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_qgemm.h"
#include "harness.h"

static const char *const isa_names[] = {"scalar", "avx2", "avx-vnni", "avx512-vnni"};

static void run_goldens(r1_backend backend, const char *label) {
    if (!r1t_case("qgemm_goldens(%s)", label)) return;
    check_summary s = {0};
    R1T_CHECK(qgemm_check_goldens(backend, &s) == R1_OK, "golden files missing");
    R1T_CHECK(s.cases_total >= 15, "only %d golden files", s.cases_total);
    R1T_CHECK(s.cases_passed == s.cases_total, "%d of %d golden cases failed (worst: %s)",
              s.cases_total - s.cases_passed, s.cases_total, s.worst_what);
}

static void run_agreement(const char *label) {
    if (!r1t_case("qgemm_agreement(fast/%s, seed=%llu)", label, (unsigned long long)r1t_seed()))
        return;
    check_summary s = {0};
    qgemm_check_agreement(R1_FAST, r1t_seed(), r1t_small(), &s);
    R1T_CHECK(s.cases_passed == s.cases_total, "%d of %d agreement cases failed (worst: %s)",
              s.cases_total - s.cases_passed, s.cases_total, s.worst_what);
}

/* acc = K * 128^2 at the largest K: the VNNI paths' unsigned bias and its
 * correction both wrap modulo 2^32 here; the result must still be exact. */
static void int32_edge(void) {
    if (!r1t_case("qgemm_w8a8_int32_edge(K=131071)")) return;
    const int64_t M = 2, N = 3, K = R1_QGEMM_W8A8_MAX_K;
    int8_t *x = malloc((size_t)(M * K)), *w = malloc((size_t)(N * K));
    memset(x, 0x80, (size_t)(M * K)); /* -128 */
    memset(w, 0x80, (size_t)(N * K));
    for (int64_t k = 0; k < K; ++k) x[K + k] = (int8_t)(k % 2 ? 127 : -128); /* row 1 mixed */
    int32_t ref[6], fast[6];
    R1T_CHECK(r1_qgemm_w8a8_accumulators(R1_REF, M, N, K, x, w, ref, NULL) == R1_OK, "ref");
    R1T_CHECK(r1_qgemm_w8a8_accumulators(R1_FAST, M, N, K, x, w, fast, NULL) == R1_OK, "fast");
    R1T_CHECK(ref[0] == 2147467264, "ref acc[0] = %d, expected 131071 * 16384 = 2147467264",
              ref[0]);
    for (int i = 0; i < 6; ++i)
        R1T_CHECK(ref[i] == fast[i], "acc[%d]: fast %d, ref %d (path %s)", i, fast[i], ref[i],
                  r1_qgemm_fast_isa());
    free(x);
    free(w);
}

static void expect_error(r1_status got, r1_status want, const char *needle, const char *what) {
    R1T_CHECK(got == want, "%s: status %s, expected %s (message: %s)", what, r1_status_str(got),
              r1_status_str(want), r1_last_error());
    R1T_CHECK(strstr(r1_last_error(), needle) != NULL, "%s: message '%s' does not mention '%s'",
              what, r1_last_error(), needle);
}

/* Sizes: each dimension at INT64_MAX or 2^31, and products past 2^56
 * elements, are R1_EINVAL naming the argument before any pointer is read (the
 * buffers are tiny); r1_qgemm_quantized_bytes gives 0, never a wrapped count. */
static void size_bounds(void) {
    if (!r1t_case("qgemm_size_bounds")) return;
    float x[256] = {0}, scale[4], y[4];
    uint8_t q[256];
    int8_t qx[256] = {0}, qw[256] = {0};
    const int64_t big = INT64_MAX, two31 = (int64_t)1 << 31, max32 = INT32_MAX;
    const struct { r1_qgemm_scheme scheme; int64_t rows, cols; const char *name, *needle; }
        quant[] = {
            {R1_QGEMM_W8A8, big, 256, "rows INT64_MAX", "rows = 9223372036854775807"},
            {R1_QGEMM_W8A8, 2, big, "cols INT64_MAX", "cols = 9223372036854775807"},
            {R1_QGEMM_FP8, two31, 256, "rows 2^31", "rows = 2147483648"},
            {R1_QGEMM_W8A8, max32, max32, "rows * cols = (2^31 - 1)^2", "rows * cols"},
            {R1_QGEMM_FP8, (int64_t)1 << 30, (int64_t)1 << 27, "rows * cols = 2^57",
             "rows * cols"},
        };
    for (int b = 0; b < 2; ++b) {
        r1_backend backend = b ? R1_FAST : R1_REF;
        for (size_t i = 0; i < sizeof quant / sizeof quant[0]; ++i) {
            r1_qgemm_quant_desc d = {quant[i].scheme, R1_QGEMM_WEIGHTS, quant[i].rows,
                                     quant[i].cols, 0, 0};
            expect_error(r1_qgemm_quantize(backend, &d, x, q, scale, NULL, NULL), R1_EINVAL,
                         quant[i].needle, quant[i].name);
            R1T_CHECK(r1_qgemm_quantized_bytes(&d) == 0, "%s: quantized bytes %zu, expected 0",
                      quant[i].name, r1_qgemm_quantized_bytes(&d));
            int64_t sr = -1, sc = -1;
            r1_qgemm_scale_shape(&d, &sr, &sc);
            R1T_CHECK(sr == 0 && sc == 0, "%s: scale shape (%lld, %lld), expected (0, 0)",
                      quant[i].name, (long long)sr, (long long)sc);
        }
        const struct { int64_t M, N, K; const char *name, *needle; } gemm[] = {
            {big, 2, 256, "M INT64_MAX", "M = 9223372036854775807"},
            {2, big, 256, "N INT64_MAX", "N = 9223372036854775807"},
            {2, 2, big, "K INT64_MAX", "K = 9223372036854775807"},
            {two31, 2, 256, "M 2^31", "M = 2147483648"},
            {max32, max32, 256, "M * N = (2^31 - 1)^2", "M * N (y)"},
            {(int64_t)1 << 30, (int64_t)1 << 27, 256, "M * N = 2^57", "M * N (y)"},
            {max32, 2, 131072, "M * K = 2^48 fits, K too large for W8A8", "int32"},
        };
        for (size_t i = 0; i < sizeof gemm / sizeof gemm[0]; ++i) {
            r1_qgemm_desc d = {R1_QGEMM_W8A8, gemm[i].M, gemm[i].N, gemm[i].K, R1_F32, 0};
            r1_qgemm_operands o = {qx, scale, qw, scale, NULL, NULL, 0, 0, 0, 0};
            r1_qgemm_set_scale_shapes(&d, &o);
            expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, gemm[i].needle,
                         gemm[i].name);
        }
        expect_error(r1_qgemm_w8a8_accumulators(backend, 2, 2, big, qx, qw, (int32_t *)y, NULL),
                     R1_EINVAL, "K = 9223372036854775807", "accumulators K INT64_MAX");
        expect_error(r1_qgemm_w8a8_accumulators(backend, max32, max32, 16, qx, qw, (int32_t *)y,
                                                NULL),
                     R1_EINVAL, "M * N (acc)", "accumulators M * N = (2^31 - 1)^2");
    }
    /* real shapes keep their byte counts: the V3 LM head, FP8 and W4A16 */
    r1_qgemm_quant_desc head = {R1_QGEMM_FP8, R1_QGEMM_WEIGHTS, 129280, 7168, 0, 0};
    R1T_CHECK(r1_qgemm_quantized_bytes(&head) == (size_t)129280 * 7168,
              "V3 head FP8 bytes %zu", r1_qgemm_quantized_bytes(&head));
    head.scheme = R1_QGEMM_W4A16;
    R1T_CHECK(r1_qgemm_quantized_bytes(&head) == (size_t)129280 * 7168 / 2,
              "V3 head W4A16 bytes %zu", r1_qgemm_quantized_bytes(&head));
    R1T_CHECK(r1_qgemm_quantized_bytes(NULL) == 0, "NULL desc: quantized bytes not 0");
}

static void bad_input(void) {
    if (!r1t_case("qgemm_bad_input")) return;
    float x[2 * 256];
    for (int i = 0; i < 512; ++i) x[i] = (float)(i % 17) - 8.0f;
    uint8_t q[512], zero[8];
    float scale[16];
    for (int b = 0; b < 2; ++b) {
        r1_backend backend = b ? R1_FAST : R1_REF;
        /* NaN / Inf in a quantizer input: the index, row and column */
        x[300] = NAN;
        r1_qgemm_quant_desc fp8 = {R1_QGEMM_FP8, R1_QGEMM_ACTIVATIONS, 2, 256, 0, 0};
        expect_error(r1_qgemm_quantize(backend, &fp8, x, q, scale, NULL, NULL), R1_ENUMERIC,
                     "x[300] (row 1, column 44)", "NaN in x");
        x[300] = INFINITY;
        r1_qgemm_quant_desc w8 = {R1_QGEMM_W8A8, R1_QGEMM_WEIGHTS, 2, 256, 0, 0};
        expect_error(r1_qgemm_quantize(backend, &w8, x, q, scale, NULL, NULL), R1_ENUMERIC,
                     "x[300]", "Inf in w");
        x[300] = 1.0f;
        /* K alignment for block / group schemes, with the sentence */
        r1_qgemm_quant_desc bad_k = {R1_QGEMM_W4A16, R1_QGEMM_WEIGHTS, 2, 200, 0, 0};
        expect_error(r1_qgemm_quantize(backend, &bad_k, x, q, scale, NULL, NULL), R1_EINVAL,
                     "multiple of 128", "W4A16 K = 200");
        r1_qgemm_quant_desc act4 = {R1_QGEMM_W4A16, R1_QGEMM_ACTIVATIONS, 2, 256, 0, 0};
        expect_error(r1_qgemm_quantize(backend, &act4, x, q, scale, NULL, NULL), R1_EINVAL,
                     "bf16", "W4A16 activations");
        r1_qgemm_quant_desc asym = {R1_QGEMM_W4A16, R1_QGEMM_WEIGHTS, 2, 256, 1, 0};
        expect_error(r1_qgemm_quantize(backend, &asym, x, q, scale, NULL, NULL), R1_EINVAL,
                     "zero", "asymmetric without zero points");
        R1T_CHECK(r1_qgemm_quantize(backend, &asym, x, q, scale, zero, NULL) == R1_OK,
                  "valid asymmetric quantize: %s", r1_last_error());

        /* products */
        int8_t qx[2 * 256] = {0}, qw[3 * 256] = {0};
        float sx[4] = {1, 1, 1, 1}, sw[3] = {1, 1, 1}, y[6];
        r1_qgemm_desc d = {R1_QGEMM_FP8, 2, 3, 250, R1_F32, 0};
        r1_qgemm_operands o = {qx, sx, qw, sw, NULL, NULL, 2, 2, 1, 2};
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL,
                     "K = 250: fp8 scales K in blocks of 128", "FP8 K = 250");
        d.K = 256;
        o.x_scale_cols = 1;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL,
                     "x_scale shape (2, 1): fp8 with M = 2, K = 256 needs (2, 2)", "x scale shape");
        o.x_scale_cols = 2, o.w_scale_rows = 2;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL,
                     "w_scale shape (2, 2): fp8 with N = 3, K = 256 needs (1, 2)",
                     "FP8 weight scales per row instead of per 128-row block");
        o.w_scale_rows = 1;
        R1T_CHECK(r1_qgemm(backend, &d, &o, y, NULL) == R1_OK, "valid FP8 call: %s",
                  r1_last_error());
        d.scheme = R1_QGEMM_W8A8;
        o.x_scale_rows = 2, o.x_scale_cols = 1, o.w_scale_rows = 2, o.w_scale_cols = 1;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "w_scale shape (2, 1)",
                     "W8A8 w scale (2, 1) for N = 3");
        o.w_scale_rows = 3;
        sw[1] = 0.0f;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "w_scale[1] = 0",
                     "zero scale");
        sw[1] = 1.0f;
        d.out_dtype = R1_F16;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "f32 or bf16", "f16 output");
        d.out_dtype = R1_F32;
        d.K = R1_QGEMM_W8A8_MAX_K + 1;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "int32", "W8A8 K too large");
        d.K = 256;
        expect_error(r1_qgemm(backend, &d, &o, NULL, NULL), R1_EINVAL, "NULL", "y NULL");
        R1T_CHECK(r1_qgemm(backend, &d, &o, y, NULL) == R1_OK, "valid W8A8 call: %s",
                  r1_last_error());
        d.scheme = R1_QGEMM_W4A16;
        d.asymmetric = 1;
        r1_qgemm_set_scale_shapes(&d, &o);
        R1T_CHECK(o.w_scale_rows == 3 && o.w_scale_cols == 2 && o.x_scale_rows == 0,
                  "W4A16 scale shapes (%lld, %lld)", (long long)o.w_scale_rows,
                  (long long)o.w_scale_cols);
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "w_zero", "no zero points");
        d.scheme = (r1_qgemm_scheme)7;
        expect_error(r1_qgemm(backend, &d, &o, y, NULL), R1_EINVAL, "scheme = 7", "bad scheme");
        expect_error(r1_qgemm_w8a8_accumulators(backend, 0, 1, 1, qx, qw, (int32_t *)y, NULL),
                     R1_EINVAL, "M = 0", "M = 0");
    }
    expect_error(r1_qgemm(R1_CUDA, NULL, NULL, NULL, NULL), R1_EINVAL, "desc", "NULL desc");
}

/* dequantize(quantize(x)) is within half a step of x for every scheme. */
static void round_trip(void) {
    if (!r1t_case("qgemm_round_trip")) return;
    enum { R = 130, K = 256 };
    float *x = malloc(R * K * 4), *back = malloc(R * K * 4), scale[R * 2];
    uint8_t *q = malloc(R * K), zero[R * 2];
    r1t_rng rng = r1t_rng_make(r1t_seed());
    for (int i = 0; i < R * K; ++i) x[i] = (float)r1t_rng_normal(&rng);
    struct { r1_qgemm_scheme scheme; r1_qgemm_role role; int asym; double steps; } runs[] = {
        {R1_QGEMM_W8A8, R1_QGEMM_ACTIVATIONS, 0, 0.5001},
        {R1_QGEMM_W4A16, R1_QGEMM_WEIGHTS, 0, 0.5001},
        {R1_QGEMM_W4A16, R1_QGEMM_WEIGHTS, 1, 0.5001},
        {R1_QGEMM_FP8, R1_QGEMM_ACTIVATIONS, 0, 0.5001},
        {R1_QGEMM_FP8, R1_QGEMM_WEIGHTS, 0, 0.5001},
    };
    for (int r = 0; r < 5; ++r) {
        r1_qgemm_quant_desc d = {runs[r].scheme, runs[r].role, R, K, runs[r].asym, 0};
        R1T_CHECK(r1_qgemm_quantize(R1_REF, &d, x, q, scale, runs[r].asym ? zero : NULL, NULL) == R1_OK,
                  "%s", r1_last_error());
        R1T_CHECK(r1_qgemm_dequantize(&d, q, scale, zero, back) == R1_OK, "%s", r1_last_error());
        double worst = 0;
        for (int i = 0; i < R * K; ++i) {
            int row = i / K, col = i % K;
            double s = d.scheme == R1_QGEMM_W8A8    ? scale[row]
                       : d.scheme == R1_QGEMM_W4A16 ? scale[row * 2 + col / 128]
                       : d.role == R1_QGEMM_WEIGHTS ? scale[(row / 128) * 2 + col / 128]
                                                    : scale[row * 2 + col / 128];
            /* int: a step is s; e4m3: a step is 2^-3 of the value's binade (and
             * the subnormal step 2^-9 at the bottom) times s */
            double step = s;
            if (d.scheme == R1_QGEMM_FP8) {
                double v = fabs(x[i]) / s;
                step = s * (v < 0x1p-6 ? 0x1p-9 : ldexp(1.0, (int)floor(log2(v)) - 3));
            }
            double err = fabs(back[i] - x[i]) / step;
            if (err > worst) worst = err;
        }
        R1T_CHECK(worst <= runs[r].steps, "%s role %d asym %d: worst error %.4f steps",
                  r1_qgemm_scheme_name(d.scheme), (int)d.role, d.asymmetric, worst);
    }
    free(x), free(back), free(q);
}


/* Overlapping buffers: an output over an input is R1_EINVAL naming both
 * arguments (ref and fast), before any work. */
static void expect_overlap(r1_status got, const char *a, const char *b, const char *what) {
    R1T_CHECK(got == R1_EINVAL && strstr(r1_last_error(), a) && strstr(r1_last_error(), b) &&
                  strstr(r1_last_error(), "must not overlap"),
              "%s: status %s, message '%s' (want R1_EINVAL naming %s and %s)", what,
              r1_status_str(got), r1_last_error(), a, b);
}

static void overlap(void) {
    if (!r1t_case("qgemm_overlap")) return;
    enum { M = 4, N = 4, K = 128 };
    static int32_t big[4096];
    int8_t x[M * K], w[N * K];
    int32_t acc[M * N];
    for (int i = 0; i < M * K; ++i) x[i] = (int8_t)(i % 7 - 3);
    for (int i = 0; i < N * K; ++i) w[i] = (int8_t)(i % 5 - 2);
    for (int b = 0; b < 2; ++b) {
        r1_backend backend = b ? R1_FAST : R1_REF;
        R1T_CHECK(r1_qgemm_w8a8_accumulators(backend, M, N, K, x, w, acc, NULL) == R1_OK,
                  "separate: %s", r1_last_error());
        int8_t *bx = (int8_t *)big;
        memcpy(bx, x, sizeof x);
        expect_overlap(r1_qgemm_w8a8_accumulators(backend, M, N, K, bx, w, big, NULL), "acc",
                       "x", "acc == x");
        memcpy(bx + 40, w, sizeof w);
        expect_overlap(r1_qgemm_w8a8_accumulators(backend, M, N, K, x, bx + 40, big, NULL),
                       "acc", "w", "acc over w");
        /* the product: y over x, w, the scales, the bias */
        float xs[M], ws[N], bias[N], y[M * N];
        for (int i = 0; i < M; ++i) xs[i] = 0.01f;
        for (int i = 0; i < N; ++i) ws[i] = 0.02f, bias[i] = 1.0f;
        r1_qgemm_desc d = {R1_QGEMM_W8A8, M, N, K, R1_F32, 0};
        r1_qgemm_operands ops = {x, xs, w, ws, NULL, bias, 0, 0, 0, 0};
        r1_qgemm_set_scale_shapes(&d, &ops);
        R1T_CHECK(r1_qgemm(backend, &d, &ops, y, NULL) == R1_OK, "product: %s", r1_last_error());
        r1_qgemm_operands o = ops;
        memcpy(bx, x, sizeof x);
        o.x = bx;
        expect_overlap(r1_qgemm(backend, &d, &o, big, NULL), "y", "x", "y == x");
        o = ops;
        expect_overlap(r1_qgemm(backend, &d, &o, (void *)w, NULL), "y", "w", "y == w");
        expect_overlap(r1_qgemm(backend, &d, &o, bias, NULL), "y", "bias", "y == bias");
        expect_overlap(r1_qgemm(backend, &d, &o, xs, NULL), "y", "x_scale", "y == x_scale");
        expect_overlap(r1_qgemm_validate(&d, &o, ws), "y", "w_scale", "validate y == w_scale");
        /* the quantizer: q / scale over x */
        float fx[2 * 128];
        for (int i = 0; i < 256; ++i) fx[i] = (float)(i % 9) - 4.0f;
        r1_qgemm_quant_desc qd = {R1_QGEMM_W8A8, R1_QGEMM_WEIGHTS, 2, 128, 0, 0};
        float qs[2];
        int8_t q_separate[2 * 128]; /* q is 2 x 128 bytes, apart from fx */
        expect_overlap(r1_qgemm_quantize(backend, &qd, fx, fx, qs, NULL, NULL), "q", "x",
                       "quantize q == x");
        expect_overlap(r1_qgemm_quantize(backend, &qd, fx, q_separate, fx + 3, NULL, NULL), "scale",
                       "x", "quantize scale in x");
    }
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "qgemm");
    printf("fast int8 path here: %s\n", r1_qgemm_fast_isa());
    run_goldens(R1_REF, "ref");
    bad_input();
    size_bounds();
    round_trip();
    overlap();
    /* fast on every path this CPU has, best first; the cap is lifted after. */
    const char *best = r1_qgemm_fast_isa();
    int top = 0;
    for (int i = 0; i < 4; ++i)
        if (strcmp(best, isa_names[i]) == 0) top = i;
    for (int i = top; i >= 0; --i) {
        setenv("R1LAB_QGEMM_ISA", isa_names[i], 1);
        char label[64];
        snprintf(label, sizeof label, "fast/%s", isa_names[i]);
        run_goldens(R1_FAST, label);
        run_agreement(isa_names[i]);
        int32_edge();
        if (r1t_small()) break;
    }
    unsetenv("R1LAB_QGEMM_ISA");
    return r1t_end();
}
