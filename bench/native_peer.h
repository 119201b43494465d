/*
 * bench/native_peer.h — what the native peer harnesses (bench/flashmla_peer.cu,
 * bench/marlin_peer.cu) share: their command line, the GPU they run on, the
 * CUDA check that stops the program, the event-timed loop that matches
 * r1lab-bench's, and the frame of their JSON results.
 *
 * Timing (time_event_calls): `warmup` untimed calls, then calls each between
 * two CUDA events until there are at least `repeats` of them and they add up
 * to at least `min_seconds` (Google Benchmark's minimum time, which
 * r1lab-bench's loop uses: a GPU at its power limit runs at a lower clock
 * than one that has idled); reported: their median and mean.
 *
 * The including file defines `kPeerName` (the program's name for messages)
 * before including this header.
 */
#ifndef R1LAB_BENCH_NATIVE_PEER_H
#define R1LAB_BENCH_NATIVE_PEER_H

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        cudaError_t status_ = (call);                                                                \
        if (status_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s: %s failed: %s\n", kPeerName, #call, cudaGetErrorString(status_));   \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

struct PeerOptions {
    const char *json = nullptr; /* --json PATH: write the results here */
    int repeats = 20;           /* --repeats N: at least N timed calls */
    double min_seconds = 0.5;   /* --min-seconds S: and at least S seconds of them */
    int only = -1;              /* --case I: only the I-th configuration (from 0) */
};

/* Reads the options; returns -1 to go on, else the exit code (0 after --help,
 * 2 after a bad argument; both print the usage, then `what`: what the
 * program times, a line or two). */
inline int parse_peer_options(int argc, char **argv, const char *what, PeerOptions *options) {
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            options->json = argv[++i];
        } else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            options->repeats = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--min-seconds") && i + 1 < argc) {
            options->min_seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            options->only = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--json PATH] [--repeats N] [--min-seconds S] [--case I]\n%s", argv[0], what);
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (options->repeats < 1) options->repeats = 1;
    if (!(options->min_seconds >= 0)) options->min_seconds = 0;
    return -1;
}

/* The current GPU's properties; false (after a message) when there is none:
 * the harness then exits with 77, "skipped". */
inline bool peer_device(int *device, cudaDeviceProp *prop) {
    if (cudaGetDevice(device) != cudaSuccess || cudaGetDeviceProperties(prop, *device) != cudaSuccess) {
        fprintf(stderr, "%s: no GPU visible\n", kPeerName);
        return false;
    }
    return true;
}

/* Opens `path` for the results and writes their frame's head ({"device":
 * ..., "peer": ..., "results": [); nullptr (after a message) when it cannot.
 * The harness writes its results, "," before all but the first, then calls
 * close_peer_json. */
inline FILE *open_peer_json(const char *path, const char *device_name, const char *peer) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: cannot write %s\n", kPeerName, path);
        return nullptr;
    }
    fprintf(f, "{\"device\": \"%s\", \"peer\": \"%s\", \"results\": [", device_name, peer);
    return f;
}

inline void close_peer_json(FILE *f) {
    fprintf(f, "\n]}\n");
    fclose(f);
}

struct EventTimes {
    double median_us, mean_us;
    int calls;
};

/* call() issues one call on `stream`; see the header for the loop. */
template <typename Call>
EventTimes time_event_calls(Call call, cudaStream_t stream, int warmup, int repeats, double min_seconds) {
    for (int i = 0; i < warmup; ++i) call();
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    std::vector<float> times;
    double total_us = 0;
    while ((int)times.size() < repeats || total_us < min_seconds * 1e6) {
        CHECK(cudaEventRecord(start, stream));
        call();
        CHECK(cudaEventRecord(stop, stream));
        CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms * 1000.0f);
        total_us += ms * 1000.0;
    }
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    const size_t n = times.size();
    std::sort(times.begin(), times.end());
    EventTimes result;
    result.median_us = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    result.mean_us = total_us / (double)n;
    result.calls = (int)n;
    return result;
}

#endif
