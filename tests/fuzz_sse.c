/*
 * tests/fuzz_sse.c — libFuzzer target for the SSE parser (pipeline/distill_parse.c).
 *
 * The input is fed twice: whole, and split at a position taken from its first
 * byte. Both must give the same status and, on success, the same response
 * (the parser is split-invariant). Nothing may crash, leak or loop.
 *
 *   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DR1LAB_FUZZ=ON -DR1LAB_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_sse && build-fuzz/fuzz_sse -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1lab/distill.h"

static r1_status run(const uint8_t *bytes, size_t size, size_t split, r1_distill_response *out) {
    r1_distill_sse *sse = NULL;
    if (r1_distill_sse_create(&sse) != R1_OK) abort();
    int64_t events = 0;
    r1_status status = r1_distill_sse_feed(sse, (const char *)bytes, split, &events);
    if (status == R1_OK) status = r1_distill_sse_feed(sse, (const char *)bytes + split, size - split, &events);
    if (status == R1_OK) status = r1_distill_sse_finish(sse, out);
    r1_distill_sse_destroy(sse);
    return status;
}

static int same(const char *a, const char *b) {
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    size_t split = size ? bytes[0] % (size + 1) : 0;
    r1_distill_response whole, parts;
    r1_status a = run(bytes, size, 0, &whole);
    r1_status b = run(bytes, size, split, &parts);
    if (a != b) {
        fprintf(stderr, "fuzz_sse: status %d whole, %d split at %zu\n", (int)a, (int)b, split);
        abort();
    }
    if (a == R1_OK) {
        if (whole.is_error != parts.is_error || !same(whole.content, parts.content) ||
            !same(whole.reasoning, parts.reasoning) || !same(whole.finish_reason, parts.finish_reason) ||
            whole.completion_tokens != parts.completion_tokens) {
            fprintf(stderr, "fuzz_sse: split at %zu changed the response\n", split);
            abort();
        }
        r1_distill_response_free(&whole);
        r1_distill_response_free(&parts);
    }
    return 0;
}
