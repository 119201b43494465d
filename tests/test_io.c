/*
 * tests/test_io.c — tests of the golden-file I/O in core/: the safetensors
 * reader and writer (core/safetensors.c) and the JSONL reader (core/jsonl.c).
 *
 *   safetensors  round trips of every dtype with metadata; the atomic save;
 *                one hand-made file per malformed-header rule (R1_EFORMAT and
 *                a sentence naming the tensor or the problem); every prefix
 *                of a valid file and random corruptions fail cleanly.
 *   jsonl        long lines (> 1 MB in memory, > 10 MB from a file), CRLF,
 *                blank lines, a missing final newline, malformed lines named
 *                by number with the reader going on, NUL bytes, chunk edges.
 *
 * Files are written under a fresh directory from mkdtemp() in $TMPDIR (or
 * /tmp), removed at the end.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, mkdir, symlink, rmdir, unlink */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "r1lab/jsonl.h"
#include "r1lab/safetensors.h"

/* ---- helpers ------------------------------------------------------------------ */

static char temporary_directory[512];

static void make_temporary_directory(void) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') base = "/tmp";
    snprintf(temporary_directory, sizeof temporary_directory, "%s/r1lab_test_io_XXXXXX", base);
    if (mkdtemp(temporary_directory) == NULL) {
        printf("cannot create a temporary directory under %s\n", base);
        exit(1);
    }
}

/* A path inside the temporary directory (static buffer; copy it to keep it). */
static const char *temporary_path(const char *name) {
    static char path[640];
    snprintf(path, sizeof path, "%s/%s", temporary_directory, name);
    return path;
}

static int error_mentions(const char *needle) { return strstr(r1_last_error(), needle) != NULL; }

static int write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *stream = fopen(path, "wb");
    if (stream == NULL) return 0;
    int ok = fwrite(bytes, 1, size, stream) == size;
    return fclose(stream) == 0 && ok;
}

/* Reads a whole file; NULL on failure. */
static unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *stream = fopen(path, "rb");
    if (stream == NULL) return NULL;
    size_t capacity = 4096, used = 0;
    unsigned char *bytes = malloc(capacity);
    for (;;) {
        if (used == capacity) bytes = realloc(bytes, capacity *= 2);
        size_t got = fread(bytes + used, 1, capacity - used, stream);
        used += got;
        if (got == 0) break;
    }
    fclose(stream);
    *size = used;
    return bytes;
}

/* A safetensors file from a header text and a data section (no padding). */
static unsigned char *make_file(const char *header, const void *data, size_t data_bytes,
                                size_t *size) {
    size_t header_bytes = strlen(header);
    *size = 8 + header_bytes + data_bytes;
    unsigned char *bytes = malloc(*size + 1);
    for (int i = 0; i < 8; ++i) bytes[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    memcpy(bytes + 8, header, header_bytes);
    if (data_bytes) memcpy(bytes + 8 + header_bytes, data, data_bytes);
    return bytes;
}

/* Parses a hand-made file and checks it fails with R1_EFORMAT and a sentence
 * holding `needle` (and the tensor name `tensor` when given). */
static void check_rejected(const char *header, size_t data_bytes, const char *tensor,
                           const char *needle) {
    unsigned char data[256];
    for (size_t i = 0; i < sizeof data; ++i) data[i] = (unsigned char)i;
    size_t size;
    unsigned char *bytes = make_file(header, data, data_bytes, &size);
    r1_safetensors *file = (r1_safetensors *)1;
    r1_status status = r1_safetensors_parse(bytes, size, &file);
    R1T_CHECK(status == R1_EFORMAT, "header %s: status %s, expected R1_EFORMAT", header,
              r1_status_str(status));
    R1T_CHECK(file == NULL, "header %s: *out must be NULL on failure", header);
    R1T_CHECK(error_mentions(needle), "header %s: sentence \"%s\" should mention \"%s\"", header,
              r1_last_error(), needle);
    if (tensor) {
        char quoted[128];
        snprintf(quoted, sizeof quoted, "\"%s\"", tensor);
        R1T_CHECK(error_mentions(quoted), "header %s: sentence \"%s\" should name tensor %s",
                  header, r1_last_error(), quoted);
    }
    if (status == R1_OK) r1_safetensors_close(file);
    free(bytes);
}

/* Parses a hand-made file and checks it is accepted. */
static r1_safetensors *check_accepted(const char *header, size_t data_bytes) {
    unsigned char data[256];
    for (size_t i = 0; i < sizeof data; ++i) data[i] = (unsigned char)i;
    size_t size;
    unsigned char *bytes = make_file(header, data, data_bytes, &size);
    r1_safetensors *file = NULL;
    r1_status status = r1_safetensors_parse(bytes, size, &file);
    R1T_CHECK(status == R1_OK, "header %s: status %s (%s), expected R1_OK", header,
              r1_status_str(status), r1_last_error());
    free(bytes);
    return file;
}

/* ---- one tensor of each dtype ----------------------------------------------------- */

typedef struct sample_tensor {
    const char *name;
    r1_dtype dtype;
    int rank;
    int64_t shape[8];
    size_t element_bytes;
} sample_tensor;

static const sample_tensor samples[] = {
    {"weights.f32", R1_F32, 2, {3, 5}, 4},
    {"half", R1_F16, 1, {7}, 2},
    {"brain", R1_BF16, 3, {2, 1, 3}, 2},
    {"fp8", R1_F8E4M3, 2, {4, 3}, 1},
    {"int8", R1_I8, 1, {9}, 1},
    {"ids \"quoted\" \\ back", R1_I32, 2, {2, 2}, 4},
    {"counts", R1_I64, 1, {3}, 8},
    {"expected.f64", R1_F64, 0, {0}, 8},            /* a scalar */
    {"bytes", R1_U8, 8, {1, 2, 1, 2, 1, 1, 1, 3}, 1}, /* rank 8 */
    {"empty", R1_F32, 2, {0, 4}, 4},                  /* no elements */
};
#define SAMPLE_COUNT ((int)(sizeof samples / sizeof samples[0]))

static size_t sample_elements(const sample_tensor *sample) {
    size_t count = 1;
    for (int d = 0; d < sample->rank; ++d) count *= (size_t)sample->shape[d];
    return count;
}

/* Deterministic bytes of sample `index` from `seed`. */
static unsigned char *sample_data(int index, uint64_t seed) {
    size_t bytes = sample_elements(&samples[index]) * samples[index].element_bytes;
    unsigned char *data = malloc(bytes + 1);
    r1t_rng rng = r1t_rng_make(seed + (uint64_t)index);
    for (size_t i = 0; i < bytes; ++i) data[i] = (unsigned char)r1t_rng_u64(&rng);
    return data;
}

static r1_safetensors_writer *make_sample_writer(uint64_t seed) {
    r1_safetensors_writer *writer = NULL;
    R1T_CHECK(r1_safetensors_writer_create(&writer) == R1_OK, "create: %s", r1_last_error());
    for (int i = 0; i < SAMPLE_COUNT; ++i) {
        unsigned char *data = sample_data(i, seed);
        r1_status status = r1_safetensors_writer_add(writer, samples[i].name, samples[i].dtype,
                                                     samples[i].rank, samples[i].shape, data);
        R1T_CHECK(status == R1_OK, "add %s: %s", samples[i].name, r1_last_error());
        free(data);
    }
    R1T_CHECK(r1_safetensors_writer_set_metadata(writer, "case", "sampling(b=2,v=7,seed=3)") == R1_OK,
              "metadata: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_writer_set_metadata(writer, "tricky", "a \"quote\", a \\ and\na newline\t\x01") == R1_OK,
              "metadata: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_writer_set_metadata(writer, "unicode \xc3\xa9", "\xe2\x88\x9a x") == R1_OK,
              "metadata: %s", r1_last_error());
    return writer;
}

/* Checks that `file` holds exactly the samples and metadata of make_sample_writer. */
static void check_sample_file(const r1_safetensors *file, uint64_t seed) {
    R1T_CHECK(r1_safetensors_count(file) == SAMPLE_COUNT, "count %d, expected %d",
              r1_safetensors_count(file), SAMPLE_COUNT);
    for (int i = 0; i < SAMPLE_COUNT; ++i) {
        const r1_tensor_info *info = NULL;
        const void *data = NULL;
        r1_status status = r1_safetensors_find(file, samples[i].name, &info, &data);
        R1T_CHECK(status == R1_OK, "find %s: %s", samples[i].name, r1_last_error());
        if (status != R1_OK) continue;
        R1T_CHECK(strcmp(info->name, samples[i].name) == 0, "name %s", info->name);
        R1T_CHECK(info->dtype == samples[i].dtype, "%s: dtype %d", samples[i].name, (int)info->dtype);
        R1T_CHECK(info->rank == samples[i].rank, "%s: rank %d", samples[i].name, info->rank);
        for (int d = 0; d < samples[i].rank; ++d)
            R1T_CHECK(info->shape[d] == samples[i].shape[d], "%s: shape[%d] = %lld",
                      samples[i].name, d, (long long)info->shape[d]);
        size_t bytes = sample_elements(&samples[i]) * samples[i].element_bytes;
        R1T_CHECK(info->bytes == bytes, "%s: %llu bytes, expected %zu", samples[i].name,
                  (unsigned long long)info->bytes, bytes);
        R1T_CHECK((uintptr_t)data % samples[i].element_bytes == 0, "%s: data pointer %p unaligned",
                  samples[i].name, data);
        unsigned char *expected = sample_data(i, seed);
        R1T_CHECK(bytes == 0 || memcmp(data, expected, bytes) == 0, "%s: data differs",
                  samples[i].name);
        free(expected);
        R1T_CHECK(r1_safetensors_expect(file, samples[i].name, samples[i].dtype,
                                        (int64_t)sample_elements(&samples[i]), NULL) == R1_OK,
                  "expect %s: %s", samples[i].name, r1_last_error());
    }
    for (int i = 1; i < r1_safetensors_count(file); ++i)
        R1T_CHECK(r1_safetensors_info(file, i - 1)->offset <= r1_safetensors_info(file, i)->offset,
                  "info order is not by ascending data offset at %d", i);
    const char *value = r1_safetensors_metadata(file, "case");
    R1T_CHECK(value && strcmp(value, "sampling(b=2,v=7,seed=3)") == 0, "metadata case = %s",
              value ? value : "(null)");
    value = r1_safetensors_metadata(file, "tricky");
    R1T_CHECK(value && strcmp(value, "a \"quote\", a \\ and\na newline\t\x01") == 0,
              "metadata tricky = %s", value ? value : "(null)");
    value = r1_safetensors_metadata(file, "unicode \xc3\xa9");
    R1T_CHECK(value && strcmp(value, "\xe2\x88\x9a x") == 0, "metadata unicode = %s",
              value ? value : "(null)");
    R1T_CHECK(r1_safetensors_metadata(file, "absent") == NULL, "absent metadata key found");
    R1T_CHECK(r1_safetensors_metadata_count(file) == 3, "metadata count %d",
              r1_safetensors_metadata_count(file));
}

/* ---- safetensors cases ----------------------------------------------------------- */

static void test_round_trip(void) {
    if (!r1t_case("safetensors(round_trip,every_dtype,metadata)")) return;
    uint64_t seed = r1t_seed();
    r1_safetensors_writer *writer = make_sample_writer(seed);
    char path[640];
    snprintf(path, sizeof path, "%s", temporary_path("round_trip.safetensors"));
    R1T_CHECK(r1_safetensors_writer_save(writer, path) == R1_OK, "save: %s", r1_last_error());
    r1_safetensors_writer_free(writer);

    r1_safetensors *file = NULL;
    R1T_CHECK(r1_safetensors_open(path, &file) == R1_OK, "open: %s", r1_last_error());
    if (file) check_sample_file(file, seed);
    R1T_CHECK(strcmp(r1_safetensors_path(file), path) == 0, "path %s", r1_safetensors_path(file));
    r1_safetensors_close(file);

    /* The same bytes through r1_safetensors_parse; header padded to 8. */
    size_t size = 0;
    unsigned char *bytes = read_bytes(path, &size);
    R1T_CHECK(bytes != NULL && size >= 8, "cannot read back %s", path);
    if (bytes == NULL) return;
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];
    R1T_CHECK((8 + header_bytes) % 8 == 0, "data section starts at %llu, not a multiple of 8",
              (unsigned long long)(8 + header_bytes));
    R1T_CHECK(bytes[8] == '{', "header does not start with '{'");
    file = NULL;
    R1T_CHECK(r1_safetensors_parse(bytes, size, &file) == R1_OK, "parse: %s", r1_last_error());
    free(bytes); /* parse copied it */
    /* The writer's layout: no gaps, and the data section ends with the last tensor. */
    uint64_t expected_offset = 0;
    for (int i = 0; i < r1_safetensors_count(file); ++i) {
        const r1_tensor_info *info = r1_safetensors_info(file, i);
        R1T_CHECK(info->offset == expected_offset, "%s at offset %llu, expected %llu", info->name,
                  (unsigned long long)info->offset, (unsigned long long)expected_offset);
        expected_offset = info->offset + info->bytes;
    }
    R1T_CHECK(8 + header_bytes + expected_offset == size, "data section has %llu extra bytes",
              (unsigned long long)(size - 8 - header_bytes - expected_offset));
    if (file) check_sample_file(file, seed);
    R1T_CHECK(strcmp(r1_safetensors_path(file), "<memory>") == 0, "path %s",
              r1_safetensors_path(file));
    r1_safetensors_close(file);
}

static void test_values_survive(void) {
    if (!r1t_case("safetensors(round_trip,values,f32_nan_inf)")) return;
    float values[6] = {1.5f, -0.0f, NAN, INFINITY, -INFINITY, 3.4028235e38f};
    int64_t shape[1] = {6};
    r1_safetensors_writer *writer = NULL;
    r1_safetensors_writer_create(&writer);
    R1T_CHECK(r1_safetensors_writer_add(writer, "x", R1_F32, 1, shape, values) == R1_OK, "%s",
              r1_last_error());
    values[0] = 99.0f; /* add copied the data: this must not reach the file */
    const char *path = temporary_path("values.safetensors");
    R1T_CHECK(r1_safetensors_writer_save(writer, path) == R1_OK, "save: %s", r1_last_error());
    r1_safetensors_writer_free(writer);
    r1_safetensors *file = NULL;
    const void *data = NULL;
    R1T_CHECK(r1_safetensors_open(path, &file) == R1_OK, "open: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_expect(file, "x", R1_F32, 6, &data) == R1_OK, "%s", r1_last_error());
    if (data) {
        const float *read = data;
        R1T_CHECK(read[0] == 1.5f && read[1] == 0.0f && signbit(read[1]) && isnan(read[2]) &&
                      read[3] == INFINITY && read[4] == -INFINITY && read[5] == 3.4028235e38f,
                  "values changed in the round trip");
    }
    r1_safetensors_close(file);
}

static void test_empty_file(void) {
    if (!r1t_case("safetensors(round_trip,no_tensors)")) return;
    r1_safetensors_writer *writer = NULL;
    r1_safetensors_writer_create(&writer);
    const char *path = temporary_path("empty.safetensors");
    R1T_CHECK(r1_safetensors_writer_save(writer, path) == R1_OK, "save: %s", r1_last_error());
    r1_safetensors_writer_free(writer);
    r1_safetensors *file = NULL;
    R1T_CHECK(r1_safetensors_open(path, &file) == R1_OK, "open: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_count(file) == 0, "count %d", r1_safetensors_count(file));
    R1T_CHECK(r1_safetensors_info(file, 0) == NULL, "info(0) of an empty file");
    R1T_CHECK(r1_safetensors_find(file, "x", NULL, NULL) == R1_EINVAL, "find in an empty file");
    r1_safetensors_close(file);
}

static void test_writer_rejects(void) {
    if (!r1t_case("safetensors(writer,bad_arguments)")) return;
    r1_safetensors_writer *writer = NULL;
    R1T_CHECK(r1_safetensors_writer_create(NULL) == R1_EINVAL, "create(NULL)");
    r1_safetensors_writer_create(&writer);
    int64_t shape[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
    float data[4] = {1, 2, 3, 4};
    /* Each call in order (the first add makes the next one a duplicate). */
#define EXPECT_STATUS(call, expected_status, needle)                                          \
    do {                                                                                     \
        r1_status got_ = (call);                                                             \
        R1T_CHECK(got_ == (expected_status) && error_mentions(needle),                       \
                  "%s: got %s (%s), expected %s mentioning \"%s\"", #call,                  \
                  r1_status_str(got_), r1_last_error(), r1_status_str(expected_status), needle); \
    } while (0)
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_I4, 1, shape, data), R1_EUNSUPPORTED, "I4");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", (r1_dtype)99, 1, shape, data), R1_EINVAL, "99");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, 9, shape, data), R1_EINVAL, "rank 9");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, -1, shape, data), R1_EINVAL, "rank -1");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, 2, NULL, data), R1_EINVAL, "shape");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, 2, shape, NULL), R1_EINVAL, "data");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "", R1_F32, 2, shape, data), R1_EINVAL, "empty");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, NULL, R1_F32, 2, shape, data), R1_EINVAL, "name");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "__metadata__", R1_F32, 2, shape, data), R1_EINVAL,
                  "__metadata__");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "bad\xff", R1_F32, 2, shape, data), R1_EINVAL, "UTF-8");
    EXPECT_STATUS(r1_safetensors_writer_add(NULL, "q", R1_F32, 2, shape, data), R1_EINVAL, "writer");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, 2, shape, data), R1_OK, "");
    EXPECT_STATUS(r1_safetensors_writer_add(writer, "q", R1_F32, 2, shape, data), R1_EINVAL, "already");
    EXPECT_STATUS(r1_safetensors_writer_set_metadata(writer, "k", NULL), R1_EINVAL, "value");
    EXPECT_STATUS(r1_safetensors_writer_set_metadata(writer, "k\xc3", "v"), R1_EINVAL, "UTF-8");
    EXPECT_STATUS(r1_safetensors_writer_save(writer, NULL), R1_EINVAL, "path");
    EXPECT_STATUS(r1_safetensors_writer_save(writer, ""), R1_EINVAL, "path");
#undef EXPECT_STATUS
    /* Sentences are checked one call at a time (each call overwrites it). */
    R1T_CHECK(r1_safetensors_writer_add(writer, "q4", R1_I4, 1, shape, data) == R1_EUNSUPPORTED &&
                  error_mentions("I4") && error_mentions("\"q4\""), "i4 sentence: %s", r1_last_error());
    shape[0] = -3;
    R1T_CHECK(r1_safetensors_writer_add(writer, "neg", R1_F32, 1, shape, data) == R1_EINVAL &&
                  error_mentions("-3"), "negative shape sentence: %s", r1_last_error());
    int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 4};
    R1T_CHECK(r1_safetensors_writer_add(writer, "huge", R1_F32, 3, huge, data) == R1_EINVAL &&
                  error_mentions("huge"), "overflowing shape sentence: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_writer_add(writer, "q", R1_F32, 1, shape, data) != R1_OK,
              "duplicate accepted");
    int64_t zero[2] = {0, 5};
    R1T_CHECK(r1_safetensors_writer_add(writer, "none", R1_F32, 2, zero, NULL) == R1_OK,
              "zero-element tensor with NULL data: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_writer_add(writer, "scalar", R1_F64, 0, NULL, data) == R1_OK,
              "scalar with NULL shape: %s", r1_last_error());
    r1_safetensors_writer_free(writer);
    r1_safetensors_writer_free(NULL);
}

static void test_metadata_replace(void) {
    if (!r1t_case("safetensors(writer,metadata_replace)")) return;
    r1_safetensors_writer *writer = NULL;
    r1_safetensors_writer_create(&writer);
    r1_safetensors_writer_set_metadata(writer, "k", "first");
    r1_safetensors_writer_set_metadata(writer, "k", "second");
    r1_safetensors_writer_set_metadata(writer, "", "empty key");
    const char *path = temporary_path("metadata.safetensors");
    R1T_CHECK(r1_safetensors_writer_save(writer, path) == R1_OK, "save: %s", r1_last_error());
    r1_safetensors_writer_free(writer);
    r1_safetensors *file = NULL;
    R1T_CHECK(r1_safetensors_open(path, &file) == R1_OK, "open: %s", r1_last_error());
    const char *value = r1_safetensors_metadata(file, "k");
    R1T_CHECK(value && strcmp(value, "second") == 0, "k = %s", value ? value : "(null)");
    value = r1_safetensors_metadata(file, "");
    R1T_CHECK(value && strcmp(value, "empty key") == 0, "\"\" = %s", value ? value : "(null)");
    R1T_CHECK(r1_safetensors_metadata_count(file) == 2, "count %d", r1_safetensors_metadata_count(file));
    const char *key;
    R1T_CHECK(r1_safetensors_metadata_entry(file, 0, &key, &value) == R1_OK && strcmp(key, "k") == 0,
              "entry 0");
    R1T_CHECK(r1_safetensors_metadata_entry(file, 2, &key, &value) == R1_EINVAL, "entry 2");
    r1_safetensors_close(file);
}

/* Writes a one-tensor file whose single F32 value is `value`. */
static r1_status save_single_value(const char *path, float value) {
    r1_safetensors_writer *writer = NULL;
    r1_safetensors_writer_create(&writer);
    int64_t shape[1] = {1};
    r1_safetensors_writer_add(writer, "value", R1_F32, 1, shape, &value);
    r1_status status = r1_safetensors_writer_save(writer, path);
    r1_safetensors_writer_free(writer);
    return status;
}

static float read_single_value(const char *path) {
    r1_safetensors *file = NULL;
    const void *data = NULL;
    float value = -1.0f;
    if (r1_safetensors_open(path, &file) == R1_OK &&
        r1_safetensors_expect(file, "value", R1_F32, 1, &data) == R1_OK)
        value = *(const float *)data;
    r1_safetensors_close(file);
    return value;
}

static void test_atomic_save(void) {
    if (!r1t_case("safetensors(writer,atomic_save)")) return;
    char path[640], temporary[700];
    snprintf(path, sizeof path, "%s", temporary_path("atomic.safetensors"));
    snprintf(temporary, sizeof temporary, "%s.tmp", path);

    R1T_CHECK(save_single_value(path, 1.0f) == R1_OK, "first save: %s", r1_last_error());
    R1T_CHECK(save_single_value(path, 2.0f) == R1_OK, "save over it: %s", r1_last_error());
    R1T_CHECK(read_single_value(path) == 2.0f, "the second save did not replace the file");
    R1T_CHECK(access(temporary, F_OK) != 0, "%s left behind", temporary);

    /* path.tmp cannot be created (a directory is in the way): path stays whole. */
    R1T_CHECK(mkdir(temporary, 0700) == 0, "cannot mkdir %s", temporary);
    r1_status status = save_single_value(path, 3.0f);
    R1T_CHECK(status == R1_EIO && error_mentions(path), "blocked save: %s (%s)",
              r1_status_str(status), r1_last_error());
    R1T_CHECK(read_single_value(path) == 2.0f, "old file damaged by a failed save");
    struct stat info;
    R1T_CHECK(stat(temporary, &info) == 0 && S_ISDIR(info.st_mode),
              "a failed save removed a directory it did not create");
    rmdir(temporary);

    /* Writing fails half way (path.tmp leads to /dev/full): path stays whole
     * and the temporary is removed. */
    if (access("/dev/full", W_OK) == 0 && symlink("/dev/full", temporary) == 0) {
        status = save_single_value(path, 4.0f);
        R1T_CHECK(status == R1_EIO && error_mentions("unchanged"), "write to /dev/full: %s (%s)",
                  r1_status_str(status), r1_last_error());
        R1T_CHECK(read_single_value(path) == 2.0f, "old file damaged by a failed write");
        R1T_CHECK(access(temporary, F_OK) != 0 && unlink(temporary) != 0,
                  "the temporary file was left behind");
    }

    /* A directory that does not exist. */
    status = save_single_value(temporary_path("no/such/dir/x.safetensors"), 5.0f);
    R1T_CHECK(status == R1_EIO && error_mentions("no/such/dir"), "missing dir: %s (%s)",
              r1_status_str(status), r1_last_error());
}

static void test_open_errors(void) {
    if (!r1t_case("safetensors(open,missing_and_bad_arguments)")) return;
    r1_safetensors *file = (r1_safetensors *)1;
    const char *missing = temporary_path("does_not_exist.safetensors");
    R1T_CHECK(r1_safetensors_open(missing, &file) == R1_EIO && file == NULL, "missing file");
    R1T_CHECK(error_mentions("does_not_exist.safetensors") && error_mentions("No such file"),
              "sentence: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_open(temporary_directory, &file) == R1_EIO, "a directory: %s",
              r1_last_error());
    R1T_CHECK(r1_safetensors_open(NULL, &file) == R1_EINVAL, "NULL path");
    R1T_CHECK(r1_safetensors_open(missing, NULL) == R1_EINVAL, "NULL out");
    R1T_CHECK(r1_safetensors_parse(NULL, 5, &file) == R1_EINVAL, "NULL bytes");
    R1T_CHECK(r1_safetensors_parse(NULL, 0, &file) == R1_EFORMAT, "NULL bytes, size 0");
    R1T_CHECK(r1_safetensors_count(NULL) == 0, "count(NULL)");
    R1T_CHECK(r1_safetensors_info(NULL, 0) == NULL, "info(NULL)");
    R1T_CHECK(r1_safetensors_metadata(NULL, "k") == NULL, "metadata(NULL)");
    R1T_CHECK(r1_safetensors_find(NULL, "x", NULL, NULL) == R1_EINVAL, "find(NULL)");
    R1T_CHECK(r1_safetensors_metadata_count(NULL) == 0, "metadata_count(NULL)");
    r1_safetensors_close(NULL);
}

static void test_find_and_expect(void) {
    if (!r1t_case("safetensors(find,expect_sentences)")) return;
    r1_safetensors *file = check_accepted(
        "{\"logits\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"__metadata__\":{\"seed\":\"7\"}}", 24);
    if (file == NULL) return;
    const r1_tensor_info *info = NULL;
    const void *data = NULL;
    R1T_CHECK(r1_safetensors_find(file, "logits", &info, &data) == R1_OK && info && data,
              "find: %s", r1_last_error());
    R1T_CHECK(data && ((const unsigned char *)data)[5] == 5, "data pointer wrong");
    R1T_CHECK(r1_safetensors_find(file, "probs", &info, &data) == R1_EINVAL && info == NULL &&
                  data == NULL, "absent tensor");
    R1T_CHECK(error_mentions("\"probs\"") && error_mentions("<memory>"), "sentence: %s",
              r1_last_error());
    R1T_CHECK(r1_safetensors_expect(file, "logits", R1_F16, 6, &data) == R1_EFORMAT && data == NULL,
              "wrong dtype accepted");
    R1T_CHECK(error_mentions("F32") && error_mentions("F16") && error_mentions("logits"),
              "dtype sentence: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_expect(file, "logits", R1_F32, 5, &data) == R1_EFORMAT,
              "wrong count accepted");
    R1T_CHECK(error_mentions("6 elements") && error_mentions("[2, 3]") && error_mentions("5"),
              "count sentence: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_expect(file, "logits", R1_F32, 6, &data) == R1_OK && data,
              "expect: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_expect(file, "logits", R1_I4, 6, &data) == R1_EINVAL, "expect I4");
    R1T_CHECK(r1_safetensors_expect(file, "logits", R1_F32, -1, &data) == R1_EINVAL, "count -1");
    R1T_CHECK(r1_safetensors_info(file, -1) == NULL && r1_safetensors_info(file, 1) == NULL,
              "info out of range");
    r1_safetensors_close(file);
}

static void test_dtype_names(void) {
    if (!r1t_case("safetensors(dtype_names)")) return;
    const char *names[] = {"F32", "F16", "BF16", "F8_E4M3", "I8", "I32", "I64", "F64", "U8"};
    const r1_dtype dtypes[] = {R1_F32, R1_F16, R1_BF16, R1_F8E4M3, R1_I8,
                               R1_I32, R1_I64, R1_F64,  R1_U8};
    for (int i = 0; i < 9; ++i) {
        r1_dtype parsed = R1_I4;
        R1T_CHECK(r1_safetensors_dtype_parse(names[i], &parsed) == R1_OK && parsed == dtypes[i],
                  "parse %s", names[i]);
        const char *name = r1_safetensors_dtype_name(dtypes[i]);
        R1T_CHECK(name && strcmp(name, names[i]) == 0, "name of %d", (int)dtypes[i]);
    }
    r1_dtype parsed;
    R1T_CHECK(r1_safetensors_dtype_name(R1_I4) == NULL, "I4 has a name");
    R1T_CHECK(r1_safetensors_dtype_name((r1_dtype)42) == NULL, "42 has a name");
    R1T_CHECK(r1_safetensors_dtype_parse("BOOL", &parsed) == R1_EFORMAT && error_mentions("BOOL"),
              "BOOL: %s", r1_last_error());
    R1T_CHECK(r1_safetensors_dtype_parse(NULL, &parsed) == R1_EINVAL, "NULL name");
}

static void test_hand_made_file(void) {
    if (!r1t_case("safetensors(read,python_style_header)")) return;
    /* Formatted like json.dumps(indent=1) output, keys in another order, header
     * order unlike data order, a zero-size tensor, and an unpadded header. */
    r1_safetensors *file = check_accepted(
        "{\n \"b\": {\"data_offsets\": [8, 16], \"shape\": [2], \"dtype\": \"I32\"},\n"
        " \"__metadata__\": {\"format\": \"pt\"},\n"
        " \"a\": {\"shape\": [1], \"dtype\": \"F64\", \"data_offsets\": [0, 8]},\n"
        " \"z\": {\"dtype\": \"U8\", \"shape\": [0, 3], \"data_offsets\": [4, 4]}\n}  ", 16);
    if (file == NULL) return;
    R1T_CHECK(r1_safetensors_count(file) == 3, "count %d", r1_safetensors_count(file));
    const char *order[3] = {"a", "z", "b"}; /* by offset: 0, 4 (empty), 8 */
    for (int i = 0; i < 3 && i < r1_safetensors_count(file); ++i)
        R1T_CHECK(strcmp(r1_safetensors_info(file, i)->name, order[i]) == 0, "info %d is %s", i,
                  r1_safetensors_info(file, i)->name);
    const void *data = NULL;
    R1T_CHECK(r1_safetensors_expect(file, "b", R1_I32, 2, &data) == R1_OK, "%s", r1_last_error());
    if (data) {
        R1T_CHECK((uintptr_t)data % 8 == 0, "data not realigned for an unpadded header");
        R1T_CHECK(((const unsigned char *)data)[0] == 8 && ((const unsigned char *)data)[7] == 15,
                  "data of b is wrong");
    }
    const char *format = r1_safetensors_metadata(file, "format");
    R1T_CHECK(format && strcmp(format, "pt") == 0, "metadata format = %s", format ? format : "(null)");
    r1_safetensors_close(file);

    /* Header lengths of every remainder mod 8: data always arrives aligned and intact. */
    for (int pad = 0; pad < 8; ++pad) {
        char header[128];
        snprintf(header, sizeof header,
                 "{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}%*s", pad, "");
        file = check_accepted(header, 16);
        R1T_CHECK(r1_safetensors_find(file, "x", NULL, &data) == R1_OK && (uintptr_t)data % 8 == 0 &&
                      ((const unsigned char *)data)[15] == 15, "pad %d", pad);
        r1_safetensors_close(file);
    }
}

#define T_F32_4 "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"

static void test_malformed_headers(void) {
    if (r1t_case("safetensors(malformed,short_file)")) {
        for (size_t size = 0; size < 8; ++size) {
            unsigned char bytes[8] = {2, 0, 0, 0, 0, 0, 0, 0};
            r1_safetensors *file = NULL;
            R1T_CHECK(r1_safetensors_parse(bytes, size, &file) == R1_EFORMAT &&
                          error_mentions("shorter than"), "size %zu: %s", size, r1_last_error());
        }
    }

    if (r1t_case("safetensors(malformed,header_length)")) {
        unsigned char bytes[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
        r1_safetensors *file = NULL;
        R1T_CHECK(r1_safetensors_parse(bytes, 10, &file) == R1_EFORMAT &&
                      error_mentions("larger than"), "length 200 of 10: %s", r1_last_error());
        unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
        R1T_CHECK(r1_safetensors_parse(huge, 10, &file) == R1_EFORMAT && error_mentions("limit"),
                  "length 2^63: %s", r1_last_error());
        unsigned char over[16] = {0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100000001 */
        R1T_CHECK(r1_safetensors_parse(over, 10, &file) == R1_EFORMAT && error_mentions("limit"),
                  "length 1e8+1: %s", r1_last_error());
        unsigned char zero[8] = {0};
        R1T_CHECK(r1_safetensors_parse(zero, 8, &file) == R1_EFORMAT && error_mentions("JSON"),
                  "empty header: %s", r1_last_error());
    }
    if (r1t_case("safetensors(malformed,header_json)")) {
        check_rejected("{\"a\":", 0, NULL, "not valid JSON");
        check_rejected("not json", 0, NULL, "not valid JSON");
        check_rejected("[1, 2]", 0, NULL, "array, not an object");
        check_rejected("\"text\"", 0, NULL, "string, not an object");
        check_rejected("{} {}", 0, NULL, "after its JSON object");
        check_rejected("{}x", 0, NULL, "after its JSON object");
        r1_safetensors *file = check_accepted("{\"a\":" T_F32_4 "}\n\n\n \t", 4); /* whitespace padding */
        r1_safetensors_close(file);
    }
    if (r1t_case("safetensors(malformed,header_json_nul)")) {
        /* A NUL byte inside the header. */
        unsigned char bytes[24] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '\0', '}', ' '};
        r1_safetensors *file = NULL;
        R1T_CHECK(r1_safetensors_parse(bytes, 12, &file) == R1_EFORMAT &&
                      error_mentions("NUL byte at byte 1"), "NUL in header: %s", r1_last_error());
        unsigned char after[24] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', '\0', ' '};
        R1T_CHECK(r1_safetensors_parse(after, 12, &file) == R1_EFORMAT &&
                      error_mentions("NUL byte at byte 2"), "NUL padding: %s", r1_last_error());
    }
    if (r1t_case("safetensors(malformed,tensor_entry)")) {
        check_rejected("{\"w\": 5}", 0, "w", "number, not an object");
        check_rejected("{\"w\": [1]}", 0, "w", "array, not an object");
        check_rejected("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w", "no \"dtype\"");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "w", "no \"shape\"");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "w", "no \"data_offsets\"");
        check_rejected("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w",
                       "\"dtype\" that is a JSON number");
        check_rejected("{\"w\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "w",
                       "\"BOOL\"");
        check_rejected("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w",
                       "\"f32\"");
    }
    if (r1t_case("safetensors(malformed,shape)")) {
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, "w",
                       "\"shape\" that is a JSON number");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,16]}}", 16, "w",
                       "not an array");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16, "w",
                       "shape[0] = -4");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,20]}}", 20, "w",
                       "shape[1] = 2.5");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", 16, "w",
                       "shape[0] = a JSON string");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,16]}}", 16, "w",
                       "a JSON null");
        check_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
                       1, "w", "rank 9");
        /* 2^53 + 1 would round to 2^53 as a double: refused, not rounded. */
        check_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740993,0],\"data_offsets\":[0,0]}}",
                       0, "w", "below 2^53");
        check_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740992,0],\"data_offsets\":[0,0]}}",
                       0, "w", "below 2^53");
        check_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,0]}}", 0, "w",
                       "shape[0]");
        check_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e999],\"data_offsets\":[0,0]}}", 0, "w",
                       "shape[0]");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                       "\"data_offsets\":[0,0]}}", 0, "w", "overflows");
        check_rejected("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824,4],"
                       "\"data_offsets\":[0,0]}}", 0, "w", "overflows"); /* bytes overflow */
        /* A zero extent makes the count 0 whatever the others are. */
        r1_safetensors *file = check_accepted(
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[9007199254740991,9007199254740991,0],"
            "\"data_offsets\":[0,0]}}", 0);
        r1_safetensors_close(file);
        file = check_accepted("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0e0],\"data_offsets\":[0,8]}}", 8);
        r1_safetensors_close(file);
    }
    if (r1t_case("safetensors(malformed,data_offsets)")) {
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}", 4, "w",
                       "two integers");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "w",
                       "two integers");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "w",
                       "two integers");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "w",
                       "data_offsets[0] = -4");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 8, "w",
                       "data_offsets[1] = 4.5");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, "w",
                       "data_offsets[1] = a JSON string");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "w",
                       "begin after end");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, "w",
                       "beyond the data section of 12 bytes");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,"
                       "9007199254740993]}}", 4, "w", "data_offsets[1]");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "w",
                       "needs 12 bytes");
        check_rejected("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "w",
                       "holds 16 bytes");
        check_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, "w",
                       "not a multiple of its element size 4");
    }
    if (r1t_case("safetensors(malformed,overlap_and_duplicates)")) {
        check_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "b",
                       "overlap those of tensor \"a\"");
        check_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                       "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16, NULL,
                       "overlap those of tensor \"a\"");
        check_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "a",
                       "appears twice");
        check_rejected("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, NULL,
                       "overlap");
        /* Touching ranges and empty tensors inside others are fine. */
        r1_safetensors *file = check_accepted(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
        R1T_CHECK(r1_safetensors_count(file) == 3, "count %d", r1_safetensors_count(file));
        r1_safetensors_close(file);
    }
    if (r1t_case("safetensors(malformed,metadata)")) {
        check_rejected("{\"__metadata__\":[1]}", 0, NULL, "\"__metadata__\" is a JSON array");
        check_rejected("{\"__metadata__\":\"x\"}", 0, NULL, "not an object of strings");
        check_rejected("{\"__metadata__\":{\"seed\":7}}", 0, NULL, "value of \"seed\" is a JSON number");
        check_rejected("{\"__metadata__\":{\"k\":null}}", 0, NULL, "\"k\" is a JSON null");
        check_rejected("{\"__metadata__\":{\"k\":{}}}", 0, NULL, "not a string");
        check_rejected("{\"__metadata__\":{},\"__metadata__\":{}}", 0, NULL, "twice");
        check_rejected("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, NULL, "key \"k\" appears twice");
        r1_safetensors *file = check_accepted("{\"__metadata__\":{}}", 0);
        R1T_CHECK(r1_safetensors_metadata_count(file) == 0, "empty metadata");
        r1_safetensors_close(file);
    }
}

/* A small valid file made by the writer (2 tensors, metadata). */
static unsigned char *small_valid_file(size_t *size) {
    r1_safetensors_writer *writer = NULL;
    r1_safetensors_writer_create(&writer);
    float a[3] = {1, 2, 3};
    int64_t b[2] = {-1, 1};
    int64_t shape_a[1] = {3}, shape_b[2] = {1, 2};
    r1_safetensors_writer_add(writer, "a", R1_F32, 1, shape_a, a);
    r1_safetensors_writer_add(writer, "b", R1_I64, 2, shape_b, b);
    r1_safetensors_writer_set_metadata(writer, "k", "v");
    char path[640];
    snprintf(path, sizeof path, "%s", temporary_path("small.safetensors"));
    r1_safetensors_writer_save(writer, path);
    r1_safetensors_writer_free(writer);
    return read_bytes(path, size);
}

static void test_truncated_files(void) {
    if (!r1t_case("safetensors(truncated,every_prefix)")) return;
    size_t size = 0;
    unsigned char *bytes = small_valid_file(&size);
    R1T_CHECK(bytes != NULL && size > 8, "cannot make the small file");
    if (bytes == NULL) return;
    r1_safetensors *file = NULL;
    R1T_CHECK(r1_safetensors_parse(bytes, size, &file) == R1_OK, "whole file: %s", r1_last_error());
    r1_safetensors_close(file);
    int failures = 0;
    for (size_t length = 0; length < size; ++length) {
        /* An exact-size copy, so that AddressSanitizer sees any over-read. */
        unsigned char *prefix = malloc(length ? length : 1);
        memcpy(prefix, bytes, length);
        file = NULL;
        r1_status status = r1_safetensors_parse(prefix, length, &file);
        if (status != R1_EFORMAT || file != NULL || r1_last_error()[0] == '\0') {
            if (failures++ < 4)
                R1T_CHECK(0, "prefix of %zu of %zu bytes: %s (%s)", length, size,
                          r1_status_str(status), r1_last_error());
            r1_safetensors_close(file);
        }
        free(prefix);
    }
    R1T_CHECK(failures == 0, "%d prefixes were not rejected with R1_EFORMAT", failures);

    /* The same through the file path, for a few lengths. */
    const char *path = temporary_path("truncated.safetensors");
    size_t lengths[] = {0, 7, 8, 9, size / 2, size - 1};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; ++i) {
        write_bytes(path, bytes, lengths[i]);
        file = NULL;
        R1T_CHECK(r1_safetensors_open(path, &file) == R1_EFORMAT && file == NULL &&
                      error_mentions("truncated.safetensors"),
                  "open prefix %zu: %s", lengths[i], r1_last_error());
    }
    free(bytes);
}

static void test_random_corruption(void) {
    if (!r1t_case("safetensors(corrupted,random_bytes)")) return;
    size_t size = 0;
    unsigned char *bytes = small_valid_file(&size);
    if (bytes == NULL) return;
    r1t_rng rng = r1t_rng_make(r1t_seed());
    int accepted = 0, rejected = 0, bad_status = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        unsigned char *copy = malloc(size);
        memcpy(copy, bytes, size);
        int flips = (int)r1t_rng_range(&rng, 1, 4);
        for (int f = 0; f < flips; ++f) {
            size_t where = (size_t)r1t_rng_range(&rng, 0, (int64_t)size - 1);
            copy[where] = (unsigned char)r1t_rng_u64(&rng);
        }
        r1_safetensors *file = NULL;
        r1_status status = r1_safetensors_parse(copy, size, &file);
        free(copy); /* parse copied it: the reader must not need it */
        if (status == R1_OK) {
            ++accepted;
            for (int i = 0; i < r1_safetensors_count(file); ++i) { /* touch every byte */
                const r1_tensor_info *info = r1_safetensors_info(file, i);
                const void *data = NULL;
                if (r1_safetensors_find(file, info->name, NULL, &data) != R1_OK) ++bad_status;
                unsigned sum = 0;
                for (uint64_t b = 0; b < info->bytes; ++b) sum += ((const unsigned char *)data)[b];
                (void)sum;
            }
            r1_safetensors_close(file);
        } else if (status == R1_EFORMAT && file == NULL) {
            ++rejected;
        } else {
            ++bad_status;
        }
    }
    R1T_CHECK(bad_status == 0, "%d corruptions gave a status other than R1_OK / R1_EFORMAT",
              bad_status);
    R1T_CHECK(accepted + rejected == 20000, "accepted %d + rejected %d", accepted, rejected);
    free(bytes);
}

/* ---- jsonl ------------------------------------------------------------------------ */

typedef struct expected_line {
    const char *text;   /* NULL: end of input */
    int64_t number;
} expected_line;

/* Reads `input` line by line and compares with `expected` (ends with text NULL). */
static void check_lines(const char *what, const char *input, size_t length,
                        const expected_line *expected) {
    r1_jsonl_reader *reader = NULL;
    R1T_CHECK(r1_jsonl_open_memory(input, length, &reader) == R1_OK, "%s: open: %s", what,
              r1_last_error());
    if (reader == NULL) return;
    for (int i = 0;; ++i) {
        const char *line = (const char *)1;
        size_t line_length = 99;
        int64_t number = -1;
        r1_status status = r1_jsonl_next_line(reader, &line, &line_length, &number);
        R1T_CHECK(status == R1_OK, "%s: line %d: %s", what, i, r1_last_error());
        if (expected[i].text == NULL) {
            R1T_CHECK(line == NULL && line_length == 0, "%s: expected the end, got \"%s\"", what,
                      line ? line : "");
            break;
        }
        R1T_CHECK(line && strcmp(line, expected[i].text) == 0, "%s: line %d is \"%s\", expected \"%s\"",
                  what, i, line ? line : "(end)", expected[i].text);
        R1T_CHECK(line_length == strlen(expected[i].text), "%s: length %zu", what, line_length);
        R1T_CHECK(number == expected[i].number, "%s: line number %lld, expected %lld", what,
                  (long long)number, (long long)expected[i].number);
        if (line == NULL) break;
    }
    /* The end stays the end. */
    const char *line = (const char *)1;
    R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, NULL) == R1_OK && line == NULL,
              "%s: a call after the end returned a line", what);
    r1_jsonl_close(reader);
}

static void test_jsonl_lines(void) {
    if (r1t_case("jsonl(lines,basic)")) {
        const char *input = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        expected_line expected[] = {{"{\"a\":1}", 1}, {"{\"a\":2}", 2}, {"{\"a\":3}", 3}, {NULL, 0}};
        check_lines("basic", input, strlen(input), expected);
    }
    if (r1t_case("jsonl(lines,crlf)")) {
        const char *input = "{\"a\":1}\r\n{\"a\":\"x\ry\"}\r\n\r\n";
        expected_line expected[] = {{"{\"a\":1}", 1}, {"{\"a\":\"x\ry\"}", 2}, {NULL, 0}};
        check_lines("crlf", input, strlen(input), expected);
    }
    if (r1t_case("jsonl(lines,blank_lines)")) {
        const char *input = "\n\n{\"a\":1}\n   \n\t\r\n{\"a\":2}\n\n";
        expected_line expected[] = {{"{\"a\":1}", 3}, {"{\"a\":2}", 6}, {NULL, 0}};
        check_lines("blank", input, strlen(input), expected);
    }
    if (r1t_case("jsonl(lines,no_final_newline)")) {
        const char *input = "{\"a\":1}\n{\"b\":2}";
        expected_line expected[] = {{"{\"a\":1}", 1}, {"{\"b\":2}", 2}, {NULL, 0}};
        check_lines("no final newline", input, strlen(input), expected);
        const char *crlf = "x\r\ny\r";
        expected_line expected_crlf[] = {{"x", 1}, {"y", 2}, {NULL, 0}};
        check_lines("no final newline, cr", crlf, strlen(crlf), expected_crlf);
    }
    if (r1t_case("jsonl(lines,empty_inputs)")) {
        expected_line none[] = {{NULL, 0}};
        check_lines("empty", "", 0, none);
        check_lines("NULL text, length 0", NULL, 0, none);
        check_lines("only newlines", "\n\r\n \n", 5, none);
        r1_jsonl_reader *reader = NULL;
        R1T_CHECK(r1_jsonl_open_memory(NULL, 3, &reader) == R1_EINVAL && reader == NULL,
                  "NULL text with length 3");
        R1T_CHECK(r1_jsonl_open_memory("x", 1, NULL) == R1_EINVAL, "NULL out");
        R1T_CHECK(r1_jsonl_open(NULL, &reader) == R1_EINVAL, "NULL path");
        const char *line;
        R1T_CHECK(r1_jsonl_next_line(NULL, &line, NULL, NULL) == R1_EINVAL, "NULL reader");
        cJSON *object;
        R1T_CHECK(r1_jsonl_next_object(NULL, &object, NULL) == R1_EINVAL && object == NULL,
                  "NULL reader (object)");
        r1_jsonl_close(NULL);
    }
    if (r1t_case("jsonl(lines,nul_byte)")) {
        const char input[] = "{\"a\":1}\n{\"b\0\":2}\n{\"c\":3}\n";
        r1_jsonl_reader *reader = NULL;
        r1_jsonl_open_memory(input, sizeof input - 1, &reader);
        const char *line;
        int64_t number = 0;
        R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, &number) == R1_OK && number == 1, "line 1");
        R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, &number) == R1_EFORMAT && line == NULL &&
                      number == 2, "NUL line accepted");
        R1T_CHECK(error_mentions("<memory>:2:") && error_mentions("NUL") && error_mentions("column 4"),
                  "sentence: %s", r1_last_error());
        R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, &number) == R1_OK && line &&
                      strcmp(line, "{\"c\":3}") == 0 && number == 3, "line after the NUL line");
        r1_jsonl_close(reader);
    }
}

static void test_jsonl_objects(void) {
    if (!r1t_case("jsonl(objects,malformed_lines_and_continue)")) return;
    const char *input =
        "{\"id\":1,\"text\":\"ok\"}\n"      /* 1 */
        "{\"id\":2,\"text\":\n"             /* 2: cut short */
        "\n"                                /* 3: blank */
        "[1,2,3]\n"                         /* 4: an array */
        "42\n"                              /* 5: a number */
        "{\"id\":6} {\"id\":7}\n"           /* 6: two objects */
        "{\"id\":8}   \r\n"                 /* 7: fine, trailing spaces */
        "not json at all\n"                 /* 8 */
        "{\"id\":9,\"nested\":{\"a\":[1,{}]}}"; /* 9: fine, no newline */
    struct {
        r1_status status;
        int64_t number;
        int id;                 /* for R1_OK */
        const char *needle;     /* for R1_EFORMAT */
    } expected[] = {
        {R1_OK, 1, 1, NULL},
        {R1_EFORMAT, 2, 0, "<memory>:2: not valid JSON"},
        {R1_EFORMAT, 4, 0, "<memory>:4: the line is a JSON array, not an object"},
        {R1_EFORMAT, 5, 0, "<memory>:5: the line is a JSON number"},
        {R1_EFORMAT, 6, 0, "<memory>:6: text after the JSON value at column 10"},
        {R1_OK, 7, 8, NULL},
        {R1_EFORMAT, 8, 0, "<memory>:8: not valid JSON"},
        {R1_OK, 9, 9, NULL},
    };
    r1_jsonl_reader *reader = NULL;
    r1_jsonl_open_memory(input, strlen(input), &reader);
    int bad_lines = 0;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; ++i) {
        cJSON *object = (cJSON *)1;
        int64_t number = -1;
        r1_status status = r1_jsonl_next_object(reader, &object, &number);
        R1T_CHECK(status == expected[i].status, "line %lld: status %s (%s)", (long long)number,
                  r1_status_str(status), r1_last_error());
        R1T_CHECK(number == expected[i].number, "line number %lld, expected %lld", (long long)number,
                  (long long)expected[i].number);
        if (status == R1_OK && object) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(object, "id");
            R1T_CHECK(cJSON_IsNumber(id) && id->valueint == expected[i].id, "line %lld: id",
                      (long long)number);
            cJSON_Delete(object);
        } else {
            ++bad_lines;
            R1T_CHECK(object == NULL, "object not NULL on failure");
            R1T_CHECK(expected[i].needle && error_mentions(expected[i].needle),
                      "sentence \"%s\" should hold \"%s\"", r1_last_error(),
                      expected[i].needle ? expected[i].needle : "");
        }
    }
    R1T_CHECK(bad_lines == 5, "%d bad lines counted, expected 5", bad_lines);
    cJSON *object = (cJSON *)1;
    R1T_CHECK(r1_jsonl_next_object(reader, &object, NULL) == R1_OK && object == NULL, "end");
    R1T_CHECK(r1_jsonl_next_object(reader, NULL, NULL) == R1_EINVAL, "NULL object");
    r1_jsonl_close(reader);
}

/* A line {"id":N,"text":"xxxx..."} of exactly `length` bytes (length >= 32). */
static char *long_object_line(size_t length, int id) {
    char *line = malloc(length + 1);
    int prefix = snprintf(line, length + 1, "{\"id\":%d,\"text\":\"", id);
    for (size_t i = (size_t)prefix; i < length - 2; ++i) line[i] = (char)('a' + i % 26);
    line[length - 2] = '"';
    line[length - 1] = '}';
    line[length] = '\0';
    return line;
}

static void test_jsonl_long_lines(void) {
    if (r1t_case("jsonl(long_line,memory,1.5MB)")) {
        size_t length = 1536 * 1024;
        char *big = long_object_line(length, 1);
        size_t total = length + 20;
        char *input = malloc(total + 1);
        snprintf(input, total + 1, "%s\n{\"id\":2}\n", big);
        r1_jsonl_reader *reader = NULL;
        r1_jsonl_open_memory(input, strlen(input), &reader);
        const char *line;
        size_t line_length;
        int64_t number;
        R1T_CHECK(r1_jsonl_next_line(reader, &line, &line_length, &number) == R1_OK && line &&
                      line_length == length && number == 1 && memcmp(line, big, length) == 0,
                  "long line wrong: %s", r1_last_error());
        cJSON *object = NULL;
        R1T_CHECK(r1_jsonl_next_object(reader, &object, &number) == R1_OK && object && number == 2,
                  "line after the long line: %s", r1_last_error());
        cJSON_Delete(object);
        r1_jsonl_close(reader);
        free(input);
        free(big);
    }
    if (r1t_case("jsonl(long_line,file,12MB)")) {
        const char *path = temporary_path("long.jsonl");
        size_t length = 12 * 1024 * 1024 + 7;
        char *big = long_object_line(length, 2);
        FILE *stream = fopen(path, "wb");
        fprintf(stream, "{\"id\":1}\r\n\r\n");
        fwrite(big, 1, length, stream);
        fprintf(stream, "\r\n{\"id\":3}");
        fclose(stream);
        r1_jsonl_reader *reader = NULL;
        R1T_CHECK(r1_jsonl_open(path, &reader) == R1_OK, "open: %s", r1_last_error());
        R1T_CHECK(strcmp(r1_jsonl_path(reader), path) == 0, "path %s", r1_jsonl_path(reader));
        int ids[3] = {0, 0, 0};
        int64_t numbers[3] = {0, 0, 0};
        for (int i = 0; i < 3 && reader; ++i) {
            cJSON *object = NULL;
            R1T_CHECK(r1_jsonl_next_object(reader, &object, &numbers[i]) == R1_OK && object,
                      "object %d: %s", i, r1_last_error());
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(object, "id");
            if (cJSON_IsNumber(id)) ids[i] = id->valueint;
            if (i == 1) {
                const cJSON *text = cJSON_GetObjectItemCaseSensitive(object, "text");
                R1T_CHECK(cJSON_IsString(text) && strlen(text->valuestring) == length - 18,
                          "long text has the wrong length");
            }
            cJSON_Delete(object);
        }
        R1T_CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3, "ids %d %d %d", ids[0], ids[1], ids[2]);
        R1T_CHECK(numbers[0] == 1 && numbers[1] == 3 && numbers[2] == 4, "numbers %lld %lld %lld",
                  (long long)numbers[0], (long long)numbers[1], (long long)numbers[2]);
        cJSON *object = (cJSON *)1;
        R1T_CHECK(r1_jsonl_next_object(reader, &object, NULL) == R1_OK && object == NULL, "end");
        r1_jsonl_close(reader);
        free(big);
    }
}

static void test_jsonl_files(void) {
    if (r1t_case("jsonl(file,chunk_boundaries)")) {
        /* Lines whose "\r\n" straddles the 64 KiB read chunks, checked against
         * the same text read from memory. */
        const char *path = temporary_path("chunks.jsonl");
        size_t total = 3 * 65536 + 100;
        char *text = malloc(total);
        size_t used = 0;
        int lines = 0;
        r1t_rng rng = r1t_rng_make(r1t_seed());
        while (used < total - 40) {
            size_t length = (size_t)r1t_rng_range(&rng, 0, 20000);
            if (lines == 0) length = 65535 - 1; /* first "\r" at byte 65534, "\n" at 65535 */
            if (lines == 1) length = 0;
            if (used + length + 2 > total) length = total - used - 2;
            for (size_t i = 0; i < length; ++i) text[used + i] = (char)('A' + (used + i) % 26);
            used += length;
            text[used++] = '\r';
            text[used++] = '\n';
            ++lines;
        }
        write_bytes(path, text, used);
        r1_jsonl_reader *from_file = NULL, *from_memory = NULL;
        r1_jsonl_open(path, &from_file);
        r1_jsonl_open_memory(text, used, &from_memory);
        int compared = 0, differences = 0;
        for (;;) {
            const char *a, *b;
            size_t length_a, length_b;
            int64_t number_a, number_b;
            r1_status status_a = r1_jsonl_next_line(from_file, &a, &length_a, &number_a);
            r1_status status_b = r1_jsonl_next_line(from_memory, &b, &length_b, &number_b);
            if (status_a != R1_OK || status_b != R1_OK) { ++differences; break; }
            if ((a == NULL) != (b == NULL)) { ++differences; break; }
            if (a == NULL) break;
            if (length_a != length_b || memcmp(a, b, length_a) != 0 || number_a != number_b ||
                memchr(a, '\r', length_a))
                ++differences;
            ++compared;
        }
        R1T_CHECK(differences == 0, "file and memory readers differ (%d)", differences);
        R1T_CHECK(compared > 3, "only %d lines compared", compared);
        r1_jsonl_close(from_file);
        r1_jsonl_close(from_memory);
        free(text);
    }
    if (r1t_case("jsonl(file,errors_name_the_path)")) {
        const char *missing = temporary_path("missing.jsonl");
        r1_jsonl_reader *reader = (r1_jsonl_reader *)1;
        R1T_CHECK(r1_jsonl_open(missing, &reader) == R1_EIO && reader == NULL, "missing file");
        R1T_CHECK(error_mentions("missing.jsonl") && error_mentions("No such file"), "sentence: %s",
                  r1_last_error());

        char path[640];
        snprintf(path, sizeof path, "%s", temporary_path("bad.jsonl"));
        const char *text = "{\"a\":1}\n{oops}\n";
        write_bytes(path, text, strlen(text));
        r1_jsonl_open(path, &reader);
        cJSON *object = NULL;
        r1_jsonl_next_object(reader, &object, NULL);
        cJSON_Delete(object);
        char needle[700];
        snprintf(needle, sizeof needle, "%s:2:", path);
        R1T_CHECK(r1_jsonl_next_object(reader, &object, NULL) == R1_EFORMAT && error_mentions(needle),
                  "sentence \"%s\" should hold \"%s\"", r1_last_error(), needle);
        r1_jsonl_close(reader);

        /* A directory opens on Linux but cannot be read: R1_EIO, then R1_EIO again. */
        reader = NULL;
        r1_status status = r1_jsonl_open(temporary_directory, &reader);
        if (status == R1_OK) {
            const char *line = NULL;
            R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, NULL) == R1_EIO && line == NULL,
                      "reading a directory: %s", r1_last_error());
            R1T_CHECK(r1_jsonl_next_line(reader, &line, NULL, NULL) == R1_EIO, "reader not broken");
            r1_jsonl_close(reader);
        } else {
            R1T_CHECK(status == R1_EIO, "opening a directory: %s", r1_status_str(status));
        }
    }
}

/* Removes the files the tests made and the directory. */
static void remove_temporary_files(void) {
    const char *names[] = {"round_trip.safetensors", "values.safetensors", "empty.safetensors",
                           "metadata.safetensors", "atomic.safetensors", "small.safetensors",
                           "truncated.safetensors", "long.jsonl", "chunks.jsonl", "bad.jsonl"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) unlink(temporary_path(names[i]));
    rmdir(temporary_directory);
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "io");
    make_temporary_directory();
    test_round_trip();
    test_values_survive();
    test_empty_file();
    test_writer_rejects();
    test_metadata_replace();
    test_atomic_save();
    test_open_errors();
    test_find_and_expect();
    test_dtype_names();
    test_hand_made_file();
    test_malformed_headers();
    test_truncated_files();
    test_random_corruption();
    test_jsonl_lines();
    test_jsonl_objects();
    test_jsonl_long_lines();
    test_jsonl_files();
    remove_temporary_files();
    return r1t_end();
}
