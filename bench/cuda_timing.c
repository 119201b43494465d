/*
 * bench/cuda_timing.c — r1b_time_cuda_calls(): the CUDA-event timed loop that
 * every CUDA benchmark uses, and r1b_cuda_graph_us_per_call(): the same calls
 * replayed from a CUDA graph (bench.h).
 */
#include <stdio.h>
#include <stdlib.h>

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

static int compare_floats(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* cudaError_t -> 1 (and a line on stderr) when it is an error. */
static int graph_failed(cudaError_t error, const char *what) {
    if (error == cudaSuccess) return 0;
    fprintf(stderr, "r1b_cuda_graph_us_per_call: %s: %s\n", what, cudaGetErrorString(error));
    cudaGetLastError();
    return 1;
}

double r1b_cuda_graph_us_per_call(int (*run)(void *context), void *context, void **stream,
                                  int calls) {
    enum { REPLAYS = 20 };
    cudaStream_t capture = NULL;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float times[REPLAYS];
    double result = -1.0;
    if (calls < 1 || graph_failed(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking),
                                  "cudaStreamCreate"))
        return -1.0;
    *stream = capture;
    int captured = !graph_failed(cudaStreamBeginCapture(capture, cudaStreamCaptureModeThreadLocal),
                                 "cudaStreamBeginCapture");
    for (int i = 0; captured && i < calls; ++i)
        if (run(context) != R1_OK) {
            fprintf(stderr, "r1b_cuda_graph_us_per_call: a captured call failed: %s\n",
                    r1_last_error());
            captured = 0;
        }
    /* End the capture whatever happened, so the stream is usable again. */
    cudaError_t ended = cudaStreamEndCapture(capture, &graph);
    *stream = NULL;
    if (!captured || graph_failed(ended, "cudaStreamEndCapture") ||
        graph_failed(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate") ||
        graph_failed(cudaEventCreate(&start), "cudaEventCreate") ||
        graph_failed(cudaEventCreate(&stop), "cudaEventCreate") ||
        graph_failed(cudaGraphLaunch(exec, capture), "cudaGraphLaunch") ||
        graph_failed(cudaStreamSynchronize(capture), "warm-up replay"))
        goto done;
    for (int r = 0; r < REPLAYS; ++r) {
        if (graph_failed(cudaEventRecord(start, capture), "cudaEventRecord") ||
            graph_failed(cudaGraphLaunch(exec, capture), "cudaGraphLaunch") ||
            graph_failed(cudaEventRecord(stop, capture), "cudaEventRecord") ||
            graph_failed(cudaEventSynchronize(stop), "replay") ||
            graph_failed(cudaEventElapsedTime(&times[r], start, stop), "cudaEventElapsedTime"))
            goto done;
    }
    qsort(times, REPLAYS, sizeof times[0], compare_floats);
    result = (double)times[REPLAYS / 2] * 1e3 / calls;
done:
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(capture);
    return result;
}

#else

int r1b_time_cuda_calls(r1b_state *state, int (*run)(void *context), void *context) {
    (void)run;
    (void)context;
    r1b_skip_with_error(state, "r1lab was built without CUDA");
    return R1_EUNSUPPORTED;
}

double r1b_cuda_graph_us_per_call(int (*run)(void *context), void *context, void **stream,
                                  int calls) {
    (void)run;
    (void)context;
    (void)stream;
    (void)calls;
    return -1.0;
}

#endif
