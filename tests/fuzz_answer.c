/*
 * tests/fuzz_answer.c — libFuzzer target for answer extraction and equivalence.
 *
 * The input is split at its first NUL byte into a "gold" and a "pred" part;
 * the whole input is also an output text. Each is extracted (ref and fast),
 * normalized and compared both ways. Checks: no crash, ref and fast agree on
 * the extraction and the verdict, the reported length matches the written
 * answer, and every call returns R1_OK (bounded work: no hang).
 *
 *   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DR1LAB_FUZZ=ON -DR1LAB_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_answer
 *   build-fuzz/fuzz_answer -max_total_time=60 -timeout=1
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1lab/answer.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_answer: %s (%s)\n", what, r1_last_error());
    abort();
}

static char answer_ref[R1_ANSWER_MAX_LENGTH + 1], answer_fast[R1_ANSWER_MAX_LENGTH + 1];

static void extract_both(const char *text, size_t n) {
    r1_answer_extraction a, b;
    if (r1_answer_extract(R1_REF, text, n, NULL, answer_ref, sizeof answer_ref, &a) != R1_OK) fail("extract ref");
    if (r1_answer_extract(R1_FAST, text, n, NULL, answer_fast, sizeof answer_fast, &b) != R1_OK) fail("extract fast");
    if (a.found != b.found || a.truncated != b.truncated || a.source != b.source || a.length != b.length ||
        strcmp(answer_ref, answer_fast) != 0)
        fail("ref and fast extract differently");
    if (a.length < sizeof answer_ref && strlen(answer_ref) > a.length) fail("length below the written answer");
    char normalized[4 * R1_ANSWER_MAX_LENGTH + 64];
    size_t m = strlen(answer_ref);
    if (m <= R1_ANSWER_MAX_LENGTH &&
        r1_answer_normalize(R1_REF, answer_ref, m, normalized, sizeof normalized, NULL) != R1_OK)
        fail("normalize");
}

static void compare_both(const char *gold, size_t gn, const char *pred, size_t pn) {
    r1_answer_verdict a, b;
    if (r1_answer_equal(R1_REF, gold, gn, pred, pn, NULL, &a) != R1_OK) fail("equal ref");
    if (r1_answer_equal(R1_FAST, gold, gn, pred, pn, NULL, &b) != R1_OK) fail("equal fast");
    if (a.equal != b.equal || a.rule != b.rule) fail("ref and fast compare differently");
    if (a.equal && a.rule == R1_ANSWER_RULE_EMPTY) fail("equal by the empty rule");
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *text = (const char *)bytes;
    extract_both(text, size);
    const char *nul = memchr(text, '\0', size);
    size_t gn = nul ? (size_t)(nul - text) : size / 2;
    const char *pred = text + gn + (nul ? 1 : 0);
    size_t pn = size - (size_t)(pred - text);
    compare_both(text, gn, pred, pn);
    compare_both(pred, pn, text, gn);
    int found, truncated, correct;
    char gold[256];
    size_t g = gn < sizeof gold - 1 ? gn : sizeof gold - 1;
    memcpy(gold, text, g);
    gold[g] = '\0';
    for (int f = 0; f < 3; ++f)
        if (r1_answer_check_response(pred, pn, gold, (r1_answer_gold_format)f, NULL, 0, &found, &truncated, &correct) != R1_OK)
            fail("check_response");
    return 0;
}
