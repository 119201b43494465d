/*
 * tests/test_mla_cuda.c — the CUDA decode core (bf16 q and cache, fp32
 * accumulation) against the fp32 reference: golden files, mixed-length
 * batches with NaN-filled unused blocks and tails (1, 63, 64, 65, 0 and a
 * long sequence in one batch), h = 16 and 128, s_q = 1 and 2, b = 1 with a
 * long sequence (many KV splits), seq_len 0 and NaN rules, bad input. Exits
 * 77 (skip) where CUDA was not built or no GPU is visible. Each failure
 * prints the case (its full parameter string), the relative L2 and the worst
 * index with both values. --small shrinks the long sequences. The edge cases
 * run on v3 (wgmma, the default on sm_90), again on v2 (mma.sync,
 * R1LAB_MLA_V3=0; the default elsewhere) and on v1 (R1LAB_MLA_V1=1).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "check_mla.h"
#include "harness.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "mla_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    printf("device: %s\n", r1_device_name());
    const uint64_t seed = r1t_seed();
    for (int i = 0; mla_decode_golden_names[i]; ++i)
        if (r1t_case("mla_golden(%s,cuda)", mla_decode_golden_names[i])) {
            check_summary s;
            memset(&s, 0, sizeof s);
            R1T_CHECK(mla_check_decode_golden(R1_CUDA, mla_decode_golden_names[i], &s),
                      "golden %s: worst %s (error / bar = %.3g)", mla_decode_golden_names[i],
                      s.worst_what, s.worst_ratio);
        }
    const int small = r1t_small();
    int32_t mixed[6] = {1, 63, 64, 65, 0, small ? 300 : 4096};
    int32_t single_long[1] = {small ? 1000 : 32768};
    int32_t many[16];
    for (int b = 0; b < 16; ++b) many[b] = 1 + (b * 977) % (small ? 200 : 3000);
    struct { int64_t h, s_q, batch; const int32_t *lengths; const char *what; } cases[] = {
        {16, 1, 6, mixed, "mixed"},   {16, 2, 6, mixed, "mixed"},
        {128, 1, 6, mixed, "mixed"},  {128, 2, 6, mixed, "mixed"},
        {16, 1, 1, single_long, "b=1 long (split-KV)"}, {128, 2, 1, single_long, "b=1 long (split-KV)"},
        {128, 1, 16, many, "16 sequences"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        if (!r1t_case("mla(cuda,b=%lld,s_q=%lld,h=%lld,%s,seed=%llu)", (long long)cases[k].batch,
                      (long long)cases[k].s_q, (long long)cases[k].h, cases[k].what,
                      (unsigned long long)seed))
            continue;
        check_summary s;
        memset(&s, 0, sizeof s);
        R1T_CHECK(mla_check_decode_agreement(R1_CUDA, seed + k, cases[k].h, cases[k].s_q,
                                             cases[k].lengths, cases[k].batch, &s),
                  "cuda vs fp32 ref: %s (error / bar = %.3g)", s.worst_what, s.worst_ratio);
    }
    /* The tensor-core kernels' edges (64-row tiles over s_q * h, 64-key blocks taken
     * in pairs by v3, splits), run on v3 (the default on sm_90), v2
     * (R1LAB_MLA_V3=0) and v1 (R1LAB_MLA_V1=1): lengths around a block and a pair
     * of blocks, a tile that is partly padding (h = 16, 48), tiles that cut
     * across the s_q queries (h = 96, s_q = 2), many splits with one long and one
     * short sequence. */
    int32_t edges[12] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 192, 257};
    int32_t uneven[2] = {small ? 2000 : 20000, 65};
    struct { int64_t h, s_q, batch; const int32_t *lengths; const char *what; } edge_cases[] = {
        {16, 1, 12, edges, "edges"},  {16, 2, 12, edges, "edges"},   {128, 1, 12, edges, "edges"},
        {128, 2, 12, edges, "edges"}, {48, 1, 12, edges, "edges"},   {96, 2, 12, edges, "edges"},
        {32, 2, 12, edges, "edges"},  {128, 2, 2, uneven, "splits"}, {16, 1, 2, uneven, "splits"},
    };
    for (int version = 3; version >= 1; --version) {
        if (version == 2) setenv("R1LAB_MLA_V3", "0", 1);
        if (version == 1) setenv("R1LAB_MLA_V1", "1", 1);
        for (size_t k = 0; k < sizeof edge_cases / sizeof edge_cases[0]; ++k) {
            if (!r1t_case("mla(cuda v%d,b=%lld,s_q=%lld,h=%lld,%s,seed=%llu)", version,
                          (long long)edge_cases[k].batch, (long long)edge_cases[k].s_q,
                          (long long)edge_cases[k].h, edge_cases[k].what, (unsigned long long)seed))
                continue;
            check_summary s;
            memset(&s, 0, sizeof s);
            R1T_CHECK(mla_check_decode_agreement(R1_CUDA, seed + 100 + k, edge_cases[k].h,
                                                 edge_cases[k].s_q, edge_cases[k].lengths,
                                                 edge_cases[k].batch, &s),
                      "cuda v%d vs fp32 ref: %s (error / bar = %.3g)", version, s.worst_what,
                      s.worst_ratio);
        }
    }
    unsetenv("R1LAB_MLA_V1");
    unsetenv("R1LAB_MLA_V3");
    if (r1t_case("mla_empty_and_nan(cuda)")) {
        /* seq 0 empty; seq 1 has NaN in a visible row; seq 2 length 1 with s_q = 2. */
        const int32_t lengths[3] = {0, 70, 1};
        mla_test_cache c;
        R1T_CHECK(mla_test_cache_make(&c, 3, lengths, 576, 2, seed), "cache");
        c.blocks[((int64_t)c.block_table[c.max_blocks_per_seq + 1] * 64 + 3) * 576 + 7] = NAN;
        float q[3 * 2 * 16 * 576], out[3 * 2 * 16 * 512], lse[3 * 2 * 16];
        for (int i = 0; i < 3 * 2 * 16 * 576; ++i) q[i] = (float)((i * 7 % 23) - 11) / 11.0f;
        r1_mla_decode_desc d = {.batch = 3, .s_q = 2, .n_heads = 16, .dim_qk = 576, .dim_v = 512,
                                .max_blocks_per_seq = c.max_blocks_per_seq, .softmax_scale = 0.1,
                                .causal = 1, .dtype = R1_F32, .block_table = c.block_table,
                                .seq_lens = c.lengths};
        r1_status st = mla_decode_on_host(R1_CUDA, &d, q, c.blocks, c.num_blocks, out, lse);
        R1T_CHECK(st == R1_OK, "%s: %s", r1_status_str(st), r1_last_error());
        for (int row = 0; row < 3 * 2 * 16 && st == R1_OK; ++row) {
            int b = row / 32, i = (row / 16) % 2;
            if (b == 0 || (b == 2 && i == 0)) {
                R1T_CHECK(out[row * 512] == 0.0f && out[row * 512 + 511] == 0.0f && isinf(lse[row]) && lse[row] < 0,
                          "row %d (b=%d, query %d) sees no key: want out 0 and lse -inf, got out[0] %g lse %g",
                          row, b, i, (double)out[row * 512], (double)lse[row]);
            } else if (b == 1) {
                R1T_CHECK(isnan(lse[row]) && isnan(out[row * 512]),
                          "row %d: a NaN in a visible cache row must give NaN, got lse %g", row,
                          (double)lse[row]);
            } else {
                R1T_CHECK(isfinite(lse[row]) && isfinite(out[row * 512]),
                          "row %d (b=2, query 1, one key): want finite, got lse %g out %g", row,
                          (double)lse[row], (double)out[row * 512]);
            }
        }
        mla_test_cache_free(&c);
    }
    return r1t_end();
}
