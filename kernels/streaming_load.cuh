/*
 * kernels/streaming_load.cuh — the 16-byte load that streams bytes read
 * once (quantized weights): through the read-only path, without keeping
 * them in L1 (ld.global.nc.L1::no_allocate), so that the lines other data
 * reuses stay there. Shared by the W4A16 / 8-bit decode kernels
 * (kernels/qgemm.cu) and the read floor they are measured against
 * (bench/launch_floor.cu), so that the floor reads exactly as they do.
 */
#ifndef R1LAB_KERNELS_STREAMING_LOAD_CUH
#define R1LAB_KERNELS_STREAMING_LOAD_CUH

#include <cuda_runtime.h>

namespace {

__device__ __forceinline__ uint4 ldg_stream(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

}  // namespace

#endif /* R1LAB_KERNELS_STREAMING_LOAD_CUH */
