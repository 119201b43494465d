/*
 * ref/kd.c — the reference distillation loss: every term of r1lab/kd.h is one
 * function below, in the order a reader meets them. Two passes per row
 * (log-softmax, then the sums), float64 throughout.
 *
 * For one token t with student logits s (V), teacher p, label y:
 *   log q = log_softmax(s / T)                     log_softmax
 *   log p = log_softmax(z / T)  or sparse top-k    teacher_log_probs_dense / _sparse
 *   CE    = -log_softmax(s)[y]                     cross_entropy
 *   D     = KL(p||q), KL(q||p) or JSD_beta         forward_kl / reverse_kl / generalized_jsd
 *   l_t   = (1 - gamma) CE + gamma T^2 D           token_loss_and_gradient
 *   dl/ds = (1 - gamma)(r - onehot(y)) + gamma T G (each divergence fills G)
 *   L     = sum l_t / C  (MEAN) or sum l_t          kd_loss_ref
 * Fused-linear: s = W h per token, then dh = g W, dW += g h^T  (kd_linear_ref).
 * Shapes: N tokens, V vocabulary, d hidden, k sparse teacher entries.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* Per-row scratch (each (V) float64), carved from the workspace. */
typedef struct ref_row {
    double *s;       /* student logits                               */
    double *log_p;   /* teacher log-probabilities at T (-inf allowed) */
    double *log_q;   /* student log-probabilities at T               */
    double *log_r;   /* student log-probabilities at 1 (CE)          */
    double *g;       /* dl/ds of this token (unweighted)             */
} ref_row;

static ref_row carve_row(void *workspace, size_t V) {
    double *base = workspace;
    ref_row row = {base, base + V, base + 2 * V, base + 3 * V, base + 4 * V};
    return row;
}

size_t kd_workspace_size_ref(const r1_kd_desc *desc) {
    return 5 * (size_t)desc->vocab * sizeof(double);
}

/* Element i of a (dtype) tensor as float64 (bf16 widens exactly). */
static double element(const void *tensor, r1_dtype dtype, size_t i) {
    if (dtype == R1_F32) return ((const float *)tensor)[i];
    return r1_bf16_to_f32(((const uint16_t *)tensor)[i]);
}

static void store_element(void *tensor, r1_dtype dtype, size_t i, double value) {
    if (dtype == R1_F32) ((float *)tensor)[i] = (float)value;
    else ((uint16_t *)tensor)[i] = r1_f32_to_bf16((float)value);
}

/* out = log_softmax(x * scale): out_i = x_i*scale - max - log sum exp(x*scale - max).
 * Entries of x may be -inf (they get -inf); the caller ensures one is finite. */
static void log_softmax(const double *x, double scale, double *out, size_t V) {
    double max = -INFINITY;
    for (size_t i = 0; i < V; ++i) max = fmax(max, x[i] * scale);
    double sum = 0.0;
    for (size_t i = 0; i < V; ++i) sum += exp(x[i] * scale - max);
    double log_sum = max + log(sum);
    for (size_t i = 0; i < V; ++i) out[i] = x[i] * scale - log_sum;
}

/* Dense teacher: log p = log_softmax(z / T). z NaN or +inf, or all -inf: bad. */
static int teacher_log_probs_dense(const void *teacher, r1_dtype dtype, size_t row, size_t V,
                                   double T, double *log_p) {
    int any_finite = 0;
    for (size_t i = 0; i < V; ++i) {
        log_p[i] = element(teacher, dtype, row * V + i);
        if (isnan(log_p[i]) || log_p[i] == INFINITY) return KD_BAD_TEACHER;
        any_finite |= isfinite(log_p[i]);
    }
    if (!any_finite) return KD_TEACHER_EMPTY;
    log_softmax(log_p, 1.0 / T, log_p, V);
    return KD_ROW_OK;
}

/* Sparse teacher, rule "renormalized top-k": p_i = exp(lp_i/T) / sum_top-k exp(lp_j/T)
 * on the k ids, 0 elsewhere (log p = -inf). ids, lp are (k). */
static int teacher_log_probs_sparse(const int32_t *ids, const float *lp, int32_t k, size_t V,
                                    double T, double *log_p) {
    double max = -INFINITY;
    for (int32_t j = 0; j < k; ++j) {
        double x = lp[j];
        if (isnan(x) || x == INFINITY) return KD_BAD_TEACHER;
        max = fmax(max, x / T);
    }
    if (max == -INFINITY) return KD_TEACHER_EMPTY;
    double sum = 0.0;
    for (int32_t j = 0; j < k; ++j) sum += exp(lp[j] / T - max);
    double log_sum = max + log(sum);
    for (size_t i = 0; i < V; ++i) log_p[i] = -INFINITY;
    for (int32_t j = 0; j < k; ++j) log_p[ids[j]] = lp[j] / T - log_sum;
    return KD_ROW_OK;
}

/* CE = -log r[y]. */
static double cross_entropy(const double *log_r, int32_t y) { return -log_r[y]; }

/* 0 * log 0 = 0: a * b with a = 0 is 0 even when b is infinite. */
static double times(double a, double b) { return a == 0.0 ? 0.0 : a * b; }

/* beta = 0: D = sum p_i (log p_i - log q_i);  G_i = q_i - p_i. */
static double forward_kl(const double *log_p, const double *log_q, double *G, size_t V) {
    double D = 0.0;
    for (size_t i = 0; i < V; ++i) {
        double p = exp(log_p[i]), q = exp(log_q[i]);
        D += times(p, log_p[i] - log_q[i]);
        G[i] = q - p;
    }
    return D;
}

/* beta = 1: D = sum q_i (log q_i - log p_i);  g_i = log q_i - log p_i,
 * G_i = q_i (g_i - D). The caller has ruled out p_i = 0. */
static double reverse_kl(const double *log_p, const double *log_q, double *G, size_t V) {
    double D = 0.0;
    for (size_t i = 0; i < V; ++i) D += exp(log_q[i]) * (log_q[i] - log_p[i]);
    for (size_t i = 0; i < V; ++i) {
        double q = exp(log_q[i]);
        G[i] = q * ((log_q[i] - log_p[i]) - D);
    }
    return D;
}

/* log(a e^x + b e^y) without overflow; x may be -inf. */
static double log_mix(double a, double x, double b, double y) {
    double m = fmax(x, y);
    return m + log(a * exp(x - m) + b * exp(y - m));
}

/* 0 < beta < 1: M = beta p + (1 - beta) q;
 * D = beta sum p_i (log p_i - log M_i) + (1 - beta) sum q_i (log q_i - log M_i);
 * g_i = (1 - beta)(log q_i - log M_i), gbar = sum q_i g_i, G_i = q_i (g_i - gbar). */
static double generalized_jsd(const double *log_p, const double *log_q, double beta, double *G,
                              size_t V) {
    double D = 0.0, gbar = 0.0;
    for (size_t i = 0; i < V; ++i) {
        double log_M = log_mix(beta, log_p[i], 1.0 - beta, log_q[i]);
        double p = exp(log_p[i]), q = exp(log_q[i]);
        D += beta * times(p, log_p[i] - log_M) + (1.0 - beta) * q * (log_q[i] - log_M);
        G[i] = (1.0 - beta) * (log_q[i] - log_M); /* g_i for now */
        gbar += q * G[i];
    }
    for (size_t i = 0; i < V; ++i) G[i] = exp(log_q[i]) * (G[i] - gbar);
    return D;
}

/* The divergence chosen by beta; fills G. */
static double divergence(const double *log_p, const double *log_q, double beta, double *G,
                         size_t V) {
    if (beta == 0.0) return forward_kl(log_p, log_q, G, V);
    if (beta == 1.0) return reverse_kl(log_p, log_q, G, V);
    return generalized_jsd(log_p, log_q, beta, G, V);
}

/* One counted token: row.s and row.log_p are loaded. Returns l_t and leaves
 * dl_t/ds in row.g:  (1 - gamma)(r - onehot(y)) + gamma T G. */
static double token_loss_and_gradient(const r1_kd_desc *desc, ref_row row, int32_t y,
                                      size_t V) {
    const double T = desc->temperature, gamma = desc->gamma, beta = desc->beta;
    log_softmax(row.s, 1.0 / T, row.log_q, V);
    double D = divergence(row.log_p, row.log_q, beta, row.g, V);
    double loss = gamma * T * T * D;
    for (size_t i = 0; i < V; ++i) row.g[i] *= gamma * T;
    if (gamma < 1.0) {
        log_softmax(row.s, 1.0, row.log_r, V);
        loss += (1.0 - gamma) * cross_entropy(row.log_r, y);
        for (size_t i = 0; i < V; ++i)
            row.g[i] += (1.0 - gamma) * (exp(row.log_r[i]) - (i == (size_t)y ? 1.0 : 0.0));
    }
    return loss;
}

/* Loads token t's student row (checked finite) and teacher (dense logits given
 * as (tensor, dtype), or sparse); returns a kd_bad_reason. */
static int load_token(const r1_kd_desc *desc, const double *student_row, const void *teacher,
                      r1_dtype teacher_dtype, const int32_t *ids, const float *logprobs,
                      size_t t, ref_row row, size_t V) {
    for (size_t i = 0; i < V; ++i) {
        row.s[i] = student_row[i];
        if (!isfinite(row.s[i])) return KD_BAD_STUDENT;
    }
    const int32_t k = desc->teacher_topk;
    int reason = k > 0 ? teacher_log_probs_sparse(ids + t * (size_t)k, logprobs + t * (size_t)k,
                                                  k, V, desc->temperature, row.log_p)
                       : teacher_log_probs_dense(teacher, teacher_dtype, t, V,
                                                 desc->temperature, row.log_p);
    if (reason == KD_ROW_OK && desc->beta == 1.0f)
        for (size_t i = 0; i < V; ++i)
            if (row.log_p[i] == -INFINITY) return KD_REVERSE_INFINITE;
    return reason;
}

/* The reduction's weight w: 1/C for MEAN (0 when C = 0), 1 otherwise. */
static double reduction_weight(const r1_kd_desc *desc, int64_t counted) {
    if (desc->reduction != R1_KD_MEAN) return 1.0;
    return counted > 0 ? 1.0 / (double)counted : 0.0;
}

/* Shapes: student_logits, teacher_logits, grad (N, V); ids, logprobs (N, k);
 * labels, token_losses (N). */
r1_status kd_loss_ref(const r1_kd_desc *desc, const r1_kd_inputs *in, const r1_kd_outputs *out,
                      void *workspace, kd_report *report) {
    const size_t N = (size_t)desc->tokens, V = (size_t)desc->vocab;
    ref_row row = carve_row(workspace, V);
    double *student = row.g; /* the raw row is read before g is written */
    const double w = reduction_weight(desc, kd_counted_tokens(desc, in->labels));
    double total = 0.0;
    for (size_t t = 0; t < N; ++t) {
        int32_t y = in->labels ? in->labels[t] : -1;
        int counted = in->labels == NULL || y != desc->ignore_index;
        double loss = 0.0;
        int reason = KD_ROW_OK;
        if (counted) {
            for (size_t i = 0; i < V; ++i) student[i] = element(in->student_logits, desc->dtype, t * V + i);
            reason = load_token(desc, student, in->teacher_logits, desc->dtype, in->teacher_ids,
                                in->teacher_logprobs, t, row, V);
            if (reason == KD_ROW_OK) loss = token_loss_and_gradient(desc, row, y, V);
        }
        if (!counted || reason != KD_ROW_OK)
            for (size_t i = 0; i < V; ++i) row.g[i] = 0.0;
        if (reason != KD_ROW_OK) loss = NAN;
        kd_report_note(report, (int64_t)t, reason);
        total += loss;
        if (out->token_losses) out->token_losses[t] = (float)loss;
        if (out->grad)
            for (size_t i = 0; i < V; ++i) store_element(out->grad, desc->dtype, t * V + i, w * row.g[i]);
    }
    *out->loss = (float)(desc->reduction == R1_KD_MEAN ? total * w : total);
    return R1_OK;
}

/* ---- fused-linear form ------------------------------------------------------ */

size_t kd_linear_workspace_size_ref(const r1_kd_linear_desc *desc) {
    size_t V = (size_t)desc->kd.vocab, d = (size_t)desc->hidden;
    /* the row scratch, the student row, and dW accumulated in float64 (V, d) */
    return (6 * V + V * d) * sizeof(double);
}

/* out (V) = W x: out_j = sum_c W[j, c] x[c]. W is (V, dim), x is row `t` of X (., dim). */
static void matrix_vector(const void *W, const void *X, r1_dtype dtype, size_t t, size_t V,
                          size_t dim, double *out) {
    for (size_t j = 0; j < V; ++j) {
        double sum = 0.0;
        for (size_t c = 0; c < dim; ++c)
            sum += element(W, dtype, j * dim + c) * element(X, dtype, t * dim + c);
        out[j] = sum;
    }
}

/* Shapes: h (N, d), W (V, d), ht (N, dt), Wt (V, dt), grad_hidden (N, d),
 * grad_weight (V, d). One token at a time: the (N, V) logits never exist. */
r1_status kd_linear_ref(const r1_kd_linear_desc *desc, const r1_kd_linear_inputs *in,
                        const r1_kd_linear_outputs *out, void *workspace, kd_report *report) {
    const r1_kd_desc *kd = &desc->kd;
    const size_t N = (size_t)kd->tokens, V = (size_t)kd->vocab, d = (size_t)desc->hidden;
    const size_t dt = (size_t)desc->teacher_hidden;
    ref_row row = carve_row(workspace, V);
    double *student = row.g + V;
    double *dW = student + V;
    if (out->grad_weight) memset(dW, 0, V * d * sizeof(double));
    const double w = reduction_weight(kd, kd_counted_tokens(kd, in->labels));
    double total = 0.0;
    for (size_t t = 0; t < N; ++t) {
        int32_t y = in->labels ? in->labels[t] : -1;
        int counted = in->labels == NULL || y != kd->ignore_index;
        double loss = 0.0;
        int reason = KD_ROW_OK;
        if (counted) {
            matrix_vector(in->student_weight, in->student_hidden, kd->dtype, t, V, d, student);
            if (dt > 0) {
                /* teacher logits of this token into log_p, then log_softmax in place */
                matrix_vector(in->teacher_weight, in->teacher_hidden, kd->dtype, t, V, dt,
                              row.log_p);
                float *z = (float *)row.log_r; /* (V) float32 staging, log_r is free here */
                for (size_t i = 0; i < V; ++i) z[i] = (float)row.log_p[i];
                reason = load_token(kd, student, z, R1_F32, NULL, NULL, 0, row, V);
            } else {
                reason = load_token(kd, student, in->teacher_logits, kd->dtype, in->teacher_ids,
                                    in->teacher_logprobs, t, row, V);
            }
            if (reason == KD_ROW_OK) loss = token_loss_and_gradient(kd, row, y, V);
        }
        if (reason != KD_ROW_OK) loss = NAN;
        kd_report_note(report, (int64_t)t, reason);
        total += loss;
        if (out->token_losses) out->token_losses[t] = (float)loss;
        int has_gradient = counted && reason == KD_ROW_OK;
        /* dh_t = sum_j w g_j W[j, :];  dW[j, :] += w g_j h_t */
        if (out->grad_hidden) {
            for (size_t c = 0; c < d; ++c) {
                double sum = 0.0;
                if (has_gradient)
                    for (size_t j = 0; j < V; ++j)
                        sum += row.g[j] * element(in->student_weight, kd->dtype, j * d + c);
                out->grad_hidden[t * d + c] = (float)(w * sum);
            }
        }
        if (out->grad_weight && has_gradient) {
            for (size_t j = 0; j < V; ++j) {
                double gj = w * row.g[j];
                if (gj == 0.0) continue;
                for (size_t c = 0; c < d; ++c)
                    dW[j * d + c] += gj * element(in->student_hidden, kd->dtype, t * d + c);
            }
        }
    }
    if (out->grad_weight)
        for (size_t i = 0; i < V * d; ++i) out->grad_weight[i] = (float)dW[i];
    *out->loss = (float)(kd->reduction == R1_KD_MEAN ? total * w : total);
    return R1_OK;
}
