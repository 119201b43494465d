// bench/shim.cc — the only C++ file in r1lab: implements the C benchmark API
// of bench/bench.h over Google Benchmark (1.7.x) and provides r1lab-bench's
// main().
//
// main() registers every benchmark (r1b_register_all, bench/registry.c),
// lets Google Benchmark parse its flags (--benchmark_filter,
// --benchmark_out=FILE --benchmark_out_format=json, --benchmark_repetitions,
// ...), measures the machine limits the benchmarks compare against, records
// them with the r1lab version and the device in the output's "context" block,
// and runs the benchmarks.
//
// Registration: CPU benchmarks use wall-clock time (UseRealTime) so that a
// threaded fast/ kernel is not timed by one thread's CPU time; CUDA
// benchmarks use UseManualTime and report CUDA-event times. All report in
// microseconds.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "bench.h"
#include "r1lab/common.h"

// The C handle: a pointer to the State Google Benchmark passes to the body.
struct r1b_state {
    benchmark::State *state;
};

namespace {

void register_benchmark(const char *name, r1b_function function, const void *user,
                        bool manual_time) {
    if (name == nullptr || function == nullptr) {
        std::fprintf(stderr, "r1lab-bench: r1b_register called with a NULL name or function\n");
        std::exit(2);
    }
    // Results are matched by name (ci/bench_compare.py): names must be unique.
    static std::set<std::string> registered_names;
    if (!registered_names.insert(name).second) {
        std::fprintf(stderr, "r1lab-bench: benchmark \"%s\" is registered twice\n", name);
        std::exit(2);
    }
    benchmark::internal::Benchmark *benchmark = benchmark::RegisterBenchmark(
        name, [function, user](benchmark::State &state) {
            r1b_state handle{&state};
            function(&handle, user);
        });
    benchmark->Unit(benchmark::kMicrosecond);
    if (manual_time)
        benchmark->UseManualTime();
    else
        benchmark->UseRealTime();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Host memcpy bandwidth: copies of `bytes` bytes between two buffers whose
// pages were touched first; best of `rounds`; bytes read + written.
double measure_host_copy_bandwidth() {
    const size_t bytes = size_t{256} << 20;
    const int rounds = 5;
    unsigned char *source = static_cast<unsigned char *>(std::malloc(bytes));
    unsigned char *destination = static_cast<unsigned char *>(std::malloc(bytes));
    double best_seconds = 0.0;
    if (source != nullptr && destination != nullptr) {
        std::memset(source, 1, bytes);      // touch every page: no page faults
        std::memset(destination, 2, bytes); // inside the timed copies
        for (int round = 0; round < rounds; ++round) {
            auto start = std::chrono::steady_clock::now();
            std::memcpy(destination, source, bytes);
            benchmark::ClobberMemory();
            double seconds = seconds_since(start);
            if (best_seconds == 0.0 || seconds < best_seconds) best_seconds = seconds;
        }
        benchmark::DoNotOptimize(destination[bytes / 2]);
    }
    std::free(source);
    std::free(destination);
    return best_seconds > 0.0 ? 2.0 * static_cast<double>(bytes) / best_seconds : 0.0;
}

// Device-to-device copy bandwidth through r1_device_copy; each round times
// `copies_per_round` copies between two synchronizations (a D2D copy does
// not block the host); best round; bytes read + written.
double measure_device_copy_bandwidth() {
    if (!r1_backend_available(R1_CUDA)) return 0.0;
    const size_t bytes = size_t{512} << 20;
    const int rounds = 5;
    const int copies_per_round = 10;
    void *source = nullptr;
    void *destination = nullptr;
    double best_seconds = 0.0;
    bool ok = r1_device_alloc(&source, bytes) == R1_OK &&
              r1_device_alloc(&destination, bytes) == R1_OK &&
              r1_device_fill(source, 1, bytes) == R1_OK &&
              r1_device_fill(destination, 2, bytes) == R1_OK &&
              r1_device_copy(destination, source, bytes, R1_DEVICE_TO_DEVICE) == R1_OK && // warm-up
              r1_device_synchronize() == R1_OK;
    for (int round = 0; ok && round < rounds; ++round) {
        auto start = std::chrono::steady_clock::now();
        for (int copy = 0; ok && copy < copies_per_round; ++copy)
            ok = r1_device_copy(destination, source, bytes, R1_DEVICE_TO_DEVICE) == R1_OK;
        ok = ok && r1_device_synchronize() == R1_OK;
        double seconds = seconds_since(start) / copies_per_round;
        if (best_seconds == 0.0 || seconds < best_seconds) best_seconds = seconds;
    }
    if (source != nullptr) r1_device_free(source);
    if (destination != nullptr) r1_device_free(destination);
    if (!ok) {
        std::fprintf(stderr, "r1lab-bench: device copy bandwidth not measured: %s\n",
                     r1_last_error());
        return 0.0;
    }
    return 2.0 * static_cast<double>(bytes) / best_seconds;
}

std::string format_number(const char *format, double value) {
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    return text;
}

void print_help() {
    std::printf(
        "r1lab-bench: benchmarks of r1lab's kernels (ref, fast and cuda backends of each\n"
        "component) through Google Benchmark; --benchmark_out=FILE --benchmark_out_format=json\n"
        "writes the results that ci/bench_compare.py compares. Google Benchmark's flags:\n\n");
    benchmark::PrintDefaultHelp();
}

// True when argv asks only to list the benchmarks: then nothing is measured.
bool only_listing(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        const char *flag = "--benchmark_list_tests";
        size_t length = std::strlen(flag);
        if (std::strncmp(argv[i], flag, length) != 0) continue;
        const char *rest = argv[i] + length;
        if (*rest == '\0') return true;
        if (*rest == '=' && std::strcmp(rest + 1, "false") != 0 && std::strcmp(rest + 1, "0") != 0)
            return true;
    }
    return false;
}

}  // namespace

// ---- the C API ----------------------------------------------------------------

extern "C" {

void r1b_register(const char *name, r1b_function function, const void *user) {
    register_benchmark(name, function, user, false);
}

void r1b_register_manual_time(const char *name, r1b_function function, const void *user) {
    register_benchmark(name, function, user, true);
}

int r1b_keep_running(r1b_state *state) { return state->state->KeepRunning() ? 1 : 0; }

int64_t r1b_iterations(const r1b_state *state) {
    return static_cast<int64_t>(state->state->iterations());
}

void r1b_set_iteration_time(r1b_state *state, double seconds) {
    state->state->SetIterationTime(seconds);
}

void r1b_set_bytes_processed(r1b_state *state, int64_t bytes) {
    state->state->SetBytesProcessed(bytes);
}

void r1b_set_items_processed(r1b_state *state, int64_t items) {
    state->state->SetItemsProcessed(items);
}

void r1b_counter(r1b_state *state, const char *name, double value) {
    state->state->counters[name] = benchmark::Counter(value);
}

void r1b_counter_rate(r1b_state *state, const char *name, double value) {
    state->state->counters[name] = benchmark::Counter(value, benchmark::Counter::kIsRate);
}

void r1b_set_label(r1b_state *state, const char *label) { state->state->SetLabel(label); }

void r1b_skip_with_error(r1b_state *state, const char *message) {
    state->state->SkipWithError(message != nullptr ? message : "failed");
}

void r1b_pause_timing(r1b_state *state) { state->state->PauseTiming(); }

void r1b_resume_timing(r1b_state *state) { state->state->ResumeTiming(); }

void r1b_do_not_optimize(const void *pointer) {
    benchmark::DoNotOptimize(pointer);
    benchmark::ClobberMemory();
}

void r1b_set_context(const char *key, const char *value) {
    benchmark::AddCustomContext(key, value != nullptr ? value : "");
}

double r1b_host_copy_bandwidth(void) {
    static const double bandwidth = measure_host_copy_bandwidth(); // once, thread-safe
    return bandwidth;
}

double r1b_device_copy_bandwidth(void) {
    static const double bandwidth = measure_device_copy_bandwidth();
    return bandwidth;
}

}  // extern "C"

// ---- main ----------------------------------------------------------------------

int main(int argc, char **argv) {
    r1b_register_all();
    benchmark::Initialize(&argc, argv, print_help); // exits after --help
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    r1b_set_context("r1lab_version", r1_version());
    r1b_set_context("r1lab_device", r1_device_name());
    if (!only_listing(argc, argv)) {
        benchmark::AddCustomContext("host_copy_bandwidth_GBps",
                                    format_number("%.1f", r1b_host_copy_bandwidth() / 1e9));
        double device = r1b_device_copy_bandwidth();
        benchmark::AddCustomContext("device_copy_bandwidth_GBps",
                                    device > 0.0 ? format_number("%.1f", device / 1e9) : "none");
    }

    size_t benchmarks_run = benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (benchmarks_run == 0) {
        std::fprintf(stderr, "r1lab-bench: no benchmark matched the filter (see --benchmark_list_tests)\n");
        return 1;
    }
    return 0;
}
