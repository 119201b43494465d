/*
 * core/moe_math.h — r1lab's float32 exp and sigmoid for MoE routing, written
 * once for C (ref, fast) and CUDA (kernels) so that every backend computes the
 * same bits and therefore chooses the same experts.
 *
 *   exp(y) = 2^n * p(r),  n = floor(y * log2(e) + 1/2),  r = (y - n*C1) - n*C2
 *   (C1 + C2 = ln 2, C1 with 16 significant bits so n*C1 is exact), p the
 *   degree-7 Taylor polynomial of e^r in Horner form (|r| <= 0.35: within
 *   2 ulp of the true value). y < -87 gives 0; y > 88 gives +inf.
 *   sigmoid(x) = 1 / (1 + exp(-x)).
 *
 * Every operation is one IEEE float operation, rounded to nearest: C files are
 * compiled as ISO C11 (no contraction into fused multiply-add); CUDA uses the
 * __f*_rn intrinsics, which are never contracted.
 */
#ifndef R1LAB_CORE_MOE_MATH_H
#define R1LAB_CORE_MOE_MATH_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define R1_MOE_HD __host__ __device__ __forceinline__
#else
#define R1_MOE_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define R1_MOE_MUL(a, b) __fmul_rn((a), (b))
#define R1_MOE_ADD(a, b) __fadd_rn((a), (b))
#define R1_MOE_SUB(a, b) __fsub_rn((a), (b))
#define R1_MOE_DIV(a, b) __fdiv_rn((a), (b))
#define R1_MOE_FLOOR(a) floorf(a)
#else
#define R1_MOE_MUL(a, b) ((float)((float)(a) * (float)(b)))
#define R1_MOE_ADD(a, b) ((float)((float)(a) + (float)(b)))
#define R1_MOE_SUB(a, b) ((float)((float)(a) - (float)(b)))
#define R1_MOE_DIV(a, b) ((float)((float)(a) / (float)(b)))
#define R1_MOE_FLOOR(a) r1_moe_floor_host(a)
#endif

#if !defined(__CUDA_ARCH__)
/* floor for |a| < 2^23 (the only range used), without libm. */
R1_MOE_HD float r1_moe_floor_host(float a) {
    float t = (float)(int32_t)a;
    return t > a ? t - 1.0f : t;
}
#endif

/* exp(y) for -87 <= y <= 88, without the checks (kernels/moe.cu clamps y
 * into this range and selects the out-of-range results itself). */
R1_MOE_HD float r1_moe_exp_core(float y) {
    const float log2e = 1.44269504088896341f;
    const float c1 = 0.693145751953125f;     /* 0x3f317200 */
    const float c2 = 1.428606765330187e-06f; /* ln 2 - c1  */
    float n = R1_MOE_FLOOR(R1_MOE_ADD(R1_MOE_MUL(y, log2e), 0.5f));
    float r = R1_MOE_SUB(R1_MOE_SUB(y, R1_MOE_MUL(n, c1)), R1_MOE_MUL(n, c2));
    float p = 1.98412698e-4f;                        /* 1/7! */
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 1.38888889e-3f); /* 1/6! */
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 8.33333333e-3f); /* 1/5! */
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 4.16666667e-2f); /* 1/4! */
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 1.66666667e-1f); /* 1/3! */
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 0.5f);
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 1.0f);
    p = R1_MOE_ADD(R1_MOE_MUL(p, r), 1.0f);
    /* 2^n for n in [-126, 127]: exact, built from its bits. */
    int32_t e = (int32_t)n + 127;
    uint32_t bits = (uint32_t)e << 23;
    float scale;
#if defined(__CUDA_ARCH__)
    scale = __uint_as_float(bits);
#else
    memcpy(&scale, &bits, sizeof scale);
#endif
    return R1_MOE_MUL(p, scale);
}

R1_MOE_HD float r1_moe_exp_inline(float y) {
    if (y != y) return y;
    if (y < -87.0f) return 0.0f;
    if (y > 88.0f) return 1.0f / 0.0f;
    return r1_moe_exp_core(y);
}

R1_MOE_HD float r1_moe_sigmoid_inline(float x) {
    return R1_MOE_DIV(1.0f, R1_MOE_ADD(1.0f, r1_moe_exp_inline(-x)));
}

#endif
