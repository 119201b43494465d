/*
 * tests/kd_suite.c — the kd cases every backend runs (included by test_kd.c
 * and test_kd_cuda.c): golden files, agreement with ref, bad input with its
 * sentence, all tokens ignored, NaN rows naming the token.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_kd.h"
#include "harness.h"
#include "kd_suite.h"

static void golden_case(r1_backend backend) {
    if (!r1t_case("kd_golden(backend=%s)", r1_backend_name(backend))) return;
    check_summary summary = {0};
    r1_status status = check_kd_golden(backend, &summary);
    R1T_CHECK(status == R1_OK, "golden: %s", r1_last_error());
    R1T_CHECK(summary.cases_total >= 15 && summary.cases_passed == summary.cases_total,
              "%d of %d golden cases passed; worst: %s (%.3g x bar)", summary.cases_passed,
              summary.cases_total, summary.worst_what, summary.worst_ratio);
    printf("  golden %s: %d/%d, worst %.3g x bar (%s)\n", r1_backend_name(backend),
           summary.cases_passed, summary.cases_total, summary.worst_ratio, summary.worst_what);
}

static void agreement_case(r1_backend backend) {
    if (backend == R1_REF) return;
    uint64_t seed = r1t_seed();
    if (!r1t_case("kd_agreement(backend=%s,seed=%llu)", r1_backend_name(backend),
                  (unsigned long long)seed))
        return;
    check_summary summary = {0};
    r1_status status = check_kd_agreement(backend, seed, r1t_small() ? 16 : 400, &summary);
    R1T_CHECK(status == R1_OK, "agreement: %s", r1_last_error());
    R1T_CHECK(summary.cases_passed == summary.cases_total,
              "%d of %d random cases agree with ref; worst: %s (%.3g x bar); rerun with R1_SEED=%llu",
              summary.cases_passed, summary.cases_total, summary.worst_what, summary.worst_ratio,
              (unsigned long long)seed);
    printf("  agreement %s: %d/%d, worst %.3g x bar (%s)\n", r1_backend_name(backend),
           summary.cases_passed, summary.cases_total, summary.worst_ratio, summary.worst_what);
}

/* A small valid problem the bad-input cases mutate. */
typedef struct small_problem {
    float s[4 * 8], z[4 * 8], grad[4 * 8], loss, token_losses[4];
    int32_t labels[4], ids[4 * 2];
    float logprobs[4 * 2];
    r1_kd_desc desc;
    r1_kd_inputs in;
    r1_kd_outputs out;
} small_problem;

static void small_problem_make(small_problem *p) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < 32; ++i) {
        p->s[i] = (float)((i * 37) % 11) * 0.3f - 1.0f;
        p->z[i] = (float)((i * 53) % 13) * 0.25f - 1.5f;
    }
    for (int t = 0; t < 4; ++t) {
        p->labels[t] = t * 2;
        p->ids[2 * t] = t;
        p->ids[2 * t + 1] = 7 - t;
        p->logprobs[2 * t] = -0.5f;
        p->logprobs[2 * t + 1] = -1.5f;
    }
    p->desc = r1_kd_desc_default();
    p->desc.tokens = 4;
    p->desc.vocab = 8;
    p->desc.gamma = 0.5f;
    p->in = (r1_kd_inputs){p->s, p->z, NULL, NULL, p->labels};
    p->out = (r1_kd_outputs){&p->loss, p->token_losses, p->grad};
}

static r1_status small_run(r1_backend backend, small_problem *p) {
    return kd_run_on_host(backend, &p->desc, &p->in, &p->out);
}

static void expect_einval(r1_backend backend, small_problem *p, const char *what,
                          const char *needle) {
    r1_clear_error();
    r1_status status = small_run(backend, p);
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL", what, r1_status_str(status));
    R1T_CHECK(strstr(r1_last_error(), needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"", what,
              r1_last_error(), needle);
}

static void bad_input_case(r1_backend backend) {
    if (!r1t_case("kd_bad_input(backend=%s)", r1_backend_name(backend))) return;
    small_problem p;
    small_problem_make(&p);
    R1T_CHECK(small_run(backend, &p) == R1_OK, "the valid problem fails: %s", r1_last_error());
    small_problem_make(&p); p.desc.tokens = 0; expect_einval(backend, &p, "tokens 0", "tokens = 0");
    small_problem_make(&p); p.desc.vocab = -3; expect_einval(backend, &p, "vocab -3", "vocab = -3");
    small_problem_make(&p); p.desc.temperature = 0; expect_einval(backend, &p, "T 0", "temperature = 0");
    small_problem_make(&p); p.desc.temperature = NAN; expect_einval(backend, &p, "T NaN", "temperature");
    /* a subnormal T: 1/T overflows float32 (fast and cuda multiply by it) */
    small_problem_make(&p); p.desc.temperature = 1e-40f; expect_einval(backend, &p, "T subnormal", "FLT_MIN");
    small_problem_make(&p); p.desc.gamma = 1.5f; expect_einval(backend, &p, "gamma 1.5", "gamma = 1.5");
    small_problem_make(&p); p.desc.gamma = -0.1f; expect_einval(backend, &p, "gamma -0.1", "gamma");
    small_problem_make(&p); p.desc.beta = 2.0f; expect_einval(backend, &p, "beta 2", "beta = 2");
    small_problem_make(&p); p.desc.beta = -1e-3f; expect_einval(backend, &p, "beta < 0", "beta");
    small_problem_make(&p); p.labels[2] = 8; expect_einval(backend, &p, "label 8", "labels[2] = 8");
    small_problem_make(&p); p.labels[1] = -1; expect_einval(backend, &p, "label -1", "labels[1] = -1");
    small_problem_make(&p); p.desc.dtype = R1_F16; expect_einval(backend, &p, "dtype f16", "dtype = f16");
    small_problem_make(&p); p.desc.reduction = (r1_kd_reduction)7; expect_einval(backend, &p, "reduction", "reduction = 7");
    small_problem_make(&p); p.desc.reduction = R1_KD_NONE; p.out.token_losses = NULL;
    expect_einval(backend, &p, "NONE without token_losses", "token_losses");
    small_problem_make(&p); p.in.labels = NULL; expect_einval(backend, &p, "labels NULL, gamma 0.5", "labels is NULL");
    small_problem_make(&p); p.in.teacher_logits = NULL; expect_einval(backend, &p, "no teacher", "teacher_logits is NULL");
    small_problem_make(&p); p.out.loss = NULL; expect_einval(backend, &p, "no loss", "out->loss");
    small_problem_make(&p); p.desc.teacher_topk = 9; expect_einval(backend, &p, "topk 9", "teacher_topk = 9");
    small_problem_make(&p); p.desc.teacher_topk = 2; p.in.teacher_ids = p.ids; p.in.teacher_logprobs = p.logprobs;
    p.ids[5] = 8; expect_einval(backend, &p, "sparse id 8", "teacher_ids[2, 1] = 8");
    small_problem_make(&p); p.desc.teacher_topk = 2; p.in.teacher_ids = p.ids; p.in.teacher_logprobs = p.logprobs;
    p.ids[3] = p.ids[2]; expect_einval(backend, &p, "repeated id", "repeats");
    if (backend != R1_CUDA) { /* host pointers only: the overlap test needs both in one buffer */
        small_problem_make(&p); p.out.grad = p.z; expect_einval(backend, &p, "grad over teacher", "overlaps");
    }
}

static void all_ignored_case(r1_backend backend) {
    if (!r1t_case("kd_all_ignored(backend=%s)", r1_backend_name(backend))) return;
    for (int reduction = 0; reduction < 3; ++reduction) {
        small_problem p;
        small_problem_make(&p);
        p.desc.reduction = (r1_kd_reduction)reduction;
        for (int t = 0; t < 4; ++t) p.labels[t] = -100;
        p.s[3] = NAN; /* ignored rows are not inspected */
        memset(p.grad, 0xFF, sizeof p.grad);
        p.loss = NAN;
        r1_status status = small_run(backend, &p);
        R1T_CHECK(status == R1_OK, "reduction %d: %s", reduction, r1_last_error());
        R1T_CHECK(p.loss == 0.0f, "reduction %d: loss %g, expected 0", reduction, (double)p.loss);
        for (int i = 0; i < 32; ++i)
            R1T_CHECK(p.grad[i] == 0.0f, "reduction %d: grad[%d] = %g", reduction, i, (double)p.grad[i]);
        for (int t = 0; t < 4; ++t)
            R1T_CHECK(p.token_losses[t] == 0.0f, "token_losses[%d] = %g", t, (double)p.token_losses[t]);
    }
}

static void numeric_case(r1_backend backend) {
    if (!r1t_case("kd_numeric(backend=%s)", r1_backend_name(backend))) return;
    struct { const char *what; int token; int index; float value; int teacher; float beta; const char *needle; } cases[] = {
        {"student NaN", 2, 3, NAN, 0, 0.0f, "token 2 "},
        {"student +inf", 1, 0, INFINITY, 0, 0.5f, "token 1 "},
        {"teacher NaN", 3, 7, NAN, 1, 0.0f, "token 3 "},
        {"teacher +inf", 0, 1, INFINITY, 1, 0.5f, "token 0 "},
        {"reverse KL over -inf teacher", 1, 2, -INFINITY, 1, 1.0f, "reverse KL"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        small_problem p;
        small_problem_make(&p);
        p.desc.beta = cases[c].beta;
        (cases[c].teacher ? p.z : p.s)[cases[c].token * 8 + cases[c].index] = cases[c].value;
        r1_clear_error();
        r1_status status = small_run(backend, &p);
        R1T_CHECK(status == R1_ENUMERIC, "%s: status %s, expected R1_ENUMERIC", cases[c].what,
                  r1_status_str(status));
        R1T_CHECK(strstr(r1_last_error(), cases[c].needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"",
                  cases[c].what, r1_last_error(), cases[c].needle);
        R1T_CHECK(isnan(p.token_losses[cases[c].token]), "%s: token loss %g, expected NaN",
                  cases[c].what, (double)p.token_losses[cases[c].token]);
        for (int i = 0; i < 8; ++i)
            R1T_CHECK(p.grad[cases[c].token * 8 + i] == 0.0f, "%s: bad row gradient [%d] = %g",
                      cases[c].what, i, (double)p.grad[cases[c].token * 8 + i]);
        int other = (cases[c].token + 1) % 4;
        R1T_CHECK(isfinite(p.token_losses[other]), "%s: other token %d loss %g", cases[c].what,
                  other, (double)p.token_losses[other]);
    }
    /* a teacher row entirely -inf */
    small_problem p;
    small_problem_make(&p);
    for (int i = 0; i < 8; ++i) p.z[8 + i] = -INFINITY;
    R1T_CHECK(small_run(backend, &p) == R1_ENUMERIC && strstr(r1_last_error(), "token 1 "),
              "all -inf teacher row: %s", r1_last_error());
}

void kd_suite(r1_backend backend) {
    bad_input_case(backend);
    all_ignored_case(backend);
    numeric_case(backend);
    golden_case(backend);
    agreement_case(backend);
}
