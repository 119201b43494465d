/*
 * tests/fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Each input is handed to r1_safetensors_parse() as a whole file. Whatever it
 * is, the call must return R1_OK or R1_EFORMAT (never crash, leak or read out
 * of bounds). When it is accepted, every tensor is walked: found by name,
 * checked with expect, and every data byte read; every metadata entry is
 * looked up. Then the file is written back with the writer and read again,
 * which must give the same tensors (names the writer refuses, such as "" or
 * invalid UTF-8, skip this step).
 *
 *   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DR1LAB_FUZZ=ON -DR1LAB_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_safetensors
 *   build-fuzz/fuzz_safetensors -max_total_time=60
 */
#define _POSIX_C_SOURCE 200809L /* getpid */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "r1lab/safetensors.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_safetensors: %s (%s)\n", what, r1_last_error());
    abort();
}

/* Count of elements of a tensor (the reader guarantees it fits). */
static int64_t element_count(const r1_tensor_info *info) {
    int64_t count = 1;
    for (int d = 0; d < info->rank; ++d) count *= info->shape[d];
    return count;
}

/* Writes `file` back out and checks that reading it again gives the same tensors. */
static void check_round_trip(const r1_safetensors *file) {
    r1_safetensors_writer *writer = NULL;
    if (r1_safetensors_writer_create(&writer) != R1_OK) fail("writer_create");
    for (int i = 0; i < r1_safetensors_count(file); ++i) {
        const r1_tensor_info *info = r1_safetensors_info(file, i);
        const void *data = NULL;
        if (r1_safetensors_find(file, info->name, NULL, &data) != R1_OK) fail("find");
        if (r1_safetensors_writer_add(writer, info->name, info->dtype, info->rank, info->shape,
                                      data) != R1_OK) {
            r1_safetensors_writer_free(writer); /* a name the writer refuses */
            return;
        }
    }
    for (int i = 0; i < r1_safetensors_metadata_count(file); ++i) {
        const char *key, *value;
        if (r1_safetensors_metadata_entry(file, i, &key, &value) != R1_OK) fail("metadata_entry");
        if (r1_safetensors_writer_set_metadata(writer, key, value) != R1_OK) {
            r1_safetensors_writer_free(writer);
            return;
        }
    }
    char path[128];
    snprintf(path, sizeof path, "/tmp/fuzz_safetensors_%ld.safetensors", (long)getpid());
    if (r1_safetensors_writer_save(writer, path) != R1_OK) fail("save");
    r1_safetensors_writer_free(writer);
    r1_safetensors *again = NULL;
    if (r1_safetensors_open(path, &again) != R1_OK) fail("reopening a file the writer wrote");
    if (r1_safetensors_count(again) != r1_safetensors_count(file)) fail("tensor count changed");
    for (int i = 0; i < r1_safetensors_count(file); ++i) {
        const r1_tensor_info *info = r1_safetensors_info(file, i), *info_again = NULL;
        const void *data = NULL, *data_again = NULL;
        r1_safetensors_find(file, info->name, NULL, &data);
        if (r1_safetensors_find(again, info->name, &info_again, &data_again) != R1_OK)
            fail("tensor lost in the round trip");
        if (info_again->dtype != info->dtype || info_again->rank != info->rank ||
            memcmp(info_again->shape, info->shape, sizeof info->shape) != 0 ||
            info_again->bytes != info->bytes || memcmp(data, data_again, info->bytes) != 0)
            fail("tensor changed in the round trip");
    }
    r1_safetensors_close(again);
    remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    r1_safetensors *file = NULL;
    r1_status status = r1_safetensors_parse(bytes, size, &file);
    if (status != R1_OK) {
        if (status != R1_EFORMAT && status != R1_ENOMEM) fail("unexpected status");
        if (file != NULL) fail("*out set on failure");
        return 0;
    }
    unsigned checksum = 0;
    for (int i = 0; i < r1_safetensors_count(file); ++i) {
        const r1_tensor_info *info = r1_safetensors_info(file, i);
        const void *data = NULL;
        if (info == NULL || r1_safetensors_find(file, info->name, NULL, &data) != R1_OK)
            fail("an accepted tensor cannot be found");
        if (r1_safetensors_expect(file, info->name, info->dtype, element_count(info), NULL) != R1_OK)
            fail("expect disagrees with info");
        for (uint64_t b = 0; b < info->bytes; ++b) checksum += ((const uint8_t *)data)[b];
        if (i > 0 && r1_safetensors_info(file, i - 1)->offset > info->offset)
            fail("infos not in offset order");
    }
    for (int i = 0; i < r1_safetensors_metadata_count(file); ++i) {
        const char *key, *value;
        if (r1_safetensors_metadata_entry(file, i, &key, &value) != R1_OK) fail("metadata_entry");
        if (r1_safetensors_metadata(file, key) == NULL) fail("metadata key not found");
    }
    (void)checksum;
    check_round_trip(file);
    r1_safetensors_close(file);
    return 0;
}
