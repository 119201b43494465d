/*
 * bench/bench_sampling.c — token sampling throughput, every backend.
 *
 * Configurations: B in {1, 64, 256} rows, V in {32000, 129280, 152064} (Qwen2
 * / Llama-2 32k, DeepSeek-V3 129280, Qwen2.5 152064), float32 logits, T = 0.6
 * with one of: top_p = 0.95 (the teacher settings), top_k = 50, min_p = 0.05.
 * ref and fast run a subset (ref is slow; CPU rows are for the speed-up).
 *
 * Logits: normal(0, 2) with ten tokens per row raised by 8..15, a peaked,
 * LLM-like distribution (the nucleus holds a handful of tokens). One CUDA
 * case, "flat", leaves out the raised tokens: its nucleus holds most of the
 * row, which the CUDA shortlist cannot decide, so it times the cluster
 * kernel's radix path.
 *
 * Bytes: the logits are read once, B * V * 4 bytes (outputs are B ints).
 * That over the measured device-to-device copy bandwidth (bytes read +
 * written per second, bench.h) is the floor; "fraction_of_hbm" is
 * achieved bytes/s over that bandwidth. CPU rows report the fraction of the
 * measured host memcpy bandwidth the same way.
 *
 * Before timing, each configuration's tokens for the first rows are checked
 * against ref (the same rows, the same Philox draws); a mismatch skips it.
 * CUDA runs call r1_sampling_sample asynchronously, timed with CUDA events
 * around each call (parameter upload included); inputs that fit in L2 are
 * rotated among enough copies to exceed it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/sampling.h"

#ifdef R1LAB_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

typedef enum setting { TOP_P_095, TOP_K_50, MIN_P_005, TOP_P_095_FLAT } setting;

typedef struct sampling_case {
    r1_backend backend;
    int64_t batch, vocab;
    setting filter;
} sampling_case;

static const char *setting_name(setting s) {
    switch (s) {
    case TOP_P_095: return "T=0.6,top_p=0.95";
    case TOP_K_50: return "T=0.6,top_k=50";
    case MIN_P_005: return "T=0.6,min_p=0.05";
    case TOP_P_095_FLAT: return "T=0.6,top_p=0.95,flat";
    }
    return "?";
}

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float *make_logits(int64_t batch, int64_t vocab, setting filter) {
    float *logits = malloc((size_t)(batch * vocab) * sizeof(float));
    if (!logits) return NULL;
    uint64_t state = 2026;
    for (int64_t i = 0; i < batch * vocab; i += 2) {
        double u1 = ((double)(splitmix(&state) >> 11) + 1.0) * 0x1p-53;
        double u2 = (double)(splitmix(&state) >> 11) * 0x1p-53;
        double radius = 2.0 * sqrt(-2.0 * log(u1));
        logits[i] = (float)(radius * cos(6.283185307179586 * u2));
        if (i + 1 < batch * vocab) logits[i + 1] = (float)(radius * sin(6.283185307179586 * u2));
    }
    for (int64_t b = 0; b < batch && filter != TOP_P_095_FLAT; ++b)
        for (int k = 0; k < 10; ++k)
            logits[b * vocab + (int64_t)(splitmix(&state) % (uint64_t)vocab)] +=
                8.0f + 7.0f * (float)((splitmix(&state) >> 11) * 0x1p-53);
    return logits;
}

static r1_sampling_params *make_params(int64_t batch, setting filter) {
    r1_sampling_params *params = malloc((size_t)batch * sizeof *params);
    for (int64_t b = 0; b < batch; ++b) {
        params[b] = r1_sampling_params_default();
        params[b].temperature = 0.6f;
        params[b].seed = 7;
        params[b].step = 3;
        if (filter == TOP_P_095 || filter == TOP_P_095_FLAT) params[b].top_p = 0.95f;
        if (filter == TOP_K_50) params[b].top_k = 50;
        if (filter == MIN_P_005) params[b].min_p = 0.05f;
    }
    return params;
}

/* Tokens of `backend` for the first rows equal ref's (same rows, same u). */
static int first_rows_agree(const r1_sampling_desc *desc, const float *logits,
                            const int32_t *tokens, char *why, size_t why_size) {
    r1_sampling_desc head = *desc;
    head.batch = desc->batch < 4 ? desc->batch : 4;
    int32_t expected[4];
    r1_sampling_outputs out = {.tokens = expected};
    r1_status status = r1_sampling_sample(R1_REF, &head, logits, &out, NULL, 0, NULL);
    if (status != R1_OK) {
        snprintf(why, why_size, "ref failed: %s", r1_last_error());
        return 0;
    }
    for (int64_t b = 0; b < head.batch; ++b) {
        if (tokens[b] != expected[b]) {
            snprintf(why, why_size, "row %lld: token %d, ref %d", (long long)b, tokens[b],
                     expected[b]);
            return 0;
        }
    }
    return 1;
}

static void report(r1b_state *state, const sampling_case *c, int64_t iterations, double limit,
                   const char *limit_name) {
    /* Bytes: logits read once per call. */
    int64_t bytes = iterations * c->batch * c->vocab * (int64_t)sizeof(float);
    r1b_set_bytes_processed(state, bytes);
    r1b_set_items_processed(state, iterations * c->batch); /* tokens/s */
    if (limit > 0) r1b_counter_rate(state, limit_name, (double)bytes / limit);
}

static void bench_cpu(r1b_state *state, const void *user) {
    const sampling_case *c = user;
    float *logits = make_logits(c->batch, c->vocab, c->filter);
    r1_sampling_params *params = make_params(c->batch, c->filter);
    int32_t *tokens = malloc((size_t)c->batch * sizeof *tokens);
    r1_sampling_desc desc = {.batch = c->batch, .vocab = c->vocab, .logits_dtype = R1_F32,
                             .params = params};
    size_t workspace_bytes = r1_sampling_workspace_size(c->backend, &desc);
    void *workspace = malloc(workspace_bytes ? workspace_bytes : 1);
    r1_sampling_outputs out = {.tokens = tokens};
    char why[256];
    if (!logits || !params || !tokens || !workspace) {
        r1b_skip_with_error(state, "out of memory");
    } else if (r1_sampling_sample(c->backend, &desc, logits, &out, workspace, workspace_bytes,
                                  NULL) != R1_OK) {
        snprintf(why, sizeof why, "sampling failed: %s", r1_last_error());
        r1b_skip_with_error(state, why);
    } else if (!first_rows_agree(&desc, logits, tokens, why, sizeof why)) {
        r1b_skip_with_error(state, why);
    } else {
        for (; r1b_keep_running(state);) {
            r1_sampling_sample(c->backend, &desc, logits, &out, workspace, workspace_bytes, NULL);
            r1b_do_not_optimize(tokens);
        }
        report(state, c, r1b_iterations(state), r1b_host_copy_bandwidth(), "fraction_of_host_copy");
    }
    free(logits);
    free(params);
    free(tokens);
    free(workspace);
}

#ifdef R1LAB_HAVE_CUDA
/* One timed call; each call reads the next copy of the logits, so that the
 * rotation, not L2, feeds the kernel (r1b_time_cuda_calls). */
typedef struct sampling_call {
    const r1_sampling_desc *desc;
    void *const *logits; /* `copies` device copies of the same logits */
    int copies, next;
    const r1_sampling_outputs *out;
    void *workspace;
    size_t workspace_bytes;
} sampling_call;

static int run_sampling(void *context) {
    sampling_call *call = context;
    const void *logits = call->logits[call->next];
    call->next = (call->next + 1) % call->copies;
    return r1_sampling_sample(R1_CUDA, call->desc, logits, call->out, call->workspace,
                              call->workspace_bytes, NULL);
}

static void bench_cuda(r1b_state *state, const void *user) {
    const sampling_case *c = user;
    const size_t logit_bytes = (size_t)(c->batch * c->vocab) * sizeof(float);
    /* Enough copies that the rotation exceeds a 50 MB L2 twice over. */
    const size_t rotation_bytes = 128u << 20;
    int copies = (int)((rotation_bytes + logit_bytes - 1) / logit_bytes);
    if (copies < 1) copies = 1;
    if (copies > 64) copies = 64;
    float *logits = make_logits(c->batch, c->vocab, c->filter);
    r1_sampling_params *params = make_params(c->batch, c->filter);
    int32_t *tokens = malloc((size_t)c->batch * sizeof *tokens);
    r1_sampling_desc desc = {.batch = c->batch, .vocab = c->vocab, .logits_dtype = R1_F32,
                             .params = params, .asynchronous = 1};
    size_t workspace_bytes = r1_sampling_workspace_size(R1_CUDA, &desc);
    void *d_logits[64] = {0}, *d_tokens = NULL, *workspace = NULL;
    r1_status status = R1_OK;
    for (int i = 0; i < copies && status == R1_OK; ++i) {
        status = r1_device_alloc(&d_logits[i], logit_bytes);
        if (status == R1_OK)
            status = r1_device_copy(d_logits[i], logits, logit_bytes, R1_HOST_TO_DEVICE);
    }
    if (status == R1_OK) status = r1_device_alloc(&d_tokens, (size_t)c->batch * sizeof(int32_t));
    if (status == R1_OK) status = r1_device_alloc(&workspace, workspace_bytes);
    r1_sampling_outputs out = {.tokens = d_tokens};
    char why[256];
    if (status == R1_OK)
        status = r1_sampling_sample(R1_CUDA, &desc, d_logits[0], &out, workspace,
                                    workspace_bytes, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    if (status == R1_OK)
        status = r1_device_copy(tokens, d_tokens, (size_t)c->batch * sizeof(int32_t),
                                R1_DEVICE_TO_HOST);
    if (status != R1_OK) {
        snprintf(why, sizeof why, "sampling failed: %s", r1_last_error());
        r1b_skip_with_error(state, why);
    } else if (!first_rows_agree(&desc, logits, tokens, why, sizeof why)) {
        r1b_skip_with_error(state, why);
    } else {
        sampling_call call = {&desc, d_logits, copies, 0, &out, workspace, workspace_bytes};
        if (r1b_time_cuda_calls(state, run_sampling, &call) == R1_OK)
            report(state, c, r1b_iterations(state), r1b_device_copy_bandwidth(), "fraction_of_hbm");
    }
    for (int i = 0; i < copies; ++i) r1_device_free(d_logits[i]);
    r1_device_free(d_tokens);
    r1_device_free(workspace);
    free(logits);
    free(params);
    free(tokens);
}
#endif

static void register_case(r1_backend backend, int64_t batch, int64_t vocab, setting filter) {
    static sampling_case cases[128];
    static int count = 0;
    if (count == 128) return;
    sampling_case *c = &cases[count++];
    c->backend = backend;
    c->batch = batch;
    c->vocab = vocab;
    c->filter = filter;
    char name[160];
    snprintf(name, sizeof name, "sampling(backend=%s,B=%lld,V=%lld,%s)", r1_backend_name(backend),
             (long long)batch, (long long)vocab, setting_name(filter));
#ifdef R1LAB_HAVE_CUDA
    if (backend == R1_CUDA) {
        r1b_register_manual_time(name, bench_cuda, c);
        return;
    }
#endif
    r1b_register(name, bench_cpu, c);
}

void r1b_register_sampling(void) {
    static const int64_t vocabularies[] = {32000, 129280, 152064};
    static const int64_t batches[] = {1, 64, 256};
    /* CPU: the teacher settings at B = 1 and 64; ref only where it is quick
     * enough to time, and at B = 64, V = 152064 for the speed-up. */
    for (int v = 0; v < 3; ++v) {
        register_case(R1_REF, 1, vocabularies[v], TOP_P_095);
        register_case(R1_FAST, 1, vocabularies[v], TOP_P_095);
        register_case(R1_FAST, 64, vocabularies[v], TOP_P_095);
    }
    register_case(R1_REF, 64, 152064, TOP_P_095);
    register_case(R1_FAST, 64, 152064, TOP_K_50);
    register_case(R1_FAST, 64, 152064, MIN_P_005);
    if (!r1_backend_available(R1_CUDA)) return;
    for (int f = 0; f < 3; ++f)
        for (int b = 0; b < 3; ++b)
            for (int v = 0; v < 3; ++v)
                register_case(R1_CUDA, batches[b], vocabularies[v], (setting)f);
    register_case(R1_CUDA, 256, 152064, TOP_P_095_FLAT);
}
