/*
 * tests/test_sampling_cuda.c — sampling on the CUDA backend; exits 77 (skip)
 * where CUDA was not built or no GPU is visible. --small shrinks the
 * agreement and chi-square sizes for compute-sanitizer runs.
 */
#include <string.h>

#include "harness.h"
#include "sampling_suite.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "sampling_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    sampling_suite(R1_CUDA);
    return r1t_end();
}
