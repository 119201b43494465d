/*
 * fast/mla.c — Multi-head Latent Attention on the CPU, optimized. Same
 * function as ref/mla.c (semantics in r1lab/mla.h); float32 accumulators in
 * SIMD lanes instead of ref's float64 scalars.
 *
 * Decode core (q (b, s_q, h, D) over the paged cache, D = 576, out dim 512):
 *   v1  one pass with online softmax (ref makes three passes over the keys);
 *       work items are (sequence, query, group of 8 heads), spread over
 *       OpenMP threads; within an item, keys are taken 64 at a time (one
 *       cache block): the 8 x 64 scores of the tile first (each key row read
 *       once for 8 heads), then one rescale of the 8 accumulators by
 *       exp(m_old - m_new), then acc += p_j K_j[:512] — loops the compiler
 *       vectorizes (#pragma omp simd). Keys past a query's length are never
 *       touched, so NaN there cannot leak in.
 * Layer: the same steps as ref (project, naive or absorbed attention,
 *   output projection) with every matrix-vector product parallel over output
 *   rows and vectorized; the absorbed form calls the decode core above.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#define HEAD_GROUP 8
#define KEY_TILE R1_MLA_BLOCK_SIZE

static inline float dot_simd(const float *a, const float *b, int64_t n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < n; ++k) sum += a[k] * b[k];
    return sum;
}

static inline const float *row_of(const r1_mla_cache *cache, const int32_t *table, int64_t t) {
    return (const float *)cache->blocks +
           ((int64_t)table[t / R1_MLA_BLOCK_SIZE] * R1_MLA_BLOCK_SIZE + t % R1_MLA_BLOCK_SIZE) *
               cache->cache_dim;
}

/* Queries q[g] (g < G heads, each D) of one sequence against its first n keys
 * -> out[g] (Dv), lse[g]. acc is (G, Dv) scratch. */
static void attend_head_group(const float *q, int64_t G, const r1_mla_cache *cache,
                              const int32_t *table, int64_t n, int64_t D, int64_t Dv, float scale,
                              float *out, int64_t out_stride, float *lse, float *acc) {
    float m[HEAD_GROUP], l[HEAD_GROUP];
    float scores[HEAD_GROUP][KEY_TILE];
    for (int64_t g = 0; g < G; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
        memset(acc + g * Dv, 0, (size_t)Dv * sizeof(float));
    }
    for (int64_t start = 0; start < n; start += KEY_TILE) {
        const int64_t count = n - start < KEY_TILE ? n - start : KEY_TILE;
        for (int64_t j = 0; j < count; ++j) {
            const float *key = row_of(cache, table, start + j);
            for (int64_t g = 0; g < G; ++g) scores[g][j] = scale * dot_simd(q + g * D, key, D);
        }
        for (int64_t g = 0; g < G; ++g) {
            float tile_max = -INFINITY;
            for (int64_t j = 0; j < count; ++j) tile_max = fmaxf(tile_max, scores[g][j]);
            float m_new = fmaxf(m[g], tile_max);
            float correction = m[g] == -INFINITY ? 0.0f : expf(m[g] - m_new);
            float sum = 0.0f;
            for (int64_t j = 0; j < count; ++j) {
                scores[g][j] = expf(scores[g][j] - m_new);
                sum += scores[g][j];
            }
            l[g] = l[g] * correction + sum;
            m[g] = m_new;
            float *a = acc + g * Dv;
            if (correction != 1.0f) {
#pragma omp simd
                for (int64_t k = 0; k < Dv; ++k) a[k] *= correction;
            }
        }
        for (int64_t j = 0; j < count; ++j) {
            const float *key = row_of(cache, table, start + j);
            for (int64_t g = 0; g < G; ++g) {
                float *a = acc + g * Dv;
                const float p = scores[g][j];
#pragma omp simd
                for (int64_t k = 0; k < Dv; ++k) a[k] += p * key[k];
            }
        }
    }
    for (int64_t g = 0; g < G; ++g) {
        float *o = out + g * out_stride;
        if (n == 0) {
            memset(o, 0, (size_t)Dv * sizeof(float));
            if (lse) lse[g] = -INFINITY;
            continue;
        }
        const float inverse = 1.0f / l[g];
#pragma omp simd
        for (int64_t k = 0; k < Dv; ++k) o[k] = acc[g * Dv + k] * inverse;
        if (lse) lse[g] = m[g] + logf(l[g]);
    }
}

r1_status mla_decode_fast(const r1_mla_decode_desc *desc, const float *q,
                          const r1_mla_cache *cache, float *out, float *lse) {
    const int64_t B = desc->batch, S = desc->s_q, H = desc->n_heads;
    const int64_t D = desc->dim_qk, Dv = desc->dim_v;
    const int64_t groups = (H + HEAD_GROUP - 1) / HEAD_GROUP, items = B * S * groups;
    const float scale = (float)desc->softmax_scale;
    int failed = 0;
#pragma omp parallel
    {
        float *acc = malloc((size_t)(HEAD_GROUP * Dv) * sizeof(float));
        if (acc == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; ++item) {
            if (acc == NULL) continue;
            const int64_t b = item / (S * groups), i = (item / groups) % S, group = item % groups;
            const int64_t h0 = group * HEAD_GROUP;
            const int64_t G = H - h0 < HEAD_GROUP ? H - h0 : HEAD_GROUP;
            int64_t n = desc->seq_lens[b];
            if (desc->causal) n = n - S + 1 + i;
            if (n < 0) n = 0;
            const int64_t row = (b * S + i) * H + h0;
            attend_head_group(q + row * D, G, cache, desc->block_table + b * desc->max_blocks_per_seq,
                              n, D, Dv, scale, out + row * Dv, Dv, lse ? lse + row : NULL, acc);
        }
        free(acc);
    }
    if (failed) return r1_fail(R1_ENOMEM, "fast mla decode: could not allocate scratch");
    return R1_OK;
}

/* ---- the layer ---------------------------------------------------------------- */

/* y (n_out) = W x, parallel over output rows. */
static void linear_fast(const float *w, const float *x, float *y, int64_t n_out, int64_t n_in) {
#pragma omp parallel for schedule(static) if (n_out * n_in > 65536)
    for (int64_t o = 0; o < n_out; ++o) y[o] = dot_simd(w + o * n_in, x, n_in);
}

static void rms_norm_fast(float *x, const float *weight, int64_t n, double eps) {
    float inverse = 1.0f / sqrtf(dot_simd(x, x, n) / (float)n + (float)eps);
    for (int64_t k = 0; k < n; ++k) x[k] = x[k] * inverse * weight[k];
}

static void rope_fast(float *x, int64_t dr, r1_mla_rope_layout layout, const float *cos_table,
                      const float *sin_table) {
    const int64_t half = dr / 2;
    for (int64_t k = 0; k < half; ++k) {
        int64_t first = layout == R1_MLA_ROPE_INTERLEAVED ? 2 * k : k;
        int64_t second = layout == R1_MLA_ROPE_INTERLEAVED ? 2 * k + 1 : k + half;
        float a = x[first], b = x[second];
        x[first] = a * cos_table[k] - b * sin_table[k];
        x[second] = b * cos_table[k] + a * sin_table[k];
    }
}

typedef struct fast_sizes {
    int64_t B, T, H, d, dn, dr, dv, r, qr, L;
} fast_sizes;

static fast_sizes sizes_of(const r1_mla_forward_desc *desc) {
    const r1_mla_config *c = &desc->config;
    fast_sizes s = {desc->batch, desc->s_new, c->n_heads, c->d, c->qk_nope_head_dim,
                    c->qk_rope_head_dim, c->v_head_dim, c->kv_lora_rank, c->q_lora_rank, 0};
    for (int64_t b = 0; b < desc->batch; ++b)
        if (desc->start_pos[b] + desc->s_new > s.L) s.L = desc->start_pos[b] + desc->s_new;
    return s;
}

/* Floats of workspace: q, o, q_latent, o_latent, lse, k_nope, v, probabilities
 * per thread-free loop (L per query-head), projections, RoPE tables, lengths. */
size_t mla_forward_workspace_size_fast(const r1_mla_forward_desc *desc) {
    fast_sizes s = sizes_of(desc);
    const int64_t BT = s.B * s.T;
    int64_t floats = BT * s.H * (s.dn + s.dr) + BT * s.H * s.dv + BT * s.H * (s.r + s.dr) +
                     BT * s.H * s.r + BT * s.H + s.L * s.H * (s.dn + s.dv) + BT * s.H * s.L +
                     BT * (s.qr + 1) + BT * (s.r + s.dr) + s.L * s.dr + s.B + 16 * 64;
    return (size_t)floats * sizeof(float);
}

r1_status mla_forward_fast(const r1_mla_forward_desc *desc, const r1_mla_weights *w,
                           const float *x, r1_mla_cache *cache, float *out, void *workspace) {
    const r1_mla_config *c = &desc->config;
    const fast_sizes s = sizes_of(desc);
    const int64_t B = s.B, T = s.T, H = s.H, d = s.d, dn = s.dn, dr = s.dr, dv = s.dv, r = s.r;
    const int64_t BT = B * T, half = dr / 2;
    float *p = workspace;
    float *q = p; p += BT * H * (dn + dr);
    float *o = p; p += BT * H * dv;
    float *q_latent = p; p += BT * H * (r + dr);
    float *o_latent = p; p += BT * H * r;
    float *lse = p; p += BT * H;
    float *k_nope = p; p += s.L * H * dn;
    float *v = p; p += s.L * H * dv;
    float *probabilities = p; p += BT * H * s.L;
    float *q_lora = p; p += BT * (s.qr + 1);
    float *kv = p; p += BT * (r + dr);
    float *cos_table = p; p += s.L * half;
    float *sin_table = p; p += s.L * half;
    int32_t *seq_lens = (int32_t *)p;

    /* RoPE tables for every position 0 .. L-1 (angles in double, as ref). */
    double inv_freq[512], cos_sin_scale;
    double *frequencies = half <= 512 ? inv_freq : malloc((size_t)half * sizeof(double));
    if (frequencies == NULL) return r1_fail(R1_ENOMEM, "fast mla: RoPE table");
    mla_rope_frequencies_ref(c, frequencies, &cos_sin_scale);
    for (int64_t t = 0; t < s.L; ++t)
        for (int64_t k = 0; k < half; ++k) {
            cos_table[t * half + k] = (float)(cos((double)t * frequencies[k]) * cos_sin_scale);
            sin_table[t * half + k] = (float)(sin((double)t * frequencies[k]) * cos_sin_scale);
        }
    if (frequencies != inv_freq) free(frequencies);

    /* 1. Projections of every new token. */
    for (int64_t row = 0; row < BT; ++row) {
        const int64_t b = row / T, position = desc->start_pos[b] + row % T;
        const float *token = x + row * d;
        float *qr = q + row * H * (dn + dr);
        if (s.qr == 0) {
            linear_fast(w->wq, token, qr, H * (dn + dr), d);
        } else {
            float *lora = q_lora + row * (s.qr + 1);
            linear_fast(w->wq_a, token, lora, s.qr, d);
            rms_norm_fast(lora, w->q_norm, s.qr, c->rms_eps);
            linear_fast(w->wq_b, lora, qr, H * (dn + dr), s.qr);
        }
        for (int64_t head = 0; head < H; ++head)
            rope_fast(qr + head * (dn + dr) + dn, dr, c->rope_layout, cos_table + position * half,
                      sin_table + position * half);
        float *latent = kv + row * (r + dr);
        linear_fast(w->wkv_a, token, latent, r + dr, d);
        rms_norm_fast(latent, w->kv_norm, r, c->rms_eps);
        rope_fast(latent + r, dr, c->rope_layout, cos_table + position * half,
                  sin_table + position * half);
        memcpy((float *)row_of(cache, desc->block_table + b * desc->max_blocks_per_seq, position),
               latent, (size_t)(r + dr) * sizeof(float));
    }

    const float scale = (float)r1_mla_softmax_scale(c);
    if (desc->form == R1_MLA_NAIVE) {
        for (int64_t b = 0; b < B; ++b) {
            const int32_t *table = desc->block_table + b * desc->max_blocks_per_seq;
            const int64_t start = desc->start_pos[b], L = start + T;
            /* Expand the latents: k_nope (L, h, dn), v (L, h, dv). */
#pragma omp parallel for schedule(static)
            for (int64_t jh = 0; jh < L * H; ++jh) {
                const int64_t j = jh / H, head = jh % H;
                const float *latent = row_of(cache, table, j);
                const float *wk = w->wkv_b + head * (dn + dv) * r, *wv = wk + dn * r;
                for (int64_t n = 0; n < dn; ++n) k_nope[jh * dn + n] = dot_simd(wk + n * r, latent, r);
                for (int64_t n = 0; n < dv; ++n) v[jh * dv + n] = dot_simd(wv + n * r, latent, r);
            }
#pragma omp parallel for schedule(static)
            for (int64_t th = 0; th < T * H; ++th) {
                const int64_t t = th / H, head = th % H, visible = start + t + 1;
                const float *qn = q + ((b * T + t) * H + head) * (dn + dr), *qp = qn + dn;
                float *prob = probabilities + ((b * T + t) * H + head) * s.L;
                float m = -INFINITY, total = 0.0f;
                for (int64_t j = 0; j < visible; ++j) {
                    prob[j] = scale * (dot_simd(qn, k_nope + (j * H + head) * dn, dn) +
                                       dot_simd(qp, row_of(cache, table, j) + r, dr));
                    m = fmaxf(m, prob[j]);
                }
                for (int64_t j = 0; j < visible; ++j) total += prob[j] = expf(prob[j] - m);
                float *oh = o + ((b * T + t) * H + head) * dv;
                memset(oh, 0, (size_t)dv * sizeof(float));
                for (int64_t j = 0; j < visible; ++j) {
                    const float pj = prob[j] / total, *vj = v + (j * H + head) * dv;
#pragma omp simd
                    for (int64_t n = 0; n < dv; ++n) oh[n] += pj * vj[n];
                }
            }
        }
    } else {
        /* Absorb: q_latent = [W_uk^T q_nope, q_pe]; W_uk^T as a sum of rows. */
#pragma omp parallel for schedule(static)
        for (int64_t rh = 0; rh < BT * H; ++rh) {
            const int64_t head = rh % H;
            const float *qh = q + rh * (dn + dr), *wk = w->wkv_b + head * (dn + dv) * r;
            float *ql = q_latent + rh * (r + dr);
            memset(ql, 0, (size_t)r * sizeof(float));
            for (int64_t n = 0; n < dn; ++n) {
                const float qn = qh[n], *wrow = wk + n * r;
#pragma omp simd
                for (int64_t k = 0; k < r; ++k) ql[k] += qn * wrow[k];
            }
            memcpy(ql + r, qh + dn, (size_t)dr * sizeof(float));
        }
        for (int64_t b = 0; b < B; ++b) seq_lens[b] = (int32_t)(desc->start_pos[b] + T);
        r1_mla_decode_desc core = {
            .batch = B, .s_q = T, .n_heads = H, .dim_qk = r + dr, .dim_v = r,
            .max_blocks_per_seq = desc->max_blocks_per_seq, .softmax_scale = scale,
            .causal = 1, .dtype = R1_F32, .block_table = desc->block_table, .seq_lens = seq_lens,
        };
        r1_status status = mla_decode_fast(&core, q_latent, cache, o_latent, lse);
        if (status != R1_OK) return status;
#pragma omp parallel for schedule(static)
        for (int64_t rh = 0; rh < BT * H; ++rh) {
            const float *wv = w->wkv_b + (rh % H) * (dn + dv) * r + dn * r;
            for (int64_t n = 0; n < dv; ++n) o[rh * dv + n] = dot_simd(wv + n * r, o_latent + rh * r, r);
        }
    }
    for (int64_t row = 0; row < BT; ++row) linear_fast(w->wo, o + row * H * dv, out + row * d, d, H * dv);
    return R1_OK;
}
