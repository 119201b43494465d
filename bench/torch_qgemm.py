#!/usr/bin/env python3
"""bench/torch_qgemm.py — PyTorch's quantized and bf16 matrix products, the
peers of r1lab's CUDA qgemm, timed on the same GPU in the same ci/gpu.sh run.

What it times, for Y (M, N) = X (M, K) . W^T on the shapes of
bench/bench_qgemm.c (M in {1, 16, 64, 128, 1024, 4096} x (N, K) in
{(7168, 16384), (18432, 7168), (24576, 1536), (4096, 7168), (8192, 8192)},
plus (28672, 8192) for M <= 16):
  fp8_tensor    torch._scaled_mm, e4m3 x e4m3 with per-tensor scales, bf16 out
  fp8_block     torch._scaled_mm with 1x128 activation / 128x128 weight scales
                (DeepSeek-V3's blocks, what r1lab's FP8 computes; cuBLASLt's
                VEC128 / BLK128x128 scale modes, CUDA >= 12.9), when the
                installed torch accepts them (else reported absent). cuBLASLt
                takes the activation scales M-major (stride 1 along M) and M a
                multiple of 4: smaller M is zero-padded to 4 rows and timed so
  int8_mm       torch._int_mm (int32 out) + a separate dequant step
                (acc * s_x[:, None] * s_w[None, :] -> bf16), the W8A8 peer
                (_int_mm needs M > 16: smaller M are padded to 32 rows)
  bf16_matmul   torch.matmul in bf16 (the W4A16 peer; cuBLAS underneath)
"median_us": the median of CUDA-event timings of single calls, each from an
idle GPU (so with torch's host work in it, as r1lab's event times have
r1lab's); "graph_us": the GPU time per call of 20 calls replayed from a CUDA
graph (r1lab's "graph_us_per_call"), null when they cannot be captured.

    python3 bench/torch_qgemm.py --json OUT.json
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import time_graph_us, time_median_us, write_results  # noqa: E402

SHAPES = [(7168, 16384), (18432, 7168), (24576, 1536), (4096, 7168), (8192, 8192)]
MS = [1, 16, 64, 128, 1024, 4096]



def blockwise_peer(x8, w8):
    """torch._scaled_mm with DeepSeek-V3's block scales: s_x (M, K / 128) per
    1 x 128 tile of X, s_w (N / 128, K / 128) per 128 x 128 block of W. Checked
    once against the same product dequantized in float32, so the peer is known
    to compute what r1lab's FP8 GEMM computes."""
    M, K = x8.shape
    N = w8.shape[0]
    rows = (M + 3) // 4 * 4
    if rows != M:
        x8 = torch.cat([x8, torch.zeros(rows - M, K, device=x8.device, dtype=x8.dtype)])
    # M-major activation scales: a (K / 128, rows) tensor seen transposed
    sa = (torch.rand(K // 128, rows, device=x8.device) + 0.5).t()
    sb = torch.rand(N // 128, K // 128, device=x8.device) + 0.5

    def call():
        return torch._scaled_mm(x8, w8.t(), scale_a=sa, scale_b=sb.t(), out_dtype=torch.bfloat16)

    x = (x8.float().view(rows, K // 128, 128) * sa[:, :, None]).view(rows, K)
    w = (w8.float().view(N // 128, 128, K // 128, 128) * sb[:, None, :, None]).view(N, K)
    want = x @ w.t()
    got = call().float()
    error = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
    if not error <= 1e-2:  # bf16 output: ~2e-3
        raise ValueError(f"blockwise _scaled_mm differs from the dequantized product: {error:.2e}")
    return call


def peers(M, N, K):
    """name -> zero-argument callable, for one shape."""
    dev = "cuda"
    out = {}
    xb = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    wb = torch.randn(N, K, device=dev, dtype=torch.bfloat16) * 0.05
    out["bf16_matmul"] = lambda: torch.matmul(xb, wb.t())
    if hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm"):
        x8 = xb.to(torch.float8_e4m3fn)
        w8 = (wb * 20).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        try:
            torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            out["fp8_tensor"] = lambda: torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one,
                                                         out_dtype=torch.bfloat16)
        except (RuntimeError, TypeError):
            pass
        try:  # blockwise: 1x128 activation tiles, 128x128 weight blocks
            out["fp8_block"] = blockwise_peer(x8, w8)  # already run once, checked
        except (RuntimeError, TypeError, ValueError) as error:
            print(f"torch_qgemm: no fp8_block peer at M={M}, N={N}, K={K}: {str(error)[:200]}",
                  file=sys.stderr)
    Mi = max(M, 32)
    xi = torch.randint(-127, 128, (Mi, K), device=dev, dtype=torch.int8)
    wi = torch.randint(-127, 128, (N, K), device=dev, dtype=torch.int8)
    sx = torch.rand(Mi, device=dev)
    sw = torch.rand(N, device=dev)

    def int8_mm():
        acc = torch._int_mm(xi, wi.t())
        return (acc.float() * sx[:, None] * sw[None, :]).to(torch.bfloat16)

    try:
        int8_mm()
        out["int8_mm"] = int8_mm
    except RuntimeError:
        pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_qgemm: no GPU visible", file=sys.stderr)
        return 77
    torch.manual_seed(2026)
    results = []
    shapes = [(M, N, K) for (N, K) in SHAPES for M in MS] + [(M, 28672, 8192) for M in (1, 16)]
    for M, N, K in shapes:
        for name, function in peers(M, N, K).items():
            us = time_median_us(function, args.repeats, warmup=3)
            graph_us = time_graph_us(function)
            flop = 2.0 * M * N * K
            label = f"torch_qgemm({name},M={M},N={N},K={K})"
            results.append({"name": label, "peer": name, "M": M, "N": N, "K": K,
                            "median_us": us, "graph_us": graph_us, "tflop_per_s": flop / us / 1e6})
            graph_text = f"{graph_us:10.1f}" if graph_us is not None else "         -"
            print(f"{label:55s} {us:10.1f} us (graph {graph_text} us) {flop / us / 1e6:8.1f} TFLOP/s")
        torch.cuda.empty_cache()
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
