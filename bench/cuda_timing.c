/*
 * bench/cuda_timing.c — r1b_time_cuda_calls(): the CUDA-event timed loop that
 * every CUDA benchmark uses (bench.h).
 */
#include <stdio.h>

#include "bench.h"
#include "r1lab/common.h"

#ifdef R1LAB_HAVE_CUDA
#include <cuda_runtime.h>

int r1b_time_cuda_calls(r1b_state *state, int (*run)(void *context), void *context) {
    cudaEvent_t start, stop;
    if (cudaEventCreate(&start) != cudaSuccess) {
        r1b_skip_with_error(state, "cudaEventCreate failed");
        return R1_ECUDA;
    }
    if (cudaEventCreate(&stop) != cudaSuccess) {
        cudaEventDestroy(start);
        r1b_skip_with_error(state, "cudaEventCreate failed");
        return R1_ECUDA;
    }
    int status = R1_OK;
    for (; r1b_keep_running(state);) {
        cudaEventRecord(start, 0);
        status = run(context);
        cudaEventRecord(stop, 0);
        cudaEventSynchronize(stop);
        if (status != R1_OK) {
            char why[512];
            snprintf(why, sizeof why, "a timed call failed: %s", r1_last_error());
            r1b_skip_with_error(state, why);
            break;
        }
        float milliseconds = 0;
        cudaEventElapsedTime(&milliseconds, start, stop);
        r1b_set_iteration_time(state, milliseconds * 1e-3);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaError_t error = cudaGetLastError();
    if (status == R1_OK && error != cudaSuccess) {
        char why[512];
        snprintf(why, sizeof why, "a CUDA call failed: %s", cudaGetErrorString(error));
        r1b_skip_with_error(state, why);
        status = R1_ECUDA;
    }
    return status;
}

#else

int r1b_time_cuda_calls(r1b_state *state, int (*run)(void *context), void *context) {
    (void)run;
    (void)context;
    r1b_skip_with_error(state, "r1lab was built without CUDA");
    return R1_EUNSUPPORTED;
}

#endif
