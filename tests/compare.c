/*
 * tests/compare.c — see compare.h. Sums are float64 whatever the input type.
 */
#include "compare.h"

#include <math.h>
#include <stdio.h>


enum { PAIRS_SHOWN = 5 };

static int nonfinite_class(double v) {
    if (isnan(v)) return 1;
    if (isinf(v)) return v > 0 ? 2 : 3;
    return 0;
}

/* The shared body: values are read through a getter so one loop serves f32/f64. */
typedef double (*value_at_fn)(const void *array, size_t index);
static double f32_at(const void *a, size_t i) { return ((const float *)a)[i]; }
static double f64_at(const void *a, size_t i) { return ((const double *)a)[i]; }

static r1t_comparison compare_real(const char *what, const void *out, const void *expected,
                                   size_t count, double bar, value_at_fn at) {
    r1t_comparison r = {0};
    r.count = count;
    double diff_sq = 0, ref_sq = 0;
    size_t finite_pairs = 0;
    for (size_t i = 0; i < count; ++i) {
        double o = at(out, i), e = at(expected, i);
        int co = nonfinite_class(o), ce = nonfinite_class(e);
        if (co != ce) { ++r.nonfinite_mismatch; continue; }
        if (co) continue;
        double d = fabs(o - e);
        diff_sq += d * d;
        ref_sq += e * e;
        ++finite_pairs;
        if (d > r.max_abs) {
            r.max_abs = d;
            r.worst_index = i;
        }
    }
    double rms = finite_pairs ? sqrt(ref_sq / (double)finite_pairs) : 0;
    size_t passing = 0;
    for (size_t i = 0; i < count; ++i) {
        double o = at(out, i), e = at(expected, i);
        int co = nonfinite_class(o), ce = nonfinite_class(e);
        if (co != ce) continue;
        if (co || fabs(o - e) <= bar * (fabs(e) + rms)) ++passing;
    }
    r.pass_fraction = count ? (double)passing / (double)count : 1.0;
    if (ref_sq > 0) r.relative_l2 = sqrt(diff_sq / ref_sq);
    else r.relative_l2 = diff_sq > 0 ? INFINITY : 0.0;
    r.ok = r.nonfinite_mismatch == 0 && r.relative_l2 <= bar;
    if (!r.ok) {
        printf("  MISMATCH %s: relative L2 %.3e (bar %.1e), max abs %.3e at [%zu], pass "
                         "fraction %.6f, NaN/Inf placement mismatches %zu of %zu\n",
               what, r.relative_l2, bar, r.max_abs, r.worst_index, r.pass_fraction,
               r.nonfinite_mismatch, count);
        int shown = 0;
        for (size_t i = 0; i < count && shown < PAIRS_SHOWN; ++i) {
            double o = at(out, i), e = at(expected, i);
            int differs = nonfinite_class(o) != nonfinite_class(e) ||
                          (!nonfinite_class(e) && fabs(o - e) > bar * (fabs(e) + rms));
            if (differs) {
                printf("    [%zu] got %.9g expected %.9g\n", i, o, e);
                ++shown;
            }
        }
    }
    return r;
}

r1t_comparison r1t_compare_f32(const char *what, const float *out, const float *expected,
                               size_t count, double bar) {
    return compare_real(what, out, expected, count, bar, f32_at);
}

r1t_comparison r1t_compare_f64(const char *what, const double *out, const double *expected,
                               size_t count, double bar) {
    return compare_real(what, out, expected, count, bar, f64_at);
}

#define DEFINE_EXACT_COMPARE(name, type, print_type, print_format)                          \
    r1t_comparison name(const char *what, const type *out, const type *expected,             \
                        size_t count) {                                                     \
        r1t_comparison r = {0};                                                             \
        r.count = count;                                                                    \
        size_t first = count;                                                               \
        for (size_t i = 0; i < count; ++i) {                                                \
            if (out[i] != expected[i]) {                                                    \
                if (first == count) first = i;                                              \
                ++r.mismatches;                                                             \
            }                                                                               \
        }                                                                                   \
        r.worst_index = first;                                                              \
        r.pass_fraction = count ? 1.0 - (double)r.mismatches / (double)count : 1.0;         \
        r.ok = r.mismatches == 0;                                                           \
        if (!r.ok) {                                                                        \
            printf("  MISMATCH %s: %zu of %zu differ, first at [%zu]\n", what, r.mismatches, \
                   count, first);                                                           \
            int shown = 0;                                                                  \
            for (size_t i = first; i < count && shown < PAIRS_SHOWN; ++i)                   \
                if (out[i] != expected[i]) {                                                \
                    printf("    [%zu] got " print_format " expected " print_format "\n", i, \
                           (print_type)out[i], (print_type)expected[i]);                    \
                    ++shown;                                                                \
                }                                                                           \
        }                                                                                   \
        return r;                                                                           \
    }

DEFINE_EXACT_COMPARE(r1t_compare_exact_i32, int32_t, long long, "%lld")
DEFINE_EXACT_COMPARE(r1t_compare_exact_i64, int64_t, long long, "%lld")
