/*
 * tests/fuzz_jsonl.c — libFuzzer target for the JSONL reader.
 *
 * Each input is read twice from memory: once with r1_jsonl_next_line, checking
 * the contract (no '\n' and no NUL inside a line, length == strlen, line
 * numbers strictly increasing and within the input's line count), and once
 * with r1_jsonl_next_object, where a bad line is R1_EFORMAT and reading goes
 * on. Neither may crash, leak or loop forever.
 *
 *   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DR1LAB_FUZZ=ON -DR1LAB_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_jsonl
 *   build-fuzz/fuzz_jsonl -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "r1lab/jsonl.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_jsonl: %s (%s)\n", what, r1_last_error());
    abort();
}

static void walk_lines(const uint8_t *bytes, size_t size) {
    int64_t physical_lines = 1;
    for (size_t i = 0; i < size; ++i) physical_lines += bytes[i] == '\n';
    r1_jsonl_reader *reader = NULL;
    if (r1_jsonl_open_memory((const char *)bytes, size, &reader) != R1_OK) fail("open_memory");
    int64_t previous = 0;
    for (;;) {
        const char *line = NULL;
        size_t length = 0;
        int64_t number = 0;
        r1_status status = r1_jsonl_next_line(reader, &line, &length, &number);
        if (status == R1_EFORMAT) {
            if (line != NULL) fail("a line handed out with R1_EFORMAT");
        } else if (status != R1_OK) {
            fail("unexpected status from next_line");
        } else if (line == NULL) {
            break;
        } else if (strlen(line) != length || memchr(line, '\n', length) || length == 0) {
            fail("line breaks the contract");
        }
        if (number <= previous || number > physical_lines) fail("bad line number");
        previous = number;
    }
    r1_jsonl_close(reader);
}

static void walk_objects(const uint8_t *bytes, size_t size) {
    r1_jsonl_reader *reader = NULL;
    if (r1_jsonl_open_memory((const char *)bytes, size, &reader) != R1_OK) fail("open_memory");
    for (size_t calls = 0; calls <= size + 1; ++calls) {
        cJSON *object = NULL;
        r1_status status = r1_jsonl_next_object(reader, &object, NULL);
        if (status == R1_OK && object == NULL) break;
        if (status == R1_OK && !cJSON_IsObject(object)) fail("a non-object handed out");
        if (status != R1_OK && (status != R1_EFORMAT || object != NULL))
            fail("unexpected status from next_object");
        cJSON_Delete(object);
        if (calls == size + 1) fail("more results than lines");
    }
    r1_jsonl_close(reader);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    walk_lines(bytes, size);
    walk_objects(bytes, size);
    return 0;
}
