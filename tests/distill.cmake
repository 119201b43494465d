# distill: unit tests of the parsers (C) and end-to-end tests over loopback HTTP
# against tests/distill_server.py (Python standard library).
r1_test(test_distill LABELS cpu)
find_package(Python3 COMPONENTS Interpreter QUIET)
if(CURL_FOUND AND Python3_Interpreter_FOUND)
  add_test(NAME test_distill_e2e
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_distill_e2e.py
                   $<TARGET_FILE:r1lab_cli> --prompts 2000)
  set_tests_properties(test_distill_e2e PROPERTIES LABELS cpu TIMEOUT 300)
  # the issue's full exactly-once run: 10,000 prompts, 30% faults, SIGKILL restarts
  add_test(NAME test_distill_e2e_full
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_distill_e2e.py
                   $<TARGET_FILE:r1lab_cli> --prompts 10000 --case exactly_once)
  set_tests_properties(test_distill_e2e_full PROPERTIES LABELS slow TIMEOUT 1200)
endif()
