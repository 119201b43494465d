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
 *   v2  simple numbers (integers, decimals, D/D, \frac{D}{D} and \dfrac,
 *       percent) compared without the normalizer and the parser: the
 *       structure scan, element copies and relation search cost 0.5 us per
 *       pair in ref; this path is a few dozen ns.
 *
 * No allocation: every buffer is on the stack (ANSWER_SCRATCH bytes).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
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

/* ---- short numeric answers without the normalizer ------------------------
 * A simple number is, after trimming spaces:
 *     [-] ( D | D.D | .D | \frac{D}{D} | \dfrac{D}{D} | \tfrac{D}{D} | D/D ) [ % | \% ]
 * with D a run of 1..18 ASCII digits (a denominator not all zeros). For these
 * ref's normalizer only renames \dfrac/\tfrac to \frac and \% to %, so the
 * normalized text is built directly; the value is computed with the same
 * operations as ref's evaluator (rational(), divide(), negate(), strtold for
 * a decimal), and the verdict follows compare_scalars. Anything else goes to
 * ref. tests/test_answer.c compares this path with ref on random inputs. */
typedef struct number_value {
    long double v;
    int exact;
    int64_t num, den;
} number_value;

typedef struct simple_number {
    char text[64]; /* ref's normalized form */
    size_t length;
    int percent;
    number_value value;
} simple_number;

static int64_t gcd_fast(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

/* ref's rational(): v from the unreduced operands, then reduced. */
static number_value make_rational(__int128 num, __int128 den) {
    number_value r = {(long double)num / (long double)den, 0, 0, 1};
    if (num > INT64_MAX || num < -INT64_MAX || den > INT64_MAX) return r;
    int64_t g = gcd_fast((int64_t)num, (int64_t)den);
    if (g == 0) g = 1;
    r.exact = 1, r.num = (int64_t)num / g, r.den = (int64_t)den / g;
    return r;
}

/* ref's divide() for a nonzero exact divisor. */
static number_value divide_fast(number_value a, number_value b) {
    if (a.exact) return make_rational((__int128)a.num * b.den, (__int128)a.den * b.num);
    number_value r = {a.v / b.v, 0, 0, 1};
    return r;
}

/* Digits at s[*i..n): 1..18 of them; their value in *value. */
static int digit_run(const char *s, size_t n, size_t *i, int64_t *value) {
    size_t a = *i;
    int64_t v = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        if (*i - a == 18) return 0;
        v = v * 10 + (s[(*i)++] - '0');
    }
    if (*i == a) return 0;
    *value = v;
    return 1;
}

static int simple_number_parse(const char *s, size_t n, simple_number *x) {
    size_t a = 0, b = n;
    while (a < b && space(s[a])) ++a;
    while (b > a && space(s[b - 1])) --b;
    if (b - a == 0 || b - a > 48) return 0;
    s += a, n = b - a;
    size_t i = 0, t = 0;
    int negative = s[0] == '-';
    if (negative) x->text[t++] = '-', ++i;
    int64_t p, q;
    if (i < n && s[i] == '\\') { /* \frac{p}{q}, \dfrac, \tfrac */
        size_t m = n - i >= 7 && (memcmp(s + i, "\\dfrac{", 7) == 0 || memcmp(s + i, "\\tfrac{", 7) == 0) ? 7
                 : n - i >= 6 && memcmp(s + i, "\\frac{", 6) == 0 ? 6 : 0;
        if (!m) return 0;
        i += m;
        size_t pa = i;
        if (!digit_run(s, n, &i, &p) || i >= n || s[i] != '}') return 0;
        size_t pb = i++;
        if (i >= n || s[i] != '{') return 0;
        size_t qa = ++i;
        if (!digit_run(s, n, &i, &q) || i >= n || s[i] != '}' || q == 0) return 0;
        size_t qb = i++;
        memcpy(x->text + t, "\\frac{", 6), t += 6;
        memcpy(x->text + t, s + pa, pb - pa), t += pb - pa;
        memcpy(x->text + t, "}{", 2), t += 2;
        memcpy(x->text + t, s + qa, qb - qa), t += qb - qa;
        x->text[t++] = '}';
        x->value = make_rational(p, q);
    } else {
        size_t start = i;
        int has_integer = digit_run(s, n, &i, &p);
        if (i < n && s[i] == '.') { /* decimal: ref reads it with strtold */
            ++i;
            int64_t ignored;
            if (!digit_run(s, n, &i, &ignored)) return 0;
            char buffer[64];
            memcpy(buffer, s + start, i - start);
            buffer[i - start] = '\0';
            number_value v = {strtold(buffer, NULL), 0, 0, 1};
            x->value = v;
        } else if (!has_integer) {
            return 0;
        } else if (i < n && s[i] == '/') {
            ++i;
            if (!digit_run(s, n, &i, &q) || q == 0) return 0;
            x->value = make_rational(p, q);
        } else {
            x->value = make_rational(p, 1);
        }
        memcpy(x->text + t, s + start, i - start), t += i - start;
    }
    x->percent = 0;
    if (i + 2 == n && s[i] == '\\' && s[i + 1] == '%') i += 2, x->percent = 1;
    else if (i + 1 == n && s[i] == '%') i += 1, x->percent = 1;
    if (i != n) return 0;
    if (x->percent) x->text[t++] = '%';
    x->text[t] = '\0';
    x->length = t;
    if (negative) { /* ref's negate() */
        if (x->value.exact) x->value.num = -x->value.num;
        x->value.v = -x->value.v;
    }
    return 1;
}

/* ref's close_numbers() for simple numbers: each is a literal or an exact
 * rational, never rounding noise, so 0 against anything else is unequal and
 * the rule is the relative tolerance alone. */
static int close_numbers_fast(long double a, long double b, double tolerance) {
    if (isnan(a) || isnan(b)) return 0;
    if (isinf(a) || isinf(b)) return a == b;
    return fabsl(a - b) <= (long double)tolerance * fmaxl(fabsl(a), fabsl(b));
}

/* ref's compare_scalars() for two simple numbers. */
static r1_answer_verdict compare_simple(const simple_number *x, const simple_number *y, const r1_answer_options *o) {
    r1_answer_verdict v = {1, R1_ANSWER_RULE_STRING};
    if (x->length == y->length && memcmp(x->text, y->text, x->length) == 0) return v;
    number_value hundred = {100.0L, 1, 100, 1};
    for (int reading = 0; reading < 2; ++reading) {
        number_value u = x->value, w = y->value;
        if (reading == 1) {
            if (x->percent == y->percent) break;
            if (x->percent) u = divide_fast(u, hundred);
            else w = divide_fast(w, hundred);
        }
        int equal;
        r1_answer_rule rule;
        if (u.exact && w.exact) equal = u.num == w.num && u.den == w.den, rule = R1_ANSWER_RULE_EXACT;
        else equal = close_numbers_fast(u.v, w.v, o->relative_tolerance), rule = R1_ANSWER_RULE_TOLERANCE;
        if (equal) {
            v.equal = 1, v.rule = reading || x->percent != y->percent ? R1_ANSWER_RULE_PERCENT : rule;
            return v;
        }
        if (reading == 0 && x->percent == y->percent) {
            v.equal = 0, v.rule = rule;
            return v;
        }
    }
    v.equal = 0;
    v.rule = x->value.exact && y->value.exact ? R1_ANSWER_RULE_EXACT : R1_ANSWER_RULE_TOLERANCE;
    return v;
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
    simple_number x, y;
    if (simple_number_parse(gold, gold_length, &x) && simple_number_parse(pred, pred_length, &y))
        return compare_simple(&x, &y, options);
    return answer_equal_ref(gold, gold_length, pred, pred_length, options);
}
