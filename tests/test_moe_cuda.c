/*
 * tests/test_moe_cuda.c — moe on the CUDA backend; exits 77 (skip) where CUDA
 * was not built or no GPU is visible. --small shrinks the agreement sizes for
 * compute-sanitizer runs.
 */
#include "moe_cases.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "moe_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    moe_suite(R1_CUDA);
    return r1t_end();
}
