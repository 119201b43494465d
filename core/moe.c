/*
 * core/moe.c — the public moe entry points: validate once (the BAD INPUT rules
 * of r1lab/moe.h), then dispatch to ref/, fast/ or kernels/.
 */
#include <math.h>
#include <stdlib.h>

#include "core/internal.h"
#include "core/moe_math.h"

r1_moe_desc r1_moe_desc_default(void) {
    r1_moe_desc desc = {
        .tokens = 1,
        .experts = 256,
        .top_k = 8,
        .n_group = 8,
        .topk_group = 4,
        .routing = R1_MOE_NOAUX_TC,
        .norm_topk_prob = 1,
        .routed_scaling_factor = 2.5f,
        .hidden = 7168,
        .block_size = 64,
        .asynchronous = 0,
    };
    return desc;
}

float r1_moe_expf(float x) { return r1_moe_exp_inline(x); }
float r1_moe_sigmoidf(float x) { return r1_moe_sigmoid_inline(x); }

static r1_status check_block_size(const r1_moe_desc *desc) {
    if (desc->block_size <= 0 || desc->block_size > R1_MOE_MAX_BLOCK_SIZE)
        return r1_fail(R1_EINVAL, "block_size = %d: must be in [1, %d]", desc->block_size,
                       R1_MOE_MAX_BLOCK_SIZE);
    return R1_OK;
}

/* 0 (with the sentence in r1_last_error) for a descriptor that fails
 * r1_moe_validate or has block_size outside [1, R1_MOE_MAX_BLOCK_SIZE]; with
 * those bounds T * K + E * (B - 1) < 2^31 + 2^22 cannot overflow. */
int64_t r1_moe_padded_capacity(const r1_moe_desc *desc) {
    if (r1_moe_validate(desc) != R1_OK || check_block_size(desc) != R1_OK) return 0;
    return desc->tokens * desc->top_k + (int64_t)desc->experts * (desc->block_size - 1);
}

r1_status r1_moe_validate(const r1_moe_desc *desc) {
    if (desc == NULL) return r1_fail(R1_EINVAL, "desc is NULL");
    if (desc->tokens <= 0 || desc->tokens > R1_MOE_MAX_TOKENS)
        return r1_fail(R1_EINVAL, "tokens = %lld: must be in [1, %d]", (long long)desc->tokens,
                       R1_MOE_MAX_TOKENS);
    if (desc->experts <= 0 || desc->experts > R1_MOE_MAX_EXPERTS)
        return r1_fail(R1_EINVAL, "experts = %d: must be in [1, %d]", desc->experts,
                       R1_MOE_MAX_EXPERTS);
    if (desc->top_k <= 0 || desc->top_k > R1_MOE_MAX_TOP_K)
        return r1_fail(R1_EINVAL, "top_k = %d: must be in [1, %d]", desc->top_k,
                       R1_MOE_MAX_TOP_K);
    if (desc->top_k > desc->experts)
        return r1_fail(R1_EINVAL, "top_k = %d exceeds experts = %d", desc->top_k,
                       desc->experts);
    if (desc->routing != R1_MOE_SOFTMAX_TOPK && desc->routing != R1_MOE_GROUP_LIMITED_GREEDY &&
        desc->routing != R1_MOE_NOAUX_TC)
        return r1_fail(R1_EINVAL,
                       "routing = %d: expected R1_MOE_SOFTMAX_TOPK, "
                       "R1_MOE_GROUP_LIMITED_GREEDY or R1_MOE_NOAUX_TC",
                       (int)desc->routing);
    if (!isfinite(desc->routed_scaling_factor) || !(desc->routed_scaling_factor > 0.0f))
        return r1_fail(R1_EINVAL, "routed_scaling_factor = %g: must be finite and > 0",
                       (double)desc->routed_scaling_factor);
    if (desc->routing != R1_MOE_SOFTMAX_TOPK) {
        if (desc->n_group <= 0)
            return r1_fail(R1_EINVAL, "n_group = %d: must be > 0", desc->n_group);
        if (desc->experts % desc->n_group != 0)
            return r1_fail(R1_EINVAL, "experts = %d is not a multiple of n_group = %d",
                           desc->experts, desc->n_group);
        if (desc->topk_group <= 0 || desc->topk_group > desc->n_group)
            return r1_fail(R1_EINVAL, "topk_group = %d: must be in [1, n_group = %d]",
                           desc->topk_group, desc->n_group);
        const int64_t reachable = (int64_t)desc->topk_group * (desc->experts / desc->n_group);
        if (desc->top_k > reachable)
            return r1_fail(R1_EINVAL,
                           "top_k = %d exceeds topk_group * experts / n_group = %d * %d = %lld "
                           "experts that the kept groups hold",
                           desc->top_k, desc->topk_group, desc->experts / desc->n_group,
                           (long long)reachable);
        if (desc->routing == R1_MOE_NOAUX_TC && desc->experts / desc->n_group < 2)
            return r1_fail(R1_EINVAL,
                           "n_group = %d leaves groups of %d expert(s): noaux_tc sums the top 2 "
                           "of each group",
                           desc->n_group, desc->experts / desc->n_group);
    }
    return R1_OK;
}

static r1_status check_hidden(const r1_moe_desc *desc) {
    if (desc->hidden <= 0 || desc->hidden > R1_MOE_MAX_HIDDEN)
        return r1_fail(R1_EINVAL, "hidden = %lld: must be in [1, 2^24]", (long long)desc->hidden);
    return R1_OK;
}

static r1_status check_row_dtype(r1_dtype dtype) {
    if (dtype != R1_F32 && dtype != R1_BF16)
        return r1_fail(R1_EINVAL, "dtype = %s: rows must be f32 or bf16", r1_dtype_name(dtype));
    return R1_OK;
}

r1_status moe_check_logits_host(const r1_moe_desc *desc, const float *logits,
                                const float *bias) {
    const int64_t T = desc->tokens, E = desc->experts;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < E; ++e)
            if (!isfinite(logits[t * E + e]))
                return r1_fail(R1_ENUMERIC, "token %lld: logit of expert %lld is %g",
                               (long long)t, (long long)e, (double)logits[t * E + e]);
    if (bias)
        for (int64_t e = 0; e < E; ++e)
            if (!isfinite(bias[e]))
                return r1_fail(R1_ENUMERIC, "bias[%lld] = %g: must be finite", (long long)e,
                               (double)bias[e]);
    return R1_OK;
}

size_t r1_moe_workspace_size(r1_backend backend, const r1_moe_desc *desc) {
    if (r1_moe_validate(desc) != R1_OK) {
        r1_clear_error();
        return 0;
    }
    switch (backend) {
    case R1_REF: return 0;
    case R1_FAST: return moe_dispatch_workspace_size_fast(desc);
    case R1_CUDA: {
        if (!r1_cuda_built()) return 0;
        size_t a = moe_route_workspace_size_cuda(desc), b = moe_dispatch_workspace_size_cuda(desc);
        return a > b ? a : b;
    }
    }
    return 0;
}

/* Allocates the workspace when the caller gave none. */
static r1_status take_workspace(r1_backend backend, const r1_moe_desc *desc, void **workspace,
                                size_t workspace_bytes, void **owned) {
    *owned = NULL;
    size_t needed = r1_moe_workspace_size(backend, desc);
    if (*workspace != NULL && workspace_bytes < needed)
        return r1_fail(R1_EINVAL, "workspace_bytes = %zu: this call needs %zu", workspace_bytes,
                       needed);
    if (*workspace != NULL || needed == 0) return R1_OK;
    if (backend == R1_CUDA) {
        r1_status status = r1_device_alloc(owned, needed);
        if (status != R1_OK) return status;
    } else if ((*owned = malloc(needed)) == NULL) {
        return r1_fail(R1_ENOMEM, "could not allocate %zu bytes of workspace", needed);
    }
    *workspace = *owned;
    return R1_OK;
}

static r1_status give_back_workspace(r1_backend backend, void *owned, r1_status status) {
    if (owned == NULL) return status;
    if (backend == R1_CUDA) {
        r1_status sync = r1_device_synchronize();
        r1_device_free(owned);
        return status == R1_OK ? sync : status;
    }
    free(owned);
    return status;
}

/* ---- overlap rules (see OVERLAP in r1lab/moe.h) ----------------------------- */

typedef struct moe_range { const char *name; const void *ptr; size_t bytes; } moe_range;

/* Each output against every input and every other output. */
static r1_status check_ranges(const moe_range *outputs, size_t n_out, const moe_range *inputs,
                              size_t n_in) {
    r1_status status;
    for (size_t o = 0; o < n_out; ++o) {
        for (size_t i = 0; i < n_in; ++i)
            if ((status = r1_check_no_overlap(outputs[o].name, outputs[o].ptr, outputs[o].bytes,
                                              inputs[i].name, inputs[i].ptr,
                                              inputs[i].bytes)) != R1_OK)
                return status;
        for (size_t j = 0; j < o; ++j)
            if ((status = r1_check_no_overlap(outputs[o].name, outputs[o].ptr, outputs[o].bytes,
                                              outputs[j].name, outputs[j].ptr,
                                              outputs[j].bytes)) != R1_OK)
                return status;
    }
    return R1_OK;
}

#define MOE_COUNT(a) (sizeof(a) / sizeof((a)[0]))

r1_status r1_moe_gate_logits(r1_backend backend, const r1_moe_desc *desc, const float *x,
                             const float *gate_weight, float *logits, void *stream) {
    r1_status status = r1_moe_validate(desc);
    if (status == R1_OK) status = check_hidden(desc);
    if (status != R1_OK) return status;
    if (x == NULL || gate_weight == NULL || logits == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL",
                       x == NULL ? "x" : gate_weight == NULL ? "gate_weight" : "logits");
    {
        const size_t T = (size_t)desc->tokens, E = (size_t)desc->experts;
        const size_t d = (size_t)desc->hidden;
        const moe_range outs[] = {{"logits", logits, T * E * sizeof(float)}};
        const moe_range ins[] = {{"x", x, T * d * sizeof(float)},
                                 {"gate_weight", gate_weight, E * d * sizeof(float)}};
        if ((status = check_ranges(outs, 1, ins, 2)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    switch (backend) {
    case R1_REF: return moe_gate_logits_ref(desc, x, gate_weight, logits);
    case R1_FAST: return moe_gate_logits_fast(desc, x, gate_weight, logits);
    default: return moe_gate_logits_cuda(desc, x, gate_weight, logits, stream);
    }
}

r1_status r1_moe_route(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                       const float *bias, int32_t *ids, float *weights, void *workspace,
                       size_t workspace_bytes, void *stream) {
    r1_status status = r1_moe_validate(desc);
    if (status != R1_OK) return status;
    if (logits == NULL || ids == NULL || weights == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL",
                       logits == NULL ? "logits" : ids == NULL ? "ids" : "weights");
    if (bias != NULL && desc->routing != R1_MOE_NOAUX_TC)
        return r1_fail(R1_EINVAL, "bias is given but routing is not R1_MOE_NOAUX_TC");
    {
        const size_t T = (size_t)desc->tokens, E = (size_t)desc->experts;
        const size_t K = (size_t)desc->top_k;
        /* weights == logits is refused too: fast (OpenMP) and cuda route
         * tokens in parallel, so token t's weights would land in an earlier
         * token's logits while that token is still read. */
        const moe_range outs[] = {{"ids", ids, T * K * sizeof(int32_t)},
                                  {"weights", weights, T * K * sizeof(float)}};
        const moe_range ins[] = {{"logits", logits, T * E * sizeof(float)},
                                 {"bias", bias, E * sizeof(float)}};
        if ((status = check_ranges(outs, 2, ins, 2)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend != R1_CUDA) {
        status = moe_check_logits_host(desc, logits, bias);
        if (status != R1_OK) return status;
        return backend == R1_REF ? moe_route_ref(desc, logits, bias, ids, weights)
                                 : moe_route_fast(desc, logits, bias, ids, weights);
    }
    void *owned;
    status = take_workspace(backend, desc, &workspace, workspace_bytes, &owned);
    if (status != R1_OK) return status;
    status = moe_route_cuda(desc, logits, bias, ids, weights, workspace, stream);
    return give_back_workspace(backend, owned, status);
}

/* ids in [0, E) and no expert twice within a token (host ids). */
static r1_status check_ids_host(const r1_moe_desc *desc, const int32_t *ids) {
    const int64_t T = desc->tokens, K = desc->top_k;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < K; ++k) {
            int32_t id = ids[t * K + k];
            if (id < 0 || id >= desc->experts)
                return r1_fail(R1_EINVAL, "ids[%lld][%lld] = %d: expert id outside [0, %d)",
                               (long long)t, (long long)k, id, desc->experts);
            for (int64_t j = 0; j < k; ++j)
                if (ids[t * K + j] == id)
                    return r1_fail(R1_EINVAL, "ids[%lld]: expert %d is chosen twice (slots %lld "
                                   "and %lld)", (long long)t, id, (long long)j, (long long)k);
        }
    return R1_OK;
}

r1_status r1_moe_dispatch(r1_backend backend, const r1_moe_desc *desc, const int32_t *ids,
                          const r1_moe_dispatch_out *out, void *workspace,
                          size_t workspace_bytes, void *stream) {
    r1_status status = r1_moe_validate(desc);
    if (status != R1_OK) return status;
    if ((status = check_block_size(desc)) != R1_OK) return status;
    if (out != NULL && out->padded_offsets != NULL &&
        r1_moe_padded_capacity(desc) > INT32_MAX)
        return r1_fail(R1_EINVAL,
                       "padded capacity tokens * top_k + experts * (block_size - 1) = %lld: "
                       "above 2^31 - 1, the int32 padded layout cannot index it",
                       (long long)r1_moe_padded_capacity(desc));
    if (ids == NULL) return r1_fail(R1_EINVAL, "ids is NULL");
    if (out == NULL || !out->counts || !out->offsets || !out->permutation || !out->inverse)
        return r1_fail(R1_EINVAL,
                       "out->counts, out->offsets, out->permutation and out->inverse are "
                       "required");
    if (out->padded_offsets &&
        (!out->sorted_padded || !out->block_expert || !out->padded_total))
        return r1_fail(R1_EINVAL,
                       "out->padded_offsets is set: out->sorted_padded, out->block_expert and "
                       "out->padded_total are required with it");
    {
        const size_t E = (size_t)desc->experts;
        const size_t N = (size_t)desc->tokens * (size_t)desc->top_k;
        const int padded = out->padded_offsets != NULL;
        const size_t P = padded ? (size_t)r1_moe_padded_capacity(desc) : 0;
        const size_t B = (size_t)desc->block_size;
        const size_t w = sizeof(int32_t);
        const moe_range outs[] = {
            {"out->counts", out->counts, E * w},
            {"out->offsets", out->offsets, (E + 1) * w},
            {"out->permutation", out->permutation, N * w},
            {"out->inverse", out->inverse, N * w},
            {"out->padded_offsets", out->padded_offsets, (E + 1) * w},
            {"out->sorted_padded", padded ? out->sorted_padded : NULL, P * w},
            {"out->block_expert", padded ? out->block_expert : NULL, (P + B - 1) / B * w},
            {"out->padded_total", padded ? out->padded_total : NULL, w},
        };
        const moe_range ins[] = {{"ids", ids, N * w}};
        if ((status = check_ranges(outs, MOE_COUNT(outs), ins, 1)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend != R1_CUDA) {
        status = check_ids_host(desc, ids);
        if (status != R1_OK) return status;
    }
    void *owned;
    status = take_workspace(backend, desc, &workspace, workspace_bytes, &owned);
    if (status != R1_OK) return status;
    switch (backend) {
    case R1_REF: status = moe_dispatch_ref(desc, ids, out); break;
    case R1_FAST: status = moe_dispatch_fast(desc, ids, out, workspace); break;
    default: status = moe_dispatch_cuda(desc, ids, out, workspace, stream); break;
    }
    return give_back_workspace(backend, owned, status);
}

r1_status r1_moe_permute(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                         const void *x, const int32_t *inverse, void *x_sorted,
                         void *stream) {
    r1_status status = r1_moe_validate(desc);
    if (status == R1_OK) status = check_hidden(desc);
    if (status == R1_OK) status = check_row_dtype(dtype);
    if (status != R1_OK) return status;
    if (x == NULL || inverse == NULL || x_sorted == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL",
                       x == NULL ? "x" : inverse == NULL ? "inverse" : "x_sorted");
    {
        const size_t T = (size_t)desc->tokens, d = (size_t)desc->hidden;
        const size_t N = T * (size_t)desc->top_k;
        const moe_range outs[] = {{"x_sorted", x_sorted, r1_dtype_bytes(dtype, N * d)}};
        const moe_range ins[] = {{"x", x, r1_dtype_bytes(dtype, T * d)},
                                 {"inverse", inverse, N * sizeof(int32_t)}};
        if ((status = check_ranges(outs, 1, ins, 2)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend != R1_CUDA) {
        const int64_t N = desc->tokens * desc->top_k;
        for (int64_t j = 0; j < N; ++j)
            if (inverse[j] < 0 || inverse[j] >= N)
                return r1_fail(R1_EINVAL, "inverse[%lld] = %d: outside [0, N = %lld)",
                               (long long)j, inverse[j], (long long)N);
    }
    switch (backend) {
    case R1_REF: return moe_permute_ref(desc, dtype, x, inverse, x_sorted);
    case R1_FAST: return moe_permute_fast(desc, dtype, x, inverse, x_sorted);
    default: return moe_permute_cuda(desc, dtype, x, inverse, x_sorted, stream);
    }
}

r1_status r1_moe_combine(r1_backend backend, const r1_moe_desc *desc, r1_dtype dtype,
                         const void *expert_out, const int32_t *inverse, const float *weights,
                         const void *shared, void *y, void *stream) {
    r1_status status = r1_moe_validate(desc);
    if (status == R1_OK) status = check_hidden(desc);
    if (status == R1_OK) status = check_row_dtype(dtype);
    if (status != R1_OK) return status;
    if (expert_out == NULL || inverse == NULL || weights == NULL || y == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL",
                       expert_out == NULL ? "expert_out"
                       : inverse == NULL  ? "inverse"
                       : weights == NULL  ? "weights"
                                          : "y");
    {
        const size_t T = (size_t)desc->tokens, d = (size_t)desc->hidden;
        const size_t N = T * (size_t)desc->top_k;
        const size_t y_bytes = r1_dtype_bytes(dtype, T * d);
        const moe_range outs[] = {{"y", y, y_bytes}};
        /* y == shared (same start) is allowed: y[t, i] only reads shared[t, i]. */
        const moe_range ins[] = {{"expert_out", expert_out, r1_dtype_bytes(dtype, N * d)},
                                 {"inverse", inverse, N * sizeof(int32_t)},
                                 {"weights", weights, N * sizeof(float)},
                                 {"shared", shared == y ? NULL : shared, y_bytes}};
        if ((status = check_ranges(outs, 1, ins, 4)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend != R1_CUDA) {
        const int64_t N = desc->tokens * desc->top_k;
        for (int64_t j = 0; j < N; ++j)
            if (inverse[j] < 0 || inverse[j] >= N)
                return r1_fail(R1_EINVAL, "inverse[%lld] = %d: outside [0, N = %lld)",
                               (long long)j, inverse[j], (long long)N);
    }
    switch (backend) {
    case R1_REF: return moe_combine_ref(desc, dtype, expert_out, inverse, weights, shared, y);
    case R1_FAST: return moe_combine_fast(desc, dtype, expert_out, inverse, weights, shared, y);
    default: return moe_combine_cuda(desc, dtype, expert_out, inverse, weights, shared, y, stream);
    }
}

r1_status r1_moe_balance(r1_backend backend, const r1_moe_desc *desc, const float *logits,
                         const int32_t *ids, double alpha, float gamma,
                         const r1_moe_balance_out *out) {
    r1_status status = r1_moe_validate(desc);
    if (status != R1_OK) return status;
    if (logits == NULL || ids == NULL || out == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL",
                       logits == NULL ? "logits" : ids == NULL ? "ids" : "out");
    if (!isfinite(alpha) || !isfinite(gamma))
        return r1_fail(R1_EINVAL, "alpha = %g, gamma = %g: must be finite", alpha,
                       (double)gamma);
    {
        const size_t T = (size_t)desc->tokens, E = (size_t)desc->experts;
        const size_t K = (size_t)desc->top_k;
        const moe_range outs[] = {{"out->load", out->load, E * sizeof(int32_t)},
                                  {"out->aux_loss", out->aux_loss, sizeof(double)},
                                  {"out->bias", out->bias, E * sizeof(float)}};
        const moe_range ins[] = {{"logits", logits, T * E * sizeof(float)},
                                 {"ids", ids, T * K * sizeof(int32_t)}};
        if ((status = check_ranges(outs, 3, ins, 2)) != R1_OK) return status;
    }
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend == R1_CUDA) return moe_balance_cuda(desc, logits, ids, alpha, gamma, out);
    /* a non-finite bias entry is R1_ENUMERIC naming the expert, as in route */
    if ((status = moe_check_logits_host(desc, logits, out->bias)) != R1_OK) return status;
    if ((status = check_ids_host(desc, ids)) != R1_OK) return status;
    return backend == R1_REF ? moe_balance_ref(desc, logits, ids, alpha, gamma, out)
                             : moe_balance_fast(desc, logits, ids, alpha, gamma, out);
}

r1_status r1_moe_layer(r1_backend backend, const r1_moe_desc *desc,
                       const r1_moe_layer_weights *weights, const float *x, float *y) {
    r1_status status = r1_moe_validate(desc);
    if (status == R1_OK) status = check_hidden(desc);
    if (status != R1_OK) return status;
    if (weights == NULL || x == NULL || y == NULL)
        return r1_fail(R1_EINVAL, "%s is NULL", weights == NULL ? "weights" : x == NULL ? "x" : "y");
    if (weights->intermediate <= 0 || weights->intermediate > R1_MOE_MAX_HIDDEN ||
        weights->shared_intermediate < 0 || weights->shared_intermediate > R1_MOE_MAX_HIDDEN)
        return r1_fail(R1_EINVAL, "intermediate = %lld, shared_intermediate = %lld: must be in "
                       "[1, 2^24] and [0, 2^24]", (long long)weights->intermediate,
                       (long long)weights->shared_intermediate);
    if (!weights->gate_weight || !weights->w1 || !weights->w2 || !weights->w3)
        return r1_fail(R1_EINVAL, "gate_weight, w1, w2 and w3 are required");
    if (weights->shared_intermediate > 0 &&
        (!weights->shared_w1 || !weights->shared_w2 || !weights->shared_w3))
        return r1_fail(R1_EINVAL, "shared_intermediate > 0: shared_w1, shared_w2 and shared_w3 "
                       "are required");
    if (weights->bias != NULL && desc->routing != R1_MOE_NOAUX_TC)
        return r1_fail(R1_EINVAL, "bias is given but routing is not R1_MOE_NOAUX_TC");
    if ((status = r1_check_backend(backend)) != R1_OK) return status;
    if (backend != R1_REF)
        return r1_fail(R1_EUNSUPPORTED, "the moe layer exists in ref only (backend %s)",
                       r1_backend_name(backend));
    return moe_layer_ref(desc, weights, x, y);
}

#ifndef R1LAB_HAVE_CUDA
/* CPU-only build: the CUDA backend is absent (check_backend answers first). */
static r1_status no_cuda(void) { return r1_fail(R1_EUNSUPPORTED, "r1lab was built without CUDA"); }
size_t moe_route_workspace_size_cuda(const r1_moe_desc *desc) { (void)desc; return 0; }
size_t moe_dispatch_workspace_size_cuda(const r1_moe_desc *desc) { (void)desc; return 0; }
r1_status moe_gate_logits_cuda(const r1_moe_desc *desc, const float *x,
                               const float *gate_weight, float *logits, void *stream) {
    (void)desc; (void)x; (void)gate_weight; (void)logits; (void)stream;
    return no_cuda();
}
r1_status moe_route_cuda(const r1_moe_desc *desc, const float *logits, const float *bias,
                         int32_t *ids, float *weights, void *workspace, void *stream) {
    (void)desc; (void)logits; (void)bias; (void)ids; (void)weights; (void)workspace; (void)stream;
    return no_cuda();
}
r1_status moe_dispatch_cuda(const r1_moe_desc *desc, const int32_t *ids,
                            const r1_moe_dispatch_out *out, void *workspace, void *stream) {
    (void)desc; (void)ids; (void)out; (void)workspace; (void)stream;
    return no_cuda();
}
r1_status moe_permute_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *x,
                           const int32_t *inverse, void *x_sorted, void *stream) {
    (void)desc; (void)dtype; (void)x; (void)inverse; (void)x_sorted; (void)stream;
    return no_cuda();
}
r1_status moe_combine_cuda(const r1_moe_desc *desc, r1_dtype dtype, const void *expert_out,
                           const int32_t *inverse, const float *weights, const void *shared,
                           void *y, void *stream) {
    (void)desc; (void)dtype; (void)expert_out; (void)inverse; (void)weights; (void)shared;
    (void)y; (void)stream;
    return no_cuda();
}
r1_status moe_balance_cuda(const r1_moe_desc *desc, const float *logits, const int32_t *ids,
                           double alpha, float gamma, const r1_moe_balance_out *out) {
    (void)desc; (void)logits; (void)ids; (void)alpha; (void)gamma; (void)out;
    return no_cuda();
}
r1_status moe_cuda_check_sigmoid(uint64_t *mismatches, uint32_t *first_input) {
    (void)mismatches; (void)first_input;
    return no_cuda();
}
#endif
