/*
 * pipeline/distill.c — the distillation run: one thread, one curl_multi
 * handle, a fixed array of `concurrency` slots.
 *
 *   unit      one (line_num, sample) of the input; the input is streamed and a
 *             unit is built only when a slot is free.
 *   slot      an easy handle, its unit's request body, the response being
 *             received, the attempt count. States: IDLE -> RUNNING -> (done |
 *             WAITING for a backoff -> RUNNING ...).
 *   endpoint  a base URL: outstanding requests, consecutive failures; a circuit
 *             breaker benches it for breaker_base * 2^k seconds (capped) after
 *             `breaker_threshold` consecutive failures. A request goes to the
 *             healthy endpoint with the fewest outstanding requests, avoiding
 *             the one it last failed on.
 *   retry     delay = uniform(0, min(backoff_max, backoff_base * 2^(attempt-1)))
 *             ("full jitter"), at least Retry-After (capped at retry_after_max).
 *   journals  every finished unit is appended with one write() to exactly one
 *             of output / errors / rejected; a restart scans them, cuts a torn
 *             last line and skips what they hold: exactly once, crash or not.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pipeline/distill_internal.h"
#include "r1lab/jsonl.h"

void r1_distill_config_default(r1_distill_config *config) {
    memset(config, 0, sizeof *config);
    config->prompt_key = "prompt";
    config->response_key = "response";
    config->reasoning_key = "reasoning";
    config->prompt_suffix = "";
    config->model = "deepseek-r1";
    config->temperature = 0.6;
    config->top_p = 0.95;
    config->max_tokens = 32768;
    config->concurrency = 16;
    config->timeout_s = 3600;
    config->connect_timeout_s = 10;
    config->idle_timeout_s = 300;
    config->samples = 1;
    config->keep = R1_DISTILL_KEEP_ALL;
    config->gold_format = -1;
    config->max_retries = 5;
    config->backoff_base_s = 1;
    config->backoff_max_s = 60;
    config->retry_after_max_s = 120;
    config->length_policy = R1_DISTILL_LENGTH_KEEP;
    config->breaker_threshold = 5;
    config->breaker_base_s = 2;
    config->breaker_max_s = 60;
    config->grace_s = 30;
    config->progress_interval_s = 10;
    config->progress = -1;
    config->install_signal_handlers = 1;
}

/* ---- small helpers shared with the dry run ---------------------------------------- */

/* A prompt: the string field, or the first element of an array of strings. */
static const char *record_prompt(const cJSON *record, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(record, key);
    if (cJSON_IsArray(item)) item = cJSON_GetArrayItem(item, 0);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static int append_number(distill_buffer *buffer, double value) {
    return distill_buffer_printf(buffer, "%.15g", value);
}

/* The chat-completions request body of one unit. */
static int build_body(const r1_distill_config *config, const char *prompt, int64_t line_num,
                      int64_t sample, distill_buffer *body) {
    distill_buffer_clear(body);
    size_t prompt_length = strlen(prompt), suffix_length = strlen(config->prompt_suffix);
    char *text = malloc(prompt_length + suffix_length + 1);
    if (text == NULL) return 0;
    memcpy(text, prompt, prompt_length);
    memcpy(text + prompt_length, config->prompt_suffix, suffix_length + 1);
    int ok = distill_buffer_append_string(body, "{\"model\": ") &&
             distill_buffer_append_json_string(body, config->model, strlen(config->model)) &&
             distill_buffer_append_string(body, ", \"messages\": [{\"role\": \"user\", \"content\": ") &&
             distill_buffer_append_json_string(body, text, prompt_length + suffix_length) &&
             distill_buffer_append_string(body, "}], \"temperature\": ") &&
             append_number(body, config->temperature) &&
             distill_buffer_append_string(body, ", \"top_p\": ") && append_number(body, config->top_p) &&
             distill_buffer_printf(body, ", \"max_tokens\": %lld", (long long)config->max_tokens);
    if (config->stream)
        ok = ok && distill_buffer_append_string(body, ", \"stream\": true, \"stream_options\": {\"include_usage\": true}");
    else
        ok = ok && distill_buffer_append_string(body, ", \"stream\": false");
    if (config->has_seed)
        ok = ok && distill_buffer_printf(body, ", \"seed\": %lld",
                                         (long long)((config->seed + line_num * config->samples + sample) & 0x7fffffffLL));
    ok = ok && distill_buffer_append(body, "}", 1);
    free(text);
    return ok;
}

static r1_status validate_config(const r1_distill_config *c) {
    if (c == NULL) return r1_fail(R1_EINVAL, "distill: config is NULL");
    if (c->input_file == NULL || c->input_file[0] == '\0') return r1_fail(R1_EINVAL, "distill: --input_file is required");
    if (c->output_dir == NULL || c->output_dir[0] == '\0') return r1_fail(R1_EINVAL, "distill: --output_dir is required");
    if (!c->prompt_key || !c->response_key || !c->reasoning_key || !c->prompt_suffix || !c->model)
        return r1_fail(R1_EINVAL, "distill: prompt_key, response_key, reasoning_key, prompt_suffix and model must be set");
    if (c->endpoint_count < 1 || c->base_urls == NULL) return r1_fail(R1_EINVAL, "distill: --base_urls needs at least one URL");
    for (int i = 0; i < c->endpoint_count; ++i)
        if (c->base_urls[i] == NULL || (strncmp(c->base_urls[i], "http://", 7) != 0 && strncmp(c->base_urls[i], "https://", 8) != 0))
            return r1_fail(R1_EINVAL, "distill: base URL %d \"%.100s\" does not start with http:// or https://", i + 1,
                           c->base_urls[i] ? c->base_urls[i] : "(null)");
    if (!(c->api_key_count == 0 || c->api_key_count == 1 || c->api_key_count == c->endpoint_count))
        return r1_fail(R1_EINVAL, "distill: %d API keys for %d base URLs (give none, one for all, or one per URL)",
                       c->api_key_count, c->endpoint_count);
    if (c->concurrency < 1 || c->concurrency > 65536) return r1_fail(R1_EINVAL, "distill: concurrency = %d is outside 1..65536", c->concurrency);
    if (c->samples < 1 || c->samples > 1000000) return r1_fail(R1_EINVAL, "distill: n = %d is outside 1..1000000", c->samples);
    if (!(c->temperature >= 0) || !(c->top_p > 0 && c->top_p <= 1)) return r1_fail(R1_EINVAL, "distill: temperature = %g, top_p = %g (need temperature >= 0, 0 < top_p <= 1)", c->temperature, c->top_p);
    if (c->max_tokens < 1) return r1_fail(R1_EINVAL, "distill: max_tokens = %lld must be positive", (long long)c->max_tokens);
    if (!(c->timeout_s > 0) || !(c->connect_timeout_s > 0) || !(c->idle_timeout_s > 0)) return r1_fail(R1_EINVAL, "distill: timeouts must be positive");
    if (c->max_retries < 0) return r1_fail(R1_EINVAL, "distill: max_retries = %d is negative", c->max_retries);
    if (!(c->backoff_base_s >= 0) || !(c->backoff_max_s >= 0) || !(c->retry_after_max_s >= 0)) return r1_fail(R1_EINVAL, "distill: backoff times must be >= 0");
    if (!(c->rpm >= 0) || !(c->tpm >= 0)) return r1_fail(R1_EINVAL, "distill: rpm and tpm must be >= 0");
    if (c->keep == R1_DISTILL_KEEP_CORRECT && c->answer_key == NULL) return r1_fail(R1_EINVAL, "distill: --keep correct needs --answer_key");
    if (c->gold_format < -1 || c->gold_format > 2) return r1_fail(R1_EINVAL, "distill: gold format %d is not boxed, gsm8k or plain", c->gold_format);
    if (c->breaker_threshold < 1) return r1_fail(R1_EINVAL, "distill: breaker threshold must be >= 1");
    return R1_OK;
}

r1_status r1_distill_dry_run(const r1_distill_config *config, FILE *out) {
    r1_status status = validate_config(config);
    if (status != R1_OK) return status;
    r1_jsonl_reader *reader = NULL;
    status = r1_jsonl_open(config->input_file, &reader);
    if (status != R1_OK) return status;
    distill_buffer body = {0};
    int printed = 0;
    for (;;) {
        const char *line = NULL;
        size_t length = 0;
        int64_t number = 0;
        status = r1_jsonl_next_line(reader, &line, &length, &number);
        if (status == R1_EFORMAT) continue;
        if (status != R1_OK || line == NULL) break;
        cJSON *record = cJSON_ParseWithLength(line, length);
        const char *prompt = cJSON_IsObject(record) ? record_prompt(record, config->prompt_key) : NULL;
        if (prompt) {
            if (!build_body(config, prompt, number - 1, 0, &body)) status = r1_fail(R1_ENOMEM, "out of memory");
            else {
                fprintf(out, "POST %s/chat/completions\n%s\n", config->base_urls[0], body.data);
                printed = 1;
            }
        }
        cJSON_Delete(record);
        if (prompt) break;
    }
    r1_jsonl_close(reader);
    distill_buffer_free(&body);
    if (status == R1_OK && !printed) status = r1_fail(R1_EFORMAT, "%s: no line has a string \"%s\"", config->input_file, config->prompt_key);
    return status;
}

#ifndef R1LAB_HAVE_CURL

r1_status r1_distill_run(const r1_distill_config *config, r1_distill_summary *summary) {
    (void)config;
    if (summary) memset(summary, 0, sizeof *summary);
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without libcurl: r1lab distill is not available");
}

#else

#include <curl/curl.h>

/* "data/GSM8K_zh.jsonl" -> "GSM8K_zh" (PaddleNLP's Path.stem). malloc'd. */
static char *input_stem(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    size_t length = (dot && dot != name) ? (size_t)(dot - name) : strlen(name);
    char *stem = malloc(length + 1);
    if (stem) {
        memcpy(stem, name, length);
        stem[length] = '\0';
    }
    return stem;
}

/* The gold answer as text (strings as they are, numbers as printed). malloc'd. */
static char *record_gold(const cJSON *record, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(record, key);
    if (cJSON_IsString(item)) {
        size_t length = strlen(item->valuestring);
        char *copy = malloc(length + 1);
        if (copy) memcpy(copy, item->valuestring, length + 1);
        return copy;
    }
    if (cJSON_IsNumber(item)) return cJSON_PrintUnformatted(item);
    return NULL;
}

#define MAX_BODY_BYTES ((size_t)512 << 20)
#define ERROR_BODY_BYTES 4096

typedef struct endpoint {
    char *url;                    /* base + "/chat/completions"                   */
    const char *base;             /* as given, for messages                       */
    struct curl_slist *headers;   /* holds the Authorization header (secret)      */
    int outstanding;
    int consecutive_failures, bench_count;
    double benched_until;
    int64_t requests, failures;
} endpoint;

typedef enum slot_state { SLOT_IDLE = 0, SLOT_RUNNING, SLOT_WAITING } slot_state;

typedef struct slot {
    slot_state state;
    CURL *easy;
    int64_t line_num, sample;
    distill_buffer raw;           /* the input line's bytes                       */
    char *gold;                   /* answer_key value, or NULL                    */
    distill_buffer body;          /* request body                                 */
    distill_buffer response;      /* non-SSE response bytes                       */
    r1_distill_sse *sse;
    int decided;                  /* first byte seen: is_sse decided              */
    int is_sse, too_large, sse_broken, idle_aborted;
    int attempts;                 /* attempts made so far                         */
    int endpoint, last_failed_endpoint;
    double ready_at, started, last_data;
    double retry_after;           /* -1: none                                     */
    char curl_error[CURL_ERROR_SIZE];
    char sse_error[256];
} slot;

typedef struct run {
    const r1_distill_config *config;
    r1_distill_keys keys;
    char *token_prefix;
    endpoint *endpoints;
    int endpoint_count, endpoint_cursor;
    slot *slots;
    int *idle;                    /* stack of idle slot indices                   */
    int idle_count, running_count, waiting_count;
    CURLM *multi;
    r1_jsonl_reader *reader;
    int input_done;
    int64_t previous_number;      /* last physical line number read (1-based)     */
    /* the current input line, while its samples are handed out */
    int has_line;
    int64_t line_num, next_sample;
    distill_buffer line_raw;
    char *line_prompt, *line_gold;
    /* done units: bit (line_num * samples + sample) */
    uint64_t *done;
    int64_t done_words;
    int64_t done_count;
    /* files */
    char *output_path, *errors_path, *rejected_path, *status_path, *log_path;
    int output_fd, errors_fd, rejected_fd, log_fd;
    /* accounting */
    r1_distill_summary summary;
    double start_time, next_status, next_progress, last_progress_time;
    int64_t last_progress_done;
    int tty;
    double next_request_time;     /* rpm                                          */
    double token_bucket, token_time; /* tpm                                       */
    int payment_stop, fatal;
    r1_status fatal_status;
    char fatal_message[512];
    uint64_t random_state;
} run;

static volatile sig_atomic_t interrupt_count = 0;
static void on_signal(int number) {
    (void)number;
    interrupt_count++;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double random_uniform(run *r) { /* splitmix64 -> [0, 1) */
    uint64_t z = (r->random_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Removes every API key from `buffer` (error bodies may echo them). */
static void redact(const run *r, distill_buffer *buffer) {
    const r1_distill_config *c = r->config;
    for (int k = 0; k < c->api_key_count; ++k) {
        const char *key = c->api_keys[k];
        size_t n = key ? strlen(key) : 0;
        if (n == 0 || buffer->data == NULL) continue;
        char *p;
        while ((p = strstr(buffer->data, key)) != NULL) {
            static const char mask[] = "[redacted]";
            size_t m = sizeof mask - 1, tail = buffer->length - (size_t)(p - buffer->data) - n;
            if (m > n && !distill_buffer_reserve(buffer, m - n)) return;
            p = strstr(buffer->data, key);
            memmove(p + m, p + n, tail + 1);
            memcpy(p, mask, m);
            buffer->length = buffer->length - n + m;
        }
    }
}

static int write_all(int fd, const char *bytes, size_t length) {
    while (length) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        bytes += written;
        length -= (size_t)written;
    }
    return 1;
}

static void set_fatal(run *r, r1_status status, const char *message) {
    if (r->fatal) return;
    r->fatal = 1;
    r->fatal_status = status;
    snprintf(r->fatal_message, sizeof r->fatal_message, "%s", message);
}

static void log_event(run *r, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void log_event(run *r, const char *format, ...) {
    if (r->log_fd < 0) return;
    char stamp[32];
    time_t t = time(NULL);
    struct tm local;
    localtime_r(&t, &local);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    char message[1024];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    distill_buffer line = {0};
    if (distill_buffer_printf(&line, "%s %s\n", stamp, message)) {
        redact(r, &line);
        write_all(r->log_fd, line.data, line.length);
    }
    distill_buffer_free(&line);
}

/* ---- the done set ------------------------------------------------------------------ */

static int64_t unit_index(const run *r, int64_t line_num, int64_t sample) {
    return line_num * r->config->samples + sample;
}

static int done_grow(run *r, int64_t index) {
    int64_t word = index >> 6;
    if (word < r->done_words) return 1;
    int64_t words = r->done_words ? r->done_words : 1024;
    while (words <= word) words *= 2;
    uint64_t *grown = realloc(r->done, (size_t)words * sizeof *grown);
    if (grown == NULL) return 0;
    memset(grown + r->done_words, 0, (size_t)(words - r->done_words) * sizeof *grown);
    r->done = grown;
    r->done_words = words;
    return 1;
}

static int is_done(const run *r, int64_t line_num, int64_t sample) {
    int64_t index = unit_index(r, line_num, sample);
    return (index >> 6) < r->done_words && (r->done[index >> 6] >> (index & 63) & 1);
}

static void mark_done(run *r, int64_t line_num, int64_t sample) {
    if (sample < 0) { /* every sample of the line */
        for (int64_t s = 0; s < r->config->samples; ++s) mark_done(r, line_num, s);
        return;
    }
    if (sample >= r->config->samples || line_num < 0 || line_num > ((int64_t)1 << 40)) return;
    int64_t index = unit_index(r, line_num, sample);
    if (!done_grow(r, index)) {
        set_fatal(r, R1_ENOMEM, "out of memory growing the done set");
        return;
    }
    uint64_t bit = (uint64_t)1 << (index & 63);
    if (!(r->done[index >> 6] & bit)) {
        r->done[index >> 6] |= bit;
        r->done_count++;
    }
}

static void visit_journal(void *context, int64_t line_num, int64_t sample) {
    mark_done((run *)context, line_num, sample);
}

/* Status file: the lines whose every sample is done, in range format. */
static void write_status(run *r) {
    int64_t n = r->config->samples;
    int64_t lines = r->done_words * 64 / n;
    uint64_t *bits = calloc((size_t)(lines / 64 + 1), sizeof *bits);
    if (bits == NULL) return;
    for (int64_t line = 0; line < lines; ++line) {
        int all = 1;
        for (int64_t s = 0; s < n && all; ++s) all = is_done(r, line, s);
        if (all) bits[line >> 6] |= (uint64_t)1 << (line & 63);
    }
    char *text = NULL;
    if (r1_distill_format_ranges(bits, lines, &text) == R1_OK) {
        size_t length = strlen(r->status_path);
        char *temporary = malloc(length + 5);
        if (temporary) {
            memcpy(temporary, r->status_path, length);
            memcpy(temporary + length, ".tmp", 5);
            int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                int ok = write_all(fd, text, strlen(text));
                ok = (close(fd) == 0) && ok;
                if (ok) rename(temporary, r->status_path);
                else unlink(temporary);
            }
            free(temporary);
        }
    }
    free(text);
    free(bits);
}

/* ---- journals ------------------------------------------------------------------------ */

static void append_journal(run *r, int fd, const char *bytes, size_t length) {
    if (!write_all(fd, bytes, length)) {
        char message[256];
        snprintf(message, sizeof message, "cannot append to a journal in %s: %s", r->config->output_dir, strerror(errno));
        set_fatal(r, R1_EIO, message);
    }
}

/* {"line_num": N, "sample": S, "error": ..., ...} into .errors.jsonl. */
static void record_error(run *r, int64_t line_num, int64_t sample, long http_status,
                         const char *curl_error, const char *error, const char *body, size_t body_length,
                         const char *endpoint_base) {
    distill_buffer line = {0};
    int ok = distill_buffer_printf(&line, "{\"line_num\": %lld, \"sample\": %lld", (long long)line_num, (long long)sample);
    if (http_status > 0) ok = ok && distill_buffer_printf(&line, ", \"http_status\": %ld", http_status);
    if (curl_error) {
        ok = ok && distill_buffer_append_string(&line, ", \"curl_error\": ");
        ok = ok && distill_buffer_append_json_string(&line, curl_error, strlen(curl_error));
    }
    ok = ok && distill_buffer_append_string(&line, ", \"error\": ");
    ok = ok && distill_buffer_append_json_string(&line, error, strlen(error));
    if (body) {
        ok = ok && distill_buffer_append_string(&line, ", \"body\": ");
        ok = ok && distill_buffer_append_json_string(&line, body, body_length > ERROR_BODY_BYTES ? ERROR_BODY_BYTES : body_length);
    }
    if (endpoint_base) {
        ok = ok && distill_buffer_append_string(&line, ", \"endpoint\": ");
        ok = ok && distill_buffer_append_json_string(&line, endpoint_base, strlen(endpoint_base));
    }
    ok = ok && distill_buffer_append(&line, "}\n", 2);
    if (ok) {
        redact(r, &line);
        append_journal(r, r->errors_fd, line.data, line.length);
        mark_done(r, line_num, sample);
    } else {
        set_fatal(r, R1_ENOMEM, "out of memory writing an error record");
    }
    distill_buffer_free(&line);
}

/* ---- reading units ---------------------------------------------------------------------- */

static void bad_line(run *r, int64_t line_num, const char *reason) {
    if (is_done(r, line_num, 0)) return; /* recorded by an earlier run */
    log_event(r, "SKIP line %lld: %s", (long long)line_num, reason);
    record_error(r, line_num, -1, 0, NULL, reason, NULL, 0, NULL);
    r->summary.bad_lines++;
}

/* Reads input lines until one has a unit that is not done. 0 at the end. */
static int load_next_line(run *r) {
    const r1_distill_config *c = r->config;
    for (;;) {
        const char *line = NULL;
        size_t length = 0;
        int64_t number = 0;
        r1_status status = r1_jsonl_next_line(r->reader, &line, &length, &number);
        if (status == R1_EFORMAT) { /* a NUL byte: the reader names the line */
            for (int64_t blank = r->previous_number + 1; blank < number; ++blank)
                bad_line(r, blank - 1, "blank line");
            r->previous_number = number;
            bad_line(r, number - 1, r1_last_error());
            continue;
        }
        if (status != R1_OK) {
            set_fatal(r, status, r1_last_error());
            return 0;
        }
        if (line == NULL) return 0;
        for (int64_t blank = r->previous_number + 1; blank < number; ++blank)
            bad_line(r, blank - 1, "blank line");
        r->previous_number = number;
        int64_t line_num = number - 1;
        int all_done = 1;
        for (int64_t s = 0; s < c->samples && all_done; ++s) all_done = is_done(r, line_num, s);
        if (all_done) continue;
        cJSON *record = cJSON_ParseWithLength(line, length);
        if (!cJSON_IsObject(record)) {
            cJSON_Delete(record);
            bad_line(r, line_num, "not a JSON object");
            continue;
        }
        const char *prompt = record_prompt(record, c->prompt_key);
        if (prompt == NULL) {
            char reason[300];
            snprintf(reason, sizeof reason, "no string field \"%.200s\"", c->prompt_key);
            cJSON_Delete(record);
            bad_line(r, line_num, reason);
            continue;
        }
        free(r->line_prompt);
        free(r->line_gold);
        r->line_prompt = malloc(strlen(prompt) + 1);
        if (r->line_prompt) strcpy(r->line_prompt, prompt);
        r->line_gold = c->answer_key ? record_gold(record, c->answer_key) : NULL;
        cJSON_Delete(record);
        distill_buffer_clear(&r->line_raw);
        if (r->line_prompt == NULL || !distill_buffer_append(&r->line_raw, line, length)) {
            set_fatal(r, R1_ENOMEM, "out of memory reading the input");
            return 0;
        }
        r->line_num = line_num;
        r->next_sample = 0;
        r->has_line = 1;
        return 1;
    }
}

/* Fills slot `s` with the next unit not done. 0 at the end of the input. */
static int next_unit(run *r, slot *s) {
    const r1_distill_config *c = r->config;
    for (;;) {
        if (!r->has_line) {
            if (r->input_done || !load_next_line(r)) {
                r->input_done = 1;
                return 0;
            }
        }
        while (r->next_sample < c->samples && is_done(r, r->line_num, r->next_sample)) r->next_sample++;
        if (r->next_sample >= c->samples) {
            r->has_line = 0;
            continue;
        }
        s->line_num = r->line_num;
        s->sample = r->next_sample++;
        distill_buffer_clear(&s->raw);
        free(s->gold);
        s->gold = NULL;
        if (!distill_buffer_append(&s->raw, r->line_raw.data, r->line_raw.length) ||
            !build_body(c, r->line_prompt, s->line_num, s->sample, &s->body)) {
            set_fatal(r, R1_ENOMEM, "out of memory building a request");
            return 0;
        }
        if (r->line_gold) {
            s->gold = malloc(strlen(r->line_gold) + 1);
            if (s->gold) strcpy(s->gold, r->line_gold);
        }
        s->attempts = 0;
        s->last_failed_endpoint = -1;
        return 1;
    }
}

/* ---- curl callbacks --------------------------------------------------------------------- */

static size_t on_body(char *bytes, size_t size, size_t count, void *user) {
    slot *s = user;
    size_t length = size * count;
    if (!s->decided) {
        s->decided = 1;
        long http = 0;
        char *type = NULL;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_getinfo(s->easy, CURLINFO_CONTENT_TYPE, &type);
        s->is_sse = s->sse != NULL && http >= 200 && http < 300 && type && strstr(type, "event-stream");
    }
    if (s->is_sse) {
        int64_t events = 0;
        if (r1_distill_sse_feed(s->sse, bytes, length, &events) != R1_OK) {
            snprintf(s->sse_error, sizeof s->sse_error, "%s", r1_last_error());
            s->sse_broken = 1;
            return 0;
        }
        if (events) s->last_data = now_seconds();
        return length;
    }
    if (s->response.length + length > MAX_BODY_BYTES) {
        s->too_large = 1;
        return 0;
    }
    if (!distill_buffer_append(&s->response, bytes, length)) {
        s->too_large = 1;
        return 0;
    }
    s->last_data = now_seconds();
    return length;
}

static size_t on_header(char *bytes, size_t size, size_t count, void *user) {
    slot *s = user;
    size_t length = size * count;
    if (length > 12 && strncasecmp(bytes, "retry-after:", 12) == 0) {
        char value[128];
        size_t n = length - 12 < sizeof value - 1 ? length - 12 : sizeof value - 1;
        memcpy(value, bytes + 12, n);
        value[n] = '\0';
        double seconds = 0;
        if (r1_distill_parse_retry_after(value, time(NULL), &seconds) == R1_OK) s->retry_after = seconds;
    }
    return length;
}

/* ---- endpoints --------------------------------------------------------------------------- */

/* The healthy endpoint with the fewest outstanding requests (rotating among
 * ties), avoiding `avoid` when another is healthy; -1 when all are benched
 * (*wait_until: the earliest end of a bench). */
static int choose_endpoint(run *r, int avoid, double now, double *wait_until) {
    int best = -1;
    double earliest = 1e300;
    for (int pass = 0; pass < 2 && best < 0; ++pass) {
        for (int k = 0; k < r->endpoint_count; ++k) {
            int i = (r->endpoint_cursor + k) % r->endpoint_count;
            endpoint *e = &r->endpoints[i];
            if (e->benched_until > now) {
                if (e->benched_until < earliest) earliest = e->benched_until;
                continue;
            }
            if (pass == 0 && i == avoid && r->endpoint_count > 1) continue;
            if (best < 0 || e->outstanding < r->endpoints[best].outstanding) best = i;
        }
    }
    if (best >= 0) r->endpoint_cursor = (best + 1) % r->endpoint_count;
    *wait_until = earliest;
    return best;
}

static void endpoint_result(run *r, int index, int healthy) {
    endpoint *e = &r->endpoints[index];
    if (healthy) {
        e->consecutive_failures = 0;
        e->bench_count = 0;
        return;
    }
    e->failures++;
    if (++e->consecutive_failures >= r->config->breaker_threshold) {
        double seconds = r->config->breaker_base_s * pow(2.0, e->bench_count < 30 ? e->bench_count : 30);
        if (seconds > r->config->breaker_max_s) seconds = r->config->breaker_max_s;
        e->benched_until = now_seconds() + seconds;
        e->bench_count++;
        e->consecutive_failures = 0;
        log_event(r, "BENCH endpoint %s for %.1f s after %d consecutive failures", e->base, seconds,
                  r->config->breaker_threshold);
    }
}

/* ---- attempts ---------------------------------------------------------------------------- */

static void slot_release(run *r, slot *s) {
    if (s->state == SLOT_WAITING) r->waiting_count--;
    s->state = SLOT_IDLE;
    distill_buffer_clear(&s->raw);
    free(s->gold);
    s->gold = NULL;
    r->idle[r->idle_count++] = (int)(s - r->slots);
}

static void slot_wait(run *r, slot *s, double ready_at) {
    s->state = SLOT_WAITING;
    s->ready_at = ready_at;
    r->waiting_count++;
}

static void start_attempt(run *r, slot *s) {
    const r1_distill_config *c = r->config;
    double now = now_seconds(), wait_until = 0;
    int index = choose_endpoint(r, s->last_failed_endpoint, now, &wait_until);
    if (s->state == SLOT_WAITING) {
        r->waiting_count--;
        s->state = SLOT_IDLE;
    }
    if (index < 0) {
        slot_wait(r, s, wait_until);
        return;
    }
    endpoint *e = &r->endpoints[index];
    s->endpoint = index;
    s->decided = s->is_sse = s->too_large = s->sse_broken = s->idle_aborted = 0;
    s->retry_after = -1;
    s->curl_error[0] = s->sse_error[0] = '\0';
    distill_buffer_clear(&s->response);
    if (c->stream) {
        r1_distill_sse_destroy(s->sse);
        s->sse = NULL;
        if (r1_distill_sse_create(&s->sse) != R1_OK) {
            set_fatal(r, R1_ENOMEM, "out of memory creating a stream parser");
            slot_release(r, s);
            return;
        }
    }
    curl_easy_setopt(s->easy, CURLOPT_URL, e->url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body.length);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body.data);
    s->attempts++;
    s->started = s->last_data = now;
    s->state = SLOT_RUNNING;
    e->outstanding++;
    e->requests++;
    r->running_count++;
    CURLMcode added = curl_multi_add_handle(r->multi, s->easy);
    if (added != CURLM_OK) set_fatal(r, R1_EINTERNAL, curl_multi_strerror(added));
    if (c->rpm > 0) {
        double interval = 60.0 / c->rpm;
        r->next_request_time = (r->next_request_time > now ? r->next_request_time : now) + interval;
    }
}

static void schedule_retry(run *r, slot *s, const char *reason, long http, const char *body, size_t body_length) {
    const r1_distill_config *c = r->config;
    endpoint *e = &r->endpoints[s->endpoint];
    s->last_failed_endpoint = s->endpoint;
    if (s->attempts > c->max_retries) {
        log_event(r, "FAIL line %lld sample %lld after %d attempts: %s", (long long)s->line_num,
                  (long long)s->sample, s->attempts, reason);
        record_error(r, s->line_num, s->sample, http, s->curl_error[0] ? s->curl_error : NULL, reason, body,
                     body_length, e->base);
        r->summary.failed++;
        slot_release(r, s);
        return;
    }
    double cap = c->backoff_base_s * pow(2.0, s->attempts - 1 < 60 ? s->attempts - 1 : 60);
    if (cap > c->backoff_max_s) cap = c->backoff_max_s;
    double delay = random_uniform(r) * cap;
    if (s->retry_after >= 0) {
        double honoured = s->retry_after < c->retry_after_max_s ? s->retry_after : c->retry_after_max_s;
        if (honoured > delay) delay = honoured;
    }
    r->summary.retries++;
    log_event(r, "RETRY line %lld sample %lld attempt %d on %s in %.2f s: %s", (long long)s->line_num,
              (long long)s->sample, s->attempts, e->base, delay, reason);
    slot_wait(r, s, now_seconds() + delay);
}

static void write_success(run *r, slot *s, const r1_distill_response *response) {
    const r1_distill_config *c = r->config;
    r1_distill_record record = {0};
    record.line_num = s->line_num;
    record.sample = c->samples > 1 ? s->sample : -1;
    record.response = response->content;
    record.reasoning = response->reasoning;
    record.finish_reason = response->finish_reason;
    record.prompt_tokens = response->prompt_tokens;
    record.completion_tokens = response->completion_tokens;
    char answer[512];
    int rejected = 0;
    if (c->answer_key) {
        int correct = 0;
        if (s->gold == NULL) {
            answer[0] = '\0';
        } else {
            r1_status status = distill_check_answer(response->content, strlen(response->content), s->gold,
                                                    c->gold_format, answer, sizeof answer, &correct);
            if (status != R1_OK) {
                set_fatal(r, status, r1_last_error());
                return;
            }
        }
        record.answer = answer;
        record.correct = correct;
        if (c->keep == R1_DISTILL_KEEP_CORRECT && !correct) {
            rejected = 1;
            record.reason = s->gold ? "incorrect" : "no gold answer";
        }
    }
    if (!rejected && response->finish_reason && strcmp(response->finish_reason, "length") == 0 &&
        c->length_policy == R1_DISTILL_LENGTH_DROP) {
        rejected = 1;
        record.reason = "finish_reason length";
    }
    char *line = NULL;
    size_t length = 0;
    r1_status status = r1_distill_output_line(s->raw.data, s->raw.length, &r->keys, &record, &line, &length);
    if (status != R1_OK) {
        set_fatal(r, status, r1_last_error());
        return;
    }
    append_journal(r, rejected ? r->rejected_fd : r->output_fd, line, length);
    free(line);
    mark_done(r, s->line_num, s->sample);
    if (rejected) r->summary.rejected++;
    else r->summary.written++;
    if (response->prompt_tokens > 0) r->summary.prompt_tokens += response->prompt_tokens;
    if (response->completion_tokens > 0) r->summary.completion_tokens += response->completion_tokens;
    if (c->tpm > 0) r->token_bucket -= (double)((response->prompt_tokens > 0 ? response->prompt_tokens : 0) +
                                                (response->completion_tokens > 0 ? response->completion_tokens : 0));
}

/* An attempt ended (curl finished it, or it was aborted). */
static void finish_attempt(run *r, slot *s, CURLcode code) {
    const r1_distill_config *c = r->config;
    endpoint *e = &r->endpoints[s->endpoint];
    long http = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http);
    e->outstanding--;
    r->running_count--;
    s->state = SLOT_IDLE;
    char reason[512];
    if (s->idle_aborted) {
        endpoint_result(r, s->endpoint, 0);
        snprintf(reason, sizeof reason, "no stream data for %.0f s (idle timeout)", c->idle_timeout_s);
        schedule_retry(r, s, reason, http, NULL, 0);
        return;
    }
    if (s->too_large) {
        snprintf(reason, sizeof reason, "response body larger than %zu bytes", MAX_BODY_BYTES);
        log_event(r, "FAIL line %lld sample %lld: %s", (long long)s->line_num, (long long)s->sample, reason);
        record_error(r, s->line_num, s->sample, http, NULL, reason, NULL, 0, e->base);
        r->summary.failed++;
        slot_release(r, s);
        return;
    }
    if (s->sse_broken) {
        endpoint_result(r, s->endpoint, 0);
        snprintf(reason, sizeof reason, "malformed stream: %s", s->sse_error);
        schedule_retry(r, s, reason, http, NULL, 0);
        return;
    }
    if (code != CURLE_OK && s->curl_error[0] == '\0')
        snprintf(s->curl_error, sizeof s->curl_error, "%s", curl_easy_strerror(code));
    r1_distill_verdict verdict = r1_distill_classify(code == CURLE_OK ? http : 0, (int)code);
    if (verdict == R1_DISTILL_SUCCESS) {
        r1_distill_response response;
        r1_status status = s->is_sse ? r1_distill_sse_finish(s->sse, &response)
                                     : r1_distill_parse_response(s->response.data, s->response.length, &response);
        if (status == R1_ENOMEM) {
            set_fatal(r, status, r1_last_error());
            slot_release(r, s);
            return;
        }
        if (status != R1_OK) {
            endpoint_result(r, s->endpoint, 0);
            snprintf(reason, sizeof reason, "HTTP %ld with a bad body: %s", http, r1_last_error());
            schedule_retry(r, s, reason, http, s->response.data, s->response.length);
            return;
        }
        if (response.is_error) {
            endpoint_result(r, s->endpoint, 0);
            snprintf(reason, sizeof reason, "HTTP %ld with an error %s: %.300s", http,
                     s->is_sse ? "event" : "body", response.error_message ? response.error_message : "");
            r1_distill_response_free(&response);
            schedule_retry(r, s, reason, http, s->response.data, s->response.length);
            return;
        }
        endpoint_result(r, s->endpoint, 1);
        if (response.finish_reason && strcmp(response.finish_reason, "length") == 0 &&
            c->length_policy == R1_DISTILL_LENGTH_RETRY) {
            r1_distill_response_free(&response);
            schedule_retry(r, s, "finish_reason length (policy: retry)", http, NULL, 0);
            return;
        }
        write_success(r, s, &response);
        r1_distill_response_free(&response);
        slot_release(r, s);
        return;
    }
    if (verdict == R1_DISTILL_STOP) {
        if (!r->payment_stop) {
            log_event(r, "STOP HTTP 402 from %s (insufficient balance): no new requests; the run is resumable", e->base);
            fprintf(stderr, "\nr1lab distill: HTTP 402 from %s (insufficient balance): stopping; rerun to resume\n", e->base);
        }
        r->payment_stop = 1;
        slot_release(r, s);
        return;
    }
    if (code != CURLE_OK) snprintf(reason, sizeof reason, "%s", s->curl_error);
    else snprintf(reason, sizeof reason, "HTTP %ld", http);
    if (verdict == R1_DISTILL_RETRY) {
        int health = code == CURLE_OK && (http == 408 || http == 409 || http == 429);
        endpoint_result(r, s->endpoint, health);
        schedule_retry(r, s, reason, code == CURLE_OK ? http : 0, s->response.data, s->response.length);
        return;
    }
    endpoint_result(r, s->endpoint, 1);
    log_event(r, "FAIL line %lld sample %lld: %s (not retried)", (long long)s->line_num, (long long)s->sample, reason);
    record_error(r, s->line_num, s->sample, code == CURLE_OK ? http : 0,
                 code != CURLE_OK ? s->curl_error : NULL, reason, s->response.data, s->response.length, e->base);
    r->summary.failed++;
    slot_release(r, s);
}

/* ---- progress ------------------------------------------------------------------------------ */

static void format_duration(double seconds, char *text, size_t size) {
    if (!(seconds >= 0) || seconds > 1e7) {
        snprintf(text, size, "--:--:--");
        return;
    }
    long total = (long)seconds;
    snprintf(text, size, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
}

static void report_progress(run *r, double now, int final) {
    const r1_distill_config *c = r->config;
    int64_t done = r->done_count < r->summary.units_total ? r->done_count : r->summary.units_total;
    double elapsed = now - r->start_time;
    int64_t this_run = r->summary.written + r->summary.failed + r->summary.rejected;
    double rate = elapsed > 0 ? (double)this_run / elapsed : 0;
    double tokens = elapsed > 0 ? (double)r->summary.completion_tokens / elapsed : 0;
    char eta[32];
    format_duration(rate > 0 ? (double)(r->summary.units_total - done) / rate : -1, eta, sizeof eta);
    double percent = r->summary.units_total ? 100.0 * (double)done / (double)r->summary.units_total : 100.0;
    if (r->tty) {
        fprintf(stderr, "\r[%s] Data Distilling Progress: %lld/%lld (%.1f%%) | %.1f req/s | ETA %s | errors %lld | %.0f tok/s\033[K%s",
                c->model, (long long)done, (long long)r->summary.units_total, percent, rate, eta,
                (long long)r->summary.failed, tokens, final ? "\n" : "");
        fflush(stderr);
    } else if (c->progress != 0) {
        fprintf(stderr, "[%s] Data Distilling Progress: %lld/%lld (%.1f%%) | %.1f req/s | ETA %s | errors %lld | retries %lld | %.0f tok/s\n",
                c->model, (long long)done, (long long)r->summary.units_total, percent, rate, eta,
                (long long)r->summary.failed, (long long)r->summary.retries, tokens);
    }
}

/* ---- setup and teardown ---------------------------------------------------------------------- */

static char *join_path(const char *directory, const char *prefix, const char *stem, const char *suffix) {
    size_t length = strlen(directory) + strlen(prefix) + strlen(stem) + strlen(suffix) + 2;
    char *path = malloc(length);
    if (path) snprintf(path, length, "%s/%s%s%s", directory, prefix, stem, suffix);
    return path;
}

static int open_append(const char *path) { return open(path, O_WRONLY | O_APPEND | O_CREAT, 0644); }

/* Counts non-blank lines without keeping them (flat memory). */
static r1_status count_units(run *r) {
    int fd = open(r->config->input_file, O_RDONLY);
    if (fd < 0) return r1_fail(R1_EIO, "cannot open %s: %s", r->config->input_file, strerror(errno));
    char *chunk = malloc(1 << 20);
    if (chunk == NULL) {
        close(fd);
        return r1_fail(R1_ENOMEM, "out of memory");
    }
    int64_t lines = 0;
    int content = 0;
    for (;;) {
        ssize_t got = read(fd, chunk, 1 << 20);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t i = 0; i < got; ++i) {
            char ch = chunk[i];
            if (ch == '\n') {
                lines += content;
                content = 0;
            } else if (ch != ' ' && ch != '\t' && ch != '\r') {
                content = 1;
            }
        }
    }
    lines += content;
    free(chunk);
    close(fd);
    r->summary.units_total = lines * r->config->samples;
    return R1_OK;
}

static r1_status setup(run *r) {
    const r1_distill_config *c = r->config;
    r1_status status;
    if (c->answer_key) { /* probe the answer component once, before any request */
        char answer[8];
        int correct = 0;
        status = distill_check_answer("\\boxed{1}", 9, "1", -1, answer, sizeof answer, &correct);
        if (status != R1_OK) return r1_fail(status, "--answer_key needs the answer component: %s", r1_last_error());
    }
    if (mkdir(c->output_dir, 0755) != 0 && errno != EEXIST)
        return r1_fail(R1_EIO, "cannot create %s: %s", c->output_dir, strerror(errno));
    char *stem = input_stem(c->input_file);
    if (stem == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    r->output_path = join_path(c->output_dir, "distilled-", stem, ".jsonl");
    r->errors_path = join_path(c->output_dir, "distilled-", stem, ".errors.jsonl");
    r->rejected_path = join_path(c->output_dir, "distilled-", stem, ".rejected.jsonl");
    r->status_path = join_path(c->output_dir, "distilled-", stem, ".status");
    r->log_path = join_path(c->output_dir, "distilled-", stem, ".log");
    free(stem);
    if (!r->output_path || !r->errors_path || !r->rejected_path || !r->status_path || !r->log_path)
        return r1_fail(R1_ENOMEM, "out of memory");
    r->log_fd = open_append(r->log_path);
    if (r->log_fd < 0) return r1_fail(R1_EIO, "cannot open %s: %s", r->log_path, strerror(errno));
    r->output_fd = open_append(r->output_path);
    if (r->output_fd < 0) return r1_fail(R1_EIO, "cannot open %s: %s", r->output_path, strerror(errno));
    if (flock(r->output_fd, LOCK_EX | LOCK_NB) != 0)
        return r1_fail(R1_EIO, "%s is in use by another r1lab distill", r->output_path);
    /* the journals are the truth: scan them (cutting torn last lines) */
    const char *journals[3] = {r->output_path, r->rejected_path, r->errors_path};
    int64_t found[3] = {0, 0, 0};
    for (int j = 0; j < 3; ++j) {
        int64_t torn = 0;
        status = r1_distill_scan_journal(journals[j], 1, (j == 2 && c->retry_failed) ? NULL : visit_journal,
                                         r, &found[j], &torn);
        if (status != R1_OK) return status;
        if (torn) log_event(r, "RESUME dropped a torn last line (%lld bytes) of %s", (long long)torn, journals[j]);
    }
    if (r->fatal) return r1_fail(r->fatal_status, "%s", r->fatal_message);
    r->errors_fd = open_append(r->errors_path);
    r->rejected_fd = open_append(r->rejected_path);
    if (r->errors_fd < 0 || r->rejected_fd < 0) return r1_fail(R1_EIO, "cannot open the journals in %s: %s", c->output_dir, strerror(errno));
    status = count_units(r);
    if (status != R1_OK) return status;
    r->summary.units_done_before = r->done_count;
    log_event(r, "START input %s, %lld units (%d per line), model %s, %d endpoints, concurrency %d%s", c->input_file,
              (long long)r->summary.units_total, c->samples, c->model, c->endpoint_count, c->concurrency, c->stream ? ", stream" : "");
    if (found[0] + found[1] + found[2])
        log_event(r, "RESUME %lld output, %lld rejected, %lld error records%s: %lld units done", (long long)found[0],
                  (long long)found[1], (long long)found[2], c->retry_failed ? " (errors retried)" : "",
                  (long long)r->done_count);
    status = r1_jsonl_open(c->input_file, &r->reader);
    if (status != R1_OK) return status;

    /* endpoints: the key lives only in the header list */
    r->endpoint_count = c->endpoint_count;
    r->endpoints = calloc((size_t)c->endpoint_count, sizeof *r->endpoints);
    if (r->endpoints == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    for (int i = 0; i < c->endpoint_count; ++i) {
        endpoint *e = &r->endpoints[i];
        e->base = c->base_urls[i];
        size_t length = strlen(e->base);
        while (length && e->base[length - 1] == '/') --length;
        e->url = malloc(length + 20);
        if (e->url == NULL) return r1_fail(R1_ENOMEM, "out of memory");
        memcpy(e->url, e->base, length);
        memcpy(e->url + length, "/chat/completions", 18);
        e->headers = curl_slist_append(NULL, "Content-Type: application/json");
        e->headers = curl_slist_append(e->headers, "Expect:"); /* no 100-continue round trip */
        const char *key = c->api_key_count == 0 ? NULL : c->api_keys[c->api_key_count == 1 ? 0 : i];
        if (key && key[0]) {
            distill_buffer header = {0};
            if (!distill_buffer_printf(&header, "Authorization: Bearer %s", key)) return r1_fail(R1_ENOMEM, "out of memory");
            e->headers = curl_slist_append(e->headers, header.data);
            memset(header.data, 0, header.length);
            distill_buffer_free(&header);
        }
        if (e->headers == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    }
    /* slots */
    r->multi = curl_multi_init();
    if (r->multi == NULL) return r1_fail(R1_ENOMEM, "curl_multi_init failed");
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, (long)(c->concurrency + 16));
    r->slots = calloc((size_t)c->concurrency, sizeof *r->slots);
    r->idle = calloc((size_t)c->concurrency, sizeof *r->idle);
    if (r->slots == NULL || r->idle == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    for (int i = c->concurrency - 1; i >= 0; --i) {
        slot *s = &r->slots[i];
        s->easy = curl_easy_init();
        if (s->easy == NULL) return r1_fail(R1_ENOMEM, "curl_easy_init failed");
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->curl_error);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)(c->timeout_s * 1000));
        curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_timeout_s * 1000));
        curl_easy_setopt(s->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "r1lab-distill/" "0.1");
        r->idle[r->idle_count++] = i;
    }
    r->keys.response_key = c->response_key;
    r->keys.reasoning_key = c->reasoning_key;
    if (c->token_prefix) {
        r->token_prefix = malloc(strlen(c->token_prefix) + 1);
        if (r->token_prefix) strcpy(r->token_prefix, c->token_prefix);
    } else {
        const char *cut = strstr(c->response_key, "_response");
        size_t length = cut ? (size_t)(cut - c->response_key) : strlen(c->response_key);
        r->token_prefix = malloc(length + 1);
        if (r->token_prefix) {
            memcpy(r->token_prefix, c->response_key, length);
            r->token_prefix[length] = '\0';
        }
    }
    if (r->token_prefix == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    r->keys.token_prefix = r->token_prefix;
    return R1_OK;
}

static void teardown(run *r) {
    if (r->slots) {
        for (int i = 0; i < r->config->concurrency; ++i) {
            slot *s = &r->slots[i];
            if (s->easy) {
                if (s->state == SLOT_RUNNING) curl_multi_remove_handle(r->multi, s->easy);
                curl_easy_cleanup(s->easy);
            }
            distill_buffer_free(&s->raw);
            distill_buffer_free(&s->body);
            distill_buffer_free(&s->response);
            r1_distill_sse_destroy(s->sse);
            free(s->gold);
        }
    }
    if (r->multi) curl_multi_cleanup(r->multi);
    if (r->endpoints) {
        for (int i = 0; i < r->endpoint_count; ++i) {
            for (struct curl_slist *h = r->endpoints[i].headers; h; h = h->next) memset(h->data, 0, strlen(h->data));
            curl_slist_free_all(r->endpoints[i].headers);
            free(r->endpoints[i].url);
        }
    }
    free(r->endpoints);
    free(r->slots);
    free(r->idle);
    r1_jsonl_close(r->reader);
    distill_buffer_free(&r->line_raw);
    free(r->line_prompt);
    free(r->line_gold);
    free(r->done);
    free(r->token_prefix);
    int fds[4] = {r->output_fd, r->errors_fd, r->rejected_fd, r->log_fd};
    for (int i = 0; i < 4; ++i)
        if (fds[i] >= 0) close(fds[i]);
    free(r->output_path);
    free(r->errors_path);
    free(r->rejected_path);
    free(r->status_path);
    free(r->log_path);
}

/* ---- the loop ------------------------------------------------------------------------------------ */

static int may_start_new(run *r, double now) {
    const r1_distill_config *c = r->config;
    if (c->rpm > 0 && now < r->next_request_time) return 0;
    if (c->tpm > 0) {
        r->token_bucket += (now - r->token_time) * c->tpm / 60.0;
        if (r->token_bucket > c->tpm) r->token_bucket = c->tpm;
        r->token_time = now;
        if (r->token_bucket <= 0) return 0;
    }
    return 1;
}

static void abort_slot(run *r, slot *s) {
    curl_multi_remove_handle(r->multi, s->easy);
    r->endpoints[s->endpoint].outstanding--;
    r->running_count--;
    slot_release(r, s);
}

static r1_status main_loop(run *r) {
    const r1_distill_config *c = r->config;
    int stopping = 0;
    double stop_deadline = 0, next_idle_check = 0;
    while (!r->fatal) {
        double now = now_seconds();
        if (interrupt_count > 0 && !stopping) {
            stopping = 1;
            stop_deadline = now + c->grace_s;
            log_event(r, "INTERRUPT stop sending; waiting up to %.0f s for %d requests in flight", c->grace_s, r->running_count);
            fprintf(stderr, "\nr1lab distill: interrupted; finishing %d requests in flight (up to %.0f s; ^C again to abandon)\n",
                    r->running_count, c->grace_s);
        }
        int halted = stopping || r->payment_stop;
        /* waiting slots: start when due, or drop when halted (their unit stays undone) */
        if (r->waiting_count) {
            for (int i = 0; i < c->concurrency; ++i) {
                slot *s = &r->slots[i];
                if (s->state != SLOT_WAITING) continue;
                if (halted) slot_release(r, s);
                else if (s->ready_at <= now && may_start_new(r, now)) start_attempt(r, s);
            }
        }
        /* new units */
        while (!halted && !r->input_done && r->idle_count > 0 && may_start_new(r, now) && !r->fatal) {
            slot *s = &r->slots[r->idle[r->idle_count - 1]];
            r->idle_count--;
            if (!next_unit(r, s)) {
                r->idle[r->idle_count++] = (int)(s - r->slots);
                break;
            }
            s->state = SLOT_IDLE;
            start_attempt(r, s);
        }
        if (stopping && (now >= stop_deadline || interrupt_count > 1) && r->running_count) {
            log_event(r, "INTERRUPT abandoning %d requests in flight (they stay undone)", r->running_count);
            for (int i = 0; i < c->concurrency; ++i)
                if (r->slots[i].state == SLOT_RUNNING) abort_slot(r, &r->slots[i]);
        }
        if (r->running_count == 0 && r->waiting_count == 0 && (r->input_done || halted)) break;

        int still_running = 0;
        curl_multi_perform(r->multi, &still_running);
        CURLMsg *message;
        int left = 0, completed = 0;
        while ((message = curl_multi_info_read(r->multi, &left)) != NULL) {
            ++completed;
            if (message->msg != CURLMSG_DONE) continue;
            slot *s = NULL;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode code = message->data.result;
            curl_multi_remove_handle(r->multi, message->easy_handle);
            finish_attempt(r, s, code);
        }
        now = now_seconds();
        if (c->stream && now >= next_idle_check) {
            next_idle_check = now + 0.1;
            for (int i = 0; i < c->concurrency; ++i) {
                slot *s = &r->slots[i];
                if (s->state == SLOT_RUNNING && now - s->last_data > c->idle_timeout_s) {
                    curl_multi_remove_handle(r->multi, s->easy);
                    s->idle_aborted = 1;
                    finish_attempt(r, s, CURLE_OPERATION_TIMEDOUT);
                }
            }
        }
        if (now >= r->next_status) {
            write_status(r);
            r->next_status = now + 1.0;
        }
        if (now >= r->next_progress) {
            if (r->tty || c->progress != 0) report_progress(r, now, 0);
            if (!r->tty) log_event(r, "PROGRESS %lld/%lld units, %lld failed, %lld retries", (long long)r->done_count,
                                   (long long)r->summary.units_total, (long long)r->summary.failed, (long long)r->summary.retries);
            r->next_progress = now + (r->tty ? 0.25 : c->progress_interval_s);
        }
        if (completed && r->idle_count && !r->input_done) continue; /* refill the freed slots first */
        /* sleep until socket activity, a due retry, or 100 ms */
        double wake = now + 0.1;
        if (r->waiting_count) {
            for (int i = 0; i < c->concurrency; ++i)
                if (r->slots[i].state == SLOT_WAITING && r->slots[i].ready_at < wake) wake = r->slots[i].ready_at;
        }
        if (c->rpm > 0 && r->idle_count && r->next_request_time < wake && r->next_request_time > now) wake = r->next_request_time;
        int timeout_ms = (int)((wake - now) * 1000);
        if (timeout_ms < 0) timeout_ms = 0;
        if (r->running_count) curl_multi_poll(r->multi, NULL, 0, timeout_ms, NULL);
        else if (timeout_ms > 0) {
            struct timespec pause = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    if (r->fatal) return r1_fail(r->fatal_status, "%s", r->fatal_message);
    if (interrupt_count > 0) r->summary.stop = R1_DISTILL_INTERRUPTED;
    else if (r->payment_stop) r->summary.stop = R1_DISTILL_PAYMENT;
    else r->summary.stop = R1_DISTILL_FINISHED;
    return R1_OK;
}

r1_status r1_distill_run(const r1_distill_config *config, r1_distill_summary *summary) {
    if (summary) memset(summary, 0, sizeof *summary);
    r1_status status = validate_config(config);
    if (status != R1_OK) return status;
    static int curl_ready = 0;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return r1_fail(R1_EINTERNAL, "curl_global_init failed");
        curl_ready = 1;
    }
    run *r = calloc(1, sizeof *r);
    if (r == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    r->config = config;
    r->output_fd = r->errors_fd = r->rejected_fd = r->log_fd = -1;
    r->start_time = now_seconds();
    r->token_time = r->start_time;
    r->token_bucket = config->tpm;
    r->random_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    r->tty = config->progress == 1 || (config->progress == -1 && isatty(STDERR_FILENO));
    struct sigaction previous_int, previous_term;
    if (config->install_signal_handlers) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_signal;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &previous_int);
        sigaction(SIGTERM, &action, &previous_term);
    }
    interrupt_count = 0;
    status = setup(r);
    if (status == R1_OK) {
        r->next_progress = r->start_time + (r->tty ? 0.25 : config->progress_interval_s);
        status = main_loop(r);
        write_status(r);
        r->summary.seconds = now_seconds() - r->start_time;
        if (r->tty || config->progress != 0) report_progress(r, now_seconds(), 1);
        double seconds = r->summary.seconds > 0 ? r->summary.seconds : 1e-9;
        log_event(r, "FINISH %s: %lld written, %lld rejected, %lld failed, %lld bad lines, %lld retries, %lld/%lld units done; "
                     "%lld prompt + %lld completion tokens, %.1f completion tokens/s, %.1f s",
                  r->summary.stop == R1_DISTILL_FINISHED ? "done" : r->summary.stop == R1_DISTILL_INTERRUPTED ? "interrupted" : "stopped by HTTP 402",
                  (long long)r->summary.written, (long long)r->summary.rejected, (long long)r->summary.failed,
                  (long long)r->summary.bad_lines, (long long)r->summary.retries, (long long)r->done_count,
                  (long long)r->summary.units_total, (long long)r->summary.prompt_tokens,
                  (long long)r->summary.completion_tokens, (double)r->summary.completion_tokens / seconds, r->summary.seconds);
        if (status == R1_OK && config->sort && r->summary.stop == R1_DISTILL_FINISHED) {
            status = r1_distill_sort_file(r->output_path, r->output_path);
            if (status == R1_OK) log_event(r, "SORT rewrote %s in input order", r->output_path);
        }
    } else if (r->log_fd >= 0) {
        log_event(r, "ERROR %s", r1_last_error());
    }
    if (summary) *summary = r->summary;
    char message[sizeof r->fatal_message];
    snprintf(message, sizeof message, "%s", r1_last_error());
    teardown(r);
    free(r);
    if (config->install_signal_handlers) {
        sigaction(SIGINT, &previous_int, NULL);
        sigaction(SIGTERM, &previous_term, NULL);
    }
    if (status != R1_OK) r1_fail(status, "%s", message);
    return status;
}

#endif /* R1LAB_HAVE_CURL */
