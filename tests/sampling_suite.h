/* tests/sampling_suite.h — the sampling test cases for one backend. */
#ifndef R1LAB_TESTS_SAMPLING_SUITE_H
#define R1LAB_TESTS_SAMPLING_SUITE_H
#include "r1lab/common.h"
void sampling_suite(r1_backend backend);
#endif
