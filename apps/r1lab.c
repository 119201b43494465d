/*
 * apps/r1lab.c — the `r1lab` command line.
 *
 *   r1lab check [--bench] [--backend B] [--component C] [--rows N] [--seed N] [--verbose]
 *       runs every golden case and a randomized agreement pass for every
 *       component on every available backend and prints a table; exits 1 if
 *       anything disagrees
 *   r1lab answer | eval | distill | sft-data | sort ...   (apps/commands.h)
 *   r1lab version
 *
 * The checks are the same routines the tests run (tests/check_*.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/commands.h"
#include "check.h"
#include "r1lab/common.h"

static void print_usage(FILE *to) {
    fprintf(to,
            "usage: r1lab <command> [options]\n"
            "\n"
            "commands:\n"
            "  check      run every golden case and a randomized agreement pass for every\n"
            "             component on every available backend; print a table; exit 1 if\n"
            "             anything disagrees\n"
            "  answer     answer extract | answer equal: \\boxed{} answers from JSONL (r1lab answer --help)\n"
            "  eval       score predictions against gold answers in a JSONL file (r1lab eval --help)\n"
            "  distill    send a dataset's prompts to OpenAI-compatible teachers (r1lab distill --help)\n"
            "  sft-data   turn a distilled file into SFT pairs {src, tgt} (r1lab sft-data --help)\n"
            "  sort       restore input order of a distilled file by line_num (r1lab sort --help)\n"
            "  version    print the version and the device\n"
            "\n"
            "check options:\n"
            "  --bench          add a short throughput benchmark per row\n"
            "  --backend B      only ref, fast or cuda (default: every available one)\n"
            "  --component C    only this component: sampling, answer, kd, moe, mla or qgemm\n"
            "                   (default: every one)\n"
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
    const char *only_component; /* NULL = all */
    int64_t rows;
    uint64_t seed;
} check_options;

typedef struct table_row {
    const check_component *component;
    r1_backend backend;
    check_summary summary;
    double throughput; /* units per second, 0 if not measured */
    int ok;
} table_row;

static int parse_check_options(int argc, char **argv, check_options *options) {
    options->bench = 0;
    options->verbose = 0;
    options->only_backend = -1;
    options->only_component = NULL;
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
        } else if (strcmp(a, "--component") == 0 && i + 1 < argc) {
            int components, known = 0;
            const check_component *const *list = check_components(&components);
            for (int c = 0; c < components; ++c) known |= strcmp(list[c]->name, argv[i + 1]) == 0;
            if (!known) {
                fprintf(stderr, "r1lab check: --component %s: not a component (see r1lab --help)\n",
                        argv[i + 1]);
                return 2;
            }
            options->only_component = argv[++i];
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

/* One component on one backend: its checks, then (with --bench) its rate. */
static table_row check_component_backend(const check_component *component, r1_backend backend,
                                         const check_options *options, r1_status *status) {
    table_row row = {component, backend, {0}, 0, 1};
    row.summary.verbose = options->verbose;
    *status = component->run(backend, options->seed, options->rows, &row.summary);
    if (*status == R1_EUNSUPPORTED) return row;
    if (*status != R1_OK) {
        printf("  %s (%s): %s\n", component->name, r1_backend_name(backend), r1_last_error());
        row.ok = 0;
    }
    if (row.summary.cases_total == 0 || row.summary.cases_passed != row.summary.cases_total)
        row.ok = 0;
    if (row.summary.worst_ratio > 1.0) row.ok = 0;
    if (options->bench && component->throughput) row.throughput = component->throughput(backend);
    return row;
}

static void print_table(const table_row *rows, int count, int bench) {
    printf("\n%-10s %-8s %-13s %-12s %-40s %-12s %-8s %s\n", "component", "backend", "cases",
           "worst/bar", "worst at", bench ? "rate /s" : "", bench ? "vs ref" : "", "");
    for (int i = 0; i < count; ++i) {
        const table_row *r = &rows[i];
        double ref_rate = 0;
        for (int j = 0; j < count; ++j)
            if (rows[j].component == r->component && rows[j].backend == R1_REF)
                ref_rate = rows[j].throughput;
        char cases[32], rate[32] = "", speed[32] = "";
        snprintf(cases, sizeof cases, "%d/%d", r->summary.cases_passed, r->summary.cases_total);
        if (bench && r->throughput > 0) snprintf(rate, sizeof rate, "%.4g", r->throughput);
        if (bench && ref_rate > 0 && r->throughput > 0)
            snprintf(speed, sizeof speed, "%.1fx", r->throughput / ref_rate);
        printf("%-10s %-8s %-13s %-12.3g %-40.40s %-12s %-8s %s\n", r->component->name,
               r1_backend_name(r->backend), cases, r->summary.worst_ratio, r->summary.worst_what,
               rate, speed, r->ok ? "PASS" : "FAIL");
    }
    if (bench) {
        int components;
        const check_component *const *list = check_components(&components);
        printf("rates are per second of:\n");
        for (int c = 0; c < components; ++c) {
            int shown = 0;
            for (int i = 0; i < count; ++i) shown |= rows[i].component == list[c];
            if (shown && list[c]->throughput)
                printf("  %-10s %s\n", list[c]->name, list[c]->throughput_what);
        }
    }
}

static int command_check(int argc, char **argv) {
    check_options options;
    int parse = parse_check_options(argc, argv, &options);
    if (parse) return parse;
    printf("r1lab %s check, device: %s, seed %llu, golden files in %s\n", r1_version(),
           r1_device_name(), (unsigned long long)options.seed, check_golden_dir());
    int components;
    const check_component *const *list = check_components(&components);
    table_row rows[8 * R1_BACKEND_COUNT];
    int count = 0, failures = 0;
    for (int b = 0; b < R1_BACKEND_COUNT; ++b) {
        r1_backend backend = (r1_backend)b;
        if (options.only_backend >= 0 && options.only_backend != b) continue;
        if (!r1_backend_available(backend)) {
            printf("  %s: not available here (%s), skipped\n", r1_backend_name(backend),
                   backend == R1_CUDA ? "no CUDA build or no GPU" : "?");
            continue;
        }
        for (int c = 0; c < components && count < (int)(sizeof rows / sizeof rows[0]); ++c) {
            if (!list[c]->run) continue;
            if (options.only_component && strcmp(options.only_component, list[c]->name) != 0)
                continue;
            fflush(stdout);
            r1_status status;
            table_row row = check_component_backend(list[c], backend, &options, &status);
            if (status == R1_EUNSUPPORTED) continue; /* no such backend for it */
            rows[count++] = row;
            failures += !row.ok;
        }
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
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"answer", r1_command_answer}, {"eval", r1_command_eval},
        {"distill", r1_command_distill}, {"sft-data", r1_command_sft_data},
        {"sort", r1_command_sort},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        if (strcmp(command, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "r1lab: unknown command \"%s\" (see r1lab --help)\n", command);
    return 2;
}
