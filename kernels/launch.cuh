/*
 * kernels/launch.cuh — programmatic dependent launch (sm_90), shared by the
 * CUDA files whose calls are chains of short kernels (sampling, moe), and
 * the device queries the kernels choose by (compute capability, SM count),
 * read once per process, and the dynamic shared-memory opt-in.
 *
 * A kernel launched with cudaLaunchAttributeProgrammaticStreamSerialization
 * may start while the kernel before it in the stream is still running; it
 * does its independent work, then calls wait_for_previous_kernel() before it
 * reads anything that kernel writes. The kernel before it calls
 * let_next_kernel_launch() to let that launch begin once all of its blocks
 * have started (otherwise only when they have all exited). Below sm_90 both
 * are no-ops and the launch attribute is not set (early_launch_attribute).
 */
#ifndef R1LAB_KERNELS_LAUNCH_CUH
#define R1LAB_KERNELS_LAUNCH_CUH

#include <cuda_runtime.h>

namespace {

/* Waits until every write of the previous kernel in the stream is visible. */
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Lets the next kernel's launch begin once every block of this one has
 * called this (or exited): its blocks take the SM slots that this kernel's
 * last blocks free and wait there (wait_for_previous_kernel), so the launch
 * latency is hidden. */
__device__ __forceinline__ void let_next_kernel_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* The compute capability of the device current at the first successful
 * call, as 10 * major + minor (0 when it cannot be read), read once per
 * process. */
inline int device_capability() {
    static int cached = -1;
    if (cached < 0) {
        int device = 0, major = 0, minor = 0;
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        cached = major * 10 + minor;
    }
    return cached;
}

inline int device_compute_major() { return device_capability() / 10; }

/* `attribute` of the device current at the first successful read, kept in
 * `cached` (-1 until then); `fallback` while it cannot be read. */
inline int device_attribute_once(int &cached, cudaDeviceAttr attribute, int fallback) {
    if (cached < 0) {
        int device = 0, value = 0;
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess) {
            cudaGetLastError();
            return fallback;
        }
        cached = value;
    }
    return cached;
}

/* The number of SMs of that device (1 when it cannot be read), read once. */
inline int multiprocessor_count() {
    static int cached = -1;
    return device_attribute_once(cached, cudaDevAttrMultiProcessorCount, 1);
}

/* The most shared memory a block of that device may opt in to (0 when it
 * cannot be read), read once. */
inline int shared_memory_per_block_optin() {
    static int cached = -1;
    return device_attribute_once(cached, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0);
}

/* Lets `kKernel` launch with `bytes` of dynamic shared memory (above 48 KiB a
 * kernel must opt in). The runtime is asked only when `bytes` is more than
 * this kernel was allowed before, so a launch path pays for it once per
 * process (one device per process, as for the queries above). */
template <auto kKernel>
inline cudaError_t allow_dynamic_shared_memory(size_t bytes) {
    static size_t allowed = 0;
    if (bytes <= allowed) return cudaSuccess;
    const cudaError_t error =
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (error == cudaSuccess) allowed = bytes;
    return error;
}

/* 1 when the device has programmatic dependent launch (sm_90 on). */
inline bool early_launch_supported() { return device_compute_major() >= 9; }

/* The launch attribute that makes a kernel a programmatic dependent of the
 * one before it; use with numAttrs = early_launch_supported() ? 1 : 0. */
inline cudaLaunchAttribute early_launch_attribute() {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    return attribute;
}

/* The launch attribute that groups blocks in clusters of `size` along x. */
inline cudaLaunchAttribute cluster_size_attribute(unsigned size) {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = size;
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    return attribute;
}

}  // namespace

#endif
