/*
 * kernels/cuda_try.cuh — CUDA_TRY(call): runs a CUDA runtime call and, when it
 * fails, returns R1_ECUDA from the enclosing function with a sentence naming
 * the file, the line, the call and CUDA's error string (r1_last_error()).
 * Used by every CUDA file in kernels/; include it after core/internal.h.
 */
#ifndef R1LAB_KERNELS_CUDA_TRY_CUH
#define R1LAB_KERNELS_CUDA_TRY_CUH

#include <cuda_runtime.h>

#define CUDA_TRY(call)                                                                    \
    do {                                                                                  \
        cudaError_t cuda_try_error = (call);                                              \
        if (cuda_try_error != cudaSuccess)                                                \
            return r1_fail(R1_ECUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #call,          \
                           cudaGetErrorString(cuda_try_error));                           \
    } while (0)

#endif
