/*
 * pipeline/distill_parse.c — the text side of the distillation client: every
 * byte that comes from a teacher or goes into an output file passes here.
 *
 *   response  -> r1_distill_parse_response   (one JSON body)
 *   SSE       -> r1_distill_sse_feed/finish  (chat.completion.chunk events)
 *   both      -> split_think / pick reasoning: message.reasoning, then
 *                message.reasoning_content, then <think>...</think> in content
 *   record    -> r1_distill_output_line      (input bytes + added fields)
 *   headers   -> r1_distill_parse_retry_after, r1_distill_classify
 *
 * Nothing here touches the network; the fuzz targets drive these functions
 * with arbitrary bytes.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/internal.h"
#include "pipeline/distill_internal.h"

/* ---- growable buffer ------------------------------------------------------------ */

int distill_buffer_reserve(distill_buffer *buffer, size_t extra) {
    size_t needed = buffer->length + extra + 1;
    if (needed < buffer->length) return 0;
    if (needed <= buffer->capacity) return 1;
    size_t capacity = buffer->capacity ? buffer->capacity : 256;
    while (capacity < needed) {
        if (capacity > ((size_t)-1) / 2) return 0;
        capacity *= 2;
    }
    char *data = realloc(buffer->data, capacity);
    if (data == NULL) return 0;
    buffer->data = data;
    buffer->capacity = capacity;
    return 1;
}

int distill_buffer_append(distill_buffer *buffer, const void *bytes, size_t length) {
    if (!distill_buffer_reserve(buffer, length)) return 0;
    if (length) memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
    buffer->data[buffer->length] = '\0';
    return 1;
}

int distill_buffer_append_string(distill_buffer *buffer, const char *text) {
    return distill_buffer_append(buffer, text, strlen(text));
}

int distill_buffer_printf(distill_buffer *buffer, const char *format, ...) {
    char local[512];
    va_list arguments;
    va_start(arguments, format);
    int count = vsnprintf(local, sizeof local, format, arguments);
    va_end(arguments);
    if (count < 0) return 0;
    if ((size_t)count < sizeof local) return distill_buffer_append(buffer, local, (size_t)count);
    if (!distill_buffer_reserve(buffer, (size_t)count)) return 0;
    va_start(arguments, format);
    vsnprintf(buffer->data + buffer->length, (size_t)count + 1, format, arguments);
    va_end(arguments);
    buffer->length += (size_t)count;
    return 1;
}

void distill_buffer_clear(distill_buffer *buffer) {
    buffer->length = 0;
    if (buffer->data) buffer->data[0] = '\0';
}

void distill_buffer_free(distill_buffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = buffer->capacity = 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the byte at s does
 * not start one (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence_length(const unsigned char *s, size_t available) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t length;
    unsigned char low = 0x80, high = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) length = 2;
    else if (c == 0xE0) { length = 3; low = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) length = 3;
    else if (c == 0xED) { length = 3; high = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) length = 3;
    else if (c == 0xF0) { length = 4; low = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) length = 4;
    else if (c == 0xF4) { length = 4; high = 0x8F; }
    else return 0;
    if (available < length) return 0;
    if (s[1] < low || s[1] > high) return 0;
    for (size_t i = 2; i < length; ++i)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return length;
}

static const char replacement_character[] = "\xEF\xBF\xBD";

r1_status r1_distill_utf8_repair(const char *text, size_t length, char **out, size_t *out_length) {
    if (out == NULL || out_length == NULL)
        return r1_fail(R1_EINVAL, "r1_distill_utf8_repair: out and out_length must not be NULL");
    *out = NULL;
    *out_length = 0;
    if (text == NULL && length) return r1_fail(R1_EINVAL, "r1_distill_utf8_repair: text is NULL");
    distill_buffer buffer = {0};
    const unsigned char *s = (const unsigned char *)text;
    if (!distill_buffer_reserve(&buffer, length)) return r1_fail(R1_ENOMEM, "out of memory");
    for (size_t i = 0; i < length;) {
        size_t n = utf8_sequence_length(s + i, length - i);
        int ok = n ? distill_buffer_append(&buffer, s + i, n)
                   : distill_buffer_append(&buffer, replacement_character, 3);
        if (!ok) {
            distill_buffer_free(&buffer);
            return r1_fail(R1_ENOMEM, "out of memory repairing %zu bytes of UTF-8", length);
        }
        i += n ? n : 1;
    }
    *out = buffer.data;
    *out_length = buffer.length;
    return R1_OK;
}

int distill_buffer_append_json_string(distill_buffer *buffer, const char *text, size_t length) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    if (!distill_buffer_reserve(buffer, length + 2)) return 0;
    if (!distill_buffer_append(buffer, "\"", 1)) return 0;
    size_t run = 0; /* bytes since i - run that need no escaping */
    for (size_t i = 0; i < length;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { ++i; ++run; continue; }
        if (run && !distill_buffer_append(buffer, s + i - run, run)) return 0;
        run = 0;
        if (c >= 0x80) {
            size_t n = utf8_sequence_length(s + i, length - i);
            if (!(n ? distill_buffer_append(buffer, s + i, n)
                    : distill_buffer_append(buffer, replacement_character, 3)))
                return 0;
            i += n ? n : 1;
            continue;
        }
        char escape[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t escape_length = 2;
        switch (c) {
        case '"': escape[1] = '"'; break;
        case '\\': escape[1] = '\\'; break;
        case '\n': escape[1] = 'n'; break;
        case '\r': escape[1] = 'r'; break;
        case '\t': escape[1] = 't'; break;
        case '\b': escape[1] = 'b'; break;
        case '\f': escape[1] = 'f'; break;
        default:
            escape[1] = 'u'; escape[2] = '0'; escape[3] = '0';
            escape[4] = hex[c >> 4]; escape[5] = hex[c & 15];
            escape_length = 6;
        }
        if (!distill_buffer_append(buffer, escape, escape_length)) return 0;
        ++i;
    }
    if (run && !distill_buffer_append(buffer, s + length - run, run)) return 0;
    return distill_buffer_append(buffer, "\"", 1);
}

r1_status r1_distill_json_string(const char *text, size_t length, char **out, size_t *out_length) {
    if (out == NULL || out_length == NULL || (text == NULL && length))
        return r1_fail(R1_EINVAL, "r1_distill_json_string: NULL argument");
    distill_buffer buffer = {0};
    if (!distill_buffer_append_json_string(&buffer, text ? text : "", length)) {
        distill_buffer_free(&buffer);
        return r1_fail(R1_ENOMEM, "out of memory escaping %zu bytes", length);
    }
    *out = buffer.data;
    *out_length = buffer.length;
    return R1_OK;
}

/* ---- the output record ----------------------------------------------------------- */

static int append_key(distill_buffer *buffer, const char *key, const char *suffix) {
    distill_buffer name = {0};
    int ok = distill_buffer_append_string(&name, key) && distill_buffer_append_string(&name, suffix) &&
             distill_buffer_append(buffer, ", ", 2) &&
             distill_buffer_append_json_string(buffer, name.data, name.length) &&
             distill_buffer_append(buffer, ": ", 2);
    distill_buffer_free(&name);
    return ok;
}

static int append_string_field(distill_buffer *buffer, const char *key, const char *suffix,
                               const char *value) {
    if (!append_key(buffer, key, suffix)) return 0;
    if (value == NULL) return distill_buffer_append(buffer, "null", 4);
    return distill_buffer_append_json_string(buffer, value, strlen(value));
}

static int append_count_field(distill_buffer *buffer, const char *key, const char *suffix,
                              int64_t value) {
    if (!append_key(buffer, key, suffix)) return 0;
    if (value < 0) return distill_buffer_append(buffer, "null", 4);
    return distill_buffer_printf(buffer, "%lld", (long long)value);
}

r1_status r1_distill_output_line(const char *raw, size_t raw_length, const r1_distill_keys *keys,
                                 const r1_distill_record *record, char **out, size_t *out_length) {
    if (raw == NULL || keys == NULL || record == NULL || out == NULL || out_length == NULL ||
        keys->response_key == NULL || keys->reasoning_key == NULL || keys->token_prefix == NULL)
        return r1_fail(R1_EINVAL, "r1_distill_output_line: NULL argument");
    *out = NULL;
    *out_length = 0;
    size_t end = raw_length;
    while (end > 0 && (raw[end - 1] == ' ' || raw[end - 1] == '\t' || raw[end - 1] == '\r' ||
                       raw[end - 1] == '\n'))
        --end;
    if (end == 0 || raw[end - 1] != '}')
        return r1_fail(R1_EFORMAT, "line %lld does not end with '}'", (long long)record->line_num);
    size_t brace = end - 1;
    size_t before = brace;
    while (before > 0 && (raw[before - 1] == ' ' || raw[before - 1] == '\t' ||
                          raw[before - 1] == '\r' || raw[before - 1] == '\n'))
        --before;
    int empty_object = before > 0 && raw[before - 1] == '{';

    distill_buffer buffer = {0};
    int ok = distill_buffer_reserve(&buffer, brace + 256);
    ok = ok && distill_buffer_append(&buffer, raw, empty_object ? before : brace);
    /* the first field: ", " unless the object is empty */
    ok = ok && distill_buffer_printf(&buffer, "%s\"line_num\": %lld", empty_object ? "" : ", ",
                                     (long long)record->line_num);
    if (record->sample >= 0) ok = ok && distill_buffer_printf(&buffer, ", \"sample\": %lld",
                                                              (long long)record->sample);
    ok = ok && append_string_field(&buffer, keys->response_key, "", record->response ? record->response : "");
    ok = ok && append_string_field(&buffer, keys->reasoning_key, "", record->reasoning ? record->reasoning : "");
    ok = ok && append_count_field(&buffer, keys->token_prefix, "_prompt_tokens", record->prompt_tokens);
    ok = ok && append_count_field(&buffer, keys->token_prefix, "_completion_tokens", record->completion_tokens);
    ok = ok && append_string_field(&buffer, "finish_reason", "", record->finish_reason);
    if (record->answer) {
        ok = ok && append_string_field(&buffer, keys->token_prefix, "_answer", record->answer);
        ok = ok && append_key(&buffer, keys->token_prefix, "_correct") &&
             distill_buffer_append_string(&buffer, record->correct ? "true" : "false");
    }
    if (record->reason) ok = ok && append_string_field(&buffer, "reason", "", record->reason);
    ok = ok && distill_buffer_append(&buffer, "}\n", 2);
    if (!ok) {
        distill_buffer_free(&buffer);
        return r1_fail(R1_ENOMEM, "out of memory building the record of line %lld",
                       (long long)record->line_num);
    }
    *out = buffer.data;
    *out_length = buffer.length;
    return R1_OK;
}

/* ---- reasoning / answer split ----------------------------------------------------------- */

static char *copy_bytes(const char *text, size_t length) {
    char *copy = malloc(length + 1);
    if (copy == NULL) return NULL;
    if (length) memcpy(copy, text, length);
    copy[length] = '\0';
    return copy;
}

static const char *find_bytes(const char *haystack, size_t length, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0 || length < n) return NULL;
    for (const char *p = haystack; p + n <= haystack + length; ++p) {
        p = memchr(p, needle[0], (size_t)(haystack + length - p));
        if (p == NULL || p + n > haystack + length) return NULL;
        if (memcmp(p, needle, n) == 0) return p;
    }
    return NULL;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

r1_status r1_distill_split_think(const char *text, size_t length, const char *finish_reason,
                                 char **reasoning, char **content) {
    if (reasoning == NULL || content == NULL || (text == NULL && length))
        return r1_fail(R1_EINVAL, "r1_distill_split_think: NULL argument");
    *reasoning = *content = NULL;
    if (text == NULL) text = "";
    const char *begin = text, *end = text + length;
    const char *s = begin;
    while (s < end && is_space(*s)) ++s;
    int opens = (size_t)(end - s) >= 7 && memcmp(s, "<think>", 7) == 0;
    const char *close = find_bytes(text, length, "</think>");
    const char *reasoning_begin = opens ? s + 7 : begin, *reasoning_end, *answer_begin;
    if (close != NULL && close >= reasoning_begin) {
        reasoning_end = close;
        answer_begin = close + 8;
    } else if (close != NULL) { /* "</think>" before the "<think>": treat all as answer */
        reasoning_begin = reasoning_end = begin;
        answer_begin = begin;
    } else if (opens || (finish_reason && strcmp(finish_reason, "length") == 0)) {
        reasoning_end = end;
        answer_begin = end;
    } else {
        reasoning_begin = reasoning_end = begin;
        answer_begin = begin;
    }
    while (reasoning_begin < reasoning_end && is_space(*reasoning_begin)) ++reasoning_begin;
    while (reasoning_end > reasoning_begin && is_space(reasoning_end[-1])) --reasoning_end;
    if (answer_begin != begin)
        while (answer_begin < end && is_space(*answer_begin)) ++answer_begin;
    *reasoning = copy_bytes(reasoning_begin, (size_t)(reasoning_end - reasoning_begin));
    *content = copy_bytes(answer_begin, (size_t)(end - answer_begin));
    if (*reasoning == NULL || *content == NULL) {
        free(*reasoning);
        free(*content);
        *reasoning = *content = NULL;
        return r1_fail(R1_ENOMEM, "out of memory splitting %zu bytes", length);
    }
    return R1_OK;
}

/* Fills out->reasoning/content from the three sources, in order of precedence. */
static r1_status assemble_message(const char *content, size_t content_length,
                                  const char *reasoning_field, size_t reasoning_length,
                                  int has_reasoning_field, r1_distill_response *out) {
    if (has_reasoning_field && reasoning_length > 0) {
        const char *a = content ? content : "";
        size_t a_length = content ? content_length : 0;
        /* servers that fill both still must not leave a stray </think> */
        out->reasoning = copy_bytes(reasoning_field, reasoning_length);
        while (a_length && is_space(*a)) { ++a; --a_length; }
        out->content = copy_bytes(a, a_length);
        if (out->reasoning == NULL || out->content == NULL) return r1_fail(R1_ENOMEM, "out of memory");
        return R1_OK;
    }
    return r1_distill_split_think(content ? content : "", content ? content_length : 0,
                                  out->finish_reason, &out->reasoning, &out->content);
}

void r1_distill_response_free(r1_distill_response *response) {
    if (response == NULL) return;
    free(response->content);
    free(response->reasoning);
    free(response->finish_reason);
    free(response->error_message);
    memset(response, 0, sizeof *response);
    response->prompt_tokens = response->completion_tokens = response->error_code = -1;
}

static void response_init(r1_distill_response *out) {
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = out->error_code = -1;
}

static int64_t json_count(const cJSON *item) {
    if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > 9.0e15) return -1;
    return (int64_t)item->valuedouble;
}

static void read_usage(const cJSON *usage, r1_distill_response *out) {
    if (!cJSON_IsObject(usage)) return;
    int64_t prompt = json_count(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens"));
    int64_t completion = json_count(cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens"));
    if (prompt >= 0) out->prompt_tokens = prompt;
    if (completion >= 0) out->completion_tokens = completion;
}

/* {"error": {...}} / {"error": "text"} / {"object": "error", "message": ...}:
 * returns 1 and fills the error fields when `root` is an error body. */
static int read_error_body(const cJSON *root, r1_distill_response *out) {
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(root, "object");
    const cJSON *holder = NULL;
    if (cJSON_IsObject(error)) holder = error;
    else if (cJSON_IsString(object) && strcmp(object->valuestring, "error") == 0) holder = root;
    else if (cJSON_IsString(error)) holder = NULL;
    else return 0;
    out->is_error = 1;
    const char *message = "";
    if (holder) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(holder, "message");
        if (cJSON_IsString(m)) message = m->valuestring;
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(holder, "code");
        if (cJSON_IsNumber(code)) out->error_code = (int64_t)code->valuedouble;
        else if (cJSON_IsString(code)) {
            char *end = NULL;
            long value = strtol(code->valuestring, &end, 10);
            if (end != code->valuestring && *end == '\0') out->error_code = value;
        }
    } else {
        message = error->valuestring;
    }
    out->error_message = copy_bytes(message, strlen(message));
    return 1;
}

static const cJSON *string_or_null(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item : NULL;
}

r1_status r1_distill_parse_response(const char *body, size_t length, r1_distill_response *out) {
    if (out == NULL || (body == NULL && length))
        return r1_fail(R1_EINVAL, "r1_distill_parse_response: NULL argument");
    response_init(out);
    size_t start = 0;
    while (start < length && is_space(body[start])) ++start;
    if (start == length) return r1_fail(R1_EFORMAT, "empty response body");
    cJSON *root = cJSON_ParseWithLength(body + start, length - start);
    if (root == NULL) return r1_fail(R1_EFORMAT, "response body is not JSON (%zu bytes)", length);
    r1_status status = R1_OK;
    if (!cJSON_IsObject(root)) {
        status = r1_fail(R1_EFORMAT, "response body is JSON but not an object");
    } else if (read_error_body(root, out)) {
        if (out->error_message == NULL) status = r1_fail(R1_ENOMEM, "out of memory");
    } else {
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
        const cJSON *choice = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
        const cJSON *message = cJSON_IsObject(choice) ? cJSON_GetObjectItemCaseSensitive(choice, "message") : NULL;
        if (!cJSON_IsObject(message)) {
            status = r1_fail(R1_EFORMAT, "response has no choices[0].message object");
        } else {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");
            if (content != NULL && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
                status = r1_fail(R1_EFORMAT, "choices[0].message.content is a %s, not a string",
                                 r1_json_type_name(content));
            } else {
                const cJSON *finish = string_or_null(choice, "finish_reason");
                if (finish) out->finish_reason = copy_bytes(finish->valuestring, strlen(finish->valuestring));
                read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), out);
                const cJSON *reasoning = string_or_null(message, "reasoning");
                if (reasoning == NULL || reasoning->valuestring[0] == '\0')
                    reasoning = string_or_null(message, "reasoning_content");
                const char *text = cJSON_IsString(content) ? content->valuestring : "";
                status = assemble_message(text, strlen(text),
                                          reasoning ? reasoning->valuestring : NULL,
                                          reasoning ? strlen(reasoning->valuestring) : 0,
                                          reasoning != NULL, out);
            }
        }
    }
    cJSON_Delete(root);
    if (status != R1_OK) {
        r1_distill_response_free(out);
    }
    return status;
}

/* ---- Server-Sent Events ------------------------------------------------------------------ */

#define SSE_MAX_LINE ((size_t)256 << 20)

struct r1_distill_sse {
    distill_buffer line;          /* the current, unfinished line                  */
    distill_buffer data;          /* data lines of the current event, joined by \n */
    int has_data;                 /* a data: line arrived for the current event    */
    int last_was_cr;              /* a '\r' ended the previous line: skip one '\n' */
    distill_buffer content, reasoning;
    int has_reasoning;
    char *finish_reason;
    int64_t prompt_tokens, completion_tokens;
    int done;                     /* data: [DONE]                                  */
    int error;                    /* an error event arrived                        */
    char *error_message;
    int64_t error_code;
};

r1_status r1_distill_sse_create(r1_distill_sse **out) {
    if (out == NULL) return r1_fail(R1_EINVAL, "r1_distill_sse_create: out is NULL");
    *out = calloc(1, sizeof **out);
    if (*out == NULL) return r1_fail(R1_ENOMEM, "out of memory creating an SSE parser");
    (*out)->prompt_tokens = (*out)->completion_tokens = (*out)->error_code = -1;
    return R1_OK;
}

void r1_distill_sse_destroy(r1_distill_sse *sse) {
    if (sse == NULL) return;
    distill_buffer_free(&sse->line);
    distill_buffer_free(&sse->data);
    distill_buffer_free(&sse->content);
    distill_buffer_free(&sse->reasoning);
    free(sse->finish_reason);
    free(sse->error_message);
    free(sse);
}

/* One chat.completion.chunk (or error) event. */
static r1_status sse_event(r1_distill_sse *sse, const char *data, size_t length) {
    size_t start = 0;
    while (start < length && is_space(data[start])) ++start;
    if (length - start == 6 && memcmp(data + start, "[DONE]", 6) == 0) {
        sse->done = 1;
        return R1_OK;
    }
    cJSON *root = cJSON_ParseWithLength(data + start, length - start);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return r1_fail(R1_EFORMAT, "an SSE data event is not a JSON object (%zu bytes)", length);
    }
    r1_distill_response error = {0};
    response_init(&error);
    r1_status status = R1_OK;
    if (read_error_body(root, &error)) {
        sse->error = 1;
        free(sse->error_message);
        sse->error_message = error.error_message;
        sse->error_code = error.error_code;
        error.error_message = NULL;
    } else {
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
        const cJSON *choice = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
        const cJSON *delta = cJSON_IsObject(choice) ? cJSON_GetObjectItemCaseSensitive(choice, "delta") : NULL;
        if (cJSON_IsObject(delta)) {
            const cJSON *c = string_or_null(delta, "content");
            const cJSON *r = string_or_null(delta, "reasoning");
            if (r == NULL) r = string_or_null(delta, "reasoning_content");
            if (c && !distill_buffer_append_string(&sse->content, c->valuestring)) status = R1_ENOMEM;
            if (r) {
                sse->has_reasoning = 1;
                if (!distill_buffer_append_string(&sse->reasoning, r->valuestring)) status = R1_ENOMEM;
            }
        }
        const cJSON *finish = cJSON_IsObject(choice) ? string_or_null(choice, "finish_reason") : NULL;
        if (finish) {
            free(sse->finish_reason);
            sse->finish_reason = copy_bytes(finish->valuestring, strlen(finish->valuestring));
            if (sse->finish_reason == NULL) status = R1_ENOMEM;
        }
        r1_distill_response usage;
        response_init(&usage);
        read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), &usage);
        if (usage.prompt_tokens >= 0) sse->prompt_tokens = usage.prompt_tokens;
        if (usage.completion_tokens >= 0) sse->completion_tokens = usage.completion_tokens;
    }
    cJSON_Delete(root);
    if (status == R1_ENOMEM) return r1_fail(R1_ENOMEM, "out of memory assembling a stream");
    return status;
}

/* A complete line (without its end-of-line bytes). */
static r1_status sse_line(r1_distill_sse *sse, const char *line, size_t length, int64_t *data_events) {
    if (length == 0) { /* blank line: dispatch */
        if (!sse->has_data) return R1_OK;
        sse->has_data = 0;
        r1_status status = sse_event(sse, sse->data.data, sse->data.length);
        distill_buffer_clear(&sse->data);
        if (status == R1_OK && data_events) ++*data_events;
        return status;
    }
    if (line[0] == ':') return R1_OK; /* comment, e.g. ": keep-alive" */
    const char *colon = memchr(line, ':', length);
    size_t name_length = colon ? (size_t)(colon - line) : length;
    if (name_length != 4 || memcmp(line, "data", 4) != 0) return R1_OK; /* event:, id:, retry: */
    const char *value = colon ? colon + 1 : line + length;
    if (value < line + length && *value == ' ') ++value;
    if (sse->has_data && !distill_buffer_append(&sse->data, "\n", 1)) return r1_fail(R1_ENOMEM, "out of memory");
    if (!distill_buffer_append(&sse->data, value, (size_t)(line + length - value)))
        return r1_fail(R1_ENOMEM, "out of memory");
    sse->has_data = 1;
    return R1_OK;
}

r1_status r1_distill_sse_feed(r1_distill_sse *sse, const char *bytes, size_t length, int64_t *data_events) {
    if (sse == NULL || (bytes == NULL && length)) return r1_fail(R1_EINVAL, "r1_distill_sse_feed: NULL argument");
    size_t i = 0;
    while (i < length) {
        if (sse->last_was_cr) {
            sse->last_was_cr = 0;
            if (bytes[i] == '\n') { ++i; continue; }
        }
        const char *newline = NULL;
        for (size_t j = i; j < length; ++j)
            if (bytes[j] == '\n' || bytes[j] == '\r') { newline = bytes + j; break; }
        size_t piece = newline ? (size_t)(newline - (bytes + i)) : length - i;
        if (sse->line.length + piece > SSE_MAX_LINE)
            return r1_fail(R1_EFORMAT, "an SSE line is longer than %zu bytes", SSE_MAX_LINE);
        if (!newline) {
            if (!distill_buffer_append(&sse->line, bytes + i, piece)) return r1_fail(R1_ENOMEM, "out of memory");
            break;
        }
        r1_status status;
        if (sse->line.length) {
            if (!distill_buffer_append(&sse->line, bytes + i, piece)) return r1_fail(R1_ENOMEM, "out of memory");
            status = sse_line(sse, sse->line.data, sse->line.length, data_events);
            distill_buffer_clear(&sse->line);
        } else {
            status = sse_line(sse, bytes + i, piece, data_events);
        }
        if (status != R1_OK) return status;
        sse->last_was_cr = *newline == '\r';
        i += piece + 1;
    }
    return R1_OK;
}

r1_status r1_distill_sse_finish(r1_distill_sse *sse, r1_distill_response *out) {
    if (sse == NULL || out == NULL) return r1_fail(R1_EINVAL, "r1_distill_sse_finish: NULL argument");
    response_init(out);
    /* a last line or event without its terminating blank line */
    if (sse->line.length) {
        r1_status status = sse_line(sse, sse->line.data, sse->line.length, NULL);
        distill_buffer_clear(&sse->line);
        if (status != R1_OK) return status;
    }
    if (sse->has_data) {
        r1_status status = sse_line(sse, "", 0, NULL);
        if (status != R1_OK) return status;
    }
    if (sse->error) {
        out->is_error = 1;
        out->error_code = sse->error_code;
        const char *message = sse->error_message ? sse->error_message : "";
        out->error_message = copy_bytes(message, strlen(message));
        return out->error_message ? R1_OK : r1_fail(R1_ENOMEM, "out of memory");
    }
    if (!sse->done && sse->finish_reason == NULL)
        return r1_fail(R1_EFORMAT, "the stream ended before data: [DONE] and before a finish_reason (truncated)");
    if (sse->finish_reason) {
        out->finish_reason = copy_bytes(sse->finish_reason, strlen(sse->finish_reason));
        if (out->finish_reason == NULL) return r1_fail(R1_ENOMEM, "out of memory");
    }
    out->prompt_tokens = sse->prompt_tokens;
    out->completion_tokens = sse->completion_tokens;
    r1_status status = assemble_message(sse->content.data ? sse->content.data : "", sse->content.length,
                                        sse->reasoning.data ? sse->reasoning.data : "",
                                        sse->reasoning.length, sse->has_reasoning, out);
    if (status != R1_OK) r1_distill_response_free(out);
    return status;
}

/* ---- Retry-After -------------------------------------------------------------------------------- */

static int month_index(const char *name) {
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int m = 0; m < 12; ++m)
        if (strncmp(name, months[m], 3) == 0) return m;
    return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t year, int month, int day) {
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

r1_status r1_distill_parse_retry_after(const char *value, time_t now, double *seconds) {
    if (value == NULL || seconds == NULL) return r1_fail(R1_EINVAL, "r1_distill_parse_retry_after: NULL argument");
    *seconds = 0;
    while (*value == ' ' || *value == '\t') ++value;
    size_t length = strlen(value);
    while (length && (value[length - 1] == ' ' || value[length - 1] == '\t' ||
                      value[length - 1] == '\r' || value[length - 1] == '\n'))
        --length;
    if (length == 0) return r1_fail(R1_EFORMAT, "empty Retry-After");
    if (isdigit((unsigned char)value[0])) {
        double total = 0;
        size_t i = 0;
        for (; i < length && isdigit((unsigned char)value[i]); ++i) {
            total = total * 10 + (value[i] - '0');
            if (total > 1e12) total = 1e12;
        }
        if (i != length) return r1_fail(R1_EFORMAT, "Retry-After \"%.40s\" is not a number of seconds", value);
        *seconds = total;
        return R1_OK;
    }
    char text[64];
    if (length >= sizeof text) return r1_fail(R1_EFORMAT, "Retry-After is too long for a date");
    memcpy(text, value, length);
    text[length] = '\0';
    char day_name[16], month_name[8], zone[8];
    int day, year, hour, minute, second;
    int month = -1;
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (sscanf(text, "%15[A-Za-z], %d %3s %d %d:%d:%d %7s", day_name, &day, month_name, &year,
               &hour, &minute, &second, zone) == 8) {
        month = month_index(month_name);
    /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
    } else if (sscanf(text, "%15[A-Za-z], %d-%3s-%d %d:%d:%d %7s", day_name, &day, month_name, &year,
                      &hour, &minute, &second, zone) == 8) {
        month = month_index(month_name);
        if (year < 100) year += year < 70 ? 2000 : 1900;
    /* asctime: Sun Nov  6 08:49:37 1994 */
    } else if (sscanf(text, "%15s %3s %d %d:%d:%d %d", day_name, month_name, &day, &hour, &minute,
                      &second, &year) == 7) {
        month = month_index(month_name);
    }
    if (month < 0 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 60 || year < 1970 || year > 9999)
        return r1_fail(R1_EFORMAT, "Retry-After \"%.40s\" is neither seconds nor an HTTP date", text);
    int64_t when = days_from_civil(year, month + 1, day) * 86400 + hour * 3600 + minute * 60 + second;
    double delta = (double)(when - (int64_t)now);
    *seconds = delta > 0 ? delta : 0;
    return R1_OK;
}

/* ---- classification -------------------------------------------------------------------------- */

r1_distill_verdict r1_distill_classify(long http_status, int curl_code) {
    if (curl_code != 0) {
        switch (curl_code) {
        case 1:  /* CURLE_UNSUPPORTED_PROTOCOL */
        case 3:  /* CURLE_URL_MALFORMAT */
        case 27: /* CURLE_OUT_OF_MEMORY */
        case 43: /* CURLE_BAD_FUNCTION_ARGUMENT */
        case 23: /* CURLE_WRITE_ERROR: the body exceeded its limit */
            return R1_DISTILL_FAIL;
        default: /* refused, reset, timeout, partial file, got nothing, ... */
            return R1_DISTILL_RETRY;
        }
    }
    if (http_status >= 200 && http_status < 300) return R1_DISTILL_SUCCESS;
    switch (http_status) {
    case 402: return R1_DISTILL_STOP;
    case 408: case 409: case 429: return R1_DISTILL_RETRY;
    case 0: return R1_DISTILL_RETRY;
    default: break;
    }
    if (http_status >= 500) return R1_DISTILL_RETRY;
    return R1_DISTILL_FAIL;
}

/* ---- status ranges ------------------------------------------------------------------------- */

r1_status r1_distill_format_ranges(const uint64_t *bits, int64_t nbits, char **out) {
    if (out == NULL || (bits == NULL && nbits > 0) || nbits < 0)
        return r1_fail(R1_EINVAL, "r1_distill_format_ranges: bad argument");
    distill_buffer buffer = {0};
    int ok = distill_buffer_reserve(&buffer, 16);
    if (ok) buffer.data[0] = '\0';
    for (int64_t i = 0; ok && i < nbits;) {
        if (!(bits[i >> 6] >> (i & 63) & 1)) {
            if (bits[i >> 6] == 0 && (i & 63) == 0) i += 64;
            else ++i;
            continue;
        }
        int64_t j = i;
        while (j + 1 < nbits && (bits[(j + 1) >> 6] >> ((j + 1) & 63) & 1)) ++j;
        ok = buffer.length == 0 || distill_buffer_append(&buffer, ",", 1);
        ok = ok && (j == i ? distill_buffer_printf(&buffer, "%lld", (long long)i)
                           : distill_buffer_printf(&buffer, "%lld-%lld", (long long)i, (long long)j));
        i = j + 1;
    }
    if (!ok) {
        distill_buffer_free(&buffer);
        return r1_fail(R1_ENOMEM, "out of memory formatting ranges");
    }
    *out = buffer.data;
    return R1_OK;
}

/* ---- journal scan ---------------------------------------------------------------------------- */

static r1_status scan_line(const char *path, int64_t number, const char *line, size_t length,
                           int64_t *line_num, int64_t *sample) {
    cJSON *root = cJSON_ParseWithLength(line, length);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return r1_fail(R1_EFORMAT, "%s:%lld: a complete line that is not a JSON object", path,
                       (long long)number);
    }
    const cJSON *found_line = NULL, *found_sample = NULL;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (item->string && strcmp(item->string, "line_num") == 0) found_line = item;
        if (item->string && strcmp(item->string, "sample") == 0) found_sample = item;
    }
    r1_status status = R1_OK;
    if (!cJSON_IsNumber(found_line) || found_line->valuedouble < 0 || found_line->valuedouble > 9.0e15) {
        status = r1_fail(R1_EFORMAT, "%s:%lld: no integer \"line_num\"", path, (long long)number);
    } else {
        *line_num = (int64_t)found_line->valuedouble;
        /* sample -1 marks a record for every sample of the line (a bad input line) */
        *sample = !cJSON_IsNumber(found_sample) ? 0
                  : found_sample->valuedouble < 0 ? -1
                  : found_sample->valuedouble > 9.0e15 ? 0 : (int64_t)found_sample->valuedouble;
    }
    cJSON_Delete(root);
    return status;
}

r1_status r1_distill_scan_journal(const char *path, int truncate_torn,
                                  void (*visit)(void *context, int64_t line_num, int64_t sample),
                                  void *context, int64_t *records, int64_t *torn_bytes) {
    if (path == NULL) return r1_fail(R1_EINVAL, "r1_distill_scan_journal: path is NULL");
    if (records) *records = 0;
    if (torn_bytes) *torn_bytes = 0;
    int fd = open(path, truncate_torn ? O_RDWR : O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return R1_OK;
        return r1_fail(R1_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    enum { CHUNK = 1 << 16 };
    char *chunk = malloc(CHUNK);
    distill_buffer line = {0};
    r1_status status = chunk ? R1_OK : r1_fail(R1_ENOMEM, "out of memory");
    int64_t number = 0, complete_end = 0, offset = 0;
    while (status == R1_OK) {
        ssize_t got = read(fd, chunk, CHUNK);
        if (got < 0) {
            if (errno == EINTR) continue;
            status = r1_fail(R1_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (got == 0) break;
        size_t i = 0;
        while (i < (size_t)got && status == R1_OK) {
            char *newline = memchr(chunk + i, '\n', (size_t)got - i);
            size_t piece = newline ? (size_t)(newline - (chunk + i)) : (size_t)got - i;
            if (!distill_buffer_append(&line, chunk + i, piece)) {
                status = r1_fail(R1_ENOMEM, "out of memory reading %s", path);
                break;
            }
            if (!newline) { i = (size_t)got; break; }
            ++number;
            complete_end = offset + (int64_t)(i + piece + 1);
            size_t start = 0;
            while (start < line.length && is_space(line.data[start])) ++start;
            if (start < line.length) {
                int64_t line_num = 0, sample = 0;
                status = scan_line(path, number, line.data, line.length, &line_num, &sample);
                if (status == R1_OK) {
                    if (visit) visit(context, line_num, sample);
                    if (records) ++*records;
                }
            }
            distill_buffer_clear(&line);
            i += piece + 1;
        }
        offset += got;
    }
    if (status == R1_OK && offset > complete_end) {
        if (torn_bytes) *torn_bytes = offset - complete_end;
        if (truncate_torn && ftruncate(fd, (off_t)complete_end) != 0)
            status = r1_fail(R1_EIO, "cannot truncate the torn last line of %s: %s", path, strerror(errno));
    }
    distill_buffer_free(&line);
    free(chunk);
    close(fd);
    return status;
}

char *r1_distill_unescape_newlines(const char *text) {
    if (text == NULL) return NULL;
    size_t length = strlen(text);
    char *out = malloc(length + 1);
    if (out == NULL) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < length; ++i) {
        if (text[i] == '\\' && text[i + 1] == 'n') { out[o++] = '\n'; ++i; }
        else out[o++] = text[i];
    }
    out[o] = '\0';
    return out;
}
