/*
 * tests/harness.c — see harness.h.
 */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *component_name = "?";
static const char *case_filter = NULL;
static uint64_t test_seed;
static int small_sizes;
static int cases_passed, cases_failed;
static int in_case, current_case_failures;
static char current_case_name[256];

static void finish_current_case(void) {
    if (!in_case) return;
    if (current_case_failures == 0) {
        ++cases_passed;
    } else {
        ++cases_failed;
        printf("FAIL %s  (rerun: --case '%s' with R1_SEED=%llu)\n", current_case_name,
               current_case_name, (unsigned long long)test_seed);
    }
    in_case = 0;
}

void r1t_begin(int argc, char **argv, const char *component) {
    component_name = component;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) case_filter = argv[++i];
        else if (strcmp(argv[i], "--small") == 0) small_sizes = 1;
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [--case NAME] [--small]\n  runs the %s tests; R1_SEED=N fixes "
                   "random inputs; --small shrinks sizes\n",
                   argv[0], component);
            exit(0);
        } else {
            fprintf(stderr, "%s: unknown argument \"%s\" (see --help)\n", argv[0], argv[i]);
            exit(2);
        }
    }
    const char *seed_text = getenv("R1_SEED");
    if (seed_text && *seed_text) test_seed = strtoull(seed_text, NULL, 0);
    else test_seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("%s tests, R1_SEED=%llu\n", component, (unsigned long long)test_seed);
    fflush(stdout);
}

uint64_t r1t_seed(void) { return test_seed; }
int r1t_small(void) { return small_sizes; }

int r1t_case(const char *format, ...) {
    finish_current_case();
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(current_case_name, sizeof current_case_name, format, arguments);
    va_end(arguments);
    if (case_filter && strcmp(case_filter, current_case_name) != 0) return 0;
    in_case = 1;
    current_case_failures = 0;
    return 1;
}

void r1t_check_failed(const char *file, int line, const char *format, ...) {
    if (current_case_failures < 8) {
        printf("  %s:%d [%s] ", file, line, current_case_name);
        va_list arguments;
        va_start(arguments, format);
        vprintf(format, arguments);
        va_end(arguments);
        printf("\n");
    }
    ++current_case_failures;
    if (!in_case) { /* a check outside any case counts as its own failed case */
        ++cases_failed;
        current_case_failures = 0;
    }
}

int r1t_case_failures(void) { return current_case_failures; }

void r1t_skip(const char *reason) {
    printf("SKIP %s: %s\n", component_name, reason);
    exit(R1T_SKIP_EXIT_CODE);
}

int r1t_end(void) {
    finish_current_case();
    printf("%s: %d passed, %d failed\n", component_name, cases_passed, cases_failed);
    if (cases_passed + cases_failed == 0) {
        printf("%s: no case ran%s — this is a failure\n", component_name,
               case_filter ? " (check the --case name)" : "");
        return 1;
    }
    return cases_failed == 0 ? 0 : 1;
}

/* ---- guarded buffers ----------------------------------------------------- */
/* Layout: [size_t bytes][64 guard bytes][user bytes][64 guard bytes] */
#define GUARD_BYTES 64
#define GUARD_VALUE 0xA5

void *r1t_guarded_alloc(size_t bytes) {
    unsigned char *base = malloc(sizeof(size_t) + 2 * GUARD_BYTES + bytes + 1);
    if (!base) {
        fprintf(stderr, "r1t_guarded_alloc: out of memory for %zu bytes\n", bytes);
        abort();
    }
    memcpy(base, &bytes, sizeof bytes);
    memset(base + sizeof(size_t), GUARD_VALUE, GUARD_BYTES);
    memset(base + sizeof(size_t) + GUARD_BYTES + bytes, GUARD_VALUE, GUARD_BYTES);
    return base + sizeof(size_t) + GUARD_BYTES;
}

int r1t_guard_ok(const void *buffer) {
    const unsigned char *user = buffer;
    const unsigned char *base = user - GUARD_BYTES - sizeof(size_t);
    size_t bytes;
    memcpy(&bytes, base, sizeof bytes);
    for (int i = 0; i < GUARD_BYTES; ++i)
        if (user[-1 - i] != GUARD_VALUE || user[bytes + (size_t)i] != GUARD_VALUE) return 0;
    return 1;
}

void r1t_guarded_free(void *buffer) {
    if (buffer) free((unsigned char *)buffer - GUARD_BYTES - sizeof(size_t));
}

/* ---- poison -------------------------------------------------------------- */
static const uint32_t POISON_F32_BITS = 0x7FBADBADu; /* a quiet NaN with a payload */

void r1t_poison_f32(float *values, size_t count) {
    for (size_t i = 0; i < count; ++i) memcpy(&values[i], &POISON_F32_BITS, 4);
}
void r1t_poison_i32(int32_t *values, size_t count) {
    for (size_t i = 0; i < count; ++i) values[i] = R1T_POISON_I32;
}
size_t r1t_count_poisoned_f32(const float *values, size_t count) {
    size_t poisoned = 0;
    for (size_t i = 0; i < count; ++i) {
        uint32_t bits;
        memcpy(&bits, &values[i], 4);
        poisoned += bits == POISON_F32_BITS;
    }
    return poisoned;
}
size_t r1t_count_poisoned_i32(const int32_t *values, size_t count) {
    size_t poisoned = 0;
    for (size_t i = 0; i < count; ++i) poisoned += values[i] == R1T_POISON_I32;
    return poisoned;
}
