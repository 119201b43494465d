/*
 * tests/test_kd.c — kd on the CPU backends (ref, fast): golden files, agreement
 * with ref on fresh random inputs, bad input, all tokens ignored, NaN rows,
 * and a finite-difference check of ref's gradient.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_kd.h"
#include "compare.h"
#include "harness.h"
#include "r1lab/kd.h"

#include "kd_suite.c"

/* Central differences of L(s) in float64 through ref (f32 logits, small V):
 * dL/ds_i ~ (L(s + e_i h) - L(s - e_i h)) / 2h. Bar 1e-3 relative L2: L is
 * returned as float32 (rounding ~6e-8 relative), so with h = 1e-2 the
 * difference quotient carries ~1e-5 / 2e-2 absolute noise plus the h^2 term
 * (~1e-4 relative): a wrong term in any gradient formula is off by O(1). */
static void finite_difference_case(float T, float gamma, float beta, int sparse) {
    if (!r1t_case("kd_finite_difference(T=%g,gamma=%g,beta=%g,sparse=%d)", (double)T,
                  (double)gamma, (double)beta, sparse))
        return;
    const int64_t N = 3, V = 17;
    r1t_rng rng = r1t_rng_make(r1t_seed() + 11);
    float s[3 * 17], z[3 * 17], grad[3 * 17], numeric[3 * 17];
    for (int i = 0; i < N * V; ++i) {
        s[i] = (float)(1.5 * r1t_rng_normal(&rng));
        z[i] = (float)(1.5 * r1t_rng_normal(&rng));
    }
    z[5] = -INFINITY; /* a masked entry (not for reverse KL) */
    if (beta == 1.0f) z[5] = 0.3f;
    int32_t labels[3] = {4, -100, 16};
    int32_t ids[3 * 4] = {1, 7, 3, 9, 0, 2, 4, 6, 16, 15, 14, 13};
    float logprobs[3 * 4] = {-0.5f, -1.5f, -2.0f, -4.0f, -1.0f, -1.0f, -2.0f, -3.0f,
                             -0.1f, -3.0f, -INFINITY, -5.0f};
    r1_kd_desc desc = r1_kd_desc_default();
    desc.tokens = N;
    desc.vocab = V;
    desc.temperature = T;
    desc.gamma = gamma;
    desc.beta = beta;
    desc.teacher_topk = sparse ? 4 : 0;
    r1_kd_inputs in = {s, sparse ? NULL : z, sparse ? ids : NULL, sparse ? logprobs : NULL, labels};
    float loss;
    r1_kd_outputs out = {&loss, NULL, grad};
    R1T_CHECK(r1_kd_loss(R1_REF, &desc, &in, &out, NULL, 0, NULL) == R1_OK, "ref: %s",
              r1_last_error());
    const float h = 1e-2f;
    for (int i = 0; i < N * V; ++i) {
        float keep = s[i], plus, minus;
        s[i] = keep + h;
        r1_kd_loss(R1_REF, &desc, &in, &(r1_kd_outputs){&plus, NULL, NULL}, NULL, 0, NULL);
        s[i] = keep - h;
        r1_kd_loss(R1_REF, &desc, &in, &(r1_kd_outputs){&minus, NULL, NULL}, NULL, 0, NULL);
        s[i] = keep;
        /* the perturbed value is what float32 holds: divide by the actual step */
        numeric[i] = (plus - minus) / ((keep + h) - (keep - h));
    }
    r1t_comparison c = r1t_compare_f32("finite difference", grad, numeric, (size_t)(N * V), 1e-3);
    R1T_CHECK(c.ok, "analytic vs numeric gradient: relative L2 %.3e", c.relative_l2);
    for (int i = V; i < 2 * V; ++i) R1T_CHECK(grad[i] == 0.0f, "ignored row gradient [%d] = %g", i, (double)grad[i]);
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "kd");
    finite_difference_case(1.0f, 1.0f, 0.0f, 0);
    finite_difference_case(2.0f, 0.5f, 0.0f, 0);
    finite_difference_case(4.0f, 0.5f, 1.0f, 0);
    finite_difference_case(1.0f, 1.0f, 1.0f, 0);
    finite_difference_case(2.0f, 0.3f, 0.5f, 0);
    finite_difference_case(1.0f, 1.0f, 0.2f, 0);
    finite_difference_case(2.0f, 0.5f, 0.0f, 1);
    finite_difference_case(1.0f, 0.5f, 0.5f, 1);
    finite_difference_case(1.0f, 0.0f, 0.0f, 0);
    kd_suite(R1_REF);
    kd_suite(R1_FAST);
    return r1t_end();
}
