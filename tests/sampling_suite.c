/*
 * tests/sampling_suite.c — the sampling test cases, run per backend by
 * test_sampling (ref, fast) and test_sampling_cuda (cuda):
 *   bad input      every rule of sampling.h's BAD INPUT gives R1_EINVAL and a
 *                  sentence, before any output is touched
 *   hand-worked    small rows whose answers are derived in the comments
 *   golden         every golden/sampling file (numpy, golden/gen/sampling.py)
 *   agreement      100,000 random rows against ref (not for ref itself)
 *   chi-square     100,000 draws against the exact filtered distribution
 */
#include "sampling_suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_sampling.h"
#include "harness.h"
#include "r1lab/philox.h"

/* ---- bad input ---------------------------------------------------------------- */

typedef struct bad_input_fixture {
    float logits[2 * 5];
    r1_sampling_params params[2];
    int32_t history[3];
    int64_t offsets[3];
    int32_t tokens[2];
    int32_t top_ids[2 * 3];
    float top_logprobs[2 * 3];
    r1_sampling_desc desc;
    r1_sampling_outputs out;
    int use_null_logits;
} bad_input_fixture;

static void fixture_reset(bad_input_fixture *f) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 10; ++i) f->logits[i] = (float)i * 0.25f;
    f->params[0] = r1_sampling_params_default();
    f->params[1] = r1_sampling_params_default();
    f->history[0] = 1;
    f->history[1] = 4;
    f->history[2] = 0;
    f->offsets[0] = 0;
    f->offsets[1] = 2;
    f->offsets[2] = 3;
    f->tokens[0] = f->tokens[1] = 777;
    f->desc.batch = 2;
    f->desc.vocab = 5;
    f->desc.logits_dtype = R1_F32;
    f->desc.params = f->params;
    f->desc.history = f->history;
    f->desc.history_offsets = f->offsets;
    f->out.tokens = f->tokens;
}

/* Runs the fixture and expects R1_EINVAL with a sentence containing `word`,
 * and no output written. (The descriptor is host memory for every backend
 * and is rejected before any pointer is dereferenced.) */
static void expect_invalid(r1_backend backend, bad_input_fixture *f, const char *rule,
                           const char *word) {
    if (!r1t_case("sampling bad input(%s,backend=%s)", rule, r1_backend_name(backend))) return;
    r1_clear_error();
    const float *logits = f->use_null_logits ? NULL : f->logits;
    r1_status status = r1_sampling_sample(backend, &f->desc, logits, &f->out, NULL, 0, NULL);
    R1T_CHECK(status == R1_EINVAL, "%s: status %s, expected R1_EINVAL", rule, r1_status_str(status));
    R1T_CHECK(strstr(r1_last_error(), word) != NULL, "%s: sentence \"%s\" does not name \"%s\"",
              rule, r1_last_error(), word);
    R1T_CHECK(f->tokens[0] == 777 && f->tokens[1] == 777, "%s: tokens were written", rule);
}

static void bad_input_cases(r1_backend backend) {
    bad_input_fixture f;
#define BAD(rule, word, mutation)                                                         \
    do {                                                                                  \
        fixture_reset(&f);                                                                \
        mutation;                                                                         \
        expect_invalid(backend, &f, rule, word);                                          \
    } while (0)
    BAD("batch=0", "batch", f.desc.batch = 0);
    BAD("batch<0", "batch", f.desc.batch = -3);
    BAD("vocab=0", "vocab", f.desc.vocab = 0);
    BAD("vocab>int32", "vocab", f.desc.vocab = (int64_t)1 << 33);
    BAD("dtype=i8", "logits_dtype", f.desc.logits_dtype = R1_I8);
    BAD("params=NULL", "params", f.desc.params = NULL);
    BAD("logits=NULL", "logits", f.use_null_logits = 1);
    BAD("tokens=NULL", "tokens", f.out.tokens = NULL);
    BAD("temperature<0", "temperature", f.params[1].temperature = -0.1f);
    BAD("temperature=nan", "temperature", f.params[0].temperature = NAN);
    BAD("temperature=inf", "temperature", f.params[0].temperature = INFINITY);
    BAD("top_k<0", "top_k", f.params[0].top_k = -1);
    BAD("top_p=0", "top_p", f.params[0].top_p = 0.0f);
    BAD("top_p>1", "top_p", f.params[1].top_p = 1.5f);
    BAD("top_p=nan", "top_p", f.params[1].top_p = NAN);
    BAD("min_p<0", "min_p", f.params[0].min_p = -0.01f);
    BAD("min_p=1", "min_p", f.params[0].min_p = 1.0f);
    BAD("repetition_penalty=0", "repetition_penalty", f.params[0].repetition_penalty = 0.0f);
    BAD("repetition_penalty=inf", "repetition_penalty",
        f.params[0].repetition_penalty = INFINITY);
    BAD("presence_penalty=nan", "presence_penalty", f.params[1].presence_penalty = NAN);
    BAD("frequency_penalty=inf", "frequency_penalty", f.params[1].frequency_penalty = -INFINITY);
    BAD("history id>=V", "history", f.history[1] = 5);
    BAD("history id<0", "history", f.history[2] = -1);
    BAD("offsets decrease", "history_offsets", f.offsets[2] = 1);
    BAD("offsets[0]!=0", "history_offsets", f.offsets[0] = 1);
    BAD("history without offsets", "history_offsets", f.desc.history_offsets = NULL);
    BAD("offsets without history", "history", f.desc.history = NULL);
    BAD("top_logprobs>20", "top_logprobs", f.desc.top_logprobs = 21);
    BAD("top_logprobs>V", "top_logprobs", f.desc.top_logprobs = 6);
    BAD("top_logprobs<0", "top_logprobs", f.desc.top_logprobs = -1);
    BAD("top_logprobs without buffers", "top_ids", f.desc.top_logprobs = 3);
#undef BAD
    if (r1t_case("sampling bad input(workspace too small,backend=%s)", r1_backend_name(backend))) {
        fixture_reset(&f);
        char tiny[8];
        size_t needed = r1_sampling_workspace_size(backend, &f.desc);
        if (needed > sizeof tiny) {
            r1_status s = r1_sampling_sample(backend, &f.desc, f.logits, &f.out, tiny,
                                             sizeof tiny, NULL);
            R1T_CHECK(s == R1_EINVAL && strstr(r1_last_error(), "workspace"),
                      "small workspace: %s \"%s\"", r1_status_str(s), r1_last_error());
        }
    }
}

/* ---- hand-worked rows ----------------------------------------------------------- */

static void hand_worked_cases(r1_backend backend) {
    const char *name = r1_backend_name(backend);

    /* Weights 1, .5, .3, .2 (logits = their logs, T = 1) and top_p = .7:
     * the target is .7 * 2 = 1.4; 1 < 1.4 <= 1.5, so ids 0 and 1 stay, with
     * probabilities 2/3 and 1/3. The token is 0 when u * 1.5 < 1. */
    if (r1t_case("sampling hand(top_p=0.7 keeps two,backend=%s)", name)) {
        float logits[4] = {0.0f, logf(0.5f), logf(0.3f), logf(0.2f)};
        r1_sampling_params p = r1_sampling_params_default();
        p.top_p = 0.7f;
        p.seed = 42;
        r1_sampling_desc desc = {.batch = 1, .vocab = 4, .logits_dtype = R1_F32, .params = &p};
        int32_t token;
        float logprob, filtered[4];
        r1_sampling_outputs out = {.tokens = &token, .logprobs = &logprob, .filtered_probs = filtered};
        for (uint64_t step = 0; step < 64; ++step) {
            p.step = step;
            r1_status s = sampling_run_on_host(backend, &desc, logits, &out);
            R1T_CHECK(s == R1_OK, "status %s: %s", r1_status_str(s), r1_last_error());
            double u = r1_sampling_uniform(42, 0, step);
            int32_t expected = u * 1.5 < 1.0 ? 0 : 1;
            R1T_CHECK(token == expected, "step %llu: token %d, expected %d (u = %.6f)",
                      (unsigned long long)step, token, expected, u);
            double expected_logprob = expected == 0 ? log(2.0 / 3.0) : log(1.0 / 3.0);
            R1T_CHECK(fabs(logprob - expected_logprob) < 1e-6, "logprob %.8f, expected %.8f",
                      (double)logprob, expected_logprob);
            R1T_CHECK(fabs(filtered[0] - 2.0 / 3.0) < 1e-6 && fabs(filtered[1] - 1.0 / 3.0) < 1e-6 &&
                          filtered[2] == 0.0f && filtered[3] == 0.0f,
                      "filtered %g %g %g %g", (double)filtered[0], (double)filtered[1],
                      (double)filtered[2], (double)filtered[3]);
        }
    }

    /* Greedy with a tie at the top: ids 1 and 3 both hold 5.0, id 1 wins. */
    if (r1t_case("sampling hand(greedy tie goes to lower id,backend=%s)", name)) {
        float logits[5] = {1.0f, 5.0f, -2.0f, 5.0f, 4.9f};
        r1_sampling_params p = r1_sampling_params_default();
        p.temperature = 0.0f;
        r1_sampling_desc desc = {.batch = 1, .vocab = 5, .logits_dtype = R1_F32, .params = &p};
        int32_t token = -7;
        float logprob = 1.0f;
        r1_sampling_outputs out = {.tokens = &token, .logprobs = &logprob};
        r1_status s = sampling_run_on_host(backend, &desc, logits, &out);
        R1T_CHECK(s == R1_OK && token == 1 && logprob == 0.0f, "status %s token %d logprob %g",
                  r1_status_str(s), token, (double)logprob);
    }

    /* Penalties: logits (2, -1, .5), history (0, 0, 0, 1), repetition 2,
     * frequency .1, presence .5:
     *   id 0: 2 / 2 = 1, minus (.1 * 3 + .5) = .2
     *   id 1: -1 * 2 = -2, minus (.1 * 1 + .5) = -2.6
     *   id 2: untouched .5
     * Greedy picks id 2; at T = 1 the filtered row is softmax(.2, -2.6, .5). */
    if (r1t_case("sampling hand(penalties,backend=%s)", name)) {
        float logits[3] = {2.0f, -1.0f, 0.5f};
        int32_t history[4] = {0, 0, 0, 1};
        int64_t offsets[2] = {0, 4};
        r1_sampling_params p = r1_sampling_params_default();
        p.repetition_penalty = 2.0f;
        p.frequency_penalty = 0.1f;
        p.presence_penalty = 0.5f;
        r1_sampling_desc desc = {.batch = 1, .vocab = 3, .logits_dtype = R1_F32, .params = &p,
                                 .history = history, .history_offsets = offsets};
        int32_t token;
        float filtered[3];
        r1_sampling_outputs out = {.tokens = &token, .filtered_probs = filtered};
        r1_status s = sampling_run_on_host(backend, &desc, logits, &out);
        double e0 = exp(0.2 - 0.5), e1 = exp(-2.6 - 0.5), e2 = 1.0, sum = e0 + e1 + e2;
        R1T_CHECK(s == R1_OK, "status %s", r1_status_str(s));
        R1T_CHECK(fabs(filtered[0] - e0 / sum) < 1e-6 && fabs(filtered[1] - e1 / sum) < 1e-6 &&
                      fabs(filtered[2] - e2 / sum) < 1e-6,
                  "filtered %.7f %.7f %.7f, expected %.7f %.7f %.7f", (double)filtered[0],
                  (double)filtered[1], (double)filtered[2], e0 / sum, e1 / sum, e2 / sum);
        p.temperature = 0.0f;
        s = sampling_run_on_host(backend, &desc, logits, &out);
        R1T_CHECK(s == R1_OK && token == 2, "greedy with penalties: token %d, expected 2", token);
    }

    /* Invalid rows among valid ones: row 1 has a NaN, row 2 a +inf, row 3 is
     * all -inf; rows 0 and 4 are sampled, the call names row 1. */
    if (r1t_case("sampling hand(invalid rows are independent,backend=%s)", name)) {
        enum { B = 5, V = 6 };
        float logits[B * V];
        for (int i = 0; i < B * V; ++i) logits[i] = (float)(i % V) * 0.5f;
        logits[1 * V + 2] = NAN;
        logits[2 * V + 5] = INFINITY;
        for (int i = 0; i < V; ++i) logits[3 * V + i] = -INFINITY;
        r1_sampling_params p[B];
        for (int b = 0; b < B; ++b) p[b] = r1_sampling_params_default();
        p[4].temperature = 0.0f;
        int32_t tokens[B], top_ids[B * 2];
        float logprobs[B], top_logprobs[B * 2];
        r1_sampling_desc desc = {.batch = B, .vocab = V, .logits_dtype = R1_F32, .params = p,
                                 .top_logprobs = 2};
        r1_sampling_outputs out = {.tokens = tokens, .logprobs = logprobs, .top_ids = top_ids,
                                   .top_logprobs = top_logprobs};
        r1_status s = sampling_run_on_host(backend, &desc, logits, &out);
        R1T_CHECK(s == R1_ENUMERIC, "status %s, expected R1_ENUMERIC", r1_status_str(s));
        R1T_CHECK(strstr(r1_last_error(), "row 1") != NULL, "sentence \"%s\" does not name row 1",
                  r1_last_error());
        R1T_CHECK(tokens[1] == -1 && tokens[2] == -1 && tokens[3] == -1, "invalid rows: %d %d %d",
                  tokens[1], tokens[2], tokens[3]);
        R1T_CHECK(isnan(logprobs[1]) && isnan(logprobs[3]), "invalid logprobs not NaN");
        R1T_CHECK(top_ids[2] == -1 && isnan(top_logprobs[2]), "invalid row's top logprobs");
        R1T_CHECK(tokens[0] >= 0 && tokens[0] < V, "row 0 token %d", tokens[0]);
        R1T_CHECK(tokens[4] == V - 1, "row 4 (greedy) token %d, expected %d", tokens[4], V - 1);
        R1T_CHECK(top_ids[0] == 5 && top_ids[1] == 4, "row 0 top ids %d %d", top_ids[0], top_ids[1]);
    }

    /* top-k with a tie at the cut: logits (3, 1, 3, 3, 0) and top_k = 2 keep
     * ids 0 and 2 (the tie at 3 goes to the lower ids), each with 1/2. */
    if (r1t_case("sampling hand(top_k tie at the cut,backend=%s)", name)) {
        float logits[5] = {3.0f, 1.0f, 3.0f, 3.0f, 0.0f};
        r1_sampling_params p = r1_sampling_params_default();
        p.top_k = 2;
        r1_sampling_desc desc = {.batch = 1, .vocab = 5, .logits_dtype = R1_F32, .params = &p};
        int32_t token;
        float filtered[5];
        r1_sampling_outputs out = {.tokens = &token, .filtered_probs = filtered};
        r1_status s = sampling_run_on_host(backend, &desc, logits, &out);
        R1T_CHECK(s == R1_OK && filtered[0] == 0.5f && filtered[2] == 0.5f && filtered[1] == 0 &&
                      filtered[3] == 0 && filtered[4] == 0,
                  "filtered %g %g %g %g %g", (double)filtered[0], (double)filtered[1],
                  (double)filtered[2], (double)filtered[3], (double)filtered[4]);
    }
}

/* ---- the suite -------------------------------------------------------------------- */

static void summary_case(const char *what, r1_backend backend, r1_status status,
                         const check_summary *summary) {
    R1T_CHECK(status == R1_OK, "%s: %s", what, r1_last_error());
    R1T_CHECK(summary->cases_total > 0, "%s ran no case", what);
    R1T_CHECK(summary->cases_passed == summary->cases_total, "%s: %d of %d cases passed", what,
              summary->cases_passed, summary->cases_total);
    printf("  %s backend=%s: %d/%d, worst error %.3g of its bar (%s), %lld boundary mismatches "
           "in %lld rows\n",
           what, r1_backend_name(backend), summary->cases_passed, summary->cases_total,
           summary->worst_ratio, summary->worst_what, (long long)summary->mismatches,
           (long long)summary->rows);
}

void sampling_suite(r1_backend backend) {
    const char *name = r1_backend_name(backend);
    bad_input_cases(backend);
    hand_worked_cases(backend);
    if (r1t_case("sampling golden(backend=%s)", name)) {
        check_summary summary = {0};
        r1_status status = check_sampling_golden(backend, &summary);
        summary_case("golden", backend, status, &summary);
    }
    if (backend != R1_REF && r1t_case("sampling agreement(backend=%s)", name)) {
        check_summary summary = {0};
        int64_t rows = r1t_small() ? 2000 : 100000;
        r1_status status = check_sampling_agreement(backend, r1t_seed(), rows, &summary);
        summary_case("agreement", backend, status, &summary);
        R1T_CHECK(summary.rows >= rows, "agreement covered %lld rows", (long long)summary.rows);
    }
    if (r1t_case("sampling chi-square(backend=%s)", name)) {
        check_summary summary = {0};
        int64_t draws = r1t_small() ? 20000 : 100000;
        r1_status status = check_sampling_chi_square(backend, draws, &summary);
        summary_case("chi-square", backend, status, &summary);
    }
}
