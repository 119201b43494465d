/*
 * tests/fuzz_http_response.c — libFuzzer target for the response-side parsers
 * (pipeline/distill_parse.c): the chat-completions body parser, Retry-After,
 * UTF-8 repair and the output line built from the parsed strings.
 *
 * Contracts checked: a body is R1_OK or R1_EFORMAT; an R1_OK completion has
 * content and reasoning strings; UTF-8 repair is idempotent (its output is
 * valid UTF-8); the output line of any parsed response parses back as a JSON
 * object with the same line_num; Retry-After is never negative.
 *
 *   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DR1LAB_FUZZ=ON -DR1LAB_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_http_response && build-fuzz/fuzz_http_response -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "r1lab/distill.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_http_response: %s (%s)\n", what, r1_last_error());
    abort();
}

static void check_output_line(const r1_distill_response *response) {
    r1_distill_keys keys = {"r", "t", "p"};
    r1_distill_record record = {0};
    record.line_num = 42;
    record.sample = -1;
    record.response = response->content;
    record.reasoning = response->reasoning;
    record.finish_reason = response->finish_reason;
    record.prompt_tokens = response->prompt_tokens;
    record.completion_tokens = response->completion_tokens;
    char *line = NULL;
    size_t length = 0;
    if (r1_distill_output_line("{\"a\": 1}", 8, &keys, &record, &line, &length) != R1_OK) fail("output_line");
    cJSON *parsed = cJSON_ParseWithLength(line, length);
    cJSON *number = parsed ? cJSON_GetObjectItemCaseSensitive(parsed, "line_num") : NULL;
    if (!cJSON_IsNumber(number) || number->valuedouble != 42) fail("the output line does not parse back");
    cJSON_Delete(parsed);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *text = (const char *)bytes;
    r1_distill_response response;
    r1_status status = r1_distill_parse_response(text, size, &response);
    if (status != R1_OK && status != R1_EFORMAT) fail("unexpected status from parse_response");
    if (status == R1_OK) {
        if (!response.is_error) {
            if (response.content == NULL || response.reasoning == NULL) fail("missing strings");
            check_output_line(&response);
        }
        r1_distill_response_free(&response);
    }
    char *repaired = NULL, *again = NULL;
    size_t repaired_length = 0, again_length = 0;
    if (r1_distill_utf8_repair(text, size, &repaired, &repaired_length) != R1_OK) fail("utf8_repair");
    if (r1_distill_utf8_repair(repaired, repaired_length, &again, &again_length) != R1_OK) fail("utf8_repair twice");
    if (again_length != repaired_length || memcmp(again, repaired, repaired_length) != 0) fail("repair is not idempotent");
    free(repaired);
    free(again);
    char header[64];
    size_t n = size < sizeof header - 1 ? size : sizeof header - 1;
    memcpy(header, text, n);
    header[n] = '\0';
    double seconds = -1;
    status = r1_distill_parse_retry_after(header, 784111777, &seconds);
    if (status == R1_OK && !(seconds >= 0)) fail("negative Retry-After");
    if (status != R1_OK && status != R1_EFORMAT) fail("unexpected status from parse_retry_after");
    return 0;
}
