/*
 * r1lab/philox.h — Philox4x32-10, the counter-based random number generator of
 * Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3"
 * (SC 2011), usable from host C and from CUDA device code.
 *
 * A counter-based generator is a keyed bijection: output = f_key(counter). No
 * state is carried from one draw to the next, so every backend, thread and
 * block gets the same number for the same (key, counter) without coordination.
 *
 * One round maps (c0, c1, c2, c3) with key (k0, k1) to
 *     hi0:lo0 = M0 * c0          (64-bit product, M0 = 0xD2511F53)
 *     hi1:lo1 = M1 * c2          (M1 = 0xCD9E8D57)
 *     (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
 * and between rounds the key is bumped by the Weyl constants
 *     k0 += 0x9E3779B9, k1 += 0xBB67AE85.
 * Ten rounds make Philox4x32-10.
 *
 * r1lab's draw for sampling: key = (seed low 32 bits, seed high 32 bits),
 * counter = (row low, row high, step low, step high), and the uniform number is
 *     u = ((x0 << 21) ^ (x1 >> 11)) * 2^-53          x = Philox(counter, key)
 * a double in [0, 1) with 53 random bits, exact in IEEE-754, so every backend
 * draws bit-for-bit the same u for the same (seed, row, step).
 * r1_uniform_f32 is the float form: (x >> 8) * 2^-24, in [0, 1).
 */
#ifndef R1LAB_PHILOX_H
#define R1LAB_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define R1_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define R1_HOST_DEVICE static inline
#endif

typedef struct r1_philox4x32 {
    uint32_t v[4];
} r1_philox4x32;

R1_HOST_DEVICE uint32_t r1_mul_hi_lo_32(uint32_t a, uint32_t b, uint32_t *high) {
    uint64_t product = (uint64_t)a * (uint64_t)b;
    *high = (uint32_t)(product >> 32);
    return (uint32_t)product;
}

/* Philox4x32-10 of `counter` under `key`. */
R1_HOST_DEVICE r1_philox4x32 r1_philox4x32_10(r1_philox4x32 counter, uint32_t key0,
                                               uint32_t key1) {
    uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
    for (int round = 0; round < 10; ++round) {
        uint32_t high0, high1;
        uint32_t low0 = r1_mul_hi_lo_32(0xD2511F53u, c0, &high0);
        uint32_t low1 = r1_mul_hi_lo_32(0xCD9E8D57u, c2, &high1);
        uint32_t n0 = high1 ^ c1 ^ key0;
        uint32_t n2 = high0 ^ c3 ^ key1;
        c0 = n0;
        c1 = low1;
        c2 = n2;
        c3 = low0;
        key0 += 0x9E3779B9u;
        key1 += 0xBB67AE85u;
    }
    r1_philox4x32 out = {{c0, c1, c2, c3}};
    return out;
}

/* The four 32-bit words drawn for (seed, row, step). */
R1_HOST_DEVICE r1_philox4x32 r1_philox_draw(uint64_t seed, uint64_t row, uint64_t step) {
    r1_philox4x32 counter = {{(uint32_t)row, (uint32_t)(row >> 32), (uint32_t)step,
                              (uint32_t)(step >> 32)}};
    return r1_philox4x32_10(counter, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform double in [0, 1) from two words, 53 bits, exact. */
R1_HOST_DEVICE double r1_uniform_f64(uint32_t x0, uint32_t x1) {
    uint64_t bits53 = ((uint64_t)x0 << 21) ^ (uint64_t)(x1 >> 11);
    return (double)bits53 * (1.0 / 9007199254740992.0); /* 2^-53 */
}

/* Uniform float in [0, 1) from one word, 24 bits, exact. */
R1_HOST_DEVICE float r1_uniform_f32(uint32_t x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f); /* 2^-24 */
}

/* The u that sampling uses for (seed, row, step). */
R1_HOST_DEVICE double r1_sampling_uniform(uint64_t seed, uint64_t row, uint64_t step) {
    r1_philox4x32 x = r1_philox_draw(seed, row, step);
    return r1_uniform_f64(x.v[0], x.v[1]);
}

#endif /* R1LAB_PHILOX_H */
