/*
 * core/kd.c — the public kd entry points: validate once, then dispatch to
 * ref/, fast/ or kernels/. Semantics are in r1lab/kd.h.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

r1_kd_desc r1_kd_desc_default(void) {
    r1_kd_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.dtype = R1_F32;
    desc.gamma = 1.0f;
    desc.temperature = 1.0f;
    desc.beta = 0.0f;
    desc.ignore_index = -100;
    desc.reduction = R1_KD_MEAN;
    return desc;
}

void kd_report_note(kd_report *report, int64_t t, int reason) {
    if (reason == KD_ROW_OK) return;
    report->count += 1;
    if (report->first < 0 || t < report->first) {
        report->first = t;
        report->reason = reason;
    }
}

int64_t kd_counted_tokens(const r1_kd_desc *desc, const int32_t *labels) {
    if (labels == NULL) return desc->tokens;
    int64_t counted = 0;
    for (int64_t t = 0; t < desc->tokens; ++t) counted += labels[t] != desc->ignore_index;
    return counted;
}

r1_status kd_fail_label(int64_t t, int32_t label, int64_t vocab, int32_t ignore_index) {
    return r1_fail(R1_EINVAL, "labels[%lld] = %d: outside [0, vocab = %lld) and not ignore_index = %d",
                   (long long)t, label, (long long)vocab, ignore_index);
}

r1_status kd_fail_sparse_id(int64_t t, int32_t j, int32_t id, int64_t vocab, int repeated) {
    if (repeated)
        return r1_fail(R1_EINVAL, "teacher_ids[%lld, %d] = %d repeats an earlier id of token %lld",
                       (long long)t, j, id, (long long)t);
    return r1_fail(R1_EINVAL, "teacher_ids[%lld, %d] = %d: outside [0, vocab = %lld)",
                   (long long)t, j, id, (long long)vocab);
}

/* a * b <= R1_KD_MAX_ELEMENTS, for a, b in [1, 2^31 - 1] (no overflow: the
 * division tests it). */
static int product_fits(int64_t a, int64_t b) { return a <= R1_KD_MAX_ELEMENTS / b; }

static r1_status check_product(const char *what, int64_t a, int64_t b) {
    if (product_fits(a, b)) return R1_OK;
    return r1_fail(R1_EINVAL, "%s = %lld * %lld elements: more than 2^56, so its byte count "
                   "does not fit in size_t", what, (long long)a, (long long)b);
}

static r1_status validate_parameters(const r1_kd_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (desc->tokens <= 0 || desc->tokens > INT32_MAX)
        return r1_fail(R1_EINVAL, "tokens = %lld: must be in [1, 2^31 - 1]",
                       (long long)desc->tokens);
    if (desc->vocab <= 0 || desc->vocab > INT32_MAX)
        return r1_fail(R1_EINVAL, "vocab = %lld: must be in [1, 2^31 - 1]", (long long)desc->vocab);
    r1_status status = check_product("tokens * vocab (the logits)", desc->tokens, desc->vocab);
    if (status != R1_OK) return status;
    if (desc->dtype != R1_F32 && desc->dtype != R1_BF16)
        return r1_fail(R1_EINVAL, "dtype = %s: kd takes f32 or bf16", r1_dtype_name(desc->dtype));
    /* Below FLT_MIN (a subnormal T) 1/T overflows float32, which the fast and
     * cuda backends multiply by: such a T is refused for every backend. */
    if (!(desc->temperature >= FLT_MIN) || !isfinite(desc->temperature))
        return r1_fail(R1_EINVAL, "temperature = %g: must be finite and >= %g (FLT_MIN)",
                       (double)desc->temperature, (double)FLT_MIN);
    if (!(desc->gamma >= 0.0f && desc->gamma <= 1.0f))
        return r1_fail(R1_EINVAL, "gamma = %g: must be in [0, 1]", (double)desc->gamma);
    if (!(desc->beta >= 0.0f && desc->beta <= 1.0f))
        return r1_fail(R1_EINVAL, "beta = %g: must be in [0, 1] (0 forward KL, 1 reverse KL)",
                       (double)desc->beta);
    if (desc->reduction != R1_KD_MEAN && desc->reduction != R1_KD_SUM &&
        desc->reduction != R1_KD_NONE)
        return r1_fail(R1_EINVAL, "reduction = %d: expected R1_KD_MEAN, R1_KD_SUM or R1_KD_NONE",
                       (int)desc->reduction);
    if (desc->teacher_topk < 0 || desc->teacher_topk > desc->vocab)
        return r1_fail(R1_EINVAL, "teacher_topk = %d: must be in [0, vocab = %lld] (0 = dense)",
                       desc->teacher_topk, (long long)desc->vocab);
    return R1_OK;
}

/* Labels and sparse ids in host memory (ref / fast). */
static r1_status validate_host_indices(const r1_kd_desc *desc, const int32_t *labels,
                                       const int32_t *ids) {
    const int64_t N = desc->tokens, V = desc->vocab;
    if (labels) {
        for (int64_t t = 0; t < N; ++t) {
            int32_t y = labels[t];
            if (y != desc->ignore_index && (y < 0 || y >= V))
                return kd_fail_label(t, y, V, desc->ignore_index);
        }
    }
    const int32_t k = desc->teacher_topk;
    if (k > 0) {
        for (int64_t t = 0; t < N; ++t) {
            const int32_t *row = ids + t * k;
            for (int32_t j = 0; j < k; ++j) {
                if (row[j] < 0 || row[j] >= V) return kd_fail_sparse_id(t, j, row[j], V, 0);
                for (int32_t i = 0; i < j; ++i)
                    if (row[i] == row[j]) return kd_fail_sparse_id(t, j, row[j], V, 1);
            }
        }
    }
    return R1_OK;
}

static r1_status validate_common(const r1_kd_desc *desc, const int32_t *labels,
                                 const void *teacher_logits, const int32_t *ids,
                                 const float *logprobs, int teacher_from_hidden,
                                 const float *loss, const float *token_losses) {
    r1_status status = validate_parameters(desc);
    if (status != R1_OK) return status;
    if (labels == NULL && desc->gamma < 1.0f)
        return r1_fail(R1_EINVAL, "labels is NULL but gamma = %g < 1 needs labels for the "
                       "cross-entropy term", (double)desc->gamma);
    if (desc->teacher_topk > 0) {
        if (teacher_from_hidden)
            return r1_fail(R1_EINVAL, "teacher_topk = %d with a teacher given as hidden states: "
                           "choose one teacher form", desc->teacher_topk);
        if (ids == NULL || logprobs == NULL)
            return r1_fail(R1_EINVAL, "teacher_topk = %d but teacher_ids or teacher_logprobs is NULL",
                           desc->teacher_topk);
    } else if (!teacher_from_hidden && teacher_logits == NULL) {
        return r1_fail(R1_EINVAL, "teacher_logits is NULL (dense teacher, teacher_topk = 0)");
    }
    if (loss == NULL) return r1_fail(R1_EINVAL, "out->loss is NULL");
    if (desc->reduction == R1_KD_NONE && token_losses == NULL)
        return r1_fail(R1_EINVAL, "reduction = R1_KD_NONE but out->token_losses is NULL");
    return R1_OK;
}

r1_status r1_kd_validate(const r1_kd_desc *desc, const r1_kd_inputs *in,
                         const r1_kd_outputs *out) {
    if (in == NULL) return r1_fail(R1_EINVAL, "in is NULL");
    if (out == NULL) return r1_fail(R1_EINVAL, "out is NULL");
    r1_status status = validate_common(desc, in->labels, in->teacher_logits, in->teacher_ids,
                                       in->teacher_logprobs, 0, out->loss, out->token_losses);
    if (status != R1_OK) return status;
    if (in->student_logits == NULL) return r1_fail(R1_EINVAL, "student_logits is NULL");
    if (out->grad != NULL) {
        const size_t N = (size_t)desc->tokens, V = (size_t)desc->vocab;
        const size_t k = (size_t)desc->teacher_topk;
        const size_t bytes = r1_dtype_bytes(desc->dtype, N * V);
        const void *g = out->grad;
        if (desc->teacher_topk == 0) {
            if (r1_ranges_overlap(g, bytes, in->teacher_logits, bytes))
                return r1_fail(R1_EINVAL, "out->grad overlaps teacher_logits: they must not "
                               "overlap (the gradient may only overwrite the student logits)");
        } else {
            if ((status = r1_check_no_overlap("out->grad", g, bytes, "teacher_ids",
                                              in->teacher_ids, N * k * sizeof(int32_t))) != R1_OK ||
                (status = r1_check_no_overlap("out->grad", g, bytes, "teacher_logprobs",
                                              in->teacher_logprobs, N * k * sizeof(float))) != R1_OK)
                return status;
        }
        if (g != in->student_logits &&
            (status = r1_check_no_overlap("out->grad", g, bytes, "student_logits",
                                          in->student_logits, bytes)) != R1_OK)
            return status;
        if ((status = r1_check_no_overlap("out->grad", g, bytes, "labels", in->labels,
                                          in->labels ? N * sizeof(int32_t) : 0)) != R1_OK ||
            (status = r1_check_no_overlap("out->grad", g, bytes, "out->loss", out->loss,
                                          sizeof(float))) != R1_OK ||
            (status = r1_check_no_overlap("out->grad", g, bytes, "out->token_losses",
                                          out->token_losses, N * sizeof(float))) != R1_OK)
            return status;
    }
    return R1_OK;
}

/* The fused form's sizes: d, dt and the chunk bounded, and every (N, d),
 * (V, d), (N, dt), (V, dt) tensor within R1_KD_MAX_ELEMENTS (with N * V, which
 * validate_parameters checks, this bounds every backend's workspace). */
static r1_status validate_linear_shape(const r1_kd_linear_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    r1_status status = validate_parameters(&desc->kd);
    if (status != R1_OK) return status;
    if (desc->hidden <= 0 || desc->hidden > INT32_MAX)
        return r1_fail(R1_EINVAL, "hidden = %lld: must be in [1, 2^31 - 1]",
                       (long long)desc->hidden);
    if (desc->teacher_hidden < 0 || desc->teacher_hidden > INT32_MAX)
        return r1_fail(R1_EINVAL, "teacher_hidden = %lld: must be in [0, 2^31 - 1] (0 = teacher "
                       "as logits)", (long long)desc->teacher_hidden);
    if (desc->chunk_tokens < 0 || desc->chunk_tokens > INT32_MAX)
        return r1_fail(R1_EINVAL, "chunk_tokens = %lld: must be in [0, 2^31 - 1] (0 = backend's "
                       "choice)", (long long)desc->chunk_tokens);
    const int64_t N = desc->kd.tokens, V = desc->kd.vocab;
    if ((status = check_product("tokens * hidden (student_hidden)", N, desc->hidden)) != R1_OK ||
        (status = check_product("vocab * hidden (student_weight)", V, desc->hidden)) != R1_OK)
        return status;
    if (desc->teacher_hidden > 0 &&
        ((status = check_product("tokens * teacher_hidden (teacher_hidden)", N,
                                 desc->teacher_hidden)) != R1_OK ||
         (status = check_product("vocab * teacher_hidden (teacher_weight)", V,
                                 desc->teacher_hidden)) != R1_OK))
        return status;
    return R1_OK;
}

r1_status r1_kd_linear_validate(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                                const r1_kd_linear_outputs *out) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (in == NULL) return r1_fail(R1_EINVAL, "in is NULL");
    if (out == NULL) return r1_fail(R1_EINVAL, "out is NULL");
    r1_status status = validate_linear_shape(desc);
    if (status != R1_OK) return status;
    int from_hidden = desc->teacher_hidden > 0;
    status = validate_common(&desc->kd, in->labels, in->teacher_logits, in->teacher_ids,
                                       in->teacher_logprobs, from_hidden, out->loss,
                                       out->token_losses);
    if (status != R1_OK) return status;
    if (in->student_hidden == NULL || in->student_weight == NULL)
        return r1_fail(R1_EINVAL, "student_hidden or student_weight is NULL");
    if (from_hidden && (in->teacher_hidden == NULL || in->teacher_weight == NULL))
        return r1_fail(R1_EINVAL, "teacher_hidden = %lld but in->teacher_hidden or "
                       "in->teacher_weight is NULL", (long long)desc->teacher_hidden);
    /* Outputs (f32) must not overlap any input nor each other. */
    const size_t N = (size_t)desc->kd.tokens, V = (size_t)desc->kd.vocab;
    const size_t d = (size_t)desc->hidden, dt = (size_t)desc->teacher_hidden;
    const size_t k = (size_t)desc->kd.teacher_topk;
    const r1_dtype dtype = desc->kd.dtype;
    struct { const char *name; const void *ptr; size_t bytes; } inputs[] = {
        {"student_hidden", in->student_hidden, r1_dtype_bytes(dtype, N * d)},
        {"student_weight", in->student_weight, r1_dtype_bytes(dtype, V * d)},
        {"teacher_hidden", from_hidden ? in->teacher_hidden : NULL,
         r1_dtype_bytes(dtype, N * dt)},
        {"teacher_weight", from_hidden ? in->teacher_weight : NULL,
         r1_dtype_bytes(dtype, V * dt)},
        {"teacher_logits", (!from_hidden && k == 0) ? in->teacher_logits : NULL,
         r1_dtype_bytes(dtype, N * V)},
        {"teacher_ids", k > 0 ? (const void *)in->teacher_ids : NULL, N * k * sizeof(int32_t)},
        {"teacher_logprobs", k > 0 ? (const void *)in->teacher_logprobs : NULL,
         N * k * sizeof(float)},
        {"labels", in->labels, N * sizeof(int32_t)},
    };
    struct { const char *name; const void *ptr; size_t bytes; } outputs[] = {
        {"out->grad_hidden", out->grad_hidden, N * d * sizeof(float)},
        {"out->grad_weight", out->grad_weight, V * d * sizeof(float)},
    };
    for (size_t o = 0; o < sizeof outputs / sizeof outputs[0]; ++o) {
        if (outputs[o].ptr == NULL) continue;
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; ++i)
            if ((status = r1_check_no_overlap(outputs[o].name, outputs[o].ptr, outputs[o].bytes,
                                              inputs[i].name, inputs[i].ptr,
                                              inputs[i].bytes)) != R1_OK)
                return status;
        if ((status = r1_check_no_overlap(outputs[o].name, outputs[o].ptr, outputs[o].bytes,
                                          "out->loss", out->loss, sizeof(float))) != R1_OK ||
            (status = r1_check_no_overlap(outputs[o].name, outputs[o].ptr, outputs[o].bytes,
                                          "out->token_losses", out->token_losses,
                                          N * sizeof(float))) != R1_OK)
            return status;
    }
    if ((status = r1_check_no_overlap("out->grad_hidden", out->grad_hidden, N * d * sizeof(float),
                                      "out->grad_weight", out->grad_weight,
                                      V * d * sizeof(float))) != R1_OK)
        return status;
    return R1_OK;
}

size_t r1_kd_workspace_size(r1_backend backend, const r1_kd_desc *desc) {
    if (validate_parameters(desc) != R1_OK) return 0;
    switch (backend) {
    case R1_REF: return kd_workspace_size_ref(desc);
    case R1_FAST: return kd_workspace_size_fast(desc);
    case R1_CUDA: return r1_cuda_built() ? kd_workspace_size_cuda(desc) : 0;
    }
    return 0;
}

size_t r1_kd_linear_workspace_size(r1_backend backend, const r1_kd_linear_desc *desc) {
    if (validate_linear_shape(desc) != R1_OK) return 0;
    switch (backend) {
    case R1_REF: return kd_linear_workspace_size_ref(desc);
    case R1_FAST: return kd_linear_workspace_size_fast(desc);
    case R1_CUDA: return r1_cuda_built() ? kd_linear_workspace_size_cuda(desc) : 0;
    }
    return 0;
}

static const char *reason_sentence(int reason) {
    switch (reason) {
    case KD_BAD_STUDENT: return "a student logit is NaN or infinite";
    case KD_BAD_TEACHER: return "a teacher logit (or logprob) is NaN or +inf";
    case KD_TEACHER_EMPTY: return "the teacher row is entirely -inf (no probability anywhere)";
    case KD_REVERSE_INFINITE:
        return "beta = 1 (reverse KL) and the teacher gives probability 0 to an entry the "
               "student does not: KL(q || p) is infinite";
    }
    return "unknown reason";
}

static r1_status report_status(const kd_report *report) {
    if (report->first < 0) return R1_OK;
    return r1_fail(R1_ENUMERIC, "token %lld (and %lld more): %s; its loss is NaN and its "
                   "gradient 0", (long long)report->first, (long long)(report->count - 1),
                   reason_sentence(report->reason));
}

r1_status r1_kd_loss(r1_backend backend, const r1_kd_desc *desc, const r1_kd_inputs *in,
                     const r1_kd_outputs *out, void *workspace, size_t workspace_bytes,
                     void *stream) {
    r1_status status = r1_kd_validate(desc, in, out);
    if (status == R1_OK) status = r1_check_backend(backend);
    if (status == R1_OK && backend != R1_CUDA)
        status = validate_host_indices(desc, in->labels, in->teacher_ids);
    if (status != R1_OK) return status;
    void *owned = NULL;
    status = r1_workspace_acquire(backend, r1_kd_workspace_size(backend, desc), &workspace,
                           workspace_bytes, &owned);
    if (status != R1_OK) return status;
    kd_report report = {-1, 0, 0};
    switch (backend) {
    case R1_REF: status = kd_loss_ref(desc, in, out, workspace, &report); break;
    case R1_FAST: status = kd_loss_fast(desc, in, out, workspace, &report); break;
    case R1_CUDA: status = kd_loss_cuda(desc, in, out, workspace, &report, stream); break;
    }
    if (status == R1_OK) status = report_status(&report);
    return r1_workspace_release(backend, owned, status);
}

r1_status r1_kd_linear(r1_backend backend, const r1_kd_linear_desc *desc,
                       const r1_kd_linear_inputs *in, const r1_kd_linear_outputs *out,
                       void *workspace, size_t workspace_bytes, void *stream) {
    r1_status status = r1_kd_linear_validate(desc, in, out);
    if (status == R1_OK) status = r1_check_backend(backend);
    if (status == R1_OK && backend != R1_CUDA)
        status = validate_host_indices(&desc->kd, in->labels, in->teacher_ids);
    if (status != R1_OK) return status;
    void *owned = NULL;
    status = r1_workspace_acquire(backend, r1_kd_linear_workspace_size(backend, desc), &workspace,
                           workspace_bytes, &owned);
    if (status != R1_OK) return status;
    kd_report report = {-1, 0, 0};
    switch (backend) {
    case R1_REF: status = kd_linear_ref(desc, in, out, workspace, &report); break;
    case R1_FAST: status = kd_linear_fast(desc, in, out, workspace, &report); break;
    case R1_CUDA: status = kd_linear_cuda(desc, in, out, workspace, &report, stream); break;
    }
    if (status == R1_OK) status = report_status(&report);
    return r1_workspace_release(backend, owned, status);
}

#ifndef R1LAB_HAVE_CUDA
/* CPU-only build: the CUDA backend is absent (the entry points return
 * R1_EUNSUPPORTED before reaching these). */
size_t kd_workspace_size_cuda(const r1_kd_desc *desc) { return 0; }
r1_status kd_loss_cuda(const r1_kd_desc *desc, const r1_kd_inputs *in, const r1_kd_outputs *out,
                       void *workspace, kd_report *report, void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
size_t kd_linear_workspace_size_cuda(const r1_kd_linear_desc *desc) { return 0; }
r1_status kd_linear_cuda(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                         const r1_kd_linear_outputs *out, void *workspace, kd_report *report,
                         void *stream) {
    return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA");
}
#endif
