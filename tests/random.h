/*
 * tests/random.h — deterministic random numbers for test inputs (splitmix64),
 * shared by the test binaries and the checks behind `r1lab check`.
 */
#ifndef R1LAB_TESTS_RANDOM_H
#define R1LAB_TESTS_RANDOM_H

#include <stdint.h>

typedef struct r1t_rng { uint64_t state; } r1t_rng;
r1t_rng r1t_rng_make(uint64_t seed);
uint64_t r1t_rng_u64(r1t_rng *rng);
double r1t_rng_uniform(r1t_rng *rng);                        /* [0, 1)     */
double r1t_rng_normal(r1t_rng *rng);                         /* N(0, 1)    */
int64_t r1t_rng_range(r1t_rng *rng, int64_t lo, int64_t hi); /* [lo, hi]   */

#endif
