#!/usr/bin/env python3
"""bench/torch_kd.py — the peers r1lab's CUDA kd is compared with, timed on the
same GPU in the same ci/gpu.sh run: PyTorch eager (F.kl_div, the JSD written
out, F.cross_entropy, autograd) and, when importable, Liger-Kernel's
LigerKLDIVLoss, LigerJSD and LigerFusedLinearJSD (skipped cleanly when the
liger_kernel package is absent).

Shapes as bench/bench_kd.c:
  logits   N = 8192, V = 152064, bf16 student and teacher logits, forward +
           backward (dL/ds). Bytes = N V (2 + 2 + 2), as in bench_kd.c.
           torch eager: CE mixed with gamma = 0.5, T = 2 (r1lab's case);
           Liger's losses take log-probabilities, so their timed region
           includes the log_softmax of both inputs and its backward (what a
           user of them runs); LigerKLDIVLoss has no temperature or CE term.
  linear   N = 8192, d = 4096, V = 128256, bf16, teacher as hidden states,
           JSD beta = 0.5: FLOPs = 8 N d V. Peak extra memory = the CUDA
           allocator's peak minus what the inputs and gradients hold.
Times are medians of CUDA-event timings.

    python3 bench/torch_kd.py --json OUT.json [--repeats 20] [--small]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import time_median_us, write_results  # noqa: E402

try:
    from liger_kernel.transformers.kl_div import LigerKLDIVLoss
    from liger_kernel.transformers.jsd import LigerJSD
    from liger_kernel.transformers.fused_linear_jsd import LigerFusedLinearJSD
    LIGER = True
except Exception as error:  # ImportError, or a triton / torch mismatch
    LIGER = False
    LIGER_WHY = repr(error)



def torch_kd(s, z, labels, T, gamma, beta):
    """r1lab's loss in eager PyTorch (see include/r1lab/kd.h)."""
    log_q = torch.log_softmax(s.float() / T, dim=-1)
    log_p = torch.log_softmax(z.float() / T, dim=-1)
    if beta == 0.0:
        D = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)
    else:
        p, q = log_p.exp(), log_q.exp()
        log_M = torch.logsumexp(torch.stack([log_p + torch.log(torch.tensor(beta)),
                                             log_q + torch.log(torch.tensor(1 - beta))]), 0)
        D = beta * (p * (log_p - log_M)).sum(-1) + (1 - beta) * (q * (log_q - log_M)).sum(-1)
    counted = labels != -100
    ce = F.cross_entropy(s.float(), labels, ignore_index=-100, reduction="none")
    per_token = ((1 - gamma) * ce + gamma * T * T * D) * counted
    return per_token.sum() / counted.sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="N = 1024 (quick check)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_kd: no GPU visible", file=sys.stderr)
        return 77
    if not LIGER:
        print(f"torch_kd: liger_kernel not importable ({LIGER_WHY}): Liger peers skipped")
    g = torch.Generator(device="cuda").manual_seed(2026)
    N = 1024 if args.small else 8192
    V = 152064
    results = []

    def record(name, us, bytes_=None, flops=None, extra=None):
        entry = {"name": name, "median_us": us}
        line = f"{name:78s} {us:10.1f} us"
        if bytes_:
            entry["gb_per_s"] = bytes_ / us / 1e3
            line += f" {entry['gb_per_s']:8.1f} GB/s"
        if flops:
            entry["tflop_per_s"] = flops / us / 1e6
            line += f" {entry['tflop_per_s']:7.1f} TFLOP/s"
        if extra is not None:
            entry["extra_memory_mib"] = extra / 2**20
            line += f" extra {entry['extra_memory_mib']:.0f} MiB"
        results.append(entry)
        print(line)

    s = (torch.randn(N, V, generator=g, device="cuda") * 2).bfloat16().requires_grad_(True)
    z = (torch.randn(N, V, generator=g, device="cuda") * 2).bfloat16()
    labels = torch.randint(0, V, (N,), generator=g, device="cuda")
    labels[::16] = -100
    bytes_ = N * V * 6
    for beta in (0.0, 0.5):
        def run():
            s.grad = None
            torch_kd(s, z, labels, 2.0, 0.5, beta).backward()
        try:
            record(f"torch_kd(N={N},V={V},bf16,T=2,gamma=0.5,beta={beta:g},eager)",
                   time_median_us(run, args.repeats, warmup=1), bytes_)
        except torch.cuda.OutOfMemoryError:
            print(f"torch eager beta={beta}: out of memory")
        torch.cuda.empty_cache()
    if LIGER:
        kl = LigerKLDIVLoss(reduction="batchmean", log_target=True)

        def run_kl():
            s.grad = None
            log_q = torch.log_softmax(s, dim=-1)
            log_p = torch.log_softmax(z, dim=-1)
            kl(log_q, log_p).backward()
        record(f"liger_kldiv(N={N},V={V},bf16,log_softmax included)",
               time_median_us(run_kl, args.repeats, warmup=1), bytes_)
        for beta in (0.0, 0.5):
            jsd = LigerJSD(beta=beta)

            def run_jsd():
                s.grad = None
                log_q = torch.log_softmax(s, dim=-1)
                log_p = torch.log_softmax(z, dim=-1)
                jsd(log_q, log_p, labels).backward()
            record(f"liger_jsd(N={N},V={V},bf16,beta={beta:g},log_softmax included)",
                   time_median_us(run_jsd, args.repeats, warmup=1), bytes_)
        torch.cuda.empty_cache()
    del s, z
    torch.cuda.empty_cache()

    # fused linear
    d, V = 4096, 128256
    h = (torch.randn(N, d, generator=g, device="cuda") * 0.05).bfloat16().requires_grad_(True)
    W = (torch.randn(V, d, generator=g, device="cuda") * 0.05).bfloat16().requires_grad_(True)
    ht = (torch.randn(N, d, generator=g, device="cuda") * 0.05).bfloat16()
    Wt = (torch.randn(V, d, generator=g, device="cuda") * 0.05).bfloat16()
    labels = torch.randint(0, V, (N,), generator=g, device="cuda")
    flops = 8 * N * d * V
    if LIGER:
        fl = LigerFusedLinearJSD(jsd_beta=0.5, temperature=1.0)

        def run_fl():
            h.grad = None
            W.grad = None
            fl(h, W, ht, Wt, labels).backward()
        run_fl()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        us = time_median_us(run_fl, max(3, args.repeats // 4), warmup=1)
        extra = torch.cuda.max_memory_allocated() - base
        record(f"liger_fused_linear_jsd(N={N},d={d},V={V},bf16,beta=0.5)", us, flops=flops,
               extra=extra)
    write_results(args.json, results, liger=LIGER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
