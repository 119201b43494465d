/*
 * core/sampling.c — the public sampling entry points: validate once, then
 * dispatch to ref/, fast/ or kernels/. Semantics are in r1lab/sampling.h.
 */
#include <math.h>
#include <stdlib.h>

#include "core/internal.h"

r1_sampling_params r1_sampling_params_default(void) {
    r1_sampling_params params = {
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = 0,
        .step = 0,
    };
    return params;
}

static r1_status validate_row_params(const r1_sampling_params *p, int64_t row) {
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return r1_fail(R1_EINVAL, "params[%lld].temperature = %g: must be finite and >= 0",
                       (long long)row, (double)p->temperature);
    if (p->top_k < 0)
        return r1_fail(R1_EINVAL, "params[%lld].top_k = %d: must be >= 0 (0 = off)",
                       (long long)row, p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return r1_fail(R1_EINVAL, "params[%lld].top_p = %g: must be in (0, 1] (1 = off)",
                       (long long)row, (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return r1_fail(R1_EINVAL, "params[%lld].min_p = %g: must be in [0, 1) (0 = off)",
                       (long long)row, (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return r1_fail(R1_EINVAL,
                       "params[%lld].repetition_penalty = %g: must be finite and > 0 (1 = off)",
                       (long long)row, (double)p->repetition_penalty);
    if (!isfinite(p->presence_penalty))
        return r1_fail(R1_EINVAL, "params[%lld].presence_penalty = %g: must be finite",
                       (long long)row, (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return r1_fail(R1_EINVAL, "params[%lld].frequency_penalty = %g: must be finite",
                       (long long)row, (double)p->frequency_penalty);
    return R1_OK;
}

static r1_status validate_history(const r1_sampling_desc *desc) {
    if (desc->history_offsets == NULL) {
        if (desc->history != NULL)
            return r1_fail(R1_EINVAL, "history is set but history_offsets is NULL");
        return R1_OK;
    }
    const int64_t *offsets = desc->history_offsets;
    if (offsets[0] != 0)
        return r1_fail(R1_EINVAL, "history_offsets[0] = %lld: must be 0", (long long)offsets[0]);
    for (int64_t b = 0; b < desc->batch; ++b) {
        if (offsets[b + 1] < offsets[b])
            return r1_fail(R1_EINVAL,
                           "history_offsets[%lld] = %lld is below history_offsets[%lld] = %lld: "
                           "offsets must not decrease",
                           (long long)(b + 1), (long long)offsets[b + 1], (long long)b,
                           (long long)offsets[b]);
    }
    int64_t total = offsets[desc->batch];
    if (total > 0 && desc->history == NULL)
        return r1_fail(R1_EINVAL, "history_offsets describe %lld ids but history is NULL",
                       (long long)total);
    for (int64_t b = 0; b < desc->batch; ++b) {
        for (int64_t j = offsets[b]; j < offsets[b + 1]; ++j) {
            int32_t id = desc->history[j];
            if (id < 0 || id >= desc->vocab)
                return r1_fail(R1_EINVAL,
                               "history[%lld] = %d (row %lld): token id outside [0, vocab = %lld)",
                               (long long)j, id, (long long)b, (long long)desc->vocab);
        }
    }
    return R1_OK;
}

r1_status r1_sampling_validate(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (desc->batch <= 0)
        return r1_fail(R1_EINVAL, "batch = %lld: must be > 0", (long long)desc->batch);
    if (desc->vocab <= 0 || desc->vocab > INT32_MAX)
        return r1_fail(R1_EINVAL, "vocab = %lld: must be in [1, 2^31 - 1]",
                       (long long)desc->vocab);
    if (desc->logits_dtype != R1_F32 && desc->logits_dtype != R1_BF16)
        return r1_fail(R1_EINVAL, "logits_dtype = %s: sampling takes f32 or bf16 logits",
                       r1_dtype_name(desc->logits_dtype));
    if (desc->params == NULL) return r1_fail(R1_EINVAL, "desc->params is NULL");
    if (logits == NULL) return r1_fail(R1_EINVAL, "logits is NULL");
    if (out == NULL || out->tokens == NULL) return r1_fail(R1_EINVAL, "out->tokens is NULL");
    if (desc->top_logprobs < 0 || desc->top_logprobs > R1_SAMPLING_MAX_TOP_LOGPROBS)
        return r1_fail(R1_EINVAL, "top_logprobs = %d: must be in [0, %d]", desc->top_logprobs,
                       R1_SAMPLING_MAX_TOP_LOGPROBS);
    if (desc->top_logprobs > desc->vocab)
        return r1_fail(R1_EINVAL, "top_logprobs = %d exceeds vocab = %lld", desc->top_logprobs,
                       (long long)desc->vocab);
    if (desc->top_logprobs > 0 && (out->top_ids == NULL || out->top_logprobs == NULL))
        return r1_fail(R1_EINVAL,
                       "top_logprobs = %d but out->top_ids or out->top_logprobs is NULL",
                       desc->top_logprobs);
    for (int64_t b = 0; b < desc->batch; ++b) {
        r1_status status = validate_row_params(&desc->params[b], b);
        if (status != R1_OK) return status;
    }
    return validate_history(desc);
}

size_t r1_sampling_workspace_size(r1_backend backend, const r1_sampling_desc *desc) {
    if (desc == NULL || desc->batch <= 0 || desc->vocab <= 0) return 0;
    switch (backend) {
    case R1_REF: return sampling_workspace_size_ref(desc);
    case R1_FAST: return sampling_workspace_size_fast(desc);
    case R1_CUDA: return r1_cuda_built() ? sampling_workspace_size_cuda(desc) : 0;
    }
    return 0;
}

void sampling_write_invalid_row(const r1_sampling_outputs *out, int64_t b, size_t V,
                                int32_t n) {
    out->tokens[b] = -1;
    if (out->logprobs) out->logprobs[b] = NAN;
    if (out->filtered_probs)
        for (size_t i = 0; i < V; ++i) out->filtered_probs[(size_t)b * V + i] = NAN;
    for (int32_t j = 0; j < n; ++j) {
        out->top_ids[(size_t)b * (size_t)n + (size_t)j] = -1;
        out->top_logprobs[(size_t)b * (size_t)n + (size_t)j] = NAN;
    }
}

r1_status sampling_report_invalid_rows(const int32_t *tokens, int64_t batch) {
    int64_t first = -1, count = 0;
    for (int64_t b = 0; b < batch; ++b) {
        if (tokens[b] < 0) {
            if (first < 0) first = b;
            ++count;
        }
    }
    if (count == 0) return R1_OK;
    return r1_fail(R1_ENUMERIC,
                   "row %lld (and %lld more) has NaN or +inf logits after penalties and "
                   "temperature, or is entirely -inf: token -1",
                   (long long)first, (long long)(count - 1));
}

r1_status r1_sampling_sample(r1_backend backend, const r1_sampling_desc *desc,
                             const void *logits, const r1_sampling_outputs *out,
                             void *workspace, size_t workspace_bytes, void *stream) {
    r1_status status = r1_sampling_validate(desc, logits, out);
    if (status != R1_OK) return status;
    status = r1_check_backend(backend);
    if (status != R1_OK) return status;

    void *owned = NULL;
    status = r1_workspace_acquire(backend, r1_sampling_workspace_size(backend, desc), &workspace,
                                  workspace_bytes, &owned);
    if (status != R1_OK) return status;

    switch (backend) {
    case R1_REF: status = sampling_sample_ref(desc, logits, out, workspace); break;
    case R1_FAST: status = sampling_sample_fast(desc, logits, out, workspace); break;
    case R1_CUDA: status = sampling_sample_cuda(desc, logits, out, workspace, stream); break;
    }

    return r1_workspace_release(backend, owned, status);
}

#ifndef R1LAB_HAVE_CUDA
/* CPU-only build: the CUDA backend is absent (r1_sampling_sample returns
 * R1_EUNSUPPORTED before reaching these). */
size_t sampling_workspace_size_cuda(const r1_sampling_desc *desc) { return 0; }
r1_status sampling_sample_cuda(const r1_sampling_desc *desc, const void *logits,
                               const r1_sampling_outputs *out, void *workspace,
                               void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
#endif
