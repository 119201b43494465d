/*
 * r1lab/mla.h — Multi-head Latent Attention (DeepSeek-V2 §2.1, DeepSeek-V3
 * §2.1.1): the attention layer whose KV cache holds one compressed latent c
 * (kv_lora_rank = 512 values) plus one shared RoPE key k_pe (qk_rope_head_dim
 * = 64) per token, instead of n_heads keys and values.
 *
 * NAMES follow DeepSeek's code: d (hidden), n_heads (h), q_lora_rank (0 = no
 * query compression, as in DeepSeek-V2-Lite), kv_lora_rank (r), qk_nope_head_dim
 * (dn), qk_rope_head_dim (dr), v_head_dim (dv). Weights are row-major
 * (out, in), as torch.nn.Linear stores them.
 *
 * THE LAYER, for one token x (d) at position p:
 *   query   q = W_q x                         (q_lora_rank == 0)
 *           q = W_qb (rmsnorm(W_qa x) * q_norm) otherwise;  q is (h, dn + dr)
 *           q_nope = q[:, :dn], q_pe = rope(q[:, dn:], p)
 *   latent  [c_raw, k_raw] = W_kva x          (r + dr)
 *           c = rmsnorm(c_raw) * kv_norm, k_pe = rope(k_raw, p)
 *           the cache row of this token is [c, k_pe] (576 values)
 *   naive   per head: k_nope_j = W_uk c_j (dn), v_j = W_uv c_j (dv), where
 *           W_ukv = W_kvb is (h * (dn + dv), r) and head i's rows are
 *           [i*(dn+dv), i*(dn+dv)+dn) for W_uk, the next dv for W_uv;
 *           s_j = scale * (q_nope . k_nope_j + q_pe . k_pe_j)
 *           o = sum_j softmax(s)_j v_j;  out = W_o concat_heads(o)
 *   absorbed q_lat = W_uk^T q_nope (r), so q_nope . (W_uk c_j) = q_lat . c_j:
 *           attention is one MQA over the cache rows [c_j, k_pe_j] with the
 *           query [q_lat, q_pe] (576); its output o_lat = sum_j p_j c_j (r),
 *           and o = W_uv o_lat. (ref/mla.c derives this step by step.)
 *   scale   = (dn + dr)^-1/2, times mscale(factor, mscale_all_dim)^2 with YaRN.
 *
 * ROPE. Two layouts of the 64 rotary values, both used in practice:
 *   R1_MLA_ROPE_INTERLEAVED  pairs (x[2i], x[2i+1]) rotate by angle p * f_i
 *                            (DeepSeek's inference/model.py, complex view);
 *   R1_MLA_ROPE_ROTATE_HALF  pairs (x[i], x[i + dr/2]) rotate by p * f_i
 *                            (transformers with rope_interleave = False).
 *   transformers' rope_interleave = True rotates the same pairs as
 *   INTERLEAVED and stores the results de-interleaved (evens then odds);
 *   scores are the same, only the order of k_pe in the cache differs.
 *   f_i = theta^(-2i/dr). YaRN (yarn = 1) blends f_i / factor and f_i with a
 *   ramp over the dimensions between the correction dims of beta_fast and
 *   beta_slow at original_seq_len (floor / ceil, clamped to [0, dr/2 - 1] as
 *   transformers and DeepSeek do), multiplies cos and sin by
 *   mscale(factor, mscale) / mscale(factor, mscale_all_dim) and the softmax
 *   scale by mscale(factor, mscale_all_dim)^2, mscale(s, m) = 0.1 m ln s + 1
 *   (1 when s <= 1). DeepSeek-V3 uses factor 40, original 4096, beta 32 / 1,
 *   mscale = mscale_all_dim = 1.
 *
 * PAGED LATENT CACHE. Blocks of R1_MLA_BLOCK_SIZE = 64 token rows of
 *   cache_dim = r + dr values ([c | k_pe]); token t of sequence b lives in
 *   block block_table[b * max_blocks_per_seq + t / 64], row t % 64. Block ids
 *   must lie in [0, num_blocks) for every block a sequence uses; entries past
 *   a sequence's length are ignored (may be anything, e.g. -1).
 *
 * OVERLAP. Outputs must not overlap inputs: decode's out and lse must not
 *   overlap q, the cache, each other, or (ref, fast) the block table and
 *   seq_lens; forward's out must not overlap x or the cache, and x must not
 *   overlap the cache (the call writes it). Nothing may alias (R1_EINVAL
 *   naming both arguments).
 *
 * DECODE CORE (r1_mla_decode, what FlashMLA computes): queries (b, s_q, h,
 *   cache_dim), the cache, block table and seq_lens (b) -> out (b, s_q, h, dim_v)
 *   and lse (b, s_q, h), dim_v = r (the latent part of each cache row is the
 *   value):  out = sum_j softmax_j(scale * q . K_j) K_j[:dim_v],
 *   lse = ln sum_j exp(scale * q . K_j) (natural log, scale included).
 *   With causal = 1, query i of s_q sees the first seq_len - s_q + 1 + i keys
 *   (the s_q queries are the last s_q tokens, as in multi-token prediction);
 *   with causal = 0 every query sees seq_len keys.
 *   A query that sees no key (seq_len = 0, or causal and seq_len < s_q - i)
 *   gets out = 0 and lse = -inf: defined, and what the combine of split-KV
 *   partials gives for an empty split.
 *
 * NaN. Inputs are not scanned (that would cost a pass over the cache): a NaN
 *   or Inf in a query, or in a cache row that a query sees, makes that query's
 *   out and lse NaN (every backend). Rows a query does not see — past its
 *   length, in blocks not in its table — are never read, so NaN there has no
 *   effect (the tests fill unused blocks and tails with NaN to prove it).
 *   One exception, cuda v2 with causal = 1 and s_q = 2: the queries of a
 *   sequence share each key block, so query 0 also multiplies the one key only
 *   query 1 sees by its zero weight; a NaN or Inf in that row (the sequence's
 *   last) makes query 0's out NaN too.
 *
 * BACKENDS. ref and fast: host pointers, dtype R1_F32 only. cuda: the decode
 *   core only, dtype R1_BF16 (query, cache and out in bf16, fp32 accumulation,
 *   lse fp32), device pointers for q, cache, out, lse and workspace, host
 *   pointers for block_table and seq_lens (validated, then copied into the
 *   workspace) unless desc->device_block_table / device_seq_lens give device
 *   copies (which must hold the same values). r1_mla_forward on cuda returns
 *   R1_EUNSUPPORTED.
 *
 * BAD INPUT (R1_EINVAL before any work, every backend): a config dimension
 *   <= 0 (q_lora_rank < 0), qk_rope_head_dim odd, rope_theta <= 0, YaRN with
 *   factor < 1, original_seq_len <= 0 or beta_fast <= beta_slow; desc dims that
 *   do not match (dim_qk != dim_v + rope dims for forward, dim_v > dim_qk);
 *   batch, s_q (s_new), n_heads, max_blocks_per_seq or num_blocks outside
 *   [1, R1_MLA_MAX_COUNT = 2^31 - 1]; a config dimension, dim_qk or dim_v
 *   above R1_MLA_MAX_DIM = 65536; a tensor of more than R1_MLA_MAX_ELEMENTS =
 *   2^56 elements (decode: b * s_q * h * dim_qk, b * max_blocks_per_seq,
 *   num_blocks * 64 * cache_dim; forward: b * s_new * d, b * s_new * h * head
 *   dims, L * h * head dims and b * s_new * h * L with L the longest
 *   sequence, b * max_blocks_per_seq, the cache), so every byte count fits in
 *   a 64-bit size_t; seq_len < 0 or above max_blocks_per_seq * 64; a block
 *   table entry a sequence uses outside [0, num_blocks); a required pointer
 *   NULL; buffers that overlap (see OVERLAP); an unsupported dtype for the backend; a workspace too small. The
 *   workspace-size functions return 0 (with the sentence in r1_last_error) for
 *   a descriptor that breaks a size rule.
 */
#ifndef R1LAB_MLA_H
#define R1LAB_MLA_H

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define R1_MLA_BLOCK_SIZE 64
#define R1_MLA_MAX_COUNT INT32_MAX            /* batch, s_q, heads, blocks     */
#define R1_MLA_MAX_DIM 65536                  /* config dims, dim_qk, dim_v    */
#define R1_MLA_MAX_ELEMENTS ((int64_t)1 << 56) /* any one tensor or work array */

typedef enum r1_mla_rope_layout {
    R1_MLA_ROPE_INTERLEAVED = 0, /* DeepSeek inference/model.py          */
    R1_MLA_ROPE_ROTATE_HALF = 1  /* transformers, rope_interleave=False  */
} r1_mla_rope_layout;

typedef enum r1_mla_form {
    R1_MLA_NAIVE = 0,   /* expand c into per-head k_nope and v              */
    R1_MLA_ABSORBED = 1 /* fold W_uk into q and W_uv into o: MQA over c     */
} r1_mla_form;

typedef struct r1_mla_config {
    int64_t d;                /* hidden size                              */
    int64_t n_heads;          /* h                                        */
    int64_t q_lora_rank;      /* 0 = W_q directly (V2-Lite); 1536 in V3   */
    int64_t kv_lora_rank;     /* r = 512                                  */
    int64_t qk_nope_head_dim; /* dn = 128                                 */
    int64_t qk_rope_head_dim; /* dr = 64                                  */
    int64_t v_head_dim;       /* dv = 128                                 */
    double rope_theta;        /* 10000                                    */
    r1_mla_rope_layout rope_layout;
    double rms_eps;           /* 1e-6 (q_norm and kv_norm)                */
    int32_t yarn;             /* 0 = plain RoPE                           */
    double rope_factor;       /* YaRN factor (40 in V3)                   */
    int64_t original_seq_len; /* 4096 in V3                               */
    double beta_fast;         /* 32                                       */
    double beta_slow;         /* 1                                        */
    double mscale;            /* 1; cos/sin scale numerator               */
    double mscale_all_dim;    /* 1; softmax scale and cos/sin denominator */
} r1_mla_config;

/* DeepSeek-V3's attention dims (d = 7168, h = 128, q_lora_rank = 1536,
 * r = 512, 128 / 64 / 128, theta 10000, interleaved, YaRN 40 / 4096 / 32 / 1 /
 * 1 / 1). */
r1_mla_config r1_mla_config_deepseek_v3(void);

/* The softmax scale of the config: (dn + dr)^-1/2 * mscale(factor, mscale_all_dim)^2.
 * config NULL: NaN, with the sentence in r1_last_error (a decode call given
 * it as softmax_scale then fails with R1_EINVAL). */
double r1_mla_softmax_scale(const r1_mla_config *config);

/* One layer's weights, float32, row-major (out, in). */
typedef struct r1_mla_weights {
    const float *wq;      /* (h*(dn+dr), d), when q_lora_rank == 0       */
    const float *wq_a;    /* (q_lora_rank, d)                            */
    const float *q_norm;  /* (q_lora_rank)                               */
    const float *wq_b;    /* (h*(dn+dr), q_lora_rank)                    */
    const float *wkv_a;   /* (r + dr, d)                                 */
    const float *kv_norm; /* (r)                                         */
    const float *wkv_b;   /* (h*(dn+dv), r): W_uk and W_uv per head       */
    const float *wo;      /* (d, h*dv)                                   */
} r1_mla_weights;

/* The paged latent cache: blocks is (num_blocks, 64, cache_dim) of `dtype`. */
typedef struct r1_mla_cache {
    void *blocks;
    r1_dtype dtype;     /* R1_F32 (ref, fast) or R1_BF16 (cuda)          */
    int64_t num_blocks;
    int64_t cache_dim;  /* r + dr = 576                                  */
} r1_mla_cache;

/* The decode core's shapes. */
typedef struct r1_mla_decode_desc {
    int64_t batch;              /* b                                       */
    int64_t s_q;                /* queries per sequence (1, or 2 with MTP) */
    int64_t n_heads;            /* h                                       */
    int64_t dim_qk;             /* 576 = cache_dim                         */
    int64_t dim_v;              /* 512: out = softmax . K[:, :dim_v]       */
    int64_t max_blocks_per_seq; /* block_table row stride                  */
    double softmax_scale;
    int32_t causal;             /* see DECODE CORE above                   */
    r1_dtype dtype;             /* of q, cache and out                     */
    const int32_t *block_table; /* (b, max_blocks_per_seq), host           */
    const int32_t *seq_lens;    /* (b), host                               */
    /* cuda only, optional: device copies of the two above. */
    const int32_t *device_block_table;
    const int32_t *device_seq_lens;
} r1_mla_decode_desc;

/* Checks desc, cache and pointers (the rules under BAD INPUT). */
r1_status r1_mla_decode_validate(r1_backend backend, const r1_mla_decode_desc *desc,
                                 const void *q, const r1_mla_cache *cache, const void *out,
                                 const float *lse);

/* Workspace bytes of the decode core (cuda: split-KV partials + tables). */
size_t r1_mla_decode_workspace_size(r1_backend backend, const r1_mla_decode_desc *desc);

/* q (b, s_q, h, dim_qk) -> out (b, s_q, h, dim_v), lse (b, s_q, h) (lse may be
 * NULL). workspace NULL = allocated and freed inside the call. `stream` is a
 * cudaStream_t for cuda (NULL = default stream); the cuda call only enqueues. */
r1_status r1_mla_decode(r1_backend backend, const r1_mla_decode_desc *desc, const void *q,
                        const r1_mla_cache *cache, void *out, float *lse, void *workspace,
                        size_t workspace_bytes, void *stream);

/* The layer over a batch: sequence b already holds start_pos[b] tokens in the
 * cache; the call appends s_new tokens x (b, s_new, d) at positions
 * start_pos[b] .. start_pos[b] + s_new - 1 (writing [c, k_pe] into the cache),
 * then each new token attends causally to every cached token up to its own
 * position, and out (b, s_new, d) = W_o o. Prefill is start_pos = 0 and
 * s_new = the prompt; a decode step is s_new = 1. `form` picks naive or
 * absorbed (the same function; see ref/mla.c). cache dtype R1_F32,
 * cache_dim = r + dr; max_blocks_per_seq * 64 >= start_pos + s_new. */
typedef struct r1_mla_forward_desc {
    r1_mla_config config;
    r1_mla_form form;
    int64_t batch;
    int64_t s_new;
    const int32_t *start_pos;   /* (b)                        */
    const int32_t *block_table; /* (b, max_blocks_per_seq)    */
    int64_t max_blocks_per_seq;
} r1_mla_forward_desc;

r1_status r1_mla_forward_validate(r1_backend backend, const r1_mla_forward_desc *desc,
                                  const r1_mla_weights *weights, const float *x,
                                  const r1_mla_cache *cache, const float *out);
size_t r1_mla_forward_workspace_size(r1_backend backend, const r1_mla_forward_desc *desc);
r1_status r1_mla_forward(r1_backend backend, const r1_mla_forward_desc *desc,
                         const r1_mla_weights *weights, const float *x, r1_mla_cache *cache,
                         float *out, void *workspace, size_t workspace_bytes);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_MLA_H */
