/*
 * tests/test_sampling.c — sampling on the CPU backends (ref, fast): bad input,
 * hand-worked rows, golden files, agreement with ref, chi-square.
 */
#include "harness.h"
#include "sampling_suite.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "sampling");
    sampling_suite(R1_REF);
    sampling_suite(R1_FAST);
    return r1t_end();
}
