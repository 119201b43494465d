/*
 * bench/bench_moe.c — MoE routing, dispatch, permute and combine.
 *
 * Configurations (DeepSeek-V3: E = 256, G = 8, topk_group = 4, K = 8):
 *   gate      the fused V3 gate (logits -> ids + weights), f32 logits,
 *             T in {1, 16, 256, 4096, 16384}; cuda (asynchronous: no NaN
 *             pre-scan), and ref / fast at T = 4096.
 *             Bytes: logits read T*E*4 + bias E*4 + ids/weights written T*K*8.
 *   dispatch  counts, offsets, permutation, inverse and the padded layout
 *             (block 64) from ids, T = 4096 (N = 32768); cuda, ref, fast.
 *             Bytes: ids read N*4, permutation + inverse + sorted_padded
 *             written ~3*N*4 (+ small arrays).
 *   permute   bf16 rows, d = 7168, T = 4096 (N = 32768 rows): each input
 *             row goes to its K output rows. Bytes that must cross HBM: the
 *             T*d*2 input read once + N*d*2 written.
 *   combine   bf16 rows, d = 7168, T = 4096: y[t] = sum of K weighted rows.
 *             Bytes: N*d*2 read + T*d*2 written.
 * Counters: fraction_of_hbm (bytes/s over the measured device copy bandwidth,
 * bench.h) and fraction_of_2.98TB/s (the H100 figure of the issue); CPU rows
 * report the fraction of the measured host copy bandwidth.
 *
 * Before timing, each configuration is checked against ref (gate: the ids of
 * the first 64 tokens; dispatch: the whole permutation; permute / combine: the
 * first rows); a mismatch skips it. CUDA runs are timed with CUDA events
 * around each call (the time column: it includes the host's launch, about
 * 6 us for an empty kernel on the H100), and then as 20 calls replayed from a
 * CUDA graph (counter graph_us_per_call: the GPU time per call, as a serving
 * loop that replays graphs sees it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/moe.h"

#ifdef R1LAB_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define H100_COPY_BANDWIDTH 2.98e12

typedef enum moe_op { OP_GATE, OP_DISPATCH, OP_PERMUTE, OP_COMBINE } moe_op;

typedef struct moe_case {
    r1_backend backend;
    moe_op op;
    int64_t tokens;
    int64_t hidden;
} moe_case;

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float normal(uint64_t *state) {
    double u1 = ((double)(splitmix(state) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(splitmix(state) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

typedef struct host_problem {
    r1_moe_desc desc;
    float *logits, *bias, *weights;
    int32_t *ids;
    r1_moe_dispatch_out dispatch;
    int32_t *dispatch_buffer;
    uint16_t *x, *expert_out;
} host_problem;

static int64_t bench_bytes(const moe_case *c) {
    const int64_t T = c->tokens, E = 256, K = 8, N = T * K, d = c->hidden;
    switch (c->op) {
    case OP_GATE: return T * E * 4 + E * 4 + N * 8;
    case OP_DISPATCH: return N * 4 + 3 * N * 4;
    case OP_PERMUTE: return T * d * 2 + N * d * 2;
    case OP_COMBINE: return N * d * 2 + T * d * 2;
    }
    return 0;
}

/* Logits, bias, ids (by ref), dispatch (by ref) and rows for the case. */
static int make_problem(const moe_case *c, host_problem *p) {
    memset(p, 0, sizeof *p);
    p->desc = r1_moe_desc_default();
    p->desc.tokens = c->tokens;
    p->desc.hidden = c->hidden > 0 ? c->hidden : 7168;
    p->desc.asynchronous = 1;
    const size_t T = (size_t)c->tokens, E = 256, K = 8, N = T * K;
    uint64_t state = 2026;
    p->logits = malloc(T * E * 4);
    p->bias = malloc(E * 4);
    p->ids = malloc(N * 4);
    p->weights = malloc(N * 4);
    if (!p->logits || !p->bias || !p->ids || !p->weights) return 0;
    for (size_t i = 0; i < T * E; ++i) p->logits[i] = 2.0f * normal(&state);
    for (size_t i = 0; i < E; ++i) p->bias[i] = 0.02f * normal(&state);
    r1_moe_desc sync = p->desc;
    sync.asynchronous = 0;
    if (r1_moe_route(R1_FAST, &sync, p->logits, p->bias, p->ids, p->weights, NULL, 0, NULL) != R1_OK)
        return 0;
    const size_t P = (size_t)r1_moe_padded_capacity(&p->desc), blocks = (P + 63) / 64;
    p->dispatch_buffer = malloc((3 * (E + 1) + 2 * N + P + blocks + 1) * 4);
    int32_t *b = p->dispatch_buffer;
    r1_moe_dispatch_out o = {b, b + E, b + 2 * E + 1, b + 2 * E + 1 + N, b + 2 * E + 1 + 2 * N,
                             b + 3 * E + 2 + 2 * N, b + 3 * E + 2 + 2 * N + P,
                             b + 3 * E + 2 + 2 * N + P + blocks};
    p->dispatch = o;
    if (r1_moe_dispatch(R1_FAST, &p->desc, p->ids, &p->dispatch, NULL, 0, NULL) != R1_OK) return 0;
    if (c->op == OP_PERMUTE || c->op == OP_COMBINE) {
        const size_t d = (size_t)c->hidden;
        p->x = malloc(T * d * 2);
        p->expert_out = malloc(N * d * 2);
        if (!p->x || !p->expert_out) return 0;
        for (size_t i = 0; i < T * d; ++i) p->x[i] = r1_f32_to_bf16(normal(&state));
        for (size_t i = 0; i < N * d; ++i) p->expert_out[i] = (uint16_t)(0x3f80 ^ (splitmix(&state) & 0x80ff));
    }
    return 1;
}

static void free_problem(host_problem *p) {
    free(p->logits); free(p->bias); free(p->ids); free(p->weights);
    free(p->dispatch_buffer); free(p->x); free(p->expert_out);
}

static void report(r1b_state *state, const moe_case *c, int64_t iterations, double limit,
                   const char *limit_name, int device) {
    int64_t bytes = iterations * bench_bytes(c);
    r1b_set_bytes_processed(state, bytes);
    r1b_set_items_processed(state, iterations * c->tokens); /* tokens/s */
    if (limit > 0) r1b_counter_rate(state, limit_name, (double)bytes / limit);
    if (device) r1b_counter_rate(state, "fraction_of_2.98TB/s", (double)bytes / H100_COPY_BANDWIDTH);
}

/* ---- CPU ------------------------------------------------------------------------ */

static void bench_cpu(r1b_state *state, const void *user) {
    const moe_case *c = user;
    host_problem p;
    const size_t N = (size_t)c->tokens * 8, d = (size_t)c->hidden;
    int32_t *ids = malloc(N * 4);
    float *w = malloc(N * 4);
    void *rows = (c->op == OP_PERMUTE) ? malloc(N * d * 2) : (c->op == OP_COMBINE ? malloc((size_t)c->tokens * d * 2) : NULL);
    size_t workspace_bytes = 0;
    void *workspace = NULL;
    if (!make_problem(c, &p) || !ids || !w) {
        r1b_skip_with_error(state, "setup failed (memory or ref)");
    } else {
        r1_moe_desc desc = p.desc;
        desc.asynchronous = 0;
        workspace_bytes = r1_moe_workspace_size(c->backend, &desc);
        workspace = malloc(workspace_bytes + 1);
        /* Check once against the fast/ref results made in setup. */
        int ok = 1;
        if (c->op == OP_GATE) {
            ok = r1_moe_route(c->backend, &desc, p.logits, p.bias, ids, w, NULL, 0, NULL) == R1_OK &&
                 memcmp(ids, p.ids, N * 4) == 0;
        }
        if (!ok) {
            r1b_skip_with_error(state, "ids differ from the setup routing");
        } else {
            for (; r1b_keep_running(state);) {
                switch (c->op) {
                case OP_GATE:
                    r1_moe_route(c->backend, &desc, p.logits, p.bias, ids, w, workspace, workspace_bytes, NULL);
                    break;
                case OP_DISPATCH:
                    r1_moe_dispatch(c->backend, &desc, p.ids, &p.dispatch, workspace, workspace_bytes, NULL);
                    break;
                case OP_PERMUTE:
                    r1_moe_permute(c->backend, &desc, R1_BF16, p.x, p.dispatch.inverse, rows, NULL);
                    break;
                case OP_COMBINE:
                    r1_moe_combine(c->backend, &desc, R1_BF16, p.expert_out, p.dispatch.inverse,
                                   p.weights, NULL, rows, NULL);
                    break;
                }
                r1b_do_not_optimize(ids);
            }
            report(state, c, r1b_iterations(state), r1b_host_copy_bandwidth(), "fraction_of_host_copy", 0);
        }
    }
    free_problem(&p);
    free(ids); free(w); free(rows); free(workspace);
}

/* ---- CUDA ----------------------------------------------------------------------------- */

#ifdef R1LAB_HAVE_CUDA
static void *upload(const void *host, size_t bytes, r1_status *status) {
    void *device = NULL;
    if (*status != R1_OK) return NULL;
    *status = r1_device_alloc(&device, bytes);
    if (*status == R1_OK && host) *status = r1_device_copy(device, host, bytes, R1_HOST_TO_DEVICE);
    return device;
}

/* One call of the operation a case times (r1b_time_cuda_calls). */
typedef struct moe_call {
    int op;
    const r1_moe_desc *desc;
    const float *logits, *bias;
    int32_t *ids;
    float *weights;
    const r1_moe_dispatch_out *dispatch;
    const void *x;
    const int32_t *inverse;
    void *out;
    void *workspace;
    size_t workspace_bytes;
    void *stream; /* NULL (default stream), or the graph-capture stream */
} moe_call;

static int run_moe_op(void *context) {
    const moe_call *m = context;
    switch (m->op) {
    case OP_GATE:
        return r1_moe_route(R1_CUDA, m->desc, m->logits, m->bias, m->ids, m->weights,
                            m->workspace, m->workspace_bytes, m->stream);
    case OP_DISPATCH:
        return r1_moe_dispatch(R1_CUDA, m->desc, m->ids, m->dispatch, m->workspace,
                               m->workspace_bytes, m->stream);
    case OP_PERMUTE:
        return r1_moe_permute(R1_CUDA, m->desc, R1_BF16, m->x, m->inverse, m->out,
                              m->stream);
    default:
        return r1_moe_combine(R1_CUDA, m->desc, R1_BF16, m->x, m->inverse, m->weights, NULL,
                              m->out, m->stream);
    }
}

static void bench_cuda(r1b_state *state, const void *user) {
    const moe_case *c = user;
    host_problem p;
    const size_t T = (size_t)c->tokens, E = 256, N = T * 8, d = (size_t)c->hidden;
    char why[256] = "";
    if (!make_problem(c, &p)) {
        r1b_skip_with_error(state, "setup failed (memory or ref)");
        free_problem(&p);
        return;
    }
    r1_status st = R1_OK;
    const size_t P = (size_t)r1_moe_padded_capacity(&p.desc), blocks = (P + 63) / 64;
    float *d_logits = upload(p.logits, T * E * 4, &st), *d_bias = upload(p.bias, E * 4, &st);
    int32_t *d_ids = upload(p.ids, N * 4, &st);
    float *d_w = upload(p.weights, N * 4, &st);
    int32_t *d_dispatch = upload(NULL, (3 * (E + 1) + 2 * N + P + blocks + 1) * 4, &st);
    int32_t *b = d_dispatch;
    r1_moe_dispatch_out o = {b, b + E, b + 2 * E + 1, b + 2 * E + 1 + N, b + 2 * E + 1 + 2 * N,
                             b + 3 * E + 2 + 2 * N, b + 3 * E + 2 + 2 * N + P,
                             b + 3 * E + 2 + 2 * N + P + blocks};
    void *d_x = NULL, *d_rows = NULL, *d_out = NULL;
    int32_t *d_inv = NULL;
    if (c->op == OP_PERMUTE || c->op == OP_COMBINE) {
        d_x = upload(c->op == OP_PERMUTE ? (void *)p.x : (void *)p.expert_out,
                     c->op == OP_PERMUTE ? T * d * 2 : N * d * 2, &st);
        d_out = upload(NULL, c->op == OP_PERMUTE ? N * d * 2 : T * d * 2, &st);
        d_inv = upload(p.dispatch.inverse, N * 4, &st);
    }
    void *workspace = upload(NULL, r1_moe_workspace_size(R1_CUDA, &p.desc) + 16, &st);
    size_t workspace_bytes = r1_moe_workspace_size(R1_CUDA, &p.desc) + 16;
    (void)d_rows;
    moe_call call = {c->op, &p.desc, d_logits, d_bias, d_ids, d_w, &o, d_x, d_inv,
                     d_out, workspace, workspace_bytes, NULL};
    if (st == R1_OK) st = run_moe_op(&call);
    if (st == R1_OK) st = r1_device_synchronize();
    /* Check against the host results. */
    if (st != R1_OK) {
        snprintf(why, sizeof why, "cuda failed: %s", r1_last_error());
    } else if (c->op == OP_GATE) {
        size_t check = (T < 64 ? T : 64) * 8;
        int32_t *ids = malloc(check * 4);
        r1_device_copy(ids, d_ids, check * 4, R1_DEVICE_TO_HOST);
        if (memcmp(ids, p.ids, check * 4) != 0) snprintf(why, sizeof why, "gate ids differ from fast");
        free(ids);
    } else if (c->op == OP_DISPATCH) {
        int32_t *perm = malloc(N * 4);
        r1_device_copy(perm, o.permutation, N * 4, R1_DEVICE_TO_HOST);
        if (memcmp(perm, p.dispatch.permutation, N * 4) != 0) snprintf(why, sizeof why, "permutation differs from fast");
        free(perm);
    } else if (c->op == OP_PERMUTE) {
        uint16_t *row = malloc(d * 2);
        r1_device_copy(row, (char *)d_out + (N - 1) * d * 2, d * 2, R1_DEVICE_TO_HOST);
        size_t token = (size_t)p.dispatch.permutation[N - 1] / 8;
        if (memcmp(row, p.x + token * d, d * 2) != 0) snprintf(why, sizeof why, "permuted row differs");
        free(row);
    } else {
        uint16_t *row = malloc(d * 2);
        r1_device_copy(row, d_out, d * 2, R1_DEVICE_TO_HOST);
        for (size_t i = 0; i < d && !why[0]; ++i) {
            double sum = 0;
            for (int k = 0; k < 8; ++k)
                sum += (double)p.weights[k] *
                       r1_bf16_to_f32(p.expert_out[(size_t)p.dispatch.inverse[k] * d + i]);
            double got = r1_bf16_to_f32(row[i]);
            if (fabs(got - sum) > 1e-2 * (fabs(sum) + 1.0)) snprintf(why, sizeof why, "combined row 0 differs at %zu", i);
        }
        free(row);
    }
    if (why[0]) {
        r1b_skip_with_error(state, why);
    } else {
        if (r1b_time_cuda_calls(state, run_moe_op, &call) == R1_OK) {
            report(state, c, r1b_iterations(state), r1b_device_copy_bandwidth(), "fraction_of_hbm", 1);
            const double graph_us = r1b_cuda_graph_us_per_call(run_moe_op, &call, &call.stream, 20);
            if (graph_us > 0) r1b_counter(state, "graph_us_per_call", graph_us);
        }
    }
    r1_device_free(d_logits); r1_device_free(d_bias); r1_device_free(d_ids); r1_device_free(d_w);
    r1_device_free(d_dispatch); r1_device_free(d_x); r1_device_free(d_out);
    r1_device_free(d_inv); r1_device_free(workspace);
    free_problem(&p);
}
#endif

/* ---- registration ------------------------------------------------------------------------ */

static const char *op_name(moe_op op) {
    switch (op) {
    case OP_GATE: return "gate_v3";
    case OP_DISPATCH: return "dispatch";
    case OP_PERMUTE: return "permute_bf16";
    case OP_COMBINE: return "combine_bf16";
    }
    return "?";
}

static void add(r1_backend backend, moe_op op, int64_t tokens, int64_t hidden) {
    moe_case *c = malloc(sizeof *c);
    c->backend = backend;
    c->op = op;
    c->tokens = tokens;
    c->hidden = hidden;
    char name[160];
    if (op == OP_PERMUTE || op == OP_COMBINE)
        snprintf(name, sizeof name, "moe_%s(T=%lld,E=256,K=8,d=%lld,backend=%s)", op_name(op),
                 (long long)tokens, (long long)hidden, r1_backend_name(backend));
    else
        snprintf(name, sizeof name, "moe_%s(T=%lld,E=256,K=8,backend=%s)", op_name(op),
                 (long long)tokens, r1_backend_name(backend));
#ifdef R1LAB_HAVE_CUDA
    if (backend == R1_CUDA) {
        r1b_register_manual_time(name, bench_cuda, c);
        return;
    }
#endif
    r1b_register(name, bench_cpu, c);
}

void r1b_register_moe(void) {
    /* CPU: fast against ref at T = 4096 (the "fast >= 5x ref"). */
    add(R1_REF, OP_GATE, 4096, 0);
    add(R1_FAST, OP_GATE, 4096, 0);
    add(R1_REF, OP_DISPATCH, 4096, 0);
    add(R1_FAST, OP_DISPATCH, 4096, 0);
    add(R1_REF, OP_COMBINE, 256, 7168);
    add(R1_FAST, OP_COMBINE, 256, 7168);
    if (!r1_backend_available(R1_CUDA)) return;
    const int64_t gate_tokens[] = {1, 16, 256, 4096, 16384};
    for (int i = 0; i < 5; ++i) add(R1_CUDA, OP_GATE, gate_tokens[i], 0);
    add(R1_CUDA, OP_DISPATCH, 4096, 0);
    add(R1_CUDA, OP_PERMUTE, 4096, 7168);
    add(R1_CUDA, OP_COMBINE, 4096, 7168);
}
