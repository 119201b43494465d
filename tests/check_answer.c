/*
 * tests/check_answer.c — the answer checks behind test_answer and `r1lab check`.
 *
 *   golden      golden/answer/{equal,extract,normalize,check}.jsonl: results
 *               written by hand; every field must match exactly (answers are
 *               discrete: no tolerance anywhere).
 *   agreement   a randomized metamorphic corpus: a known answer wrapped in
 *               boxes, '$', units, "x =", percent, decoy boxes inside
 *               <think>, long reasoning (expected equal), and mutated digits,
 *               signs and brackets (expected not equal). Each item must give
 *               the expected verdict on the backend, and ref and fast must
 *               give the same extraction and verdict (rule included).
 * There is no CUDA backend: run() returns R1_EUNSUPPORTED for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "random.h"
#include "r1lab/answer.h"
#include "r1lab/jsonl.h"

#define ANSWER_BUFFER 4096

static int report_failure(check_summary *summary, const char *what) {
    if (summary->verbose) fprintf(stderr, "  FAIL %s\n", what);
    check_note_error(summary, what, 1.0, 0.0);
    return 0;
}

static const char *string_field(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}
static int bool_field(const cJSON *object, const char *key, int *value) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsBool(item)) return 0;
    *value = cJSON_IsTrue(item);
    return 1;
}

/* One golden line; returns 1 when it passed, 0 when it failed, -1 when malformed. */
static int golden_case(r1_backend backend, const char *file, const cJSON *c, int64_t line,
                       check_summary *summary) {
    char what[1024], answer[ANSWER_BUFFER];
    const char *reason = string_field(c, "reason");
    if (!reason) reason = "?";
    if (strcmp(file, "equal.jsonl") == 0) {
        const char *gold = string_field(c, "gold"), *pred = string_field(c, "pred");
        int expected;
        if (!gold || !pred || !bool_field(c, "equal", &expected)) return -1;
        r1_answer_verdict v;
        if (r1_answer_equal(backend, gold, strlen(gold), pred, strlen(pred), NULL, &v) != R1_OK) return -1;
        if (v.equal == expected) return 1;
        snprintf(what, sizeof what, "%s:%lld equal(gold=\"%.200s\", pred=\"%.200s\") = %d by rule %s, expected %d (%s)",
                 file, (long long)line, gold, pred, v.equal, r1_answer_rule_name(v.rule), expected, reason);
        return report_failure(summary, what);
    }
    if (strcmp(file, "extract.jsonl") == 0) {
        const char *text = string_field(c, "text"), *expected = string_field(c, "answer");
        int found, truncated;
        if (!text || !expected || !bool_field(c, "found", &found) || !bool_field(c, "truncated", &truncated)) return -1;
        r1_answer_extraction r;
        if (r1_answer_extract(backend, text, strlen(text), NULL, answer, sizeof answer, &r) != R1_OK) return -1;
        if (r.found == found && r.truncated == truncated && strcmp(answer, expected) == 0 &&
            r.length == strlen(answer))
            return 1;
        snprintf(what, sizeof what, "%s:%lld extract(\"%.120s\") = found %d truncated %d \"%.200s\" (%s), expected %d %d \"%.200s\" (%s)",
                 file, (long long)line, text, r.found, r.truncated, answer, r1_answer_source_name(r.source),
                 found, truncated, expected, reason);
        return report_failure(summary, what);
    }
    if (strcmp(file, "normalize.jsonl") == 0) {
        const char *input = string_field(c, "input"), *expected = string_field(c, "normalized");
        if (!input || !expected) return -1;
        size_t length = 0;
        if (r1_answer_normalize(backend, input, strlen(input), answer, sizeof answer, &length) != R1_OK) return -1;
        if (strcmp(answer, expected) == 0) return 1;
        snprintf(what, sizeof what, "%s:%lld normalize(\"%.200s\") = \"%.200s\", expected \"%.200s\" (%s)",
                 file, (long long)line, input, answer, expected, reason);
        return report_failure(summary, what);
    }
    if (strcmp(file, "check.jsonl") == 0) {
        const char *response = string_field(c, "response"), *gold = string_field(c, "gold");
        const char *format_name = string_field(c, "gold_format");
        int found, truncated, correct;
        r1_answer_gold_format format;
        if (!response || !gold || !format_name || !bool_field(c, "found", &found) ||
            !bool_field(c, "truncated", &truncated) || !bool_field(c, "correct", &correct) ||
            r1_answer_gold_format_parse(format_name, &format) != R1_OK)
            return -1;
        int f = -1, t = -1, k = -1;
        /* r1_answer_check_response is the fast backend by contract; run it for both */
        if (r1_answer_check_response(response, strlen(response), gold, format, answer, sizeof answer,
                                     &f, &t, &k) != R1_OK)
            return -1;
        if (f == found && t == truncated && k == correct) return 1;
        snprintf(what, sizeof what, "%s:%lld check_response(gold=\"%.100s\") = found %d truncated %d correct %d (answer \"%.100s\"), expected %d %d %d (%s)",
                 file, (long long)line, gold, f, t, k, answer, found, truncated, correct, reason);
        return report_failure(summary, what);
    }
    return -1;
}

static r1_status run_golden_file(r1_backend backend, const char *file, check_summary *summary) {
    char path[4096];
    snprintf(path, sizeof path, "%s/answer/%s", check_golden_dir(), file);
    r1_jsonl_reader *reader = NULL;
    r1_status status = r1_jsonl_open(path, &reader);
    if (status != R1_OK) {
        fprintf(stderr, "answer: %s (regenerate with: python3 golden/gen/answer.py)\n", r1_last_error());
        return status;
    }
    int cases = 0;
    for (;;) {
        cJSON *object = NULL;
        int64_t line = 0;
        status = r1_jsonl_next_object(reader, &object, &line);
        if (status != R1_OK || object == NULL) break;
        double start = check_now();
        int result = golden_case(backend, file, object, line, summary);
        summary->seconds += check_now() - start;
        cJSON_Delete(object);
        if (result < 0) {
            fprintf(stderr, "answer: %s:%lld: malformed golden case (%s)\n", path, (long long)line, r1_last_error());
            status = R1_EFORMAT;
            break;
        }
        summary->cases_total++;
        summary->cases_passed += result;
        summary->rows++;
        cases++;
    }
    r1_jsonl_close(reader);
    if (status == R1_OK && cases == 0) {
        fprintf(stderr, "answer: %s holds no cases\n", path);
        return R1_EFORMAT;
    }
    return status;
}

r1_status answer_check_golden(r1_backend backend, check_summary *summary);
r1_status answer_check_golden(r1_backend backend, check_summary *summary) {
    static const char *const files[] = {"equal.jsonl", "extract.jsonl", "normalize.jsonl", "check.jsonl"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; ++f) {
        r1_status status = run_golden_file(backend, files[f], summary);
        if (status != R1_OK) return status;
    }
    return check_golden_manifest("answer", summary);
}

/* ---- the metamorphic corpus ------------------------------------------------------------ */

typedef struct corpus_item {
    char text[ANSWER_BUFFER]; /* a full output                 */
    char gold[256];           /* a gold answer                 */
    int expected;             /* expected verdict             */
} corpus_item;

static const char *const gold_values[] = {"72", "\\frac{3}{8}", "2\\sqrt{3}", "-5", "12000", "0.25",
                                          "(1,-2)", "[-2,5)", "1, 4, 9", "x^2-1", "\\text{Tuesday}", "35\\%"};
/* Equivalent spellings of each gold, and different answers. */
static const char *const same_values[][3] = {
    {"72", "072", "72.0"}, {"0.375", "\\dfrac38", "3/8"}, {"\\sqrt{12}", "2\\sqrt3", "\\sqrt{12}"},
    {"-5", "−5", "-5.0"}, {"12,000", "12{,}000", "12000"}, {"\\frac14", "1/4", ".25"},
    {"x=1, y=-2", "(1, -2)", "\\left(1,-2\\right)"}, {"[-2,5)", "\\left[-2, 5\\right)", "[ -2 , 5 )"},
    {"9,1,4", "4, 9, 1", "1,9,4"}, {"(x+1)(x-1)", "x^2 - 1", "-1+x^2"},
    {"Tuesday", "\\textbf{tuesday}", "TUESDAY"}, {"35", "0.35", "35\\%"}};
static const char *const other_values[][3] = {
    {"73", "71", "-72"}, {"0.38", "\\frac{3}{7}", "\\frac{8}{3}"}, {"\\sqrt{13}", "3\\sqrt2", "2\\sqrt{2}"},
    {"5", "-4", "-50"}, {"12,001", "1200", "120000"}, {"0.26", "\\frac13", "25"},
    {"(-2,1)", "(1,2)", "(1,-2,0)"}, {"[-2,5]", "(-2,5)", "[-2,6)"}, {"1,4", "1,4,8", "1,4,9,16"},
    {"x^2+1", "x^2-2", "(x-1)^2"}, {"Monday", "Tue", "\\text{Thursday}"}, {"0.035", "3.5", "65"}};

static void wrap_answer(r1t_rng *rng, const char *answer, char *text, size_t capacity) {
    static const char *const think[] = {"", "<think>\nLet me try \\boxed{13} first. Hmm, no.\n</think>\n\n",
                                        "<think>Compute step by step. 3 + 4 = 7, so maybe \\boxed{7}?</think>"};
    static const char *const before[] = {"The answer is ", "So we get ", "所以答案是 ", "**Final Answer**\n"};
    static const char *const box_open[] = {"\\boxed{", "$\\boxed{", "\\[\\boxed{", "\\(\\boxed{"};
    static const char *const box_close[] = {"}", "}$", "}\\]", "}\\)"};
    static const char *const after[] = {"", ".", " 。", "\n"};
    int t = (int)r1t_rng_range(rng, 0, 2), b = (int)r1t_rng_range(rng, 0, 3), o = (int)r1t_rng_range(rng, 0, 3);
    int a = (int)r1t_rng_range(rng, 0, 3);
    /* long reasoning: 0..40 sentences of filler inside the think block */
    char filler[2048] = "";
    if (t != 0) {
        int sentences = (int)r1t_rng_range(rng, 0, 20);
        size_t used = 0;
        for (int s = 0; s < sentences && used + 100 < sizeof filler; ++s)
            used += (size_t)snprintf(filler + used, sizeof filler - used,
                                     "Step %d: we have %lld apples; \\frac{%d}{%d} of them. ", s,
                                     (long long)r1t_rng_range(rng, 1, 999), s + 1, s + 2);
    }
    const char *open = t == 0 ? "" : "<think>";
    const char *rest = t == 0 ? "" : (think[t] + 7);
    snprintf(text, capacity, "%s%s%s%s%s%s%s%s", open, filler, rest, before[b], box_open[o], answer,
             box_close[o], after[a]);
}

static void make_item(r1t_rng *rng, corpus_item *item) {
    int g = (int)r1t_rng_range(rng, 0, (int64_t)(sizeof gold_values / sizeof gold_values[0]) - 1);
    int equal = r1t_rng_range(rng, 0, 1) == 1;
    int k = (int)r1t_rng_range(rng, 0, 2);
    const char *answer = equal ? same_values[g][k] : other_values[g][k];
    snprintf(item->gold, sizeof item->gold, "%s", gold_values[g]);
    wrap_answer(rng, answer, item->text, sizeof item->text);
    item->expected = equal;
}

/* ---- random short numbers (fast's simple-number path against ref) ------------------------
 * Integers, decimals, D/D, \frac \dfrac \tfrac of integers, percent, signs; runs of up to 20
 * digits (over the path's 18), zero denominators and near-misses (a trailing '.', inner spaces,
 * '+', "{,}") that must leave the path. Pairs are often the same value in two spellings or a
 * decimal of the fraction printed to 3..20 digits (around the tolerance). */
static size_t random_digits(r1t_rng *rng, char *out, int most) {
    int n = r1t_rng_range(rng, 0, 9) == 0 ? (int)r1t_rng_range(rng, 1, most) : (int)r1t_rng_range(rng, 1, 4);
    for (int i = 0; i < n; ++i) out[i] = (char)('0' + r1t_rng_range(rng, i == 0 && r1t_rng_range(rng, 0, 3) ? 1 : 0, 9));
    out[n] = '\0';
    return (size_t)n;
}

static void random_number(r1t_rng *rng, char *out, size_t capacity, long long *p, long long *q) {
    static const char *const percent[] = {"", "", "", "%", "\\%"};
    static const char *const noise[] = {"", "", "", "", "", "", " ", ".", "+", " x", "{,}0", "\\,"};
    char a[32], b[32];
    random_digits(rng, a, 20);
    random_digits(rng, b, 20);
    if (r1t_rng_range(rng, 0, 7) == 0) snprintf(b, sizeof b, "0");
    *p = atoll(a), *q = atoll(b);
    const char *sign = r1t_rng_range(rng, 0, 3) == 0 ? "-" : "";
    const char *pc = percent[r1t_rng_range(rng, 0, 4)], *ns = noise[r1t_rng_range(rng, 0, 11)];
    int noise_first = r1t_rng_range(rng, 0, 1) == 0;
    char body[96];
    switch (r1t_rng_range(rng, 0, 6)) {
    case 0: snprintf(body, sizeof body, "%s", a); break;
    case 1: snprintf(body, sizeof body, "%s.%s", a, b); break;
    case 2: snprintf(body, sizeof body, ".%s", b); break;
    case 3: snprintf(body, sizeof body, "\\frac{%s}{%s}", a, b); break;
    case 4: snprintf(body, sizeof body, "\\dfrac{%s}{%s}", a, b); break;
    case 5: snprintf(body, sizeof body, "\\tfrac{%s}{%s}", a, b); break;
    default: snprintf(body, sizeof body, "%s/%s", a, b); break;
    }
    snprintf(out, capacity, "%s%s%s%s%s", noise_first ? ns : "", sign, body, pc, noise_first ? "" : ns);
}

/* The same value as p/q in another spelling, or a decimal of it to 3..20 digits. */
static void related_number(r1t_rng *rng, long long p, long long q, char *out, size_t capacity) {
    p %= 1000000000LL; /* p * k, q * k stay in range */
    if (q == 0 || q > 1000000000LL) q = 1;
    long long k = r1t_rng_range(rng, 1, 12);
    switch (r1t_rng_range(rng, 0, 3)) {
    case 0: snprintf(out, capacity, "%.*Lg", (int)r1t_rng_range(rng, 3, 20), (long double)p / (long double)q); break;
    case 1: snprintf(out, capacity, "\\dfrac{%lld}{%lld}", p * k, q * k); break;
    case 2: snprintf(out, capacity, "%.*Lg%%", (int)r1t_rng_range(rng, 3, 20), 100.0L * p / (long double)q); break;
    default: snprintf(out, capacity, "%lld/%lld", p * k, q * k); break;
    }
}

static int64_t number_agreement(r1_backend backend, uint64_t seed, int64_t items, check_summary *summary) {
    r1t_rng rng = r1t_rng_make(seed ^ 0x5eedULL);
    char x[128], y[128], what[512];
    int64_t failures = 0;
    for (int64_t i = 0; i < items; ++i) {
        long long p, q, p2, q2;
        random_number(&rng, x, sizeof x, &p, &q);
        if (r1t_rng_range(&rng, 0, 1)) related_number(&rng, p, q, y, sizeof y);
        else random_number(&rng, y, sizeof y, &p2, &q2);
        if (r1t_rng_range(&rng, 0, 1)) { char t[128]; memcpy(t, x, sizeof t); memcpy(x, y, sizeof x); memcpy(y, t, sizeof y); }
        r1_answer_verdict v_ref, v_fast;
        r1_status s1 = r1_answer_equal(R1_REF, x, strlen(x), y, strlen(y), NULL, &v_ref);
        r1_status s2 = r1_answer_equal(backend, x, strlen(x), y, strlen(y), NULL, &v_fast);
        summary->rows++;
        if (s1 != R1_OK || s2 != R1_OK || v_ref.equal != v_fast.equal || v_ref.rule != v_fast.rule) {
            snprintf(what, sizeof what, "numbers(seed=%llu,item=%lld) \"%s\" vs \"%s\": ref %d/%s, %s %d/%s",
                     (unsigned long long)seed, (long long)i, x, y, v_ref.equal, r1_answer_rule_name(v_ref.rule),
                     r1_backend_name(backend), v_fast.equal, r1_answer_rule_name(v_fast.rule));
            if (failures++ < 5) fprintf(stderr, "  FAIL %s\n", what);
            check_note_error(summary, what, 1.0, 0.0);
        }
    }
    return failures;
}

r1_status answer_check_agreement(r1_backend backend, uint64_t seed, int64_t items, check_summary *summary);
r1_status answer_check_agreement(r1_backend backend, uint64_t seed, int64_t items, check_summary *summary) {
    r1t_rng rng = r1t_rng_make(seed);
    corpus_item item;
    char a_ref[ANSWER_BUFFER], a_fast[ANSWER_BUFFER], what[2048];
    int64_t failures = 0;
    for (int64_t i = 0; i < items; ++i) {
        make_item(&rng, &item);
        size_t n = strlen(item.text);
        r1_answer_extraction e_ref, e_fast;
        r1_answer_verdict v_ref, v_fast;
        double start = check_now();
        r1_status s1 = r1_answer_extract(R1_REF, item.text, n, NULL, a_ref, sizeof a_ref, &e_ref);
        r1_status s2 = r1_answer_extract(backend, item.text, n, NULL, a_fast, sizeof a_fast, &e_fast);
        r1_status s3 = r1_answer_equal(R1_REF, item.gold, strlen(item.gold), a_ref, strlen(a_ref), NULL, &v_ref);
        r1_status s4 = r1_answer_equal(backend, item.gold, strlen(item.gold), a_fast, strlen(a_fast), NULL, &v_fast);
        summary->seconds += check_now() - start;
        summary->rows++;
        int ok = s1 == R1_OK && s2 == R1_OK && s3 == R1_OK && s4 == R1_OK && e_ref.found == e_fast.found &&
                 e_ref.truncated == e_fast.truncated && e_ref.source == e_fast.source &&
                 strcmp(a_ref, a_fast) == 0 && v_ref.equal == v_fast.equal && v_ref.rule == v_fast.rule &&
                 v_fast.equal == item.expected;
        if (!ok) {
            snprintf(what, sizeof what,
                     "agreement(seed=%llu,item=%lld) gold \"%.60s\" text \"%.300s\": ref \"%.100s\" %d/%s, %s \"%.100s\" %d/%s, expected %d",
                     (unsigned long long)seed, (long long)i, item.gold, item.text, a_ref, v_ref.equal,
                     r1_answer_rule_name(v_ref.rule), r1_backend_name(backend), a_fast, v_fast.equal,
                     r1_answer_rule_name(v_fast.rule), item.expected);
            if (failures++ < 5) fprintf(stderr, "  FAIL %s\n", what);
            check_note_error(summary, what, 1.0, 0.0);
        }
    }
    summary->cases_total++;
    summary->cases_passed += failures == 0;
    /* short numbers: 4 per corpus item (fast's simple-number path) */
    failures = number_agreement(backend, seed, 4 * items, summary);
    summary->cases_total++;
    summary->cases_passed += failures == 0;
    return R1_OK;
}

static r1_status answer_run(r1_backend backend, uint64_t seed, int64_t rows, check_summary *summary) {
    if (backend == R1_CUDA) return r1_fail(R1_EUNSUPPORTED, "answer has no CUDA backend");
    r1_status status = answer_check_golden(backend, summary);
    if (status != R1_OK) return status;
    return answer_check_agreement(backend, seed, rows > 0 ? rows : 1000, summary);
}

/* Short answers per second: extract + compare of "The answer is \boxed{72}." */
static double answer_throughput(r1_backend backend) {
    if (backend == R1_CUDA) return 0;
    static const char text[] = "So she sold 48 + 24 = 72 clips.\n\n**Final Answer**\n\\boxed{72}";
    char answer[256];
    int64_t count = 0;
    double start = check_now(), now = start;
    while (now - start < 0.3) {
        for (int k = 0; k < 1000; ++k) {
            r1_answer_extraction e;
            r1_answer_verdict v;
            r1_answer_extract(backend, text, sizeof text - 1, NULL, answer, sizeof answer, &e);
            r1_answer_equal(backend, "72", 2, answer, e.length, NULL, &v);
            if (!v.equal) return 0;
        }
        count += 1000;
        now = check_now();
    }
    return (double)count / (now - start);
}

const check_component check_component_answer = {"answer", answer_run, answer_throughput,
                                                 "short answers (extract + equal), 1 thread"};
