/*
 * bench/bench_distill.c — benchmarks of the distill component (none yet).
 */
#include "bench.h"

void r1b_register_distill(void) {}
