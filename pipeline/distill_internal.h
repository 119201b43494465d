/*
 * pipeline/distill_internal.h — helpers shared by the pipeline/distill*.c
 * files: a growable byte buffer and the answer-check hook.
 */
#ifndef R1LAB_PIPELINE_DISTILL_INTERNAL_H
#define R1LAB_PIPELINE_DISTILL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "r1lab/distill.h"

/* A growable byte string, always NUL-terminated when data != NULL. */
typedef struct distill_buffer {
    char *data;
    size_t length, capacity;
} distill_buffer;

int distill_buffer_reserve(distill_buffer *buffer, size_t extra); /* 0 on ENOMEM */
int distill_buffer_append(distill_buffer *buffer, const void *bytes, size_t length);
int distill_buffer_append_string(distill_buffer *buffer, const char *text);
int distill_buffer_printf(distill_buffer *buffer, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends text as a JSON string literal, UTF-8 repaired. */
int distill_buffer_append_json_string(distill_buffer *buffer, const char *text, size_t length);
void distill_buffer_clear(distill_buffer *buffer);
void distill_buffer_free(distill_buffer *buffer);

/* pipeline/distill_keep.c: the rejection-sampling check. Returns
 * R1_EUNSUPPORTED (with a sentence) while the answer component is absent. */
r1_status distill_check_answer(const char *response, size_t response_length, const char *gold,
                               int gold_format, char *answer, size_t answer_capacity,
                               int *correct);
/* -1 (auto) resolved for one gold value: gsm8k when it holds "####", else plain. */
int distill_resolve_gold_format(int gold_format, const char *gold);

#endif
