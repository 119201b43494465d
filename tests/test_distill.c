/*
 * tests/test_distill.c — unit tests of the distill client's text side
 * (pipeline/distill_parse.c, pipeline/distill_sft.c): no network.
 *
 *   ranges       PaddleNLP's "0-5,7,9-12" from a bitset (word edges, empty)
 *   journal      resume scan: records, duplicated keys (last wins), a torn
 *                last line cut off the file, sample -1, a corrupt middle line
 *   response     every body shape: reasoning / reasoning_content / <think> /
 *                missing opening tag / length without </think> / error bodies
 *                (nested, flat, string) / keep-alive blank lines / malformed /
 *                wrong schema
 *   sse          a reference stream fed whole, byte by byte and split at every
 *                position (LF and CRLF), comments, usage chunk with empty or
 *                null choices, error event, truncated stream
 *   retry-after  seconds, the three HTTP date forms, past dates, garbage
 *   classify     the issue's retry table
 *   utf8/json    repair of every kind of bad sequence; escaping; the output
 *                line keeps the raw input bytes and adds the fields
 *   sort         order by (line_num, sample), bytes unchanged
 *   sft-data     the {"src", "tgt"} rows with and without think tags (a blank
 *                line between reasoning and response either way); the input
 *                given again as the output (also through a hard link) is
 *                refused and left intact; a failing conversion (missing key,
 *                a directory as input) leaves no output and keeps an old one
 * The end-to-end tests over HTTP are tests/test_distill_e2e.py.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "r1lab/distill.h"

static char directory[512];

static void write_file(const char *path, const char *text) {
    FILE *file = fopen(path, "wb");
    if (file == NULL) { perror(path); exit(1); }
    fwrite(text, 1, strlen(text), file);
    fclose(file);
}

static char *read_file(const char *path) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return NULL;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, file);
    text[got] = '\0';
    fclose(file);
    return text;
}

/* ---- ranges ---------------------------------------------------------------------- */

static void check_ranges(const int *set, int count, int64_t nbits, const char *want) {
    uint64_t bits[4] = {0, 0, 0, 0};
    for (int i = 0; i < count; ++i) bits[set[i] >> 6] |= (uint64_t)1 << (set[i] & 63);
    char *text = NULL;
    R1T_CHECK(r1_distill_format_ranges(bits, nbits, &text) == R1_OK, "format_ranges failed: %s", r1_last_error());
    R1T_CHECK(text && strcmp(text, want) == 0, "ranges: got \"%s\", want \"%s\"", text ? text : "(null)", want);
    free(text);
}

static void test_ranges(void) {
    if (!r1t_case("ranges")) return;
    check_ranges(NULL, 0, 256, "");
    int a[] = {0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12};
    check_ranges(a, 11, 256, "0-5,7,9-12");
    int b[] = {63, 64, 65, 200};
    check_ranges(b, 4, 256, "63-65,200");
    int c[] = {255};
    check_ranges(c, 1, 256, "255");
    int d[] = {3, 4};
    check_ranges(d, 2, 4, "3"); /* bit 4 is beyond nbits */
}

/* ---- journal scan ---------------------------------------------------------------- */

typedef struct seen { int64_t line[16], sample[16]; int count; } seen;
static void visit(void *context, int64_t line_num, int64_t sample) {
    seen *s = context;
    if (s->count < 16) { s->line[s->count] = line_num; s->sample[s->count] = sample; }
    s->count++;
}

static void test_journal(void) {
    if (!r1t_case("journal_resume_torn_last_line")) return;
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", directory);
    const char *complete = "{\"a\": 1, \"line_num\": 4, \"x\": \"}\"}\n"
                           "{\"line_num\": 99, \"q\": 2, \"line_num\": 7, \"sample\": 2}\n"
                           "\n"
                           "{\"line_num\": 3, \"sample\": -1, \"error\": \"blank line\"}\n";
    char *text = malloc(strlen(complete) + 64);
    sprintf(text, "%s{\"line_num\": 5, \"resp", complete);
    write_file(path, text);
    seen s = {{0}, {0}, 0};
    int64_t records = 0, torn = 0;
    R1T_CHECK(r1_distill_scan_journal(path, 1, visit, &s, &records, &torn) == R1_OK, "scan: %s", r1_last_error());
    R1T_CHECK(records == 3 && s.count == 3, "scan: %lld records", (long long)records);
    R1T_CHECK(s.line[0] == 4 && s.sample[0] == 0, "record 1: (%lld, %lld)", (long long)s.line[0], (long long)s.sample[0]);
    R1T_CHECK(s.line[1] == 7 && s.sample[1] == 2, "record 2 (last key wins): (%lld, %lld)", (long long)s.line[1], (long long)s.sample[1]);
    R1T_CHECK(s.line[2] == 3 && s.sample[2] == -1, "record 3: (%lld, %lld)", (long long)s.line[2], (long long)s.sample[2]);
    R1T_CHECK(torn == (int64_t)strlen("{\"line_num\": 5, \"resp"), "torn bytes %lld", (long long)torn);
    char *after = read_file(path);
    R1T_CHECK(after && strcmp(after, complete) == 0, "the torn line was not cut off the file");
    free(after);
    /* a second scan: nothing torn, same records */
    s.count = 0;
    R1T_CHECK(r1_distill_scan_journal(path, 1, visit, &s, &records, &torn) == R1_OK && torn == 0 && records == 3,
              "rescan: torn %lld records %lld", (long long)torn, (long long)records);
    /* a missing file is an empty journal */
    snprintf(path, sizeof path, "%s/missing.jsonl", directory);
    R1T_CHECK(r1_distill_scan_journal(path, 1, visit, &s, &records, &torn) == R1_OK && records == 0, "missing file");
    /* a complete corrupt line is an error naming the line */
    snprintf(path, sizeof path, "%s/corrupt.jsonl", directory);
    write_file(path, "{\"line_num\": 1}\n{\"line_num\": 2\n{\"line_num\": 3}\n");
    r1_status status = r1_distill_scan_journal(path, 1, visit, &s, &records, &torn);
    R1T_CHECK(status == R1_EFORMAT && strstr(r1_last_error(), ":2:"), "corrupt line: %s", r1_last_error());
    write_file(path, "{\"no_line\": 1}\n");
    R1T_CHECK(r1_distill_scan_journal(path, 1, visit, &s, &records, &torn) == R1_EFORMAT, "record without line_num");
    free(text);
}

/* ---- responses -------------------------------------------------------------------- */

static void expect_response(const char *name, const char *body, const char *reasoning, const char *content,
                            const char *finish, int64_t prompt_tokens, int64_t completion_tokens) {
    r1_distill_response r;
    r1_status status = r1_distill_parse_response(body, strlen(body), &r);
    R1T_CHECK(status == R1_OK, "%s: %s", name, r1_last_error());
    if (status != R1_OK) return;
    R1T_CHECK(!r.is_error, "%s: parsed as an error", name);
    R1T_CHECK(strcmp(r.reasoning, reasoning) == 0, "%s: reasoning \"%s\", want \"%s\"", name, r.reasoning, reasoning);
    R1T_CHECK(strcmp(r.content, content) == 0, "%s: content \"%s\", want \"%s\"", name, r.content, content);
    R1T_CHECK(finish ? (r.finish_reason && strcmp(r.finish_reason, finish) == 0) : r.finish_reason == NULL,
              "%s: finish_reason %s", name, r.finish_reason ? r.finish_reason : "(null)");
    R1T_CHECK(r.prompt_tokens == prompt_tokens && r.completion_tokens == completion_tokens, "%s: usage %lld/%lld", name,
              (long long)r.prompt_tokens, (long long)r.completion_tokens);
    r1_distill_response_free(&r);
}

static void expect_error(const char *name, const char *body, const char *message, int64_t code) {
    r1_distill_response r;
    r1_status status = r1_distill_parse_response(body, strlen(body), &r);
    R1T_CHECK(status == R1_OK && r.is_error, "%s: status %d is_error %d", name, (int)status, r.is_error);
    if (status == R1_OK) {
        R1T_CHECK(strcmp(r.error_message, message) == 0 && r.error_code == code, "%s: \"%s\" code %lld", name,
                  r.error_message, (long long)r.error_code);
        r1_distill_response_free(&r);
    }
}

static void test_responses(void) {
    if (!r1t_case("response_shapes")) return;
    const char *usage = ", \"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 34}}";
    char body[1024];
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"A\", \"reasoning\": \"R\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("message.reasoning (vLLM)", body, "R", "A", "stop", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"A\", \"reasoning_content\": \"R\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("message.reasoning_content (DeepSeek)", body, "R", "A", "stop", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"A\", \"reasoning\": null, \"reasoning_content\": \"R\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("reasoning null, reasoning_content set", body, "R", "A", "stop", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"<think>\\nR1\\nR2\\n</think>\\n\\nA\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("<think> in content", body, "R1\nR2", "A", "stop", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"R\\n</think>\\n\\nA\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("missing opening tag", body, "R", "A", "stop", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"R unfinished\"}, \"finish_reason\": \"length\"}]%s", usage);
    expect_response("length without </think>", body, "R unfinished", "", "length", 12, 34);
    snprintf(body, sizeof body, "{\"choices\": [{\"message\": {\"content\": \"<think>R unfinished\"}, \"finish_reason\": \"length\"}]%s", usage);
    expect_response("length with <think>", body, "R unfinished", "", "length", 12, 34);
    expect_response("no reasoning at all", "{\"choices\": [{\"message\": {\"content\": \"just A\"}, \"finish_reason\": \"stop\"}]}",
                    "", "just A", "stop", -1, -1);
    expect_response("content null", "{\"choices\": [{\"message\": {\"content\": null, \"reasoning_content\": \"R\"}, \"finish_reason\": \"length\"}]}",
                    "R", "", "length", -1, -1);
    snprintf(body, sizeof body, "\n\n \r\n{\"choices\": [{\"message\": {\"content\": \"A\"}, \"finish_reason\": \"stop\"}]%s", usage);
    expect_response("keep-alive blank lines before the body", body, "", "A", "stop", 12, 34);
    expect_error("nested error", "{\"error\": {\"message\": \"bad key\", \"type\": \"auth\", \"code\": 401}}", "bad key", 401);
    expect_error("nested error, string code", "{\"error\": {\"message\": \"m\", \"code\": \"429\"}}", "m", 429);
    expect_error("flat error (vLLM)", "{\"object\": \"error\", \"message\": \"too long\", \"type\": \"BadRequestError\", \"code\": 400}", "too long", 400);
    expect_error("string error", "{\"error\": \"overloaded\"}", "overloaded", -1);
    r1_distill_response r;
    const char *bad[] = {"", "   ", "{\"choices\": [", "[1, 2]", "{\"result\": \"x\"}", "{\"choices\": []}",
                         "{\"choices\": [{\"message\": {\"content\": 5}}]}", "<html>502</html>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i)
        R1T_CHECK(r1_distill_parse_response(bad[i], strlen(bad[i]), &r) == R1_EFORMAT, "bad body %zu \"%s\" accepted", i, bad[i]);
}

/* ---- SSE ------------------------------------------------------------------------------ */

static const char *sse_reference(int crlf) {
    static char text[2][2048];
    const char *events[] = {
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"\"}}]}",
        ": keep-alive",
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"reasoning_content\": \"Th\\u00e9\"}}]}",
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"reasoning_content\": \"ink \\u63a8\"}}]}",
        "event: message\ndata: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"The \"}}]}",
        "data:{\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"answer\"}, \"finish_reason\": \"stop\"}]}",
        "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 9}}",
        "data: [DONE]"};
    char *out = text[crlf];
    out[0] = '\0';
    for (size_t i = 0; i < sizeof events / sizeof events[0]; ++i) {
        for (const char *p = events[i]; *p; ++p) {
            if (*p == '\n' && crlf) strcat(out, "\r\n");
            else strncat(out, p, 1);
        }
        strcat(out, crlf ? "\r\n\r\n" : "\n\n");
    }
    return out;
}

static int sse_run(const char *text, size_t split_every, size_t first_split, r1_distill_response *out, int64_t *events) {
    r1_distill_sse *sse = NULL;
    if (r1_distill_sse_create(&sse) != R1_OK) return -1;
    size_t length = strlen(text), position = 0;
    *events = 0;
    r1_status status = R1_OK;
    if (first_split) {
        status = r1_distill_sse_feed(sse, text, first_split, events);
        position = first_split;
    }
    while (status == R1_OK && position < length) {
        size_t piece = split_every ? split_every : length - position;
        if (piece > length - position) piece = length - position;
        status = r1_distill_sse_feed(sse, text + position, piece, events);
        position += piece;
    }
    if (status == R1_OK) status = r1_distill_sse_finish(sse, out);
    r1_distill_sse_destroy(sse);
    return (int)status;
}

static void test_sse(void) {
    if (!r1t_case("sse_split_events")) return;
    for (int crlf = 0; crlf < 2; ++crlf) {
        const char *text = sse_reference(crlf);
        size_t length = strlen(text);
        for (size_t split = 0; split <= length; ++split) {
            for (int bytewise = 0; bytewise < 2; ++bytewise) {
                if (bytewise && split) continue;
                r1_distill_response r;
                int64_t events = 0;
                int status = sse_run(text, bytewise ? 1 : 0, split, &r, &events);
                R1T_CHECK(status == R1_OK, "crlf=%d split=%zu bytewise=%d: %s", crlf, split, bytewise, r1_last_error());
                if (status != R1_OK) return;
                int ok = strcmp(r.reasoning, "Th\xc3\xa9ink \xe6\x8e\xa8") == 0 && strcmp(r.content, "The answer") == 0 &&
                         r.finish_reason && strcmp(r.finish_reason, "stop") == 0 && r.prompt_tokens == 7 &&
                         r.completion_tokens == 9 && events == 7;
                R1T_CHECK(ok, "crlf=%d split=%zu: reasoning \"%s\" content \"%s\" events %lld", crlf, split, r.reasoning,
                          r.content, (long long)events);
                r1_distill_response_free(&r);
                if (!ok) return;
            }
        }
    }
    /* <think> inside streamed content, null choices in the usage chunk */
    r1_distill_response r;
    int64_t events;
    const char *think = "data: {\"choices\": [{\"delta\": {\"content\": \"<think>\\nR\"}}]}\n\n"
                        "data: {\"choices\": [{\"delta\": {\"content\": \"</thi\"}}]}\n\n"
                        "data: {\"choices\": [{\"delta\": {\"content\": \"nk>\\n\\nA\"}, \"finish_reason\": \"stop\"}]}\n\n"
                        "data: {\"choices\": null, \"usage\": {\"prompt_tokens\": 1, \"completion_tokens\": 2}}\n\n"
                        "data: [DONE]\n\n";
    R1T_CHECK(sse_run(think, 3, 0, &r, &events) == R1_OK && strcmp(r.reasoning, "R") == 0 && strcmp(r.content, "A") == 0 &&
              r.completion_tokens == 2, "think in stream: %s", r1_last_error());
    r1_distill_response_free(&r);
    /* an error event inside a 200 stream */
    const char *error = "data: {\"choices\": [{\"delta\": {\"content\": \"A\"}}]}\n\n"
                        "data: {\"error\": {\"message\": \"overloaded\", \"code\": 503}}\n\n";
    R1T_CHECK(sse_run(error, 0, 0, &r, &events) == R1_OK && r.is_error && r.error_code == 503 &&
              strcmp(r.error_message, "overloaded") == 0, "error event not reported");
    r1_distill_response_free(&r);
    /* truncated: no [DONE], no finish_reason */
    const char *cut = "data: {\"choices\": [{\"delta\": {\"content\": \"A\"}}]}\n\ndata: {\"choi";
    R1T_CHECK(sse_run(cut, 0, 0, &r, &events) == R1_EFORMAT, "a truncated stream was accepted");
    /* finish_reason seen but [DONE] missing: accepted */
    const char *no_done = "data: {\"choices\": [{\"delta\": {\"content\": \"A\"}, \"finish_reason\": \"stop\"}]}\n\n";
    R1T_CHECK(sse_run(no_done, 0, 0, &r, &events) == R1_OK && strcmp(r.content, "A") == 0, "finish without [DONE]");
    r1_distill_response_free(&r);
    /* comments never count as data (the idle timer) */
    R1T_CHECK(sse_run(": ping\n\n: ping\r\n\r\n", 0, 0, &r, &events) == R1_EFORMAT && events == 0, "comments counted as data");
    /* malformed event */
    R1T_CHECK(sse_run("data: {not json}\n\n", 0, 0, &r, &events) == R1_EFORMAT, "malformed event accepted");
}

/* ---- Retry-After, classification ----------------------------------------------------------- */

static void test_retry_after(void) {
    if (!r1t_case("retry_after")) return;
    time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    struct { const char *value; double seconds; r1_status status; } cases[] = {
        {"0", 0, R1_OK}, {"  120 ", 120, R1_OK}, {"7\r\n", 7, R1_OK},
        {"Sun, 06 Nov 1994 08:49:47 GMT", 10, R1_OK},
        {"Sunday, 06-Nov-94 08:50:37 GMT", 60, R1_OK},
        {"Sun Nov  6 08:49:40 1994", 3, R1_OK},
        {"Sun, 06 Nov 1994 08:00:00 GMT", 0, R1_OK}, /* in the past */
        {"", 0, R1_EFORMAT}, {"soon", 0, R1_EFORMAT}, {"12abc", 0, R1_EFORMAT}, {"-5", 0, R1_EFORMAT},
        {"Sun, 06 Foo 1994 08:49:47 GMT", 0, R1_EFORMAT}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        double seconds = -1;
        r1_status status = r1_distill_parse_retry_after(cases[i].value, now, &seconds);
        R1T_CHECK(status == cases[i].status && (status != R1_OK || seconds == cases[i].seconds),
                  "Retry-After \"%s\": status %d seconds %g, want %d %g", cases[i].value, (int)status, seconds,
                  (int)cases[i].status, cases[i].seconds);
    }
}

static void test_classify(void) {
    if (!r1t_case("classify")) return;
    long retry[] = {408, 409, 429, 500, 502, 503, 504, 599};
    long fail[] = {400, 401, 403, 404, 422, 405, 413};
    for (size_t i = 0; i < sizeof retry / sizeof retry[0]; ++i)
        R1T_CHECK(r1_distill_classify(retry[i], 0) == R1_DISTILL_RETRY, "HTTP %ld not retried", retry[i]);
    for (size_t i = 0; i < sizeof fail / sizeof fail[0]; ++i)
        R1T_CHECK(r1_distill_classify(fail[i], 0) == R1_DISTILL_FAIL, "HTTP %ld retried", fail[i]);
    R1T_CHECK(r1_distill_classify(402, 0) == R1_DISTILL_STOP, "402 does not stop");
    R1T_CHECK(r1_distill_classify(200, 0) == R1_DISTILL_SUCCESS, "200 not a success");
    int retried_curl[] = {7 /* couldn't connect */, 28 /* timeout */, 18 /* partial */, 52 /* got nothing */,
                          56 /* recv error */, 55 /* send error */};
    for (size_t i = 0; i < sizeof retried_curl / sizeof retried_curl[0]; ++i)
        R1T_CHECK(r1_distill_classify(0, retried_curl[i]) == R1_DISTILL_RETRY, "curl error %d not retried", retried_curl[i]);
    R1T_CHECK(r1_distill_classify(0, 3) == R1_DISTILL_FAIL, "malformed URL retried");
}

/* ---- UTF-8, JSON, output line -------------------------------------------------------------- */

static void test_utf8(void) {
    if (!r1t_case("utf8_repair")) return;
    struct { const char *in; size_t length; const char *out; } cases[] = {
        {"plain", 5, "plain"},
        {"\xc3\xa9\xe6\x8e\xa8\xf0\x9f\x98\x80", 9, "\xc3\xa9\xe6\x8e\xa8\xf0\x9f\x98\x80"},
        {"a\xffz", 3, "a\xef\xbf\xbdz"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},            /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"ab\xe6\x8e", 4, "ab\xef\xbf\xbd\xef\xbf\xbd"},          /* truncated at the end */
        {"x\0y", 3, "x\0y"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        char *out = NULL;
        size_t length = 0;
        R1T_CHECK(r1_distill_utf8_repair(cases[i].in, cases[i].length, &out, &length) == R1_OK, "repair %zu", i);
        size_t want = i == 7 ? 3 : strlen(cases[i].out);
        R1T_CHECK(out && length == want && memcmp(out, cases[i].out, want) == 0, "repair case %zu: %zu bytes", i, length);
        free(out);
    }
    char *json = NULL;
    size_t length = 0;
    const char text[] = "q\"\\\n\r\t\b\f\x01\x1f\xff/\xc3\xa9";
    R1T_CHECK(r1_distill_json_string(text, sizeof text - 1, &json, &length) == R1_OK, "json_string");
    const char *want = "\"q\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\xef\xbf\xbd/\xc3\xa9\"";
    R1T_CHECK(json && strcmp(json, want) == 0, "json_string: %s", json ? json : "(null)");
    cJSON *parsed = cJSON_Parse(json);
    R1T_CHECK(cJSON_IsString(parsed), "escaped string does not parse back");
    cJSON_Delete(parsed);
    free(json);
}

static void test_output_line(void) {
    if (!r1t_case("output_line_keeps_input_bytes")) return;
    r1_distill_keys keys = {"deepseek_r1_response_zh", "deepseek_r1_reasoning_zh", "deepseek_r1"};
    /* escapes, a big number and field order kept as written; trailing space */
    const char *raw = "{\"question_zh\": \"\\u4e00 \\\"x\\\"\", \"big\": 12345678901234567890123, \"f\": 1.50, \"z\": 1, \"a\": [1,{}]}  ";
    r1_distill_record record = {0};
    record.line_num = 17;
    record.sample = -1;
    record.response = "The answer \"is\" \\boxed{4}\n";
    record.reasoning = "think\xff";
    record.finish_reason = "stop";
    record.prompt_tokens = 12;
    record.completion_tokens = -1;
    char *line = NULL;
    size_t length = 0;
    R1T_CHECK(r1_distill_output_line(raw, strlen(raw), &keys, &record, &line, &length) == R1_OK, "output_line: %s", r1_last_error());
    if (line == NULL) return;
    const char *want =
        "{\"question_zh\": \"\\u4e00 \\\"x\\\"\", \"big\": 12345678901234567890123, \"f\": 1.50, \"z\": 1, \"a\": [1,{}]"
        ", \"line_num\": 17, \"deepseek_r1_response_zh\": \"The answer \\\"is\\\" \\\\boxed{4}\\n\", "
        "\"deepseek_r1_reasoning_zh\": \"think\xef\xbf\xbd\", \"deepseek_r1_prompt_tokens\": 12, "
        "\"deepseek_r1_completion_tokens\": null, \"finish_reason\": \"stop\"}\n";
    R1T_CHECK(strcmp(line, want) == 0 && length == strlen(want), "output line:\n%s\nwant:\n%s", line, want);
    cJSON *parsed = cJSON_Parse(line);
    R1T_CHECK(cJSON_IsObject(parsed), "output line is not JSON");
    cJSON_Delete(parsed);
    free(line);
    /* empty object, sample, answer fields, reason */
    record.sample = 3;
    record.answer = "4";
    record.correct = 1;
    record.reason = "incorrect";
    record.finish_reason = NULL;
    R1T_CHECK(r1_distill_output_line("{ }", 3, &keys, &record, &line, &length) == R1_OK, "empty object");
    const char *want_empty = "{\"line_num\": 17, \"sample\": 3, \"deepseek_r1_response_zh\": \"The answer \\\"is\\\" \\\\boxed{4}\\n\", "
                             "\"deepseek_r1_reasoning_zh\": \"think\xef\xbf\xbd\", \"deepseek_r1_prompt_tokens\": 12, "
                             "\"deepseek_r1_completion_tokens\": null, \"finish_reason\": null, \"deepseek_r1_answer\": \"4\", "
                             "\"deepseek_r1_correct\": true, \"reason\": \"incorrect\"}\n";
    R1T_CHECK(line && strcmp(line, want_empty) == 0, "empty-object line: %s", line ? line : "(null)");
    free(line);
    R1T_CHECK(r1_distill_output_line("[1]", 3, &keys, &record, &line, &length) == R1_EFORMAT, "a non-object accepted");
    R1T_CHECK(r1_distill_output_line("", 0, &keys, &record, &line, &length) == R1_EFORMAT, "empty line accepted");
    char *unescaped = r1_distill_unescape_newlines("\\n请一步一步地推理，并将你的最终答案放在\\boxed{}中。");
    R1T_CHECK(unescaped && strcmp(unescaped, "\n请一步一步地推理，并将你的最终答案放在\\boxed{}中。") == 0, "prompt_suffix escapes: %s", unescaped);
    free(unescaped);
}

static void test_sort(void) {
    if (!r1t_case("sort_file")) return;
    char path[600], sorted[600];
    snprintf(path, sizeof path, "%s/unsorted.jsonl", directory);
    snprintf(sorted, sizeof sorted, "%s/sorted.jsonl", directory);
    write_file(path, "{\"k\": \"c\", \"line_num\": 2}\n{\"k\": \"b2\", \"line_num\": 1, \"sample\": 1}\n"
                     "{\"k\": \"a\", \"line_num\": 0}\n{\"k\": \"b0\", \"line_num\": 1, \"sample\": 0}\n");
    R1T_CHECK(r1_distill_sort_file(path, sorted) == R1_OK, "sort: %s", r1_last_error());
    char *text = read_file(sorted);
    R1T_CHECK(text && strcmp(text, "{\"k\": \"a\", \"line_num\": 0}\n{\"k\": \"b0\", \"line_num\": 1, \"sample\": 0}\n"
                                   "{\"k\": \"b2\", \"line_num\": 1, \"sample\": 1}\n{\"k\": \"c\", \"line_num\": 2}\n") == 0,
              "sorted file:\n%s", text ? text : "(null)");
    free(text);
    write_file(path, "{\"line_num\": 0}\n{\"line_num\": 1");
    R1T_CHECK(r1_distill_sort_file(path, sorted) == R1_EFORMAT, "sort accepted a torn file");
}

static void test_sft_data(void) {
    if (!r1t_case("sft_data")) return;
    char input[600], output[600], link_path[600], missing[600];
    snprintf(input, sizeof input, "%s/distilled.jsonl", directory);
    snprintf(output, sizeof output, "%s/sft.jsonl", directory);
    snprintf(link_path, sizeof link_path, "%s/distilled-link.jsonl", directory);
    snprintf(missing, sizeof missing, "%s/missing.jsonl", directory);
    const char *distilled = "{\"q\": \"P1\", \"r\": \"A1\", \"t\": \"T1\"}\n"
                            "{\"q\": \"P2\", \"r\": \"A2\", \"t\": \"\"}\n"
                            "{\"q\": \"P3\", \"r\": \"A3\", \"t\": \"<think>\\nT3\\n</think>\"}\n"
                            "{\"q\": \"P4\", \"r\": \"A4\", \"t\": \"T4\\n\\n\"}\n";
    write_file(input, distilled);
    int64_t written = -1;
    /* think tags: the seed's stored form; a reasoning that already holds its tags gets the blank line only */
    R1T_CHECK(r1_distill_sft_data(input, output, "q", "r", "t", 1, &written) == R1_OK, "sft_data: %s", r1_last_error());
    char *text = read_file(output);
    const char *want_tags = "{\"src\": \"P1\", \"tgt\": \"<think>\\nT1\\n</think>\\n\\nA1\"}\n"
                            "{\"src\": \"P2\", \"tgt\": \"A2\"}\n"
                            "{\"src\": \"P3\", \"tgt\": \"<think>\\nT3\\n</think>\\n\\nA3\"}\n"
                            "{\"src\": \"P4\", \"tgt\": \"<think>\\nT4\\n\\n\\n</think>\\n\\nA4\"}\n";
    R1T_CHECK(written == 4 && text && strcmp(text, want_tags) == 0, "think tags (%lld rows):\n%s\nwant:\n%s",
              (long long)written, text ? text : "(null)", want_tags);
    free(text);
    /* no think tags: reasoning, a blank line, response (no newline added where the reasoning has them) */
    R1T_CHECK(r1_distill_sft_data(input, output, "q", "r", "t", 0, &written) == R1_OK, "sft_data: %s", r1_last_error());
    text = read_file(output);
    const char *want_plain = "{\"src\": \"P1\", \"tgt\": \"T1\\n\\nA1\"}\n"
                             "{\"src\": \"P2\", \"tgt\": \"A2\"}\n"
                             "{\"src\": \"P3\", \"tgt\": \"<think>\\nT3\\n</think>\\n\\nA3\"}\n"
                             "{\"src\": \"P4\", \"tgt\": \"T4\\n\\nA4\"}\n";
    R1T_CHECK(text && strcmp(text, want_plain) == 0, "no think tags:\n%s\nwant:\n%s", text ? text : "(null)", want_plain);
    free(text);
    /* the input as the output: refused, the input intact (same path, then a hard link to it) */
    R1T_CHECK(r1_distill_sft_data(input, input, "q", "r", "t", 1, &written) == R1_EINVAL, "same path accepted");
    R1T_CHECK(strstr(r1_last_error(), "same file") != NULL, "same path: \"%s\"", r1_last_error());
    text = read_file(input);
    R1T_CHECK(text && strcmp(text, distilled) == 0, "the input was changed: \"%s\"", text ? text : "(null)");
    free(text);
    unlink(link_path);
    if (link(input, link_path) == 0) {
        R1T_CHECK(r1_distill_sft_data(input, link_path, "q", "r", "t", 1, &written) == R1_EINVAL, "hard link accepted");
        text = read_file(input);
        R1T_CHECK(text && strcmp(text, distilled) == 0, "the input was changed through a link");
        free(text);
    }
    /* a failure leaves no output, and an existing output keeps its bytes */
    write_file(input, "{\"q\": \"P1\", \"r\": \"A1\"}\n{\"q\": \"P2\"}\n");
    unlink(missing);
    R1T_CHECK(r1_distill_sft_data(input, missing, "q", "r", "t", 1, &written) == R1_EFORMAT, "missing key accepted");
    R1T_CHECK(access(missing, F_OK) != 0, "a failed conversion left %s", missing);
    write_file(output, "old\n");
    R1T_CHECK(r1_distill_sft_data(input, output, "q", "r", "t", 1, &written) == R1_EFORMAT, "missing key accepted");
    text = read_file(output);
    R1T_CHECK(text && strcmp(text, "old\n") == 0, "a failed conversion changed the old output: \"%s\"", text ? text : "(null)");
    free(text);
    R1T_CHECK(r1_distill_sft_data(directory, missing, "q", "r", "t", 1, &written) != R1_OK, "a directory accepted as input");
    R1T_CHECK(access(missing, F_OK) != 0, "a directory input left %s", missing);
    char temporary[700];
    snprintf(temporary, sizeof temporary, "%s.sft.tmp", missing);
    R1T_CHECK(access(temporary, F_OK) != 0, "a failed conversion left %s", temporary);
    unlink(missing);
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "distill");
    const char *base = getenv("TMPDIR");
    snprintf(directory, sizeof directory, "%s/r1lab_test_distill_XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_ranges();
    test_journal();
    test_responses();
    test_sse();
    test_retry_after();
    test_classify();
    test_utf8();
    test_output_line();
    test_sort();
    test_sft_data();
    const char *names[] = {"journal.jsonl", "corrupt.jsonl", "unsorted.jsonl", "sorted.jsonl", "distilled.jsonl",
                           "distilled-link.jsonl", "sft.jsonl", "missing.jsonl"};
    char path[700];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) {
        snprintf(path, sizeof path, "%s/%s", directory, names[i]);
        unlink(path);
    }
    rmdir(directory);
    return r1t_end();
}
