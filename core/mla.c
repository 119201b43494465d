/*
 * core/mla.c — the public MLA entry points: validate once, then dispatch to
 * ref/, fast/ or kernels/. Semantics (and the rules for bad input, seq_len 0
 * and NaN) are in r1lab/mla.h.
 */
#include <math.h>
#include <stdlib.h>

#include "core/internal.h"

r1_mla_config r1_mla_config_deepseek_v3(void) {
    r1_mla_config config = {
        .d = 7168,
        .n_heads = 128,
        .q_lora_rank = 1536,
        .kv_lora_rank = 512,
        .qk_nope_head_dim = 128,
        .qk_rope_head_dim = 64,
        .v_head_dim = 128,
        .rope_theta = 10000.0,
        .rope_layout = R1_MLA_ROPE_INTERLEAVED,
        .rms_eps = 1e-6,
        .yarn = 1,
        .rope_factor = 40.0,
        .original_seq_len = 4096,
        .beta_fast = 32.0,
        .beta_slow = 1.0,
        .mscale = 1.0,
        .mscale_all_dim = 1.0,
    };
    return config;
}

static double yarn_mscale(double factor, double mscale) {
    return factor <= 1.0 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

double r1_mla_softmax_scale(const r1_mla_config *config) {
    if (config == NULL) {
        r1_fail(R1_EINVAL, "config is NULL: r1_mla_softmax_scale returns NaN");
        return NAN;
    }
    double scale = 1.0 / sqrt((double)(config->qk_nope_head_dim + config->qk_rope_head_dim));
    if (config->yarn && config->mscale_all_dim != 0.0) {
        double m = yarn_mscale(config->rope_factor, config->mscale_all_dim);
        scale *= m * m;
    }
    return scale;
}

/* The product of `count` factors, each >= 1, is at most R1_MLA_MAX_ELEMENTS
 * (checked by division, so it cannot overflow). */
static int product_fits(const int64_t *factors, int count) {
    int64_t product = 1;
    for (int i = 0; i < count; ++i) {
        if (factors[i] <= 0 || product > R1_MLA_MAX_ELEMENTS / factors[i]) return 0;
        product *= factors[i];
    }
    return 1;
}

static r1_status check_count(const char *name, int64_t value) {
    if (value <= 0 || value > R1_MLA_MAX_COUNT)
        return r1_fail(R1_EINVAL, "%s = %lld: must be in [1, 2^31 - 1]", name, (long long)value);
    return R1_OK;
}

static r1_status check_dim(const char *name, int64_t value) {
    if (value <= 0 || value > R1_MLA_MAX_DIM)
        return r1_fail(R1_EINVAL, "%s = %lld: must be in [1, %d]", name, (long long)value,
                       R1_MLA_MAX_DIM);
    return R1_OK;
}

/* The paged cache: num_blocks in [1, 2^31 - 1] and num_blocks * 64 * cache_dim
 * elements at most R1_MLA_MAX_ELEMENTS (cache_dim is checked by the caller). */
static r1_status check_cache_size(const r1_mla_cache *cache) {
    r1_status status = check_count("cache->num_blocks", cache->num_blocks);
    if (status != R1_OK) return status;
    const int64_t f[] = {cache->num_blocks, R1_MLA_BLOCK_SIZE, cache->cache_dim};
    if (!product_fits(f, 3))
        return r1_fail(R1_EINVAL, "cache->num_blocks * 64 * cache_dim = %lld * 64 * %lld: more "
                       "than 2^56 elements", (long long)cache->num_blocks,
                       (long long)cache->cache_dim);
    return R1_OK;
}

/* The decode descriptor's sizes alone (what the workspace size depends on). */
static r1_status check_decode_shape(const r1_mla_decode_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    r1_status status;
    if ((status = check_count("batch", desc->batch)) != R1_OK ||
        (status = check_count("s_q", desc->s_q)) != R1_OK ||
        (status = check_count("n_heads", desc->n_heads)) != R1_OK ||
        (status = check_count("max_blocks_per_seq", desc->max_blocks_per_seq)) != R1_OK ||
        (status = check_dim("dim_qk", desc->dim_qk)) != R1_OK ||
        (status = check_dim("dim_v", desc->dim_v)) != R1_OK)
        return status;
    if (desc->dim_v > desc->dim_qk)
        return r1_fail(R1_EINVAL, "dim_qk = %lld, dim_v = %lld: need 0 < dim_v <= dim_qk",
                       (long long)desc->dim_qk, (long long)desc->dim_v);
    const int64_t q[] = {desc->batch, desc->s_q, desc->n_heads, desc->dim_qk};
    if (!product_fits(q, 4))
        return r1_fail(R1_EINVAL, "batch * s_q * n_heads * dim_qk = %lld * %lld * %lld * %lld "
                       "(q): more than 2^56 elements", (long long)desc->batch,
                       (long long)desc->s_q, (long long)desc->n_heads, (long long)desc->dim_qk);
    const int64_t table[] = {desc->batch, desc->max_blocks_per_seq};
    if (!product_fits(table, 2))
        return r1_fail(R1_EINVAL, "batch * max_blocks_per_seq = %lld * %lld (block_table): "
                       "more than 2^56 elements", (long long)desc->batch,
                       (long long)desc->max_blocks_per_seq);
    return R1_OK;
}

/* Every block that sequence b uses (its length is lengths[b] + add) lies in
 * [0, num_blocks). As unsigned numbers, negative ids lie above every limit up
 * to 2^31, so one comparison per id tests both ends. A row is scanned without
 * an exit, which the compiler vectorizes, and searched again only when it holds
 * a bad id (b = 128 rows of 64 blocks on a 2-core x86 development machine:
 * 4.6 us per validation with an exit per id, 1.3 us so; it is part of every
 * decode call's host time). */
static r1_status check_block_table(const int32_t *block_table, int64_t batch,
                                   int64_t max_blocks_per_seq, const int32_t *lengths,
                                   int64_t add, int64_t num_blocks) {
    const uint32_t limit = num_blocks > INT32_MAX ? (uint32_t)1 << 31 : (uint32_t)num_blocks;
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t length = (int64_t)lengths[b] + add;
        const int64_t used = (length + R1_MLA_BLOCK_SIZE - 1) / R1_MLA_BLOCK_SIZE;
        const int32_t *row = block_table + b * max_blocks_per_seq;
        int outside = 0;
        for (int64_t k = 0; k < used; ++k) outside |= (uint32_t)row[k] >= limit;
        if (!outside) continue;
        for (int64_t k = 0; k < used; ++k)
            if ((uint32_t)row[k] >= limit)
                return r1_fail(R1_EINVAL,
                               "block_table[%lld][%lld] = %d: sequence %lld (length %lld) uses "
                               "this block, but the cache has blocks [0, %lld)",
                               (long long)b, (long long)k, row[k], (long long)b, (long long)length,
                               (long long)num_blocks);
    }
    return R1_OK;
}

r1_status r1_mla_decode_validate(r1_backend backend, const r1_mla_decode_desc *desc,
                                 const void *q, const r1_mla_cache *cache, const void *out,
                                 const float *lse) {
    r1_status status = check_decode_shape(desc);
    if (status != R1_OK) return status;
    if (cache == NULL) return r1_fail(R1_EINVAL, "cache is NULL");
    if (cache->cache_dim != desc->dim_qk)
        return r1_fail(R1_EINVAL,
                       "cache->cache_dim = %lld but desc->dim_qk = %lld: a query has one value "
                       "per cache column",
                       (long long)cache->cache_dim, (long long)desc->dim_qk);
    if ((status = check_cache_size(cache)) != R1_OK) return status;
    if (cache->dtype != desc->dtype)
        return r1_fail(R1_EINVAL, "cache->dtype = %s but desc->dtype = %s: they must match",
                       r1_dtype_name(cache->dtype), r1_dtype_name(desc->dtype));
    if (backend == R1_CUDA && desc->dtype != R1_BF16)
        return r1_fail(R1_EUNSUPPORTED,
                       "dtype = %s: the cuda decode core takes bf16 queries and cache",
                       r1_dtype_name(desc->dtype));
    if (backend == R1_CUDA && (desc->dim_qk % 8 != 0 || desc->dim_v % 8 != 0))
        return r1_fail(R1_EUNSUPPORTED,
                       "dim_qk = %lld, dim_v = %lld: the cuda decode core needs multiples of 8",
                       (long long)desc->dim_qk, (long long)desc->dim_v);
    if (backend != R1_CUDA && desc->dtype != R1_F32)
        return r1_fail(R1_EUNSUPPORTED, "dtype = %s: the %s decode core takes f32",
                       r1_dtype_name(desc->dtype), r1_backend_name(backend));
    if (!(isfinite(desc->softmax_scale) && desc->softmax_scale > 0))
        return r1_fail(R1_EINVAL, "softmax_scale = %g: must be finite and > 0",
                       desc->softmax_scale);
    if (q == NULL) return r1_fail(R1_EINVAL, "q is NULL");
    if (cache->blocks == NULL) return r1_fail(R1_EINVAL, "cache->blocks is NULL");
    if (out == NULL) return r1_fail(R1_EINVAL, "out is NULL");
    (void)lse; /* optional */
    if (desc->seq_lens == NULL) return r1_fail(R1_EINVAL, "desc->seq_lens is NULL");
    if (desc->block_table == NULL) return r1_fail(R1_EINVAL, "desc->block_table is NULL");
    /* out and lse must not overlap q, the cache or each other (nor, on the
     * host backends, the block table and lengths). */
    const size_t rows = (size_t)desc->batch * (size_t)desc->s_q * (size_t)desc->n_heads;
    const size_t out_bytes = r1_dtype_bytes(desc->dtype, rows * (size_t)desc->dim_v);
    const size_t q_bytes = r1_dtype_bytes(desc->dtype, rows * (size_t)desc->dim_qk);
    const size_t lse_bytes = rows * sizeof(float);
    const size_t cache_bytes = r1_dtype_bytes(
        cache->dtype, (size_t)cache->num_blocks * R1_MLA_BLOCK_SIZE * (size_t)cache->cache_dim);
    if ((status = r1_check_no_overlap("out", out, out_bytes, "q", q, q_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("out", out, out_bytes, "cache->blocks", cache->blocks,
                                      cache_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("lse", lse, lse_bytes, "q", q, q_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("lse", lse, lse_bytes, "cache->blocks", cache->blocks,
                                      cache_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("lse", lse, lse_bytes, "out", out, out_bytes)) != R1_OK)
        return status;
    if (backend != R1_CUDA) {
        const size_t table_bytes =
            (size_t)desc->batch * (size_t)desc->max_blocks_per_seq * sizeof(int32_t);
        const size_t lens_bytes = (size_t)desc->batch * sizeof(int32_t);
        if ((status = r1_check_no_overlap("out", out, out_bytes, "desc->block_table",
                                          desc->block_table, table_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("out", out, out_bytes, "desc->seq_lens",
                                          desc->seq_lens, lens_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("lse", lse, lse_bytes, "desc->block_table",
                                          desc->block_table, table_bytes)) != R1_OK ||
            (status = r1_check_no_overlap("lse", lse, lse_bytes, "desc->seq_lens",
                                          desc->seq_lens, lens_bytes)) != R1_OK)
            return status;
    }
    const int64_t capacity = desc->max_blocks_per_seq * R1_MLA_BLOCK_SIZE;
    for (int64_t b = 0; b < desc->batch; ++b) {
        int32_t n = desc->seq_lens[b];
        if (n < 0 || n > capacity)
            return r1_fail(R1_EINVAL,
                           "seq_lens[%lld] = %d: must be in [0, max_blocks_per_seq * 64 = %lld]",
                           (long long)b, n, (long long)capacity);
    }
    return check_block_table(desc->block_table, desc->batch, desc->max_blocks_per_seq,
                             desc->seq_lens, 0, cache->num_blocks);
}

size_t r1_mla_decode_workspace_size(r1_backend backend, const r1_mla_decode_desc *desc) {
    if (check_decode_shape(desc) != R1_OK) return 0;
    if (backend == R1_CUDA) return r1_cuda_built() ? mla_decode_workspace_size_cuda(desc) : 0;
    return 0;
}

r1_status r1_mla_decode(r1_backend backend, const r1_mla_decode_desc *desc, const void *q,
                        const r1_mla_cache *cache, void *out, float *lse, void *workspace,
                        size_t workspace_bytes, void *stream) {
    r1_status status = r1_check_backend(backend);
    if (status != R1_OK) return status;
    status = r1_mla_decode_validate(backend, desc, q, cache, out, lse);
    if (status != R1_OK) return status;
    void *owned = NULL;
    status = r1_workspace_acquire(backend, r1_mla_decode_workspace_size(backend, desc),
                                  &workspace, workspace_bytes, &owned);
    if (status != R1_OK) return status;
    switch (backend) {
    case R1_REF: status = mla_decode_ref(desc, q, cache, out, lse); break;
    case R1_FAST: status = mla_decode_fast(desc, q, cache, out, lse); break;
    case R1_CUDA: status = mla_decode_cuda(desc, q, cache, out, lse, workspace, stream); break;
    }
    return r1_workspace_release(backend, owned, status);
}

/* ---- the layer -------------------------------------------------------------- */

static r1_status validate_config(const r1_mla_config *c) {
    if (c->d <= 0 || c->n_heads <= 0 || c->kv_lora_rank <= 0 || c->qk_nope_head_dim <= 0 ||
        c->qk_rope_head_dim <= 0 || c->v_head_dim <= 0 || c->q_lora_rank < 0)
        return r1_fail(R1_EINVAL,
                       "config dims d = %lld, n_heads = %lld, q_lora_rank = %lld, kv_lora_rank = "
                       "%lld, qk_nope_head_dim = %lld, qk_rope_head_dim = %lld, v_head_dim = %lld: "
                       "all must be > 0 (q_lora_rank >= 0)",
                       (long long)c->d, (long long)c->n_heads, (long long)c->q_lora_rank,
                       (long long)c->kv_lora_rank, (long long)c->qk_nope_head_dim,
                       (long long)c->qk_rope_head_dim, (long long)c->v_head_dim);
    if (c->d > R1_MLA_MAX_DIM || c->n_heads > R1_MLA_MAX_DIM || c->q_lora_rank > R1_MLA_MAX_DIM ||
        c->kv_lora_rank > R1_MLA_MAX_DIM || c->qk_nope_head_dim > R1_MLA_MAX_DIM ||
        c->qk_rope_head_dim > R1_MLA_MAX_DIM || c->v_head_dim > R1_MLA_MAX_DIM)
        return r1_fail(R1_EINVAL,
                       "config dims d = %lld, n_heads = %lld, q_lora_rank = %lld, kv_lora_rank = "
                       "%lld, qk_nope_head_dim = %lld, qk_rope_head_dim = %lld, v_head_dim = %lld: "
                       "each must be at most %d",
                       (long long)c->d, (long long)c->n_heads, (long long)c->q_lora_rank,
                       (long long)c->kv_lora_rank, (long long)c->qk_nope_head_dim,
                       (long long)c->qk_rope_head_dim, (long long)c->v_head_dim, R1_MLA_MAX_DIM);
    if (c->qk_rope_head_dim % 2 != 0)
        return r1_fail(R1_EINVAL, "qk_rope_head_dim = %lld: RoPE rotates pairs, must be even",
                       (long long)c->qk_rope_head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return r1_fail(R1_EINVAL, "rope_theta = %g: must be finite and > 0", c->rope_theta);
    if (c->rope_layout != R1_MLA_ROPE_INTERLEAVED && c->rope_layout != R1_MLA_ROPE_ROTATE_HALF)
        return r1_fail(R1_EINVAL, "rope_layout = %d: not a r1_mla_rope_layout", (int)c->rope_layout);
    if (!(c->rms_eps >= 0) || !isfinite(c->rms_eps))
        return r1_fail(R1_EINVAL, "rms_eps = %g: must be finite and >= 0", c->rms_eps);
    if (c->yarn) {
        if (!(c->rope_factor >= 1.0) || !isfinite(c->rope_factor))
            return r1_fail(R1_EINVAL, "rope_factor = %g: YaRN needs a finite factor >= 1",
                           c->rope_factor);
        if (c->original_seq_len <= 0)
            return r1_fail(R1_EINVAL, "original_seq_len = %lld: YaRN needs > 0",
                           (long long)c->original_seq_len);
        if (!(c->beta_fast > c->beta_slow && c->beta_slow > 0) || !isfinite(c->beta_fast))
            return r1_fail(R1_EINVAL, "beta_fast = %g, beta_slow = %g: need beta_fast > beta_slow > 0",
                           c->beta_fast, c->beta_slow);
        if (!isfinite(c->mscale) || !isfinite(c->mscale_all_dim) || c->mscale < 0 ||
            c->mscale_all_dim < 0)
            return r1_fail(R1_EINVAL, "mscale = %g, mscale_all_dim = %g: must be finite and >= 0",
                           c->mscale, c->mscale_all_dim);
    }
    return R1_OK;
}

/* The forward descriptor's sizes alone (config, batch, s_new, block table,
 * start positions; what the workspace size depends on). With every config
 * dimension <= 2^16, the per-token work arrays are bounded by
 * b * s_new * h * 2^18 and b * s_new * d elements, the keys by L * h * 2^17
 * and the attention rows by b * s_new * h * L (L = the longest sequence). */
static r1_status check_forward_shape(const r1_mla_forward_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    r1_status status = validate_config(&desc->config);
    if (status != R1_OK) return status;
    const r1_mla_config *c = &desc->config;
    if (desc->form != R1_MLA_NAIVE && desc->form != R1_MLA_ABSORBED)
        return r1_fail(R1_EINVAL, "form = %d: expected R1_MLA_NAIVE or R1_MLA_ABSORBED",
                       (int)desc->form);
    if ((status = check_count("batch", desc->batch)) != R1_OK ||
        (status = check_count("s_new", desc->s_new)) != R1_OK ||
        (status = check_count("max_blocks_per_seq", desc->max_blocks_per_seq)) != R1_OK)
        return status;
    if (desc->start_pos == NULL || desc->block_table == NULL)
        return r1_fail(R1_EINVAL, "desc->start_pos or desc->block_table is NULL");
    const int64_t per_head = c->qk_nope_head_dim + 2 * c->qk_rope_head_dim + c->v_head_dim +
                             c->kv_lora_rank; /* q, q_latent, o, o_latent widths */
    const int64_t tokens_heads[] = {desc->batch, desc->s_new, c->n_heads, per_head};
    const int64_t tokens_hidden[] = {desc->batch, desc->s_new, c->d};
    const int64_t table[] = {desc->batch, desc->max_blocks_per_seq};
    if (!product_fits(tokens_heads, 4) || !product_fits(tokens_hidden, 3) ||
        !product_fits(table, 2))
        return r1_fail(R1_EINVAL,
                       "batch = %lld, s_new = %lld, max_blocks_per_seq = %lld with n_heads = "
                       "%lld, d = %lld: a tensor (b * s_new * d, b * s_new * h * head dims or "
                       "b * max_blocks_per_seq) has more than 2^56 elements",
                       (long long)desc->batch, (long long)desc->s_new,
                       (long long)desc->max_blocks_per_seq, (long long)c->n_heads,
                       (long long)c->d);
    /* start_pos holds batch entries: read only now that batch is bounded */
    const int64_t capacity = desc->max_blocks_per_seq * R1_MLA_BLOCK_SIZE;
    int64_t longest = 0;
    for (int64_t b = 0; b < desc->batch; ++b) {
        int64_t start = desc->start_pos[b];
        if (start < 0 || start + desc->s_new > capacity)
            return r1_fail(R1_EINVAL,
                           "start_pos[%lld] = %lld: need 0 <= start_pos and start_pos + s_new "
                           "(%lld) <= max_blocks_per_seq * 64 = %lld",
                           (long long)b, (long long)start, (long long)desc->s_new,
                           (long long)capacity);
        if (start + desc->s_new > longest) longest = start + desc->s_new;
    }
    const int64_t keys[] = {longest, c->n_heads, c->qk_nope_head_dim + c->v_head_dim};
    const int64_t scores[] = {desc->batch, desc->s_new, c->n_heads, longest};
    if (!product_fits(keys, 3) || !product_fits(scores, 4))
        return r1_fail(R1_EINVAL,
                       "longest sequence L = %lld with batch = %lld, s_new = %lld, n_heads = "
                       "%lld: L * h * head dims (keys) or b * s_new * h * L (scores) has more "
                       "than 2^56 elements",
                       (long long)longest, (long long)desc->batch, (long long)desc->s_new,
                       (long long)c->n_heads);
    return R1_OK;
}

r1_status r1_mla_forward_validate(r1_backend backend, const r1_mla_forward_desc *desc,
                                  const r1_mla_weights *weights, const float *x,
                                  const r1_mla_cache *cache, const float *out) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (weights == NULL) return r1_fail(R1_EINVAL, "weights is NULL");
    if (cache == NULL) return r1_fail(R1_EINVAL, "cache is NULL");
    r1_status status = check_forward_shape(desc);
    if (status != R1_OK) return status;
    const r1_mla_config *c = &desc->config;
    if (cache->cache_dim != c->kv_lora_rank + c->qk_rope_head_dim)
        return r1_fail(R1_EINVAL,
                       "cache->cache_dim = %lld: must be kv_lora_rank + qk_rope_head_dim = %lld",
                       (long long)cache->cache_dim,
                       (long long)(c->kv_lora_rank + c->qk_rope_head_dim));
    if (cache->dtype != R1_F32)
        return r1_fail(R1_EUNSUPPORTED, "cache->dtype = %s: the layer forward keeps an f32 cache",
                       r1_dtype_name(cache->dtype));
    if ((status = check_cache_size(cache)) != R1_OK) return status;
    if (cache->blocks == NULL) return r1_fail(R1_EINVAL, "cache->blocks is NULL");
    if (c->q_lora_rank == 0 ? weights->wq == NULL
                            : (weights->wq_a == NULL || weights->q_norm == NULL ||
                               weights->wq_b == NULL))
        return r1_fail(R1_EINVAL, "q_lora_rank = %lld: %s NULL", (long long)c->q_lora_rank,
                       c->q_lora_rank == 0 ? "weights->wq is" : "weights->wq_a, q_norm or wq_b is");
    if (!weights->wkv_a || !weights->kv_norm || !weights->wkv_b || !weights->wo)
        return r1_fail(R1_EINVAL, "weights->wkv_a, kv_norm, wkv_b or wo is NULL");
    if (x == NULL || out == NULL) return r1_fail(R1_EINVAL, "x or out is NULL");
    (void)backend;
    /* out (b, s_new, d) must not overlap x or the cache (which the call writes). */
    const size_t tokens = (size_t)desc->batch * (size_t)desc->s_new;
    const size_t x_bytes = tokens * (size_t)c->d * sizeof(float);
    const size_t cache_bytes =
        (size_t)cache->num_blocks * R1_MLA_BLOCK_SIZE * (size_t)cache->cache_dim * sizeof(float);
    if ((status = r1_check_no_overlap("out", out, x_bytes, "x", x, x_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("out", out, x_bytes, "cache->blocks", cache->blocks,
                                      cache_bytes)) != R1_OK ||
        (status = r1_check_no_overlap("x", x, x_bytes, "cache->blocks", cache->blocks,
                                      cache_bytes)) != R1_OK)
        return status;
    return check_block_table(desc->block_table, desc->batch, desc->max_blocks_per_seq,
                             desc->start_pos, desc->s_new, cache->num_blocks);
}

size_t r1_mla_forward_workspace_size(r1_backend backend, const r1_mla_forward_desc *desc) {
    if (check_forward_shape(desc) != R1_OK) return 0;
    if (backend == R1_REF) return mla_forward_workspace_size_ref(desc);
    if (backend == R1_FAST) return mla_forward_workspace_size_fast(desc);
    return 0;
}

r1_status r1_mla_forward(r1_backend backend, const r1_mla_forward_desc *desc,
                         const r1_mla_weights *weights, const float *x, r1_mla_cache *cache,
                         float *out, void *workspace, size_t workspace_bytes) {
    if (backend != R1_REF && backend != R1_FAST && backend != R1_CUDA)
        return r1_fail(R1_EINVAL, "backend = %d: expected R1_REF, R1_FAST or R1_CUDA",
                       (int)backend);
    r1_status status = r1_mla_forward_validate(backend, desc, weights, x, cache, out);
    if (status != R1_OK) return status;
    if (backend == R1_CUDA)
        return r1_fail(R1_EUNSUPPORTED,
                       "r1_mla_forward has no cuda backend: the layer runs on ref or fast; the "
                       "cuda decode core is r1_mla_decode");
    void *owned = NULL;
    status = r1_workspace_acquire(backend, r1_mla_forward_workspace_size(backend, desc),
                                  &workspace, workspace_bytes, &owned);
    if (status != R1_OK) return status;
    status = backend == R1_REF ? mla_forward_ref(desc, weights, x, cache, out, workspace)
                               : mla_forward_fast(desc, weights, x, cache, out, workspace);
    return r1_workspace_release(backend, owned, status);
}

#ifndef R1LAB_HAVE_CUDA
/* CPU-only build: the CUDA backend is absent (the entry points return
 * R1_EUNSUPPORTED before reaching these). */
size_t mla_decode_workspace_size_cuda(const r1_mla_decode_desc *desc) {
    (void)desc;
    return 0;
}
r1_status mla_decode_cuda(const r1_mla_decode_desc *desc, const void *q,
                          const r1_mla_cache *cache, void *out, float *lse, void *workspace,
                          void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
#endif
