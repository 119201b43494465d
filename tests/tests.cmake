# One test executable per component; labels: cpu, cuda, slow.
r1_test(test_common LABELS cpu)
r1_test(test_io LABELS cpu)
r1_test(test_sampling LABELS cpu)
r1_test(test_sampling_cuda LABELS cuda)

# Each later component registers its tests in tests/<component>.cmake.
foreach(component answer distill kd moe mla qgemm)
  include(tests/${component}.cmake OPTIONAL)
endforeach()

# The `r1lab check` command itself: one component end to end, and a bad
# --component refused with its sentence.
add_test(NAME r1lab_check_answer COMMAND r1lab_cli check --component answer --rows 200)
add_test(NAME r1lab_check_bad_component COMMAND r1lab_cli check --component nope)
set_tests_properties(r1lab_check_answer r1lab_check_bad_component PROPERTIES LABELS cpu
                     ENVIRONMENT "R1LAB_SOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}")
set_tests_properties(r1lab_check_bad_component PROPERTIES
                     PASS_REGULAR_EXPRESSION "--component nope: not a component")
