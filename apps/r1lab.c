/*
 * apps/r1lab.c — the `r1lab` command line.
 *
 *   r1lab check [--bench] [--backend B] [--rows N] [--seed N] [--verbose]
 *       runs every golden case and a randomized agreement pass for every
 *       component on every available backend and prints a table; exits 1 if
 *       anything disagrees
 *   r1lab version
 *
 * The checks are the same routines the tests run (tests/check_*.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_sampling.h"
#include "r1lab/common.h"

static void print_usage(FILE *to) {
    fprintf(to,
            "usage: r1lab <command> [options]\n"
            "\n"
            "commands:\n"
            "  check      run every golden case and a randomized agreement pass for every\n"
            "             component on every available backend; print a table; exit 1 if\n"
            "             anything disagrees\n"
            "  version    print the version and the device\n"
            "\n"
            "check options:\n"
            "  --bench          add a short throughput benchmark per row\n"
            "  --backend B      only ref, fast or cuda (default: every available one)\n"
            "  --rows N         rows of the randomized agreement pass (default 20000)\n"
            "  --seed N         seed of the randomized pass (default: R1_SEED or 1)\n"
            "  --verbose        print every case\n"
            "\n"
            "The tests (ctest) run the same checks with larger sizes.\n");
}

typedef struct check_options {
    int bench;
    int verbose;
    int only_backend; /* -1 = all */
    int64_t rows;
    uint64_t seed;
} check_options;

typedef struct table_row {
    const char *component;
    r1_backend backend;
    check_summary summary;
    double throughput; /* rows per second, 0 if not measured */
    int ok;
} table_row;

static int parse_check_options(int argc, char **argv, check_options *options) {
    options->bench = 0;
    options->verbose = 0;
    options->only_backend = -1;
    options->rows = 20000;
    const char *seed_text = getenv("R1_SEED");
    options->seed = seed_text && *seed_text ? strtoull(seed_text, NULL, 0) : 1;
    for (int i = 0; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--bench") == 0) {
            options->bench = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            options->verbose = 1;
        } else if (strcmp(a, "--backend") == 0 && i + 1 < argc) {
            r1_backend backend;
            if (r1_backend_parse(argv[++i], &backend) != R1_OK) {
                fprintf(stderr, "r1lab check: %s\n", r1_last_error());
                return 2;
            }
            options->only_backend = (int)backend;
        } else if (strcmp(a, "--rows") == 0 && i + 1 < argc) {
            char *end;
            long long rows = strtoll(argv[++i], &end, 10);
            if (*end || rows < 1) {
                fprintf(stderr, "r1lab check: --rows %s: expected a positive integer\n", argv[i]);
                return 2;
            }
            options->rows = rows;
        } else if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
            char *end;
            options->seed = strtoull(argv[++i], &end, 0);
            if (*end) {
                fprintf(stderr, "r1lab check: --seed %s: expected an integer\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "r1lab check: unknown option %s (see r1lab --help)\n", a);
            return 2;
        }
    }
    return 0;
}

/* Sampling on one backend: golden, agreement (not for ref), chi-square. */
static table_row check_sampling_backend(r1_backend backend, const check_options *options) {
    table_row row = {"sampling", backend, {0}, 0, 1};
    row.summary.verbose = options->verbose;
    r1_status status = check_sampling_golden(backend, &row.summary);
    if (status != R1_OK) {
        printf("  sampling golden (%s): %s\n", r1_backend_name(backend), r1_last_error());
        row.ok = 0;
    }
    if (backend != R1_REF) check_sampling_agreement(backend, options->seed, options->rows, &row.summary);
    check_sampling_chi_square(backend, 20000, &row.summary);
    if (row.summary.cases_passed != row.summary.cases_total) row.ok = 0;
    if (row.summary.worst_ratio > 1.0) row.ok = 0;
    if (options->bench) row.throughput = check_sampling_throughput(backend, 64, 152064);
    else if (row.summary.seconds > 0) row.throughput = (double)row.summary.rows / row.summary.seconds;
    return row;
}

static void print_table(const table_row *rows, int count, int bench) {
    printf("\n%-10s %-8s %-13s %-12s %-40s %-16s %s\n", "component", "backend", "cases",
           "worst/bar", "worst at", bench ? "tokens/s B=64" : "rows/s (checks)",
           "vs ref");
    double ref_rate = 0;
    for (int i = 0; i < count; ++i)
        if (rows[i].backend == R1_REF) ref_rate = rows[i].throughput;
    for (int i = 0; i < count; ++i) {
        const table_row *r = &rows[i];
        char cases[32], speed[32] = "-";
        snprintf(cases, sizeof cases, "%d/%d", r->summary.cases_passed, r->summary.cases_total);
        if (ref_rate > 0 && r->throughput > 0)
            snprintf(speed, sizeof speed, "%.1fx", r->throughput / ref_rate);
        printf("%-10s %-8s %-13s %-12.3g %-40.40s %-16.4g %s  %s\n", r->component,
               r1_backend_name(r->backend), cases, r->summary.worst_ratio, r->summary.worst_what,
               r->throughput, speed, r->ok ? "PASS" : "FAIL");
    }
    if (!bench)
        printf("(rows/s counts every row the checks ran, small vocabularies included; "
               "use --bench for a fixed B=64, V=152064, T=0.6, top_p=0.95 rate)\n");
}

static int command_check(int argc, char **argv) {
    check_options options;
    int parse = parse_check_options(argc, argv, &options);
    if (parse) return parse;
    printf("r1lab %s check, device: %s, seed %llu, golden files in %s\n", r1_version(),
           r1_device_name(), (unsigned long long)options.seed, check_golden_dir());
    table_row rows[R1_BACKEND_COUNT];
    int count = 0, failures = 0;
    for (int b = 0; b < R1_BACKEND_COUNT; ++b) {
        r1_backend backend = (r1_backend)b;
        if (options.only_backend >= 0 && options.only_backend != b) continue;
        if (!r1_backend_available(backend)) {
            printf("  %s: not available here (%s), skipped\n", r1_backend_name(backend),
                   backend == R1_CUDA ? "no CUDA build or no GPU" : "?");
            continue;
        }
        fflush(stdout);
        rows[count] = check_sampling_backend(backend, &options);
        failures += !rows[count].ok;
        ++count;
    }
    print_table(rows, count, options.bench);
    if (count == 0) {
        printf("no backend ran\n");
        return 1;
    }
    printf("%s\n", failures ? "DISAGREEMENT: see the lines above" : "all backends agree");
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
        strcmp(command, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("r1lab %s (device: %s)\n", r1_version(), r1_device_name());
        return 0;
    }
    if (strcmp(command, "check") == 0) return command_check(argc - 2, argv + 2);
    fprintf(stderr, "r1lab: unknown command \"%s\" (see r1lab --help)\n", command);
    return 2;
}
