/*
 * bench/bench_qgemm.c — benchmarks of the qgemm component (none yet).
 */
#include "bench.h"

void r1b_register_qgemm(void) {}
