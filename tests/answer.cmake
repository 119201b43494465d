# The answer component: ref and fast on the CPU (there is no CUDA version).
r1_test(test_answer LABELS cpu TIMEOUT 120)

# The command lines (r1lab answer extract/equal, r1lab eval): usage errors,
# no partial output files (Python standard library).
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  add_test(NAME test_answer_cli
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_answer_cli.py
                   $<TARGET_FILE:r1lab_cli>)
  set_tests_properties(test_answer_cli PROPERTIES LABELS cpu TIMEOUT 120)
endif()
