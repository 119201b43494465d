#!/usr/bin/env python3
"""bench/torch_sampling.py — PyTorch's sort-based sampling, the baseline that
r1lab's CUDA sampler is compared with, timed on the same GPU in the same
ci/gpu.sh run.

What it times (the usual top-p / top-k / min-p path of Hugging Face and vLLM's
fallback sampler): logits / T -> softmax -> sort descending -> cumulative sum
-> mask the tail -> renormalize -> torch.multinomial. Same shapes and logits
distribution as bench/bench_sampling.c (normal(0, 2), ten tokens per row
raised by 8..15). Times are medians of CUDA-event timings over repeated calls,
inputs rotated so that they do not sit in L2.

    python3 bench/torch_sampling.py --json OUT.json
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import gpu_visible, parse_arguments, time_median_us, write_results  # noqa: E402


def make_logits(batch, vocab, generator):
    logits = torch.randn(batch, vocab, generator=generator, device="cuda") * 2.0
    rows = torch.arange(batch, device="cuda").repeat_interleave(10)
    cols = torch.randint(0, vocab, (batch * 10,), generator=generator, device="cuda")
    boost = 8.0 + 7.0 * torch.rand(batch * 10, generator=generator, device="cuda")
    logits[rows, cols] += boost
    return logits


def sample_top_p(logits, temperature, top_p):
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, sorted_ids = torch.sort(probs, dim=-1, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    sorted_probs = sorted_probs.masked_fill(cumulative - sorted_probs > top_p, 0.0)
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(-1, keepdim=True), 1)
    return torch.gather(sorted_ids, -1, choice)


def sample_top_k(logits, temperature, top_k):
    values, ids = torch.topk(logits / temperature, top_k, dim=-1)
    choice = torch.multinomial(torch.softmax(values, dim=-1), 1)
    return torch.gather(ids, -1, choice)


def sample_min_p(logits, temperature, min_p):
    probs = torch.softmax(logits / temperature, dim=-1)
    keep = probs >= min_p * probs.max(dim=-1, keepdim=True).values
    return torch.multinomial(probs * keep, 1)


SETTINGS = {
    "T=0.6,top_p=0.95": lambda x: sample_top_p(x, 0.6, 0.95),
    "T=0.6,top_k=50": lambda x: sample_top_k(x, 0.6, 50),
    "T=0.6,min_p=0.05": lambda x: sample_min_p(x, 0.6, 0.05),
}


def main():
    args = parse_arguments(__doc__.split("\n")[0], default_repeats=50)
    if not gpu_visible("torch_sampling"):
        return 77
    generator = torch.Generator(device="cuda")
    generator.manual_seed(2026)
    results = []
    for setting, function in SETTINGS.items():
        for batch in (1, 64, 256):
            for vocab in (32000, 129280, 152064):
                bytes_per_call = batch * vocab * 4
                copies = max(1, min(8, (128 << 20) // bytes_per_call))
                inputs = [make_logits(batch, vocab, generator) for _ in range(copies)]
                microseconds = time_median_us(function, args.repeats, inputs, warmup=3)
                name = f"torch_sampling(B={batch},V={vocab},{setting})"
                results.append({"name": name, "batch": batch, "vocab": vocab,
                                "setting": setting, "median_us": microseconds,
                                "gb_per_s": bytes_per_call / microseconds / 1e3})
                print(f"{name:55s} {microseconds:10.1f} us")
                del inputs
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
