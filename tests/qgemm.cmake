# qgemm: CPU backends (ref, fast on every int8 path this CPU has) and CUDA.
r1_test(test_qgemm LABELS cpu TIMEOUT 300)
r1_test(test_qgemm_cuda LABELS cuda TIMEOUT 600)
