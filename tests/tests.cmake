# One test executable per component; labels: cpu, cuda, slow.
r1_test(test_common LABELS cpu)
r1_test(test_io LABELS cpu)
r1_test(test_sampling LABELS cpu)
r1_test(test_sampling_cuda LABELS cuda)
