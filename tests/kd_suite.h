/* tests/kd_suite.h — the kd test cases for one backend (tests/kd_suite.c). */
#ifndef R1LAB_TESTS_KD_SUITE_H
#define R1LAB_TESTS_KD_SUITE_H
#include "r1lab/common.h"
void kd_suite(r1_backend backend);
#endif
