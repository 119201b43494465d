/*
 * bench/bench_distill.c — the CPU cost of the distill client's parsers, per
 * response, measured in-process (no network):
 *
 *   distill_parse(reasoning=R,content=C)   r1_distill_parse_response on a body
 *                                          with R + C bytes of text
 *   distill_sse(events=E)                  r1_distill_sse_feed/finish of a
 *                                          stream of E chunk events, fed in
 *                                          1400-byte packets (one TCP segment)
 *   distill_output_line(bytes=B)           r1_distill_output_line for a
 *                                          response of B bytes
 *
 * bytes/s counts the body or stream bytes consumed (the formula: bytes of the
 * input per iteration x iterations). The end-to-end throughput (requests/s
 * with 64 and 1024 in flight, peak memory on a 1,000,000-line input) needs a
 * server process and is measured by bench/distill_bench.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/distill.h"

typedef struct parse_case { char *body; size_t length; } parse_case;

static char *filler(size_t bytes, char letter) {
    char *text = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; ++i) text[i] = (i % 61 == 60) ? ' ' : letter;
    text[bytes] = '\0';
    return text;
}

static void bench_parse(r1b_state *state, const void *user) {
    const parse_case *c = user;
    r1_distill_response response;
    if (r1_distill_parse_response(c->body, c->length, &response) != R1_OK) {
        r1b_skip_with_error(state, r1_last_error());
        return;
    }
    r1_distill_response_free(&response);
    for (; r1b_keep_running(state);) {
        r1_distill_parse_response(c->body, c->length, &response);
        r1b_do_not_optimize(response.content);
        r1_distill_response_free(&response);
    }
    r1b_set_bytes_processed(state, r1b_iterations(state) * (int64_t)c->length);
    r1b_set_items_processed(state, r1b_iterations(state));
}

static void bench_sse(r1b_state *state, const void *user) {
    const parse_case *c = user;
    const size_t packet = 1400;
    for (; r1b_keep_running(state);) {
        r1_distill_sse *sse = NULL;
        r1_distill_sse_create(&sse);
        int64_t events = 0;
        for (size_t at = 0; at < c->length; at += packet)
            r1_distill_sse_feed(sse, c->body + at, c->length - at < packet ? c->length - at : packet, &events);
        r1_distill_response response;
        if (r1_distill_sse_finish(sse, &response) != R1_OK) {
            r1_distill_sse_destroy(sse);
            r1b_skip_with_error(state, r1_last_error());
            return;
        }
        r1b_do_not_optimize(response.content);
        r1_distill_response_free(&response);
        r1_distill_sse_destroy(sse);
    }
    r1b_set_bytes_processed(state, r1b_iterations(state) * (int64_t)c->length);
}

static void bench_output_line(r1b_state *state, const void *user) {
    const parse_case *c = user;
    static const char raw[] = "{\"question\": \"Natalia sold clips to 48 of her friends in April\", \"answer\": \"#### 72\"}";
    r1_distill_keys keys = {"deepseek_r1_response", "deepseek_r1_reasoning", "deepseek_r1"};
    r1_distill_record record = {0};
    record.line_num = 12345;
    record.sample = -1;
    record.response = c->body;
    record.reasoning = c->body;
    record.finish_reason = "stop";
    record.prompt_tokens = 80;
    record.completion_tokens = 900;
    for (; r1b_keep_running(state);) {
        char *line = NULL;
        size_t length = 0;
        r1_distill_output_line(raw, sizeof raw - 1, &keys, &record, &line, &length);
        r1b_do_not_optimize(line);
        free(line);
    }
    r1b_set_bytes_processed(state, r1b_iterations(state) * (int64_t)(2 * c->length));
}

void r1b_register_distill(void) {
    static const size_t sizes[] = {1000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
        size_t n = sizes[i];
        char *reasoning = filler(n, 'r'), *content = filler(n / 10, 'a');
        parse_case *c = malloc(sizeof *c);
        size_t capacity = 2 * n + 512;
        c->body = malloc(capacity);
        c->length = (size_t)snprintf(c->body, capacity,
                                     "{\"choices\": [{\"message\": {\"content\": \"%s\", \"reasoning_content\": \"%s\"}, "
                                     "\"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": 80, \"completion_tokens\": 900}}",
                                     content, reasoning);
        char name[96];
        snprintf(name, sizeof name, "distill_parse(reasoning=%zu,content=%zu)", n, n / 10);
        r1b_register(name, bench_parse, c);
        /* the same text as a stream of 20-byte deltas */
        size_t events = n / 20;
        parse_case *s = malloc(sizeof *s);
        size_t stream_capacity = events * 128 + 256;
        s->body = malloc(stream_capacity);
        size_t used = 0;
        for (size_t e = 0; e < events; ++e)
            used += (size_t)snprintf(s->body + used, stream_capacity - used,
                                     "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"%.20s\"}}]}\n\n", reasoning + e * 20);
        used += (size_t)snprintf(s->body + used, stream_capacity - used,
                                 "data: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n");
        s->length = used;
        snprintf(name, sizeof name, "distill_sse(events=%zu)", events);
        r1b_register(name, bench_sse, s);
        parse_case *o = malloc(sizeof *o);
        o->body = reasoning;
        o->length = n;
        snprintf(name, sizeof name, "distill_output_line(bytes=%zu)", n);
        r1b_register(name, bench_output_line, o);
        free(content);
    }
}
