/*
 * tests/test_kd.c — kd on the CPU backends (ref, fast): golden files, agreement
 * with ref on fresh random inputs, bad input, all tokens ignored, NaN rows,
 * and a finite-difference check of ref's gradient.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_kd.h"
#include "compare.h"
#include "harness.h"
#include "r1lab/kd.h"

#include "kd_suite.c"

/* Central differences of L(s) in float64 through ref (f32 logits, small V):
 * dL/ds_i ~ (L(s + e_i h) - L(s - e_i h)) / 2h. Bar 1e-3 relative L2: L is
 * returned as float32 (rounding ~6e-8 relative), so with h = 1e-2 the
 * difference quotient carries ~1e-5 / 2e-2 absolute noise plus the h^2 term
 * (~1e-4 relative): a wrong term in any gradient formula is off by O(1). */
static void finite_difference_case(float T, float gamma, float beta, int sparse) {
    if (!r1t_case("kd_finite_difference(T=%g,gamma=%g,beta=%g,sparse=%d)", (double)T,
                  (double)gamma, (double)beta, sparse))
        return;
    const int64_t N = 3, V = 17;
    r1t_rng rng = r1t_rng_make(r1t_seed() + 11);
    float s[3 * 17], z[3 * 17], grad[3 * 17], numeric[3 * 17];
    for (int i = 0; i < N * V; ++i) {
        s[i] = (float)(1.5 * r1t_rng_normal(&rng));
        z[i] = (float)(1.5 * r1t_rng_normal(&rng));
    }
    z[5] = -INFINITY; /* a masked entry (not for reverse KL) */
    if (beta == 1.0f) z[5] = 0.3f;
    int32_t labels[3] = {4, -100, 16};
    int32_t ids[3 * 4] = {1, 7, 3, 9, 0, 2, 4, 6, 16, 15, 14, 13};
    float logprobs[3 * 4] = {-0.5f, -1.5f, -2.0f, -4.0f, -1.0f, -1.0f, -2.0f, -3.0f,
                             -0.1f, -3.0f, -INFINITY, -5.0f};
    r1_kd_desc desc = r1_kd_desc_default();
    desc.tokens = N;
    desc.vocab = V;
    desc.temperature = T;
    desc.gamma = gamma;
    desc.beta = beta;
    desc.teacher_topk = sparse ? 4 : 0;
    r1_kd_inputs in = {s, sparse ? NULL : z, sparse ? ids : NULL, sparse ? logprobs : NULL, labels};
    float loss;
    r1_kd_outputs out = {&loss, NULL, grad};
    R1T_CHECK(r1_kd_loss(R1_REF, &desc, &in, &out, NULL, 0, NULL) == R1_OK, "ref: %s",
              r1_last_error());
    const float h = 1e-2f;
    for (int i = 0; i < N * V; ++i) {
        float keep = s[i], plus, minus;
        s[i] = keep + h;
        r1_kd_loss(R1_REF, &desc, &in, &(r1_kd_outputs){&plus, NULL, NULL}, NULL, 0, NULL);
        s[i] = keep - h;
        r1_kd_loss(R1_REF, &desc, &in, &(r1_kd_outputs){&minus, NULL, NULL}, NULL, 0, NULL);
        s[i] = keep;
        /* the perturbed value is what float32 holds: divide by the actual step */
        numeric[i] = (plus - minus) / ((keep + h) - (keep - h));
    }
    r1t_comparison c = r1t_compare_f32("finite difference", grad, numeric, (size_t)(N * V), 1e-3);
    R1T_CHECK(c.ok, "analytic vs numeric gradient: relative L2 %.3e", c.relative_l2);
    for (int i = V; i < 2 * V; ++i) R1T_CHECK(grad[i] == 0.0f, "ignored row gradient [%d] = %g", i, (double)grad[i]);
}

/* Sizes: each dimension at INT64_MAX and products past 2^56 elements are
 * R1_EINVAL with a sentence naming the argument, before any pointer is read
 * (the pointers below are far too small); the workspace-size functions give
 * 0 for such a descriptor. */
static void expect_size_error(r1_status status, const char *what, const char *needle) {
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL", what,
              r1_status_str(status));
    R1T_CHECK(strstr(r1_last_error(), needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"",
              what, r1_last_error(), needle);
}

static void size_bounds_case(r1_backend backend) {
    if (!r1t_case("kd_size_bounds(backend=%s)", r1_backend_name(backend))) return;
    float s[8] = {0}, z[8] = {0}, grad[8], loss, token_losses[2];
    float h[6] = {0}, W[12] = {0}, gh[6], gw[12];
    int32_t labels[2] = {0, 1};
    r1_kd_desc good = r1_kd_desc_default();
    good.tokens = 2;
    good.vocab = 4;
    r1_kd_inputs in = {s, z, NULL, NULL, labels};
    r1_kd_outputs out = {&loss, token_losses, grad};
    R1T_CHECK(r1_kd_loss(backend, &good, &in, &out, NULL, 0, NULL) == R1_OK, "valid: %s",
              r1_last_error());
    R1T_CHECK(r1_kd_workspace_size(backend, &good) > 0, "valid workspace size is 0");
    const struct { int64_t tokens, vocab; const char *name, *needle; } loss_cases[] = {
        {INT64_MAX, 4, "tokens INT64_MAX", "tokens = 9223372036854775807"},
        {(int64_t)1 << 31, 4, "tokens 2^31", "tokens = 2147483648"},
        {2, INT64_MAX, "vocab INT64_MAX", "vocab = 9223372036854775807"},
        {INT32_MAX, INT32_MAX, "N * V = (2^31 - 1)^2", "tokens * vocab"},
        {(int64_t)1 << 30, (int64_t)1 << 27, "N * V = 2^57", "tokens * vocab"},
    };
    for (size_t i = 0; i < sizeof loss_cases / sizeof loss_cases[0]; ++i) {
        r1_kd_desc d = good;
        d.tokens = loss_cases[i].tokens;
        d.vocab = loss_cases[i].vocab;
        r1_clear_error();
        expect_size_error(r1_kd_loss(backend, &d, &in, &out, NULL, 0, NULL), loss_cases[i].name,
                          loss_cases[i].needle);
        R1T_CHECK(r1_kd_workspace_size(backend, &d) == 0, "%s: workspace size %zu, expected 0",
                  loss_cases[i].name, r1_kd_workspace_size(backend, &d));
    }
    /* real shapes stay valid: V = 152064 and 256000 with N = 2^31 - 1 */
    r1_kd_desc real = good;
    real.tokens = INT32_MAX;
    real.vocab = 256000;
    R1T_CHECK(r1_kd_workspace_size(backend, &real) > 0, "N = 2^31 - 1, V = 256000 rejected: %s",
              r1_last_error());
    real.vocab = 152064;
    R1T_CHECK(r1_kd_workspace_size(backend, &real) > 0, "N = 2^31 - 1, V = 152064 rejected: %s",
              r1_last_error());

    r1_kd_linear_desc lgood = {good, 3, 0, 0};
    r1_kd_linear_inputs li = {h, W, NULL, NULL, z, NULL, NULL, labels};
    r1_kd_linear_outputs lo = {&loss, token_losses, gh, gw};
    R1T_CHECK(r1_kd_linear(backend, &lgood, &li, &lo, NULL, 0, NULL) == R1_OK, "linear valid: %s",
              r1_last_error());
    R1T_CHECK(r1_kd_linear_workspace_size(backend, &lgood) > 0, "linear workspace size is 0");
    const struct { int64_t tokens, vocab, hidden, teacher_hidden, chunk; const char *name, *needle; }
        linear_cases[] = {
            {2, 4, INT64_MAX, 0, 0, "hidden INT64_MAX", "hidden = 9223372036854775807"},
            {2, 4, (int64_t)1 << 31, 0, 0, "hidden 2^31", "hidden = 2147483648"},
            {2, 4, 3, INT64_MAX, 0, "teacher_hidden INT64_MAX", "teacher_hidden = 9223372036854775807"},
            {2, 4, 3, -3, 0, "teacher_hidden -3", "teacher_hidden = -3"},
            {2, 4, 3, 0, INT64_MAX, "chunk_tokens INT64_MAX", "chunk_tokens = 9223372036854775807"},
            {2, 4, 3, 0, -5, "chunk_tokens -5", "chunk_tokens = -5"},
            {INT64_MAX, 4, 3, 0, 0, "tokens INT64_MAX", "tokens = 9223372036854775807"},
            {2, INT64_MAX, 3, 0, 0, "vocab INT64_MAX", "vocab = 9223372036854775807"},
            {INT32_MAX, 4, INT32_MAX, 0, 0, "N * d = (2^31 - 1)^2", "tokens * hidden"},
            {2, INT32_MAX, INT32_MAX, 0, 0, "V * d = (2^31 - 1)^2", "vocab * hidden"},
            {(int64_t)1 << 30, 4, (int64_t)1 << 27, 0, 0, "N * d = 2^57", "tokens * hidden"},
            {2, (int64_t)1 << 27, (int64_t)1 << 30, 0, 0, "V * d = 2^57", "vocab * hidden"},
            {INT32_MAX, 4, 3, INT32_MAX, 0, "N * dt = (2^31 - 1)^2", "tokens * teacher_hidden"},
            {2, INT32_MAX, 3, INT32_MAX, 0, "V * dt = (2^31 - 1)^2", "vocab * teacher_hidden"},
        };
    for (size_t i = 0; i < sizeof linear_cases / sizeof linear_cases[0]; ++i) {
        r1_kd_linear_desc d = lgood;
        d.kd.tokens = linear_cases[i].tokens;
        d.kd.vocab = linear_cases[i].vocab;
        d.hidden = linear_cases[i].hidden;
        d.teacher_hidden = linear_cases[i].teacher_hidden;
        d.chunk_tokens = linear_cases[i].chunk;
        r1_clear_error();
        expect_size_error(r1_kd_linear(backend, &d, &li, &lo, NULL, 0, NULL), linear_cases[i].name,
                          linear_cases[i].needle);
        R1T_CHECK(r1_kd_linear_workspace_size(backend, &d) == 0,
                  "linear %s: workspace size %zu, expected 0", linear_cases[i].name,
                  r1_kd_linear_workspace_size(backend, &d));
    }
    /* a real fused shape: N = 2^20, V = 256000, d = dt = 65536 */
    r1_kd_linear_desc lreal = {good, 65536, 65536, 0};
    lreal.kd.tokens = (int64_t)1 << 20;
    lreal.kd.vocab = 256000;
    R1T_CHECK(r1_kd_linear_workspace_size(backend, &lreal) > 0,
              "N = 2^20, V = 256000, d = 65536 rejected: %s", r1_last_error());
    R1T_CHECK(r1_kd_workspace_size(backend, NULL) == 0, "NULL desc: workspace size not 0");
    R1T_CHECK(r1_kd_linear_workspace_size(backend, NULL) == 0,
              "NULL linear desc: workspace size not 0");
}


/* Overlapping buffers: each forbidden overlap is R1_EINVAL naming both
 * arguments before any work; the documented in-place gradient
 * (grad == student_logits) still computes what a separate buffer gets. */
static void expect_overlap(r1_status status, const char *what, const char *a, const char *b) {
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL", what,
              r1_status_str(status));
    R1T_CHECK(strstr(r1_last_error(), a) != NULL && strstr(r1_last_error(), b) != NULL &&
                  strstr(r1_last_error(), "must not overlap") != NULL,
              "%s: sentence \"%s\" does not name %s and %s", what, r1_last_error(), a, b);
}

static void overlap_case(r1_backend backend) {
    if (!r1t_case("kd_overlap(backend=%s)", r1_backend_name(backend))) return;
    enum { N = 4, V = 16, K = 2, D = 3 };
    r1t_rng rng = r1t_rng_make(r1t_seed() + 29);
    float s[N * V], z[N * V], grad[N * V], big[N * V + 64], loss, loss2;
    for (int i = 0; i < N * V; ++i) {
        s[i] = (float)r1t_rng_normal(&rng);
        z[i] = (float)r1t_rng_normal(&rng);
    }
    int32_t labels[N] = {1, 2, 3, 4};
    int32_t ids[N * K] = {0, 1, 2, 3, 4, 5, 6, 7};
    float logprobs[N * K] = {-0.5f, -1.0f, -0.7f, -0.9f, -0.2f, -2.0f, -1.0f, -0.6f};
    r1_kd_desc sparse = r1_kd_desc_default();
    sparse.tokens = N;
    sparse.vocab = V;
    sparse.teacher_topk = K;
    sparse.gamma = 0.5f;
    /* sparse teacher ids inside the gradient (was a crash) */
    memcpy(big, s, sizeof s);
    memcpy(big + 8, ids, sizeof ids);
    r1_kd_inputs in = {s, NULL, (const int32_t *)(big + 8), logprobs, labels};
    r1_kd_outputs out = {&loss, NULL, big};
    r1_clear_error();
    expect_overlap(r1_kd_loss(backend, &sparse, &in, &out, NULL, 0, NULL), "ids in grad",
                   "out->grad", "teacher_ids");
    /* teacher_logprobs == grad */
    in = (r1_kd_inputs){s, NULL, ids, (const float *)grad, labels};
    out = (r1_kd_outputs){&loss, NULL, grad};
    expect_overlap(r1_kd_loss(backend, &sparse, &in, &out, NULL, 0, NULL), "logprobs == grad",
                   "out->grad", "teacher_logprobs");
    /* dense: grad overlapping teacher_logits partially, student_logits partially */
    r1_kd_desc dense = sparse;
    dense.teacher_topk = 0;
    memcpy(big, z, sizeof z);
    in = (r1_kd_inputs){s, big, NULL, NULL, labels};
    out = (r1_kd_outputs){&loss, NULL, big + 5};
    expect_overlap(r1_kd_loss(backend, &dense, &in, &out, NULL, 0, NULL), "grad in teacher",
                   "out->grad", "teacher_logits");
    memcpy(big, s, sizeof s);
    in = (r1_kd_inputs){big, z, NULL, NULL, labels};
    out = (r1_kd_outputs){&loss, NULL, big + 5};
    expect_overlap(r1_kd_loss(backend, &dense, &in, &out, NULL, 0, NULL), "grad in student",
                   "out->grad", "student_logits");
    /* in place (grad == student_logits) equals a separate gradient, dense and sparse */
    for (int form = 0; form < 2; ++form) {
        const r1_kd_desc *d = form ? &sparse : &dense;
        r1_kd_inputs sep = {s, form ? NULL : z, form ? ids : NULL, form ? logprobs : NULL, labels};
        R1T_CHECK(r1_kd_loss(backend, d, &sep, &(r1_kd_outputs){&loss, NULL, grad}, NULL, 0,
                             NULL) == R1_OK, "separate: %s", r1_last_error());
        memcpy(big, s, sizeof s);
        r1_kd_inputs inplace = sep;
        inplace.student_logits = big;
        R1T_CHECK(r1_kd_loss(backend, d, &inplace, &(r1_kd_outputs){&loss2, NULL, big}, NULL, 0,
                             NULL) == R1_OK, "in place: %s", r1_last_error());
        R1T_CHECK(loss == loss2, "form %d: in-place loss %g vs %g", form, (double)loss2,
                  (double)loss);
        for (int i = 0; i < N * V; ++i)
            R1T_CHECK(big[i] == grad[i], "form %d: in-place grad[%d] = %g vs %g", form, i,
                      (double)big[i], (double)grad[i]);
    }
    /* fused linear: grad_hidden / grad_weight against every input */
    float h[N * D], W[V * D], gh[N * D], gw[V * D];
    for (int i = 0; i < N * D; ++i) h[i] = (float)r1t_rng_normal(&rng);
    for (int i = 0; i < V * D; ++i) W[i] = (float)r1t_rng_normal(&rng);
    r1_kd_linear_desc ld = {dense, D, 0, 0};
    r1_kd_linear_inputs li = {h, W, NULL, NULL, z, NULL, NULL, labels};
    R1T_CHECK(r1_kd_linear(backend, &ld, &li, &(r1_kd_linear_outputs){&loss, NULL, gh, gw}, NULL,
                           0, NULL) == R1_OK, "linear valid: %s", r1_last_error());
    expect_overlap(r1_kd_linear(backend, &ld, &li, &(r1_kd_linear_outputs){&loss, NULL, h, gw},
                                NULL, 0, NULL), "grad_hidden == student_hidden",
                   "out->grad_hidden", "student_hidden");
    expect_overlap(r1_kd_linear(backend, &ld, &li, &(r1_kd_linear_outputs){&loss, NULL, gh, W},
                                NULL, 0, NULL), "grad_weight == student_weight",
                   "out->grad_weight", "student_weight");
    memcpy(big, z, sizeof z);
    r1_kd_linear_inputs lz = li;
    lz.teacher_logits = big;
    expect_overlap(r1_kd_linear(backend, &ld, &lz,
                                &(r1_kd_linear_outputs){&loss, NULL, gh, big + N * V - 4}, NULL,
                                0, NULL), "grad_weight in teacher_logits", "out->grad_weight",
                   "teacher_logits");
    expect_overlap(r1_kd_linear(backend, &ld, &li,
                                &(r1_kd_linear_outputs){&loss, NULL, big, big + 2}, NULL, 0,
                                NULL), "grad_hidden overlaps grad_weight", "out->grad_hidden",
                   "out->grad_weight");
    r1_kd_linear_desc lsparse = {sparse, D, 0, 0};
    r1_kd_linear_inputs ls = {h, W, NULL, NULL, NULL, ids, (const float *)gw, labels};
    expect_overlap(r1_kd_linear(backend, &lsparse, &ls,
                                &(r1_kd_linear_outputs){&loss, NULL, gh, gw}, NULL, 0, NULL),
                   "grad_weight == teacher_logprobs", "out->grad_weight", "teacher_logprobs");
    expect_overlap(r1_kd_linear(backend, &ld, &li,
                                &(r1_kd_linear_outputs){&loss, NULL, (float *)labels, gw}, NULL,
                                0, NULL), "grad_hidden == labels", "out->grad_hidden", "labels");
}

/* A student logit near FLT_MAX with T < 1: s / T overflows float32 but not
 * the float64 that ref (and fast's log q) use, so fast must agree with ref,
 * finite gradient included (gamma = 1 once made 0 * inf = NaN there). */
static void huge_student_logit_case(float beta) {
    if (!r1t_case("kd_huge_student_logit(beta=%g)", (double)beta)) return;
    const float student[4] = {3e38f, 1.0f, 0.0f, -1.0f}, teacher[4] = {0.5f, 1.0f, 2.0f, 0.0f};
    float loss[2], token_loss[2], grad[2][4];
    r1_status status[2];
    for (int b = 0; b < 2; ++b) {
        r1_kd_desc d = r1_kd_desc_default();
        d.tokens = 1;
        d.vocab = 4;
        d.temperature = 0.5f;
        d.beta = beta;
        r1_kd_inputs in = {student, teacher, NULL, NULL, NULL};
        r1_kd_outputs out = {&loss[b], &token_loss[b], grad[b]};
        status[b] = r1_kd_loss(b ? R1_FAST : R1_REF, &d, &in, &out, NULL, 0, NULL);
    }
    R1T_CHECK(status[0] == status[1], "fast %s, ref %s", r1_status_str(status[1]),
              r1_status_str(status[0]));
    if (status[0] != R1_OK || status[1] != R1_OK) return;
    R1T_CHECK(fabsf(loss[1] - loss[0]) <= 1e-5f * fabsf(loss[0]), "loss: fast %g, ref %g",
              (double)loss[1], (double)loss[0]);
    for (int i = 0; i < 4; ++i)
        R1T_CHECK(isfinite(grad[1][i]) && fabsf(grad[1][i] - grad[0][i]) <= 1e-5f,
                  "grad[%d]: fast %g, ref %g", i, (double)grad[1][i], (double)grad[0][i]);
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "kd");
    finite_difference_case(1.0f, 1.0f, 0.0f, 0);
    finite_difference_case(2.0f, 0.5f, 0.0f, 0);
    finite_difference_case(4.0f, 0.5f, 1.0f, 0);
    finite_difference_case(1.0f, 1.0f, 1.0f, 0);
    finite_difference_case(2.0f, 0.3f, 0.5f, 0);
    finite_difference_case(1.0f, 1.0f, 0.2f, 0);
    finite_difference_case(2.0f, 0.5f, 0.0f, 1);
    finite_difference_case(1.0f, 0.5f, 0.5f, 1);
    finite_difference_case(1.0f, 0.0f, 0.0f, 0);
    kd_suite(R1_REF);
    kd_suite(R1_FAST);
    size_bounds_case(R1_REF);
    size_bounds_case(R1_FAST);
    overlap_case(R1_REF);
    overlap_case(R1_FAST);
    huge_student_logit_case(0.0f);
    huge_student_logit_case(0.5f);
    return r1t_end();
}
