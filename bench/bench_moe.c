/*
 * bench/bench_moe.c — benchmarks of the moe component (none yet).
 */
#include "bench.h"

void r1b_register_moe(void) {}
