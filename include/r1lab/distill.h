/*
 * r1lab/distill.h — the teacher-distillation client (`r1lab distill`).
 *
 * Sends every prompt of a JSONL dataset to one or more OpenAI-compatible
 * chat-completions endpoints and appends the teacher's reasoning and answer to
 * the input record. One thread, one curl_multi handle, up to `concurrency`
 * requests in flight; the input is streamed.
 *
 * FILES (in output_dir, <name> = the input file's name without ".jsonl")
 *   distilled-<name>.jsonl         one line per finished (line, sample): the
 *                                  input line's bytes unchanged up to its closing
 *                                  brace, then `, "line_num": N, ...added}`.
 *   distilled-<name>.errors.jsonl  one line per permanently failed unit or bad
 *                                  input line.
 *   distilled-<name>.rejected.jsonl samples dropped by --keep correct or by the
 *                                  length policy "drop" (full record + reason).
 *   distilled-<name>.status        finished line numbers in PaddleNLP's range
 *                                  format ("0-5,7,9-12"), written atomically.
 *   distilled-<name>.log           one line per event.
 *
 * EXACTLY ONCE
 *   The three .jsonl files are journals: each finished unit (line_num, sample)
 *   is appended to exactly one of them with one write(). On start they are
 *   scanned (a torn last line, i.e. bytes after the last '\n', is truncated
 *   away) and every unit they hold is skipped (errors only without
 *   --retry-failed). The status file is derived information for people and
 *   PaddleNLP tools; it is never read back.
 *
 * line_num is 0-based (PaddleNLP's enumerate() over the file's physical lines).
 * API keys never appear in any file or message.
 */
#ifndef R1LAB_DISTILL_H
#define R1LAB_DISTILL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration and the run ------------------------------------------------ */

typedef enum r1_distill_keep { R1_DISTILL_KEEP_ALL = 0, R1_DISTILL_KEEP_CORRECT = 1 } r1_distill_keep;

/* What to do with a response whose finish_reason is "length". */
typedef enum r1_distill_length_policy {
    R1_DISTILL_LENGTH_KEEP = 0,  /* write it like any other (default)            */
    R1_DISTILL_LENGTH_RETRY = 1, /* ask again (counts as a retry)                */
    R1_DISTILL_LENGTH_DROP = 2   /* write it to .rejected.jsonl                  */
} r1_distill_length_policy;

typedef struct r1_distill_config {
    const char *input_file;      /* JSONL, one object per line                  */
    const char *output_dir;      /* created when missing                        */
    const char *prompt_key;      /* string field (or array: its first string)   */
    const char *response_key;    /* e.g. "deepseek_r1_response_zh"              */
    const char *reasoning_key;   /* e.g. "deepseek_r1_reasoning_zh"             */
    const char *token_prefix;    /* NULL: response_key up to "_response"        */
    const char *prompt_suffix;   /* appended to every prompt ("" for none)      */
    const char *const *base_urls;/* "http://host:port/v1"                       */
    int endpoint_count;
    const char *const *api_keys; /* 0, 1 (for all) or endpoint_count keys       */
    int api_key_count;
    const char *model;
    double temperature, top_p;
    int64_t max_tokens;
    int concurrency;             /* requests in flight, 1..65536                */
    double timeout_s;            /* whole request                               */
    double connect_timeout_s;
    double idle_timeout_s;       /* --stream: longest gap between data events   */
    int samples;                 /* --n                                         */
    int has_seed;
    int64_t seed;                /* request seed = seed + line_num*n + sample   */
    const char *answer_key;      /* NULL: no answer checking                    */
    r1_distill_keep keep;
    int gold_format;             /* -1: auto (gsm8k when the gold has "####")   */
    int max_retries;             /* retries per unit after the first attempt    */
    double backoff_base_s, backoff_max_s, retry_after_max_s;
    double rpm, tpm;             /* 0: unlimited                                */
    int stream;
    int sort;                    /* rewrite the output in input order at the end */
    int retry_failed;            /* ignore .errors.jsonl when resuming          */
    r1_distill_length_policy length_policy;
    int breaker_threshold;       /* consecutive failures that bench an endpoint */
    double breaker_base_s, breaker_max_s;
    double grace_s;              /* SIGINT: wait this long for in-flight requests */
    double progress_interval_s;  /* plain progress lines when stderr is no tty  */
    int progress;                /* -1 auto (bar on a tty), 0 off, 1 bar        */
    int install_signal_handlers; /* SIGINT/SIGTERM: graceful stop               */
} r1_distill_config;

/* Defaults: PaddleNLP's seed values (temperature 0.6, top_p 0.95, max_tokens
 * 32768, concurrency 16), timeout 3600 s, 5 retries, backoff 1 s..60 s. */
void r1_distill_config_default(r1_distill_config *config);

typedef enum r1_distill_stop {
    R1_DISTILL_FINISHED = 0,     /* every unit is in a journal                  */
    R1_DISTILL_INTERRUPTED = 1,  /* SIGINT/SIGTERM: resumable                   */
    R1_DISTILL_PAYMENT = 2       /* HTTP 402: insufficient balance; resumable   */
} r1_distill_stop;

typedef struct r1_distill_summary {
    int64_t units_total;         /* non-blank input lines x samples             */
    int64_t units_done_before;   /* found in the journals at start              */
    int64_t written, failed, rejected, bad_lines, retries;
    int64_t prompt_tokens, completion_tokens;
    double seconds;
    r1_distill_stop stop;
} r1_distill_summary;

/* Runs the distillation. R1_OK also when stopped by SIGINT or 402 (see
 * summary->stop); an error status for bad configuration or I/O failure. */
r1_status r1_distill_run(const r1_distill_config *config, r1_distill_summary *summary);

/* Writes the first request body (never a key) to `out` and returns. */
r1_status r1_distill_dry_run(const r1_distill_config *config, FILE *out);

/* Rewrites a distilled file in (line_num, sample) order: temp file + rename
 * (output_path "-": written to stdout instead). Memory: 24 bytes per line. */
r1_status r1_distill_sort_file(const char *input_path, const char *output_path);

/* The seed's SFT format: {"src": prompt, "tgt": reasoning + response} per
 * line. With think_tags, non-empty reasoning is wrapped as
 * "<think>\n" reasoning "\n</think>\n\n" (PaddleNLP's stored form); without
 * (or when it already opens with <think>), it is followed by newlines up to a
 * blank line ("\n\n"). A file output goes through "<output>.sft.tmp" and
 * rename(): on any error the old output (or none) is left. R1_EINVAL when
 * output_path is the input file (same device and inode); "-" is stdout. */
r1_status r1_distill_sft_data(const char *input_path, const char *output_path,
                              const char *prompt_key, const char *response_key,
                              const char *reasoning_key, int think_tags,
                              int64_t *lines_written);

/* ---- building blocks (exposed for tests and fuzzers) ------------------------------ */

/* One parsed chat-completions response (or error body). Strings are
 * NUL-terminated malloc'd copies; absent numbers are -1. */
typedef struct r1_distill_response {
    char *content;               /* the answer, after </think> when split      */
    char *reasoning;             /* "" when none                               */
    char *finish_reason;         /* NULL when absent                           */
    int64_t prompt_tokens, completion_tokens;
    int is_error;                /* an error body: {"error":{..}} or {"object":"error"} */
    char *error_message;         /* is_error: the message (may be "")          */
    int64_t error_code;          /* numeric code when given, else -1           */
} r1_distill_response;

void r1_distill_response_free(r1_distill_response *response);

/* Parses a non-streaming body (leading whitespace, e.g. DeepSeek's keep-alive
 * blank lines, is skipped). R1_OK for a completion or an error body;
 * R1_EFORMAT with a sentence for malformed JSON or a wrong schema. Reasoning:
 * message.reasoning, then message.reasoning_content, then <think>...</think>
 * inside content (see r1_distill_split_think). */
r1_status r1_distill_parse_response(const char *body, size_t length, r1_distill_response *out);

/* Splits content at the first "</think>": before it (minus an opening
 * "<think>") is reasoning, after it (minus leading whitespace) the answer.
 * Without "</think>": all reasoning when finish_reason is "length" or the text
 * opens with "<think>", else all answer. Outputs are malloc'd. */
r1_status r1_distill_split_think(const char *text, size_t length, const char *finish_reason,
                                 char **reasoning, char **content);

/* Incremental Server-Sent-Events parser for chat-completion chunks. */
typedef struct r1_distill_sse r1_distill_sse;
r1_status r1_distill_sse_create(r1_distill_sse **out);
void r1_distill_sse_destroy(r1_distill_sse *sse);
/* Feeds bytes as they arrive (any split). *data_events is increased by the
 * number of data events completed (comments and blank lines do not count: the
 * idle timer resets only on data). R1_EFORMAT when a data event is not JSON or
 * a line exceeds 256 MiB; an error event is not a failure here (see finish). */
r1_status r1_distill_sse_feed(r1_distill_sse *sse, const char *bytes, size_t length,
                              int64_t *data_events);
/* At the end of the stream: the assembled response. An error event gives
 * is_error = 1. A stream that ended before "[DONE]" and before any
 * finish_reason is R1_EFORMAT (truncated). */
r1_status r1_distill_sse_finish(r1_distill_sse *sse, r1_distill_response *out);

/* Retry-After: delta-seconds or an HTTP date (IMF-fixdate, RFC 850, asctime),
 * relative to `now`; past dates give 0. R1_EFORMAT when unparseable. */
r1_status r1_distill_parse_retry_after(const char *value, time_t now, double *seconds);

/* How a finished attempt is treated. */
typedef enum r1_distill_verdict {
    R1_DISTILL_SUCCESS = 0,      /* 2xx (the body is parsed next)               */
    R1_DISTILL_RETRY = 1,        /* 408 409 429 5xx, connection/timeout/truncation */
    R1_DISTILL_FAIL = 2,         /* 400 401 403 404 422 and other 4xx: recorded */
    R1_DISTILL_STOP = 3          /* 402: insufficient balance, stop the run     */
} r1_distill_verdict;
/* http_status 0 means no response; curl_code is a CURLcode (0 = none). */
r1_distill_verdict r1_distill_classify(long http_status, int curl_code);

/* Copies `length` bytes replacing every invalid UTF-8 sequence (overlong,
 * surrogate, > U+10FFFF, truncated) by U+FFFD, one per bad byte. */
r1_status r1_distill_utf8_repair(const char *text, size_t length, char **out, size_t *out_length);

/* The fields added to one output record. */
typedef struct r1_distill_record {
    int64_t line_num;
    int64_t sample;              /* -1: not written (--n 1)                     */
    const char *response, *reasoning, *finish_reason; /* finish_reason may be NULL */
    int64_t prompt_tokens, completion_tokens;          /* -1: null             */
    const char *answer;          /* NULL: no answer fields                      */
    int correct;                 /* with answer: 0/1                            */
    const char *reason;          /* NULL, or a "reason" field (rejected records) */
} r1_distill_record;

typedef struct r1_distill_keys {
    const char *response_key, *reasoning_key, *token_prefix;
} r1_distill_keys;

/* The output line: `raw` (a JSON object, unchanged) with its closing brace
 * replaced by `, "line_num": N, ...}` (no comma for "{}"), then '\n'. Strings
 * are UTF-8-repaired and JSON-escaped. R1_EFORMAT when raw does not end in
 * '}' (trailing whitespace allowed). *out is malloc'd. */
r1_status r1_distill_output_line(const char *raw, size_t raw_length, const r1_distill_keys *keys,
                                 const r1_distill_record *record, char **out, size_t *out_length);

/* Appends `text` as a JSON string literal (quotes included, UTF-8 repaired). */
r1_status r1_distill_json_string(const char *text, size_t length, char **out, size_t *out_length);

/* PaddleNLP's range format of the set bits of `bits` (nbits of them, bit i =
 * line i): "0-5,7,9-12"; "" for none. *out is malloc'd. */
r1_status r1_distill_format_ranges(const uint64_t *bits, int64_t nbits, char **out);

/* Scans a journal: calls visit(context, line_num, sample) for every complete
 * line (sample 0 when absent, -1 for "every sample", as bad input lines are
 * recorded; the LAST "line_num"/"sample" members count, so
 * input records that carry their own line_num still work). With truncate_torn,
 * bytes after the last '\n' are cut off the file (*torn_bytes says how many).
 * A missing file is R1_OK with no records. A complete line that is not a JSON
 * object with an integer line_num is R1_EFORMAT naming the line. */
r1_status r1_distill_scan_journal(const char *path, int truncate_torn,
                                  void (*visit)(void *context, int64_t line_num, int64_t sample),
                                  void *context, int64_t *records, int64_t *torn_bytes);

/* "\n" in a command-line argument becomes a newline (only that escape: "\b"
 * of "\boxed{}" stays as it is, as in the seed's --prompt_suffix). malloc'd. */
char *r1_distill_unescape_newlines(const char *text);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_DISTILL_H */
