/*
 * kernels/qgemm.cu — quantizers and quantized matrix products on the GPU,
 * the semantics of r1lab/qgemm.h.
 *
 *   Y (M, N) = X (M, K) · Wᵀ [+ bias],  W is (N, K)
 *
 * Quantizers: one thread block per tile (a W8A8 row, a W4A16 group of 128, an
 * FP8 1 x 128 activation tile or 128 x 128 weight block): block max of |x|
 * (order-free, so exact), then the float32 formula with correctly rounded
 * division (__fdiv_rn) and rintf, and the same bit-level e4m3 / bf16 rounding
 * as core/dtype.c (ported below, not the CUDA intrinsics, so the bits agree
 * by construction). A NaN / Inf records its smallest index with atomicMin.
 *
 * 8-bit products (W8A8 and FP8), kernel `gemm_8bit`: a 64 x 64 output tile per
 * block of 4 warps (2 x 2, 32 x 32 per warp = 2 x 4 mma tiles), K in stages
 * of 128 bytes, two stages in shared memory filled by cp.async (16-byte
 * copies, zero-filled past the edges) while the other is multiplied.
 *   W8A8  mma.sync.m16n8k32 s8 x s8 -> s32: exact int32 accumulation; the
 *         epilogue computes ((float)acc * s_x[m]) * s_w[n] + bias with
 *         explicitly rounded float32 operations (no fused multiply-add), the
 *         same operations as ref, so outputs agree to the bit.
 *   FP8   mma.sync.m16n8k32 e4m3 x e4m3 -> f32 (sm_89+): each stage is one
 *         K block of 128; its partial sums start at zero and are promoted into
 *         a separate float32 accumulator with s_x[m, kb] * s_w[n/128, kb]
 *         (a 64-wide tile never straddles a 128-row weight block), so the
 *         tensor core's reduced-precision accumulation spans one block only.
 *   A K that is not a multiple of 16 (W8A8 only) takes the same kernel with
 *   byte loads instead of cp.async.
 * W4A16 for M > 16, kernel `gemm_w4a16` (Marlin's idea without its
 * offline weight shuffle): weights are never staged in shared memory. Each
 * warp owns 32 output columns and a quarter of the K groups; a lane loads 8
 * bytes (16 nibbles) of one weight row per 64-wide K chunk, turns them into
 * bf16 levels q - z in registers (small integers, exact) and feeds them
 * straight into mma.m16n8k16 bf16 B fragments. The mma's k slots are a
 * permutation of the chunk's k (slot j of lane t <-> k = 16 t + 4 s + ...),
 * applied to the activation fragments too, so each lane reads contiguous
 * bytes. Per group of 128 the fp32 partial sums are scaled by s_w[n, g] and
 * added to the accumulator; the 4 warps' accumulators are summed in shared
 * memory in a fixed order. 16 rows of X per block (grid.y over M).
 *
 * W4A16 for M > 16 on sm_90a (K % 128 == 0), kernel `gemm_w4a16_wgmma`: the
 * product turned around (Yᵀ = W Xᵀ), the weights dequantized in registers as
 * the A operand of wgmma, X brought by the copy engine as its B operand, a
 * persistent TMA + wgmma pipeline described at the kernel; `gemm_w4a16`
 * elsewhere.
 *
 * Large M on sm_90a, kernel `gemm_8bit_wgmma` (W8A8 and FP8, M > 32): a
 * persistent TMA + wgmma pipeline, described at the kernel (with K split
 * over a cluster for one tile row of few tiles); elsewhere the 64 x 64
 * tiles above.
 *
 * W4A16 with M <= 16 (K % 128 == 0), kernel `gemm_w4a16_stream`: the
 * product turned around (Yᵀ = W Xᵀ, 16 weight rows per mma A fragment), the
 * weights streamed once into registers, X shared by a block's warps from
 * shared memory, one block per SM (sm_90); described at the kernel.
 *
 * Decode path, kernel `gemm_decode` (M <= 32 for W8A8 / FP8, K % 128 == 0;
 * W4A16 only with R1LAB_QGEMM_W4_OLD=1): a GEMV-style weight stream.
 * Each lane issues 16-byte non-allocating loads of the natural (N, K) layout,
 * several 128-K steps ahead; nibbles become bf16 levels with the magic-number
 * trick; the K range is split over 1, 2 or 4 warps of a block (chosen so the
 * grid is one wave that covers every SM) and summed in shared memory.
 *
 * Versions
 *   v1  correct-first kernels (tests/test_qgemm_cuda.c checks them bit-exact /
 *       within bars against ref). H100, ci/gpu.sh: FP8 M=4096 N=7168
 *       K=16384 4742 us (203 TFLOP/s); W8A8 same shape 3011 us (320 TOP/s);
 *       W4A16 M=16 N=28672 K=8192 160.7 us (0.26 of HBM for the int4 weights).
 *   v2  this file: the decode path (gemm_decode) for small M in all three
 *       schemes (H100, M=16: W8A8/FP8 N=7168 K=16384 49.4 / 49.5 us = 0.80 of
 *       HBM; W4A16 N=28672 K=8192 114 us = 0.35, below the 0.75 target);
 *       the v1 W4A16 kernel stays for 16 < M, the 64 x 64 tiles for
 *       M > 32. Numbers in docs/qgemm.md.
 *   v3  W8A8 and FP8 for M > 32 on sm_90a: `gemm_8bit_wgmma` (TMA, wgmma,
 *       persistent, CTA pairs sharing W by multicast). H100, ci/gpu.sh: FP8
 *       M=4096 N=7168 K=16384 827 us = 1,163 TFLOP/s; W8A8 828 us. Next:
 *       128 x 256 tiles, narrower tiles or split-K for 32 < M <= 128, and a
 *       shared-memory-tiled W4A16 kernel for M > 16.
 *   v4  W4A16 for M <= 16: `gemm_w4a16_stream`. H100 (CUDA-graph time per
 *       call): N=28672 K=8192 M=1 61 us, M=16 80 us (v2 78 / 105 us; cuBLAS
 *       bf16 160 us).
 *   v5  the same kernel with a producer warp filling X's ring on mbarriers
 *       (no block-wide barrier per chunk), loads without predicates, 8 steps
 *       in flight in blocks of at most 10 warps (sm_90; v2 elsewhere).
 *   v6  fewer instructions per step in the same kernel: one instantiation per
 *       weight kind, one lop3 per nibble pair, one FMA per scale, and for
 *       M <= 8 X paired by the producer. Numbers in docs/qgemm.md.
 *   v7  the blocks of the W4A16 stream start their K walk at different
 *       chunks of X (spreads X's reads over L2). Numbers in docs/qgemm.md.
 *   v8  W8A8 and FP8 with 32 < M <= 128 on sm_90a: when the 128-wide tiles
 *       of N leave SMs idle, K is split over a cluster of 2, 4 or 8 CTAs
 *       that add their partial sums through shared memory (st.async into
 *       the CTA that finishes each part of the tile). Numbers in
 *       docs/qgemm.md.
 *   v9  the wgmma kernel stores a thread's outputs of a tile that lies
 *       wholly inside Y (aligned pairs) from two row pointers with constant
 *       offsets, one hardware bf16 conversion per pair and no branches; the
 *       general stores (bounds, alignment, software rounding per value)
 *       were 43 % of the consumers' instructions at K = 1536. H100, M =
 *       4096: W8A8 N = 24576, K = 1536 588 -> 493 us; FP8 1 - 3 % faster.
 *   v10 tiles leave the wgmma kernel through shared memory and the copy
 *       engine (TMA stores).
 *   v11 one tile row with a few tiles past one round: the tail in a second
 *       launch with K split (a programmatic dependent of the first).
 *   v12 the tail launch for two tile rows or more too (tile columns past
 *       whole rounds of paired CTAs); with M <= 64 the second consumer
 *       warpgroup sits out (no wgmmas, half the exchange); a split
 *       cluster's producers start their copies before the cluster barrier.
 *       H100, FP8: M = 1024, N = 7168, K = 16384 256 -> 230 us; M = 64 2 -
 *       5 us faster. v12b: the tensor maps prefetched, and a K-split
 *       cluster ends without a cluster barrier (~1 us at M <= 128).
 *   v13 the consumers' wgmma descriptors in uniform registers (built once,
 *       advanced by 32-bit adds; the warpgroup index made warp-uniform by a
 *       shuffle): 158 -> 118 instructions per K block and warp. H100, FP8
 *       M = 4096, N = 7168, K = 16384: 860 -> 765 us (1,258 TFLOP/s).
 *       Numbers in docs/qgemm.md.
 *   v14 the W4A16 stream's prefetch past its last chunk re-reads that chunk
 *       (L2) instead of the first (DRAM): H100, DRAM bytes per call at
 *       N = 18432, K = 7168 79.7 -> 70.3 MB (M = 1), 79.9 -> 70.5 MB
 *       (M = 16); times unchanged (the kernel is bound on the SMs).
 *   tried after v14, not kept: the stream's ring loads kept in program
 *       order (the compiler gathers a chunk's loads into one burst and a
 *       register copy that waits for DRAM; volatile loads undo that but
 *       cost more than they save). Numbers in docs/qgemm.md.
 *   tried after v14, not kept: fewer instructions per step in the stream's
 *       consumers (X paired by the producer, the zero point folded into a
 *       row-sum correction, a chunk unrolled whole; 16-27 % fewer in the
 *       SASS) and an L2 prefetch of the ring's lines: all 5-21 us slower at
 *       M = 16 (H100). Numbers in docs/qgemm.md; the code on branches
 *       w4a16-pair-in-place, w4a16-pair-unrolled, w4a16-v16-prefetch,
 *       w4a16-fold-zero, w4a16-fold-zero-unrolled.
 *   tried after v14, not kept: two chains of partial sums per n8 tile at
 *       M = 16 (no change), and the weights staged in shared memory by the
 *       copy engine so a block runs more consumer warps (3 us faster at
 *       M = 16, N = 18432, 1-7 us slower at ten of the other 11; branch
 *       w4a16-staged-weights). Numbers in docs/qgemm.md.
 *   measured after v14: side by side with Marlin (bench/marlin_peer.cu,
 *       same run, H100, CUDA-graph time) the stream is 1.01-1.19x Marlin's
 *       speed at M = 1 but 0.46-0.88x at M = 16, and the v1 tiles 0.16-0.36x
 *       at M = 64 and 128. Under Nsight Compute at (16, 18432, 7168) a third
 *       of the stream's stall samples wait for X's chunk, for the register
 *       ring's loads and at the block barrier after the K loop; Marlin's
 *       warps read only shared memory that cp.async filled. A ring of X of
 *       7 chunks instead of 4: 7-8 us slower at M = 16 at the three shapes
 *       of 7168-16384 K and 7168-28672 N, 2-3 us at two smaller ones, and
 *       8 us at M = 1, K = 16384 (not kept). Numbers
 *       and the next kernel in docs/qgemm.md.
 *   tried after v14, not kept: gemm_w4a16_pipe, weights, scales and X in
 *       shared-memory stages filled by every thread, 8 < M <= 16: correct,
 *       1.7-2.6x slower than the stream at the two large shapes (H100);
 *       branch w4a16-pipe, numbers in docs/qgemm.md.
 *   tried after v14, not kept: gemm_w4a16_multistage, X as the mma A
 *       operand and weights, scales and X in 4 cp.async stages, one block
 *       per SM owning whole n8 tiles, M <= 16: correct; at M = 16 (H100,
 *       graph) 42.5 against the stream's 48.0 us at (18432, 7168), 68.6
 *       against 64.3 at (28672, 8192), slower at every M = 1 shape;
 *       branch w4a16-multistage, numbers in docs/qgemm.md.
 *   v16 W4A16 for M > 16 on sm_90a: `gemm_w4a16_wgmma` instead of the v1
 *       tiles. H100, CUDA-graph time: (64, 18432, 7168) 315 -> 70 us, (128,
 *       18432, 7168) 597 -> 100 us, (4096, 7168, 16384) 16,057 -> 1,821 us
 *       (cuBLAS bf16 96, 98 and 1,111 us). Numbers in docs/qgemm.md.
 *   tried after v16, not kept: the next step's dequantization while the
 *       current step's wgmmas run: slower at every shape with M > 16
 *       (H100). Numbers in docs/qgemm.md.
 *   v17 W4A16 for 8 < M <= 16 with few units (N <= 64 SMs) on sm_90a:
 *       `gemm_w4a16_wgmma_small`, X's K slice resident in shared memory, K
 *       split over a cluster. H100 graph time at M = 16: (7168, 16384)
 *       55.7 -> 46.0 us, (8192, 8192) 30.6 -> 24.1 us; slower than the
 *       stream at the issue's two shapes and at M = 1, so not taken there.
 *       Numbers in docs/qgemm.md.
 *   v18 the same kernel with X gathered once in a permuted K order (a
 *       thread's A fragments of a step are one 16-byte chunk of each of its
 *       rows: 2 shared loads and one lop3 per nibble pair instead of 8 loads
 *       and a shift, prmt and lop3 per pair), four consumer warpgroups, and
 *       the cluster size from a cost model; taken for every 8 < M <= 16.
 *       Nsight Compute at (16, 18432, 7168), 4 parts: 21.3 -> 16.5 M warp
 *       instructions. Numbers in docs/qgemm.md.
 *   tried after v18, not kept: v20, the end of a unit on the producer
 *       warpgroup's three idle warps (slower everywhere: their serial chain
 *       per unit), and v21 (branch w4a16-v21), consumers pushing straight
 *       into the unit's leader: 37.4 against 40.5 us at (16, 18432, 7168)
 *       in one probe call, slower at three of the six M = 16 benchmark
 *       shapes (H100). The breakdown of v18's time and the numbers in
 *       docs/qgemm.md.
 *   v22 the M <= 16 kernel's X comes in by the copy engine, a step at a
 *       time, and the producer warpgroup's three idle warps rewrite each
 *       step in place in the permuted order while the consumers start on
 *       the weights (they waited for all 16 warps' gather before). H100
 *       graph time at M = 16: (18432, 7168) 40.5 -> 37.7 us, (28672, 8192)
 *       61.9 -> 58.0, the other benchmark shapes 1.8-3.9 us faster.
 *   tried after v22, not kept: 6 or 8 weight stages (same or slower), the
 *       leader adding a unit's sums at its next unit's end (slower at all
 *       six shapes), and the units past whole rounds in a second launch
 *       with K split further (0.5 us faster at (28672, 8192), 0.7 slower
 *       at (18432, 7168), 2.1 slower at (4096, 7168)), and a ring per
 *       half of the unit, each fed by its own thread, without v24's early
 *       release (0.3-1.0 us faster at the three largest shapes, 0.3-0.9
 *       slower at the others; with it, v25).
 *       Numbers in docs/qgemm.md.
 *   v24 the M <= 16 kernel's consumers release a weight stage once its
 *       wgmmas are issued (the words are in registers by then), not after
 *       they finish. H100 graph time at M = 16: (18432, 7168) 37.8 -> 37.0
 *       us, (28672, 8192) 58.2 -> 56.5, the others 0-0.6 us faster.
 *   v25 a ring of weight stages per 64-row half of the unit, fed by its
 *       own lane of the producer warp, so that a slow pair holds up only
 *       its half. H100 graph time at M = 16: (18432, 7168) 37.1 -> 36.3
 *       us, (28672, 8192) 56.4 -> 56.0, the three smaller shapes up to
 *       0.15 us slower. Numbers in docs/qgemm.md.
 *   tried after v25, not kept: stream-K over all 132 SMs with the partial
 *       sums added through global memory (about twice as slow: the counts
 *       and adds under the weight stream), and a cluster's CTAs taking K's
 *       stages in turn (about 1 us slower at two shapes). v25 also lost
 *       its setmaxnreg calls, which could give nothing (same times).
 *       Also tried: a step's wgmmas (as two groups, two sets of partial
 *       sums) running while the next step is dequantized, as after v16 for
 *       M > 16: 4 us slower at (16, 18432, 7168) and (16, 28672, 8192).
 *       Numbers in docs/qgemm.md.
 *   v27 no consumer waits for its cluster at a unit's end: every CTA pushes
 *       its sums to the unit's leader, itself included, and the leader's
 *       three gather warps, idle once X is in, add and store (v21's
 *       finishers on v25); the cluster's last unit its leader's consumers
 *       add. A probe that skipped the cluster's addition altogether (wrong
 *       sums) had put it at 5.1 us of v25's 36.5 at (16, 18432, 7168). H100
 *       graph time at M = 16 in one ci/ab.sh call: (18432, 7168) 35.8 ->
 *       31.8 / 31.6 us, (28672, 8192) 55.4 -> 54.7 / 53.9, (7168, 16384)
 *       30.4 -> 29.0, the three smaller shapes the same. Numbers in
 *       docs/qgemm.md.
 *   v28 v27's kernel with its cluster size chosen from 1 to 8 CTAs, not
 *       only powers of two, by a time model refitted to a sweep of v27
 *       (W4sTimeModel: a round's pace is one CTA's or the memory's). H100
 *       graph time at M = 16 in the sweep's call, v27's size -> v28's:
 *       (4096, 7168) 14.6 us (2 parts) -> 11.5 (3), (24576, 1536) 12.3 (1)
 *       -> 11.6 (2), (28672, 8192) 54.4 (2) -> 52.6 (4); the other three
 *       shapes keep their size. Numbers in docs/qgemm.md.
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cuda_bf16.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

extern "C" {
#include "core/internal.h"
}
#include "kernels/cuda_try.cuh"
#include "kernels/hopper.cuh"
#include "kernels/launch.cuh"
#include "kernels/streaming_load.cuh"

namespace {


constexpr int kBlock = R1_QGEMM_BLOCK;

/* ---- bit-identical conversions (core/dtype.c) --------------------------------------- */

__device__ __forceinline__ uint32_t shift_round_even(uint32_t value, int shift) {
    if (shift <= 0) return value;
    if (shift >= 32) return 0;
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (dropped > half || (dropped == half && (kept & 1u))) kept += 1u;
    return kept;
}

/* float -> E4M3 fn, round to nearest even, saturating at +-448, NaN -> 0x7F. */
__device__ __forceinline__ uint8_t f32_to_e4m3(float value) {
    uint32_t bits = __float_as_uint(value);
    uint32_t sign8 = (bits & 0x80000000u) >> 24;
    uint32_t abs_bits = bits & 0x7FFFFFFFu;
    if (abs_bits > 0x7F800000u) return (uint8_t)(sign8 | 0x7Fu);
    if (abs_bits == 0x7F800000u) return (uint8_t)(sign8 | 0x7Eu);
    int exponent = (int)(abs_bits >> 23);
    uint32_t significand = abs_bits & 0x007FFFFFu;
    if (exponent == 0) exponent = 1;
    else significand |= 0x00800000u;
    int target = exponent - 127 + 7;
    uint32_t magnitude = target >= 1
                             ? ((uint32_t)(target - 1) << 3) + shift_round_even(significand, 20)
                             : shift_round_even(significand, 20 + 1 - target);
    if (magnitude > 0x7Eu) magnitude = 0x7Eu;
    return (uint8_t)(sign8 | magnitude);
}

/* float -> bf16 bits, round to nearest even, NaN -> quiet NaN with sign. */
__device__ __forceinline__ uint16_t f32_to_bf16(float value) {
    uint32_t bits = __float_as_uint(value);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(((bits >> 16) & 0x8000u) | 0x7FC0u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

__device__ __forceinline__ float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ float pow2_at_least(float s) {
    int e;
    float f = frexpf(s, &e);
    return f == 0.5f ? ldexpf(1.0f, e - 1) : ldexpf(1.0f, e);
}

/* ---- quantizers --------------------------------------------------------------------------- */

constexpr int kQuantThreads = 128;

/* Block-wide max of v (all threads get it); `shared` holds kQuantThreads / 32. */
__device__ float block_max(float v, float *shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = shared[0];
    for (int w = 1; w < kQuantThreads / 32; ++w) r = fmaxf(r, shared[w]);
    return r;
}

/* One tile: rows [r0, r1) x columns [c0, c0 + tile_cols) of x (rows, cols).
 *   scheme 0 W8A8 (tile = a row), 1 W4A16 (a group), 2 FP8 (a tile / block).
 * Block (bx, by) quantizes the tiles (tile_row, bx) for tile_row = by, by +
 * gridDim.y, ... (grid.y is capped at 65535, rows are not); the scale goes to
 * scale[tile_row * gridDim.x + bx]. */
__global__ void quantize_kernel(int scheme, int asymmetric, int pow2, int64_t rows, int64_t cols,
                                int tile_rows, int tile_cols, const float *__restrict__ x,
                                void *__restrict__ q, float *__restrict__ scale,
                                uint8_t *__restrict__ zero,
                                unsigned long long *__restrict__ bad_index) {
    __shared__ float shared[kQuantThreads / 32];
    const int64_t row_tiles = (rows + tile_rows - 1) / tile_rows;
    for (int64_t tile_row = blockIdx.y; tile_row < row_tiles; tile_row += gridDim.y) {
        const int64_t r0 = tile_row * tile_rows;
        const int64_t r1 = r0 + tile_rows < rows ? r0 + tile_rows : rows;
        const int64_t c0 = (int64_t)blockIdx.x * tile_cols;
        const int64_t width = tile_cols, count = (r1 - r0) * width;
        float amax = 0.0f, lo = 0.0f, hi = 0.0f;
        for (int64_t i = threadIdx.x; i < count; i += kQuantThreads) {
            int64_t index = (r0 + i / width) * cols + c0 + i % width;
            float v = x[index];
            if (!isfinite(v)) atomicMin(bad_index, (unsigned long long)index);
            amax = fmaxf(amax, fabsf(v));
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
        amax = block_max(amax, shared);
        const int64_t tile = tile_row * gridDim.x + blockIdx.x;
        float s, z = 0.0f;
        if (scheme == R1_QGEMM_W4A16 && asymmetric) {
            hi = block_max(hi, shared);
            lo = -block_max(-lo, shared);
            s = __fdiv_rn(fmaxf(__fsub_rn(hi, lo), R1_QGEMM_AMAX_FLOOR), 15.0f);
            z = clampf(rintf(__fdiv_rn(-lo, s)), 0.0f, 15.0f);
        } else {
            float floored = fmaxf(amax, R1_QGEMM_AMAX_FLOOR);
            float qmax = scheme == R1_QGEMM_W8A8 ? 127.0f : scheme == R1_QGEMM_W4A16 ? 7.0f : 448.0f;
            s = __fdiv_rn(floored, qmax);
            if (scheme == R1_QGEMM_FP8 && pow2) s = pow2_at_least(s);
        }
        if (threadIdx.x == 0) {
            scale[tile] = s;
            if (scheme == R1_QGEMM_W4A16 && asymmetric) zero[tile] = (uint8_t)z;
        }
        if (scheme == R1_QGEMM_W4A16) {
            /* pairs of elements -> one byte, element 2i in the low nibble */
            for (int64_t i = threadIdx.x; i < count / 2; i += kQuantThreads) {
                int64_t index = (r0 + (2 * i) / width) * cols + c0 + (2 * i) % width;
                int level[2];
                for (int e = 0; e < 2; ++e) {
                    float t = rintf(__fdiv_rn(x[index + e], s));
                    level[e] = asymmetric ? (int)clampf(__fadd_rn(t, z), 0.0f, 15.0f)
                                          : (int)clampf(t, -8.0f, 7.0f);
                }
                ((uint8_t *)q)[index / 2] =
                    (uint8_t)((level[0] & 0xF) | ((level[1] & 0xF) << 4));
            }
            continue;
        }
        for (int64_t i = threadIdx.x; i < count; i += kQuantThreads) {
            int64_t index = (r0 + i / width) * cols + c0 + i % width;
            float t = __fdiv_rn(x[index], s);
            if (scheme == R1_QGEMM_W8A8) ((int8_t *)q)[index] = (int8_t)clampf(rintf(t), -127.0f, 127.0f);
            else ((uint8_t *)q)[index] = f32_to_e4m3(t);
        }
    }
}

/* ---- mma / cp.async wrappers ------------------------------------------------------------- */

__device__ __forceinline__ void mma_s8(int32_t c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ void mma_e4m3(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    __trap(); /* the host never launches FP8 below sm_89 */
#endif
}

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* 16 bytes global -> shared, zero-filled when `valid` is 0 (src-size 0). */
__device__ __forceinline__ void cp_async_16(void *shared, const void *global, bool valid) {
    unsigned address = (unsigned)__cvta_generic_to_shared(shared);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int pending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
}
/* Once this thread's earlier cp.async copies have landed, they count as one
 * arrival on the mbarrier `bar` (.noinc: the barrier's count includes it). */
__device__ __forceinline__ void cp_async_arrive(unsigned long long *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(shared_address(bar))
                 : "memory");
#endif
}

/* ---- 8-bit tiled GEMM (W8A8, its accumulators, FP8) ---------------------------------------- */

enum class Mode { Accumulators, W8A8, FP8 };

constexpr int kTileM = 64, kTileN = 64, kTileK = 128, kPad = 16;
constexpr int kStride = kTileK + kPad; /* bytes per shared row: 144 = 36 words, conflict-free */
constexpr int kGemmThreads = 128;

struct Epilogue {
    const float *x_scale, *w_scale, *bias;
    void *y;
    int out_bf16;
    int y_by_copy_engine; /* gemm_8bit_wgmma: tiles leave through shared memory and TMA */
    int64_t y_stride;     /* gemm_8bit_wgmma: elements from one row of Y to the next */
};

/* Bytes per element of Y: bf16, or float32 / int32 (the accumulators). */
__host__ __device__ inline int y_element_bytes(const Epilogue &epilogue) { return epilogue.out_bf16 ? 2 : 4; }

/* Fills one stage: rows [row0, row0 + 64) x bytes [k0, k0 + 128) of a (rows, K)
 * int8 / e4m3 matrix into shared (64, kStride), zeros outside. */
template <bool kAligned>
__device__ __forceinline__ void load_stage(uint8_t *shared, const uint8_t *__restrict__ global,
                                           int64_t rows, int64_t K, int64_t row0, int64_t k0) {
    for (int c = threadIdx.x; c < kTileM * kTileK / 16; c += kGemmThreads) {
        const int r = c / (kTileK / 16), col = (c % (kTileK / 16)) * 16;
        const int64_t row = row0 + r, k = k0 + col;
        uint8_t *dst = shared + r * kStride + col;
        if (kAligned) {
            bool valid = row < rows && k + 16 <= K;
            cp_async_16(dst, valid ? global + row * K + k : global, valid);
        } else {
            uint4 chunk;
            uint8_t *bytes = (uint8_t *)&chunk;
            for (int e = 0; e < 16; ++e)
                bytes[e] = (row < rows && k + e < K) ? global[row * K + k + e] : 0;
            *(uint4 *)dst = chunk;
        }
    }
}

template <Mode kMode, bool kAligned>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_8bit(int64_t M, int64_t N, int64_t K, const uint8_t *__restrict__ x,
              const uint8_t *__restrict__ w, Epilogue epilogue) {
    __shared__ __align__(16) uint8_t a_shared[2][kTileM * kStride];
    __shared__ __align__(16) uint8_t b_shared[2][kTileN * kStride];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int group = lane >> 2, tig = lane & 3;
    const int warp_m = (warp >> 1) * 32, warp_n = (warp & 1) * 32;
    const int64_t m0 = (int64_t)blockIdx.y * kTileM, n0 = (int64_t)blockIdx.x * kTileN;
    const int64_t stages = (K + kTileK - 1) / kTileK, G = K / kBlock;

    int32_t iacc[2][4][4] = {};
    float facc[2][4][4] = {};

    load_stage<kAligned>(a_shared[0], x, M, K, m0, 0);
    load_stage<kAligned>(b_shared[0], w, N, K, n0, 0);
    cp_async_commit();
    for (int64_t t = 0; t < stages; ++t) {
        if (t + 1 < stages) {
            load_stage<kAligned>(a_shared[(t + 1) & 1], x, M, K, m0, (t + 1) * kTileK);
            load_stage<kAligned>(b_shared[(t + 1) & 1], w, N, K, n0, (t + 1) * kTileK);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const uint8_t *as = a_shared[t & 1], *bs = b_shared[t & 1];
        float partial[2][4][4] = {};
#pragma unroll
        for (int ks = 0; ks < kTileK; ks += 32) {
            uint32_t a[2][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const uint8_t *base = as + (warp_m + i * 16 + group) * kStride + ks + tig * 4;
                a[i][0] = *(const uint32_t *)(base);
                a[i][1] = *(const uint32_t *)(base + 8 * kStride);
                a[i][2] = *(const uint32_t *)(base + 16);
                a[i][3] = *(const uint32_t *)(base + 8 * kStride + 16);
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const uint8_t *base = bs + (warp_n + j * 8 + group) * kStride + ks + tig * 4;
                b[j][0] = *(const uint32_t *)(base);
                b[j][1] = *(const uint32_t *)(base + 16);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    if (kMode == Mode::FP8) mma_e4m3(partial[i][j], a[i], b[j]);
                    else mma_s8(iacc[i][j], a[i], b[j]);
                }
        }
        if (kMode == Mode::FP8) {
            /* promotion: acc += partial * (s_x[m, kb] * s_w[n / 128, kb]) */
            const float sw = epilogue.w_scale[(n0 / kBlock) * G + t];
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int64_t m = m0 + warp_m + i * 16 + group + half * 8;
                    const float sx = m < M ? epilogue.x_scale[m * G + t] : 0.0f;
                    const float s = __fmul_rn(sx, sw);
#pragma unroll
                    for (int j = 0; j < 4; ++j)
#pragma unroll
                        for (int e = 0; e < 2; ++e)
                            facc[i][j][half * 2 + e] = __fadd_rn(
                                facc[i][j][half * 2 + e], __fmul_rn(partial[i][j][half * 2 + e], s));
                }
        }
        __syncthreads();
    }

    /* epilogue: c[0..1] row group, c[2..3] row group + 8; columns tig * 2 + {0, 1} */
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int64_t m = m0 + warp_m + i * 16 + group + (r >> 1) * 8;
                const int64_t n = n0 + warp_n + j * 8 + tig * 2 + (r & 1);
                if (m >= M || n >= N) continue;
                if (kMode == Mode::Accumulators) {
                    ((int32_t *)epilogue.y)[m * N + n] = iacc[i][j][r];
                    continue;
                }
                float value;
                if (kMode == Mode::W8A8)
                    value = __fmul_rn(__fmul_rn(__int2float_rn(iacc[i][j][r]), epilogue.x_scale[m]),
                                      epilogue.w_scale[n]);
                else
                    value = facc[i][j][r];
                if (epilogue.bias) value = __fadd_rn(value, epilogue.bias[n]);
                if (epilogue.out_bf16) ((uint16_t *)epilogue.y)[m * N + n] = f32_to_bf16(value);
                else ((float *)epilogue.y)[m * N + n] = value;
            }
}

/* ---- 8-bit GEMM on wgmma (sm_90a): large M ------------------------------------------------- */

/* A persistent kernel, one CTA per SM, 128 x 128 output tiles taken in
 * column groups of 8 tile rows (so the CTAs running together share A and B
 * tiles in L2). Three warpgroups: warpgroup 0 is the producer (one thread
 * issues the copies: a 128 x 128-byte tile of X and one of W per K block,
 * into a ring of kWgStages stages); warpgroups 1 and 2 each own 64 rows of
 * the tile and multiply with four m64n128k32 wgmmas per K block.
 *   FP8: each K block's products start from zero and are promoted into a
 *        float32 accumulator as acc += p * (s_x[m, kb] * s_w[n / 128, kb])
 *        (one fused multiply-add per value), so the tensor core's
 *        reduced-precision accumulation spans one block only.
 *   W8A8 / accumulators: int32 accumulation over all of K (exact).
 * The copy engine zero-fills past M, N and K, so edges need no code in the
 * main loop; the epilogue checks bounds.
 *
 * One tile row (M <= 128) with fewer tiles than SMs (kSplit): a cluster of
 * `parts` CTAs (2, 4 or 8) shares each tile, CTA r taking K blocks
 * [r B / parts, (r + 1) B / parts) of the B; at the end of a tile every CTA
 * pushes its partial sums to the CTAs that finish them (CTA r: a 1 / parts
 * share of every consumer thread's values), each adds the parts in rank
 * order and stores. The tile's sum thus runs in a different order than
 * with one CTA (float; int32 is exact), fixed for a given shape and GPU. */
constexpr int kWgTile = 128;                        /* M, N and K of a tile           */
constexpr int kWgTileBytes = kWgTile * kWgTile;     /* one operand's K block: 16 KiB  */
constexpr int kWgStageBytes = 2 * kWgTileBytes;
/* With K split over a cluster (kSplit) a CTA also receives the partial sums
 * it finishes (64 KiB: 1 / parts of the 128 x 128 tile from each of the
 * parts CTAs), in place of one stage. */
constexpr int kWgExchangeBytes = kWgTile * kWgTile * 4;
/* Without the split, the outputs leave through shared memory: each consumer
 * warpgroup stages its 64 x 128 outputs (or half of them, float32) as two
 * boxes of 64 rows x 128 bytes for the copy engine. */
constexpr int kWgBoxBytes = 64 * 128;
constexpr int kWgStagingBytes = 2 * 2 * kWgBoxBytes;
template <bool kSplit> constexpr int wgmma_stages() { return kSplit ? 5 : 6; }
template <bool kSplit> constexpr int wgmma_shared_bytes() {
    return wgmma_stages<kSplit>() * kWgStageBytes + (kSplit ? kWgExchangeBytes : kWgStagingBytes) +
           1024; /* + alignment */
}
constexpr int kWgThreads = 384;

/* The wgmma kernel's helpers exist only where it is compiled (sm_90a; for
 * other targets its body is empty and they would be unused). */
#ifdef R1LAB_SM90A
constexpr int kWgGroupRows = 8;

/* Two outputs as packed bf16 (lo in the low half), rounded as f32_to_bf16
 * does: the hardware conversion (round to nearest even, the same bits for
 * every number), and f32_to_bf16 itself for NaN, whose bits it fixes. */
__device__ __forceinline__ uint32_t bf16_pair_bits(float lo, float hi) {
    if (isnan(lo) || isnan(hi)) return (uint32_t)f32_to_bf16(lo) | (uint32_t)f32_to_bf16(hi) << 16;
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&pair;
}

/* A consumer thread's 64 outputs of a gemm_8bit_wgmma tile that lies wholly
 * inside Y, from its sums in the m64n128 layout: d[4 j + e] is row row0 +
 * 8 (e / 2), column col0 + 8 j + e % 2, and y + at is (row0, col0). Two row
 * pointers with constant offsets, one conversion per pair, no bounds checks
 * and no branches; the pairs (col0 even) are aligned for their stores and
 * s_w and the bias for float2 loads (the caller checks). x_lo, x_hi: W8A8's
 * s_x of rows row0 and row0 + 8. */
template <Mode kMode, bool kBias, bool kBf16, typename Acc>
__device__ __forceinline__ void store_whole_tile(const Epilogue &epilogue, int64_t stride, int64_t at, int64_t col0,
                                                 float x_lo, float x_hi, const Acc (&sums)[64]) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
        const Acc *d = sums + 4 * j; /* row0: d[0], d[1]; row0 + 8: d[2], d[3] */
        if constexpr (kMode == Mode::Accumulators) {
            int2 *y = (int2 *)((int32_t *)epilogue.y + at) + 4 * j;
            y[0] = make_int2(d[0], d[1]);
            y[stride * 4] = make_int2(d[2], d[3]); /* 8 rows down */
            continue;
        }
        float v[4];
        if constexpr (kMode == Mode::W8A8) {
            const float2 sw = *(const float2 *)(epilogue.w_scale + col0 + 8 * j);
            v[0] = __fmul_rn(__fmul_rn(__int2float_rn(d[0]), x_lo), sw.x);
            v[1] = __fmul_rn(__fmul_rn(__int2float_rn(d[1]), x_lo), sw.y);
            v[2] = __fmul_rn(__fmul_rn(__int2float_rn(d[2]), x_hi), sw.x);
            v[3] = __fmul_rn(__fmul_rn(__int2float_rn(d[3]), x_hi), sw.y);
        } else {
            v[0] = d[0], v[1] = d[1], v[2] = d[2], v[3] = d[3];
        }
        if constexpr (kBias) {
            const float2 b = *(const float2 *)(epilogue.bias + col0 + 8 * j);
            v[0] = __fadd_rn(v[0], b.x), v[1] = __fadd_rn(v[1], b.y);
            v[2] = __fadd_rn(v[2], b.x), v[3] = __fadd_rn(v[3], b.y);
        }
        if constexpr (kBf16) {
            uint32_t *y = (uint32_t *)((uint16_t *)epilogue.y + at) + 4 * j;
            y[0] = bf16_pair_bits(v[0], v[1]);
            y[stride * 4] = bf16_pair_bits(v[2], v[3]); /* 8 rows down */
        } else {
            float2 *y = (float2 *)((float *)epilogue.y + at) + 4 * j;
            y[0] = make_float2(v[0], v[1]);
            y[stride * 4] = make_float2(v[2], v[3]);
        }
    }
}

/* Stores into shared memory at a shared-window address (st.shared: the
 * generic stores a computed pointer would give need 64-bit addresses). */
__device__ __forceinline__ void shared_store_u32(uint32_t address, uint32_t value) {
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(address), "r"(value) : "memory");
}
__device__ __forceinline__ void shared_store_v4(uint32_t address, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(a), "r"(b), "r"(c), "r"(d)
                 : "memory");
}
__device__ __forceinline__ void shared_store_f32x2(uint32_t address, float a, float b) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(address), "f"(a), "f"(b) : "memory");
}
/* Loads 16 bytes from shared memory at a shared-window address. */
__device__ __forceinline__ uint4 shared_load_v4(uint32_t address) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(address));
    return v;
}

/* A consumer warpgroup's 64 x 128 outputs of a gemm_8bit_wgmma tile (rows
 * from out_row, columns from out_col), from its sums in the m64n128 layout
 * (as store_whole_tile), written by the copy engine: the warpgroup writes
 * them into `staging` as boxes of 64 rows x 128 bytes with the 128-byte
 * swizzle (16-byte chunk c of row r at chunk c ^ (r % 8), so the 8 rows of a
 * store instruction fall in different banks), and thread 0 hands the boxes
 * to y_map, whose bounds clip what lies outside Y. bf16 goes in one pass of
 * two 64-column boxes, float32 in two passes of two 32-column boxes. The
 * copies run on while the warpgroup multiplies its next tile; the staging
 * is rewritten only after they have read it. Past the edges the scales and
 * bias are read at the last row / column (the values are never written).
 * bf16: one NaN test for all 64 values, so the common case converts each
 * pair with one instruction and no branch. */
template <Mode kMode, bool kBf16, typename Acc>
__device__ __forceinline__ void store_tile_by_copy_engine(const Epilogue &epilogue, const CUtensorMap *y_map,
                                                          uint8_t *staging, int64_t M, int64_t N, int out_row,
                                                          int out_col, int t, int barrier, const Acc (&sums)[64]) {
    const int warp = t / 32, lane = t % 32;
    const int row = 16 * warp + lane / 4; /* in the warpgroup's 64 rows; and row + 8 */
    const uint32_t swizzle = (uint32_t)(lane / 4) << 4; /* (row % 8) chunks, for both rows */
    const int64_t m = out_row + row, col0 = out_col + 2 * (lane % 4);
    /* the values: d[4 j + e] is row row + 8 (e / 2), column col0 + 8 j + e % 2 */
    float v[64];
    if constexpr (kMode == Mode::W8A8) {
        const float x_lo = epilogue.x_scale[min(m, M - 1)], x_hi = epilogue.x_scale[min(m + 8, M - 1)];
        float s[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) s[i] = epilogue.w_scale[min(col0 + 8 * (i / 2) + i % 2, N - 1)];
#pragma unroll
        for (int i = 0; i < 64; ++i)
            v[i] = __fmul_rn(__fmul_rn(__int2float_rn(sums[i]), (i & 2) ? x_hi : x_lo), s[2 * (i / 4) + i % 2]);
    } else {
#pragma unroll
        for (int i = 0; i < 64; ++i) v[i] = sums[i];
    }
    if (epilogue.bias) {
        float b[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) b[i] = epilogue.bias[min(col0 + 8 * (i / 2) + i % 2, N - 1)];
#pragma unroll
        for (int i = 0; i < 64; ++i) v[i] = __fadd_rn(v[i], b[2 * (i / 4) + i % 2]);
    }
    const uint32_t base = shared_address(staging) + (uint32_t)row * 128;
    constexpr int passes = kBf16 ? 1 : 2, per_pass = 16 / passes;
#pragma unroll
    for (int pass = 0; pass < passes; ++pass) {
        if (t == 0) bulk_wait_read<0>(); /* the last copies out of the staging have read it */
        named_barrier(barrier, 128);
        if constexpr (kBf16) { /* pair j: box j / 8, chunk j % 8, bytes 4 (lane % 4) */
            auto write_pairs = [&](auto convert) {
#pragma unroll
                for (int j = 0; j < 16; ++j) {
                    const float *d = v + 4 * j;
                    const uint32_t at =
                        base + (j / 8) * kWgBoxBytes + (((uint32_t)(j % 8) << 4) ^ swizzle) + 4 * (lane % 4);
                    shared_store_u32(at, convert(d[0], d[1]));
                    shared_store_u32(at + 8 * 128, convert(d[2], d[3])); /* 8 rows down */
                }
            };
            bool nan = false;
#pragma unroll
            for (int i = 0; i < 64; i += 2) nan |= isnan(v[i]) || isnan(v[i + 1]);
            if (!nan) {
                write_pairs([](float lo, float hi) {
                    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
                    return *(const uint32_t *)&pair;
                });
            } else {
                write_pairs(bf16_pair_bits);
            }
        } else { /* pair jj of the pass: box jj / 4, chunk 2 (jj % 4) + (lane % 4) / 2, bytes 8 (lane % 2) */
#pragma unroll
            for (int jj = 0; jj < per_pass; ++jj) {
                const float *d = v + 4 * (pass * per_pass + jj);
                const uint32_t chunk = 2 * (jj % 4) + (lane % 4) / 2;
                const uint32_t at = base + (jj / 4) * kWgBoxBytes + ((chunk << 4) ^ swizzle) + 8 * (lane % 2);
                shared_store_f32x2(at, d[0], d[1]);
                shared_store_f32x2(at + 8 * 128, d[2], d[3]);
            }
        }
        fence_async_shared(); /* the writes, before the copy engine reads them */
        named_barrier(barrier, 128);
        if (t == 0) {
            constexpr int box_columns = kBf16 ? 64 : 32;
            for (int b = 0; b < 2; ++b)
                tma_store_2d(y_map, staging + b * kWgBoxBytes, out_col + 64 * pass + b * box_columns, out_row);
            bulk_commit();
        }
    }
}

/* Unit `unit` (a tile, or with paired CTAs two tiles one above the other) in
 * column groups of kWgGroupRows units. */
__device__ __forceinline__ void wgmma_unit_coordinates(int64_t unit, int64_t units_m, int64_t tiles_n,
                                                       int64_t &unit_m, int64_t &tile_n) {
    const int64_t group_size = (int64_t)kWgGroupRows * tiles_n, group = unit / group_size;
    const int64_t first = group * kWgGroupRows, rows = min((int64_t)kWgGroupRows, units_m - first);
    const int64_t in_group = unit - group * group_size;
    unit_m = first + in_group % rows;
    tile_n = in_group / rows;
}
#endif

/* kPair = 2: clusters of two CTAs take tiles (2 u, n) and (2 u + 1, n); each
 * loads its own X tile and one half of the shared W tile, multicast into both
 * (L2 reads of W halve). A stage is then free only when the consumers of
 * both CTAs have released it, so each consumer warp arrives on both CTAs'
 * `empty` barriers. */
template <Mode kMode, int kPair, bool kSplit>
__global__ void __launch_bounds__(kWgThreads, 1)
    gemm_8bit_wgmma(const __grid_constant__ CUtensorMap x_map,
                    const __grid_constant__ CUtensorMap w_map,
                    const __grid_constant__ CUtensorMap y_map, int64_t M, int64_t N, int64_t K,
                    int parts, Epilogue epilogue) {
#ifdef R1LAB_SM90A
    static_assert(!(kSplit && kPair == 2), "a cluster either pairs tiles or splits K");
    constexpr int kStages = wgmma_stages<kSplit>();
    extern __shared__ uint8_t shared_raw[];
    __shared__ unsigned long long full[kStages], empty[kStages];
    __shared__ unsigned long long ready, freed; /* kSplit: the partial sums are written / read */
    uint8_t *stages = (uint8_t *)(((uintptr_t)shared_raw + 1023) & ~(uintptr_t)1023);
    const int warpgroup = threadIdx.x / 128, t = threadIdx.x % 128;
    const unsigned rank = kPair == 2 || kSplit ? cluster_rank() : 0;
    /* a tail launch (launch_8bit_wgmma) may take the SMs this one frees */
    let_next_kernel_launch();
    const unsigned pair_rank = kPair == 2 ? rank : 0;
    const int cluster_size = kSplit ? parts : kPair;
    const int64_t tiles_m = (M + kWgTile - 1) / kWgTile, tiles_n = (N + kWgTile - 1) / kWgTile;
    const int64_t units_m = (tiles_m + kPair - 1) / kPair, units = units_m * tiles_n;
    const int64_t first_unit = blockIdx.x / cluster_size, unit_stride = gridDim.x / cluster_size;
    /* this CTA's K blocks of every unit: all, or part `rank` of `parts` */
    const int64_t blocks_all = (K + kWgTile - 1) / kWgTile;
    const int block_begin = kSplit ? (int)(rank * blocks_all / parts) : 0;
    const int blocks = kSplit ? (int)((rank + 1) * blocks_all / parts) - block_begin : (int)blocks_all; /* K < 2^31 */
    /* M <= 64: the tile's rows 64 to 127 lie past Y, so the second consumer
     * warpgroup has nothing to multiply, exchange or store, and sits out
     * (the stages' `empty` barriers then count the first one's 4 warps) */
    const bool lower_idle = kPair == 1 && M <= 64;
    const int consumers = lower_idle ? 128 : 256;
    if (threadIdx.x == 0) {
        tma_prefetch_map(&x_map);
        tma_prefetch_map(&w_map);
        if (epilogue.y_by_copy_engine) tma_prefetch_map(&y_map);
        for (int s = 0; s < kStages; ++s) {
            barrier_init(&full[s], 1);
            barrier_init(&empty[s], consumers / 32 * kPair); /* lane 0 of each consumer warp of the pair */
        }
        if (kSplit) {
            barrier_init(&ready, 1);     /* armed by one consumer thread per unit, filled by pushes */
            barrier_init(&freed, parts); /* one lane of one consumer warp per CTA of the cluster */
        }
        barrier_init_fence();
    }
    /* The peers' barriers exist before anything lands there. With the K
     * split nothing does before a consumer's first exchange, so each thread
     * only arrives here and waits for the cluster later (the consumers
     * before they push, everyone else at the end): the producer's first
     * copies start without waiting for the slowest CTA of the cluster. */
    if (kPair == 2) {
        cluster_sync();
    } else if (kSplit) {
        __syncthreads();
        cluster_arrive_relaxed();
    } else {
        __syncthreads();
    }
    bool cluster_waited = !kSplit;

    if (warpgroup == 0) {
        registers_shrink<40>();
        if (t == 0) {
            uint32_t step = 0;
            for (int64_t unit = first_unit; unit < units; unit += unit_stride) {
                int64_t unit_m, tile_n;
                wgmma_unit_coordinates(unit, units_m, tiles_n, unit_m, tile_n);
                const int64_t tile_m = unit_m * kPair + pair_rank;
                for (int kb = 0; kb < blocks; ++kb, ++step) {
                    const uint32_t s = step % kStages, pass = step / kStages;
                    barrier_wait(&empty[s], (pass & 1) ^ 1);
                    barrier_arrive_expect_bytes(&full[s], kWgStageBytes);
                    uint8_t *a = stages + s * kWgStageBytes, *b = a + kWgTileBytes;
                    const int k0 = (int)((block_begin + kb) * kWgTile);
                    tma_load_2d(a, &x_map, k0, (int)(tile_m * kWgTile), &full[s]);
                    if (kPair == 1)
                        tma_load_2d(b, &w_map, k0, (int)(tile_n * kWgTile), &full[s]);
                    else
                        tma_load_2d_multicast(b + rank * (kWgTileBytes / 2), &w_map, k0,
                                              (int)(tile_n * kWgTile + pair_rank * (kWgTile / 2)), &full[s],
                                              0x3);
                }
            }
        }
    } else if (warpgroup * 128 <= consumers) {
        registers_grow<232>();
        /* rows [64 half, 64 half + 64) of the tile; read through a shuffle so
         * that the compiler knows it is the same in every lane of the warp, and
         * keeps the wgmma descriptors derived from it in uniform registers */
        const int half = __shfl_sync(0xffffffffu, warpgroup - 1, 0);
        const int warp = t / 32, lane = t % 32;
        const int64_t G = K / kBlock;
        uint32_t next_stage = 0, next_phase = 0, unit_count = 0; /* the stage the next K block takes */
        /* stage 0's descriptors of this warpgroup's rows of X and of W; a
         * stage's are these advanced by its offset */
        const uint64_t a_stage0 = swizzled_tile_descriptor(stages + 64 * half * kWgTile),
                       b_stage0 = swizzled_tile_descriptor(stages + kWgTileBytes);
        /* every output pair (y[m][n], y[m][n + 1], n even) is one aligned
         * store, and the pairs of s_w and bias one aligned load */
        auto pairs_aligned = [&] {
            const int y_align = 2 * y_element_bytes(epilogue) - 1; /* a pair of elements */
            return epilogue.y_stride % 2 == 0 && ((uintptr_t)epilogue.y & y_align) == 0 &&
                   (kMode != Mode::W8A8 || ((uintptr_t)epilogue.w_scale & 7) == 0) &&
                   ((uintptr_t)epilogue.bias & 7) == 0;
        };
        for (int64_t unit = first_unit; unit < units; unit += unit_stride, ++unit_count) {
            int64_t unit_m, tile_n;
            wgmma_unit_coordinates(unit, units_m, tiles_n, unit_m, tile_n);
            const int64_t tile_m = unit_m * kPair + pair_rank;
            const int64_t row0 = tile_m * kWgTile + 64 * half + 16 * warp + lane / 4; /* and row0 + 8 */
            const int64_t col0 = tile_n * kWgTile + 2 * (lane % 4);                    /* + 8 j (+ 1) */
            using Acc = typename std::conditional<kMode == Mode::FP8, float, int32_t>::type;
            Acc acc[64];
#pragma unroll
            for (int i = 0; i < 64; ++i) acc[i] = 0;
            /* the next K block's stage, once the producer has filled it (the K
             * blocks of a unit take the stages in turn, continuing the last unit's) */
            auto next_stage_of = [&](uint32_t &s) {
                s = next_stage;
                barrier_wait(&full[s], next_phase);
                if (++next_stage == kStages) {
                    next_stage = 0;
                    next_phase ^= 1;
                }
            };
            /* the stage's reads are done: hand it back (to both CTAs of a pair) */
            auto release = [&](uint32_t s) {
                if (lane == 0) barrier_arrive(&empty[s]);
                if (kPair == 2 && lane == 1) barrier_arrive_in_block(&empty[s], rank ^ 1);
            };
            /* the descriptors of k slice j (32 bytes) of stage s */
            auto a_of = [&](uint32_t s, int j) { return descriptor_advance(a_stage0, s * kWgStageBytes + 32 * j); };
            auto b_of = [&](uint32_t s, int j) { return descriptor_advance(b_stage0, s * kWgStageBytes + 32 * j); };
            if constexpr (kMode == Mode::FP8) {
                /* Two sets of partial sums: block kb's wgmmas run while block
                 * kb - 1's are promoted (and its stage handed back). */
                float part[2][64];
                float scale[2][3]; /* s_x of rows row0 and row0 + 8, s_w */
                uint32_t held[2];
                /* loaded a block ahead and multiplied only when used (the loads
                 * are L2 round trips) */
                const bool lo_valid = row0 < M, hi_valid = row0 + 8 < M;
                const float *x_scale_lo = epilogue.x_scale + (lo_valid ? row0 * G + block_begin : 0);
                const float *x_scale_hi = epilogue.x_scale + (hi_valid ? (row0 + 8) * G + block_begin : 0);
                const float *w_scale = epilogue.w_scale + tile_n * G + block_begin;
                auto scales_of = [&](int kb, float (&out)[3]) {
                    out[0] = lo_valid ? x_scale_lo[kb] : 0.0f;
                    out[1] = hi_valid ? x_scale_hi[kb] : 0.0f;
                    out[2] = w_scale[kb];
                };
                auto issue = [&](float (&p)[64], uint32_t s) {
                    wgmma_fence();
#pragma unroll
                    for (int j = 0; j < kWgTile / 32; ++j)
                        wgmma_m64n128k32_e4m3(p, a_of(s, j), b_of(s, j), j > 0);
                    wgmma_commit();
                };
                /* acc += p * (s_x * s_w), once the group has finished: one fused
                 * multiply-add (ref rounds the product first; the difference is
                 * far below the 1e-3 agreement bar, and the promotion is the
                 * consumers' main work next to issuing wgmmas: 1,102 TFLOP/s
                 * against 952 with two roundings, H100, M=4096 N=7168 K=16384) */
                auto promote = [&](float (&p)[64], uint32_t s, const float (&sc)[3]) {
                    keep_registers(p);
                    release(s);
                    const float lo = __fmul_rn(sc[0], sc[2]), hi = __fmul_rn(sc[1], sc[2]);
#pragma unroll
                    for (int i = 0; i < 64; ++i) acc[i] = fmaf(p[i], (i & 2) ? hi : lo, acc[i]);
                };
                scales_of(0, scale[0]);
                next_stage_of(held[0]);
                issue(part[0], held[0]);
                int kb = 1;
                for (; kb + 1 < blocks; kb += 2) {
                    scales_of(kb, scale[1]);
                    next_stage_of(held[1]);
                    issue(part[1], held[1]);
                    wgmma_wait<1>();
                    promote(part[0], held[0], scale[0]);
                    scales_of(kb + 1, scale[0]);
                    next_stage_of(held[0]);
                    issue(part[0], held[0]);
                    wgmma_wait<1>();
                    promote(part[1], held[1], scale[1]);
                }
                if (kb < blocks) {
                    scales_of(kb, scale[1]);
                    next_stage_of(held[1]);
                    issue(part[1], held[1]);
                    wgmma_wait<1>();
                    promote(part[0], held[0], scale[0]);
                    wgmma_wait<0>();
                    promote(part[1], held[1], scale[1]);
                } else {
                    wgmma_wait<0>();
                    promote(part[0], held[0], scale[0]);
                }
            } else {
                /* int32 accumulation through all of K; block kb - 1's stage is
                 * handed back once block kb's wgmmas are queued behind it */
                uint32_t s = 0, previous = 0;
                for (int kb = 0; kb < blocks; ++kb) {
                    next_stage_of(s);
                    wgmma_fence();
#pragma unroll
                    for (int j = 0; j < kWgTile / 32; ++j)
                        wgmma_m64n128k32_s8(acc, a_of(s, j), b_of(s, j), kb > 0 || j > 0);
                    wgmma_commit();
                    if (kb > 0) {
                        wgmma_wait<1>();
                        release(previous);
                    }
                    previous = s;
                }
                wgmma_wait<0>();
                keep_registers(acc);
                release(previous);
            }
            /* d[4 j + e]: row row0 + 8 (e / 2), column col0 + 8 j + e % 2; pair
             * q = 2 j + h holds two neighbours of one row, stored together */
            auto finish = [&](Acc a, int64_t m, int64_t n) {
                float value;
                if constexpr (kMode == Mode::W8A8)
                    value = __fmul_rn(__fmul_rn(__int2float_rn(a), epilogue.x_scale[m]), epilogue.w_scale[n]);
                else
                    value = (float)a; /* FP8: the promoted sum */
                if (epilogue.bias) value = __fadd_rn(value, epilogue.bias[n]);
                return value;
            };
            /* pair q of the tile, values a0, a1: bounds, scaling, bias, store */
            auto store_pair = [&](int q, Acc a0, Acc a1) {
                const int64_t m = row0 + 8 * (q & 1), n = col0 + 8 * (q >> 1);
                if (m >= M || n >= N) return;
                const bool both = n + 1 < N;
                const int64_t at = m * epilogue.y_stride + n;
                if constexpr (kMode == Mode::Accumulators) {
                    int32_t *y = (int32_t *)epilogue.y + at;
                    if (both && (at & 1) == 0) {
                        *(int2 *)y = make_int2(a0, a1);
                    } else {
                        y[0] = a0;
                        if (both) y[1] = a1;
                    }
                    return;
                }
                const float v0 = finish(a0, m, n);
                const float v1 = both ? finish(a1, m, n + 1) : 0.0f;
                if (epilogue.out_bf16) {
                    uint16_t *y = (uint16_t *)epilogue.y + at;
                    if (both && (at & 1) == 0) {
                        *(uint32_t *)y = (uint32_t)f32_to_bf16(v0) | (uint32_t)f32_to_bf16(v1) << 16;
                    } else {
                        y[0] = f32_to_bf16(v0);
                        if (both) y[1] = f32_to_bf16(v1);
                    }
                } else {
                    float *y = (float *)epilogue.y + at;
                    if (both && (at & 1) == 0) {
                        *(float2 *)y = make_float2(v0, v1);
                    } else {
                        y[0] = v0;
                        if (both) y[1] = v1;
                    }
                }
            };
            if constexpr (!kSplit) {
                if (kMode != Mode::Accumulators && epilogue.y_by_copy_engine) {
                    const int out_row = (int)(tile_m * kWgTile + 64 * half);
                    uint8_t *staging = stages + kStages * kWgStageBytes + half * 2 * kWgBoxBytes;
                    const int out_col = (int)(tile_n * kWgTile);
                    if (out_row < M && epilogue.out_bf16)
                        store_tile_by_copy_engine<kMode, true>(epilogue, &y_map, staging, M, N, out_row, out_col, t,
                                                               2 + half, acc);
                    else if (out_row < M)
                        store_tile_by_copy_engine<kMode, false>(epilogue, &y_map, staging, M, N, out_row, out_col, t,
                                                                2 + half, acc);
                } else if (row0 + 8 < M && col0 + 8 * 15 + 1 < N && pairs_aligned()) {
                    /* All 64 outputs in bounds and pairs aligned (at K = 1536
                     * the general stores below were 43 % of the consumers'
                     * instructions) */
                    const int64_t at = row0 * epilogue.y_stride + col0;
                    float x_lo = 1.0f, x_hi = 1.0f;
                    if constexpr (kMode == Mode::W8A8) {
                        x_lo = epilogue.x_scale[row0];
                        x_hi = epilogue.x_scale[row0 + 8];
                    }
                    /* bias and output type chosen once per tile */
                    if (kMode == Mode::Accumulators)
                        store_whole_tile<kMode, false, false>(epilogue, epilogue.y_stride, at, col0, x_lo, x_hi, acc);
                    else if (epilogue.bias && epilogue.out_bf16)
                        store_whole_tile<kMode, true, true>(epilogue, epilogue.y_stride, at, col0, x_lo, x_hi, acc);
                    else if (epilogue.bias)
                        store_whole_tile<kMode, true, false>(epilogue, epilogue.y_stride, at, col0, x_lo, x_hi, acc);
                    else if (epilogue.out_bf16)
                        store_whole_tile<kMode, false, true>(epilogue, epilogue.y_stride, at, col0, x_lo, x_hi, acc);
                    else
                        store_whole_tile<kMode, false, false>(epilogue, epilogue.y_stride, at, col0, x_lo, x_hi, acc);
                } else {
#pragma unroll
                    for (int q = 0; q < 32; ++q) store_pair(q, acc[2 * q], acc[2 * q + 1]);
                }
            } else {
                /* K split over the cluster (parts = 2, 4 or 8): CTA r finishes
                 * the quads d in [r c, r c + c), c = 16 / parts, of every consumer
                 * thread (quad d: pairs 2 d and 2 d + 1, 4 values). Every CTA
                 * pushes its partial sums of those quads into CTA r's exchange
                 * at [sender][d - r c][thread] (st.async, counted on r's `ready`:
                 * 64 KiB per unit, less what CTA r writes there itself with
                 * plain stores and reads back in the same thread), then each
                 * CTA adds what it received in
                 * sender order (float: a fixed order; int32: wrapping adds,
                 * exact). A CTA pushes the next unit's sums only after every CTA
                 * has said (on the pusher's `freed`) that it has read them. */
                using Quad = typename std::conditional<kMode == Mode::FP8, float4, int4>::type;
                static_assert(16 * 256 * sizeof(Quad) == kWgExchangeBytes, "the exchange holds 16 quads per consumer thread");
                Quad *exchange = (Quad *)(stages + kStages * kWgStageBytes);
                const int me = half * 128 + t, per = 16 / parts;
                auto bits_of = [](Acc v) -> uint32_t {
                    if constexpr (kMode == Mode::FP8) return __float_as_uint(v);
                    else return (uint32_t)v;
                };
                if (half == 0 && t == 0)
                    barrier_arrive_expect_bytes(&ready, kWgExchangeBytes / 256 * consumers / parts * (parts - 1));
                if (!cluster_waited) { /* every CTA of the cluster has its barriers */
                    cluster_wait();
                    cluster_waited = true;
                }
                if (unit_count > 0) barrier_wait(&freed, (unit_count - 1) & 1);
#pragma unroll
                for (int d = 0; d < 16; ++d) {
                    const unsigned owner = (unsigned)(d / per);
                    Quad *slot = exchange + ((int)rank * per + d % per) * 256 + me;
                    const uint32_t a = bits_of(acc[4 * d]), b = bits_of(acc[4 * d + 1]), c = bits_of(acc[4 * d + 2]),
                                   e = bits_of(acc[4 * d + 3]);
                    if (owner == rank) shared_store_v4(shared_address(slot), a, b, c, e); /* its own quads */
                    else push_16_to_block(slot, a, b, c, e, &ready, owner);
                }
                barrier_wait(&ready, unit_count & 1);
                const int d0 = (int)rank * per;
                for (int j0 = 0; j0 < per; j0 += 4) { /* 4 quads at a time (more live sums spill) */
                    Quad sum[4];
                    for (int r = 0; r < parts; ++r) {
                        const Quad *from = exchange + (r * per + j0) * 256 + me;
#pragma unroll
                        for (int j = 0; j < 4; ++j) {
                            if (j0 + j >= per) continue;
                            const Quad v = from[j * 256];
                            if (r == 0) {
                                sum[j] = v;
                            } else if constexpr (kMode == Mode::FP8) {
                                sum[j].x = __fadd_rn(sum[j].x, v.x);
                                sum[j].y = __fadd_rn(sum[j].y, v.y);
                                sum[j].z = __fadd_rn(sum[j].z, v.z);
                                sum[j].w = __fadd_rn(sum[j].w, v.w);
                            } else {
                                sum[j].x = (int32_t)((uint32_t)sum[j].x + (uint32_t)v.x);
                                sum[j].y = (int32_t)((uint32_t)sum[j].y + (uint32_t)v.y);
                                sum[j].z = (int32_t)((uint32_t)sum[j].z + (uint32_t)v.z);
                                sum[j].w = (int32_t)((uint32_t)sum[j].w + (uint32_t)v.w);
                            }
                        }
                    }
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        if (j0 + j >= per) continue;
                        store_pair(2 * (d0 + j0 + j), sum[j].x, sum[j].y);
                        store_pair(2 * (d0 + j0 + j) + 1, sum[j].z, sum[j].w);
                    }
                }
                /* every consumer thread has read (and used) its sums: the
                 * pushers may overwrite them (after the cluster's last unit
                 * nobody pushes again) */
                if (unit + unit_stride < units) {
                    named_barrier(1, consumers);
                    if (half == 0 && warp == 0 && lane < parts)
                        barrier_arrive_relaxed_in_block(&freed, (unsigned)lane);
                }
            }
        }
        /* the copy engine has written this warpgroup's last tile (and read
         * its shared memory) before the CTA ends */
        if (!kSplit && t == 0) bulk_wait<0>();
    }
    /* A CTA of a pair stays until its peer has no more copies or arrivals
     * for it. With the K split the only remote operations left at the end
     * are the last unit's pushes, and each CTA has waited (on `ready`) for
     * every byte pushed to it: no barrier over the cluster is needed (it
     * cost a fence for the outputs' stores and the slowest CTA's end). */
    if (kPair == 2) {
        __syncwarp();
        cluster_sync();
    } else if (kSplit && !cluster_waited) {
        __syncwarp();
        cluster_wait();
    }
    /* A tail launch started early (it reads nothing the launch before it
     * writes) ends only after that launch: a kernel that waits for this one
     * then sees all of Y. */
    if (kSplit) wait_for_previous_kernel();
#endif
}

/* ---- W4A16 decode-style GEMM ------------------------------------------------------------------- */

constexpr int kW4Warps = 4, kW4Columns = 32, kW4Rows = 16;

/* bf16 bits of a small integer (exact), two packed: lo in the low half. */
__device__ __forceinline__ uint32_t pack_levels(int lo, int hi) {
    return (__float_as_uint((float)lo) >> 16) | (__float_as_uint((float)hi) & 0xFFFF0000u);
}

__global__ void __launch_bounds__(kW4Warps * 32)
    gemm_w4a16(int64_t M, int64_t N, int64_t K, const uint16_t *__restrict__ x,
               const uint8_t *__restrict__ w, const float *__restrict__ w_scale,
               const uint8_t *__restrict__ w_zero, const float *__restrict__ bias, void *y,
               int out_bf16) {
    __shared__ float reduce[kW4Warps][32][16];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int group = lane >> 2, tig = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * kW4Columns, m0 = (int64_t)blockIdx.y * kW4Rows;
    const int64_t G = K / kBlock;
    const int64_t row_lo = m0 + group, row_hi = m0 + group + 8;
    float acc[4][4] = {};
    for (int64_t g = warp; g < G; g += kW4Warps) {
        float partial[4][4] = {};
        int zero[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + j * 8 + group;
            zero[j] = (w_zero != nullptr && n < N) ? (int)w_zero[n * G + g] : 0;
        }
#pragma unroll
        for (int chunk = 0; chunk < 2; ++chunk) {
            const int64_t kc = g * kBlock + chunk * 64 + tig * 16; /* this lane's 16 k */
            uint2 packed[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int64_t n = n0 + j * 8 + group;
                packed[j] = n < N ? *(const uint2 *)(w + (n * K + kc) / 2) : make_uint2(0, 0);
            }
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                uint32_t a[4];
                uint2 lo = row_lo < M ? *(const uint2 *)(x + row_lo * K + kc + 4 * s) : make_uint2(0, 0);
                uint2 hi = row_hi < M ? *(const uint2 *)(x + row_hi * K + kc + 4 * s) : make_uint2(0, 0);
                a[0] = lo.x; /* row g,     slots tig*2 + {0,1}  <- k = kc + 4s + {0,1} */
                a[1] = hi.x; /* row g + 8                                            */
                a[2] = lo.y; /* row g,     slots tig*2 + 8 + {0,1} <- k = kc + 4s + {2,3} */
                a[3] = hi.y;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    /* nibbles 4s .. 4s+3 of this lane's 16 */
                    const uint32_t word = s < 2 ? packed[j].x : packed[j].y;
                    const uint32_t nib = (word >> ((s & 1) * 16)) & 0xFFFFu;
                    int level[4];
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        int v = (int)((nib >> (4 * e)) & 0xFu);
                        level[e] = w_zero != nullptr ? v - zero[j] : (v >= 8 ? v - 16 : v);
                    }
                    uint32_t b[2] = {pack_levels(level[0], level[1]), pack_levels(level[2], level[3])};
                    mma_bf16(partial[j], a, b);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int64_t n = n0 + j * 8 + tig * 2 + (r & 1);
                const float s = n < N ? w_scale[n * G + g] : 0.0f;
                acc[j][r] = __fadd_rn(acc[j][r], __fmul_rn(partial[j][r], s));
            }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) reduce[warp][lane][j * 4 + r] = acc[j][r];
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            float value = reduce[0][lane][j * 4 + r];
            for (int v = 1; v < kW4Warps; ++v) value = __fadd_rn(value, reduce[v][lane][j * 4 + r]);
            const int64_t m = m0 + group + (r >> 1) * 8;
            const int64_t n = n0 + j * 8 + tig * 2 + (r & 1);
            if (m >= M || n >= N) continue;
            if (bias) value = __fadd_rn(value, bias[n]);
            if (out_bf16) ((uint16_t *)y)[m * N + n] = f32_to_bf16(value);
            else ((float *)y)[m * N + n] = value;
        }
}

/* Split-K within a block: warp w = rowset * slices + slice holds the partial
 * sums of one K slice of its tile in acc (R per lane). Slices 1.. hand theirs
 * over through reduce[warp][R][32]; slice 0 adds them in slice order (float:
 * rounded adds, fixed order; int32: wrapping adds, exact). Needs every thread
 * of the block; returns false for the warps whose sums were handed over. */
template <int R, typename Acc>
__device__ bool sum_k_slices(Acc (&acc)[R], Acc (*reduce)[R][32], int warp, int lane, int kslice,
                             int slices) {
    if (slices <= 1) return true;
    if (kslice != 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) reduce[warp][r][lane] = acc[r];
    }
    __syncthreads();
    if (kslice != 0) return false;
    for (int v = 1; v < slices; ++v)
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const Acc other = reduce[warp + v][r][lane];
            if constexpr (std::is_same<Acc, float>::value) acc[r] = __fadd_rn(acc[r], other);
            else acc[r] = (Acc)((uint32_t)acc[r] + (uint32_t)other);
        }
    return true;
}

/* ---- decode GEMM (M <= 32; W4A16 M <= 16): weight streaming -------------------------------- */

/* The weights are read once, 16 bytes per lane per load, straight from global
 * memory into mma B fragments; X is small and read through L1. A block has 4
 * warps = kSplit K slices x (4 / kSplit) row sets; a warp owns TN tiles of 8
 * weight rows and MT tiles of 16 rows of X, and walks its K slice in steps of
 * 128 (one W4A16 group / FP8 block), kPrefetch steps of weight loads in flight.
 *   8-bit: lane (gq, tig) loads bytes [64 h + 16 tig, +16) of the step's 128
 *     for row n0 + 8 t + gq, h = 0, 1; the mma.m16n8k32 slots k = 4 tig + j
 *     and 16 + 4 tig + j are bytes 16 tig + j and 16 tig + 4 + j of the 64, for
 *     X (A) and W (B) alike, so both are plain 16-byte loads.
 *   W4A16: lane loads the 16 bytes [16 tig, +16) of row n's 64-byte group =
 *     32 nibbles, 4 words of 8 (element e at bits 4e). Word d feeds two
 *     mma.m16n8k16: slots (2 tig, 2 tig + 1) <- elements (0, 4) | (2, 6) and
 *     (2 tig + 8, +9) <- (1, 5) | (3, 7): the masks 0x000F000F of word >> 0,
 *     4, 8, 12. A nibble v becomes a bf16 level with one lop3 and one bf16x2
 *     subtraction (the magic-number trick): bf16 bits 0x4300 | u = 128 + u, so
 *     symmetric (u = v ^ 8 = q + 8) minus 136 = q, asymmetric minus (128 + z)
 *     = q - z, both exact. X's 16-byte loads are permuted to the same
 *     element pairs with prmt.
 * Per step the fp32 partial sums are scaled (W4A16 s_w[n, g]; FP8 the
 * promotion s_x[m, kb] * s_w[n / 128, kb]) into the accumulator; W8A8 adds
 * int32 exactly. The K slices are summed in shared memory in slice order. */
constexpr int kDecodeWarps = 4;

__device__ __forceinline__ uint4 ldg_x(const void *p) { return __ldg((const uint4 *)p); }

/* bf16x2 a - b (exact here: small integers). */
__device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hsub2(*(__nv_bfloat162 *)&a, *(__nv_bfloat162 *)&b);
    return *(uint32_t *)&r;
}

__device__ __forceinline__ uint32_t nibble_pair(uint32_t word, int shift, uint32_t magic,
                                                uint32_t sub) {
    /* ((word >> shift) & 0x000F000F) ^ magic as one lop3 (0x6a = (a & b) ^ c);
     * written out, a constant magic is split into an AND and an XOR */
    uint32_t bits;
    asm("lop3.b32 %0, %1, %2, %3, 0x6a;\n" : "=r"(bits) : "r"(word >> shift), "n"(0x000F000F), "r"(magic));
    return bf16x2_sub(bits, sub);
}

template <Mode kMode, bool kW4, int TN, int MT>
__global__ void __launch_bounds__(kDecodeWarps * 32, MT == 1 ? 4 : 3)
    gemm_decode(int64_t M, int64_t N, int64_t K, int ksplit, const uint8_t *__restrict__ x,
                const uint8_t *__restrict__ w, const uint8_t *__restrict__ w_zero,
                Epilogue epilogue) {
    using Acc = typename std::conditional<kMode == Mode::FP8 || kW4, float, int32_t>::type;
    constexpr int kPrefetch = 2;
    constexpr int kLoads = kW4 ? 1 : 2; /* 16-byte weight loads per row per step */
    constexpr int kRegs = TN * MT * 4;
    __shared__ Acc reduce[kDecodeWarps][kRegs][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int gq = lane >> 2, tig = lane & 3;
    const int kslice = warp % ksplit, rowset = warp / ksplit;
    const int64_t n0 = ((int64_t)blockIdx.x * (kDecodeWarps / ksplit) + rowset) * TN * 8;
    const int64_t G = K / kBlock;
    const int64_t row_bytes = kW4 ? K / 2 : K;
    Acc acc[TN][MT][4] = {};

    /* kPrefetch steps of weights in registers; W4A16 (long steps: 16 mma and
     * 8 loads of X each) also double-buffers them, so the next steps' loads
     * are in flight while this batch is multiplied. */
    uint4 wv[kPrefetch][TN][kLoads], next[kPrefetch][TN][kLoads];
    auto load_batch = [&](uint4 (&dst)[kPrefetch][TN][kLoads], int64_t first) {
#pragma unroll
        for (int u = 0; u < kPrefetch; ++u) {
            const int64_t g = first + (int64_t)u * ksplit;
#pragma unroll
            for (int t = 0; t < TN; ++t) {
                const int64_t n = n0 + t * 8 + gq;
#pragma unroll
                for (int h = 0; h < kLoads; ++h)
                    dst[u][t][h] = (g < G && n < N)
                                       ? ldg_stream(w + n * row_bytes + g * (kW4 ? 64 : 128) +
                                                    h * 64 + tig * 16)
                                       : make_uint4(0, 0, 0, 0);
            }
        }
    };
    if constexpr (kW4) load_batch(next, kslice);
    for (int64_t g0 = kslice; g0 < G; g0 += (int64_t)ksplit * kPrefetch) {
        if constexpr (kW4) {
#pragma unroll
            for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
                for (int t = 0; t < TN; ++t)
#pragma unroll
                    for (int h = 0; h < kLoads; ++h) wv[u][t][h] = next[u][t][h];
            load_batch(next, g0 + (int64_t)ksplit * kPrefetch);
        } else {
            load_batch(wv, g0);
        }
#pragma unroll
        for (int u = 0; u < kPrefetch; ++u) {
            const int64_t g = g0 + (int64_t)u * ksplit;
            if (g >= G) break;
            float partial[TN][MT][4] = {};
            if constexpr (kW4) {
                uint32_t magic[TN], sub[TN];
#pragma unroll
                for (int t = 0; t < TN; ++t) {
                    const int64_t n = n0 + t * 8 + gq;
                    if (w_zero != nullptr) {
                        const uint32_t z = n < N ? (uint32_t)w_zero[n * G + g] : 0u;
                        magic[t] = 0x43004300u;
                        sub[t] = (0x4300u | z) * 0x00010001u;
                    } else {
                        magic[t] = 0x43084308u;
                        sub[t] = 0x43084308u;
                    }
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    const int64_t row_lo = mt * 16 + gq, row_hi = row_lo + 8;
#pragma unroll
                    for (int d = 0; d < 4; ++d) {
                        const int64_t k = g * kBlock + tig * 32 + d * 8;
                        const uint4 lo = row_lo < M ? ldg_x(x + (row_lo * K + k) * 2) : make_uint4(0, 0, 0, 0);
                        const uint4 hi = row_hi < M ? ldg_x(x + (row_hi * K + k) * 2) : make_uint4(0, 0, 0, 0);
                        const uint32_t a0[4] = {__byte_perm(lo.x, lo.z, 0x5410), __byte_perm(hi.x, hi.z, 0x5410),
                                                __byte_perm(lo.x, lo.z, 0x7632), __byte_perm(hi.x, hi.z, 0x7632)};
                        const uint32_t a1[4] = {__byte_perm(lo.y, lo.w, 0x5410), __byte_perm(hi.y, hi.w, 0x5410),
                                                __byte_perm(lo.y, lo.w, 0x7632), __byte_perm(hi.y, hi.w, 0x7632)};
#pragma unroll
                        for (int t = 0; t < TN; ++t) {
                            const uint32_t word = d == 0 ? wv[u][t][0].x : d == 1 ? wv[u][t][0].y
                                                : d == 2 ? wv[u][t][0].z : wv[u][t][0].w;
                            const uint32_t b0[2] = {nibble_pair(word, 0, magic[t], sub[t]),
                                                    nibble_pair(word, 4, magic[t], sub[t])};
                            const uint32_t b1[2] = {nibble_pair(word, 8, magic[t], sub[t]),
                                                    nibble_pair(word, 12, magic[t], sub[t])};
                            mma_bf16(partial[t][mt], a0, b0);
                            mma_bf16(partial[t][mt], a1, b1);
                        }
                    }
                }
                /* acc += partial * s_w[n, g] */
#pragma unroll
                for (int t = 0; t < TN; ++t)
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        const int64_t n = n0 + t * 8 + tig * 2 + c;
                        const float s = n < N ? __ldg(epilogue.w_scale + n * G + g) : 0.0f;
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                            for (int half = 0; half < 2; ++half)
                                acc[t][mt][half * 2 + c] = __fadd_rn(
                                    acc[t][mt][half * 2 + c], __fmul_rn(partial[t][mt][half * 2 + c], s));
                    }
            } else {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    const int64_t row_lo = mt * 16 + gq, row_hi = row_lo + 8;
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int64_t k = g * kBlock + h * 64 + tig * 16;
                        const uint4 lo = row_lo < M ? ldg_x(x + row_lo * K + k) : make_uint4(0, 0, 0, 0);
                        const uint4 hi = row_hi < M ? ldg_x(x + row_hi * K + k) : make_uint4(0, 0, 0, 0);
                        const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y};
                        const uint32_t a1[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
                        for (int t = 0; t < TN; ++t) {
                            const uint32_t b0[2] = {wv[u][t][h].x, wv[u][t][h].y};
                            const uint32_t b1[2] = {wv[u][t][h].z, wv[u][t][h].w};
                            if constexpr (kMode == Mode::FP8) {
                                mma_e4m3(partial[t][mt], a0, b0);
                                mma_e4m3(partial[t][mt], a1, b1);
                            } else {
                                mma_s8((int32_t *)acc[t][mt], a0, b0);
                                mma_s8((int32_t *)acc[t][mt], a1, b1);
                            }
                        }
                    }
                }
                if constexpr (kMode == Mode::FP8) {
                    /* promotion: acc += partial * (s_x[m, kb] * s_w[n / 128, kb]) */
#pragma unroll
                    for (int t = 0; t < TN; ++t) {
                        const int64_t nt = n0 + t * 8;
                        const float sw = nt < N ? __ldg(epilogue.w_scale + (nt / kBlock) * G + g) : 0.0f;
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                            for (int half = 0; half < 2; ++half) {
                                const int64_t m = mt * 16 + gq + half * 8;
                                const float sx = m < M ? __ldg(epilogue.x_scale + m * G + g) : 0.0f;
                                const float s = __fmul_rn(sx, sw);
#pragma unroll
                                for (int c = 0; c < 2; ++c)
                                    acc[t][mt][half * 2 + c] = __fadd_rn(
                                        acc[t][mt][half * 2 + c], __fmul_rn(partial[t][mt][half * 2 + c], s));
                            }
                    }
                }
            }
        }
    }

    /* split-K: slice 0 adds the others in order and stores */
    if (!sum_k_slices(reinterpret_cast<Acc(&)[kRegs]>(acc), reduce, warp, lane, kslice, ksplit)) return;
#pragma unroll
    for (int t = 0; t < TN; ++t)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int64_t m = mt * 16 + gq + (r >> 1) * 8;
                const int64_t n = n0 + t * 8 + tig * 2 + (r & 1);
                if (m >= M || n >= N) continue;
                if (kMode == Mode::Accumulators) {
                    ((int32_t *)epilogue.y)[m * N + n] = (int32_t)acc[t][mt][r];
                    continue;
                }
                float value;
                if (kMode == Mode::W8A8)
                    value = __fmul_rn(__fmul_rn(__int2float_rn((int32_t)acc[t][mt][r]), epilogue.x_scale[m]),
                                      epilogue.w_scale[n]);
                else
                    value = (float)acc[t][mt][r];
                if (epilogue.bias) value = __fadd_rn(value, epilogue.bias[n]);
                if (epilogue.out_bf16) ((uint16_t *)epilogue.y)[m * N + n] = f32_to_bf16(value);
                else ((float *)epilogue.y)[m * N + n] = value;
            }
}

/* ---- W4A16 weight stream (M <= 16): W as the mma's A operand, X staged in shared memory ---- */

/* At decode sizes Y = X Wᵀ is a stream of the int4 weights (N K / 2 bytes)
 * past a few rows of X. The kernel computes it as Yᵀ = W Xᵀ, so that 16
 * weight rows fill an mma.m16n8k16 A fragment and up to 8 rows of X its B
 * fragment (two n8 tiles for 9 <= M <= 16):
 *   - one block per SM; block b owns the 16-row tiles [b T / B, (b + 1) T / B)
 *     of the T = ⌈N / 16⌉ (B blocks), so no SM gets more than one tile above
 *     the average; a consumer warp owns one tile and every KS-th 128-K step
 *     (one scale group) of it, KS = 1, 2 or 4 chosen so the block has at
 *     most 15 consumer warps;
 *   - lane (gq, tig) loads 16 bytes of rows gq and gq + 8 of its tile per
 *     step, bytes [16 tig, +16) of the row's 64 (32 nibbles, 4 words of 8),
 *     with ld.global.nc.L1::no_allocate, P steps ahead in registers;
 *   - word d of those gives two mma: slots (2 tig, 2 tig + 1) <- elements
 *     (0, 4) | (2, 6) and (2 tig + 8, + 9) <- (1, 5) | (3, 7) of the word, by
 *     the masks 0x000F000F of word >> 0, 4, 8, 12 and the magic-number trick
 *     (bf16 0x4300 | u = 128 + u; minus 136 for symmetric v ^ 8, minus
 *     128 + z for asymmetric v: exact small integers);
 *   - X sits in shared memory in chunks of 16 steps (8 with two n8 tiles),
 *     in the order lanes read it: for step s, n8 tile nt and word d, the 16
 *     bytes of lane (gq, tig) are X[8 nt + gq, 128 s + 32 tig + 8 d, +8],
 *     with its elements paired like the nibbles ((0, 4), (1, 5), (2, 6),
 *     (3, 7)) by four prmt: in the producer for one n8 tile, in every
 *     consumer for two. Rows of X past M are never copied and never
 *     cleared: they are the mma's B columns m >= M, which feed only the
 *     outputs Y[m >= M, n] (mma columns do not mix), and those are never
 *     stored. (Clearing the 128 KiB ring per block cost 0.9 us of 10.3 at
 *     M = 1, N = 4096, K = 7168 on the H100.) A block reads X from L2 once;
 *     its warps share it;
 *   - block b takes the chunks in the order ⌊b chunks / B⌋, ..., chunks - 1,
 *     0, ...: with every block reading the same lines of X at once (132
 *     requests per L2 line), M = 16, N = 18432, K = 7168 took 52.0 us on the
 *     H100; staggered it takes 46.6 us (a probe that skipped X's copies
 *     altogether, wrong results, took 39 us);
 *   - one producer warp fills the chunks (ld.global + prmt + st.shared with
 *     one n8 tile, cp.async with two) into a ring of up to
 *     4 slots (all of X when it has at most 4 chunks). Each slot has two
 *     mbarriers: `full` (the producer's 32 lanes arrive after their stores,
 *     or as their copies land) and `empty` (every lane of the active consumer warps arrives when
 *     done with the chunk; the producer refills a slot only after that). No
 *     consumer waits for another, so every warp keeps its weight loads in
 *     flight (v4 had a block-wide barrier per chunk);
 *   - rows of W past N and steps past K load row N - 1 and step G - 1
 *     instead, so the loads need no predicates; blocks of at most 10 warps
 *     keep 8 steps in flight instead of 4 (they have the registers);
 *   - per step the fp32 partial sums are scaled by s_w[n, g] into the
 *     accumulators (one FMA each), and the KS slices of a tile are summed in shared memory
 *     in slice order. */
constexpr int kStreamMaxWarps = 16;      /* consumers + the producer */
constexpr int kStreamBarrierBytes = 1024; /* full[slots], empty[slots] ahead of the chunks */
constexpr int kStreamMaxSlots = 4; /* 128 KiB: 7 (224 KiB) ran up to 8 us slower (H100) */

/* Steps of 128 K per chunk of X: 16 with one n8 tile, 8 with two (32 KiB either way). */
template <int NT>
constexpr int stream_chunk() { return NT == 1 ? 16 : 8; }

template <int NT>
constexpr int stream_step_bytes() { return NT * 4 * 32 * 16; }

template <int NT>
constexpr int stream_chunk_bytes() { return stream_chunk<NT>() * stream_step_bytes<NT>(); }

/* Blocks of at most kStreamDeepWarps warps have the registers to keep 8
 * steps of weights in flight instead of 4. */
constexpr int kStreamDeepWarps = 10;

template <int NT, int KS, int kDeep, bool kAsym>
__global__ void __launch_bounds__((kDeep ? kStreamDeepWarps : kStreamMaxWarps) * 32, 1)
    gemm_w4a16_stream(int64_t M, int64_t N, int64_t K, int slots, const uint16_t *__restrict__ x,
                      const uint8_t *__restrict__ w, const float *__restrict__ w_scale,
                      const uint8_t *__restrict__ w_zero, const float *__restrict__ bias, void *y,
                      int out_bf16) {
    constexpr int C = stream_chunk<NT>(), kSteps = C / KS; /* a warp's steps per chunk */
    constexpr int kMaxP = kDeep ? 8 : 4;
    constexpr int P = kSteps < kMaxP ? kSteps : kMaxP;    /* steps of weights in flight */
    constexpr int kStepBytes = stream_step_bytes<NT>(), kChunkBytes = stream_chunk_bytes<NT>();
    /* With one n8 tile (M <= 8) the producer pairs X's elements as the nibbles
     * are paired (loads, prmt, stores: at most 8 rows of X), so the consumers
     * use their shared loads as they are; with two, the producer's loads of 16
     * rows could not keep up (measured), so it copies X with cp.async and each
     * consumer pairs the elements itself. */
    constexpr bool kPermuteX = NT == 1;
    static_assert(C % KS == 0 && kSteps % P == 0, "chunk, slices and prefetch must nest");
    extern __shared__ __align__(128) uint8_t shared[];
    unsigned long long *full = (unsigned long long *)shared, *empty = full + slots;
    uint8_t *ring = shared + kStreamBarrierBytes;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tig = lane & 3;
    const int consumers = blockDim.x / 32 - 1, kslice = warp % KS, rowset = warp / KS;
    const int G = (int)(K / kBlock), chunks = (G + C - 1) / C; /* K < 2^31 (validated) */
    /* Block b walks the chunks of K starting at chunk ⌊b chunks / B⌋ and wraps
     * around, so that the blocks read different parts of X at any moment. */
    const int first_chunk = (int)(blockIdx.x * (int64_t)chunks / gridDim.x);
    auto chunk_at = [&](int c) { /* the chunk the block takes c-th */
        return c + first_chunk < chunks ? c + first_chunk : c + first_chunk - chunks;
    };
    /* The warp's i-th step (0 <= i < 2 kSteps) counted from the start of the
     * block's c-th chunk (i >= kSteps: in the next chunk; after the last, a
     * step of the last again: prefetched, never multiplied, and read from L2,
     * where the first chunk's steps would come from DRAM again: 9.5 MB at
     * M = 1, N = 18432, K = 7168, 13 % of the bytes the product needs). */
    auto step_at = [&](int c, int i) {
        const int carry = i >= kSteps, next = c + carry < chunks ? c + carry : c;
        return chunk_at(next) * C + kslice + KS * (i - carry * kSteps);
    };
    const int64_t row_bytes = K / 2;
    const int64_t tiles = (N + 15) / 16, first = blockIdx.x * tiles / gridDim.x,
                  last = (blockIdx.x + 1) * tiles / gridDim.x;
    const int64_t tiles_here = last - first; /* at most consumers / KS */
    const bool active = warp < consumers && rowset < tiles_here; /* warp-uniform */
    const int64_t n0 = (first + rowset) * 16;

    /* The consumers' register ring of weights (and their scales and zero
     * points), P steps deep; its first loads go out before anything else. */
    uint4 wv[P][2];
    float scale[P][2];
    uint32_t zero[P]; /* asymmetric: zero points of rows gq (low half) and gq + 8 (high) */
    constexpr uint32_t magic = kAsym ? 0x43004300u : 0x43084308u;
    /* Rows past N and steps past G load row N - 1 / step G - 1 instead (real
     * data, never multiplied into a written output): no predicates. */
    const int64_t n_lo = n0 + gq < N ? n0 + gq : N - 1, n_hi = n0 + 8 + gq < N ? n0 + 8 + gq : N - 1;
    const uint8_t *w_row[2] = {w + n_lo * row_bytes + tig * 16, w + n_hi * row_bytes + tig * 16};
    const float *scale_row[2] = {w_scale + n_lo * G, w_scale + n_hi * G};
    const uint8_t *zero_row[2] = {kAsym ? w_zero + n_lo * G : nullptr, kAsym ? w_zero + n_hi * G : nullptr};
    auto load_step = [&](int slot, int g) {
        g = g < G ? g : G - 1;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            wv[slot][half] = ldg_stream(w_row[half] + g * 64);
            scale[slot][half] = __ldg(scale_row[half] + g);
        }
        if constexpr (kAsym) zero[slot] = __ldg(zero_row[0] + g) | (uint32_t)__ldg(zero_row[1] + g) << 16;
    };
    if (active) {
#pragma unroll
        for (int u = 0; u < P; ++u) load_step(u, step_at(0, u));
    }

    if (threadIdx.x == 0) {
        for (int s = 0; s < slots; ++s) {
            barrier_init(&full[s], 32);
            barrier_init(&empty[s], (unsigned)(tiles_here * KS * 32)); /* the active warps' lanes */
        }
        barrier_init_fence();
    }
    __syncthreads(); /* the barriers are initialized */

    float acc[NT][4] = {};
    if (warp == consumers) {
        /* The producer: chunk c into slot c % slots once the consumers are done with
         * the chunk there before it; only rows m < M, only steps g < G. */
        const int tokens = M < NT * 8 ? (int)M : NT * 8, pieces = tokens * C * 16;
        /* Piece i of a chunk: 16 bytes of X row `token`, step s, at the place lane
         * (gq, tig) of word d reads it (see the layout above). */
        auto piece_of = [&](int i, int c, int &offset, const uint16_t *&source) {
            const int piece = i & 15, s = (i >> 4) % C, token = (i >> 4) / C, g = c * C + s;
            offset = s * kStepBytes + (((token >> 3) * 4 + (piece & 3)) * 32 + (token & 7) * 4 + (piece >> 2)) * 16;
            source = x + token * K + (int64_t)g * kBlock + piece * 8;
            return g < G;
        };
        for (int c = 0; c < chunks; ++c) {
            const int slot = c % slots;
            if (c >= slots) barrier_wait(&empty[slot], (unsigned)((c / slots - 1) & 1));
            uint8_t *buffer = ring + slot * kChunkBytes;
            if constexpr (kPermuteX) {
                constexpr int kBatch = 8; /* 16-byte loads in flight per lane */
                for (int i0 = lane; i0 < pieces; i0 += 32 * kBatch) {
                    uint4 v[kBatch];
                    int offset[kBatch];
                    bool valid[kBatch];
#pragma unroll
                    for (int u = 0; u < kBatch; ++u) {
                        const uint16_t *source;
                        valid[u] = i0 + 32 * u < pieces && piece_of(i0 + 32 * u, chunk_at(c), offset[u], source);
                        if (valid[u]) v[u] = __ldg(reinterpret_cast<const uint4 *>(source));
                    }
                    /* elements (0, 4), (1, 5), (2, 6), (3, 7): the order of the nibble pairs */
#pragma unroll
                    for (int u = 0; u < kBatch; ++u)
                        if (valid[u])
                            *reinterpret_cast<uint4 *>(buffer + offset[u]) =
                                make_uint4(__byte_perm(v[u].x, v[u].z, 0x5410), __byte_perm(v[u].x, v[u].z, 0x7632),
                                           __byte_perm(v[u].y, v[u].w, 0x5410), __byte_perm(v[u].y, v[u].w, 0x7632));
                }
                barrier_arrive(&full[slot]); /* release: the stores above are seen by the waiters */
            } else {
                for (int i = lane; i < pieces; i += 32) {
                    int offset;
                    const uint16_t *source;
                    if (piece_of(i, chunk_at(c), offset, source)) cp_async_16(buffer + offset, source, true);
                }
                cp_async_arrive(&full[slot]);
            }
        }
        if constexpr (!kPermuteX) cp_async_wait<0>();
    } else if (active) {

        /* One step: its weights, scales and zero points were copied out of the
         * register ring (whose slot already holds the loads of step + P). With one
         * n8 tile, two chains of partial sums (words 0, 1 and 2, 3) halve the mma
         * dependency chain; two tiles are two chains already. */
        auto multiply_step = [&](const uint4 (&weights)[2], const float (&scales)[2],
                                 uint32_t zeros, const uint8_t *x_step) {
            constexpr int kChains = NT == 1 ? 2 : 1;
            float partial[kChains][NT][4] = {};
            /* rows gq (weights[0]) and gq + 8 (weights[1]): bf16x2 128 + their zero
             * point (136 = 128 + 8 for symmetric nibbles, whose xor with 8 is in magic) */
            const uint32_t sub_lo = kAsym ? (0x4300u | (zeros & 0xFFFFu)) * 0x00010001u : 0x43084308u,
                           sub_hi = kAsym ? (0x4300u | (zeros >> 16)) * 0x00010001u : 0x43084308u;
#pragma unroll
            for (int d = 0; d < 4; ++d) {
                const uint4 &lo4 = weights[0], &hi4 = weights[1];
                const uint32_t lo = d == 0 ? lo4.x : d == 1 ? lo4.y : d == 2 ? lo4.z : lo4.w;
                const uint32_t hi = d == 0 ? hi4.x : d == 1 ? hi4.y : d == 2 ? hi4.z : hi4.w;
                const uint32_t a0[4] = {nibble_pair(lo, 0, magic, sub_lo), nibble_pair(hi, 0, magic, sub_hi),
                                        nibble_pair(lo, 4, magic, sub_lo), nibble_pair(hi, 4, magic, sub_hi)};
                const uint32_t a1[4] = {nibble_pair(lo, 8, magic, sub_lo), nibble_pair(hi, 8, magic, sub_hi),
                                        nibble_pair(lo, 12, magic, sub_lo), nibble_pair(hi, 12, magic, sub_hi)};
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    /* elements (0, 4), (1, 5) and (2, 6), (3, 7), as the producer stored
                     * them (kPermuteX) or paired here */
                    const uint4 v = *(const uint4 *)(x_step + ((nt * 4 + d) * 32 + lane) * 16);
                    const uint32_t b0[2] = {kPermuteX ? v.x : __byte_perm(v.x, v.z, 0x5410),
                                            kPermuteX ? v.y : __byte_perm(v.x, v.z, 0x7632)};
                    const uint32_t b1[2] = {kPermuteX ? v.z : __byte_perm(v.y, v.w, 0x5410),
                                            kPermuteX ? v.w : __byte_perm(v.y, v.w, 0x7632)};
                    mma_bf16(partial[(d >> 1) % kChains][nt], a0, b0);
                    mma_bf16(partial[(d >> 1) % kChains][nt], a1, b1);
                }
            }
            /* acc += partial * s_w[n, g] in one fused multiply-add: c0, c1 are row gq, c2, c3 row gq + 8 */
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    acc[nt][r] = __fmaf_rn(kChains == 2 ? __fadd_rn(partial[0][nt][r], partial[kChains - 1][nt][r])
                                                        : partial[0][nt][r],
                                           scales[r >> 1], acc[nt][r]);
        };

        /* Chunk c: the warp's steps g = c C + kslice + KS i, i < kSteps. */
        int slot = 0;
        unsigned pass = 0;
        for (int c = 0; c < (int)chunks; ++c) {
            barrier_wait(&full[slot], pass & 1);
            const uint8_t *buffer = ring + slot * kChunkBytes;
#pragma unroll 1
            for (int i0 = 0; i0 < kSteps; i0 += P)
#pragma unroll
            for (int u = 0; u < P; ++u) {
                const int local = kslice + KS * (i0 + u), g = chunk_at(c) * C + local;
                const uint4 weights[2] = {wv[u][0], wv[u][1]};
                const float scales[2] = {scale[u][0], scale[u][1]};
                const uint32_t zeros = kAsym ? zero[u] : 0u;
                load_step(u, step_at(c, i0 + u + P));
                if (g < G) multiply_step(weights, scales, zeros, buffer + local * kStepBytes);
            }
            barrier_arrive(&empty[slot]);
            if (++slot == slots) {
                slot = 0;
                ++pass;
            }
        }
    }
    __syncthreads(); /* every chunk is consumed: the ring holds the slices' sums now */
    float(*reduce)[NT * 4][32] = (float(*)[NT * 4][32])ring;
    if (!sum_k_slices(reinterpret_cast<float(&)[NT * 4]>(acc), reduce, warp, lane, kslice, KS)) return;
    if (!active) return;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int64_t m = nt * 8 + tig * 2 + (r & 1);
            const int64_t n = n0 + (r >> 1) * 8 + gq;
            if (m >= M || n >= N) continue;
            float value = acc[nt][r];
            if (bias) value = __fadd_rn(value, bias[n]);
            if (out_bf16) ((uint16_t *)y)[m * N + n] = f32_to_bf16(value);
            else ((float *)y)[m * N + n] = value;
        }
}

/* ---- W4A16 on wgmma (sm_90a): M > 16 -------------------------------------------------------- */

/* Yᵀ = W Xᵀ on the tensor core: the dequantized weights are the register A
 * operand of wgmma.m64nBMk16 (64 weight rows) and BM rows of X its B operand
 * in shared memory (K-major, BM = 64 or 128):
 *   - a persistent kernel, one CTA per SM, three warpgroups: warpgroup 0 is
 *     the producer (one thread issues the copies), 1 and 2 consume;
 *   - a stage is one 128-K step: X's BM rows as two 128-byte swizzled boxes
 *     of 64 columns, and 64 bytes of int4 per weight row (the 64-byte
 *     swizzle: 16-byte chunk c of row r at chunk c ^ ((r / 2) mod 4), so a
 *     warp's loads of one chunk of 8 rows hit 8 different bank groups);
 *   - a unit is 128 weight rows x BM rows of X, consumer h multiplying rows
 *     [64 h, 64 h + 64) over all of K (every stage holds 128 weight rows and
 *     both consumers read it); or, with kSplitK, 64 weight rows x BM rows of X,
 *     the consumers taking alternate steps (a stage holds 64 weight rows and
 *     one consumer reads it: with an even number of stages, stage s always
 *     goes to consumer s mod 2) and the two sums added in shared memory at the
 *     unit's end, in a fixed order. kSplitK halves a unit's length, for shapes
 *     whose 128-row units would leave SMs idle or run a second, short round;
 *   - lane (gq, tig) of warp w of a consumer builds the A fragment of k16
 *     slice j from byte 8 j + tig (columns 2 tig, 2 tig + 1) and byte
 *     8 j + 4 + tig (columns 2 tig + 8, + 9) of its rows 16 w + gq and + 8:
 *     element 2 i is byte i's low nibble, so a byte is a bf16 pair of
 *     neighbouring columns. prmt puts the byte and the byte shifted right by
 *     4 into the two halves, then the magic number of the decode path makes
 *     each low nibble a bf16 level (exact small integers);
 *   - each step's 8 wgmmas sum into fresh partial sums, promoted once they
 *     finish as acc += partial * s_w[n, g] (one FMA each), the group scale
 *     applied in fp32 as in the other W4A16 kernels.
 * The copy engine zero-fills X past M and W past N; those rows are never
 * stored. */
constexpr int kW4gRows = 64;                  /* weight rows of one consumer       */
constexpr int kW4gRowBytes = kBlock / 2;      /* int4 bytes of a row per 128-K step */

template <int BM, bool kSplitK> struct W4gShape {
    static constexpr int x_bytes = BM * kBlock * 2;                          /* X's rows, one step  */
    static constexpr int w_bytes = (kSplitK ? 1 : 2) * kW4gRows * kW4gRowBytes; /* weight rows, one step */
    static constexpr int stage_bytes = x_bytes + w_bytes;
    static constexpr int sums_bytes = kSplitK ? kW4gRows * BM * 4 : 0;      /* consumer 2's sums    */
    /* of sm_90's 227 KiB per block, with room for the alignment and barriers */
    static constexpr int budget = 220 * 1024 - sums_bytes;
    static constexpr int fit = budget / stage_bytes > 8 ? 8 : budget / stage_bytes;
    static constexpr int stages = kSplitK ? fit & ~1 : fit;                  /* even with kSplitK    */
    static constexpr int shared_bytes = stages * stage_bytes + sums_bytes + 1024; /* + alignment */
    static constexpr int unit_rows = kSplitK ? kW4gRows : 2 * kW4gRows;
};

#ifdef R1LAB_SM90A
/* d = A B^T for one k16 slice: m64n64k16 or m64n128k16, A in registers. */
template <int BM>
__device__ __forceinline__ void wgmma_w4(float (&d)[BM / 2], const uint32_t (&a)[4], uint64_t b, int accumulate) {
    if constexpr (BM == 64) wgmma_m64n64k16_bf16_a_registers(d, a, b, accumulate);
    else wgmma_m64n128k16_bf16_a_registers(d, a, b, accumulate);
}

/* The bf16 pair (low nibble, high nibble) of byte tig of `word` minus `sub`:
 * `select` = tig | (4 + tig) << 8 puts the byte into the low half and the
 * byte of word >> 4 into the high half; nibble_pair keeps each half's low
 * nibble and applies the magic number. */
__device__ __forceinline__ uint32_t byte_levels(uint32_t word, uint32_t select, uint32_t magic, uint32_t sub) {
    return nibble_pair(__byte_perm(word, word >> 4, select), 0, magic, sub);
}

/* The A fragments of one 128-K step (8 k16 slices) from this thread's two
 * weight rows in shared memory, `lo` (row gq) and `hi` (row gq + 8): 16-byte
 * chunk `first + c` (c < 4) of each, stored at chunk (first + c) ^ swizzle.
 * Chunk c holds slices 2c (words x, y) and 2c + 1 (words z, w). */
__device__ __forceinline__ void step_fragments(const uint8_t *lo_row, const uint8_t *hi_row, int first, int swizzle,
                                               uint32_t select, uint32_t magic, uint32_t sub_lo, uint32_t sub_hi,
                                               uint32_t (&a)[8][4]) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        const int chunk = (first + c) ^ swizzle;
        const uint4 lo = *(const uint4 *)(lo_row + 16 * chunk);
        const uint4 hi = *(const uint4 *)(hi_row + 16 * chunk);
        a[2 * c][0] = byte_levels(lo.x, select, magic, sub_lo);
        a[2 * c][1] = byte_levels(hi.x, select, magic, sub_hi);
        a[2 * c][2] = byte_levels(lo.y, select, magic, sub_lo);
        a[2 * c][3] = byte_levels(hi.y, select, magic, sub_hi);
        a[2 * c + 1][0] = byte_levels(lo.z, select, magic, sub_lo);
        a[2 * c + 1][1] = byte_levels(hi.z, select, magic, sub_hi);
        a[2 * c + 1][2] = byte_levels(lo.w, select, magic, sub_lo);
        a[2 * c + 1][3] = byte_levels(hi.w, select, magic, sub_hi);
    }
}
#endif

/* Stores a consumer thread's n sums of a wgmma.m64n(2n) tile of Yᵀ: d[4 i +
 * e] is weight row n_lo (e < 2) or n_hi, row m0 + 8 i + e % 2 of X (m0 = the
 * tile's first row + 2 tig); rows past M or N are not stored. */
template <int kSums>
__device__ __forceinline__ void store_transposed(const float (&acc)[kSums], int64_t m0, int64_t n_lo, int64_t n_hi,
                                                 int64_t M, int64_t N, const float *bias, void *y, int out_bf16) {
#pragma unroll
    for (int i = 0; i < kSums; ++i) {
        const int64_t m = m0 + 8 * (i / 4) + (i & 1), n = (i & 2) ? n_hi : n_lo;
        if (m >= M || n >= N) continue;
        float value = acc[i];
        if (bias) value = __fadd_rn(value, bias[n]);
        if (out_bf16) ((uint16_t *)y)[m * N + n] = f32_to_bf16(value);
        else ((float *)y)[m * N + n] = value;
    }
}

template <int BM, bool kSplitK, bool kAsym>
__global__ void __launch_bounds__(kWgThreads, 1)
    gemm_w4a16_wgmma(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                     int64_t M, int64_t N, int64_t K, const float *__restrict__ w_scale,
                     const uint8_t *__restrict__ w_zero, const float *__restrict__ bias, void *y,
                     int out_bf16) {
#ifdef R1LAB_SM90A
    using Shape = W4gShape<BM, kSplitK>;
    constexpr int kStages = Shape::stages;
    extern __shared__ uint8_t shared_raw[];
    __shared__ unsigned long long full[kStages], empty[kStages];
    uint8_t *stages = (uint8_t *)(((uintptr_t)shared_raw + 1023) & ~(uintptr_t)1023);
    float *sums = (float *)(stages + kStages * Shape::stage_bytes); /* kSplitK: consumer 2's sums */
    const int warpgroup = threadIdx.x / 128, t = threadIdx.x % 128;
    const int G = (int)(K / kBlock);
    const int64_t tiles_n = (N + Shape::unit_rows - 1) / Shape::unit_rows, tiles_m = (M + BM - 1) / BM;
    const int64_t units = tiles_n * tiles_m;
    if (threadIdx.x == 0) {
        tma_prefetch_map(&x_map);
        tma_prefetch_map(&w_map);
        for (int s = 0; s < kStages; ++s) {
            barrier_init(&full[s], 1);
            barrier_init(&empty[s], kSplitK ? 4 : 8); /* lane 0 of each warp that reads the stage */
        }
        barrier_init_fence();
    }
    __syncthreads();

    if (warpgroup == 0) {
        registers_shrink<40>();
        if (t == 0) {
            uint32_t step = 0;
            for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
                int64_t tile_m, tile_n;
                wgmma_unit_coordinates(unit, tiles_m, tiles_n, tile_m, tile_n);
                const int x_row = (int)(tile_m * BM), w_row = (int)(tile_n * Shape::unit_rows);
                for (int g = 0; g < G; ++g, ++step) {
                    const uint32_t s = step % kStages, pass = step / kStages;
                    barrier_wait(&empty[s], (pass & 1) ^ 1);
                    barrier_arrive_expect_bytes(&full[s], Shape::stage_bytes);
                    uint8_t *x_stage = stages + s * Shape::stage_bytes, *w_stage = x_stage + Shape::x_bytes;
                    tma_load_2d(x_stage, &x_map, g * kBlock, x_row, &full[s]);
                    tma_load_2d(x_stage + BM * 128, &x_map, g * kBlock + 64, x_row, &full[s]);
                    tma_load_2d(w_stage, &w_map, g * kW4gRowBytes, w_row, &full[s]);
                    if (!kSplitK)
                        tma_load_2d(w_stage + kW4gRows * kW4gRowBytes, &w_map, g * kW4gRowBytes, w_row + kW4gRows,
                                    &full[s]);
                }
            }
        }
        return;
    }

    registers_grow<232>();
    /* read through a shuffle so that the compiler keeps it (and the
     * descriptors derived from it) uniform across the warp */
    const int consumer = __shfl_sync(0xffffffffu, warpgroup - 1, 0);
    const int warp = t / 32, lane = t % 32, gq = lane / 4, tig = lane % 4;
    const uint32_t select = (uint32_t)tig | (uint32_t)(4 + tig) << 8;
    const int swizzle = (gq >> 1) & 3; /* the 64-byte swizzle of rows gq and gq + 8 */
    constexpr uint32_t magic = kAsym ? 0x43004300u : 0x43084308u;
    /* the weight rows this thread reads in a stage: 16 warp + gq (and + 8) of its 64 */
    const int w_offset = Shape::x_bytes + (kSplitK ? 0 : consumer * kW4gRows * kW4gRowBytes) +
                         (16 * warp + gq) * kW4gRowBytes;
    const uint64_t x_descriptor = swizzled_tile_descriptor(stages);
    uint32_t step = 0; /* steps of all units so far: stage step % kStages, pass step / kStages */
    for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x, step += G) {
        int64_t tile_m, tile_n;
        wgmma_unit_coordinates(unit, tiles_m, tiles_n, tile_m, tile_n);
        const int64_t n_lo = tile_n * Shape::unit_rows + (kSplitK ? 0 : consumer * kW4gRows) + 16 * warp + gq;
        const int64_t n_hi = n_lo + 8;
        const bool lo_valid = n_lo < N, hi_valid = n_hi < N;
        float acc[BM / 2];
#pragma unroll
        for (int i = 0; i < BM / 2; ++i) acc[i] = 0.0f;
        /* with kSplitK this consumer takes the unit's steps g with (step + g) % 2 == consumer */
        const int g_first = kSplitK ? (int)((step + consumer) & 1) : 0, g_stride = kSplitK ? 2 : 1;
        for (int g = g_first; g < G; g += g_stride) {
            const uint32_t at = step + g, s = at % kStages;
            /* this thread's scales (loaded before the wait: L2 round trips) */
            const float scale_lo = lo_valid ? w_scale[n_lo * G + g] : 0.0f;
            const float scale_hi = hi_valid ? w_scale[n_hi * G + g] : 0.0f;
            uint32_t sub_lo = 0x43084308u, sub_hi = 0x43084308u;
            if constexpr (kAsym) {
                const uint32_t z_lo = lo_valid ? w_zero[n_lo * G + g] : 0u, z_hi = hi_valid ? w_zero[n_hi * G + g] : 0u;
                sub_lo = (0x4300u | z_lo) * 0x00010001u;
                sub_hi = (0x4300u | z_hi) * 0x00010001u;
            }
            barrier_wait(&full[s], (at / kStages) & 1);
            const uint8_t *rows = stages + s * Shape::stage_bytes + w_offset;
            uint32_t a[8][4];
            step_fragments(rows, rows + 8 * kW4gRowBytes, 0, swizzle, select, magic, sub_lo, sub_hi, a);
            float partial[BM / 2];
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < 8; ++j)
                wgmma_w4<BM>(partial, a[j],
                             descriptor_advance(x_descriptor, s * Shape::stage_bytes + (j / 4) * BM * 128 + 32 * (j % 4)),
                             j > 0);
            wgmma_commit();
            wgmma_wait<0>();
            keep_registers(partial);
            if (lane == 0) barrier_arrive(&empty[s]);
            /* d[4 i + e]: weight row n_lo (e < 2) or n_hi, row 8 i + 2 tig + e % 2 of X's tile */
#pragma unroll
            for (int i = 0; i < BM / 2; ++i) acc[i] = fmaf(partial[i], (i & 2) ? scale_hi : scale_lo, acc[i]);
        }
        if constexpr (kSplitK) {
            /* consumer 2's sums to shared memory, consumer 1 adds them (in that
             * order) and stores; consumer 2 writes the next unit's only after
             * consumer 1 has read these (barrier 2) */
            const bool more = unit + gridDim.x < units;
            if (consumer == 1) {
#pragma unroll
                for (int i = 0; i < BM / 2; ++i) sums[i * 128 + t] = acc[i];
                named_barrier(1, 256);
                if (more) named_barrier(2, 256);
                continue;
            }
            named_barrier(1, 256);
#pragma unroll
            for (int i = 0; i < BM / 2; ++i) acc[i] = __fadd_rn(acc[i], sums[i * 128 + t]);
            if (more) named_barrier(2, 256);
        }
        store_transposed(acc, tile_m * BM + 2 * tig, n_lo, n_hi, M, N, bias, y, out_bf16);
    }
#endif
}

/* ---- W4A16 on wgmma (sm_90a): M <= 16 ------------------------------------------------------- */

/* Yᵀ = W Xᵀ as in gemm_w4a16_wgmma, for the few rows of X of a decode step
 * (XR = 16 rows of X, zero past M: wgmma.m64n16k16):
 *   - a cluster of `parts` CTAs (1 to 8, plan_w4a16_small) shares each unit of 128 weight
 *     rows, CTA r taking the 128-K steps [r G / parts, (r + 1) G / parts) of
 *     every unit. Its slice of X comes into shared memory once, a step at a
 *     time as the first unit needs it (w4s_gather_x), and stays there:
 *     after that only weights are read, each 64-row half of a unit into
 *     its own ring of 4 stages, two steps (8 KiB: 64 rows x 128 bytes, the
 *     128-byte swizzle) per stage;
 *   - the K order inside a step is permuted (w4s_physical_k) so that a
 *     thread's A fragments of a step are the 32 nibbles of one 16-byte chunk
 *     of each of its two rows, taken in the pairs (k, k + 4) that one lop3
 *     per pair isolates; X is stored in the same permuted order, so the
 *     product is unchanged;
 *   - consumer warpgroups multiply 64 of the unit's rows each (with four, a
 *     pair shares a half, one step of each stage each), dequantized A
 *     fragments in registers, a step's partial sums promoted with the group
 *     scale in fp32;
 *   - at the end of unit i of the cluster, every CTA pushes its consumer
 *     threads' 8 sums into the shared memory of CTA i mod parts (the unit's
 *     leader, itself included; st.async, counted on the leader's `ready`)
 *     and goes on to its next unit without waiting. The leader's producer
 *     warpgroup's three gather warps (idle once X is in) add them in rank
 *     order and store. A CTA pushes to the same leader again (unit i +
 *     parts) only after the leader has said, on the pusher's `freed`, that
 *     it has read the last ones. Leaders rotate, so no CTA does all the
 *     adding. The cluster's last unit its leader's consumers add, idle by
 *     then: 512 threads instead of 96 for the kernel's tail.
 * M = 1 to 16 cost the same. Rows of W past N come as zeros from the copy
 * engine and are never stored. Where it runs by default is a measured
 * choice: see w4a16_small_applies. */
constexpr int kW4sStages = 4;
constexpr int kW4sUnitRows = 2 * kW4gRows;                       /* weight rows of a unit */
constexpr int kW4sStageBytes = kW4gRows * 2 * kW4gRowBytes;      /* two steps of a unit's half: 8 KiB */
constexpr int kW4sRingBytes = kW4sStages * kW4sStageBytes;       /* one half's ring; a CTA holds two */
constexpr int kW4sGatherThreads = 96;                             /* the producer warpgroup's idle warps */
constexpr int kW4sMaxSteps = 40; /* of X's resident slice: more than shared memory holds (4 KiB each) */

/* The permuted K order of a 128-K step. wgmma's A fragment gives thread
 * (gq, tig), in k16 slice s, the columns 16 s + 2 tig + 8 h + e (h, e in
 * {0, 1}) of its rows. Logical column (s, tig, h, e) is taken from physical
 * column 32 tig + 8 (s / 2) + 2 (s % 2) + h + 4 e: thread tig's 32 columns
 * are its 16-byte chunk tig of the row, word s / 2, nibbles i and i + 4 for
 * i = 2 (s % 2) + h. A bijection of 0..127. */
__host__ __device__ constexpr int w4s_physical_k(int logical) {
    const int s = logical / 16, tig = (logical % 8) / 2, h = (logical % 16) / 8, e = logical % 2;
    return 32 * tig + 8 * (s / 2) + 2 * (s % 2) + h + 4 * e;
}

/* The inverse the X gather uses: physical columns 8 c + j and 8 c + j + 4
 * (16-byte chunk c = 4 tig + w of the step, j < 4) are logical columns
 * w4s_logical_pair(tig, w, j) and + 1. */
__host__ __device__ constexpr int w4s_logical_pair(int tig, int w, int j) {
    return 16 * (2 * w + j / 2) + 2 * tig + 8 * (j % 2);
}

/* The two agree, and the permutation is a bijection of 0..127. */
constexpr bool w4s_order_is_consistent() {
    bool seen[128] = {};
    for (int logical = 0; logical < 128; ++logical) {
        const int physical = w4s_physical_k(logical);
        if (physical < 0 || physical >= 128 || seen[physical]) return false;
        seen[physical] = true;
    }
    for (int c = 0; c < 16; ++c)
        for (int j = 0; j < 4; ++j) {
            const int logical = w4s_logical_pair(c / 4, c % 4, j);
            if (w4s_physical_k(logical) != 8 * c + j || w4s_physical_k(logical + 1) != 8 * c + j + 4) return false;
        }
    return true;
}
static_assert(w4s_order_is_consistent(), "the X gather must store X in the weights' permuted K order");

/* Four consumer warpgroups: a pair per 64-row half of a unit, each taking
 * one of a stage's two steps; the second hands its sums to the first at the
 * unit's end. (Two, each taking both steps of its half, measured 1-5 us
 * slower at all six M = 16 benchmark shapes on the H100: fewer independent
 * warps per SM.) */
struct W4sShape {
    static constexpr int consumers = 4;
    static constexpr int threads = 128 * (1 + consumers); /* the producer warpgroup + consumers */
    static constexpr int XR = 16;                          /* rows of X, zero past M */
    static constexpr int x_step_bytes = XR * kBlock * 2;   /* X's rows over one 128-K step */
    static constexpr int sums = XR / 2;                    /* a consumer thread's sums per unit */
    static constexpr int slot_bytes = 128 * sums * 4;      /* one CTA's sums of one half */
    /* steps: the most 128-K steps a CTA takes (its resident slice of X); a
     * leader receives a slot per half from each of the cluster's CTAs, its
     * own included (none without a cluster); the pairs' hand-off takes two
     * more */
    static int64_t shared_bytes(int64_t steps, int parts) {
        return steps * x_step_bytes + 2 * kW4sRingBytes + 2 * exchange_slots(parts) * slot_bytes +
               2 * slot_bytes + 1024; /* + alignment */
    }
    __host__ __device__ static constexpr int exchange_slots(int parts) { return parts > 1 ? parts : 0; }
};
/* No setmaxnreg: with 640 threads in one block per SM, ptxas holds every
 * thread of the kernel to 96 registers, so a warpgroup given more at run
 * time could not use them. */

#ifdef R1LAB_SM90A
/* The A fragments of one 128-K step in the permuted order: the 16-byte
 * chunk at `lo` (row gq) and `hi` (row gq + 8) hold this thread's 32 columns
 * of each row; word w, nibbles (i, i + 4) are slice 2 w + i / 2, half i % 2. */
__device__ __forceinline__ void permuted_step_fragments(uint32_t lo, uint32_t hi, uint32_t magic, uint32_t sub_lo,
                                                        uint32_t sub_hi, uint32_t (&a)[8][4]) {
    const uint4 lo_words = shared_load_v4(lo), hi_words = shared_load_v4(hi);
    const uint32_t lw[4] = {lo_words.x, lo_words.y, lo_words.z, lo_words.w};
    const uint32_t hw[4] = {hi_words.x, hi_words.y, hi_words.z, hi_words.w};
#pragma unroll
    for (int w = 0; w < 4; ++w)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            a[2 * w + i / 2][2 * (i % 2)] = nibble_pair(lw[w], 4 * i, magic, sub_lo);
            a[2 * w + i / 2][2 * (i % 2) + 1] = nibble_pair(hw[w], 4 * i, magic, sub_hi);
        }
}
#endif

/* Quad q of a consumer thread's 8 sums (sums 4 q .. 4 q + 3): set to v for
 * the cluster's first part, else v added to it. The parts are added in rank
 * order wherever a unit is finished, so the result does not depend on who
 * finishes it. */
__device__ __forceinline__ void add_part_quad(float (&sum)[W4sShape::sums], int q, float4 v, bool first) {
    if (first) {
        sum[4 * q] = v.x, sum[4 * q + 1] = v.y, sum[4 * q + 2] = v.z, sum[4 * q + 3] = v.w;
    } else {
        sum[4 * q] = __fadd_rn(sum[4 * q], v.x);
        sum[4 * q + 1] = __fadd_rn(sum[4 * q + 1], v.y);
        sum[4 * q + 2] = __fadd_rn(sum[4 * q + 2], v.z);
        sum[4 * q + 3] = __fadd_rn(sum[4 * q + 3], v.w);
    }
}

/* X's slice (steps g_begin .. g_end - 1), brought in once by the producer
 * warpgroup's three idle warps while its lanes 0 and 1 feed the weight rings.
 * The copy engine loads each step's 16 rows x 128 columns as they are
 * (row n at n x 256 bytes; rows past M are zero) into the step's place in
 * x_resident; the three warps then rewrite it in place in the permuted K
 * order: the 16-byte chunk c of a row's step (physical columns
 * 8 c .. 8 c + 7, c = 4 tig + w) gives the pairs (8 c + j, 8 c + j + 4),
 * j < 4, which are logical columns w4s_logical_pair(tig, w, j) and + 1,
 * stored as the copy engine would have stored the logical tile: boxes of
 * 64 columns, rows of 128 bytes, 16-byte chunk q of row n at q ^ (n mod 8).
 * Every thread reads its chunks of the step before any thread writes, and
 * arrives on x_ready[step] after its writes. */
__device__ __forceinline__ void w4s_gather_x(const CUtensorMap *x_map, int g_begin, int g_end, uint8_t *x_resident,
                                             unsigned long long *x_loaded, unsigned long long *x_ready,
                                             int gatherer) {
#ifdef R1LAB_SM90A
    constexpr int XR = W4sShape::XR, kStepChunks = XR * 16, kStride = kW4sGatherThreads;
    constexpr int kPerThread = (kStepChunks + kStride - 1) / kStride;
    const int steps = g_end - g_begin;
    if (gatherer == 0)
        for (int step = 0; step < steps; ++step) {
            barrier_arrive_expect_bytes(&x_loaded[step], W4sShape::x_step_bytes);
            tma_load_2d(x_resident + step * W4sShape::x_step_bytes, x_map, (g_begin + step) * kBlock, 0,
                        &x_loaded[step]);
        }
    for (int step = 0; step < steps; ++step) {
        const uint32_t x_step = shared_address(x_resident) + step * W4sShape::x_step_bytes;
        barrier_wait(&x_loaded[step], 0);
        uint4 v[kPerThread];
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int c = gatherer + i * kStride; /* row c / 16, chunk c % 16: at 16 c as loaded */
            if (c < kStepChunks) v[i] = shared_load_v4(x_step + 16 * c);
        }
        named_barrier(7, kW4sGatherThreads);
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int c = gatherer + i * kStride, n = c / 16, chunk = c % 16, tig = chunk / 4, w = chunk % 4;
            if (c >= kStepChunks) break;
            const uint32_t pairs[4] = {__byte_perm(v[i].x, v[i].z, 0x5410), __byte_perm(v[i].x, v[i].z, 0x7632),
                                       __byte_perm(v[i].y, v[i].w, 0x5410), __byte_perm(v[i].y, v[i].w, 0x7632)};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int logical = w4s_logical_pair(tig, w, j);
                shared_store_u32(x_step + (logical / 64) * XR * 128 + n * 128 +
                                     ((((logical % 64) / 8) ^ (n % 8)) * 16) + (logical % 8) * 2,
                                 pairs[j]);
            }
        }
        fence_async_shared(); /* the wgmmas read X through the async proxy */
        barrier_arrive(&x_ready[step]);
    }
#endif
}

template <bool kAsym>
__global__ void __launch_bounds__(W4sShape::threads, 1)
    gemm_w4a16_wgmma_small(const __grid_constant__ CUtensorMap w_map, const __grid_constant__ CUtensorMap x_map,
                           int64_t M,
                           int64_t N, int64_t K, int parts, const float *__restrict__ w_scale,
                           const uint8_t *__restrict__ w_zero, const float *__restrict__ bias, void *y,
                           int out_bf16) {
#ifdef R1LAB_SM90A
    using Shape = W4sShape;
    constexpr int XR = Shape::XR, kQuads = Shape::sums / 4; /* float4s of a thread's sums */
    constexpr int kConsumers = Shape::consumers;
    extern __shared__ uint8_t shared_raw[];
    __shared__ unsigned long long full[2][kW4sStages], empty[2][kW4sStages]; /* a ring per half */
    __shared__ unsigned long long ready[2], freed[2][8]; /* per half; freed: per leader */
    __shared__ unsigned long long handed[2], taken[2];   /* per half: the pair's hand-off */
    __shared__ unsigned long long x_loaded[kW4sMaxSteps]; /* per step of X's slice: copied in */
    __shared__ unsigned long long x_ready[kW4sMaxSteps];  /* and rewritten in the permuted order */
    const int warpgroup = threadIdx.x / 128, t = threadIdx.x % 128;
    const int G = (int)(K / kBlock);
    const unsigned rank = parts > 1 ? cluster_rank() : 0;
    const int g_begin = (int)(rank * G / parts), g_end = (int)((rank + 1) * G / parts);
    const int max_steps = (G + parts - 1) / parts;
    uint8_t *x_resident = (uint8_t *)(((uintptr_t)shared_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *stages = x_resident + max_steps * Shape::x_step_bytes;
    /* [half][sender rank][quad][thread]: the sums of a unit this CTA leads */
    float4 *exchange = (float4 *)(stages + 2 * kW4sRingBytes);
    /* [half][quad][thread]: the second consumer of a pair hands its sums to the first */
    float4 *pair_sums = exchange + 2 * Shape::exchange_slots(parts) * kQuads * 128;
    const int64_t units = (N + kW4sUnitRows - 1) / kW4sUnitRows;
    const int64_t first_unit = blockIdx.x / parts, unit_stride = gridDim.x / parts;
    if (threadIdx.x == 0) {
        tma_prefetch_map(&w_map);
        tma_prefetch_map(&x_map);
        for (int s = 0; s < kW4sStages; ++s) {
            for (int h = 0; h < 2; ++h) {
                barrier_init(&full[h][s], 1);
                barrier_init(&empty[h][s], 4 * kConsumers / 2); /* lane 0 of each consumer warp of the half */
            }
        }
        for (int h = 0; h < 2; ++h) {
            barrier_init(&ready[h], 1); /* the leader's arming, then the pushed bytes */
            for (int r = 0; r < 8; ++r) barrier_init(&freed[h][r], 1);
            barrier_init(&handed[h], 128); /* every thread of the second consumer */
            barrier_init(&taken[h], 128);  /* every thread of the first */
        }
        for (int step = 0; step < max_steps; ++step) {
            barrier_init(&x_loaded[step], 1);
            barrier_init(&x_ready[step], kW4sGatherThreads);
        }
        barrier_init_fence();
    }
    __syncthreads();
    /* every CTA of the cluster has its barriers before anyone pushes or arrives there */
    if (parts > 1) {
        cluster_arrive_relaxed();
        cluster_wait();
    }

    if (warpgroup == 0) {
        if (t < 2) {
            /* lane 0 of warp 0 feeds half 0's ring, lane 1 half 1's */
            const int h = t;
            uint8_t *ring = stages + h * kW4sRingBytes;
            uint32_t stage = 0;
            for (int64_t unit = first_unit; unit < units; unit += unit_stride) {
                const int w_row = (int)(unit * kW4sUnitRows) + h * kW4gRows;
                for (int g = g_begin; g < g_end; g += 2, ++stage) {
                    const uint32_t s = stage % kW4sStages, pass = stage / kW4sStages;
                    barrier_wait(&empty[h][s], (pass & 1) ^ 1);
                    barrier_arrive_expect_bytes(&full[h][s], kW4sStageBytes);
                    tma_load_2d(ring + s * kW4sStageBytes, &w_map, g * kW4gRowBytes, w_row, &full[h][s]);
                }
            }
        } else if (t >= 32) {
            const int f = t - 32;
            w4s_gather_x(&x_map, g_begin, g_end, x_resident, x_loaded, x_ready, f);
            /* Then the same three warps finish the units this CTA leads
             * (unit i of the cluster: CTA i mod parts), so that no consumer
             * waits for the cluster at a unit's end: every CTA's consumers
             * push their sums here (st.async, counted on `ready`); these
             * warps add them in rank order and store, then say on each
             * CTA's `freed` that the slots may take its next unit's sums. */
            if (parts > 1) {
                int unit_index = 0;
                /* (the cluster's last unit is its leader's consumers' to
                 * finish: they are idle by then, 512 threads instead of 96) */
                for (int64_t unit = first_unit; unit + unit_stride < units; unit += unit_stride, ++unit_index) {
                    if (unit_index % parts != (int)rank) continue;
                    const int turn = unit_index / parts; /* the units this CTA led before */
                    const bool leads_again = unit + (int64_t)parts * unit_stride < units;
                    for (int h = 0; h < 2; ++h) {
                        const float4 *slots = exchange + h * parts * kQuads * 128;
                        if (f == 0) barrier_arrive_expect_bytes(&ready[h], parts * Shape::slot_bytes);
                        barrier_wait(&ready[h], turn & 1);
                        for (int c = f; c < 128; c += kW4sGatherThreads) {
                            /* consumer thread c's sums: weight rows n and n + 8
                             * of the half (c = 32 warp + 4 gq + tig), X rows
                             * 2 tig, + 1, + 8 and + 9 (store_transposed) */
                            float sum[XR / 2];
                            for (int r = 0; r < parts; ++r)
#pragma unroll
                                for (int q = 0; q < kQuads; ++q)
                                    add_part_quad(sum, q, slots[(r * kQuads + q) * 128 + c], r == 0);
                            const int64_t n = unit * kW4sUnitRows + h * kW4gRows + 16 * (c / 32) + (c % 32) / 4;
                            store_transposed(sum, 2 * (c % 4), n, n + 8, M, N, bias, y, out_bf16);
                        }
                        /* the pushers may write again once every finisher has
                         * read: only if this CTA leads another unit of the
                         * cluster (else a pusher may have ended) */
                        if (leads_again) {
                            named_barrier(5 + h, kW4sGatherThreads);
                            if (f == (int)rank) barrier_arrive(&freed[h][rank]); /* releasing: local pushes follow */
                            else if (f < parts) barrier_arrive_relaxed_in_block(&freed[h][rank], (unsigned)f);
                        }
                    }
                }
            }
        }
        return;
    }

    const int consumer = __shfl_sync(0xffffffffu, warpgroup - 1, 0);
    /* half: which 64 rows of the unit; own: which of a stage's two steps */
    const int half = consumer % 2, own = consumer / 2;
    const int warp = t / 32, lane = t % 32, gq = lane / 4, tig = lane % 4;
    constexpr uint32_t magic = kAsym ? 0x43004300u : 0x43084308u;
    /* this thread's rows gq and gq + 8 of the half in a stage; the 128-byte
     * swizzle puts 16-byte chunk c of row r at c ^ (r mod 8), r mod 8 = gq */
    const uint32_t w_rows = shared_address(stages) + half * kW4sRingBytes + (16 * warp + gq) * 2 * kW4gRowBytes;
    const uint64_t x_descriptor = swizzled_tile_descriptor(x_resident);
    /* Where the scales (and zero points) of this thread's rows n and n + 8 of
     * a unit are. A row past N reads row N - 1's: its sums are never stored. */
    struct RowScales {
        const float *lo, *hi;
        const uint8_t *zero_lo, *zero_hi;
    };
    auto row_scales = [&](int64_t unit) {
        const int64_t n_lo = unit * kW4sUnitRows + half * kW4gRows + 16 * warp + gq;
        const int64_t lo = n_lo < N ? n_lo : N - 1, hi = n_lo + 8 < N ? n_lo + 8 : N - 1;
        return RowScales{w_scale + lo * G, w_scale + hi * G, kAsym ? w_zero + lo * G : nullptr,
                         kAsym ? w_zero + hi * G : nullptr};
    };
    /* The group scale (and zero point) of this consumer's step of the stage
     * at g (past g_end, on a CTA's odd last stage: step g_end - 1's): loaded
     * one stage ahead, so that their L2 round trip overlaps a stage's work. */
    struct StageScales {
        float lo, hi;
        uint32_t sub_lo, sub_hi;
    };
    auto load_scales = [&](const RowScales &rows, int g) {
        StageScales r;
        const int step = g + own < g_end ? g + own : g_end - 1;
        r.lo = rows.lo[step];
        r.hi = rows.hi[step];
        r.sub_lo = r.sub_hi = 0x43084308u;
        if constexpr (kAsym) {
            r.sub_lo = (0x4300u | rows.zero_lo[step]) * 0x00010001u;
            r.sub_hi = (0x4300u | rows.zero_hi[step]) * 0x00010001u;
        }
        return r;
    };
    /* Step g's 8 wgmmas into fresh partial sums, committed as one group. */
    auto multiply = [&](int g, const uint32_t(&a)[8][4], float(&partial)[XR / 2]) {
        const uint32_t x_offset = (uint32_t)((g - g_begin) * Shape::x_step_bytes);
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < 8; ++j)
            wgmma_m64n16k16_bf16_a_registers(partial, a[j],
                               descriptor_advance(x_descriptor, x_offset + (j / 4) * XR * 128 + 32 * (j % 4)), j > 0);
        wgmma_commit();
    };
    uint32_t stage = 0;
    int unit_index = 0; /* units of this cluster so far */
    RowScales rows_now = row_scales(first_unit);
    StageScales scales = load_scales(rows_now, g_begin);
    for (int64_t unit = first_unit; unit < units; unit += unit_stride, ++unit_index) {
        const int64_t n_lo = unit * kW4sUnitRows + half * kW4gRows + 16 * warp + gq, n_hi = n_lo + 8;
        const RowScales rows_next = row_scales(unit + unit_stride < units ? unit + unit_stride : unit);
        float acc[XR / 2];
#pragma unroll
        for (int i = 0; i < XR / 2; ++i) acc[i] = 0.0f;
        /* A stage holds steps g and g + 1; on a CTA's odd last stage the
         * second is past g_end (its consumers only wait and arrive). */
        for (int g = g_begin; g < g_end; g += 2, ++stage) {
            const StageScales next = g + 2 < g_end ? load_scales(rows_now, g + 2) : load_scales(rows_next, g_begin);
            const uint32_t s = stage % kW4sStages;
            /* every consumer waits, even one with no step here: its arrival
             * on empty must not count towards the stage's previous pass */
            barrier_wait(&full[half][s], (stage / kW4sStages) & 1);
            if (g + own < g_end) {
                /* the first unit meets X's steps as the gather stores them */
                if (unit_index == 0) barrier_wait(&x_ready[g + own - g_begin], 0);
                const uint32_t chunk = (uint32_t)((4 * own + tig) ^ gq) * 16;
                const uint32_t lo = w_rows + s * kW4sStageBytes + chunk, hi = lo + 8 * 2 * kW4gRowBytes;
                uint32_t a[8][4];
                float partial[XR / 2];
                permuted_step_fragments(lo, hi, magic, scales.sub_lo, scales.sub_hi, a);
                multiply(g + own, a, partial);
                /* the stage's words are in registers once the wgmmas that
                 * read their dequantized form are issued */
                if (lane == 0) barrier_arrive(&empty[half][s]);
                wgmma_wait<0>();
                keep_registers(partial);
#pragma unroll
                for (int j = 0; j < 8; ++j) keep_registers(a[j]);
#pragma unroll
                for (int i = 0; i < XR / 2; ++i) acc[i] = fmaf(partial[i], (i & 2) ? scales.hi : scales.lo, acc[i]);
            } else if (lane == 0) {
                barrier_arrive(&empty[half][s]);
            }
            scales = next;
        }
        rows_now = rows_next;
        {
            /* the pair's sums: the second consumer (odd steps) hands its sums
             * to the first, which adds them to its own (even steps first).
             * Unit i of the CTA is phase i of `handed` (written) and of
             * `taken` (read: the slot may take the next unit's); every
             * thread arrives, so each one's accesses are ordered. */
            float4 *handoff = pair_sums + half * kQuads * 128;
            if (own == 1) {
                if (unit_index > 0) barrier_wait(&taken[half], (unit_index - 1) & 1);
#pragma unroll
                for (int q = 0; q < kQuads; ++q)
                    handoff[q * 128 + t] = make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
                barrier_arrive(&handed[half]);
                continue;
            }
            barrier_wait(&handed[half], unit_index & 1);
#pragma unroll
            for (int q = 0; q < kQuads; ++q) {
                const float4 v = handoff[q * 128 + t];
                acc[4 * q] = __fadd_rn(acc[4 * q], v.x);
                acc[4 * q + 1] = __fadd_rn(acc[4 * q + 1], v.y);
                acc[4 * q + 2] = __fadd_rn(acc[4 * q + 2], v.z);
                acc[4 * q + 3] = __fadd_rn(acc[4 * q + 3], v.w);
            }
            barrier_arrive(&taken[half]);
        }
        if (parts > 1) {
            /* to the unit's leader, this CTA included: its finisher warps add
             * and store; the cluster's last unit its consumers finish */
            const unsigned leader = (unsigned)(unit_index % parts);
            const int turn = unit_index / parts; /* the leader's units before this one */
            float4 *slots = exchange + half * parts * kQuads * 128;
            /* the leader has read what this CTA pushed it last time (for the
             * leader's own consumers: its finishers are done with `ready`'s
             * last phase, so the arming below starts the next one) */
            if (turn > 0) barrier_wait(&freed[half][leader], (turn - 1) & 1);
            if (rank != leader || unit + unit_stride < units) {
#pragma unroll
                for (int q = 0; q < kQuads; ++q)
                    push_16_to_block(slots + ((int)rank * kQuads + q) * 128 + t, __float_as_uint(acc[4 * q]),
                                     __float_as_uint(acc[4 * q + 1]), __float_as_uint(acc[4 * q + 2]),
                                     __float_as_uint(acc[4 * q + 3]), &ready[half], leader);
                continue;
            }
            if (t == 0) barrier_arrive_expect_bytes(&ready[half], (parts - 1) * Shape::slot_bytes);
            barrier_wait(&ready[half], turn & 1);
            float sum[XR / 2];
            for (int r = 0; r < parts; ++r) {
#pragma unroll
                for (int q = 0; q < kQuads; ++q)
                    add_part_quad(sum, q,
                                  r == (int)rank
                                      ? make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3])
                                      : slots[(r * kQuads + q) * 128 + t],
                                  r == 0);
            }
#pragma unroll
            for (int i = 0; i < XR / 2; ++i) acc[i] = sum[i];
        }
        store_transposed(acc, 2 * tig, n_lo, n_hi, M, N, bias, y, out_bf16);
    }
#endif
}

/* ---- host side -------------------------------------------------------------------------------- */

constexpr int kDecodeTN = 2;

/* The decode path applies: few rows of X, whole 128-steps of K, 16-byte
 * aligned operands (every row then starts 16-byte aligned). */
bool decode_applies(bool w4, int64_t M, int64_t K, const void *x, const void *w) {
    return M <= (w4 ? 16 : 32) && K % kBlock == 0 &&
           (((uintptr_t)x | (uintptr_t)w) & 15u) == 0;
}

template <Mode kMode, bool kW4, int MT>
r1_status launch_decode_tiles(int64_t M, int64_t N, int64_t K, const void *x, const void *w,
                              const uint8_t *w_zero, const Epilogue &epilogue,
                              cudaStream_t stream) {
    static int per_sm = 0; /* resident blocks per SM of this instantiation */
    if (per_sm == 0) {
        CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, gemm_decode<kMode, kW4, kDecodeTN, MT>, kDecodeWarps * 32, 0));
        if (per_sm < 1) per_sm = 1;
    }
    /* One wave: as many K slices per block (more warps streaming, each a
     * shorter K range) as keep the grid within the resident slots; a grid
     * larger than those would leave a tail wave streaming at a fraction of
     * the bandwidth. */
    const int64_t sms = multiprocessor_count(), slots = sms * per_sm;
    int ksplit = 1;
    auto blocks = [&](int ks) {
        const int64_t rows = (kDecodeWarps / ks) * kDecodeTN * 8;
        return (N + rows - 1) / rows;
    };
    while (ksplit < kDecodeWarps && blocks(2 * ksplit) <= slots) ksplit *= 2;
    const dim3 grid((unsigned)blocks(ksplit));
    gemm_decode<kMode, kW4, kDecodeTN, MT><<<grid, kDecodeWarps * 32, 0, stream>>>(
        M, N, K, ksplit, (const uint8_t *)x, (const uint8_t *)w, w_zero, epilogue);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

template <Mode kMode, bool kW4>
r1_status launch_decode(int64_t M, int64_t N, int64_t K, const void *x, const void *w,
                        const uint8_t *w_zero, const Epilogue &epilogue, cudaStream_t stream) {
    if constexpr (kW4) {
        return launch_decode_tiles<kMode, kW4, 1>(M, N, K, x, w, w_zero, epilogue, stream);
    } else {
        if (M <= 16)
            return launch_decode_tiles<kMode, kW4, 1>(M, N, K, x, w, w_zero, epilogue, stream);
        return launch_decode_tiles<kMode, kW4, 2>(M, N, K, x, w, w_zero, epilogue, stream);
    }
}

/* The W4A16 stream's grid: one block per SM (fewer when N has fewer 16-row
 * tiles; more when a block would need over 15 consumer warps), the K slices
 * per tile that fill a block to at most 15 consumers, and the chunks of X in
 * shared memory (all of them when they fit). */
struct StreamPlan {
    int blocks, consumers, slices, slots;
};

constexpr int kStreamMaxConsumers = kStreamMaxWarps - 1;

template <int NT>
StreamPlan plan_w4a16_stream(int64_t N, int64_t K) {
    const int64_t tiles = (N + 15) / 16, sms = multiprocessor_count();
    int64_t blocks = tiles < sms ? tiles : sms;
    if ((tiles + blocks - 1) / blocks > kStreamMaxConsumers)
        blocks = (tiles + kStreamMaxConsumers - 1) / kStreamMaxConsumers;
    const int per_block = (int)((tiles + blocks - 1) / blocks);
    int slices = 1;
    while (slices < 4 && per_block * slices * 2 <= kStreamMaxConsumers) slices *= 2;
    const int64_t chunks = (K / kBlock + stream_chunk<NT>() - 1) / stream_chunk<NT>();
    int64_t fit = (shared_memory_per_block_optin() - kStreamBarrierBytes) / stream_chunk_bytes<NT>();
    if (fit > kStreamMaxSlots) fit = kStreamMaxSlots;
    const int64_t slots = chunks < fit ? chunks : fit;
    return {(int)blocks, per_block * slices, slices, (int)slots};
}

template <int NT>
int stream_shared_bytes(const StreamPlan &plan) {
    const int ring = plan.slots * stream_chunk_bytes<NT>();
    const int reduce = kStreamMaxWarps * NT * 4 * 32 * (int)sizeof(float);
    return kStreamBarrierBytes + (ring > reduce ? ring : reduce);
}

template <int NT, int KS, int kDeep, bool kAsym>
r1_status launch_w4a16_stream_ks(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, void *y,
                                 int out_bf16, const StreamPlan &plan, cudaStream_t stream) {
    const int bytes = stream_shared_bytes<NT>(plan);
    constexpr auto kernel = gemm_w4a16_stream<NT, KS, kDeep, kAsym>;
    CUDA_TRY(allow_dynamic_shared_memory<kernel>((size_t)bytes));
    kernel<<<plan.blocks, (plan.consumers + 1) * 32, bytes, stream>>>(
        M, N, K, plan.slots, (const uint16_t *)ops->x, (const uint8_t *)ops->w, ops->w_scale,
        kAsym ? ops->w_zero : nullptr, ops->bias, y, out_bf16);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

template <int NT, bool kAsym>
r1_status launch_w4a16_stream_nt(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, void *y,
                                 int out_bf16, cudaStream_t stream) {
    const StreamPlan plan = plan_w4a16_stream<NT>(N, K);
    if (plan.slots < 1)
        return r1_fail(R1_EUNSUPPORTED, "the W4A16 stream kernel needs %d bytes of shared memory per block",
                       kStreamBarrierBytes + stream_chunk_bytes<NT>());
    const bool deep = plan.consumers + 1 <= kStreamDeepWarps;
    switch (plan.slices * 2 + deep) {
    case 2: return launch_w4a16_stream_ks<NT, 1, 0, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    case 3: return launch_w4a16_stream_ks<NT, 1, 1, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    case 4: return launch_w4a16_stream_ks<NT, 2, 0, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    case 5: return launch_w4a16_stream_ks<NT, 2, 1, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    case 8: return launch_w4a16_stream_ks<NT, 4, 0, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    default: return launch_w4a16_stream_ks<NT, 4, 1, kAsym>(M, N, K, ops, y, out_bf16, plan, stream);
    }
}

/* One n8 tile of X for M <= 8, two above; symmetric and asymmetric weights are
 * separate kernels (no zero-point loads or selects in the symmetric one). */
r1_status launch_w4a16_stream(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops,
                              int asymmetric, void *y, int out_bf16, cudaStream_t stream) {
    if (M <= 8)
        return asymmetric ? launch_w4a16_stream_nt<1, true>(M, N, K, ops, y, out_bf16, stream)
                          : launch_w4a16_stream_nt<1, false>(M, N, K, ops, y, out_bf16, stream);
    return asymmetric ? launch_w4a16_stream_nt<2, true>(M, N, K, ops, y, out_bf16, stream)
                      : launch_w4a16_stream_nt<2, false>(M, N, K, ops, y, out_bf16, stream);
}

/* The copy engine's description of a row-major (rows, K) byte matrix, read in
 * boxes of box_rows x 128 bytes with the 128-byte swizzle (zeros past the
 * edges). */
bool encode_tile_map(CUtensorMap *map, const void *base, int64_t rows, int64_t K, int box_rows) {
    return encode_swizzled_map(map, base, 1, rows, K, K, box_rows);
}

/* Whether the environment variable `name` is set to `value` (the switches
 * that turn a path off for comparisons; each is read once, where used). */
bool environment_says(const char *name, const char *value) {
    const char *text = getenv(name);
    return text && strcmp(text, value) == 0;
}

/* ---- W4A16 on wgmma: host side ---- */

/* Whether the wgmma kernel takes a W4A16 product: sm_90 (built for sm_90a),
 * more rows of X than the weight stream takes, whole 128-steps of K, operands
 * the copy engine can read (16-byte aligned; rows then are too), and indices
 * in 32 bits. R1LAB_QGEMM_W4_WGMMA=0 sends these to the v1 kernel (for
 * comparisons; read once). */
bool w4a16_wgmma_applies(int64_t M, int64_t N, int64_t K, const void *x, const void *w) {
    static const bool enabled = !environment_says("R1LAB_QGEMM_W4_WGMMA", "0");
    return enabled && device_capability() == 90 && M > 16 && K % kBlock == 0 && M < (1ll << 31) &&
           N < (1ll << 31) && K < (1ll << 31) && (((uintptr_t)x | (uintptr_t)w) & 15u) == 0;
}

template <int BM, bool kSplitK, bool kAsym>
r1_status launch_w4a16_wgmma_shape(int64_t M, int64_t N, int64_t K, const CUtensorMap &x_map,
                                   const CUtensorMap &w_map, const r1_qgemm_operands *ops, void *y, int out_bf16,
                                   cudaStream_t stream) {
    using Shape = W4gShape<BM, kSplitK>;
    constexpr auto kernel = gemm_w4a16_wgmma<BM, kSplitK, kAsym>;
    CUDA_TRY(allow_dynamic_shared_memory<kernel>((size_t)Shape::shared_bytes));
    const int64_t units = (N + Shape::unit_rows - 1) / Shape::unit_rows * ((M + BM - 1) / BM);
    const int64_t sms = multiprocessor_count();
    const unsigned grid = (unsigned)(units < sms ? units : sms);
    kernel<<<grid, kWgThreads, Shape::shared_bytes, stream>>>(x_map, w_map, M, N, K, ops->w_scale,
                                                              kAsym ? ops->w_zero : nullptr, ops->bias, y, out_bf16);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

/* 128-row units, or, for one tile row of X, 64-row units with K split
 * between the consumers where that takes fewer rounds of units over the SMs
 * (counted in 64-row-unit lengths: a 128-row unit is two). With several tile
 * rows the split doubles the copies of X per weight row and measured slower
 * at every benchmark shape (H100: 2,280 against 1,827 us at M = 4096, N =
 * 7168, K = 16384; 552 against 535 at M = 1024), so it is not taken there.
 * R1LAB_QGEMM_W4_SPLITK=0 or 1 forces the choice (for comparisons and tests;
 * read at each call). */
bool w4a16_wgmma_split(int64_t M, int64_t N, int BM) {
    const char *forced = getenv("R1LAB_QGEMM_W4_SPLITK");
    if (forced && (strcmp(forced, "0") == 0 || strcmp(forced, "1") == 0)) return forced[0] == '1';
    if (M > BM) return false;
    const int64_t sms = multiprocessor_count();
    const int64_t units_128 = (N + 127) / 128, units_64 = (N + 63) / 64;
    return (units_64 + sms - 1) / sms < 2 * ((units_128 + sms - 1) / sms);
}

template <int BM, bool kAsym>
r1_status launch_w4a16_wgmma_bm(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, void *y,
                                int out_bf16, cudaStream_t stream, bool *launched) {
    CUtensorMap x_map, w_map;
    if (!encode_swizzled_map(&x_map, ops->x, 2, M, K, K * 2, BM) ||
        !encode_map_2d(&w_map, ops->w, 1, N, K / 2, K / 2, kW4gRowBytes, kW4gRows, CU_TENSOR_MAP_SWIZZLE_64B,
                       CU_TENSOR_MAP_L2_PROMOTION_L2_128B))
        return R1_OK; /* *launched stays false: the caller takes another kernel */
    *launched = true;
    if (w4a16_wgmma_split(M, N, BM))
        return launch_w4a16_wgmma_shape<BM, true, kAsym>(M, N, K, x_map, w_map, ops, y, out_bf16, stream);
    return launch_w4a16_wgmma_shape<BM, false, kAsym>(M, N, K, x_map, w_map, ops, y, out_bf16, stream);
}

/* BM = 64 rows of X per unit for M <= 64, 128 above. */
r1_status launch_w4a16_wgmma(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, int asymmetric,
                             void *y, int out_bf16, cudaStream_t stream, bool *launched) {
    *launched = false;
    if (M <= 64)
        return asymmetric ? launch_w4a16_wgmma_bm<64, true>(M, N, K, ops, y, out_bf16, stream, launched)
                          : launch_w4a16_wgmma_bm<64, false>(M, N, K, ops, y, out_bf16, stream, launched);
    return asymmetric ? launch_w4a16_wgmma_bm<128, true>(M, N, K, ops, y, out_bf16, stream, launched)
                      : launch_w4a16_wgmma_bm<128, false>(M, N, K, ops, y, out_bf16, stream, launched);
}

/* ---- W4A16 on wgmma for M <= 16: host side ---- */

/* Whether gemm_w4a16_wgmma_small takes a W4A16 product: sm_90 (built for
 * sm_90a), 8 < M <= 16, whole 128-steps of K, 16-byte aligned operands,
 * indices in 32 bits, and a plan that fits in shared memory
 * (plan_w4a16_small). That is where it measured faster than the weight
 * stream: all six M = 16 benchmark shapes (H100, one call, graph us:
 * (7168, 16384) 34.6 against 55.5, (18432, 7168) 39.3 against 48.6,
 * (28672, 8192) 61.0 against 64.8, (8192, 8192) 18.7 against 31.2, (4096,
 * 7168) 17.1 against 24.3, (24576, 1536) 13.5 against 15.2). At M <= 8 the
 * stream, which then costs what it costs at M = 1, is faster (a probe call,
 * M = 1: 33.2 against 27.4 at (7168, 16384), 40.6 against 30.9 at (18432,
 * 7168)).
 * R1LAB_QGEMM_W4_SMALL=1 takes it for every M <= 16 and =0 never (for
 * comparisons and tests; read at each call). */
bool w4a16_small_applies(int64_t M, int64_t N, int64_t K, const void *x, const void *w) {
    const char *text = getenv("R1LAB_QGEMM_W4_SMALL");
    const bool forced_on = text && strcmp(text, "1") == 0, forced_off = text && strcmp(text, "0") == 0;
    return !forced_off && (forced_on || M > 8) && device_capability() == 90 && M <= 16 && K % kBlock == 0 &&
           N < (1ll << 31) && K < (1ll << 31) && (((uintptr_t)x | (uintptr_t)w) & 15u) == 0;
}

/* The dynamic shared memory a plan may take: the block's opt-in limit less
 * room for the kernel's static shared memory (1,024 bytes: its barriers). */
int w4a16_small_shared_limit() { return shared_memory_per_block_optin() - 2048; }

/* Clusters of `parts` CTAs of the kernel resident at once (one CTA per SM,
 * which its registers force), found once per cluster size. */
template <bool kAsym>
cudaError_t w4a16_small_resident_clusters(int parts, int *resident) {
    static int known[9] = {0};
    if (parts == 1) {
        *resident = multiprocessor_count();
        return cudaSuccess;
    }
    if (known[parts] == 0) {
        constexpr auto kernel = gemm_w4a16_wgmma_small<kAsym>;
        const int bytes = w4a16_small_shared_limit();
        cudaError_t status = allow_dynamic_shared_memory<kernel>((size_t)bytes);
        if (status != cudaSuccess) return status;
        cudaLaunchAttribute attribute = cluster_size_attribute((unsigned)parts);
        cudaLaunchConfig_t config = {};
        config.gridDim = dim3((unsigned)(multiprocessor_count() / parts * parts));
        config.blockDim = dim3(W4sShape::threads);
        config.dynamicSmemBytes = (size_t)bytes;
        config.attrs = &attribute;
        config.numAttrs = 1;
        int count = 0;
        status = cudaOccupancyMaxActiveClusters(&count, kernel, &config);
        if (status != cudaSuccess) return status;
        known[parts] = count < 1 ? 1 : count;
    }
    *resident = known[parts];
    return cudaSuccess;
}

struct W4sPlan {
    int parts;        /* CTAs per cluster, splitting K    */
    unsigned grid;    /* CTAs                              */
    int shared_bytes; /* dynamic shared memory per CTA     */
};

/* The time model that picks the cluster size: a cluster's CTAs each take a
 * unit's 128-K steps in [rank G / parts, (rank + 1) G / parts), and the
 * clusters resident at once take the units in rounds. A round in which
 * `active` clusters work lasts
 *   steps x max(t_step, active x parts x step_bytes / bandwidth) + exchange
 * (one CTA's pace, or the memory's when all the active CTAs together ask
 * for more than it gives; exchange: pushing and adding the parts' sums,
 * none for one part), and a CTA first gathers its slice of X, gather x
 * steps. Fitted (least squares, rms 1.0 us over 38 points) on the H100 to a
 * sweep of v27 at M = 16 over the six benchmark shapes and every cluster
 * size from 1 to 8 that fits (graph us; docs/qgemm.md, "W4A16 at M <= 16,
 * v28"). */
struct W4sTimeModel {
    static constexpr double step_us = 0.345;            /* t_step: one CTA's 128-K step of a unit */
    static constexpr double bytes_per_us = 3.0e6;       /* bandwidth: 3.0 TB/s                    */
    static constexpr double exchange_us = 0.54;         /* per round, parts > 1                   */
    static constexpr double gather_us_per_step = 0.038; /* X's slice, per step                    */

    /* microseconds, up to a constant, for `units` units of `steps` steps a CTA
     * on clusters of `parts` CTAs, `clusters` of them resident */
    static double time_us(int64_t units, int64_t clusters, int parts, int64_t steps, bool asymmetric) {
        const double step_bytes = (double)kW4sUnitRows * (kW4gRowBytes + sizeof(float) + (asymmetric ? 1 : 0));
        auto round_us = [&](int64_t active) {
            const double memory_us = (double)active * parts * step_bytes / bytes_per_us;
            return (double)steps * (memory_us > step_us ? memory_us : step_us) + (parts > 1 ? exchange_us : 0.0);
        };
        const int64_t full_rounds = units / clusters, rest = units % clusters;
        return (double)full_rounds * round_us(clusters) + (rest > 0 ? round_us(rest) : 0.0) +
               gather_us_per_step * (double)steps;
    }
};

/* The cluster size, from 1 to 8 CTAs (no more than the 128-K steps), whose
 * resident slice of X fits in shared memory and which W4sTimeModel gives the
 * least time; ties go to fewer parts. The sweep it was fitted to (graph us
 * at M = 16, its choice first): (18432, 7168) 4 parts 32.1 (3: 35.3, 8:
 * 36.9); (28672, 8192) 4 52.6 (2: 54.4, 8: 52.2); (7168, 16384) 8 29.5 (7:
 * 33.7); (8192, 8192) 2 16.3 (5: 18.9); (4096, 7168) 3 11.5 (2: 14.6, 6:
 * 11.6); (24576, 1536) 2 11.6 (1: 12.3). Sizes that are not powers of two
 * leave more SMs idle (the H100 holds 39 clusters of 3, 22 of 5, 17 of 6
 * and 15 of 7, against 30 of 4) but split K and the units more finely.
 * R1LAB_QGEMM_W4_PARTS=n takes the largest fitting size not above n (else
 * the smallest fitting one), for comparisons and tests (read at each call).
 * False when no size fits. */
template <bool kAsym>
bool plan_w4a16_small(int64_t N, int64_t K, W4sPlan *plan, cudaError_t *error) {
    const int64_t G = K / kBlock, units = (N + kW4sUnitRows - 1) / kW4sUnitRows;
    const char *text = getenv("R1LAB_QGEMM_W4_PARTS");
    const long forced = text && *text ? strtol(text, nullptr, 10) : 0;
    bool found = false;
    double best_us = 0.0;
    *error = cudaSuccess;
    for (int parts = 1; parts <= 8 && parts <= G; ++parts) {
        const int64_t steps = (G + parts - 1) / parts;
        const int64_t bytes = W4sShape::shared_bytes(steps, parts); /* 64-bit: K may be huge */
        if (bytes > w4a16_small_shared_limit() || steps > kW4sMaxSteps) continue;
        if (found && forced > 0 && parts > forced) break;
        int resident = 0;
        *error = w4a16_small_resident_clusters<kAsym>(parts, &resident);
        if (*error != cudaSuccess) return false;
        const int64_t clusters = units < resident ? units : resident;
        const double us = W4sTimeModel::time_us(units, clusters, parts, steps, kAsym);
        if (found && forced == 0 && us >= best_us) continue;
        *plan = {parts, (unsigned)(clusters * parts), (int)bytes};
        best_us = us;
        found = true;
    }
    return found;
}

template <bool kAsym>
r1_status launch_w4a16_small_asym(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, void *y,
                                  int out_bf16, cudaStream_t stream, bool *launched) {
    W4sPlan plan;
    cudaError_t error;
    if (!plan_w4a16_small<kAsym>(N, K, &plan, &error)) {
        CUDA_TRY(error);
        return R1_OK; /* *launched stays false: the caller takes the weight stream */
    }
    CUtensorMap w_map, x_map;
    if (!encode_swizzled_map(&w_map, ops->w, 1, N, K / 2, K / 2, kW4gRows) ||
        !encode_map_2d(&x_map, ops->x, 2, M, K, K * 2, kBlock, W4sShape::XR, CU_TENSOR_MAP_SWIZZLE_NONE,
                       CU_TENSOR_MAP_L2_PROMOTION_L2_256B))
        return R1_OK;
    constexpr auto kernel = gemm_w4a16_wgmma_small<kAsym>;
    CUDA_TRY(allow_dynamic_shared_memory<kernel>((size_t)w4a16_small_shared_limit()));
    cudaLaunchAttribute attribute = cluster_size_attribute((unsigned)plan.parts);
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(plan.grid);
    config.blockDim = dim3(W4sShape::threads);
    config.dynamicSmemBytes = (size_t)plan.shared_bytes;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = plan.parts > 1 ? 1 : 0;
    CUDA_TRY(cudaLaunchKernelEx(&config, kernel, w_map, x_map, M, N, K, plan.parts, ops->w_scale,
                                kAsym ? (const uint8_t *)ops->w_zero : nullptr, ops->bias, y, out_bf16));
    *launched = true;
    return R1_OK;
}

r1_status launch_w4a16_small(int64_t M, int64_t N, int64_t K, const r1_qgemm_operands *ops, int asymmetric,
                             void *y, int out_bf16, cudaStream_t stream, bool *launched) {
    *launched = false;
    return asymmetric ? launch_w4a16_small_asym<true>(M, N, K, ops, y, out_bf16, stream, launched)
                      : launch_w4a16_small_asym<false>(M, N, K, ops, y, out_bf16, stream, launched);
}

/* R1LAB_QGEMM_DECODE=0 sends W8A8 and FP8 with M <= 32 to the wgmma kernel
 * instead of the decode path (for comparisons). */
bool decode_8bit_enabled() {
    static const bool enabled = !environment_says("R1LAB_QGEMM_DECODE", "0");
    return enabled;
}

/* R1LAB_QGEMM_TMA_STORE=0: gemm_8bit_wgmma's consumers store their outputs
 * themselves instead of through the copy engine (for comparisons). */
bool copy_engine_stores_enabled() {
    static const bool enabled = !environment_says("R1LAB_QGEMM_TMA_STORE", "0");
    return enabled;
}

/* The wgmma kernel runs on sm_90 for M above the decode path's range, with
 * K a multiple of 16 (the copy engine's row pitch) and 16-byte aligned
 * operands. R1LAB_QGEMM_WGMMA=0 turns it off (for comparisons). */
bool wgmma_applies(int64_t M, int64_t N, int64_t K, const void *x, const void *w) {
    static const bool enabled = !environment_says("R1LAB_QGEMM_WGMMA", "0");
    return enabled && device_capability() == 90 && (M > 32 || !decode_8bit_enabled()) && K % 16 == 0 &&
           M < (1ll << 31) &&
           N < (1ll << 31) && K < (1ll << 31) && (((uintptr_t)x | (uintptr_t)w) & 15u) == 0;
}

/* A launch of `grid` CTAs of gemm_8bit_wgmma (kWgThreads threads, its
 * dynamic shared memory) with `attribute` (the cluster size). */
template <bool kSplit>
cudaLaunchConfig_t wgmma_launch_config(unsigned grid, cudaLaunchAttribute *attribute, cudaStream_t stream,
                                       unsigned attributes = 1) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(grid);
    config.blockDim = dim3(kWgThreads);
    config.dynamicSmemBytes = (size_t)wgmma_shared_bytes<kSplit>();
    config.stream = stream;
    config.attrs = attribute;
    config.numAttrs = attributes;
    return config;
}

/* Clusters of `cluster` CTAs of gemm_8bit_wgmma<kMode, kPair, kSplit> that
 * fit on the GPU at once (found once per cluster size; the shared-memory
 * limit is raised on first use). */
template <Mode kMode, int kPair, bool kSplit>
cudaError_t wgmma_resident_clusters(int cluster, int *resident) {
    static int known[9] = {0};
    if (cluster < 1 || cluster > 8) return cudaErrorInvalidValue;
    if (known[cluster] == 0) {
        auto kernel = gemm_8bit_wgmma<kMode, kPair, kSplit>;
        cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  wgmma_shared_bytes<kSplit>());
        if (status != cudaSuccess) return status;
        cudaLaunchAttribute attribute = cluster_size_attribute((unsigned)cluster);
        const cudaLaunchConfig_t config = wgmma_launch_config<kSplit>(
            (unsigned)(multiprocessor_count() / cluster * cluster), &attribute, nullptr);
        int count = 0;
        status = cudaOccupancyMaxActiveClusters(&count, kernel, &config);
        if (status != cudaSuccess) return status;
        known[cluster] = count < 1 ? 1 : count;
    }
    *resident = known[cluster];
    return cudaSuccess;
}

/* Clusters of kPair CTAs (kSplit: of `parts` CTAs splitting K), as many as
 * fit on the GPU at once and no more than there are units of work. */
template <Mode kMode, int kPair, bool kSplit>
r1_status launch_8bit_wgmma_cluster(int64_t M, int64_t N, int64_t K, int parts, const void *x,
                                    const void *w, const Epilogue &epilogue, cudaStream_t stream,
                                    bool *launched, bool overlap_previous = false) {
    *launched = false;
    CUtensorMap x_map, w_map, y_map;
    if (!encode_tile_map(&x_map, x, M, K, kWgTile) || !encode_tile_map(&w_map, w, N, K, kWgTile / kPair))
        return R1_OK;
    /* The copy engine writes the outputs where Y's rows are 16-byte aligned
     * (else the consumers store them themselves). */
    Epilogue with_map = epilogue;
    const int y_bytes = y_element_bytes(epilogue);
    memset(&y_map, 0, sizeof y_map);
    with_map.y_by_copy_engine = !kSplit && kMode != Mode::Accumulators && copy_engine_stores_enabled() &&
                                ((uintptr_t)epilogue.y & 15u) == 0 && (epilogue.y_stride * y_bytes) % 16 == 0 &&
                                encode_swizzled_map(&y_map, epilogue.y, y_bytes, M, N, epilogue.y_stride * y_bytes, 64);
    auto kernel = gemm_8bit_wgmma<kMode, kPair, kSplit>;
    const int cluster = kSplit ? parts : kPair;
    int resident = 0;
    CUDA_TRY((wgmma_resident_clusters<kMode, kPair, kSplit>(cluster, &resident)));
    const int64_t tiles_m = (M + kWgTile - 1) / kWgTile, tiles_n = (N + kWgTile - 1) / kWgTile;
    const int64_t units = ((tiles_m + kPair - 1) / kPair) * tiles_n;
    cudaLaunchAttribute attributes[2] = {cluster_size_attribute((unsigned)cluster), early_launch_attribute()};
    const cudaLaunchConfig_t config = wgmma_launch_config<kSplit>(
        (unsigned)(cluster * (units < resident ? units : resident)), attributes, stream,
        overlap_previous && early_launch_supported() ? 2 : 1);
    CUDA_TRY(cudaLaunchKernelEx(&config, kernel, x_map, w_map, y_map, M, N, K, parts, with_map));
    *launched = true;
    return R1_OK;
}

/* How many CTAs split K for one tile row (M <= 128): the most of 2, 4, 8
 * that keeps every tile's clusters in one wave (tiles x parts CTAs resident
 * at once) with at least 4 K blocks per CTA, else 1. Each unit a cluster
 * takes costs it a few microseconds (a scale load at its start, the
 * exchange of partial sums), so a split that needs more than one round of
 * tiles measured slower than none (H100, FP8, M = 64 and 128: N = 18432,
 * K = 7168 with 1 / 2 / 4 / 8 parts 75 / 80 / 79 / 89 us; N = 24576, K =
 * 1536 26 / 36 / 54 / 75 us), while N = 7168, K = 16384 (56 tiles) took
 * 69 us with 1 part and 56 us with 2. R1LAB_QGEMM_SPLIT=n forces the
 * largest power of two not above n (for comparisons). */
template <Mode kMode>
int wgmma_split_parts(int64_t M, int64_t N, int64_t K) {
    const int64_t tiles_n = (N + kWgTile - 1) / kWgTile, blocks = (K + kWgTile - 1) / kWgTile;
    const char *text = getenv("R1LAB_QGEMM_SPLIT");
    if (text && *text) {
        const long forced = strtol(text, nullptr, 10);
        int parts = 1;
        while (parts * 2 <= forced && parts * 2 <= 8 && parts * 2 <= blocks) parts *= 2;
        return parts;
    }
    if (M > kWgTile) return 1;
    int best = 1;
    for (int parts = 2; parts <= 8 && 4 * parts <= blocks; parts *= 2) {
        int resident = 0;
        if (wgmma_resident_clusters<kMode, 1, true>(parts, &resident) != cudaSuccess) break;
        if (tiles_n <= resident) best = parts;
    }
    return best;
}

/* Where the tiles' last round would leave most SMs idle, the last tile
 * columns go in a second launch with K split over clusters (a tail):
 * FP8 M = 64, N = 18432 is 144 tiles on 132 SMs, the last 12 a second
 * round as long as the first; M = 1024, N = 7168, K = 16384 is 224 units
 * of two tiles on 66 pairs, a fourth round with 26 of them busy. The head
 * takes tile columns [0, head) in whole rounds, the tail the rest, its
 * tiles (every tile row of those columns) split `parts` ways: the most of
 * 8, 4, 2 whose clusters all fit at once, with at least 4 K blocks per CTA
 * and at least 8 K blocks of a tile's loop saved per CTA (the split's
 * exchange of partial sums costs a few microseconds, about 8 K blocks at
 * the long-K rate: FP8 M = 64, N = 24576, K = 1536, 12 K blocks, leaves 60
 * tiles that split only 2 ways and saves 6, so it keeps its second round).
 * 0 (and no tail) when the tiles fit in one round or leave no part of one,
 * when the tail would not fit at once, or with R1LAB_QGEMM_TAIL=0.
 * R1LAB_QGEMM_TAIL_COLUMNS=c puts the last c tile columns in a tail
 * whatever the rounds (for tests: it reaches this path at small sizes). */
template <Mode kMode>
int wgmma_tail_parts(int64_t M, int64_t N, int64_t K, int64_t *head) {
    static const bool off = environment_says("R1LAB_QGEMM_TAIL", "0");
    if (off) return 0;
    const int pair = M > kWgTile ? 2 : 1;
    const int64_t tiles_m = (M + kWgTile - 1) / kWgTile, tiles_n = (N + kWgTile - 1) / kWgTile;
    const int64_t units_m = (tiles_m + pair - 1) / pair, units = units_m * tiles_n;
    const int64_t blocks = (K + kWgTile - 1) / kWgTile;
    int resident = 0; /* clusters of the head launch at once */
    if ((pair == 2 ? wgmma_resident_clusters<kMode, 2, false>(2, &resident)
                   : wgmma_resident_clusters<kMode, 1, false>(1, &resident)) != cudaSuccess)
        return 0;
    int64_t head_columns = 0;
    const char *forced_columns = getenv("R1LAB_QGEMM_TAIL_COLUMNS");
    const bool forced = forced_columns && *forced_columns;
    if (forced) {
        head_columns = tiles_n - strtol(forced_columns, nullptr, 10);
    } else {
        const int64_t rounds = units / resident, left = units % resident;
        if (rounds == 0 || left == 0) return 0;
        head_columns = rounds * resident / units_m;
    }
    if (head_columns < 1 || head_columns >= tiles_n) return 0;
    const int64_t tail_tiles = tiles_m * (tiles_n - head_columns);
    for (int parts = 8; parts >= 2; parts /= 2) {
        int clusters = 0;
        if (wgmma_resident_clusters<kMode, 1, true>(parts, &clusters) != cudaSuccess) return 0;
        const bool saves_enough = forced || blocks - blocks / parts >= 8;
        if (tail_tiles <= clusters && blocks >= 4 * parts && saves_enough) {
            *head = head_columns;
            return parts;
        }
    }
    return 0;
}

/* Paired CTAs where there are two tile rows or more; one tile row: K split
 * over a cluster where that spreads the weights over more SMs. Either way
 * the tile columns past whole rounds may go in a tail launch with K split
 * (wgmma_tail_parts). */
template <Mode kMode>
r1_status launch_8bit_wgmma(int64_t M, int64_t N, int64_t K, const void *x, const void *w,
                            const Epilogue &epilogue, cudaStream_t stream, bool *launched) {
    Epilogue e = epilogue;
    e.y_stride = N;
    if (M <= kWgTile) {
        const int parts = wgmma_split_parts<kMode>(M, N, K);
        if (parts > 1) return launch_8bit_wgmma_cluster<kMode, 1, true>(M, N, K, parts, x, w, e, stream, launched);
    }
    auto launch_head = [&](int64_t columns) {
        return M > kWgTile ? launch_8bit_wgmma_cluster<kMode, 2, false>(M, columns, K, 1, x, w, e, stream, launched)
                           : launch_8bit_wgmma_cluster<kMode, 1, false>(M, columns, K, 1, x, w, e, stream, launched);
    };
    int64_t head = 0;
    const int tail_parts = wgmma_tail_parts<kMode>(M, N, K, &head);
    if (tail_parts == 0) return launch_head(N);
    /* columns [0, n1) in one launch, [n1, N) in the other: W, its scales,
     * the bias and Y start n1 rows / columns further on, Y's rows stay N apart */
    const int64_t n1 = head * kWgTile, G = K / kBlock;
    r1_status status = launch_head(n1);
    if (status != R1_OK || !*launched) return status;
    Epilogue tail = e;
    if (kMode == Mode::FP8) tail.w_scale += head * G; /* one row of block scales per 128 rows of W */
    if (kMode == Mode::W8A8) tail.w_scale += n1;
    if (tail.bias) tail.bias += n1;
    tail.y = (char *)e.y + n1 * y_element_bytes(e);
    return launch_8bit_wgmma_cluster<kMode, 1, true>(M, N - n1, K, tail_parts, x, (const uint8_t *)w + n1 * K, tail,
                                                      stream, launched, true);
}

template <Mode kMode>
r1_status launch_8bit(int64_t M, int64_t N, int64_t K, const void *x, const void *w,
                      const Epilogue &epilogue, cudaStream_t stream) {
    if (decode_8bit_enabled() && decode_applies(false, M, K, x, w))
        return launch_decode<kMode, false>(M, N, K, x, w, nullptr, epilogue, stream);
    if (wgmma_applies(M, N, K, x, w)) {
        bool launched = false;
        const r1_status status = launch_8bit_wgmma<kMode>(M, N, K, x, w, epilogue, stream, &launched);
        if (status != R1_OK || launched) return status;
    }
    dim3 grid((unsigned)((N + kTileN - 1) / kTileN), (unsigned)((M + kTileM - 1) / kTileM));
    if (grid.y > 65535u)
        return r1_fail(R1_EUNSUPPORTED, "M = %lld: the cuda kernel handles M <= %d",
                       (long long)M, 65535 * kTileM);
    if (K % 16 == 0)
        gemm_8bit<kMode, true><<<grid, kGemmThreads, 0, stream>>>(
            M, N, K, (const uint8_t *)x, (const uint8_t *)w, epilogue);
    else
        gemm_8bit<kMode, false><<<grid, kGemmThreads, 0, stream>>>(
            M, N, K, (const uint8_t *)x, (const uint8_t *)w, epilogue);
    CUDA_TRY(cudaGetLastError());
    return R1_OK;
}

}  // namespace

extern "C" r1_status qgemm_quantize_cuda(const r1_qgemm_quant_desc *desc, const float *x, void *q,
                                         float *scale, uint8_t *zero, void *stream_pointer) {
    cudaStream_t stream = (cudaStream_t)stream_pointer;
    int tile_rows = 1, tile_cols = kBlock;
    if (desc->scheme == R1_QGEMM_W8A8) tile_cols = (int)desc->cols;
    if (desc->scheme == R1_QGEMM_FP8 && desc->role == R1_QGEMM_WEIGHTS) tile_rows = kBlock;
    const int64_t row_tiles = (desc->rows + tile_rows - 1) / tile_rows;
    dim3 grid((unsigned)(desc->cols / tile_cols), (unsigned)(row_tiles < 65535 ? row_tiles : 65535));
    unsigned long long *bad = nullptr, none = ~0ull, found = ~0ull;
    CUDA_TRY(cudaMallocAsync((void **)&bad, sizeof *bad, stream));
    CUDA_TRY(cudaMemcpyAsync(bad, &none, sizeof none, cudaMemcpyHostToDevice, stream));
    quantize_kernel<<<grid, kQuantThreads, 0, stream>>>(
        (int)desc->scheme, desc->asymmetric, desc->pow2_scales, desc->rows, desc->cols, tile_rows,
        tile_cols, x, q, scale, zero, bad);
    cudaError_t launch = cudaGetLastError();
    CUDA_TRY(cudaMemcpyAsync(&found, bad, sizeof found, cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaFreeAsync(bad, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    CUDA_TRY(launch);
    if (found != ~0ull) {
        const long long i = (long long)found, cols = (long long)desc->cols;
        return r1_fail(R1_ENUMERIC,
                       "x[%lld] (row %lld, column %lld) is NaN or Inf: quantizer inputs must be "
                       "finite",
                       i, i / cols, i % cols);
    }
    return R1_OK;
}

extern "C" r1_status qgemm_gemm_cuda(const r1_qgemm_desc *desc, const r1_qgemm_operands *ops,
                                     void *y, void *stream_pointer) {
    cudaStream_t stream = (cudaStream_t)stream_pointer;
    const int out_bf16 = desc->out_dtype == R1_BF16;
    switch (desc->scheme) {
    case R1_QGEMM_W8A8: {
        Epilogue e = {ops->x_scale, ops->w_scale, ops->bias, y, out_bf16};
        return launch_8bit<Mode::W8A8>(desc->M, desc->N, desc->K, ops->x, ops->w, e, stream);
    }
    case R1_QGEMM_FP8: {
        if (device_capability() < 89)
            return r1_fail(R1_EUNSUPPORTED,
                           "FP8 E4M3 tensor cores need sm_89 or newer; this GPU is sm_%d",
                           device_capability());
        Epilogue e = {ops->x_scale, ops->w_scale, ops->bias, y, out_bf16};
        return launch_8bit<Mode::FP8>(desc->M, desc->N, desc->K, ops->x, ops->w, e, stream);
    }
    case R1_QGEMM_W4A16: {
        if (decode_applies(true, desc->M, desc->K, ops->x, ops->w)) {
            /* R1LAB_QGEMM_W4_OLD=1: v2's gemm_decode instead (for comparisons; read once) */
            static const bool old_path = environment_says("R1LAB_QGEMM_W4_OLD", "1");
            if (device_capability() >= 90 && !old_path && w4a16_small_applies(desc->M, desc->N, desc->K, ops->x, ops->w)) {
                bool launched = false;
                const r1_status status = launch_w4a16_small(desc->M, desc->N, desc->K, ops, desc->asymmetric, y,
                                                            out_bf16, stream, &launched);
                if (launched || status != R1_OK) return status;
            }
            if (device_capability() >= 90 && !old_path)
                return launch_w4a16_stream(desc->M, desc->N, desc->K, ops, desc->asymmetric, y,
                                           out_bf16, stream);
            Epilogue e = {nullptr, ops->w_scale, ops->bias, y, out_bf16};
            return launch_decode<Mode::FP8, true>(desc->M, desc->N, desc->K, ops->x, ops->w,
                                                  desc->asymmetric ? ops->w_zero : nullptr, e,
                                                  stream);
        }
        if (w4a16_wgmma_applies(desc->M, desc->N, desc->K, ops->x, ops->w)) {
            bool launched = false;
            const r1_status status = launch_w4a16_wgmma(desc->M, desc->N, desc->K, ops, desc->asymmetric, y,
                                                        out_bf16, stream, &launched);
            if (launched || status != R1_OK) return status;
        }
        dim3 grid((unsigned)((desc->N + kW4Columns - 1) / kW4Columns),
                  (unsigned)((desc->M + kW4Rows - 1) / kW4Rows));
        if (grid.y > 65535u)
            return r1_fail(R1_EUNSUPPORTED, "M = %lld: the cuda W4A16 kernel handles M <= %d",
                           (long long)desc->M, 65535 * kW4Rows);
        gemm_w4a16<<<grid, kW4Warps * 32, 0, stream>>>(
            desc->M, desc->N, desc->K, (const uint16_t *)ops->x, (const uint8_t *)ops->w,
            ops->w_scale, desc->asymmetric ? ops->w_zero : nullptr, ops->bias, y, out_bf16);
        CUDA_TRY(cudaGetLastError());
        return R1_OK;
    }
    }
    return r1_fail(R1_EINTERNAL, "qgemm_gemm_cuda: unknown scheme %d", (int)desc->scheme);
}

extern "C" r1_status qgemm_w8a8_accumulators_cuda(int64_t M, int64_t N, int64_t K, const int8_t *x,
                                                  const int8_t *w, int32_t *acc,
                                                  void *stream_pointer) {
    Epilogue e = {nullptr, nullptr, nullptr, acc, 0};
    return launch_8bit<Mode::Accumulators>(M, N, K, x, w, e, (cudaStream_t)stream_pointer);
}
