r1_test(test_mla LABELS cpu)
r1_test(test_mla_cuda LABELS cuda)
