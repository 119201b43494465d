/*
 * r1lab/jsonl.h — a streaming reader of JSON-lines files (one JSON object per
 * line), the format of r1lab's text golden files and distillation datasets.
 *
 * CONTRACT
 *   - Lines may be of any length (the buffer grows; 10+ MB lines work).
 *   - "\n" ends a line; a "\r" just before it is dropped ("\r\n" files work).
 *   - A last line without a final newline is still a line.
 *   - Blank lines (empty, or only spaces, tabs and "\r") are skipped.
 *   - Line numbers are 1-based physical line numbers in the input (blank
 *     lines count), so "data.jsonl:17" is what an editor shows as line 17.
 *   - A line holding a NUL byte is R1_EFORMAT naming the line; the reader
 *     stays usable and the next call returns the following line.
 *   - Messages about a line read "PATH:LINE: ..." (PATH is "<stdin>" for "-"
 *     and "<memory>" for r1_jsonl_open_memory).
 *   - A read error is R1_EIO; after R1_EIO or R1_ENOMEM the reader is broken
 *     and every later call returns R1_EIO.
 */
#ifndef R1LAB_JSONL_H
#define R1LAB_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON; /* from <cjson/cJSON.h> */

typedef struct r1_jsonl_reader r1_jsonl_reader; /* opaque */

/* Opens `path` for reading ("-" means standard input). R1_EIO naming the path
 * and the system's reason when it cannot be opened. */
r1_status r1_jsonl_open(const char *path, r1_jsonl_reader **out);

/* Reads `length` bytes of `text` (copied; NUL bytes in it are allowed and are
 * reported per line). text may be NULL when length is 0. */
r1_status r1_jsonl_open_memory(const char *text, size_t length, r1_jsonl_reader **out);

/* The next non-blank line: *line is NUL-terminated without its newline and is
 * valid until the next call on this reader; *length is its byte count;
 * *line_number its physical line number. At the end of the input: R1_OK with
 * *line == NULL (and *length 0). `length` and `line_number` may be NULL. */
r1_status r1_jsonl_next_line(r1_jsonl_reader *reader, const char **line, size_t *length,
                             int64_t *line_number);

/* The next non-blank line parsed into a JSON object, which the caller frees
 * with cJSON_Delete(). A line that is not valid JSON, or is valid JSON but not
 * an object, is R1_EFORMAT "PATH:LINE: ..." with *object NULL; the reader
 * stays usable, so the caller may count the bad line and go on. At the end of
 * the input: R1_OK with *object == NULL. `line_number` may be NULL. */
r1_status r1_jsonl_next_object(r1_jsonl_reader *reader, struct cJSON **object,
                               int64_t *line_number);

/* "<stdin>", "<memory>" or the path given to open; "" for NULL. */
const char *r1_jsonl_path(const r1_jsonl_reader *reader);

/* Closes the file (never standard input) and frees everything; NULL is allowed. */
void r1_jsonl_close(r1_jsonl_reader *reader);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_JSONL_H */
