/*
 * apps/command_answer.c — `r1lab answer extract`, `r1lab answer equal` and
 * `r1lab eval`: JSONL in, JSONL out, through r1lab/answer.h.
 *
 * `r1lab eval` streams through a pipeline: one thread reads and splits lines
 * into batches of about 4 MiB, worker threads score whole batches, and the
 * calling thread writes them in input order and recycles them; at most
 * workers + 2 batches exist at once, so the memory stays flat whatever the
 * file's length.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp(), fchmod(), umask(), fdopen() */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/commands.h"
#include "r1lab/answer.h"
#include "r1lab/jsonl.h"

#define BATCH_LINES 65536         /* most lines in one batch       */
#define BATCH_BYTES (4u << 20)     /* a batch holds about 4 MiB     */
#define ANSWER_CAPACITY (R1_ANSWER_MAX_LENGTH + 1)
#define MAX_THREADS 256            /* most eval worker threads      */

/* ---- shared helpers ------------------------------------------------------------------ */

/* An output: standard output ("-", streamed), or a file written to a
 * temporary file next to it ("PATH.tmp.XXXXXX") and renamed onto PATH only
 * when the command succeeds, so a failed run leaves no partial file (and an
 * output that is also the input is read whole before it is replaced). */
typedef struct output {
    FILE *f;
    const char *path;
    char *temporary; /* NULL for standard output */
} output;

static int output_open(output *o, const char *path, const char *command) {
    memset(o, 0, sizeof *o);
    o->path = path;
    if (!path || strcmp(path, "-") == 0) { o->f = stdout; return 1; }
    size_t n = strlen(path);
    o->temporary = malloc(n + sizeof ".tmp.XXXXXX");
    if (!o->temporary) { fprintf(stderr, "%s: out of memory\n", command); return 0; }
    memcpy(o->temporary, path, n);
    memcpy(o->temporary + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(o->temporary);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", command, path, strerror(errno));
        free(o->temporary), o->temporary = NULL;
        return 0;
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask); /* the mode fopen(path, "w") would give */
    o->f = fdopen(fd, "w");
    if (!o->f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", command, path, strerror(errno));
        close(fd), unlink(o->temporary), free(o->temporary), o->temporary = NULL;
        return 0;
    }
    return 1;
}

/* Finishes an output: on success (ok) the file replaces PATH; otherwise the
 * temporary file is removed. Returns 1 when the output is complete. */
static int output_close(output *o, int ok, const char *command) {
    if (!o->f) return 0;
    if (!o->temporary) {
        if (fflush(stdout) != 0 && ok) { fprintf(stderr, "%s: cannot write standard output\n", command); ok = 0; }
        o->f = NULL;
        return ok;
    }
    if (fclose(o->f) != 0 && ok) { fprintf(stderr, "%s: cannot write %s: %s\n", command, o->path, strerror(errno)); ok = 0; }
    if (ok && rename(o->temporary, o->path) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", command, o->path, strerror(errno));
        ok = 0;
    }
    if (!ok) unlink(o->temporary);
    free(o->temporary);
    o->f = NULL, o->temporary = NULL;
    return ok;
}

/* The text of a field: a string as is, a number printed ("72"). NULL when
 * the key is missing or holds another type. */
static const char *field_text(const cJSON *object, const char *key, char *number, size_t capacity) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (cJSON_IsString(item)) return item->valuestring;
    if (cJSON_IsNumber(item)) {
        double v = item->valuedouble;
        if (v == (double)(long long)v && v > -1e15 && v < 1e15) snprintf(number, capacity, "%lld", (long long)v);
        else snprintf(number, capacity, "%.17g", v);
        return number;
    }
    return NULL;
}

/* The id of a line: its "id" (any JSON value) or else the line number. */
static cJSON *id_of(const cJSON *object, int64_t line) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(object, "id");
    return id ? cJSON_Duplicate(id, 1) : cJSON_CreateNumber((double)line);
}

static int write_object(FILE *out, cJSON *object) {
    char *text = cJSON_PrintUnformatted(object);
    int ok = text && fputs(text, out) >= 0 && fputc('\n', out) != EOF;
    free(text);
    return ok;
}

/* ---- r1lab answer ----------------------------------------------------------------------- */

static void answer_usage(FILE *f) {
    fprintf(f,
            "usage: r1lab answer extract [INPUT.jsonl] [--output F] [--backend ref|fast] [--key K]\n"
            "       r1lab answer equal   [INPUT.jsonl] [--output F] [--backend ref|fast] [--explain]\n"
            "                            [--tolerance T]\n"
            "\n"
            "extract: reads one JSON object a line with a \"text\" field (another with --key)\n"
            "  and an optional \"id\"; writes one line each:\n"
            "  {\"id\":..,\"found\":bool,\"answer\":\"..\",\"normalized\":\"..\",\"truncated\":bool,\"source\":\"..\"}\n"
            "  The answer is the last \\boxed{} after the last </think> (adjacent boxes joined),\n"
            "  else the fallbacks in order: Minerva, \"the answer is\", 答案是, **X**, ####, last number.\n"
            "  <think> without </think> is truncated: no answer.\n"
            "equal: reads lines with \"gold\" and \"pred\" (both answers, already extracted);\n"
            "  writes {\"id\":..,\"equal\":bool,\"rule\":\"..\"}; --explain adds both normalized forms.\n"
            "  --tolerance T sets the relative tolerance for decimals, a number in [0, 1)\n"
            "  (default 1e-6).\n"
            "\n"
            "INPUT (one file, or - for standard input) defaults to standard input; the id is\n"
            "the line's \"id\" or its line number. --output F defaults to standard output\n"
            "(streamed); a file is written to a temporary file renamed onto F on success, so\n"
            "after an error F is not created or left as it was.\n"
            "A malformed line is reported on stderr with its line number and skipped; a line\n"
            "without the needed key is an error naming the key (exit 1). A bad option or\n"
            "value is a usage error (exit 2). Exit 0 otherwise.\n");
}

typedef struct answer_args {
    const char *input, *output, *key;
    r1_backend backend;
    r1_answer_options options;
    int explain;
} answer_args;

/* A relative tolerance: a whole decimal number in [0, 1) (r1_answer_options);
 * 0 on a bad value, with a sentence on stderr. */
static int parse_tolerance(const char *command, const char *text, double *tolerance) {
    char *end = NULL;
    errno = 0;
    double t = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !(t >= 0.0 && t < 1.0)) {
        fprintf(stderr, "%s: --tolerance \"%s\": must be a number in [0, 1)\n", command, text);
        return 0;
    }
    *tolerance = t;
    return 1;
}

/* `extract` is 1 for `answer extract` (which takes --key) and 0 for
 * `answer equal` (which takes --explain and --tolerance); an option of the
 * other subcommand is a usage error, not silently ignored. */
static int parse_answer_args(int argc, char **argv, answer_args *a, int extract) {
    a->input = NULL, a->output = "-", a->key = NULL, a->backend = R1_FAST, a->explain = 0;
    a->options = r1_answer_options_default();
    static const char *const with_value[] = {"--output", "--key", "--tolerance", "--backend"};
    for (int i = 2; i < argc; ++i) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) { answer_usage(stdout); return 0; }
        const char *other = extract ? (strcmp(s, "--explain") == 0 || strcmp(s, "--tolerance") == 0 ? s : NULL)
                                    : (strcmp(s, "--key") == 0 ? s : NULL);
        if (other) {
            fprintf(stderr, "r1lab answer %s: %s belongs to `r1lab answer %s`\n",
                    extract ? "extract" : "equal", other, extract ? "equal" : "extract");
            return 2;
        }
        if (strcmp(s, "--explain") == 0) { a->explain = 1; continue; }
        int takes_value = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; ++k) takes_value |= strcmp(s, with_value[k]) == 0;
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "r1lab answer: %s needs a value\n", s);
            return 2;
        }
        if (strcmp(s, "--output") == 0) a->output = argv[++i];
        else if (strcmp(s, "--key") == 0) a->key = argv[++i];
        else if (strcmp(s, "--tolerance") == 0) {
            if (!parse_tolerance("r1lab answer", argv[++i], &a->options.relative_tolerance)) return 2;
        } else if (strcmp(s, "--backend") == 0) {
            if (r1_backend_parse(argv[++i], &a->backend) != R1_OK || a->backend == R1_CUDA) {
                fprintf(stderr, "r1lab answer: --backend must be ref or fast\n");
                return 2;
            }
        } else if (s[0] != '-' || strcmp(s, "-") == 0) {
            if (a->input) {
                fprintf(stderr, "r1lab answer: one INPUT only (got %s and %s)\n", a->input, s);
                return 2;
            }
            a->input = s;
        } else {
            fprintf(stderr, "r1lab answer: unknown option %s\n", s);
            answer_usage(stderr);
            return 2;
        }
    }
    if (!a->input) a->input = "-";
    return -1;
}

static int answer_stream(int argc, char **argv, int extract) {
    answer_args a;
    int code = parse_answer_args(argc, argv, &a, extract);
    if (code >= 0) return code;
    const char *key = a.key ? a.key : "text";
    r1_jsonl_reader *reader = NULL;
    if (r1_jsonl_open(a.input, &reader) != R1_OK) {
        fprintf(stderr, "r1lab answer: %s\n", r1_last_error());
        return 1;
    }
    output o;
    if (!output_open(&o, a.output, "r1lab answer")) { r1_jsonl_close(reader); return 1; }
    FILE *out = o.f;
    static char answer[ANSWER_CAPACITY], normalized[4 * ANSWER_CAPACITY], number[2][64];
    int64_t lines = 0, malformed = 0;
    int status = 0;
    for (;;) {
        cJSON *object = NULL;
        int64_t line = 0;
        r1_status s = r1_jsonl_next_object(reader, &object, &line);
        if (s == R1_EFORMAT) {
            fprintf(stderr, "r1lab answer: %s: skipped\n", r1_last_error());
            ++malformed;
            continue;
        }
        if (s != R1_OK) { fprintf(stderr, "r1lab answer: %s\n", r1_last_error()); status = 1; break; }
        if (!object) break;
        ++lines;
        cJSON *result = cJSON_CreateObject();
        cJSON_AddItemToObject(result, "id", id_of(object, line));
        if (extract) {
            const char *text = field_text(object, key, number[0], sizeof number[0]);
            if (!text) {
                fprintf(stderr, "r1lab answer extract: %s:%lld: no string field \"%s\"\n", r1_jsonl_path(reader), (long long)line, key);
                status = 1;
            } else {
                r1_answer_extraction e;
                r1_answer_extract(a.backend, text, strlen(text), &a.options, answer, sizeof answer, &e);
                normalized[0] = '\0';
                if (e.found && e.length <= R1_ANSWER_MAX_LENGTH)
                    r1_answer_normalize(a.backend, answer, strlen(answer), normalized, sizeof normalized, NULL);
                cJSON_AddBoolToObject(result, "found", e.found);
                cJSON_AddStringToObject(result, "answer", answer);
                cJSON_AddStringToObject(result, "normalized", normalized);
                cJSON_AddBoolToObject(result, "truncated", e.truncated);
                cJSON_AddStringToObject(result, "source", r1_answer_source_name(e.source));
            }
        } else {
            const char *gold = field_text(object, "gold", number[0], sizeof number[0]);
            const char *pred = field_text(object, "pred", number[1], sizeof number[1]);
            if (!gold || !pred) {
                fprintf(stderr, "r1lab answer equal: %s:%lld: no string field \"%s\"\n", r1_jsonl_path(reader),
                        (long long)line, gold ? "pred" : "gold");
                status = 1;
            } else {
                r1_answer_verdict v;
                if (r1_answer_equal(a.backend, gold, strlen(gold), pred, strlen(pred), &a.options, &v) != R1_OK) {
                    fprintf(stderr, "r1lab answer equal: %s\n", r1_last_error());
                    status = 1;
                } else {
                    cJSON_AddBoolToObject(result, "equal", v.equal);
                    cJSON_AddStringToObject(result, "rule", r1_answer_rule_name(v.rule));
                    if (a.explain) {
                        const char *which[2] = {gold, pred};
                        const char *names[2] = {"gold_normalized", "pred_normalized"};
                        for (int k = 0; k < 2; ++k) {
                            normalized[0] = '\0';
                            if (strlen(which[k]) <= R1_ANSWER_MAX_LENGTH)
                                r1_answer_normalize(a.backend, which[k], strlen(which[k]), normalized, sizeof normalized, NULL);
                            cJSON_AddStringToObject(result, names[k], normalized);
                        }
                    }
                }
            }
        }
        if (status == 0 && !write_object(out, result)) { fprintf(stderr, "r1lab answer: write failed\n"); status = 1; }
        cJSON_Delete(result);
        cJSON_Delete(object);
        if (status) break;
    }
    if (malformed) fprintf(stderr, "r1lab answer: %lld malformed line(s) skipped, %lld processed\n", (long long)malformed, (long long)lines);
    r1_jsonl_close(reader);
    if (!output_close(&o, status == 0, "r1lab answer")) status = 1;
    return status;
}

int r1_command_answer(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        answer_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "extract") == 0) return answer_stream(argc, argv, 1);
    if (strcmp(argv[1], "equal") == 0) return answer_stream(argc, argv, 0);
    fprintf(stderr, "r1lab answer: unknown subcommand \"%s\" (extract or equal)\n", argv[1]);
    return 2;
}

/* ---- r1lab eval ------------------------------------------------------------------------------- */

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: r1lab eval --input F.jsonl --pred-key K --gold-key G\n"
            "                  [--gold-format boxed|gsm8k|plain] [--output per-item.jsonl]\n"
            "                  [--threads N (1..%d)] [--backend ref|fast]\n"
            "\n"
            "Scores model outputs against gold answers. For each line the final answer of\n"
            "field K is extracted (the last \\boxed{} after </think>, then the fallbacks) and\n"
            "compared with the answer inside field G, read by --gold-format:\n"
            "  boxed  G is a solution; its last \\boxed{} is the answer (MATH)      [default]\n"
            "  gsm8k  G ends in \"#### N\" (GSM8K \"answer\")\n"
            "  plain  G is the answer itself (GSM8K_zh \"answer_only\")\n"
            "Numbers in G or K are read as their decimal text.\n"
            "\n"
            "Prints on stdout: items, correct, accuracy, no answer, truncated (<think> without\n"
            "</think>), gold without an answer, malformed lines. With --output, one line per\n"
            "item: {\"id\",\"line\",\"found\",\"truncated\",\"answer\",\"gold\",\"correct\",\"rule\"}.\n"
            "\n"
            "Streams the file: one thread reads batches of about %u MiB of lines, N worker\n"
            "threads (--threads, default: all cores) score them, results come out in input\n"
            "order, and at most N + 2 batches exist at once, so memory stays flat. A malformed line is reported with its line number and\n"
            "skipped (counted); a line without K or G is an error naming the key (exit 1).\n"
            "--output is written to a temporary file renamed onto F on success: after an\n"
            "error (exit 1) F is not created or left as it was. --output - streams to stdout.\n"
            "A bad option or value is a usage error (exit 2).\n"
            "Examples:\n"
            "  r1lab eval --input gsm8k_test_r1.jsonl --pred-key deepseek_r1_response \\\n"
            "             --gold-key answer --gold-format gsm8k --output items.jsonl\n"
            "  r1lab eval --input gsm8k_zh.jsonl --pred-key response --gold-key answer_only --gold-format plain\n",
            MAX_THREADS, BATCH_BYTES >> 20);
}

typedef struct eval_item {
    int64_t line;
    char *text;          /* the raw line (points into the batch buffer) */
    size_t length;
    int malformed;       /* 1 bad JSON, 2 missing pred key, 3 missing gold key */
    int found, truncated, gold_found, correct;
    r1_answer_rule rule;
    char *output;        /* the per-item line (malloc), or NULL */
} eval_item;

typedef struct eval_args {
    const char *input, *output, *pred_key, *gold_key;
    r1_answer_gold_format format;
    r1_backend backend;
    int threads;
} eval_args;

static void score_item(const eval_args *a, eval_item *item, int want_output) {
    static _Thread_local char answer[ANSWER_CAPACITY], gold_answer[ANSWER_CAPACITY], number[2][64];
    cJSON *object = cJSON_ParseWithLength(item->text, item->length);
    if (!object || !cJSON_IsObject(object)) { item->malformed = 1; cJSON_Delete(object); return; }
    const char *pred = field_text(object, a->pred_key, number[0], sizeof number[0]);
    const char *gold = field_text(object, a->gold_key, number[1], sizeof number[1]);
    if (!pred || !gold) { item->malformed = pred ? 3 : 2; cJSON_Delete(object); return; }
    r1_answer_extraction e;
    r1_answer_options options = r1_answer_options_default();
    r1_answer_extract(a->backend, pred, strlen(pred), &options, answer, sizeof answer, &e);
    item->found = e.found, item->truncated = e.truncated;
    r1_answer_gold_answer(a->backend, gold, strlen(gold), a->format, gold_answer, sizeof gold_answer, &item->gold_found);
    item->correct = 0, item->rule = R1_ANSWER_RULE_EMPTY;
    if (e.found && item->gold_found) {
        r1_answer_verdict v;
        r1_answer_equal(a->backend, gold_answer, strlen(gold_answer), answer, strlen(answer), &options, &v);
        item->correct = v.equal, item->rule = v.rule;
    }
    if (want_output) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToObject(r, "id", id_of(object, item->line));
        cJSON_AddNumberToObject(r, "line", (double)item->line);
        cJSON_AddBoolToObject(r, "found", item->found);
        cJSON_AddBoolToObject(r, "truncated", item->truncated);
        cJSON_AddStringToObject(r, "answer", answer);
        cJSON_AddStringToObject(r, "gold", item->gold_found ? gold_answer : "");
        cJSON_AddBoolToObject(r, "correct", item->correct);
        cJSON_AddStringToObject(r, "rule", r1_answer_rule_name(item->rule));
        item->output = cJSON_PrintUnformatted(r);
        cJSON_Delete(r);
    }
    cJSON_Delete(object);
}

static int parse_eval_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->format = R1_ANSWER_GOLD_BOXED;
    a->backend = R1_FAST;
    for (int i = 1; i < argc; ++i) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) { eval_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "r1lab eval: %s needs a value (or is unknown)\n", s); return 2; }
        ++i;
        if (strcmp(s, "--input") == 0) a->input = v;
        else if (strcmp(s, "--output") == 0) a->output = v;
        else if (strcmp(s, "--pred-key") == 0) a->pred_key = v;
        else if (strcmp(s, "--gold-key") == 0) a->gold_key = v;
        else if (strcmp(s, "--threads") == 0) {
            char *end = NULL;
            errno = 0;
            long t = strtol(v, &end, 10);
            if (end == v || *end != '\0' || errno == ERANGE || t < 1 || t > MAX_THREADS) {
                fprintf(stderr, "r1lab eval: --threads \"%s\": must be an integer in [1, %d]\n", v, MAX_THREADS);
                return 2;
            }
            a->threads = (int)t;
        }
        else if (strcmp(s, "--gold-format") == 0) {
            if (r1_answer_gold_format_parse(v, &a->format) != R1_OK) { fprintf(stderr, "r1lab eval: %s\n", r1_last_error()); return 2; }
        } else if (strcmp(s, "--backend") == 0) {
            if (r1_backend_parse(v, &a->backend) != R1_OK || a->backend == R1_CUDA) {
                fprintf(stderr, "r1lab eval: --backend must be ref or fast\n");
                return 2;
            }
        } else { fprintf(stderr, "r1lab eval: unknown option %s\n", s); eval_usage(stderr); return 2; }
    }
    if (!a->input || !a->pred_key || !a->gold_key) {
        fprintf(stderr, "r1lab eval: --input, --pred-key and --gold-key are required\n");
        eval_usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- the eval pipeline ---------------------------------------------------------------------
 * One reader thread splits the file into batches of about BATCH_BYTES of whole lines; worker
 * threads score whole batches; the calling thread writes the batches in input order and
 * recycles them. Batch k lives in slot k % slots (slots = workers + 2), so at most `slots`
 * batches exist at once: the memory is flat whatever the file's length. */
typedef enum batch_state { BATCH_FREE, BATCH_READ, BATCH_SCORING, BATCH_SCORED } batch_state;

typedef struct eval_batch {
    batch_state state;
    int64_t sequence;
    char *buffer;
    size_t capacity, used;
    eval_item *items;
    int count, item_capacity;
    int last; /* the reader's end marker (count may be 0) */
} eval_batch;

typedef struct eval_pipeline {
    const eval_args *args;
    r1_jsonl_reader *reader;
    int want_output;
    eval_batch *slots;
    int slot_count;
    int64_t next_to_score;
    int64_t malformed_lines; /* lines the reader could not split (R1_EFORMAT) */
    int read_failed;
    int finished;            /* a worker took the last batch: the others end */
    int stop;                /* the writer met an error: read no further      */
    pthread_mutex_t lock;
    pthread_cond_t changed;
} eval_pipeline;

/* Appends one line to a batch; 0 when memory runs out. */
static int batch_add(eval_batch *b, const char *line, size_t length, int64_t number) {
    if (b->used + length + 1 > b->capacity) {
        size_t c = b->capacity ? b->capacity : BATCH_BYTES;
        while (b->used + length + 1 > c) c *= 2;
        char *grown = realloc(b->buffer, c);
        if (!grown) return 0;
        b->buffer = grown, b->capacity = c;
    }
    if (b->count == b->item_capacity) {
        int c = b->item_capacity ? 2 * b->item_capacity : 1024;
        eval_item *grown = realloc(b->items, (size_t)c * sizeof *grown);
        if (!grown) return 0;
        b->items = grown, b->item_capacity = c;
    }
    memcpy(b->buffer + b->used, line, length + 1);
    eval_item *it = &b->items[b->count++];
    memset(it, 0, sizeof *it);
    it->line = number, it->length = length;
    it->text = (char *)(uintptr_t)b->used; /* an offset until the batch is full (the buffer may move) */
    b->used += length + 1;
    return 1;
}

static void *eval_reader(void *argument) {
    eval_pipeline *p = argument;
    for (int64_t sequence = 0;; ++sequence) {
        eval_batch *b = &p->slots[sequence % p->slot_count];
        pthread_mutex_lock(&p->lock);
        while (b->state != BATCH_FREE) pthread_cond_wait(&p->changed, &p->lock);
        int stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        b->used = 0, b->count = 0, b->last = stop, b->sequence = sequence;
        int64_t malformed = 0;
        int failed = 0;
        while (!b->last && b->used < BATCH_BYTES && b->count < BATCH_LINES) {
            const char *line;
            size_t length;
            int64_t number;
            r1_status s = r1_jsonl_next_line(p->reader, &line, &length, &number);
            if (s == R1_EFORMAT) { fprintf(stderr, "r1lab eval: %s: skipped\n", r1_last_error()); ++malformed; continue; }
            if (s != R1_OK) { fprintf(stderr, "r1lab eval: %s\n", r1_last_error()); failed = 1; break; }
            if (!line) { b->last = 1; break; }
            if (!batch_add(b, line, length, number)) { fprintf(stderr, "r1lab eval: out of memory\n"); failed = 1; break; }
        }
        for (int k = 0; k < b->count; ++k) b->items[k].text = b->buffer + (uintptr_t)b->items[k].text;
        if (failed) b->last = 1;
        pthread_mutex_lock(&p->lock);
        p->malformed_lines += malformed;
        p->read_failed |= failed;
        b->state = BATCH_READ;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        if (b->last) return NULL;
    }
}

static void *eval_worker(void *argument) {
    eval_pipeline *p = argument;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        eval_batch *b;
        for (;;) {
            b = &p->slots[p->next_to_score % p->slot_count];
            if (b->state == BATCH_READ && b->sequence == p->next_to_score) break;
            if (p->finished) { pthread_mutex_unlock(&p->lock); return NULL; }
            pthread_cond_wait(&p->changed, &p->lock);
        }
        b->state = BATCH_SCORING;
        p->next_to_score++;
        int last = b->last;
        if (last) p->finished = 1;
        pthread_mutex_unlock(&p->lock);
        for (int k = 0; k < b->count; ++k) score_item(p->args, &b->items[k], p->want_output);
        pthread_mutex_lock(&p->lock);
        b->state = BATCH_SCORED;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        if (last) return NULL;
    }
}

int r1_command_eval(int argc, char **argv) {
    eval_args a;
    int code = parse_eval_args(argc, argv, &a);
    if (code >= 0) return code;
    int workers = a.threads > 0 ? a.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (workers < 1) workers = 1;
    if (workers > MAX_THREADS) workers = MAX_THREADS;
    r1_jsonl_reader *reader = NULL;
    if (r1_jsonl_open(a.input, &reader) != R1_OK) { fprintf(stderr, "r1lab eval: %s\n", r1_last_error()); return 1; }
    output o;
    memset(&o, 0, sizeof o);
    if (a.output && !output_open(&o, a.output, "r1lab eval")) { r1_jsonl_close(reader); return 1; }
    FILE *out = o.f;
    eval_pipeline p;
    memset(&p, 0, sizeof p);
    p.args = &a, p.reader = reader, p.want_output = out != NULL;
    p.slot_count = workers + 2;
    p.slots = calloc((size_t)p.slot_count, sizeof *p.slots);
    pthread_t *threads = calloc((size_t)workers + 1, sizeof *threads);
    int64_t total = 0, correct = 0, no_answer = 0, truncated = 0, no_gold = 0, malformed = 0;
    int status = p.slots && threads ? 0 : 1;
    int started = 0;
    if (status == 0) {
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.changed, NULL);
        if (pthread_create(&threads[0], NULL, eval_reader, &p) != 0) status = 1;
        else started = 1;
        for (int w = 0; w < workers && status == 0; ++w)
            if (pthread_create(&threads[1 + w], NULL, eval_worker, &p) == 0) ++started;
    }
    for (int64_t sequence = 0; started > 0; ++sequence) {
        eval_batch *b = &p.slots[sequence % p.slot_count];
        pthread_mutex_lock(&p.lock);
        while (!(b->state == BATCH_SCORED && b->sequence == sequence)) pthread_cond_wait(&p.changed, &p.lock);
        pthread_mutex_unlock(&p.lock);
        for (int k = 0; k < b->count; ++k) {
            eval_item *it = &b->items[k];
            if (it->malformed == 1) {
                fprintf(stderr, "r1lab eval: %s:%lld: not a JSON object: skipped\n", r1_jsonl_path(reader), (long long)it->line);
                ++malformed;
            } else if (it->malformed) {
                if (status == 0)
                    fprintf(stderr, "r1lab eval: %s:%lld: no key \"%s\" (or not a string or number)\n", r1_jsonl_path(reader),
                            (long long)it->line, it->malformed == 2 ? a.pred_key : a.gold_key);
                status = 1;
            } else if (status == 0) {
                ++total;
                correct += it->correct;
                no_answer += !it->found;
                truncated += it->truncated;
                no_gold += !it->gold_found;
                if (out && it->output && (fputs(it->output, out) < 0 || fputc('\n', out) == EOF)) status = 1;
            }
            free(it->output);
            it->output = NULL;
        }
        int last = b->last;
        pthread_mutex_lock(&p.lock);
        if (!last) b->state = BATCH_FREE;
        if (status != 0) p.stop = 1;
        pthread_cond_broadcast(&p.changed);
        pthread_mutex_unlock(&p.lock);
        if (last) {
            for (int w = 0; w < started; ++w) pthread_join(threads[w], NULL);
            break;
        }
    }
    malformed += p.malformed_lines;
    if (p.read_failed) status = 1;
    if (p.slots)
        for (int k = 0; k < p.slot_count; ++k) free(p.slots[k].buffer), free(p.slots[k].items);
    if (started) pthread_mutex_destroy(&p.lock), pthread_cond_destroy(&p.changed);
    free(p.slots);
    free(threads);
    r1_jsonl_close(reader);
    if (out && !output_close(&o, status == 0, "r1lab eval")) status = 1;
    if (status != 0) return 1;
    printf("items      %lld\n", (long long)total);
    printf("correct    %lld\n", (long long)correct);
    printf("accuracy   %.4f\n", total ? (double)correct / (double)total : 0.0);
    printf("no answer  %lld\n", (long long)no_answer);
    printf("truncated  %lld\n", (long long)truncated);
    printf("no gold    %lld\n", (long long)no_gold);
    printf("malformed  %lld (skipped)\n", (long long)malformed);
    return 0;
}
