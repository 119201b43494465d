/*
 * tests/check_mla.c — the mla checks behind test_mla, test_mla_cuda and
 * `r1lab check`: golden files (transformers' DeepseekV3Attention and a torch
 * decode core, golden/gen/mla.py), and randomized agreement with ref. Bars
 * and their reasons are in check_mla.h.
 */
#include "check_mla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "random.h"
#include "r1lab/safetensors.h"

const char *const mla_decode_golden_names[] = {"decode_h16_sq1_mixed", "decode_h128_sq2_causal",
                                               NULL};
const char *const mla_layer_golden_names[] = {
    "layer_rotate_half_qlora", "layer_interleaved_qlora_yarn", "layer_interleaved_noqlora",
    "layer_rotate_half_noqlora_yarn", NULL};

static float round_bf16(float value) { return r1_bf16_to_f32(r1_f32_to_bf16(value)); }

/* ---- the test cache ------------------------------------------------------------- */

int mla_test_cache_make(mla_test_cache *c, int64_t batch, const int32_t *lengths, int64_t dim,
                        int64_t extra_blocks, uint64_t seed) {
    memset(c, 0, sizeof *c);
    r1t_rng rng = r1t_rng_make(seed);
    int64_t used = 0, widest = 1;
    for (int64_t b = 0; b < batch; ++b) {
        int64_t blocks = (lengths[b] + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
        used += blocks;
        if (blocks > widest) widest = blocks;
    }
    c->batch = batch;
    c->dim = dim;
    c->num_blocks = used + extra_blocks;
    if (c->num_blocks == 0) c->num_blocks = 1;
    c->max_blocks_per_seq = widest;
    c->blocks = malloc((size_t)(c->num_blocks * R1_MLA_BLOCK_SIZE * dim) * sizeof(float));
    c->block_table = malloc((size_t)(batch * widest) * sizeof(int32_t));
    c->lengths = malloc((size_t)batch * sizeof(int32_t));
    int64_t *order = malloc((size_t)c->num_blocks * sizeof(int64_t));
    if (!c->blocks || !c->block_table || !c->lengths || !order) {
        free(order);
        mla_test_cache_free(c);
        return 0;
    }
    for (int64_t i = 0; i < c->num_blocks * R1_MLA_BLOCK_SIZE * dim; ++i) c->blocks[i] = NAN;
    /* A random permutation of the physical blocks (Fisher-Yates). */
    for (int64_t i = 0; i < c->num_blocks; ++i) order[i] = i;
    for (int64_t i = c->num_blocks - 1; i > 0; --i) {
        int64_t j = r1t_rng_range(&rng, 0, i), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int64_t i = 0; i < batch * widest; ++i) c->block_table[i] = -1;
    int64_t next = 0;
    for (int64_t b = 0; b < batch; ++b) {
        c->lengths[b] = lengths[b];
        int64_t blocks = (lengths[b] + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
        for (int64_t k = 0; k < blocks; ++k) c->block_table[b * widest + k] = (int32_t)order[next++];
        for (int64_t t = 0; t < lengths[b]; ++t) {
            int64_t block = c->block_table[b * widest + t / R1_MLA_BLOCK_SIZE];
            float *row = c->blocks + (block * R1_MLA_BLOCK_SIZE + t % R1_MLA_BLOCK_SIZE) * dim;
            for (int64_t k = 0; k < dim; ++k) row[k] = round_bf16((float)r1t_rng_normal(&rng));
        }
    }
    free(order);
    return 1;
}

void mla_test_cache_free(mla_test_cache *c) {
    free(c->blocks);
    free(c->block_table);
    free(c->lengths);
    memset(c, 0, sizeof *c);
}

/* ---- running the decode core from host buffers ------------------------------------ */

static uint16_t *to_bf16_array(const float *values, size_t count) {
    uint16_t *bits = malloc((count ? count : 1) * sizeof(uint16_t));
    if (bits)
        for (size_t i = 0; i < count; ++i) bits[i] = r1_f32_to_bf16(values[i]);
    return bits;
}

r1_status mla_decode_on_host(r1_backend backend, const r1_mla_decode_desc *desc, const float *q,
                             const float *blocks, int64_t num_blocks, float *out, float *lse) {
    const size_t rows = (size_t)(desc->batch * desc->s_q * desc->n_heads);
    for (size_t i = 0; i < rows * (size_t)desc->dim_v; ++i) out[i] = NAN;
    if (lse)
        for (size_t i = 0; i < rows; ++i) lse[i] = NAN;
    if (backend != R1_CUDA) {
        r1_mla_cache cache = {(void *)blocks, R1_F32, num_blocks, desc->dim_qk};
        return r1_mla_decode(backend, desc, q, &cache, out, lse, NULL, 0, NULL);
    }
    r1_mla_decode_desc d = *desc;
    d.dtype = R1_BF16;
    const size_t cache_count = (size_t)(num_blocks * R1_MLA_BLOCK_SIZE * desc->dim_qk);
    const size_t q_count = rows * (size_t)desc->dim_qk, out_count = rows * (size_t)desc->dim_v;
    uint16_t *q16 = to_bf16_array(q, q_count), *cache16 = to_bf16_array(blocks, cache_count);
    uint16_t *out16 = malloc(out_count * sizeof(uint16_t));
    void *dq = NULL, *dcache = NULL, *dout = NULL, *dlse = NULL;
    r1_status status = (q16 && cache16 && out16) ? R1_OK : R1_ENOMEM;
    if (status == R1_OK) status = r1_device_alloc(&dq, q_count * 2);
    if (status == R1_OK) status = r1_device_alloc(&dcache, cache_count * 2);
    if (status == R1_OK) status = r1_device_alloc(&dout, out_count * 2);
    if (status == R1_OK && lse) status = r1_device_alloc(&dlse, rows * 4);
    if (status == R1_OK) status = r1_device_copy(dq, q16, q_count * 2, R1_HOST_TO_DEVICE);
    if (status == R1_OK) status = r1_device_copy(dcache, cache16, cache_count * 2, R1_HOST_TO_DEVICE);
    /* Poison: 0xFF bytes are bf16 / f32 NaNs, so an unwritten output shows. */
    if (status == R1_OK) status = r1_device_fill(dout, 0xFF, out_count * 2);
    if (status == R1_OK && dlse) status = r1_device_fill(dlse, 0xFF, rows * 4);
    if (status == R1_OK) {
        r1_mla_cache cache = {dcache, R1_BF16, num_blocks, desc->dim_qk};
        status = r1_mla_decode(R1_CUDA, &d, dq, &cache, dout, dlse, NULL, 0, NULL);
        if (status == R1_OK) status = r1_device_synchronize();
    }
    if (status == R1_OK) status = r1_device_copy(out16, dout, out_count * 2, R1_DEVICE_TO_HOST);
    if (status == R1_OK && lse) status = r1_device_copy(lse, dlse, rows * 4, R1_DEVICE_TO_HOST);
    if (status == R1_OK)
        for (size_t i = 0; i < out_count; ++i) out[i] = r1_bf16_to_f32(out16[i]);
    r1_device_free(dq);
    r1_device_free(dcache);
    r1_device_free(dout);
    r1_device_free(dlse);
    free(q16);
    free(cache16);
    free(out16);
    return status;
}

static double out_bar(r1_backend backend) {
    return backend == R1_CUDA ? MLA_BF16_OUT_BAR : MLA_FP32_BAR;
}
static double lse_bar(r1_backend backend) {
    return backend == R1_CUDA ? MLA_BF16_LSE_BAR : MLA_FP32_BAR;
}

/* Compares out and lse, records both in the summary, returns 1 when both pass. */
static int compare_decode(const char *label, r1_backend backend, const float *out,
                          const float *expected_out, size_t out_count, const float *lse,
                          const float *expected_lse, size_t rows, check_summary *summary) {
    char what[320];
    snprintf(what, sizeof what, "%s out", label);
    r1t_comparison a = r1t_compare_f32(what, out, expected_out, out_count, out_bar(backend));
    check_note_error(summary, what, a.nonfinite_mismatch ? INFINITY : a.relative_l2,
                     out_bar(backend));
    snprintf(what, sizeof what, "%s lse", label);
    r1t_comparison b = r1t_compare_f32(what, lse, expected_lse, rows, lse_bar(backend));
    check_note_error(summary, what, b.nonfinite_mismatch ? INFINITY : b.relative_l2,
                     lse_bar(backend));
    if (!a.ok || !b.ok || summary->verbose)
        printf("  %s [%s]: out rel L2 %.3g (bar %.0e), lse rel L2 %.3g (bar %.0e)%s\n", label,
               r1_backend_name(backend), a.relative_l2, out_bar(backend), b.relative_l2,
               lse_bar(backend), a.ok && b.ok ? "" : "  FAILED");
    return a.ok && b.ok;
}

/* ---- golden files ---------------------------------------------------------------------- */

static double metadata_number(const r1_safetensors *file, const char *key, double fallback) {
    const char *value = r1_safetensors_metadata(file, key);
    return value ? strtod(value, NULL) : fallback;
}

static r1_safetensors *open_golden(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/mla/%s.safetensors", check_golden_dir(), name);
    r1_safetensors *file = NULL;
    if (r1_safetensors_open(path, &file) != R1_OK) {
        printf("  golden %s: %s (regenerate: python3 golden/gen/mla.py)\n",
               name, r1_last_error());
        return NULL;
    }
    return file;
}

int mla_check_decode_golden(r1_backend backend, const char *name, check_summary *summary) {
    r1_safetensors *file = open_golden(name);
    summary->cases_total += 1;
    if (!file) return 0;
    const int64_t B = (int64_t)metadata_number(file, "batch", 0);
    const int64_t S = (int64_t)metadata_number(file, "s_q", 0);
    const int64_t H = (int64_t)metadata_number(file, "n_heads", 0);
    const int64_t D = (int64_t)metadata_number(file, "dim_qk", 0);
    const int64_t Dv = (int64_t)metadata_number(file, "dim_v", 0);
    const int64_t N = (int64_t)metadata_number(file, "num_blocks", 0);
    const int64_t M = (int64_t)metadata_number(file, "max_blocks_per_seq", 0);
    const void *q16 = NULL, *blocks16 = NULL, *table = NULL, *lens = NULL, *out = NULL, *lse = NULL;
    int ok = B > 0 && S > 0 && H > 0 && D > 0 && Dv > 0 && N > 0 && M > 0;
    ok = ok && r1_safetensors_expect(file, "q", R1_BF16, B * S * H * D, &q16) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "blocks", R1_BF16, N * 64 * D, &blocks16) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "block_table", R1_I32, B * M, &table) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "seq_lens", R1_I32, B, &lens) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "out", R1_F32, B * S * H * Dv, &out) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "lse", R1_F32, B * S * H, &lse) == R1_OK;
    if (!ok) {
        printf("  golden %s: unexpected format: %s\n", name, r1_last_error());
        r1_safetensors_close(file);
        return 0;
    }
    /* Copy into a cache with two more blocks, all unused rows NaN: the
     * golden's rows past each length are real numbers, so blank them here. */
    const int64_t extra = 2, total_blocks = N + extra;
    float *blocks = malloc((size_t)(total_blocks * 64 * D) * sizeof(float));
    float *q = malloc((size_t)(B * S * H * D) * sizeof(float));
    float *got = malloc((size_t)(B * S * H * Dv) * sizeof(float));
    float *got_lse = malloc((size_t)(B * S * H) * sizeof(float));
    const uint16_t *qb = q16, *kb = blocks16;
    const int32_t *tab = table, *seq = lens;
    for (int64_t i = 0; i < total_blocks * 64 * D; ++i) blocks[i] = NAN;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < seq[b]; ++t) {
            int64_t row = (int64_t)tab[b * M + t / 64] * 64 + t % 64;
            for (int64_t k = 0; k < D; ++k) blocks[row * D + k] = r1_bf16_to_f32(kb[row * D + k]);
        }
    for (int64_t i = 0; i < B * S * H * D; ++i) q[i] = r1_bf16_to_f32(qb[i]);
    r1_mla_decode_desc desc = {
        .batch = B, .s_q = S, .n_heads = H, .dim_qk = D, .dim_v = Dv, .max_blocks_per_seq = M,
        .softmax_scale = metadata_number(file, "softmax_scale", 0),
        .causal = (int32_t)metadata_number(file, "causal", 1), .dtype = R1_F32,
        .block_table = tab, .seq_lens = seq,
    };
    double start = check_now();
    r1_status status = mla_decode_on_host(backend, &desc, q, blocks, total_blocks, got, got_lse);
    summary->seconds += check_now() - start;
    int passed = 0;
    if (status != R1_OK) {
        printf("  golden %s [%s]: %s: %s\n", name, r1_backend_name(backend),
               r1_status_str(status), r1_last_error());
        check_note_error(summary, name, INFINITY, 1);
    } else {
        char label[256];
        snprintf(label, sizeof label, "golden %s", name);
        passed = compare_decode(label, backend, got, out, (size_t)(B * S * H * Dv), got_lse, lse,
                                (size_t)(B * S * H), summary);
        summary->rows += B * S * H;
    }
    summary->cases_passed += passed;
    free(blocks);
    free(q);
    free(got);
    free(got_lse);
    r1_safetensors_close(file);
    return passed;
}

static r1_mla_config config_from(const r1_safetensors *file) {
    r1_mla_config c = {0};
    c.d = (int64_t)metadata_number(file, "d", 0);
    c.n_heads = (int64_t)metadata_number(file, "n_heads", 0);
    c.q_lora_rank = (int64_t)metadata_number(file, "q_lora_rank", 0);
    c.kv_lora_rank = (int64_t)metadata_number(file, "kv_lora_rank", 0);
    c.qk_nope_head_dim = (int64_t)metadata_number(file, "qk_nope_head_dim", 0);
    c.qk_rope_head_dim = (int64_t)metadata_number(file, "qk_rope_head_dim", 0);
    c.v_head_dim = (int64_t)metadata_number(file, "v_head_dim", 0);
    c.rope_theta = metadata_number(file, "rope_theta", 10000);
    const char *layout = r1_safetensors_metadata(file, "rope_layout");
    c.rope_layout = layout && strcmp(layout, "rotate_half") == 0 ? R1_MLA_ROPE_ROTATE_HALF
                                                                 : R1_MLA_ROPE_INTERLEAVED;
    c.rms_eps = metadata_number(file, "rms_eps", 1e-6);
    c.yarn = (int32_t)metadata_number(file, "yarn", 0);
    c.rope_factor = metadata_number(file, "rope_factor", 1);
    c.original_seq_len = (int64_t)metadata_number(file, "original_seq_len", 0);
    c.beta_fast = metadata_number(file, "beta_fast", 32);
    c.beta_slow = metadata_number(file, "beta_slow", 1);
    c.mscale = metadata_number(file, "mscale", 1);
    c.mscale_all_dim = metadata_number(file, "mscale_all_dim", 1);
    return c;
}

int mla_check_layer_golden(r1_backend backend, r1_mla_form form, const char *name,
                           check_summary *summary) {
    r1_safetensors *file = open_golden(name);
    summary->cases_total += 1;
    if (!file) return 0;
    r1_mla_config c = config_from(file);
    const int64_t B = (int64_t)metadata_number(file, "batch", 0);
    const int64_t T0 = (int64_t)metadata_number(file, "t_prefill", 0);
    const int64_t T1 = (int64_t)metadata_number(file, "t_decode", 0), T = T0 + T1;
    const int64_t H = c.n_heads, d = c.d, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, qr = c.q_lora_rank;
    r1_mla_weights w = {0};
    const void *x = NULL, *expected = NULL;
    int ok = B > 0 && T0 > 0 && T <= 64;
    ok = ok && r1_safetensors_expect(file, "x", R1_F32, B * T * d, &x) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "out", R1_F32, B * T * d, &expected) == R1_OK;
    if (qr == 0) {
        ok = ok && r1_safetensors_expect(file, "wq", R1_F32, H * (dn + dr) * d, (const void **)&w.wq) == R1_OK;
    } else {
        ok = ok && r1_safetensors_expect(file, "wq_a", R1_F32, qr * d, (const void **)&w.wq_a) == R1_OK;
        ok = ok && r1_safetensors_expect(file, "q_norm", R1_F32, qr, (const void **)&w.q_norm) == R1_OK;
        ok = ok && r1_safetensors_expect(file, "wq_b", R1_F32, H * (dn + dr) * qr, (const void **)&w.wq_b) == R1_OK;
    }
    ok = ok && r1_safetensors_expect(file, "wkv_a", R1_F32, (r + dr) * d, (const void **)&w.wkv_a) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "kv_norm", R1_F32, r, (const void **)&w.kv_norm) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "wkv_b", R1_F32, H * (dn + dv) * r, (const void **)&w.wkv_b) == R1_OK;
    ok = ok && r1_safetensors_expect(file, "wo", R1_F32, d * H * dv, (const void **)&w.wo) == R1_OK;
    if (!ok) {
        printf("  golden %s: unexpected format: %s\n", name, r1_last_error());
        r1_safetensors_close(file);
        return 0;
    }
    /* One block per sequence (T <= 64), placed backwards, plus 2 unused, all NaN. */
    const int64_t num_blocks = B + 2, dim = r + dr;
    float *blocks = malloc((size_t)(num_blocks * 64 * dim) * sizeof(float));
    int32_t *table = malloc((size_t)B * sizeof(int32_t)), *start = malloc((size_t)B * sizeof(int32_t));
    float *got = malloc((size_t)(B * T * d) * sizeof(float)), *step_x = malloc((size_t)(B * T * d) * sizeof(float));
    float *step_out = malloc((size_t)(B * T * d) * sizeof(float));
    for (int64_t i = 0; i < num_blocks * 64 * dim; ++i) blocks[i] = NAN;
    for (int64_t b = 0; b < B; ++b) table[b] = (int32_t)(num_blocks - 1 - b);
    r1_mla_cache cache = {blocks, R1_F32, num_blocks, dim};
    r1_mla_forward_desc desc = {.config = c, .form = form, .batch = B, .start_pos = start,
                                .block_table = table, .max_blocks_per_seq = 1};
    r1_status status = R1_OK;
    double t_begin = check_now();
    /* Prefill T0 tokens, then T1 one-token decode steps. */
    for (int64_t done = 0; done < T && status == R1_OK;) {
        const int64_t n = done == 0 ? T0 : 1;
        for (int64_t b = 0; b < B; ++b) {
            start[b] = (int32_t)done;
            memcpy(step_x + b * n * d, (const float *)x + (b * T + done) * d, (size_t)(n * d) * sizeof(float));
        }
        desc.s_new = n;
        status = r1_mla_forward(backend, &desc, &w, step_x, &cache, step_out, NULL, 0);
        for (int64_t b = 0; b < B; ++b)
            memcpy(got + (b * T + done) * d, step_out + b * n * d, (size_t)(n * d) * sizeof(float));
        done += n;
    }
    summary->seconds += check_now() - t_begin;
    int passed = 0;
    char label[256];
    snprintf(label, sizeof label, "golden %s %s", name, form == R1_MLA_NAIVE ? "naive" : "absorbed");
    if (status != R1_OK) {
        printf("  %s [%s]: %s: %s\n", label, r1_backend_name(backend), r1_status_str(status),
               r1_last_error());
        check_note_error(summary, label, INFINITY, 1);
    } else {
        r1t_comparison cmp = r1t_compare_f32(label, got, expected, (size_t)(B * T * d), MLA_FP32_BAR);
        check_note_error(summary, label, cmp.nonfinite_mismatch ? INFINITY : cmp.relative_l2, MLA_FP32_BAR);
        passed = cmp.ok;
        if (!cmp.ok || summary->verbose)
            printf("  %s [%s]: rel L2 %.3g (bar %.0e)%s\n", label, r1_backend_name(backend),
                   cmp.relative_l2, MLA_FP32_BAR, cmp.ok ? "" : "  FAILED");
        summary->rows += B * T;
    }
    summary->cases_passed += passed;
    free(blocks);
    free(table);
    free(start);
    free(got);
    free(step_x);
    free(step_out);
    r1_safetensors_close(file);
    return passed;
}

/* ---- randomized agreement ---------------------------------------------------------------- */

int mla_check_decode_agreement(r1_backend backend, uint64_t seed, int64_t H, int64_t S,
                               const int32_t *lengths, int64_t B, check_summary *summary) {
    const int64_t D = 576, Dv = 512;
    mla_test_cache cache;
    summary->cases_total += 1;
    if (!mla_test_cache_make(&cache, B, lengths, D, 3, seed)) return 0;
    r1t_rng rng = r1t_rng_make(seed ^ 0x51ED270B27u);
    const size_t rows = (size_t)(B * S * H);
    float *q = malloc(rows * (size_t)D * sizeof(float));
    float *out = malloc(rows * (size_t)Dv * sizeof(float)), *lse = malloc(rows * sizeof(float));
    float *ref_out = malloc(rows * (size_t)Dv * sizeof(float)), *ref_lse = malloc(rows * sizeof(float));
    int passed = 0;
    if (q && out && lse && ref_out && ref_lse) {
        for (size_t i = 0; i < rows * (size_t)D; ++i) q[i] = round_bf16((float)r1t_rng_normal(&rng));
        r1_mla_decode_desc desc = {
            .batch = B, .s_q = S, .n_heads = H, .dim_qk = D, .dim_v = Dv,
            .max_blocks_per_seq = cache.max_blocks_per_seq,
            .softmax_scale = 0.1352, .causal = 1, .dtype = R1_F32,
            .block_table = cache.block_table, .seq_lens = cache.lengths,
        };
        char label[512];
        int at = snprintf(label, sizeof label, "mla(b=%lld,s_q=%lld,h=%lld,seed=%llu,s_k=",
                          (long long)B, (long long)S, (long long)H, (unsigned long long)seed);
        for (int64_t b = 0; b < B && at < 400; ++b)
            at += snprintf(label + at, sizeof label - (size_t)at, "%s%d", b ? "/" : "", lengths[b]);
        snprintf(label + at, sizeof label - (size_t)at, ")");
        r1_status s1 = mla_decode_on_host(R1_REF, &desc, q, cache.blocks, cache.num_blocks,
                                          ref_out, ref_lse);
        double start = check_now();
        r1_status s2 = mla_decode_on_host(backend, &desc, q, cache.blocks, cache.num_blocks, out, lse);
        summary->seconds += check_now() - start;
        if (s1 != R1_OK || s2 != R1_OK) {
            printf("  %s [%s]: %s: %s\n", label, r1_backend_name(backend),
                   r1_status_str(s1 != R1_OK ? s1 : s2), r1_last_error());
            check_note_error(summary, label, INFINITY, 1);
        } else {
            passed = compare_decode(label, backend, out, ref_out, rows * (size_t)Dv, lse, ref_lse,
                                    rows, summary);
            summary->rows += (int64_t)rows;
        }
    }
    summary->cases_passed += passed;
    free(q);
    free(out);
    free(lse);
    free(ref_out);
    free(ref_lse);
    mla_test_cache_free(&cache);
    return passed;
}

typedef struct random_layer {
    r1_mla_config config;
    float *weights_storage;
    r1_mla_weights w;
} random_layer;

static int random_layer_make(random_layer *layer, int64_t q_lora_rank, int yarn, r1t_rng *rng) {
    r1_mla_config c = {.d = 64, .n_heads = 4, .q_lora_rank = q_lora_rank, .kv_lora_rank = 64,
                       .qk_nope_head_dim = 16, .qk_rope_head_dim = 16, .v_head_dim = 24,
                       .rope_theta = 10000, .rope_layout = R1_MLA_ROPE_INTERLEAVED,
                       .rms_eps = 1e-6, .yarn = yarn, .rope_factor = 8, .original_seq_len = 64,
                       .beta_fast = 32, .beta_slow = 1, .mscale = 0.9, .mscale_all_dim = 0.7};
    if (q_lora_rank == 0) c.rope_layout = R1_MLA_ROPE_ROTATE_HALF;
    const int64_t H = c.n_heads, d = c.d, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t dv = c.v_head_dim, r = c.kv_lora_rank, qr = q_lora_rank;
    const int64_t sizes[8] = {H * (dn + dr) * d, qr * d, qr, H * (dn + dr) * qr, (r + dr) * d, r,
                              H * (dn + dv) * r, d * H * dv};
    const int64_t fan_in[8] = {d, d, 0, qr, d, 0, r, H * dv};
    int64_t total = 0;
    for (int k = 0; k < 8; ++k) total += sizes[k];
    float *storage = malloc((size_t)total * sizeof(float));
    if (!storage) return 0;
    const float *pointers[8];
    float *p = storage;
    for (int k = 0; k < 8; ++k) {
        pointers[k] = p;
        for (int64_t i = 0; i < sizes[k]; ++i)
            p[i] = fan_in[k] ? (float)(r1t_rng_normal(rng) / sqrt((double)fan_in[k]))
                             : (float)(1.0 + 0.2 * r1t_rng_normal(rng));
        p += sizes[k];
    }
    layer->config = c;
    layer->weights_storage = storage;
    layer->w = (r1_mla_weights){qr == 0 ? pointers[0] : NULL, qr ? pointers[1] : NULL,
                                qr ? pointers[2] : NULL, qr ? pointers[3] : NULL, pointers[4],
                                pointers[5], pointers[6], pointers[7]};
    return 1;
}

int mla_check_layer_agreement(r1_backend backend, r1_mla_form form, uint64_t seed,
                              int64_t q_lora_rank, int yarn, check_summary *summary) {
    r1t_rng rng = r1t_rng_make(seed);
    random_layer layer;
    summary->cases_total += 1;
    if (!random_layer_make(&layer, q_lora_rank, yarn, &rng)) return 0;
    const r1_mla_config *c = &layer.config;
    /* Three sequences already holding 0, 70 and 126 tokens; 3 new tokens each
     * (crossing the block boundary at 128 for the last). */
    const int64_t B = 3, T = 3;
    int32_t start[3] = {0, 70, 126}, capacity[3];
    for (int b = 0; b < 3; ++b) capacity[b] = start[b] + (int32_t)T;
    mla_test_cache cache_ref = {0}, cache_test = {0};
    const int64_t dim = c->kv_lora_rank + c->qk_rope_head_dim;
    int ok = mla_test_cache_make(&cache_ref, B, capacity, dim, 2, seed + 1);
    ok = ok && mla_test_cache_make(&cache_test, B, capacity, dim, 2, seed + 1);
    float *x = malloc((size_t)(B * T * c->d) * sizeof(float));
    float *out_ref = malloc((size_t)(B * T * c->d) * sizeof(float));
    float *out = malloc((size_t)(B * T * c->d) * sizeof(float));
    int passed = 0;
    if (ok && x && out && out_ref) {
        /* The new tokens' rows hold random values now; blank them so that the
         * comparison below proves the forward wrote them. */
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = start[b]; t < capacity[b]; ++t) {
                int64_t row = (int64_t)cache_ref.block_table[b * cache_ref.max_blocks_per_seq + t / 64] * 64 + t % 64;
                for (int64_t k = 0; k < dim; ++k) cache_ref.blocks[row * dim + k] = cache_test.blocks[row * dim + k] = NAN;
            }
        for (int64_t i = 0; i < B * T * c->d; ++i) x[i] = (float)r1t_rng_normal(&rng);
        for (int64_t i = 0; i < B * T * c->d; ++i) out[i] = NAN;
        r1_mla_forward_desc desc = {.config = *c, .form = R1_MLA_NAIVE, .batch = B, .s_new = T,
                                    .start_pos = start, .block_table = cache_ref.block_table,
                                    .max_blocks_per_seq = cache_ref.max_blocks_per_seq};
        r1_mla_cache a = {cache_ref.blocks, R1_F32, cache_ref.num_blocks, dim};
        r1_mla_cache b = {cache_test.blocks, R1_F32, cache_test.num_blocks, dim};
        r1_status s1 = r1_mla_forward(R1_REF, &desc, &layer.w, x, &a, out_ref, NULL, 0);
        desc.form = form;
        double t0 = check_now();
        r1_status s2 = r1_mla_forward(backend, &desc, &layer.w, x, &b, out, NULL, 0);
        summary->seconds += check_now() - t0;
        char label[256];
        snprintf(label, sizeof label, "mla_layer(%s,%s,q_lora_rank=%lld,yarn=%d,seed=%llu)",
                 r1_backend_name(backend), form == R1_MLA_NAIVE ? "naive" : "absorbed",
                 (long long)q_lora_rank, yarn, (unsigned long long)seed);
        if (s1 != R1_OK || s2 != R1_OK) {
            printf("  %s: %s: %s\n", label, r1_status_str(s1 != R1_OK ? s1 : s2), r1_last_error());
            check_note_error(summary, label, INFINITY, 1);
        } else {
            r1t_comparison o = r1t_compare_f32(label, out, out_ref, (size_t)(B * T * c->d), MLA_FP32_BAR);
            char what[300];
            snprintf(what, sizeof what, "%s cache", label);
            r1t_comparison k = r1t_compare_f32(what, cache_test.blocks, cache_ref.blocks,
                                               (size_t)(cache_ref.num_blocks * 64 * dim), MLA_FP32_BAR);
            check_note_error(summary, label, o.nonfinite_mismatch ? INFINITY : o.relative_l2, MLA_FP32_BAR);
            check_note_error(summary, what, k.nonfinite_mismatch ? INFINITY : k.relative_l2, MLA_FP32_BAR);
            passed = o.ok && k.ok;
            if (!passed || summary->verbose)
                printf("  %s: out rel L2 %.3g, cache rel L2 %.3g (bar %.0e)%s\n", label,
                       o.relative_l2, k.relative_l2, MLA_FP32_BAR, passed ? "" : "  FAILED");
            summary->rows += B * T;
        }
    }
    summary->cases_passed += passed;
    free(x);
    free(out);
    free(out_ref);
    mla_test_cache_free(&cache_ref);
    mla_test_cache_free(&cache_test);
    free(layer.weights_storage);
    return passed;
}

/* ---- r1lab check ---------------------------------------------------------------------------- */

static r1_status mla_check_run(r1_backend backend, uint64_t seed, int64_t rows,
                               check_summary *summary) {
    if (!r1_backend_available(backend)) return R1_EUNSUPPORTED;
    for (int i = 0; mla_decode_golden_names[i]; ++i)
        mla_check_decode_golden(backend, mla_decode_golden_names[i], summary);
    if (backend != R1_CUDA)
        for (int i = 0; mla_layer_golden_names[i]; ++i)
            for (int form = 0; form < 2; ++form)
                mla_check_layer_golden(backend, (r1_mla_form)form, mla_layer_golden_names[i], summary);
    const r1_status manifest = check_golden_manifest("mla", summary);
    const int32_t lengths[6] = {1, 63, 64, 65, 0, 1000};
    int64_t batches = rows / 1000 < 1 ? 1 : rows / 1000;
    for (int64_t i = 0; i < batches && i < 8; ++i)
        mla_check_decode_agreement(backend, seed + (uint64_t)i, 16, 1 + i % 2, lengths, 6, summary);
    if (backend != R1_CUDA)
        for (int form = 0; form < 2; ++form)
            mla_check_layer_agreement(backend, (r1_mla_form)form, seed, 32, 1, summary);
    return manifest;
}

/* Decode steps per second: b = 1, s_q = 1, h = 16, s_k = 4096, from host
 * buffers (for cuda the copies to and from the device are included). */
static double mla_check_throughput(r1_backend backend) {
    if (!r1_backend_available(backend)) return 0;
    const int64_t D = 576, Dv = 512, H = 16;
    const int32_t lengths[1] = {4096};
    mla_test_cache cache;
    if (!mla_test_cache_make(&cache, 1, lengths, D, 3, 7)) return 0;
    float *q = malloc((size_t)(H * D) * sizeof(float));
    float *out = malloc((size_t)(H * Dv) * sizeof(float)), *lse = malloc((size_t)H * sizeof(float));
    double rate = 0;
    if (q && out && lse) {
        r1t_rng rng = r1t_rng_make(11);
        for (int64_t i = 0; i < H * D; ++i) q[i] = round_bf16((float)r1t_rng_normal(&rng));
        r1_mla_decode_desc desc = {
            .batch = 1, .s_q = 1, .n_heads = H, .dim_qk = D, .dim_v = Dv,
            .max_blocks_per_seq = cache.max_blocks_per_seq, .softmax_scale = 0.1352,
            .causal = 1, .dtype = R1_F32, .block_table = cache.block_table,
            .seq_lens = cache.lengths,
        };
        int64_t steps = 0;
        double start = check_now(), elapsed = 0;
        while (elapsed < 0.2 && mla_decode_on_host(backend, &desc, q, cache.blocks,
                                                   cache.num_blocks, out, lse) == R1_OK) {
            ++steps;
            elapsed = check_now() - start;
        }
        rate = steps > 0 && elapsed > 0 ? (double)steps / elapsed : 0;
    }
    free(q);
    free(out);
    free(lse);
    mla_test_cache_free(&cache);
    return rate;
}

const check_component check_component_mla = {
    "mla", mla_check_run, mla_check_throughput,
    "decode steps, b=1 s_q=1 h=16 s_k=4096 (host buffers; cuda includes the copies)"};
