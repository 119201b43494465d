/*
 * tests/test_moe_cuda.c — moe on the CUDA backend; exits 77 (skip) where CUDA
 * was not built or no GPU is visible. --small shrinks the agreement sizes for
 * compute-sanitizer runs.
 */
#include <inttypes.h>

#include "core/internal.h"
#include "moe_cases.h"

/* The fused gate computes sigmoid without branches (kernels/moe.cu); its bits
 * must be r1_moe_sigmoid_inline's for every float, or cuda could choose other
 * experts than ref on a near-tie. All 2^32 inputs (skipped with --small: the
 * sanitizers would take minutes and the kernel has no memory to check). */
static void sigmoid_bits_case(void) {
    if (!r1t_case("moe_sigmoid_bits(backend=cuda,inputs=2^32)")) return;
    if (r1t_small()) return;
    uint64_t mismatches = 1;
    uint32_t first = 0;
    r1_status s = moe_cuda_check_sigmoid(&mismatches, &first);
    R1T_CHECK(s == R1_OK, "check failed: %s", r1_last_error());
    R1T_CHECK(mismatches == 0, "%" PRIu64 " inputs give other bits than r1_moe_sigmoid_inline, "
              "the first 0x%08" PRIx32, mismatches, first);
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "moe_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    sigmoid_bits_case();
    moe_suite(R1_CUDA);
    return r1t_end();
}
