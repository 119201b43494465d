/*
 * pipeline/answer_placeholder.h — TEMPORARY, delete at merge: replace the
 * include of this file in pipeline/distill_keep.c by #include "r1lab/answer.h".
 * The declaration below is copied exactly from the answer component's header.
 */
#ifndef R1LAB_PIPELINE_ANSWER_PLACEHOLDER_H
#define R1LAB_PIPELINE_ANSWER_PLACEHOLDER_H

#include <stddef.h>

#include "r1lab/common.h"

typedef enum r1_answer_gold_format {
    R1_ANSWER_GOLD_BOXED = 0, R1_ANSWER_GOLD_GSM8K = 1, R1_ANSWER_GOLD_PLAIN = 2
} r1_answer_gold_format;
r1_status r1_answer_check_response(const char *response, size_t response_length,
                                   const char *gold, r1_answer_gold_format gold_format,
                                   char *answer, size_t answer_capacity,
                                   int *found, int *truncated, int *correct);

#endif
