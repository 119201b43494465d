#!/usr/bin/env python3
"""golden/gen/kd.py — golden files for the kd component (include/r1lab/kd.h).

An independent implementation of the SEMANTICS block of r1lab/kd.h with
PyTorch autograd in float64: F.cross_entropy for CE, F.kl_div for the two
KLs, the generalized JSD written out with logsumexp for log M, the sparse
teacher's "renormalized top-k" rule by scatter. Gradients come from
autograd (loss.backward()), never from the closed forms in the header, so
the files check those forms too.

Inputs are drawn in float32 or bf16 (bf16 widens exactly to float64); the
expectations are computed in float64 from the stored input values.

    python3 golden/gen/kd.py     # writes golden/kd/*.safetensors
                                                      # and updates golden/MANIFEST

File format (golden/kd/<case>.safetensors):
  metadata   case, form ("logits" | "linear"), dtype ("f32" | "bf16"), tokens,
             vocab, gamma, temperature, beta, ignore_index, reduction
             ("mean" | "sum" | "none"), teacher_topk, hidden, teacher_hidden,
             has_labels ("1" | "0")
  inputs     student_logits, teacher_logits (N, V) dtype        form logits
             student_hidden (N, d), student_weight (V, d) dtype  form linear
             teacher_hidden (N, dt), teacher_weight (V, dt)      linear, dt > 0
             teacher_ids I32 (N, k), teacher_logprobs F32 (N, k)  sparse teacher
             labels I32 (N)
  expected   loss F64 (1), token_losses F64 (N),
             grad (N, V) F32 (BF16 for bf16 inputs, to keep files small),
             grad_hidden F32 (N, d), grad_weight F32 (V, d)       form linear
"""
import hashlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "golden", "kd")
SCRIPT = "golden/gen/kd.py"


def teacher_log_probs_dense(z, T):
    return torch.log_softmax(z / T, dim=-1)


def teacher_log_probs_sparse(ids, lp, V, T):
    """Renormalized top-k: p on the ids is softmax(lp / T) over the k entries."""
    scaled = lp / T
    log_top = scaled - torch.logsumexp(scaled, dim=-1, keepdim=True)
    log_p = torch.full((ids.shape[0], V), -math.inf, dtype=torch.float64)
    return log_p.scatter(1, ids.long(), log_top)


def divergence(log_p, log_q, beta):
    """Per-token D_beta (Liger's generalized JSD; beta 0 / 1 are the KLs)."""
    p, q = log_p.exp(), log_q.exp()
    if beta == 0.0:  # KL(p || q); kl_div's xlogy keeps 0 log 0 = 0
        return F.kl_div(log_q, p, reduction="none").sum(-1)
    if beta == 1.0:  # KL(q || p)
        return F.kl_div(log_p, q, reduction="none").sum(-1)
    log_M = torch.logsumexp(
        torch.stack([math.log(beta) + log_p, math.log(1 - beta) + log_q]), dim=0)
    kl_p_M = (torch.special.xlogy(p, p) - p * log_M).sum(-1)
    kl_q_M = (q * (log_q - log_M)).sum(-1)
    return beta * kl_p_M + (1 - beta) * kl_q_M


def kd_loss(s, log_p, labels, c):
    """Per-token l_t and the reduced L."""
    T, gamma = c["temperature"], c["gamma"]
    log_q = torch.log_softmax(s / T, dim=-1)
    D = divergence(log_p, log_q, c["beta"])
    if labels is not None:
        counted = labels != c["ignore_index"]
        ce = F.cross_entropy(s, labels.long(), ignore_index=c["ignore_index"], reduction="none")
    else:
        counted = torch.ones(s.shape[0], dtype=torch.bool)
        ce = torch.zeros(s.shape[0], dtype=torch.float64)
    per_token = (1 - gamma) * ce + gamma * T * T * D
    per_token = torch.where(counted, per_token, torch.zeros_like(per_token))
    C = int(counted.sum())
    if c["reduction"] == "mean":
        L = per_token.sum() / C if C > 0 else per_token.sum() * 0.0
    else:
        L = per_token.sum()
    return per_token, L


def draw(shape, gen, scale=2.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * scale


def stored(x, dtype):
    return x.to(torch.bfloat16) if dtype == "bf16" else x.to(torch.float32)


def make_case(c):
    gen = torch.Generator().manual_seed(c["seed"])
    N, V, dtype = c["tokens"], c["vocab"], c["dtype"]
    T = c["temperature"]
    tensors, meta = {}, {}
    labels = torch.randint(0, V, (N,), generator=gen, dtype=torch.int32)
    for t in c.get("ignored", []):
        labels[t] = c["ignore_index"]
    k = c.get("topk", 0)

    def teacher_part(z_rows):
        """Teacher log-probs (float64, (N, V)) from the dense/sparse input."""
        if k > 0:
            # top-k of a random teacher, as a server reports them (raw log-probs)
            full = torch.log_softmax(z_rows.double(), dim=-1)
            lp, ids = full.topk(k, dim=-1)
            lp = lp.float()
            for (t, j) in c.get("neginf_logprobs", []):
                lp[t, j] = -math.inf
            tensors["teacher_ids"] = ids.to(torch.int32).contiguous()
            tensors["teacher_logprobs"] = lp.contiguous()
            return teacher_log_probs_sparse(ids, lp.double(), V, T)
        z = stored(z_rows, dtype)
        for (t, lo, hi) in c.get("neginf", []):
            z[t, lo:hi] = -math.inf
        tensors["teacher_logits"] = z.contiguous()
        return teacher_log_probs_dense(z.double(), T)

    if c["form"] == "logits":
        s_in = stored(draw((N, V), gen, c.get("scale", 2.0)), dtype)
        log_p = teacher_part(draw((N, V), gen, c.get("scale", 2.0)) + 0.5)
        tensors["student_logits"] = s_in.contiguous()
        s = s_in.double().requires_grad_(True)
        per_token, L = kd_loss(s, log_p, labels if c.get("labels", True) else None, c)
        L_grad = per_token.sum() if c["reduction"] == "none" else L
        L_grad.backward()
        grad = s.grad
        tensors["grad"] = grad.to(torch.bfloat16 if dtype == "bf16" else torch.float32).contiguous()
    else:
        d, dt = c["hidden"], c.get("teacher_hidden", 0)
        h_in = stored(draw((N, d), gen, 1.0), dtype)
        W_in = stored(draw((V, d), gen, 1.0 / math.sqrt(d)) * 3.0, dtype)
        tensors["student_hidden"], tensors["student_weight"] = h_in, W_in
        if dt > 0:
            ht_in = stored(draw((N, dt), gen, 1.0), dtype)
            Wt_in = stored(draw((V, dt), gen, 1.0 / math.sqrt(dt)) * 3.0, dtype)
            tensors["teacher_hidden"], tensors["teacher_weight"] = ht_in, Wt_in
            log_p = teacher_log_probs_dense(ht_in.double() @ Wt_in.double().T, T)
        else:
            log_p = teacher_part(draw((N, V), gen, 2.0))
        h = h_in.double().requires_grad_(True)
        W = W_in.double().requires_grad_(True)
        s = h @ W.T
        per_token, L = kd_loss(s, log_p, labels, c)
        (per_token.sum() if c["reduction"] == "none" else L).backward()
        tensors["grad_hidden"] = h.grad.float().contiguous()
        tensors["grad_weight"] = W.grad.float().contiguous()
        meta["hidden"], meta["teacher_hidden"] = str(d), str(dt)
    if c.get("labels", True):
        tensors["labels"] = labels
    tensors["loss"] = L.detach().reshape(1)
    tensors["token_losses"] = per_token.detach().contiguous()
    assert torch.isfinite(L), c["name"]
    meta.update({
        "case": c["name"], "form": c["form"], "dtype": dtype, "tokens": str(N),
        "vocab": str(V), "gamma": repr(c["gamma"]), "temperature": repr(T),
        "beta": repr(c["beta"]), "ignore_index": str(c["ignore_index"]),
        "reduction": c["reduction"], "teacher_topk": str(k),
        "has_labels": "1" if c.get("labels", True) else "0",
    })
    meta.setdefault("hidden", "0")
    meta.setdefault("teacher_hidden", "0")
    return tensors, meta


def base(name, seed, **kw):
    c = {"name": name, "seed": seed, "form": "logits", "dtype": "f32", "tokens": 6,
         "vocab": 500, "gamma": 1.0, "temperature": 1.0, "beta": 0.0,
         "ignore_index": -100, "reduction": "mean"}
    c.update(kw)
    return c


CASES = [
    # the Qwen2.5 vocabulary, bf16 as in training; gradient stored bf16
    base("fkl_ce_t2_v152064_bf16", 5001, dtype="bf16", tokens=2, vocab=152064,
         temperature=2.0, gamma=0.5, neginf=[(1, 100000, 100100)]),
    base("jsd_b05_v32000_bf16", 5002, dtype="bf16", tokens=1, vocab=32000, beta=0.5,
         reduction="sum"),
    base("sparse_top20_ce_v32000_bf16", 5003, dtype="bf16", tokens=3, vocab=32000, topk=20,
         gamma=0.5, ignored=[1]),
    base("fkl_t1_v500", 5004),
    base("fkl_ce_t4_ignored_v500", 5005, temperature=4.0, gamma=0.5, ignored=[0, 3]),
    base("rkl_t2_v500", 5006, beta=1.0, temperature=2.0),
    base("rkl_ce_none_v500", 5007, beta=1.0, gamma=0.5, reduction="none", ignored=[2]),
    base("jsd_b05_v500", 5008, beta=0.5),
    base("jsd_b03_ce_t2_sum_v500", 5009, beta=0.3, gamma=0.5, temperature=2.0,
         reduction="sum"),
    base("ce_only_v500", 5010, gamma=0.0, ignored=[5]),
    base("neginf_teacher_fkl_ce_v500", 5011, gamma=0.5,
         neginf=[(0, 0, 250), (2, 10, 499), (4, 0, 1)]),
    base("neginf_teacher_jsd_t2_v500", 5012, beta=0.5, temperature=2.0,
         neginf=[(1, 0, 400), (3, 5, 6)]),
    base("all_ignored_v300", 5013, vocab=300, tokens=3, gamma=0.5, ignored=[0, 1, 2]),
    base("sparse_top5_jsd_t2_v500", 5014, topk=5, beta=0.5, temperature=2.0),
    base("sparse_top8_fkl_neginf_v500", 5015, topk=8, neginf_logprobs=[(0, 7), (2, 3)],
         gamma=0.5, reduction="none"),
    base("no_labels_jsd_b07_v500", 5016, beta=0.7, labels=False, temperature=4.0),
    base("linear_d896_v48_teacher_hidden_jsd", 5017, form="linear", tokens=4, vocab=48,
         hidden=896, teacher_hidden=256, beta=0.5, gamma=0.5, temperature=2.0,
         ignored=[1]),
    base("linear_d64_v300_sparse_fkl", 5018, form="linear", tokens=5, vocab=300, hidden=64,
         topk=10, gamma=0.5, reduction="sum"),
]


def update_manifest(lines):
    """Replaces this script's lines in golden/MANIFEST, keeps the others."""
    manifest.replace_folder("golden/kd", lines)

def main():
    os.makedirs(OUT, exist_ok=True)
    lines, total = [], 0
    for c in CASES:
        tensors, meta = make_case(c)
        path = os.path.join(OUT, c["name"] + ".safetensors")
        save_file(tensors, path, metadata=meta)
        data = open(path, "rb").read()
        total += len(data)
        lines.append(f"golden/kd/{c['name']}.safetensors {SCRIPT} {c['seed']} "
                     f"{hashlib.sha256(data).hexdigest()}")
        print(f"{c['name']}: {len(data)} bytes, loss {float(tensors['loss'][0]):.6g}")
    update_manifest(lines)
    print(f"{len(CASES)} files, {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    sys.exit(main())
