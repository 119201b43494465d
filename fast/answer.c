/*
 * fast/answer.c — answer extraction and equivalence built for throughput;
 * the same results as ref/answer.c (tests/test_answer.c checks every golden
 * case and a randomized corpus).
 *
 * Where the time goes: an R1 output is 2-20 KB of reasoning and a short
 * answer region at its end. ref searches "</think>" and "\boxed" with byte
 * loops from the end; fast does the same searches with the C library's
 * vectorized memrchr / memmem (16-32 bytes per step), so the scan stops at
 * the last "</think>" after reading only the answer region, and the brace
 * matching of a box runs over the box only. The normalizer, the fallback
 * chain (only for outputs without a box) and the evaluator are ref's: they
 * see a few dozen bytes per answer.
 *
 * Versions
 *   v1  memrchr for '<' and '\\' from the end; memmem for "<think>" when no
 *       "</think>" exists; a direct path for two plain integers in equal
 *       ("72" vs "072": no normalizer, no parser).
 *
 * No allocation: every buffer is on the stack (ANSWER_SCRATCH bytes).
 */
#define _GNU_SOURCE
#include <string.h>

#include "core/internal.h"

/* The last "</think>" in text[0..n), or NULL: memrchr for '<' from the end. */
static const char *last_think_close(const char *text, size_t n) {
    size_t end = n;
    while (end >= 8) {
        const char *lt = memrchr(text, '<', end - 7);
        if (!lt) return NULL;
        if (memcmp(lt, "</think>", 8) == 0) return lt;
        end = (size_t)(lt - text) + 7;
    }
    return NULL;
}

/* A box marker's length at p (p < end), or 0. */
static size_t marker_length(const char *p, const char *end) {
    size_t room = (size_t)(end - p);
    size_t m = 0;
    if (room >= 6 && memcmp(p, "\\boxed", 6) == 0) m = 6;
    else if (room >= 5 && memcmp(p, "\\fbox", 5) == 0) m = 5;
    if (m && m < room) {
        char c = p[m];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 0;
    }
    return m;
}

/* The last box marker in [from, to), or NULL. */
static const char *last_box(const char *from, const char *to, const char *end) {
    while (to > from) {
        const char *bs = memrchr(from, '\\', (size_t)(to - from));
        if (!bs) return NULL;
        if (marker_length(bs, end)) return bs;
        to = bs;
    }
    return NULL;
}

typedef struct span {
    const char *begin, *end, *after;
    int closed;
} span;

static int escaped(const char *from, const char *p, int doubled) {
    size_t b = 0;
    while (p > from && p[-1] == '\\') --p, ++b;
    return doubled ? (b / 2) % 2 == 1 : b % 2 == 1;
}

static span read_box(const char *from, const char *end, const char *marker, int doubled) {
    span s = {0, 0, 0, 0};
    const char *k = marker + marker_length(marker, end);
    while (k < end && (*k == ' ' || *k == '\t')) ++k;
    if (k < end && *k == '{') {
        int depth = 0;
        for (const char *p = k; p < end; ++p) {
            if (*p != '{' && *p != '}') continue;
            if (escaped(from, p, doubled)) continue;
            depth += *p == '{' ? 1 : -1;
            if (depth == 0) {
                s.begin = k + 1, s.end = p, s.after = p + 1, s.closed = 1;
                return s;
            }
        }
        return s;
    }
    const char *e = k;
    while (e < end && !(*e == ' ' || *e == '\t' || *e == '\n' || *e == '\r' || *e == '\f' ||
                        *e == '\v' || *e == '$'))
        ++e;
    s.begin = k, s.end = e, s.after = e, s.closed = 1;
    return s;
}

static int space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void trim_span(span *s) {
    while (s->begin < s->end && space(*s->begin)) ++s->begin;
    while (s->end > s->begin && space(s->end[-1])) --s->end;
}

static int separators_only(const char *a, const char *b) {
    static const char *const tokens[] = {
        "\\text{ and }", "\\text{and}", "\\text{ or }", "\\text{or}", "\\quad", "\\qquad",
        "\\\\", "\\,", "\\;", "\\[", "\\]", "\\(", "\\)", "and", "or", "、", "，", "和", "或",
        ",", ";", "$", " ", "\t", "\n", "\r"};
    while (a < b) {
        size_t matched = 0;
        for (size_t t = 0; t < sizeof tokens / sizeof tokens[0] && !matched; ++t) {
            size_t m = strlen(tokens[t]);
            if ((size_t)(b - a) >= m && memcmp(a, tokens[t], m) == 0) matched = m;
        }
        if (!matched) return 0;
        a += matched;
    }
    return 1;
}

typedef struct out {
    char *buffer;
    size_t capacity, length;
} out;

static void emit(out *o, const char *p, size_t n, int doubled) {
    for (size_t i = 0; i < n; ++i) {
        if (doubled && p[i] == '\\' && i + 1 < n && p[i + 1] == '\\') ++i;
        if (o->length + 1 < o->capacity) o->buffer[o->length] = p[i];
        o->length++;
    }
}

void answer_extract_fast(const char *text, size_t n, const r1_answer_options *options,
                         char *answer, size_t capacity, r1_answer_extraction *result) {
    memset(result, 0, sizeof *result);
    out o = {answer, capacity, 0};
    const char *end = text + n;
    const char *close = last_think_close(text, n);
    const char *region = close ? close + 8 : text;
    if (!close && memmem(text, n, "<think>", 7)) {
        result->truncated = 1;
        if (capacity) answer[0] = '\0';
        return;
    }
    const char *marker = last_box(region, end, end);
    if (!marker) {
        size_t length = 0;
        result->found = answer_fallbacks_ref(text, (size_t)(region - text), n, options, answer,
                                             capacity, &length, &result->source);
        result->length = result->found ? length : 0;
        if (!result->found) result->source = R1_ANSWER_SOURCE_NONE;
        return;
    }
    int doubled = marker > region && marker[-1] == '\\';
    span boxes[16];
    int count = 0;
    boxes[0] = read_box(region, end, marker, doubled);
    while (boxes[0].closed) { /* an enclosing box is the answer: \boxed{\boxed{11}} */
        const char *outer = last_box(region, marker, end);
        if (!outer) break;
        span b = read_box(region, end, outer, doubled);
        if (!b.closed || b.after < boxes[0].after) break;
        boxes[0] = b, marker = outer;
    }
    trim_span(&boxes[0]);
    if (!boxes[0].closed || boxes[0].begin == boxes[0].end) {
        if (capacity) answer[0] = '\0';
        return;
    }
    count = 1;
    const char *start = marker - (doubled && marker > region && marker[-1] == '\\' ? 1 : 0);
    while (count < 16) {
        const char *previous = last_box(region, start, end);
        if (!previous) break;
        span b = read_box(region, end, previous, doubled);
        if (!b.closed || b.after > start || !separators_only(b.after, start)) break;
        trim_span(&b);
        if (b.begin == b.end) break;
        boxes[count++] = b;
        start = previous - (doubled && previous > region && previous[-1] == '\\' ? 1 : 0);
    }
    int written = 0;
    for (int k = count - 1; k >= 0; --k) {
        size_t len = (size_t)(boxes[k].end - boxes[k].begin);
        int repeat = 0;
        for (int q = count - 1; q > k && !repeat; --q)
            repeat = (size_t)(boxes[q].end - boxes[q].begin) == len &&
                     memcmp(boxes[q].begin, boxes[k].begin, len) == 0;
        if (repeat) continue;
        if (written++) emit(&o, ", ", 2, 0);
        emit(&o, boxes[k].begin, len, doubled);
    }
    result->found = 1;
    result->source = R1_ANSWER_SOURCE_BOXED;
    result->length = o.length;
    if (capacity) answer[o.length < capacity ? o.length : capacity - 1] = '\0';
}

/* A plain integer "-0072" (after trimming spaces): sets its sign and digit
 * span without leading zeros. 18 digits at most. */
static int plain_integer(const char *s, size_t n, int *negative, const char **digits, size_t *count) {
    size_t a = 0, b = n;
    while (a < b && space(s[a])) ++a;
    while (b > a && space(s[b - 1])) --b;
    *negative = a < b && s[a] == '-';
    if (*negative) ++a;
    if (a == b || b - a > 18) return 0;
    for (size_t i = a; i < b; ++i)
        if (s[i] < '0' || s[i] > '9') return 0;
    while (a + 1 < b && s[a] == '0') ++a;
    *digits = s + a, *count = b - a;
    if (*count == 1 && s[a] == '0') *negative = 0; /* -0 == 0 */
    return 1;
}

static int trimmed_equal(const char *a, size_t an, const char *b, size_t bn) {
    while (an && space(*a)) ++a, --an;
    while (an && space(a[an - 1])) --an;
    while (bn && space(*b)) ++b, --bn;
    while (bn && space(b[bn - 1])) --bn;
    return an == bn && memcmp(a, b, an) == 0;
}

r1_answer_verdict answer_equal_fast(const char *gold, size_t gold_length, const char *pred,
                                    size_t pred_length, const r1_answer_options *options) {
    int gn, pn;
    const char *gd, *pd;
    size_t gc, pc;
    if (plain_integer(gold, gold_length, &gn, &gd, &gc) && plain_integer(pred, pred_length, &pn, &pd, &pc)) {
        r1_answer_verdict v;
        if (trimmed_equal(gold, gold_length, pred, pred_length)) {
            v.equal = 1, v.rule = R1_ANSWER_RULE_STRING;
        } else {
            v.equal = gn == pn && gc == pc && memcmp(gd, pd, gc) == 0;
            v.rule = R1_ANSWER_RULE_EXACT;
        }
        return v;
    }
    return answer_equal_ref(gold, gold_length, pred, pred_length, options);
}
