/*
 * tests/check_mla.c — the mla checks behind the mla tests and `r1lab check`.
 * Not built yet: `run` is NULL, so `r1lab check` leaves mla out.
 */
#include "check.h"

const check_component check_component_mla = {"mla", NULL, NULL, NULL};
