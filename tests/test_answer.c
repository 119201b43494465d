/*
 * tests/test_answer.c — answer extraction and equivalence on ref and fast:
 * bad input (the same error on both), every golden case, the randomized
 * metamorphic corpus (expected verdicts, ref == fast), the bounds (huge
 * exponents and deep nesting answer at once), r1_answer_check_response and
 * thread safety. R1_SEED sets the corpus seed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "harness.h"
#include "r1lab/answer.h"

r1_status answer_check_golden(r1_backend backend, check_summary *summary);
r1_status answer_check_agreement(r1_backend backend, uint64_t seed, int64_t items, check_summary *summary);

static void bad_input(r1_backend backend) {
    char out[64];
    r1_answer_extraction e;
    r1_answer_verdict v;
    size_t n;
    if (r1t_case("bad_input(%s)", r1_backend_name(backend))) {
        R1T_CHECK(r1_answer_extract(backend, NULL, 3, NULL, out, sizeof out, &e) == R1_EINVAL, "NULL text with a length");
        R1T_CHECK(strstr(r1_last_error(), "text") != NULL, "the sentence names text: %s", r1_last_error());
        R1T_CHECK(r1_answer_extract(backend, "x", 1, NULL, NULL, 5, &e) == R1_EINVAL, "NULL answer with a capacity");
        R1T_CHECK(r1_answer_extract(backend, "x", 1, NULL, out, sizeof out, NULL) == R1_EINVAL, "NULL result");
        R1T_CHECK(r1_answer_extract(backend, NULL, 0, NULL, NULL, 0, &e) == R1_OK && !e.found, "empty input is fine");
        r1_answer_options o = r1_answer_options_default();
        o.relative_tolerance = -1;
        R1T_CHECK(r1_answer_equal(backend, "1", 1, "1", 1, &o, &v) == R1_EINVAL, "negative tolerance");
        R1T_CHECK(strstr(r1_last_error(), "relative_tolerance") != NULL, "names the option: %s", r1_last_error());
        o = r1_answer_options_default();
        o.fallbacks = 1u << 20;
        R1T_CHECK(r1_answer_equal(backend, "1", 1, "1", 1, &o, &v) == R1_EINVAL, "unknown fallback bits");
        R1T_CHECK(r1_answer_equal(backend, "1", 1, "1", 1, NULL, NULL) == R1_EINVAL, "NULL verdict");
        R1T_CHECK(r1_answer_normalize(backend, "1", 1, out, 0, &n) == R1_EINVAL, "zero capacity");
        static char long_answer[R1_ANSWER_MAX_LENGTH + 2];
        memset(long_answer, '1', sizeof long_answer);
        R1T_CHECK(r1_answer_normalize(backend, long_answer, sizeof long_answer, out, sizeof out, &n) == R1_EINVAL,
                  "answer above R1_ANSWER_MAX_LENGTH");
        R1T_CHECK(r1_answer_equal(backend, long_answer, sizeof long_answer, long_answer, sizeof long_answer, NULL, &v) == R1_OK &&
                      v.equal && v.rule == R1_ANSWER_RULE_STRING,
                  "long identical answers are equal as text");
        R1T_CHECK(r1_answer_equal(backend, long_answer, sizeof long_answer, "1", 1, NULL, &v) == R1_OK && !v.equal,
                  "long vs short: not equal");
    }
}

static void cuda_unsupported(void) {
    if (r1t_case("cuda_unsupported")) {
        r1_answer_verdict v;
        R1T_CHECK(r1_answer_equal(R1_CUDA, "1", 1, "1", 1, NULL, &v) == R1_EUNSUPPORTED, "CUDA is unsupported");
        R1T_CHECK(r1_answer_equal((r1_backend)7, "1", 1, "1", 1, NULL, &v) == R1_EINVAL, "unknown backend");
    }
}

static void golden(r1_backend backend) {
    if (r1t_case("golden(%s)", r1_backend_name(backend))) {
        check_summary summary;
        memset(&summary, 0, sizeof summary);
        summary.verbose = 1;
        r1_status status = answer_check_golden(backend, &summary);
        R1T_CHECK(status == R1_OK, "golden files readable: %s", r1_last_error());
        R1T_CHECK(summary.cases_total >= 300, "at least 300 golden cases (%d)", summary.cases_total);
        R1T_CHECK(summary.cases_passed == summary.cases_total, "%d of %d golden cases failed; first worst: %s",
                  summary.cases_total - summary.cases_passed, summary.cases_total, summary.worst_what);
        printf("  golden(%s): %d/%d cases\n", r1_backend_name(backend), summary.cases_passed, summary.cases_total);
    }
}

static void agreement(void) {
    uint64_t seed = r1t_seed();
    int64_t items = r1t_small() ? 300 : 20000;
    if (r1t_case("agreement(items=%lld,seed=%llu)", (long long)items, (unsigned long long)seed)) {
        check_summary summary;
        memset(&summary, 0, sizeof summary);
        answer_check_agreement(R1_FAST, seed, items, &summary);
        R1T_CHECK(summary.cases_passed == summary.cases_total, "metamorphic corpus: %s", summary.worst_what);
    }
}

/* A hang guard, not a speed target: tests never assert timings (a loaded
 * machine or a sanitizer build is slow). Each of these answers takes
 * microseconds; an unbounded evaluation (2^{2^{64}} multiplied out, 1024
 * levels of recursion without the depth limit) would take far longer than
 * this. */
#define HANG_GUARD_SECONDS 2.0

static void bounds(r1_backend backend) {
    if (r1t_case("bounds(%s)", r1_backend_name(backend))) {
        static const char *const hard[] = {"2^{2^{64}}", "2^{2^{2^{2^{2^{2}}}}}", "10^{10^{10}}",
                                           "9^{9^{9^{9}}}x", "(x+1)^{100000}", "\\sqrt{\\sqrt{\\sqrt{2^{9999}}}}"};
        for (size_t k = 0; k < sizeof hard / sizeof hard[0]; ++k) {
            double start = check_now();
            r1_answer_verdict v;
            r1_status s = r1_answer_equal(backend, hard[k], strlen(hard[k]), "1", 1, NULL, &v);
            double seconds = check_now() - start;
            R1T_CHECK(s == R1_OK && !v.equal, "%s vs 1: not equal (got %d, %s)", hard[k], v.equal, r1_answer_rule_name(v.rule));
            R1T_CHECK(seconds < HANG_GUARD_SECONDS, "%s answered in %.3f s: a hang (guard %.0f s)", hard[k], seconds,
                      HANG_GUARD_SECONDS);
        }
        char deep[R1_ANSWER_MAX_LENGTH + 1];
        for (int k = 0; k < R1_ANSWER_MAX_LENGTH / 2; ++k) deep[k] = '(', deep[R1_ANSWER_MAX_LENGTH - 1 - k] = ')';
        deep[R1_ANSWER_MAX_LENGTH / 2 - 1] = '1';
        deep[R1_ANSWER_MAX_LENGTH / 2] = '+';
        deep[R1_ANSWER_MAX_LENGTH] = '\0';
        double start = check_now();
        r1_answer_verdict v;
        R1T_CHECK(r1_answer_equal(backend, deep, strlen(deep), "1", 1, NULL, &v) == R1_OK && !v.equal,
                  "1024 nested parentheses: not equal");
        double seconds = check_now() - start;
        R1T_CHECK(seconds < HANG_GUARD_SECONDS, "1024 nested parentheses answered in %.3f s: a hang (guard %.0f s)", seconds,
                  HANG_GUARD_SECONDS);
    }
}

static void check_response(void) {
    if (r1t_case("check_response")) {
        static const char response[] = "<think>maybe \\boxed{3}</think>So \\boxed{\\frac{1}{2}}.";
        char answer[8];
        int found = -1, truncated = -1, correct = -1;
        R1T_CHECK(r1_answer_check_response(response, sizeof response - 1, "0.5", R1_ANSWER_GOLD_PLAIN, answer,
                                           sizeof answer, &found, &truncated, &correct) == R1_OK,
                  "runs");
        R1T_CHECK(found == 1 && truncated == 0 && correct == 1, "found %d truncated %d correct %d", found, truncated, correct);
        R1T_CHECK(strcmp(answer, "\\frac{1") == 0, "answer cut to capacity - 1: \"%s\"", answer);
        R1T_CHECK(r1_answer_check_response(response, 10, "0.5", R1_ANSWER_GOLD_PLAIN, NULL, 0, &found, &truncated,
                                           &correct) == R1_OK && truncated == 1 && found == 0 && correct == 0,
                  "a prefix (not NUL-terminated) is truncated");
        R1T_CHECK(r1_answer_check_response(response, sizeof response - 1, NULL, R1_ANSWER_GOLD_PLAIN, NULL, 0, &found,
                                           &truncated, &correct) == R1_EINVAL, "NULL gold");
        R1T_CHECK(r1_answer_check_response(response, sizeof response - 1, "1", (r1_answer_gold_format)9, NULL, 0,
                                           &found, &truncated, &correct) == R1_EINVAL, "bad gold format");
    }
}

static void *thread_body(void *argument) {
    int *failures = argument;
    for (int k = 0; k < 2000; ++k) {
        int found, truncated, correct;
        char answer[64];
        r1_answer_check_response("\\boxed{(x-1)^2}", 15, "x^2-2x+1", R1_ANSWER_GOLD_PLAIN, answer, sizeof answer,
                                 &found, &truncated, &correct);
        if (!correct) ++*failures;
    }
    return NULL;
}

static void threads(void) {
    if (r1t_case("threads(4)")) {
        pthread_t t[4];
        int failures[4] = {0};
        for (int k = 0; k < 4; ++k) pthread_create(&t[k], NULL, thread_body, &failures[k]);
        for (int k = 0; k < 4; ++k) pthread_join(t[k], NULL);
        R1T_CHECK(failures[0] + failures[1] + failures[2] + failures[3] == 0, "concurrent calls agree");
    }
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "answer");
    cuda_unsupported();
    bad_input(R1_REF);
    bad_input(R1_FAST);
    golden(R1_REF);
    golden(R1_FAST);
    bounds(R1_REF);
    bounds(R1_FAST);
    check_response();
    agreement();
    threads();
    return r1t_end();
}
