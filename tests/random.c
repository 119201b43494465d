/*
 * tests/random.c — see random.h. splitmix64: state += golden ratio, then two
 * xor-shift-multiply rounds; normals by Box-Muller.
 */
#include "random.h"

#include <math.h>

r1t_rng r1t_rng_make(uint64_t seed) {
    r1t_rng rng = {seed ^ 0x9E3779B97F4A7C15ull};
    return rng;
}
uint64_t r1t_rng_u64(r1t_rng *rng) {
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
double r1t_rng_uniform(r1t_rng *rng) { return (double)(r1t_rng_u64(rng) >> 11) * 0x1p-53; }
double r1t_rng_normal(r1t_rng *rng) {
    double u1 = r1t_rng_uniform(rng), u2 = r1t_rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
int64_t r1t_rng_range(r1t_rng *rng, int64_t lo, int64_t hi) {
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(span ? r1t_rng_u64(rng) % span : r1t_rng_u64(rng));
}
