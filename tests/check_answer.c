/*
 * tests/check_answer.c — the answer checks behind the answer tests and `r1lab check`.
 * Not built yet: `run` is NULL, so `r1lab check` leaves answer out.
 */
#include "check.h"

const check_component check_component_answer = {"answer", NULL, NULL, NULL};
