/*
 * apps/command_answer.c — `r1lab answer` and `r1lab eval` (not built yet).
 */
#include <stdio.h>

#include "apps/commands.h"

int r1_command_answer(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "r1lab %s: not built yet\n", argv[0]);
    return 2;
}

int r1_command_eval(int argc, char **argv) { return r1_command_answer(argc, argv); }
