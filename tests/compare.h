/*
 * tests/compare.h — the one routine every r1lab test uses to compare outputs.
 *
 * Continuous outputs: relative L2 error ||out - ref|| / ||ref|| must be <= bar,
 * and NaN / +Inf / -Inf must sit at exactly the same positions (they are
 * excluded from the L2 sums). Reported with it: the max absolute error and its
 * (worst) index, the pass fraction (elements with |out - ref| <= bar *
 * (|ref| + rms(ref))), and the first differing pairs.
 * Discrete outputs (ids, int32 accumulators): exact equality.
 *
 * On failure the report is printed; the caller decides what failing means:
 *     R1T_CHECK(r1t_compare_f32("probs", out, expected, n, 1e-5).ok, "probs");
 * (the routine has no harness dependency so `r1lab check` uses it too).
 */
#ifndef R1LAB_TESTS_COMPARE_H
#define R1LAB_TESTS_COMPARE_H

#include <stddef.h>
#include <stdint.h>

typedef struct r1t_comparison {
    size_t count;              /* elements compared                         */
    double relative_l2;        /* ||out - ref|| / ||ref|| over finite pairs  */
    double max_abs;            /* largest |out - ref| over finite pairs      */
    size_t worst_index;        /* where max_abs occurs                       */
    double pass_fraction;      /* see above (1.0 for exact when all equal)   */
    size_t nonfinite_mismatch; /* positions where NaN/Inf placement differs  */
    size_t mismatches;         /* exact mode: elements that differ           */
    int ok;                    /* 1 when the comparison passes               */
} r1t_comparison;

r1t_comparison r1t_compare_f32(const char *what, const float *out, const float *expected,
                               size_t count, double bar);
r1t_comparison r1t_compare_f64(const char *what, const double *out, const double *expected,
                               size_t count, double bar);
r1t_comparison r1t_compare_exact_i32(const char *what, const int32_t *out,
                                     const int32_t *expected, size_t count);
r1t_comparison r1t_compare_exact_i64(const char *what, const int64_t *out,
                                     const int64_t *expected, size_t count);

#endif
