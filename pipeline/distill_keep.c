/*
 * pipeline/distill_keep.c — rejection sampling: the one place where the
 * distill client calls the answer component. The teacher's answer (the text
 * after </think>) is checked against the record's gold answer; --keep correct
 * writes only samples whose extracted answer equals the gold, the others go
 * to .rejected.jsonl.
 */
#include <string.h>

#include "r1lab/answer.h" /* at merge: #include "r1lab/answer.h" */
#include "pipeline/distill_internal.h"

int distill_resolve_gold_format(int gold_format, const char *gold) {
    if (gold_format >= 0) return gold_format;
    return (gold && strstr(gold, "####")) ? (int)R1_ANSWER_GOLD_GSM8K : (int)R1_ANSWER_GOLD_PLAIN;
}

r1_status distill_check_answer(const char *response, size_t response_length, const char *gold,
                               int gold_format, char *answer, size_t answer_capacity,
                               int *correct) {
    int found = 0, truncated = 0, is_correct = 0;
    if (answer_capacity) answer[0] = '\0';
    r1_status status = r1_answer_check_response(
        response, response_length, gold, (r1_answer_gold_format)distill_resolve_gold_format(gold_format, gold),
        answer, answer_capacity, &found, &truncated, &is_correct);
    if (status != R1_OK) return status;
    *correct = found && is_correct;
    return R1_OK;
}
