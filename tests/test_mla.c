/*
 * tests/test_mla.c — MLA on the CPU backends (ref, fast): bad input, the
 * defined empty result (seq_len 0), NaN propagation, golden files
 * (transformers' DeepseekV3Attention; a torch decode core at 576 / 512), and
 * agreement ref naive = ref absorbed = fast within fp32 relative L2 1e-5.
 * Unused cache blocks and tails are NaN, so a read outside the block table
 * shows. --small shrinks the long sequence (sanitizer runs).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_mla.h"
#include "harness.h"

static check_summary fresh(void) {
    check_summary s;
    memset(&s, 0, sizeof s);
    return s;
}

/* A small decode call (2 sequences of 10 and 70 tokens, 16 heads, f32) that
 * succeeds as given; the bad-input and overlap cases each break one part. */
typedef struct decode_fixture {
    mla_test_cache c;
    float *q, *out, lse[32];
    r1_mla_cache cache;
    r1_mla_decode_desc desc;
} decode_fixture;

static int decode_fixture_make(decode_fixture *f) {
    const int32_t lengths[2] = {10, 70};
    memset(f, 0, sizeof *f);
    if (!mla_test_cache_make(&f->c, 2, lengths, 576, 1, 3)) return 0;
    f->q = calloc(2 * 16 * 576, sizeof(float));
    f->out = calloc(2 * 16 * 512, sizeof(float));
    f->cache = (r1_mla_cache){f->c.blocks, R1_F32, f->c.num_blocks, 576};
    f->desc = (r1_mla_decode_desc){.batch = 2, .s_q = 1, .n_heads = 16, .dim_qk = 576,
                                   .dim_v = 512, .max_blocks_per_seq = f->c.max_blocks_per_seq,
                                   .softmax_scale = 0.1, .causal = 1, .dtype = R1_F32,
                                   .block_table = f->c.block_table, .seq_lens = f->c.lengths};
    return f->q != NULL && f->out != NULL;
}

static void decode_fixture_free(decode_fixture *f) {
    free(f->q);
    free(f->out);
    mla_test_cache_free(&f->c);
}

static void bad_input(r1_backend backend) {
    decode_fixture f;
    if (!decode_fixture_make(&f)) {
        R1T_CHECK(0, "bad_input: could not build the decode fixture");
        decode_fixture_free(&f);
        return;
    }
    const mla_test_cache *c = &f.c;
    float *q = f.q, *out = f.out, *lse = f.lse;
    const r1_mla_cache cache = f.cache;
    const r1_mla_decode_desc good = f.desc;
    R1T_CHECK(r1_mla_decode(backend, &good, q, &cache, out, lse, NULL, 0, NULL) == R1_OK, "good: %s",
              r1_last_error());
    r1_mla_decode_desc d;
#define EXPECT_BAD(status, mutate)                                                            \
    do {                                                                                      \
        d = good;                                                                             \
        r1_mla_cache cc = cache;                                                              \
        (void)cc;                                                                             \
        mutate;                                                                               \
        r1_status got = r1_mla_decode(backend, &d, q, &cc, out, lse, NULL, 0, NULL);          \
        R1T_CHECK(got == status, "%s: got %s (%s)", #mutate, r1_status_str(got),            \
                  r1_last_error());                                                          \
    } while (0)
    EXPECT_BAD(R1_EINVAL, d.batch = 0);
    EXPECT_BAD(R1_EINVAL, d.s_q = 0);
    EXPECT_BAD(R1_EINVAL, d.n_heads = -1);
    EXPECT_BAD(R1_EINVAL, d.dim_qk = 512);          /* does not match the cache */
    EXPECT_BAD(R1_EINVAL, d.dim_v = 600);           /* dim_v > dim_qk */
    EXPECT_BAD(R1_EINVAL, cc.cache_dim = 512);
    EXPECT_BAD(R1_EINVAL, d.softmax_scale = NAN);
    EXPECT_BAD(R1_EINVAL, d.seq_lens = NULL);
    EXPECT_BAD(R1_EUNSUPPORTED, d.dtype = R1_BF16; cc.dtype = R1_BF16);
    EXPECT_BAD(R1_EINVAL, d.dtype = R1_BF16);       /* cache and desc differ */
    int32_t lens[2] = {10, 70};
    lens[1] = (int32_t)(c->max_blocks_per_seq * 64 + 1);
    EXPECT_BAD(R1_EINVAL, d.seq_lens = lens);        /* beyond the block table */
    lens[1] = -1;
    EXPECT_BAD(R1_EINVAL, d.seq_lens = lens);
    int32_t table[4];
    memcpy(table, c->block_table, sizeof table);
    table[c->max_blocks_per_seq + 1] = (int32_t)c->num_blocks; /* block outside the cache */
    EXPECT_BAD(R1_EINVAL, d.block_table = table);
    table[c->max_blocks_per_seq + 1] = -1;
    EXPECT_BAD(R1_EINVAL, d.block_table = table);
    R1T_CHECK(r1_mla_decode((r1_backend)7, &good, q, &cache, out, lse, NULL, 0, NULL) == R1_EINVAL,
              "backend 7: %s", r1_last_error());
    /* An entry past a sequence's length is ignored. */
    memcpy(table, c->block_table, sizeof table);
    table[1] = 99999;
    EXPECT_BAD(R1_OK, d.block_table = table);
    R1T_CHECK(r1_mla_decode(R1_CUDA, &good, q, &cache, out, lse, NULL, 0, NULL) != R1_OK,
              "cuda with f32 must not run");
#undef EXPECT_BAD
    decode_fixture_free(&f);
}

/* seq_len 0 -> out 0, lse -inf; s_q = 2 causal with seq_len 1 -> query 0 sees nothing. */
/* Sizes: each count at INT64_MAX or 2^31, each dimension past 65536, and
 * products past 2^56 elements are R1_EINVAL naming the argument, before any
 * array is read (the arrays below hold 1 sequence of 1 block); the
 * workspace-size functions give 0 for such descriptors. */
static void expect_size_error(r1_status status, const char *what, const char *needle) {
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL (%s)", what,
              r1_status_str(status), r1_last_error());
    R1T_CHECK(strstr(r1_last_error(), needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"", what,
              r1_last_error(), needle);
}

static void size_bounds(r1_backend backend) {
    float q[2 * 8] = {0}, blocks[64 * 8] = {0}, out[2 * 4], lse[2];
    int32_t table[1] = {0}, lens[1] = {3};
    const r1_mla_decode_desc good = {.batch = 1, .s_q = 1, .n_heads = 2, .dim_qk = 8,
                                     .dim_v = 4, .max_blocks_per_seq = 1, .softmax_scale = 0.5,
                                     .causal = 0, .dtype = R1_F32, .block_table = table,
                                     .seq_lens = lens};
    const r1_mla_cache cache = {blocks, R1_F32, 1, 8};
    R1T_CHECK(r1_mla_decode(backend, &good, q, &cache, out, lse, NULL, 0, NULL) == R1_OK,
              "good: %s", r1_last_error());
    const int64_t big = INT64_MAX, two31 = (int64_t)1 << 31, max32 = INT32_MAX;
    const struct { int field; int64_t value; const char *name, *needle; } cases[] = {
        {0, big, "batch INT64_MAX", "batch = 9223372036854775807"},
        {0, two31, "batch 2^31", "batch = 2147483648"},
        {1, big, "s_q INT64_MAX", "s_q = 9223372036854775807"},
        {2, big, "n_heads INT64_MAX", "n_heads = 9223372036854775807"},
        {2, two31, "n_heads 2^31", "n_heads = 2147483648"},
        {3, big, "max_blocks_per_seq INT64_MAX", "max_blocks_per_seq = 9223372036854775807"},
        {3, two31, "max_blocks_per_seq 2^31", "max_blocks_per_seq = 2147483648"},
        {4, big, "dim_qk INT64_MAX", "dim_qk = 9223372036854775807"},
        {4, 65537, "dim_qk 65537", "dim_qk = 65537"},
        {5, big, "dim_v INT64_MAX", "dim_v = 9223372036854775807"},
        {6, big, "num_blocks INT64_MAX", "cache->num_blocks = 9223372036854775807"},
        {6, two31, "num_blocks 2^31", "cache->num_blocks = 2147483648"},
        {7, max32, "b * s_q * h * dim_qk = (2^31 - 1)^2 * 2 * 8", "batch * s_q * n_heads"},
        {8, max32, "b * s_q * h * dim_qk = 2^31 * 2^31 * ...", "batch * s_q * n_heads"},
        {9, max32, "b * max_blocks_per_seq = (2^31 - 1)^2", "batch * max_blocks_per_seq"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        r1_mla_decode_desc d = good;
        r1_mla_cache c = cache;
        const int64_t v = cases[i].value;
        switch (cases[i].field) {
        case 0: d.batch = v; break;
        case 1: d.s_q = v; break;
        case 2: d.n_heads = v; break;
        case 3: d.max_blocks_per_seq = v; break;
        case 4: d.dim_qk = v; c.cache_dim = v; break;
        case 5: d.dim_v = v; break;
        case 6: c.num_blocks = v; break;
        case 7: d.batch = v; d.s_q = v; break;
        case 8: d.s_q = v; d.n_heads = v; d.dim_qk = 65536; c.cache_dim = 65536; break;
        case 9: d.batch = v; d.max_blocks_per_seq = v; break;
        }
        r1_clear_error();
        expect_size_error(r1_mla_decode(backend, &d, q, &c, out, lse, NULL, 0, NULL),
                          cases[i].name, cases[i].needle);
        if (cases[i].field != 6)
            R1T_CHECK(r1_mla_decode_workspace_size(backend, &d) == 0 &&
                          r1_mla_decode_workspace_size(R1_CUDA, &d) == 0,
                      "%s: decode workspace size not 0", cases[i].name);
    }
    /* a real decode shape stays valid: V3, 128 heads, 2^20 sequences of 2^17 tokens */
    r1_mla_decode_desc real = good;
    real.batch = (int64_t)1 << 20;
    real.s_q = 2;
    real.n_heads = 128;
    real.dim_qk = 576;
    real.dim_v = 512;
    real.max_blocks_per_seq = 2048;
    r1_clear_error();
    (void)r1_mla_decode_workspace_size(backend, &real);
    R1T_CHECK(strcmp(r1_last_error(), "") == 0, "real decode shape rejected: %s",
              r1_last_error());

    /* forward: the descriptor's sizes */
    int32_t start[1] = {0};
    r1_mla_forward_desc fgood = {.config = r1_mla_config_deepseek_v3(), .form = R1_MLA_ABSORBED,
                                 .batch = 1, .s_new = 1, .start_pos = start,
                                 .block_table = table, .max_blocks_per_seq = 1};
    r1_mla_weights weights;
    memset(&weights, 0, sizeof weights);
    r1_mla_cache fcache = {blocks, R1_F32, 1, 576};
    R1T_CHECK(r1_mla_forward_workspace_size(backend, &fgood) > 0, "forward good: %s",
              r1_last_error());
    const struct { int field; int64_t value; const char *name, *needle; } fcases[] = {
        {0, big, "forward batch INT64_MAX", "batch = 9223372036854775807"},
        {1, big, "forward s_new INT64_MAX", "s_new = 9223372036854775807"},
        {1, two31, "forward s_new 2^31", "s_new = 2147483648"},
        {2, big, "forward max_blocks_per_seq INT64_MAX", "max_blocks_per_seq = 9223372036854775807"},
        {3, big, "forward d INT64_MAX", "d = 9223372036854775807"},
        {4, big, "forward n_heads INT64_MAX", "n_heads = 9223372036854775807"},
        {5, big, "forward kv_lora_rank INT64_MAX", "kv_lora_rank = 9223372036854775807"},
        {6, max32, "forward b * s_new * h * dims > 2^56", "more than 2^56"},
        {7, max32, "forward b * max_blocks_per_seq > 2^56", "b * max_blocks_per_seq"},
    };
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; ++i) {
        r1_mla_forward_desc d = fgood;
        const int64_t v = fcases[i].value;
        switch (fcases[i].field) {
        case 0: d.batch = v; break;
        case 1: d.s_new = v; break;
        case 2: d.max_blocks_per_seq = v; break;
        case 3: d.config.d = v; break;
        case 4: d.config.n_heads = v; break;
        case 5: d.config.kv_lora_rank = v; break;
        case 6: d.batch = v; d.s_new = v; break;
        case 7: d.batch = v; d.max_blocks_per_seq = v; break;
        }
        r1_clear_error();
        expect_size_error(r1_mla_forward(backend, &d, &weights, q, &fcache, out, NULL, 0),
                          fcases[i].name, fcases[i].needle);
        R1T_CHECK(r1_mla_forward_workspace_size(backend, &d) == 0,
                  "%s: forward workspace size not 0", fcases[i].name);
    }
    {
        r1_mla_forward_desc d = fgood;
        r1_mla_cache c = fcache;
        c.num_blocks = big;
        expect_size_error(r1_mla_forward(backend, &d, &weights, q, &c, out, NULL, 0),
                          "forward num_blocks INT64_MAX", "cache->num_blocks = 9223372036854775807");
    }
    R1T_CHECK(r1_mla_decode_workspace_size(backend, NULL) == 0, "NULL decode desc: not 0");
    R1T_CHECK(r1_mla_forward_workspace_size(backend, NULL) == 0, "NULL forward desc: not 0");
    r1_clear_error();
    R1T_CHECK(isnan(r1_mla_softmax_scale(NULL)), "softmax_scale(NULL) is not NaN");
    R1T_CHECK(strstr(r1_last_error(), "config is NULL") != NULL,
              "softmax_scale(NULL) sentence: \"%s\"", r1_last_error());
}

static void empty_sequences(r1_backend backend) {
    const int32_t lengths[3] = {0, 1, 5};
    mla_test_cache c;
    R1T_CHECK(mla_test_cache_make(&c, 3, lengths, 576, 1, 5), "cache");
    const int64_t H = 2, S = 2, rows = 3 * S * H;
    float *q = malloc((size_t)rows * 576 * sizeof(float)), *out = malloc((size_t)rows * 512 * sizeof(float));
    float lse[12];
    for (int64_t i = 0; i < rows * 576; ++i) q[i] = (float)((i * 37 % 101) - 50) / 50.0f;
    r1_mla_decode_desc d = {.batch = 3, .s_q = S, .n_heads = H, .dim_qk = 576, .dim_v = 512,
                            .max_blocks_per_seq = c.max_blocks_per_seq, .softmax_scale = 0.1,
                            .causal = 1, .dtype = R1_F32, .block_table = c.block_table,
                            .seq_lens = c.lengths};
    R1T_CHECK(mla_decode_on_host(backend, &d, q, c.blocks, c.num_blocks, out, lse) == R1_OK, "%s",
              r1_last_error());
    for (int64_t row = 0; row < rows; ++row) {
        int64_t b = row / (S * H), i = (row / H) % S;
        int empty = b == 0 || (b == 1 && i == 0);
        int zeros = 1;
        for (int k = 0; k < 512; ++k) zeros &= out[row * 512 + k] == 0.0f;
        if (empty)
            R1T_CHECK(zeros && isinf(lse[row]) && lse[row] < 0,
                      "row %lld (b=%lld, i=%lld) sees no key: want out 0, lse -inf; lse %g",
                      (long long)row, (long long)b, (long long)i, (double)lse[row]);
        else
            R1T_CHECK(isfinite(lse[row]) && !isnan(out[row * 512]), "row %lld: lse %g out %g",
                      (long long)row, (double)lse[row], (double)out[row * 512]);
    }
    free(q);
    free(out);
    mla_test_cache_free(&c);
}

/* NaN in a visible cache row of sequence 0 -> NaN out and lse there only. */
static void nan_propagates(r1_backend backend) {
    const int32_t lengths[2] = {70, 30};
    mla_test_cache c;
    R1T_CHECK(mla_test_cache_make(&c, 2, lengths, 576, 1, 9), "cache");
    int64_t row = (int64_t)c.block_table[1] * 64 + 2; /* token 66 of sequence 0 */
    c.blocks[row * 576 + 100] = NAN;
    float q[2 * 4 * 576], out[2 * 4 * 512], lse[8];
    for (int i = 0; i < 2 * 4 * 576; ++i) q[i] = (float)((i * 13 % 29) - 14) / 14.0f;
    r1_mla_decode_desc d = {.batch = 2, .s_q = 1, .n_heads = 4, .dim_qk = 576, .dim_v = 512,
                            .max_blocks_per_seq = c.max_blocks_per_seq, .softmax_scale = 0.1,
                            .causal = 1, .dtype = R1_F32, .block_table = c.block_table,
                            .seq_lens = c.lengths};
    R1T_CHECK(mla_decode_on_host(backend, &d, q, c.blocks, c.num_blocks, out, lse) == R1_OK, "%s",
              r1_last_error());
    for (int h = 0; h < 4; ++h) {
        R1T_CHECK(isnan(lse[h]) && isnan(out[h * 512]), "seq 0 head %d: NaN must propagate", h);
        R1T_CHECK(isfinite(lse[4 + h]) && isfinite(out[(4 + h) * 512]), "seq 1 head %d: finite", h);
    }
    mla_test_cache_free(&c);
}


/* Overlapping buffers: out or lse over q, the cache or each other is
 * R1_EINVAL naming both arguments, before any work. */
static void overlap(r1_backend backend) {
    decode_fixture f;
    if (!decode_fixture_make(&f)) {
        R1T_CHECK(0, "overlap: could not build the decode fixture");
        decode_fixture_free(&f);
        return;
    }
    const mla_test_cache *c = &f.c;
    float *q = f.q, *out = f.out, *lse = f.lse;
    const r1_mla_cache cache = f.cache;
    const r1_mla_decode_desc d = f.desc;
    const struct { void *out; float *lse; const char *a, *b; } cases[] = {
        {q, lse, "out", "q"},
        {q + 100, lse, "out", "q"},
        {c->blocks, lse, "out", "cache->blocks"},
        {out, q + 5, "lse", "q"},
        {out, c->blocks + 64, "lse", "cache->blocks"},
        {out, out + 31, "lse", "out"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        r1_clear_error();
        r1_status got = r1_mla_decode(backend, &d, q, &cache, cases[i].out, cases[i].lse, NULL, 0,
                                      NULL);
        const char *e = r1_last_error();
        R1T_CHECK(got == R1_EINVAL && strstr(e, cases[i].a) && strstr(e, cases[i].b) &&
                      strstr(e, "must not overlap"),
                  "case %zu (%s over %s): got %s (%s)", i, cases[i].a, cases[i].b,
                  r1_status_str(got), e);
    }
    R1T_CHECK(r1_mla_decode(backend, &d, q, &cache, out, lse, NULL, 0, NULL) == R1_OK,
              "separate buffers: %s", r1_last_error());
    decode_fixture_free(&f);
}

static void suite(r1_backend backend) {
    const char *name = r1_backend_name(backend);
    if (r1t_case("mla_bad_input(%s)", name)) bad_input(backend);
    if (r1t_case("mla_size_bounds(%s)", name)) size_bounds(backend);
    if (r1t_case("mla_overlap(%s)", name)) overlap(backend);
    if (r1t_case("mla_empty(%s)", name)) empty_sequences(backend);
    if (r1t_case("mla_nan(%s)", name)) nan_propagates(backend);
    for (int i = 0; mla_decode_golden_names[i]; ++i)
        if (r1t_case("mla_golden(%s,%s)", mla_decode_golden_names[i], name)) {
            check_summary s = fresh();
            R1T_CHECK(mla_check_decode_golden(backend, mla_decode_golden_names[i], &s),
                      "golden %s", mla_decode_golden_names[i]);
        }
    for (int i = 0; mla_layer_golden_names[i]; ++i)
        for (int form = 0; form < 2; ++form)
            if (r1t_case("mla_golden(%s,%s,%s)", mla_layer_golden_names[i],
                         form ? "absorbed" : "naive", name)) {
                check_summary s = fresh();
                R1T_CHECK(mla_check_layer_golden(backend, (r1_mla_form)form,
                                                 mla_layer_golden_names[i], &s),
                          "golden %s", mla_layer_golden_names[i]);
            }
    const uint64_t seed = r1t_seed();
    for (int form = 0; form < 2; ++form)
        for (int variant = 0; variant < 2; ++variant)
            if (r1t_case("mla_layer(%s,%s,q_lora_rank=%d,yarn=%d,seed=%llu)", name,
                         form ? "absorbed" : "naive", variant ? 0 : 32, variant,
                         (unsigned long long)seed)) {
                check_summary s = fresh();
                R1T_CHECK(mla_check_layer_agreement(backend, (r1_mla_form)form, seed + variant,
                                                    variant ? 0 : 32, variant, &s),
                          "layer agreement");
            }
    if (backend == R1_FAST) {
        int32_t lengths[6] = {1, 63, 64, 65, 0, r1t_small() ? 300 : 4096};
        for (int s_q = 1; s_q <= 2; ++s_q)
            if (r1t_case("mla(b=6,s_q=%d,h=16,s_k=1/63/64/65/0/%d,seed=%llu)", s_q, lengths[5],
                         (unsigned long long)seed)) {
                check_summary s = fresh();
                R1T_CHECK(mla_check_decode_agreement(R1_FAST, seed, 16, s_q, lengths, 6, &s),
                          "fast vs ref");
            }
    }
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "mla");
    suite(R1_REF);
    suite(R1_FAST);
    /* golden/mla/ holds exactly the files golden/MANIFEST lists. */
    if (r1t_case("mla_golden_manifest")) {
        check_summary s = fresh();
        R1T_CHECK(check_golden_manifest("mla", &s) == R1_OK, "%s", r1_last_error());
    }
    return r1t_end();
}
