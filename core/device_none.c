/*
 * core/device_none.c — the device-memory helpers of common.h for a build
 * without CUDA. Nothing is computed here: every helper fails with
 * R1_EUNSUPPORTED and a sentence saying how to get a CUDA build, so a caller
 * that asks for R1_CUDA gets a clean skip instead of a crash.
 *
 * CMake compiles this file only when the CUDA backend is not built; a CUDA
 * build provides the same functions over the CUDA runtime instead.
 */
#include <stddef.h>

#include "core/internal.h"

static const char no_cuda_sentence[] =
    "r1lab was built without CUDA (configure with nvcc on PATH, R1LAB_CUDA=ON)";

static r1_status fail_without_cuda(void) {
    return r1_fail(R1_EUNSUPPORTED, "%s", no_cuda_sentence);
}

int r1_cuda_built(void) { return 0; }

/* Never allocates; *device_pointer is set to NULL so the caller holds no
 * stale pointer. */
r1_status r1_device_alloc(void **device_pointer, size_t bytes) {
    if (device_pointer != NULL) *device_pointer = NULL;
    return fail_without_cuda();
}

/* Freeing NULL succeeds everywhere, as cudaFree(NULL) does, so cleanup code
 * is the same in both builds. */
r1_status r1_device_free(void *device_pointer) {
    return device_pointer == NULL ? R1_OK : fail_without_cuda();
}

r1_status r1_device_copy(void *destination, const void *source, size_t bytes,
                         r1_copy_direction direction) {
    return fail_without_cuda();
}

r1_status r1_device_fill(void *device_pointer, int byte_value, size_t bytes) {
    return fail_without_cuda();
}

r1_status r1_device_synchronize(void) { return fail_without_cuda(); }

const char *r1_device_name(void) { return "none"; }
