/*
 * tests/test_kd_cuda.c — kd on the CUDA backend; exits 77 (skip) where CUDA
 * was not built or no GPU is visible. --small shrinks the agreement sizes for
 * compute-sanitizer runs. Every failure prints the case (its full parameter
 * string and seed), the worst index and the differing values.
 */
#include <string.h>

#include "harness.h"
#include "kd_suite.h"

#include "kd_suite.c"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "kd_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    kd_suite(R1_CUDA);
    return r1t_end();
}
