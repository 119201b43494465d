/*
 * r1lab/answer.h — final-answer extraction, normalization and equivalence for
 * math outputs (rejection sampling, GSM8K / MATH accuracy).
 *
 * SEMANTICS (docs/answer.md has every rule with examples)
 *
 *   Extraction of the final answer of an output `text`:
 *     1. Region. With a "</think>" the region is the text after the last one.
 *        With "<think>" and no "</think>" the output is truncated: no answer,
 *        truncated = 1. Otherwise the region is the whole text.
 *     2. Box. The last "\boxed" or "\fbox" of the region decides: "\boxed{..}"
 *        with balanced braces (escaped "\{" "\}" do not count) or "\boxed X"
 *        (space form: up to the next space or '$'). An unclosed or empty last
 *        box is "no answer" (no fallback is tried). Adjacent boxes separated
 *        only by spaces, commas, ';', '$', "and", "or", "\quad", "、", "和"
 *        are one answer list, joined by ", " in reading order, a repeat of
 *        the same content kept once. A text written with doubled backslashes
 *        ("\\boxed{\\frac{1}{4}}", JSON escaped twice) reads as single ones.
 *     3. Fallbacks when the region has no box, in this order, each switchable
 *        in options.fallbacks: Minerva "final answer is X. I hope it is
 *        correct", "the answer is X", Chinese "答案是 X" / "最终答案: X",
 *        a final "**X**", GSM8K "#### X", the last number of the region.
 *
 *   Normalization (a lexer over LaTeX tokens: commands are whole tokens, so
 *   "\left" never becomes "\le"): drops \left \right \displaystyle spacing
 *   commands, '$', text/bold/roman wrappers, degree marks, units, trailing
 *   periods, "x =" prefixes, thousands separators; \dfrac \tfrac -> \frac;
 *   \frac12 -> \frac{1}{2}; \sqrt3 -> \sqrt{3}; Unicode minus, times, root,
 *   infinity and full-width digits to ASCII/LaTeX; removes spaces.
 *
 *   Equivalence (gold, pred): exact after normalization (case-insensitive),
 *   else structure (lists unordered, tuples ordered, intervals with their
 *   brackets, \pm expanded), then values: exact rationals compared exactly,
 *   anything with a decimal or an irrational compared with relative tolerance
 *   options.relative_tolerance (0 against rounding noise of a computed value,
 *   |x| <= 1e-15, is the one absolute allowance; see r1_answer_options),
 *   expressions with variables compared at 5
 *   fixed points, equations up to a constant factor, percent either way.
 *   Every decision names its rule (r1_answer_rule_name).
 *
 * LIMITS (never hang): answers longer than R1_ANSWER_MAX_LENGTH bytes are
 * compared as text only; nesting deeper than 64 levels, exponents above 4096
 * in magnitude and values beyond 1e300 make a value "not a number" (such an
 * answer equals only its identical text).
 *
 * BACKENDS: R1_REF and R1_FAST give identical results; R1_CUDA is
 * R1_EUNSUPPORTED. No call allocates; all are thread-safe.
 */
#ifndef R1LAB_ANSWER_H
#define R1LAB_ANSWER_H

#include <stddef.h>

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest answer (bytes) that is normalized and evaluated. */
#define R1_ANSWER_MAX_LENGTH 2048

/* Fallback switches (options.fallbacks), tried in this order. */
enum {
    R1_ANSWER_FALLBACK_MINERVA = 1u << 0,     /* "The final answer is X. I hope it is correct." */
    R1_ANSWER_FALLBACK_ANSWER_IS = 1u << 1,   /* "the answer is X"                              */
    R1_ANSWER_FALLBACK_CHINESE = 1u << 2,     /* "答案是 X", "最终答案: X"                        */
    R1_ANSWER_FALLBACK_BOLD = 1u << 3,        /* a final "**X**"                                */
    R1_ANSWER_FALLBACK_GSM8K = 1u << 4,       /* "#### X"                                       */
    R1_ANSWER_FALLBACK_LAST_NUMBER = 1u << 5, /* the last number of the region                  */
    R1_ANSWER_FALLBACK_ALL = (1u << 6) - 1
};

typedef struct r1_answer_options {
    /* Numbers (no variables, not both exact rationals): equal when
     * |a-b| <= tol*max(|a|,|b|); no absolute floor, so 0 equals only 0, with
     * one allowance: 0 equals a computed value with |x| <= 1e-15 (rounding
     * noise of an inexact result of operations: "\sqrt{2}^2-2", "\sin(\pi)").
     * A number written as a literal ("1e-20", "-0.0000000000000001") or an
     * exact rational is never noise: 0 vs 1e-20 is not equal. Expressions
     * with variables: tol*max(1,|a|,|b|) at each point. Range [0, 1);
     * default 1e-6. */
    double relative_tolerance;
    unsigned fallbacks;        /* R1_ANSWER_FALLBACK_* bits; default R1_ANSWER_FALLBACK_ALL         */
} r1_answer_options;

r1_answer_options r1_answer_options_default(void);

/* Where an extracted answer came from. */
typedef enum r1_answer_source {
    R1_ANSWER_SOURCE_NONE = 0,
    R1_ANSWER_SOURCE_BOXED,
    R1_ANSWER_SOURCE_MINERVA,
    R1_ANSWER_SOURCE_ANSWER_IS,
    R1_ANSWER_SOURCE_CHINESE,
    R1_ANSWER_SOURCE_BOLD,
    R1_ANSWER_SOURCE_GSM8K,
    R1_ANSWER_SOURCE_LAST_NUMBER
} r1_answer_source;

/* "none", "boxed", "minerva", "answer_is", "chinese", "bold", "gsm8k", "last_number". */
const char *r1_answer_source_name(r1_answer_source source);

typedef struct r1_answer_extraction {
    int found;               /* 1 when an answer was found                                */
    int truncated;           /* 1 when the text has <think> and no </think> (found = 0)  */
    r1_answer_source source;
    size_t length;           /* bytes of the full answer (may exceed the capacity)       */
} r1_answer_extraction;

/* Extracts the final answer of `text` (length bytes, NUL not needed; text may
 * be NULL when length is 0) into `answer` (NUL-terminated, cut to capacity-1
 * bytes; answer may be NULL when capacity is 0). options NULL = defaults. */
r1_status r1_answer_extract(r1_backend backend, const char *text, size_t length,
                            const r1_answer_options *options, char *answer, size_t capacity,
                            r1_answer_extraction *result);

/* Normalizes one answer (length bytes) into `out` (NUL-terminated, capacity
 * >= 1); *out_length gets the full normalized length (may be NULL). An answer
 * longer than R1_ANSWER_MAX_LENGTH is R1_EINVAL. */
r1_status r1_answer_normalize(r1_backend backend, const char *answer, size_t length, char *out,
                              size_t capacity, size_t *out_length);

/* Which rule decided an equivalence. */
typedef enum r1_answer_rule {
    R1_ANSWER_RULE_EMPTY = 0,        /* not equal: an answer is empty after normalization    */
    R1_ANSWER_RULE_STRING,           /* equal: identical after normalization (any case)     */
    R1_ANSWER_RULE_EXACT,            /* equal/not: exact rationals                          */
    R1_ANSWER_RULE_TOLERANCE,        /* equal/not: numbers within relative tolerance        */
    R1_ANSWER_RULE_PERCENT,          /* equal: one side with %, the other the value or /100 */
    R1_ANSWER_RULE_EXPRESSION,       /* equal/not: expressions agree at the fixed points    */
    R1_ANSWER_RULE_EQUATION,         /* equal/not: equations, sides differ by a factor      */
    R1_ANSWER_RULE_RELATION,         /* equal/not: inequalities, same or mirrored relation  */
    R1_ANSWER_RULE_LIST,             /* equal/not: unordered lists (sets)                   */
    R1_ANSWER_RULE_TUPLE,            /* equal/not: ordered tuples                           */
    R1_ANSWER_RULE_INTERVAL,         /* equal/not: intervals (brackets must match)          */
    R1_ANSWER_RULE_LENGTH,           /* not equal: lists of different lengths               */
    R1_ANSWER_RULE_BRACKETS,         /* not equal: different brackets or structure          */
    R1_ANSWER_RULE_TEXT,             /* not equal: different text (not both numbers)        */
    R1_ANSWER_RULE_UNBOUNDED,        /* not equal: a value outside the evaluator's limits   */
    R1_ANSWER_RULE_COUNT
} r1_answer_rule;

/* "empty", "string", "exact", ...; "unknown" outside the enum. */
const char *r1_answer_rule_name(r1_answer_rule rule);

typedef struct r1_answer_verdict {
    int equal;
    r1_answer_rule rule;
} r1_answer_verdict;

/* Compares answer `pred` with answer `gold` (both already extracted; lengths
 * in bytes). options NULL = defaults. */
r1_status r1_answer_equal(r1_backend backend, const char *gold, size_t gold_length,
                          const char *pred, size_t pred_length, const r1_answer_options *options,
                          r1_answer_verdict *verdict);

/* The answer a gold field holds, by format. */
typedef enum r1_answer_gold_format {
    R1_ANSWER_GOLD_BOXED = 0, /* gold is a solution text; its last \boxed{} is the answer */
    R1_ANSWER_GOLD_GSM8K = 1, /* gold ends in "#### N" */
    R1_ANSWER_GOLD_PLAIN = 2  /* gold is the answer itself */
} r1_answer_gold_format;

/* Parses "boxed" / "gsm8k" / "plain"; R1_EINVAL otherwise. */
r1_status r1_answer_gold_format_parse(const char *name, r1_answer_gold_format *format);

/* The answer inside a gold field (gold_length bytes) by its format: boxed =
 * the extraction's box (no fallbacks), gsm8k = the text after the last
 * "####" up to its line end, plain = the field. *found 0 when there is none. */
r1_status r1_answer_gold_answer(r1_backend backend, const char *gold, size_t gold_length,
                                r1_answer_gold_format format, char *answer, size_t capacity,
                                int *found);

/* For pipelines: extracts the final answer of `response` (response_length bytes,
 * not necessarily NUL-terminated) with the default options and compares it with
 * `gold` (NUL-terminated, in gold_format). Writes the extracted answer,
 * NUL-terminated and cut to answer_capacity - 1 bytes (answer may be NULL when
 * answer_capacity is 0), and sets *found, *truncated (<think> without </think>)
 * and *correct. Thread-safe. */
r1_status r1_answer_check_response(const char *response, size_t response_length,
                                   const char *gold, r1_answer_gold_format gold_format,
                                   char *answer, size_t answer_capacity,
                                   int *found, int *truncated, int *correct);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_ANSWER_H */
