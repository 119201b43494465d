/*
 * tests/check.h — the agreement checks shared by the test binaries and by
 * `r1lab check`: each runs golden cases or randomized agreement for one
 * component on one backend and fills a summary; tests assert on it, the CLI
 * prints it as a table row.
 */
#ifndef R1LAB_TESTS_CHECK_H
#define R1LAB_TESTS_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "r1lab/common.h"

typedef struct check_summary {
    int cases_total;        /* golden cases or agreement batches run             */
    int cases_passed;
    double worst_ratio;     /* worst error over its bar, over every comparison    */
    char worst_what[256];   /* which comparison that was                          */
    int64_t rows;           /* rows (tokens, items) processed                     */
    int64_t mismatches;     /* discrete mismatches allowed by a documented rule   */
    double seconds;         /* time spent inside the backend calls                */
    int verbose;            /* print every case                                   */
} check_summary;

/* Where golden files live: $R1LAB_GOLDEN_DIR, else R1LAB_SOURCE_DIR/golden. */
const char *check_golden_dir(void);

/* Compares golden/<component>/ (under check_golden_dir()) with the lines of
 * check_golden_dir()/MANIFEST whose path starts with golden/<component>/:
 * each listed file that is missing and each file in the folder that MANIFEST
 * does not list (dot files, README* and *.md aside) counts as one failed case
 * in `summary`, with a line naming the file. Returns R1_OK when they agree,
 * R1_EIO when MANIFEST cannot be read, else R1_EFORMAT (r1_last_error names
 * the first such file). A golden check calls it once, after its cases. */
r1_status check_golden_manifest(const char *component, check_summary *summary);

/* Records one comparison's error against its bar in the summary. */
void check_note_error(check_summary *summary, const char *what, double error, double bar);

/* Monotonic seconds. */
double check_now(void);

/* Running a cuda backend on host buffers. check_device_copy_of: a device copy
 * of `bytes` of `host` (NULL when host is NULL, bytes is 0 or *status has
 * already failed; an allocation or copy failure is left in *status).
 * check_copy_back: copies a device result to `host` (nothing when either is
 * NULL); a copy failure replaces an R1_OK or R1_ENUMERIC *status. */
void *check_device_copy_of(const void *host, size_t bytes, r1_status *status);
void check_copy_back(void *host, const void *device, size_t bytes, r1_status *status);

/* One component as `r1lab check` runs it (the list is in tests/check.c).
 *   run         the golden cases and a randomized agreement pass of about
 *               `rows` rows on `backend`, results in `summary`; returns R1_OK,
 *               R1_EUNSUPPORTED when the component has no such backend (the
 *               table then says so and moves on), or the status that stopped it
 *   throughput  optional: one fixed benchmark configuration on `backend`, in
 *               units of `throughput_what` per second (0 when it could not run)
 * A component whose `run` is NULL is not built yet and is left out. */
typedef struct check_component {
    const char *name;
    r1_status (*run)(r1_backend backend, uint64_t seed, int64_t rows, check_summary *summary);
    double (*throughput)(r1_backend backend);
    const char *throughput_what; /* e.g. "tokens, B=64 V=152064" */
} check_component;

/* Each defined in tests/check_<component>.c. */
extern const check_component check_component_sampling;
extern const check_component check_component_answer;
extern const check_component check_component_kd;
extern const check_component check_component_moe;
extern const check_component check_component_mla;
extern const check_component check_component_qgemm;

/* The components in table order; sets *count. */
const check_component *const *check_components(int *count);

#endif
