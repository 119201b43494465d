/*
 * tests/moe_cases.h — the moe test cases shared by test_moe (ref, fast) and
 * test_moe_cuda (cuda), included once by each:
 *   bad input     every rule of moe.h's BAD INPUT, before any output is touched
 *   hand-worked   a V3 token whose routing is derived in the comments
 *   golden        every golden/moe file (transformers and numpy)
 *   agreement     random problems with planted ties against ref (not for ref)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_moe.h"
#include "harness.h"

static void expect_route_status(r1_backend backend, const char *rule, r1_moe_desc desc,
                                const float *logits, const float *bias, r1_status want,
                                const char *word) {
    if (!r1t_case("moe bad input(%s,backend=%s)", rule, r1_backend_name(backend))) return;
    int32_t ids[64];
    float weights[64];
    for (int i = 0; i < 64; ++i) ids[i] = 777;
    r1_clear_error();
    r1_status s = moe_route_on_host(backend, &desc, logits, bias, ids, weights);
    R1T_CHECK(s == want, "%s: status %s, expected %s (%s)", rule, r1_status_str(s),
              r1_status_str(want), r1_last_error());
    R1T_CHECK(strstr(r1_last_error(), word) != NULL, "%s: sentence \"%s\" does not name \"%s\"",
              rule, r1_last_error(), word);
    if (backend != R1_CUDA || want == R1_EINVAL)
        R1T_CHECK(ids[0] == 777, "%s: ids were written", rule);
}

static void moe_bad_input_cases(r1_backend backend) {
    float logits[4 * 16], bias[16];
    for (int i = 0; i < 64; ++i) logits[i] = (float)((i * 7) % 11) * 0.1f;
    for (int i = 0; i < 16; ++i) bias[i] = 0.0f;
    r1_moe_desc base = r1_moe_desc_default();
    base.tokens = 4;
    base.experts = 16;
    base.n_group = 4;
    base.topk_group = 2;
    base.top_k = 4;
    r1_moe_desc d;
#define BAD(rule, word, mutation, want)                                                    \
    do {                                                                                   \
        d = base;                                                                          \
        mutation;                                                                          \
        expect_route_status(backend, rule, d, logits, bias, want, word);                   \
    } while (0)
    BAD("tokens=0", "tokens", d.tokens = 0, R1_EINVAL);
    BAD("experts=0", "experts", d.experts = 0, R1_EINVAL);
    BAD("top_k>E", "top_k", (d.routing = R1_MOE_SOFTMAX_TOPK, d.top_k = 17), R1_EINVAL);
    BAD("top_k=0", "top_k", d.top_k = 0, R1_EINVAL);
    BAD("E%n_group", "n_group", d.n_group = 3, R1_EINVAL);
    BAD("n_group=0", "n_group", d.n_group = 0, R1_EINVAL);
    BAD("topk_group>n_group", "topk_group", d.topk_group = 5, R1_EINVAL);
    BAD("topk_group=0", "topk_group", d.topk_group = 0, R1_EINVAL);
    BAD("top_k>reachable", "topk_group", d.top_k = 9, R1_EINVAL);
    BAD("noaux groups of 1", "top 2", (d.n_group = 16, d.topk_group = 4), R1_EINVAL);
    BAD("routing=7", "routing", d.routing = (r1_moe_routing)7, R1_EINVAL);
    BAD("factor=0", "routed_scaling_factor", d.routed_scaling_factor = 0.0f, R1_EINVAL);
    BAD("factor=nan", "routed_scaling_factor", d.routed_scaling_factor = NAN, R1_EINVAL);
    if (r1t_case("moe bad input(bias with softmax,backend=%s)", r1_backend_name(backend))) {
        d = base;
        d.routing = R1_MOE_SOFTMAX_TOPK;
        int32_t ids[16];
        float w[16];
        r1_status s = r1_moe_route(backend, &d, logits, bias, ids, w, NULL, 0, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "bias"), "%s %s", r1_status_str(s),
                  r1_last_error());
    }
#undef BAD
    /* NaN / Inf logits: R1_ENUMERIC naming the token. */
    logits[2 * 16 + 5] = NAN;
    expect_route_status(backend, "nan logit", base, logits, bias, R1_ENUMERIC, "token 2");
    logits[2 * 16 + 5] = 0.5f;
    logits[3 * 16 + 0] = INFINITY;
    expect_route_status(backend, "inf logit", base, logits, bias, R1_ENUMERIC, "token 3");
    logits[3 * 16 + 0] = 0.5f;
    bias[9] = NAN;
    expect_route_status(backend, "nan bias", base, logits, bias, R1_ENUMERIC, "bias[9]");
    bias[9] = 0.0f;
    /* Balance updates the bias in place: a NaN entry is R1_ENUMERIC naming
     * it, and the bias is left as it was. */
    if (r1t_case("moe bad input(balance nan bias,backend=%s)", r1_backend_name(backend))) {
        int32_t ids[64], load[16];
        float w[64], updated[16] = {0};
        double aux = 0.0;
        r1_status s = moe_route_on_host(backend, &base, logits, bias, ids, w);
        R1T_CHECK(s == R1_OK, "route for balance: %s", r1_last_error());
        updated[5] = NAN;
        r1_moe_balance_out o = {load, &aux, updated};
        if (s == R1_OK) {
            s = moe_balance_on_host(backend, &base, logits, ids, 0.001, 0.001f, &o);
            R1T_CHECK(s == R1_ENUMERIC && strstr(r1_last_error(), "bias[5]"),
                      "balance nan bias: status %s, sentence \"%s\" (want R1_ENUMERIC naming "
                      "bias[5])", r1_status_str(s), r1_last_error());
            R1T_CHECK(isnan(updated[5]) && updated[4] == 0.0f && updated[6] == 0.0f,
                      "balance with a NaN bias must leave the bias as it was");
        }
    }

    /* Dispatch: ids outside [0, E), repeated ids, block size (host ids only). */
    if (backend != R1_CUDA && r1t_case("moe bad input(dispatch ids,backend=%s)", r1_backend_name(backend))) {
        int32_t ids[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        int32_t counts[16], offsets[17], perm[16], inv[16];
        r1_moe_dispatch_out o = {counts, offsets, perm, inv, NULL, NULL, NULL, NULL};
        counts[0] = 777;
        ids[6] = 16;
        r1_status s = r1_moe_dispatch(backend, &base, ids, &o, NULL, 0, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "ids[1][2]"), "%s %s", r1_status_str(s), r1_last_error());
        ids[6] = 4;
        s = r1_moe_dispatch(backend, &base, ids, &o, NULL, 0, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "twice"), "%s %s", r1_status_str(s), r1_last_error());
        ids[6] = 6;
        d = base;
        d.block_size = 0;
        s = r1_moe_dispatch(backend, &d, ids, &o, NULL, 0, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "block_size"), "%s %s", r1_status_str(s), r1_last_error());
        o.inverse = NULL;
        s = r1_moe_dispatch(backend, &base, ids, &o, NULL, 0, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "inverse"), "%s %s", r1_status_str(s), r1_last_error());
        R1T_CHECK(counts[0] == 777, "counts were written by a rejected call");
    }
    if (r1t_case("moe bad input(permute/combine,backend=%s)", r1_backend_name(backend))) {
        d = base;
        d.hidden = 0;
        float x[4], y[4], w[16];
        int32_t rows[16] = {0};
        r1_status s = r1_moe_permute(backend, &d, R1_F32, x, rows, y, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "hidden"), "%s %s", r1_status_str(s), r1_last_error());
        d.hidden = 1;
        s = r1_moe_combine(backend, &d, R1_I8, x, rows, w, NULL, y, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "dtype"), "%s %s", r1_status_str(s), r1_last_error());
        s = r1_moe_combine(backend, &d, R1_F32, x, rows, NULL, NULL, y, NULL);
        R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "weights"), "%s %s", r1_status_str(s), r1_last_error());
    }
    /* An inverse entry outside [0, N): ref / fast refuse it and write nothing;
     * cuda (which cannot stop a queued kernel) skips it, writes the other
     * rows and reads or writes nothing outside the arrays. */
    if (r1t_case("moe bad input(inverse outside [0, N),backend=%s)", r1_backend_name(backend))) {
        d = base;
        d.tokens = 2;
        d.top_k = 2;
        d.hidden = 2;
        const int32_t inverse[4] = {2, 0, 1, 4}; /* N = 4: the last one is outside */
        const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
        const float weights[4] = {0.5f, 0.25f, 2.0f, 8.0f};
        const float expert_out[8] = {10.0f, 20.0f, 30.0f, 40.0f, 50.0f, 60.0f, 70.0f, 80.0f};
        float x_sorted[8], y[4];
        for (int i = 0; i < 8; ++i) x_sorted[i] = -7.0f;
        for (int i = 0; i < 4; ++i) y[i] = -7.0f;
        r1_status s = moe_permute_on_host(backend, &d, R1_F32, x, inverse, x_sorted);
        r1_status c = moe_combine_on_host(backend, &d, R1_F32, expert_out, inverse, weights, NULL, y);
        if (backend != R1_CUDA) {
            R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "inverse[3]"), "permute: %s %s",
                      r1_status_str(s), r1_last_error());
            R1T_CHECK(c == R1_EINVAL, "combine: %s", r1_status_str(c));
            R1T_CHECK(x_sorted[0] == -7.0f && y[0] == -7.0f, "a refused call wrote its output");
        } else {
            R1T_CHECK(s == R1_OK && c == R1_OK, "permute %s, combine %s: %s", r1_status_str(s),
                      r1_status_str(c), r1_last_error());
            /* rows 2, 0 <- token 0 (1, 2); row 1 <- token 1 (3, 4); row 3 untouched */
            const float want_x[8] = {1.0f, 2.0f, 3.0f, 4.0f, 1.0f, 2.0f, -7.0f, -7.0f};
            for (int i = 0; i < 8; ++i)
                R1T_CHECK(x_sorted[i] == want_x[i], "x_sorted[%d] = %g, want %g", i,
                          (double)x_sorted[i], (double)want_x[i]);
            /* y[0] = 0.5 row 2 + 0.25 row 0; y[1] = 2 row 1 (slot 1 skipped) */
            const float want_y[4] = {0.5f * 50.0f + 0.25f * 10.0f, 0.5f * 60.0f + 0.25f * 20.0f,
                                     2.0f * 30.0f, 2.0f * 40.0f};
            for (int i = 0; i < 4; ++i)
                R1T_CHECK(fabsf(y[i] - want_y[i]) <= 1e-5f * fabsf(want_y[i]), "y[%d] = %g, want %g",
                          i, (double)y[i], (double)want_y[i]);
        }
    }
}

/* Hand-worked: E = 8, G = 4 groups of 2, topk_group = 2, K = 2, no bias, factor 2.
 * logits 3 0 | 1 1 | 2 2 | 0 0. sigmoid is increasing, so group sums rank
 * group 0 (s(3)+s(0) = .9526+.5 = 1.4526) and group 2 (2 s(2) = 1.7616) above
 * group 1 (2 s(1) = 1.4621)? No: 1.4621 > 1.4526, so groups 2 and 1 are kept
 * and expert 0 (the largest single score) is not chosen. Inside groups 1, 2:
 * experts 4 and 5 tie at s(2); the lower index, 4, is first, then 5.
 * Weights: s(2)/(2 s(2)) * 2 = 1 each. */
static void moe_hand_worked_cases(r1_backend backend) {
    if (!r1t_case("moe hand(group sum beats the single best expert,backend=%s)", r1_backend_name(backend))) return;
    r1_moe_desc d = r1_moe_desc_default();
    d.experts = 8; d.n_group = 4; d.topk_group = 2; d.top_k = 2; d.routed_scaling_factor = 2.0f;
    float logits[8] = {3, 0, 1, 1, 2, 2, 0, 0};
    int32_t ids[2] = {-5, -5};
    float w[2] = {0, 0};
    r1_status s = moe_route_on_host(backend, &d, logits, NULL, ids, w);
    R1T_CHECK(s == R1_OK, "%s %s", r1_status_str(s), r1_last_error());
    R1T_CHECK(ids[0] == 4 && ids[1] == 5, "ids %d %d, expected 4 5", ids[0], ids[1]);
    R1T_CHECK(fabsf(w[0] - 1.0f) < 1e-6f && fabsf(w[1] - 1.0f) < 1e-6f, "weights %g %g, expected 1 1",
              (double)w[0], (double)w[1]);
    /* With topk_group = 3, group 0 joins and expert 0 (s(3)) wins slot 0. */
    d.topk_group = 3;
    s = moe_route_on_host(backend, &d, logits, NULL, ids, w);
    R1T_CHECK(s == R1_OK && ids[0] == 0 && ids[1] == 4, "ids %d %d, expected 0 4", ids[0], ids[1]);
}

static void moe_suite(r1_backend backend) {
    moe_bad_input_cases(backend);
    moe_hand_worked_cases(backend);
    if (r1t_case("moe golden(backend=%s)", r1_backend_name(backend))) {
        check_summary summary = {0};
        r1_status s = check_moe_golden(backend, &summary);
        R1T_CHECK(s == R1_OK, "golden: %s %s", r1_status_str(s), r1_last_error());
        R1T_CHECK(summary.cases_total > 0 && summary.cases_passed == summary.cases_total,
                  "golden: %d of %d cases passed; worst %s (error/bar %.3g)", summary.cases_passed,
                  summary.cases_total, summary.worst_what, summary.worst_ratio);
    }
    if (backend != R1_REF && r1t_case("moe agreement(backend=%s,seed=%llu)", r1_backend_name(backend),
                                      (unsigned long long)r1t_seed())) {
        check_summary summary = {0};
        r1_status s = check_moe_agreement(backend, r1t_seed(), r1t_small() ? 600 : 20000, &summary);
        R1T_CHECK(s == R1_OK, "agreement: %s %s", r1_status_str(s), r1_last_error());
        R1T_CHECK(summary.cases_total > 0 && summary.cases_passed == summary.cases_total,
                  "agreement: %d of %d problems passed; worst %s (error/bar %.3g)",
                  summary.cases_passed, summary.cases_total, summary.worst_what, summary.worst_ratio);
    }
}
