#!/usr/bin/env python3
"""bench/torch_mla.py — PyTorch absorbed-MLA decode, the baseline that r1lab's
CUDA decode core is compared with in the same ci/gpu.sh run.

What it times: the attn_impl = "absorb" path of DeepSeek-V3's
inference/model.py (class MLA), over a paged cache: gather each sequence's
latent rows [c, k_pe] through its (shuffled) block table, then
    scores = einsum("bshc,btc->bsht", q_latent, kv) * scale     (576 dims)
    p      = softmax(scores.float(), -1).to(bf16)
    out    = einsum("bsht,btc->bshc", p, kv[..., :512])
in bf16, with the gather included (a paged cache has to be gathered or
indexed by something). Same shapes as bench/bench_mla.c: every sequence of
length s_k, s_q = 1 (and 2, causal mask), h in {16, 128}. "microseconds" is
the median of CUDA-event timings of single calls from an idle GPU (torch's
host work included, as r1lab's event times include r1lab's);
"graph_microseconds" the GPU time per call of 20 calls replayed from a CUDA
graph (r1lab's graph_us_per_call), null when they cannot be captured. Bytes
and FLOPs use bench_mla.c's formulas:
    bytes read = b*s_k*576*2 + b*s_q*h*576*2;  FLOPs = sum 2*h*n*(576+512)

    python3 bench/torch_mla.py --json OUT.json
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import time_graph_us, time_median_us, write_results  # noqa: E402

D, DV, BLOCK = 576, 512, 64


def make_case(batch, s_k, heads, s_q, generator):
    per_seq = (s_k + BLOCK - 1) // BLOCK
    blocks = batch * per_seq
    cache = (torch.rand(blocks, BLOCK, D, generator=generator, device="cuda") * 2 - 1).bfloat16()
    table = torch.randperm(blocks, generator=generator, device="cuda").view(batch, per_seq)
    q = (torch.rand(batch, s_q, heads, D, generator=generator, device="cuda") * 2 - 1).bfloat16()
    return cache, table, q


def decode(cache, table, q, s_k, scale):
    batch, s_q = q.shape[0], q.shape[1]
    kv = cache[table].reshape(batch, -1, D)[:, :s_k]                  # (b, s_k, 576)
    scores = torch.einsum("bshc,btc->bsht", q, kv) * scale
    if s_q > 1:
        t = torch.arange(s_k, device="cuda")
        visible = s_k - s_q + 1 + torch.arange(s_q, device="cuda")
        mask = t[None, :] >= visible[:, None]                          # (s_q, s_k)
        scores = scores.masked_fill(mask[None, :, None, :], float("-inf"))
    p = torch.softmax(scores.float(), dim=-1).to(torch.bfloat16)
    return torch.einsum("bsht,btc->bshc", p, kv[..., :DV])


def time_case(batch, s_k, heads, s_q, repeats):
    generator = torch.Generator(device="cuda").manual_seed(7)
    cache, table, q = make_case(batch, s_k, heads, s_q, generator)
    scale = 0.1352
    call = lambda: decode(cache, table, q, s_k, scale)  # noqa: E731
    seconds = 1e-6 * time_median_us(call, repeats, warmup=3)
    graph_us = time_graph_us(call)
    keys = sum(s_k - s_q + 1 + i for i in range(s_q))
    flops = 2.0 * batch * heads * keys * (D + DV)
    read = batch * s_k * D * 2 + batch * s_q * heads * D * 2
    return seconds, graph_us, read, flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_mla: no GPU visible", file=sys.stderr)
        return 77
    configs = [(128, 4096, 128, 1), (128, 4096, 128, 2)]
    configs += [(b, k, h, 1) for b in (1, 16, 64) for k in (1024, 8192, 32768) for h in (16, 128)]
    results = []
    for batch, s_k, heads, s_q in configs:
        name = f"mla_decode(backend=torch,b={batch},s_q={s_q},h={heads},s_k={s_k})"
        try:
            seconds, graph_us, read, flops = time_case(batch, s_k, heads, s_q, args.repeats)
        except torch.cuda.OutOfMemoryError:
            print(f"{name}: out of memory, skipped", file=sys.stderr)
            torch.cuda.empty_cache()
            continue
        results.append({"name": name, "batch": batch, "s_k": s_k, "heads": heads, "s_q": s_q,
                        "microseconds": seconds * 1e6, "graph_microseconds": graph_us,
                        "bytes_per_second": read / seconds, "flops_per_second": flops / seconds})
        graph_text = f"{graph_us:.1f} us" if graph_us is not None else "-"
        print(f"{name}: {seconds * 1e6:.1f} us (graph {graph_text}), {read / seconds / 1e9:.1f} GB/s, "
              f"{flops / seconds / 1e12:.2f} TFLOP/s")
        torch.cuda.empty_cache()
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
