r1_test(test_moe LABELS cpu)
r1_test(test_moe_cuda LABELS cuda)
