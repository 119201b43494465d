/*
 * tests/test_common.c — tests of the shared contract (include/r1lab/common.h
 * and include/r1lab/philox.h): status strings and the thread-local error
 * sentence, backend names, dtype names and sizes, the float32 <-> bf16 / f16 /
 * fp8 E4M3 conversions, packed int4, the CPU-only device helpers, and
 * Philox4x32-10 with the uniform numbers drawn from it.
 *
 * Conversions are checked three ways:
 *   1. hand-worked bit patterns, each with its derivation next to it;
 *   2. exhaustive: every bit pattern of bf16 / f16 / E4M3 decodes to the value
 *      the format's definition gives (computed with ldexp) and encodes back to
 *      the same bits (NaN to the canonical NaN); every midpoint between two
 *      neighbours rounds to the even one, and one float32 step either side of
 *      it rounds to the nearer one;
 *   3. random float32 inputs (R1_SEED) against an independent reference that
 *      searches the sorted table of the format's values for the nearest one.
 *
 * Notation in the derivations: a float32 is written by its bits, 0xSEEMMMMM;
 * "lower half" of a float32 is its low 16 bits (what bf16 drops).
 * A format with M mantissa bits and bias B: normal value (1 + m/2^M) 2^(e-B),
 * subnormal (m/2^M) 2^(1-B).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <threads.h>

#include "core/internal.h"
#include "harness.h"
#include "r1lab/common.h"
#include "r1lab/philox.h"

/* ---- helpers ---------------------------------------------------------------- */

static float float_from_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static uint32_t bits_from_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* EXPECT_TO_<format>(float input, expected bits): the conversion gives exactly
 * these bits (so the sign of zero and the NaN pattern are checked too). */
#define EXPECT_TO_BF16(input, expected)                                                  \
    do {                                                                                  \
        float in_ = (input);                                                              \
        unsigned got_ = r1_f32_to_bf16(in_);                                              \
        R1T_CHECK(got_ == (unsigned)(expected),                                           \
                  "r1_f32_to_bf16(%a, bits 0x%08X) = 0x%04X, expected 0x%04X", (double)in_, \
                  (unsigned)bits_from_float(in_), got_, (unsigned)(expected));            \
    } while (0)

#define EXPECT_TO_F16(input, expected)                                                   \
    do {                                                                                  \
        float in_ = (input);                                                              \
        unsigned got_ = r1_f32_to_f16(in_);                                               \
        R1T_CHECK(got_ == (unsigned)(expected),                                           \
                  "r1_f32_to_f16(%a, bits 0x%08X) = 0x%04X, expected 0x%04X", (double)in_,  \
                  (unsigned)bits_from_float(in_), got_, (unsigned)(expected));            \
    } while (0)

#define EXPECT_TO_E4M3(input, expected)                                                  \
    do {                                                                                  \
        float in_ = (input);                                                              \
        unsigned got_ = r1_f32_to_f8e4m3(in_);                                            \
        R1T_CHECK(got_ == (unsigned)(expected),                                           \
                  "r1_f32_to_f8e4m3(%a, bits 0x%08X) = 0x%02X, expected 0x%02X",          \
                  (double)in_, (unsigned)bits_from_float(in_), got_, (unsigned)(expected)); \
    } while (0)

/* A decoded value compared by its float32 bits (sees -0 and NaN payloads). */
#define EXPECT_FLOAT_BITS(what, got_float, expected_bits)                                \
    do {                                                                                  \
        unsigned got_ = bits_from_float(got_float);                                       \
        R1T_CHECK(got_ == (unsigned)(expected_bits), "%s = %a (bits 0x%08X), expected bits 0x%08X", \
                  what, (double)(got_float), got_, (unsigned)(expected_bits));            \
    } while (0)

/* One narrow floating-point format, seen through r1lab's two conversions. */
typedef struct narrow_format {
    const char *name;
    int total_bits;          /* 16 or 8: codes are 0 .. 2^total_bits - 1 */
    uint32_t sign_bit;       /* 0x8000 or 0x80 */
    uint32_t exponent_bits;  /* E */
    uint32_t mantissa_bits;  /* M */
    int bias;                /* B */
    uint32_t finite_count;   /* positive codes 0 .. finite_count-1 are finite */
    double value_past_max;   /* value of code finite_count if the exponent kept going */
    uint32_t past_max_code;  /* what rounding past the largest finite value gives */
    uint32_t canonical_nan;  /* without the sign */
    uint32_t (*encode)(float value);
    float (*decode)(uint32_t bits);
} narrow_format;

static uint32_t encode_bf16(float value) { return r1_f32_to_bf16(value); }
static float decode_bf16(uint32_t bits) { return r1_bf16_to_f32((uint16_t)bits); }
static uint32_t encode_f16(float value) { return r1_f32_to_f16(value); }
static float decode_f16(uint32_t bits) { return r1_f16_to_f32((uint16_t)bits); }
static uint32_t encode_e4m3(float value) { return r1_f32_to_f8e4m3(value); }
static float decode_e4m3(uint32_t bits) { return r1_f8e4m3_to_f32((uint8_t)bits); }

/* bf16: 0x7F80 is Inf, the largest finite is 0x7F7F, one past it would be 2^128.
 * f16: 0x7C00 is Inf, the largest finite 0x7BFF = 65504, one past 65536.
 * E4M3: 0x7F is NaN, the largest finite 0x7E = 448, one past it would be 480;
 *       rounding past 448 saturates to 0x7E. */
static const narrow_format BF16 = {"bf16", 16, 0x8000, 8, 7, 127, 0x7F80, 0x1p128,
                                   0x7F80, 0x7FC0, encode_bf16, decode_bf16};
static const narrow_format F16 = {"f16", 16, 0x8000, 5, 10, 15, 0x7C00, 65536.0,
                                  0x7C00, 0x7E00, encode_f16, decode_f16};
static const narrow_format E4M3 = {"f8e4m3", 8, 0x80, 4, 3, 7, 0x7F, 480.0,
                                   0x7E, 0x7F, encode_e4m3, decode_e4m3};

/* The value of `code` from the definition of the format, computed in double
 * with ldexp (independent of r1lab's bit manipulation). NaN for NaN codes,
 * +-inf for Inf codes. */
static double value_by_definition(const narrow_format *format, uint32_t code) {
    uint32_t sign = code & format->sign_bit;
    uint32_t magnitude = code & (format->sign_bit - 1);
    uint32_t exponent = magnitude >> format->mantissa_bits;
    uint32_t mantissa = magnitude & ((1u << format->mantissa_bits) - 1);
    uint32_t exponent_all_ones = (1u << format->exponent_bits) - 1;
    double value;
    if (format->total_bits == 8) { /* E4M3 fn: only S.1111.111 is special */
        if (magnitude == 0x7F) return NAN;
    } else if (exponent == exponent_all_ones) {
        if (mantissa != 0) return NAN;
        return sign ? -INFINITY : INFINITY;
    }
    int m = (int)format->mantissa_bits;
    if (exponent == 0) value = ldexp((double)mantissa, 1 - format->bias - m);
    else value = ldexp((double)((1u << m) + mantissa), (int)exponent - format->bias - m);
    return sign ? -value : value;
}

/* Independent reference for float32 -> format: the nearest of the format's
 * finite non-negative values (sorted table `values`, finite_count entries),
 * ties to the even code, found by binary search and a comparison with the
 * exact midpoint. Returns the code of |x| (past_max_code when it rounds beyond
 * the largest finite value). x_abs is finite or +inf, not NaN. */
static uint32_t nearest_code_by_search(const narrow_format *format, const double *values,
                                       double x_abs) {
    /* largest k with values[k] <= x_abs */
    uint32_t low = 0, high = format->finite_count - 1;
    while (low < high) {
        uint32_t middle = low + (high - low + 1) / 2;
        if (values[middle] <= x_abs) low = middle;
        else high = middle - 1;
    }
    uint32_t k = low;
    double next = (k + 1 < format->finite_count) ? values[k + 1] : format->value_past_max;
    double midpoint = 0.5 * (values[k] + next); /* exact: one bit more than the format */
    uint32_t chosen;
    if (x_abs < midpoint) chosen = k;
    else if (x_abs > midpoint) chosen = k + 1;
    else chosen = (k % 2 == 0) ? k : k + 1;
    if (chosen >= format->finite_count) chosen = format->past_max_code;
    return chosen;
}

/* Table of the finite non-negative values of a format, by definition. */
static double *finite_value_table(const narrow_format *format) {
    static double table[0x8000];
    for (uint32_t code = 0; code < format->finite_count; ++code)
        table[code] = value_by_definition(format, code);
    return table;
}

/* ---- status and errors -------------------------------------------------------- */

typedef struct thread_report {
    int started_empty;     /* a new thread sees "" */
    int saw_own_sentence;  /* r1_fail on this thread is visible on this thread */
    int cleared;           /* r1_clear_error works on this thread */
} thread_report;

static int fail_on_another_thread(void *argument) {
    thread_report *report = argument;
    report->started_empty = r1_last_error()[0] == '\0';
    r1_status status = r1_fail(R1_EIO, "sentence of the second thread (%d)", 2);
    report->saw_own_sentence =
        status == R1_EIO && strcmp(r1_last_error(), "sentence of the second thread (2)") == 0;
    r1_clear_error();
    report->cleared = r1_last_error()[0] == '\0';
    return 0;
}

static void test_status_and_errors(void) {
    if (r1t_case("status_str(every code)")) {
        static const struct { r1_status status; const char *name; } table[] = {
            {R1_OK, "R1_OK"},
            {R1_EINVAL, "R1_EINVAL"},
            {R1_ENOMEM, "R1_ENOMEM"},
            {R1_EIO, "R1_EIO"},
            {R1_EFORMAT, "R1_EFORMAT"},
            {R1_EUNSUPPORTED, "R1_EUNSUPPORTED"},
            {R1_ECUDA, "R1_ECUDA"},
            {R1_ENUMERIC, "R1_ENUMERIC"},
            {R1_EINTERNAL, "R1_EINTERNAL"},
        };
        for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i)
            R1T_CHECK(strcmp(r1_status_str(table[i].status), table[i].name) == 0,
                      "r1_status_str(%d) = \"%s\", expected \"%s\"", (int)table[i].status,
                      r1_status_str(table[i].status), table[i].name);
        R1T_CHECK(R1_OK == 0, "R1_OK must be 0, is %d", (int)R1_OK);
        R1T_CHECK(strcmp(r1_status_str((r1_status)99), "unknown status") == 0,
                  "r1_status_str(99) = \"%s\", expected \"unknown status\"",
                  r1_status_str((r1_status)99));
    }

    if (r1t_case("fail/last_error/clear_error")) {
        r1_clear_error();
        R1T_CHECK(strcmp(r1_last_error(), "") == 0, "after r1_clear_error: \"%s\"", r1_last_error());
        r1_status status = r1_fail(R1_EINVAL, "top_p = %g is outside (0, 1]", 1.5);
        R1T_CHECK(status == R1_EINVAL, "r1_fail returned %s, expected R1_EINVAL",
                  r1_status_str(status));
        R1T_CHECK(strcmp(r1_last_error(), "top_p = 1.5 is outside (0, 1]") == 0,
                  "r1_last_error() = \"%s\"", r1_last_error());
        status = r1_fail(R1_ENOMEM, "second failure");
        R1T_CHECK(status == R1_ENOMEM && strcmp(r1_last_error(), "second failure") == 0,
                  "the next failure overwrites the sentence: \"%s\"", r1_last_error());
        r1_clear_error();
        R1T_CHECK(r1_last_error()[0] == '\0', "after r1_clear_error: \"%s\"", r1_last_error());
    }

    if (r1t_case("fail(sentence longer than the buffer is cut, not overflowed)")) {
        char long_text[2000];
        memset(long_text, 'x', sizeof long_text - 1);
        long_text[sizeof long_text - 1] = '\0';
        r1_fail(R1_EINVAL, "%s", long_text);
        size_t length = strlen(r1_last_error());
        R1T_CHECK(length > 100 && length < sizeof long_text - 1,
                  "a 1999-character sentence kept %zu characters", length);
        R1T_CHECK(strncmp(r1_last_error(), long_text, length) == 0, "kept text differs");
        r1_clear_error();
    }

    if (r1t_case("last_error is thread-local")) {
        r1_fail(R1_EINVAL, "sentence of the main thread (%d)", 1);
        thread_report report = {0, 0, 0};
        thrd_t thread;
        int created = thrd_create(&thread, fail_on_another_thread, &report);
        R1T_CHECK(created == thrd_success, "thrd_create failed (%d)", created);
        if (created == thrd_success) {
            thrd_join(thread, NULL);
            R1T_CHECK(report.started_empty, "a new thread did not start with an empty sentence");
            R1T_CHECK(report.saw_own_sentence, "the second thread did not see its own sentence");
            R1T_CHECK(report.cleared, "r1_clear_error on the second thread did not clear it");
            R1T_CHECK(strcmp(r1_last_error(), "sentence of the main thread (1)") == 0,
                      "the main thread's sentence changed to \"%s\"", r1_last_error());
        }
        r1_clear_error();
    }
}

/* ---- backends ------------------------------------------------------------------ */

static void test_backends(void) {
    if (r1t_case("backend_name")) {
        R1T_CHECK(strcmp(r1_backend_name(R1_REF), "ref") == 0, "R1_REF -> %s", r1_backend_name(R1_REF));
        R1T_CHECK(strcmp(r1_backend_name(R1_FAST), "fast") == 0, "R1_FAST -> %s", r1_backend_name(R1_FAST));
        R1T_CHECK(strcmp(r1_backend_name(R1_CUDA), "cuda") == 0, "R1_CUDA -> %s", r1_backend_name(R1_CUDA));
        R1T_CHECK(strcmp(r1_backend_name((r1_backend)7), "unknown") == 0, "7 -> %s",
                  r1_backend_name((r1_backend)7));
    }

    if (r1t_case("backend_parse(valid names)")) {
        for (int b = 0; b < R1_BACKEND_COUNT; ++b) {
            r1_backend parsed = (b == R1_REF) ? R1_CUDA : R1_REF; /* anything else */
            r1_status status = r1_backend_parse(r1_backend_name((r1_backend)b), &parsed);
            R1T_CHECK(status == R1_OK && parsed == (r1_backend)b, "parse(\"%s\") = %s, backend %d",
                      r1_backend_name((r1_backend)b), r1_status_str(status), (int)parsed);
        }
    }

    if (r1t_case("backend_parse(bad names)")) {
        static const char *bad_names[] = {"", "REF", "Fast", "gpu", "ref ", " cuda", "cudaa", "refx"};
        for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; ++i) {
            r1_clear_error();
            r1_backend parsed = R1_FAST;
            r1_status status = r1_backend_parse(bad_names[i], &parsed);
            R1T_CHECK(status == R1_EINVAL, "parse(\"%s\") = %s, expected R1_EINVAL", bad_names[i],
                      r1_status_str(status));
            R1T_CHECK(parsed == R1_FAST, "parse(\"%s\") wrote the output on failure", bad_names[i]);
            R1T_CHECK(r1_last_error()[0] != '\0', "parse(\"%s\") left no sentence", bad_names[i]);
            char quoted[32];
            snprintf(quoted, sizeof quoted, "\"%s\"", bad_names[i]);
            R1T_CHECK(strstr(r1_last_error(), quoted) != NULL,
                      "the sentence \"%s\" does not name the bad value %s", r1_last_error(), quoted);
        }
        r1_backend parsed;
        R1T_CHECK(r1_backend_parse(NULL, &parsed) == R1_EINVAL, "parse(NULL name) must be R1_EINVAL");
        R1T_CHECK(r1_backend_parse("ref", NULL) == R1_EINVAL, "parse(NULL output) must be R1_EINVAL");
        R1T_CHECK(r1_last_error()[0] != '\0', "parse(NULL) left no sentence");
        r1_clear_error();
    }

    if (r1t_case("backend_available")) {
        R1T_CHECK(r1_backend_available(R1_REF) == 1, "ref must always be available");
        R1T_CHECK(r1_backend_available(R1_FAST) == 1, "fast must always be available");
        int cuda_expected = r1_cuda_built() && strcmp(r1_device_name(), "none") != 0;
        R1T_CHECK(r1_backend_available(R1_CUDA) == cuda_expected,
                  "cuda available = %d, expected %d (built %d, device \"%s\")",
                  r1_backend_available(R1_CUDA), cuda_expected, r1_cuda_built(), r1_device_name());
        R1T_CHECK(r1_backend_available((r1_backend)7) == 0, "an unknown backend is not available");
    }

    if (r1t_case("version")) {
        R1T_CHECK(strcmp(r1_version(), "0.1.0") == 0, "r1_version() = \"%s\"", r1_version());
    }
}

/* ---- device helpers in a CPU-only build ------------------------------------------ */

/* R1_EUNSUPPORTED and the sentence that says how to get a CUDA build. */
#define EXPECT_NO_CUDA(function_name, status)                                              \
    do {                                                                                  \
        R1T_CHECK((status) == R1_EUNSUPPORTED, "%s = %s, expected R1_EUNSUPPORTED",        \
                  function_name, r1_status_str(status));                                  \
        R1T_CHECK(strcmp(r1_last_error(), no_cuda_sentence) == 0, "%s sentence \"%s\"",    \
                  function_name, r1_last_error());                                        \
    } while (0)

static const char no_cuda_sentence[] =
    "r1lab was built without CUDA (configure with nvcc on PATH, R1LAB_CUDA=ON)";

static void test_device_without_cuda(void) {
    if (r1_cuda_built()) return; /* the CUDA build has its own tests */
    if (r1t_case("device helpers without CUDA")) {
        R1T_CHECK(strcmp(r1_device_name(), "none") == 0, "r1_device_name() = \"%s\"", r1_device_name());
        uint8_t host[4] = {0};
        void *pointer = host; /* not NULL, so we see it reset */
        r1_status status;

        r1_clear_error();
        status = r1_device_alloc(&pointer, 64);
        EXPECT_NO_CUDA("r1_device_alloc", status);
        R1T_CHECK(pointer == NULL, "r1_device_alloc left a non-NULL pointer");

        r1_clear_error();
        status = r1_device_free(NULL); /* like cudaFree(NULL): nothing to free */
        R1T_CHECK(status == R1_OK, "r1_device_free(NULL) = %s, expected R1_OK",
                  r1_status_str(status));
        status = r1_device_free(host);
        EXPECT_NO_CUDA("r1_device_free", status);

        r1_clear_error();
        status = r1_device_copy(host, host + 2, 2, R1_HOST_TO_DEVICE);
        EXPECT_NO_CUDA("r1_device_copy", status);

        r1_clear_error();
        status = r1_device_fill(host, 0xFF, sizeof host);
        EXPECT_NO_CUDA("r1_device_fill", status);

        r1_clear_error();
        status = r1_device_synchronize();
        EXPECT_NO_CUDA("r1_device_synchronize", status);

        R1T_CHECK(host[0] == 0 && host[1] == 0 && host[2] == 0 && host[3] == 0,
                  "a device helper touched host memory");
        r1_clear_error();
    }
}

/* ---- dtype names and sizes ---------------------------------------------------------- */

static void test_dtype_names_and_sizes(void) {
    if (r1t_case("dtype_name/bits/bytes")) {
        static const struct { r1_dtype dtype; const char *name; int bits; } table[] = {
            {R1_F32, "f32", 32},    {R1_F16, "f16", 16}, {R1_BF16, "bf16", 16},
            {R1_F8E4M3, "f8e4m3", 8}, {R1_I8, "i8", 8},   {R1_I4, "i4", 4},
            {R1_I32, "i32", 32},    {R1_I64, "i64", 64}, {R1_F64, "f64", 64},
            {R1_U8, "u8", 8},
        };
        R1T_CHECK(sizeof table / sizeof table[0] == R1_DTYPE_COUNT, "table misses a dtype");
        for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i) {
            r1_dtype dtype = table[i].dtype;
            R1T_CHECK(strcmp(r1_dtype_name(dtype), table[i].name) == 0, "name(%d) = \"%s\", expected \"%s\"",
                      (int)dtype, r1_dtype_name(dtype), table[i].name);
            R1T_CHECK(r1_dtype_bits(dtype) == table[i].bits, "bits(%s) = %d, expected %d",
                      table[i].name, r1_dtype_bits(dtype), table[i].bits);
            if (dtype != R1_I4) {
                size_t expected = 10 * (size_t)table[i].bits / 8;
                R1T_CHECK(r1_dtype_bytes(dtype, 10) == expected, "bytes(%s, 10) = %zu, expected %zu",
                          table[i].name, r1_dtype_bytes(dtype, 10), expected);
                R1T_CHECK(r1_dtype_bytes(dtype, 0) == 0, "bytes(%s, 0) != 0", table[i].name);
            }
        }
        R1T_CHECK(strcmp(r1_dtype_name((r1_dtype)R1_DTYPE_COUNT), "unknown") == 0,
                  "name(unknown) = \"%s\"", r1_dtype_name((r1_dtype)R1_DTYPE_COUNT));
        R1T_CHECK(r1_dtype_bits((r1_dtype)R1_DTYPE_COUNT) == 0, "bits(unknown) != 0");
        R1T_CHECK(r1_dtype_bytes((r1_dtype)R1_DTYPE_COUNT, 5) == 0, "bytes(unknown, 5) != 0");
    }

    if (r1t_case("dtype_bytes(i4 rounds up)")) {
        /* (n + 1) / 2 whole bytes: 0->0, 1->1, 2->1, 3->2, 4096->2048, 4097->2049;
         * SIZE_MAX (odd) -> SIZE_MAX/2 + 1 with no overflow. */
        static const size_t counts[] = {0, 1, 2, 3, 4096, 4097};
        static const size_t bytes[] = {0, 1, 1, 2, 2048, 2049};
        for (int i = 0; i < 6; ++i)
            R1T_CHECK(r1_dtype_bytes(R1_I4, counts[i]) == bytes[i], "bytes(i4, %zu) = %zu, expected %zu",
                      counts[i], r1_dtype_bytes(R1_I4, counts[i]), bytes[i]);
        R1T_CHECK(r1_dtype_bytes(R1_I4, SIZE_MAX) == SIZE_MAX / 2 + 1, "bytes(i4, SIZE_MAX) = %zu",
                  r1_dtype_bytes(R1_I4, SIZE_MAX));
    }
}

/* ---- bf16 ------------------------------------------------------------------------------- */

static void test_bf16_hand_worked(void) {
    if (r1t_case("bf16 from f32, hand-worked")) {
        /* bf16 = the top 16 bits of the float32, rounded on the lower half
         * (0x8000 is exactly half a bf16 unit). */
        EXPECT_TO_BF16(1.0f, 0x3F80);                        /* 0x3F800000: lower half 0, exact */
        EXPECT_TO_BF16(float_from_bits(0x3F808000), 0x3F80); /* tie; 0x3F80 is even: stays */
        EXPECT_TO_BF16(float_from_bits(0x3F818000), 0x3F82); /* tie; 0x3F81 odd: up to even 0x3F82 */
        EXPECT_TO_BF16(float_from_bits(0x3F80C000), 0x3F81); /* 0xC000 > half: up */
        EXPECT_TO_BF16(float_from_bits(0x3F808001), 0x3F81); /* one bit above half: up */
        EXPECT_TO_BF16(float_from_bits(0x3F817FFF), 0x3F81); /* one bit below half: down */
        EXPECT_TO_BF16(-1.0f, 0xBF80);                       /* sign bit 0x8000 added */
        EXPECT_TO_BF16(3.140625f, 0x4049);  /* 1.5703125 * 2: exp 128 -> 0x40, m = 0x49 (0.5703125*128=73) */
        EXPECT_TO_BF16(0.0f, 0x0000);
        EXPECT_TO_BF16(-0.0f, 0x8000);                       /* 0x80000000: sign kept */
        /* Overflow. FLT_MAX = 0x7F7FFFFF: lower half 0xFFFF > half, the carry
         * goes 0x7F7F -> 0x7F80, the Inf pattern (round-to-nearest overflows). */
        EXPECT_TO_BF16(FLT_MAX, 0x7F80);
        EXPECT_TO_BF16(-FLT_MAX, 0xFF80);
        EXPECT_TO_BF16(float_from_bits(0x7F7F7FFF), 0x7F7F); /* below half: largest finite bf16 */
        EXPECT_TO_BF16(float_from_bits(0x7F7F8000), 0x7F80); /* tie; 0x7F7F odd: up, to Inf */
        EXPECT_TO_BF16(INFINITY, 0x7F80);
        EXPECT_TO_BF16(-INFINITY, 0xFF80);
        /* Subnormals: float32 subnormals are 0x000MMMMM; bf16 keeps 7 mantissa
         * bits, so the smallest bf16 subnormal is 0x0001 = 2^-133 (0x00010000). */
        EXPECT_TO_BF16(float_from_bits(0x00010000), 0x0001); /* 2^-133 exactly */
        EXPECT_TO_BF16(float_from_bits(0x80010000), 0x8001); /* -2^-133 */
        EXPECT_TO_BF16(float_from_bits(0x00000001), 0x0000); /* 2^-149: far below half of 2^-133 */
        EXPECT_TO_BF16(float_from_bits(0x80000001), 0x8000); /* -2^-149 -> -0 */
        EXPECT_TO_BF16(float_from_bits(0x00008000), 0x0000); /* 2^-134: tie between 0 and 0x0001, 0 even */
        EXPECT_TO_BF16(float_from_bits(0x00008001), 0x0001); /* just above the tie */
        EXPECT_TO_BF16(float_from_bits(0x00018000), 0x0002); /* 1.5 * 2^-133: tie, 0x0001 odd -> 0x0002 */
        EXPECT_TO_BF16(float_from_bits(0x007FFFFF), 0x0080); /* largest f32 subnormal rounds up to
                                                                 0x0080 = 2^-126, the smallest normal */
        /* NaN: canonical quiet NaN with the sign. 0x7F800001 is the case a
         * bare "add 0x7FFF" would turn into 0x7F80 = Inf. */
        EXPECT_TO_BF16(float_from_bits(0x7FC00000), 0x7FC0);
        EXPECT_TO_BF16(float_from_bits(0x7F800001), 0x7FC0);
        EXPECT_TO_BF16(float_from_bits(0x7FFFFFFF), 0x7FC0);
        EXPECT_TO_BF16(float_from_bits(0xFFC00001), 0xFFC0);
        EXPECT_TO_BF16(float_from_bits(0xFF800001), 0xFFC0);
    }

    if (r1t_case("bf16 to f32, hand-worked")) {
        /* bf16 -> f32 appends 16 zero bits. */
        EXPECT_FLOAT_BITS("bf16 0x3F80", r1_bf16_to_f32(0x3F80), 0x3F800000); /* 1.0 */
        EXPECT_FLOAT_BITS("bf16 0x0001", r1_bf16_to_f32(0x0001), 0x00010000); /* 2^-133 */
        EXPECT_FLOAT_BITS("bf16 0x7F7F", r1_bf16_to_f32(0x7F7F), 0x7F7F0000); /* (2-2^-7) 2^127 */
        EXPECT_FLOAT_BITS("bf16 0xFF80", r1_bf16_to_f32(0xFF80), 0xFF800000); /* -Inf */
        EXPECT_FLOAT_BITS("bf16 0x8000", r1_bf16_to_f32(0x8000), 0x80000000); /* -0 */
        R1T_CHECK(r1_bf16_to_f32(0x0001) == 0x1p-133f, "bf16 0x0001 must be 2^-133");
        R1T_CHECK(isnan(r1_bf16_to_f32(0x7FC0)) && isnan(r1_bf16_to_f32(0xFF81)),
                  "bf16 NaN must decode to NaN");
    }
}

/* ---- f16 -------------------------------------------------------------------------------- */

static void test_f16_hand_worked(void) {
    if (r1t_case("f16 from f32, hand-worked")) {
        /* f16: 1 sign, 5 exponent (bias 15), 10 mantissa. */
        EXPECT_TO_F16(1.0f, 0x3C00);        /* exp 15 = 0b01111 -> 0x3C00, m 0 */
        EXPECT_TO_F16(-2.0f, 0xC000);       /* sign 0x8000 | exp 16 << 10 = 0x4000 */
        EXPECT_TO_F16(0.5f, 0x3800);        /* exp 14 << 10 */
        EXPECT_TO_F16(0x1.554p-2f, 0x3555); /* 1.0101010101b * 2^-2: exp 13 -> 0x3400, m 0x155 */
        EXPECT_TO_F16(0.0f, 0x0000);
        EXPECT_TO_F16(-0.0f, 0x8000);
        /* Largest finite: (2 - 2^-10) 2^15 = 65504 = exp 30, m 0x3FF -> 0x7BFF. */
        EXPECT_TO_F16(65504.0f, 0x7BFF);
        EXPECT_TO_F16(65519.0f, 0x7BFF);  /* below the midpoint 65520 */
        /* 65520 = midpoint of 65504 (0x7BFF, odd) and 65536 (would be exp 31,
         * m 0 = 0x7C00, even): the tie rounds to the even one, which is Inf. */
        EXPECT_TO_F16(65520.0f, 0x7C00);
        EXPECT_TO_F16(-65520.0f, 0xFC00);
        EXPECT_TO_F16(65536.0f, 0x7C00);
        EXPECT_TO_F16(1e9f, 0x7C00);
        EXPECT_TO_F16(FLT_MAX, 0x7C00);
        EXPECT_TO_F16(-FLT_MAX, 0xFC00);
        EXPECT_TO_F16(INFINITY, 0x7C00);
        EXPECT_TO_F16(-INFINITY, 0xFC00);
        /* Ties in the normal range: 1 + 2^-11 is half a unit (2^-10) above 1.0:
         * 0x3C00 even stays; 1 + 3*2^-11 sits between 0x3C01 (odd) and 0x3C02. */
        EXPECT_TO_F16(1.0f + 0x1p-11f, 0x3C00);
        EXPECT_TO_F16(1.0f + 0x3p-11f, 0x3C02);
        EXPECT_TO_F16(1.0f + 0x1p-11f + 0x1p-23f, 0x3C01); /* just above the tie */
        /* Subnormals: unit 2^-24 (0x0001); the smallest normal 2^-14 = 0x0400. */
        EXPECT_TO_F16(0x1p-24f, 0x0001);
        EXPECT_TO_F16(-0x1p-24f, 0x8001);
        EXPECT_TO_F16(0x1p-25f, 0x0000);  /* 0.5 unit: tie between 0 and 1, 0 even */
        EXPECT_TO_F16(-0x1p-25f, 0x8000); /* ... and the sign stays: -0 */
        EXPECT_TO_F16(0x1.000002p-25f, 0x0001); /* a float32 step above the tie */
        EXPECT_TO_F16(0x3p-26f, 0x0001);  /* 0.75 unit: nearer to 1 */
        EXPECT_TO_F16(0x1p-26f, 0x0000);  /* 0.25 unit: nearer to 0 */
        EXPECT_TO_F16(0x3p-25f, 0x0002);  /* 1.5 units: tie, 1 odd -> 2 */
        EXPECT_TO_F16(0x5p-25f, 0x0002);  /* 2.5 units: tie, 2 even stays */
        EXPECT_TO_F16(0x1p-14f, 0x0400);  /* smallest normal: exp 1, m 0 */
        EXPECT_TO_F16(0x3FFp-24f, 0x03FF); /* largest subnormal: 1023 units */
        EXPECT_TO_F16(0x7FFp-25f, 0x0400); /* 1023.5 units: tie, 0x03FF odd -> 0x0400 (normal) */
        EXPECT_TO_F16(float_from_bits(0x00000001), 0x0000); /* 2^-149 */
        EXPECT_TO_F16(float_from_bits(0x80000001), 0x8000);
        /* NaN -> 0x7E00 with the sign, whatever the payload. */
        EXPECT_TO_F16(float_from_bits(0x7FC00000), 0x7E00);
        EXPECT_TO_F16(float_from_bits(0x7F800001), 0x7E00);
        EXPECT_TO_F16(float_from_bits(0xFFFFFFFF), 0xFE00);
    }

    if (r1t_case("f16 to f32, hand-worked")) {
        /* 0x7BFF: exp 30, m 1023 -> (1 + 1023/1024) 2^15 = 65504 = 0x477FE000. */
        EXPECT_FLOAT_BITS("f16 0x7BFF", r1_f16_to_f32(0x7BFF), 0x477FE000);
        /* 0x0001: 2^-24 = float32 exp 127-24 = 103 = 0x67 -> 0x33800000. */
        EXPECT_FLOAT_BITS("f16 0x0001", r1_f16_to_f32(0x0001), 0x33800000);
        /* 0x03FF: 1023 * 2^-24 = 1.111111111b * 2^9 * 2^-24 = 1.111111111b * 2^-15:
         * exp 127-15 = 112 = 0x70 -> 0x38000000; the 9 ones after the point as a
         * 10-bit field are 0x3FE, << 13 = 0x7FC000 -> 0x387FC000. */
        EXPECT_FLOAT_BITS("f16 0x03FF", r1_f16_to_f32(0x03FF), 0x387FC000);
        /* 0x3555: exp 13, m 0x155 -> 1365/1024 * 2^-2 = 0.333251953125
         * = float32 exp 125 (0x3E8...), mantissa 0x155 << 13 = 0x2AA000 -> 0x3EAAA000. */
        EXPECT_FLOAT_BITS("f16 0x3555", r1_f16_to_f32(0x3555), 0x3EAAA000);
        EXPECT_FLOAT_BITS("f16 0x7C00", r1_f16_to_f32(0x7C00), 0x7F800000); /* +Inf */
        EXPECT_FLOAT_BITS("f16 0xFC00", r1_f16_to_f32(0xFC00), 0xFF800000); /* -Inf */
        EXPECT_FLOAT_BITS("f16 0x8000", r1_f16_to_f32(0x8000), 0x80000000); /* -0 */
        EXPECT_FLOAT_BITS("f16 0x7E00", r1_f16_to_f32(0x7E00), 0x7FC00000); /* quiet NaN */
        R1T_CHECK(isnan(r1_f16_to_f32(0x7C01)), "f16 0x7C01 (NaN) must decode to NaN");
    }
}

/* ---- E4M3 ------------------------------------------------------------------------------- */

static void test_e4m3_hand_worked(void) {
    if (r1t_case("f8e4m3 from f32, hand-worked")) {
        /* E4M3 fn: 1 sign, 4 exponent (bias 7), 3 mantissa; S.1111.111 is NaN,
         * so the largest finite is 0.1111.110 = 1.75 * 2^8 = 448 = 0x7E. */
        EXPECT_TO_E4M3(1.0f, 0x38);   /* exp 7 = 0b0111 -> 0b0.0111.000 = 0x38 */
        EXPECT_TO_E4M3(-1.0f, 0xB8);
        EXPECT_TO_E4M3(1.5f, 0x3C);   /* m = 0.5 * 8 = 4 -> 0x38 | 4 */
        EXPECT_TO_E4M3(0.0f, 0x00);
        EXPECT_TO_E4M3(-0.0f, 0x80);
        EXPECT_TO_E4M3(448.0f, 0x7E);
        EXPECT_TO_E4M3(-448.0f, 0xFE);
        /* Beyond 448 everything SATURATES to +-448 (no Inf in E4M3; the
         * clamp-then-cast convention, see core/dtype.c). 464 is the midpoint
         * of 448 (m 6, even) and the missing 480 (m 7): 448 either way. */
        EXPECT_TO_E4M3(464.0f, 0x7E);
        EXPECT_TO_E4M3(465.0f, 0x7E);
        EXPECT_TO_E4M3(480.0f, 0x7E);  /* a bare torch cast would give NaN here */
        EXPECT_TO_E4M3(1e9f, 0x7E);
        EXPECT_TO_E4M3(-1e9f, 0xFE);
        EXPECT_TO_E4M3(FLT_MAX, 0x7E);
        EXPECT_TO_E4M3(INFINITY, 0x7E);
        EXPECT_TO_E4M3(-INFINITY, 0xFE);
        /* Ties among normals: 1.0625 = 1 + 1/16 is half a unit (1/8) above 1:
         * m 0 even stays (0x38); 1.1875 = 1 + 3/16 between m 1 (odd) and m 2 -> 0x3A. */
        EXPECT_TO_E4M3(1.0625f, 0x38);
        EXPECT_TO_E4M3(1.1875f, 0x3A);
        EXPECT_TO_E4M3(416.0f, 0x7D); /* 1.625 * 256: exp 15, m 5 -> 0x78 | 5 */
        EXPECT_TO_E4M3(432.0f, 0x7E); /* midpoint of 416 (m 5, odd) and 448 (m 6): up */
        EXPECT_TO_E4M3(240.0f, 0x77); /* 1.875 * 128: exp 14, m 7 -> 0x70 | 7 */
        EXPECT_TO_E4M3(248.0f, 0x78); /* midpoint of 240 (0x77, odd) and 256 (0x78): up,
                                         the carry moves into the exponent */
        /* Subnormals: unit 2^-9 (0x01); the smallest normal 2^-6 = 0x08. */
        EXPECT_TO_E4M3(0x1p-9f, 0x01);
        EXPECT_TO_E4M3(-0x1p-9f, 0x81);
        EXPECT_TO_E4M3(0x1p-10f, 0x00);  /* half a unit: tie, 0 even */
        EXPECT_TO_E4M3(-0x1p-10f, 0x80); /* -0 */
        EXPECT_TO_E4M3(0x3p-11f, 0x01);  /* 0.75 unit: nearer to 1 */
        EXPECT_TO_E4M3(0x3p-10f, 0x02);  /* 1.5 units: tie, 1 odd -> 2 */
        EXPECT_TO_E4M3(0x5p-10f, 0x02);  /* 2.5 units: tie, 2 even stays */
        EXPECT_TO_E4M3(0x7p-9f, 0x07);   /* largest subnormal */
        EXPECT_TO_E4M3(0xFp-10f, 0x08);  /* 7.5 units: tie, 7 odd -> 8 = 0x08 = 2^-6, normal */
        EXPECT_TO_E4M3(0x1p-6f, 0x08);
        EXPECT_TO_E4M3(float_from_bits(0x00000001), 0x00);
        /* NaN -> 0x7F with the sign. */
        EXPECT_TO_E4M3(NAN, 0x7F);
        EXPECT_TO_E4M3(float_from_bits(0x7F800001), 0x7F);
        EXPECT_TO_E4M3(float_from_bits(0xFFC00000), 0xFF);
    }

    if (r1t_case("f8e4m3 to f32, hand-worked")) {
        /* 0x7E: exp 15, m 6 -> 1.75 * 2^8 = 448 = float32 exp 135 = 0x87, m 0x600000 -> 0x43E00000 */
        EXPECT_FLOAT_BITS("e4m3 0x7E", r1_f8e4m3_to_f32(0x7E), 0x43E00000);
        EXPECT_FLOAT_BITS("e4m3 0xFE", r1_f8e4m3_to_f32(0xFE), 0xC3E00000);
        /* 0x01: 2^-9 -> float32 exp 118 = 0x76 -> 0x3B000000 */
        EXPECT_FLOAT_BITS("e4m3 0x01", r1_f8e4m3_to_f32(0x01), 0x3B000000);
        /* 0x07: 7 * 2^-9 = 1.11b * 2^-7 -> exp 120 = 0x78, m 0x600000 -> 0x3C600000 */
        EXPECT_FLOAT_BITS("e4m3 0x07", r1_f8e4m3_to_f32(0x07), 0x3C600000);
        /* 0x08: 2^-6 -> exp 121 -> 0x3C800000 */
        EXPECT_FLOAT_BITS("e4m3 0x08", r1_f8e4m3_to_f32(0x08), 0x3C800000);
        EXPECT_FLOAT_BITS("e4m3 0x38", r1_f8e4m3_to_f32(0x38), 0x3F800000); /* 1.0 */
        EXPECT_FLOAT_BITS("e4m3 0x80", r1_f8e4m3_to_f32(0x80), 0x80000000); /* -0 */
        EXPECT_FLOAT_BITS("e4m3 0x7F", r1_f8e4m3_to_f32(0x7F), 0x7FC00000); /* NaN */
        EXPECT_FLOAT_BITS("e4m3 0xFF", r1_f8e4m3_to_f32(0xFF), 0xFFC00000); /* NaN, sign kept */
        /* 0x78 (exp 15, m 0) is 256, a normal number: E4M3 fn has no Inf. */
        EXPECT_FLOAT_BITS("e4m3 0x78", r1_f8e4m3_to_f32(0x78), 0x43800000);
    }
}

/* ---- exhaustive checks over every code of a format ----------------------------------- */

static void check_every_code(const narrow_format *format) {
    uint32_t code_count = 1u << format->total_bits;
    int failures = 0;
    for (uint32_t code = 0; code < code_count && failures < 8; ++code) {
        float decoded = format->decode(code);
        double expected = value_by_definition(format, code);
        uint32_t sign = code & format->sign_bit;
        if (isnan(expected)) {
            uint32_t back = format->encode(decoded);
            if (!isnan(decoded) || back != (sign | format->canonical_nan)) {
                R1T_CHECK(0, "%s 0x%X (NaN) decodes to %a and encodes back to 0x%X, expected 0x%X",
                          format->name, code, (double)decoded, back, sign | format->canonical_nan);
                ++failures;
            }
            continue;
        }
        uint32_t back = format->encode(decoded);
        int sign_ok = (signbit(decoded) != 0) == (sign != 0);
        if ((double)decoded != expected || !sign_ok || back != code) {
            R1T_CHECK(0, "%s 0x%X decodes to %a (definition %a) and encodes back to 0x%X",
                      format->name, code, (double)decoded, expected, back);
            ++failures;
        }
    }
}

/* For neighbours a < b among the finite non-negative values (and the largest
 * finite value with the one "past" it), the midpoint m = (a + b) / 2 is a
 * float32 (it needs one more bit than the format); m rounds to the even code,
 * and one float32 step below / above m rounds to a / b. Checked for both signs. */
static void check_every_midpoint(const narrow_format *format) {
    const double *values = finite_value_table(format);
    int failures = 0;
    for (uint32_t k = 0; k < format->finite_count && failures < 8; ++k) {
        double next = (k + 1 < format->finite_count) ? values[k + 1] : format->value_past_max;
        uint32_t next_code = (k + 1 < format->finite_count) ? k + 1 : format->past_max_code;
        float midpoint = (float)(0.5 * (values[k] + next));
        if ((double)midpoint != 0.5 * (values[k] + next)) {
            R1T_CHECK(0, "%s: midpoint after 0x%X is not a float32", format->name, k);
            ++failures;
            continue;
        }
        uint32_t even = (k % 2 == 0) ? k : next_code;
        float below = nextafterf(midpoint, 0.0f);
        float above = nextafterf(midpoint, INFINITY);
        struct { float input; uint32_t expected; } probes[3] = {
            {midpoint, even}, {below, k}, {above, next_code}};
        for (int p = 0; p < 3; ++p) {
            for (int negative = 0; negative < 2; ++negative) {
                float input = negative ? -probes[p].input : probes[p].input;
                uint32_t expected = probes[p].expected | (negative ? format->sign_bit : 0);
                uint32_t got = format->encode(input);
                if (got != expected) {
                    R1T_CHECK(0, "%s(%a) = 0x%X, expected 0x%X (neighbours 0x%X, 0x%X)",
                              format->name, (double)input, got, expected, k, next_code);
                    ++failures;
                }
            }
        }
    }
}

/* Random float32 inputs against the search-based reference. Half of them are
 * arbitrary bit patterns (every exponent), half are drawn inside the format's
 * exponent range with some low mantissa bits cleared, so exact values and
 * ties are frequent. */
static void check_random_inputs(const narrow_format *format, uint64_t seed, int count) {
    const double *values = finite_value_table(format);
    r1t_rng rng = r1t_rng_make(seed);
    /* float32 exponents from a quarter of the smallest subnormal to twice past
     * the largest finite value, kept within float32's own (-127 = subnormal,
     * 128 = Inf/NaN) */
    int lowest = 1 - format->bias - (int)format->mantissa_bits - 2;
    int highest = (int)(1u << format->exponent_bits) - format->bias + 1;
    if (lowest < -127) lowest = -127;
    if (highest > 128) highest = 128;
    int failures = 0;
    for (int i = 0; i < count && failures < 8; ++i) {
        uint32_t bits = (uint32_t)r1t_rng_u64(&rng);
        if (i % 2 == 1) {
            int exponent = (int)r1t_rng_range(&rng, lowest, highest);
            int kept_mantissa_bits = (int)r1t_rng_range(&rng, 0, 23);
            uint32_t mantissa = bits & 0x007FFFFFu;
            mantissa &= ~((1u << (23 - kept_mantissa_bits)) - 1u);
            bits = (bits & 0x80000000u) | ((uint32_t)(exponent + 127) << 23) | mantissa;
        }
        float input = float_from_bits(bits);
        uint32_t sign = (bits & 0x80000000u) ? format->sign_bit : 0;
        uint32_t expected = isnan(input) ? format->canonical_nan
                                         : nearest_code_by_search(format, values, fabs((double)input));
        expected |= sign;
        uint32_t got = format->encode(input);
        if (got != expected) {
            R1T_CHECK(0, "%s(%a, bits 0x%08X) = 0x%X, the reference gives 0x%X", format->name,
                      (double)input, bits, got, expected);
            ++failures;
        }
    }
}

static void test_exhaustive(void) {
    const narrow_format *formats[3] = {&BF16, &F16, &E4M3};
    for (int f = 0; f < 3; ++f) {
        if (r1t_case("%s every code: decode by definition, round trip", formats[f]->name))
            check_every_code(formats[f]);
        if (r1t_case("%s every midpoint rounds to even", formats[f]->name))
            check_every_midpoint(formats[f]);
        if (r1t_case("%s random inputs vs nearest-by-search", formats[f]->name))
            check_random_inputs(formats[f], r1t_seed() + (uint64_t)f, 1 << 20);
    }
}

/* ---- int4 -------------------------------------------------------------------------------- */

static void test_i4(void) {
    if (r1t_case("i4 get, hand-worked")) {
        /* byte 0x8F: low nibble 0xF = -1 (element 0), high nibble 0x8 = -8 (element 1);
         * byte 0x70: low 0 (element 2), high 7 (element 3). */
        const uint8_t packed[2] = {0x8F, 0x70};
        static const int expected[4] = {-1, -8, 0, 7};
        for (size_t i = 0; i < 4; ++i)
            R1T_CHECK(r1_i4_get(packed, i) == expected[i], "get(%zu) = %d, expected %d", i,
                      r1_i4_get(packed, i), expected[i]);
    }

    if (r1t_case("i4 set/get every value at every position")) {
        /* A background with distinct nibbles; setting one element must change
         * exactly its nibble. */
        const uint8_t background[4] = {0x5A, 0xC3, 0x96, 0x0F};
        for (size_t index = 0; index < 8; ++index) {
            for (int value = -8; value <= 7; ++value) {
                uint8_t packed[4];
                memcpy(packed, background, sizeof packed);
                r1_i4_set(packed, index, value);
                R1T_CHECK(r1_i4_get(packed, index) == value, "set(%zu, %d) then get = %d", index,
                          value, r1_i4_get(packed, index));
                for (size_t other = 0; other < 8; ++other) {
                    if (other == index) continue;
                    R1T_CHECK(r1_i4_get(packed, other) == r1_i4_get(background, other),
                              "set(%zu, %d) changed element %zu", index, value, other);
                }
                uint8_t expected_nibble = (uint8_t)(value & 0xF);
                uint8_t expected_byte =
                    (index % 2 == 0) ? (uint8_t)((background[index / 2] & 0xF0) | expected_nibble)
                                     : (uint8_t)((background[index / 2] & 0x0F) | (expected_nibble << 4));
                R1T_CHECK(packed[index / 2] == expected_byte, "set(%zu, %d): byte 0x%02X, expected 0x%02X",
                          index, value, packed[index / 2], expected_byte);
            }
        }
    }
}

/* ---- Philox4x32-10 and uniform numbers -------------------------------------------------- */

/* Known answers from Random123's tests/kat_vectors (github.com/DEShawResearch/
 * random123, commit 9545ff6413f258be2f04c1d319d99aaef7521150, lines 27-29),
 * columns: name, rounds, CTR (4 words), KEY (2 words), EXPECTED (4 words):
 *   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
 *   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
 *   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
 * (the third uses the first hex digits of pi as counter and key). */
static void test_philox(void) {
    if (r1t_case("philox4x32_10 Random123 known answers")) {
        static const struct {
            uint32_t counter[4], key[2], expected[4];
        } kat[3] = {
            {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
             {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
            {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
             {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
            {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
             {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
        };
        for (int v = 0; v < 3; ++v) {
            r1_philox4x32 counter;
            memcpy(counter.v, kat[v].counter, sizeof counter.v);
            r1_philox4x32 out = r1_philox4x32_10(counter, kat[v].key[0], kat[v].key[1]);
            for (int w = 0; w < 4; ++w)
                R1T_CHECK(out.v[w] == kat[v].expected[w], "vector %d word %d: 0x%08x, expected 0x%08x",
                          v, w, out.v[w], kat[v].expected[w]);
        }
        /* The same vectors through r1_philox_draw(seed, row, step): all-zero and
         * all-ones (seed, row, step) give counter and key of all zeros / ones. */
        r1_philox4x32 zero = r1_philox_draw(0, 0, 0);
        r1_philox4x32 ones = r1_philox_draw(UINT64_MAX, UINT64_MAX, UINT64_MAX);
        for (int w = 0; w < 4; ++w) {
            R1T_CHECK(zero.v[w] == kat[0].expected[w], "draw(0,0,0) word %d = 0x%08x", w, zero.v[w]);
            R1T_CHECK(ones.v[w] == kat[1].expected[w], "draw(~0,~0,~0) word %d = 0x%08x", w, ones.v[w]);
        }
    }

    if (r1t_case("uniform_f64/f32 of crafted words")) {
        /* u64 = ((x0 << 21) ^ (x1 >> 11)) * 2^-53: x0 fills bits 21..52, the top
         * 21 bits of x1 fill bits 0..20 (no overlap, so ^ is |); x1's low 11
         * bits are dropped. */
        R1T_CHECK(r1_uniform_f64(0, 0) == 0.0, "f64(0, 0) = %a", r1_uniform_f64(0, 0));
        R1T_CHECK(r1_uniform_f64(0xFFFFFFFFu, 0xFFFFFFFFu) == 1.0 - 0x1p-53,
                  "f64(~0, ~0) = %a, expected 1 - 2^-53", r1_uniform_f64(0xFFFFFFFFu, 0xFFFFFFFFu));
        R1T_CHECK(r1_uniform_f64(0, 0x800) == 0x1p-53, "f64(0, 1<<11) = %a, expected 2^-53",
                  r1_uniform_f64(0, 0x800));
        R1T_CHECK(r1_uniform_f64(0, 0x7FF) == 0.0, "f64(0, 0x7FF) = %a: low 11 bits must be dropped",
                  r1_uniform_f64(0, 0x7FF));
        R1T_CHECK(r1_uniform_f64(1, 0) == 0x1p-32, "f64(1, 0) = %a, expected 2^21 * 2^-53 = 2^-32",
                  r1_uniform_f64(1, 0));
        R1T_CHECK(r1_uniform_f64(0x80000000u, 0) == 0.5, "f64(1<<31, 0) = %a, expected 2^52 * 2^-53",
                  r1_uniform_f64(0x80000000u, 0));
        /* u32 = (x >> 8) * 2^-24: the top 24 bits. */
        R1T_CHECK(r1_uniform_f32(0) == 0.0f, "f32(0) = %a", (double)r1_uniform_f32(0));
        R1T_CHECK(r1_uniform_f32(0xFFFFFFFFu) == 1.0f - 0x1p-24f, "f32(~0) = %a, expected 1 - 2^-24",
                  (double)r1_uniform_f32(0xFFFFFFFFu));
        R1T_CHECK(r1_uniform_f32(0x100) == 0x1p-24f, "f32(0x100) = %a, expected 2^-24",
                  (double)r1_uniform_f32(0x100));
        R1T_CHECK(r1_uniform_f32(0xFF) == 0.0f, "f32(0xFF) = %a, expected 0", (double)r1_uniform_f32(0xFF));
        R1T_CHECK(r1_uniform_f32(0x80000000u) == 0.5f, "f32(1<<31) = %a", (double)r1_uniform_f32(0x80000000u));
        /* The first known answer, (0x6627e8d5, 0xe169c58d): (0x6627e8d5 << 21) |
         * (0xe169c58d >> 11) = 0xcc4fd1abc2d38, times 2^-53 = 0x1.989fa35785a7p-2. */
        R1T_CHECK(r1_sampling_uniform(0, 0, 0) == 0x1.989fa35785a7p-2, "sampling_uniform(0,0,0) = %a",
                  r1_sampling_uniform(0, 0, 0));
    }

    if (r1t_case("sampling_uniform(seed,row,step) is Philox of (row, step) under seed")) {
        static const uint64_t triples[][3] = {
            {0, 0, 0},
            {42, 7, 1000},
            {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull, 0x00000001FFFFFFFFull},
            {UINT64_MAX, UINT64_MAX, UINT64_MAX},
            {1ull << 32, 1ull << 32, 1ull << 32}, /* only the high words set */
        };
        r1t_rng rng = r1t_rng_make(r1t_seed());
        for (int i = 0; i < 5 + 1000; ++i) {
            uint64_t seed, row, step;
            if (i < 5) {
                seed = triples[i][0], row = triples[i][1], step = triples[i][2];
            } else {
                seed = r1t_rng_u64(&rng), row = r1t_rng_u64(&rng), step = r1t_rng_u64(&rng);
            }
            r1_philox4x32 counter = {{(uint32_t)row, (uint32_t)(row >> 32), (uint32_t)step,
                                      (uint32_t)(step >> 32)}};
            r1_philox4x32 x = r1_philox4x32_10(counter, (uint32_t)seed, (uint32_t)(seed >> 32));
            double expected = r1_uniform_f64(x.v[0], x.v[1]);
            double got = r1_sampling_uniform(seed, row, step);
            R1T_CHECK(got == expected && got >= 0.0 && got < 1.0,
                      "sampling_uniform(%llu, %llu, %llu) = %a, expected %a", (unsigned long long)seed,
                      (unsigned long long)row, (unsigned long long)step, got, expected);
        }
    }
}

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "common");
    test_status_and_errors();
    test_backends();
    test_device_without_cuda();
    test_dtype_names_and_sizes();
    test_bf16_hand_worked();
    test_f16_hand_worked();
    test_e4m3_hand_worked();
    test_exhaustive();
    test_i4();
    test_philox();
    return r1t_end();
}
