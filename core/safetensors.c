/*
 * core/safetensors.c — the safetensors reader and writer (golden files).
 *
 * A file is: N (8 bytes, little-endian), N bytes of JSON header, then the data
 * section. The header maps each tensor name to
 *     {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * with [begin, end) relative to the data section, plus an optional
 * "__metadata__" object whose values are strings.
 *
 * Reading keeps the whole file in one buffer; after the header is parsed (with
 * cJSON) and every rule is checked, the data section is moved down to an
 * address aligned for any element type, so the data pointers handed out can be
 * cast to float *, int64_t *, ... Checks are listed in docs/io.md; each failure
 * is R1_EFORMAT with a sentence "PATH: tensor "NAME" <problem>".
 *
 * JSON numbers arrive as doubles, so every integer (shape entry, offset) must
 * be integral and at most 2^53 - 1, where a double is still exact; all size
 * arithmetic is done in uint64_t with overflow checks.
 *
 * Writing builds the header text itself (integers printed as integers, names
 * escaped), pads it with spaces so the data section starts at a multiple of 8,
 * and saves through "path.tmp" + rename() so `path` is never half-written.
 */
#define _POSIX_C_SOURCE 200809L /* fileno(), fstat(), fsync() */

#include "r1lab/safetensors.h"

#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* Tensor bytes are host memory, copied to and from the file unchanged. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "r1lab safetensors I/O copies tensors as host memory: it needs a little-endian host"
#endif
_Static_assert(_Alignof(max_align_t) >= 8, "malloc must align 8-byte elements");

/* The largest integer a double (what cJSON stores) holds exactly: 2^53 - 1. */
#define LARGEST_EXACT_INTEGER 9007199254740991ull
#define MEMORY_LABEL "<memory>"

/* ---- dtypes -------------------------------------------------------------------- */

typedef struct dtype_entry {
    r1_dtype dtype;
    const char *name;   /* as written in the header */
    unsigned element_bytes;
} dtype_entry;

static const dtype_entry dtype_table[] = {
    {R1_F32, "F32", 4},         {R1_F16, "F16", 2}, {R1_BF16, "BF16", 2},
    {R1_F8E4M3, "F8_E4M3", 1},  {R1_I8, "I8", 1},   {R1_I32, "I32", 4},
    {R1_I64, "I64", 8},         {R1_F64, "F64", 8}, {R1_U8, "U8", 1},
};
#define DTYPE_TABLE_SIZE ((int)(sizeof dtype_table / sizeof dtype_table[0]))
#define DTYPE_LIST "F32, F16, BF16, F8_E4M3, I8, I32, I64, F64, U8"

static const dtype_entry *dtype_entry_of(r1_dtype dtype) {
    for (int i = 0; i < DTYPE_TABLE_SIZE; ++i)
        if (dtype_table[i].dtype == dtype) return &dtype_table[i];
    return NULL;
}

const char *r1_safetensors_dtype_name(r1_dtype dtype) {
    const dtype_entry *entry = dtype_entry_of(dtype);
    return entry ? entry->name : NULL;
}

r1_status r1_safetensors_dtype_parse(const char *name, r1_dtype *dtype) {
    if (name == NULL || dtype == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_dtype_parse: name and dtype must not be NULL");
    for (int i = 0; i < DTYPE_TABLE_SIZE; ++i) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *dtype = dtype_table[i].dtype;
            return R1_OK;
        }
    }
    return r1_fail(R1_EFORMAT, "dtype \"%.40s\" is not one r1lab reads (" DTYPE_LIST ")", name);
}

/* A readable name for messages, also for values without a safetensors name. */
static const char *dtype_label(r1_dtype dtype) {
    const char *name = r1_safetensors_dtype_name(dtype);
    if (name) return name;
    return dtype == R1_I4 ? "I4" : "an unknown dtype";
}

/* ---- small helpers ------------------------------------------------------------ */

static char *copy_string(const char *text) {
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy) memcpy(copy, text, length + 1);
    return copy;
}

static uint64_t read_le64(const unsigned char *bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
    return value;
}

static void write_le64(unsigned char *bytes, uint64_t value) {
    for (int i = 0; i < 8; ++i) bytes[i] = (unsigned char)(value >> (8 * i));
}

/* Number of elements of a shape; 0 when the product overflows uint64_t (then
 * *overflow is set). A shape holding a 0 has 0 elements, whatever the rest. */
static uint64_t element_count(const int64_t *shape, int rank, int *overflow) {
    *overflow = 0;
    for (int d = 0; d < rank; ++d)
        if (shape[d] == 0) return 0;
    uint64_t count = 1;
    for (int d = 0; d < rank; ++d) {
        uint64_t extent = (uint64_t)shape[d];
        if (count > UINT64_MAX / extent) {
            *overflow = 1;
            return 0;
        }
        count *= extent;
    }
    return count;
}

/* "[2, 3, 4]" into `text` (truncated to fit). */
static const char *format_shape(char *text, size_t size, const int64_t *shape, int rank) {
    size_t used = (size_t)snprintf(text, size, "[");
    for (int d = 0; d < rank && used < size; ++d)
        used += (size_t)snprintf(text + used, size - used, "%s%lld", d ? ", " : "",
                                 (long long)shape[d]);
    if (used < size) snprintf(text + used, size - used, "]");
    return text;
}


/* 1 when `item` is a JSON number holding an integer in [0, 2^53 - 1]. */
static int read_exact_integer(const cJSON *item, uint64_t *value) {
    if (!cJSON_IsNumber(item)) return 0;
    double number = item->valuedouble;
    if (!isfinite(number) || number < 0.0 || number > (double)LARGEST_EXACT_INTEGER ||
        number != floor(number))
        return 0;
    *value = (uint64_t)number;
    return 1;
}

/* "-3" or "a JSON string": what a bad integer field held, for messages. */
static const char *describe_value(const cJSON *item, char *text, size_t size) {
    if (cJSON_IsNumber(item)) snprintf(text, size, "%.17g", item->valuedouble);
    else snprintf(text, size, "a JSON %s", r1_json_type_name(item));
    return text;
}

/* Returns the first name that occurs twice in `names` (sorted in place), or NULL. */
static int compare_name_pointers(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
static const char *sort_and_find_duplicate(const char **names, int count) {
    if (count < 2) return NULL;
    qsort(names, (size_t)count, sizeof names[0], compare_name_pointers);
    for (int i = 1; i < count; ++i)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* 1 when `text` is valid UTF-8 (what JSON readers such as Python's demand). */
static int is_valid_utf8(const char *text) {
    const unsigned char *byte = (const unsigned char *)text;
    while (*byte) {
        int following;
        uint32_t code;
        if (byte[0] < 0x80) { ++byte; continue; }
        if ((byte[0] & 0xE0) == 0xC0) { following = 1; code = byte[0] & 0x1Fu; }
        else if ((byte[0] & 0xF0) == 0xE0) { following = 2; code = byte[0] & 0x0Fu; }
        else if ((byte[0] & 0xF8) == 0xF0) { following = 3; code = byte[0] & 0x07u; }
        else return 0;
        for (int i = 1; i <= following; ++i) {
            if ((byte[i] & 0xC0) != 0x80) return 0; /* also stops at the NUL */
            code = (code << 6) | (byte[i] & 0x3Fu);
        }
        static const uint32_t smallest[4] = {0, 0x80, 0x800, 0x10000};
        if (code < smallest[following] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
            return 0;
        byte += following + 1;
    }
    return 1;
}

/* ---- the reader ---------------------------------------------------------------- */

typedef struct metadata_entry {
    char *key;
    char *value;
} metadata_entry;

struct r1_safetensors {
    char *path;                      /* for messages; "<memory>" after parse     */
    unsigned char *bytes;            /* the whole file (data section moved)      */
    const unsigned char *data;       /* start of the (aligned) data section      */
    uint64_t data_bytes;             /* size of the data section                 */
    r1_tensor_info *tensors;         /* ascending data offset, ties by name      */
    int count;
    const r1_tensor_info **by_name;  /* the same tensors sorted by name (find)   */
    metadata_entry *metadata;        /* in header order                          */
    int metadata_count;
    int has_metadata;                /* "__metadata__" was seen (only once allowed) */
};

void r1_safetensors_close(r1_safetensors *file) {
    if (file == NULL) return;
    for (int i = 0; i < file->count; ++i) free((void *)file->tensors[i].name);
    for (int i = 0; i < file->metadata_count; ++i) {
        free(file->metadata[i].key);
        free(file->metadata[i].value);
    }
    free(file->tensors);
    free(file->by_name);
    free(file->metadata);
    free(file->bytes);
    free(file->path);
    free(file);
}

/* R1_EFORMAT "PATH: tensor "NAME" <problem>". */
static r1_status tensor_fail(const r1_safetensors *file, const char *name, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static r1_status tensor_fail(const r1_safetensors *file, const char *name, const char *format, ...) {
    char problem[384];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(problem, sizeof problem, format, arguments);
    va_end(arguments);
    return r1_fail(R1_EFORMAT, "%.160s: tensor \"%.120s\" %s", file->path, name, problem);
}

/* Reads "dtype" of one tensor entry. */
static r1_status read_tensor_dtype(const r1_safetensors *file, const cJSON *entry,
                                   r1_tensor_info *info) {
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (dtype == NULL) return tensor_fail(file, info->name, "has no \"dtype\"");
    if (!cJSON_IsString(dtype) || dtype->valuestring == NULL)
        return tensor_fail(file, info->name, "has a \"dtype\" that is a JSON %s, not a string",
                           r1_json_type_name(dtype));
    for (int i = 0; i < DTYPE_TABLE_SIZE; ++i) {
        if (strcmp(dtype->valuestring, dtype_table[i].name) == 0) {
            info->dtype = dtype_table[i].dtype;
            return R1_OK;
        }
    }
    return tensor_fail(file, info->name, "has dtype \"%.40s\", which r1lab does not read (" DTYPE_LIST ")",
                       dtype->valuestring);
}

/* Reads "shape": 0..8 integers in [0, 2^53 - 1]. */
static r1_status read_tensor_shape(const r1_safetensors *file, const cJSON *entry,
                                   r1_tensor_info *info) {
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (shape == NULL) return tensor_fail(file, info->name, "has no \"shape\"");
    if (!cJSON_IsArray(shape))
        return tensor_fail(file, info->name, "has a \"shape\" that is a JSON %s, not an array",
                           r1_json_type_name(shape));
    int rank = cJSON_GetArraySize(shape);
    if (rank > R1_SAFETENSORS_MAX_RANK)
        return tensor_fail(file, info->name, "has rank %d; at most %d dimensions are supported",
                           rank, R1_SAFETENSORS_MAX_RANK);
    int d = 0;
    for (const cJSON *extent = shape->child; extent != NULL; extent = extent->next, ++d) {
        uint64_t value;
        char text[64];
        if (!read_exact_integer(extent, &value))
            return tensor_fail(file, info->name,
                               "has shape[%d] = %s, not a non-negative integer below 2^53", d,
                               describe_value(extent, text, sizeof text));
        info->shape[d] = (int64_t)value;
    }
    info->rank = rank;
    return R1_OK;
}

/* Reads "data_offsets" and checks them against the data section and the shape. */
static r1_status read_tensor_offsets(const r1_safetensors *file, const cJSON *entry,
                                     r1_tensor_info *info) {
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (offsets == NULL) return tensor_fail(file, info->name, "has no \"data_offsets\"");
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return tensor_fail(file, info->name,
                           "has \"data_offsets\" that are not an array of two integers [begin, end]");
    uint64_t bounds[2];
    const cJSON *bound = offsets->child;
    for (int i = 0; i < 2; ++i, bound = bound->next) {
        char text[64];
        if (!read_exact_integer(bound, &bounds[i]))
            return tensor_fail(file, info->name,
                               "has data_offsets[%d] = %s, not a non-negative integer below 2^53",
                               i, describe_value(bound, text, sizeof text));
    }
    uint64_t begin = bounds[0], end = bounds[1];
    if (begin > end)
        return tensor_fail(file, info->name, "has data_offsets [%llu, %llu] with begin after end",
                           (unsigned long long)begin, (unsigned long long)end);
    if (end > file->data_bytes)
        return tensor_fail(file, info->name,
                           "ends at data offset %llu, beyond the data section of %llu bytes "
                           "(is the file truncated?)",
                           (unsigned long long)end, (unsigned long long)file->data_bytes);

    int overflow;
    char shape_text[160];
    format_shape(shape_text, sizeof shape_text, info->shape, info->rank);
    uint64_t count = element_count(info->shape, info->rank, &overflow);
    unsigned element_bytes = dtype_entry_of(info->dtype)->element_bytes;
    if (overflow || count > (uint64_t)INT64_MAX || count > UINT64_MAX / element_bytes)
        return tensor_fail(file, info->name, "has shape %s whose size overflows 64 bits",
                           shape_text);
    if (end - begin != count * element_bytes)
        return tensor_fail(file, info->name,
                           "holds %llu bytes (data_offsets [%llu, %llu]) but shape %s of %s "
                           "needs %llu bytes",
                           (unsigned long long)(end - begin), (unsigned long long)begin,
                           (unsigned long long)end, shape_text, dtype_label(info->dtype),
                           (unsigned long long)(count * element_bytes));
    if (begin % element_bytes != 0)
        return tensor_fail(file, info->name,
                           "starts at data offset %llu, not a multiple of its element size %u",
                           (unsigned long long)begin, element_bytes);
    info->offset = begin;
    info->bytes = end - begin;
    return R1_OK;
}

/* One "name": {...} entry of the header; info->name is already set. */
static r1_status read_tensor_entry(const r1_safetensors *file, const cJSON *entry,
                                   r1_tensor_info *info) {
    if (!cJSON_IsObject(entry))
        return tensor_fail(file, info->name, "is a JSON %s, not an object with dtype, shape "
                           "and data_offsets", r1_json_type_name(entry));
    r1_status status = read_tensor_dtype(file, entry, info);
    if (status == R1_OK) status = read_tensor_shape(file, entry, info);
    if (status == R1_OK) status = read_tensor_offsets(file, entry, info);
    return status;
}

/* The "__metadata__" object: string values only, each key once. */
static r1_status read_metadata(r1_safetensors *file, const cJSON *metadata) {
    if (file->has_metadata)
        return r1_fail(R1_EFORMAT, "%.200s: the header holds \"__metadata__\" twice", file->path);
    file->has_metadata = 1;
    if (!cJSON_IsObject(metadata))
        return r1_fail(R1_EFORMAT, "%.200s: \"__metadata__\" is a JSON %s, not an object of strings",
                       file->path, r1_json_type_name(metadata));
    int entries = cJSON_GetArraySize(metadata);
    file->metadata = calloc((size_t)entries + 1, sizeof file->metadata[0]);
    if (file->metadata == NULL)
        return r1_fail(R1_ENOMEM, "%.200s: out of memory for %d metadata entries", file->path, entries);
    for (const cJSON *item = metadata->child; item != NULL; item = item->next) {
        const char *key = item->string ? item->string : "";
        if (!cJSON_IsString(item) || item->valuestring == NULL)
            return r1_fail(R1_EFORMAT,
                           "%.200s: \"__metadata__\" value of \"%.120s\" is a JSON %s, not a string",
                           file->path, key, r1_json_type_name(item));
        metadata_entry *slot = &file->metadata[file->metadata_count];
        slot->key = copy_string(key);
        slot->value = copy_string(item->valuestring);
        ++file->metadata_count;
        if (slot->key == NULL || slot->value == NULL)
            return r1_fail(R1_ENOMEM, "%.200s: out of memory copying metadata", file->path);
    }
    const char **keys = malloc(((size_t)file->metadata_count + 1) * sizeof *keys);
    if (keys == NULL) return r1_fail(R1_ENOMEM, "%.200s: out of memory checking metadata", file->path);
    for (int i = 0; i < file->metadata_count; ++i) keys[i] = file->metadata[i].key;
    const char *twice = sort_and_find_duplicate(keys, file->metadata_count);
    r1_status status = R1_OK;
    if (twice)
        status = r1_fail(R1_EFORMAT, "%.200s: \"__metadata__\" key \"%.120s\" appears twice",
                         file->path, twice);
    free(keys);
    return status;
}

/* Walks the top-level object: tensors and __metadata__. */
static r1_status read_header_entries(r1_safetensors *file, const cJSON *root) {
    int entries = cJSON_GetArraySize(root);
    file->tensors = calloc((size_t)entries + 1, sizeof file->tensors[0]);
    if (file->tensors == NULL)
        return r1_fail(R1_ENOMEM, "%.200s: out of memory for %d header entries", file->path, entries);
    for (const cJSON *item = root->child; item != NULL; item = item->next) {
        const char *key = item->string ? item->string : "";
        r1_status status;
        if (strcmp(key, "__metadata__") == 0) {
            status = read_metadata(file, item);
        } else {
            r1_tensor_info *info = &file->tensors[file->count];
            info->name = copy_string(key);
            if (info->name == NULL)
                return r1_fail(R1_ENOMEM, "%.200s: out of memory copying a tensor name", file->path);
            ++file->count; /* counted now so that close() frees the name */
            status = read_tensor_entry(file, item, info);
        }
        if (status != R1_OK) return status;
    }
    return R1_OK;
}

static int compare_by_offset(const void *a, const void *b) {
    const r1_tensor_info *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_info_by_name(const void *a, const void *b) {
    const r1_tensor_info *x = *(const r1_tensor_info *const *)a;
    const r1_tensor_info *y = *(const r1_tensor_info *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorts the tensors by offset, builds the name index, and checks that no name
 * appears twice and no two non-empty byte ranges overlap. */
static r1_status index_and_check_tensors(r1_safetensors *file) {
    if (file->count > 1)
        qsort(file->tensors, (size_t)file->count, sizeof file->tensors[0], compare_by_offset);
    file->by_name = malloc(((size_t)file->count + 1) * sizeof file->by_name[0]);
    if (file->by_name == NULL)
        return r1_fail(R1_ENOMEM, "%.200s: out of memory indexing %d tensors", file->path, file->count);
    for (int i = 0; i < file->count; ++i) file->by_name[i] = &file->tensors[i];
    if (file->count > 1)
        qsort(file->by_name, (size_t)file->count, sizeof file->by_name[0], compare_info_by_name);
    for (int i = 1; i < file->count; ++i)
        if (strcmp(file->by_name[i - 1]->name, file->by_name[i]->name) == 0)
            return tensor_fail(file, file->by_name[i]->name, "appears twice in the header");

    /* Sorted by begin: a range overlaps an earlier one exactly when it begins
     * before the furthest end seen so far. Empty ranges overlap nothing. */
    const r1_tensor_info *furthest = NULL;
    for (int i = 0; i < file->count; ++i) {
        const r1_tensor_info *info = &file->tensors[i];
        if (info->bytes == 0) continue;
        if (furthest && info->offset < furthest->offset + furthest->bytes)
            return tensor_fail(file, info->name,
                               "has data_offsets [%llu, %llu] that overlap those of tensor "
                               "\"%.120s\" [%llu, %llu]",
                               (unsigned long long)info->offset,
                               (unsigned long long)(info->offset + info->bytes), furthest->name,
                               (unsigned long long)furthest->offset,
                               (unsigned long long)(furthest->offset + furthest->bytes));
        if (!furthest || info->offset + info->bytes > furthest->offset + furthest->bytes)
            furthest = info;
    }
    return R1_OK;
}

/* Checks the 8-byte length and parses the header JSON into *root. */
static r1_status parse_header_json(r1_safetensors *file, size_t size, cJSON **root) {
    if (size < 8)
        return r1_fail(R1_EFORMAT,
                       "%.200s is %zu bytes, shorter than the 8-byte header length that starts "
                       "a safetensors file", file->path, size);
    uint64_t header_bytes = read_le64(file->bytes);
    if (header_bytes > R1_SAFETENSORS_MAX_HEADER_BYTES)
        return r1_fail(R1_EFORMAT, "%.200s: header length %llu is above the limit of %llu bytes",
                       file->path, (unsigned long long)header_bytes,
                       (unsigned long long)R1_SAFETENSORS_MAX_HEADER_BYTES);
    if (header_bytes > size - 8)
        return r1_fail(R1_EFORMAT,
                       "%.200s: header length %llu is larger than the %zu bytes that follow it "
                       "(is the file truncated?)",
                       file->path, (unsigned long long)header_bytes, size - 8);

    /* cJSON gets its own NUL-terminated copy: nothing can read past the header. */
    size_t length = (size_t)header_bytes;
    char *text = malloc(length + 1);
    if (text == NULL)
        return r1_fail(R1_ENOMEM, "%.200s: out of memory for a %zu-byte header", file->path, length);
    memcpy(text, file->bytes + 8, length);
    text[length] = '\0';
    const char *nul = memchr(text, '\0', length);
    if (nul) { /* cJSON would skip it as white space; JSON does not allow it */
        size_t where = (size_t)(nul - text);
        free(text);
        return r1_fail(R1_EFORMAT, "%.200s: header holds a NUL byte at byte %zu of %zu",
                       file->path, where, length);
    }
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, length, &end, 0);
    r1_status status = R1_OK;
    if (*root == NULL) {
        size_t where = (end && end >= text && end <= text + length) ? (size_t)(end - text) : 0;
        status = r1_fail(R1_EFORMAT, "%.200s: header is not valid JSON (error near byte %zu of %zu)",
                         file->path, where, length);
    } else if (!cJSON_IsObject(*root)) {
        status = r1_fail(R1_EFORMAT, "%.200s: header is a JSON %s, not an object", file->path,
                         r1_json_type_name(*root));
    } else {
        size_t after = (end && end >= text && end <= text + length) ? (size_t)(end - text) : length;
        while (after < length && (text[after] == ' ' || text[after] == '\t' ||
                                  text[after] == '\n' || text[after] == '\r'))
            ++after;
        if (after < length)
            status = r1_fail(R1_EFORMAT,
                             "%.200s: header has bytes after its JSON object at byte %zu "
                             "(only space padding is allowed)", file->path, after);
    }
    free(text);
    if (status != R1_OK) {
        cJSON_Delete(*root);
        *root = NULL;
    }
    return status;
}

/* Checks a whole file held in `bytes` (taken over, freed on failure). */
static r1_status safetensors_from_bytes(const char *label, unsigned char *bytes, size_t size,
                                        r1_safetensors **out) {
    r1_safetensors *file = calloc(1, sizeof *file);
    if (file == NULL) {
        free(bytes);
        return r1_fail(R1_ENOMEM, "out of memory opening %.200s", label);
    }
    file->bytes = bytes;
    file->path = copy_string(label);
    if (file->path == NULL) {
        r1_safetensors_close(file);
        return r1_fail(R1_ENOMEM, "out of memory opening %.200s", label);
    }
    cJSON *root = NULL;
    r1_status status = parse_header_json(file, size, &root);
    size_t data_start = 0;
    if (status == R1_OK) {
        data_start = 8 + (size_t)read_le64(bytes);
        file->data_bytes = (uint64_t)(size - data_start);
        status = read_header_entries(file, root);
        cJSON_Delete(root);
    }
    if (status == R1_OK) status = index_and_check_tensors(file);
    if (status != R1_OK) {
        r1_safetensors_close(file);
        return status;
    }
    /* Move the data section down to an address aligned for every element type
     * (the header text before it is no longer needed). */
    size_t alignment = _Alignof(max_align_t);
    size_t aligned_start = data_start - data_start % alignment;
    if (aligned_start != data_start)
        memmove(bytes + aligned_start, bytes + data_start, (size_t)file->data_bytes);
    file->data = bytes + aligned_start;
    *out = file;
    return R1_OK;
}

/* Reads all of `path` into a malloc'd buffer. */
static r1_status read_whole_file(const char *path, unsigned char **bytes, size_t *size) {
    FILE *stream = fopen(path, "rb");
    if (stream == NULL)
        return r1_fail(R1_EIO, "cannot open safetensors file %.200s: %s", path, strerror(errno));
    size_t capacity = 1 << 16, used = 0;
    struct stat status_of_file;
    if (fstat(fileno(stream), &status_of_file) == 0 && S_ISREG(status_of_file.st_mode) &&
        status_of_file.st_size > 0 && (uint64_t)status_of_file.st_size < SIZE_MAX - 1)
        capacity = (size_t)status_of_file.st_size + 1; /* size hint; pipes simply grow */
    unsigned char *buffer = malloc(capacity);
    r1_status status = R1_OK;
    if (buffer == NULL)
        status = r1_fail(R1_ENOMEM, "out of memory reading %.200s (%zu bytes)", path, capacity);
    while (status == R1_OK) {
        if (used == capacity) {
            if (capacity > SIZE_MAX / 2) {
                status = r1_fail(R1_ENOMEM, "%.200s is too large to read into memory", path);
                break;
            }
            unsigned char *larger = realloc(buffer, capacity * 2);
            if (larger == NULL) {
                status = r1_fail(R1_ENOMEM, "out of memory reading %.200s (%zu bytes)", path,
                                 capacity * 2);
                break;
            }
            buffer = larger;
            capacity *= 2;
        }
        size_t got = fread(buffer + used, 1, capacity - used, stream);
        used += got;
        if (got == 0) {
            if (ferror(stream))
                status = r1_fail(R1_EIO, "cannot read safetensors file %.200s: %s", path,
                                 strerror(errno));
            break;
        }
    }
    fclose(stream);
    if (status != R1_OK) {
        free(buffer);
        return status;
    }
    *bytes = buffer;
    *size = used;
    return R1_OK;
}

r1_status r1_safetensors_open(const char *path, r1_safetensors **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_open: out must not be NULL");
    *out = NULL;
    if (path == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_open: path must not be NULL");
    unsigned char *bytes = NULL;
    size_t size = 0;
    r1_status status = read_whole_file(path, &bytes, &size);
    if (status != R1_OK) return status;
    return safetensors_from_bytes(path, bytes, size, out);
}

r1_status r1_safetensors_parse(const void *bytes, size_t size, r1_safetensors **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_parse: out must not be NULL");
    *out = NULL;
    if (bytes == NULL && size > 0)
        return r1_fail(R1_EINVAL, "r1_safetensors_parse: bytes is NULL but size is %zu", size);
    unsigned char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return r1_fail(R1_ENOMEM, "r1_safetensors_parse: out of memory copying %zu bytes", size);
    if (size) memcpy(copy, bytes, size);
    return safetensors_from_bytes(MEMORY_LABEL, copy, size, out);
}

const char *r1_safetensors_path(const r1_safetensors *file) { return file ? file->path : ""; }

int r1_safetensors_count(const r1_safetensors *file) { return file ? file->count : 0; }

const r1_tensor_info *r1_safetensors_info(const r1_safetensors *file, int index) {
    if (file == NULL || index < 0 || index >= file->count) return NULL;
    return &file->tensors[index];
}

r1_status r1_safetensors_find(const r1_safetensors *file, const char *name,
                              const r1_tensor_info **info, const void **data) {
    if (info) *info = NULL;
    if (data) *data = NULL;
    if (file == NULL || name == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_find: file and name must not be NULL");
    r1_tensor_info key_info;
    memset(&key_info, 0, sizeof key_info);
    key_info.name = name;
    const r1_tensor_info *key = &key_info;
    const r1_tensor_info **found = NULL;
    if (file->count > 0)
        found = bsearch(&key, file->by_name, (size_t)file->count, sizeof file->by_name[0],
                        compare_info_by_name);
    if (found == NULL)
        return r1_fail(R1_EINVAL, "tensor \"%.120s\" is not in %.200s (%d tensors)", name,
                       file->path, file->count);
    if (info) *info = *found;
    if (data) *data = file->data + (*found)->offset;
    return R1_OK;
}

r1_status r1_safetensors_expect(const r1_safetensors *file, const char *name, r1_dtype dtype,
                                int64_t count, const void **data) {
    if (data) *data = NULL;
    if (dtype_entry_of(dtype) == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_expect: dtype %s (%d) has no safetensors name",
                       dtype_label(dtype), (int)dtype);
    if (count < 0)
        return r1_fail(R1_EINVAL, "r1_safetensors_expect: count = %lld must be >= 0",
                       (long long)count);
    const r1_tensor_info *info;
    const void *bytes;
    r1_status status = r1_safetensors_find(file, name, &info, &bytes);
    if (status != R1_OK) return status;
    if (info->dtype != dtype)
        return r1_fail(R1_EFORMAT, "tensor \"%.120s\" in %.200s has dtype %s, expected %s", name,
                       file->path, dtype_label(info->dtype), dtype_label(dtype));
    int overflow;
    uint64_t found = element_count(info->shape, info->rank, &overflow);
    if (found != (uint64_t)count) {
        char shape_text[160];
        return r1_fail(R1_EFORMAT, "tensor \"%.120s\" in %.200s has %llu elements (shape %s), "
                       "expected %lld", name, file->path, (unsigned long long)found,
                       format_shape(shape_text, sizeof shape_text, info->shape, info->rank),
                       (long long)count);
    }
    if (data) *data = bytes;
    return R1_OK;
}

const char *r1_safetensors_metadata(const r1_safetensors *file, const char *key) {
    if (file == NULL || key == NULL) return NULL;
    for (int i = 0; i < file->metadata_count; ++i)
        if (strcmp(file->metadata[i].key, key) == 0) return file->metadata[i].value;
    return NULL;
}

int r1_safetensors_metadata_count(const r1_safetensors *file) {
    return file ? file->metadata_count : 0;
}

r1_status r1_safetensors_metadata_entry(const r1_safetensors *file, int index, const char **key,
                                        const char **value) {
    if (file == NULL || key == NULL || value == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_metadata_entry: file, key and value must not be NULL");
    if (index < 0 || index >= file->metadata_count)
        return r1_fail(R1_EINVAL, "r1_safetensors_metadata_entry: index %d is outside [0, %d)",
                       index, file->metadata_count);
    *key = file->metadata[index].key;
    *value = file->metadata[index].value;
    return R1_OK;
}

/* ---- the writer ---------------------------------------------------------------- */

typedef struct writer_tensor {
    char *name;
    r1_dtype dtype;
    int rank;
    int64_t shape[R1_SAFETENSORS_MAX_RANK];
    unsigned char *data;
    uint64_t bytes;
} writer_tensor;

struct r1_safetensors_writer {
    writer_tensor *tensors;
    int count, capacity;
    uint64_t total_bytes;     /* sum of the tensors' bytes: the data section */
    metadata_entry *metadata;
    int metadata_count, metadata_capacity;
};

/* Makes room for one more element in a growing array. */
static int reserve_one(void **array, int *capacity, int count, size_t element_size) {
    if (count < *capacity) return 1;
    if (*capacity > (1 << 29)) return 0;
    int larger = *capacity ? *capacity * 2 : 8;
    void *grown = realloc(*array, (size_t)larger * element_size);
    if (grown == NULL) return 0;
    *array = grown;
    *capacity = larger;
    return 1;
}

r1_status r1_safetensors_writer_create(r1_safetensors_writer **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_writer_create: out must not be NULL");
    *out = calloc(1, sizeof **out);
    if (*out == NULL) return r1_fail(R1_ENOMEM, "r1_safetensors_writer_create: out of memory");
    return R1_OK;
}

void r1_safetensors_writer_free(r1_safetensors_writer *writer) {
    if (writer == NULL) return;
    for (int i = 0; i < writer->count; ++i) {
        free(writer->tensors[i].name);
        free(writer->tensors[i].data);
    }
    for (int i = 0; i < writer->metadata_count; ++i) {
        free(writer->metadata[i].key);
        free(writer->metadata[i].value);
    }
    free(writer->tensors);
    free(writer->metadata);
    free(writer);
}

/* Checks the name of a tensor about to be added. */
static r1_status check_new_tensor_name(const r1_safetensors_writer *writer, const char *name) {
    if (name == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: name must not be NULL");
    if (name[0] == '\0')
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: name must not be empty");
    if (strcmp(name, "__metadata__") == 0)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: \"__metadata__\" is reserved, "
                       "not a tensor name");
    if (!is_valid_utf8(name))
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: name \"%.120s\" is not valid UTF-8",
                       name);
    for (int i = 0; i < writer->count; ++i)
        if (strcmp(writer->tensors[i].name, name) == 0)
            return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" was already added",
                           name);
    return R1_OK;
}

/* Checks dtype, rank and shape; gives the byte count. */
static r1_status check_new_tensor_layout(const char *name, r1_dtype dtype, int rank,
                                         const int64_t *shape, uint64_t *bytes) {
    if (dtype == R1_I4)
        return r1_fail(R1_EUNSUPPORTED, "r1_safetensors_writer_add: tensor \"%.120s\" has dtype I4, "
                       "which safetensors cannot name (store packed nibbles as U8)", name);
    const dtype_entry *entry = dtype_entry_of(dtype);
    if (entry == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" has dtype %d, "
                       "which is not an r1_dtype", name, (int)dtype);
    if (rank < 0 || rank > R1_SAFETENSORS_MAX_RANK)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" has rank %d, "
                       "outside [0, %d]", name, rank, R1_SAFETENSORS_MAX_RANK);
    if (rank > 0 && shape == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" has rank %d but "
                       "shape is NULL", name, rank);
    for (int d = 0; d < rank; ++d)
        if (shape[d] < 0 || (uint64_t)shape[d] > LARGEST_EXACT_INTEGER)
            return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" has shape[%d] "
                           "= %lld, outside [0, 2^53 - 1]", name, d, (long long)shape[d]);
    int overflow;
    uint64_t count = element_count(shape, rank, &overflow);
    if (overflow || count > LARGEST_EXACT_INTEGER / entry->element_bytes)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" is too large "
                       "(its byte count passes 2^53)", name);
    *bytes = count * entry->element_bytes;
    return R1_OK;
}

r1_status r1_safetensors_writer_add(r1_safetensors_writer *writer, const char *name,
                                    r1_dtype dtype, int rank, const int64_t *shape,
                                    const void *data) {
    if (writer == NULL) return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: writer must not be NULL");
    r1_status status = check_new_tensor_name(writer, name);
    uint64_t bytes = 0;
    if (status == R1_OK) status = check_new_tensor_layout(name, dtype, rank, shape, &bytes);
    if (status != R1_OK) return status;
    if (bytes > 0 && data == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: tensor \"%.120s\" has %llu bytes "
                       "but data is NULL", name, (unsigned long long)bytes);
    if (bytes > LARGEST_EXACT_INTEGER - writer->total_bytes || bytes > SIZE_MAX - 1)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_add: adding tensor \"%.120s\" makes the "
                       "data section pass 2^53 bytes", name);
    if (!reserve_one((void **)&writer->tensors, &writer->capacity, writer->count,
                     sizeof writer->tensors[0]))
        return r1_fail(R1_ENOMEM, "r1_safetensors_writer_add: out of memory adding \"%.120s\"", name);
    writer_tensor tensor;
    memset(&tensor, 0, sizeof tensor);
    tensor.name = copy_string(name);
    tensor.data = malloc(bytes ? (size_t)bytes : 1);
    if (tensor.name == NULL || tensor.data == NULL) {
        free(tensor.name);
        free(tensor.data);
        return r1_fail(R1_ENOMEM, "r1_safetensors_writer_add: out of memory copying \"%.120s\" "
                       "(%llu bytes)", name, (unsigned long long)bytes);
    }
    if (bytes) memcpy(tensor.data, data, (size_t)bytes);
    tensor.dtype = dtype;
    tensor.rank = rank;
    for (int d = 0; d < rank; ++d) tensor.shape[d] = shape[d];
    tensor.bytes = bytes;
    writer->tensors[writer->count++] = tensor;
    writer->total_bytes += bytes;
    return R1_OK;
}

r1_status r1_safetensors_writer_set_metadata(r1_safetensors_writer *writer, const char *key,
                                             const char *value) {
    if (writer == NULL || key == NULL || value == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_set_metadata: writer, key and value "
                       "must not be NULL");
    if (!is_valid_utf8(key) || !is_valid_utf8(value))
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_set_metadata: key \"%.120s\" or its "
                       "value is not valid UTF-8", key);
    char *value_copy = copy_string(value);
    if (value_copy == NULL)
        return r1_fail(R1_ENOMEM, "r1_safetensors_writer_set_metadata: out of memory for \"%.120s\"", key);
    for (int i = 0; i < writer->metadata_count; ++i) {
        if (strcmp(writer->metadata[i].key, key) == 0) {
            free(writer->metadata[i].value);
            writer->metadata[i].value = value_copy;
            return R1_OK;
        }
    }
    char *key_copy = copy_string(key);
    if (key_copy == NULL || !reserve_one((void **)&writer->metadata, &writer->metadata_capacity,
                                         writer->metadata_count, sizeof writer->metadata[0])) {
        free(key_copy);
        free(value_copy);
        return r1_fail(R1_ENOMEM, "r1_safetensors_writer_set_metadata: out of memory for \"%.120s\"", key);
    }
    writer->metadata[writer->metadata_count].key = key_copy;
    writer->metadata[writer->metadata_count].value = value_copy;
    ++writer->metadata_count;
    return R1_OK;
}

/* A growing text buffer for the header; `failed` records an allocation failure. */
typedef struct text_buffer {
    char *data;
    size_t length, capacity;
    int failed;
} text_buffer;

static void text_append(text_buffer *text, const char *bytes, size_t count) {
    if (text->failed) return;
    if (count > SIZE_MAX / 2 - text->length) { text->failed = 1; return; }
    if (text->length + count + 1 > text->capacity) {
        size_t larger = text->capacity ? text->capacity : 256;
        while (larger < text->length + count + 1) larger *= 2;
        char *grown = realloc(text->data, larger);
        if (grown == NULL) { text->failed = 1; return; }
        text->data = grown;
        text->capacity = larger;
    }
    memcpy(text->data + text->length, bytes, count);
    text->length += count;
    text->data[text->length] = '\0';
}

static void text_append_cstring(text_buffer *text, const char *string) {
    text_append(text, string, strlen(string));
}

static void text_append_u64(text_buffer *text, uint64_t value) {
    char digits[32];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)value);
    text_append_cstring(text, digits);
}

/* Appends "string" as a JSON string: quotes, backslashes and control bytes escaped. */
static void text_append_json_string(text_buffer *text, const char *string) {
    text_append(text, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)string; *c; ++c) {
        char escaped[8];
        if (*c == '"') text_append(text, "\\\"", 2);
        else if (*c == '\\') text_append(text, "\\\\", 2);
        else if (*c == '\n') text_append(text, "\\n", 2);
        else if (*c == '\t') text_append(text, "\\t", 2);
        else if (*c < 0x20) {
            snprintf(escaped, sizeof escaped, "\\u%04x", *c);
            text_append_cstring(text, escaped);
        } else text_append(text, (const char *)c, 1);
    }
    text_append(text, "\"", 1);
}

/* The order of the tensors in the data section: 8-byte elements first, then
 * 4, 2 and 1 (in the order added within a size). Every tensor then starts at
 * a multiple of its element size with no gaps between tensors, the layout the
 * Python package writes too. `order` has writer->count entries. */
static void layout_order(const r1_safetensors_writer *writer, int *order) {
    static const unsigned sizes[4] = {8, 4, 2, 1};
    int next = 0;
    for (int s = 0; s < 4; ++s)
        for (int i = 0; i < writer->count; ++i)
            if (dtype_entry_of(writer->tensors[i].dtype)->element_bytes == sizes[s]) order[next++] = i;
}

/* The header JSON, padded with spaces so that 8 + its length is a multiple of 8. */
static r1_status build_header(const r1_safetensors_writer *writer, const int *order,
                              text_buffer *text) {
    text_append(text, "{", 1);
    if (writer->metadata_count > 0) {
        text_append_cstring(text, "\"__metadata__\":{");
        for (int i = 0; i < writer->metadata_count; ++i) {
            if (i) text_append(text, ",", 1);
            text_append_json_string(text, writer->metadata[i].key);
            text_append(text, ":", 1);
            text_append_json_string(text, writer->metadata[i].value);
        }
        text_append(text, "}", 1);
    }
    uint64_t offset = 0;
    for (int i = 0; i < writer->count; ++i) {
        const writer_tensor *tensor = &writer->tensors[order[i]];
        if (i || writer->metadata_count > 0) text_append(text, ",", 1);
        text_append_json_string(text, tensor->name);
        text_append_cstring(text, ":{\"dtype\":\"");
        text_append_cstring(text, r1_safetensors_dtype_name(tensor->dtype));
        text_append_cstring(text, "\",\"shape\":[");
        for (int d = 0; d < tensor->rank; ++d) {
            if (d) text_append(text, ",", 1);
            text_append_u64(text, (uint64_t)tensor->shape[d]);
        }
        text_append_cstring(text, "],\"data_offsets\":[");
        text_append_u64(text, offset);
        text_append(text, ",", 1);
        text_append_u64(text, offset + tensor->bytes);
        text_append_cstring(text, "]}");
        offset += tensor->bytes;
    }
    text_append(text, "}", 1);
    while (!text->failed && (8 + text->length) % 8 != 0) text_append(text, " ", 1);
    if (text->failed)
        return r1_fail(R1_ENOMEM, "r1_safetensors_writer_save: out of memory building the header");
    if (text->length > R1_SAFETENSORS_MAX_HEADER_BYTES)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_save: the header would be %zu bytes, "
                       "above the limit of %llu", text->length,
                       (unsigned long long)R1_SAFETENSORS_MAX_HEADER_BYTES);
    return R1_OK;
}

/* Writes the whole file to an open stream; 0 on a write error (errno set). */
static int write_file_contents(FILE *stream, const r1_safetensors_writer *writer,
                               const int *order, const text_buffer *header) {
    unsigned char length[8];
    write_le64(length, (uint64_t)header->length);
    if (fwrite(length, 1, 8, stream) != 8) return 0;
    if (fwrite(header->data, 1, header->length, stream) != header->length) return 0;
    for (int i = 0; i < writer->count; ++i) {
        const writer_tensor *tensor = &writer->tensors[order[i]];
        size_t bytes = (size_t)tensor->bytes;
        if (bytes && fwrite(tensor->data, 1, bytes, stream) != bytes) return 0;
    }
    if (fflush(stream) != 0) return 0;
    if (fsync(fileno(stream)) != 0 && errno != EINVAL && errno != EROFS) return 0;
    return 1;
}

r1_status r1_safetensors_writer_save(r1_safetensors_writer *writer, const char *path) {
    if (writer == NULL || path == NULL)
        return r1_fail(R1_EINVAL, "r1_safetensors_writer_save: writer and path must not be NULL");
    if (path[0] == '\0') return r1_fail(R1_EINVAL, "r1_safetensors_writer_save: path is empty");
    text_buffer header = {NULL, 0, 0, 0};
    size_t path_length = strlen(path);
    char *temporary = malloc(path_length + 5);
    int *order = malloc(((size_t)writer->count + 1) * sizeof *order);
    r1_status status = R1_OK;
    if (temporary == NULL || order == NULL)
        status = r1_fail(R1_ENOMEM, "r1_safetensors_writer_save: out of memory");
    if (status == R1_OK) {
        layout_order(writer, order);
        status = build_header(writer, order, &header);
    }
    if (status != R1_OK) {
        free(header.data);
        free(temporary);
        free(order);
        return status;
    }
    memcpy(temporary, path, path_length);
    memcpy(temporary + path_length, ".tmp", 5);

    FILE *stream = fopen(temporary, "wb");
    if (stream == NULL) {
        status = r1_fail(R1_EIO, "cannot create %.200s (to save %.200s): %s", temporary, path,
                         strerror(errno));
    } else {
        int written = write_file_contents(stream, writer, order, &header);
        int saved_errno = errno;
        int closed = fclose(stream) == 0;
        if (!closed && written) saved_errno = errno;
        if (!written || !closed) {
            remove(temporary);
            status = r1_fail(R1_EIO, "cannot write %.200s (to save %.200s): %s; %.200s is unchanged",
                             temporary, path, strerror(saved_errno), path);
        } else if (rename(temporary, path) != 0) {
            saved_errno = errno;
            remove(temporary);
            status = r1_fail(R1_EIO, "cannot rename %.200s to %.200s: %s", temporary, path,
                             strerror(saved_errno));
        }
    }
    free(header.data);
    free(temporary);
    free(order);
    return status;
}
