/*
 * bench/registry.c — the list of r1lab's benchmark groups: r1b_register_all()
 * calls one r1b_register_<component>() per component (each defined in
 * bench/bench_<component>.c). main() in bench/shim.cc calls it once, before
 * Google Benchmark parses its flags.
 */
#include "bench.h"

void r1b_register_all(void) {
    r1b_register_sampling();
    r1b_register_answer();
    r1b_register_distill();
    r1b_register_kd();
    r1b_register_moe();
    r1b_register_mla();
    r1b_register_qgemm();
#ifdef R1LAB_HAVE_CUDA
    r1b_register_launch_floor();
#endif
}
