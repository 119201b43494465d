/*
 * tests/check.c — helpers shared by every component's checks (check.h) and
 * the list of components that `r1lab check` runs.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *check_golden_dir(void) {
    static char path[4096];
    const char *dir = getenv("R1LAB_GOLDEN_DIR");
    if (dir && *dir) return dir;
    const char *source = getenv("R1LAB_SOURCE_DIR");
#ifdef R1LAB_SOURCE_DIR
    if (!source || !*source) source = R1LAB_SOURCE_DIR;
#endif
    snprintf(path, sizeof path, "%s/golden", source ? source : ".");
    return path;
}

void check_note_error(check_summary *summary, const char *what, double error, double bar) {
    double ratio = bar > 0 ? error / bar : (error > 0 ? INFINITY : 0);
    if (isnan(ratio)) ratio = INFINITY;
    if (ratio >= summary->worst_ratio) {
        summary->worst_ratio = ratio;
        size_t length = strlen(what);
        if (length >= sizeof summary->worst_what) length = sizeof summary->worst_what - 1;
        memcpy(summary->worst_what, what, length);
        summary->worst_what[length] = '\0';
    }
}

double check_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}


const check_component *const *check_components(int *count) {
    static const check_component *const list[] = {
        &check_component_sampling, &check_component_answer, &check_component_kd,
        &check_component_moe,      &check_component_mla,    &check_component_qgemm,
    };
    *count = (int)(sizeof list / sizeof list[0]);
    return list;
}
