# One test executable per component; labels: cpu, cuda, slow.
r1_test(test_common LABELS cpu)
r1_test(test_io LABELS cpu)
r1_test(test_sampling LABELS cpu)
r1_test(test_sampling_cuda LABELS cuda)

# Each later component registers its tests in tests/<component>.cmake.
foreach(component answer distill kd moe mla qgemm)
  include(tests/${component}.cmake OPTIONAL)
endforeach()
