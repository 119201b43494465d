/*
 * core/dtype.c — element types: names and sizes, and exact conversions between
 * float32 and the narrow floating-point formats bf16, f16 and fp8 E4M3, plus
 * packed signed 4-bit integers.
 *
 * A binary floating-point format with E exponent bits (bias B) and M mantissa
 * bits encodes the bit fields (sign s, exponent e, mantissa m) as
 *     normal     (e >= 1):  (-1)^s * (1 + m / 2^M) * 2^(e - B)
 *     subnormal  (e == 0):  (-1)^s * (m / 2^M) * 2^(1 - B)
 *
 *               E  M   B    largest finite        smallest subnormal  special
 *     float32   8  23  127  (2 - 2^-23) * 2^127   2^-149              Inf, NaN
 *     bf16      8   7  127  (2 - 2^-7) * 2^127    2^-133              Inf, NaN
 *     f16       5  10   15  65504                 2^-24               Inf, NaN
 *     E4M3 fn   4   3    7  448 (0x7E)            2^-9                NaN only
 *
 * float32 -> narrow keeps the sign and rounds the magnitude to the nearest
 * representable value; a value exactly halfway between two neighbours goes to
 * the one whose last mantissa bit is 0 ("ties to even", IEEE-754's default).
 * All of it is done on the integer bits, so the result does not depend on the
 * processor's own conversions, rounding mode or flush-to-zero setting:
 *     significand q = 1.m (an integer with 24 bits), exponent x
 *     value = q * 2^(x - 150); in the target, one unit of the last place is
 *     2^(e' - B - M) (normal) or 2^(1 - B - M) (subnormal), so the target's
 *     integer significand is q shifted right by the difference, rounded.
 * A carry out of the mantissa moves into the exponent by itself (the largest
 * subnormal rounds up to the smallest normal, the largest finite value rounds
 * up to "one past it").
 *
 * Out of range:
 *   f16, bf16   magnitudes that round past the largest finite value become
 *               Inf (IEEE-754 overflow under round-to-nearest): 65520 -> Inf.
 *   E4M3        has no Inf. Every finite value beyond 448, and +-Inf, SATURATE
 *               to +-448 (0x7E / 0xFE). This is the convention of DeepSeek-V3
 *               style quantization, which clamps to [-448, 448] before the
 *               cast (x.clamp(-448, 448).to(torch.float8_e4m3fn)), and of
 *               CUDA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3).
 *               It differs from a bare torch cast, which turns |x| >= 480 and
 *               +-Inf into NaN; below 480 the two agree (464 <= |x| < 480
 *               rounds to 448 either way).
 * NaN becomes the format's canonical quiet NaN with the input's sign:
 *   bf16 0x7FC0, f16 0x7E00, E4M3 0x7F (sign bit 0x8000 / 0x8000 / 0x80).
 * -0.0 stays -0.0 in every format.
 *
 * narrow -> float32 is exact: every bf16, f16 and E4M3 value is a float32
 * value (NaN payloads of bf16/f16 are kept; E4M3 NaN becomes 0x7FC00000 with
 * the sign).
 *
 * i4: two's-complement nibbles, element 2i in bits 0..3 of byte i, element
 * 2i+1 in bits 4..7.
 */
#include <string.h>

#include "r1lab/common.h"

/* ---- names and sizes ----------------------------------------------------- */

const char *r1_dtype_name(r1_dtype dtype) {
    switch (dtype) {
    case R1_F32: return "f32";
    case R1_F16: return "f16";
    case R1_BF16: return "bf16";
    case R1_F8E4M3: return "f8e4m3";
    case R1_I8: return "i8";
    case R1_I4: return "i4";
    case R1_I32: return "i32";
    case R1_I64: return "i64";
    case R1_F64: return "f64";
    case R1_U8: return "u8";
    }
    return "unknown";
}

int r1_dtype_bits(r1_dtype dtype) {
    switch (dtype) {
    case R1_F64:
    case R1_I64: return 64;
    case R1_F32:
    case R1_I32: return 32;
    case R1_F16:
    case R1_BF16: return 16;
    case R1_F8E4M3:
    case R1_I8:
    case R1_U8: return 8;
    case R1_I4: return 4;
    }
    return 0;
}

/* Whole bytes for `count` elements; 0 for an unknown dtype. i4 packs two
 * elements per byte, so an odd count ends in a half-used byte. */
size_t r1_dtype_bytes(r1_dtype dtype, size_t count) {
    if (dtype == R1_I4) return count / 2 + count % 2; /* (count+1)/2 without overflow */
    return count * (size_t)(r1_dtype_bits(dtype) / 8);
}

/* ---- float32 bits -------------------------------------------------------- */

#define F32_SIGN_BIT 0x80000000u
#define F32_ABS_MASK 0x7FFFFFFFu
#define F32_INF_BITS 0x7F800000u      /* exponent all ones, mantissa 0 */
#define F32_QUIET_NAN_BITS 0x7FC00000u
#define F32_MANTISSA_BITS 23
#define F32_BIAS 127

static uint32_t bits_of_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float float_of_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* value / 2^shift rounded to the nearest integer, ties to the even one.
 * Assumes value < 2^31 (so a shift of 32 or more leaves less than one half). */
static uint32_t shift_right_round_to_nearest_even(uint32_t value, int shift) {
    if (shift <= 0) return value;
    if (shift >= 32) return 0;
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (dropped > half || (dropped == half && (kept & 1u))) kept += 1u;
    return kept;
}

/* Rounds a finite, non-negative float32 (given by its bits, sign cleared) to a
 * narrower format with `mantissa_bits` mantissa bits and exponent bias `bias`.
 * Returns the target's exponent and mantissa fields as one integer
 * (exponent << mantissa_bits | mantissa), which may exceed the largest finite
 * code: the caller decides between Inf and saturation. */
static uint32_t round_magnitude_to_narrow(uint32_t abs_bits, int mantissa_bits, int bias) {
    int f32_exponent = (int)(abs_bits >> F32_MANTISSA_BITS);
    uint32_t significand = abs_bits & 0x007FFFFFu;
    if (f32_exponent == 0) {
        f32_exponent = 1; /* float32 subnormal: 0.m * 2^-126, no hidden bit */
    } else {
        significand |= 0x00800000u; /* the hidden leading 1 */
    }
    /* value = significand * 2^(f32_exponent - 127 - 23) */
    int target_exponent = f32_exponent - F32_BIAS + bias;
    int drop = F32_MANTISSA_BITS - mantissa_bits; /* bits below the target's last place */
    if (target_exponent >= 1) {
        /* Normal: significand >> drop holds the hidden 1 at bit mantissa_bits,
         * so adding (target_exponent - 1) << mantissa_bits sets the exponent
         * field; a rounding carry bumps the exponent. */
        return ((uint32_t)(target_exponent - 1) << mantissa_bits) +
               shift_right_round_to_nearest_even(significand, drop);
    }
    /* Subnormal in the target: its unit is 2^(1 - bias - mantissa_bits), which
     * is 2^(1 - target_exponent) times coarser than a normal's unit. */
    return shift_right_round_to_nearest_even(significand, drop + 1 - target_exponent);
}

/* ---- bf16 ----------------------------------------------------------------- */

/* bf16 is the top half of a float32: same exponent, 7 of the 23 mantissa
 * bits. Rounding the low 16 bits to nearest-even is adding 0x7FFF plus the
 * kept half's last bit, then truncating; a carry propagates into the exponent
 * (so FLT_MAX becomes Inf) and float32 subnormals round into bf16 subnormals. */
uint16_t r1_f32_to_bf16(float value) {
    uint32_t bits = bits_of_float(value);
    uint32_t sign16 = (bits & F32_SIGN_BIT) >> 16;
    if ((bits & F32_ABS_MASK) > F32_INF_BITS) return (uint16_t)(sign16 | 0x7FC0u);
    uint32_t kept_last_bit = (bits >> 16) & 1u;
    bits += 0x7FFFu + kept_last_bit;
    return (uint16_t)(bits >> 16);
}

float r1_bf16_to_f32(uint16_t bits) { return float_of_bits((uint32_t)bits << 16); }

/* ---- f16 ------------------------------------------------------------------ */

#define F16_MANTISSA_BITS 10
#define F16_BIAS 15
#define F16_INF 0x7C00u
#define F16_QUIET_NAN 0x7E00u

uint16_t r1_f32_to_f16(float value) {
    uint32_t bits = bits_of_float(value);
    uint32_t sign16 = (bits & F32_SIGN_BIT) >> 16;
    uint32_t abs_bits = bits & F32_ABS_MASK;
    if (abs_bits > F32_INF_BITS) return (uint16_t)(sign16 | F16_QUIET_NAN);
    if (abs_bits == F32_INF_BITS) return (uint16_t)(sign16 | F16_INF);
    uint32_t magnitude = round_magnitude_to_narrow(abs_bits, F16_MANTISSA_BITS, F16_BIAS);
    if (magnitude >= F16_INF) magnitude = F16_INF; /* rounded past 65504: overflow */
    return (uint16_t)(sign16 | magnitude);
}

float r1_f16_to_f32(uint16_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> F16_MANTISSA_BITS) & 0x1Fu;
    uint32_t mantissa = bits & 0x3FFu;
    if (exponent == 0x1Fu) /* Inf (mantissa 0) or NaN (payload kept) */
        return float_of_bits(sign | F32_INF_BITS | (mantissa << 13));
    if (exponent == 0) {
        if (mantissa == 0) return float_of_bits(sign); /* +-0 */
        /* Subnormal m * 2^-24: shift m up until its leading 1 reaches the
         * hidden-bit position, lowering the exponent once per step. */
        uint32_t f32_exponent = F32_BIAS - F16_BIAS + 1;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --f32_exponent;
        }
        mantissa &= 0x3FFu;
        return float_of_bits(sign | (f32_exponent << 23) | (mantissa << 13));
    }
    return float_of_bits(sign | ((exponent - F16_BIAS + F32_BIAS) << 23) | (mantissa << 13));
}

/* ---- fp8 E4M3 ("fn": finite + NaN) ---------------------------------------- */

#define E4M3_MANTISSA_BITS 3
#define E4M3_BIAS 7
#define E4M3_MAX_FINITE 0x7Eu /* 0.1111.110 = 1.75 * 2^8 = 448 */
#define E4M3_NAN 0x7Fu        /* 0.1111.111 */

uint8_t r1_f32_to_f8e4m3(float value) {
    uint32_t bits = bits_of_float(value);
    uint32_t sign8 = (bits & F32_SIGN_BIT) >> 24;
    uint32_t abs_bits = bits & F32_ABS_MASK;
    if (abs_bits > F32_INF_BITS) return (uint8_t)(sign8 | E4M3_NAN);
    if (abs_bits == F32_INF_BITS) return (uint8_t)(sign8 | E4M3_MAX_FINITE); /* saturate */
    uint32_t magnitude = round_magnitude_to_narrow(abs_bits, E4M3_MANTISSA_BITS, E4M3_BIAS);
    if (magnitude > E4M3_MAX_FINITE) magnitude = E4M3_MAX_FINITE; /* saturate */
    return (uint8_t)(sign8 | magnitude);
}

float r1_f8e4m3_to_f32(uint8_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x80u) << 24;
    uint32_t exponent = (bits >> E4M3_MANTISSA_BITS) & 0xFu;
    uint32_t mantissa = bits & 0x7u;
    if ((bits & 0x7Fu) == E4M3_NAN) return float_of_bits(sign | F32_QUIET_NAN_BITS);
    if (exponent == 0) {
        if (mantissa == 0) return float_of_bits(sign); /* +-0 */
        /* Subnormal m * 2^-9, normalized as in r1_f16_to_f32. */
        uint32_t f32_exponent = F32_BIAS - E4M3_BIAS + 1;
        while ((mantissa & 0x8u) == 0) {
            mantissa <<= 1;
            --f32_exponent;
        }
        mantissa &= 0x7u;
        return float_of_bits(sign | (f32_exponent << 23) | (mantissa << 20));
    }
    return float_of_bits(sign | ((exponent - E4M3_BIAS + F32_BIAS) << 23) | (mantissa << 20));
}

/* ---- i4 ------------------------------------------------------------------- */

/* Element `index` of a packed int4 array, sign-extended to [-8, 7]. */
int r1_i4_get(const uint8_t *packed, size_t index) {
    uint8_t byte = packed[index / 2];
    int nibble = (index % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
    return nibble >= 8 ? nibble - 16 : nibble;
}

/* Stores `value` (meant to be in [-8, 7]; other values keep their low four
 * bits, as a two's-complement 4-bit cast would) without touching the other
 * element that shares the byte. */
void r1_i4_set(uint8_t *packed, size_t index, int value) {
    uint8_t nibble = (uint8_t)((unsigned)value & 0x0Fu);
    uint8_t *byte = &packed[index / 2];
    if (index % 2 == 0) *byte = (uint8_t)((*byte & 0xF0u) | nibble);
    else *byte = (uint8_t)((*byte & 0x0Fu) | (uint8_t)(nibble << 4));
}
