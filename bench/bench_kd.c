/*
 * bench/bench_kd.c — benchmarks of the kd component (none yet).
 */
#include "bench.h"

void r1b_register_kd(void) {}
