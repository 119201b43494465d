/*
 * pipeline/distill_sft.c — after the run: `r1lab sort` (input order by
 * (line_num, sample)) and `r1lab sft-data` (the seed's {"src", "tgt"} format).
 *
 * sort keeps one 24-byte index entry per line in memory and copies each line's
 * bytes unchanged with pread(); the result replaces the target through a
 * temporary file and rename(), so an interrupted sort leaves the old file
 * (an output "-" is stdout, written as it goes).
 * sft-data writes the same way (a failed conversion leaves the old output, or
 * none) and refuses an output that is its own input.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pipeline/distill_internal.h"
#include "r1lab/jsonl.h"

typedef struct sort_entry {
    int64_t line_num;
    int32_t sample;
    uint32_t length;              /* line bytes including '\n' (lines < 4 GiB)  */
    int64_t offset;
} sort_entry;

static int compare_entries(const void *a, const void *b) {
    const sort_entry *x = a, *y = b;
    if (x->line_num != y->line_num) return x->line_num < y->line_num ? -1 : 1;
    if (x->sample != y->sample) return x->sample < y->sample ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

typedef struct sort_index {
    sort_entry *entries;
    size_t count, capacity;
    int64_t offset;               /* offset of the next line                    */
    int failed;
} sort_index;


/* Builds the index in one pass over the file. */
static r1_status index_file(const char *path, int fd, sort_index *index) {
    enum { CHUNK = 1 << 16 };
    char *chunk = malloc(CHUNK);
    distill_buffer line = {0};
    r1_status status = chunk ? R1_OK : r1_fail(R1_ENOMEM, "out of memory");
    int64_t number = 0, offset = 0, line_start = 0;
    while (status == R1_OK) {
        ssize_t got = read(fd, chunk, CHUNK);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { status = r1_fail(R1_EIO, "cannot read %s: %s", path, strerror(errno)); break; }
        if (got == 0) break;
        size_t i = 0;
        while (i < (size_t)got && status == R1_OK) {
            char *newline = memchr(chunk + i, '\n', (size_t)got - i);
            size_t piece = newline ? (size_t)(newline - (chunk + i)) : (size_t)got - i;
            if (!distill_buffer_append(&line, chunk + i, piece)) { status = r1_fail(R1_ENOMEM, "out of memory"); break; }
            if (!newline) break;
            ++number;
            int64_t line_end = offset + (int64_t)(i + piece + 1);
            cJSON *root = cJSON_ParseWithLength(line.data, line.length);
            const cJSON *found_line = NULL, *found_sample = NULL;
            for (const cJSON *item = root ? root->child : NULL; item; item = item->next) {
                if (item->string && strcmp(item->string, "line_num") == 0) found_line = item;
                if (item->string && strcmp(item->string, "sample") == 0) found_sample = item;
            }
            if (!cJSON_IsObject(root) || !cJSON_IsNumber(found_line)) {
                status = r1_fail(R1_EFORMAT, "%s:%lld: not a distilled record (no \"line_num\")", path, (long long)number);
            } else if (line_end - line_start > (int64_t)UINT32_MAX) {
                status = r1_fail(R1_EFORMAT, "%s:%lld: line longer than 4 GiB", path, (long long)number);
            } else {
                if (index->count == index->capacity) {
                    size_t capacity = index->capacity ? index->capacity * 2 : 1024;
                    sort_entry *grown = realloc(index->entries, capacity * sizeof *grown);
                    if (grown == NULL) status = r1_fail(R1_ENOMEM, "out of memory indexing %s", path);
                    else { index->entries = grown; index->capacity = capacity; }
                }
                if (status == R1_OK) {
                    sort_entry *e = &index->entries[index->count++];
                    e->line_num = (int64_t)found_line->valuedouble;
                    e->sample = cJSON_IsNumber(found_sample) ? (int32_t)found_sample->valuedouble : 0;
                    e->offset = line_start;
                    e->length = (uint32_t)(line_end - line_start);
                }
            }
            cJSON_Delete(root);
            distill_buffer_clear(&line);
            line_start = line_end;
            i += piece + 1;
        }
        offset += got;
    }
    if (status == R1_OK && line.length)
        status = r1_fail(R1_EFORMAT, "%s: the last line has no newline (a torn write? run distill once to repair)", path);
    distill_buffer_free(&line);
    free(chunk);
    return status;
}

r1_status r1_distill_sort_file(const char *input_path, const char *output_path) {
    if (input_path == NULL || output_path == NULL) return r1_fail(R1_EINVAL, "r1_distill_sort_file: NULL path");
    int fd = open(input_path, O_RDONLY);
    if (fd < 0) return r1_fail(R1_EIO, "cannot open %s: %s", input_path, strerror(errno));
    sort_index index = {0};
    r1_status status = index_file(input_path, fd, &index);
    char *temporary = NULL;
    int out = -1;
    int to_stdout = strcmp(output_path, "-") == 0;   /* "-": stream to stdout, no temporary file */
    if (status == R1_OK) qsort(index.entries, index.count, sizeof *index.entries, compare_entries);
    if (status == R1_OK && to_stdout) {
        out = STDOUT_FILENO;
    } else if (status == R1_OK) {
        size_t length = strlen(output_path);
        temporary = malloc(length + 12);
        if (temporary == NULL) status = r1_fail(R1_ENOMEM, "out of memory");
        else {
            snprintf(temporary, length + 12, "%s.sort.tmp", output_path);
            out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (out < 0) status = r1_fail(R1_EIO, "cannot create %s: %s", temporary, strerror(errno));
        }
    }
    distill_buffer copy = {0};
    for (size_t i = 0; status == R1_OK && i < index.count; ++i) {
        const sort_entry *e = &index.entries[i];
        distill_buffer_clear(&copy);
        if (!distill_buffer_reserve(&copy, e->length)) { status = r1_fail(R1_ENOMEM, "out of memory"); break; }
        size_t done = 0;
        while (done < e->length) {
            ssize_t got = pread(fd, copy.data + done, e->length - done, (off_t)(e->offset + (int64_t)done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { status = r1_fail(R1_EIO, "cannot read %s: %s", input_path, got ? strerror(errno) : "file shrank"); break; }
            done += (size_t)got;
        }
        for (size_t w = 0; status == R1_OK && w < e->length;) {
            ssize_t put = write(out, copy.data + w, e->length - w);
            if (put < 0 && errno == EINTR) continue;
            if (put < 0) status = r1_fail(R1_EIO, "cannot write %s: %s", to_stdout ? "<stdout>" : temporary, strerror(errno));
            else w += (size_t)put;
        }
    }
    distill_buffer_free(&copy);
    if (to_stdout) {
        free(index.entries);
        close(fd);
        return status;
    }
    if (out >= 0 && close(out) != 0 && status == R1_OK) status = r1_fail(R1_EIO, "cannot write %s: %s", temporary, strerror(errno));
    if (status == R1_OK && rename(temporary, output_path) != 0)
        status = r1_fail(R1_EIO, "cannot rename %s to %s: %s", temporary, output_path, strerror(errno));
    if (status != R1_OK && temporary) unlink(temporary);
    free(temporary);
    free(index.entries);
    close(fd);
    return status;
}

static const char *string_field(const cJSON *record, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(record, key);
    if (cJSON_IsArray(item)) item = cJSON_GetArrayItem(item, 0);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* 1 when `output_path` names the file `input_path` already is (same device and
 * inode: the same path, another spelling of it, or a hard link). */
static int same_file(const char *input_path, const char *output_path) {
    struct stat in, out;
    if (strcmp(input_path, "-") == 0 || strcmp(output_path, "-") == 0) return 0;
    if (stat(input_path, &in) != 0 || stat(output_path, &out) != 0) return 0;
    return in.st_dev == out.st_dev && in.st_ino == out.st_ino;
}

/* The target text: reasoning, a blank line, the response. With think_tags the
 * reasoning is wrapped as "<think>\n" reasoning "\n</think>\n\n" unless it
 * already opens with <think>; otherwise the blank line is completed from the
 * newlines the reasoning already ends with. */
static int build_target(distill_buffer *target, const char *reasoning, const char *response, int think_tags) {
    int ok = 1;
    if (reasoning && reasoning[0]) {
        int wrap = think_tags && strncmp(reasoning, "<think>", 7) != 0;
        ok = ok && (!wrap || distill_buffer_append_string(target, "<think>\n"));
        ok = ok && distill_buffer_append_string(target, reasoning);
        if (wrap) {
            ok = ok && distill_buffer_append_string(target, "\n</think>\n\n");
        } else {
            size_t length = strlen(reasoning), newlines = 0;
            while (newlines < 2 && newlines < length && reasoning[length - 1 - newlines] == '\n') ++newlines;
            ok = ok && distill_buffer_append_string(target, "\n\n" + newlines);
        }
    }
    return ok && distill_buffer_append_string(target, response);
}

/* Creates the folders above `path` that do not exist yet (as `mkdir -p`
 * of its directory part), so `--output_file new/dir/train.json` works as the
 * distill step's --output_dir does. */
static r1_status make_parent_directories(const char *path) {
    char *copy = strdup(path);
    if (copy == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    char *slash = strrchr(copy, '/');
    if (slash != NULL && slash != copy) {
        *slash = '\0';
        for (char *p = copy + 1; *p; ++p) {
            if (*p != '/') continue;
            *p = '\0';
            if (mkdir(copy, 0755) != 0 && errno != EEXIST) break;
            *p = '/';
        }
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            r1_status status = r1_fail(R1_EIO, "cannot create the folder %s: %s", copy, strerror(errno));
            free(copy);
            return status;
        }
    }
    free(copy);
    return R1_OK;
}

r1_status r1_distill_sft_data(const char *input_path, const char *output_path, const char *prompt_key,
                              const char *response_key, const char *reasoning_key, int think_tags,
                              int64_t *lines_written) {
    if (!input_path || !output_path || !prompt_key || !response_key || !reasoning_key)
        return r1_fail(R1_EINVAL, "r1_distill_sft_data: NULL argument");
    if (lines_written) *lines_written = 0;
    if (same_file(input_path, output_path))
        return r1_fail(R1_EINVAL, "%s and %s are the same file: writing the output would destroy the input",
                       input_path, output_path);
    r1_jsonl_reader *reader = NULL;
    r1_status status = r1_jsonl_open(input_path, &reader);
    if (status != R1_OK) return status;
    /* a file output is written to a temporary file beside it and renamed over
     * it only when every line converted: a failure leaves the old file (or none) */
    int to_stdout = strcmp(output_path, "-") == 0;
    char *temporary = NULL;
    FILE *out = stdout;
    if (!to_stdout) {
        size_t length = strlen(output_path) + 9;
        temporary = malloc(length);
        if (temporary == NULL) {
            r1_jsonl_close(reader);
            return r1_fail(R1_ENOMEM, "out of memory");
        }
        snprintf(temporary, length, "%s.sft.tmp", output_path);
        status = make_parent_directories(output_path);
        out = status == R1_OK ? fopen(temporary, "wb") : NULL;
        if (out == NULL) {
            if (status == R1_OK)
                status = r1_fail(R1_EIO, "cannot create %s: %s", temporary, strerror(errno));
            free(temporary);
            r1_jsonl_close(reader);
            return status;
        }
    }
    const char *written_path = to_stdout ? "<stdout>" : temporary;
    distill_buffer line = {0}, target = {0};
    for (;;) {
        cJSON *record = NULL;
        int64_t number = 0;
        status = r1_jsonl_next_object(reader, &record, &number);
        if (status != R1_OK || record == NULL) break;
        const char *prompt = string_field(record, prompt_key);
        const char *response = string_field(record, response_key);
        const char *reasoning = string_field(record, reasoning_key);
        if (prompt == NULL || response == NULL) {
            status = r1_fail(R1_EFORMAT, "%s:%lld: no string \"%s\" or \"%s\"", input_path, (long long)number,
                             prompt_key, response_key);
            cJSON_Delete(record);
            break;
        }
        distill_buffer_clear(&target);
        distill_buffer_clear(&line);
        int ok = build_target(&target, reasoning, response, think_tags);
        ok = ok && distill_buffer_append_string(&line, "{\"src\": ") &&
             distill_buffer_append_json_string(&line, prompt, strlen(prompt)) &&
             distill_buffer_append_string(&line, ", \"tgt\": ") &&
             distill_buffer_append_json_string(&line, target.data ? target.data : "", target.length) &&
             distill_buffer_append_string(&line, "}\n");
        cJSON_Delete(record);
        if (!ok) { status = r1_fail(R1_ENOMEM, "out of memory"); break; }
        if (fwrite(line.data, 1, line.length, out) != line.length) {
            status = r1_fail(R1_EIO, "cannot write %s: %s", written_path, strerror(errno));
            break;
        }
        if (lines_written) ++*lines_written;
    }
    distill_buffer_free(&line);
    distill_buffer_free(&target);
    r1_jsonl_close(reader);
    if (to_stdout) {
        if (fflush(stdout) != 0 && status == R1_OK) status = r1_fail(R1_EIO, "cannot write <stdout>: %s", strerror(errno));
        return status;
    }
    if (fclose(out) != 0 && status == R1_OK) status = r1_fail(R1_EIO, "cannot write %s: %s", temporary, strerror(errno));
    if (status == R1_OK && rename(temporary, output_path) != 0)
        status = r1_fail(R1_EIO, "cannot rename %s to %s: %s", temporary, output_path, strerror(errno));
    if (status != R1_OK) {
        unlink(temporary);
        if (lines_written) *lines_written = 0;
    }
    free(temporary);
    return status;
}
