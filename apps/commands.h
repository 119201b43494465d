/*
 * apps/commands.h — the subcommands of `r1lab` beyond check and version.
 * Each takes the arguments from its own name on (argv[0] is "answer",
 * "distill", ...) and returns the process exit code: 0 success, 1 failure,
 * 2 bad usage.
 */
#ifndef R1LAB_APPS_COMMANDS_H
#define R1LAB_APPS_COMMANDS_H

/* apps/command_answer.c */
int r1_command_answer(int argc, char **argv);   /* r1lab answer extract|equal */
int r1_command_eval(int argc, char **argv);     /* r1lab eval */

/* apps/command_distill.c */
int r1_command_distill(int argc, char **argv);  /* r1lab distill */
int r1_command_sft_data(int argc, char **argv); /* r1lab sft-data */
int r1_command_sort(int argc, char **argv);     /* r1lab sort */

#endif
