/*
 * tests/check.c — helpers shared by every component's checks (check.h) and
 * the list of components that `r1lab check` runs.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *check_golden_dir(void) {
    static char path[4096];
    const char *dir = getenv("R1LAB_GOLDEN_DIR");
    if (dir && *dir) return dir;
    const char *source = getenv("R1LAB_SOURCE_DIR");
#ifdef R1LAB_SOURCE_DIR
    if (!source || !*source) source = R1LAB_SOURCE_DIR;
#endif
    snprintf(path, sizeof path, "%s/golden", source ? source : ".");
    return path;
}

void check_note_error(check_summary *summary, const char *what, double error, double bar) {
    double ratio = bar > 0 ? error / bar : (error > 0 ? INFINITY : 0);
    if (isnan(ratio)) ratio = INFINITY;
    if (ratio >= summary->worst_ratio) {
        summary->worst_ratio = ratio;
        size_t length = strlen(what);
        if (length >= sizeof summary->worst_what) length = sizeof summary->worst_what - 1;
        memcpy(summary->worst_what, what, length);
        summary->worst_what[length] = '\0';
    }
}

double check_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int manifest_compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One failed case: prints `sentence` about golden/<component>/<name>, keeps the
 * first as r1_last_error. */
static void manifest_problem(check_summary *summary, r1_status *result, const char *component,
                             const char *name, const char *sentence) {
    char what[512];
    snprintf(what, sizeof what, "golden/%s/%s: %s", component, name, sentence);
    printf("  FAIL %s\n", what);
    summary->cases_total += 1;
    check_note_error(summary, what, 1, 0);
    if (*result == R1_OK) *result = r1_fail(R1_EFORMAT, "%s", what);
}

r1_status check_golden_manifest(const char *component, check_summary *summary) {
    const char *root = check_golden_dir();
    char path[4600];
    snprintf(path, sizeof path, "%s/MANIFEST", root);
    FILE *manifest = fopen(path, "r");
    if (!manifest) {
        summary->cases_total += 1;
        printf("  FAIL %s: cannot read it, so golden/%s/ cannot be verified\n", path, component);
        check_note_error(summary, "golden/MANIFEST unreadable", 1, 0);
        return r1_fail(R1_EIO, "cannot read %s to verify golden/%s/", path, component);
    }
    char prefix[256];
    snprintf(prefix, sizeof prefix, "golden/%s/", component);
    size_t prefix_length = strlen(prefix);
    char **listed = NULL;
    int listed_count = 0;
    r1_status result = R1_OK;
    char line[8192];
    while (fgets(line, sizeof line, manifest)) {
        char *start = line + strspn(line, " \t");
        size_t length = strcspn(start, " \t\r\n");
        if (length <= prefix_length || strncmp(start, prefix, prefix_length) != 0) continue;
        start[length] = '\0';
        char *name = start + prefix_length;
        listed = realloc(listed, (size_t)(listed_count + 1) * sizeof *listed);
        listed[listed_count++] = strdup(name);
        struct stat info;
        snprintf(path, sizeof path, "%s/%s/%s", root, component, name);
        if (stat(path, &info) != 0 || !S_ISREG(info.st_mode))
            manifest_problem(summary, &result, component, name,
                             "listed in golden/MANIFEST but missing (regenerate it with the "
                             "script MANIFEST names)");
    }
    fclose(manifest);
    qsort(listed, (size_t)listed_count, sizeof *listed, manifest_compare);
    snprintf(path, sizeof path, "%s/%s", root, component);
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            const char *name = entry->d_name;
            size_t length = strlen(name);
            if (name[0] == '.' || strncmp(name, "README", 6) == 0 ||
                (length > 3 && strcmp(name + length - 3, ".md") == 0))
                continue;
            char file[4600 + 260];
            struct stat info;
            snprintf(file, sizeof file, "%s/%s", path, name);
            if (stat(file, &info) != 0 || !S_ISREG(info.st_mode)) continue;
            if (!bsearch(&name, listed, (size_t)listed_count, sizeof *listed, manifest_compare))
                manifest_problem(summary, &result, component, name,
                                 "present but not listed in golden/MANIFEST (add its line, or "
                                 "delete the file)");
        }
        closedir(dir);
    }
    for (int i = 0; i < listed_count; ++i) free(listed[i]);
    free(listed);
    return result;
}

void *check_device_copy_of(const void *host, size_t bytes, r1_status *status) {
    void *device = NULL;
    if (*status != R1_OK || host == NULL || bytes == 0) return NULL;
    *status = r1_device_alloc(&device, bytes);
    if (*status == R1_OK) *status = r1_device_copy(device, host, bytes, R1_HOST_TO_DEVICE);
    return device;
}

void check_copy_back(void *host, const void *device, size_t bytes, r1_status *status) {
    if (host == NULL || device == NULL) return;
    r1_status copied = r1_device_copy(host, device, bytes, R1_DEVICE_TO_HOST);
    if ((*status == R1_OK || *status == R1_ENUMERIC) && copied != R1_OK) *status = copied;
}

const check_component *const *check_components(int *count) {
    static const check_component *const list[] = {
        &check_component_sampling, &check_component_answer, &check_component_kd,
        &check_component_moe,      &check_component_mla,    &check_component_qgemm,
    };
    *count = (int)(sizeof list / sizeof list[0]);
    return list;
}
