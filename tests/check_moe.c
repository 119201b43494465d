/*
 * tests/check_moe.c — the moe checks behind test_moe, test_moe_cuda and
 * `r1lab check`.
 *
 * Bars and why:
 *   ids, dispatch arrays, permuted f32 rows, updated bias
 *                     exact: every backend computes the same float32 selection
 *                     scores (r1lab's own sigmoid / exp, no fused multiply-add)
 *                     and breaks ties to the lower index. Golden cases made by
 *                     transformers keep every decision >= 3e-6 from a tie, far
 *                     above torch.sigmoid's ulp-level difference.
 *   weights           relative L2 <= 1e-6: float32 results of sums of at most
 *                     K (or E, for softmax) terms in a different order / width.
 *   combined rows f32 relative L2 <= 1e-6 (float32 accumulators over K terms
 *                     against float64); bf16 <= 1e-2 (one rounding to bf16).
 *   aux loss          relative 1e-6 (float64 sums of float32 affinities;
 *                     numpy's softmax uses float64 exp).
 *   layer (ref)       relative L2 <= 1e-5: transformers runs float32 matmuls
 *                     and torch's silu; ref sums in float64.
 */
#include "check_moe.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "random.h"
#include "r1lab/safetensors.h"

#define WEIGHT_BAR 1e-6
#define ROW_F32_BAR 1e-6
#define ROW_BF16_BAR 1e-2
#define AUX_LOSS_BAR 1e-6
#define LAYER_BAR 1e-5

/* ---- running a backend on host buffers ---------------------------------------- */

static void *to_device(const void *host, size_t bytes, r1_status *status) {
    void *device = NULL;
    if (*status != R1_OK || host == NULL) return NULL;
    *status = r1_device_alloc(&device, bytes ? bytes : 4);
    if (*status == R1_OK && bytes) *status = r1_device_copy(device, host, bytes, R1_HOST_TO_DEVICE);
    return device;
}

static void to_host(void *host, const void *device, size_t bytes, r1_status *status) {
    if (host == NULL || device == NULL || *status != R1_OK) return;
    *status = r1_device_copy(host, device, bytes, R1_DEVICE_TO_HOST);
}

r1_status moe_route_on_host(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                            const float *bias, int32_t *ids, float *weights) {
    if (backend != R1_CUDA)
        return r1_moe_route(backend, desc, logits, bias, ids, weights, NULL, 0, NULL);
    const size_t T = (size_t)desc->tokens, E = (size_t)desc->experts, K = (size_t)desc->top_k;
    r1_status prep = R1_OK, status;
    float *d_logits = to_device(logits, T * E * 4, &prep);
    float *d_bias = to_device(bias, E * 4, &prep);
    int32_t *d_ids = to_device(ids, T * K * 4, &prep);
    float *d_weights = to_device(weights, T * K * 4, &prep);
    status = prep;
    if (status == R1_OK) status = r1_moe_route(R1_CUDA, desc, d_logits, d_bias, d_ids, d_weights,
                                               NULL, 0, NULL);
    to_host(ids, d_ids, T * K * 4, &status);
    to_host(weights, d_weights, T * K * 4, &status);
    r1_device_free(d_logits); r1_device_free(d_bias); r1_device_free(d_ids); r1_device_free(d_weights);
    return status;
}

r1_status moe_dispatch_on_host(r1_backend backend, const r1_moe_desc *desc, const int32_t *ids,
                               const r1_moe_dispatch_out *out) {
    if (backend != R1_CUDA) return r1_moe_dispatch(backend, desc, ids, out, NULL, 0, NULL);
    const size_t N = (size_t)(desc->tokens * desc->top_k), E = (size_t)desc->experts;
    const size_t P = (size_t)r1_moe_padded_capacity(desc);
    const size_t blocks = (P + (size_t)desc->block_size - 1) / (size_t)desc->block_size;
    r1_status prep = R1_OK, status;
    int32_t *d_ids = to_device(ids, N * 4, &prep);
    r1_moe_dispatch_out d = {0};
    d.counts = to_device(out->counts, E * 4, &prep);
    d.offsets = to_device(out->offsets, (E + 1) * 4, &prep);
    d.permutation = to_device(out->permutation, N * 4, &prep);
    d.inverse = to_device(out->inverse, N * 4, &prep);
    d.padded_offsets = to_device(out->padded_offsets, (E + 1) * 4, &prep);
    d.sorted_padded = to_device(out->sorted_padded, P * 4, &prep);
    d.block_expert = to_device(out->block_expert, blocks * 4, &prep);
    d.padded_total = to_device(out->padded_total, 4, &prep);
    status = prep;
    if (status == R1_OK) status = r1_moe_dispatch(R1_CUDA, desc, d_ids, &d, NULL, 0, NULL);
    to_host(out->counts, d.counts, E * 4, &status);
    to_host(out->offsets, d.offsets, (E + 1) * 4, &status);
    to_host(out->permutation, d.permutation, N * 4, &status);
    to_host(out->inverse, d.inverse, N * 4, &status);
    to_host(out->padded_offsets, d.padded_offsets, (E + 1) * 4, &status);
    to_host(out->sorted_padded, d.sorted_padded, P * 4, &status);
    to_host(out->block_expert, d.block_expert, blocks * 4, &status);
    to_host(out->padded_total, d.padded_total, 4, &status);
    r1_device_free(d_ids); r1_device_free(d.counts); r1_device_free(d.offsets);
    r1_device_free(d.permutation); r1_device_free(d.inverse); r1_device_free(d.padded_offsets);
    r1_device_free(d.sorted_padded); r1_device_free(d.block_expert); r1_device_free(d.padded_total);
    return status;
}

r1_status moe_permute_on_host(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                              const void *x, const int32_t *inverse, void *x_sorted) {
    if (backend != R1_CUDA)
        return r1_moe_permute(backend, desc, dtype, x, inverse, x_sorted, NULL);
    const size_t N = (size_t)(desc->tokens * desc->top_k), T = (size_t)desc->tokens;
    const size_t row = r1_dtype_bytes(dtype, (size_t)desc->hidden);
    r1_status prep = R1_OK, status;
    void *d_x = to_device(x, T * row, &prep);
    void *d_inverse = to_device(inverse, N * 4, &prep);
    void *d_out = to_device(x_sorted, N * row, &prep);
    status = prep;
    if (status == R1_OK) status = r1_moe_permute(R1_CUDA, desc, dtype, d_x, d_inverse, d_out, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    to_host(x_sorted, d_out, N * row, &status);
    r1_device_free(d_x); r1_device_free(d_inverse); r1_device_free(d_out);
    return status;
}

r1_status moe_combine_on_host(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                              const void *expert_out, const int32_t *inverse,
                              const float *weights, const void *shared, void *y) {
    if (backend != R1_CUDA)
        return r1_moe_combine(backend, desc, dtype, expert_out, inverse, weights, shared, y, NULL);
    const size_t N = (size_t)(desc->tokens * desc->top_k), T = (size_t)desc->tokens;
    const size_t row = r1_dtype_bytes(dtype, (size_t)desc->hidden);
    r1_status prep = R1_OK, status;
    void *d_out = to_device(expert_out, N * row, &prep);
    void *d_inv = to_device(inverse, N * 4, &prep);
    void *d_w = to_device(weights, N * 4, &prep);
    void *d_shared = to_device(shared, T * row, &prep);
    void *d_y = to_device(y, T * row, &prep);
    status = prep;
    if (status == R1_OK)
        status = r1_moe_combine(R1_CUDA, desc, dtype, d_out, d_inv, d_w, d_shared, d_y, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    to_host(y, d_y, T * row, &status);
    r1_device_free(d_out); r1_device_free(d_inv); r1_device_free(d_w);
    r1_device_free(d_shared); r1_device_free(d_y);
    return status;
}

r1_status moe_balance_on_host(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                              const int32_t *ids, double alpha, float gamma,
                              const r1_moe_balance_out *out) {
    if (backend != R1_CUDA) return r1_moe_balance(backend, desc, logits, ids, alpha, gamma, out);
    const size_t T = (size_t)desc->tokens, E = (size_t)desc->experts, K = (size_t)desc->top_k;
    r1_status prep = R1_OK, status;
    void *d_logits = to_device(logits, T * E * 4, &prep);
    void *d_ids = to_device(ids, T * K * 4, &prep);
    r1_moe_balance_out d = {0};
    d.load = to_device(out->load, E * 4, &prep);
    d.aux_loss = to_device(out->aux_loss, 8, &prep);
    d.bias = to_device(out->bias, E * 4, &prep);
    status = prep;
    if (status == R1_OK) status = r1_moe_balance(R1_CUDA, desc, d_logits, d_ids, alpha, gamma, &d);
    to_host(out->load, d.load, E * 4, &status);
    to_host(out->aux_loss, d.aux_loss, 8, &status);
    to_host(out->bias, d.bias, E * 4, &status);
    r1_device_free(d_logits); r1_device_free(d_ids); r1_device_free(d.load);
    r1_device_free(d.aux_loss); r1_device_free(d.bias);
    return status;
}

/* ---- small helpers ------------------------------------------------------------- */

static void note_exact(check_summary *s, const char *label, const char *what, r1t_comparison c,
                       int *ok) {
    char name[256];
    snprintf(name, sizeof name, "%.200s %.40s", label, what);
    check_note_error(s, name, c.ok ? 0.0 : INFINITY, 1.0);
    if (!c.ok) *ok = 0;
}

static void note_real(check_summary *s, const char *label, const char *what, r1t_comparison c,
                      double bar, int *ok) {
    char name[256];
    snprintf(name, sizeof name, "%.200s %.40s", label, what);
    check_note_error(s, name, c.nonfinite_mismatch ? INFINITY : c.relative_l2, bar);
    if (!c.ok) *ok = 0;
}

static void poison_i32(int32_t *p, size_t n) { for (size_t i = 0; i < n; ++i) p[i] = 0x7BADBEEF; }
static void poison_f32(float *p, size_t n) { for (size_t i = 0; i < n; ++i) p[i] = -12345.0f; }

/* Routes, dispatches, permutes and combines (f32 and bf16) on `backend` and
 * on ref (or against the given expectations), comparing everything. */
typedef struct moe_problem {
    r1_moe_desc desc;
    const float *logits, *bias;
    const float *x, *expert_out, *shared; /* (T, d), (N, d), (T, d) or NULL */
} moe_problem;

static uint16_t *to_bf16(const float *v, size_t n) {
    uint16_t *out = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; ++i) out[i] = r1_f32_to_bf16(v[i]);
    return out;
}

static int dispatch_compare(r1_backend backend, const r1_moe_desc *desc, const int32_t *ids,
                            const r1_moe_dispatch_out *expected, const char *label,
                            check_summary *s, r1_status *status) {
    const size_t N = (size_t)(desc->tokens * desc->top_k), E = (size_t)desc->experts;
    const size_t P = (size_t)r1_moe_padded_capacity(desc);
    const size_t blocks = (P + (size_t)desc->block_size - 1) / (size_t)desc->block_size;
    int32_t *buffer = malloc((3 * (E + 1) + 2 * N + P + blocks + 1) * 4);
    r1_moe_dispatch_out o = {buffer, buffer + E, buffer + 2 * E + 1, buffer + 2 * E + 1 + N,
                             buffer + 2 * E + 1 + 2 * N, buffer + 3 * E + 2 + 2 * N,
                             buffer + 3 * E + 2 + 2 * N + P, buffer + 3 * E + 2 + 2 * N + P + blocks};
    poison_i32(buffer, 3 * (E + 1) + 2 * N + P + blocks + 1);
    int ok = 1;
    *status = moe_dispatch_on_host(backend, desc, ids, &o);
    if (*status == R1_OK) {
        char what[400];
#define EXACT(field, n)                                                                       \
    snprintf(what, sizeof what, "%.250s dispatch " #field, label);                               \
    note_exact(s, label, "dispatch " #field,                                                  \
               r1t_compare_exact_i32(what, o.field, expected->field, n), &ok)
        EXACT(counts, E);
        EXACT(offsets, E + 1);
        EXACT(permutation, N);
        EXACT(inverse, N);
        EXACT(padded_offsets, E + 1);
        EXACT(padded_total, 1);
        EXACT(sorted_padded, P);
        EXACT(block_expert, blocks);
#undef EXACT
    } else {
        ok = 0;
        printf("  %s: dispatch failed: %s %s\n", label, r1_status_str(*status), r1_last_error());
    }
    free(buffer);
    return ok;
}

/* Balance statistics of `backend` against ref on the same logits and ids:
 * load and the bias update exact, the loss within AUX_LOSS_BAR. */
static int balance_compare(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                           const int32_t *ids, const float *bias, const char *label,
                           check_summary *s, r1_status *status) {
    const size_t E = (size_t)desc->experts;
    int32_t load[R1_MOE_MAX_EXPERTS], load_ref[R1_MOE_MAX_EXPERTS];
    float updated[R1_MOE_MAX_EXPERTS], updated_ref[R1_MOE_MAX_EXPERTS];
    double loss = NAN, loss_ref = NAN;
    for (size_t i = 0; i < E; ++i) updated[i] = updated_ref[i] = bias ? bias[i] : 0.25f;
    poison_i32(load, E);
    r1_moe_balance_out o = {load, &loss, updated}, r = {load_ref, &loss_ref, updated_ref};
    const double alpha = 1e-4;
    const float gamma = 1e-3f;
    *status = moe_balance_on_host(backend, desc, logits, ids, alpha, gamma, &o);
    if (*status == R1_OK) *status = r1_moe_balance(R1_REF, desc, logits, ids, alpha, gamma, &r);
    if (*status != R1_OK) {
        printf("  %s: balance failed: %s %s\n", label, r1_status_str(*status), r1_last_error());
        return 0;
    }
    int ok = 1;
    char what[400];
    snprintf(what, sizeof what, "%.250s balance load", label);
    note_exact(s, label, "balance load", r1t_compare_exact_i32(what, load, load_ref, E), &ok);
    snprintf(what, sizeof what, "%.250s balance aux_loss", label);
    note_real(s, label, "balance aux_loss", r1t_compare_f64(what, &loss, &loss_ref, 1, AUX_LOSS_BAR),
              AUX_LOSS_BAR, &ok);
    snprintf(what, sizeof what, "%.250s balance bias update", label);
    note_exact(s, label, "balance bias update",
               r1t_compare_f32(what, updated, updated_ref, E, 0.0), &ok);
    return ok;
}

/* ---- golden files ---------------------------------------------------------------- */

typedef struct golden {
    r1_safetensors *file;
    char name[128];
} golden;

static int has(const r1_safetensors *f, const char *name) {
    r1_status s = r1_safetensors_find(f, name, NULL, NULL);
    r1_clear_error();
    return s == R1_OK;
}

/* A tensor as a fresh array of `dtype` (widening bf16 -> f32 and u8 -> i32). */
static void *tensor(const r1_safetensors *f, const char *name, r1_dtype want, size_t *count,
                    r1_status *status) {
    if (*status != R1_OK) return NULL;
    const r1_tensor_info *info;
    const void *data;
    *status = r1_safetensors_find(f, name, &info, &data);
    if (*status != R1_OK) return NULL;
    size_t n = 1;
    for (int i = 0; i < info->rank; ++i) n *= (size_t)info->shape[i];
    if (count) *count = n;
    void *out = malloc(n * 8 + 8);
    if (info->dtype == want) {
        memcpy(out, data, r1_dtype_bytes(want, n));
    } else if (want == R1_F32 && info->dtype == R1_BF16) {
        for (size_t i = 0; i < n; ++i) ((float *)out)[i] = r1_bf16_to_f32(((const uint16_t *)data)[i]);
    } else if (want == R1_I32 && info->dtype == R1_U8) {
        for (size_t i = 0; i < n; ++i) ((int32_t *)out)[i] = ((const uint8_t *)data)[i];
    } else {
        free(out);
        *status = r1_fail(R1_EFORMAT, "%s: tensor %s has dtype %s, expected %s; regenerate with "
                          "python3 golden/gen/moe.py",
                          r1_safetensors_path(f), name, r1_dtype_name(info->dtype),
                          r1_dtype_name(want));
        return NULL;
    }
    return out;
}

static int64_t meta_int(const r1_safetensors *f, const char *key) {
    const char *v = r1_safetensors_metadata(f, key);
    return v ? strtoll(v, NULL, 10) : 0;
}

static double meta_double(const r1_safetensors *f, const char *key) {
    const char *v = r1_safetensors_metadata(f, key);
    return v ? strtod(v, NULL) : 0.0;
}

static r1_moe_desc golden_desc(const r1_safetensors *f) {
    r1_moe_desc d = r1_moe_desc_default();
    const char *routing = r1_safetensors_metadata(f, "routing");
    d.routing = routing && strcmp(routing, "softmax_topk") == 0 ? R1_MOE_SOFTMAX_TOPK
                : routing && strcmp(routing, "group_limited_greedy") == 0 ? R1_MOE_GROUP_LIMITED_GREEDY
                                                                           : R1_MOE_NOAUX_TC;
    d.tokens = meta_int(f, "T");
    d.experts = (int32_t)meta_int(f, "E");
    d.top_k = (int32_t)meta_int(f, "K");
    d.n_group = (int32_t)meta_int(f, "n_group");
    d.topk_group = (int32_t)meta_int(f, "topk_group");
    d.norm_topk_prob = (int32_t)meta_int(f, "norm_topk_prob");
    d.routed_scaling_factor = (float)meta_double(f, "routed_scaling_factor");
    d.block_size = (int32_t)meta_int(f, "block_size");
    d.hidden = meta_int(f, "hidden");
    return d;
}

static int golden_case(r1_backend backend, const char *path, check_summary *s, r1_status *status) {
    r1_safetensors *f = NULL;
    *status = r1_safetensors_open(path, &f);
    if (*status != R1_OK) return 0;
    const char *case_name = r1_safetensors_metadata(f, "case");
    char label[256];
    snprintf(label, sizeof label, "moe(%.120s,backend=%s)", case_name ? case_name : path,
             r1_backend_name(backend));
    r1_moe_desc desc = golden_desc(f);
    const size_t T = (size_t)desc.tokens, K = (size_t)desc.top_k, N = T * K;
    const size_t d = (size_t)(desc.hidden > 0 ? desc.hidden : 0);
    int ok = 1;
    float *logits = tensor(f, "logits", R1_F32, NULL, status);
    float *bias = has(f, "bias") ? tensor(f, "bias", R1_F32, NULL, status) : NULL;
    int32_t *ids_expected = tensor(f, "ids", R1_I32, NULL, status);
    float *w_expected = tensor(f, "weights", R1_F32, NULL, status);
    int32_t *ids = malloc(N * 4);
    float *weights = malloc(N * 4);
    if (*status != R1_OK) goto done;
    const int is_layer = has(f, "w1");

    /* Routing. */
    poison_i32(ids, N);
    poison_f32(weights, N);
    *status = moe_route_on_host(backend, &desc, logits, bias, ids, weights);
    if (*status != R1_OK) {
        printf("  %s: route failed: %s %s\n", label, r1_status_str(*status), r1_last_error());
        ok = 0;
        goto done;
    }
    char what[300];
    snprintf(what, sizeof what, "%.250s ids", label);
    note_exact(s, label, "ids", r1t_compare_exact_i32(what, ids, ids_expected, N), &ok);
    snprintf(what, sizeof what, "%.250s weights", label);
    note_real(s, label, "weights", r1t_compare_f32(what, weights, w_expected, N, WEIGHT_BAR),
              WEIGHT_BAR, &ok);
    s->rows += (int64_t)T;

    /* Dispatch and balance. */
    if (has(f, "counts")) {
        r1_moe_dispatch_out e = {0};
        e.counts = tensor(f, "counts", R1_I32, NULL, status);
        e.offsets = tensor(f, "offsets", R1_I32, NULL, status);
        e.permutation = tensor(f, "permutation", R1_I32, NULL, status);
        e.inverse = tensor(f, "inverse", R1_I32, NULL, status);
        e.padded_offsets = tensor(f, "padded_offsets", R1_I32, NULL, status);
        e.sorted_padded = tensor(f, "sorted_padded", R1_I32, NULL, status);
        e.block_expert = tensor(f, "block_expert", R1_I32, NULL, status);
        e.padded_total = tensor(f, "padded_total", R1_I32, NULL, status);
        if (*status == R1_OK && !dispatch_compare(backend, &desc, ids_expected, &e, label, s, status))
            ok = 0;
        if (*status == R1_OK) {
            const size_t E = (size_t)desc.experts;
            int32_t *load_expected = tensor(f, "load", R1_I32, NULL, status);
            double *loss_expected = tensor(f, "aux_loss", R1_F64, NULL, status);
            float *bias_expected = tensor(f, "bias_updated", R1_F32, NULL, status);
            int32_t load[R1_MOE_MAX_EXPERTS];
            double loss = NAN;
            float updated[R1_MOE_MAX_EXPERTS];
            for (size_t i = 0; i < E; ++i) updated[i] = bias ? bias[i] : 0.0f;
            r1_moe_balance_out bo = {load, &loss, updated};
            if (*status == R1_OK)
                *status = moe_balance_on_host(backend, &desc, logits, ids_expected,
                                         meta_double(f, "alpha"), (float)meta_double(f, "gamma"), &bo);
            if (*status == R1_OK) {
                snprintf(what, sizeof what, "%.250s load", label);
                note_exact(s, label, "load", r1t_compare_exact_i32(what, load, load_expected, E), &ok);
                snprintf(what, sizeof what, "%.250s aux_loss", label);
                note_real(s, label, "aux_loss",
                          r1t_compare_f64(what, &loss, loss_expected, 1, AUX_LOSS_BAR),
                          AUX_LOSS_BAR, &ok);
                snprintf(what, sizeof what, "%.250s bias update", label);
                note_exact(s, label, "bias update",
                           r1t_compare_f32(what, updated, bias_expected, E, 0.0), &ok);
            }
            free(load_expected); free(loss_expected); free(bias_expected);
        }
        free(e.counts); free(e.offsets); free(e.permutation); free(e.inverse);
        free(e.padded_offsets); free(e.sorted_padded); free(e.block_expert); free(e.padded_total);
    }

    /* Permute and combine. */
    if (*status == R1_OK && !is_layer && has(f, "x")) {
        float *x = tensor(f, "x", R1_F32, NULL, status);
        float *x_sorted_expected = tensor(f, "x_sorted", R1_F32, NULL, status);
        float *expert_out = tensor(f, "expert_out", R1_F32, NULL, status);
        float *shared = tensor(f, "shared", R1_F32, NULL, status);
        float *y_expected = tensor(f, "y", R1_F32, NULL, status);
        int32_t *inv = tensor(f, "inverse", R1_I32, NULL, status);
        float *x_sorted = malloc(N * d * 4 + 4), *y = malloc(T * d * 4 + 4);
        if (*status == R1_OK) {
            poison_f32(x_sorted, N * d);
            *status = moe_permute_on_host(backend, &desc, R1_F32, x, inv, x_sorted);
        }
        if (*status == R1_OK) {
            snprintf(what, sizeof what, "%.250s x_sorted f32", label);
            note_exact(s, label, "x_sorted f32",
                       r1t_compare_f32(what, x_sorted, x_sorted_expected, N * d, 0.0), &ok);
            poison_f32(y, T * d);
            *status = moe_combine_on_host(backend, &desc, R1_F32, expert_out, inv, w_expected,
                                          shared, y);
        }
        if (*status == R1_OK) {
            snprintf(what, sizeof what, "%.250s combine f32", label);
            note_real(s, label, "combine f32", r1t_compare_f32(what, y, y_expected, T * d, ROW_F32_BAR),
                      ROW_F32_BAR, &ok);
            uint16_t *out16 = to_bf16(expert_out, N * d), *shared16 = to_bf16(shared, T * d);
            uint16_t *y16 = malloc(T * d * 2 + 2);
            *status = moe_combine_on_host(backend, &desc, R1_BF16, out16, inv, w_expected, shared16, y16);
            if (*status == R1_OK) {
                for (size_t i = 0; i < T * d; ++i) y[i] = r1_bf16_to_f32(y16[i]);
                snprintf(what, sizeof what, "%.250s combine bf16", label);
                note_real(s, label, "combine bf16",
                          r1t_compare_f32(what, y, y_expected, T * d, ROW_BF16_BAR), ROW_BF16_BAR, &ok);
            }
            free(out16); free(shared16); free(y16);
        }
        free(x); free(x_sorted_expected); free(expert_out); free(shared); free(y_expected);
        free(inv); free(x_sorted); free(y);
    }

    /* The whole layer (ref only). */
    if (*status == R1_OK && is_layer && backend == R1_REF) {
        r1_moe_layer_weights lw = {0};
        lw.intermediate = meta_int(f, "intermediate");
        lw.shared_intermediate = meta_int(f, "shared_intermediate");
        float *x = tensor(f, "x", R1_F32, NULL, status);
        float *y_expected = tensor(f, "y", R1_F32, NULL, status);
        lw.gate_weight = tensor(f, "gate_weight", R1_F32, NULL, status);
        lw.bias = bias;
        lw.w1 = tensor(f, "w1", R1_F32, NULL, status);
        lw.w3 = tensor(f, "w3", R1_F32, NULL, status);
        lw.w2 = tensor(f, "w2", R1_F32, NULL, status);
        lw.shared_w1 = tensor(f, "shared_w1", R1_F32, NULL, status);
        lw.shared_w3 = tensor(f, "shared_w3", R1_F32, NULL, status);
        lw.shared_w2 = tensor(f, "shared_w2", R1_F32, NULL, status);
        float *y = malloc(T * d * 4 + 4), *gate_logits = malloc(T * (size_t)desc.experts * 4);
        if (*status == R1_OK) *status = r1_moe_layer(R1_REF, &desc, &lw, x, y);
        if (*status == R1_OK) {
            snprintf(what, sizeof what, "%.250s layer y", label);
            note_real(s, label, "layer y", r1t_compare_f32(what, y, y_expected, T * d, LAYER_BAR),
                      LAYER_BAR, &ok);
            *status = r1_moe_gate_logits(R1_REF, &desc, x, lw.gate_weight, gate_logits, NULL);
        }
        if (*status == R1_OK) {
            snprintf(what, sizeof what, "%.250s gate logits", label);
            note_real(s, label, "gate logits",
                      r1t_compare_f32(what, gate_logits, logits, T * (size_t)desc.experts, 1e-6),
                      1e-6, &ok);
        }
        free(x); free(y_expected); free((void *)lw.gate_weight); free((void *)lw.w1);
        free((void *)lw.w3); free((void *)lw.w2); free((void *)lw.shared_w1);
        free((void *)lw.shared_w3); free((void *)lw.shared_w2); free(y); free(gate_logits);
    }
done:
    if (*status != R1_OK) ok = 0;
    if (s->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(logits); free(bias); free(ids_expected); free(w_expected); free(ids); free(weights);
    r1_safetensors_close(f);
    return ok;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

r1_status check_moe_golden(r1_backend backend, check_summary *summary) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/moe", check_golden_dir());
    DIR *handle = opendir(dir);
    if (!handle) return r1_fail(R1_EIO, "cannot open the golden folder %s", dir);
    char *names[256];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(handle)) != NULL && count < 256) {
        size_t n = strlen(entry->d_name);
        if (n > 12 && strcmp(entry->d_name + n - 12, ".safetensors") == 0)
            {
            names[count] = malloc(n + 1);
            memcpy(names[count++], entry->d_name, n + 1);
        }
    }
    closedir(handle);
    qsort(names, (size_t)count, sizeof names[0], compare_names);
    r1_status result = count ? R1_OK : r1_fail(R1_EIO, "no golden files in %s", dir);
    for (int i = 0; i < count; ++i) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        r1_status status = R1_OK;
        double start = check_now();
        int ok = golden_case(backend, path, summary, &status);
        summary->seconds += check_now() - start;
        summary->cases_total += 1;
        summary->cases_passed += ok;
        if (status != R1_OK && result == R1_OK) result = status;
        free(names[i]);
    }
    r1_status manifest = check_golden_manifest("moe", summary);
    return result != R1_OK ? result : manifest;
}

/* ---- randomized agreement ----------------------------------------------------------- */

/* Logits drawn with planted ties: with probability 1/4 an entry copies an
 * earlier one of the same token, 1/8 sits one ulp from it; the rest are normal
 * or (coarse rows) from a small grid, where ties are everywhere. */
static void random_logits(r1t_rng *rng, float *logits, int64_t T, int E, int coarse) {
    for (int64_t t = 0; t < T; ++t) {
        float *l = logits + t * E;
        for (int i = 0; i < E; ++i) {
            double u = r1t_rng_uniform(rng);
            if (i > 0 && u < 0.25) {
                l[i] = l[r1t_rng_range(rng, 0, i - 1)];
            } else if (i > 0 && u < 0.375) {
                float base = l[r1t_rng_range(rng, 0, i - 1)];
                l[i] = nextafterf(base, u < 0.31 ? INFINITY : -INFINITY);
            } else if (coarse) {
                l[i] = (float)r1t_rng_range(rng, -4, 4) * 0.5f;
            } else {
                l[i] = (float)(2.0 * r1t_rng_normal(rng));
            }
        }
    }
}

static int agreement_problem(r1_backend backend, const r1_moe_desc *desc, r1t_rng *rng,
                             int with_bias, int coarse, check_summary *s, r1_status *status) {
    const int64_t T = desc->tokens;
    const int E = desc->experts, K = desc->top_k;
    const size_t N = (size_t)(T * K), d = (size_t)desc->hidden;
    char label[256];
    snprintf(label, sizeof label,
             "moe agreement(routing=%d,T=%lld,E=%d,K=%d,G=%d,topk_group=%d,norm=%d,bias=%d,"
             "coarse=%d,d=%zu,backend=%s)",
             (int)desc->routing, (long long)T, E, K, desc->n_group, desc->topk_group,
             desc->norm_topk_prob, with_bias, coarse, d, r1_backend_name(backend));
    float *logits = malloc((size_t)T * (size_t)E * 4);
    float *bias = with_bias ? malloc((size_t)E * 4) : NULL;
    random_logits(rng, logits, T, E, coarse);
    for (int i = 0; bias && i < E; ++i)
        bias[i] = coarse ? (float)r1t_rng_range(rng, -2, 2) * 0.125f : (float)(0.05 * r1t_rng_normal(rng));
    int32_t *ids = malloc(N * 4), *ids_ref = malloc(N * 4);
    float *w = malloc(N * 4), *w_ref = malloc(N * 4);
    int ok = 1;
    poison_i32(ids, N);
    poison_f32(w, N);
    *status = moe_route_on_host(backend, desc, logits, bias, ids, w);
    if (*status == R1_OK) *status = r1_moe_route(R1_REF, desc, logits, bias, ids_ref, w_ref, NULL, 0, NULL);
    char what[400];
    if (*status == R1_OK) {
        snprintf(what, sizeof what, "%.250s ids", label);
        note_exact(s, label, "ids", r1t_compare_exact_i32(what, ids, ids_ref, N), &ok);
        snprintf(what, sizeof what, "%.250s weights", label);
        note_real(s, label, "weights", r1t_compare_f32(what, w, w_ref, N, WEIGHT_BAR), WEIGHT_BAR, &ok);
        s->rows += T;
    }
    if (*status == R1_OK) {
        const size_t P = (size_t)r1_moe_padded_capacity(desc);
        const size_t blocks = (P + (size_t)desc->block_size - 1) / (size_t)desc->block_size;
        int32_t *buffer = malloc((3 * ((size_t)E + 1) + 2 * N + P + blocks + 1) * 4);
        r1_moe_dispatch_out e = {buffer, buffer + E, buffer + 2 * E + 1, buffer + 2 * E + 1 + N,
                                 buffer + 2 * E + 1 + 2 * N, buffer + 3 * E + 2 + 2 * N,
                                 buffer + 3 * E + 2 + 2 * N + P, buffer + 3 * E + 2 + 2 * N + P + blocks};
        *status = r1_moe_dispatch(R1_REF, desc, ids_ref, &e, NULL, 0, NULL);
        if (*status == R1_OK && !dispatch_compare(backend, desc, ids_ref, &e, label, s, status)) ok = 0;
        if (*status == R1_OK && !balance_compare(backend, desc, logits, ids_ref, bias, label, s, status))
            ok = 0;
        if (*status == R1_OK && d > 0) {
            float *x = malloc((size_t)T * d * 4), *eo = malloc(N * d * 4), *sh = malloc((size_t)T * d * 4);
            for (size_t i = 0; i < (size_t)T * d; ++i) x[i] = (float)r1t_rng_normal(rng);
            for (size_t i = 0; i < N * d; ++i) eo[i] = (float)r1t_rng_normal(rng);
            for (size_t i = 0; i < (size_t)T * d; ++i) sh[i] = (float)r1t_rng_normal(rng);
            float *a = malloc(N * d * 4), *b = malloc(N * d * 4);
            poison_f32(a, N * d);
            *status = moe_permute_on_host(backend, desc, R1_F32, x, e.inverse, a);
            if (*status == R1_OK) *status = r1_moe_permute(R1_REF, desc, R1_F32, x, e.inverse, b, NULL);
            if (*status == R1_OK) {
                snprintf(what, sizeof what, "%.250s permute f32", label);
                note_exact(s, label, "permute f32", r1t_compare_f32(what, a, b, N * d, 0.0), &ok);
            }
            const int with_shared = (int)(r1t_rng_u64(rng) & 1);
            for (int bf = 0; bf < 2 && *status == R1_OK; ++bf) {
                r1_dtype dt = bf ? R1_BF16 : R1_F32;
                void *eo_in = bf ? (void *)to_bf16(eo, N * d) : (void *)eo;
                void *sh_in = !with_shared ? NULL : bf ? (void *)to_bf16(sh, (size_t)T * d) : (void *)sh;
                void *ya = malloc((size_t)T * d * 4), *yb = malloc((size_t)T * d * 4);
                poison_f32(ya, (size_t)T * d);
                *status = moe_combine_on_host(backend, desc, dt, eo_in, e.inverse, w_ref, sh_in, ya);
                if (*status == R1_OK)
                    *status = r1_moe_combine(R1_REF, desc, dt, eo_in, e.inverse, w_ref, sh_in, yb, NULL);
                if (*status == R1_OK) {
                    float *fa = ya, *fb = yb;
                    if (bf) {
                        fa = malloc((size_t)T * d * 4);
                        fb = malloc((size_t)T * d * 4);
                        for (size_t i = 0; i < (size_t)T * d; ++i) {
                            fa[i] = r1_bf16_to_f32(((uint16_t *)ya)[i]);
                            fb[i] = r1_bf16_to_f32(((uint16_t *)yb)[i]);
                        }
                    }
                    double bar = bf ? ROW_BF16_BAR : ROW_F32_BAR;
                    snprintf(what, sizeof what, "%.250s combine %s", label, bf ? "bf16" : "f32");
                    note_real(s, label, bf ? "combine bf16" : "combine f32",
                              r1t_compare_f32(what, fa, fb, (size_t)T * d, bar), bar, &ok);
                    if (bf) { free(fa); free(fb); }
                }
                if (bf) { free(eo_in); free(sh_in); }
                free(ya); free(yb);
            }
            free(x); free(eo); free(sh); free(a); free(b);
        }
        free(buffer);
    }
    if (*status != R1_OK) {
        printf("  %s: %s %s\n", label, r1_status_str(*status), r1_last_error());
        ok = 0;
    }
    if (s->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(logits); free(bias); free(ids); free(ids_ref); free(w); free(w_ref);
    return ok;
}

/* Dispatch (and balance) on constructed ids against ref: sizes that cross
 * the CUDA chunks of 1024 pairs, E other than 256, skewed and one-expert
 * routings. Slot k of token t takes expert (first + k * step) % E, with
 * `first` drawn per token (or fixed: every token on the same experts). */
static int dispatch_shape_problem(r1_backend backend, r1t_rng *rng, int64_t T, int E, int K,
                                  int block, int same_experts, check_summary *s, r1_status *status) {
    r1_moe_desc desc = r1_moe_desc_default();
    desc.routing = R1_MOE_SOFTMAX_TOPK;
    desc.tokens = T;
    desc.experts = E;
    desc.top_k = K;
    desc.block_size = block;
    desc.routed_scaling_factor = 1.0f;
    char label[256];
    snprintf(label, sizeof label, "moe dispatch shape(T=%lld,E=%d,K=%d,B=%d,same_experts=%d,backend=%s)",
             (long long)T, E, K, block, same_experts, r1_backend_name(backend));
    const size_t N = (size_t)(T * K);
    int32_t *ids = malloc(N * 4);
    float *logits = malloc((size_t)T * (size_t)E * 4);
    random_logits(rng, logits, T, E, 0);
    const int step = E / K > 0 ? E / K : 1;
    for (int64_t t = 0; t < T; ++t) {
        const int first = same_experts ? 7 % E : (int)r1t_rng_range(rng, 0, E - 1);
        for (int k = 0; k < K; ++k) ids[t * K + k] = (first + k * step) % E;
    }
    const size_t P = (size_t)r1_moe_padded_capacity(&desc);
    const size_t blocks = (P + (size_t)block - 1) / (size_t)block, Eu = (size_t)E;
    int32_t *buffer = malloc((3 * (Eu + 1) + 2 * N + P + blocks + 1) * 4);
    r1_moe_dispatch_out e = {buffer, buffer + Eu, buffer + 2 * Eu + 1, buffer + 2 * Eu + 1 + N,
                             buffer + 2 * Eu + 1 + 2 * N, buffer + 3 * Eu + 2 + 2 * N,
                             buffer + 3 * Eu + 2 + 2 * N + P, buffer + 3 * Eu + 2 + 2 * N + P + blocks};
    int ok = 1;
    *status = r1_moe_dispatch(R1_REF, &desc, ids, &e, NULL, 0, NULL);
    if (*status == R1_OK && !dispatch_compare(backend, &desc, ids, &e, label, s, status)) ok = 0;
    if (*status == R1_OK && !balance_compare(backend, &desc, logits, ids, NULL, label, s, status)) ok = 0;
    if (*status != R1_OK) {
        printf("  %s: %s %s\n", label, r1_status_str(*status), r1_last_error());
        ok = 0;
    }
    if (s->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(ids); free(logits); free(buffer);
    return ok;
}

static r1_status check_moe_dispatch_shapes(r1_backend backend, r1t_rng *rng, check_summary *summary) {
    static const struct { int64_t T; int E, K, block, same; } shapes[] = {
        {128, 256, 8, 64, 0},   /* exactly one chunk of 1024 pairs */
        {129, 256, 8, 64, 0},   /* one pair-row past it            */
        {300, 256, 8, 64, 0},   /* three chunks                    */
        {700, 64, 6, 16, 0},    /* E = 64, 4200 pairs              */
        {1000, 16, 4, 8, 1},    /* every token on the same 4 experts */
        {2500, 32, 1, 64, 1},   /* all 2500 pairs to one expert    */
        {5000, 1024, 8, 128, 0}, /* E = 1024, 40000 pairs (40 chunks) */
        {3, 96, 3, 1, 0},       /* block 1, tiny                   */
    };
    r1_status result = R1_OK;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        r1_status status = R1_OK;
        double start = check_now();
        int ok = dispatch_shape_problem(backend, rng, shapes[i].T, shapes[i].E, shapes[i].K,
                                        shapes[i].block, shapes[i].same, summary, &status);
        summary->seconds += check_now() - start;
        summary->cases_total += 1;
        summary->cases_passed += ok;
        summary->rows += shapes[i].T;
        if (status != R1_OK && result == R1_OK) result = status;
    }
    return result;
}

r1_status check_moe_agreement(r1_backend backend, uint64_t seed, int64_t tokens,
                              check_summary *summary) {
    r1t_rng rng = r1t_rng_make(seed ^ 0x6d6f65ull);
    r1t_rng shape_rng = r1t_rng_make(seed ^ 0x7368617065ull);
    r1_status result = check_moe_dispatch_shapes(backend, &shape_rng, summary);
    int64_t done = 0;
    for (int round = 0; done < tokens || round < 8; ++round) {
        r1_moe_desc desc = r1_moe_desc_default();
        int with_bias = 1, coarse = round % 3 == 1;
        switch (round % 8) {
        case 0: desc.tokens = 1 + (int64_t)r1t_rng_range(&rng, 0, 300); desc.hidden = 64; break;
        case 1: desc.tokens = 37; desc.hidden = 24; desc.block_size = 16; break;
        case 2: desc.tokens = tokens >= 4096 ? 4096 : 64; desc.hidden = 0; break;
        case 3:
            desc.routing = R1_MOE_SOFTMAX_TOPK; with_bias = 0; desc.experts = 64; desc.top_k = 6;
            desc.tokens = 50; desc.norm_topk_prob = (int32_t)(r1t_rng_u64(&rng) & 1);
            desc.routed_scaling_factor = 1.0f; desc.hidden = 40; desc.block_size = 8;
            break;
        case 4:
            desc.routing = R1_MOE_GROUP_LIMITED_GREEDY; with_bias = 0; desc.experts = 160;
            desc.n_group = 8; desc.topk_group = 3; desc.top_k = 6; desc.norm_topk_prob = 0;
            desc.routed_scaling_factor = 16.0f; desc.tokens = 33; desc.hidden = 16;
            break;
        case 5:
            desc.experts = 16; desc.n_group = 4; desc.topk_group = 2; desc.top_k = 4;
            desc.tokens = 100; desc.hidden = 8; desc.block_size = 4; coarse = 1;
            break;
        case 6:
            desc.experts = 72; desc.n_group = 3; desc.topk_group = 1; desc.top_k = 5;
            desc.tokens = 20; desc.hidden = 12; desc.block_size = 1;
            desc.norm_topk_prob = 0;
            break;
        default:
            desc.routing = R1_MOE_SOFTMAX_TOPK; with_bias = 0; desc.experts = 8; desc.top_k = 2;
            desc.tokens = 64; desc.hidden = 32; desc.block_size = 128; coarse = 1;
            break;
        }
        if (desc.hidden == 0) desc.hidden = 1;
        r1_status status = R1_OK;
        double start = check_now();
        int ok = agreement_problem(backend, &desc, &rng, with_bias, coarse, summary, &status);
        summary->seconds += check_now() - start;
        summary->cases_total += 1;
        summary->cases_passed += ok;
        done += desc.tokens;
        if (status != R1_OK && result == R1_OK) result = status;
        if (round > 10000) break;
    }
    return result;
}

double check_moe_throughput(r1_backend backend) {
    r1_moe_desc desc = r1_moe_desc_default();
    desc.tokens = 4096;
    const size_t T = 4096, E = 256, K = 8;
    float *logits = malloc(T * E * 4), *bias = malloc(E * 4), *w = malloc(T * K * 4);
    int32_t *ids = malloc(T * K * 4);
    r1t_rng rng = r1t_rng_make(7);
    for (size_t i = 0; i < T * E; ++i) logits[i] = (float)r1t_rng_normal(&rng);
    for (size_t i = 0; i < E; ++i) bias[i] = (float)(0.02 * r1t_rng_normal(&rng));
    double rate = 0;
    if (backend != R1_CUDA) {
        double start = check_now();
        int runs = 0;
        while (check_now() - start < 0.5 || runs < 2) {
            if (r1_moe_route(backend, &desc, logits, bias, ids, w, NULL, 0, NULL) != R1_OK) break;
            ++runs;
        }
        rate = runs * (double)T / (check_now() - start);
    } else {
        r1_status st = R1_OK;
        float *dl = to_device(logits, T * E * 4, &st), *db = to_device(bias, E * 4, &st);
        int32_t *di = to_device(ids, T * K * 4, &st);
        float *dw = to_device(w, T * K * 4, &st);
        desc.asynchronous = 1;
        if (st == R1_OK) {
            r1_moe_route(R1_CUDA, &desc, dl, db, di, dw, NULL, 0, NULL);
            r1_device_synchronize();
            double start = check_now();
            int runs = 0;
            for (; runs < 200; ++runs)
                if (r1_moe_route(R1_CUDA, &desc, dl, db, di, dw, NULL, 0, NULL) != R1_OK) break;
            r1_device_synchronize();
            rate = runs * (double)T / (check_now() - start);
        }
        r1_device_free(dl); r1_device_free(db); r1_device_free(di); r1_device_free(dw);
    }
    free(logits); free(bias); free(w); free(ids);
    return rate;
}

/* ---- the component as `r1lab check` runs it ------------------------------------ */

static r1_status moe_check_run(r1_backend backend, uint64_t seed, int64_t rows,
                               check_summary *summary) {
    r1_status status = check_moe_golden(backend, summary);
    if (status != R1_OK || backend == R1_REF) return status;
    return check_moe_agreement(backend, seed, rows, summary);
}

static double moe_check_throughput(r1_backend backend) { return check_moe_throughput(backend); }

const check_component check_component_moe = {"moe", moe_check_run, moe_check_throughput,
                                             "tokens routed, V3 gate T=4096 E=256 top-8"};
