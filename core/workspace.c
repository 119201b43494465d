/*
 * core/workspace.c — the workspace rule every dispatcher follows (DESIGN.md:
 * "nothing allocates behind the caller's back in a hot path; workspace sizes
 * are queryable"): a caller either passes a workspace of at least the queried
 * size, or NULL, and then the call allocates one (host memory for ref and
 * fast, device memory for cuda) and frees it before it returns.
 */
#include <stdlib.h>

#include "core/internal.h"

/* Allocates the workspace when the caller gave none; *owned is what to free. */
r1_status r1_workspace_acquire(r1_backend backend, size_t needed, void **workspace,
                               size_t workspace_bytes, void **owned) {
    *owned = NULL;
    if (*workspace != NULL && workspace_bytes < needed)
        return r1_fail(R1_EINVAL, "workspace_bytes = %zu: this call needs %zu", workspace_bytes,
                       needed);
    if (*workspace == NULL && needed > 0) {
        r1_status status = R1_OK;
        if (backend == R1_CUDA) status = r1_device_alloc(owned, needed);
        else if ((*owned = malloc(needed)) == NULL) status = R1_ENOMEM;
        if (status != R1_OK)
            return status == R1_ENOMEM
                       ? r1_fail(R1_ENOMEM, "could not allocate %zu bytes of workspace", needed)
                       : status;
        *workspace = *owned;
    }
    return R1_OK;
}

r1_status r1_workspace_release(r1_backend backend, void *owned, r1_status status) {
    if (owned == NULL) return status;
    if (backend == R1_CUDA) {
        r1_status sync = r1_device_synchronize();
        r1_device_free(owned);
        if (status == R1_OK) status = sync;
    } else {
        free(owned);
    }
    return status;
}
