/*
 * tests/check.h — the agreement checks shared by the test binaries and by
 * `r1lab check`: each runs golden cases or randomized agreement for one
 * component on one backend and fills a summary; tests assert on it, the CLI
 * prints it as a table row.
 */
#ifndef R1LAB_TESTS_CHECK_H
#define R1LAB_TESTS_CHECK_H

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

/* Records one comparison's error against its bar in the summary. */
void check_note_error(check_summary *summary, const char *what, double error, double bar);

/* Monotonic seconds. */
double check_now(void);

#endif
