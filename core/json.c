/*
 * core/json.c — small helpers over cJSON shared by the JSON-reading parts of
 * core/ (safetensors headers, JSONL records).
 */
#include <cjson/cJSON.h>

#include "core/internal.h"

const char *r1_json_type_name(const cJSON *item) {
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsBool(item)) return "boolean";
    if (cJSON_IsNumber(item)) return "number";
    if (cJSON_IsString(item)) return "string";
    if (cJSON_IsArray(item)) return "array";
    if (cJSON_IsObject(item)) return "object";
    return "value of unknown type";
}
