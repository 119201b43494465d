/*
 * bench/bench_answer.c — benchmarks of the answer component (none yet).
 */
#include "bench.h"

void r1b_register_answer(void) {}
