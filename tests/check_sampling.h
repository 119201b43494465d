/*
 * tests/check_sampling.h — sampling checks (golden files, randomized agreement
 * against ref, chi-square goodness of fit), used by tests and `r1lab check`.
 */
#ifndef R1LAB_TESTS_CHECK_SAMPLING_H
#define R1LAB_TESTS_CHECK_SAMPLING_H

#include "check.h"
#include "r1lab/sampling.h"

/* Runs `backend` on host data: for R1_CUDA, copies logits in and outputs out
 * (outputs the caller leaves NULL stay NULL). */
r1_status sampling_run_on_host(r1_backend backend, const r1_sampling_desc *desc,
                               const void *logits, const r1_sampling_outputs *out);

/* Every golden/sampling/NAME.safetensors case, f32 and (where stored so) bf16. */
r1_status check_sampling_golden(r1_backend backend, check_summary *summary);

/* `rows` random rows (V mostly small, some at 152064) against ref: tokens
 * equal except where u is within 1e-5 of a cumulative boundary, at most one
 * mismatch in 10,000 rows; logprobs and filtered rows within 1e-5. */
r1_status check_sampling_agreement(r1_backend backend, uint64_t seed, int64_t rows,
                                   check_summary *summary);

/* `draws` draws of one row with distinct row indices against ref's filtered
 * distribution for a few settings; passes when every p-value >= 1e-4. */
r1_status check_sampling_chi_square(r1_backend backend, int64_t draws, check_summary *summary);

/* Tokens per second on a (B, V) f32 batch at the teacher settings. */
double check_sampling_throughput(r1_backend backend, int64_t batch, int64_t vocab);

#endif
