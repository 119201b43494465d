/*
 * r1lab/safetensors.h — reading and writing safetensors files, the format of
 * r1lab's golden files (and of Hugging Face model weights).
 *
 * LAYOUT
 *   bytes 0..7      N, the header length, an unsigned 64-bit little-endian number
 *   bytes 8..8+N    the header: one JSON object
 *                     {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
 *                      ...,
 *                      "__metadata__": {"key": "value", ...}}
 *                   padded at the end with spaces (writers pad so that the data
 *                   section starts at a multiple of 8 bytes)
 *   bytes 8+N..     the data section: raw little-endian tensors, row-major;
 *                   data_offsets [begin, end) are relative to its start
 *
 * DTYPES  F32 F16 BF16 F8_E4M3 I8 I32 I64 F64 U8  <->  R1_F32 R1_F16 ... R1_U8.
 * R1_I4 has no safetensors name (store packed int4 as U8 with its own shape).
 *
 * CHECKS  A malformed file is R1_EFORMAT with a sentence that names the file,
 * the tensor and the problem; docs/io.md lists every rule. A file that opens
 * is safe to use: every tensor lies inside the data section, its byte count is
 * exactly elements x element size, no two tensors overlap, and each tensor's
 * data pointer is aligned to its element size (cast it to float * etc.).
 *
 * LIFETIME  Every pointer a reader returns (infos, names, data, metadata
 * values) stays valid until r1_safetensors_close(). A reader is read-only
 * after it opens, so several threads may read from it at once.
 */
#ifndef R1LAB_SAFETENSORS_H
#define R1LAB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "r1lab/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define R1_SAFETENSORS_MAX_RANK 8
/* A header longer than this is refused (the same limit as the Python package). */
#define R1_SAFETENSORS_MAX_HEADER_BYTES 100000000ull

typedef struct r1_tensor_info {
    const char *name;       /* the tensor's key in the header                 */
    r1_dtype dtype;
    int rank;               /* 0 (a scalar) .. 8                               */
    int64_t shape[R1_SAFETENSORS_MAX_RANK]; /* entries past rank are 0         */
    uint64_t offset;        /* data_offsets[0], relative to the data section  */
    uint64_t bytes;         /* data_offsets[1] - data_offsets[0]              */
} r1_tensor_info;

/* ---- reading --------------------------------------------------------------- */

typedef struct r1_safetensors r1_safetensors; /* opaque */

/* Reads the whole file at `path` into memory and checks it. R1_EIO naming the
 * path when it cannot be read, R1_EFORMAT when it is malformed. */
r1_status r1_safetensors_open(const char *path, r1_safetensors **out);

/* The same from `size` bytes in memory (copied; the caller keeps `bytes`).
 * Messages name the file "<memory>". */
r1_status r1_safetensors_parse(const void *bytes, size_t size, r1_safetensors **out);

/* Frees everything; NULL is allowed. */
void r1_safetensors_close(r1_safetensors *file);

/* The path given to open ("<memory>" after parse); "" for NULL. */
const char *r1_safetensors_path(const r1_safetensors *file);

/* Number of tensors (0 for NULL). */
int r1_safetensors_count(const r1_safetensors *file);

/* Tensor `index` in ascending data offset order (ties by name); NULL when
 * `file` is NULL or index is outside [0, count). */
const r1_tensor_info *r1_safetensors_info(const r1_safetensors *file, int index);

/* The tensor called `name`: its info and a pointer to its bytes (either output
 * may be NULL when not wanted). R1_EINVAL naming the tensor and the file if
 * it is absent. */
r1_status r1_safetensors_find(const r1_safetensors *file, const char *name,
                              const r1_tensor_info **info, const void **data);

/* find, then check the dtype and the element count; the sentence names the
 * expected and the found dtype / count (and shape). `data` may be NULL. */
r1_status r1_safetensors_expect(const r1_safetensors *file, const char *name, r1_dtype dtype,
                                int64_t count, const void **data);

/* The __metadata__ value for `key`, or NULL if absent. */
const char *r1_safetensors_metadata(const r1_safetensors *file, const char *key);

/* Number of __metadata__ entries, and entry `index` of them in header order
 * (R1_EINVAL for an index outside [0, count)). */
int r1_safetensors_metadata_count(const r1_safetensors *file);
r1_status r1_safetensors_metadata_entry(const r1_safetensors *file, int index,
                                        const char **key, const char **value);

/* ---- dtype names ----------------------------------------------------------- */

/* "F32", "BF16", "F8_E4M3", ...; NULL for R1_I4 and values outside the enum. */
const char *r1_safetensors_dtype_name(r1_dtype dtype);
/* The reverse; R1_EFORMAT naming the string when it is not one of the nine. */
r1_status r1_safetensors_dtype_parse(const char *name, r1_dtype *dtype);

/* ---- writing --------------------------------------------------------------- */

typedef struct r1_safetensors_writer r1_safetensors_writer; /* opaque */

r1_status r1_safetensors_writer_create(r1_safetensors_writer **out);

/* Adds a tensor, copying `data` (r1_dtype_bytes(dtype, elements) bytes; may be
 * NULL only when the tensor has no elements). `shape` has `rank` entries
 * (may be NULL when rank is 0). Names must be non-empty, unique and not
 * "__metadata__". R1_EUNSUPPORTED for R1_I4. The file lays tensors out by
 * element size, 8-byte types first, then 4, 2, 1 (in the order added within a
 * size): every tensor is aligned and there are no gaps, as Python writes it. */
r1_status r1_safetensors_writer_add(r1_safetensors_writer *writer, const char *name,
                                    r1_dtype dtype, int rank, const int64_t *shape,
                                    const void *data);

/* Sets a __metadata__ entry (a second call with the same key replaces it). */
r1_status r1_safetensors_writer_set_metadata(r1_safetensors_writer *writer, const char *key,
                                             const char *value);

/* Writes "path.tmp", flushes it to disk, then renames it to `path`: a reader
 * of `path` sees the old file or the whole new one, never half of it. On
 * failure the temporary file is removed and `path` is untouched. The writer
 * keeps its contents (save may be called again). */
r1_status r1_safetensors_writer_save(r1_safetensors_writer *writer, const char *path);

/* Frees everything; NULL is allowed. */
void r1_safetensors_writer_free(r1_safetensors_writer *writer);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_SAFETENSORS_H */
