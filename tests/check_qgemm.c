/*
 * tests/check_qgemm.c — the qgemm checks behind the qgemm tests and `r1lab check`.
 * Not built yet: `run` is NULL, so `r1lab check` leaves qgemm out.
 */
#include "check.h"

const check_component check_component_qgemm = {"qgemm", NULL, NULL, NULL};
