/*
 * tests/test_qgemm_cuda.c — qgemm on the CUDA backend against the goldens and
 * against ref: quantizers bit-exact (the device conversions are bit-identical
 * to core/dtype.c), W8A8 int32 accumulators bit-exact, outputs within the
 * bars of tests/check_qgemm.c. Exits 77 (skip) where CUDA was not built or no
 * GPU is visible; FP8 products report a skip on GPUs older than sm_89.
 * Every failure prints the case, the worst index (m, n) and the values.
 */
#include <stdio.h>
#include <string.h>

#include "check_qgemm.h"
#include "harness.h"

int main(int argc, char **argv) {
    r1t_begin(argc, argv, "qgemm_cuda");
    if (!r1_backend_available(R1_CUDA))
        r1t_skip(strcmp(r1_device_name(), "none") == 0 ? "no CUDA build or no GPU visible"
                                                       : "the cuda backend is unavailable");
    printf("device: %s\n", r1_device_name());
    if (r1t_case("qgemm_goldens(cuda)")) {
        check_summary s = {0};
        R1T_CHECK(qgemm_check_goldens(R1_CUDA, &s) == R1_OK, "golden files missing");
        R1T_CHECK(s.cases_passed == s.cases_total, "%d of %d golden cases failed (worst: %s)",
                  s.cases_total - s.cases_passed, s.cases_total, s.worst_what);
    }
    if (r1t_case("qgemm_agreement(cuda, seed=%llu)", (unsigned long long)r1t_seed())) {
        check_summary s = {0};
        qgemm_check_agreement(R1_CUDA, r1t_seed(), r1t_small(), &s);
        R1T_CHECK(s.cases_passed == s.cases_total, "%d of %d agreement cases failed (worst: %s)",
                  s.cases_total - s.cases_passed, s.cases_total, s.worst_what);
    }
    if (r1t_case("qgemm_nan_index(cuda)")) {
        /* NaN in a device quantizer input: R1_ENUMERIC naming its index. */
        float x[256];
        for (int i = 0; i < 256; ++i) x[i] = (float)i * 0.01f;
        x[133] = 0.0f / 0.0f;
        void *dx = NULL, *dq = NULL, *ds = NULL;
        r1_device_alloc(&dx, sizeof x);
        r1_device_alloc(&dq, 256);
        r1_device_alloc(&ds, 16);
        r1_device_copy(dx, x, sizeof x, R1_HOST_TO_DEVICE);
        r1_qgemm_quant_desc d = {R1_QGEMM_FP8, R1_QGEMM_ACTIVATIONS, 2, 128, 0, 0};
        r1_status st = r1_qgemm_quantize(R1_CUDA, &d, dx, dq, ds, NULL, NULL);
        R1T_CHECK(st == R1_ENUMERIC && strstr(r1_last_error(), "x[133]") != NULL,
                  "status %s, message '%s': expected R1_ENUMERIC naming x[133]",
                  r1_status_str(st), r1_last_error());
        r1_device_free(dx);
        r1_device_free(dq);
        r1_device_free(ds);
    }
    return r1t_end();
}
