r1_test(test_kd LABELS cpu)
r1_test(test_kd_cuda LABELS cuda)
