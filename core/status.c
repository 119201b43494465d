/*
 * core/status.c — status codes, the thread-local error sentence, backend names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static _Thread_local char last_error_sentence[512];

const char *r1_status_str(r1_status status) {
    switch (status) {
    case R1_OK: return "R1_OK";
    case R1_EINVAL: return "R1_EINVAL";
    case R1_ENOMEM: return "R1_ENOMEM";
    case R1_EIO: return "R1_EIO";
    case R1_EFORMAT: return "R1_EFORMAT";
    case R1_EUNSUPPORTED: return "R1_EUNSUPPORTED";
    case R1_ECUDA: return "R1_ECUDA";
    case R1_ENUMERIC: return "R1_ENUMERIC";
    case R1_EINTERNAL: return "R1_EINTERNAL";
    }
    return "unknown status";
}

const char *r1_last_error(void) { return last_error_sentence; }

void r1_clear_error(void) { last_error_sentence[0] = '\0'; }

/* Formats into a local buffer first, so that a caller may pass
 * r1_last_error() itself as an argument ("context: %s"). */
r1_status r1_fail(r1_status status, const char *format, ...) {
    char sentence[sizeof last_error_sentence];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(sentence, sizeof sentence, format, arguments);
    va_end(arguments);
    memcpy(last_error_sentence, sentence, sizeof sentence);
    return status;
}

const char *r1_backend_name(r1_backend backend) {
    switch (backend) {
    case R1_REF: return "ref";
    case R1_FAST: return "fast";
    case R1_CUDA: return "cuda";
    }
    return "unknown";
}

r1_status r1_backend_parse(const char *name, r1_backend *backend) {
    if (name == NULL || backend == NULL)
        return r1_fail(R1_EINVAL, "r1_backend_parse: name and backend must not be NULL");
    for (int b = 0; b < R1_BACKEND_COUNT; ++b) {
        if (strcmp(name, r1_backend_name((r1_backend)b)) == 0) {
            *backend = (r1_backend)b;
            return R1_OK;
        }
    }
    return r1_fail(R1_EINVAL, "unknown backend \"%s\" (expected ref, fast or cuda)", name);
}

int r1_backend_available(r1_backend backend) {
    switch (backend) {
    case R1_REF:
    case R1_FAST: return 1;
    case R1_CUDA: return r1_cuda_built() && strcmp(r1_device_name(), "none") != 0;
    }
    return 0;
}

const char *r1_version(void) { return "0.1.0"; }

r1_status r1_check_backend(r1_backend backend) {
    if (backend != R1_REF && backend != R1_FAST && backend != R1_CUDA)
        return r1_fail(R1_EINVAL, "backend = %d: expected R1_REF, R1_FAST or R1_CUDA",
                       (int)backend);
    if (backend == R1_CUDA && !r1_backend_available(R1_CUDA))
        return r1_fail(R1_EUNSUPPORTED, "the cuda backend is not available here (%s)",
                       r1_cuda_built() ? "no GPU visible" : "built without CUDA");
    return R1_OK;
}
