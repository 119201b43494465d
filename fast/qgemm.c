/*
 * fast/qgemm.c — quantized matrix products on the CPU: blocked, vectorized,
 * OpenMP threads over N. Same semantics as ref/qgemm.c (r1lab/qgemm.h).
 *
 * W8A8 int8 dot products, exact in int32, by the best path this CPU has
 * (chosen at run time, so the file builds everywhere):
 *   avx512-vnni  a 4 x 6 register tile (4 rows of X, 6 rows of W, 24 zmm
 *                accumulators) of vpdpbusd over 64 k per step, row-major X
 *                and W (no packing). W is the unsigned operand: w XOR 0x80 =
 *                w + 128, so the sums carry 128 Σ_k x[m, k], computed once per
 *                call and subtracted; every sum wraps modulo 2^32 the same way,
 *                so the difference is the exact int32 (K <= 131071). K passes of
 *                4096 (the W tile stays in L1), X in blocks of ~512 KiB (L2),
 *                threads over W tiles, the k tail through zero-padded rows.
 *   avx-vnni     vpdpbusd on 32 bytes (VEX encoding), 2 x 4 tile, x fed as
 *                x + 128 and corrected by 128 Σ w per tile.
 *   avx2         sign-extend 16 int8 to int16 (vpmovsxbw), vpmaddwd pairs
 *                into int32: exact, no saturation (maddubs would saturate).
 *   scalar       the ref loop.
 * Scaling is fused into the store, with ref's float32 operations in ref's
 * order (bit-identical).
 *
 * W4A16 and FP8 on AVX-512 (the avx512-vnni path): X converted to float32 once
 * per block of rows (bf16 by a shift, e4m3 through float16 and vcvtph2ps,
 * exact); per panel of 48 output columns and K block of 128 the weights are
 * converted (int4 levels q − z, e4m3 values) and transposed 16 x 16 into a
 * packed (128, 48) tile, and a 6 x 48 FMA micro-kernel (18 zmm partial sums,
 * x broadcast) takes the block's partial sums, promoted as the header states:
 * acc += p · (s_x · s_w) for FP8, acc += p · s_w for W4A16 (a float32 product,
 * then a float32 add). Other paths: per tile of 4 weight rows and one K block,
 * the block is expanded once to float32 and each row of X is dotted with it
 * in eight independent lanes, then promoted. The summation order inside a
 * block differs from ref's (bar: relative L2 1e-3).
 *
 * Versions (2-core AMD EPYC, AVX-512 VNNI, M = 64, N = K = 4096, 2 threads;
 * the machine is shared, so load averages are given)
 *   v1  2 x 4 int8 tile with per-tile correction; float path expands 4 x 128
 *       weight blocks and re-expands X per block. W8A8 16.0 ms (load unknown)
 *       to 5.3 ms (load 0.4); FP8 ~196–490 ms, W4A16 ~268–360 ms.
 *   v2  this file: AVX-512 4 x 6 VNNI tile with the per-row X correction
 *       (accumulators tied to registers by an asm statement: GCC's intrinsic
 *       copied and spilled them, 3.6 ms -> 1.6 ms); packed float32 panels and
 *       a 6 x 48 FMA tile for W4A16 / FP8. W8A8 1.6–1.8 ms (75–85 x ref),
 *       FP8 6.3 ms, W4A16 6.0 ms (load 0.5–1.2); docs/qgemm.md has the table.
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#ifdef _OPENMP
#include <omp.h>
#define R1_PRAGMA(x) _Pragma(#x)
#define OMP(x) R1_PRAGMA(omp x)
#else
#define OMP(x)
#endif

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#define QGEMM_X86 1
#include <immintrin.h>
#endif

#define B R1_QGEMM_BLOCK
#define TILE_N 4
#define TILE_M 2

/* ---- quantizers: ref's per-row functions on several threads ----------------------- */

r1_status qgemm_quantize_fast(const r1_qgemm_quant_desc *desc, const float *x, void *q,
                              float *scale, uint8_t *zero) {
    /* FP8 weights are quantized in blocks of 128 rows: chunks of 128 rows. */
    const int64_t chunk = (desc->scheme == R1_QGEMM_FP8 && desc->role == R1_QGEMM_WEIGHTS) ? B : 16;
    const int64_t chunks = (desc->rows + chunk - 1) / chunk;
    OMP(parallel for schedule(static))
    for (int64_t c = 0; c < chunks; ++c) {
        int64_t begin = c * chunk, end = begin + chunk < desc->rows ? begin + chunk : desc->rows;
        qgemm_quantize_rows_ref(desc, begin, end, x, q, scale, zero);
    }
    return R1_OK;
}

/* ---- the int8 dot-product paths ----------------------------------------------------- */

typedef enum isa { ISA_SCALAR = 0, ISA_AVX2, ISA_AVX_VNNI, ISA_AVX512_VNNI } isa;
static const char *const isa_names[] = {"scalar", "avx2", "avx-vnni", "avx512-vnni"};

static isa best_isa(void) {
#ifdef QGEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        return ISA_AVX512_VNNI;
#if !defined(__clang__) || __clang_major__ >= 16 /* older clang lacks the "avxvnni" name */
    if (__builtin_cpu_supports("avxvnni") && __builtin_cpu_supports("avx2")) return ISA_AVX_VNNI;
#endif
    if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
    return ISA_SCALAR;
}

/* The best path, capped by R1LAB_QGEMM_ISA when it names a lesser one. */
static isa chosen_isa(void) {
    isa best = best_isa();
    const char *cap = getenv("R1LAB_QGEMM_ISA");
    if (cap != NULL)
        for (int i = 0; i < 4; ++i)
            if (strcmp(cap, isa_names[i]) == 0 && (isa)i < best) best = (isa)i;
    return best;
}

const char *r1_qgemm_fast_isa(void) { return isa_names[chosen_isa()]; }

/* acc[i][j] = Σ_k x_i[k] · w_j[k] for the mr rows of x (stride K) and the nr
 * rows of w (stride K), all over K. The scalar tile (also the k tail of the
 * vector paths, from k0). */
static void tile_scalar(const int8_t *x, const int8_t *w, int64_t K, int64_t k0, int mr, int nr,
                        int32_t acc[TILE_M][TILE_N]) {
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) {
            int32_t sum = 0;
            for (int64_t k = k0; k < K; ++k) sum += (int32_t)x[i * K + k] * (int32_t)w[j * K + k];
            acc[i][j] += sum;
        }
}

#ifdef QGEMM_X86
__attribute__((target("avx2"))) static int32_t hsum_256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* AVX2: 16 k per step, int8 -> int16, madd into int32. A tile with fewer than
 * TILE_M / TILE_N rows repeats its last row (results discarded). */
__attribute__((target("avx2"))) static void tile_avx2(const int8_t *x, const int8_t *w,
                                                      int64_t K, int mr, int nr,
                                                      int32_t acc[TILE_M][TILE_N]) {
    const int8_t *xr[TILE_M], *wr[TILE_N];
    for (int i = 0; i < TILE_M; ++i) xr[i] = x + (i < mr ? i : mr - 1) * K;
    for (int j = 0; j < TILE_N; ++j) wr[j] = w + (j < nr ? j : nr - 1) * K;
    __m256i s[TILE_M][TILE_N];
    for (int i = 0; i < TILE_M; ++i)
        for (int j = 0; j < TILE_N; ++j) s[i][j] = _mm256_setzero_si256();
    const int64_t kv = K / 16 * 16;
    for (int64_t k = 0; k < kv; k += 16) {
        __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xr[0] + k)));
        __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xr[1] + k)));
        for (int j = 0; j < TILE_N; ++j) {
            __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr[j] + k)));
            s[0][j] = _mm256_add_epi32(s[0][j], _mm256_madd_epi16(a0, b));
            s[1][j] = _mm256_add_epi32(s[1][j], _mm256_madd_epi16(a1, b));
        }
    }
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) acc[i][j] = hsum_256(s[i][j]);
    tile_scalar(x, w, K, kv, mr, nr, acc);
}

/* AVX-VNNI: 32 k per step, vpdpbusd on (x XOR 0x80) = x + 128 as unsigned;
 * the correction 128 · Σ w comes from vpdpbusd of 0x80 bytes with w. */
__attribute__((target("avx2,avxvnni"))) static void tile_avx_vnni(const int8_t *x,
                                                                  const int8_t *w, int64_t K,
                                                                  int mr, int nr,
                                                                  int32_t acc[TILE_M][TILE_N]) {
    const int8_t *xr[TILE_M], *wr[TILE_N];
    for (int i = 0; i < TILE_M; ++i) xr[i] = x + (i < mr ? i : mr - 1) * K;
    for (int j = 0; j < TILE_N; ++j) wr[j] = w + (j < nr ? j : nr - 1) * K;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256i s[TILE_M][TILE_N], c[TILE_N];
    for (int j = 0; j < TILE_N; ++j) {
        c[j] = _mm256_setzero_si256();
        for (int i = 0; i < TILE_M; ++i) s[i][j] = _mm256_setzero_si256();
    }
    const int64_t kv = K / 32 * 32;
    for (int64_t k = 0; k < kv; k += 32) {
        __m256i a0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xr[0] + k)), bias);
        __m256i a1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xr[1] + k)), bias);
        for (int j = 0; j < TILE_N; ++j) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(wr[j] + k));
            s[0][j] = _mm256_dpbusd_avx_epi32(s[0][j], a0, b);
            s[1][j] = _mm256_dpbusd_avx_epi32(s[1][j], a1, b);
            c[j] = _mm256_dpbusd_avx_epi32(c[j], bias, b);
        }
    }
    for (int j = 0; j < nr; ++j) {
        uint32_t correction = (uint32_t)hsum_256(c[j]);
        for (int i = 0; i < mr; ++i)
            acc[i][j] = (int32_t)((uint32_t)hsum_256(s[i][j]) - correction);
    }
    tile_scalar(x, w, K, kv, mr, nr, acc);
}

/* AVX-512 VNNI: the same on 64 k per step. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void tile_avx512_vnni(
    const int8_t *x, const int8_t *w, int64_t K, int mr, int nr, int32_t acc[TILE_M][TILE_N]) {
    const int8_t *xr[TILE_M], *wr[TILE_N];
    for (int i = 0; i < TILE_M; ++i) xr[i] = x + (i < mr ? i : mr - 1) * K;
    for (int j = 0; j < TILE_N; ++j) wr[j] = w + (j < nr ? j : nr - 1) * K;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512i s[TILE_M][TILE_N], c[TILE_N];
    for (int j = 0; j < TILE_N; ++j) {
        c[j] = _mm512_setzero_si512();
        for (int i = 0; i < TILE_M; ++i) s[i][j] = _mm512_setzero_si512();
    }
    const int64_t kv = K / 64 * 64;
    for (int64_t k = 0; k < kv; k += 64) {
        __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(xr[0] + k)), bias);
        __m512i a1 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(xr[1] + k)), bias);
        for (int j = 0; j < TILE_N; ++j) {
            __m512i b = _mm512_loadu_si512((const void *)(wr[j] + k));
            s[0][j] = _mm512_dpbusd_epi32(s[0][j], a0, b);
            s[1][j] = _mm512_dpbusd_epi32(s[1][j], a1, b);
            c[j] = _mm512_dpbusd_epi32(c[j], bias, b);
        }
    }
    for (int j = 0; j < nr; ++j) {
        uint32_t correction = (uint32_t)_mm512_reduce_add_epi32(c[j]);
        for (int i = 0; i < mr; ++i)
            acc[i][j] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(s[i][j]) - correction);
    }
    tile_scalar(x, w, K, kv, mr, nr, acc);
}
#endif

/* ---- W8A8 on AVX-512 VNNI: a 4 x 6 register tile over row-major X and W -------------
 *
 * acc[i][j] = Σ_k x[m0 + i, k] · w[n0 + j, k] for 4 rows of X and 6 rows of W:
 * 24 zmm accumulators of 16 int32 lanes each (lane l sums k ≡ 4l..4l+3 mod 64),
 * per 64 k: 4 loads of X, 6 loads of W, 24 vpdpbusd. W is the unsigned operand:
 * w XOR 0x80 = w + 128, so each lane gets Σ x · w + 128 Σ x; the row term
 * 128 Σ_k x[m, k] is computed once per call and subtracted at the end. Every
 * sum wraps modulo 2^32 the same way, so the difference is the exact int32.
 * The k tail (K not a multiple of 64) is a masked load: x = 0 there, so the
 * padded w + 128 adds nothing. Lanes are reduced with a 4-way transpose-add. */
#define W8_MR 4
#define W8_NR 6
#define W8_KC 4096 /* k per pass: 6 rows of W (24 KiB) stay in L1 across all of M */

#ifdef QGEMM_X86
/* The four horizontal sums of a, b, c, d as one int32x4 (a's first). */
__attribute__((target("avx512f,avx512bw"))) static __m128i reduce4_epi32(__m512i a, __m512i b,
                                                                       __m512i c, __m512i d) {
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    /* each 128-bit lane: a0+a2, b0+b2, a1+a3, b1+b3 | c.. d..: pair them */
    __m512i abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(abcd), _mm512_extracti64x4_epi64(abcd, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* out[i][j] += Σ_{k < kc} x_i[k] · (w_j[k] + 128) (mod 2^32), kc a multiple
 * of 64, rows of x and w at strides ldx, ldw; a tile with fewer than 4 / 6
 * rows repeats its last row and discards those sums. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void w8_kernel_avx512(
    const int8_t *x, int64_t ldx, const int8_t *w, int64_t ldw, int64_t kc, int mr, int nr,
    uint32_t out[][W8_NR]) {
    const int8_t *xr[W8_MR], *wr[W8_NR];
    for (int i = 0; i < W8_MR; ++i) xr[i] = x + (i < mr ? i : mr - 1) * ldx;
    for (int j = 0; j < W8_NR; ++j) wr[j] = w + (j < nr ? j : nr - 1) * ldw;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    /* 24 named accumulators, each updated in place by vpdpbusd (acc += u8 · s8
     * in groups of 4): GCC's intrinsic copies and spills them, the asm
     * statement ties each to one register. */
#if defined(__GNUC__) && !defined(__clang__)
#define W8_DPBUSD(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))
#else
#define W8_DPBUSD(acc, u, s) ((acc) = _mm512_dpbusd_epi32((acc), (u), (s)))
#endif
#define W8_ZERO(j) __m512i s0##j = _mm512_setzero_si512(), s1##j = s0##j, s2##j = s0##j, s3##j = s0##j
    W8_ZERO(0); W8_ZERO(1); W8_ZERO(2); W8_ZERO(3); W8_ZERO(4); W8_ZERO(5);
#define W8_STEP(j, load_w)                                                                    \
    do {                                                                                      \
        __m512i b = _mm512_xor_si512(load_w, flip);                                           \
        W8_DPBUSD(s0##j, b, a0);                                                              \
        W8_DPBUSD(s1##j, b, a1);                                                              \
        W8_DPBUSD(s2##j, b, a2);                                                              \
        W8_DPBUSD(s3##j, b, a3);                                                              \
    } while (0)
#define W8_STEPS(LOAD)                                                                        \
    do {                                                                                      \
        __m512i a0 = LOAD(xr[0]), a1 = LOAD(xr[1]), a2 = LOAD(xr[2]), a3 = LOAD(xr[3]);     \
        W8_STEP(0, LOAD(wr[0])); W8_STEP(1, LOAD(wr[1])); W8_STEP(2, LOAD(wr[2]));           \
        W8_STEP(3, LOAD(wr[3])); W8_STEP(4, LOAD(wr[4])); W8_STEP(5, LOAD(wr[5]));           \
    } while (0)
    for (int64_t k = 0; k < kc; k += 64) {
#define W8_LOAD(p) _mm512_loadu_si512((const void *)((p) + k))
        W8_STEPS(W8_LOAD);
    }
#define W8_REDUCE(j)                                                                          \
    do {                                                                                      \
        uint32_t sums[4];                                                                     \
        _mm_storeu_si128((__m128i *)sums, reduce4_epi32(s0##j, s1##j, s2##j, s3##j));         \
        for (int i = 0; i < mr; ++i) out[i][j] += sums[i];                                    \
    } while (0)
    W8_REDUCE(0); W8_REDUCE(1); W8_REDUCE(2); W8_REDUCE(3); W8_REDUCE(4);
    if (nr > 5) W8_REDUCE(5);
#undef W8_ZERO
#undef W8_DPBUSD
#undef W8_STEP
#undef W8_STEPS
#undef W8_LOAD
#undef W8_REDUCE
}

/* The same over any kc: whole steps of 64 in place, the last kc % 64 columns
 * copied into zero-padded 64-byte rows (x = 0 there, so the padding adds
 * nothing). */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void w8_tile_avx512(
    const int8_t *x, const int8_t *w, int64_t ld, int64_t kc, int mr, int nr,
    uint32_t out[][W8_NR]) {
    const int64_t whole = kc / 64 * 64;
    if (whole > 0) w8_kernel_avx512(x, ld, w, ld, whole, mr, nr, out);
    if (whole == kc) return;
    int8_t xt[W8_MR][64] = {{0}}, wt[W8_NR][64] = {{0}};
    for (int i = 0; i < mr; ++i) memcpy(xt[i], x + i * ld + whole, (size_t)(kc - whole));
    for (int j = 0; j < nr; ++j) memcpy(wt[j], w + j * ld + whole, (size_t)(kc - whole));
    w8_kernel_avx512(&xt[0][0], 64, &wt[0][0], 64, 64, mr, nr, out);
}
#endif

/* Writes acc (the exact int32) or the scaled output of element (m, n). */
static void w8_store(const r1_qgemm_desc *d, const r1_qgemm_operands *o, int32_t *acc_out,
                     void *y, int64_t m, int64_t n, int32_t acc) {
    const int64_t N = d->N;
    if (acc_out != NULL) {
        acc_out[m * N + n] = acc;
        return;
    }
    float value = ((float)acc * o->x_scale[m]) * o->w_scale[n];
    if (o->bias) value += o->bias[n];
    if (d->out_dtype == R1_BF16) ((uint16_t *)y)[m * N + n] = r1_f32_to_bf16(value);
    else ((float *)y)[m * N + n] = value;
}

#ifdef QGEMM_X86
/* Threads over tiles of 6 rows of W; per tile, K in passes of W8_KC, and in
 * each pass every 4-row tile of X (X stays in L2, the W tile in L1). */
static void w8a8_driver_avx512(const r1_qgemm_desc *d, const r1_qgemm_operands *o,
                               int32_t *acc_out, void *y) {
    const int64_t M = d->M, N = d->N, K = d->K, tiles = (N + W8_NR - 1) / W8_NR;
    const int8_t *x = o->x, *w = o->w;
    /* 128 Σ_k x[m, k] mod 2^32: the offset W's +128 adds to row m. */
    uint32_t *row_offset = malloc((size_t)M * sizeof(uint32_t));
    /* rows of X per block: about 512 KiB of X (L2), a multiple of 4 */
    int64_t mc = (512 * 1024 / K) / W8_MR * W8_MR;
    if (mc < W8_MR) mc = W8_MR;
    if (mc > M) mc = M;
    uint32_t(*acc)[W8_NR] = NULL;
    OMP(parallel private(acc))
    {
        acc = malloc((size_t)mc * sizeof *acc);
        OMP(for schedule(static))
        for (int64_t m = 0; m < M; ++m) {
            uint32_t sum = 0;
            for (int64_t k = 0; k < K; ++k) sum += (uint32_t)(int32_t)x[m * K + k];
            row_offset[m] = sum << 7;
        }
        for (int64_t m0 = 0; m0 < M; m0 += mc) {
            const int64_t rows = M - m0 < mc ? M - m0 : mc;
            OMP(for schedule(static))
            for (int64_t t = 0; t < tiles; ++t) {
                const int64_t n0 = t * W8_NR;
                const int nr = (int)(N - n0 < W8_NR ? N - n0 : W8_NR);
                memset(acc, 0, (size_t)rows * sizeof *acc);
                for (int64_t k0 = 0; k0 < K; k0 += W8_KC) {
                    const int64_t kc = K - k0 < W8_KC ? K - k0 : W8_KC;
                    for (int64_t i = 0; i < rows; i += W8_MR) {
                        const int mr = (int)(rows - i < W8_MR ? rows - i : W8_MR);
                        w8_tile_avx512(x + (m0 + i) * K + k0, w + n0 * K + k0, K, kc, mr, nr,
                                       acc + i);
                    }
                }
                for (int64_t i = 0; i < rows; ++i)
                    for (int j = 0; j < nr; ++j)
                        w8_store(d, o, acc_out, y, m0 + i, n0 + j,
                                 (int32_t)(acc[i][j] - row_offset[m0 + i]));
            }
        }
        free(acc);
    }
    free(row_offset);
}
#endif

/* One register tile of accumulators by the chosen path. */
static void tile_int8(isa path, const int8_t *x, const int8_t *w, int64_t K, int mr, int nr,
                      int32_t acc[TILE_M][TILE_N]) {
    memset(acc, 0, sizeof(int32_t) * TILE_M * TILE_N);
    switch (path) {
#ifdef QGEMM_X86
    case ISA_AVX512_VNNI: tile_avx512_vnni(x, w, K, mr, nr, acc); return;
    case ISA_AVX_VNNI: tile_avx_vnni(x, w, K, mr, nr, acc); return;
    case ISA_AVX2: tile_avx2(x, w, K, mr, nr, acc); return;
#endif
    default: tile_scalar(x, w, K, 0, mr, nr, acc); return;
    }
}

/* Threads over tiles of N; each tile loops over all M. `y` gets either the
 * raw accumulators (acc_out) or the scaled outputs. */
static void w8a8_driver(const r1_qgemm_desc *d, const r1_qgemm_operands *o, int32_t *acc_out,
                        void *y) {
    const isa path = chosen_isa();
#ifdef QGEMM_X86
    if (path == ISA_AVX512_VNNI) {
        w8a8_driver_avx512(d, o, acc_out, y);
        return;
    }
#endif
    const int64_t M = d->M, N = d->N, K = d->K, tiles = (N + TILE_N - 1) / TILE_N;
    const int8_t *x = o->x, *w = o->w;
    OMP(parallel for schedule(static))
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t n0 = t * TILE_N;
        const int nr = (int)(N - n0 < TILE_N ? N - n0 : TILE_N);
        for (int64_t m0 = 0; m0 < M; m0 += TILE_M) {
            const int mr = (int)(M - m0 < TILE_M ? M - m0 : TILE_M);
            int32_t acc[TILE_M][TILE_N];
            tile_int8(path, x + m0 * K, w + n0 * K, K, mr, nr, acc);
            for (int i = 0; i < mr; ++i)
                for (int j = 0; j < nr; ++j) w8_store(d, o, acc_out, y, m0 + i, n0 + j, acc[i][j]);
        }
    }
}

r1_status qgemm_w8a8_accumulators_fast(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                       const int8_t *w, int32_t *acc) {
    r1_qgemm_desc d = {R1_QGEMM_W8A8, M, N, K, R1_F32, 0};
    r1_qgemm_operands o = {0};
    o.x = x;
    o.w = w;
    w8a8_driver(&d, &o, acc, NULL);
    return R1_OK;
}

/* ---- W4A16 and FP8: blocks expanded to float32, promoted per block ------------------ */

#define ROWS_M 16 /* rows of X per pass over a weight tile */

static float e4m3_table[256];

static void build_e4m3_table(void) {
    static int built = 0; /* written before any parallel region reads it */
    if (built) return;
    for (int i = 0; i < 256; ++i) e4m3_table[i] = r1_f8e4m3_to_f32((uint8_t)i);
    built = 1;
}

/* out[j] = Σ_k x[k] · w[j][k] over one block of 128 floats, for the 4 rows
 * of w at once (x is read once). Eight independent lanes per row, so the
 * compiler vectorizes without reassociating; lanes are summed in a fixed
 * order at the end. */
static void dot_block_4(const float *x, const float w[TILE_N][B], float out[TILE_N]) {
    float lanes[TILE_N][8] = {{0}};
    for (int k = 0; k < B; k += 8)
        for (int j = 0; j < TILE_N; ++j)
            for (int l = 0; l < 8; ++l) lanes[j][l] += x[k + l] * w[j][k + l];
    for (int j = 0; j < TILE_N; ++j) {
        float sum = 0.0f;
        for (int l = 0; l < 8; ++l) sum += lanes[j][l];
        out[j] = sum;
    }
}

/* The weights of rows [n0, n0 + nr), block kb, as float32: the int4 levels
 * q - z (W4A16, scales applied later) or the e4m3 values (FP8). wf (TILE_N, B). */
static void expand_weight_block(const r1_qgemm_desc *d, const r1_qgemm_operands *o, int64_t n0,
                                int nr, int64_t kb, float wf[TILE_N][B]) {
    const int64_t K = d->K, G = K / B;
    for (int j = 0; j < nr; ++j) {
        const int64_t n = n0 + j;
        if (d->scheme == R1_QGEMM_FP8) {
            const uint8_t *row = (const uint8_t *)o->w + n * K + kb * B;
            for (int k = 0; k < B; ++k) wf[j][k] = e4m3_table[row[k]];
        } else {
            const uint8_t *row = (const uint8_t *)o->w + (n * K + kb * B) / 2;
            const int zero = d->asymmetric ? (int)o->w_zero[n * G + kb] : 0;
            for (int k = 0; k < B; k += 2) {
                int lo = row[k / 2] & 0xF, hi = row[k / 2] >> 4;
                if (!d->asymmetric) {
                    lo = lo >= 8 ? lo - 16 : lo;
                    hi = hi >= 8 ? hi - 16 : hi;
                }
                wf[j][k] = (float)(lo - zero);
                wf[j][k + 1] = (float)(hi - zero);
            }
        }
    }
}

/* The activations of row m, block kb, as float32: xf (B). */
static void expand_activation_block(const r1_qgemm_desc *d, const r1_qgemm_operands *o,
                                    int64_t m, int64_t kb, float *xf) {
    if (d->scheme == R1_QGEMM_FP8) {
        const uint8_t *row = (const uint8_t *)o->x + m * d->K + kb * B;
        for (int k = 0; k < B; ++k) xf[k] = e4m3_table[row[k]];
    } else {
        const uint16_t *row = (const uint16_t *)o->x + m * d->K + kb * B;
        for (int k = 0; k < B; ++k) xf[k] = r1_bf16_to_f32(row[k]);
    }
}

static void block_scaled_driver(const r1_qgemm_desc *d, const r1_qgemm_operands *o, void *y) {
    build_e4m3_table();
    const int64_t M = d->M, N = d->N, G = d->K / B, tiles = (N + TILE_N - 1) / TILE_N;
    OMP(parallel for schedule(static))
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t n0 = t * TILE_N;
        const int nr = (int)(N - n0 < TILE_N ? N - n0 : TILE_N);
        float wf[TILE_N][B], xf[B];
        for (int64_t m0 = 0; m0 < M; m0 += ROWS_M) {
            const int mr = (int)(M - m0 < ROWS_M ? M - m0 : ROWS_M);
            float acc[ROWS_M][TILE_N] = {{0}};
            for (int64_t kb = 0; kb < G; ++kb) {
                expand_weight_block(d, o, n0, nr, kb, wf);
                for (int i = 0; i < mr; ++i) {
                    const int64_t m = m0 + i;
                    expand_activation_block(d, o, m, kb, xf);
                    float partials[TILE_N];
                    dot_block_4(xf, (const float(*)[B])wf, partials);
                    for (int j = 0; j < nr; ++j) {
                        const int64_t n = n0 + j;
                        float partial = partials[j];
                        float scale = d->scheme == R1_QGEMM_FP8
                                          ? o->x_scale[m * G + kb] * o->w_scale[(n / B) * G + kb]
                                          : o->w_scale[n * G + kb];
                        acc[i][j] += partial * scale;
                    }
                }
            }
            for (int i = 0; i < mr; ++i)
                for (int j = 0; j < nr; ++j) {
                    const int64_t m = m0 + i, n = n0 + j;
                    float value = acc[i][j];
                    if (o->bias) value += o->bias[n];
                    if (d->out_dtype == R1_BF16) ((uint16_t *)y)[m * N + n] = r1_f32_to_bf16(value);
                    else ((float *)y)[m * N + n] = value;
                }
        }
    }
}

/* ---- W4A16 and FP8 on AVX-512: packed float32 panels, a 6 x 48 FMA tile -------------
 *
 * X (a block of rows) is converted to float32 once per call. For each panel of
 * 48 output columns and each K block kb of 128, the panel's weights are
 * converted (int4 levels q - z, or e4m3 values) and transposed into wp (128,
 * 48): row k holds w[n0 .. n0 + 47, kb·128 + k], zero past N. The tile then
 * computes, for 6 rows of X, the block's partial sums
 *     p[i][n] = Σ_{k in kb} x[m0 + i, k] · wp[k][n]           (float32, 18 zmm)
 * by broadcasting x and multiplying 3 vectors of 16 columns, and promotes them
 * as the header states:
 *     acc[i][n] += p[i][n] · (s_x[m, kb] · s_w[n / 128, kb])    FP8
 *     acc[i][n] += p[i][n] · s_w[n, kb]                         W4A16
 * (a float32 product, then a float32 add). The order inside p differs from
 * ref's (the relative-L2 bar 1e-3 allows it). */
#define F_MR 6
#define F_NV 3
#define F_NC (16 * F_NV) /* columns per panel */

#ifdef QGEMM_X86
/* The 16 e4m3 bytes at p as float32, through float16: a byte s eeee mmm,
 * sign-extended to 16 bits and shifted left by 7, has s at bit 15, eeee mmm
 * at bits 13..7 once bit 14 (a copy of s) is cleared: the float16 with value
 * e4m3 · 2^-8 (float16's exponent bias is 15, e4m3's 7; subnormals map to
 * subnormals). vcvtph2ps converts exactly; · 2^8 is exact. 0x7F / 0xFF are NaN. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) static __m512 e4m3x16_to_f32(
    const uint8_t *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7),
                                 _mm256_set1_epi16((short)0xBF80));
    __m512 v = _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
    __mmask16 nan = _mm_cmpeq_epi8_mask(_mm_and_si128(bytes, _mm_set1_epi8(0x7F)),
                                        _mm_set1_epi8(0x7F));
    return _mm512_mask_blend_ps(nan, v, _mm512_set1_ps(__builtin_nanf("")));
}

/* The 16 int4 weights at element 2·(byte offset) of a packed row (8 bytes at
 * p) as float32 levels: signed nibbles (symmetric) or nibble − zero. */
__attribute__((target("avx512f,avx512bw"))) static __m512 int4x16_to_f32(const uint8_t *p,
                                                                       int asymmetric,
                                                                       int zero) {
    __m128i bytes = _mm_loadl_epi64((const __m128i *)p);
    __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    __m512i u = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)); /* element 2i low nibble */
    __m512i level = asymmetric ? _mm512_sub_epi32(u, _mm512_set1_epi32(zero))
                               : _mm512_sub_epi32(_mm512_xor_si512(u, _mm512_set1_epi32(8)),
                                                  _mm512_set1_epi32(8));
    return _mm512_cvtepi32_ps(level);
}

/* In-place transpose of a 16 x 16 float32 matrix held as 16 rows. */
__attribute__((target("avx512f"))) static void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + c], 128-bit lane L: rows 4i .. 4i + 3 of column 4L + c */
    for (int i = 0; i < 4; ++i) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
        __m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);  /* lanes 0, 2 */
        __m512 b = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 a1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD); /* lanes 1, 3 */
        __m512 b1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(a, b, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(a, b, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(a1, b1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(a1, b1, 0xDD);
    }
}

/* wp (128, F_NC) = the panel's weights of block kb, as described above, and
 * ws (F_NC) the per-column weight scale of the block (0 past N). */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) static void pack_panel_block(
    const r1_qgemm_desc *d, const r1_qgemm_operands *o, int64_t n0, int64_t kb, float *wp,
    float *ws) {
    const int64_t N = d->N, K = d->K, G = K / B;
    const int fp8 = d->scheme == R1_QGEMM_FP8;
    for (int j = 0; j < F_NC; ++j) {
        const int64_t n = n0 + j;
        ws[j] = n >= N ? 0.0f : fp8 ? o->w_scale[(n / B) * G + kb] : o->w_scale[n * G + kb];
    }
    for (int v = 0; v < F_NV; ++v)
        for (int k16 = 0; k16 < B; k16 += 16) {
            __m512 r[16];
            for (int j = 0; j < 16; ++j) {
                const int64_t n = n0 + 16 * v + j, k = kb * B + k16;
                if (n >= N) r[j] = _mm512_setzero_ps();
                else if (fp8) r[j] = e4m3x16_to_f32((const uint8_t *)o->w + n * K + k);
                else
                    r[j] = int4x16_to_f32((const uint8_t *)o->w + (n * K + k) / 2, d->asymmetric,
                                          d->asymmetric ? o->w_zero[n * G + kb] : 0);
            }
            transpose16(r);
            for (int t = 0; t < 16; ++t) _mm512_storeu_ps(wp + (k16 + t) * F_NC + 16 * v, r[t]);
        }
}

/* Rows [m0, m0 + rows) of X as float32 into xf (rows, K) at row stride ldx. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) static void convert_x_rows(
    const r1_qgemm_desc *d, const r1_qgemm_operands *o, int64_t m0, int64_t rows, float *xf,
    int64_t ldx) {
    const int64_t K = d->K;
    OMP(for schedule(static))
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = 0; k < K; k += 16) {
            __m512 v;
            if (d->scheme == R1_QGEMM_FP8) v = e4m3x16_to_f32((const uint8_t *)o->x + (m0 + i) * K + k);
            else {
                __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)o->x + (m0 + i) * K + k));
                v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            }
            _mm512_storeu_ps(xf + i * ldx + k, v);
        }
}

/* One 6 x 48 tile, one K block: p = x rows (at stride K, pointing at the
 * block) · wp; acc[i][·] += p[i][·] · (xs[i] · ws[·]). Rows past mr repeat the
 * last row and are not written. */
__attribute__((target("avx512f"), noinline)) static void f_tile_block(const float *x, int64_t K, int mr,
                                                           const float *wp, const float *ws,
                                                           const float xs[F_MR], float *acc) {
    const float *xr[F_MR];
    for (int i = 0; i < F_MR; ++i) xr[i] = x + (i < mr ? i : mr - 1) * K;
#define F_ZERO(i) __m512 p##i##0 = _mm512_setzero_ps(), p##i##1 = p##i##0, p##i##2 = p##i##0
    F_ZERO(0); F_ZERO(1); F_ZERO(2); F_ZERO(3); F_ZERO(4); F_ZERO(5);
#define F_ROW(i)                                                                              \
    do {                                                                                      \
        __m512 a = _mm512_set1_ps(xr[i][k]);                                                  \
        p##i##0 = _mm512_fmadd_ps(a, w0, p##i##0);                                            \
        p##i##1 = _mm512_fmadd_ps(a, w1, p##i##1);                                            \
        p##i##2 = _mm512_fmadd_ps(a, w2, p##i##2);                                            \
    } while (0)
    for (int k = 0; k < B; ++k) {
        const __m512 w0 = _mm512_loadu_ps(wp + k * F_NC), w1 = _mm512_loadu_ps(wp + k * F_NC + 16),
                     w2 = _mm512_loadu_ps(wp + k * F_NC + 32);
        F_ROW(0); F_ROW(1); F_ROW(2); F_ROW(3); F_ROW(4); F_ROW(5);
    }
#define F_PROMOTE_V(i, v)                                                                     \
    _mm512_storeu_ps(row + 16 * v,                                                            \
                     _mm512_add_ps(_mm512_loadu_ps(row + 16 * v),                             \
                                   _mm512_mul_ps(p##i##v, _mm512_mul_ps(s, _mm512_loadu_ps(ws + 16 * v)))))
#define F_PROMOTE(i)                                                                          \
    do {                                                                                      \
        if (i < mr) {                                                                         \
            const __m512 s = _mm512_set1_ps(xs[i]);                                           \
            float *row = acc + i * F_NC;                                                      \
            F_PROMOTE_V(i, 0);                                                                \
            F_PROMOTE_V(i, 1);                                                                \
            F_PROMOTE_V(i, 2);                                                                \
        }                                                                                     \
    } while (0)
    F_PROMOTE(0); F_PROMOTE(1); F_PROMOTE(2); F_PROMOTE(3); F_PROMOTE(4); F_PROMOTE(5);
#undef F_ZERO
#undef F_ROW
#undef F_PROMOTE
#undef F_PROMOTE_V
}

static void block_scaled_driver_avx512(const r1_qgemm_desc *d, const r1_qgemm_operands *o,
                                       void *y) {
    const int64_t M = d->M, N = d->N, K = d->K, G = K / B, panels = (N + F_NC - 1) / F_NC;
    const int fp8 = d->scheme == R1_QGEMM_FP8;
    /* rows of X converted at a time: about 4 MiB of float32 */
    int64_t mc = (int64_t)(4u << 20) / (K * 4);
    mc = mc < F_MR ? F_MR : mc / F_MR * F_MR;
    if (mc > M) mc = M;
    /* rows of xf 64 bytes longer than K: rows K · 4 bytes apart would share L1 sets */
    const int64_t ldx = K + 16;
    float *xf = malloc((size_t)(mc * ldx) * sizeof(float));
    OMP(parallel)
    {
        float *wp = malloc((size_t)(B * F_NC) * sizeof(float));
        float *acc = malloc((size_t)(mc * F_NC) * sizeof(float));
        float ws[F_NC];
        for (int64_t m0 = 0; m0 < M; m0 += mc) {
            const int64_t rows = M - m0 < mc ? M - m0 : mc;
            convert_x_rows(d, o, m0, rows, xf, ldx); /* ends with a barrier */
            OMP(for schedule(dynamic, 1))
            for (int64_t p = 0; p < panels; ++p) {
                const int64_t n0 = p * F_NC;
                memset(acc, 0, (size_t)(rows * F_NC) * sizeof(float));
                for (int64_t kb = 0; kb < G; ++kb) {
                    pack_panel_block(d, o, n0, kb, wp, ws);
                    for (int64_t i = 0; i < rows; i += F_MR) {
                        const int mr = (int)(rows - i < F_MR ? rows - i : F_MR);
                        float xs[F_MR];
                        for (int r = 0; r < F_MR; ++r)
                            xs[r] = fp8 && r < mr ? o->x_scale[(m0 + i + r) * G + kb] : 1.0f;
                        f_tile_block(xf + i * ldx + kb * B, ldx, mr, wp, ws, xs, acc + i * F_NC);
                    }
                }
                const int nc = (int)(N - n0 < F_NC ? N - n0 : F_NC);
                for (int64_t i = 0; i < rows; ++i)
                    for (int j = 0; j < nc; ++j) {
                        const int64_t m = m0 + i, n = n0 + j;
                        float value = acc[i * F_NC + j];
                        if (o->bias) value += o->bias[n];
                        if (d->out_dtype == R1_BF16) ((uint16_t *)y)[m * N + n] = r1_f32_to_bf16(value);
                        else ((float *)y)[m * N + n] = value;
                    }
            }
        }
        free(wp);
        free(acc);
    }
    free(xf);
}
#endif

r1_status qgemm_gemm_fast(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops, void *y) {
    if (desc->scheme == R1_QGEMM_W8A8) w8a8_driver(desc, ops, NULL, y);
#ifdef QGEMM_X86
    else if (chosen_isa() == ISA_AVX512_VNNI) block_scaled_driver_avx512(desc, ops, y);
#endif
    else block_scaled_driver(desc, ops, y);
    return R1_OK;
}
