/*
 * tests/check_kd.c — the kd checks behind the kd tests and `r1lab check`.
 * Not built yet: `run` is NULL, so `r1lab check` leaves kd out.
 */
#include "check.h"

const check_component check_component_kd = {"kd", NULL, NULL, NULL};
