/*
 * core/jsonl.c — a streaming JSON-lines reader (see include/r1lab/jsonl.h).
 *
 * Input is read in chunks of CHUNK_BYTES (or is one in-memory copy). A line is
 * assembled by copying chunk pieces up to the next '\n' into a line buffer
 * that doubles as needed, so a line may be any length. Then:
 *   drop one trailing '\r'  ->  reject a line holding a NUL byte  ->
 *   skip it if it is blank  ->  hand it out (or parse it with cJSON).
 * Every physical line, blank or not, advances the 1-based line number.
 */
#include "r1lab/jsonl.h"

#include "core/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define CHUNK_BYTES ((size_t)1 << 16)

struct r1_jsonl_reader {
    char *path;            /* for messages: the path, "<stdin>" or "<memory>"    */
    FILE *stream;          /* NULL for an in-memory reader                       */
    int owns_stream;       /* 0 for stdin: close() leaves it open                */
    char *chunk;           /* bytes read but not yet consumed: [start, end)      */
    size_t chunk_start, chunk_end, chunk_capacity;
    int input_done;        /* nothing more to read into the chunk                */
    char *line;            /* the current line, NUL-terminated                   */
    size_t line_length, line_capacity;
    int64_t line_number;   /* physical number of the last line read              */
    int broken;            /* a read or allocation failed: every call fails      */
};

static char *copy_string(const char *text) {
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy) memcpy(copy, text, length + 1);
    return copy;
}

/* A reader with no input attached yet. */
static r1_status reader_create(const char *label, r1_jsonl_reader **out) {
    r1_jsonl_reader *reader = calloc(1, sizeof *reader);
    if (reader == NULL) return r1_fail(R1_ENOMEM, "out of memory opening %.200s", label);
    reader->path = copy_string(label);
    reader->line_capacity = 256;
    reader->line = malloc(reader->line_capacity);
    if (reader->path == NULL || reader->line == NULL) {
        r1_jsonl_close(reader);
        return r1_fail(R1_ENOMEM, "out of memory opening %.200s", label);
    }
    reader->line[0] = '\0';
    *out = reader;
    return R1_OK;
}

r1_status r1_jsonl_open(const char *path, r1_jsonl_reader **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_jsonl_open: out must not be NULL");
    *out = NULL;
    if (path == NULL) return r1_fail(R1_EINVAL, "r1_jsonl_open: path must not be NULL");
    int is_stdin = strcmp(path, "-") == 0;
    FILE *stream = is_stdin ? stdin : fopen(path, "rb");
    if (stream == NULL)
        return r1_fail(R1_EIO, "cannot open %.200s: %s", path, strerror(errno));
    r1_jsonl_reader *reader;
    r1_status status = reader_create(is_stdin ? "<stdin>" : path, &reader);
    if (status == R1_OK) {
        reader->chunk_capacity = CHUNK_BYTES;
        reader->chunk = malloc(reader->chunk_capacity);
        if (reader->chunk == NULL) {
            r1_jsonl_close(reader);
            status = r1_fail(R1_ENOMEM, "out of memory opening %.200s", path);
        }
    }
    if (status != R1_OK) {
        if (!is_stdin) fclose(stream);
        return status;
    }
    reader->stream = stream;
    reader->owns_stream = !is_stdin;
    *out = reader;
    return R1_OK;
}

r1_status r1_jsonl_open_memory(const char *text, size_t length, r1_jsonl_reader **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_jsonl_open_memory: out must not be NULL");
    *out = NULL;
    if (text == NULL && length > 0)
        return r1_fail(R1_EINVAL, "r1_jsonl_open_memory: text is NULL but length is %zu", length);
    r1_jsonl_reader *reader;
    r1_status status = reader_create("<memory>", &reader);
    if (status != R1_OK) return status;
    reader->chunk = malloc(length ? length : 1);
    if (reader->chunk == NULL) {
        r1_jsonl_close(reader);
        return r1_fail(R1_ENOMEM, "r1_jsonl_open_memory: out of memory copying %zu bytes", length);
    }
    if (length) memcpy(reader->chunk, text, length);
    reader->chunk_capacity = length;
    reader->chunk_end = length;
    reader->input_done = 1;
    *out = reader;
    return R1_OK;
}

void r1_jsonl_close(r1_jsonl_reader *reader) {
    if (reader == NULL) return;
    if (reader->stream && reader->owns_stream) fclose(reader->stream);
    free(reader->chunk);
    free(reader->line);
    free(reader->path);
    free(reader);
}

const char *r1_jsonl_path(const r1_jsonl_reader *reader) { return reader ? reader->path : ""; }

/* Marks the reader broken and records the failure. */
static r1_status reader_break(r1_jsonl_reader *reader, r1_status status) {
    reader->broken = 1;
    return status;
}

/* Appends `count` bytes to the line buffer, growing it. */
static r1_status line_append(r1_jsonl_reader *reader, const char *bytes, size_t count) {
    size_t needed = reader->line_length + count + 1;
    if (count > SIZE_MAX / 2 - reader->line_length)
        return reader_break(reader, r1_fail(R1_ENOMEM, "%.200s:%lld: line is too long for memory",
                                            reader->path, (long long)reader->line_number + 1));
    if (needed > reader->line_capacity) {
        size_t larger = reader->line_capacity;
        while (larger < needed) larger *= 2;
        char *grown = realloc(reader->line, larger);
        if (grown == NULL)
            return reader_break(reader, r1_fail(R1_ENOMEM, "%.200s:%lld: out of memory growing the "
                                                "line buffer to %zu bytes", reader->path,
                                                (long long)reader->line_number + 1, larger));
        reader->line = grown;
        reader->line_capacity = larger;
    }
    memcpy(reader->line + reader->line_length, bytes, count);
    reader->line_length += count;
    reader->line[reader->line_length] = '\0';
    return R1_OK;
}

/* Reads the next chunk of the stream; sets input_done at the end of input. */
static r1_status refill_chunk(r1_jsonl_reader *reader) {
    reader->chunk_start = reader->chunk_end = 0;
    if (reader->stream == NULL) {
        reader->input_done = 1;
        return R1_OK;
    }
    size_t got = fread(reader->chunk, 1, reader->chunk_capacity, reader->stream);
    if (got == 0) {
        if (ferror(reader->stream))
            return reader_break(reader, r1_fail(R1_EIO, "%.200s: read error after line %lld: %s",
                                                reader->path, (long long)reader->line_number,
                                                strerror(errno)));
        reader->input_done = 1;
    }
    reader->chunk_end = got;
    return R1_OK;
}

/* Reads one physical line (without '\n') into reader->line; *found = 0 at the
 * end of the input. */
static r1_status read_physical_line(r1_jsonl_reader *reader, int *found) {
    reader->line_length = 0;
    reader->line[0] = '\0';
    *found = 0;
    for (;;) {
        if (reader->chunk_start == reader->chunk_end) {
            if (!reader->input_done) {
                r1_status status = refill_chunk(reader);
                if (status != R1_OK) return status;
            }
            if (reader->chunk_start == reader->chunk_end) { /* end of input */
                if (reader->line_length > 0) break;        /* no final newline */
                return R1_OK;
            }
        }
        const char *start = reader->chunk + reader->chunk_start;
        size_t available = reader->chunk_end - reader->chunk_start;
        const char *newline = memchr(start, '\n', available);
        size_t piece = newline ? (size_t)(newline - start) : available;
        r1_status status = line_append(reader, start, piece);
        if (status != R1_OK) return status;
        reader->chunk_start += piece + (newline != NULL);
        if (newline) break;
    }
    ++reader->line_number;
    *found = 1;
    if (reader->line_length > 0 && reader->line[reader->line_length - 1] == '\r')
        reader->line[--reader->line_length] = '\0';
    return R1_OK;
}

static int is_blank(const char *line, size_t length) {
    for (size_t i = 0; i < length; ++i)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') return 0;
    return 1;
}

r1_status r1_jsonl_next_line(r1_jsonl_reader *reader, const char **line, size_t *length,
                             int64_t *line_number) {
    if (line) *line = NULL;
    if (length) *length = 0;
    if (line_number) *line_number = reader ? reader->line_number : 0;
    if (reader == NULL || line == NULL)
        return r1_fail(R1_EINVAL, "r1_jsonl_next_line: reader and line must not be NULL");
    if (reader->broken)
        return r1_fail(R1_EIO, "%.200s: the reader failed earlier, after line %lld",
                       reader->path, (long long)reader->line_number);
    for (;;) {
        int found;
        r1_status status = read_physical_line(reader, &found);
        if (status != R1_OK) return status;
        if (line_number) *line_number = reader->line_number;
        if (!found) return R1_OK;
        const char *nul = memchr(reader->line, '\0', reader->line_length);
        if (nul)
            return r1_fail(R1_EFORMAT, "%.200s:%lld: line holds a NUL byte at column %zu",
                           reader->path, (long long)reader->line_number,
                           (size_t)(nul - reader->line) + 1);
        if (is_blank(reader->line, reader->line_length)) continue;
        *line = reader->line;
        if (length) *length = reader->line_length;
        return R1_OK;
    }
}


r1_status r1_jsonl_next_object(r1_jsonl_reader *reader, cJSON **object, int64_t *line_number) {
    if (object) *object = NULL;
    if (object == NULL)
        return r1_fail(R1_EINVAL, "r1_jsonl_next_object: object must not be NULL");
    const char *line;
    size_t length;
    int64_t number;
    r1_status status = r1_jsonl_next_line(reader, &line, &length, &number);
    if (line_number) *line_number = number;
    if (status != R1_OK || line == NULL) return status;

    const char *end = NULL;
    cJSON *value = cJSON_ParseWithLengthOpts(line, length, &end, 0);
    if (value == NULL) {
        size_t column = (end && end >= line && end <= line + length) ? (size_t)(end - line) + 1 : 1;
        return r1_fail(R1_EFORMAT, "%.200s:%lld: not valid JSON (error near column %zu)",
                       reader->path, (long long)number, column);
    }
    size_t after = (end && end >= line && end <= line + length) ? (size_t)(end - line) : length;
    while (after < length && (line[after] == ' ' || line[after] == '\t' || line[after] == '\r'))
        ++after;
    if (after < length) {
        cJSON_Delete(value);
        return r1_fail(R1_EFORMAT, "%.200s:%lld: text after the JSON value at column %zu",
                       reader->path, (long long)number, after + 1);
    }
    if (!cJSON_IsObject(value)) {
        const char *type = r1_json_type_name(value);
        cJSON_Delete(value);
        return r1_fail(R1_EFORMAT, "%.200s:%lld: the line is a JSON %s, not an object",
                       reader->path, (long long)number, type);
    }
    *object = value;
    return R1_OK;
}
