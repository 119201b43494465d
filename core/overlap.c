/*
 * core/overlap.c — byte-range overlap test shared by the dispatchers.
 */
#include <stdint.h>

#include "core/internal.h"

int r1_ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
    if (a == NULL || b == NULL || a_bytes == 0 || b_bytes == 0) return 0;
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    /* [a0, a0 + a_bytes) and [b0, b0 + b_bytes) intersect; written without
     * forming an end address that could wrap. */
    return a0 <= b0 ? b0 - a0 < a_bytes : a0 - b0 < b_bytes;
}

r1_status r1_check_no_overlap(const char *a_name, const void *a, size_t a_bytes,
                              const char *b_name, const void *b, size_t b_bytes) {
    if (!r1_ranges_overlap(a, a_bytes, b, b_bytes)) return R1_OK;
    return r1_fail(R1_EINVAL, "%s overlaps %s: they must not overlap", a_name, b_name);
}
