/*
 * kernels/hopper.cuh — the sm_90 pieces of a tensor-core pipeline: the copy
 * engine (TMA) filling shared memory, mbarriers that say when a stage is
 * full or free again, and wgmma reading its operands from shared memory.
 *
 * The pattern (one producer, consumers, a ring of S stages):
 *
 *   producer, stage s = i mod S, pass p = i / S:
 *     wait until empty[s] completes its phase p - 1 (free; the first pass
 *       goes straight through: a fresh barrier's "previous phase" counts as
 *       complete), arm full[s] for the stage's bytes, start the copies;
 *       each copy counts its bytes down on full[s].
 *   consumer:
 *     wait until full[s] completes phase p (parity p & 1), multiply from
 *     the stage, wait for the tensor core, arrive on empty[s].
 *
 * wgmma operands in shared memory are named by 64-bit descriptors: the start
 * address, the byte distance between groups of 8 rows (1024 for rows of 128
 * bytes) and the swizzle. The copy engine writes a tile with the 128-byte
 * swizzle (16-byte chunk c of row r lands at chunk c XOR (r mod 8)) and the
 * descriptor tells the tensor core to read it that way; both work on the
 * absolute shared address, so each tile starts on a 1024-byte boundary and a
 * step of 32 bytes along K is a step of 32 bytes in the start address.
 *
 * The mbarrier primitives themselves are in kernels/cluster.cuh. wgmma and
 * setmaxnreg exist only in the sm_90a target (__CUDA_ARCH_FEAT_SM90_ALL);
 * elsewhere these compile to nothing and the host code must not launch
 * kernels that use them.
 */
#ifndef R1LAB_KERNELS_HOPPER_CUH
#define R1LAB_KERNELS_HOPPER_CUH

#include <cstdint>
#include <type_traits>

#include "kernels/cluster.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define R1LAB_SM90A 1
#endif

namespace {

/* ---- the copy engine ------------------------------------------------------------- */

/* Copies the box at (inner, outer) of the 2-D tensor described by `map` (a
 * __grid_constant__ kernel parameter) into shared memory at `dst`; the bytes
 * are counted on `bar`. Outside the tensor the box is filled with zeros. */
__device__ __forceinline__ void tma_load_2d(void *dst, const void *map, int inner, int outer,
                                            unsigned long long *bar) {
#ifdef R1LAB_SM90A
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(shared_address(dst)),
        "l"(map), "r"(inner), "r"(outer), "r"(shared_address(bar))
        : "memory");
#endif
}

/* The same box, written at `dst` in every CTA of the cluster named in
 * `cta_mask` (bit r = rank r) and counted on each one's barrier at `bar`'s
 * offset. */
__device__ __forceinline__ void tma_load_2d_multicast(void *dst, const void *map, int inner, int outer,
                                                      unsigned long long *bar, uint16_t cta_mask) {
#ifdef R1LAB_SM90A
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(shared_address(dst)),
        "l"(map), "r"(inner), "r"(outer), "r"(shared_address(bar)), "h"(cta_mask)
        : "memory");
#endif
}

/* Arrives on the barrier at `bar`'s offset in CTA `rank` of the cluster. */
__device__ __forceinline__ void barrier_arrive_in_block(unsigned long long *bar, unsigned rank) {
#ifdef R1LAB_SM90A
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(shared_address(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
#endif
}

/* ---- wgmma ----------------------------------------------------------------------- */

/* Descriptor of a K-major tile in shared memory written with the 128-byte
 * swizzle: rows of 128 bytes, groups of 8 rows 1024 bytes apart. */
__device__ __forceinline__ uint64_t swizzled_tile_descriptor(const void *start) {
    const uint64_t address = shared_address(start);
    return ((address & 0x3FFFF) >> 4)      /* start address / 16               */
           | (uint64_t)1 << 16             /* leading offset: unused here (16)  */
           | (uint64_t)(1024 >> 4) << 32   /* stride: 8 rows of 128 bytes       */
           | (uint64_t)1 << 62;            /* 128-byte swizzle                  */
}

/* Before a warpgroup's first wgmma that touches registers written by other
 * instructions. */
__device__ __forceinline__ void wgmma_fence() {
#ifdef R1LAB_SM90A
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef R1LAB_SM90A
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
/* Waits until at most `Pending` committed groups are still running. */
template <int Pending> __device__ __forceinline__ void wgmma_wait() {
#ifdef R1LAB_SM90A
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#endif
}

/* After wgmma_wait: the compiler does not know that a wgmma writes its
 * accumulators late, so nothing may read them before the wait. This empty
 * statement "uses and redefines" each one at this point. */
template <typename T, int N> __device__ __forceinline__ void keep_registers(T (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
        if constexpr (std::is_same<T, float>::value) asm volatile("" : "+f"(d[i])::"memory");
        else asm volatile("" : "+r"(d[i])::"memory");
    }
}

/* Register budgets per warpgroup (the kernel needs __launch_bounds__(n, 1)). */
template <int Registers> __device__ __forceinline__ void registers_shrink() {
#ifdef R1LAB_SM90A
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}
template <int Registers> __device__ __forceinline__ void registers_grow() {
#ifdef R1LAB_SM90A
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}

/* The 64 accumulator operands of an m64n128 wgmma, "%0".."%63". */
#define R1LAB_WGMMA_D64                                                                   \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "            \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "   \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "   \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define R1LAB_WGMMA_OPERANDS8(C, d, i)                                                     \
    C(d[i]), C(d[i + 1]), C(d[i + 2]), C(d[i + 3]), C(d[i + 4]), C(d[i + 5]), C(d[i + 6]), \
        C(d[i + 7])
#define R1LAB_WGMMA_OPERANDS64(C, d)                                                       \
    R1LAB_WGMMA_OPERANDS8(C, d, 0), R1LAB_WGMMA_OPERANDS8(C, d, 8),                        \
        R1LAB_WGMMA_OPERANDS8(C, d, 16), R1LAB_WGMMA_OPERANDS8(C, d, 24),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 32), R1LAB_WGMMA_OPERANDS8(C, d, 40),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 48), R1LAB_WGMMA_OPERANDS8(C, d, 56)
#define R1LAB_F32_INOUT(x) "+f"(x)
#define R1LAB_S32_INOUT(x) "+r"(x)

/* D (64 x 128, f32) = A (64 x 32 e4m3) * B^T (128 x 32 e4m3) [+ D when
 * accumulate]. Thread t of the warpgroup holds rows 16 (t / 32) + (t % 32) / 4
 * (+ 8) and columns 8 j + 2 (t % 4) (+ 1) in d[4 j .. 4 j + 3]. */
__device__ __forceinline__ void wgmma_m64n128k32_e4m3(float (&d)[64], uint64_t a, uint64_t b,
                                                      int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " R1LAB_WGMMA_D64
        ", %64, %65, keep, 1, 1;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS64(R1LAB_F32_INOUT, d)
        : "l"(a), "l"(b), "r"(accumulate));
#endif
}

/* The same with int8 operands and exact int32 accumulation. */
__device__ __forceinline__ void wgmma_m64n128k32_s8(int32_t (&d)[64], uint64_t a, uint64_t b,
                                                    int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " R1LAB_WGMMA_D64 ", %64, %65, keep;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS64(R1LAB_S32_INOUT, d)
        : "l"(a), "l"(b), "r"(accumulate));
#endif
}

}  // namespace

#endif
