/*
 * ref/mla.c — Multi-head Latent Attention, the readable version
 * (DeepSeek-V2 §2.1 "Multi-Head Latent Attention", DeepSeek-V3 §2.1.1).
 *
 * Dimensions (one letter each): d hidden, h heads, r = kv_lora_rank (512),
 * dn = qk_nope_head_dim (128), dr = qk_rope_head_dim (64), dv = v_head_dim
 * (128), T new tokens per sequence, L cached tokens of a sequence.
 *
 * THE LAYER, for a token x (d) at position p:
 *   q       = W_q x, or W_qb (rmsnorm(W_qa x) * q_norm)        (h, dn + dr)
 *   q_nope  = q[:, :dn],  q_pe = rope(q[:, dn:], p)
 *   kv      = W_kva x                                          (r + dr)
 *   c       = rmsnorm(kv[:r]) * kv_norm                        (r)  the latent
 *   k_pe    = rope(kv[r:], p)                                  (dr) shared by all heads
 *   cache row of the token = [c, k_pe]                         (r + dr = 576)
 *
 * NAIVE FORM (attention_naive): give every head its own keys and values by
 * expanding the latent with W_ukv = W_kvb, whose rows for head i are W_uk^i
 * (dn, r) followed by W_uv^i (dv, r):
 *   k_nope^i_j = W_uk^i c_j          (dn)
 *   v^i_j      = W_uv^i c_j          (dv)
 *   s^i_j      = scale * (q_nope^i . k_nope^i_j + q_pe^i . k_pe_j)
 *   o^i        = sum_j softmax_j(s^i)_j v^i_j
 *   out        = W_o [o^0, ..., o^{h-1}]
 * This materializes h * (dn + dv) = 32768 values per cached token (h = 128).
 *
 * ABSORBED FORM (absorb_query, mla_decode_ref, unabsorb_output). Why it is the
 * same function, one step at a time, for head i and cached token j:
 *
 *  1. The no-RoPE part of the score is a dot product through a matrix:
 *       q_nope . k_nope_j = q_nope^T (W_uk c_j)
 *  2. Matrix products associate, so move W_uk to the query side:
 *       q_nope^T (W_uk c_j) = (W_uk^T q_nope)^T c_j = q_lat . c_j
 *     with q_lat = W_uk^T q_nope, an r-vector computed ONCE per query and
 *     head, not once per cached token.
 *  3. Append the RoPE part, which is already shared: with
 *       Q = [q_lat, q_pe] (r + dr) and K_j = [c_j, k_pe_j] (the cache row),
 *       s_j = scale * Q . K_j          — exactly the naive score.
 *     (RoPE is why k_pe stays separate: rope(W c, p) is not W rope(c, p), so
 *     a rotated key cannot be absorbed; the 64 rotated dims ride along.)
 *  4. The values: o = sum_j p_j v_j = sum_j p_j (W_uv c_j) = W_uv (sum_j p_j c_j)
 *     by linearity, so attend over the latents themselves,
 *       o_lat = sum_j p_j c_j  (r) = sum_j p_j K_j[:r]
 *     and apply W_uv once afterwards: o = W_uv o_lat.
 *  5. Steps 3 and 4 use only the cache rows, the same for every head: the
 *     attention is multi-QUERY attention with 576-dim keys and 512-dim values
 *     (the first 512 dims of the key are the value). That is the decode core,
 *     mla_decode_ref below, which FlashMLA implements on GPUs.
 *  Both forms compute the same real numbers; in floating point they differ by
 *  rounding only (the tests hold them to a relative L2 of 1e-5 in fp32).
 *  The absorbed form reads 576 values per cached token instead of 32768 and
 *  does (r + dr) + r = 1088 multiply-adds per head and token instead of
 *  dn + dr + dv = 320, after the expansion: cheap in bytes, dearer in FLOPs,
 *  which is the right trade for decode (memory-bound), and the wrong one for a
 *  long prefill, where the naive form's expansion is paid once per token.
 *
 * ROPE (rope_frequencies, apply_rope): pairs rotate by angle p * f_k,
 *   f_k = theta^(-2k/dr); INTERLEAVED pairs (x[2k], x[2k+1]) (DeepSeek's
 *   model.py), ROTATE_HALF pairs (x[k], x[k + dr/2]) (transformers). YaRN
 *   (mla_rope_frequencies_ref) blends f_k / factor with f_k by a linear ramp.
 *
 * Every sum below is taken in float64; tensors are float32.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* ---- small linear algebra ------------------------------------------------------ */

/* a . b over n floats, in double. */
static double dot(const float *a, const float *b, int64_t n) {
    double sum = 0.0;
    for (int64_t k = 0; k < n; ++k) sum += (double)a[k] * (double)b[k];
    return sum;
}

/* y (n_out) = W x; W is (n_out, n_in) row-major, x is (n_in). */
static void linear(const float *w, const float *x, float *y, int64_t n_out, int64_t n_in) {
    for (int64_t o = 0; o < n_out; ++o) y[o] = (float)dot(w + o * n_in, x, n_in);
}

/* x (n) <- x / sqrt(mean(x^2) + eps) * weight (DeepSeek's RMSNorm). */
static void rms_norm(float *x, const float *weight, int64_t n, double eps) {
    double sum_squares = 0.0;
    for (int64_t k = 0; k < n; ++k) sum_squares += (double)x[k] * (double)x[k];
    double inverse_rms = 1.0 / sqrt(sum_squares / (double)n + eps);
    for (int64_t k = 0; k < n; ++k) x[k] = (float)((double)x[k] * inverse_rms * (double)weight[k]);
}

/* ---- RoPE and YaRN --------------------------------------------------------------- */

static double yarn_mscale(double factor, double mscale) {
    return factor <= 1.0 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

/* The dimension index (of dr) at which frequency f_k makes `rotations` full
 * turns over original_seq_len positions: solves L / (2 pi theta^(2k/dr)) =
 * rotations for k (in units where pairs count twice, as DeepSeek writes it). */
static double yarn_correction_dim(double rotations, double dr, double theta, double length) {
    return dr * log(length / (rotations * 2.0 * 3.14159265358979323846)) / (2.0 * log(theta));
}

/* inv_freq (dr/2): f_k = theta^(-2k/dr). With YaRN, frequencies that turn
 * more than beta_fast times over the original context keep f_k
 * (extrapolation), those that turn fewer than beta_slow times become
 * f_k / factor (interpolation), and a linear ramp blends the ones between.
 * cos_sin_scale: mscale(factor, mscale) / mscale(factor, mscale_all_dim). */
void mla_rope_frequencies_ref(const r1_mla_config *config, double *inv_freq,
                              double *cos_sin_scale) {
    const int64_t dr = config->qk_rope_head_dim, half = dr / 2;
    *cos_sin_scale = 1.0;
    for (int64_t k = 0; k < half; ++k)
        inv_freq[k] = 1.0 / pow(config->rope_theta, (double)(2 * k) / (double)dr);
    if (!config->yarn) return;
    double low = floor(yarn_correction_dim(config->beta_fast, (double)dr, config->rope_theta,
                                           (double)config->original_seq_len));
    double high = ceil(yarn_correction_dim(config->beta_slow, (double)dr, config->rope_theta,
                                           (double)config->original_seq_len));
    if (low < 0) low = 0;
    if (high > (double)(dr - 1)) high = (double)(dr - 1);
    if (low == high) high += 0.001;
    for (int64_t k = 0; k < half; ++k) {
        double ramp = ((double)k - low) / (high - low); /* 0: extrapolate, 1: interpolate */
        if (ramp < 0) ramp = 0;
        if (ramp > 1) ramp = 1;
        inv_freq[k] = inv_freq[k] / config->rope_factor * ramp + inv_freq[k] * (1.0 - ramp);
    }
    double denominator = config->mscale_all_dim ? yarn_mscale(config->rope_factor, config->mscale_all_dim) : 1.0;
    double numerator = config->mscale ? yarn_mscale(config->rope_factor, config->mscale) : 1.0;
    *cos_sin_scale = numerator / denominator;
}

/* Rotates x (dr) for position p: each pair (a, b) -> (a cos - b sin, b cos + a sin)
 * scaled by cos_sin_scale, pair k at angle p * inv_freq[k]. */
static void apply_rope(float *x, int64_t dr, r1_mla_rope_layout layout, const double *inv_freq,
                       double cos_sin_scale, int64_t position) {
    const int64_t half = dr / 2;
    for (int64_t k = 0; k < half; ++k) {
        double angle = (double)position * inv_freq[k];
        double c = cos(angle) * cos_sin_scale, s = sin(angle) * cos_sin_scale;
        int64_t first = layout == R1_MLA_ROPE_INTERLEAVED ? 2 * k : k;
        int64_t second = layout == R1_MLA_ROPE_INTERLEAVED ? 2 * k + 1 : k + half;
        double a = x[first], b = x[second];
        x[first] = (float)(a * c - b * s);
        x[second] = (float)(b * c + a * s);
    }
}

/* ---- the paged cache ------------------------------------------------------------------ */

/* Row of token t of a sequence whose block-table row is `table`. */
static float *cache_row(const r1_mla_cache *cache, const int32_t *table, int64_t t) {
    int64_t block = table[t / R1_MLA_BLOCK_SIZE];
    return (float *)cache->blocks +
           (block * R1_MLA_BLOCK_SIZE + t % R1_MLA_BLOCK_SIZE) * cache->cache_dim;
}

/* ---- the decode core: MQA over the latent cache ---------------------------------------- */

/* One query Q (dim_qk) against the first n keys of a sequence:
 *   s_j = scale * Q . K_j,  m = max_j s_j,
 *   out = sum_j exp(s_j - m) K_j[:dim_v] / sum_j exp(s_j - m),
 *   lse = m + ln sum_j exp(s_j - m).
 * Two passes (max, then weights): clear, and scores are cheap to recompute.
 * n = 0: out = 0, lse = -inf (the defined empty result). */
static void attend_one_query(const float *query, const r1_mla_cache *cache, const int32_t *table,
                             int64_t n, int64_t dim_qk, int64_t dim_v, double scale, float *out,
                             float *lse) {
    if (n == 0) {
        for (int64_t k = 0; k < dim_v; ++k) out[k] = 0.0f;
        if (lse) *lse = -INFINITY;
        return;
    }
    /* A NaN score never wins the max, but its weight exp(NaN) is NaN, so
     * NaN reaches the sum, out and lse, as documented. */
    double max_score = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        double s = scale * dot(query, cache_row(cache, table, j), dim_qk);
        if (s > max_score) max_score = s;
    }
    /* out[k] accumulates sum_j w_j K_j[k] in a double per output, one k at a
     * time, so that no buffer is needed. */
    double weight_sum = 0.0;
    for (int64_t j = 0; j < n; ++j)
        weight_sum += exp(scale * dot(query, cache_row(cache, table, j), dim_qk) - max_score);
    for (int64_t k = 0; k < dim_v; ++k) out[k] = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
        const float *key = cache_row(cache, table, j);
        double weight = exp(scale * dot(query, key, dim_qk) - max_score) / weight_sum;
        for (int64_t k = 0; k < dim_v; ++k) out[k] = (float)((double)out[k] + weight * (double)key[k]);
    }
    if (lse) *lse = (float)(max_score + log(weight_sum));
}

/* q (b, s_q, h, dim_qk) -> out (b, s_q, h, dim_v), lse (b, s_q, h). */
r1_status mla_decode_ref(const r1_mla_decode_desc *desc, const float *q,
                         const r1_mla_cache *cache, float *out, float *lse) {
    const int64_t S = desc->s_q, H = desc->n_heads, Dk = desc->dim_qk, Dv = desc->dim_v;
    for (int64_t b = 0; b < desc->batch; ++b) {
        const int32_t *table = desc->block_table + b * desc->max_blocks_per_seq;
        for (int64_t i = 0; i < S; ++i) {
            /* Causal: query i is token seq_len - S + i and sees keys 0 .. itself. */
            int64_t n = desc->seq_lens[b];
            if (desc->causal) n = n - S + 1 + i;
            if (n < 0) n = 0;
            for (int64_t head = 0; head < H; ++head) {
                int64_t row = (b * S + i) * H + head;
                attend_one_query(q + row * Dk, cache, table, n, Dk, Dv, desc->softmax_scale,
                                 out + row * Dv, lse ? lse + row : NULL);
            }
        }
    }
    return R1_OK;
}

/* ---- the layer ------------------------------------------------------------------------------ */

/* Scratch carved from the workspace (all float32 unless stated). */
typedef struct forward_scratch {
    float *q;         /* (b, T, h, dn + dr)   queries, RoPE applied         */
    float *o;         /* (b, T, h, dv)        per-head attention outputs     */
    float *q_latent;  /* (b, T, h, r + dr)    absorbed queries               */
    float *o_latent;  /* (b, T, h, r)         attention over the latents     */
    float *lse;       /* (b, T, h)                                           */
    float *k_nope;    /* (L, h, dn)           naive: expanded keys          */
    float *v;         /* (L, h, dv)           naive: expanded values        */
    double *weights;  /* (L)                  naive: softmax weights        */
    float *q_lora;    /* (q_lora_rank)                                        */
    float *kv;        /* (r + dr)                                             */
    int32_t *seq_lens;/* (b)                                                  */
    double *inv_freq; /* (dr / 2)                                             */
} forward_scratch;

static int64_t longest_sequence(const r1_mla_forward_desc *desc) {
    int64_t longest = 0;
    for (int64_t b = 0; b < desc->batch; ++b)
        if (desc->start_pos[b] + desc->s_new > longest) longest = desc->start_pos[b] + desc->s_new;
    return longest;
}

static size_t carve(forward_scratch *s, const r1_mla_forward_desc *desc, char *base) {
    const r1_mla_config *c = &desc->config;
    const size_t BT = (size_t)(desc->batch * desc->s_new), H = (size_t)c->n_heads;
    const size_t dn = (size_t)c->qk_nope_head_dim, dr = (size_t)c->qk_rope_head_dim;
    const size_t dv = (size_t)c->v_head_dim, r = (size_t)c->kv_lora_rank;
    const size_t L = (size_t)longest_sequence(desc);
    size_t offset = 0;
#define CARVE(field, type, count)                                              \
    do {                                                                       \
        offset = (offset + 63) & ~(size_t)63;                                  \
        if (s) s->field = (type *)(base + offset);                             \
        offset += (count) * sizeof(type);                                      \
    } while (0)
    CARVE(q, float, BT * H * (dn + dr));
    CARVE(o, float, BT * H * dv);
    CARVE(q_latent, float, BT * H * (r + dr));
    CARVE(o_latent, float, BT * H * r);
    CARVE(lse, float, BT * H);
    CARVE(k_nope, float, L * H * dn);
    CARVE(v, float, L * H * dv);
    CARVE(weights, double, L);
    CARVE(q_lora, float, (size_t)c->q_lora_rank + 1);
    CARVE(kv, float, r + dr);
    CARVE(seq_lens, int32_t, (size_t)desc->batch);
    CARVE(inv_freq, double, dr / 2);
#undef CARVE
    return offset + 64;
}

size_t mla_forward_workspace_size_ref(const r1_mla_forward_desc *desc) {
    return carve(NULL, desc, NULL);
}

/* x (d) -> q (h, dn + dr), RoPE applied to each head's last dr values. */
static void project_query(const r1_mla_config *c, const r1_mla_weights *w, const float *x,
                          int64_t position, const double *inv_freq, double cos_sin_scale,
                          float *q_lora, float *q) {
    const int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    if (c->q_lora_rank == 0) {
        linear(w->wq, x, q, H * (dn + dr), c->d);
    } else {
        linear(w->wq_a, x, q_lora, c->q_lora_rank, c->d);
        rms_norm(q_lora, w->q_norm, c->q_lora_rank, c->rms_eps);
        linear(w->wq_b, q_lora, q, H * (dn + dr), c->q_lora_rank);
    }
    for (int64_t head = 0; head < H; ++head)
        apply_rope(q + head * (dn + dr) + dn, dr, c->rope_layout, inv_freq, cos_sin_scale,
                   position);
}

/* x (d) -> the cache row [c, k_pe] (r + dr): the only thing MLA keeps per token. */
static void project_latent(const r1_mla_config *c, const r1_mla_weights *w, const float *x,
                           int64_t position, const double *inv_freq, double cos_sin_scale,
                           float *kv, float *row) {
    const int64_t r = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    linear(w->wkv_a, x, kv, r + dr, c->d);
    rms_norm(kv, w->kv_norm, r, c->rms_eps);
    apply_rope(kv + r, dr, c->rope_layout, inv_freq, cos_sin_scale, position);
    memcpy(row, kv, (size_t)(r + dr) * sizeof(float));
}

/* Head `head`'s up-projections inside W_kvb (h*(dn+dv), r). */
static const float *w_uk(const r1_mla_config *c, const r1_mla_weights *w, int64_t head) {
    return w->wkv_b + head * (c->qk_nope_head_dim + c->v_head_dim) * c->kv_lora_rank;
}
static const float *w_uv(const r1_mla_config *c, const r1_mla_weights *w, int64_t head) {
    return w_uk(c, w, head) + c->qk_nope_head_dim * c->kv_lora_rank;
}

/* NAIVE: for one sequence with L cached tokens, expand every latent into
 * per-head keys k_nope (L, h, dn) and values v (L, h, dv), then ordinary
 * causal multi-head attention for its T queries q (T, h, dn + dr) -> o (T, h, dv). */
static void attention_naive(const r1_mla_forward_desc *desc, const r1_mla_weights *w,
                            const r1_mla_cache *cache, const int32_t *table, int64_t start,
                            const float *q, float *o, forward_scratch *s) {
    const r1_mla_config *c = &desc->config;
    const int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, r = c->kv_lora_rank, L = start + desc->s_new;
    const double scale = r1_mla_softmax_scale(c);
    for (int64_t j = 0; j < L; ++j) {
        const float *latent = cache_row(cache, table, j); /* c_j = row[:r] */
        for (int64_t head = 0; head < H; ++head) {
            linear(w_uk(c, w, head), latent, s->k_nope + (j * H + head) * dn, dn, r);
            linear(w_uv(c, w, head), latent, s->v + (j * H + head) * dv, dv, r);
        }
    }
    for (int64_t t = 0; t < desc->s_new; ++t) {
        const int64_t visible = start + t + 1; /* causal: keys 0 .. own position */
        for (int64_t head = 0; head < H; ++head) {
            const float *q_nope = q + (t * H + head) * (dn + dr), *q_pe = q_nope + dn;
            double max_score = -INFINITY;
            for (int64_t j = 0; j < visible; ++j) {
                const float *k_pe = cache_row(cache, table, j) + r;
                double score = scale * (dot(q_nope, s->k_nope + (j * H + head) * dn, dn) +
                                        dot(q_pe, k_pe, dr));
                s->weights[j] = score;
                if (score > max_score) max_score = score;
            }
            double total = 0.0;
            for (int64_t j = 0; j < visible; ++j) {
                s->weights[j] = exp(s->weights[j] - max_score);
                total += s->weights[j];
            }
            float *out = o + (t * H + head) * dv;
            for (int64_t k = 0; k < dv; ++k) {
                double sum = 0.0;
                for (int64_t j = 0; j < visible; ++j)
                    sum += s->weights[j] * (double)s->v[(j * H + head) * dv + k];
                out[k] = (float)(sum / total);
            }
        }
    }
}

/* ABSORBED, step 2: q_latent = [W_uk^T q_nope, q_pe] (r + dr) for one head.
 * (W_uk^T q_nope)_k = sum_n W_uk[n][k] q_nope[n]. */
static void absorb_query(const r1_mla_config *c, const float *w_uk_head, const float *q_head,
                         float *q_latent) {
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, r = c->kv_lora_rank;
    for (int64_t k = 0; k < r; ++k) {
        double sum = 0.0;
        for (int64_t n = 0; n < dn; ++n) sum += (double)w_uk_head[n * r + k] * (double)q_head[n];
        q_latent[k] = (float)sum;
    }
    memcpy(q_latent + r, q_head + dn, (size_t)dr * sizeof(float));
}

/* ABSORBED, step 4: o = W_uv o_latent (dv) for one head. */
static void unabsorb_output(const r1_mla_config *c, const float *w_uv_head,
                            const float *o_latent, float *o) {
    linear(w_uv_head, o_latent, o, c->v_head_dim, c->kv_lora_rank);
}

/* x (b, T, d) -> out (b, T, d), appending T tokens per sequence to the cache. */
r1_status mla_forward_ref(const r1_mla_forward_desc *desc, const r1_mla_weights *w,
                          const float *x, r1_mla_cache *cache, float *out, void *workspace) {
    const r1_mla_config *c = &desc->config;
    const int64_t B = desc->batch, T = desc->s_new, H = c->n_heads, d = c->d;
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int64_t r = c->kv_lora_rank;
    forward_scratch s;
    carve(&s, desc, workspace);
    double cos_sin_scale;
    mla_rope_frequencies_ref(c, s.inv_freq, &cos_sin_scale);

    /* 1. Project every new token: its queries, and its cache row. */
    for (int64_t b = 0; b < B; ++b) {
        const int32_t *table = desc->block_table + b * desc->max_blocks_per_seq;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t position = desc->start_pos[b] + t;
            const float *token = x + (b * T + t) * d;
            project_query(c, w, token, position, s.inv_freq, cos_sin_scale, s.q_lora,
                          s.q + (b * T + t) * H * (dn + dr));
            project_latent(c, w, token, position, s.inv_freq, cos_sin_scale, s.kv,
                           cache_row(cache, table, position));
        }
    }

    /* 2. Attention, in the form asked for. */
    if (desc->form == R1_MLA_NAIVE) {
        for (int64_t b = 0; b < B; ++b)
            attention_naive(desc, w, cache, desc->block_table + b * desc->max_blocks_per_seq,
                            desc->start_pos[b], s.q + b * T * H * (dn + dr),
                            s.o + b * T * H * dv, &s);
    } else {
        for (int64_t row = 0; row < B * T; ++row)
            for (int64_t head = 0; head < H; ++head)
                absorb_query(c, w_uk(c, w, head), s.q + (row * H + head) * (dn + dr),
                             s.q_latent + (row * H + head) * (r + dr));
        for (int64_t b = 0; b < B; ++b) s.seq_lens[b] = (int32_t)(desc->start_pos[b] + T);
        r1_mla_decode_desc core = {
            .batch = B, .s_q = T, .n_heads = H, .dim_qk = r + dr, .dim_v = r,
            .max_blocks_per_seq = desc->max_blocks_per_seq,
            .softmax_scale = r1_mla_softmax_scale(c), .causal = 1, .dtype = R1_F32,
            .block_table = desc->block_table, .seq_lens = s.seq_lens,
        };
        mla_decode_ref(&core, s.q_latent, cache, s.o_latent, s.lse);
        for (int64_t row = 0; row < B * T; ++row)
            for (int64_t head = 0; head < H; ++head)
                unabsorb_output(c, w_uv(c, w, head), s.o_latent + (row * H + head) * r,
                                s.o + (row * H + head) * dv);
    }

    /* 3. The output projection. */
    for (int64_t row = 0; row < B * T; ++row) linear(w->wo, s.o + row * H * dv, out + row * d, d, H * dv);
    return R1_OK;
}
