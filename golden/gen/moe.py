#!/usr/bin/env python3
"""Golden files for r1lab moe: routing, dispatch, permute / combine, balance, layer.

Independent implementations (never r1lab's C code):
  * Hugging Face transformers' own DeepseekV3TopkRouter / DeepseekV3MoE
    (transformers.models.deepseek_v3) with tiny configs and random weights, for
    the DeepSeek-V3 noaux_tc mode and the whole layer;
  * numpy transcriptions of include/r1lab/moe.h's SEMANTICS for the softmax
    modes, deliberate ties, dispatch, permute / combine and balance.

The math (one token, logits l of E experts, K slots, G groups):
  noaux_tc   s = sigmoid(l); c = s + b; group score = top-2 sum of c;
             keep topk_group groups; K best c within them; w = s / (sum + 1e-20)
             (when norm_topk_prob) * routed_scaling_factor
  softmax    p = softmax(l); K best (group-limited: group score = max p); w = p
             (renormalized when norm_topk_prob) * factor
  ties       lower index wins; ids listed best first.
  dispatch   counts, exclusive offsets, stable permutation of pairs t*K+k by
             expert, inverse, padded layout with sentinel N (moe_align_block_size)
  combine    y[t] = sum_k w[t,k] out[inverse[t*K+k]] + shared[t]
  balance    f_i = E/(K T) load_i, P_i = mean_t s'_{t,i}, L = alpha sum f_i P_i,
             b_i += gamma sign(N/E - load_i)

Where HF and r1lab may legitimately differ: torch.sigmoid versus r1lab's own
float32 sigmoid (core/moe_math.h, replicated here bit for bit in numpy) differ
by an ulp or two. Every HF case is checked against the numpy transcription
(ids equal, weights within 1e-6), and its decisions carry a margin far above
that difference; deliberate ties use the numpy transcription only.
HF returns the K experts unsorted (topk sorted=False); they are reordered to
r1lab's order (score descending, index ascending) after the set is checked.

Logits are stored as bf16 values (exactly representable, widened to f32 by the
tests) when T * E is large, to keep the folder small; the router then sees
those exact values: the HF gate is run with hidden_size = E and an identity
gate weight, so its F.linear returns the logits exactly.

Run with the torch venv from the repository root:
    python3 golden/gen/moe.py      writes golden/moe/*.safetensors,
                                                      updates golden/MANIFEST
"""

import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest  # noqa: E402

SCRIPT = "golden/gen/moe.py"
OUT_DIR = "golden/moe"
MANIFEST = "golden/MANIFEST"
F32 = np.float32

# ----------------------------------------------------------------------------
# r1lab's float32 exp / sigmoid (core/moe_math.h), bit for bit: every step is
# one float32 operation rounded to nearest (numpy never fuses).


def r1_exp(y):
    y = np.asarray(y, dtype=F32)
    log2e, c1, c2 = F32(1.44269504088896341), F32(0.693145751953125), F32(1.428606765330187e-06)
    n = np.floor(y * log2e + F32(0.5)).astype(F32)
    r = (y - n * c1) - n * c2
    p = F32(1.98412698e-4)
    for coefficient in (1.38888889e-3, 8.33333333e-3, 4.16666667e-2, 1.66666667e-1, 0.5, 1.0, 1.0):
        p = (p * r + F32(coefficient)).astype(F32)
    e = np.clip(n, -126, 127).astype(np.int32) + 127
    scale = (e.astype(np.uint32) << np.uint32(23)).view(F32)
    out = (p * scale).astype(F32)
    out = np.where(y < F32(-87.0), F32(0.0), out)
    out = np.where(y > F32(88.0), F32(np.inf), out)
    return out.astype(F32)


def r1_sigmoid(x):
    with np.errstate(over="ignore"):
        return (F32(1.0) / (F32(1.0) + r1_exp(-np.asarray(x, dtype=F32)))).astype(F32)


def bf16_round(x):
    bits = np.ascontiguousarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16))
    return (rounded.astype(np.uint32) << np.uint32(16)).view(F32)


def bf16_bits(x):
    return (np.ascontiguousarray(x, dtype=F32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


# ----------------------------------------------------------------------------
# numpy routing (the header's SEMANTICS)


def rank_order(score, allowed):
    """Indices of allowed entries sorted by (score desc, index asc)."""
    idx = [i for i in range(len(score)) if allowed[i]]
    return sorted(idx, key=lambda i: (-float(score[i]), i))


def route_numpy(cfg, logits, bias):
    T, E = logits.shape
    K, G, tg = cfg["top_k"], cfg["n_group"], cfg["topk_group"]
    mode = cfg["routing"]
    ids = np.zeros((T, K), np.int32)
    weights = np.zeros((T, K), F32)
    margin = np.full(T, np.inf)
    for t in range(T):
        l = logits[t].astype(F32)
        if mode == "noaux_tc":
            q = r1_sigmoid(l)
            c = (q + (bias if bias is not None else np.zeros(E, F32))).astype(F32)
        else:
            m = l.max()
            e = r1_exp((l - m).astype(F32))
            total = float(np.sum(e.astype(np.float64)))
            q = np.array([F32(float(v) / total) for v in e], F32)
            c = l
        allowed = np.ones(E, bool)
        if mode != "softmax_topk":
            size = E // G
            group = np.zeros(G, F32)
            for g in range(G):
                order = rank_order(c[g * size:(g + 1) * size], np.ones(size, bool))
                group[g] = c[g * size + order[0]] if mode == "group_limited_greedy" else \
                    F32(c[g * size + order[0]] + c[g * size + order[1]])
            kept = rank_order(group, np.ones(G, bool))[:tg]
            gs = sorted(float(v) for v in group)[::-1]
            if tg < G:
                margin[t] = min(margin[t], gs[tg - 1] - gs[tg])
            allowed[:] = False
            for g in kept:
                allowed[g * size:(g + 1) * size] = True
        order = rank_order(c, allowed)
        chosen = order[:K]
        if len(order) > K:
            margin[t] = min(margin[t], float(c[order[K - 1]]) - float(c[order[K]]))
        ids[t] = chosen
        w = q[chosen].astype(np.float64)
        if cfg["norm_topk_prob"]:
            w = w / (w.sum() + 1e-20)
        weights[t] = (w * float(F32(cfg["routed_scaling_factor"]))).astype(F32)
    return ids, weights, margin


# ----------------------------------------------------------------------------
# HF transformers' DeepseekV3 modules


def hf_config(cfg, hidden, intermediate=16, shared=1):
    from transformers import DeepseekV3Config
    return DeepseekV3Config(
        hidden_size=hidden, intermediate_size=intermediate, moe_intermediate_size=intermediate,
        n_routed_experts=cfg["experts"], n_shared_experts=shared, num_experts_per_tok=cfg["top_k"],
        n_group=cfg["n_group"], topk_group=cfg["topk_group"], norm_topk_prob=bool(cfg["norm_topk_prob"]),
        routed_scaling_factor=cfg["routed_scaling_factor"], num_hidden_layers=1, first_k_dense_replace=0,
        num_attention_heads=2, num_key_value_heads=2, vocab_size=32, hidden_act="silu")


def reorder_hf(cfg, ids_hf, w_hf, logits, bias):
    """HF's unsorted top-k, put into r1lab's order (c desc, index asc)."""
    T, K = ids_hf.shape
    c = (r1_sigmoid(logits) + bias).astype(F32)
    ids, w = np.zeros_like(ids_hf), np.zeros_like(w_hf)
    for t in range(T):
        order = sorted(range(K), key=lambda k: (-float(c[t, ids_hf[t, k]]), int(ids_hf[t, k])))
        ids[t] = ids_hf[t, order]
        w[t] = w_hf[t, order]
    return ids, w


def route_hf(cfg, logits, bias):
    import torch
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter
    T, E = logits.shape
    router = DeepseekV3TopkRouter(hf_config(cfg, hidden=E))
    with torch.no_grad():
        router.weight.copy_(torch.eye(E))
        router.e_score_correction_bias.copy_(torch.from_numpy(bias))
        router_logits, w, ids = router(torch.from_numpy(logits))
    assert np.array_equal(router_logits.numpy(), logits), "identity gate must return the logits"
    return reorder_hf(cfg, ids.numpy().astype(np.int32), w.numpy().astype(F32), logits, bias)


# ----------------------------------------------------------------------------
# dispatch, combine, balance (numpy)


def dispatch_numpy(ids, E, B):
    T, K = ids.shape
    N = T * K
    flat = ids.reshape(-1)
    counts = np.bincount(flat, minlength=E).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    permutation = np.argsort(flat, kind="stable").astype(np.int32)
    inverse = np.empty(N, np.int32)
    inverse[permutation] = np.arange(N, dtype=np.int32)
    padded_counts = (counts + B - 1) // B * B
    padded_offsets = np.concatenate([[0], np.cumsum(padded_counts)]).astype(np.int32)
    P = N + E * (B - 1)
    sorted_padded = np.full(P, N, np.int32)
    block_expert = np.full((P + B - 1) // B, -1, np.int32)
    for e in range(E):
        sorted_padded[padded_offsets[e]:padded_offsets[e] + counts[e]] = permutation[offsets[e]:offsets[e + 1]]
        block_expert[padded_offsets[e] // B:padded_offsets[e + 1] // B] = e
    return dict(counts=counts, offsets=offsets, permutation=permutation, inverse=inverse,
                padded_offsets=padded_offsets, sorted_padded=sorted_padded, block_expert=block_expert,
                padded_total=np.array([padded_offsets[E]], np.int32))


def balance_numpy(cfg, logits, ids, alpha, gamma, bias):
    T, E = logits.shape
    K = cfg["top_k"]
    load = np.bincount(ids.reshape(-1), minlength=E).astype(np.int32)
    if cfg["routing"] == "noaux_tc":
        s = r1_sigmoid(logits).astype(np.float64)
        affinity = s / s.sum(axis=1, keepdims=True)
    else:
        x = logits.astype(np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        affinity = e / e.sum(axis=1, keepdims=True)
    f = E / (K * T) * load
    P = affinity.mean(axis=0)
    loss = alpha * float(np.sum(f * P))
    mean = T * K / E
    updated = (bias + F32(gamma) * np.sign(mean - load).astype(F32)).astype(F32)
    return load, np.array([loss], np.float64), updated


# ----------------------------------------------------------------------------
# cases


def v3_cfg(**kw):
    cfg = dict(routing="noaux_tc", experts=256, top_k=8, n_group=8, topk_group=4, norm_topk_prob=1,
               routed_scaling_factor=2.5, block_size=64)
    cfg.update(kw)
    return cfg


def make_case(name, cfg, logits, bias, source, rng, hidden=0, store_bf16=False, dispatch=True,
              alpha=1e-4, gamma=1e-3, description=""):
    T, E = logits.shape
    ids, weights, margin = route_numpy(cfg, logits, bias)
    if source == "transformers":
        ids_hf, w_hf = route_hf(cfg, logits, bias)
        assert np.array_equal(ids_hf, ids), f"{name}: HF ids differ from the numpy transcription"
        rel = np.abs(w_hf.astype(np.float64) - weights) / np.abs(weights)
        assert rel.max() <= 1e-6, f"{name}: HF weights differ by {rel.max()}"
        weights = w_hf
    t = {}
    t["logits"] = bf16_bits(logits) if store_bf16 else logits.astype(F32)
    if bias is not None:
        t["bias"] = bias.astype(F32)
    t["ids"] = ids.astype(np.uint8) if E <= 256 and T * cfg["top_k"] > 4096 else ids
    t["weights"] = weights.astype(F32)
    t["margin"] = margin.astype(np.float64) if T <= 64 else np.array([margin.min()], np.float64)
    if dispatch:
        t.update(dispatch_numpy(ids, E, cfg["block_size"]))
        load, loss, updated = balance_numpy(cfg, logits, ids, alpha, gamma,
                                            bias if bias is not None else np.zeros(E, F32))
        t["load"], t["aux_loss"], t["bias_updated"] = load, loss, updated
    if hidden:
        K = cfg["top_k"]
        N = T * K
        x = rng.standard_normal((T, hidden)).astype(F32)
        expert_out = rng.standard_normal((N, hidden)).astype(F32)
        shared = rng.standard_normal((T, hidden)).astype(F32)
        perm = t["permutation"]
        t["x"], t["x_sorted"] = x, x[perm // K]
        t["expert_out"], t["shared"] = expert_out, shared
        inv = t["inverse"].reshape(T, K)
        y = shared.astype(np.float64).copy()
        for k in range(K):
            y += weights[:, k:k + 1].astype(np.float64) * expert_out[inv[:, k]].astype(np.float64)
        t["y"] = y.astype(F32)
    meta = dict(case=name, description=description, script=SCRIPT, source=source,
                routing=cfg["routing"], T=str(T), E=str(E), K=str(cfg["top_k"]), n_group=str(cfg["n_group"]),
                topk_group=str(cfg["topk_group"]), norm_topk_prob=str(cfg["norm_topk_prob"]),
                routed_scaling_factor=repr(float(cfg["routed_scaling_factor"])),
                block_size=str(cfg["block_size"]), alpha=repr(alpha), gamma=repr(gamma),
                hidden=str(hidden), logits_dtype="bf16" if store_bf16 else "f32",
                regenerate="python3 golden/gen/moe.py")
    print(f"{name:28s} T={T:5d} E={E:3d} K={cfg['top_k']} {cfg['routing']:20s} "
          f"min margin {float(np.min(margin)):.3g} ({source})")
    return t, meta


def layer_case(rng):
    """The whole DeepseekV3MoE layer (tiny), run by HF transformers."""
    import torch
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
    cfg = v3_cfg(experts=16, top_k=4, n_group=4, topk_group=2, block_size=4)
    T, d, I = 12, 32, 16
    moe = DeepseekV3MoE(hf_config(cfg, hidden=d, intermediate=I, shared=1))
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(F32) * 0.2))
        bias = (rng.standard_normal(16) * 0.05).astype(F32)
        moe.gate.e_score_correction_bias.copy_(torch.from_numpy(bias))
        x = rng.standard_normal((T, d)).astype(F32)
        y = moe(torch.from_numpy(x).view(1, T, d)).view(T, d).numpy()
        logits = (x.astype(np.float64) @ moe.gate.weight.numpy().astype(np.float64).T).astype(F32)
    ids, weights, margin = route_numpy(cfg, logits, bias)
    assert margin.min() > 1e-4, margin.min()
    gate_up = moe.experts.gate_up_proj.detach().numpy()
    t = dict(x=x, gate_weight=moe.gate.weight.detach().numpy(), bias=bias,
             w1=np.ascontiguousarray(gate_up[:, :I, :]), w3=np.ascontiguousarray(gate_up[:, I:, :]),
             w2=moe.experts.down_proj.detach().numpy(),
             shared_w1=moe.shared_experts.gate_proj.weight.detach().numpy(),
             shared_w3=moe.shared_experts.up_proj.weight.detach().numpy(),
             shared_w2=moe.shared_experts.down_proj.weight.detach().numpy(),
             logits=logits, ids=ids, weights=weights, y=y.astype(F32), margin=margin)
    meta = dict(case="layer_v3_tiny", description="DeepseekV3MoE (transformers) with 16 experts, 1 shared",
                script=SCRIPT, source="transformers", routing="noaux_tc", T=str(T), E="16", K="4",
                n_group="4", topk_group="2", norm_topk_prob="1", routed_scaling_factor="2.5",
                block_size="4", hidden=str(d), intermediate=str(I), shared_intermediate=str(I),
                logits_dtype="f32", regenerate="python3 golden/gen/moe.py")
    print(f"{'layer_v3_tiny':28s} T={T:5d} E= 16 K=4 noaux_tc + SwiGLU experts  (transformers)")
    return {k: np.ascontiguousarray(v) for k, v in t.items()}, meta


def tie_logits_v3():
    """E = 16, G = 4 (groups of 4), topk_group 2, K = 3; rows of deliberate ties."""
    rows = []
    rows.append(np.zeros(16, F32))                                   # everything tied
    r = np.full(16, -1.0, F32); r[[1, 5, 9, 13]] = 2.0; rows.append(r)  # one tied winner per group
    r = np.full(16, -1.0, F32); r[[2, 3, 6, 7]] = 1.5; r[[10, 11]] = 1.5; rows.append(r)  # tied group sums
    r = np.linspace(-1, 1, 16).astype(F32); r[4] = r[15]; rows.append(r)  # expert tie across groups
    base = F32(0.75)
    r = np.full(16, -2.0, F32); r[0] = base; r[4] = np.nextafter(base, F32(1)); r[8] = base; r[12] = base
    r[1] = r[5] = r[9] = r[13] = F32(0.5); rows.append(r)            # near-tie: 1 ulp apart
    return np.stack(rows)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    import torch
    from safetensors.torch import save
    cases = []

    # DeepSeek-V3 size, transformers' router.
    for T, seed in ((1, 601), (16, 602), (4096, 603)):
        rng = np.random.default_rng(seed)
        logits = bf16_round((rng.standard_normal((T, 256)) * 2.0).astype(F32))
        bias = (rng.standard_normal(256) * 0.02).astype(F32)
        cases.append((seed, *make_case(f"v3_t{T}", v3_cfg(), logits, bias, "transformers", rng,
                                       hidden=64 if T == 16 else 0, store_bf16=T > 16,
                                       dispatch=T <= 16,
                                       description=f"DeepSeek-V3 gate, T={T}, E=256, transformers router")))
    # Tiny V3 without renormalization, factor 1.
    rng = np.random.default_rng(604)
    cfg = v3_cfg(experts=16, top_k=4, n_group=4, topk_group=2, norm_topk_prob=0,
                 routed_scaling_factor=1.0, block_size=4)
    logits = (rng.standard_normal((8, 16)) * 1.5).astype(F32)
    bias = (rng.standard_normal(16) * 0.1).astype(F32)
    cases.append((604, *make_case("v3_tiny_nonorm", cfg, logits, bias, "transformers", rng, hidden=24,
                                  description="noaux_tc E=16 G=4 topk_group=2 K=4, no renormalization")))
    # Ties (numpy only: torch.topk promises no tie order).
    rng = np.random.default_rng(605)
    cfg = v3_cfg(experts=16, top_k=3, n_group=4, topk_group=2, block_size=4)
    cases.append((605, *make_case("v3_ties", cfg, tie_logits_v3(), np.zeros(16, F32), "numpy", rng,
                                  hidden=8, description="deliberate ties and 1-ulp near-ties")))
    # Softmax top-k with and without renormalization, ties included.
    for norm, seed in ((1, 606), (0, 607)):
        rng = np.random.default_rng(seed)
        cfg = dict(routing="softmax_topk", experts=8, top_k=2, n_group=1, topk_group=1,
                   norm_topk_prob=norm, routed_scaling_factor=1.0, block_size=4)
        logits = (rng.standard_normal((10, 8))).astype(F32)
        logits[0, :] = 0.5
        logits[1, [2, 6]] = 3.0
        cases.append((seed, *make_case(f"softmax_top2_norm{norm}", cfg, logits, None, "numpy", rng,
                                       hidden=16, description="Mixtral-style softmax top-2")))
    # DeepSeek-V2 group-limited greedy.
    rng = np.random.default_rng(608)
    cfg = dict(routing="group_limited_greedy", experts=32, top_k=6, n_group=8, topk_group=3,
               norm_topk_prob=0, routed_scaling_factor=16.0, block_size=8)
    logits = (rng.standard_normal((24, 32)) * 2).astype(F32)
    logits[0, :] = 1.0
    logits[1, [3, 7, 11]] = 4.0
    cases.append((608, *make_case("v2_group_greedy", cfg, logits, None, "numpy", rng, hidden=16,
                                  description="DeepSeek-V2 group-limited greedy, G=8 topk_group=3 K=6")))
    # Dispatch at a larger size (numpy ids from the numpy router).
    rng = np.random.default_rng(609)
    cfg = v3_cfg(block_size=16)
    logits = bf16_round((rng.standard_normal((256, 256)) * 2.0).astype(F32))
    bias = (rng.standard_normal(256) * 0.02).astype(F32)
    cases.append((609, *make_case("v3_t256_dispatch", cfg, logits, bias, "transformers", rng, store_bf16=True,
                                  description="T=256 routing and dispatch with block 16")))
    cases.append((610, *layer_case(np.random.default_rng(610))))

    entries = []
    for seed, tensors, meta in cases:
        path = f"{OUT_DIR}/{meta['case']}.safetensors"
        meta["seed"] = str(seed)
        # bf16 logits travel as uint16 bits and are stored with dtype BF16.
        as_torch = {k: (torch.from_numpy(np.ascontiguousarray(v)).view(torch.bfloat16)
                        if k == "logits" and v.dtype == np.uint16 else torch.from_numpy(np.ascontiguousarray(v)))
                    for k, v in tensors.items()}
        blob = save(as_torch, metadata=meta)
        with open(path, "wb") as f:
            f.write(blob)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        entries.append(f"{path} {SCRIPT} {seed} {digest}")
    manifest.replace_folder(OUT_DIR, entries)
    total = sum(os.path.getsize(f"{OUT_DIR}/{m['case']}.safetensors") for _, _, m in cases)
    print(f"wrote {len(cases)} files ({total / 2**20:.2f} MiB) to {OUT_DIR}/ and updated {MANIFEST}")


if __name__ == "__main__":
    sys.exit(main())
