/*
 * tests/check_mla.h — helpers and checks shared by test_mla, test_mla_cuda and
 * `r1lab check` (no harness dependency: each check fills a check_summary and
 * prints what failed).
 *
 * Bars and why (DESIGN.md "Numerics"):
 *   fp32 backends (ref, fast)  relative L2 <= 1e-5 for out and lse: float32
 *       results of sums whose terms are exact products of float32 inputs;
 *       the orders of summation differ (ref float64, fast float32 lanes over
 *       <= 576 terms, ~sqrt(576) * 2^-24 ~ 1.5e-6 relative).
 *   cuda (bf16 q and cache, fp32 accumulation, bf16 out)  out relative L2
 *       <= 1e-2: out is rounded to bf16 (2^-9 relative, 2e-3), and the
 *       softmax weights are rounded to bf16 before the P.V product (another
 *       2^-9 per term, averaging out over the keys); lse (fp32) <= 1e-4:
 *       fp32 scores over 576 exact products, exp2 with the scale folded in.
 *   The reference for cuda is ref in fp32 on the bf16-widened inputs.
 */
#ifndef R1LAB_TESTS_CHECK_MLA_H
#define R1LAB_TESTS_CHECK_MLA_H

#include <stdint.h>

#include "check.h"
#include "r1lab/mla.h"

#define MLA_FP32_BAR 1e-5
#define MLA_BF16_OUT_BAR 1e-2
#define MLA_BF16_LSE_BAR 1e-4

/* A host f32 paged cache for `batch` sequences of lengths[b] tokens:
 * blocks in shuffled order plus `extra_blocks` unused ones; every row a
 * sequence does not cover (unused blocks, the tail of a last block) is NaN,
 * covered rows are N(0, 1) rounded to bf16 (so a bf16 copy is exact). */
typedef struct mla_test_cache {
    float *blocks;              /* (num_blocks, 64, dim) */
    int64_t num_blocks, dim, batch, max_blocks_per_seq;
    int32_t *block_table;       /* (batch, max_blocks_per_seq), -1 where unused */
    int32_t *lengths;           /* (batch) */
} mla_test_cache;

int mla_test_cache_make(mla_test_cache *cache, int64_t batch, const int32_t *lengths,
                        int64_t dim, int64_t extra_blocks, uint64_t seed);
void mla_test_cache_free(mla_test_cache *cache);

/* Runs the decode core on any backend from host f32 buffers; cuda: q and the
 * cache go to the device as bf16, out comes back widened to f32. out and lse
 * are poisoned with NaN first, so an unwritten element shows. */
r1_status mla_decode_on_host(r1_backend backend, const r1_mla_decode_desc *desc, const float *q,
                             const float *blocks, int64_t num_blocks, float *out, float *lse);

/* Golden decode case golden/mla/<name>.safetensors on `backend`. 1 = passed. */
int mla_check_decode_golden(r1_backend backend, const char *name, check_summary *summary);
/* Golden layer case: prefill then one-token decode steps, `form`. */
int mla_check_layer_golden(r1_backend backend, r1_mla_form form, const char *name,
                           check_summary *summary);
/* Random decode batch (real dims 576 / 512) with these lengths: backend vs
 * ref (fp32, on bf16-representable inputs). */
int mla_check_decode_agreement(r1_backend backend, uint64_t seed, int64_t n_heads, int64_t s_q,
                               const int32_t *lengths, int64_t batch, check_summary *summary);
/* Random layer (sequences with different cached lengths) on backend/form vs
 * ref naive: out and the cache rows written. */
int mla_check_layer_agreement(r1_backend backend, r1_mla_form form, uint64_t seed,
                              int64_t q_lora_rank, int yarn, check_summary *summary);

extern const char *const mla_decode_golden_names[];
extern const char *const mla_layer_golden_names[];

#endif
