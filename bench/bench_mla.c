/*
 * bench/bench_mla.c — benchmarks of the mla component (none yet).
 */
#include "bench.h"

void r1b_register_mla(void) {}
