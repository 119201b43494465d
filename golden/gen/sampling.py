#!/usr/bin/env python3
# ci: --check
"""Golden files for r1lab sampling, from an independent numpy implementation.

What it computes: for every case below, a batch of logits (B, V) with per-row
sampling parameters and histories, and the outputs that the SEMANTICS block of
include/r1lab/sampling.h prescribes (tokens, logprobs, filtered_probs, top_ids,
top_logprobs), plus diagnostics for the C tests (u, kept, margin). It never
calls r1lab's C code: golden files made by the code under test would test it
against itself.

The math, one row at a time (l = logits row, p = its parameters):
  1. penalties, float32:  for count[i] > 0,
         x = l[i] > 0 ? l[i] / rep : l[i] * rep;  l'[i] = x - (freq * count[i] + pres)
  2. T = 0: token = first argmax of l', logprob 0, one-hot; else z = l' / T (float32).
     Invalid row (NaN or +inf in z, or l' when greedy; or entirely -inf):
     token -1, logprob NaN, filtered NaN, top ids -1, top logprobs NaN.
  3. m = max z;  e[i] = exp(z[i] - m) (z - m in float32, e rounded to float32)
  4. rank by (z descending, id ascending)  (-0.0 ties with +0.0)
  5. top-k prefix;  6. top-p: shortest prefix with cumulative weight >= top_p * S;
  7. min-p: e[i] >= min_p;  8. u = Philox(seed, row, step) (golden/gen/philox.py);
     scan kept tokens by id with a float64 running sum c: first c > u * F.
     logprob = log(e[tok]) - log(F) in float64, stored as float32.
  top-n: log_softmax of the RAW logits in float64, n best by (logprob desc, id asc).

Precision choices where the header leaves a detail open are listed in
golden/gen/README.md ("Choices") and repeated next to the code that makes them.

Run from the repository root:
    python3 golden/gen/sampling.py            regenerate golden/sampling/*.safetensors,
                                              self-check, update golden/MANIFEST
    python3 golden/gen/sampling.py --check    regenerate in memory and compare with
                                              the committed files (exit 1 on mismatch)
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox  # noqa: E402  (runs its known-answer self-test on import)
import manifest  # noqa: E402

SCRIPT = "golden/gen/sampling.py"
OUT_DIR = "golden/sampling"
MANIFEST = "golden/MANIFEST"
REGENERATE = "python3 golden/gen/sampling.py"

F32 = np.float32
F64 = np.float64

MARGIN_FAIL = 1e-6     # a row whose u lies closer than this to a boundary fails the run
MARGIN_WANT = 1e-5     # the C tests compare tokens exactly where margin >= 1e-5
FILTER_SLACK_WANT = 1e-6  # top-p / min-p decisions: 8x the effect of a 1-ulp bias of every exp (2^-23 relative)

# ----------------------------------------------------------------------------
# bf16 (round to nearest, ties to even; NaN -> quiet NaN with its sign)


def f32_to_bf16_bits(x):
    bits = np.ascontiguousarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    nan = np.isnan(np.asarray(x, dtype=F32))
    quiet = ((bits >> np.uint64(16)) & np.uint64(0x8000)) | np.uint64(0x7FC0)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(F32)


# ----------------------------------------------------------------------------
# Parameters of one row

DEFAULT_PARAMS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                      presence_penalty=0.0, frequency_penalty=0.0, seed=0, step=0)


def params(**overrides):
    p = dict(DEFAULT_PARAMS)
    for key in overrides:
        if key not in p:
            raise KeyError(key)
    p.update(overrides)
    # The file stores float32 parameters; compute with exactly those values.
    for key in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                "frequency_penalty"):
        p[key] = F32(p[key])
    p["top_k"] = int(p["top_k"])
    p["seed"] = int(p["seed"])
    p["step"] = int(p["step"])
    assert 0 <= p["seed"] < 2**64 and 0 <= p["step"] < 2**64
    assert 0 <= p["top_k"] < 2**31
    return p


# ----------------------------------------------------------------------------
# The semantics, vectorized with numpy (one row)


def apply_penalties(logits_row, history_row, p):
    """Step 1 in float32. logits_row is (V,) float32, history_row (H_b,) ids."""
    out = np.array(logits_row, dtype=F32, copy=True)
    if len(history_row) == 0:
        return out
    count = np.bincount(np.asarray(history_row, dtype=np.int64), minlength=len(out))
    ids = np.nonzero(count)[0]
    x = out[ids]
    rep = p["repetition_penalty"]
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.where(x > F32(0), x / rep, x * rep).astype(F32)
        # count is a small integer: exact in float32. Each operation rounds to
        # float32 separately (no fused multiply-add).
        penalty = (p["frequency_penalty"] * count[ids].astype(F32)).astype(F32)
        penalty = (penalty + p["presence_penalty"]).astype(F32)
        out[ids] = (x - penalty).astype(F32)
    return out


def row_is_invalid(values):
    return bool(np.isnan(values).any() or np.isposinf(values).any() or np.isneginf(values).all())


def softmax_weights(z):
    """Step 3: e = exp(z - m) rounded to float32, z - m computed in float32.

    Choice: the float32 exp is taken as the correctly rounded one, float32(exp
    in float64), not numpy's float32 exp (whose last-ulp result depends on the
    CPU's SIMD path). C expf / CUDA expf may differ from it by an ulp or two;
    the largest weight is exactly 1 either way.
    """
    m = z.max()
    with np.errstate(invalid="ignore"):
        d = (z - m).astype(F32)
    return np.exp(d.astype(F64)).astype(F32)


def rank_order(z):
    """Step 4: ids by (z descending, id ascending); -0.0 ties with +0.0."""
    key = (-z + F32(0.0)).astype(F32)  # -(+0) + 0 = +0 and -(-0) + 0 = +0
    ids = np.arange(len(z))
    return np.lexsort((ids, key))  # last key is primary; stable on ids


def draw_positions(weights_by_id, u):
    """Step 8 for many u at once: index (into weights_by_id) of the drawn token.

    weights_by_id are the float32 weights of the kept tokens in ascending id
    order. c is the float64 running sum in that order (np.cumsum is a plain
    left-to-right sum); F = c[-1]. The token is the first with c > u * F; when
    rounding leaves none, the last kept token with e > 0.
    Returns (positions, c, F).
    """
    c = np.cumsum(weights_by_id.astype(F64))
    total = c[-1]
    x = np.asarray(u, dtype=F64) * total
    positions = np.searchsorted(c, x, side="right")  # number of c <= x = first c > x
    fallback = int(np.nonzero(weights_by_id > 0)[0][-1])
    positions = np.where(positions >= len(c), fallback, positions)
    return positions, c, total


def sample_row(logits_row, history_row, p, row, n_top):
    """The whole semantics for one row. Returns a dict of outputs and diagnostics."""
    V = len(logits_row)
    u = float(philox.sampling_uniform(p["seed"], row, p["step"]))
    out = dict(u=u)
    lp = apply_penalties(logits_row, history_row, p)
    T = p["temperature"]
    if T == 0:
        values = lp
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            values = (lp / T).astype(F32)
    if row_is_invalid(values):
        out.update(token=-1, logprob=F32(np.nan), kept=0, margin=1.0,
                   filtered=np.full(V, np.nan, dtype=F32), valid=False, filter_slack=math.inf,
                   top_ids=np.full(n_top, -1, dtype=np.int32),
                   top_logprobs=np.full(n_top, np.nan, dtype=F32))
        return out
    out["valid"] = True
    out["top_ids"], out["top_logprobs"] = raw_top_logprobs(logits_row, n_top)
    if T == 0:
        token = int(np.argmax(lp))  # first index of the maximum
        filtered = np.zeros(V, dtype=F32)
        filtered[token] = 1.0
        out.update(token=token, logprob=F32(0.0), kept=1, margin=1.0, filtered=filtered,
                   filter_slack=math.inf)
        return out
    z = values
    e = softmax_weights(z)
    order = rank_order(z)
    slack = math.inf
    # Step 5: top-k (0 = off).
    k = V if p["top_k"] == 0 else min(p["top_k"], V)
    prefix = order[:k]
    # Step 6: top-p (1 = off). Choice: S and the cumulative weights are float64
    # sums in rank order, so S is the last cumulative weight; the threshold is
    # float64(top_p) * S.
    if p["top_p"] < 1:
        cumulative = np.cumsum(e[prefix].astype(F64))
        S = cumulative[-1]
        threshold = F64(p["top_p"]) * S
        cut = int(np.argmax(cumulative >= threshold))  # exists: cumulative[-1] = S >= threshold
        slack = min(slack, (cumulative[cut] - threshold) / S)
        if cut > 0:  # (an empty prefix never reaches threshold > 0: no lower boundary)
            slack = min(slack, (threshold - cumulative[cut - 1]) / S)
        prefix = prefix[:cut + 1]
    # Step 7: min-p (0 = off), e >= min_p compared as float64 (exact for float32).
    if p["min_p"] > 0:
        keep = e[prefix].astype(F64) >= F64(p["min_p"])
        n_keep = int(keep.sum())
        assert keep[:n_keep].all(), "min-p must keep a prefix of the order"
        slack = min(slack, float(np.min(np.abs(e[prefix].astype(F64) - F64(p["min_p"])))) / F64(p["min_p"]))
        prefix = prefix[:n_keep]
    kept_ids = np.sort(prefix)
    weights = e[kept_ids]
    positions, c, F = draw_positions(weights, u)
    token = int(kept_ids[int(positions)])
    x = u * F
    margin = float(min(abs(x), np.min(np.abs(c - x)))) / F  # boundaries 0, c_1, ..., F
    logprob = F32(math.log(F64(e[token])) - math.log(F))
    filtered = np.zeros(V, dtype=F32)
    filtered[kept_ids] = (weights.astype(F64) / F).astype(F32)
    out.update(token=token, logprob=logprob, kept=len(kept_ids), margin=margin,
               filtered=filtered, filter_slack=slack)
    return out


def raw_top_logprobs(logits_row, n):
    """log_softmax of the raw logits in float64; the n best by (logprob desc, id asc)."""
    if n == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=F32)
    l = logits_row.astype(F64)
    m = l.max()
    shifted = l - m
    logprob = shifted - math.log(float(np.sum(np.exp(shifted))))
    key = -logprob + 0.0
    order = np.lexsort((np.arange(len(l)), key))[:n]
    return order.astype(np.int32), logprob[order].astype(F32)


# ----------------------------------------------------------------------------
# A second, scalar transcription of the header (plain loops), used as a
# cross-check of the vectorized code on the small-V cases.


def sample_row_scalar(logits_row, history_row, p, row, n_top):
    V = len(logits_row)
    count = {}
    for token in history_row:
        count[int(token)] = count.get(int(token), 0) + 1
    lp = [F32(v) for v in logits_row]
    with np.errstate(invalid="ignore", over="ignore"):
        for i, n in count.items():
            x = lp[i]
            x = x / p["repetition_penalty"] if x > 0 else x * p["repetition_penalty"]
            lp[i] = F32(x - F32(F32(p["frequency_penalty"] * F32(n)) + p["presence_penalty"]))
        T = p["temperature"]
        values = lp if T == 0 else [F32(v / T) for v in lp]
    u = float(philox.sampling_uniform(p["seed"], row, p["step"]))
    if any(math.isnan(v) or v == math.inf for v in values) or all(v == -math.inf for v in values):
        return dict(token=-1, kept=0, margin=1.0, u=u)
    if T == 0:
        best = 0
        for i in range(V):
            if values[i] > values[best]:
                best = i
        return dict(token=best, logprob=F32(0.0), kept=1, margin=1.0, u=u)
    m = max(values)
    e = [F32(math.exp(float(F32(v - m)))) if v != -math.inf else F32(0.0) for v in values]
    order = sorted(range(V), key=lambda i: (-float(values[i]), i))
    k = V if p["top_k"] == 0 else min(p["top_k"], V)
    prefix = order[:k]
    if p["top_p"] < 1:
        S = 0.0
        for i in prefix:
            S += float(e[i])
        threshold = float(p["top_p"]) * S
        running = 0.0
        for position, i in enumerate(prefix):
            running += float(e[i])
            if running >= threshold:
                prefix = prefix[:position + 1]
                break
    if p["min_p"] > 0:
        prefix = [i for i in prefix if float(e[i]) >= float(p["min_p"])]
    kept = sorted(prefix)
    F = 0.0
    for i in kept:
        F += float(e[i])
    target = u * F
    running = 0.0
    token = None
    boundaries = [0.0]
    for i in kept:
        running += float(e[i])
        boundaries.append(running)
        if token is None and running > target:
            token = i
    if token is None:
        token = [i for i in kept if e[i] > 0][-1]
    margin = min(abs(b - target) for b in boundaries) / F
    logprob = F32(math.log(float(e[token])) - math.log(F))
    filtered = np.zeros(V, dtype=F32)
    for i in kept:
        filtered[i] = F32(float(e[i]) / F)
    return dict(token=token, logprob=logprob, kept=len(kept), margin=margin, u=u,
                filtered=filtered)


# ----------------------------------------------------------------------------
# Cases. Each builder gets a numpy Generator seeded with the case's seed and
# returns (logits (B, V) float32, per-row params, per-row histories, options).

CASES = []


def case(name, seed, description, V, dtype="f32", top_logprobs=0):
    def register(builder):
        CASES.append(dict(name=name, seed=seed, description=description, V=V, dtype=dtype,
                          n_top=top_logprobs, builder=builder))
        return builder
    return register


def llm_logits(rng, B, V, boosted=6, low=8.0, high=15.0):
    """LLM-like rows: normal(0, 2) plus a handful of tokens boosted by 8-15."""
    logits = rng.normal(0.0, 2.0, size=(B, V)).astype(F32)
    for b in range(B):
        ids = rng.choice(V, size=boosted, replace=False)
        logits[b, ids] += rng.uniform(low, high, size=boosted).astype(F32)
    return logits


def rseed(rng):
    return int(rng.integers(0, 2**64, dtype=np.uint64))


def rstep(rng):
    return int(rng.integers(0, 2**20))


def no_history(B):
    return [[] for _ in range(B)]


def history_with_repeats(rng, logits_row, length, distinct):
    """A history of `length` ids drawn from `distinct` ids, half of them among the
    row's largest logits (positive) and half among its smallest (negative)."""
    order = np.argsort(-logits_row, kind="stable")
    positive = order[:distinct // 2]
    negative = order[::-1][:distinct - distinct // 2]
    pool = np.concatenate([positive, negative])
    assert (logits_row[positive] > 0).all() and (logits_row[negative] < 0).all()
    return [int(v) for v in rng.choice(pool, size=length, replace=True)]


TEACHER = dict(temperature=0.6, top_p=0.95)


@case("teacher_v152064", 1001, "Qwen2 vocabulary, LLM-like bf16 logits, teacher settings "
      "T=0.6 top_p=0.95, top-5 raw logprobs.", V=152064, dtype="bf16", top_logprobs=5)
def _(rng, V):
    B = 2
    return (llm_logits(rng, B, V), [params(**TEACHER, seed=rseed(rng), step=rstep(rng)) for _ in range(B)],
            no_history(B))


@case("teacher_v129280", 1002, "DeepSeek-V3 vocabulary, LLM-like bf16 logits, teacher settings "
      "T=0.6 top_p=0.95.", V=129280, dtype="bf16")
def _(rng, V):
    B = 2
    return (llm_logits(rng, B, V, boosted=4, low=6.0, high=10.0),
            [params(**TEACHER, seed=rseed(rng), step=rstep(rng)) for _ in range(B)], no_history(B))


@case("teacher_v32000", 1003, "Llama vocabulary, LLM-like f32 logits, teacher settings T=0.6 "
      "top_p=0.95 (one row flatter, so top-p keeps many tokens).", V=32000)
def _(rng, V):
    B = 3
    logits = llm_logits(rng, B, V)
    logits[2] = llm_logits(rng, 1, V, boosted=20, low=4.0, high=6.0)[0]
    return logits, [params(**TEACHER, seed=rseed(rng), step=rstep(rng)) for _ in range(B)], no_history(B)


@case("greedy_v129280_top20", 1004, "Greedy T=0 over the DeepSeek-V3 vocabulary (bf16), one row "
      "with penalties moving the argmax, top-20 raw logprobs.", V=129280, dtype="bf16",
      top_logprobs=20)
def _(rng, V):
    logits = llm_logits(rng, 2, V)
    top = np.argsort(-logits[1], kind="stable")[:3]
    history = [[], [int(top[0])] * 3 + [int(top[1])]]
    return logits, [params(temperature=0.0, seed=rseed(rng)),
                    params(temperature=0.0, repetition_penalty=1.5, frequency_penalty=2.0,
                           presence_penalty=1.0, seed=rseed(rng))], history


@case("greedy_ties_v100", 1005, "Greedy T=0 with exact ties for the maximum: the lower id wins "
      "(equal logits, an all-equal row, -0.0 vs +0.0, a tie made by the repetition penalty).", V=100)
def _(rng, V):
    logits = rng.normal(0.0, 1.0, size=(4, V)).astype(F32)
    logits[0, 10] = logits[0, 50] = logits[0, 77] = F32(5.5)
    logits[1, :] = F32(0.25)
    logits[2, :] = -np.abs(logits[2, :]) - F32(0.5)
    logits[2, 31] = F32(0.0)
    logits[2, 12] = F32(-0.0)
    logits[3, :] = np.minimum(logits[3, :], F32(1.5))
    logits[3, 3] = F32(4.0)
    logits[3, 7] = F32(2.0)
    history = [[], [], [], [3]]
    return logits, [params(temperature=0.0, seed=rseed(rng)) for _ in range(3)] + \
        [params(temperature=0.0, repetition_penalty=2.0, seed=rseed(rng))], history


@case("greedy_v7", 1006, "Greedy T=0 on a 7-token vocabulary, with -inf entries and penalties.", V=7)
def _(rng, V):
    logits = np.array([[0.5, 2.0, -1.0, 1.9, -np.inf, 0.0, -3.0],
                       [-np.inf, -np.inf, -2.0, -np.inf, -7.0, -np.inf, -np.inf],
                       [1.0, 3.0, 2.5, -0.5, 2.9, 0.0, -1.0]], dtype=F32)
    history = [[], [2, 2], [1, 1, 4]]
    return logits, [params(temperature=0.0, seed=rseed(rng)),
                    params(temperature=0.0, frequency_penalty=3.0, seed=rseed(rng)),
                    params(temperature=0.0, presence_penalty=0.25, frequency_penalty=0.5,
                           seed=rseed(rng))], history


@case("topk_tie_boundary_v100", 1007, "Exact logit ties straddling the top-k cut: the lower ids "
      "are kept (ranks are z descending, id ascending).", V=100)
def _(rng, V):
    B = 3
    logits = rng.normal(0.0, 1.0, size=(B, V)).astype(F32)
    rows = []
    for b, (k, tied) in enumerate([(5, [90, 17, 55]), (2, [3, 2]), (8, [99, 0, 64, 40])]):
        logits[b] = np.minimum(logits[b], F32(1.0))
        high = [i for i in range(V) if i not in tied][:k - 2 if k > 2 else k - 1]
        for j, i in enumerate(high):
            logits[b, i] = F32(3.0 + 0.5 * j)
        for i in tied:
            logits[b, i] = F32(2.0)
        rows.append(params(temperature=0.9, top_k=k, seed=rseed(rng), step=rstep(rng)))
    return logits, rows, no_history(B)


@case("topp_tie_boundary_v100", 1008, "Exact logit ties straddling the top-p cut (lower id kept, "
      "tied higher id dropped), and exact-weight rows where the cumulative weight equals "
      "top_p * S exactly (>= keeps the shorter prefix).", V=100)
def _(rng, V):
    logits = rng.normal(0.0, 1.0, size=(4, V)).astype(F32)
    rows = []
    # Rows 0, 1: tied pair (ids a < b) at ranks r, r+1; top_p puts the threshold
    # in the middle of the first tied token's weight.
    for b, (a_id, b_id, rank) in enumerate([(20, 70, 3), (5, 6, 1)]):
        logits[b] = np.minimum(logits[b], F32(0.5))
        others = [i for i in range(V) if i not in (a_id, b_id)][:rank]
        for j, i in enumerate(others):
            logits[b, i] = F32(3.0 - 0.4 * j)
        logits[b, a_id] = logits[b, b_id] = F32(1.5)
        T = F32(0.8)
        z = (logits[b] / T).astype(F32)
        e = softmax_weights(z)
        order = rank_order(z)
        assert order[rank] == a_id and order[rank + 1] == b_id
        cumulative = np.cumsum(e[order].astype(F64))
        target = (cumulative[rank - 1] if rank > 0 else 0.0) + 0.5 * float(e[a_id])
        rows.append(params(temperature=T, top_p=target / cumulative[-1], seed=rseed(rng),
                           step=rstep(rng)))
    # Row 2: two tokens with the maximum logit, the rest -inf, top_p = 0.5:
    # weights are exactly 1 and 1, S = 2, threshold 1 = first cumulative weight.
    logits[2, :] = -np.inf
    logits[2, 40] = logits[2, 9] = F32(1.25)
    rows.append(params(temperature=1.0, top_p=0.5, seed=rseed(rng), step=rstep(rng)))
    # Row 3: four tokens tied at the maximum, top_p = 0.75: threshold 3 exactly.
    logits[3, :] = -np.inf
    for i in (88, 4, 61, 30):
        logits[3, i] = F32(-2.0)
    rows.append(params(temperature=0.5, top_p=0.75, seed=rseed(rng), step=rstep(rng)))
    return logits, rows, no_history(4), dict(exact_boundary_rows=[2, 3])


@case("topk_above_vocab_v7", 1009, "top_k larger than the vocabulary (8, 1000, 2^31-1) keeps "
      "everything.", V=7)
def _(rng, V):
    logits = rng.normal(0.0, 1.5, size=(3, V)).astype(F32)
    return logits, [params(top_k=k, seed=rseed(rng), step=rstep(rng)) for k in (8, 1000, 2**31 - 1)], \
        no_history(3)


@case("topk1_v1000", 1010, "top_k = 1 at T = 0.6, 1 and 5: always the argmax, logprob 0.", V=1000)
def _(rng, V):
    logits = llm_logits(rng, 3, V, boosted=2, low=0.5, high=1.0)
    return logits, [params(temperature=T, top_k=1, seed=rseed(rng), step=rstep(rng))
                    for T in (0.6, 1.0, 5.0)], no_history(3)


@case("topp1_v1000", 1011, "top_p = 1 (off): the full softmax at T = 0.6 and T = 1.", V=1000)
def _(rng, V):
    logits = llm_logits(rng, 2, V, boosted=3, low=3.0, high=5.0)
    return logits, [params(temperature=T, top_p=1.0, seed=rseed(rng), step=rstep(rng))
                    for T in (0.6, 1.0)], no_history(2)


@case("topp_tiny_v1000", 1012, "Very small top_p (1e-6, 1e-3, the smallest float32 denormal) keeps "
      "only the most likely token.", V=1000)
def _(rng, V):
    logits = rng.normal(0.0, 2.0, size=(3, V)).astype(F32)
    return logits, [params(temperature=0.7, top_p=tp, seed=rseed(rng), step=rstep(rng))
                    for tp in (1e-6, 1e-3, float(np.finfo(F32).smallest_subnormal))], no_history(3)


@case("minp005_v4096", 1013, "min_p = 0.05 alone and with top-k, at T = 0.6, 1 and 1.5.", V=4096)
def _(rng, V):
    logits = llm_logits(rng, 3, V, boosted=12, low=6.0, high=9.0)
    return logits, [params(temperature=0.6, min_p=0.05, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=1.0, min_p=0.05, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=1.5, min_p=0.05, top_k=6, seed=rseed(rng), step=rstep(rng))], \
        no_history(3)


@case("minp05_v1000", 1014, "min_p = 0.5: only tokens at least half as likely as the best.", V=1000)
def _(rng, V):
    logits = llm_logits(rng, 3, V, boosted=5, low=9.0, high=10.0)
    return logits, [params(temperature=T, min_p=0.5, seed=rseed(rng), step=rstep(rng))
                    for T in (0.6, 1.0, 2.0)], no_history(3)


@case("all_filters_v4096", 1015, "Penalties, temperature, top-k, top-p and min-p together.", V=4096)
def _(rng, V):
    B = 3
    logits = llm_logits(rng, B, V, boosted=30, low=4.0, high=8.0)
    history = [history_with_repeats(rng, logits[b], 40, 12) for b in range(B)]
    rows = [params(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
                   presence_penalty=0.2, frequency_penalty=0.1, seed=rseed(rng), step=rstep(rng)),
            params(temperature=1.2, top_k=10, top_p=0.8, min_p=0.02, repetition_penalty=1.3,
                   presence_penalty=-0.3, frequency_penalty=0.05, seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.6, top_k=100, top_p=0.95, min_p=0.1, repetition_penalty=0.8,
                   presence_penalty=0.5, frequency_penalty=-0.1, seed=rseed(rng), step=rstep(rng))]
    return logits, rows, history


@case("all_filters_v100", 1016, "All filters together on a small vocabulary (filtered_probs checked "
      "exactly; also the chi-square self-check of the draw).", V=100)
def _(rng, V):
    logits = rng.normal(0.0, 1.5, size=(2, V)).astype(F32)
    history = [history_with_repeats(rng, logits[b], 25, 8) for b in range(2)]
    rows = [params(temperature=0.9, top_k=30, top_p=0.9, min_p=0.02, repetition_penalty=1.2,
                   presence_penalty=0.1, frequency_penalty=0.2, seed=rseed(rng), step=rstep(rng)),
            params(temperature=1.3, top_k=12, top_p=0.97, min_p=0.1, repetition_penalty=1.05,
                   presence_penalty=0.4, frequency_penalty=0.0, seed=rseed(rng), step=rstep(rng))]
    return logits, rows, history


@case("penalty_repetition_v100", 1017, "Repetition penalty alone (1.3 and 0.7) with a history of "
      "repeats over positive and negative logits.", V=100)
def _(rng, V):
    logits = rng.normal(0.0, 2.0, size=(3, V)).astype(F32)
    history = [history_with_repeats(rng, logits[b], 30, 10) for b in range(3)]
    return logits, [params(repetition_penalty=1.3, seed=rseed(rng), step=rstep(rng)),
                    params(repetition_penalty=0.7, temperature=0.6, seed=rseed(rng), step=rstep(rng)),
                    params(repetition_penalty=1.3, temperature=0.6, top_p=0.95, seed=rseed(rng),
                           step=rstep(rng))], history


@case("penalty_presence_frequency_v1000", 1018, "Presence and frequency penalties (positive and "
      "negative) with repeats, with and without the repetition penalty.", V=1000)
def _(rng, V):
    logits = llm_logits(rng, 4, V, boosted=6, low=3.0, high=5.0)
    history = [history_with_repeats(rng, logits[b], 60, 16) for b in range(4)]
    return logits, [params(presence_penalty=0.5, seed=rseed(rng), step=rstep(rng)),
                    params(frequency_penalty=0.3, temperature=0.6, seed=rseed(rng), step=rstep(rng)),
                    params(presence_penalty=-0.5, frequency_penalty=-0.25, seed=rseed(rng),
                           step=rstep(rng)),
                    params(presence_penalty=0.7, frequency_penalty=0.4, repetition_penalty=1.2,
                           temperature=0.8, top_p=0.9, seed=rseed(rng), step=rstep(rng))], history


@case("penalty_v32000", 1019, "All three penalties at teacher settings on a Llama-size vocabulary "
      "with a long history of repeats.", V=32000)
def _(rng, V):
    logits = llm_logits(rng, 2, V, boosted=10, low=6.0, high=9.0)
    history = [history_with_repeats(rng, logits[b], 300, 40) for b in range(2)]
    return logits, [params(**TEACHER, repetition_penalty=1.15, presence_penalty=0.3,
                           frequency_penalty=0.2, seed=rseed(rng), step=rstep(rng)),
                    params(**TEACHER, repetition_penalty=1.05, presence_penalty=1.0,
                           frequency_penalty=0.5, seed=rseed(rng), step=rstep(rng))], history


@case("mask_neginf_v4096", 1020, "Most of the vocabulary masked to -inf (10, 1 and 50 tokens "
      "left), sampled with filters, greedily and with no filter at all.", V=4096)
def _(rng, V):
    logits = np.full((4, V), -np.inf, dtype=F32)
    for b, allowed in enumerate((10, 1, 50, 7)):
        ids = rng.choice(V, size=allowed, replace=False)
        logits[b, ids] = rng.normal(0.0, 2.0, size=allowed).astype(F32)
    return logits, [params(**TEACHER, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.6, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=1.0, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.0, seed=rseed(rng))], no_history(4)


@case("mask_neginf_v152064", 1021, "Qwen2 vocabulary (bf16) with all but 200 tokens masked to -inf, "
      "teacher settings.", V=152064, dtype="bf16")
def _(rng, V):
    logits = np.full((1, V), -np.inf, dtype=F32)
    ids = rng.choice(V, size=200, replace=False)
    logits[0, ids] = llm_logits(rng, 1, 200, boosted=3, low=5.0, high=8.0)[0]
    return logits, [params(**TEACHER, seed=rseed(rng), step=rstep(rng))], no_history(1)


@case("invalid_rows_v100", 1022, "Rows with a NaN, a +inf, all -inf (sampled and greedy) mixed with "
      "valid rows in one batch: invalid rows give -1/NaN, the others are unaffected.", V=100,
      top_logprobs=3)
def _(rng, V):
    logits = llm_logits(rng, 8, V, boosted=3, low=2.0, high=4.0)
    logits[1, 37] = np.nan
    logits[3, 5] = np.inf
    logits[4, :] = -np.inf
    logits[5, 60] = np.nan
    logits[7, 0] = np.inf
    rows = [params(**TEACHER, seed=rseed(rng), step=rstep(rng)),
            params(seed=rseed(rng), step=rstep(rng)),
            params(top_k=10, seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.8, seed=rseed(rng), step=rstep(rng)),
            params(seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.0, seed=rseed(rng)),
            params(temperature=0.0, seed=rseed(rng)),
            params(temperature=0.0, seed=rseed(rng))]
    return logits, rows, no_history(8)


@case("temperature_small_v1000", 1023, "T = 0.01: nearly greedy, most weights underflow to 0.", V=1000)
def _(rng, V):
    logits = rng.normal(0.0, 2.0, size=(3, V)).astype(F32)
    # Put a close runner-up next to each maximum so more than one token keeps weight.
    for b in range(3):
        best = int(np.argmax(logits[b]))
        second = (best + 1 + b) % V
        logits[b, second] = logits[b, best] - F32(0.01 * (b + 1))
    return logits, [params(temperature=0.01, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.01, top_p=0.95, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.01, top_k=3, seed=rseed(rng), step=rstep(rng))], no_history(3)


@case("temperature_large_v1000", 1024, "T = 5: a flat distribution over many tokens.", V=1000)
def _(rng, V):
    logits = llm_logits(rng, 3, V, boosted=5, low=8.0, high=12.0)
    return logits, [params(temperature=5.0, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=5.0, top_p=0.95, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=5.0, top_k=50, seed=rseed(rng), step=rstep(rng))], no_history(3)


@case("counter_extremes_v1000", 1025, "Seeds near 2^64-1 and 2^32 and steps near 2^63 and 2^64-1, "
      "exercising every Philox key and counter word.", V=1000)
def _(rng, V):
    pairs = [(2**64 - 1, 2**63), (2**64 - 2, 2**63 - 1), (2**63, 2**64 - 1), (2**32 - 1, 2**32),
             (2**32, 2**32 - 1), (0xFFFFFFFF00000000, 0x00000000FFFFFFFF),
             (0x00000000FFFFFFFF, 0xFFFFFFFF00000000), (0, 0)]
    logits = llm_logits(rng, len(pairs), V, boosted=8, low=4.0, high=6.0)
    return logits, [params(**TEACHER, seed=s, step=t) for s, t in pairs], no_history(len(pairs))


@case("top_logprobs_n20_v1000", 1026, "Top-20 raw logprobs (before penalties and temperature), with "
      "penalties and filters active, ties among the raw logits.", V=1000, top_logprobs=20)
def _(rng, V):
    logits = llm_logits(rng, 2, V, boosted=4, low=3.0, high=6.0)
    best = np.argsort(-logits[0], kind="stable")
    logits[0, 999] = logits[0, best[2]]  # ties inside the top 20: lower id first
    logits[0, 500] = logits[0, best[2]]
    history = [history_with_repeats(rng, logits[b], 20, 6) for b in range(2)]
    return logits, [params(**TEACHER, repetition_penalty=1.3, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.0, presence_penalty=2.0, seed=rseed(rng))], history


@case("top_logprobs_n5_v4096", 1027, "Top-5 raw logprobs with -inf entries in the raw logits.",
      V=4096, top_logprobs=5)
def _(rng, V):
    logits = llm_logits(rng, 2, V, boosted=3, low=4.0, high=6.0)
    logits[1, :4093] = -np.inf  # only 3 finite tokens: the top 5 ends with -inf logprobs
    return logits, [params(**TEACHER, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.8, seed=rseed(rng), step=rstep(rng))], no_history(2)


@case("mixed_params_v4096", 1028, "Eight rows, each with different parameters (greedy, teacher, "
      "filters, penalties): rows are independent.", V=4096)
def _(rng, V):
    B = 8
    logits = llm_logits(rng, B, V, boosted=10, low=5.0, high=9.0)
    history = [history_with_repeats(rng, logits[b], 10 * (b % 3), 6) if b % 3 else [] for b in range(B)]
    rows = [params(temperature=0.0, seed=rseed(rng)),
            params(**TEACHER, seed=rseed(rng), step=rstep(rng)),
            params(temperature=1.0, top_k=20, seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.7, min_p=0.1, repetition_penalty=1.2, seed=rseed(rng), step=rstep(rng)),
            params(temperature=1.5, top_p=0.8, presence_penalty=0.5, seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.3, top_k=5, top_p=0.9, frequency_penalty=0.4, seed=rseed(rng),
                   step=rstep(rng)),
            params(temperature=2.0, min_p=0.05, top_k=200, seed=rseed(rng), step=rstep(rng)),
            params(temperature=0.9, repetition_penalty=0.9, presence_penalty=-0.2,
                   frequency_penalty=0.3, top_p=0.99, seed=rseed(rng), step=rstep(rng))]
    return logits, rows, history


@case("exact_v7", 1029, "Plain softmax sampling over 7 tokens at several temperatures and steps "
      "(exact distribution check; chi-square self-check).", V=7)
def _(rng, V):
    base = np.array([1.0, 0.5, -0.25, 2.0, 0.0, -1.5, 1.25], dtype=F32)
    logits = np.stack([base] * 4 + [rng.normal(0.0, 1.0, size=V).astype(F32) for _ in range(2)])
    temps = (1.0, 1.0, 0.6, 2.0, 1.0, 0.8)
    seed = rseed(rng)
    return logits, [params(temperature=T, seed=seed, step=s) for T, s in zip(temps, (0, 1, 2, 3, 4, 5))], \
        no_history(6)


@case("negzero_tie_v7", 1030, "-0.0 and +0.0 logits tie at the top-k and top-p cut (the lower id "
      "wins), and greedy over -0.0 / +0.0.", V=7)
def _(rng, V):
    row = np.array([1.5, -0.0, 2.0, 0.0, -1.0, 0.0, -3.0], dtype=F32)
    logits = np.stack([row, row, row, np.array([-0.0, 0.0, -1.0, -2.0, -0.0, -5.0, -1.0], dtype=F32)])
    z = row / F32(1.0)
    e = softmax_weights(z)
    order = rank_order(z)
    cumulative = np.cumsum(e[order].astype(F64))
    top_p = (cumulative[1] + 0.5 * float(e[1])) / cumulative[-1]  # cut inside the first zero
    return logits, [params(top_k=3, seed=rseed(rng), step=rstep(rng)),
                    params(top_k=4, temperature=0.7, seed=rseed(rng), step=rstep(rng)),
                    params(top_p=top_p, seed=rseed(rng), step=rstep(rng)),
                    params(temperature=0.0, seed=rseed(rng))], no_history(4)


@case("single_row_v32000_defaults", 1031, "One row with the neutral parameters (T=1, no filters, no "
      "penalties) over 32000 tokens, seed 0, step 0.", V=32000)
def _(rng, V):
    return llm_logits(rng, 1, V), [params()], no_history(1)


# ----------------------------------------------------------------------------
# Running a case


def build_case(spec):
    rng = np.random.default_rng(spec["seed"])
    result = spec["builder"](rng, spec["V"])
    logits, rows, histories = result[:3]
    options = result[3] if len(result) > 3 else {}
    logits = np.ascontiguousarray(logits, dtype=F32)
    B, V = logits.shape
    assert V == spec["V"] and 1 <= B <= 8 and len(rows) == B and len(histories) == B
    if spec["dtype"] == "bf16":
        bits = f32_to_bf16_bits(logits)
        logits = bf16_bits_to_f32(bits)  # the values every backend sees
    else:
        bits = None
    n = spec["n_top"]
    results = [sample_row(logits[b], histories[b], rows[b], b, n) for b in range(B)]
    return dict(spec=spec, logits=logits, bits=bits, rows=rows, histories=histories,
                results=results, options=options, B=B, V=V)


def tensors_of(built):
    spec, rows, results, B, V = built["spec"], built["rows"], built["results"], built["B"], built["V"]
    n = spec["n_top"]
    history = np.array([i for h in built["histories"] for i in h], dtype=np.int32)
    offsets = np.zeros(B + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(h) for h in built["histories"]])
    t = {}
    t["logits"] = ("BF16", built["bits"]) if spec["dtype"] == "bf16" else ("F32", built["logits"])
    t["history"] = ("I32", history)
    t["history_offsets"] = ("I64", offsets)
    for key in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                "frequency_penalty"):
        t[key] = ("F32", np.array([r[key] for r in rows], dtype=F32))
    t["top_k"] = ("I32", np.array([r["top_k"] for r in rows], dtype=np.int32))
    # seed and step are uint64 in the C struct; stored as I64 with the same bits.
    t["seed"] = ("I64", np.array([r["seed"] for r in rows], dtype=np.uint64).view(np.int64))
    t["step"] = ("I64", np.array([r["step"] for r in rows], dtype=np.uint64).view(np.int64))
    t["tokens"] = ("I32", np.array([r["token"] for r in results], dtype=np.int32))
    t["logprobs"] = ("F32", np.array([r["logprob"] for r in results], dtype=F32))
    t["kept"] = ("I32", np.array([r["kept"] for r in results], dtype=np.int32))
    t["margin"] = ("F64", np.array([r["margin"] for r in results], dtype=F64))
    t["u"] = ("F64", np.array([r["u"] for r in results], dtype=F64))
    if V <= 4096:
        t["filtered_probs"] = ("F32", np.stack([r["filtered"] for r in results]).astype(F32))
    if n > 0:
        t["top_ids"] = ("I32", np.stack([r["top_ids"] for r in results]).astype(np.int32))
        t["top_logprobs"] = ("F32", np.stack([r["top_logprobs"] for r in results]).astype(F32))
    metadata = {
        "case": spec["name"],
        "description": spec["description"],
        "script": SCRIPT,
        "regenerate": REGENERATE,
        "seed": str(spec["seed"]),
        "numpy": np.__version__,
        "B": str(B),
        "V": str(V),
        "logits_dtype": spec["dtype"],
        "top_logprobs": str(n),
        "has_history": "1" if len(history) > 0 else "0",
        "semantics": "include/r1lab/sampling.h",
    }
    return t, metadata


NUMPY_OF = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "BF16": np.uint16}


ELEMENT_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2}


def serialize(tensors, metadata):
    """safetensors bytes, written here so that the bytes are reproducible (the
    safetensors package orders __metadata__ through a hash map, so its output
    changes from run to run). Header: compact JSON, __metadata__ first with
    sorted keys, tensors laid out by element size (8, 4, 2 bytes) then name, so
    every tensor is aligned to its element size; the header is padded with
    spaces to a multiple of 8 bytes. check_with_safetensors() reads the result
    back with the safetensors package."""
    assert sys.byteorder == "little"
    names = sorted(tensors, key=lambda name: (-ELEMENT_BYTES[tensors[name][0]], name))
    header = {"__metadata__": {key: metadata[key] for key in sorted(metadata)}}
    chunks, offset = [], 0
    for name in names:
        dtype, array = tensors[name]
        array = np.ascontiguousarray(array, dtype=NUMPY_OF[dtype])
        data = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def check_with_safetensors(blob, tensors, metadata):
    """The safetensors package must read the bytes back to the same tensors."""
    import safetensors
    read = dict(safetensors.deserialize(blob))
    assert set(read) == set(tensors)
    for name, (dtype, array) in tensors.items():
        info = read[name]
        assert info["dtype"] == dtype, (name, info["dtype"])
        assert list(info["shape"]) == list(np.shape(array)), name
        assert bytes(info["data"]) == np.ascontiguousarray(array, NUMPY_OF[dtype]).tobytes(), name
    from safetensors import safe_open
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(blob)
        f.flush()
        with safe_open(f.name, framework="numpy") as st:
            assert st.metadata() == metadata
            for name, (dtype, array) in tensors.items():
                if dtype != "BF16":
                    assert same_bits(st.get_tensor(name), np.asarray(array, NUMPY_OF[dtype])), name


def parse_safetensors(blob):
    """A minimal independent reader, to check what was written."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    assert (8 + n) % 8 == 0
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=NUMPY_OF[info["dtype"]]).reshape(info["shape"])
        if end > begin:
            assert begin % array.itemsize == 0
        out[name] = (info["dtype"], array)
    return out, metadata


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------
# Self-checks


def check_with_scalar(built):
    """Small-V rows: the scalar transcription must agree bit for bit."""
    if built["V"] > 4096:
        return
    for b in range(built["B"]):
        vec = built["results"][b]
        ref = sample_row_scalar(built["logits"][b], built["histories"][b], built["rows"][b], b, 0)
        where = f"{built['spec']['name']} row {b}"
        assert vec["token"] == ref["token"], f"{where}: token {vec['token']} vs scalar {ref['token']}"
        assert vec["kept"] == ref["kept"], f"{where}: kept {vec['kept']} vs scalar {ref['kept']}"
        assert vec["margin"] == ref["margin"], f"{where}: margin differs"
        assert vec["u"] == ref["u"]
        if ref["token"] >= 0:
            assert same_bits(vec["logprob"], ref["logprob"]), f"{where}: logprob differs"
            if "filtered" in ref:
                assert same_bits(vec["filtered"], ref["filtered"]), f"{where}: filtered differs"


def check_rank_order():
    """rank_order against Python's sort on a row full of ties, -0.0, -inf."""
    rng = np.random.default_rng(7)
    z = rng.choice(np.array([1.0, 0.0, -0.0, -1.0, -np.inf, 2.5], dtype=F32), size=500)
    want = sorted(range(len(z)), key=lambda i: (-float(z[i]), i))
    assert list(rank_order(z)) == want


def chi_square_sf(statistic, dof):
    """P(X >= statistic) for chi-square with dof degrees of freedom: Q(dof/2, x/2)."""
    a, x = dof / 2.0, statistic / 2.0
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # series for P, Q = 1 - P
        term = total = 1.0 / a
        k = a
        for _ in range(10000):
            k += 1
            term *= x / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Lentz continued fraction for Q.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(log_prefix) * h


def check_bf16():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, np.inf, -np.inf, 3.4e38, np.nan, -0.0],
                 dtype=F32)
    want = [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80, 0xFF80, 0x7F80, 0x7FC0, 0x8000]
    assert [int(v) for v in f32_to_bf16_bits(x)] == want
    back = bf16_bits_to_f32(np.array(want[:6], dtype=np.uint16))
    assert same_bits(back, np.array([1.0, 1.0, 1 + 2**-6, -2.5, np.inf, -np.inf], dtype=F32))


def check_chi_square_sf():
    # Known quantiles: 95% points of chi-square with 1 and 10 degrees of freedom.
    assert abs(chi_square_sf(3.841458820694124, 1) - 0.05) < 1e-9
    assert abs(chi_square_sf(18.307038053275146, 10) - 0.05) < 1e-9
    assert abs(chi_square_sf(2.0, 2) - math.exp(-1.0)) < 1e-12


def check_draw_distribution(built, row, samples=200000):
    """Draw `samples` tokens with steps 0..samples-1 through the same draw code and
    compare the frequencies with filtered_probs (chi-square, p > 1e-4)."""
    p = built["rows"][row]
    logits, history = built["logits"][row], built["histories"][row]
    expected = built["results"][row]["filtered"].astype(F64)
    # Recompute the kept set and weights as sample_row does, then draw with many u.
    lp = apply_penalties(logits, history, p)
    z = (lp / p["temperature"]).astype(F32)
    e = softmax_weights(z)
    kept_ids = np.nonzero(built["results"][row]["filtered"] > 0)[0]
    u = philox.sampling_uniform(p["seed"], row, np.arange(samples, dtype=np.uint64))
    positions, _, _ = draw_positions(e[kept_ids], u)
    counts = np.bincount(kept_ids[positions], minlength=len(expected))
    assert counts[expected == 0].sum() == 0, "a token outside the kept set was drawn"
    want = expected * samples
    # Merge bins expecting fewer than 5 draws into one.
    order = np.argsort(-want, kind="stable")
    observed_bins, want_bins, rest_o, rest_w = [], [], 0.0, 0.0
    for i in order:
        if want[i] == 0:
            continue
        if want[i] >= 5:
            observed_bins.append(counts[i])
            want_bins.append(want[i])
        else:
            rest_o += counts[i]
            rest_w += want[i]
    if rest_w > 0:
        observed_bins.append(rest_o)
        want_bins.append(rest_w)
    observed_bins, want_bins = np.array(observed_bins, dtype=F64), np.array(want_bins)
    statistic = float(np.sum((observed_bins - want_bins) ** 2 / want_bins))
    dof = len(want_bins) - 1
    pvalue = chi_square_sf(statistic, dof) if dof > 0 else 1.0
    print(f"  chi-square {built['spec']['name']} row {row}: {samples} draws, {len(want_bins)} bins, "
          f"statistic {statistic:.2f}, dof {dof}, p = {pvalue:.4f}")
    assert pvalue > 1e-4, "the draw does not follow filtered_probs"


def check_expectations(built):
    """Invariants every case must satisfy."""
    name = built["spec"]["name"]
    exact_rows = set(built["options"].get("exact_boundary_rows", []))
    for b, r in enumerate(built["results"]):
        where = f"{name} row {b}"
        if not r["valid"]:
            assert r["token"] == -1 and np.isnan(r["logprob"]) and np.isnan(r["filtered"]).all()
            continue
        assert 0 <= r["token"] < built["V"]
        assert abs(float(np.sum(r["filtered"].astype(F64))) - 1.0) < 1e-5, where
        assert r["filtered"][r["token"]] > 0, where
        assert r["margin"] >= MARGIN_FAIL, f"{where}: margin {r['margin']:.3g} < {MARGIN_FAIL}: change the case seed"
        if b not in exact_rows:
            assert r["filter_slack"] >= FILTER_SLACK_WANT, \
                f"{where}: top-p/min-p decision within {r['filter_slack']:.3g} of its threshold"
        if built["spec"]["n_top"] > 0:
            top = r["top_logprobs"]
            assert np.all(top[:-1] >= top[1:]), f"{where}: top logprobs not descending"


# ----------------------------------------------------------------------------
# Driver


def sha256(blob):
    return hashlib.sha256(blob).hexdigest()


def update_manifest(lines):
    """Replaces this script's lines in golden/MANIFEST, keeps the others."""
    manifest.replace_folder(OUT_DIR, lines)

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare regenerated bytes with the files on disk; write nothing")
    parser.add_argument("--case", action="append", help="only these cases (with --check)")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.chdir(root)
    assert np.__version__ == "2.1.3", f"numpy {np.__version__}: pin numpy==2.1.3 (requirements.txt)"
    names = [c["name"] for c in CASES]
    assert len(set(names)) == len(names)
    check_rank_order()
    check_bf16()
    check_chi_square_sf()
    if not args.check:
        os.makedirs(OUT_DIR, exist_ok=True)
    smallest = (math.inf, None)
    manifest, mismatches, built_by_name = [], [], {}
    for spec in CASES:
        if args.case and spec["name"] not in args.case:
            continue
        built = build_case(spec)
        built_by_name[spec["name"]] = built
        check_expectations(built)
        check_with_scalar(built)
        tensors, metadata = tensors_of(built)
        blob = serialize(tensors, metadata)
        check_with_safetensors(blob, tensors, metadata)
        read, read_metadata = parse_safetensors(blob)
        assert read_metadata == metadata and set(read) == set(tensors)
        for key, (dtype, array) in tensors.items():
            assert read[key][0] == dtype and same_bits(read[key][1], np.asarray(array, NUMPY_OF[dtype]))
        path = f"{OUT_DIR}/{spec['name']}.safetensors"
        if args.check:
            ok = os.path.exists(path) and open(path, "rb").read() == blob
            if not ok:
                mismatches.append(path)
        else:
            with open(path, "wb") as f:
                f.write(blob)
        manifest.append(f"{path} {SCRIPT} {spec['seed']} {sha256(blob)}")
        margins = [r["margin"] for r in built["results"] if r["valid"]]
        row_min = min(margins) if margins else math.inf
        if row_min < smallest[0]:
            smallest = (row_min, spec["name"])
        low = sum(1 for m in margins if m < MARGIN_WANT)
        print(f"{spec['name']:34s} B={built['B']} V={built['V']:6d} tokens={[r['token'] for r in built['results']]} "
              f"kept={[r['kept'] for r in built['results']]} min_margin={row_min:.3g}"
              + (f"  ({low} rows below {MARGIN_WANT:g})" if low else ""))
    print(f"smallest margin overall: {smallest[0]:.3g} ({smallest[1]})")
    if not args.case or "exact_v7" in args.case:
        print("self-check: empirical draw frequencies vs filtered_probs")
        for name, rows in (("exact_v7", range(6)), ("all_filters_v100", range(2)),
                           ("temperature_large_v1000", [2])):
            if name in built_by_name:
                for row in rows:
                    check_draw_distribution(built_by_name[name], row)
    if args.check:
        if mismatches:
            print("MISMATCH (regenerate with: " + REGENERATE + "):\n  " + "\n  ".join(mismatches))
            return 1
        print(f"all {len(manifest)} files match")
        return 0
    if not args.case:
        update_manifest(manifest)
        print(f"wrote {len(manifest)} files to {OUT_DIR}/ and updated {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
