/*
 * core/answer.c — the public answer entry points: validate once, then
 * dispatch to ref/ or fast/ (there is no CUDA version: R1_EUNSUPPORTED).
 * Semantics are in r1lab/answer.h.
 */
#include <string.h>

#include "core/internal.h"

r1_answer_options r1_answer_options_default(void) {
    r1_answer_options options = {1e-6, R1_ANSWER_FALLBACK_ALL};
    return options;
}

const char *r1_answer_source_name(r1_answer_source source) {
    static const char *const names[] = {"none", "boxed", "minerva", "answer_is",
                                        "chinese", "bold", "gsm8k", "last_number"};
    if ((unsigned)source < sizeof names / sizeof names[0]) return names[source];
    return "unknown";
}

const char *r1_answer_rule_name(r1_answer_rule rule) {
    static const char *const names[] = {"empty", "string", "exact", "tolerance", "percent",
                                        "expression", "equation", "relation", "list", "tuple",
                                        "interval", "length", "brackets", "text", "unbounded"};
    if ((unsigned)rule < sizeof names / sizeof names[0]) return names[rule];
    return "unknown";
}

static r1_status check_backend(r1_backend backend) {
    if (backend == R1_REF || backend == R1_FAST) return R1_OK;
    if (backend == R1_CUDA)
        return r1_fail(R1_EUNSUPPORTED, "answer has no CUDA backend: use R1_REF or R1_FAST");
    return r1_fail(R1_EINVAL, "backend = %d: not R1_REF, R1_FAST or R1_CUDA", (int)backend);
}

static r1_status check_options(const r1_answer_options *options) {
    if (!options) return R1_OK;
    double t = options->relative_tolerance;
    if (!(t >= 0.0 && t < 1.0))
        return r1_fail(R1_EINVAL, "options.relative_tolerance = %g: must be in [0, 1)", t);
    if (options->fallbacks & ~(unsigned)R1_ANSWER_FALLBACK_ALL)
        return r1_fail(R1_EINVAL, "options.fallbacks = 0x%x: unknown bits (known: 0x%x)",
                       options->fallbacks, (unsigned)R1_ANSWER_FALLBACK_ALL);
    return R1_OK;
}

r1_status r1_answer_extract(r1_backend backend, const char *text, size_t length,
                            const r1_answer_options *options, char *answer, size_t capacity,
                            r1_answer_extraction *result) {
    r1_status status = check_backend(backend);
    if (status != R1_OK) return status;
    if ((status = check_options(options)) != R1_OK) return status;
    if (!text && length) return r1_fail(R1_EINVAL, "text is NULL but length = %zu", length);
    if (!answer && capacity) return r1_fail(R1_EINVAL, "answer is NULL but capacity = %zu", capacity);
    if (!result) return r1_fail(R1_EINVAL, "result is NULL");
    r1_answer_options defaults = r1_answer_options_default();
    if (!options) options = &defaults;
    if (!text) text = "";
    if (backend == R1_REF) answer_extract_ref(text, length, options, answer, capacity, result);
    else answer_extract_fast(text, length, options, answer, capacity, result);
    return R1_OK;
}

r1_status r1_answer_normalize(r1_backend backend, const char *answer, size_t length, char *out,
                              size_t capacity, size_t *out_length) {
    r1_status status = check_backend(backend);
    if (status != R1_OK) return status;
    if (!answer && length) return r1_fail(R1_EINVAL, "answer is NULL but length = %zu", length);
    if (!out || capacity == 0) return r1_fail(R1_EINVAL, "out is NULL or capacity is 0");
    if (length > R1_ANSWER_MAX_LENGTH)
        return r1_fail(R1_EINVAL, "answer length = %zu: above R1_ANSWER_MAX_LENGTH = %d", length,
                       R1_ANSWER_MAX_LENGTH);
    char buffer[ANSWER_SCRATCH];
    size_t n = answer_normalize_ref(answer ? answer : "", length, buffer); /* both backends */
    size_t m = n < capacity - 1 ? n : capacity - 1;
    memcpy(out, buffer, m);
    out[m] = '\0';
    if (out_length) *out_length = n;
    return R1_OK;
}

r1_status r1_answer_equal(r1_backend backend, const char *gold, size_t gold_length,
                          const char *pred, size_t pred_length, const r1_answer_options *options,
                          r1_answer_verdict *verdict) {
    r1_status status = check_backend(backend);
    if (status != R1_OK) return status;
    if ((status = check_options(options)) != R1_OK) return status;
    if (!gold && gold_length) return r1_fail(R1_EINVAL, "gold is NULL but gold_length = %zu", gold_length);
    if (!pred && pred_length) return r1_fail(R1_EINVAL, "pred is NULL but pred_length = %zu", pred_length);
    if (!verdict) return r1_fail(R1_EINVAL, "verdict is NULL");
    r1_answer_options defaults = r1_answer_options_default();
    if (!options) options = &defaults;
    if (!gold) gold = "";
    if (!pred) pred = "";
    *verdict = backend == R1_REF ? answer_equal_ref(gold, gold_length, pred, pred_length, options)
                                 : answer_equal_fast(gold, gold_length, pred, pred_length, options);
    return R1_OK;
}

r1_status r1_answer_gold_format_parse(const char *name, r1_answer_gold_format *format) {
    if (!format) return r1_fail(R1_EINVAL, "format is NULL");
    if (name && strcmp(name, "boxed") == 0) *format = R1_ANSWER_GOLD_BOXED;
    else if (name && strcmp(name, "gsm8k") == 0) *format = R1_ANSWER_GOLD_GSM8K;
    else if (name && strcmp(name, "plain") == 0) *format = R1_ANSWER_GOLD_PLAIN;
    else return r1_fail(R1_EINVAL, "gold format \"%s\": must be boxed, gsm8k or plain", name ? name : "(null)");
    return R1_OK;
}

r1_status r1_answer_gold_answer(r1_backend backend, const char *gold, size_t gold_length,
                                r1_answer_gold_format format, char *answer, size_t capacity,
                                int *found) {
    r1_status status = check_backend(backend);
    if (status != R1_OK) return status;
    if (!gold && gold_length) return r1_fail(R1_EINVAL, "gold is NULL but gold_length = %zu", gold_length);
    if (!answer && capacity) return r1_fail(R1_EINVAL, "answer is NULL but capacity = %zu", capacity);
    if (!found) return r1_fail(R1_EINVAL, "found is NULL");
    if ((unsigned)format > R1_ANSWER_GOLD_PLAIN) return r1_fail(R1_EINVAL, "gold format = %d: unknown", (int)format);
    if (!gold) gold = "";
    r1_answer_options options = r1_answer_options_default();
    options.fallbacks = format == R1_ANSWER_GOLD_GSM8K ? R1_ANSWER_FALLBACK_GSM8K : 0;
    if (format == R1_ANSWER_GOLD_PLAIN) {
        size_t a = 0, b = gold_length;
        while (a < b && (gold[a] == ' ' || gold[a] == '\n' || gold[a] == '\t' || gold[a] == '\r')) ++a;
        while (b > a && (gold[b - 1] == ' ' || gold[b - 1] == '\n' || gold[b - 1] == '\t' || gold[b - 1] == '\r')) --b;
        *found = b > a;
        if (capacity) {
            size_t m = b - a < capacity - 1 ? b - a : capacity - 1;
            memcpy(answer, gold + a, m);
            answer[m] = '\0';
        }
        return R1_OK;
    }
    r1_answer_extraction result;
    if (format == R1_ANSWER_GOLD_GSM8K) {
        /* "#### N" decides even when the solution holds a box or a think tag */
        memset(&result, 0, sizeof result);
        if (capacity) answer[0] = '\0';
        const char *hashes = NULL;
        for (size_t i = 0; i + 4 <= gold_length; ++i)
            if (memcmp(gold + i, "####", 4) == 0) hashes = gold + i;
        if (hashes) {
            size_t rest = gold_length - (size_t)(hashes - gold);
            answer_extract_ref(hashes, rest, &options, answer, capacity, &result);
        }
    } else if (backend == R1_REF) {
        answer_extract_ref(gold, gold_length, &options, answer, capacity, &result);
    } else {
        answer_extract_fast(gold, gold_length, &options, answer, capacity, &result);
    }
    *found = result.found;
    return R1_OK;
}

r1_status r1_answer_check_response(const char *response, size_t response_length,
                                   const char *gold, r1_answer_gold_format gold_format,
                                   char *answer, size_t answer_capacity,
                                   int *found, int *truncated, int *correct) {
    if (!response && response_length)
        return r1_fail(R1_EINVAL, "response is NULL but response_length = %zu", response_length);
    if (!gold) return r1_fail(R1_EINVAL, "gold is NULL");
    if (!answer && answer_capacity)
        return r1_fail(R1_EINVAL, "answer is NULL but answer_capacity = %zu", answer_capacity);
    if (!found || !truncated || !correct) return r1_fail(R1_EINVAL, "found, truncated or correct is NULL");
    if ((unsigned)gold_format > R1_ANSWER_GOLD_PLAIN)
        return r1_fail(R1_EINVAL, "gold_format = %d: unknown", (int)gold_format);
    r1_answer_options options = r1_answer_options_default();
    char pred[R1_ANSWER_MAX_LENGTH + 1], gold_answer[R1_ANSWER_MAX_LENGTH + 1];
    r1_answer_extraction result;
    answer_extract_fast(response ? response : "", response_length, &options, pred, sizeof pred, &result);
    *found = result.found;
    *truncated = result.truncated;
    *correct = 0;
    if (answer_capacity) {
        size_t m = result.length < answer_capacity - 1 ? result.length : answer_capacity - 1;
        if (m > R1_ANSWER_MAX_LENGTH) m = R1_ANSWER_MAX_LENGTH;
        memcpy(answer, pred, m);
        answer[m] = '\0';
    }
    int gold_found = 0;
    r1_status status = r1_answer_gold_answer(R1_FAST, gold, strlen(gold), gold_format, gold_answer,
                                             sizeof gold_answer, &gold_found);
    if (status != R1_OK) return status;
    if (!result.found || !gold_found || result.length > R1_ANSWER_MAX_LENGTH) return R1_OK;
    r1_answer_verdict v = answer_equal_fast(gold_answer, strlen(gold_answer), pred, result.length, &options);
    *correct = v.equal;
    return R1_OK;
}
