/*
 * bench/bench_mla.c — the MLA decode core (FlashMLA's problem), every backend.
 *
 * CUDA (bf16 q and cache, fp32 accumulation): b = 128, s_k = 4096, h = 128 with
 * s_q = 1 (memory-bound: GB/s) and s_q = 2 (MTP: TFLOP/s); and b in {1, 16,
 * 64} x s_k in {1024, 8192, 32768} x h in {16, 128}, s_q = 1. Every sequence
 * of a batch has length s_k; blocks are shuffled through the block table.
 * CPU: fast and ref on one decode step, b = 1, s_k = 4096, h = 16 (f32).
 *
 * Formulas (n_{b,i} = keys query i of sequence b sees; causal: s_k - s_q + 1 + i):
 *   bytes read    = sum_b s_k_b * 576 * e  (cache rows, each read once per
 *                   sequence: all heads share them)  +  b * s_q * h * 576 * e (q)
 *                   e = 2 (bf16) on cuda, 4 (f32) on the CPU;
 *   bytes written = b * s_q * h * 512 * e  (out; reported as a counter only)
 *   FLOPs         = sum_b sum_i 2 * h * n_{b,i} * (576 + 512)
 *                   (q.K over 576 dims, P.V over 512, one multiply-add = 2)
 * fraction_of_hbm = bytes-read/s over the measured device copy bandwidth
 * (bench.h: read + written bytes of a 512 MiB copy, 2.98 TB/s class on H100);
 * fraction_of_bf16_peak = FLOP/s over 790e12 (measured-class dense bf16).
 * graph_us_per_call: the same call replayed 20 times from a CUDA graph (the
 * event-timed loop also counts the host's work between its two events).
 * Before timing, each configuration's first sequence is checked against ref
 * (relative L2 <= 1e-2 for cuda); a mismatch skips the benchmark.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/mla.h"

#ifdef R1LAB_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define BF16_PEAK_FLOPS 790e12

typedef struct mla_case {
    r1_backend backend;
    int64_t batch, s_k, heads, s_q;
} mla_case;

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform_pm1(uint64_t *state) {
    return (float)((double)(splitmix(state) >> 11) * 0x1p-52 - 1.0);
}

static double flops_of(const mla_case *c) {
    double keys = 0;
    for (int64_t i = 0; i < c->s_q; ++i) keys += (double)(c->s_k - c->s_q + 1 + i);
    return 2.0 * (double)c->batch * (double)c->heads * keys * (576.0 + 512.0);
}
static double bytes_read_of(const mla_case *c, double element) {
    return (double)c->batch * (double)c->s_k * 576.0 * element +
           (double)(c->batch * c->s_q * c->heads) * 576.0 * element;
}

/* A batch of equal-length sequences with shuffled blocks. */
typedef struct decode_inputs {
    r1_mla_decode_desc desc;
    int32_t *table, *lens;
    int64_t num_blocks;
} decode_inputs;

static int make_inputs(decode_inputs *in, const mla_case *c) {
    const int64_t per_seq = (c->s_k + 63) / 64;
    in->num_blocks = c->batch * per_seq;
    in->table = malloc((size_t)in->num_blocks * sizeof(int32_t));
    in->lens = malloc((size_t)c->batch * sizeof(int32_t));
    if (!in->table || !in->lens) return 0;
    uint64_t state = 99;
    for (int64_t k = 0; k < in->num_blocks; ++k) in->table[k] = (int32_t)k;
    for (int64_t k = in->num_blocks - 1; k > 0; --k) {
        int64_t j = (int64_t)(splitmix(&state) % (uint64_t)(k + 1));
        int32_t t = in->table[k];
        in->table[k] = in->table[j];
        in->table[j] = t;
    }
    for (int64_t b = 0; b < c->batch; ++b) in->lens[b] = (int32_t)c->s_k;
    in->desc = (r1_mla_decode_desc){
        .batch = c->batch, .s_q = c->s_q, .n_heads = c->heads, .dim_qk = 576, .dim_v = 512,
        .max_blocks_per_seq = per_seq, .softmax_scale = 0.1352, .causal = 1, .dtype = R1_F32,
        .block_table = in->table, .seq_lens = in->lens};
    return 1;
}

static void report(r1b_state *state, const mla_case *c, double element, double limit) {
    const int64_t iterations = r1b_iterations(state);
    const double read = bytes_read_of(c, element);
    r1b_set_bytes_processed(state, (int64_t)(read * (double)iterations));
    r1b_counter_rate(state, "FLOP/s", flops_of(c) * (double)iterations);
    r1b_counter(state, "bytes_written", (double)(c->batch * c->s_q * c->heads) * 512.0 * element);
    if (limit > 0) r1b_counter_rate(state, "fraction_of_hbm", read * (double)iterations / limit);
    r1b_counter_rate(state, "fraction_of_bf16_peak",
                     flops_of(c) * (double)iterations / BF16_PEAK_FLOPS);
}

static void bench_cpu(r1b_state *state, const void *user) {
    const mla_case *c = user;
    decode_inputs in = {0};
    const int64_t rows = c->batch * c->s_q * c->heads;
    float *q = malloc((size_t)rows * 576 * sizeof(float));
    float *out = malloc((size_t)rows * 512 * sizeof(float)), *lse = malloc((size_t)rows * sizeof(float));
    float *blocks = NULL;
    if (make_inputs(&in, c)) blocks = malloc((size_t)(in.num_blocks * 64 * 576) * sizeof(float));
    if (!q || !out || !lse || !blocks) {
        r1b_skip_with_error(state, "out of memory");
    } else {
        uint64_t s = 7;
        for (int64_t i = 0; i < rows * 576; ++i) q[i] = uniform_pm1(&s);
        for (int64_t i = 0; i < in.num_blocks * 64 * 576; ++i) blocks[i] = uniform_pm1(&s);
        r1_mla_cache cache = {blocks, R1_F32, in.num_blocks, 576};
        if (r1_mla_decode(c->backend, &in.desc, q, &cache, out, lse, NULL, 0, NULL) != R1_OK) {
            r1b_skip_with_error(state, r1_last_error());
        } else {
            for (; r1b_keep_running(state);) {
                r1_mla_decode(c->backend, &in.desc, q, &cache, out, lse, NULL, 0, NULL);
                r1b_do_not_optimize(out);
            }
            report(state, c, 4.0, r1b_host_copy_bandwidth());
        }
    }
    free(q);
    free(out);
    free(lse);
    free(blocks);
    free(in.table);
    free(in.lens);
}

#ifdef R1LAB_HAVE_CUDA
/* The timed call (r1b_time_cuda_calls). */
typedef struct mla_decode_call {
    const r1_mla_decode_desc *desc;
    const void *q;
    const r1_mla_cache *cache;
    void *out;
    float *lse;
    void *workspace;
    size_t workspace_bytes;
    void *stream; /* NULL: the default stream; r1b_cuda_graph_us_per_call sets its own */
} mla_decode_call;

static int run_mla_decode(void *context) {
    const mla_decode_call *c = context;
    return r1_mla_decode(R1_CUDA, c->desc, c->q, c->cache, c->out, c->lse, c->workspace,
                         c->workspace_bytes, c->stream);
}

static void bench_cuda(r1b_state *state, const void *user) {
    const mla_case *c = user;
    decode_inputs in = {0};
    const int64_t rows = c->batch * c->s_q * c->heads;
    r1_status status = make_inputs(&in, c) ? R1_OK : R1_ENOMEM;
    const size_t cache_count = (size_t)(in.num_blocks * 64 * 576), q_count = (size_t)rows * 576;
    uint16_t *host = malloc((cache_count > q_count ? cache_count : q_count) * sizeof(uint16_t));
    void *d_q = NULL, *d_cache = NULL, *d_out = NULL, *d_lse = NULL, *d_table = NULL, *d_lens = NULL;
    void *workspace = NULL;
    if (!host) status = R1_ENOMEM;
    uint64_t s = 7;
    if (status == R1_OK) status = r1_device_alloc(&d_cache, cache_count * 2);
    if (status == R1_OK) {
        for (size_t i = 0; i < cache_count; ++i) host[i] = r1_f32_to_bf16(uniform_pm1(&s));
        status = r1_device_copy(d_cache, host, cache_count * 2, R1_HOST_TO_DEVICE);
    }
    if (status == R1_OK) status = r1_device_alloc(&d_q, q_count * 2);
    if (status == R1_OK) {
        for (size_t i = 0; i < q_count; ++i) host[i] = r1_f32_to_bf16(uniform_pm1(&s));
        status = r1_device_copy(d_q, host, q_count * 2, R1_HOST_TO_DEVICE);
    }
    if (status == R1_OK) status = r1_device_alloc(&d_out, (size_t)rows * 512 * 2);
    if (status == R1_OK) status = r1_device_alloc(&d_lse, (size_t)rows * 4);
    if (status == R1_OK) status = r1_device_alloc(&d_table, (size_t)in.num_blocks * 4);
    if (status == R1_OK) status = r1_device_copy(d_table, in.table, (size_t)in.num_blocks * 4, R1_HOST_TO_DEVICE);
    if (status == R1_OK) status = r1_device_alloc(&d_lens, (size_t)c->batch * 4);
    if (status == R1_OK) status = r1_device_copy(d_lens, in.lens, (size_t)c->batch * 4, R1_HOST_TO_DEVICE);
    in.desc.dtype = R1_BF16;
    in.desc.device_block_table = d_table;
    in.desc.device_seq_lens = d_lens;
    size_t workspace_bytes = r1_mla_decode_workspace_size(R1_CUDA, &in.desc);
    if (status == R1_OK) status = r1_device_alloc(&workspace, workspace_bytes);
    r1_mla_cache cache = {d_cache, R1_BF16, in.num_blocks, 576};
    if (status == R1_OK)
        status = r1_mla_decode(R1_CUDA, &in.desc, d_q, &cache, d_out, d_lse, workspace,
                               workspace_bytes, NULL);
    if (status == R1_OK) status = r1_device_synchronize();
    /* Check sequence 0 against ref (f32 on the same bf16 values). */
    char why[300] = "";
    if (status == R1_OK) {
        const int64_t per_seq = in.desc.max_blocks_per_seq, seq_rows = c->s_q * c->heads;
        float *blocks = malloc((size_t)(in.num_blocks * 64 * 576) * sizeof(float));
        float *q = malloc((size_t)seq_rows * 576 * sizeof(float));
        float *expected = malloc((size_t)seq_rows * 512 * sizeof(float));
        uint16_t *got = malloc((size_t)seq_rows * 512 * 2);
        if (blocks && q && expected && got) {
            r1_device_copy(host, d_cache, cache_count * 2, R1_DEVICE_TO_HOST);
            for (size_t i = 0; i < cache_count; ++i) blocks[i] = r1_bf16_to_f32(host[i]);
            r1_device_copy(host, d_q, (size_t)seq_rows * 576 * 2, R1_DEVICE_TO_HOST);
            for (int64_t i = 0; i < seq_rows * 576; ++i) q[i] = r1_bf16_to_f32(host[i]);
            r1_mla_decode_desc one = in.desc;
            one.batch = 1;
            one.dtype = R1_F32;
            one.max_blocks_per_seq = per_seq;
            r1_mla_cache host_cache = {blocks, R1_F32, in.num_blocks, 576};
            r1_mla_decode(R1_FAST, &one, q, &host_cache, expected, NULL, NULL, 0, NULL);
            r1_device_copy(got, d_out, (size_t)seq_rows * 512 * 2, R1_DEVICE_TO_HOST);
            double num = 0, den = 0;
            for (int64_t i = 0; i < seq_rows * 512; ++i) {
                double e = expected[i], g = r1_bf16_to_f32(got[i]);
                num += (g - e) * (g - e);
                den += e * e;
            }
            double rel = sqrt(num / (den > 0 ? den : 1));
            if (!(rel <= 1e-2)) snprintf(why, sizeof why, "check failed: relative L2 %.3g > 1e-2", rel);
        }
        free(blocks);
        free(q);
        free(expected);
        free(got);
    }
    if (status != R1_OK) {
        snprintf(why, sizeof why, "mla decode failed: %s", r1_last_error());
        r1b_skip_with_error(state, why);
    } else if (why[0]) {
        r1b_skip_with_error(state, why);
    } else {
        mla_decode_call call = {&in.desc, d_q, &cache, d_out, d_lse, workspace, workspace_bytes, NULL};
        if (r1b_time_cuda_calls(state, run_mla_decode, &call) == R1_OK) {
            report(state, c, 2.0, r1b_device_copy_bandwidth());
            /* without the host's share of each timed call (bench.h) */
            const double graph_us = r1b_cuda_graph_us_per_call(run_mla_decode, &call, &call.stream, 20);
            if (graph_us > 0) r1b_counter(state, "graph_us_per_call", graph_us);
        }
    }
    r1_device_free(d_q);
    r1_device_free(d_cache);
    r1_device_free(d_out);
    r1_device_free(d_lse);
    r1_device_free(d_table);
    r1_device_free(d_lens);
    r1_device_free(workspace);
    free(host);
    free(in.table);
    free(in.lens);
}
#endif

static void register_case(r1_backend backend, int64_t batch, int64_t s_k, int64_t heads,
                          int64_t s_q) {
    static mla_case cases[64];
    static int count = 0;
    if (count == 64) return;
    mla_case *c = &cases[count++];
    *c = (mla_case){backend, batch, s_k, heads, s_q};
    char name[160];
    snprintf(name, sizeof name, "mla_decode(backend=%s,b=%lld,s_q=%lld,h=%lld,s_k=%lld)",
             r1_backend_name(backend), (long long)batch, (long long)s_q, (long long)heads,
             (long long)s_k);
#ifdef R1LAB_HAVE_CUDA
    if (backend == R1_CUDA) {
        r1b_register_manual_time(name, bench_cuda, c);
        return;
    }
#endif
    r1b_register(name, bench_cpu, c);
}

void r1b_register_mla(void) {
    register_case(R1_REF, 1, 4096, 16, 1);
    register_case(R1_FAST, 1, 4096, 16, 1);
    if (!r1_backend_available(R1_CUDA)) return;
    register_case(R1_CUDA, 128, 4096, 128, 1);
    register_case(R1_CUDA, 128, 4096, 128, 2);
    static const int64_t batches[] = {1, 16, 64}, lengths[] = {1024, 8192, 32768}, heads[] = {16, 128};
    for (int b = 0; b < 3; ++b)
        for (int k = 0; k < 3; ++k)
            for (int h = 0; h < 2; ++h) register_case(R1_CUDA, batches[b], lengths[k], heads[h], 1);
}
