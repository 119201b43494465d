/*
 * tests/check_kd.c — the kd checks behind test_kd, test_kd_cuda and
 * `r1lab check`: golden files (golden/gen/kd.py, PyTorch autograd) and
 * randomized agreement with ref. Bars and why: tests/check_kd.h.
 */
#include "check_kd.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "random.h"
#include "r1lab/safetensors.h"

double kd_bar(r1_dtype dtype) { return dtype == R1_BF16 ? KD_BAR_BF16 : KD_BAR_F32; }

/* ---- running a backend on host buffers ------------------------------------------ */

r1_status kd_run_on_host(r1_backend backend, const r1_kd_desc *desc, const r1_kd_inputs *in,
                         const r1_kd_outputs *out) {
    if (backend != R1_CUDA) return r1_kd_loss(backend, desc, in, out, NULL, 0, NULL);
    r1_status status = r1_kd_validate(desc, in, out);
    if (status != R1_OK) return status;
    const size_t N = (size_t)desc->tokens, V = (size_t)desc->vocab, k = (size_t)desc->teacher_topk;
    const size_t logit_bytes = r1_dtype_bytes(desc->dtype, N * V);
    r1_status prep = R1_OK;
    r1_kd_inputs d_in = {0};
    r1_kd_outputs d_out = {0};
    int in_place = out->grad != NULL && out->grad == in->student_logits;
    d_in.student_logits = check_device_copy_of(in->student_logits, logit_bytes, &prep);
    d_in.teacher_logits = check_device_copy_of(in->teacher_logits, logit_bytes, &prep);
    d_in.teacher_ids = check_device_copy_of(in->teacher_ids, N * k * 4, &prep);
    d_in.teacher_logprobs = check_device_copy_of(in->teacher_logprobs, N * k * 4, &prep);
    d_in.labels = check_device_copy_of(in->labels, N * 4, &prep);
    d_out.loss = check_device_copy_of(out->loss, 4, &prep);
    d_out.token_losses = check_device_copy_of(out->token_losses, N * 4, &prep);
    d_out.grad = in_place ? (void *)d_in.student_logits : check_device_copy_of(out->grad, logit_bytes, &prep);
    if (prep == R1_OK) {
        status = r1_kd_loss(R1_CUDA, desc, &d_in, &d_out, NULL, 0, NULL);
        check_copy_back(out->loss, d_out.loss, 4, &status);
        check_copy_back(out->token_losses, d_out.token_losses, N * 4, &status);
        check_copy_back(out->grad, d_out.grad, logit_bytes, &status);
    } else {
        status = prep;
    }
    r1_device_free((void *)d_in.student_logits);
    r1_device_free((void *)d_in.teacher_logits);
    r1_device_free((void *)d_in.teacher_ids);
    r1_device_free((void *)d_in.teacher_logprobs);
    r1_device_free((void *)d_in.labels);
    r1_device_free(d_out.loss);
    r1_device_free(d_out.token_losses);
    if (!in_place) r1_device_free(d_out.grad);
    return status;
}

r1_status kd_linear_run_on_host(r1_backend backend, const r1_kd_linear_desc *desc,
                                const r1_kd_linear_inputs *in, const r1_kd_linear_outputs *out) {
    if (backend != R1_CUDA) return r1_kd_linear(backend, desc, in, out, NULL, 0, NULL);
    r1_status status = r1_kd_linear_validate(desc, in, out);
    if (status != R1_OK) return status;
    const r1_kd_desc *kd = &desc->kd;
    const size_t N = (size_t)kd->tokens, V = (size_t)kd->vocab, k = (size_t)kd->teacher_topk;
    const size_t d = (size_t)desc->hidden, dt = (size_t)desc->teacher_hidden;
    r1_status prep = R1_OK;
    r1_kd_linear_inputs d_in = {0};
    r1_kd_linear_outputs d_out = {0};
    d_in.student_hidden = check_device_copy_of(in->student_hidden, r1_dtype_bytes(kd->dtype, N * d), &prep);
    d_in.student_weight = check_device_copy_of(in->student_weight, r1_dtype_bytes(kd->dtype, V * d), &prep);
    if (dt > 0) {
        d_in.teacher_hidden = check_device_copy_of(in->teacher_hidden, r1_dtype_bytes(kd->dtype, N * dt), &prep);
        d_in.teacher_weight = check_device_copy_of(in->teacher_weight, r1_dtype_bytes(kd->dtype, V * dt), &prep);
    } else {
        d_in.teacher_logits = check_device_copy_of(in->teacher_logits, r1_dtype_bytes(kd->dtype, N * V), &prep);
    }
    d_in.teacher_ids = check_device_copy_of(in->teacher_ids, N * k * 4, &prep);
    d_in.teacher_logprobs = check_device_copy_of(in->teacher_logprobs, N * k * 4, &prep);
    d_in.labels = check_device_copy_of(in->labels, N * 4, &prep);
    d_out.loss = check_device_copy_of(out->loss, 4, &prep);
    d_out.token_losses = check_device_copy_of(out->token_losses, N * 4, &prep);
    d_out.grad_hidden = check_device_copy_of(out->grad_hidden, N * d * 4, &prep);
    d_out.grad_weight = check_device_copy_of(out->grad_weight, V * d * 4, &prep);
    if (prep == R1_OK) {
        status = r1_kd_linear(R1_CUDA, desc, &d_in, &d_out, NULL, 0, NULL);
        check_copy_back(out->loss, d_out.loss, 4, &status);
        check_copy_back(out->token_losses, d_out.token_losses, N * 4, &status);
        check_copy_back(out->grad_hidden, d_out.grad_hidden, N * d * 4, &status);
        check_copy_back(out->grad_weight, d_out.grad_weight, V * d * 4, &status);
    } else {
        status = prep;
    }
    r1_device_free((void *)d_in.student_hidden);
    r1_device_free((void *)d_in.student_weight);
    r1_device_free((void *)d_in.teacher_hidden);
    r1_device_free((void *)d_in.teacher_weight);
    r1_device_free((void *)d_in.teacher_logits);
    r1_device_free((void *)d_in.teacher_ids);
    r1_device_free((void *)d_in.teacher_logprobs);
    r1_device_free((void *)d_in.labels);
    r1_device_free(d_out.loss);
    r1_device_free(d_out.token_losses);
    r1_device_free(d_out.grad_hidden);
    r1_device_free(d_out.grad_weight);
    return status;
}

/* ---- comparisons ---------------------------------------------------------------- */

/* (dtype) tensor of n elements as float32. */
static float *as_f32(const void *data, r1_dtype dtype, size_t n) {
    float *out = malloc((n ? n : 1) * sizeof *out);
    for (size_t i = 0; i < n; ++i)
        out[i] = dtype == R1_F32   ? ((const float *)data)[i]
                 : dtype == R1_F64 ? (float)((const double *)data)[i]
                                   : r1_bf16_to_f32(((const uint16_t *)data)[i]);
    return out;
}

/* Compares n values and notes it in the summary; 1 when it passes. */
static int compare_values(check_summary *summary, const char *label, const char *what,
                          const void *got, r1_dtype got_dtype, const void *expected,
                          r1_dtype expected_dtype, size_t n, double bar) {
    char name[1024];
    snprintf(name, sizeof name, "%.900s %.60s", label, what);
    float *g = as_f32(got, got_dtype, n), *e = NULL;
    r1t_comparison c;
    if (expected_dtype == R1_F64) {
        double *gd = malloc((n ? n : 1) * sizeof *gd);
        for (size_t i = 0; i < n; ++i) gd[i] = g[i];
        c = r1t_compare_f64(name, gd, expected, n, bar);
        free(gd);
    } else {
        e = as_f32(expected, expected_dtype, n);
        c = r1t_compare_f32(name, g, e, n, bar);
    }
    check_note_error(summary, name, c.nonfinite_mismatch ? INFINITY : c.relative_l2, bar);
    if (!c.ok)
        printf("  FAIL %s: relative L2 %.3e > bar %.1e (max abs %.3e at index %zu)\n", name,
               c.relative_l2, bar, c.max_abs, c.worst_index);
    free(g);
    free(e);
    return c.ok;
}

/* ---- golden files ---------------------------------------------------------------- */

static const void *tensor_or_null(const r1_safetensors *file, const char *name, r1_dtype *dtype,
                                  size_t *count) {
    const r1_tensor_info *info = NULL;
    const void *data = NULL;
    if (r1_safetensors_find(file, name, &info, &data) != R1_OK) {
        r1_clear_error();
        return NULL;
    }
    if (dtype) *dtype = info->dtype;
    if (count) {
        size_t n = 1;
        for (int i = 0; i < info->rank; ++i) n *= (size_t)info->shape[i];
        *count = n;
    }
    return data;
}

static double meta_number(const r1_safetensors *file, const char *key) {
    const char *value = r1_safetensors_metadata(file, key);
    return value ? atof(value) : 0.0;
}

static int run_golden_file(r1_backend backend, const char *path, check_summary *summary) {
    r1_safetensors *file = NULL;
    r1_status status = r1_safetensors_open(path, &file);
    if (status != R1_OK) {
        printf("  FAIL %s: %s (regenerate: python3 golden/gen/kd.py)\n", path,
               r1_last_error());
        return 0;
    }
    const char *name = r1_safetensors_metadata(file, "case");
    const char *form = r1_safetensors_metadata(file, "form");
    const char *dtype_name = r1_safetensors_metadata(file, "dtype");
    const char *reduction = r1_safetensors_metadata(file, "reduction");
    if (!name || !form || !dtype_name || !reduction) {
        printf("  FAIL %s: metadata lacks case/form/dtype/reduction\n", path);
        r1_safetensors_close(file);
        return 0;
    }
    char label[256];
    snprintf(label, sizeof label, "kd(%s, backend=%s)", name, r1_backend_name(backend));
    r1_kd_desc kd = r1_kd_desc_default();
    kd.tokens = (int64_t)meta_number(file, "tokens");
    kd.vocab = (int64_t)meta_number(file, "vocab");
    kd.dtype = strcmp(dtype_name, "bf16") == 0 ? R1_BF16 : R1_F32;
    kd.gamma = (float)meta_number(file, "gamma");
    kd.temperature = (float)meta_number(file, "temperature");
    kd.beta = (float)meta_number(file, "beta");
    kd.ignore_index = (int32_t)meta_number(file, "ignore_index");
    kd.reduction = strcmp(reduction, "sum") == 0    ? R1_KD_SUM
                   : strcmp(reduction, "none") == 0 ? R1_KD_NONE
                                                    : R1_KD_MEAN;
    kd.teacher_topk = (int32_t)meta_number(file, "teacher_topk");
    const size_t N = (size_t)kd.tokens, V = (size_t)kd.vocab;
    const double bar = kd_bar(kd.dtype);
    float loss = NAN;
    float *token_losses = malloc(N * 4);
    for (size_t i = 0; i < N; ++i) token_losses[i] = NAN;
    int ok = 1;
    r1_dtype expected_grad_dtype = R1_F32;
    const void *expected_grad = NULL;
    if (strcmp(form, "logits") == 0) {
        r1_kd_inputs in = {0};
        in.student_logits = tensor_or_null(file, "student_logits", NULL, NULL);
        in.teacher_logits = tensor_or_null(file, "teacher_logits", NULL, NULL);
        in.teacher_ids = tensor_or_null(file, "teacher_ids", NULL, NULL);
        in.teacher_logprobs = tensor_or_null(file, "teacher_logprobs", NULL, NULL);
        in.labels = tensor_or_null(file, "labels", NULL, NULL);
        expected_grad = tensor_or_null(file, "grad", &expected_grad_dtype, NULL);
        size_t grad_bytes = r1_dtype_bytes(kd.dtype, N * V);
        void *grad = malloc(grad_bytes);
        memset(grad, 0xFF, grad_bytes); /* NaN poison in both dtypes */
        r1_kd_outputs out = {&loss, token_losses, grad};
        double start = check_now();
        status = kd_run_on_host(backend, &kd, &in, &out);
        summary->seconds += check_now() - start;
        if (status == R1_OK)
            ok &= compare_values(summary, label, "grad", grad, kd.dtype, expected_grad,
                                 expected_grad_dtype, N * V, bar);
        free(grad);
    } else {
        r1_kd_linear_desc desc = {0};
        desc.kd = kd;
        desc.hidden = (int64_t)meta_number(file, "hidden");
        desc.teacher_hidden = (int64_t)meta_number(file, "teacher_hidden");
        const size_t d = (size_t)desc.hidden;
        r1_kd_linear_inputs in = {0};
        in.student_hidden = tensor_or_null(file, "student_hidden", NULL, NULL);
        in.student_weight = tensor_or_null(file, "student_weight", NULL, NULL);
        in.teacher_hidden = tensor_or_null(file, "teacher_hidden", NULL, NULL);
        in.teacher_weight = tensor_or_null(file, "teacher_weight", NULL, NULL);
        in.teacher_logits = tensor_or_null(file, "teacher_logits", NULL, NULL);
        in.teacher_ids = tensor_or_null(file, "teacher_ids", NULL, NULL);
        in.teacher_logprobs = tensor_or_null(file, "teacher_logprobs", NULL, NULL);
        in.labels = tensor_or_null(file, "labels", NULL, NULL);
        float *dh = malloc(N * d * 4), *dW = malloc(V * d * 4);
        memset(dh, 0xFF, N * d * 4); /* NaN poison */
        memset(dW, 0xFF, V * d * 4);
        r1_kd_linear_outputs out = {&loss, token_losses, dh, dW};
        double start = check_now();
        status = kd_linear_run_on_host(backend, &desc, &in, &out);
        summary->seconds += check_now() - start;
        if (status == R1_OK) {
            ok &= compare_values(summary, label, "grad_hidden", dh, R1_F32,
                                 tensor_or_null(file, "grad_hidden", NULL, NULL), R1_F32, N * d, bar);
            ok &= compare_values(summary, label, "grad_weight", dW, R1_F32,
                                 tensor_or_null(file, "grad_weight", NULL, NULL), R1_F32, V * d, bar);
        }
        free(dh);
        free(dW);
    }
    if (status != R1_OK) {
        if (status == R1_EUNSUPPORTED) {
            r1_safetensors_close(file);
            free(token_losses);
            return -1;
        }
        printf("  FAIL %s: status %s (%s)\n", label, r1_status_str(status), r1_last_error());
        ok = 0;
    } else {
        ok &= compare_values(summary, label, "loss", &loss, R1_F32,
                             tensor_or_null(file, "loss", NULL, NULL), R1_F64, 1, bar);
        ok &= compare_values(summary, label, "token_losses", token_losses, R1_F32,
                             tensor_or_null(file, "token_losses", NULL, NULL), R1_F64, N, bar);
    }
    summary->cases_total += 1;
    summary->cases_passed += ok;
    summary->rows += (int64_t)N;
    if (summary->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(token_losses);
    r1_safetensors_close(file);
    return ok;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

r1_status check_kd_golden(r1_backend backend, check_summary *summary) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/kd", check_golden_dir());
    DIR *d = opendir(dir);
    if (!d) return r1_fail(R1_EIO, "cannot open the golden folder %s", dir);
    char **paths = NULL;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 12 || strcmp(entry->d_name + length - 12, ".safetensors") != 0) continue;
        paths = realloc(paths, (size_t)(count + 1) * sizeof *paths);
        paths[count] = malloc(strlen(dir) + length + 2);
        sprintf(paths[count], "%s/%s", dir, entry->d_name);
        ++count;
    }
    closedir(d);
    qsort(paths, (size_t)count, sizeof *paths, compare_names);
    r1_status result = count >= 15 ? R1_OK
                                   : r1_fail(R1_EIO, "only %d golden files in %s (expected >= 15)",
                                             count, dir);
    for (int i = 0; i < count; ++i) {
        if (run_golden_file(backend, paths[i], summary) < 0) result = R1_EUNSUPPORTED;
        free(paths[i]);
    }
    free(paths);
    r1_status manifest = check_golden_manifest("kd", summary);
    return result != R1_OK ? result : manifest;
}

/* ---- randomized agreement with ref ---------------------------------------------- */

typedef struct random_case {
    r1_kd_desc desc;
    void *student, *teacher;
    int32_t *ids, *labels;
    float *logprobs;
} random_case;

static void fill_logits(void *data, r1_dtype dtype, size_t n, r1t_rng *rng, double scale) {
    for (size_t i = 0; i < n; ++i) {
        float x = (float)(scale * r1t_rng_normal(rng));
        if (dtype == R1_F32) ((float *)data)[i] = x;
        else ((uint16_t *)data)[i] = r1_f32_to_bf16(x);
    }
}

/* force_bf16_fkl: bf16 inputs, dense teacher, any beta (the CUDA cluster path). */
static random_case make_random_case(r1t_rng *rng, int64_t N, int64_t V, int force_bf16_fkl) {
    static const float temperatures[] = {1.0f, 2.0f, 4.0f, 0.7f};
    static const float gammas[] = {0.0f, 0.5f, 1.0f, 0.3f};
    static const float betas[] = {0.0f, 0.5f, 1.0f, 0.2f};
    random_case c = {0};
    c.desc = r1_kd_desc_default();
    c.desc.tokens = N;
    c.desc.vocab = V;
    c.desc.dtype = r1t_rng_range(rng, 0, 1) ? R1_BF16 : R1_F32;
    c.desc.temperature = temperatures[r1t_rng_range(rng, 0, 3)];
    c.desc.gamma = gammas[r1t_rng_range(rng, 0, 3)];
    c.desc.beta = betas[r1t_rng_range(rng, 0, 3)];
    c.desc.reduction = (r1_kd_reduction)r1t_rng_range(rng, 0, 2);
    int sparse = r1t_rng_range(rng, 0, 3) == 0 && c.desc.beta < 1.0f;
    if (force_bf16_fkl) { /* bf16, dense teacher, any beta: CUDA's cluster path */
        c.desc.dtype = R1_BF16;
        sparse = 0;
    }
    const size_t n = (size_t)(N * V);
    c.student = malloc(r1_dtype_bytes(c.desc.dtype, n));
    fill_logits(c.student, c.desc.dtype, n, rng, 1.0 + 3.0 * r1t_rng_uniform(rng));
    c.labels = malloc((size_t)N * 4);
    for (int64_t t = 0; t < N; ++t)
        c.labels[t] = r1t_rng_range(rng, 0, 5) == 0 ? -100 : (int32_t)r1t_rng_range(rng, 0, V - 1);
    if (sparse) {
        int32_t k = (int32_t)r1t_rng_range(rng, 1, V < 20 ? V : 20);
        c.desc.teacher_topk = k;
        c.ids = malloc((size_t)N * (size_t)k * 4);
        c.logprobs = malloc((size_t)N * (size_t)k * 4);
        for (int64_t t = 0; t < N; ++t) {
            for (int32_t j = 0; j < k; ++j) {
                int32_t id;
                int repeated;
                do { /* distinct ids */
                    id = (int32_t)r1t_rng_range(rng, 0, V - 1);
                    repeated = 0;
                    for (int32_t i = 0; i < j; ++i) repeated |= c.ids[t * k + i] == id;
                } while (repeated);
                c.ids[t * k + j] = id;
                c.logprobs[t * k + j] = (float)(-5.0 * r1t_rng_uniform(rng) - 0.01 * j);
            }
        }
    } else {
        c.teacher = malloc(r1_dtype_bytes(c.desc.dtype, n));
        fill_logits(c.teacher, c.desc.dtype, n, rng, 1.0 + 3.0 * r1t_rng_uniform(rng));
        /* masked vocabulary in some rows (not for reverse KL, where it is an error) */
        if (c.desc.beta < 1.0f && V > 8) {
            for (int64_t t = 0; t < N; t += 3) {
                int64_t lo = r1t_rng_range(rng, 0, V - 2), hi = r1t_rng_range(rng, lo + 1, V - 1);
                for (int64_t i = lo; i < hi; ++i) {
                    if (c.desc.dtype == R1_F32) ((float *)c.teacher)[t * V + i] = -INFINITY;
                    else ((uint16_t *)c.teacher)[t * V + i] = 0xFF80;
                }
            }
        }
    }
    return c;
}

static void free_random_case(random_case *c) {
    free(c->student);
    free(c->teacher);
    free(c->ids);
    free(c->labels);
    free(c->logprobs);
}

static void describe(const random_case *c, char *label, size_t size, r1_backend backend,
                     uint64_t seed) {
    snprintf(label, size,
             "kd(N=%lld,V=%lld,%s,T=%g,gamma=%g,beta=%g,reduction=%d,topk=%d,backend=%s,seed=%llu)",
             (long long)c->desc.tokens, (long long)c->desc.vocab, r1_dtype_name(c->desc.dtype),
             (double)c->desc.temperature, (double)c->desc.gamma, (double)c->desc.beta,
             (int)c->desc.reduction, c->desc.teacher_topk, r1_backend_name(backend),
             (unsigned long long)seed);
}

/* One random case: backend vs ref, also with the gradient written in place. */
static int agree_once(r1_backend backend, r1t_rng *rng, int64_t N, int64_t V, int force_bf16_fkl,
                      uint64_t seed, check_summary *summary) {
    random_case c = make_random_case(rng, N, V, force_bf16_fkl);
    char label[384];
    describe(&c, label, sizeof label, backend, seed);
    const size_t n = (size_t)(N * V), bytes = r1_dtype_bytes(c.desc.dtype, n);
    r1_kd_inputs in = {c.student, c.teacher, c.ids, c.logprobs, c.labels};
    float loss_ref = NAN, loss_got = NAN;
    float *tl_ref = malloc((size_t)N * 4), *tl_got = malloc((size_t)N * 4);
    void *g_ref = malloc(bytes), *g_got = malloc(bytes);
    memset(g_got, 0xFF, bytes);
    r1_kd_outputs o_ref = {&loss_ref, tl_ref, g_ref}, o_got = {&loss_got, tl_got, g_got};
    r1_status s_ref = r1_kd_loss(R1_REF, &c.desc, &in, &o_ref, NULL, 0, NULL);
    double start = check_now();
    r1_status s_got = kd_run_on_host(backend, &c.desc, &in, &o_got);
    summary->seconds += check_now() - start;
    int ok = s_ref == R1_OK && s_got == R1_OK;
    if (!ok) {
        printf("  FAIL %s: status %s, ref %s (%s)\n", label, r1_status_str(s_got),
               r1_status_str(s_ref), r1_last_error());
    } else {
        double bar = kd_bar(c.desc.dtype);
        ok &= compare_values(summary, label, "loss", &loss_got, R1_F32, &loss_ref, R1_F32, 1, bar);
        ok &= compare_values(summary, label, "token_losses", tl_got, R1_F32, tl_ref, R1_F32,
                             (size_t)N, bar);
        ok &= compare_values(summary, label, "grad", g_got, c.desc.dtype, g_ref, c.desc.dtype, n,
                             bar);
        /* in place: the gradient overwrites a copy of the student logits */
        void *copy = malloc(bytes);
        memcpy(copy, c.student, bytes);
        r1_kd_inputs in_place = in;
        in_place.student_logits = copy;
        r1_kd_outputs o_place = {&loss_got, tl_got, copy};
        s_got = kd_run_on_host(backend, &c.desc, &in_place, &o_place);
        if (s_got != R1_OK) {
            printf("  FAIL %s in place: %s\n", label, r1_last_error());
            ok = 0;
        } else {
            ok &= compare_values(summary, label, "grad in place", copy, c.desc.dtype, g_ref,
                                 c.desc.dtype, n, bar);
        }
        free(copy);
    }
    summary->cases_total += 1;
    summary->cases_passed += ok;
    summary->rows += N;
    if (summary->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(tl_ref);
    free(tl_got);
    free(g_ref);
    free(g_got);
    free_random_case(&c);
    return ok;
}

/* One random fused-linear case against ref (f32 or bf16, teacher as hidden or logits). */
static int agree_linear_once(r1_backend backend, r1t_rng *rng, uint64_t seed,
                             check_summary *summary) {
    const int64_t N = r1t_rng_range(rng, 1, 9), V = r1t_rng_range(rng, 50, 400);
    const int64_t d = r1t_rng_range(rng, 8, 96);
    random_case c = make_random_case(rng, N, V, 0); /* teacher logits / sparse, labels, params */
    r1_kd_linear_desc desc = {0};
    desc.kd = c.desc;
    desc.hidden = d;
    desc.chunk_tokens = r1t_rng_range(rng, 0, 4);
    int teacher_hidden = c.teacher != NULL && r1t_rng_range(rng, 0, 1);
    /* dt = d in a third of them (the benchmark's shape) */
    if (teacher_hidden) desc.teacher_hidden = r1t_rng_range(rng, 0, 2) == 0 ? d : r1t_rng_range(rng, 4, 64);
    const size_t dt = (size_t)desc.teacher_hidden;
    void *h = malloc(r1_dtype_bytes(c.desc.dtype, (size_t)(N * d)));
    void *W = malloc(r1_dtype_bytes(c.desc.dtype, (size_t)(V * d)));
    void *ht = dt ? malloc(r1_dtype_bytes(c.desc.dtype, (size_t)N * dt)) : NULL;
    void *Wt = dt ? malloc(r1_dtype_bytes(c.desc.dtype, (size_t)V * dt)) : NULL;
    fill_logits(h, c.desc.dtype, (size_t)(N * d), rng, 1.0);
    fill_logits(W, c.desc.dtype, (size_t)(V * d), rng, 2.0 / sqrt((double)d));
    if (dt) {
        fill_logits(ht, c.desc.dtype, (size_t)N * dt, rng, 1.0);
        fill_logits(Wt, c.desc.dtype, (size_t)V * dt, rng, 2.0 / sqrt((double)dt));
    }
    r1_kd_linear_inputs in = {h, W, ht, Wt, dt ? NULL : c.teacher, c.ids, c.logprobs, c.labels};
    char label[512];
    describe(&c, label, sizeof label, backend, seed);
    snprintf(label + strlen(label), sizeof label - strlen(label), " linear(d=%lld,dt=%zu,chunk=%lld)",
             (long long)d, dt, (long long)desc.chunk_tokens);
    float loss_ref = NAN, loss_got = NAN;
    float *dh_ref = malloc((size_t)(N * d) * 4), *dh_got = malloc((size_t)(N * d) * 4);
    float *dW_ref = malloc((size_t)(V * d) * 4), *dW_got = malloc((size_t)(V * d) * 4);
    memset(dh_got, 0xFF, (size_t)(N * d) * 4);
    memset(dW_got, 0xFF, (size_t)(V * d) * 4);
    r1_kd_linear_outputs o_ref = {&loss_ref, NULL, dh_ref, dW_ref};
    r1_kd_linear_outputs o_got = {&loss_got, NULL, dh_got, dW_got};
    if (c.desc.reduction == R1_KD_NONE) c.desc.reduction = desc.kd.reduction = R1_KD_SUM;
    r1_status s_ref = r1_kd_linear(R1_REF, &desc, &in, &o_ref, NULL, 0, NULL);
    r1_status s_got = kd_linear_run_on_host(backend, &desc, &in, &o_got);
    int ok = s_ref == R1_OK && s_got == R1_OK;
    if (!ok) {
        printf("  FAIL %s: status %s, ref %s (%s)\n", label, r1_status_str(s_got),
               r1_status_str(s_ref), r1_last_error());
    } else {
        /* bf16 CUDA rounds G to bf16 for the GEMMs: the bf16 bar. f32: the
         * gradients are sums over V and N of float32 products, 1e-5. */
        double bar = kd_bar(c.desc.dtype);
        ok &= compare_values(summary, label, "loss", &loss_got, R1_F32, &loss_ref, R1_F32, 1, bar);
        ok &= compare_values(summary, label, "grad_hidden", dh_got, R1_F32, dh_ref, R1_F32,
                             (size_t)(N * d), bar);
        ok &= compare_values(summary, label, "grad_weight", dW_got, R1_F32, dW_ref, R1_F32,
                             (size_t)(V * d), bar);
    }
    summary->cases_total += 1;
    summary->cases_passed += ok;
    summary->rows += N;
    if (summary->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(h);
    free(W);
    free(ht);
    free(Wt);
    free(dh_ref);
    free(dh_got);
    free(dW_ref);
    free(dW_got);
    free_random_case(&c);
    return ok;
}

r1_status check_kd_agreement(r1_backend backend, uint64_t seed, int64_t rows,
                             check_summary *summary) {
    r1t_rng rng = r1t_rng_make(seed);
    int64_t done = 0;
    for (int round = 0; done < rows || round < 6; ++round) {
        /* mostly small vocabularies, sometimes one that is not a multiple of the block sizes */
        int64_t V = round % 4 == 3 ? r1t_rng_range(&rng, 20000, 40000) : r1t_rng_range(&rng, 1, 3000);
        if (round % 4 == 1) V = 8 * r1t_rng_range(&rng, 1, 400); /* CUDA's cluster path needs V % 8 == 0 */
        int64_t N = V > 10000 ? r1t_rng_range(&rng, 1, 4) : r1t_rng_range(&rng, 1, 24);
        agree_once(backend, &rng, N, V, 0, seed, summary);
        done += N;
        /* the Qwen2.5 vocabulary in bf16 with a dense teacher (CUDA's cluster path) */
        if (round % 3 == 0) agree_once(backend, &rng, r1t_rng_range(&rng, 1, 5), 152064, 1, seed, summary);
        if (round % 2 == 0) agree_linear_once(backend, &rng, seed, summary);
    }
    return R1_OK;
}

/* ---- the component as `r1lab check` runs it ----------------------------------- */

static r1_status kd_check_run(r1_backend backend, uint64_t seed, int64_t rows,
                              check_summary *summary) {
    r1_status status = check_kd_golden(backend, summary);
    if (status != R1_OK) return status;
    if (backend != R1_REF) return check_kd_agreement(backend, seed, rows, summary);
    return R1_OK;
}

static double kd_check_throughput(r1_backend backend) {
    const int64_t N = backend == R1_CUDA ? 1024 : 16, V = 152064;
    r1_kd_desc desc = r1_kd_desc_default();
    desc.tokens = N;
    desc.vocab = V;
    desc.dtype = R1_BF16;
    desc.gamma = 0.5f;
    desc.temperature = 2.0f;
    const size_t bytes = (size_t)(N * V) * 2;
    uint16_t *s = malloc(bytes), *z = malloc(bytes);
    int32_t *labels = malloc((size_t)N * 4);
    r1t_rng rng = r1t_rng_make(7);
    fill_logits(s, R1_BF16, (size_t)(N * V), &rng, 2.0);
    fill_logits(z, R1_BF16, (size_t)(N * V), &rng, 2.0);
    for (int64_t t = 0; t < N; ++t) labels[t] = (int32_t)r1t_rng_range(&rng, 0, V - 1);
    double rate = 0;
    void *ds = NULL, *dz = NULL, *dl = NULL, *dloss = NULL, *dg = NULL, *ws = NULL;
    const void *ps = s, *pz = z, *pl = labels;
    void *pg = NULL, *ploss = NULL;
    float loss;
    r1_status st = R1_OK;
    size_t ws_bytes = r1_kd_workspace_size(backend, &desc);
    if (backend == R1_CUDA) {
        st = r1_device_alloc(&ds, bytes);
        if (st == R1_OK) st = r1_device_alloc(&dz, bytes);
        if (st == R1_OK) st = r1_device_alloc(&dg, bytes);
        if (st == R1_OK) st = r1_device_alloc(&dl, (size_t)N * 4);
        if (st == R1_OK) st = r1_device_alloc(&dloss, 4);
        if (st == R1_OK) st = r1_device_alloc(&ws, ws_bytes ? ws_bytes : 1);
        if (st == R1_OK) st = r1_device_copy(ds, s, bytes, R1_HOST_TO_DEVICE);
        if (st == R1_OK) st = r1_device_copy(dz, z, bytes, R1_HOST_TO_DEVICE);
        if (st == R1_OK) st = r1_device_copy(dl, labels, (size_t)N * 4, R1_HOST_TO_DEVICE);
        ps = ds, pz = dz, pl = dl, pg = dg, ploss = dloss;
    } else {
        pg = malloc(bytes);
        ploss = &loss;
        ws = malloc(ws_bytes ? ws_bytes : 1);
    }
    r1_kd_inputs in = {ps, pz, NULL, NULL, pl};
    r1_kd_outputs out = {ploss, NULL, pg};
    if (st == R1_OK) st = r1_kd_loss(backend, &desc, &in, &out, ws, ws_bytes, NULL);
    int repeats = 0;
    double start = check_now(), elapsed = 0;
    while (st == R1_OK && (repeats < 2 || elapsed < 0.3)) {
        st = r1_kd_loss(backend, &desc, &in, &out, ws, ws_bytes, NULL);
        ++repeats;
        elapsed = check_now() - start;
    }
    if (st == R1_OK) rate = (double)(N * repeats) / elapsed;
    if (backend == R1_CUDA) {
        r1_device_free(ds);
        r1_device_free(dz);
        r1_device_free(dg);
        r1_device_free(dl);
        r1_device_free(dloss);
        r1_device_free(ws);
    } else {
        free(pg);
        free(ws);
    }
    free(s);
    free(z);
    free(labels);
    return rate;
}

const check_component check_component_kd = {
    "kd", kd_check_run, kd_check_throughput,
    "tokens, V=152064 bf16 forward KL + CE, loss and gradient"};
