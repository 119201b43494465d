#!/usr/bin/env python3
"""bench/torch_moe.py — the DeepSeek-V3 gate in PyTorch eager mode, the baseline
that r1lab's fused CUDA gate is compared with, timed on the same GPU in the
same ci/gpu.sh run.

What it times (DeepSeek-V3 inference/model.py Gate and Hugging Face's
DeepseekV3TopkRouter, from the logits on): sigmoid -> + bias -> view (T, 8, 32)
-> top-2 sum per group -> top-4 groups -> mask the other groups' experts with
-inf -> top-8 -> gather the unbiased scores -> normalize -> * 2.5.
E = 256, f32 logits normal(0, 2), bias normal(0, 0.02) as in bench/bench_moe.c,
T in {1, 16, 256, 4096, 16384}. Times are medians of CUDA-event timings over
repeated calls.

    python3 bench/torch_moe.py --json OUT.json
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import time_median_us, write_results  # noqa: E402

E, G, TOPK_GROUP, K, FACTOR = 256, 8, 4, 8, 2.5


def gate_v3(logits, bias):
    scores = logits.sigmoid()
    choice = scores + bias
    group = choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)
    kept = group.topk(TOPK_GROUP, dim=-1)[1]
    mask = torch.ones_like(group, dtype=torch.bool).scatter_(1, kept, False)
    choice = choice.view(-1, G, E // G).masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
    ids = choice.topk(K, dim=-1)[1]
    weights = scores.gather(1, ids)
    weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20) * FACTOR
    return ids, weights



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_moe: no GPU visible", file=sys.stderr)
        return 77
    generator = torch.Generator(device="cuda")
    generator.manual_seed(2026)
    bias = torch.randn(E, generator=generator, device="cuda") * 0.02
    results = []
    for tokens in (1, 16, 256, 4096, 16384):
        logits = torch.randn(tokens, E, generator=generator, device="cuda") * 2.0
        microseconds = time_median_us(lambda: gate_v3(logits, bias), args.repeats)
        name = f"torch_moe_gate_v3(T={tokens},E=256,K=8)"
        results.append({"name": name, "tokens": tokens, "median_us": microseconds,
                        "gb_per_s": (tokens * E * 4 + E * 4 + tokens * K * 8) / microseconds / 1e3})
        print(f"{name:45s} {microseconds:10.1f} us")
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
