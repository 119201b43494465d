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

/* Pointer to the same shared variable in block `rank` of this cluster. */
template <typename T> __device__ __forceinline__ T *in_block(T *pointer, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return cooperative_groups::this_cluster().map_shared_rank(pointer, rank);
#else
    return pointer;
#endif
}

}  // namespace

#endif
