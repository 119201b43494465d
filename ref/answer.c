/*
 * ref/answer.c — final-answer extraction, normalization and equivalence, the
 * readable version. Every rule is one small function with an example.
 *
 *   extract(text)        region after the last </think>; the last \boxed{}
 *                        (adjacent boxes joined); else the fallbacks in order
 *   normalize(answer)    Unicode -> ASCII/LaTeX, a token-level LaTeX cleaner,
 *                        units, periods, separators, "x =" prefixes, spaces
 *   compare(gold, pred)  string; structure (list / tuple / interval / set);
 *                        then values: an evaluator over LaTeX arithmetic that
 *                        carries exact rationals (int64 num/den) next to a
 *                        long double, so 99999 != 100000 exactly while
 *                        \frac38 == 0.375 within the relative tolerance.
 *
 * Expressions with variables are evaluated at EXPRESSION_POINTS = 5 fixed
 * points: variable v (its name, subscript included) takes at point k the
 * value 0.35 + 0.41 k + 0.053 (fnv1a(v) mod 19), positive and distinct for
 * different names with high probability, the same on every run.
 *
 * Nothing allocates: every buffer is on the stack, bounded by
 * R1_ANSWER_MAX_LENGTH; recursion is bounded by MAX_DEPTH.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#define MAX_DEPTH 64
#define MAX_ELEMENTS 64
#define MAX_ADJACENT_BOXES 16
#define EXPRESSION_POINTS 5
#define MAX_EXPONENT 4096.0L
#define MAX_MAGNITUDE 1e300L

/* ======================================================================
 * Small text helpers
 * ====================================================================== */

/* A bounded writer: writes at most capacity-1 bytes, counts all of them. */
typedef struct writer {
    char *buffer;
    size_t capacity, length;
} writer;

static void put_char(writer *w, char c) {
    if (w->buffer && w->capacity > 0 && w->length < w->capacity - 1) w->buffer[w->length] = c;
    w->length++;
}
static void put_bytes(writer *w, const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i) put_char(w, s[i]);
}
static void put_string(writer *w, const char *s) { put_bytes(w, s, strlen(s)); }
static void finish(writer *w) {
    if (!w->buffer || w->capacity == 0) return;
    w->buffer[w->length < w->capacity ? w->length : w->capacity - 1] = '\0';
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* Does text[i..] start with `literal`? ("\boxed{5}", 0, "\boxed") -> 1 */
static int starts_with(const char *text, size_t n, size_t i, const char *literal) {
    size_t m = strlen(literal);
    return i <= n && n - i >= m && memcmp(text + i, literal, m) == 0;
}
/* The same, ignoring ASCII case. */
static int starts_with_nocase(const char *text, size_t n, size_t i, const char *literal) {
    size_t m = strlen(literal);
    if (i > n || n - i < m) return 0;
    for (size_t k = 0; k < m; ++k)
        if (lower(text[i + k]) != lower(literal[k])) return 0;
    return 1;
}

/* Position of the last `literal` starting in [from, to) (ending before to), or SIZE_MAX. */
static size_t find_last(const char *text, size_t from, size_t to, const char *literal, int nocase) {
    size_t m = strlen(literal);
    if (to < from || to - from < m) return SIZE_MAX;
    char first = lower(literal[0]);
    for (size_t i = to - m + 1; i-- > from;) {
        if (lower(text[i]) != first) continue; /* the cheap test first */
        if (nocase ? starts_with_nocase(text, to, i, literal) : starts_with(text, to, i, literal)) return i;
    }
    return SIZE_MAX;
}

/* Shrinks [*begin, *end) past spaces on both sides. */
static void trim(const char *text, size_t *begin, size_t *end) {
    while (*begin < *end && is_space(text[*begin])) ++*begin;
    while (*end > *begin && is_space(text[*end - 1])) --*end;
}

/* ======================================================================
 * 1. Extraction
 * ====================================================================== */

/* The answer region: after the last "</think>"; truncated when "<think>"
 * opens and never closes. "<think>a</think> 5" -> " 5". */
static int find_region(const char *text, size_t n, size_t *begin, int *truncated) {
    size_t close = find_last(text, 0, n, "</think>", 0);
    *truncated = 0;
    *begin = 0;
    if (close != SIZE_MAX) {
        *begin = close + 8;
        return 1;
    }
    if (find_last(text, 0, n, "<think>", 0) != SIZE_MAX) {
        *truncated = 1;
        return 0;
    }
    return 1;
}

/* A box marker at i: "\boxed" or "\fbox" not followed by a letter
 * ("\boxedx" is another command). Returns the marker's length or 0. */
static size_t box_marker_at(const char *text, size_t n, size_t i) {
    size_t m = 0;
    if (starts_with(text, n, i, "\\boxed")) m = 6;
    else if (starts_with(text, n, i, "\\fbox")) m = 5;
    if (m && i + m < n && is_letter(text[i + m])) return 0;
    return m;
}

/* The last box marker starting in [from, to) of text[0..n), or SIZE_MAX. */
static size_t find_last_box(const char *text, size_t from, size_t to, size_t n) {
    for (size_t i = to; i-- > from;)
        if (text[i] == '\\' && box_marker_at(text, n, i)) return i;
    return SIZE_MAX;
}

/* Backslashes immediately before position i. */
static size_t backslashes_before(const char *text, size_t from, size_t i) {
    size_t count = 0;
    while (i > from && text[i - 1] == '\\') --i, ++count;
    return count;
}

/* Is the brace at i escaped? "\{" is; in doubled text "\\{" is (it reads "\{"). */
static int brace_escaped(const char *text, size_t from, size_t i, int doubled) {
    size_t b = backslashes_before(text, from, i);
    return doubled ? (b / 2) % 2 == 1 : b % 2 == 1;
}

typedef struct box {
    size_t content_begin, content_end; /* the text inside             */
    size_t end;                        /* one past the box            */
    int closed;
} box;

/* Reads the box whose marker starts at i.
 * "\boxed{\frac{1}{2}}" -> content "\frac{1}{2}"; "\boxed 5$" -> "5";
 * "\boxed{5" -> closed = 0. */
static box read_box(const char *text, size_t from, size_t n, size_t i, int doubled) {
    box b = {0, 0, 0, 0};
    size_t j = i + box_marker_at(text, n, i);
    size_t k = j;
    while (k < n && (text[k] == ' ' || text[k] == '\t')) ++k;
    if (k < n && text[k] == '{') {
        int depth = 0;
        for (size_t p = k; p < n; ++p) {
            if (text[p] != '{' && text[p] != '}') continue;
            if (brace_escaped(text, from, p, doubled)) continue;
            depth += text[p] == '{' ? 1 : -1;
            if (depth == 0) {
                b.content_begin = k + 1, b.content_end = p, b.end = p + 1, b.closed = 1;
                return b;
            }
        }
        return b; /* unclosed */
    }
    /* space form: up to the next space, '$' or end */
    size_t e = k;
    while (e < n && !is_space(text[e]) && text[e] != '$') ++e;
    b.content_begin = k, b.content_end = e, b.end = e, b.closed = 1;
    return b;
}

/* Is text[a..b) only separators between adjacent boxes?
 * "$, $" and " and " are; " so " is not. */
static int only_separators(const char *text, size_t a, size_t b) {
    static const char *const tokens[] = {
        "\\text{ and }", "\\text{and}", "\\text{ or }", "\\text{or}", "\\quad", "\\qquad",
        "\\\\", "\\,", "\\;", "\\[", "\\]", "\\(", "\\)", "and", "or", "、", "，", "和", "或",
        ",", ";", "$", " ", "\t", "\n", "\r"};
    size_t i = a;
    while (i < b) {
        size_t matched = 0;
        for (size_t t = 0; t < sizeof tokens / sizeof tokens[0] && !matched; ++t)
            if (starts_with(text, b, i, tokens[t])) matched = strlen(tokens[t]);
        if (!matched) return 0;
        i += matched;
    }
    return 1;
}

/* Writes text[a..b), reading "\\" as "\" when doubled. */
static void put_box_content(writer *w, const char *text, size_t a, size_t b, int doubled) {
    for (size_t i = a; i < b; ++i) {
        if (doubled && text[i] == '\\' && i + 1 < b && text[i + 1] == '\\') ++i;
        put_char(w, text[i]);
    }
}

/* The final box and the boxes adjacent to it, joined "2, -3" in reading
 * order; a repeated content is kept once. 1 when found. */
static int extract_boxes(const char *text, size_t region, size_t n, writer *w) {
    size_t last = find_last_box(text, region, n, n);
    if (last == SIZE_MAX) return -1; /* no box at all: fallbacks */
    int doubled = last > region && text[last - 1] == '\\';
    box boxes[MAX_ADJACENT_BOXES];
    int count = 0;
    boxes[count] = read_box(text, region, n, last, doubled);
    if (!boxes[0].closed) return 0;
    /* "\boxed{\boxed{11}}": the box that encloses the last marker is the answer */
    for (;;) {
        size_t outer = find_last_box(text, region, last, n);
        if (outer == SIZE_MAX) break;
        box b = read_box(text, region, n, outer, doubled);
        if (!b.closed || b.end < boxes[0].end) break;
        boxes[0] = b, last = outer;
    }
    trim(text, &boxes[0].content_begin, &boxes[0].content_end);
    if (boxes[0].content_begin == boxes[0].content_end) return 0;
    count = 1;
    size_t start = last - (doubled && last > region && text[last - 1] == '\\' ? 1 : 0);
    while (count < MAX_ADJACENT_BOXES) {
        size_t previous = find_last_box(text, region, start, n);
        if (previous == SIZE_MAX) break;
        box b = read_box(text, region, n, previous, doubled);
        if (!b.closed || b.end > start || !only_separators(text, b.end, start)) break;
        trim(text, &b.content_begin, &b.content_end);
        if (b.content_begin == b.content_end) break;
        boxes[count++] = b;
        start = previous - (doubled && previous > region && text[previous - 1] == '\\' ? 1 : 0);
    }
    int written = 0;
    for (int k = count - 1; k >= 0; --k) {
        size_t len = boxes[k].content_end - boxes[k].content_begin;
        int repeat = 0;
        for (int q = count - 1; q > k && !repeat; --q)
            repeat = boxes[q].content_end - boxes[q].content_begin == len &&
                     memcmp(text + boxes[q].content_begin, text + boxes[k].content_begin, len) == 0;
        if (repeat) continue;
        if (written++) put_string(w, ", ");
        put_box_content(w, text, boxes[k].content_begin, boxes[k].content_end, doubled);
    }
    return 1;
}

/* Trims [a, b), drops trailing periods and spaces, writes it; 1 if non-empty.
 * "  42. " -> "42" */
static int put_fallback(writer *w, const char *text, size_t a, size_t b) {
    trim(text, &a, &b);
    while (b > a && (text[b - 1] == '.' || is_space(text[b - 1]))) --b;
    while (a < b && (text[a] == ':' || is_space(text[a]))) ++a;
    if (a == b) return 0;
    put_bytes(w, text + a, b - a);
    return 1;
}

/* End of the line that starts at i. */
static size_t line_end(const char *text, size_t n, size_t i) {
    while (i < n && text[i] != '\n') ++i;
    return i;
}

/* End of the sentence from i: a '.' followed by a space or the end (not a
 * decimal point), or a newline. "7.5 apples. Then" -> after "apples". */
static size_t sentence_end(const char *text, size_t n, size_t i) {
    for (; i < n; ++i) {
        if (text[i] == '\n') return i;
        if (starts_with(text, n, i, "。")) return i;
        if (text[i] == '.' && (i + 1 == n || is_space(text[i + 1]))) return i;
    }
    return n;
}

/* Minerva: "Final Answer: The final answer is $7$. I hope it is correct." -> "$7$" */
static int fallback_minerva(const char *text, size_t region, size_t n, writer *w) {
    size_t at = find_last(text, region, n, "final answer is", 1);
    if (at == SIZE_MAX) return 0;
    size_t a = at + 15;
    size_t hope = find_last(text, a, n, "I hope it is correct", 1);
    size_t b = hope != SIZE_MAX ? hope : line_end(text, n, a);
    return put_fallback(w, text, a, b);
}

/* "So the answer is 12 apples." -> "12 apples" */
static int fallback_answer_is(const char *text, size_t region, size_t n, writer *w) {
    size_t at = find_last(text, region, n, "the answer is", 1);
    if (at == SIZE_MAX) return 0;
    return put_fallback(w, text, at + 13, sentence_end(text, n, at + 13));
}

/* "所以答案是 12。" -> "12"; "最终答案：5" -> "5" */
static int fallback_chinese(const char *text, size_t region, size_t n, writer *w) {
    static const char *const markers[] = {"最终答案是", "最终答案为", "最终答案：", "最终答案:",
                                          "最终答案", "答案是", "答案为", "答案：", "答案:"};
    size_t best = SIZE_MAX, best_length = 0;
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; ++k) {
        size_t at = find_last(text, region, n, markers[k], 0);
        if (at != SIZE_MAX && (best == SIZE_MAX || at > best ||
                               (at == best && strlen(markers[k]) > best_length)))
            best = at, best_length = strlen(markers[k]);
    }
    if (best == SIZE_MAX) return 0;
    size_t a = best + best_length;
    while (starts_with(text, n, a, "：")) a += 3;
    return put_fallback(w, text, a, sentence_end(text, n, a));
}

/* The last "**X**": "The total is **18**." -> "18";
 * "**Answer:** 18" (X ends with ':') -> the rest of the line, "18". */
static int fallback_bold(const char *text, size_t region, size_t n, writer *w) {
    size_t close = find_last(text, region, n, "**", 0);
    if (close == SIZE_MAX || close < region + 2) return 0;
    size_t open = find_last(text, region, close, "**", 0);
    if (open == SIZE_MAX) return 0;
    size_t a = open + 2, b = close;
    trim(text, &a, &b);
    if (b > a && text[b - 1] == ':') return put_fallback(w, text, close + 2, line_end(text, n, close + 2));
    return put_fallback(w, text, a, b);
}

/* "#### 72" -> "72" */
static int fallback_gsm8k(const char *text, size_t region, size_t n, writer *w) {
    size_t at = find_last(text, region, n, "####", 0);
    if (at == SIZE_MAX) return 0;
    return put_fallback(w, text, at + 4, line_end(text, n, at + 4));
}

/* The last number: "... so 3 boxes hold 1,250.5 g" -> "1,250.5". A comma
 * belongs to the number only before exactly three digits. */
static int fallback_last_number(const char *text, size_t region, size_t n, writer *w) {
    size_t i = n;
    while (i > region && !is_digit(text[i - 1])) --i;
    if (i == region) return 0;
    size_t end = i, begin = i;
    for (;;) {
        while (begin > region && is_digit(text[begin - 1])) --begin;
        if (begin >= region + 2 && text[begin - 1] == '.' && is_digit(text[begin - 2])) {
            begin -= 1;
            continue;
        }
        if (begin >= region + 2 && text[begin - 1] == ',' && is_digit(text[begin - 2])) {
            size_t digits = 0;
            while (begin + digits < end && is_digit(text[begin + digits])) ++digits;
            if (digits == 3) { begin -= 1; continue; }
        }
        break;
    }
    if (begin > region && text[begin - 1] == '-') --begin;
    put_bytes(w, text + begin, end - begin);
    return 1;
}

/* The fallbacks in their order (options.fallbacks bits), on text[region..n). */
static int run_fallbacks(const char *text, size_t region, size_t n, const r1_answer_options *options,
                         writer *w, r1_answer_source *source) {
    typedef int (*fallback)(const char *, size_t, size_t, writer *);
    static const fallback order[] = {fallback_minerva, fallback_answer_is, fallback_chinese,
                                     fallback_bold, fallback_gsm8k, fallback_last_number};
    static const r1_answer_source sources[] = {
        R1_ANSWER_SOURCE_MINERVA, R1_ANSWER_SOURCE_ANSWER_IS, R1_ANSWER_SOURCE_CHINESE,
        R1_ANSWER_SOURCE_BOLD, R1_ANSWER_SOURCE_GSM8K, R1_ANSWER_SOURCE_LAST_NUMBER};
    for (int k = 0; k < 6; ++k) {
        if (!(options->fallbacks & (1u << k))) continue;
        w->length = 0;
        if (order[k](text, region, n, w)) {
            *source = sources[k];
            return 1;
        }
    }
    return 0;
}

int answer_fallbacks_ref(const char *text, size_t region, size_t n, const r1_answer_options *options,
                         char *answer, size_t capacity, size_t *length, r1_answer_source *source) {
    writer w = {answer, capacity, 0};
    int found = run_fallbacks(text, region, n, options, &w, source);
    if (!found) w.length = 0;
    *length = w.length;
    finish(&w);
    return found;
}

void answer_extract_ref(const char *text, size_t n, const r1_answer_options *options,
                        char *answer, size_t capacity, r1_answer_extraction *result) {
    writer w = {answer, capacity, 0};
    size_t region;
    memset(result, 0, sizeof *result);
    if (find_region(text, n, &region, &result->truncated)) {
        int boxed = extract_boxes(text, region, n, &w);
        if (boxed >= 0) {
            result->found = boxed;
            result->source = boxed ? R1_ANSWER_SOURCE_BOXED : R1_ANSWER_SOURCE_NONE;
        } else {
            result->found = run_fallbacks(text, region, n, options, &w, &result->source);
        }
    }
    if (!result->found) w.length = 0, result->source = R1_ANSWER_SOURCE_NONE;
    result->length = w.length;
    finish(&w);
}

/* ======================================================================
 * 2. Normalization
 * ====================================================================== */

/* Unicode and doubled escapes to ASCII / LaTeX:
 * "−5" -> "-5", "３×４" -> "3\times 4", "\\frac" -> "\frac". */
static void unicode_to_latex(const char *s, size_t n, writer *w) {
    static const char *const table[][2] = {
        {"−", "-"}, {"–", "-"}, {"×", "\\times "}, {"÷", "\\div "}, {"√", "\\sqrt"},
        {"∞", "\\infty "}, {"π", "\\pi "}, {"°", "^\\circ "}, {"·", "\\cdot "}, {"⋅", "\\cdot "},
        {"≤", "\\le "}, {"≥", "\\ge "}, {"≠", "\\ne "}, {"±", "\\pm "}, {"∪", "\\cup "},
        {"，", ","}, {"．", "."}, {"。", "."}, {"：", ":"}, {"（", "("}, {"）", ")"}, {"－", "-"},
        {"＋", "+"}, {"％", "%"}, {"＝", "="}, {"／", "/"}, {"、", ","}, {"；", ";"}, {"\xc2\xa0", " "},
        {"\xe2\x80\x89", " "}, {"\xe3\x80\x80", " "}};
    for (size_t i = 0; i < n;) {
        size_t matched = 0;
        if ((unsigned char)s[i] >= 0x80) {
            /* full-width digits U+FF10..U+FF19: EF BC 90..99 */
            if (i + 2 < n && (unsigned char)s[i] == 0xEF && (unsigned char)s[i + 1] == 0xBC &&
                (unsigned char)s[i + 2] >= 0x90 && (unsigned char)s[i + 2] <= 0x99) {
                put_char(w, (char)('0' + ((unsigned char)s[i + 2] - 0x90)));
                i += 3;
                continue;
            }
            for (size_t t = 0; t < sizeof table / sizeof table[0] && !matched; ++t)
                if (starts_with(s, n, i, table[t][0])) {
                    put_string(w, table[t][1]);
                    matched = strlen(table[t][0]);
                }
        } else if (s[i] == '\\' && i + 2 < n && s[i + 1] == '\\' && is_letter(s[i + 2])) {
            put_char(w, '\\'); /* "\\frac" (escaped twice) -> "\frac" */
            matched = 2;
        }
        if (matched) i += matched;
        else if (is_space(s[i])) put_char(w, ' '), ++i; /* tabs and newlines are spaces */
        else put_char(w, s[i++]);
    }
}

/* Units dropped after a value (whole words; the value must end in a digit,
 * '}' or ')'). */
static const char *const units[] = {
    "square units", "square feet", "square meters", "square inches", "sq units", "units",
    "unit", "cm", "mm", "km", "m", "meters", "meter", "metres", "inches", "inch", "feet",
    "foot", "ft", "yards", "miles", "mile", "mph", "km/h", "kg", "grams", "gram", "pounds",
    "lbs", "ounces", "oz", "liters", "litres", "ml", "hours", "hour", "minutes", "minute",
    "mins", "seconds", "second", "sec", "days", "day", "weeks", "week", "months", "years",
    "year", "dollars", "dollar", "cents", "cent", "degrees", "degree", "percent", "people",
    "students", "apples", "cookies", "marbles", "points", "pages", "books", "tickets",
    "厘米", "毫米", "千米", "公里", "平方米", "平方厘米", "米", "千克", "公斤", "克", "元",
    "角", "个", "天", "岁", "人", "只", "本", "块", "分钟", "小时", "秒", "次", "辆",
    "条", "张", "支", "瓶", "度", "名", "颗", "朵", "棵", "页", "周", "年", "月", "倍"};

/* Is s[a..b) a unit ("cm", " inches ", "平方米")? Exponent "^2" / "^{2}" after
 * it is part of it. */
static int is_unit(const char *s, size_t a, size_t b) {
    trim(s, &a, &b);
    if (b - a >= 2 && s[b - 2] == '^' && (s[b - 1] == '2' || s[b - 1] == '3')) b -= 2;
    else if (b - a >= 4 && starts_with(s, b, b - 4, "^{") && s[b - 1] == '}') b -= 4;
    trim(s, &a, &b);
    if (a == b) return 0;
    if (s[a] == '\\' && starts_with(s, b, a, "\\mbox")) return 0;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; ++u)
        if (strlen(units[u]) == b - a && starts_with_nocase(s, b, a, units[u])) return 1;
    return 0;
}

/* Commands dropped as tokens: \left \right \, \! \quad \displaystyle ... */
static int dropped_command(const char *name, size_t length) {
    static const char *const names[] = {
        "left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "bigg", "Bigg",
        "displaystyle", "textstyle", "scriptstyle", "limits", "quad", "qquad", "nonumber",
        ",", "!", ";", ":", " ", "$", "[", "]", "(", ")", "hfill", "middle"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; ++k)
        if (strlen(names[k]) == length && memcmp(names[k], name, length) == 0) return 1;
    return 0;
}

/* Wrappers \cmd{X} replaced by X: \text{Tuesday} -> Tuesday. */
static int wrapper_command(const char *name, size_t length) {
    static const char *const names[] = {
        "text", "textbf", "textit", "textrm", "textsf", "textnormal", "mathrm", "mathbf",
        "mathit", "mathsf", "mathtt", "mbox", "hbox", "boxed", "fbox", "emph", "bm",
        "boldsymbol", "underline", "operatorname", "textup", "texttt"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; ++k)
        if (strlen(names[k]) == length && memcmp(names[k], name, length) == 0) return 1;
    return 0;
}

/* Renamed commands: \dfrac -> \frac, \leq -> \le, \lt -> <. */
static const char *renamed_command(const char *name, size_t length) {
    static const char *const table[][2] = {
        {"dfrac", "\\frac"}, {"tfrac", "\\frac"}, {"cfrac", "\\frac"}, {"leq", "\\le"},
        {"geq", "\\ge"}, {"leqslant", "\\le"}, {"geqslant", "\\ge"}, {"lt", "<"}, {"gt", ">"},
        {"neq", "\\ne"}, {"%", "%"}, {"ast", "*"}, {"colon", ":"}, {"lbrace", "\\{"},
        {"rbrace", "\\}"}, {"lvert", "|"}, {"rvert", "|"}, {"vert", "|"}, {"mid", "|"},
        {"infin", "\\infty"}, {"varpi", "\\pi"}, {"land", "and"}};
    for (size_t k = 0; k < sizeof table / sizeof table[0]; ++k)
        if (strlen(table[k][0]) == length && memcmp(table[k][0], name, length) == 0) return table[k][1];
    return NULL;
}

/* The LaTeX command at s[i] ('\'): its name's length (letters, or one symbol). */
static size_t command_name_length(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    if (j >= n) return 0;
    if (!is_letter(s[j])) return 1;
    while (j < n && is_letter(s[j])) ++j;
    return j - i - 1;
}

/* The end of the group that opens at s[i] == '{' (one past its '}'), or n. */
static size_t group_end(const char *s, size_t n, size_t i) {
    int depth = 0;
    for (size_t j = i; j < n; ++j) {
        if (s[j] == '\\') { ++j; continue; }
        if (s[j] == '{') ++depth;
        else if (s[j] == '}' && --depth == 0) return j + 1;
    }
    return n;
}

/* Does the group that opens at s[i] == '{' close? "{12}" yes, "{12" no. */
static int group_closes(const char *s, size_t n, size_t i) {
    int depth = 0;
    for (size_t j = i; j < n; ++j) {
        if (s[j] == '\\') { ++j; continue; }
        if (s[j] == '{') ++depth;
        else if (s[j] == '}' && --depth == 0) return 1;
    }
    return 0;
}

static void clean_tokens(const char *s, size_t n, writer *w, int depth);

/* One argument of \frac or \sqrt, braced: "\frac12" -> "{1}{2}",
 * "\sqrt\pi" -> "{\pi}", "{x+1}" stays. Returns the index after it. */
static size_t put_argument(const char *s, size_t n, size_t i, writer *w, int depth) {
    while (i < n && s[i] == ' ') ++i;
    if (i >= n) return i;
    size_t end;
    if (s[i] == '{') {
        end = group_end(s, n, i);
        if (!group_closes(s, n, i)) {
            put_bytes(w, s + i, n - i); /* unclosed: kept as written */
            return n;
        }
        put_char(w, '{');
        clean_tokens(s + i + 1, (end > i + 1 && s[end - 1] == '}' ? end - 1 : end) - i - 1, w, depth + 1);
        put_char(w, '}');
        return end;
    }
    end = s[i] == '\\' ? i + 1 + command_name_length(s, n, i) : i + 1;
    put_char(w, '{');
    clean_tokens(s + i, end - i, w, depth + 1);
    put_char(w, '}');
    return end;
}

/* "^\circ", "^{\circ}", "^\circ C": the degree mark's length at s[i] == '^', or 0. */
static size_t degree_mark(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && s[j] == ' ') ++j;
    if (starts_with(s, n, j, "\\circ")) return j + 5 - i;
    if (starts_with(s, n, j, "{\\circ}")) return j + 7 - i;
    return 0;
}

/* The token cleaner. Commands are whole tokens, so "\left(" loses "\left"
 * and "\le" survives; "\tan x" keeps "\tan". */
static void clean_tokens(const char *s, size_t n, writer *w, int depth) {
    if (depth > MAX_DEPTH) {
        put_bytes(w, s, n);
        return;
    }
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '$') { ++i; continue; }
        if (c == '^' && degree_mark(s, n, i)) { i += degree_mark(s, n, i); continue; }
        if (c == '{' && i + 2 < n && s[i + 1] == ',' && s[i + 2] == '}') { i += 3; continue; } /* 1{,}600 */
        if (c != '\\') { put_char(w, c); ++i; continue; }
        size_t length = command_name_length(s, n, i);
        if (length == 0) { ++i; continue; } /* a lone trailing backslash */
        const char *name = s + i + 1;
        size_t next = i + 1 + length;
        if (dropped_command(name, length)) { put_char(w, ' '); i = next; continue; }
        if (length == 1 && name[0] == '$') { i = next; continue; }
        const char *renamed = renamed_command(name, length);
        if (renamed) {
            put_string(w, renamed);
            if (strcmp(renamed, "\\frac") == 0) {
                next = put_argument(s, n, next, w, depth);
                next = put_argument(s, n, next, w, depth);
            } else if (renamed[0] == '\\' && next < n && is_letter(s[next])) {
                put_char(w, ' ');
            }
            i = next;
            continue;
        }
        if (wrapper_command(name, length)) {
            size_t j = next;
            while (j < n && s[j] == ' ') ++j;
            if (j < n && s[j] == '{') {
                size_t end = group_end(s, n, j);
                size_t inner_end = end > j + 1 && s[end - 1] == '}' ? end - 1 : end;
                size_t after = end;
                /* \text{ cm}^2: the unit and its exponent go together */
                if (after < n && s[after] == '^') {
                    size_t e = after + 1;
                    if (e < n && s[e] == '{') e = group_end(s, n, e);
                    else if (e < n) ++e;
                    if (is_unit(s, j + 1, inner_end)) after = e;
                }
                if (is_unit(s, j + 1, inner_end)) put_char(w, ' ');
                else clean_tokens(s + j + 1, inner_end - j - 1, w, depth + 1);
                i = after;
                continue;
            }
            i = next; /* "\boxed 5": the wrapper alone goes */
            continue;
        }
        put_bytes(w, s + i, 1 + length);
        if (length == 4 && memcmp(name, "frac", 4) == 0) {
            next = put_argument(s, n, next, w, depth);
            next = put_argument(s, n, next, w, depth);
        } else if (length == 4 && memcmp(name, "sqrt", 4) == 0) {
            while (next < n && s[next] == ' ') ++next;
            if (next < n && s[next] == '[') {
                size_t close = next;
                while (close < n && s[close] != ']') ++close;
                clean_tokens(s + next, close < n ? close + 1 - next : n - next, w, depth + 1);
                next = close < n ? close + 1 : n;
            }
            next = put_argument(s, n, next, w, depth);
        } else if (is_letter(name[0]) && next < n && is_letter(s[next])) {
            put_char(w, ' '); /* "\pi r" must not become "\pir" */
        }
        i = next;
    }
}

/* Drops trailing units and degree words after a value: "5 cm" -> "5",
 * "12元" -> "12", "30 degrees" -> "30", "6 \text{ inches}" already done. */
static size_t strip_trailing_units(char *s, size_t n) {
    for (int round = 0; round < 3; ++round) {
        size_t b = n;
        while (b > 0 && s[b - 1] == ' ') --b;
        /* every unit ends in a letter, a UTF-8 byte or "^2"/"^3": "72" has none */
        if (b == 0) break;
        char last = s[b - 1];
        if (!is_letter(last) && (unsigned char)last < 0x80 && !(b >= 2 && s[b - 2] == '^')) break;
        size_t best = SIZE_MAX;
        for (size_t u = 0; u < sizeof units / sizeof units[0]; ++u) {
            size_t m = strlen(units[u]);
            for (int exponent = 0; exponent < 2; ++exponent) {
                size_t tail = m + (exponent ? 2 : 0);
                if (b < tail + 1) continue;
                size_t a = b - tail;
                if (!starts_with_nocase(s, b, a, units[u])) continue;
                if (exponent && !(s[b - 2] == '^' && (s[b - 1] == '2' || s[b - 1] == '3'))) continue;
                size_t before = a;
                int ascii = is_letter(units[u][0]);
                if (ascii && is_letter(s[before - 1])) continue; /* inside a word */
                if (ascii && s[before - 1] == '\\') continue;    /* a command   */
                while (before > 0 && s[before - 1] == ' ') --before;
                if (before == 0) continue;
                char p = s[before - 1];
                if (!(is_digit(p) || p == '}' || p == ')' || p == '%')) continue;
                if (best == SIZE_MAX || before < best) best = before;
            }
        }
        if (best == SIZE_MAX) break;
        n = best;
    }
    s[n] = '\0';
    return n;
}

/* Thousands separators and mixed numbers between digits:
 * "12,000" -> "12000", "1 600" -> "1600", "2 2/3" -> "2\frac{2}{3}";
 * "12, 18" (a space after the comma) and "1,23" stay lists. */
static void digit_groups(const char *s, size_t n, writer *w) {
    for (size_t i = 0; i < n; ++i) {
        char c = s[i];
        int after_digit = i > 0 && is_digit(s[i - 1]);
        if ((c == ',' || c == ' ') && after_digit && i + 3 < n + 0 && is_digit(s[i + 1])) {
            /* mixed number "2 2/3" */
            if (c == ' ') {
                size_t j = i + 1, k;
                while (j < n && is_digit(s[j])) ++j;
                if (j < n && s[j] == '/' && j + 1 < n && is_digit(s[j + 1])) {
                    k = j + 1;
                    while (k < n && is_digit(s[k])) ++k;
                    put_string(w, "\\frac{");
                    put_bytes(w, s + i + 1, j - i - 1);
                    put_string(w, "}{");
                    put_bytes(w, s + j + 1, k - j - 1);
                    put_char(w, '}');
                    i = k - 1;
                    continue;
                }
            }
            /* a group of exactly three digits, the number's integer part */
            size_t start = i;
            while (start > 0 && is_digit(s[start - 1])) --start;
            int integer_part = !(start > 0 && s[start - 1] == '.');
            size_t digits = 0;
            while (i + 1 + digits < n && is_digit(s[i + 1 + digits])) ++digits;
            if (integer_part && digits == 3 && (i - start) <= 3 + (i - start) &&
                !(i + 4 < n && s[i + 4] == '.' && c == ' ')) {
                continue; /* drop the separator */
            }
        }
        put_char(w, c);
    }
}

/* " and " / " or " between values are list commas: "2 or -3" -> "2,-3".
 * After a comma (the serial comma, "19, 46, and 82") the connective adds
 * nothing: "19, 46, 82". */
static void connectives_to_commas(const char *s, size_t n, writer *w) {
    for (size_t i = 0; i < n; ++i) {
        if (s[i] == ' ' && w->length > 0) {
            size_t m = starts_with(s, n, i, " and ") ? 5 : starts_with(s, n, i, " or ") ? 4 : 0;
            if (m) {
                size_t last = w->length < w->capacity ? w->length : 0; /* 0: cut, no look-back */
                while (last > 0 && w->buffer[last - 1] == ' ') --last;
                if (last == 0 || w->buffer[last - 1] != ',') put_char(w, ',');
                i += m - 2;
                continue;
            }
        }
        put_char(w, s[i]);
    }
}

/* Removes spaces, keeping one between a command name and a letter
 * ("\pi r"). */
static size_t remove_spaces(char *s, size_t n) {
    size_t out = 0;
    for (size_t i = 0; i < n; ++i) {
        if (s[i] != ' ') { s[out++] = s[i]; continue; }
        size_t j = out;
        while (j > 0 && is_letter(s[j - 1])) --j;
        int after_command = j > 0 && j < out && s[j - 1] == '\\';
        size_t k = i;
        while (k < n && s[k] == ' ') ++k;
        if (after_command && k < n && is_letter(s[k])) s[out++] = ' ';
        else if (out > 0 && is_digit(s[out - 1]) && k < n && is_digit(s[k])) s[out++] = ' '; /* "\log_2 8" */
        i = k - 1;
    }
    s[out] = '\0';
    return out;
}

/* Trailing periods and leading/trailing spaces: "5." -> "5". */
static size_t strip_ends(char *s, size_t n) {
    size_t a = 0;
    while (n > 0 && (s[n - 1] == '.' || s[n - 1] == ' ' || s[n - 1] == ',')) --n;
    while (a < n && s[a] == ' ') ++a;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
    return n - a;
}

/* The position after a single-variable prefix "x=" / "y_1=" / "f(x)=" at s[0],
 * or 0. */
static size_t variable_prefix(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && is_letter(s[i])) ++i;
    else return 0;
    if (i < n && s[i] == '_') {
        ++i;
        if (i < n && s[i] == '{') { while (i < n && s[i] != '}') ++i; ++i; }
        else ++i;
    } else if (i + 2 < n && s[i] == '(' && is_letter(s[i + 1]) && s[i + 2] == ')') {
        i += 3;
    }
    if (i < n && s[i] == '=') return i + 1;
    return 0;
}

/* A letter outside command names: "3x" yes, "\frac{\pi}{2}" no. */
static int has_variable_letter(const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (s[i] == '\\') {
            while (i + 1 < n && is_letter(s[i + 1])) ++i;
            continue;
        }
        if (is_letter(s[i])) return 1;
    }
    return 0;
}

/* "x=5" -> "5" (one '=' only, no list, a value on the right; "y=3x-2" stays
 * an equation and the comparison strips "y=" when the other side has none);
 * "(D)" -> "D" (a choice letter). */
static size_t strip_prefix_and_choice(char *s, size_t n) {
    size_t p = variable_prefix(s, n);
    if (p && !memchr(s + p, '=', n - p) && !memchr(s + p, ',', n - p) && !has_variable_letter(s + p, n - p)) {
        memmove(s, s + p, n - p);
        n -= p;
        s[n] = '\0';
    }
    if (n == 3 && s[0] == '(' && s[2] == ')' && is_letter(s[1])) {
        s[0] = s[1];
        n = 1;
        s[n] = '\0';
    }
    return n;
}

size_t answer_normalize_ref(const char *answer, size_t length, char *out) {
    char a[ANSWER_SCRATCH], b[ANSWER_SCRATCH];
    writer w = {a, sizeof a, 0};
    unicode_to_latex(answer, length, &w);
    finish(&w);
    size_t n = w.length < sizeof a ? w.length : sizeof a - 1;
    writer v = {b, sizeof b, 0};
    clean_tokens(a, n, &v, 0);
    finish(&v);
    n = v.length < sizeof b ? v.length : sizeof b - 1;
    n = strip_ends(b, n);
    n = strip_trailing_units(b, n);
    n = strip_ends(b, n);
    writer x = {a, sizeof a, 0};
    digit_groups(b, n, &x);
    finish(&x);
    n = x.length < sizeof a ? x.length : sizeof a - 1;
    writer y = {b, sizeof b, 0};
    connectives_to_commas(a, n, &y);
    finish(&y);
    n = y.length < sizeof b ? y.length : sizeof b - 1;
    n = remove_spaces(b, n);
    n = strip_ends(b, n);
    n = strip_prefix_and_choice(b, n);
    memcpy(out, b, n + 1);
    return n;
}

/* ======================================================================
 * 3. Values: an evaluator over LaTeX arithmetic
 * ====================================================================== */

/* A value: v always; num/den too while exact (a rational from integers).
 * literal: the value is a number as written ("1e-20", "-0.5", "(7)"), not
 * the result of an operation; only a computed, inexact value may carry
 * rounding noise (close_numbers). */
typedef struct value {
    long double v;
    int exact;
    int64_t num, den;
    int literal;
} value;

static value inexact(long double v) { value r = {v, 0, 0, 1, 0}; return r; }

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

/* The rational num/den reduced, or inexact when it leaves int64. */
static value rational(__int128 num, __int128 den) {
    if (den == 0) return inexact(NAN);
    if (den < 0) num = -num, den = -den;
    long double v = (long double)num / (long double)den;
    if (num > INT64_MAX || num < -INT64_MAX || den > INT64_MAX) return inexact(v);
    int64_t g = gcd64((int64_t)num, (int64_t)den);
    if (g == 0) g = 1;
    value r = {v, 1, (int64_t)num / g, (int64_t)den / g, 0};
    return r;
}

static value add(value a, value b) {
    if (a.exact && b.exact) return rational((__int128)a.num * b.den + (__int128)b.num * a.den, (__int128)a.den * b.den);
    return inexact(a.v + b.v);
}
static value negate(value a) { if (a.exact) a.num = -a.num; a.v = -a.v; return a; }
static value multiply(value a, value b) {
    if (a.exact && b.exact) return rational((__int128)a.num * b.num, (__int128)a.den * b.den);
    return inexact(a.v * b.v);
}
static value divide(value a, value b) {
    if (b.exact && b.num == 0) return inexact(NAN);
    if (a.exact && b.exact) return rational((__int128)a.num * b.den, (__int128)a.den * b.num);
    return inexact(a.v / b.v);
}

typedef struct parser {
    const char *s;
    size_t n, i;
    int depth;
    int point;           /* which fixed point variables take                */
    int variables;       /* a variable was read                              */
    int error;           /* not an expression                               */
    int unbounded;       /* an exponent or a value beyond the limits         */
    int integer_literal; /* the last primary was a bare integer literal      */
} parser;

/* Power a^b with guards: 2^{10} exact; 2^{2^{64}} unbounded at once. */
static value power(parser *p, value a, value b) {
    if (!isfinite(b.v) || fabsl(b.v) > MAX_EXPONENT) {
        if (fabsl(a.v) == 1.0L || a.v == 0.0L) return inexact(a.v == 0 ? 0 : powl(a.v, b.v > 0 ? 2 : 1));
        p->unbounded = 1;
        return inexact(NAN);
    }
    if (a.exact && b.exact && b.den == 1) {
        value r = rational(1, 1);
        int64_t e = b.num < 0 ? -b.num : b.num;
        for (int64_t k = 0; k < e && r.exact; ++k) r = multiply(r, a);
        if (r.exact) return b.num < 0 ? divide(rational(1, 1), r) : r;
    }
    return inexact(powl(a.v, b.v));
}

static unsigned fnv1a(const char *s, size_t n) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; ++i) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Variable `name` at fixed point k: 0.35 + 0.41 k + 0.053 (fnv1a(name) mod 19). */
static long double variable_value(const char *name, size_t length, int k) {
    return 0.35L + 0.41L * k + 0.053L * (long double)(fnv1a(name, length) % 19u);
}

static void skip_spaces(parser *p) { while (p->i < p->n && p->s[p->i] == ' ') p->i++; }
static int peek(parser *p) { skip_spaces(p); return p->i < p->n ? p->s[p->i] : 0; }
static int accept(parser *p, const char *literal) {
    skip_spaces(p);
    if (!starts_with(p->s, p->n, p->i, literal)) return 0;
    size_t m = strlen(literal);
    if (literal[0] == '\\' && is_letter(literal[m - 1]) && p->i + m < p->n && is_letter(p->s[p->i + m])) return 0;
    p->i += m;
    return 1;
}

static value expression(parser *p);
static value unary(parser *p);

/* A group "{...}" or a single token: the argument of \frac, ^, \sqrt. */
static value group(parser *p) {
    if (accept(p, "{")) {
        value v = expression(p);
        if (!accept(p, "}")) p->error = 1;
        return v;
    }
    return unary(p);
}

/* "12", "0.375", ".75", "3e5", "007": integers are exact. */
static value number(parser *p) {
    size_t a = p->i, i = p->i;
    int64_t integer = 0;
    int overflow = 0, decimal = 0;
    while (i < p->n && is_digit(p->s[i])) {
        if (integer > (INT64_MAX - 9) / 10) overflow = 1;
        else integer = integer * 10 + (p->s[i] - '0');
        ++i;
    }
    if (i < p->n && p->s[i] == '.' && i + 1 < p->n && is_digit(p->s[i + 1])) {
        decimal = 1;
        ++i;
        while (i < p->n && is_digit(p->s[i])) ++i;
    }
    int scientific = 0;
    if (i + 1 < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        size_t j = i + 1;
        if (p->s[j] == '+' || p->s[j] == '-') ++j;
        if (j < p->n && is_digit(p->s[j])) {
            scientific = 1;
            i = j;
            while (i < p->n && is_digit(p->s[i])) ++i;
        }
    }
    char buffer[64];
    size_t m = i - a < sizeof buffer - 1 ? i - a : sizeof buffer - 1;
    memcpy(buffer, p->s + a, m);
    buffer[m] = '\0';
    p->i = i;
    long double v = strtold(buffer, NULL);
    if (i - a >= sizeof buffer - 1) v = overflow ? INFINITY : v;
    value r = inexact(v);
    if (!decimal && !scientific && !overflow) {
        p->integer_literal = 1;
        r = rational(integer, 1);
    }
    r.literal = 1;
    return r;
}

/* A function's argument: "\sin x", "\sin(x)", "\ln{2}". */
static value function(parser *p, long double (*f)(long double)) {
    value x = group(p);
    long double r = f(x.v);
    if (x.exact && x.num == 0 && f == sinl) return rational(0, 1);
    return inexact(r);
}

/* \frac{a}{b}, \sqrt[n]{x}, \pi, \infty, functions. */
static value command(parser *p) {
    if (accept(p, "\\frac")) {
        value a = group(p), b = group(p);
        return divide(a, b);
    }
    if (accept(p, "\\sqrt")) {
        value index = rational(2, 1);
        if (accept(p, "[")) {
            index = expression(p);
            if (!accept(p, "]")) p->error = 1;
        }
        value x = group(p);
        /* exact when a perfect power: \sqrt{16} = 4 */
        if (x.exact && index.exact && index.den == 1 && index.num >= 2 && index.num <= 64 && x.num >= 0) {
            long double r = powl((long double)x.num, 1.0L / index.num), s = powl((long double)x.den, 1.0L / index.num);
            value rr = rational((__int128)llroundl(r), 1), ss = rational((__int128)llroundl(s), 1);
            value back_r = power(p, rr, index), back_s = power(p, ss, index);
            if (back_r.exact && back_s.exact && back_r.num == x.num && back_s.num == x.den) return divide(rr, ss);
        }
        if (index.v == 2.0L) return inexact(sqrtl(x.v));
        return inexact(powl(x.v, 1.0L / index.v));
    }
    if (accept(p, "\\pi")) return inexact(3.14159265358979323846264338327950288L);
    if (accept(p, "\\infty")) return inexact(INFINITY);
    if (accept(p, "\\sin")) return function(p, sinl);
    if (accept(p, "\\cos")) return function(p, cosl);
    if (accept(p, "\\tan")) return function(p, tanl);
    if (accept(p, "\\ln")) return function(p, logl);
    if (accept(p, "\\exp")) return function(p, expl);
    if (accept(p, "\\log")) {
        if (accept(p, "_")) {
            value base = group(p);
            value x = group(p);
            return inexact(logl(x.v) / logl(base.v));
        }
        return function(p, logl);
    }
    p->error = 1; /* any other command is not arithmetic */
    return inexact(NAN);
}

/* A variable: "x", "x_1", "a_{12}"; three letters in a row are a word, not
 * a product ("yes", "Tuesday"). */
static value variable(parser *p) {
    size_t a = p->i;
    if (p->i + 2 < p->n && is_letter(p->s[p->i + 1]) && is_letter(p->s[p->i + 2])) {
        p->error = 1;
        return inexact(NAN);
    }
    p->i++;
    if (p->i < p->n && p->s[p->i] == '_') {
        p->i++;
        if (p->i < p->n && p->s[p->i] == '{') {
            while (p->i < p->n && p->s[p->i] != '}') p->i++;
            p->i++;
        } else if (p->i < p->n) {
            p->i++;
        }
        if (p->i > p->n) p->i = p->n;
    }
    if (p->s[a] == 'e' && p->i == a + 1) return inexact(2.71828182845904523536028747135266250L);
    p->variables = 1;
    return inexact(variable_value(p->s + a, p->i - a, p->point));
}

static value primary(parser *p) {
    int c = peek(p);
    p->integer_literal = 0;
    if (is_digit((char)c) || (c == '.' && p->i + 1 < p->n && is_digit(p->s[p->i + 1]))) return number(p);
    if (c == '(' || c == '{' || c == '[') {
        char close = c == '(' ? ')' : c == '{' ? '}' : ']';
        p->i++;
        value v = expression(p);
        if (!accept(p, (char[]){close, 0})) p->error = 1;
        return v;
    }
    if (c == '|') {
        p->i++;
        value v = expression(p);
        if (!accept(p, "|")) p->error = 1;
        if (v.v < 0) return negate(v); /* |-1e-20| is still the literal 1e-20 */
        return v;
    }
    if (c == '\\') return command(p);
    if (is_letter((char)c)) return variable(p);
    p->error = 1;
    return inexact(NAN);
}

/* primary ('^' group)? , right-associative: 2^3^2 = 2^9. */
static value power_term(parser *p) {
    value base = primary(p);
    int literal = p->integer_literal;
    if (accept(p, "^")) {
        value exponent = peek(p) == '{' ? group(p) : power_term(p);
        literal = 0;
        base = power(p, base, exponent);
    }
    p->integer_literal = literal;
    return base;
}

static value unary(parser *p) {
    if (++p->depth > MAX_DEPTH) { p->error = 1; return inexact(NAN); }
    value v;
    if (accept(p, "-")) v = negate(unary(p)); /* keeps integer_literal: -2\frac12 */
    else if (accept(p, "+")) v = unary(p);
    else v = power_term(p);
    p->depth--;
    return v;
}

/* Does the next token start a factor of an implicit product ("2x", "2\sqrt3", ")(")? */
static int starts_factor(parser *p) {
    int c = peek(p);
    if (is_digit((char)c) || is_letter((char)c) || c == '(' || c == '{') return 1;
    if (c != '\\') return 0;
    static const char *const commands[] = {"\\frac", "\\sqrt", "\\pi", "\\infty", "\\sin", "\\cos", "\\tan", "\\ln", "\\log", "\\exp"};
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; ++k)
        if (starts_with(p->s, p->n, p->i, commands[k])) return 1;
    return 0;
}

/* Products and quotients; "2\frac12" right after a bare integer is the mixed
 * number 2 + 1/2. */
static value term(parser *p) {
    value v = unary(p);
    int first_is_integer = p->integer_literal;
    for (int k = 0; !p->error; ++k) {
        if (accept(p, "*") || accept(p, "\\times") || accept(p, "\\cdot")) v = multiply(v, unary(p));
        else if (accept(p, "/") || accept(p, "\\div")) v = divide(v, unary(p));
        else if (k == 0 && first_is_integer && starts_with(p->s, p->n, p->i, "\\frac")) {
            size_t save = p->i;
            p->i += 5;
            value a = group(p);
            int a_literal = p->integer_literal;
            value b = group(p);
            if (a_literal && p->integer_literal && a.exact && b.exact && a.num >= 0 && b.num > 0) {
                value f = divide(a, b);
                v = v.v < 0 ? add(v, negate(f)) : add(v, f);
            } else {
                p->i = save;
                v = multiply(v, unary(p));
            }
        } else if (starts_factor(p)) v = multiply(v, unary(p));
        else break;
    }
    return v;
}

static value expression(parser *p) {
    if (++p->depth > MAX_DEPTH) { p->error = 1; return inexact(NAN); }
    value v = term(p);
    while (!p->error) {
        if (accept(p, "+")) v = add(v, term(p));
        else if (accept(p, "-")) v = add(v, negate(term(p)));
        else break;
    }
    p->depth--;
    return v;
}

typedef struct evaluation {
    value v;
    int ok, variables, unbounded;
} evaluation;

/* Evaluates s[0..n) at fixed point `point`. */
static evaluation evaluate(const char *s, size_t n, int point) {
    parser p = {s, n, 0, 0, point, 0, 0, 0, 0};
    evaluation e;
    e.v = expression(&p);
    skip_spaces(&p);
    e.unbounded = p.unbounded || (isfinite(e.v.v) && fabsl(e.v.v) > MAX_MAGNITUDE);
    e.ok = !p.error && p.i == n && n > 0;
    e.variables = p.variables;
    return e;
}

/* ======================================================================
 * 4. Equivalence
 * ====================================================================== */

static int close_enough(long double a, long double b, double tolerance) {
    if (isnan(a) || isnan(b)) return 0;
    if (isinf(a) || isinf(b)) return a == b;
    long double scale = fmaxl(1.0L, fmaxl(fabsl(a), fabsl(b)));
    return fabsl(a - b) <= (long double)tolerance * scale;
}

/* Rounding noise: a value computed through inexact operations (not a
 * literal, not an exact rational) with |x| <= 1e-15: "\sqrt{2}^2-2",
 * "\sin(\pi)". A literal "1e-20" or an exact "\frac{1}{10^{16}}" is never
 * noise. */
static int rounding_noise(value x) {
    return !x.literal && !x.exact && fabsl(x.v) <= 1e-15L;
}

/* Two numbers (no variables): relative tolerance with no absolute floor,
 * |a-b| <= tol * max(|a|,|b|), so 1e-7 != 0 and 2^-99 != 2^-98 (a rounding
 * to 6 decimals calls both pairs equal), and 0 equals only 0. The one
 * allowance: 0 against rounding noise is equal ("\sqrt{2}^2-2" is 0, but
 * the literal "1e-20" is not). */
static int close_numbers(value a, value b, double tolerance) {
    if (isnan(a.v) || isnan(b.v)) return 0;
    if (isinf(a.v) || isinf(b.v)) return a.v == b.v;
    if ((a.v == 0 && rounding_noise(b)) || (b.v == 0 && rounding_noise(a))) return 1;
    return fabsl(a.v - b.v) <= (long double)tolerance * fmaxl(fabsl(a.v), fabsl(b.v));
}

static int same_text(const char *a, size_t an, const char *b, size_t bn) {
    if (an != bn) return 0;
    for (size_t i = 0; i < an; ++i)
        if (lower(a[i]) != lower(b[i])) return 0;
    return 1;
}

static r1_answer_verdict verdict(int equal, r1_answer_rule rule) {
    r1_answer_verdict v = {equal, rule};
    return v;
}

/* Two scalar values without relations. "35%" against "0.35" or "35". */
static r1_answer_verdict compare_scalars(const char *a, size_t an, const char *b, size_t bn,
                                         const r1_answer_options *o) {
    if (same_text(a, an, b, bn)) return verdict(1, R1_ANSWER_RULE_STRING);
    int a_percent = an > 1 && a[an - 1] == '%', b_percent = bn > 1 && b[bn - 1] == '%';
    size_t am = an - (size_t)a_percent, bm = bn - (size_t)b_percent;
    evaluation x = evaluate(a, am, 0), y = evaluate(b, bm, 0);
    if (!x.ok || !y.ok) return verdict(0, R1_ANSWER_RULE_TEXT);
    if (x.unbounded || y.unbounded) return verdict(0, R1_ANSWER_RULE_UNBOUNDED);
    if (x.variables || y.variables) {
        int valid = 0;
        for (int k = 0; k < EXPRESSION_POINTS; ++k) {
            evaluation xk = k ? evaluate(a, am, k) : x, yk = k ? evaluate(b, bm, k) : y;
            if (xk.unbounded || yk.unbounded) return verdict(0, R1_ANSWER_RULE_UNBOUNDED);
            if (isnan(xk.v.v) && isnan(yk.v.v)) continue;
            if (!close_enough(xk.v.v, yk.v.v, o->relative_tolerance)) return verdict(0, R1_ANSWER_RULE_EXPRESSION);
            ++valid;
        }
        return verdict(valid >= 3, R1_ANSWER_RULE_EXPRESSION);
    }
    /* numbers: the plain reading first, then the percent readings */
    for (int reading = 0; reading < 2; ++reading) {
        value u = x.v, w = y.v;
        if (reading == 1) {
            if (a_percent == b_percent) break;
            /* The /100 of a percent reading is part of reading the number: a
             * literal or an exact value stays free of rounding noise, even
             * when 9/410003881642066001 / 100 leaves int64 and turns inexact. */
            if (a_percent) u = divide(u, rational(100, 1)), u.literal = x.v.literal || x.v.exact;
            else w = divide(w, rational(100, 1)), w.literal = y.v.literal || y.v.exact;
        }
        int equal;
        r1_answer_rule rule;
        if (u.exact && w.exact) equal = u.num == w.num && u.den == w.den, rule = R1_ANSWER_RULE_EXACT;
        else equal = close_numbers(u, w, o->relative_tolerance), rule = R1_ANSWER_RULE_TOLERANCE;
        if (equal) return verdict(1, reading || a_percent != b_percent ? R1_ANSWER_RULE_PERCENT : rule);
        if (reading == 0 && a_percent == b_percent) return verdict(0, rule);
    }
    return verdict(0, x.v.exact && y.v.exact ? R1_ANSWER_RULE_EXACT : R1_ANSWER_RULE_TOLERANCE);
}

/* The first top-level relation of s: '=', '<', '>', "\le", "\ge", "\ne".
 * Sets its kind (one char: = < > l g n) and the sides. */
static int split_relation(const char *s, size_t n, char *kind, size_t *lhs_end, size_t *rhs_begin) {
    int depth = 0;
    for (size_t i = 0; i < n; ++i) {
        char c = s[i];
        if (c == '(' || c == '[' || c == '{') ++depth;
        else if (c == ')' || c == ']' || c == '}') --depth;
        if (depth != 0) continue;
        if (c == '=' || c == '<' || c == '>') {
            *kind = c, *lhs_end = i, *rhs_begin = i + 1;
            if (i + 1 < n && s[i + 1] == '=' && c != '=') *kind = c == '<' ? 'l' : 'g', *rhs_begin = i + 2;
            return 1;
        }
        if (c == '\\') {
            if (starts_with(s, n, i, "\\le") && !(i + 3 < n && is_letter(s[i + 3]))) { *kind = 'l', *lhs_end = i, *rhs_begin = i + 3; return 1; }
            if (starts_with(s, n, i, "\\ge") && !(i + 3 < n && is_letter(s[i + 3]))) { *kind = 'g', *lhs_end = i, *rhs_begin = i + 3; return 1; }
            if (starts_with(s, n, i, "\\ne") && !(i + 3 < n && is_letter(s[i + 3]))) { *kind = 'n', *lhs_end = i, *rhs_begin = i + 3; return 1; }
        }
    }
    return 0;
}

static char mirrored(char kind) {
    switch (kind) {
    case '<': return '>';
    case '>': return '<';
    case 'l': return 'g';
    case 'g': return 'l';
    default: return kind;
    }
}

/* Equations: lhs - rhs of one is a nonzero constant times the other's, at
 * every fixed point. "3x-y+13=0" vs "y=3x+13": equal; vs "3x+4y+14=0": not. */
static r1_answer_verdict compare_equations(const char *a, size_t al, size_t ar, size_t an,
                                           const char *b, size_t bl, size_t br, size_t bn,
                                           const r1_answer_options *o) {
    long double ratio = NAN;
    int valid = 0;
    for (int k = 0; k < EXPRESSION_POINTS; ++k) {
        evaluation a1 = evaluate(a, al, k), a2 = evaluate(a + ar, an - ar, k);
        evaluation b1 = evaluate(b, bl, k), b2 = evaluate(b + br, bn - br, k);
        if (!a1.ok || !a2.ok || !b1.ok || !b2.ok) return verdict(0, R1_ANSWER_RULE_TEXT);
        if (a1.unbounded || a2.unbounded || b1.unbounded || b2.unbounded) return verdict(0, R1_ANSWER_RULE_UNBOUNDED);
        long double da = a1.v.v - a2.v.v, db = b1.v.v - b2.v.v;
        if (isnan(da) || isnan(db)) continue;
        if (isnan(ratio)) {
            if (fabsl(da) < 1e-12L) {
                if (fabsl(db) > 1e-12L) return verdict(0, R1_ANSWER_RULE_EQUATION);
                continue;
            }
            ratio = db / da;
            if (fabsl(ratio) < 1e-12L) return verdict(0, R1_ANSWER_RULE_EQUATION);
        }
        if (!close_enough(db, ratio * da, o->relative_tolerance)) return verdict(0, R1_ANSWER_RULE_EQUATION);
        ++valid;
    }
    return verdict(valid >= 3, R1_ANSWER_RULE_EQUATION);
}

/* One element: relations first, then scalars. */
static r1_answer_verdict compare_elements(const char *a, size_t an, const char *b, size_t bn,
                                          const r1_answer_options *o) {
    if (same_text(a, an, b, bn)) return verdict(1, R1_ANSWER_RULE_STRING);
    char ka, kb;
    size_t al, ar, bl, br;
    int ra = split_relation(a, an, &ka, &al, &ar), rb = split_relation(b, bn, &kb, &bl, &br);
    if (ra != rb) {
        /* "y=3x-2" against "3x-2": the defined variable's name goes */
        size_t pa = ra ? variable_prefix(a, an) : 0, pb = rb ? variable_prefix(b, bn) : 0;
        if (pa && pa == ar && !memchr(a + pa, '=', an - pa)) return compare_scalars(a + pa, an - pa, b, bn, o);
        if (pb && pb == br && !memchr(b + pb, '=', bn - pb)) return compare_scalars(a, an, b + pb, bn - pb, o);
        return verdict(0, R1_ANSWER_RULE_TEXT);
    }
    if (!ra) return compare_scalars(a, an, b, bn, o);
    if (ka == '=' && kb == '=') return compare_equations(a, al, ar, an, b, bl, br, bn, o);
    r1_answer_verdict left, right;
    if (ka == kb) {
        left = compare_scalars(a, al, b, bl, o);
        right = compare_scalars(a + ar, an - ar, b + br, bn - br, o);
        if (left.equal && right.equal) return verdict(1, R1_ANSWER_RULE_RELATION);
    }
    if (mirrored(ka) == kb && ka != kb) {
        left = compare_scalars(a, al, b + br, bn - br, o);
        right = compare_scalars(a + ar, an - ar, b, bl, o);
        if (left.equal && right.equal) return verdict(1, R1_ANSWER_RULE_RELATION);
    }
    return verdict(0, R1_ANSWER_RULE_RELATION);
}

typedef enum shape { SCALAR, BARE_LIST, BRACKETED, SET } shape;

typedef struct structure {
    shape kind;
    char open, close;
    int count;
    int assignments;             /* every element is "x=..."            */
    size_t begin[MAX_ELEMENTS], end[MAX_ELEMENTS];
    char sign[MAX_ELEMENTS];     /* '+' / '-' for \pm expansion, else 0 */
    size_t pm[MAX_ELEMENTS];     /* where "\pm" sits in the element     */
} structure;

/* Does s[0] open a group that closes exactly at s[n-1]? "(1,2)" yes, "(1)+(2)" no. */
static int wraps(const char *s, size_t n, size_t open_length, size_t close_length) {
    int depth = 0;
    for (size_t i = 0; i < n; ++i) {
        char c = s[i];
        if (c == '\\' && i + 1 < n && (s[i + 1] == '{' || s[i + 1] == '}')) c = s[++i];
        if (c == '(' || c == '[' || c == '{') ++depth;
        else if (c == ')' || c == ']' || c == '}') {
            if (--depth == 0 && i + 1 < n) return 0;
        }
    }
    return depth == 0 && n >= open_length + close_length;
}

/* Splits s[a..b) at top-level commas / semicolons / "\cup" into st. */
static int split_elements(const char *s, size_t a, size_t b, structure *st) {
    int depth = 0;
    size_t start = a;
    st->count = 0;
    for (size_t i = a; i <= b; ++i) {
        int cut = i == b;
        size_t skip = 1;
        if (!cut) {
            char c = s[i];
            if (c == '\\' && i + 1 < b && (s[i + 1] == '{' || s[i + 1] == '}')) { c = s[i + 1]; ++i; }
            if (c == '(' || c == '[' || c == '{') ++depth;
            else if (c == ')' || c == ']' || c == '}') --depth;
            else if (depth == 0 && (c == ',' || c == ';')) cut = 1;
            else if (depth == 0 && starts_with(s, b, i, "\\cup")) cut = 1, skip = 4;
        }
        if (!cut) continue;
        if (st->count == MAX_ELEMENTS) return 0;
        st->begin[st->count] = start, st->end[st->count] = i, st->sign[st->count] = 0;
        st->count++;
        start = i + skip;
        i += skip - 1;
    }
    return 1;
}

/* Expands "\pm" in each element into '+' and '-' readings: "1\pm\sqrt2". */
static void expand_pm(const char *s, structure *st) {
    int count = st->count;
    for (int k = 0; k < count && st->count < MAX_ELEMENTS; ++k) {
        size_t at = find_last(s, st->begin[k], st->end[k], "\\pm", 0);
        if (at == SIZE_MAX) at = find_last(s, st->begin[k], st->end[k], "\\mp", 0);
        if (at == SIZE_MAX) continue;
        st->sign[k] = '+', st->pm[k] = at;
        st->begin[st->count] = st->begin[k], st->end[st->count] = st->end[k];
        st->sign[st->count] = '-', st->pm[st->count] = at;
        st->count++;
    }
}

/* The text of element k with its \pm reading into out. */
static size_t element_text(const char *s, const structure *st, int k, char *out, size_t capacity) {
    writer w = {out, capacity, 0};
    size_t a = st->begin[k], b = st->end[k];
    if (st->sign[k]) {
        put_bytes(&w, s + a, st->pm[k] - a);
        put_char(&w, st->sign[k]);
        put_bytes(&w, s + st->pm[k] + 3, b - st->pm[k] - 3);
    } else {
        size_t p = st->assignments ? variable_prefix(s + a, b - a) : 0;
        put_bytes(&w, s + a + p, b - a - p);
    }
    finish(&w);
    return w.length < capacity ? w.length : capacity - 1;
}

/* The shape of a normalized answer. */
static void read_structure(const char *s, size_t n, structure *st) {
    memset(st, 0, sizeof *st);
    st->kind = SCALAR;
    if (n >= 4 && starts_with(s, n, 0, "\\{") && starts_with(s, n, n - 2, "\\}") && wraps(s, n, 2, 2)) {
        st->kind = SET;
        if (!split_elements(s, 2, n - 2, st)) st->kind = SCALAR;
    } else if (n >= 2 && (s[0] == '(' || s[0] == '[') && (s[n - 1] == ')' || s[n - 1] == ']') && wraps(s, n, 1, 1)) {
        if (split_elements(s, 1, n - 1, st) && st->count >= 2) {
            st->kind = BRACKETED;
            st->open = s[0], st->close = s[n - 1];
        }
    }
    if (st->kind == SCALAR) {
        if (!split_elements(s, 0, n, st)) {
            st->count = 1, st->begin[0] = 0, st->end[0] = n;
        }
        if (st->count > 1) {
            st->kind = BARE_LIST;
            int all = 1;
            for (int k = 0; k < st->count; ++k) {
                size_t p = variable_prefix(s + st->begin[k], st->end[k] - st->begin[k]);
                if (!p) all = 0;
            }
            st->assignments = all;
        }
    }
    if (st->kind != BRACKETED) {
        expand_pm(s, st);
        if (st->count > 1 && st->kind == SCALAR) st->kind = BARE_LIST;
    }
}

static r1_answer_verdict compare_element_pair(const char *gs, const structure *g, int i, const char *ps,
                                              const structure *p, int j, const r1_answer_options *o) {
    char x[ANSWER_SCRATCH], y[ANSWER_SCRATCH];
    size_t xn = element_text(gs, g, i, x, sizeof x), yn = element_text(ps, p, j, y, sizeof y);
    return compare_elements(x, xn, y, yn, o);
}

r1_answer_verdict answer_compare_normalized_ref(const char *gold, const char *pred,
                                                const r1_answer_options *o) {
    size_t gn = strlen(gold), pn = strlen(pred);
    if (gn == 0 || pn == 0) return verdict(0, R1_ANSWER_RULE_EMPTY);
    if (same_text(gold, gn, pred, pn)) return verdict(1, R1_ANSWER_RULE_STRING);
    structure g, p;
    read_structure(gold, gn, &g);
    read_structure(pred, pn, &p);
    if (g.kind == SCALAR && p.kind == SCALAR) return compare_element_pair(gold, &g, 0, pred, &p, 0, o);
    if (g.count != p.count) return verdict(0, R1_ANSWER_RULE_LENGTH);
    int ordered = g.kind == BRACKETED || p.kind == BRACKETED ||
                  (g.assignments && p.kind == BRACKETED) || (p.assignments && g.kind == BRACKETED);
    if (g.kind == BRACKETED && p.kind == BRACKETED && (g.open != p.open || g.close != p.close))
        return verdict(0, R1_ANSWER_RULE_BRACKETS);
    if (ordered && (g.kind == SET || p.kind == SET)) return verdict(0, R1_ANSWER_RULE_BRACKETS);
    if (ordered) {
        /* a bare list meets brackets only as a tuple "(1,-2)", never an interval */
        const structure *b = g.kind == BRACKETED ? &g : &p;
        if (g.kind != p.kind && !(b->open == '(' && b->close == ')')) return verdict(0, R1_ANSWER_RULE_BRACKETS);
        r1_answer_rule rule = b->open == '(' && b->close == ')' ? R1_ANSWER_RULE_TUPLE : R1_ANSWER_RULE_INTERVAL;
        for (int k = 0; k < g.count; ++k)
            if (!compare_element_pair(gold, &g, k, pred, &p, k, o).equal) return verdict(0, rule);
        return verdict(1, rule);
    }
    /* unordered: every gold element meets a distinct equal pred element */
    int used[MAX_ELEMENTS] = {0};
    for (int i = 0; i < g.count; ++i) {
        int matched = 0;
        for (int j = 0; j < p.count && !matched; ++j) {
            if (used[j]) continue;
            if (compare_element_pair(gold, &g, i, pred, &p, j, o).equal) used[j] = matched = 1;
        }
        if (!matched) return verdict(0, R1_ANSWER_RULE_LIST);
    }
    return verdict(1, R1_ANSWER_RULE_LIST);
}

r1_answer_verdict answer_equal_ref(const char *gold, size_t gold_length, const char *pred,
                                   size_t pred_length, const r1_answer_options *options) {
    char g[ANSWER_SCRATCH], p[ANSWER_SCRATCH];
    if (gold_length > R1_ANSWER_MAX_LENGTH || pred_length > R1_ANSWER_MAX_LENGTH) {
        size_t ga = 0, gb = gold_length, pa = 0, pb = pred_length;
        trim(gold, &ga, &gb);
        trim(pred, &pa, &pb);
        if (ga == gb || pa == pb) return verdict(0, R1_ANSWER_RULE_EMPTY);
        int same = gb - ga == pb - pa && memcmp(gold + ga, pred + pa, gb - ga) == 0;
        return verdict(same, same ? R1_ANSWER_RULE_STRING : R1_ANSWER_RULE_TEXT);
    }
    answer_normalize_ref(gold, gold_length, g);
    answer_normalize_ref(pred, pred_length, p);
    return answer_compare_normalized_ref(g, p, options);
}
