/*
 * tests/test_moe.c — moe on the CPU backends (ref, fast): bad input, a
 * hand-worked token, golden files, agreement with ref (tests/moe_cases.h).
 */
#include "moe_cases.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "moe");
    moe_suite(R1_REF);
    moe_suite(R1_FAST);
    return r1t_end();
}
