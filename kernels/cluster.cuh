/*
 * kernels/cluster.cuh — thread-block-cluster helpers shared by the CUDA
 * files that keep a row spread over a cluster's shared memory (sampling, kd).
 * On GPUs without clusters (below sm_90) a cluster is one block: the rank is
 * 0, the barrier is __syncthreads() and a remote pointer is the local one.
 */
#ifndef R1LAB_KERNELS_CLUSTER_CUH
#define R1LAB_KERNELS_CLUSTER_CUH

#include <cooperative_groups.h>

namespace {

/* This block's rank in its cluster. */
__device__ __forceinline__ unsigned cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return cooperative_groups::this_cluster().block_rank();
#else
    return 0;
#endif
}

/* Barrier over every thread of every block of the cluster. */
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cooperative_groups::this_cluster().sync();
#else
    __syncthreads();
#endif
}

/* Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads of the
 * block (a multiple of 32), ordering their shared-memory accesses. */
__device__ __forceinline__ void named_barrier(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/* Pointer to the same shared variable in block `rank` of this cluster. */
template <typename T> __device__ __forceinline__ T *in_block(T *pointer, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return cooperative_groups::this_cluster().map_shared_rank(pointer, rank);
#else
    return pointer;
#endif
}

/* Lets the cluster barrier below count this thread, without ordering its
 * memory operations (pair with cluster_wait before touching another block's
 * shared memory: every block of the cluster has then started). */
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#else
    __syncthreads();
#endif
}

/* ---- one-way exchanges: remote stores counted by a transaction barrier ----
 * cluster_sync() orders every earlier memory operation of the thread, global
 * stores included (on sm_90 it compiles to MEMBAR.ALL.GPU before the
 * barrier), and waits for the slowest block. For "every block sends a few
 * values to some blocks" there is a cheaper pattern:
 *   - the receiving block arms a barrier in its shared memory for the bytes
 *     it expects (arrival_init + arrival_expect, once, before the cluster
 *     barrier that tells senders it has started);
 *   - each sender writes its values straight into the receiver's shared
 *     memory with push_to_block (st.async): the store itself counts its bytes
 *     down on the receiver's barrier;
 *   - the receiver's threads arrival_wait: they return once every byte has
 *     landed, with the values visible. Nobody else waits.
 * Each barrier here is used once (phase 0). Below sm_90 a cluster is one
 * block: the push is a local store and the wait a __syncthreads(). */
__device__ __forceinline__ unsigned shared_address(const void *pointer) {
    return (unsigned)__cvta_generic_to_shared(pointer);
}

/* ---- mbarriers (sm_90): a phase completes after `count` arrivals plus the
 * bytes announced with arrive_expect_bytes; waits name the phase's parity.
 * Used directly by TMA pipelines (kernels/hopper.cuh) and through the
 * one-phase arrival_* helpers below. ---- */

/* One thread: a barrier whose phase completes after `count` arrivals (and
 * the bytes announced by arrive_expect_bytes, if any). */
__device__ __forceinline__ void barrier_init(unsigned long long *bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(count) : "memory");
#endif
}

/* After the inits, before the __syncthreads() that publishes them: makes
 * them visible to the copy engine too. */
__device__ __forceinline__ void barrier_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

/* Waits until the phase with this parity has completed. */
__device__ __forceinline__ void barrier_wait(unsigned long long *bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "BARRIER_WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra BARRIER_WAIT_%=;\n"
        "}\n" ::"r"(shared_address(bar)),
        "r"(parity)
        : "memory");
#endif
}

__device__ __forceinline__ void barrier_arrive(unsigned long long *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
#endif
}

/* Arrives and announces `bytes` more that copies will count down. */
__device__ __forceinline__ void barrier_arrive_expect_bytes(unsigned long long *bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)),
                 "r"(bytes)
                 : "memory");
#endif
}

/* Thread 0 only; then arrival_expect, then the cluster arrive. */
__device__ __forceinline__ void arrival_init(unsigned long long *bar) {
    barrier_init(bar, 1);
    barrier_init_fence();
}

__device__ __forceinline__ void arrival_expect(unsigned long long *bar, unsigned bytes) {
    barrier_arrive_expect_bytes(bar, bytes);
}

__device__ __forceinline__ void arrival_wait(unsigned long long *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    barrier_wait(bar, 0);
#else
    __syncthreads();
#endif
}

/* Writes (a, b) into `slot` (16 bytes) of block `rank`, counted on that
 * block's `bar` (both given as this block's addresses of the same variables). */
__device__ __forceinline__ void push_to_block(double *slot, double a, double b,
                                              unsigned long long *bar, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned remote_slot, remote_bar;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote_slot) : "r"(shared_address(slot)), "r"(rank));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote_bar) : "r"(shared_address(bar)), "r"(rank));
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f64 [%0], {%1, %2}, [%3];\n" ::"r"(remote_slot),
                 "d"(a), "d"(b), "r"(remote_bar)
                 : "memory");
#else
    (void)bar;
    (void)rank;
    slot[0] = a;
    slot[1] = b;
#endif
}

}  // namespace

#endif
