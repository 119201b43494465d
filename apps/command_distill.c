/*
 * apps/command_distill.c — `r1lab distill`, `r1lab sft-data`, `r1lab sort`
 * (not built yet).
 */
#include <stdio.h>

#include "apps/commands.h"

int r1_command_distill(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "r1lab %s: not built yet\n", argv[0]);
    return 2;
}

int r1_command_sft_data(int argc, char **argv) { return r1_command_distill(argc, argv); }
int r1_command_sort(int argc, char **argv) { return r1_command_distill(argc, argv); }
