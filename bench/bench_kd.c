/*
 * bench/bench_kd.c — benchmarks of the kd component (r1lab/kd.h).
 *
 *  kd(N=256,V=152064,bf16,...,backend=ref|fast)   CPU, loss + gradient
 *  kd(N=8192,V=152064,bf16,beta=0|0.5,...,backend=cuda)  loss + gradient
 *      bytes = N V (2 + 2 + 2): read both bf16 logits once, write the bf16
 *      gradient once — the floor (2.5 ms at 2.97 TB/s); reported as
 *      bytes_per_second and fraction_of_hbm (of r1b_device_copy_bandwidth).
 *  kd_linear(N=8192,d=4096,V=128256,bf16,...[,chunk=1024],backend=cuda)
 *      fused-linear forward + backward with the teacher as hidden states
 *      (dt = d), in the backend's chunks and in chunks of 1024 tokens; inputs
 *      random, each tensor its own (the student differs from the teacher):
 *      FLOPs = 8 N d V (student logits, teacher logits, dH, dW: 2 N d V each),
 *      reported as flops (FLOP/s) and fraction_of_bf16_peak (790 TFLOP/s);
 *      extra_memory_MiB = the workspace (chunk logits, teacher logits, G),
 *      fp32_NV_buffer_MiB = one (N, V) f32 buffer for comparison.
 * Every configuration is checked before it is timed: the first rows'
 * summed loss against fast on the host (bf16 bar 1e-2).
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/kd.h"

#ifdef R1LAB_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct kd_case {
    r1_backend backend;
    int64_t tokens, vocab;
    float beta;
    const char *version; /* cuda: R1LAB_KD_VERSION for this case (NULL: default) */
    const char *cluster; /* cuda: R1LAB_KD_CLUSTER for this case (NULL: default) */
} kd_case;

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* bf16 values, roughly normal(0, scale) (sum of 4 uniforms). */
static uint16_t *make_bf16(size_t n, uint64_t seed, double scale) {
    uint16_t *x = malloc(n * 2);
    if (!x) return NULL;
    uint64_t state = seed;
    for (size_t i = 0; i < n; ++i) {
        /* a sum of four uniforms (16 bits each, from one draw): mean 2,
         * variance 1/3 */
        const uint64_t r = splitmix(&state);
        double u = 0;
        for (int k = 0; k < 4; ++k) u += ((double)((r >> (16 * k)) & 0xffff) + 0.5) * 0x1p-16;
        x[i] = r1_f32_to_bf16((float)((u - 2.0) * 1.7320508 * scale));
    }
    return x;
}

static int32_t *make_labels(int64_t n, int64_t vocab) {
    int32_t *labels = malloc((size_t)n * 4);
    uint64_t state = 99;
    for (int64_t t = 0; t < n; ++t)
        labels[t] = t % 16 == 0 ? -100 : (int32_t)(splitmix(&state) % (uint64_t)vocab);
    return labels;
}

static r1_kd_desc make_desc(const kd_case *c) {
    r1_kd_desc desc = r1_kd_desc_default();
    desc.tokens = c->tokens;
    desc.vocab = c->vocab;
    desc.dtype = R1_BF16;
    desc.gamma = 0.5f;
    desc.temperature = 2.0f;
    desc.beta = c->beta;
    return desc;
}

static void bench_cpu(r1b_state *state, const void *user) {
    const kd_case *c = user;
    r1_kd_desc desc = make_desc(c);
    const size_t n = (size_t)(c->tokens * c->vocab);
    uint16_t *s = make_bf16(n, 1, 2.0), *z = make_bf16(n, 2, 2.0), *grad = malloc(n * 2);
    int32_t *labels = make_labels(c->tokens, c->vocab);
    size_t ws_bytes = r1_kd_workspace_size(c->backend, &desc);
    void *ws = malloc(ws_bytes ? ws_bytes : 1);
    float loss;
    r1_kd_inputs in = {s, z, NULL, NULL, labels};
    r1_kd_outputs out = {&loss, NULL, grad};
    char why[512];
    if (!s || !z || !grad || !ws) {
        r1b_skip_with_error(state, "out of memory");
    } else if (r1_kd_loss(c->backend, &desc, &in, &out, ws, ws_bytes, NULL) != R1_OK ||
               !isfinite(loss)) {
        snprintf(why, sizeof why, "kd failed: %s", r1_last_error());
        r1b_skip_with_error(state, why);
    } else {
        for (; r1b_keep_running(state);) {
            r1_kd_loss(c->backend, &desc, &in, &out, ws, ws_bytes, NULL);
            r1b_do_not_optimize(grad);
        }
        int64_t bytes = r1b_iterations(state) * (int64_t)n * 6; /* read s, z; write g (bf16) */
        r1b_set_bytes_processed(state, bytes);
        r1b_set_items_processed(state, r1b_iterations(state) * c->tokens);
        double limit = r1b_host_copy_bandwidth();
        if (limit > 0) r1b_counter_rate(state, "fraction_of_host_copy", (double)bytes / limit);
    }
    free(s);
    free(z);
    free(grad);
    free(labels);
    free(ws);
}

#ifdef R1LAB_HAVE_CUDA
/* Summed loss of the first `rows` tokens by fast on the host. */
static double host_prefix_loss(const r1_kd_desc *full, const uint16_t *s, const uint16_t *z,
                               const int32_t *labels, int64_t rows, r1_status *status) {
    r1_kd_desc desc = *full;
    desc.tokens = rows;
    desc.reduction = R1_KD_SUM;
    float loss = NAN;
    r1_kd_inputs in = {s, z, NULL, NULL, labels};
    r1_kd_outputs out = {&loss, NULL, NULL};
    *status = r1_kd_loss(R1_FAST, &desc, &in, &out, NULL, 0, NULL);
    return loss;
}

/* The cuda cases share one set of inputs (made once: 2.5 GB of random bf16
 * takes seconds on the host); they stay until the process exits. */
static struct {
    int64_t tokens, vocab;
    uint16_t *s, *z;
    int32_t *labels;
    void *ds, *dz, *dl;
} cuda_inputs;

static r1_status shared_cuda_inputs(const kd_case *c) {
    if (cuda_inputs.s && cuda_inputs.tokens == c->tokens && cuda_inputs.vocab == c->vocab)
        return R1_OK;
    if (cuda_inputs.s) return r1_fail(R1_EINVAL, "bench_kd: one input shape per process");
    const size_t n = (size_t)(c->tokens * c->vocab);
    uint16_t *s = make_bf16(n, 1, 2.0), *z = make_bf16(n, 2, 2.0);
    int32_t *labels = make_labels(c->tokens, c->vocab);
    void *ds = NULL, *dz = NULL, *dl = NULL;
    r1_status st = (s && z && labels) ? R1_OK : R1_ENOMEM;
    if (st == R1_OK) st = r1_device_alloc(&ds, n * 2);
    if (st == R1_OK) st = r1_device_alloc(&dz, n * 2);
    if (st == R1_OK) st = r1_device_alloc(&dl, (size_t)c->tokens * 4);
    if (st == R1_OK) st = r1_device_copy(ds, s, n * 2, R1_HOST_TO_DEVICE);
    if (st == R1_OK) st = r1_device_copy(dz, z, n * 2, R1_HOST_TO_DEVICE);
    if (st == R1_OK) st = r1_device_copy(dl, labels, (size_t)c->tokens * 4, R1_HOST_TO_DEVICE);
    if (st != R1_OK) {
        free(s);
        free(z);
        free(labels);
        r1_device_free(ds);
        r1_device_free(dz);
        r1_device_free(dl);
        return st;
    }
    cuda_inputs.tokens = c->tokens;
    cuda_inputs.vocab = c->vocab;
    cuda_inputs.s = s;
    cuda_inputs.z = z;
    cuda_inputs.labels = labels;
    cuda_inputs.ds = ds;
    cuda_inputs.dz = dz;
    cuda_inputs.dl = dl;
    return R1_OK;
}

/* The timed calls (r1b_time_cuda_calls). */
typedef struct kd_loss_call {
    const r1_kd_desc *desc;
    const r1_kd_inputs *in;
    const r1_kd_outputs *out;
    void *workspace;
    size_t workspace_bytes;
} kd_loss_call;

static int run_kd_loss(void *context) {
    const kd_loss_call *c = context;
    return r1_kd_loss(R1_CUDA, c->desc, c->in, c->out, c->workspace, c->workspace_bytes, NULL);
}

typedef struct kd_linear_call {
    const r1_kd_linear_desc *desc;
    const r1_kd_linear_inputs *in;
    const r1_kd_linear_outputs *out;
    void *workspace;
    size_t workspace_bytes;
} kd_linear_call;

static int run_kd_linear(void *context) {
    const kd_linear_call *c = context;
    return r1_kd_linear(R1_CUDA, c->desc, c->in, c->out, c->workspace, c->workspace_bytes, NULL);
}

static void set_or_unset(const char *name, const char *value) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}

static void bench_cuda(r1b_state *state, const void *user) {
    const kd_case *c = user;
    r1_kd_desc desc = make_desc(c);
    desc.asynchronous = 1; /* no host round trip inside the timed region */
    set_or_unset("R1LAB_KD_VERSION", c->version);
    set_or_unset("R1LAB_KD_CLUSTER", c->cluster);
    const size_t n = (size_t)(c->tokens * c->vocab);
    r1_status st = shared_cuda_inputs(c);
    uint16_t *s = cuda_inputs.s, *z = cuda_inputs.z;
    int32_t *labels = cuda_inputs.labels;
    void *ds = cuda_inputs.ds, *dz = cuda_inputs.dz, *dl = cuda_inputs.dl;
    size_t ws_bytes = r1_kd_workspace_size(R1_CUDA, &desc);
    void *dg = NULL, *dloss = NULL, *ws = NULL;
    if (st == R1_OK) st = r1_device_alloc(&dg, n * 2);
    if (st == R1_OK) st = r1_device_alloc(&dloss, 4);
    if (st == R1_OK) st = r1_device_alloc(&ws, ws_bytes ? ws_bytes : 1);
    char why[512] = "";
    if (st == R1_OK) {
        /* check: the first 4 rows (synchronous call) against fast on the host */
        r1_kd_desc head = desc;
        head.tokens = 4;
        head.reduction = R1_KD_SUM;
        head.asynchronous = 0;
        float got = NAN;
        r1_kd_inputs in = {ds, dz, NULL, NULL, dl};
        r1_kd_outputs out = {dloss, NULL, dg};
        st = r1_kd_loss(R1_CUDA, &head, &in, &out, ws, ws_bytes, NULL);
        if (st == R1_OK) st = r1_device_copy(&got, dloss, 4, R1_DEVICE_TO_HOST);
        r1_status hs;
        double expected = host_prefix_loss(&desc, s, z, labels, 4, &hs);
        if (st != R1_OK || hs != R1_OK || !(fabs(got - expected) <= 1e-2 * fabs(expected)))
            snprintf(why, sizeof why, "check failed: cuda %g vs fast %g (%s)", (double)got,
                     expected, r1_last_error());
    } else {
        snprintf(why, sizeof why, "setup failed: %s", r1_last_error());
    }
    if (why[0]) {
        r1b_skip_with_error(state, why);
    } else {
        r1_kd_inputs in = {ds, dz, NULL, NULL, dl};
        r1_kd_outputs out = {dloss, NULL, dg};
        kd_loss_call call = {&desc, &in, &out, ws, ws_bytes};
        if (r1b_time_cuda_calls(state, run_kd_loss, &call) == R1_OK) {
            /* bytes: read s and z (bf16) once, write the bf16 gradient once */
            int64_t bytes = r1b_iterations(state) * (int64_t)n * 6;
            r1b_set_bytes_processed(state, bytes);
            r1b_set_items_processed(state, r1b_iterations(state) * c->tokens);
            double limit = r1b_device_copy_bandwidth();
            if (limit > 0) r1b_counter_rate(state, "fraction_of_hbm", (double)bytes / limit);
        }
    }
    r1_device_free(dg);
    r1_device_free(dloss);
    r1_device_free(ws);
    unsetenv("R1LAB_KD_VERSION");
    unsetenv("R1LAB_KD_CLUSTER");
}

typedef struct linear_case {
    int64_t tokens, hidden, vocab;
    int64_t chunk_tokens; /* 0: the backend's choice */
} linear_case;

static void bench_cuda_linear(r1b_state *state, const void *user) {
    const linear_case *c = user;
    const int64_t N = c->tokens, d = c->hidden, V = c->vocab;
    r1_kd_linear_desc desc = {0};
    desc.kd = r1_kd_desc_default();
    desc.kd.tokens = N;
    desc.kd.vocab = V;
    desc.kd.dtype = R1_BF16;
    desc.kd.beta = 0.5f;
    desc.kd.temperature = 1.0f;
    desc.kd.asynchronous = 1;
    desc.hidden = d;
    desc.teacher_hidden = d;
    desc.chunk_tokens = c->chunk_tokens;
    size_t ws_bytes = r1_kd_linear_workspace_size(R1_CUDA, &desc);
    void *h = NULL, *W = NULL, *ht = NULL, *Wt = NULL, *dh = NULL, *dW = NULL, *loss = NULL, *ws = NULL;
    r1_status st = r1_device_alloc(&h, (size_t)(N * d) * 2);
    if (st == R1_OK) st = r1_device_alloc(&W, (size_t)(V * d) * 2);
    if (st == R1_OK) st = r1_device_alloc(&ht, (size_t)(N * d) * 2);
    if (st == R1_OK) st = r1_device_alloc(&Wt, (size_t)(V * d) * 2);
    if (st == R1_OK) st = r1_device_alloc(&dh, (size_t)(N * d) * 4);
    if (st == R1_OK) st = r1_device_alloc(&dW, (size_t)(V * d) * 4);
    if (st == R1_OK) st = r1_device_alloc(&loss, 4);
    if (st == R1_OK) st = r1_device_alloc(&ws, ws_bytes);
    /* inputs: bf16 random (as the Liger run: N(0, 0.05^2)-like, each tensor
     * its own), made and uploaded a slice at a time; no two slices alike, so
     * the teacher differs from the student and the gradient is not zero */
    const size_t slice = (size_t)1 << 24;
    void *tensors[4] = {h, W, ht, Wt};
    size_t counts[4] = {(size_t)(N * d), (size_t)(V * d), (size_t)(N * d), (size_t)(V * d)};
    for (int i = 0; i < 4 && st == R1_OK; ++i)
        for (size_t o = 0; o < counts[i] && st == R1_OK; o += slice) {
            size_t m = counts[i] - o < slice ? counts[i] - o : slice;
            uint16_t *host = make_bf16(m, 1000 * (uint64_t)(i + 1) + o / slice, 0.05);
            if (!host) st = R1_ENOMEM;
            else st = r1_device_copy((char *)tensors[i] + o * 2, host, m * 2, R1_HOST_TO_DEVICE);
            free(host);
        }
    r1_kd_linear_inputs in = {h, W, ht, Wt, NULL, NULL, NULL, NULL};
    r1_kd_linear_outputs out = {loss, NULL, dh, dW};
    float first = NAN;
    if (st == R1_OK) st = r1_kd_linear(R1_CUDA, &desc, &in, &out, ws, ws_bytes, NULL);
    if (st == R1_OK) st = r1_device_copy(&first, loss, 4, R1_DEVICE_TO_HOST);
    if (st != R1_OK || !isfinite(first)) {
        char why[512];
        snprintf(why, sizeof why, "kd_linear failed: %s (loss %g)", r1_last_error(), (double)first);
        r1b_skip_with_error(state, why);
    } else {
        kd_linear_call call = {&desc, &in, &out, ws, ws_bytes};
        if (r1b_time_cuda_calls(state, run_kd_linear, &call) == R1_OK) {
            /* FLOPs: 8 N d V (four GEMMs of 2 N d V each) */
            double flops = 8.0 * (double)N * (double)d * (double)V * (double)r1b_iterations(state);
            r1b_counter_rate(state, "flops", flops);
            r1b_counter_rate(state, "fraction_of_bf16_peak", flops / 790e12);
            r1b_counter(state, "extra_memory_MiB", (double)ws_bytes / (1 << 20));
            r1b_counter(state, "fp32_NV_buffer_MiB", (double)N * (double)V * 4 / (1 << 20));
        }
    }
    void *all[8] = {h, W, ht, Wt, dh, dW, loss, ws};
    for (int i = 0; i < 8; ++i) r1_device_free(all[i]);
}
#endif

void r1b_register_kd(void) {
    static const kd_case cpu[] = {
        {R1_REF, 256, 152064, 0.0f, NULL, NULL},
        {R1_FAST, 256, 152064, 0.0f, NULL, NULL},
        {R1_FAST, 256, 152064, 0.5f, NULL, NULL},
    };
    char name[256];
    for (size_t i = 0; i < sizeof cpu / sizeof cpu[0]; ++i) {
        snprintf(name, sizeof name, "kd(N=%lld,V=%lld,bf16,T=2,gamma=0.5,beta=%g,backend=%s)",
                 (long long)cpu[i].tokens, (long long)cpu[i].vocab, (double)cpu[i].beta,
                 r1_backend_name(cpu[i].backend));
        r1b_register(name, bench_cpu, &cpu[i]);
    }
#ifdef R1LAB_HAVE_CUDA
    static const kd_case gpu[] = {
        /* the default kernel (v3, cluster 12), then earlier versions and
         * other cluster sizes for comparison */
        {R1_CUDA, 8192, 152064, 0.0f, NULL, NULL},
        {R1_CUDA, 8192, 152064, 0.5f, NULL, NULL},
        {R1_CUDA, 8192, 152064, 1.0f, NULL, NULL},
        {R1_CUDA, 8192, 152064, 0.0f, "1", NULL},
        {R1_CUDA, 8192, 152064, 0.5f, "1", NULL},
        {R1_CUDA, 8192, 152064, 0.0f, "2", NULL},
        {R1_CUDA, 8192, 152064, 0.0f, NULL, "8"},
        {R1_CUDA, 8192, 152064, 0.0f, NULL, "16"},
        {R1_CUDA, 8192, 152064, 0.5f, NULL, "16"},
    };
    for (size_t i = 0; i < sizeof gpu / sizeof gpu[0]; ++i) {
        char variant[64] = "";
        if (gpu[i].version) snprintf(variant, sizeof variant, ",version=%s", gpu[i].version);
        if (gpu[i].cluster) snprintf(variant, sizeof variant, ",cluster=%s", gpu[i].cluster);
        snprintf(name, sizeof name, "kd(N=%lld,V=%lld,bf16,T=2,gamma=0.5,beta=%g,backend=cuda%s)",
                 (long long)gpu[i].tokens, (long long)gpu[i].vocab, (double)gpu[i].beta, variant);
        r1b_register_manual_time(name, bench_cuda, &gpu[i]);
    }
    /* the backend's chunks, and chunks of 1024 tokens (half the memory) */
    static const linear_case linear[] = {{8192, 4096, 128256, 0}, {8192, 4096, 128256, 1024}};
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; ++i) {
        char chunk[32] = "";
        if (linear[i].chunk_tokens > 0)
            snprintf(chunk, sizeof chunk, ",chunk=%lld", (long long)linear[i].chunk_tokens);
        snprintf(name, sizeof name,
                 "kd_linear(N=%lld,d=%lld,V=%lld,bf16,beta=0.5,teacher=hidden%s,backend=cuda)",
                 (long long)linear[i].tokens, (long long)linear[i].hidden,
                 (long long)linear[i].vocab, chunk);
        r1b_register_manual_time(name, bench_cuda_linear, &linear[i]);
    }
#endif
}
