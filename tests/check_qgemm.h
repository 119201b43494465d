/*
 * tests/check_qgemm.h — the qgemm checks shared by test_qgemm, test_qgemm_cuda
 * and `r1lab check`.
 */
#ifndef R1LAB_TESTS_CHECK_QGEMM_H
#define R1LAB_TESTS_CHECK_QGEMM_H

#include "check.h"
#include "r1lab/qgemm.h"

/* Every golden file of golden/qgemm on `backend`: quantizers (bytes and scale
 * bits exact), products from the golden's quantized values (W8A8 accumulators
 * exact; outputs within the bars of check_qgemm.c), the quantization error
 * (calc_diff) within the bound stored with each case, and the e4m3 conversion
 * table. Failures are printed with case, index and values. */
r1_status qgemm_check_goldens(r1_backend backend, check_summary *summary);

/* Random shapes (edges of every tile size), inputs from `seed`: backend vs ref
 * for quantizers (exact), W8A8 accumulators (exact) and outputs (bars), for
 * every scheme and both output dtypes. `small` shrinks the shapes. */
r1_status qgemm_check_agreement(r1_backend backend, uint64_t seed, int small,
                                check_summary *summary);

#endif
