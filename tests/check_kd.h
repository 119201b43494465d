/* tests/check_kd.h — the kd checks shared by test_kd, test_kd_cuda and `r1lab check`. */
#ifndef R1LAB_TESTS_CHECK_KD_H
#define R1LAB_TESTS_CHECK_KD_H
#include "check.h"
#include "r1lab/kd.h"

/* Bars (relative L2 against float64 expectations): f32 inputs 1e-5 (the fp32
 * bar of DESIGN.md: float32 logs and exps, ~1e-7 each, summed over V with
 * float64 row totals); bf16 inputs 1e-2 (the gradient is stored in bf16, a
 * relative rounding of 2^-9 per element, and fused bf16 GEMMs round G). */
#define KD_BAR_F32 1e-5
#define KD_BAR_BF16 1e-2
double kd_bar(r1_dtype dtype);

/* Run on host buffers: for R1_CUDA the inputs are copied to the device and the
 * outputs back (outputs start as copies of the host buffers). */
r1_status kd_run_on_host(r1_backend backend, const r1_kd_desc *desc, const r1_kd_inputs *in,
                         const r1_kd_outputs *out);
r1_status kd_linear_run_on_host(r1_backend backend, const r1_kd_linear_desc *desc,
                                const r1_kd_linear_inputs *in, const r1_kd_linear_outputs *out);

/* Every golden file under golden/kd on `backend`. */
r1_status check_kd_golden(r1_backend backend, check_summary *summary);
/* Random cases against ref (fresh inputs from `seed`), about `rows` tokens. */
r1_status check_kd_agreement(r1_backend backend, uint64_t seed, int64_t rows,
                             check_summary *summary);
#endif
