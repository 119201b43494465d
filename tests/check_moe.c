/*
 * tests/check_moe.c — the moe checks behind the moe tests and `r1lab check`.
 * Not built yet: `run` is NULL, so `r1lab check` leaves moe out.
 */
#include "check.h"

const check_component check_component_moe = {"moe", NULL, NULL, NULL};
