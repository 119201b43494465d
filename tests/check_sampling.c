/*
 * tests/check_sampling.c — the sampling checks behind test_sampling,
 * test_sampling_cuda and `r1lab check`.
 *
 * Bars and why:
 *   tokens        exact, except a row where u lies within 1e-5 of a boundary
 *                 of the cumulative distribution (either backend's): there the
 *                 float32 weights of two correct implementations (different
 *                 expf, different summation order) may legitimately pick
 *                 neighbouring tokens. Golden rows carry that margin.
 *   logprobs      |d| <= 1e-5 * (1 + |ref|): float32 result of a float64
 *                 log of float32 weights; expf is within a few ulp (~2e-7).
 *   filtered row  relative L2 <= 1e-5 (fp32 bar of DESIGN.md).
 *   top ids       exact; top logprobs as logprobs.
 */
#include "check_sampling.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "compare.h"
#include "random.h"
#include "r1lab/philox.h"
#include "r1lab/safetensors.h"

#define LOGPROB_BAR 1e-5
#define FILTERED_BAR 1e-5
#define BOUNDARY_MARGIN 1e-5
#define MIN_P_MARGIN 1e-6 /* relative: about 16 float32 ulps of min_p */
#define TOP_P_MARGIN 1e-6 /* relative, of top_p times the weight the cut is taken of */

/* ---- running a backend on host buffers ------------------------------------------ */

r1_status sampling_run_on_host(r1_backend backend, const r1_sampling_desc *desc,
                               const void *logits, const r1_sampling_outputs *out) {
    if (backend != R1_CUDA) return r1_sampling_sample(backend, desc, logits, out, NULL, 0, NULL);
    r1_status status = r1_sampling_validate(desc, logits, out);
    if (status != R1_OK) return status;
    const size_t B = (size_t)desc->batch, V = (size_t)desc->vocab;
    const size_t n = (size_t)desc->top_logprobs;
    const size_t logit_bytes = B * V * (desc->logits_dtype == R1_BF16 ? 2 : 4);
    r1_status prep = R1_OK;
    void *d_logits = check_device_copy_of(logits, logit_bytes, &prep);
    /* Outputs start as copies of the (poisoned) host buffers so that an
     * unwritten element is seen as unwritten. */
    r1_sampling_outputs d_out = {0};
    d_out.tokens = check_device_copy_of(out->tokens, B * 4, &prep);
    d_out.logprobs = check_device_copy_of(out->logprobs, B * 4, &prep);
    d_out.filtered_probs = check_device_copy_of(out->filtered_probs, B * V * 4, &prep);
    if (n > 0) {
        d_out.top_ids = check_device_copy_of(out->top_ids, B * n * 4, &prep);
        d_out.top_logprobs = check_device_copy_of(out->top_logprobs, B * n * 4, &prep);
    }
    if (prep == R1_OK) {
        status = r1_sampling_sample(R1_CUDA, desc, d_logits, &d_out, NULL, 0, NULL);
        check_copy_back(out->tokens, d_out.tokens, B * 4, &status);
        check_copy_back(out->logprobs, d_out.logprobs, B * 4, &status);
        check_copy_back(out->filtered_probs, d_out.filtered_probs, B * V * 4, &status);
        check_copy_back(out->top_ids, d_out.top_ids, B * n * 4, &status);
        check_copy_back(out->top_logprobs, d_out.top_logprobs, B * n * 4, &status);
    } else {
        status = prep;
    }
    r1_device_free(d_logits);
    r1_device_free(d_out.tokens);
    r1_device_free(d_out.logprobs);
    r1_device_free(d_out.filtered_probs);
    r1_device_free(d_out.top_ids);
    r1_device_free(d_out.top_logprobs);
    return status;
}

/* ---- output buffers ---------------------------------------------------------------- */

typedef struct sampling_buffers {
    r1_sampling_outputs out;
    int64_t batch, vocab;
    int32_t n;
} sampling_buffers;

static void buffers_make(sampling_buffers *buffers, int64_t batch, int64_t vocab, int32_t n) {
    buffers->batch = batch;
    buffers->vocab = vocab;
    buffers->n = n;
    r1_sampling_outputs *o = &buffers->out;
    o->tokens = malloc((size_t)batch * 4);
    o->logprobs = malloc((size_t)batch * 4);
    o->filtered_probs = malloc((size_t)(batch * vocab) * 4);
    o->top_ids = n ? malloc((size_t)(batch * n) * 4) : NULL;
    o->top_logprobs = n ? malloc((size_t)(batch * n) * 4) : NULL;
    /* Poison: NaN payload for floats, a sentinel for ids. */
    for (int64_t i = 0; i < batch; ++i) {
        o->tokens[i] = 0x7BADBEEF;
        o->logprobs[i] = -12345.0f;
    }
    for (int64_t i = 0; i < batch * vocab; ++i) o->filtered_probs[i] = -1.0f;
    for (int64_t i = 0; i < batch * n; ++i) {
        o->top_ids[i] = 0x7BADBEEF;
        o->top_logprobs[i] = -12345.0f;
    }
}

static void buffers_free(sampling_buffers *buffers) {
    free(buffers->out.tokens);
    free(buffers->out.logprobs);
    free(buffers->out.filtered_probs);
    free(buffers->out.top_ids);
    free(buffers->out.top_logprobs);
    memset(buffers, 0, sizeof *buffers);
}

/* Every output element was written (no poison left). */
static int buffers_all_written(const sampling_buffers *buffers) {
    const r1_sampling_outputs *o = &buffers->out;
    for (int64_t i = 0; i < buffers->batch; ++i)
        if (o->tokens[i] == 0x7BADBEEF || o->logprobs[i] == -12345.0f) return 0;
    for (int64_t i = 0; i < buffers->batch * buffers->vocab; ++i)
        if (o->filtered_probs[i] == -1.0f) return 0;
    for (int64_t i = 0; i < buffers->batch * buffers->n; ++i)
        if (o->top_ids[i] == 0x7BADBEEF || o->top_logprobs[i] == -12345.0f) return 0;
    return 1;
}

/* Distance from u to the nearest boundary of the cumulative distribution of
 * `probs` scanned by id (float64). */
static double boundary_distance(const float *probs, int64_t vocab, double u) {
    double running = 0, best = fabs(u);
    for (int64_t i = 0; i < vocab; ++i) {
        if (!(probs[i] > 0)) continue;
        running += probs[i];
        double d = fabs(running - u);
        if (d < best) best = d;
    }
    return best;
}

/* Logprob-style comparison: |d| <= bar * (1 + |ref|); returns the worst ratio
 * (NaN placement must match). */
static double logprob_error_ratio(const float *out, const float *expected, int64_t count,
                                  const unsigned char *skip, int64_t *worst_index) {
    double worst = 0;
    *worst_index = -1;
    for (int64_t i = 0; i < count; ++i) {
        if (skip && skip[i]) continue;
        double o = out[i], e = expected[i];
        double ratio;
        if (isnan(e) || isnan(o)) ratio = (isnan(e) && isnan(o)) ? 0 : INFINITY;
        else if (isinf(e) || isinf(o)) ratio = (o == e) ? 0 : INFINITY;
        else ratio = fabs(o - e) / (LOGPROB_BAR * (1.0 + fabs(e)));
        if (*worst_index < 0 || ratio > worst) {
            worst = ratio;
            *worst_index = i;
        }
    }
    return worst;
}

/* ---- golden files ---------------------------------------------------------------------- */

typedef struct golden_case {
    r1_safetensors *file;
    char name[128];
    int64_t batch, vocab;
    int32_t n;
    int logits_bf16;
    void *logits;                /* as stored: f32 or bf16 */
    float *logits_f32;           /* widened copy           */
    r1_sampling_params *params;
    int32_t *history;
    int64_t *offsets;
    int32_t *tokens, *kept, *top_ids;
    float *logprobs, *filtered, *top_logprobs;
    double *margin;
} golden_case;

/* Copies tensor `name` (dtype, count) into fresh aligned memory. */
static void *golden_tensor(const r1_safetensors *file, const char *name, r1_dtype dtype,
                           int64_t count, r1_status *status) {
    if (*status != R1_OK) return NULL;
    const void *data;
    *status = r1_safetensors_expect(file, name, dtype, count, &data);
    if (*status != R1_OK) return NULL;
    size_t bytes = r1_dtype_bytes(dtype, (size_t)count);
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy) {
        *status = r1_fail(R1_ENOMEM, "out of memory reading %s", name);
        return NULL;
    }
    memcpy(copy, data, bytes);
    return copy;
}

static int golden_has(const r1_safetensors *file, const char *name) {
    const r1_tensor_info *info;
    r1_status status = r1_safetensors_find(file, name, &info, NULL);
    r1_clear_error();
    return status == R1_OK;
}

static void golden_free(golden_case *g) {
    r1_safetensors_close(g->file);
    free(g->logits);
    free(g->logits_f32);
    free(g->params);
    free(g->history);
    free(g->offsets);
    free(g->tokens);
    free(g->kept);
    free(g->top_ids);
    free(g->logprobs);
    free(g->filtered);
    free(g->top_logprobs);
    free(g->margin);
    memset(g, 0, sizeof *g);
}

static r1_status golden_load(const char *path, golden_case *g) {
    memset(g, 0, sizeof *g);
    r1_status status = r1_safetensors_open(path, &g->file);
    if (status != R1_OK) return status;
    const r1_tensor_info *info;
    status = r1_safetensors_find(g->file, "logits", &info, NULL);
    if (status != R1_OK) return status;
    if (info->rank != 2 || (info->dtype != R1_F32 && info->dtype != R1_BF16))
        return r1_fail(R1_EFORMAT,
                       "%s: logits must be a (B, V) f32 or bf16 tensor; regenerate with "
                       "python3 golden/gen/sampling.py",
                       path);
    const char *case_name = r1_safetensors_metadata(g->file, "case");
    snprintf(g->name, sizeof g->name, "%s", case_name ? case_name : path);
    const int64_t B = info->shape[0], V = info->shape[1];
    g->batch = B;
    g->vocab = V;
    g->logits_bf16 = info->dtype == R1_BF16;
    g->logits = golden_tensor(g->file, "logits", info->dtype, B * V, &status);
    if (status != R1_OK) return status;
    g->logits_f32 = malloc((size_t)(B * V) * 4);
    for (int64_t i = 0; i < B * V; ++i)
        g->logits_f32[i] = g->logits_bf16 ? r1_bf16_to_f32(((uint16_t *)g->logits)[i])
                                          : ((float *)g->logits)[i];

    float *temperature = golden_tensor(g->file, "temperature", R1_F32, B, &status);
    float *top_p = golden_tensor(g->file, "top_p", R1_F32, B, &status);
    float *min_p = golden_tensor(g->file, "min_p", R1_F32, B, &status);
    float *repetition = golden_tensor(g->file, "repetition_penalty", R1_F32, B, &status);
    float *presence = golden_tensor(g->file, "presence_penalty", R1_F32, B, &status);
    float *frequency = golden_tensor(g->file, "frequency_penalty", R1_F32, B, &status);
    int32_t *top_k = golden_tensor(g->file, "top_k", R1_I32, B, &status);
    int64_t *seed = golden_tensor(g->file, "seed", R1_I64, B, &status);
    int64_t *step = golden_tensor(g->file, "step", R1_I64, B, &status);
    if (status == R1_OK) {
        g->params = malloc((size_t)B * sizeof *g->params);
        for (int64_t b = 0; b < B; ++b) {
            r1_sampling_params *p = &g->params[b];
            p->temperature = temperature[b];
            p->top_k = top_k[b];
            p->top_p = top_p[b];
            p->min_p = min_p[b];
            p->repetition_penalty = repetition[b];
            p->presence_penalty = presence[b];
            p->frequency_penalty = frequency[b];
            p->seed = (uint64_t)seed[b];
            p->step = (uint64_t)step[b];
        }
    }
    free(temperature); free(top_p); free(min_p); free(repetition);
    free(presence); free(frequency); free(top_k); free(seed); free(step);
    if (status != R1_OK) return status;

    if (golden_has(g->file, "history_offsets")) {
        g->offsets = golden_tensor(g->file, "history_offsets", R1_I64, B + 1, &status);
        if (status != R1_OK) return status;
        int64_t H = g->offsets[B];
        if (H > 0) g->history = golden_tensor(g->file, "history", R1_I32, H, &status);
        if (H == 0) {
            free(g->offsets);
            g->offsets = NULL;
        }
    }
    g->tokens = golden_tensor(g->file, "tokens", R1_I32, B, &status);
    g->logprobs = golden_tensor(g->file, "logprobs", R1_F32, B, &status);
    g->kept = golden_tensor(g->file, "kept", R1_I32, B, &status);
    g->margin = golden_tensor(g->file, "margin", R1_F64, B, &status);
    if (status == R1_OK && golden_has(g->file, "filtered_probs"))
        g->filtered = golden_tensor(g->file, "filtered_probs", R1_F32, B * V, &status);
    if (status == R1_OK && golden_has(g->file, "top_ids")) {
        const r1_tensor_info *top;
        r1_safetensors_find(g->file, "top_ids", &top, NULL);
        g->n = top->rank == 2 ? (int32_t)top->shape[1] : 0;
        g->top_ids = golden_tensor(g->file, "top_ids", R1_I32, B * g->n, &status);
        g->top_logprobs = golden_tensor(g->file, "top_logprobs", R1_F32, B * g->n, &status);
    }
    return status;
}

/* Runs one golden case through `backend` with logits as stored (f32 or bf16)
 * or widened to f32; returns 1 when it agrees. */
static int golden_run(r1_backend backend, golden_case *g, int as_stored, check_summary *summary) {
    const int64_t B = g->batch, V = g->vocab;
    char label[256];
    snprintf(label, sizeof label, "sampling(%s,logits=%s,backend=%s)", g->name,
             as_stored && g->logits_bf16 ? "bf16" : "f32", r1_backend_name(backend));
    r1_sampling_desc desc = {0};
    desc.batch = B;
    desc.vocab = V;
    desc.logits_dtype = as_stored && g->logits_bf16 ? R1_BF16 : R1_F32;
    desc.params = g->params;
    desc.history = g->history;
    desc.history_offsets = g->offsets;
    desc.top_logprobs = g->n;
    sampling_buffers buffers;
    buffers_make(&buffers, B, V, g->n);

    int invalid_rows = 0;
    for (int64_t b = 0; b < B; ++b) invalid_rows += g->tokens[b] < 0;
    double start = check_now();
    r1_status status = sampling_run_on_host(backend, &desc,
                                            desc.logits_dtype == R1_BF16 ? g->logits
                                                                         : (void *)g->logits_f32,
                                            &buffers.out);
    summary->seconds += check_now() - start;
    summary->rows += B;
    int ok = 1;
    r1_status expected_status = invalid_rows ? R1_ENUMERIC : R1_OK;
    if (status != expected_status) {
        printf("  %s: status %s (%s), expected %s\n", label, r1_status_str(status),
               r1_last_error(), r1_status_str(expected_status));
        buffers_free(&buffers);
        return 0;
    }
    if (!buffers_all_written(&buffers)) {
        printf("  %s: some output element was never written\n", label);
        ok = 0;
    }
    /* Tokens: exact where the golden margin allows it. */
    unsigned char *skip = calloc((size_t)B, 1);
    for (int64_t b = 0; b < B; ++b) {
        if (buffers.out.tokens[b] == g->tokens[b]) continue;
        if (g->margin[b] < BOUNDARY_MARGIN) {
            skip[b] = 1;
            summary->mismatches += 1;
            continue;
        }
        printf("  %s: row %lld token %d, expected %d (u margin %.3g)\n", label, (long long)b,
               buffers.out.tokens[b], g->tokens[b], g->margin[b]);
        ok = 0;
    }
    int64_t worst;
    double ratio = logprob_error_ratio(buffers.out.logprobs, g->logprobs, B, skip, &worst);
    check_note_error(summary, label, ratio * LOGPROB_BAR, LOGPROB_BAR);
    if (ratio > 1.0) {
        printf("  %s: logprob row %lld = %.9g, expected %.9g\n", label, (long long)worst,
               buffers.out.logprobs[worst], g->logprobs[worst]);
        ok = 0;
    }
    /* Kept set size: no more tokens with positive probability than golden keeps. */
    for (int64_t b = 0; b < B; ++b) {
        if (g->tokens[b] < 0 || skip[b]) continue;
        int64_t positive = 0;
        for (int64_t i = 0; i < V; ++i) positive += buffers.out.filtered_probs[b * V + i] > 0;
        if (positive > g->kept[b] || positive == 0) {
            printf("  %s: row %lld keeps %lld tokens with probability > 0, golden keeps %d\n",
                   label, (long long)b, (long long)positive, g->kept[b]);
            ok = 0;
        }
    }
    if (g->filtered) {
        for (int64_t b = 0; b < B; ++b) {
            if (skip[b]) continue;
            r1t_comparison c = r1t_compare_f32(label, buffers.out.filtered_probs + b * V,
                                               g->filtered + b * V, (size_t)V, FILTERED_BAR);
            check_note_error(summary, label, c.relative_l2, FILTERED_BAR);
            if (!c.ok) ok = 0;
        }
    }
    if (g->n > 0) {
        r1t_comparison c = r1t_compare_exact_i32(label, buffers.out.top_ids, g->top_ids,
                                                 (size_t)(B * g->n));
        if (!c.ok) ok = 0;
        ratio = logprob_error_ratio(buffers.out.top_logprobs, g->top_logprobs, B * g->n, NULL,
                                    &worst);
        check_note_error(summary, label, ratio * LOGPROB_BAR, LOGPROB_BAR);
        if (ratio > 1.0) {
            printf("  %s: top logprob [%lld] = %.9g, expected %.9g\n", label, (long long)worst,
                   buffers.out.top_logprobs[worst], g->top_logprobs[worst]);
            ok = 0;
        }
    }
    if (summary->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(skip);
    buffers_free(&buffers);
    return ok;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Golden file paths under golden/sampling, sorted. */
static int list_golden(char ***paths_out) {
    char dir_path[4200];
    snprintf(dir_path, sizeof dir_path, "%s/sampling", check_golden_dir());
    DIR *dir = opendir(dir_path);
    if (!dir) return -1;
    char **paths = NULL;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 12 || strcmp(entry->d_name + length - 12, ".safetensors") != 0) continue;
        paths = realloc(paths, (size_t)(count + 1) * sizeof *paths);
        paths[count] = malloc(strlen(dir_path) + length + 2);
        sprintf(paths[count], "%s/%s", dir_path, entry->d_name);
        ++count;
    }
    closedir(dir);
    qsort(paths, (size_t)count, sizeof *paths, compare_names);
    *paths_out = paths;
    return count;
}

r1_status check_sampling_golden(r1_backend backend, check_summary *summary) {
    char **paths = NULL;
    int count = list_golden(&paths);
    if (count <= 0)
        return r1_fail(R1_EIO,
                       "no golden files under %s/sampling (set R1LAB_GOLDEN_DIR, or regenerate: "
                       "python3 golden/gen/sampling.py)",
                       check_golden_dir());
    /* R1T_MAX_VOCAB=N skips larger cases (for slow instrumented runs). */
    const char *max_text = getenv("R1T_MAX_VOCAB");
    int64_t max_vocab = max_text && *max_text ? strtoll(max_text, NULL, 10) : INT64_MAX;
    r1_status result = R1_OK;
    for (int i = 0; i < count; ++i) {
        golden_case g;
        r1_status status = golden_load(paths[i], &g);
        if (status == R1_OK && g.vocab > max_vocab) {
            printf("  skip %s (V = %lld > R1T_MAX_VOCAB)\n", g.name, (long long)g.vocab);
        } else if (status != R1_OK) {
            printf("  FAIL %s: %s\n", paths[i], r1_last_error());
            summary->cases_total += 1;
            result = R1_EFORMAT;
        } else {
            for (int as_stored = 0; as_stored <= g.logits_bf16; ++as_stored) {
                summary->cases_total += 1;
                summary->cases_passed += golden_run(backend, &g, as_stored, summary);
            }
        }
        golden_free(&g);
        free(paths[i]);
    }
    free(paths);
    r1_status manifest = check_golden_manifest("sampling", summary);
    return result != R1_OK ? result : manifest;
}

/* ---- randomized agreement --------------------------------------------------------------- */

/* One random row of logits in one of several shapes of distribution. */
static void random_logits(r1t_rng *r, float *row, int64_t V) {
    int shape = (int)r1t_rng_range(r, 0, 9);
    double scale = shape < 3 ? 0.5 : shape < 6 ? 2.0 : 5.0;
    for (int64_t i = 0; i < V; ++i) row[i] = (float)(scale * r1t_rng_normal(r));
    if (shape == 1 || shape == 4) { /* an LLM-like peak */
        for (int k = 0; k < 10; ++k) row[r1t_rng_range(r, 0, V - 1)] += (float)(8 + 7 * r1t_rng_uniform(r));
    }
    if (shape == 7) { /* few distinct values: many exact ties */
        for (int64_t i = 0; i < V; ++i) row[i] = (float)r1t_rng_range(r, -3, 3);
    }
    if (shape == 8) { /* a masked vocabulary */
        for (int64_t i = 0; i < V; ++i)
            if (r1t_rng_uniform(r) < 0.8) row[i] = -INFINITY;
        row[r1t_rng_range(r, 0, V - 1)] = 1.0f;
    }
    if (shape == 9 && r1t_rng_uniform(r) < 0.05) { /* a rare invalid row */
        row[r1t_rng_range(r, 0, V - 1)] = r1t_rng_uniform(r) < 0.5 ? NAN : INFINITY;
    }
}

static r1_sampling_params random_params(r1t_rng *r, int64_t V) {
    r1_sampling_params p = r1_sampling_params_default();
    double pick = r1t_rng_uniform(r);
    p.temperature = pick < 0.05 ? 0.0f : (float)(0.05 + 2.0 * r1t_rng_uniform(r));
    if (r1t_rng_uniform(r) < 0.3) p.temperature = 0.6f;
    if (r1t_rng_uniform(r) < 0.4) p.top_k = (int32_t)r1t_rng_range(r, 1, V + 5);
    if (r1t_rng_uniform(r) < 0.6) p.top_p = (float)(0.05 + 0.95 * r1t_rng_uniform(r));
    if (r1t_rng_uniform(r) < 0.3) p.top_p = 0.95f;
    if (r1t_rng_uniform(r) < 0.3) p.min_p = (float)(0.5 * r1t_rng_uniform(r));
    if (r1t_rng_uniform(r) < 0.2) {
        p.repetition_penalty = (float)(0.5 + 1.5 * r1t_rng_uniform(r));
        p.presence_penalty = (float)(r1t_rng_uniform(r) - 0.5);
        p.frequency_penalty = (float)(0.5 * r1t_rng_uniform(r) - 0.1);
    }
    p.seed = r1t_rng_u64(r);
    p.step = r1t_rng_u64(r) >> (int)r1t_rng_range(r, 0, 63);
    return p;
}

/* 1 when the kept sets of a row (filtered > 0) differ, and only in tokens
 * whose weight lies within MIN_P_MARGIN (relative) of min_p. The weights
 * are e[i] = expf(z[i] - m) in float32 with each backend's own expf
 * (r1lab/sampling.h, step 3); expf routines differ in the last bits, so a
 * token that close to the min-p boundary may fall on either side of it.
 * The weight of a token is read back from the side that kept it: the top
 * token (e = 1) is always kept, so e[i] = filtered[i] / max filtered. */
static int kept_sets_differ_at_min_p(const float *got, const float *ref, int64_t V, float min_p) {
    if (!(min_p > 0.0f)) return 0;
    float got_max = 0.0f, ref_max = 0.0f;
    for (int64_t i = 0; i < V; ++i) {
        if (got[i] > got_max) got_max = got[i];
        if (ref[i] > ref_max) ref_max = ref[i];
    }
    if (!(got_max > 0.0f) || !(ref_max > 0.0f)) return 0;
    int differ = 0;
    for (int64_t i = 0; i < V; ++i) {
        if ((got[i] > 0.0f) == (ref[i] > 0.0f)) continue;
        double e = got[i] > 0.0f ? (double)got[i] / got_max : (double)ref[i] / ref_max;
        if (fabs(e - (double)min_p) > MIN_P_MARGIN * (double)min_p) return 0;
        differ = 1;
    }
    return differ;
}

/* 1 when the kept sets of a row differ only by the one token at the top-p
 * cut, the next in rank order after all the others, and the weight the
 * shorter set keeps lies within TOP_P_MARGIN (relative) of top_p times
 * the row's total: cumulative weights are sums of each backend's own expf
 * values, so a prefix that close to the target may end on either side of
 * it. Rows with top-p, alone or after top-k (no min-p), are judged; the
 * base the cut is taken of is summed here from the logits as
 * r1lab/sampling.h defines it (penalties for the tokens of `history`,
 * z = l' / T in float32, e = expf(z - max z), summed in float64): the row's
 * total, or with top-k the weight of its k heaviest tokens. The kept weight
 * F of a side is 1 / its largest filtered value (e = 1 there). */
static int by_weight_descending(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int kept_sets_differ_at_top_p(const float *got, const float *ref, const float *logits,
                                     int64_t V, const r1_sampling_params *p,
                                     const int32_t *history, int64_t history_length) {
    const int top_k_on = p->top_k > 0 && p->top_k < V;
    if (!(p->top_p < 1.0f) || p->min_p > 0.0f || !(p->temperature > 0.0f)) return 0;
    int64_t differing = -1;
    for (int64_t i = 0; i < V; ++i) {
        if ((got[i] > 0.0f) == (ref[i] > 0.0f)) continue;
        if (differing >= 0) return 0; /* more than one token */
        differing = i;
    }
    if (differing < 0) return 0;
    const float *longer = got[differing] > 0.0f ? got : ref;
    const float *shorter = longer == got ? ref : got;
    float shorter_max = 0.0f, longer_min_shared = INFINITY;
    for (int64_t i = 0; i < V; ++i) {
        if (shorter[i] > shorter_max) shorter_max = shorter[i];
        if (shorter[i] > 0.0f && longer[i] < longer_min_shared) longer_min_shared = longer[i];
    }
    if (!(shorter_max > 0.0f) || longer[differing] > longer_min_shared) return 0;
    float *z = malloc((size_t)V * sizeof *z);
    int32_t *count = calloc((size_t)V, sizeof *count);
    int near = 0;
    if (z && count) {
        /* l': each token of the history once, with its count. */
        for (int64_t i = 0; i < V; ++i) z[i] = logits[i];
        for (int64_t j = 0; j < history_length; ++j) count[history[j]] += 1;
        for (int64_t j = 0; j < history_length; ++j) {
            int32_t id = history[j];
            if (count[id] == 0) continue;
            float x = z[id];
            x = x > 0.0f ? x / p->repetition_penalty : x * p->repetition_penalty;
            z[id] = x - (p->frequency_penalty * (float)count[id] + p->presence_penalty);
            count[id] = 0;
        }
        float max_z = -INFINITY;
        for (int64_t i = 0; i < V; ++i) {
            z[i] = z[i] / p->temperature;
            if (z[i] > max_z) max_z = z[i];
        }
        for (int64_t i = 0; i < V; ++i) z[i] = expf(z[i] - max_z); /* now e */
        if (top_k_on) qsort(z, (size_t)V, sizeof *z, by_weight_descending);
        double base = 0;
        for (int64_t i = 0; i < (top_k_on ? p->top_k : V); ++i) base += (double)z[i];
        const double target = (double)p->top_p * base, kept = 1.0 / (double)shorter_max;
        near = isfinite(max_z) && fabs(kept - target) <= TOP_P_MARGIN * target;
    }
    free(z);
    free(count);
    return near;
}

/* Compares one batch of `backend` against ref; returns 1 when it agrees. */
static int agreement_batch(r1_backend backend, r1t_rng *r, int64_t B, int64_t V, int use_bf16,
                           check_summary *summary, int64_t *mismatch_far) {
    float *logits = malloc((size_t)(B * V) * 4);
    uint16_t *logits_bf16 = use_bf16 ? malloc((size_t)(B * V) * 2) : NULL;
    r1_sampling_params *params = malloc((size_t)B * sizeof *params);
    int64_t *offsets = malloc((size_t)(B + 1) * sizeof *offsets);
    int64_t max_history = B * 16;
    int32_t *history = malloc((size_t)max_history * sizeof *history);
    offsets[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
        random_logits(r, logits + b * V, V);
        params[b] = random_params(r, V);
        int64_t length = params[b].repetition_penalty != 1.0f ? r1t_rng_range(r, 0, 16) : 0;
        /* Half the ids from the first 8 (so ids repeat), half from anywhere. */
        for (int64_t j = 0; j < length; ++j)
            history[offsets[b] + j] = (int32_t)(r1t_rng_uniform(r) < 0.5
                                                    ? r1t_rng_range(r, 0, (V < 8 ? V : 8) - 1)
                                                    : r1t_rng_range(r, 0, V - 1));
        offsets[b + 1] = offsets[b] + length;
    }
    if (use_bf16) {
        for (int64_t i = 0; i < B * V; ++i) {
            logits_bf16[i] = r1_f32_to_bf16(logits[i]);
            logits[i] = r1_bf16_to_f32(logits_bf16[i]);
        }
    }
    int32_t n = r1t_rng_uniform(r) < 0.3 ? (int32_t)r1t_rng_range(r, 1, V < 20 ? V : 20) : 0;
    r1_sampling_desc desc = {0};
    desc.batch = B;
    desc.vocab = V;
    desc.logits_dtype = use_bf16 ? R1_BF16 : R1_F32;
    desc.params = params;
    desc.history = history;
    desc.history_offsets = offsets;
    desc.top_logprobs = n;
    const void *input = use_bf16 ? (const void *)logits_bf16 : (const void *)logits;

    sampling_buffers expected, got;
    buffers_make(&expected, B, V, n);
    buffers_make(&got, B, V, n);
    r1_status s_ref = r1_sampling_sample(R1_REF, &desc, input, &expected.out, NULL, 0, NULL);
    double start = check_now();
    r1_status s_got = sampling_run_on_host(backend, &desc, input, &got.out);
    summary->seconds += check_now() - start;
    summary->rows += B;

    char label[200];
    snprintf(label, sizeof label, "sampling agreement(backend=%s,B=%lld,V=%lld,%s)",
             r1_backend_name(backend), (long long)B, (long long)V, use_bf16 ? "bf16" : "f32");
    int ok = 1;
    if (s_ref != s_got) {
        printf("  %s: status %s vs ref %s (%s)\n", label, r1_status_str(s_got),
               r1_status_str(s_ref), r1_last_error());
        ok = 0;
    }
    if (!buffers_all_written(&got)) {
        printf("  %s: some output element was never written\n", label);
        ok = 0;
    }
    unsigned char *skip = calloc((size_t)B, 1);
    for (int64_t b = 0; ok && b < B; ++b) {
        const float *got_row = got.out.filtered_probs + b * V;
        const float *ref_row = expected.out.filtered_probs + b * V;
        const int at_min_p = kept_sets_differ_at_min_p(got_row, ref_row, V, params[b].min_p);
        if (!at_min_p && !kept_sets_differ_at_top_p(got_row, ref_row, logits + b * V, V,
                                                     &params[b], history + offsets[b],
                                                     offsets[b + 1] - offsets[b]))
            continue;
        skip[b] = 1; /* F differs by that token's weight: so do logprob and filtered */
        summary->mismatches += 1;
        if (summary->verbose)
            printf("  %s: row %lld keeps a different token at the %s boundary\n", label,
                   (long long)b, at_min_p ? "min-p" : "top-p");
    }
    for (int64_t b = 0; ok && b < B; ++b) {
        int32_t t_ref = expected.out.tokens[b], t_got = got.out.tokens[b];
        if (skip[b] || t_ref == t_got) continue;
        double u = r1_sampling_uniform(params[b].seed, (uint64_t)b, params[b].step);
        double d_ref = boundary_distance(expected.out.filtered_probs + b * V, V, u);
        double d_got = boundary_distance(got.out.filtered_probs + b * V, V, u);
        skip[b] = 1;
        summary->mismatches += 1;
        if (t_ref < 0 || t_got < 0 || (d_ref >= BOUNDARY_MARGIN && d_got >= BOUNDARY_MARGIN)) {
            printf("  %s: row %lld token %d vs ref %d, u = %.17g is %.3g / %.3g from a "
                   "boundary (T=%g k=%d p=%g min_p=%g)\n",
                   label, (long long)b, t_got, t_ref, u, d_ref, d_got,
                   (double)params[b].temperature, params[b].top_k, (double)params[b].top_p,
                   (double)params[b].min_p);
            *mismatch_far += 1;
            ok = 0;
        }
    }
    int64_t worst;
    double ratio = logprob_error_ratio(got.out.logprobs, expected.out.logprobs, B, skip, &worst);
    check_note_error(summary, label, ratio * LOGPROB_BAR, LOGPROB_BAR);
    if (ratio > 1.0) {
        printf("  %s: logprob row %lld = %.9g, ref %.9g\n", label, (long long)worst,
               got.out.logprobs[worst], expected.out.logprobs[worst]);
        ok = 0;
    }
    for (int64_t b = 0; b < B; ++b) {
        if (skip[b]) continue;
        r1t_comparison c = r1t_compare_f32(label, got.out.filtered_probs + b * V,
                                           expected.out.filtered_probs + b * V, (size_t)V,
                                           FILTERED_BAR);
        check_note_error(summary, label, c.relative_l2, FILTERED_BAR);
        if (!c.ok) {
            printf("    (row %lld: T=%g k=%d p=%g min_p=%g)\n", (long long)b,
                   (double)params[b].temperature, params[b].top_k, (double)params[b].top_p,
                   (double)params[b].min_p);
            ok = 0;
            break;
        }
    }
    if (n > 0) {
        if (!r1t_compare_exact_i32(label, got.out.top_ids, expected.out.top_ids,
                                   (size_t)(B * n)).ok)
            ok = 0;
        ratio = logprob_error_ratio(got.out.top_logprobs, expected.out.top_logprobs, B * n,
                                    NULL, &worst);
        check_note_error(summary, label, ratio * LOGPROB_BAR, LOGPROB_BAR);
        if (ratio > 1.0) ok = 0;
    }
    if (summary->verbose || !ok) printf("  %s %s\n", ok ? "ok  " : "FAIL", label);
    free(skip);
    buffers_free(&expected);
    buffers_free(&got);
    free(logits);
    free(logits_bf16);
    free(params);
    free(offsets);
    free(history);
    return ok;
}

r1_status check_sampling_agreement(r1_backend backend, uint64_t seed, int64_t rows,
                                   check_summary *summary) {
    r1t_rng r = r1t_rng_make(seed);
    int64_t done = 0, far = 0;
    int64_t large_rows = rows >= 1000 ? 16 : 0; /* a few rows at the teacher vocabulary */
    while (done < rows) {
        int64_t B, V;
        if (large_rows > 0) {
            B = 8;
            V = large_rows > 8 ? 152064 : 129280;
            large_rows -= B;
        } else {
            B = rows - done < 64 ? rows - done : 64;
            double pick = r1t_rng_uniform(&r);
            V = pick < 0.2 ? r1t_rng_range(&r, 1, 16) : pick < 0.8 ? r1t_rng_range(&r, 17, 600)
                                                               : r1t_rng_range(&r, 601, 4096);
        }
        int use_bf16 = r1t_rng_uniform(&r) < 0.2;
        summary->cases_total += 1;
        summary->cases_passed += agreement_batch(backend, &r, B, V, use_bf16, summary, &far);
        done += B;
    }
    /* At most one mismatch (all near a boundary) per 10,000 rows. */
    if (summary->mismatches * 10000 > summary->rows + 9999) {
        printf("  sampling agreement(backend=%s): %lld boundary mismatches in %lld rows is above "
               "1 in 10,000\n",
               r1_backend_name(backend), (long long)summary->mismatches,
               (long long)summary->rows);
        summary->cases_total += 1;
    }
    return R1_OK;
}

/* ---- chi-square goodness of fit ------------------------------------------------------------ */

/* Regularized upper incomplete gamma Q(a, x): series for x < a + 1,
 * continued fraction (modified Lentz) otherwise. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1.0;
    double log_prefix = -x + a * log(x) - lgamma(a);
    if (x < a + 1) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 10000; ++n) {
            term *= x / (a + n);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-15) break;
        }
        return 1.0 - sum * exp(log_prefix);
    }
    double b = x + 1 - a, c = 1e300, d = 1.0 / b, h = d;
    for (int i = 1; i < 10000; ++i) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1) < 1e-15) break;
    }
    return exp(log_prefix) * h;
}

/* p-value of observed counts against expected probabilities, bins with an
 * expected count below 5 merged into one. */
static double chi_square_p(const int64_t *observed, const float *probs, int64_t V, int64_t draws,
                           int *degrees) {
    double statistic = 0, small_expected = 0;
    int64_t small_observed = 0;
    int bins = 0;
    for (int64_t i = 0; i < V; ++i) {
        double expected = (double)probs[i] * (double)draws;
        if (expected < 5) {
            small_expected += expected;
            small_observed += observed[i];
            continue;
        }
        statistic += (observed[i] - expected) * (observed[i] - expected) / expected;
        ++bins;
    }
    if (small_expected > 0 || small_observed > 0) {
        double e = small_expected > 1e-12 ? small_expected : 1e-12;
        statistic += (small_observed - e) * (small_observed - e) / e;
        ++bins;
    }
    *degrees = bins - 1;
    return bins > 1 ? gamma_q(0.5 * (bins - 1), 0.5 * statistic) : 1.0;
}

r1_status check_sampling_chi_square(r1_backend backend, int64_t draws, check_summary *summary) {
    static const struct {
        const char *name;
        int64_t vocab;
        float temperature, top_p, min_p, repetition;
        int32_t top_k;
    } settings[] = {
        {"teacher(T=0.6,top_p=0.95,V=200)", 200, 0.6f, 0.95f, 0.0f, 1.0f, 0},
        {"top_k=20,min_p=0.05(V=500)", 500, 1.0f, 1.0f, 0.05f, 1.0f, 20},
        {"all filters+penalty(V=64)", 64, 0.8f, 0.9f, 0.02f, 1.3f, 40},
    };
    const int64_t chunk = 10000;
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; ++s) {
        const int64_t V = settings[s].vocab;
        r1t_rng r = r1t_rng_make(1234 + s);
        float *row = malloc((size_t)V * 4);
        for (int64_t i = 0; i < V; ++i) row[i] = (float)(1.5 * r1t_rng_normal(&r));
        float *logits = malloc((size_t)(chunk * V) * 4);
        for (int64_t b = 0; b < chunk; ++b) memcpy(logits + b * V, row, (size_t)V * 4);
        r1_sampling_params *params = malloc((size_t)chunk * sizeof *params);
        int64_t *offsets = malloc((size_t)(chunk + 1) * sizeof *offsets);
        int32_t *history = malloc((size_t)(chunk * 3) * sizeof *history);
        offsets[0] = 0;
        for (int64_t b = 0; b < chunk; ++b) {
            r1_sampling_params p = r1_sampling_params_default();
            p.temperature = settings[s].temperature;
            p.top_p = settings[s].top_p;
            p.min_p = settings[s].min_p;
            p.top_k = settings[s].top_k;
            p.repetition_penalty = settings[s].repetition;
            p.seed = 20261122;
            params[b] = p;
            int64_t length = settings[s].repetition != 1.0f ? 3 : 0;
            for (int64_t j = 0; j < length; ++j) history[offsets[b] + j] = (int32_t)(j * 7);
            offsets[b + 1] = offsets[b] + length;
        }
        r1_sampling_desc desc = {0};
        desc.vocab = V;
        desc.logits_dtype = R1_F32;
        desc.params = params;
        desc.history = history;
        desc.history_offsets = offsets;
        /* The exact filtered distribution from ref (row 0). */
        desc.batch = 1;
        sampling_buffers reference;
        buffers_make(&reference, 1, V, 0);
        r1_status status = r1_sampling_sample(R1_REF, &desc, logits, &reference.out, NULL, 0, NULL);
        int64_t *observed = calloc((size_t)V, sizeof *observed);
        int32_t *tokens = malloc((size_t)chunk * 4);
        for (int64_t done = 0; status == R1_OK && done < draws; done += chunk) {
            desc.batch = draws - done < chunk ? draws - done : chunk;
            for (int64_t b = 0; b < desc.batch; ++b) params[b].step = (uint64_t)(done / chunk);
            r1_sampling_outputs out = {0};
            out.tokens = tokens;
            double start = check_now();
            status = sampling_run_on_host(backend, &desc, logits, &out);
            summary->seconds += check_now() - start;
            summary->rows += desc.batch;
            for (int64_t b = 0; status == R1_OK && b < desc.batch; ++b) {
                if (tokens[b] < 0 || tokens[b] >= V) {
                    status = r1_fail(R1_EINTERNAL, "token %d out of range", tokens[b]);
                    break;
                }
                observed[tokens[b]] += 1;
            }
        }
        int degrees = 0;
        double p_value = status == R1_OK
                             ? chi_square_p(observed, reference.out.filtered_probs, V, draws,
                                            &degrees)
                             : 0.0;
        int ok = status == R1_OK && p_value >= 1e-4;
        /* A draw must never land on a token the filters removed. */
        for (int64_t i = 0; i < V; ++i)
            if (observed[i] > 0 && !(reference.out.filtered_probs[i] > 0)) ok = 0;
        summary->cases_total += 1;
        summary->cases_passed += ok;
        if (summary->verbose || !ok)
            printf("  %s chi-square %s backend=%s draws=%lld: p = %.4g (%d degrees of freedom)%s\n",
                   ok ? "ok  " : "FAIL", settings[s].name, r1_backend_name(backend),
                   (long long)draws, p_value, degrees,
                   status == R1_OK ? "" : r1_last_error());
        buffers_free(&reference);
        free(observed);
        free(tokens);
        free(row);
        free(logits);
        free(params);
        free(offsets);
        free(history);
    }
    return R1_OK;
}

/* ---- throughput ------------------------------------------------------------------------------ */

double check_sampling_throughput(r1_backend backend, int64_t batch, int64_t vocab) {
    r1t_rng r = r1t_rng_make(99);
    float *logits = malloc((size_t)(batch * vocab) * 4);
    for (int64_t i = 0; i < batch * vocab; ++i) logits[i] = (float)(2.0 * r1t_rng_normal(&r));
    for (int64_t b = 0; b < batch; ++b)
        for (int k = 0; k < 10; ++k) logits[b * vocab + r1t_rng_range(&r, 0, vocab - 1)] += 10.0f;
    r1_sampling_params *params = malloc((size_t)batch * sizeof *params);
    for (int64_t b = 0; b < batch; ++b) {
        params[b] = r1_sampling_params_default();
        params[b].temperature = 0.6f;
        params[b].top_p = 0.95f;
    }
    r1_sampling_desc desc = {0};
    desc.batch = batch;
    desc.vocab = vocab;
    desc.logits_dtype = R1_F32;
    desc.params = params;
    double rate = 0;
    int32_t *tokens = malloc((size_t)batch * 4);
    if (backend == R1_CUDA) {
        void *d_logits = NULL, *d_tokens = NULL, *workspace = NULL;
        size_t ws = r1_sampling_workspace_size(R1_CUDA, &desc);
        r1_status s = r1_device_alloc(&d_logits, (size_t)(batch * vocab) * 4);
        if (s == R1_OK) s = r1_device_alloc(&d_tokens, (size_t)batch * 4);
        if (s == R1_OK) s = r1_device_alloc(&workspace, ws);
        if (s == R1_OK)
            s = r1_device_copy(d_logits, logits, (size_t)(batch * vocab) * 4, R1_HOST_TO_DEVICE);
        r1_sampling_outputs out = {0};
        out.tokens = d_tokens;
        if (s == R1_OK) s = r1_sampling_sample(R1_CUDA, &desc, d_logits, &out, workspace, ws, NULL);
        if (s == R1_OK) {
            const int repeats = 20;
            double start = check_now();
            for (int i = 0; i < repeats && s == R1_OK; ++i)
                s = r1_sampling_sample(R1_CUDA, &desc, d_logits, &out, workspace, ws, NULL);
            if (s == R1_OK) rate = (double)(batch * repeats) / (check_now() - start);
        }
        r1_device_free(d_logits);
        r1_device_free(d_tokens);
        r1_device_free(workspace);
    } else {
        size_t ws_bytes = r1_sampling_workspace_size(backend, &desc);
        void *workspace = malloc(ws_bytes ? ws_bytes : 1);
        r1_sampling_outputs out = {0};
        out.tokens = tokens;
        r1_status s = r1_sampling_sample(backend, &desc, logits, &out, workspace, ws_bytes, NULL);
        int repeats = 0;
        double start = check_now(), elapsed = 0;
        while (s == R1_OK && (repeats < 2 || elapsed < 0.3)) {
            s = r1_sampling_sample(backend, &desc, logits, &out, workspace, ws_bytes, NULL);
            ++repeats;
            elapsed = check_now() - start;
        }
        if (s == R1_OK) rate = (double)(batch * repeats) / elapsed;
        free(workspace);
    }
    free(tokens);
    free(logits);
    free(params);
    return rate;
}

/* ---- the component as `r1lab check` runs it ----------------------------------- */

/* Golden cases, agreement with ref (not for ref itself) and chi-square. */
static r1_status sampling_check_run(r1_backend backend, uint64_t seed, int64_t rows,
                                    check_summary *summary) {
    r1_status status = check_sampling_golden(backend, summary);
    if (status != R1_OK) return status;
    if (backend != R1_REF) {
        status = check_sampling_agreement(backend, seed, rows, summary);
        if (status != R1_OK) return status;
    }
    return check_sampling_chi_square(backend, 20000, summary);
}

static double sampling_check_throughput(r1_backend backend) {
    return check_sampling_throughput(backend, 64, 152064);
}

const check_component check_component_sampling = {
    "sampling", sampling_check_run, sampling_check_throughput,
    "tokens, B=64 V=152064 T=0.6 top_p=0.95"};
