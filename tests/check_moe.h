/*
 * tests/check_moe.h — moe checks (golden files, randomized agreement against
 * ref) used by test_moe, test_moe_cuda and `r1lab check`.
 */
#ifndef R1LAB_TESTS_CHECK_MOE_H
#define R1LAB_TESTS_CHECK_MOE_H

#include "check.h"
#include "r1lab/moe.h"

/* Host-memory wrappers: for R1_CUDA they copy inputs to the device and
 * outputs back; otherwise they call the backend directly. */
r1_status moe_route_on_host(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                            const float *bias, int32_t *ids, float *weights);
r1_status moe_dispatch_on_host(r1_backend backend, const r1_moe_desc *desc, const int32_t *ids,
                               const r1_moe_dispatch_out *out);
r1_status moe_balance_on_host(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                              const int32_t *ids, double alpha, float gamma,
                              const r1_moe_balance_out *out);
r1_status moe_permute_on_host(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                              const void *x, const int32_t *inverse, void *x_sorted);
r1_status moe_combine_on_host(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                              const void *expert_out, const int32_t *inverse,
                              const float *weights, const void *shared, void *y);

/* Every golden/moe/NAME.safetensors case on `backend`. */
r1_status check_moe_golden(r1_backend backend, check_summary *summary);

/* Random routing problems (all three modes, V3 size and tiny, with planted
 * ties and near-ties) of about `tokens` tokens in all, plus dispatch, permute
 * and combine (f32 and bf16), against ref. */
r1_status check_moe_agreement(r1_backend backend, uint64_t seed, int64_t tokens,
                              check_summary *summary);

/* Tokens per second of the V3 gate (routing only) at T = 4096. */
double check_moe_throughput(r1_backend backend);

#endif
