/*
 * tests/harness.h — the small test framework every r1lab test binary uses.
 *
 *   r1t_begin(argc, argv, "sampling")   parses --case NAME (run one case),
 *                                       --small (small sizes, for compute-
 *                                       sanitizer) and reads R1_SEED (printed)
 *   if (r1t_case("mla(b=2,s=7)")) {...} runs a named case unless filtered out
 *   R1T_CHECK(cond, "fmt", ...)         records a failure with file:line
 *   r1t_skip("reason")                  the whole binary is a skip (exit 77)
 *   return r1t_end();                   prints "N passed, N failed" and gives
 *                                       the exit code; zero cases run = failure
 *
 * Buffers for outputs: r1t_guarded_alloc() places guard bytes before and after
 * the buffer; r1t_guard_ok() checks them (catches out-of-bounds writes).
 * r1t_poison_f32 / _i32 fill outputs with a NaN payload / sentinel so that
 * r1t_count_poisoned_* can prove every element was written.
 */
#ifndef R1LAB_TESTS_HARNESS_H
#define R1LAB_TESTS_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#define R1T_SKIP_EXIT_CODE 77

void r1t_begin(int argc, char **argv, const char *component);
/* Seed for random inputs: R1_SEED if set, else derived from the clock. */
uint64_t r1t_seed(void);
/* 1 when --small was given: tests shrink their sizes (sanitizer runs). */
int r1t_small(void);
/* 1 if the case should run (no --case filter, or the name matches). Ends the
 * previous case. */
int r1t_case(const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void r1t_check_failed(const char *file, int line, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#define R1T_CHECK(condition, ...)                                                  \
    do {                                                                           \
        if (!(condition)) r1t_check_failed(__FILE__, __LINE__, __VA_ARGS__);       \
    } while (0)
/* Number of failed checks in the current case so far. */
int r1t_case_failures(void);
/* Exit now with code 77 (ctest skip), printing the reason. */
void r1t_skip(const char *reason);
int r1t_end(void);

/* Guarded buffers. */
void *r1t_guarded_alloc(size_t bytes);
int r1t_guard_ok(const void *buffer);
void r1t_guarded_free(void *buffer);

#define R1T_POISON_I32 ((int32_t)0x7BADBEEF)
void r1t_poison_f32(float *values, size_t count);
void r1t_poison_i32(int32_t *values, size_t count);
size_t r1t_count_poisoned_f32(const float *values, size_t count);
size_t r1t_count_poisoned_i32(const int32_t *values, size_t count);

/* Random test inputs: r1t_rng_* (tests/random.h). */
#include "random.h"

#endif
