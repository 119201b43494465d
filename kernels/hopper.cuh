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

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cluster.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define R1LAB_SM90A 1
#endif

namespace {

/* ---- the copy engine ------------------------------------------------------------- */

/* Fetches the tensor map `map` (a __grid_constant__ kernel parameter) into
 * the copy engine's descriptor cache ahead of its first use, so the first
 * copy does not wait for it. */
__device__ __forceinline__ void tma_prefetch_map(const void *map) {
#ifdef R1LAB_SM90A
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#endif
}

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

/* Copies the box at `src` in shared memory (laid out as the map's box, e.g.
 * with its 128-byte swizzle) to (inner, outer) of the tensor `map`; the part
 * of the box outside the tensor is not written. The copy is asynchronous:
 * bulk_commit() closes this thread's group of such copies, and the thread
 * waits with bulk_wait_read (the shared memory may be written again) or
 * bulk_wait (the global writes are done). */
__device__ __forceinline__ void tma_store_2d(const void *map, const void *src, int inner, int outer) {
#ifdef R1LAB_SM90A
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(map),
                 "r"(shared_address(src)), "r"(inner), "r"(outer)
                 : "memory");
#endif
}
__device__ __forceinline__ void bulk_commit() {
#ifdef R1LAB_SM90A
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}
/* Waits until at most `Pending` of this thread's groups still read shared memory. */
template <int Pending> __device__ __forceinline__ void bulk_wait_read() {
#ifdef R1LAB_SM90A
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(Pending) : "memory");
#endif
}
/* Waits until at most `Pending` of this thread's groups are unfinished. */
template <int Pending> __device__ __forceinline__ void bulk_wait() {
#ifdef R1LAB_SM90A
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

#ifdef R1LAB_SM90A
/* The shared::cluster address of `pointer`'s offset in CTA `rank` of the cluster. */
__device__ __forceinline__ unsigned cluster_shared_address(const void *pointer, unsigned rank) {
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(shared_address(pointer)), "r"(rank));
    return remote;
}
#endif

/* Arrives on the barrier at `bar`'s offset in CTA `rank` of the cluster. */
__device__ __forceinline__ void barrier_arrive_in_block(unsigned long long *bar, unsigned rank) {
#ifdef R1LAB_SM90A
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(cluster_shared_address(bar, rank))
                 : "memory");
#endif
}

/* Arrives on the barrier at `bar`'s offset in CTA `rank` of the cluster
 * without ordering this thread's memory operations (no fence: use it where
 * what it announces is already done, e.g. loads whose values were used). */
__device__ __forceinline__ void barrier_arrive_relaxed_in_block(unsigned long long *bar, unsigned rank) {
#ifdef R1LAB_SM90A
    asm volatile("mbarrier.arrive.relaxed.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(
                     cluster_shared_address(bar, rank))
                 : "memory");
#endif
}

/* Writes 16 bytes at `slot`'s offset in CTA `rank` of the cluster; the store
 * counts its bytes down on the barrier at `bar`'s offset there, whose
 * waiters then see them (st.async: no fence on either side). */
__device__ __forceinline__ void push_16_to_block(void *slot, uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                                                 unsigned long long *bar, unsigned rank) {
#ifdef R1LAB_SM90A
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(
                     cluster_shared_address(slot, rank)),
                 "r"(a), "r"(b), "r"(c), "r"(d), "r"(cluster_shared_address(bar, rank))
                 : "memory");
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

/* Descriptor of an MN-major operand (B = V in O += P V: its rows are the
 * reduction index, its 128-byte rows hold 64 consecutive columns) written as
 * 128-byte swizzled boxes of 64 columns: groups of 8 rows 1024 bytes apart
 * (stride), boxes of the next 64 columns `box_bytes` apart (leading offset).
 * The wgmma that reads it is told the operand is transposed. */
__device__ __forceinline__ uint64_t swizzled_mn_descriptor(const void *start, uint32_t box_bytes) {
    const uint64_t address = shared_address(start);
    return ((address & 0x3FFFF) >> 4)               /* start address / 16              */
           | (uint64_t)((box_bytes >> 4) & 0x3FFF) << 16 /* leading: next 64 columns     */
           | (uint64_t)(1024 >> 4) << 32            /* stride: next 8 rows             */
           | (uint64_t)1 << 62;                     /* 128-byte swizzle                */
}

/* The descriptor of the operand `bytes` further on (a multiple of 16, staying
 * inside shared memory): only the start address field changes. Computing the
 * descriptors of a loop from one base this way keeps the wgmmas' issue free of
 * address arithmetic. */
__device__ __forceinline__ uint64_t descriptor_advance(uint64_t descriptor, uint32_t bytes) {
    /* a 32-bit add: the 14-bit address field never carries out (shared
     * memory ends below 256 KiB), so the upper fields are unchanged */
    const uint32_t low = (uint32_t)descriptor + (bytes >> 4);
    return (descriptor & 0xFFFFFFFF00000000ull) | low;
}

/* Orders this thread's ordinary shared-memory writes before later reads by
 * the tensor core or the copy engine (the "async proxy"). */
__device__ __forceinline__ void fence_async_shared() {
#ifdef R1LAB_SM90A
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
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
#define R1LAB_WGMMA_D32 \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define R1LAB_WGMMA_D128 \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define R1LAB_WGMMA_OPERANDS8(C, d, i)                                                     \
    C(d[i]), C(d[i + 1]), C(d[i + 2]), C(d[i + 3]), C(d[i + 4]), C(d[i + 5]), C(d[i + 6]), \
        C(d[i + 7])
#define R1LAB_WGMMA_OPERANDS64(C, d)                                                       \
    R1LAB_WGMMA_OPERANDS8(C, d, 0), R1LAB_WGMMA_OPERANDS8(C, d, 8),                        \
        R1LAB_WGMMA_OPERANDS8(C, d, 16), R1LAB_WGMMA_OPERANDS8(C, d, 24),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 32), R1LAB_WGMMA_OPERANDS8(C, d, 40),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 48), R1LAB_WGMMA_OPERANDS8(C, d, 56)
#define R1LAB_WGMMA_OPERANDS32(C, d)                                                       \
    R1LAB_WGMMA_OPERANDS8(C, d, 0), R1LAB_WGMMA_OPERANDS8(C, d, 8),                        \
        R1LAB_WGMMA_OPERANDS8(C, d, 16), R1LAB_WGMMA_OPERANDS8(C, d, 24)
#define R1LAB_WGMMA_OPERANDS128(C, d)                                                      \
    R1LAB_WGMMA_OPERANDS64(C, d), R1LAB_WGMMA_OPERANDS8(C, d, 64),                         \
        R1LAB_WGMMA_OPERANDS8(C, d, 72), R1LAB_WGMMA_OPERANDS8(C, d, 80),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 88), R1LAB_WGMMA_OPERANDS8(C, d, 96),                  \
        R1LAB_WGMMA_OPERANDS8(C, d, 104), R1LAB_WGMMA_OPERANDS8(C, d, 112),                \
        R1LAB_WGMMA_OPERANDS8(C, d, 120)
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

/* ---- bf16 wgmma (k = 16), for attention ---------------------------------------- */

/* S (64 x 64, f32) [+]= A (64 x 16 bf16, K-major in shared memory) * B^T (B:
 * 64 x 16, K-major): the scores of 64 queries against 64 keys for 16 of the
 * head dimensions. Accumulator layout as in wgmma_m64n128k32_e4m3 (j < 8). */
__device__ __forceinline__ void wgmma_m64n64k16_bf16(float (&d)[32], uint64_t a, uint64_t b,
                                                     int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " R1LAB_WGMMA_D32
        ", %32, %33, keep, 1, 1, 0, 0;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS32(R1LAB_F32_INOUT, d)
        : "l"(a), "l"(b), "r"(accumulate));
#endif
}

/* The same with A in registers: thread t holds rows g = 16 (t / 32) + (t % 32) / 4
 * and g + 8, columns c = 2 (t % 4): a[0] = (g, c..c+1), a[1] = (g + 8, c..),
 * a[2] = (g, c + 8..), a[3] = (g + 8, c + 8..), two bf16 per register (the low
 * half is the lower column). */
__device__ __forceinline__ void wgmma_m64n64k16_bf16_a_registers(float (&d)[32],
                                                                 const uint32_t (&a)[4],
                                                                 uint64_t b, int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " R1LAB_WGMMA_D32
        ", {%32, %33, %34, %35}, %36, keep, 1, 1, 0;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS32(R1LAB_F32_INOUT, d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
#endif
}

/* D (64 x 16, f32) [+]= A (64 x 16 bf16 in registers, layout as in
 * wgmma_m64n64k16_bf16_a_registers) * B^T (B: 16 x 16, K-major in shared
 * memory). Thread t holds rows g, g + 8 and columns 8 j + 2 (t % 4) (+ 1) in
 * d[4 j .. 4 j + 3]. */
__device__ __forceinline__ void wgmma_m64n16k16_bf16_a_registers(float (&d)[8], const uint32_t (&a)[4],
                                                                 uint64_t b, int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %13, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}"
        ", {%8, %9, %10, %11}, %12, keep, 1, 1, 0;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS8(R1LAB_F32_INOUT, d, 0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
#endif
}

/* D (64 x 128, f32) [+]= A (64 x 16 bf16 in registers, layout as in
 * wgmma_m64n64k16_bf16_a_registers) * B^T (B: 128 x 16, K-major in shared
 * memory). Accumulator layout as in wgmma_m64n128k32_e4m3. */
__device__ __forceinline__ void wgmma_m64n128k16_bf16_a_registers(float (&d)[64], const uint32_t (&a)[4],
                                                                  uint64_t b, int accumulate) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " R1LAB_WGMMA_D64
        ", {%64, %65, %66, %67}, %68, keep, 1, 1, 0;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS64(R1LAB_F32_INOUT, d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
#endif
}

/* O (64 x 256, f32) += A (64 x 16 bf16, K-major in shared memory) * B (16 x 256,
 * MN-major: swizzled_mn_descriptor). Thread t holds row g, g + 8 and columns
 * 8 j + 2 (t % 4) (+ 1) in d[4 j .. 4 j + 3], j < 32. */
__device__ __forceinline__ void wgmma_m64n256k16_bf16_b_mn(float (&d)[128], uint64_t a, uint64_t b) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " R1LAB_WGMMA_D128
        ", %128, %129, keep, 1, 1, 0, 1;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS128(R1LAB_F32_INOUT, d)
        : "l"(a), "l"(b), "r"(1));
#endif
}

/* The same with A in registers (layout as wgmma_m64n64k16_bf16_a_registers). */
__device__ __forceinline__ void wgmma_m64n256k16_bf16_a_registers_b_mn(float (&d)[128],
                                                                       const uint32_t (&a)[4],
                                                                       uint64_t b) {
#ifdef R1LAB_SM90A
    asm volatile(
        "{\n"
        ".reg .pred keep;\n"
        "setp.ne.b32 keep, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " R1LAB_WGMMA_D128
        ", {%128, %129, %130, %131}, %132, keep, 1, 1, 1;\n"
        "}\n"
        : R1LAB_WGMMA_OPERANDS128(R1LAB_F32_INOUT, d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
#endif
}

/* ---- host: describing a tensor to the copy engine -------------------------------- */

/* Fills `map` for a row-major (rows, columns) matrix of `element_bytes`-byte
 * elements (1: bytes, 2: bf16, 4: float32) whose rows are `row_bytes` apart,
 * copied in boxes of box_rows x box_columns with the given swizzle and zeros
 * past the edges (loads; stores skip them). False when the driver has no
 * cuTensorMapEncodeTiled or refuses the description (the caller then takes
 * another path). */
inline bool encode_map_2d(CUtensorMap *map, const void *base, int element_bytes, int64_t rows,
                          int64_t columns, int64_t row_bytes, int box_columns, int box_rows,
                          CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2_promotion) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
    static bool looked = false;
    if (!looked) {
        looked = true;
        cudaDriverEntryPointQueryResult found;
        void *function = nullptr;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000,
                                             cudaEnableDefault, &found) == cudaSuccess &&
            found == cudaDriverEntryPointSuccess)
            encode = (PFN_cuTensorMapEncodeTiled_v12000)function;
        cudaGetLastError();
    }
    if (!encode || (element_bytes != 1 && element_bytes != 2 && element_bytes != 4)) return false;
    const CUtensorMapDataType type = element_bytes == 1   ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                     : element_bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                          : CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
    const cuuint64_t dims[2] = {(cuuint64_t)columns, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)row_bytes};
    const cuuint32_t box[2] = {(cuuint32_t)box_columns, (cuuint32_t)box_rows};
    const cuuint32_t element_strides[2] = {1, 1};
    return encode(map, type, 2, const_cast<void *>(base), dims, strides, box, element_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, l2_promotion,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* The usual case: boxes of box_rows x (128 bytes) with the 128-byte swizzle,
 * the layout swizzled_tile_descriptor describes. */
inline bool encode_swizzled_map(CUtensorMap *map, const void *base, int element_bytes, int64_t rows,
                                int64_t columns, int64_t row_bytes, int box_rows,
                                CUtensorMapL2promotion l2_promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B) {
    return encode_map_2d(map, base, element_bytes, rows, columns, row_bytes, 128 / element_bytes, box_rows,
                         CU_TENSOR_MAP_SWIZZLE_128B, l2_promotion);
}

}  // namespace

#endif
