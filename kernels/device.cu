/*
 * kernels/device.cu — device-memory helpers of common.h over the CUDA runtime,
 * so C callers and tests need no CUDA headers.
 */
#include <cuda_runtime.h>

#include <cstdio>

extern "C" {
#include "core/internal.h"
}

static r1_status cuda_failure(cudaError_t error, const char *what) {
    return r1_fail(R1_ECUDA, "%s failed: %s (%s)", what, cudaGetErrorString(error),
                   cudaGetErrorName(error));
}

extern "C" int r1_cuda_built(void) { return 1; }

extern "C" r1_status r1_device_alloc(void **device_pointer, size_t bytes) {
    if (device_pointer == NULL) return r1_fail(R1_EINVAL, "r1_device_alloc: pointer is NULL");
    *device_pointer = NULL;
    if (bytes == 0) return R1_OK;
    cudaError_t error = cudaMalloc(device_pointer, bytes);
    if (error == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return r1_fail(R1_ENOMEM, "cudaMalloc of %zu bytes: out of device memory", bytes);
    }
    return error == cudaSuccess ? R1_OK : cuda_failure(error, "cudaMalloc");
}

extern "C" r1_status r1_device_free(void *device_pointer) {
    if (device_pointer == NULL) return R1_OK;
    cudaError_t error = cudaFree(device_pointer);
    return error == cudaSuccess ? R1_OK : cuda_failure(error, "cudaFree");
}

extern "C" r1_status r1_device_copy(void *destination, const void *source, size_t bytes,
                                    r1_copy_direction direction) {
    if (bytes == 0) return R1_OK;
    if (destination == NULL || source == NULL)
        return r1_fail(R1_EINVAL, "r1_device_copy: destination or source is NULL");
    cudaMemcpyKind kind;
    switch (direction) {
    case R1_HOST_TO_DEVICE: kind = cudaMemcpyHostToDevice; break;
    case R1_DEVICE_TO_HOST: kind = cudaMemcpyDeviceToHost; break;
    case R1_DEVICE_TO_DEVICE: kind = cudaMemcpyDeviceToDevice; break;
    default: return r1_fail(R1_EINVAL, "r1_device_copy: direction = %d", (int)direction);
    }
    cudaError_t error = cudaMemcpy(destination, source, bytes, kind);
    return error == cudaSuccess ? R1_OK : cuda_failure(error, "cudaMemcpy");
}

extern "C" r1_status r1_device_fill(void *device_pointer, int byte_value, size_t bytes) {
    if (bytes == 0) return R1_OK;
    if (device_pointer == NULL) return r1_fail(R1_EINVAL, "r1_device_fill: pointer is NULL");
    cudaError_t error = cudaMemset(device_pointer, byte_value, bytes);
    return error == cudaSuccess ? R1_OK : cuda_failure(error, "cudaMemset");
}

extern "C" r1_status r1_device_synchronize(void) {
    cudaError_t error = cudaDeviceSynchronize();
    return error == cudaSuccess ? R1_OK : cuda_failure(error, "cudaDeviceSynchronize");
}

extern "C" const char *r1_device_name(void) {
    static char name[512];
    static int probed = 0;
    if (!probed) {
        probed = 1;
        int count = 0;
        cudaDeviceProp properties;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 ||
            cudaGetDeviceProperties(&properties, 0) != cudaSuccess) {
            cudaGetLastError();
            snprintf(name, sizeof name, "none");
        } else {
            snprintf(name, sizeof name, "%s (sm_%d%d, %d SMs)", properties.name,
                     properties.major, properties.minor, properties.multiProcessorCount);
        }
    }
    return name;
}
