/*
 * tests/check_qgemm.c — the qgemm checks behind test_qgemm, test_qgemm_cuda
 * and `r1lab check`.
 *
 * Bars and why:
 *   quantized bytes, zero points   exact: the quantizers are float32 formulas
 *                                  with correctly rounded division and rint
 *   scales                         exact bits, for the same reason
 *   W8A8 accumulators              exact (integer sums)
 *   W8A8 f32 outputs               relative L2 <= 1e-6: every backend does the
 *                                  same three float32 operations in the same
 *                                  order (expected 0; the bar leaves room for
 *                                  one fused multiply-add's rounding, ~6e-8)
 *   bf16 outputs (every scheme)    relative L2 <= 2^-8 against ref / golden
 *                                  rounded to bf16: "within bf16 rounding", a
 *                                  float32 difference of one ulp can move one
 *                                  element by one bf16 ulp (2^-8 relative)
 *   W4A16, FP8 f32 outputs         relative L2 <= 1e-3 against ref / golden on
 *                                  the same quantized values: only the
 *                                  summation order differs (fp32 accumulation,
 *                                  fp8 tensor cores accumulate a 128-block
 *                                  with fewer bits before promotion). Observed
 *                                  on the CPU: ~1e-7.
 *   calc_diff vs the unquantized product   <= the bound stored with each golden
 *                                  case (golden/gen/qgemm.py states its size).
 */
#define _POSIX_C_SOURCE 200809L
#include "check_qgemm.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "random.h"
#include "r1lab/safetensors.h"

#define W8A8_F32_BAR 1e-6
#define BF16_BAR 0x1p-8
#define BLOCK_SCALED_BAR 1e-3

/* ---- running a backend on host buffers ---------------------------------------- */

typedef struct device_buffers {
    void *pointers[8];
    int count;
} device_buffers;

/* A device copy of `bytes` host bytes (NULL stays NULL); host pointer for
 * host backends. */
static void *on_backend(r1_backend backend, device_buffers *owned, const void *host,
                        size_t bytes, r1_status *status) {
    if (backend != R1_CUDA || host == NULL) return (void *)host;
    void *device = NULL;
    if (*status != R1_OK) return NULL;
    *status = r1_device_alloc(&device, bytes ? bytes : 1);
    if (*status == R1_OK) *status = r1_device_copy(device, host, bytes, R1_HOST_TO_DEVICE);
    owned->pointers[owned->count++] = device;
    return device;
}

static void release(device_buffers *owned) {
    for (int i = 0; i < owned->count; ++i) r1_device_free(owned->pointers[i]);
    owned->count = 0;
}

static r1_status fetch(r1_backend backend, void *host, const void *backend_pointer,
                       size_t bytes, r1_status status) {
    if (backend != R1_CUDA || status != R1_OK) return status;
    return r1_device_copy(host, backend_pointer, bytes, R1_DEVICE_TO_HOST);
}

/* Quantizes host x on `backend` into host q / scale / zero. */
static r1_status quantize_on(r1_backend backend, const r1_qgemm_quant_desc *d, const float *x,
                             void *q, float *scale, uint8_t *zero) {
    if (backend != R1_CUDA) return r1_qgemm_quantize(backend, d, x, q, scale, zero, NULL);
    int64_t sr, sc;
    r1_qgemm_scale_shape(d, &sr, &sc);
    size_t qb = r1_qgemm_quantized_bytes(d), sb = (size_t)(sr * sc);
    device_buffers owned = {{0}, 0};
    r1_status status = R1_OK;
    const float *dx = on_backend(backend, &owned, x, (size_t)(d->rows * d->cols) * 4, &status);
    void *dq = on_backend(backend, &owned, q, qb, &status);
    float *ds = on_backend(backend, &owned, scale, sb * 4, &status);
    uint8_t *dz = zero ? on_backend(backend, &owned, zero, sb, &status) : NULL;
    if (status == R1_OK) status = r1_qgemm_quantize(backend, d, dx, dq, ds, dz, NULL);
    status = fetch(backend, q, dq, qb, status);
    status = fetch(backend, scale, ds, sb * 4, status);
    if (zero) status = fetch(backend, zero, dz, sb, status);
    release(&owned);
    return status;
}

static size_t x_bytes(const r1_qgemm_desc *d) {
    return (size_t)(d->M * d->K) * (d->scheme == R1_QGEMM_W4A16 ? 2 : 1);
}
static size_t w_bytes(const r1_qgemm_desc *d) {
    return (size_t)(d->N * d->K) / (d->scheme == R1_QGEMM_W4A16 ? 2 : 1);
}

/* r1_qgemm on `backend` with host operands and host y. */
static r1_status gemm_on(r1_backend backend, const r1_qgemm_desc *d, const r1_qgemm_operands *o,
                         void *y) {
    if (backend != R1_CUDA) return r1_qgemm(backend, d, o, y, NULL);
    device_buffers owned = {{0}, 0};
    r1_status status = R1_OK;
    r1_qgemm_operands dev = *o;
    size_t y_bytes = (size_t)(d->M * d->N) * (d->out_dtype == R1_BF16 ? 2 : 4);
    dev.x = on_backend(backend, &owned, o->x, x_bytes(d), &status);
    dev.w = on_backend(backend, &owned, o->w, w_bytes(d), &status);
    dev.x_scale = on_backend(backend, &owned, o->x_scale,
                             (size_t)(o->x_scale_rows * o->x_scale_cols) * 4, &status);
    dev.w_scale = on_backend(backend, &owned, o->w_scale,
                             (size_t)(o->w_scale_rows * o->w_scale_cols) * 4, &status);
    dev.w_zero = on_backend(backend, &owned, o->w_zero,
                            (size_t)(o->w_scale_rows * o->w_scale_cols), &status);
    dev.bias = on_backend(backend, &owned, o->bias, (size_t)d->N * 4, &status);
    void *dy = on_backend(backend, &owned, y, y_bytes, &status); /* poisoned copy */
    if (status == R1_OK) status = r1_qgemm(backend, d, &dev, dy, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    status = fetch(backend, y, dy, y_bytes, status);
    release(&owned);
    return status;
}

static r1_status accumulators_on(r1_backend backend, int64_t M, int64_t N, int64_t K,
                                 const int8_t *x, const int8_t *w, int32_t *acc) {
    if (backend != R1_CUDA) return r1_qgemm_w8a8_accumulators(backend, M, N, K, x, w, acc, NULL);
    device_buffers owned = {{0}, 0};
    r1_status status = R1_OK;
    const int8_t *dx = on_backend(backend, &owned, x, (size_t)(M * K), &status);
    const int8_t *dw = on_backend(backend, &owned, w, (size_t)(N * K), &status);
    int32_t *dacc = on_backend(backend, &owned, acc, (size_t)(M * N) * 4, &status);
    if (status == R1_OK) status = r1_qgemm_w8a8_accumulators(backend, M, N, K, dx, dw, dacc, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    status = fetch(backend, acc, dacc, (size_t)(M * N) * 4, status);
    release(&owned);
    return status;
}

/* ---- comparisons ------------------------------------------------------------------- */

static int compare_bytes(check_summary *s, const char *what, const uint8_t *got,
                         const uint8_t *want, size_t count) {
    size_t first = count, mismatches = 0;
    for (size_t i = 0; i < count; ++i)
        if (got[i] != want[i]) {
            if (first == count) first = i;
            ++mismatches;
        }
    if (mismatches) {
        printf("  MISMATCH %s: %zu of %zu bytes differ; first at [%zu]: got 0x%02x expected "
               "0x%02x\n",
               what, mismatches, count, first, got[first], want[first]);
        s->mismatches += (int64_t)mismatches;
    }
    check_note_error(s, what, (double)mismatches, 0.0);
    return mismatches == 0;
}

static int compare_scales(check_summary *s, const char *what, const float *got,
                          const float *want, size_t count) {
    for (size_t i = 0; i < count; ++i)
        if (memcmp(&got[i], &want[i], 4) != 0) {
            printf("  MISMATCH %s: scale [%zu] got %.9g expected %.9g (bits differ)\n", what, i,
                   (double)got[i], (double)want[i]);
            check_note_error(s, what, 1.0, 0.0);
            return 0;
        }
    check_note_error(s, what, 0.0, 0.0);
    return 1;
}

/* y (host, out dtype) widened to float. */
static void widen(const void *y, r1_dtype dtype, size_t count, float *out) {
    for (size_t i = 0; i < count; ++i)
        out[i] = dtype == R1_BF16 ? r1_bf16_to_f32(((const uint16_t *)y)[i]) : ((const float *)y)[i];
}

static double output_bar(r1_qgemm_scheme scheme, r1_dtype dtype) {
    if (dtype == R1_BF16) return BF16_BAR;
    return scheme == R1_QGEMM_W8A8 ? W8A8_F32_BAR : BLOCK_SCALED_BAR;
}

/* got (out dtype) against expected float32 values (rounded to bf16 first for
 * bf16 outputs). */
static int compare_output(check_summary *s, const char *what, const r1_qgemm_desc *d,
                          const void *got, const float *expected) {
    size_t count = (size_t)(d->M * d->N);
    float *g = malloc(count * 4), *e = malloc(count * 4);
    widen(got, d->out_dtype, count, g);
    for (size_t i = 0; i < count; ++i)
        e[i] = d->out_dtype == R1_BF16 ? r1_bf16_to_f32(r1_f32_to_bf16(expected[i])) : expected[i];
    double bar = output_bar(d->scheme, d->out_dtype);
    r1t_comparison c = r1t_compare_f32(what, g, e, count, bar);
    if (!c.ok)
        printf("    (%s M=%lld N=%lld K=%lld: worst index [%zu] is m=%zu n=%zu)\n",
               r1_qgemm_scheme_name(d->scheme), (long long)d->M, (long long)d->N,
               (long long)d->K, c.worst_index, c.worst_index / (size_t)d->N,
               c.worst_index % (size_t)d->N);
    check_note_error(s, what, c.relative_l2, bar);
    free(g);
    free(e);
    return c.ok;
}

static int compare_acc(check_summary *s, const char *what, const int32_t *got,
                       const int32_t *want, int64_t M, int64_t N) {
    r1t_comparison c = r1t_compare_exact_i32(what, got, want, (size_t)(M * N));
    if (!c.ok) {
        printf("    (M=%lld N=%lld: %zu accumulators differ)\n", (long long)M, (long long)N,
               c.mismatches);
        s->mismatches += (int64_t)c.mismatches;
    }
    check_note_error(s, what, (double)c.mismatches, 0.0);
    return c.ok;
}

static double calc_diff(const float *a, const double *b, size_t count) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < count; ++i) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += b[i] * b[i];
    }
    return aa + bb > 0 ? 1.0 - 2.0 * ab / (aa + bb) : 0.0;
}

/* ---- goldens --------------------------------------------------------------------------- */

typedef struct golden {
    r1_safetensors *file;
    const char *name;
    r1_status status;
} golden;

static const void *tensor(golden *g, const char *key, r1_dtype dtype, int64_t count) {
    const void *data = NULL;
    if (g->status != R1_OK) return NULL;
    g->status = r1_safetensors_expect(g->file, key, dtype, count, &data);
    if (g->status != R1_OK)
        printf("  golden %s: %s (regenerate: python3 golden/gen/qgemm.py)\n", g->name,
               r1_last_error());
    return data;
}

static int64_t meta_int(golden *g, const char *key) {
    const char *v = r1_safetensors_metadata(g->file, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

/* The e4m3 conversion file: the device conversion is exercised through the
 * quantizers; this checks the host one against numpy's table search. */
static int golden_conversion(golden *g, check_summary *s) {
    const r1_tensor_info *info;
    if (r1_safetensors_find(g->file, "x", &info, NULL) != R1_OK) return 0;
    int64_t n = info->shape[0];
    const float *x = tensor(g, "x", R1_F32, n);
    const uint8_t *q = tensor(g, "q", R1_U8, n);
    if (!x || !q) return 0;
    uint8_t *got = malloc((size_t)n);
    for (int64_t i = 0; i < n; ++i) got[i] = r1_f32_to_f8e4m3(x[i]);
    int ok = compare_bytes(s, "e4m3_saturation: r1_f32_to_f8e4m3", got, q, (size_t)n);
    free(got);
    return ok;
}

static int golden_case(r1_backend backend, golden *g, check_summary *s) {
    const char *scheme_text = r1_safetensors_metadata(g->file, "scheme");
    if (scheme_text && strcmp(scheme_text, "conversion") == 0)
        return backend == R1_REF ? golden_conversion(g, s) : 1;
    r1_qgemm_scheme scheme = !scheme_text ? R1_QGEMM_W8A8
                             : strcmp(scheme_text, "w4a16") == 0 ? R1_QGEMM_W4A16
                             : strcmp(scheme_text, "fp8") == 0   ? R1_QGEMM_FP8
                                                                 : R1_QGEMM_W8A8;
    const int64_t M = meta_int(g, "M"), N = meta_int(g, "N"), K = meta_int(g, "K");
    const int asym = (int)meta_int(g, "asymmetric"), pow2 = (int)meta_int(g, "pow2_scales");
    const char *bound_text = r1_safetensors_metadata(g->file, "calc_diff_bound");
    const double bound = bound_text ? strtod(bound_text, NULL) : 0.0;
    if (M <= 0 || N <= 0 || K <= 0) {
        printf("  golden %s: metadata M/N/K missing\n", g->name);
        return 0;
    }
    int ok = 1;
    char what[256];
    const float *x = tensor(g, "x", R1_F32, M * K), *w = tensor(g, "w", R1_F32, N * K);
    const float *bias = tensor(g, "bias", R1_F32, N), *y = tensor(g, "y", R1_F32, M * N);
    const double *y_exact = tensor(g, "y_exact", R1_F64, M * N);
    r1_qgemm_quant_desc xq = {scheme, R1_QGEMM_ACTIVATIONS, M, K, 0, pow2};
    r1_qgemm_quant_desc wq = {scheme, R1_QGEMM_WEIGHTS, N, K, asym, pow2};
    int64_t xsr, xsc, wsr, wsc;
    r1_qgemm_scale_shape(&xq, &xsr, &xsc);
    r1_qgemm_scale_shape(&wq, &wsr, &wsc);
    r1_dtype qdtype = scheme == R1_QGEMM_W8A8 ? R1_I8 : R1_U8;
    const void *qx = scheme == R1_QGEMM_W4A16 ? tensor(g, "x_bf16", R1_BF16, M * K)
                                              : tensor(g, "qx", qdtype, M * K);
    const float *sx = scheme == R1_QGEMM_W4A16 ? NULL : tensor(g, "sx", R1_F32, xsr * xsc);
    const void *qw = tensor(g, "qw", qdtype, scheme == R1_QGEMM_W4A16 ? N * K / 2 : N * K);
    const float *sw = tensor(g, "sw", R1_F32, wsr * wsc);
    const uint8_t *zw = asym ? tensor(g, "zw", R1_U8, wsr * wsc) : NULL;
    if (g->status != R1_OK) return 0;

    /* quantizers */
    size_t wqb = r1_qgemm_quantized_bytes(&wq);
    uint8_t *got_q = malloc(wqb > (size_t)(M * K) ? wqb : (size_t)(M * K));
    float *got_s = malloc((size_t)(wsr * wsc + xsr * xsc + 1) * 4);
    uint8_t *got_z = malloc((size_t)(wsr * wsc) + 1);
    r1_status st;
    if (scheme != R1_QGEMM_W4A16) {
        st = quantize_on(backend, &xq, x, got_q, got_s, NULL);
        snprintf(what, sizeof what, "%s: quantize x (%s)", g->name, r1_backend_name(backend));
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
        } else {
            ok &= compare_bytes(s, what, got_q, qx, (size_t)(M * K));
            ok &= compare_scales(s, what, got_s, sx, (size_t)(xsr * xsc));
        }
    }
    st = quantize_on(backend, &wq, w, got_q, got_s, asym ? got_z : NULL);
    snprintf(what, sizeof what, "%s: quantize w (%s)", g->name, r1_backend_name(backend));
    if (st != R1_OK) {
        printf("  %s failed: %s\n", what, r1_last_error());
        ok = 0;
    } else {
        ok &= compare_bytes(s, what, got_q, qw, wqb);
        ok &= compare_scales(s, what, got_s, sw, (size_t)(wsr * wsc));
        if (asym) ok &= compare_bytes(s, what, got_z, zw, (size_t)(wsr * wsc));
    }
    /* dequantize (host) against the golden's dequantized weights */
    if (scheme == R1_QGEMM_W4A16 && backend == R1_REF) {
        const float *wdeq = tensor(g, "wdeq", R1_F32, N * K);
        float *got_w = malloc((size_t)(N * K) * 4);
        if (wdeq && r1_qgemm_dequantize(&wq, qw, sw, zw, got_w) == R1_OK) {
            snprintf(what, sizeof what, "%s: dequantize w", g->name);
            ok &= r1t_compare_f32(what, got_w, wdeq, (size_t)(N * K), 0.0).ok;
        }
        free(got_w);
    }
    free(got_q);
    free(got_s);
    free(got_z);

    /* products from the golden's quantized values */
    r1_qgemm_desc d = {scheme, M, N, K, R1_F32, asym};
    r1_qgemm_operands o = {qx, sx, qw, sw, zw, bias, 0, 0, 0, 0};
    r1_qgemm_set_scale_shapes(&d, &o);
    float *out = malloc((size_t)(M * N) * 4);
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        d.out_dtype = bf16 ? R1_BF16 : R1_F32;
        memset(out, 0xFF, (size_t)(M * N) * 4); /* NaN poison in both dtypes */
        st = gemm_on(backend, &d, &o, out);
        snprintf(what, sizeof what, "%s: y %s (%s)", g->name, bf16 ? "bf16" : "f32",
                 r1_backend_name(backend));
        if (st == R1_EUNSUPPORTED) {
            printf("  %s: skipped (%s)\n", what, r1_last_error());
            continue;
        }
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
            continue;
        }
        ok &= compare_output(s, what, &d, out, y);
        if (!bf16) {
            double cd = calc_diff(out, y_exact, (size_t)(M * N));
            snprintf(what, sizeof what, "%s: calc_diff vs unquantized (%s)", g->name,
                     r1_backend_name(backend));
            if (!(cd <= bound)) {
                printf("  MISMATCH %s: %.3e above the bound %.1e\n", what, cd, bound);
                ok = 0;
            }
            check_note_error(s, what, cd, bound);
        }
    }
    if (scheme == R1_QGEMM_W8A8) {
        const int32_t *acc = tensor(g, "acc", R1_I32, M * N);
        int32_t *got = malloc((size_t)(M * N) * 4);
        for (int64_t i = 0; i < M * N; ++i) got[i] = (int32_t)0x7BADBEEF;
        st = accumulators_on(backend, M, N, K, qx, qw, got);
        snprintf(what, sizeof what, "%s: acc (%s)", g->name, r1_backend_name(backend));
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
        } else if (acc) {
            ok &= compare_acc(s, what, got, acc, M, N);
        }
        free(got);
    }
    free(out);
    s->rows += M;
    return ok && g->status == R1_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

r1_status qgemm_check_goldens(r1_backend backend, check_summary *summary) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/qgemm", check_golden_dir());
    DIR *handle = opendir(dir);
    if (!handle) {
        printf("  no golden directory %s\n", dir);
        return R1_EIO;
    }
    char *names[256];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(handle)) != NULL && count < 256) {
        size_t n = strlen(entry->d_name);
        if (n > 12 && strcmp(entry->d_name + n - 12, ".safetensors") == 0)
            names[count++] = strdup(entry->d_name);
    }
    closedir(handle);
    qsort(names, (size_t)count, sizeof names[0], by_name);
    double start = check_now();
    for (int i = 0; i < count; ++i) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        golden g = {NULL, names[i], R1_OK};
        g.status = r1_safetensors_open(path, &g.file);
        int ok = g.status == R1_OK && golden_case(backend, &g, summary);
        if (g.status != R1_OK && g.file == NULL) printf("  %s: %s\n", path, r1_last_error());
        summary->cases_total += 1;
        summary->cases_passed += ok;
        if (summary->verbose || !ok)
            printf("  golden %-40s %s (%s)\n", names[i], ok ? "ok" : "FAILED",
                   r1_backend_name(backend));
        r1_safetensors_close(g.file);
        free(names[i]);
    }
    summary->seconds += check_now() - start;
    r1_status manifest = check_golden_manifest("qgemm", summary);
    return count == 0 ? R1_EIO : manifest;
}

/* ---- randomized agreement -------------------------------------------------------------- */

typedef struct shape { int64_t M, N, K; } shape;

static void fill_normal(r1t_rng *rng, float *v, size_t n, double sd) {
    for (size_t i = 0; i < n; ++i) v[i] = (float)(sd * r1t_rng_normal(rng));
}

/* One (scheme, shape) on `backend` against ref. */
static int agree_one(r1_backend backend, r1_qgemm_scheme scheme, shape sh, int variant,
                     r1t_rng *rng, check_summary *s) {
    const int64_t M = sh.M, N = sh.N, K = sh.K;
    const int asym = scheme == R1_QGEMM_W4A16 && (variant & 1);
    const int pow2 = scheme == R1_QGEMM_FP8 && (variant & 1);
    char what[256];
    int ok = 1;
    float *x = malloc((size_t)(M * K) * 4), *w = malloc((size_t)(N * K) * 4);
    float *bias = malloc((size_t)N * 4);
    fill_normal(rng, x, (size_t)(M * K), 1.0);
    fill_normal(rng, w, (size_t)(N * K), 0.05);
    fill_normal(rng, bias, (size_t)N, 0.1);
    if (variant == 3) /* activations with a mean far from zero (as after SiLU): sums of large same-sign terms */
        for (int64_t i = 0; i < M * K; ++i) x[i] += 2.0f;
    if (variant & 2) { /* a zero row and an outlier */
        memset(x, 0, (size_t)K * 4);
        x[(M - 1) * K + K / 2] = 250.0f;
    }
    r1_qgemm_quant_desc xq = {scheme, R1_QGEMM_ACTIVATIONS, M, K, 0, pow2};
    r1_qgemm_quant_desc wq = {scheme, R1_QGEMM_WEIGHTS, N, K, asym, pow2};
    int64_t xsr, xsc, wsr, wsc;
    r1_qgemm_scale_shape(&xq, &xsr, &xsc);
    r1_qgemm_scale_shape(&wq, &wsr, &wsc);
    size_t xqb = scheme == R1_QGEMM_W4A16 ? (size_t)(M * K) * 2 : (size_t)(M * K);
    size_t wqb = r1_qgemm_quantized_bytes(&wq);
    uint8_t *qx = malloc(xqb), *qw = malloc(wqb), *zw = malloc((size_t)(wsr * wsc) + 1);
    uint8_t *q2 = malloc(xqb > wqb ? xqb : wqb), *z2 = malloc((size_t)(wsr * wsc) + 1);
    float *sx = malloc((size_t)(xsr * xsc + 1) * 4), *sw = malloc((size_t)(wsr * wsc) * 4);
    float *s2 = malloc((size_t)(xsr * xsc + wsr * wsc + 1) * 4);
    const char *sn = r1_qgemm_scheme_name(scheme), *bn = r1_backend_name(backend);

    /* ref quantizes; the backend must produce the same bytes */
    if (scheme == R1_QGEMM_W4A16) {
        for (int64_t i = 0; i < M * K; ++i) ((uint16_t *)qx)[i] = r1_f32_to_bf16(x[i]);
    } else {
        r1_qgemm_quantize(R1_REF, &xq, x, qx, sx, NULL, NULL);
        if (backend != R1_REF) {
            r1_status st = quantize_on(backend, &xq, x, q2, s2, NULL);
            snprintf(what, sizeof what, "%s(M=%lld,K=%lld,v=%d) quantize x (%s)", sn,
                     (long long)M, (long long)K, variant, bn);
            if (st != R1_OK) {
                printf("  %s failed: %s\n", what, r1_last_error());
                ok = 0;
            } else {
                ok &= compare_bytes(s, what, q2, qx, xqb);
                ok &= compare_scales(s, what, s2, sx, (size_t)(xsr * xsc));
            }
        }
    }
    r1_qgemm_quantize(R1_REF, &wq, w, qw, sw, asym ? zw : NULL, NULL);
    if (backend != R1_REF) {
        r1_status st = quantize_on(backend, &wq, w, q2, s2, asym ? z2 : NULL);
        snprintf(what, sizeof what, "%s(N=%lld,K=%lld,v=%d) quantize w (%s)", sn, (long long)N,
                 (long long)K, variant, bn);
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
        } else {
            ok &= compare_bytes(s, what, q2, qw, wqb);
            ok &= compare_scales(s, what, s2, sw, (size_t)(wsr * wsc));
            if (asym) ok &= compare_bytes(s, what, z2, zw, (size_t)(wsr * wsc));
        }
    }

    /* products */
    r1_qgemm_desc d = {scheme, M, N, K, R1_F32, asym};
    r1_qgemm_operands o = {qx, scheme == R1_QGEMM_W4A16 ? NULL : sx, qw, sw,
                           asym ? zw : NULL, (variant & 1) ? NULL : bias, 0, 0, 0, 0};
    r1_qgemm_set_scale_shapes(&d, &o);
    float *want = malloc((size_t)(M * N) * 4), *got = malloc((size_t)(M * N) * 4);
    r1_qgemm(R1_REF, &d, &o, want, NULL);
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        d.out_dtype = bf16 ? R1_BF16 : R1_F32;
        memset(got, 0xFF, (size_t)(M * N) * 4);
        r1_status st = gemm_on(backend, &d, &o, got);
        snprintf(what, sizeof what, "%s(M=%lld,N=%lld,K=%lld,v=%d) y %s (%s vs ref)", sn,
                 (long long)M, (long long)N, (long long)K, variant, bf16 ? "bf16" : "f32", bn);
        if (st == R1_EUNSUPPORTED) {
            printf("  %s: skipped (%s)\n", what, r1_last_error());
            continue;
        }
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
            continue;
        }
        ok &= compare_output(s, what, &d, got, want);
    }
    if (scheme == R1_QGEMM_W8A8) {
        int32_t *acc_ref = malloc((size_t)(M * N) * 4), *acc = malloc((size_t)(M * N) * 4);
        for (int64_t i = 0; i < M * N; ++i) acc[i] = (int32_t)0x7BADBEEF;
        r1_qgemm_w8a8_accumulators(R1_REF, M, N, K, (const int8_t *)qx, (const int8_t *)qw,
                                   acc_ref, NULL);
        r1_status st = accumulators_on(backend, M, N, K, (const int8_t *)qx, (const int8_t *)qw, acc);
        snprintf(what, sizeof what, "w8a8(M=%lld,N=%lld,K=%lld,v=%d) acc (%s vs ref)",
                 (long long)M, (long long)N, (long long)K, variant, bn);
        if (st != R1_OK) {
            printf("  %s failed: %s\n", what, r1_last_error());
            ok = 0;
        } else {
            ok &= compare_acc(s, what, acc, acc_ref, M, N);
        }
        free(acc_ref);
        free(acc);
    }
    s->rows += M;
    free(x), free(w), free(bias), free(qx), free(qw), free(zw), free(q2), free(z2);
    free(sx), free(sw), free(s2), free(want), free(got);
    return ok;
}

r1_status qgemm_check_agreement(r1_backend backend, uint64_t seed, int small,
                                check_summary *summary) {
    /* Edges of the CPU register tiles (2 x 4, K steps of 16 / 32 / 64) and the
     * CUDA tiles (64 x 64 blocks, 16 x 8 mma tiles, 32-column decode tiles). */
    /* The CUDA decode path (M <= 32, K % 128 == 0) splits K over 1, 2 or 4
     * warps depending on N (on a 132-SM H100, M <= 32: N > 16896, > 8448,
     * smaller) and loads 2 steps of 128 at a time: shapes with odd step
     * counts, odd N and M = 1, 5, 16, 24, 32 cover those edges. W4A16 with
     * M <= 16 takes the weight stream: 1 or 2 n8 tiles of X (M <= 8, 9..16),
     * X in chunks of 16 or 8 steps (K = 2176: 17 steps, a 1-step last chunk,
     * which blocks that start their walk at a later chunk meet mid-walk)
     * in a ring of 4 slots (K = 8448 with one n8 tile and 4224 with two wrap
     * around it), 1, 2 or 4 K slices per tile by 16-row tiles per block (on
     * 132 SMs: N = 17000 and 34000 one slice, 8456, 8000 and 6500 two, 5000
     * and 300 four; N = 68000 needs more than one block per SM), 8 steps in
     * flight in blocks of at most 9 consumer warps (N = 17000, 8000, 6500,
     * 300). */
    static const shape w8a8[] = {{1, 1, 1},      {3, 7, 33},     {5, 9, 384},     {17, 19, 100},
                                 {2, 5, 4096},   {65, 72, 96},   {64, 129, 1000}, {130, 67, 257},
                                 {16, 263, 1152}, {32, 40, 640}, {24, 17, 896},   {1, 8456, 256},
                                 {7, 17000, 256}};
    static const shape w4a16[] = {{1, 8, 128},     {2, 33, 256},   {16, 64, 1024},
                                  {17, 40, 384},   {33, 100, 256}, {70, 130, 128},
                                  {5, 129, 1152},  {9, 17, 640},   {16, 17000, 256},
                                  {3, 8456, 384},  {16, 300, 2176}, {8, 5000, 1152},
                                  {12, 34000, 256}, {2, 68000, 128}, {4, 8000, 8448},
                                  {13, 6500, 4224}};
    static const shape fp8[] = {{1, 7, 128},     {3, 130, 256},  {64, 64, 2048},
                                {65, 257, 384},  {1, 5, 2048},   {130, 70, 128},
                                {16, 131, 1152}, {27, 200, 640}, {2, 17000, 128},
                                {13, 4300, 640}};
    struct { r1_qgemm_scheme scheme; const shape *shapes; int count; } sets[] = {
        {R1_QGEMM_W8A8, w8a8, (int)(sizeof w8a8 / sizeof w8a8[0])},
        {R1_QGEMM_W4A16, w4a16, (int)(sizeof w4a16 / sizeof w4a16[0])},
        {R1_QGEMM_FP8, fp8, (int)(sizeof fp8 / sizeof fp8[0])},
    };
    /* CUDA's wgmma kernel (sm_90, M > 32): 128 x 128 tiles, more tiles than
     * SMs (a CTA takes several, its 6-stage K ring wrapping), a K tail that
     * the copy engine zero-fills (W8A8 K = 1040), edges in M and N. With one
     * tile row (M <= 128) K is split over clusters of 1, 2, 4 or 8 CTAs
     * that add their partial sums through shared memory: FP8 (64, 64, 2048)
     * above picks 4 parts itself (one tile, 16 K blocks; it is in the small
     * set that runs under compute-sanitizer); the last two shapes here force
     * 4 (W8A8) and 8 (FP8) parts (R1LAB_QGEMM_SPLIT), uneven over 9 K blocks,
     * with more tiles than clusters, so a cluster finishes several tiles and
     * reuses its exchange. Without the split the outputs leave through the
     * copy engine where Y's rows are a multiple of 16 bytes (bf16: N % 8 ==
     * 0; float32: N % 4 == 0), clipped at Y's edges: (300, 5700) only in
     * float32, (200, 1000) in both with edges in M and N and half-empty
     * warpgroups, (96, 20000) one tile row with more tiles than SMs, so no
     * split, with the bias. One tile row with a few tiles past one round
     * goes in two launches, the tail with K split (on 132 SMs: N = 17000
     * is 133 tiles, the 133rd, a partial one, split 8 ways over K = 4096;
     * N = 17700 leaves 7 tiles, split 4 ways over K = 2048, the bias and the
     * scales offset with them). Two tile rows or more take the tail too: FP8
     * (136, 8458, 2048) is 67 tile columns of two tile rows on 66 pairs, the
     * last column (two tiles, the lower one mostly past M) split 4 ways; in
     * (200, 1000, 2048) R1LAB_QGEMM_TAIL_COLUMNS puts the last 3 of 8 tile
     * columns in the tail (6 tiles, the last column partial). M <= 64 leaves
     * the second consumer warpgroup idle: (64, 17700) and (40, 17000) with
     * the split, (48, 20000, 256) without (two rounds of tiles). */
    static const shape w8a8_cuda[] = {{300, 5700, 768}, {129, 300, 1040}, {128, 5000, 1040},
                                      {200, 1000, 512}, {96, 20000, 256},  {40, 17000, 4096},
                                      {64, 17700, 2048}, {200, 1000, 2048}, {48, 20000, 256}};
    /* W4A16's wgmma kernel (sm_90, 16 < M): BM = 64 rows of X per unit for M
     * <= 64, 128 above; units of 128 weight rows (R1LAB_QGEMM_W4_SPLITK=0:
     * each consumer warpgroup 64 rows over all of K) or 64 rows with the two
     * consumers taking alternate K steps and adding their sums in shared
     * memory (=1). Forced both ways: edges in M and N, several tile rows
     * ((1100, 300): 9, past a column group of 8), more units than SMs (a CTA
     * takes several; with K split and an odd step count (K = 1152) the second
     * unit starts on the other consumer), M = 64 exactly, and the kernel's own
     * choice at (17, 129, 128) (one step, which the second consumer of the
     * first unit never gets) and at (300, 5700, 768) (128-row units, as for
     * every M past one tile row; asymmetric here, symmetric forced above). */
    static const shape w4a16_cuda[] = {{300, 5700, 768}, {40, 17000, 1152}, {64, 20000, 256},
                                       {130, 1000, 2048}, {17, 129, 128},   {300, 5700, 768},
                                       {1100, 300, 256}, {65, 8200, 640}};
    /* W4A16's wgmma kernel for M <= 16 (sm_90): 16 rows of X gathered in a
     * permuted K order, units of 128 weight rows, K split over clusters of
     * 1 to 8 CTAs (R1LAB_QGEMM_W4_PARTS) whose leaders, rotating from unit
     * to unit, add the pushed partial sums; by default for 8 < M
     * (R1LAB_QGEMM_W4_SMALL=1 takes it for any M <= 16). Forced: 4
     * parts with edges in M and N (M = 9, N = 1000: the last unit's rows past
     * N); 8 parts with one step each and more units than clusters, so every
     * CTA leads several units and the pushers wait for the leader's `freed`;
     * M = 1 at one step of K (1 part); 2 parts over an odd step count (4 and 5
     * steps, so one consumer of each pair has no step on a CTA's last
     * stage) at M = 5; 1 part with several units per CTA. Its own choice of
     * cluster size at (16, 7000, 7168) and at (13, 9000, 640) (more units
     * than clusters); the weight stream, forced (R1LAB_QGEMM_W4_SMALL=0), at
     * (16, 2000, 2048). Clusters whose size is not a power of two: 3 parts
     * over 11 steps (3, 4 and 4 a CTA) with several units per cluster; 7
     * parts of one step each, with more units than clusters. The small set
     * runs the second, fourth, sixth, eighth and tenth. */
    static const shape w4a16_small_cuda[] = {{9, 1000, 2048},  {16, 20000, 1024}, {1, 300, 128},   {5, 5000, 1152},
                                             {16, 7000, 7168}, {12, 4100, 768},   {13, 9000, 640}, {16, 2000, 2048},
                                             {16, 9000, 1408}, {14, 3000, 896}};
    static const shape fp8_cuda[] = {{300, 5700, 768}, {257, 129, 1024}, {100, 4100, 1152},
                                     {200, 1000, 512}, {96, 20000, 256},  {40, 17000, 4096},
                                     {64, 17700, 2048}, {200, 1000, 2048}, {48, 20000, 256},
                                     {136, 8458, 2048}};
    /* the switches set for one case (one or two of R1LAB_QGEMM_SPLIT, R1LAB_QGEMM_TAIL_COLUMNS,
     * R1LAB_QGEMM_W4_SPLITK, R1LAB_QGEMM_W4_PARTS, R1LAB_QGEMM_W4_SMALL) */
    typedef struct { const char *name, *value, *name2, *value2; } forced_switch;
    static const forced_switch split4 = {"R1LAB_QGEMM_SPLIT", "4", NULL, NULL},
                               split8 = {"R1LAB_QGEMM_SPLIT", "8", NULL, NULL},
                               tail3 = {"R1LAB_QGEMM_TAIL_COLUMNS", "3", NULL, NULL},
                               whole_k = {"R1LAB_QGEMM_W4_SPLITK", "0", NULL, NULL},
                               split_k = {"R1LAB_QGEMM_W4_SPLITK", "1", NULL, NULL},
                               parts1 = {"R1LAB_QGEMM_W4_PARTS", "1", NULL, NULL},
                               parts3 = {"R1LAB_QGEMM_W4_PARTS", "3", NULL, NULL},
                               parts4 = {"R1LAB_QGEMM_W4_PARTS", "4", NULL, NULL},
                               parts7 = {"R1LAB_QGEMM_W4_PARTS", "7", NULL, NULL},
                               wgmma_parts2 = {"R1LAB_QGEMM_W4_PARTS", "2", "R1LAB_QGEMM_W4_SMALL", "1"},
                               wgmma_parts8 = {"R1LAB_QGEMM_W4_PARTS", "8", "R1LAB_QGEMM_W4_SMALL", "1"},
                               wgmma_forced = {"R1LAB_QGEMM_W4_SMALL", "1", NULL, NULL},
                               stream = {"R1LAB_QGEMM_W4_SMALL", "0", NULL, NULL};
    static const forced_switch *const w8a8_switches[] = {NULL, NULL, &split4, NULL, NULL, NULL, NULL, &tail3, NULL};
    static const forced_switch *const w4a16_switches[] = {&whole_k, &split_k, &whole_k, &split_k,
                                                          NULL,     NULL,     &whole_k, &whole_k};
    static const forced_switch *const w4a16_small_switches[] = {&parts4, &wgmma_parts8, &wgmma_forced, &wgmma_parts2,
                                                                NULL,    &parts1,       NULL,          &stream,
                                                                &parts3, &parts7};
    static const forced_switch *const fp8_switches[] = {NULL, NULL, &split8, NULL, NULL, NULL, NULL, &tail3, NULL, NULL};
    /* small_count: the shapes the small set chooses from */
    struct {
        r1_qgemm_scheme scheme;
        const shape *shapes;
        const forced_switch *const *switches;
        int count, small_count;
    } cuda_sets[] = {
        {R1_QGEMM_W8A8, w8a8_cuda, w8a8_switches, (int)(sizeof w8a8_cuda / sizeof w8a8_cuda[0]), 8},
        {R1_QGEMM_FP8, fp8_cuda, fp8_switches, (int)(sizeof fp8_cuda / sizeof fp8_cuda[0]), 8},
        {R1_QGEMM_W4A16, w4a16_cuda, w4a16_switches, (int)(sizeof w4a16_cuda / sizeof w4a16_cuda[0]), 8},
        {R1_QGEMM_W4A16, w4a16_small_cuda, w4a16_small_switches,
         (int)(sizeof w4a16_small_cuda / sizeof w4a16_small_cuda[0]), 10}};
    _Static_assert(sizeof w8a8_switches / sizeof w8a8_switches[0] == sizeof w8a8_cuda / sizeof w8a8_cuda[0],
                   "one switch entry per W8A8 wgmma shape");
    _Static_assert(sizeof fp8_switches / sizeof fp8_switches[0] == sizeof fp8_cuda / sizeof fp8_cuda[0],
                   "one switch entry per FP8 wgmma shape");
    _Static_assert(sizeof w4a16_switches / sizeof w4a16_switches[0] == sizeof w4a16_cuda / sizeof w4a16_cuda[0],
                   "one switch entry per W4A16 wgmma shape");
    _Static_assert(sizeof w4a16_small_switches / sizeof w4a16_small_switches[0] ==
                       sizeof w4a16_small_cuda / sizeof w4a16_small_cuda[0],
                   "one switch entry per W4A16 M <= 16 wgmma shape");
    r1t_rng rng = r1t_rng_make(seed);
    double start = check_now();
    const int cuda_set_count = (int)(sizeof cuda_sets / sizeof cuda_sets[0]);
    for (int i = 0; i < 3 + cuda_set_count; ++i) {
        if (i >= 3 && backend != R1_CUDA) break;
        const r1_qgemm_scheme scheme = i < 3 ? sets[i].scheme : cuda_sets[i - 3].scheme;
        const shape *shapes = i < 3 ? sets[i].shapes : cuda_sets[i - 3].shapes;
        int first = 0, step = 1, count = i < 3 ? (small ? 3 : sets[i].count) : cuda_sets[i - 3].count;
        /* the small set (run under compute-sanitizer) takes the second, fourth,
         * sixth and eighth wgmma shapes of each scheme (and the tenth of
         * W4A16 at M <= 16): W8A8 (129, 300, 1040)
         * has whole tiles (the fast stores) next to edge tiles, (200, 1000,
         * 512) the copy engine's stores, (40, 17000, 4096) the tail launch of
         * one tile row, (200, 1000, 2048) a forced tail of two tile rows */
        if (i >= 3 && small) {
            first = 1;
            count = cuda_sets[i - 3].small_count;
            step = 2;
        }
        for (int j = first; j < count; j += step) {
            int variant = j % 4;
            const forced_switch *forced = i >= 3 ? cuda_sets[i - 3].switches[j] : NULL;
            if (forced) setenv(forced->name, forced->value, 1);
            if (forced && forced->name2) setenv(forced->name2, forced->value2, 1);
            int ok = agree_one(backend, scheme, shapes[j], variant, &rng, summary);
            if (forced) unsetenv(forced->name);
            if (forced && forced->name2) unsetenv(forced->name2);
            summary->cases_total += 1;
            summary->cases_passed += ok;
            if (summary->verbose || !ok)
                printf("  agreement %s(M=%lld,N=%lld,K=%lld,v=%d) %s (%s, seed %llu)\n",
                       r1_qgemm_scheme_name(scheme), (long long)shapes[j].M,
                       (long long)shapes[j].N, (long long)shapes[j].K, variant,
                       ok ? "ok" : "FAILED", r1_backend_name(backend), (unsigned long long)seed);
        }
    }
    summary->seconds += check_now() - start;
    return R1_OK;
}

/* ---- r1lab check ------------------------------------------------------------------------- */

static r1_status check_run(r1_backend backend, uint64_t seed, int64_t rows,
                           check_summary *summary) {
    if (!r1_backend_available(backend))
        return r1_fail(R1_EUNSUPPORTED, "backend %s is not available", r1_backend_name(backend));
    r1_status status = qgemm_check_goldens(backend, summary);
    if (status != R1_OK) return status;
    return qgemm_check_agreement(backend, seed, rows < 256, summary);
}

/* W8A8 at M = 64, N = K = 4096: tera-operations (2 M N K) per second. */
static double check_throughput(r1_backend backend) {
    if (backend == R1_CUDA || !r1_backend_available(backend)) return 0.0;
    const int64_t M = 64, N = 4096, K = 4096;
    int8_t *x = malloc((size_t)(M * K)), *w = malloc((size_t)(N * K));
    float *sx = malloc((size_t)M * 4), *sw = malloc((size_t)N * 4), *y = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * K; ++i) x[i] = (int8_t)(i * 7 % 255 - 127);
    for (int64_t i = 0; i < N * K; ++i) w[i] = (int8_t)(i * 13 % 255 - 127);
    for (int64_t i = 0; i < M; ++i) sx[i] = 0.01f;
    for (int64_t i = 0; i < N; ++i) sw[i] = 0.01f;
    r1_qgemm_desc d = {R1_QGEMM_W8A8, M, N, K, R1_F32, 0};
    r1_qgemm_operands o = {x, sx, w, sw, NULL, NULL, 0, 0, 0, 0};
    r1_qgemm_set_scale_shapes(&d, &o);
    double start = check_now();
    int runs = 0;
    while (check_now() - start < 0.5 || runs == 0) {
        if (r1_qgemm(backend, &d, &o, y, NULL) != R1_OK) break;
        ++runs;
    }
    double seconds = (check_now() - start) / (runs ? runs : 1);
    free(x), free(w), free(sx), free(sw), free(y);
    return runs ? 2.0 * (double)(M * N * K) / seconds / 1e12 : 0.0;
}

const check_component check_component_qgemm = {"qgemm", check_run, check_throughput,
                                               "TOP, W8A8 M=64 N=K=4096"};
