/*
 * bench/bench.h — the C API that r1lab's benchmarks are written against.
 *
 * Benchmarks are plain C functions; bench/shim.cc (the only C++ file in
 * r1lab) registers them with Google Benchmark and provides main(). A
 * benchmark looks like this:
 *
 *     static void bench_copy(r1b_state *state, const void *user) {
 *         const copy_case *c = user;                  // set up, untimed
 *         if (check_fails(c)) { r1b_skip_with_error(state, "check failed"); return; }
 *         for (; r1b_keep_running(state);)            // the timed loop
 *             memcpy(c->destination, c->source, c->bytes);
 *         // bytes read + written per iteration, over all iterations:
 *         r1b_set_bytes_processed(state, r1b_iterations(state) * 2 * c->bytes);
 *     }
 *     r1b_register("copy(bytes=16777216)", bench_copy, &the_case);
 *
 * Rules:
 *   - A benchmark's name is its full parameter string, so that
 *     --benchmark_filter can select exactly one configuration (it is a regex:
 *     escape the parentheses). Google Benchmark appends "/real_time" or
 *     "/manual_time" to the name in its output.
 *   - Never time a configuration that failed its check: call
 *     r1b_skip_with_error() and return, before or instead of the timed loop.
 *   - CPU benchmarks report wall-clock time (UseRealTime: threaded fast/ code
 *     would otherwise be timed by one thread's CPU time). CUDA benchmarks use
 *     r1b_register_manual_time() and report each iteration's time, measured
 *     with CUDA events, through r1b_set_iteration_time().
 *   - Times are reported in microseconds. Counters carry the rest:
 *     bytes/s (r1b_set_bytes_processed), FLOP/s (r1b_counter_rate), and the
 *     fraction of a measured machine limit (r1b_counter), with the byte and
 *     FLOP formulas written next to the code that computes them.
 *
 * Names and user pointers: the name is copied and must be unique (r1lab-bench
 * exits with a message on a duplicate); `user` is kept as given and
 * must stay valid until the process ends (use static or leaked storage).
 */
#ifndef R1LAB_BENCH_BENCH_H
#define R1LAB_BENCH_BENCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One running benchmark (wraps benchmark::State). */
typedef struct r1b_state r1b_state;

/* A benchmark body: set up, run the timed loop, report counters. */
typedef void (*r1b_function)(r1b_state *state, const void *user);

/* ---- registration ------------------------------------------------------- */

/* Registers a benchmark named `name` timed by wall clock; Google Benchmark's
 * runner calls `function(state, user)` (several times, to find an iteration
 * count). */
void r1b_register(const char *name, r1b_function function, const void *user);

/* Same, but the benchmark reports each iteration's time itself with
 * r1b_set_iteration_time() (UseManualTime), for CUDA events. */
void r1b_register_manual_time(const char *name, r1b_function function, const void *user);

/* Called by main() before the runner starts: registers every benchmark
 * (bench/registry.c), one r1b_register_<component>() per component. */
void r1b_register_all(void);
void r1b_register_sampling(void);
void r1b_register_answer(void);
void r1b_register_distill(void);
void r1b_register_kd(void);
void r1b_register_moe(void);
void r1b_register_mla(void);
void r1b_register_qgemm(void);
void r1b_register_launch_floor(void); /* bench/launch_floor.cu, CUDA builds only */

/* ---- inside a benchmark -------------------------------------------------- */

/* 1 while the runner wants another iteration: for (; r1b_keep_running(s);) */
int r1b_keep_running(r1b_state *state);

/* Iterations run so far (after the loop: all of them). */
int64_t r1b_iterations(const r1b_state *state);

/* Manual-time benchmarks: this iteration took `seconds` (e.g. from
 * cudaEventElapsedTime / 1000). */
void r1b_set_iteration_time(r1b_state *state, double seconds);

/* Totals over all iterations; reported as bytes_per_second and
 * items_per_second. */
void r1b_set_bytes_processed(r1b_state *state, int64_t bytes);
void r1b_set_items_processed(r1b_state *state, int64_t items);

/* A counter reported as given (a fraction of a limit, a size, an error). */
void r1b_counter(r1b_state *state, const char *name, double value);
/* A counter divided by the benchmark's time: give the total over all
 * iterations (e.g. FLOP per iteration * iterations) to get FLOP/s. */
void r1b_counter_rate(r1b_state *state, const char *name, double value);

/* A free-form label printed next to the result (e.g. "sm_90a, v3"). */
void r1b_set_label(r1b_state *state, const char *label);

/* Marks this benchmark as failed with `message` (copied): it is reported as
 * an error and not timed. Call it before the timed loop and return, or inside
 * the loop and then break. */
void r1b_skip_with_error(r1b_state *state, const char *message);

/* CUDA benchmarks (registered with r1b_register_manual_time): the whole
 * timed loop. Each iteration records a CUDA event on the default stream,
 * calls run(context), records a second event, waits for it and reports the
 * time between the two. run returns an r1_status; one that is not R1_OK (0)
 * stops the loop and marks the benchmark failed with r1_last_error()'s
 * sentence, as does a CUDA error left behind. Returns that status (R1_OK when
 * every call succeeded). Without a CUDA build it marks the benchmark failed. */
int r1b_time_cuda_calls(r1b_state *state, int (*run)(void *context), void *context);

/* The same calls with the host's launch cost taken out: `calls` calls of run
 * captured into one CUDA graph on a stream of r1b's own (*stream points at it
 * while capturing, and is NULL again after; run must only enqueue work, on
 * that stream), the graph replayed 20 times between two events. Returns the
 * median replay time over `calls`, in microseconds: the GPU time of one call
 * as a CUDA-graph serving loop sees it. Returns -1 and writes why to stderr
 * when the calls cannot be captured or replayed. An empty kernel measures
 * about 6 us with r1b_time_cuda_calls on an H100, so kernels that take less
 * than that are told apart only here. */
double r1b_cuda_graph_us_per_call(int (*run)(void *context), void *context, void **stream,
                                  int calls);

/* Stop and restart the timer around untimed work inside the loop (costly:
 * avoid in loops of short iterations). */
void r1b_pause_timing(r1b_state *state);
void r1b_resume_timing(r1b_state *state);

/* Keeps the compiler from optimizing away the computation that produced the
 * memory at `pointer` (benchmark::DoNotOptimize + ClobberMemory). */
void r1b_do_not_optimize(const void *pointer);

/* ---- the run's context ----------------------------------------------------- */

/* Adds key: value to the "context" block of the output (console and JSON).
 * Call from main() or a registration function, before the runner starts. */
void r1b_set_context(const char *key, const char *value);

/* ---- measured machine limits ------------------------------------------------
 * Measured once per process on first use, then cached; to state a benchmark's
 * result as a fraction of what this machine can do. */

/* Bytes/s of a large host memcpy (256 MiB, best of several), counting bytes
 * read + written (2 * 256 MiB per copy). */
double r1b_host_copy_bandwidth(void);

/* Bytes/s of a large device-to-device copy (512 MiB, best of several) through
 * r1_device_copy, counting bytes read + written: the GPU's practical HBM
 * bandwidth. 0 when the CUDA backend is not built or no GPU is present. */
double r1b_device_copy_bandwidth(void);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_BENCH_BENCH_H */
