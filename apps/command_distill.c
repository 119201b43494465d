/*
 * apps/command_distill.c — `r1lab distill`, `r1lab sft-data`, `r1lab sort`.
 *
 * Option names follow PaddleNLP's distill_data.py; "--input_file" and
 * "--input-file" are the same option, as are "--x value" and "--x=value".
 * API keys: --api_keys, or the environment variable R1LAB_API_KEYS (so they
 * need not appear in `ps`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/commands.h"
#include "r1lab/distill.h"

#define MAX_LIST 64

typedef struct option_value {
    const char *name;   /* canonical, with '_'  */
    const char *value;  /* NULL when not given  */
    int is_flag;
} option_value;

/* "--input-file" -> "input_file" into `name`. */
static void canonical(const char *argument, char *name, size_t size) {
    size_t i = 0;
    for (const char *p = argument + 2; *p && *p != '=' && i + 1 < size; ++p) name[i++] = *p == '-' ? '_' : *p;
    name[i] = '\0';
}

/* Parses argv against `options`; 0 on a usage error (printed). */
static int parse_options(int argc, char **argv, option_value *options, int count) {
    for (int i = 1; i < argc; ++i) {
        const char *argument = argv[i];
        if (strncmp(argument, "--", 2) != 0) {
            fprintf(stderr, "r1lab %s: unexpected argument \"%s\"\n", argv[0], argument);
            return 0;
        }
        char name[64];
        canonical(argument, name, sizeof name);
        const char *equals = strchr(argument, '=');
        option_value *option = NULL;
        for (int k = 0; k < count; ++k)
            if (strcmp(options[k].name, name) == 0) option = &options[k];
        if (option == NULL) {
            fprintf(stderr, "r1lab %s: unknown option %s (see r1lab %s --help)\n", argv[0], argument, argv[0]);
            return 0;
        }
        if (option->is_flag) {
            /* a flag alone is on; =1/=true turn it on, =0/=false off, anything else is a usage error */
            const char *value = equals ? equals + 1 : "1";
            if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
                option->value = "1";
            } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
                option->value = NULL;
            } else {
                fprintf(stderr, "r1lab %s: %.*s is a flag: give it alone, or =1/=true, =0/=false (not \"%s\")\n",
                        argv[0], (int)(equals - argument), argument, value);
                return 0;
            }
        } else if (equals) {
            option->value = equals + 1;
        } else if (i + 1 < argc) {
            option->value = argv[++i];
        } else {
            fprintf(stderr, "r1lab %s: %s needs a value\n", argv[0], argument);
            return 0;
        }
    }
    return 1;
}

static const char *get(const option_value *options, int count, const char *name) {
    for (int k = 0; k < count; ++k)
        if (strcmp(options[k].name, name) == 0) return options[k].value;
    return NULL;
}

static int parse_double(const char *text, const char *name, double *out) {
    if (text == NULL) return 1;
    char *end = NULL;
    double value = strtod(text, &end);
    if (end == text || *end != '\0') {
        fprintf(stderr, "r1lab distill: --%s \"%s\" is not a number\n", name, text);
        return 0;
    }
    *out = value;
    return 1;
}

static int parse_long(const char *text, const char *name, long long *out) {
    if (text == NULL) return 1;
    char *end = NULL;
    long long value = strtoll(text, &end, 10);
    if (end == text || *end != '\0') {
        fprintf(stderr, "r1lab distill: --%s \"%s\" is not an integer\n", name, text);
        return 0;
    }
    *out = value;
    return 1;
}

/* Splits a comma list in place into items (empty items kept as ""). */
static int split_list(char *text, const char **items, int capacity) {
    int count = 0;
    for (char *p = text; count < capacity;) {
        items[count++] = p;
        char *comma = strchr(p, ',');
        if (comma == NULL) break;
        *comma = '\0';
        p = comma + 1;
    }
    return count;
}

static const char distill_usage[] =
    "usage: r1lab distill --input_file F.jsonl --output_dir D --base_urls URL[,URL...] [options]\n"
    "  --prompt_key K (prompt)  --response_key K (response)  --reasoning_key K (reasoning)  --token_prefix P (response_key up to _response)\n"
    "  --prompt_suffix S (\\n becomes a newline)  --api_keys K[,K...] (or env R1LAB_API_KEYS)  --model M (deepseek-r1)\n"
    "  --temperature 0.6  --top_p 0.95  --max_tokens 32768  --concurrency 16  --timeout 3600 (s)\n"
    "  --connect_timeout 10  --idle_timeout 300 (s, --stream)  --n 1  --seed S\n"
    "  --answer_key K  --keep all|correct  --gold_format boxed|gsm8k|plain (gsm8k when the gold holds ####, else plain)\n"
    "  --max_retries 5  --backoff_base 1  --backoff_max 60  --retry_after_max 120  --rpm R  --tpm T\n"
    "  --length keep|retry|drop  --breaker_threshold 5  --breaker_base 2  --breaker_max 60  --grace 30\n"
    "  --progress auto|bar|lines|off  --progress_interval 10  --stream  --sort  --dry-run  --retry-failed\n"
    "  (a flag alone is on; --flag=1|true|0|false also works)\n"
    "exit: 0 finished, 1 error, 2 usage, 3 interrupted (resumable), 4 HTTP 402 insufficient balance (resumable)\n";

int r1_command_distill(int argc, char **argv) {
    option_value options[] = {
        {"input_file", NULL, 0}, {"output_dir", NULL, 0}, {"prompt_key", NULL, 0}, {"response_key", NULL, 0},
        {"reasoning_key", NULL, 0}, {"token_prefix", NULL, 0}, {"prompt_suffix", NULL, 0}, {"base_urls", NULL, 0},
        {"api_keys", NULL, 0}, {"model", NULL, 0}, {"temperature", NULL, 0}, {"top_p", NULL, 0},
        {"max_tokens", NULL, 0}, {"concurrency", NULL, 0}, {"timeout", NULL, 0}, {"connect_timeout", NULL, 0},
        {"idle_timeout", NULL, 0}, {"n", NULL, 0}, {"seed", NULL, 0}, {"answer_key", NULL, 0}, {"keep", NULL, 0},
        {"gold_format", NULL, 0}, {"max_retries", NULL, 0}, {"backoff_base", NULL, 0}, {"backoff_max", NULL, 0},
        {"retry_after_max", NULL, 0}, {"rpm", NULL, 0}, {"tpm", NULL, 0}, {"length", NULL, 0},
        {"breaker_threshold", NULL, 0}, {"breaker_base", NULL, 0}, {"breaker_max", NULL, 0}, {"grace", NULL, 0},
        {"progress", NULL, 0}, {"progress_interval", NULL, 0}, {"stream", NULL, 1}, {"sort", NULL, 1},
        {"dry_run", NULL, 1}, {"retry_failed", NULL, 1}, {"help", NULL, 1},
    };
    const int count = (int)(sizeof options / sizeof options[0]);
    if (!parse_options(argc, argv, options, count)) return 2;
#define OPT(name) get(options, count, name)
    if (OPT("help")) {
        fputs(distill_usage, stdout);
        return 0;
    }
    r1_distill_config config;
    r1_distill_config_default(&config);
    config.input_file = OPT("input_file");
    config.output_dir = OPT("output_dir");
    if (OPT("prompt_key")) config.prompt_key = OPT("prompt_key");
    if (OPT("response_key")) config.response_key = OPT("response_key");
    if (OPT("reasoning_key")) config.reasoning_key = OPT("reasoning_key");
    config.token_prefix = OPT("token_prefix");
    if (OPT("model")) config.model = OPT("model");
    config.answer_key = OPT("answer_key");
    config.stream = OPT("stream") != NULL;
    config.sort = OPT("sort") != NULL;
    config.retry_failed = OPT("retry_failed") != NULL;
    long long max_tokens = config.max_tokens, concurrency = config.concurrency, samples = 1, seed = 0;
    long long max_retries = config.max_retries, breaker_threshold = config.breaker_threshold;
    int ok = parse_double(OPT("temperature"), "temperature", &config.temperature) &&
             parse_double(OPT("top_p"), "top_p", &config.top_p) &&
             parse_long(OPT("max_tokens"), "max_tokens", &max_tokens) &&
             parse_long(OPT("concurrency"), "concurrency", &concurrency) &&
             parse_double(OPT("timeout"), "timeout", &config.timeout_s) &&
             parse_double(OPT("connect_timeout"), "connect_timeout", &config.connect_timeout_s) &&
             parse_double(OPT("idle_timeout"), "idle_timeout", &config.idle_timeout_s) &&
             parse_long(OPT("n"), "n", &samples) && parse_long(OPT("seed"), "seed", &seed) &&
             parse_long(OPT("max_retries"), "max_retries", &max_retries) &&
             parse_double(OPT("backoff_base"), "backoff_base", &config.backoff_base_s) &&
             parse_double(OPT("backoff_max"), "backoff_max", &config.backoff_max_s) &&
             parse_double(OPT("retry_after_max"), "retry_after_max", &config.retry_after_max_s) &&
             parse_double(OPT("rpm"), "rpm", &config.rpm) && parse_double(OPT("tpm"), "tpm", &config.tpm) &&
             parse_long(OPT("breaker_threshold"), "breaker_threshold", &breaker_threshold) &&
             parse_double(OPT("breaker_base"), "breaker_base", &config.breaker_base_s) &&
             parse_double(OPT("breaker_max"), "breaker_max", &config.breaker_max_s) &&
             parse_double(OPT("grace"), "grace", &config.grace_s) &&
             parse_double(OPT("progress_interval"), "progress_interval", &config.progress_interval_s);
    if (!ok) return 2;
    if (concurrency < 1 || concurrency > 65536 || samples < 1 || samples > 1000000 || max_retries < 0 ||
        max_retries > 1000 || breaker_threshold < 1 || breaker_threshold > 1000000) {
        fprintf(stderr, "r1lab distill: --concurrency (1..65536), --n (1..1000000), --max_retries (0..1000) or --breaker_threshold out of range\n");
        return 2;
    }
    config.max_tokens = max_tokens;
    config.concurrency = (int)concurrency;
    config.samples = (int)samples;
    config.max_retries = (int)max_retries;
    config.breaker_threshold = (int)breaker_threshold;
    if (OPT("seed")) {
        config.has_seed = 1;
        config.seed = seed;
    }
    const char *keep = OPT("keep");
    if (keep) {
        if (strcmp(keep, "all") == 0) config.keep = R1_DISTILL_KEEP_ALL;
        else if (strcmp(keep, "correct") == 0) config.keep = R1_DISTILL_KEEP_CORRECT;
        else { fprintf(stderr, "r1lab distill: --keep is all or correct, not \"%s\"\n", keep); return 2; }
    }
    const char *gold = OPT("gold_format");
    if (gold) {
        if (strcmp(gold, "boxed") == 0) config.gold_format = 0;
        else if (strcmp(gold, "gsm8k") == 0) config.gold_format = 1;
        else if (strcmp(gold, "plain") == 0) config.gold_format = 2;
        else { fprintf(stderr, "r1lab distill: --gold_format is boxed, gsm8k or plain, not \"%s\"\n", gold); return 2; }
    }
    const char *length = OPT("length");
    if (length) {
        if (strcmp(length, "keep") == 0) config.length_policy = R1_DISTILL_LENGTH_KEEP;
        else if (strcmp(length, "retry") == 0) config.length_policy = R1_DISTILL_LENGTH_RETRY;
        else if (strcmp(length, "drop") == 0) config.length_policy = R1_DISTILL_LENGTH_DROP;
        else { fprintf(stderr, "r1lab distill: --length is keep, retry or drop, not \"%s\"\n", length); return 2; }
    }
    const char *progress = OPT("progress");
    if (progress) {
        if (strcmp(progress, "auto") == 0) config.progress = -1;
        else if (strcmp(progress, "bar") == 0) config.progress = 1;
        else if (strcmp(progress, "lines") == 0) config.progress = 2;
        else if (strcmp(progress, "off") == 0) config.progress = 0;
        else { fprintf(stderr, "r1lab distill: --progress is auto, bar, lines or off\n"); return 2; }
    }
    if (config.input_file == NULL || config.output_dir == NULL || OPT("base_urls") == NULL) {
        fputs(distill_usage, stderr);
        return 2;
    }
    char *suffix = r1_distill_unescape_newlines(OPT("prompt_suffix") ? OPT("prompt_suffix") : "");
    char *urls_text = malloc(strlen(OPT("base_urls")) + 1);
    const char *key_source = OPT("api_keys") ? OPT("api_keys") : getenv("R1LAB_API_KEYS");
    char *keys_text = key_source ? malloc(strlen(key_source) + 1) : NULL;
    if (suffix == NULL || urls_text == NULL || (key_source && keys_text == NULL)) {
        fprintf(stderr, "r1lab distill: out of memory\n");
        return 1;
    }
    strcpy(urls_text, OPT("base_urls"));
    const char *urls[MAX_LIST], *keys[MAX_LIST];
    config.endpoint_count = split_list(urls_text, urls, MAX_LIST);
    config.base_urls = urls;
    if (keys_text) {
        strcpy(keys_text, key_source);
        config.api_key_count = split_list(keys_text, keys, MAX_LIST);
        config.api_keys = keys;
    }
    config.prompt_suffix = suffix;
    int code;
    if (OPT("dry_run")) {
        r1_status status = r1_distill_dry_run(&config, stdout);
        if (status != R1_OK) fprintf(stderr, "r1lab distill: %s\n", r1_last_error());
        code = status == R1_OK ? 0 : status == R1_EINVAL ? 2 : 1;
    } else {
        r1_distill_summary summary;
        r1_status status = r1_distill_run(&config, &summary);
        if (status != R1_OK) {
            fprintf(stderr, "r1lab distill: %s\n", r1_last_error());
            code = status == R1_EINVAL ? 2 : 1;
        } else {
            fprintf(stderr, "r1lab distill: %s: %lld written, %lld rejected, %lld failed, %lld bad lines, %lld retries "
                            "(%lld units, %lld done before), %lld completion tokens in %.1f s\n",
                    summary.stop == R1_DISTILL_FINISHED ? "finished" : summary.stop == R1_DISTILL_INTERRUPTED ? "interrupted (rerun to resume)" : "stopped by HTTP 402 (rerun to resume)",
                    (long long)summary.written, (long long)summary.rejected, (long long)summary.failed,
                    (long long)summary.bad_lines, (long long)summary.retries, (long long)summary.units_total,
                    (long long)summary.units_done_before, (long long)summary.completion_tokens, summary.seconds);
            code = summary.stop == R1_DISTILL_FINISHED ? 0 : summary.stop == R1_DISTILL_INTERRUPTED ? 3 : 4;
        }
    }
    if (keys_text) memset(keys_text, 0, strlen(key_source));
    free(keys_text);
    free(urls_text);
    free(suffix);
    return code;
#undef OPT
}

int r1_command_sft_data(int argc, char **argv) {
    option_value options[] = {
        {"input_file", NULL, 0}, {"output_file", NULL, 0}, {"lang", NULL, 0}, {"prompt_key", NULL, 0},
        {"response_key", NULL, 0}, {"reasoning_key", NULL, 0}, {"no_think_tags", NULL, 1}, {"help", NULL, 1},
    };
    const int count = (int)(sizeof options / sizeof options[0]);
    if (!parse_options(argc, argv, options, count)) return 2;
    const char *lang = get(options, count, "lang");
    if (get(options, count, "help") || !get(options, count, "input_file") || !get(options, count, "output_file") ||
        (lang && strcmp(lang, "zh") != 0 && strcmp(lang, "en") != 0)) {
        fputs("usage: r1lab sft-data --input_file distilled.jsonl --output_file sft.jsonl (- for stdout)\n"
              "  [--lang zh|en]: the seed's keys question[_zh], deepseek_r1_response[_zh], deepseek_r1_reasoning[_zh] (default en)\n"
              "  [--prompt_key K --response_key K --reasoning_key K] override them\n"
              "  writes {\"src\": prompt, \"tgt\": \"<think>\\n\" reasoning \"\\n</think>\\n\\n\" response} per line\n"
              "  [--no-think-tags]: \"tgt\" is reasoning \"\\n\\n\" response (no tags added; empty reasoning: response alone)\n"
              "  the output is written whole or not at all (a temporary file, renamed on success);\n"
              "  its missing folders are made; it may not be the input file (exit 2)\n",
              get(options, count, "help") ? stdout : stderr);
        return get(options, count, "help") ? 0 : 2;
    }
    int zh = lang && strcmp(lang, "zh") == 0;
    const char *prompt = get(options, count, "prompt_key") ? get(options, count, "prompt_key") : zh ? "question_zh" : "question";
    const char *response = get(options, count, "response_key") ? get(options, count, "response_key")
                                                                : zh ? "deepseek_r1_response_zh" : "deepseek_r1_response";
    const char *reasoning = get(options, count, "reasoning_key") ? get(options, count, "reasoning_key")
                                                                  : zh ? "deepseek_r1_reasoning_zh" : "deepseek_r1_reasoning";
    int64_t written = 0;
    r1_status status = r1_distill_sft_data(get(options, count, "input_file"), get(options, count, "output_file"), prompt,
                                           response, reasoning, get(options, count, "no_think_tags") == NULL, &written);
    if (status != R1_OK) {
        fprintf(stderr, "r1lab sft-data: %s\n", r1_last_error());
        return status == R1_EINVAL ? 2 : 1;
    }
    fprintf(stderr, "r1lab sft-data: %lld records written\n", (long long)written);
    return 0;
}

int r1_command_sort(int argc, char **argv) {
    option_value options[] = {{"input_file", NULL, 0}, {"output_file", NULL, 0}, {"help", NULL, 1}};
    const int count = (int)(sizeof options / sizeof options[0]);
    if (!parse_options(argc, argv, options, count)) return 2;
    const char *input = get(options, count, "input_file");
    if (get(options, count, "help") || input == NULL) {
        fputs("usage: r1lab sort --input_file distilled.jsonl [--output_file sorted.jsonl (default: in place; - for stdout)]\n"
              "  orders records by (line_num, sample); each line's bytes are copied unchanged\n",
              get(options, count, "help") ? stdout : stderr);
        return get(options, count, "help") ? 0 : 2;
    }
    const char *output = get(options, count, "output_file") ? get(options, count, "output_file") : input;
    if (r1_distill_sort_file(input, output) != R1_OK) {
        fprintf(stderr, "r1lab sort: %s\n", r1_last_error());
        return 1;
    }
    return 0;
}
