/*
 * r1lab/common.h — the contract every r1lab component follows.
 *
 *   status codes      every public function returns an r1_status; on failure
 *                     r1_last_error() holds a sentence naming the argument and
 *                     its value (thread-local, overwritten by the next failure).
 *   backends          R1_REF (readable C), R1_FAST (optimized CPU), R1_CUDA.
 *                     R1_CUDA returns R1_EUNSUPPORTED when CUDA was not built or
 *                     no GPU is present: a skip, never a crash.
 *   dtypes            the element types tensors use, with exact conversions:
 *                     float -> bf16 / f16 / fp8 E4M3 round to nearest, ties to
 *                     even; E4M3 saturates at +-448 (no infinities in E4M3);
 *                     NaN stays NaN in every format.
 *   device memory     small helpers over the CUDA runtime so C callers and tests
 *                     need no CUDA headers; they fail with R1_EUNSUPPORTED in a
 *                     CPU-only build.
 */
#ifndef R1LAB_COMMON_H
#define R1LAB_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ------------------------------------------------------------ */

typedef enum r1_status {
    R1_OK = 0,
    R1_EINVAL,        /* an argument is out of its documented range          */
    R1_ENOMEM,        /* an allocation failed                                */
    R1_EIO,           /* a read or write of a file failed                    */
    R1_EFORMAT,       /* a file or record is malformed                       */
    R1_EUNSUPPORTED,  /* valid, but not available here (no GPU, dtype, ...)  */
    R1_ECUDA,         /* the CUDA runtime reported an error                  */
    R1_ENUMERIC,      /* NaN / Inf in an input where a number is required    */
    R1_EINTERNAL      /* a bug in r1lab: please report it                    */
} r1_status;

/* "R1_EINVAL" etc.; "unknown status" for values outside the enum. */
const char *r1_status_str(r1_status status);

/* The sentence that explains the most recent failure on this thread ("" if
 * none). Valid until the next r1lab call on the same thread. */
const char *r1_last_error(void);

/* Records a formatted sentence for r1_last_error() and returns `status`, so a
 * failing check reads `return r1_fail(R1_EINVAL, "top_p = %g ...", p);`. */
r1_status r1_fail(r1_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clears the sentence (r1_last_error() returns ""). */
void r1_clear_error(void);

/* ---- backends ---------------------------------------------------------- */

typedef enum r1_backend { R1_REF = 0, R1_FAST = 1, R1_CUDA = 2 } r1_backend;
#define R1_BACKEND_COUNT 3

/* "ref", "fast", "cuda"; "unknown" otherwise. */
const char *r1_backend_name(r1_backend backend);

/* Parses "ref" / "fast" / "cuda"; R1_EINVAL for anything else. */
r1_status r1_backend_parse(const char *name, r1_backend *backend);

/* 1 when the backend can run here: ref and fast always; cuda when the CUDA
 * backend was built and a GPU is visible. */
int r1_backend_available(r1_backend backend);

/* ---- dtypes ------------------------------------------------------------ */

typedef enum r1_dtype {
    R1_F32 = 0,
    R1_F16,
    R1_BF16,
    R1_F8E4M3, /* OCP E4M3 "fn": bias 7, max 448, NaN = S.1111.111, no Inf */
    R1_I8,
    R1_I4,     /* two's-complement nibbles, element 2i in the low nibble   */
    R1_I32,
    R1_I64,
    R1_F64,    /* golden files keep float64 expectations          */
    R1_U8
} r1_dtype;
#define R1_DTYPE_COUNT 10

const char *r1_dtype_name(r1_dtype dtype);   /* "f32", "bf16", ...        */
int r1_dtype_bits(r1_dtype dtype);           /* 64, 32, 16, 8, 4; 0 if unknown */
/* Bytes that `count` elements occupy (i4 rounds up to whole bytes). */
size_t r1_dtype_bytes(r1_dtype dtype, size_t count);

/* Exact conversions. float -> narrow rounds to nearest, ties to even; values
 * beyond the format's range become Inf (f16, bf16) or saturate to +-448
 * (E4M3); NaN maps to the format's canonical quiet NaN with the sign kept. */
uint16_t r1_f32_to_bf16(float value);
float r1_bf16_to_f32(uint16_t bits);
uint16_t r1_f32_to_f16(float value);
float r1_f16_to_f32(uint16_t bits);
uint8_t r1_f32_to_f8e4m3(float value);
float r1_f8e4m3_to_f32(uint8_t bits);
/* Signed 4-bit values in [-8, 7], two per byte (element 2i in bits 0..3). */
int r1_i4_get(const uint8_t *packed, size_t index);
void r1_i4_set(uint8_t *packed, size_t index, int value);

/* ---- device memory (CUDA backend) -------------------------------------- */

typedef enum r1_copy_direction {
    R1_HOST_TO_DEVICE = 0,
    R1_DEVICE_TO_HOST = 1,
    R1_DEVICE_TO_DEVICE = 2
} r1_copy_direction;

r1_status r1_device_alloc(void **device_pointer, size_t bytes);
r1_status r1_device_free(void *device_pointer);
r1_status r1_device_copy(void *destination, const void *source, size_t bytes,
                         r1_copy_direction direction);
/* Fills `bytes` bytes with `byte_value` (to poison outputs in tests). */
r1_status r1_device_fill(void *device_pointer, int byte_value, size_t bytes);
/* Waits for all work on the device. */
r1_status r1_device_synchronize(void);
/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or "none". */
const char *r1_device_name(void);

/* Library version string, "0.1.0". */
const char *r1_version(void);

#ifdef __cplusplus
}
#endif
#endif /* R1LAB_COMMON_H */
