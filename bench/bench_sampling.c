/*
 * bench/bench_sampling.c — PLACEHOLDER until the sampling benchmarks land:
 * one host memcpy benchmark so that r1lab-bench builds, links and runs.
 *
 * Bytes per iteration: 2 * N (N read from the source, N written to the
 * destination), the same convention as r1b_host_copy_bandwidth(), so the
 * "fraction_of_host_copy" counter is this copy's share of the measured limit.
 * It also shows the pattern the real benchmarks follow: set up untimed, check,
 * time, report bytes and the fraction of a limit; skip on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct copy_case {
    size_t bytes; /* N */
} copy_case;

static void bench_host_copy(r1b_state *state, const void *user) {
    const copy_case *c = user;
    unsigned char *source = malloc(c->bytes);
    unsigned char *destination = malloc(c->bytes);
    if (source == NULL || destination == NULL) {
        free(source);
        free(destination);
        r1b_skip_with_error(state, "out of memory");
        return;
    }
    memset(source, 1, c->bytes);
    memset(destination, 0, c->bytes);
    for (; r1b_keep_running(state);) {
        memcpy(destination, source, c->bytes);
        r1b_do_not_optimize(destination);
    }
    if (destination[c->bytes - 1] != 1) {
        r1b_skip_with_error(state, "copy check failed: destination differs from source");
    } else {
        int64_t bytes_total = r1b_iterations(state) * 2 * (int64_t)c->bytes;
        r1b_set_bytes_processed(state, bytes_total);
        /* A rate counter is divided by the time, so bytes / limit becomes
         * (bytes/s) / limit: the fraction of the measured bandwidth. */
        double limit = r1b_host_copy_bandwidth();
        if (limit > 0.0)
            r1b_counter_rate(state, "fraction_of_host_copy", (double)bytes_total / limit);
    }
    free(source);
    free(destination);
}

void r1b_register_sampling(void) {
    static const copy_case cases[] = {{1u << 20}, {16u << 20}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        char name[64];
        snprintf(name, sizeof name, "host_copy(bytes=%zu)", cases[i].bytes);
        r1b_register(name, bench_host_copy, &cases[i]);
    }
}
