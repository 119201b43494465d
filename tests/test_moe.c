/*
 * tests/test_moe.c — moe on the CPU backends (ref, fast): bad input, a
 * hand-worked token, golden files, agreement with ref (tests/moe_cases.h),
 * and the size bounds of moe.h's BAD INPUT.
 */
#include <stdint.h>

#include "moe_cases.h"

static void expect_size_error(r1_status status, const char *what, const char *needle) {
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL (%s)", what,
              r1_status_str(status), r1_last_error());
    R1T_CHECK(strstr(r1_last_error(), needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"", what,
              r1_last_error(), needle);
}

/* A valid problem small enough for stack buffers: 2 tokens, hidden 4,
 * 8 experts in 2 groups, top-2 of both groups, blocks of 4. */
static r1_moe_desc tiny_desc(void) {
    r1_moe_desc d = r1_moe_desc_default();
    d.tokens = 2;
    d.hidden = 4;
    d.experts = 8;
    d.n_group = 2;
    d.topk_group = 2;
    d.top_k = 2;
    d.block_size = 4;
    return d;
}

/* Each dimension at INT64_MAX / INT32_MAX or just past its bound: R1_EINVAL
 * naming the argument before any pointer is read (the buffers are tiny);
 * r1_moe_padded_capacity and r1_moe_workspace_size give 0. */
static void size_bounds_case(r1_backend backend) {
    if (!r1t_case("moe_size_bounds(backend=%s)", r1_backend_name(backend))) return;
    r1_moe_desc good = tiny_desc();
    float logits[16] = {0}, w[4], x[8] = {0}, xs[16], y[8];
    int32_t ids[4] = {0, 1, 2, 3}, counts[8], offs[9], perm[4], inv[4];
    int32_t poffs[9], sorted[64], block_expert[16], total;
    r1_moe_dispatch_out dout = {counts, offs, perm, inv, NULL, NULL, NULL, NULL};
    R1T_CHECK(r1_moe_padded_capacity(&good) == 4 + 8 * 3, "padded capacity %lld, expected 28",
              (long long)r1_moe_padded_capacity(&good));
    R1T_CHECK(r1_moe_dispatch(backend, &good, ids, &dout, NULL, 0, NULL) == R1_OK,
              "valid dispatch: %s", r1_last_error());

    r1_moe_desc d = good;
    d.tokens = INT64_MAX;
    r1_clear_error();
    expect_size_error(r1_moe_route(backend, &d, logits, NULL, ids, w, NULL, 0, NULL),
                      "route tokens INT64_MAX", "tokens = 9223372036854775807");
    R1T_CHECK(r1_moe_padded_capacity(&d) == 0, "tokens INT64_MAX: padded capacity %lld",
              (long long)r1_moe_padded_capacity(&d));
    R1T_CHECK(r1_moe_workspace_size(backend, &d) == 0, "tokens INT64_MAX: workspace size not 0");
    d.tokens = R1_MOE_MAX_TOKENS + 1;
    expect_size_error(r1_moe_dispatch(backend, &d, ids, &dout, NULL, 0, NULL),
                      "dispatch tokens 2^25", "tokens = 33554432");
    R1T_CHECK(r1_moe_padded_capacity(&d) == 0, "tokens 2^25: padded capacity %lld",
              (long long)r1_moe_padded_capacity(&d));

    d = good;
    d.block_size = INT32_MAX;
    expect_size_error(r1_moe_dispatch(backend, &d, ids, &dout, NULL, 0, NULL),
                      "dispatch block_size INT32_MAX", "block_size = 2147483647");
    R1T_CHECK(r1_moe_padded_capacity(&d) == 0, "block_size INT32_MAX: padded capacity %lld",
              (long long)r1_moe_padded_capacity(&d));
    d.block_size = R1_MOE_MAX_BLOCK_SIZE + 1;
    R1T_CHECK(r1_moe_padded_capacity(&d) == 0, "block_size 4097: padded capacity %lld",
              (long long)r1_moe_padded_capacity(&d));
    R1T_CHECK(r1_moe_padded_capacity(NULL) == 0, "NULL desc: padded capacity not 0");

    /* the largest T * K with the largest E * (B - 1): above 2^31 - 1, so the
     * int32 padded layout is refused (the unpadded dispatch is not) */
    d = r1_moe_desc_default();
    d.routing = R1_MOE_SOFTMAX_TOPK;
    d.tokens = R1_MOE_MAX_TOKENS;
    d.experts = R1_MOE_MAX_EXPERTS;
    d.top_k = R1_MOE_MAX_TOP_K;
    d.block_size = R1_MOE_MAX_BLOCK_SIZE;
    R1T_CHECK(r1_moe_padded_capacity(&d) ==
                  (int64_t)R1_MOE_MAX_TOKENS * R1_MOE_MAX_TOP_K + 1024LL * 4095,
              "largest padded capacity %lld", (long long)r1_moe_padded_capacity(&d));
    r1_moe_dispatch_out padded = {counts, offs, perm, inv, poffs, sorted, block_expert, &total};
    expect_size_error(r1_moe_dispatch(backend, &d, ids, &padded, NULL, 0, NULL),
                      "padded capacity > 2^31 - 1", "padded capacity");

    d = good;
    d.hidden = INT64_MAX;
    expect_size_error(r1_moe_permute(backend, &d, R1_F32, x, inv, xs, NULL),
                      "permute hidden INT64_MAX", "hidden = 9223372036854775807");
    expect_size_error(r1_moe_combine(backend, &d, R1_F32, xs, inv, w, NULL, y, NULL),
                      "combine hidden INT64_MAX", "hidden = 9223372036854775807");
    d.hidden = ((int64_t)1 << 24) + 1;
    expect_size_error(r1_moe_gate_logits(backend, &d, x, x, logits, NULL), "gate hidden 2^24 + 1",
                      "hidden = 16777217");
    if (backend == R1_REF) {
        float weights_buffer[64] = {0};
        r1_moe_layer_weights lw;
        memset(&lw, 0, sizeof lw);
        lw.gate_weight = weights_buffer;
        lw.w1 = lw.w2 = lw.w3 = weights_buffer;
        lw.intermediate = INT64_MAX;
        expect_size_error(r1_moe_layer(backend, &good, &lw, x, y), "layer intermediate INT64_MAX",
                          "intermediate = 9223372036854775807");
        lw.intermediate = 2;
        lw.shared_intermediate = INT64_MAX;
        expect_size_error(r1_moe_layer(backend, &good, &lw, x, y),
                          "layer shared_intermediate INT64_MAX",
                          "shared_intermediate = 9223372036854775807");
    }
    /* real shapes stay valid: DeepSeek-V3 routing of 2^25 - 1 tokens */
    d = r1_moe_desc_default();
    d.tokens = R1_MOE_MAX_TOKENS;
    R1T_CHECK(r1_moe_padded_capacity(&d) > 0, "V3 with T = 2^25 - 1 rejected: %s",
              r1_last_error());
}


/* Overlapping buffers: an output over an input (or another output) is
 * R1_EINVAL naming both, before any work; the allowed alias (combine
 * y == shared) gives what separate buffers give. */
static void expect_overlap(r1_status got, const char *a, const char *b, const char *what) {
    R1T_CHECK(got == R1_EINVAL && strstr(r1_last_error(), a) && strstr(r1_last_error(), b) &&
                  strstr(r1_last_error(), "must not overlap"),
              "%s: status %s, sentence \"%s\" (want R1_EINVAL naming %s and %s)", what,
              r1_status_str(got), r1_last_error(), a, b);
}

static void overlap_case(r1_backend backend) {
    if (!r1t_case("moe_overlap(backend=%s)", r1_backend_name(backend))) return;
    r1_moe_desc d = tiny_desc();
    float x[8], gw[32], logits[16], big[64], weights[4], bias[8] = {0};
    for (int i = 0; i < 8; ++i) x[i] = 0.25f * (float)(i % 5) - 0.4f;
    for (int i = 0; i < 32; ++i) gw[i] = 0.1f * (float)(i % 7) - 0.3f;
    int32_t ids[4], counts[8], offs[9], perm[4], inv[4];
    /* gate */
    R1T_CHECK(r1_moe_gate_logits(backend, &d, x, gw, logits, NULL) == R1_OK, "gate: %s",
              r1_last_error());
    memcpy(big, x, sizeof x);
    expect_overlap(r1_moe_gate_logits(backend, &d, big, gw, big, NULL), "logits", "x",
                   "gate logits == x");
    memcpy(big, gw, sizeof gw);
    expect_overlap(r1_moe_gate_logits(backend, &d, x, big, big + 20, NULL), "logits",
                   "gate_weight", "gate logits over gate_weight");
    /* route */
    R1T_CHECK(r1_moe_route(backend, &d, logits, bias, ids, weights, NULL, 0, NULL) == R1_OK,
              "route: %s", r1_last_error());
    memcpy(big, logits, sizeof logits);
    expect_overlap(r1_moe_route(backend, &d, big, bias, (int32_t *)big, weights, NULL, 0, NULL),
                   "ids", "logits", "route ids == logits");
    expect_overlap(r1_moe_route(backend, &d, big, bias, ids, big + 3, NULL, 0, NULL), "weights",
                   "logits", "route weights inside logits");
    expect_overlap(r1_moe_route(backend, &d, logits, bias, ids, bias + 2, NULL, 0, NULL),
                   "weights", "bias", "route weights over bias");
    /* weights == logits is refused as well (fast and cuda route tokens in
     * parallel: one token's weights would overwrite another's logits) */
    int32_t ids2[4];
    expect_overlap(r1_moe_route(backend, &d, big, bias, ids2, big, NULL, 0, NULL), "weights",
                   "logits", "route weights == logits");
    /* dispatch */
    r1_moe_dispatch_out dout = {counts, offs, perm, inv, NULL, NULL, NULL, NULL};
    R1T_CHECK(r1_moe_dispatch(backend, &d, ids, &dout, NULL, 0, NULL) == R1_OK, "dispatch: %s",
              r1_last_error());
    int32_t ibuf[4];
    memcpy(ibuf, ids, sizeof ids);
    r1_moe_dispatch_out bad = dout;
    bad.permutation = ibuf;
    expect_overlap(r1_moe_dispatch(backend, &d, ibuf, &bad, NULL, 0, NULL), "out->permutation",
                   "ids", "dispatch permutation == ids");
    bad = dout;
    bad.inverse = counts + 2;
    expect_overlap(r1_moe_dispatch(backend, &d, ids, &bad, NULL, 0, NULL), "out->inverse",
                   "out->counts", "dispatch inverse over counts");
    /* permute */
    memcpy(big, x, sizeof x);
    expect_overlap(r1_moe_permute(backend, &d, R1_F32, big, inv, big, NULL), "x_sorted", "x",
                   "permute x_sorted == x");
    int32_t inverse_copy[16];
    memcpy(inverse_copy, inv, sizeof inv);
    expect_overlap(r1_moe_permute(backend, &d, R1_F32, x, inverse_copy, inverse_copy, NULL),
                   "x_sorted", "inverse", "permute x_sorted == inverse");
    /* combine */
    float eo[16], shared[8], y[8], y2[8];
    for (int i = 0; i < 16; ++i) eo[i] = 0.5f * (float)(i % 6) - 1.0f;
    for (int i = 0; i < 8; ++i) shared[i] = 0.125f * (float)i;
    R1T_CHECK(r1_moe_combine(backend, &d, R1_F32, eo, inv, weights, shared, y, NULL) == R1_OK,
              "combine: %s", r1_last_error());
    memcpy(big, eo, sizeof eo);
    expect_overlap(r1_moe_combine(backend, &d, R1_F32, big, inv, weights, NULL, big, NULL), "y",
                   "expert_out", "combine y == expert_out");
    expect_overlap(r1_moe_combine(backend, &d, R1_F32, eo, inv, weights, NULL, (void *)inv, NULL),
                   "y", "inverse", "combine y == inverse");
    memcpy(big, weights, sizeof weights);
    expect_overlap(r1_moe_combine(backend, &d, R1_F32, eo, inv, big, NULL, big + 2, NULL), "y",
                   "weights", "combine y over weights");
    memcpy(big, shared, sizeof shared);
    expect_overlap(r1_moe_combine(backend, &d, R1_F32, eo, inv, weights, big, big + 1, NULL), "y",
                   "shared", "combine y shifted over shared");
    memcpy(y2, shared, sizeof shared);
    R1T_CHECK(r1_moe_combine(backend, &d, R1_F32, eo, inv, weights, y2, y2, NULL) == R1_OK,
              "combine y == shared (may alias): %s", r1_last_error());
    for (int i = 0; i < 8; ++i)
        R1T_CHECK(y2[i] == y[i], "combine in place y[%d] = %g vs %g", i, (double)y2[i],
                  (double)y[i]);
    /* balance: overlap */
    int32_t load[8];
    double aux;
    float b2[8] = {0};
    r1_moe_balance_out bo = {load, &aux, b2};
    R1T_CHECK(r1_moe_balance(backend, &d, logits, ids, 0.001, 0.001f, &bo) == R1_OK,
              "balance: %s", r1_last_error());
    memcpy(ibuf, ids, sizeof ids);
    r1_moe_balance_out bb = {(int32_t *)ibuf, NULL, NULL};
    expect_overlap(r1_moe_balance(backend, &d, logits, ibuf, 0.001, 0.001f, &bb), "out->load",
                   "ids", "balance load == ids");
    /* a non-finite bias: moe_cases.h, on every backend */
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "moe");
    moe_suite(R1_REF);
    moe_suite(R1_FAST);
    size_bounds_case(R1_REF);
    size_bounds_case(R1_FAST);
    overlap_case(R1_REF);
    overlap_case(R1_FAST);
    return r1t_end();
}
